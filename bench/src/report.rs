//! The figures a run produces: printed as a Markdown table (ready to paste into the README)
//! and written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything one run measured, with the settings and the machine it ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When the run started (RFC 3339).
    pub started_at: String,
    pub machine: Machine,
    pub operator: OperatorInfo,
    pub settings: Settings,
    pub startup: Startup,
    pub create: Create,
    pub steady: Option<Steady>,
    pub changes: Option<Changes>,
    pub memory: Memory,
    pub restart: Option<Restart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// 1-minute load average when the run started and when it ended (the machine may be
    /// shared).
    pub load_at_start: f32,
    pub load_at_end: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorInfo {
    /// `git rev-parse HEAD` of the repository the operator was built from (`-dirty` when
    /// tracked files had changes).
    pub commit: String,
    /// `opensearch-package-operator version`.
    pub version: String,
    /// The `run` arguments the operator got: the chart's, with the overrides listed in the
    /// README.
    pub args: Vec<String>,
    /// The environment variables the chart sets to a value, as `NAME=value`.
    #[serde(default)]
    pub env: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub objects: usize,
    pub regions: usize,
    /// Operator `--aws-rate-limit`; the simulator's token bucket per (account, region) has
    /// this rate and burst.
    pub rate_per_region: u32,
    pub resync_ms: u64,
    pub copying_ms: u64,
    pub validating_ms: u64,
    /// Leader election as the chart sets it.
    pub leader_election: bool,
    /// Whether the simulator ran as its own process (else inside the benchmark's).
    pub simulator_binary: bool,
}

