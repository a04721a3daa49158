//! The simulator: its binary (as `hack/bench.sh` runs it) or in this process, set up with the
//! benchmark's import timing, a token bucket per (account, region) equal to the operator's
//! rate limit, and a package quota that fits every object; and its call log read back on the
//! wall clock.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use ospkg_sim::{
    AdminClient, Durations, EntryKind, FaultConfig, LogEntry, Quotas, RateLimit, RunningSim,
    SimConfig,
};
use testenv::Process;

use crate::epoch_ms;

/// The fault name the simulator logs for a request its rate limiter refused.
const RATE_LIMITED: &str = "rateLimit";

/// How the simulator is started.
pub struct SimSettings<'a> {
    /// The `ospkg-sim` binary; `None` runs the simulator inside this process.
    pub binary: Option<&'a Path>,
    pub copying_ms: u64,
    pub validating_ms: u64,
    /// Requests per second and burst of each (account, region).
    pub rate: u32,
    /// Custom packages allowed per (account, region).
    pub package_quota: usize,
}

/// A running simulator; stops when dropped.
pub enum Simulator {
    /// The process is killed when this is dropped.
    Binary {
        _process: Process,
        endpoint: String,
    },
    InProcess(RunningSim),
}

impl Simulator {
    pub async fn start(settings: &SimSettings<'_>, dir: &Path) -> Result<Simulator> {
        let durations = Durations {
            copying_ms: settings.copying_ms,
            validating_ms: settings.validating_ms,
            ..Durations::default()
        };
        let sim = match settings.binary {
            Some(binary) => {
                let process = Process::spawn(
                    "ospkg-sim",
                    Command::new(binary)
                        .args(["--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"])
                        .arg(format!("--copying-ms={}", durations.copying_ms))
                        .arg(format!("--validating-ms={}", durations.validating_ms))
                        .env("RUST_LOG", "warn"),
                    dir.join("sim.log"),
                )?;
                let endpoint = wait_for_endpoint(&process).await?;
                Simulator::Binary {
                    _process: process,
                    endpoint,
                }
            }
            None => Simulator::InProcess(
                ospkg_sim::start(SimConfig::default().durations(durations)).await?,
            ),
        };
        let admin = sim.admin();
        // The quota is raised through the admin API, as a test would on a running simulator.
        let quotas = admin.quotas().await?;
        admin
            .set_quotas(&Quotas {
                packages_per_region: settings.package_quota.max(quotas.packages_per_region),
                ..quotas
            })
            .await?;
        admin
            .set_faults(&FaultConfig {
                rate_limit: Some(RateLimit {
                    per_second: f64::from(settings.rate),
                    burst: settings.rate,
                }),
                ..FaultConfig::default()
            })
            .await?;
        Ok(sim)
    }

    pub fn endpoint(&self) -> String {
        match self {
            Simulator::Binary { endpoint, .. } => endpoint.clone(),
            Simulator::InProcess(sim) => sim.endpoint(),
        }
    }

    pub fn admin(&self) -> AdminClient {
        AdminClient::new(self.endpoint())
    }

    pub fn is_binary(&self) -> bool {
        matches!(self, Simulator::Binary { .. })
    }

    /// The call log with wall-clock times.
    pub async fn log(&self) -> Result<CallLog> {
        let admin = self.admin();
        let clock = admin.clock().await?;
        let entries = admin.log().await?;
        let (Some(now), Some(elapsed)) = (clock.now_epoch_ms, clock.elapsed_ms) else {
            bail!("the simulator's clock shows no time");
        };
        if entries.first().is_some_and(|e| e.seq > 1) {
            eprintln!(
                "warning: the simulator's log dropped its oldest {} entries",
                entries[0].seq - 1
            );
        }
        Ok(CallLog {
            start_epoch_ms: now.saturating_sub(elapsed) as f64,
            entries,
        })
    }

    /// The simulator's packages by name: (PackageID, `LastUpdatedAt` in epoch ms, status).
    pub async fn packages(&self) -> Result<BTreeMap<String, SimPackage>> {
        let dump = self.admin().packages().await?;
        let mut packages = BTreeMap::new();
        for scope in dump["scopes"].as_array().into_iter().flatten() {
            for package in scope["packages"].as_array().into_iter().flatten() {
                let details = &package["details"];
                let (Some(name), Some(id)) = (
                    details["PackageName"].as_str(),
                    details["PackageID"].as_str(),
                ) else {
                    continue;
                };
                packages.insert(
                    name.to_string(),
                    SimPackage {
                        id: id.to_string(),
                        status: details["PackageStatus"].as_str().unwrap_or("").to_string(),
                        created_epoch_ms: details["CreatedAt"].as_f64().unwrap_or(0.0) * 1000.0,
                        last_updated_epoch_ms: details["LastUpdatedAt"].as_f64().unwrap_or(0.0)
                            * 1000.0,
                    },
                );
            }
        }
        Ok(packages)
    }
}

async fn wait_for_endpoint(process: &Process) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(process.log_path()).unwrap_or_default();
        if let Some(endpoint) = log.lines().find_map(|line| {
            line.strip_prefix("ospkg-sim listening on ")?
                .split_whitespace()
                .next()
        }) {
            return Ok(endpoint.to_string());
        }
        if Instant::now() > deadline {
            bail!("ospkg-sim did not start: {}", process.log_tail(20));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Clone)]
pub struct SimPackage {
    pub id: String,
    pub status: String,
    /// When CreatePackage made it.
    pub created_epoch_ms: f64,
    /// When the current status began; for an AVAILABLE package, when its import ended.
    pub last_updated_epoch_ms: f64,
}

/// The simulator's log, its times turned into epoch milliseconds.
pub struct CallLog {
    start_epoch_ms: f64,
    entries: Vec<LogEntry>,
}

impl CallLog {
    pub fn epoch_ms(&self, entry: &LogEntry) -> f64 {
        self.start_epoch_ms + entry.at_ms as f64
    }

    /// API calls logged at or after `from` and before `to`.
    pub fn calls_between(
        &self,
        from: SystemTime,
        to: SystemTime,
    ) -> impl Iterator<Item = &LogEntry> + '_ {
        let (from, to) = (epoch_ms(from), epoch_ms(to));
        self.entries.iter().filter(move |e| {
            let at = self.epoch_ms(e);
            e.kind == EntryKind::Call && at >= from && at < to
        })
    }
}

/// Requests by operation.
pub fn by_operation<'a>(calls: impl Iterator<Item = &'a LogEntry>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for call in calls {
        if let Some(op) = &call.operation {
            *counts.entry(op.clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// Whether the simulator's rate limiter refused the request.
pub fn rate_limited(entry: &LogEntry) -> bool {
    entry.fault.as_deref() == Some(RATE_LIMITED)
}