/// From spawning the operator to its first `/readyz` 200, and to it holding the Lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Startup {
    pub readyz_ms: f64,
    pub leader_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Create {
    /// From the first create request to the last create answered.
    pub creates_took_ms: f64,
    /// From the first create request to the last object seen Ready.
    pub all_ready_ms: f64,
    /// max over regions of (objects in the region ÷ rate) + one import (copy + validation).
    pub lower_bound_ms: f64,
    /// `all_ready_ms / lower_bound_ms`.
    pub ratio: f64,
    /// Requests the simulator received in this phase, by operation (throttled ones included).
    pub calls: BTreeMap<String, u64>,
    pub total_calls: u64,
    pub calls_per_object: f64,
    /// Requests the simulator's rate limiter refused.
    pub throttled: u64,
    /// From the benchmark's create request answered to the simulator's CreatePackage for
    /// that object (the package's `CreatedAt`): the operator's own part before AWS.
    #[serde(default)]
    pub created_to_create_package: Stats,
    /// From the simulator's import end (the package's `LastUpdatedAt` when it became
    /// AVAILABLE) to the watch delivering Ready.
    pub import_end_to_ready: Stats,
    /// Writes to OpenSearchPackages and Events the API server served in this phase (its
    /// `apiserver_request_total`), by `"VERB resource[/subresource]"`, per object: the
    /// benchmark's own creates included.
    #[serde(default)]
    pub kube_writes_per_object: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Steady {
    /// Waited after all were Ready before counting.
    pub settle_ms: u64,
    /// Counted windows of one resync interval each.
    pub windows: u32,
    /// DescribePackages per region per resync window: mean, min, max over regions.
    pub describe_per_region_per_resync: MinMeanMax,
    /// Pages one region-wide listing of the largest region takes (⌈packages ÷ 100⌉, the two
    /// AWS-owned packages included).
    pub pages_per_region_listing: u64,
    /// Every request in the counted windows, by operation.
    pub calls: BTreeMap<String, u64>,
    /// Operator CPU time (user + system) over the counted windows.
    pub cpu_seconds: f64,
    /// That CPU time as a share of one core.
    pub cpu_percent_of_core: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    pub edited: usize,
    /// From the edit request to the simulator receiving that package's UpdatePackage.
    pub change_to_update: Stats,
    /// From the edit request to the watch delivering Ready at the new generation.
    pub change_to_ready: Stats,
    /// Edited objects for which the simulator received no UpdatePackage.
    pub without_update: usize,
    /// Edited objects not Ready at the new generation within `--ready-timeout`.
    pub not_ready: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// VmHWM of the operator process (before any restart).
    pub peak_rss_mib: f64,
    /// VmRSS at the same moment.
    pub rss_mib: f64,
    /// Of `rss_mib`: anonymous memory (RssAnon: heap, stacks).
    #[serde(default)]
    pub anon_mib: f64,
    /// Of `rss_mib`: mapped files (RssFile: mostly the binary's own code, which the kernel
    /// maps in large blocks).
    #[serde(default)]
    pub file_mib: f64,
}

/// The operator restarted with every object present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restart {
    pub startup: Startup,
    /// Requests in the first resync interval after the new process started, by operation.
    pub calls_first_resync: BTreeMap<String, u64>,
    pub total_calls_first_resync: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinMeanMax {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl MinMeanMax {
    pub fn of(values: &[f64]) -> MinMeanMax {
        if values.is_empty() {
            return MinMeanMax {
                min: 0.0,
                mean: 0.0,
                max: 0.0,
            };
        }
        MinMeanMax {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            mean: values.iter().sum::<f64>() / values.len() as f64,
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// Latencies in milliseconds; percentiles by the nearest-rank method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub count: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if ms.is_empty() {
                return 0.0;
            }
            let index = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
            ms[index]
        };
        Stats {
            count: ms.len(),
            min_ms: ms.first().copied().unwrap_or(0.0),
            median_ms: rank(0.5),
            p99_ms: rank(0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
        }
    }
}

fn seconds(ms: f64) -> String {
    format!("{:.1} s", ms / 1000.0)
}

fn millis(ms: f64) -> String {
    if ms >= 10_000.0 {
        seconds(ms)
    } else {
        format!("{ms:.0} ms")
    }
}

fn stats(s: &Stats) -> String {
    format!(
        "median {}, p99 {}, max {} (n = {})",
        millis(s.median_ms),
        millis(s.p99_ms),
        millis(s.max_ms),
        s.count
    )
}

fn operations(calls: &BTreeMap<String, u64>) -> String {
    let mut sorted: Vec<_> = calls.iter().filter(|(_, n)| **n > 0).collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = sorted.iter().map(|(op, n)| format!("{n} {op}")).collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

impl Report {
    /// The figures as a Markdown table, followed by the machine and the settings.
    pub fn to_markdown(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        let s = &self.settings;
        let c = &self.create;
        row(
            "time until all are Ready",
            format!(
                "{} (lower bound {}, ratio {:.2})",
                seconds(c.all_ready_ms),
                seconds(c.lower_bound_ms),
                c.ratio
            ),
        );
        row(
            "AWS calls to bring them up",
            format!(
                "{} ({:.2} per object; {}); {} throttled",
                c.total_calls,
                c.calls_per_object,
                operations(&c.calls),
                c.throttled
            ),
        );
        row(
            "time for the benchmark's own creates",
            seconds(c.creates_took_ms),
        );
        if !c.kube_writes_per_object.is_empty() {
            let total: f64 = c.kube_writes_per_object.values().sum();
            let each: Vec<String> = c
                .kube_writes_per_object
                .iter()
                .map(|(write, n)| format!("{n:.2} {write}"))
                .collect();
            row(
                "Kubernetes writes per object (API server's count)",
                format!("{total:.2}: {}", each.join(", ")),
            );
        }
        if let Some(st) = &self.steady {
            row(
                "DescribePackages per region per resync, steady state",
                format!(
                    "{:.2} (min {:.1}, max {:.1} over the regions; one listing is {} page(s))",
                    st.describe_per_region_per_resync.mean,
                    st.describe_per_region_per_resync.min,
                    st.describe_per_region_per_resync.max,
                    st.pages_per_region_listing
                ),
            );
            row(
                "all AWS calls in steady state",
                format!(
                    "{} over {} window(s) of {}",
                    operations(&st.calls),
                    st.windows,
                    seconds(s.resync_ms as f64)
                ),
            );
        }
        row(
            "object created → CreatePackage",
            stats(&c.created_to_create_package),
        );
        row("import finished → Ready", stats(&c.import_end_to_ready));
        if let Some(ch) = &self.changes {
            row(
                "spec change → UpdatePackage received",
                stats(&ch.change_to_update),
            );
            row("spec change → Ready", stats(&ch.change_to_ready));
            if ch.without_update + ch.not_ready > 0 {
                row(
                    "changes not completed",
                    format!(
                        "{} without an UpdatePackage, {} not Ready",
                        ch.without_update, ch.not_ready
                    ),
                );
            }
        }
        row(
            "memory",
            format!(
                "peak RSS {:.1} MiB (RSS {:.1} MiB at the end: {:.1} MiB anonymous, {:.1} MiB \
                 mapped files, the binary's code) with {} objects",
                self.memory.peak_rss_mib,
                self.memory.rss_mib,
                self.memory.anon_mib,
                self.memory.file_mib,
                s.objects
            ),
        );
        if let Some(st) = &self.steady {
            row(
                "idle CPU",
                format!(
                    "{:.2} % of a core ({:.2} CPU-s over {})",
                    st.cpu_percent_of_core,
                    st.cpu_seconds,
                    seconds(f64::from(st.windows) * s.resync_ms as f64)
                ),
            );
        }
        row(
            "start-up to /readyz",
            format!(
                "{} (leading after {})",
                millis(self.startup.readyz_ms),
                millis(self.startup.leader_ms)
            ),
        );
        if let Some(r) = &self.restart {
            row(
                "restart with all objects: start-up to /readyz",
                format!(
                    "{} (leading after {})",
                    millis(r.startup.readyz_ms),
                    millis(r.startup.leader_ms)
                ),
            );
            row(
                "AWS calls in the first resync after the restart",
                format!(
                    "{} ({})",
                    r.total_calls_first_resync,
                    operations(&r.calls_first_resync)
                ),
            );
        }

        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} objects over {} region(s), --aws-rate-limit {} (simulator bucket per (account, region): the same rate and burst), resync {}, import {} ms copy + {} ms validation, leader election {}",
            s.objects,
            s.regions,
            s.rate_per_region,
            seconds(s.resync_ms as f64),
            s.copying_ms,
            s.validating_ms,
            if s.leader_election { "on" } else { "off" }
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "| measure | value |");
        let _ = writeln!(out, "|---|---|");
        for (k, v) in rows {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let m = &self.machine;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Machine: {}, {} cores, {:.0} GiB, Linux {}, load average {:.1} at the start and {:.1} at the end. Operator {} ({}); {}.",
            m.cpu_model,
            m.cores,
            m.memory_gib,
            m.kernel,
            m.load_at_start,
            m.load_at_end,
            self.operator.commit,
            self.operator.version,
            self.started_at
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Stats::of(&samples);
        assert_eq!(
            (s.count, s.min_ms, s.median_ms, s.p99_ms, s.max_ms),
            (100, 1.0, 50.0, 99.0, 100.0)
        );
        let s = Stats::of(&[Duration::from_millis(7)]);
        assert_eq!((s.median_ms, s.p99_ms), (7.0, 7.0));
        assert_eq!(Stats::of(&[]).count, 0);
    }

    #[test]
    fn min_mean_max() {
        let m = MinMeanMax::of(&[1.0, 2.0, 6.0]);
        assert_eq!((m.min, m.mean, m.max), (1.0, 3.0, 6.0));
    }
}
