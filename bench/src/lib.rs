//! The operator's performance benchmark (`hack/bench.sh`, the `ospkg-bench` binary).
//!
//! It measures the operator the way a user runs it: a real `kube-apiserver` + `etcd`
//! (testenv) with the CRD and the RBAC of `deploy/`, the operator binary started with the
//! container arguments of `deploy/deployment.yaml` (so with the chart's leader election,
//! concurrency and timeouts) as the chart's ServiceAccount, and the AWS simulator as its
//! OpenSearch endpoint. The simulator imports a package in `--copying-ms` +
//! `--validating-ms` and rate-limits each (account, region) with a token bucket of the
//! operator's own `--aws-rate-limit` (rate and burst), so the operator is held to the
//! budget it claims; its package quota is raised to fit every object.
//!
//! Phases, in order (each but the first can be left out with `--skip`):
//!
//! 1. **create**: N `OpenSearchPackage` objects (TXT-DICTIONARY, each its own S3 object)
//!    spread round-robin over R regions (`spec.region`), created in parallel. Measures the
//!    time from the first create to the last object Ready (from a watch), against the lower
//!    bound `max over regions (objects in the region ÷ rate) + one import`; the AWS calls by
//!    operation and per object; and, per object, the time from the end of its import (the
//!    simulator's `LastUpdatedAt` when it became AVAILABLE) to the watch delivering Ready.
//! 2. **steady**: waits one resync interval, then counts the calls of `--steady-windows`
//!    resync windows: DescribePackages per region per window, against the pages a
//!    region-wide listing needs; the operator's CPU time over those windows is the idle CPU.
//! 3. **changes**: edits `spec.source.s3Key` of `--changes` objects (one per region first),
//!    one every `--change-interval`, and measures each edit to the simulator receiving that
//!    package's UpdatePackage, and to Ready at the new generation.
//!
//!    Peak RSS (VmHWM) is read here, before any restart.
//! 4. **restart**: stops the operator (SIGTERM) and starts it again with every object
//!    present; measures start-up to `/readyz` and the calls of its first resync interval.
//!
//! Start-up to `/readyz` (and to holding the Lease) is measured on the first start, on an
//! empty cluster. Times come from this machine's clock: the simulator's log and package
//! times are epoch milliseconds on the same clock.
//!
//! The figures are printed as a Markdown table and, with `--json`, written as JSON
//! ([`Report`]).

mod apiserver;
mod machine;
mod operator;
mod phases;
mod report;
mod simulator;
mod tracker;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use testenv::ControlPlane;

pub use report::{
    Changes, Create, Machine, Memory, MinMeanMax, OperatorInfo, Report, Restart, Settings, Startup,
    Stats, Steady,
};

use operator::{Launch, OPERATOR_NAMESPACE};
use simulator::{SimSettings, Simulator};
use tracker::Tracker;

/// Namespace of the benchmark's objects.
pub const NAMESPACE: &str = "bench";
/// The simulator's S3 bucket the objects read from.
pub const BUCKET: &str = "bench-dicts";
/// The region the operator is given with `--region` (every object sets its own).
const DEFAULT_REGION: &str = "us-east-1";

/// Regions the objects are spread over, in order.
pub const REGIONS: [&str; 30] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-east-1",
    "ca-central-1",
    "ca-west-1",
    "sa-east-1",
    "me-south-1",
    "me-central-1",
    "af-south-1",
    "il-central-1",
    "mx-central-1",
];

/// A phase that `--skip` can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    Steady,
    Changes,
    Restart,
}

/// The benchmark's settings (`ospkg-bench --help`).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ospkg-bench",
    about = "Benchmark the operator binary against a real API server and the AWS simulator"
)]
pub struct Options {
    /// OpenSearchPackage objects to create.
    #[arg(long, default_value_t = 1000)]
    pub objects: usize,

    /// Regions the objects are spread over (round robin, at most 30).
    #[arg(long, default_value_t = 20)]
    pub regions: usize,

    /// The operator's --aws-rate-limit; the simulator's token bucket per (account, region)
    /// gets the same rate and burst.
    #[arg(long, default_value_t = 10)]
    pub rate: u32,

    /// The operator's --resync-interval (shorter than the chart's 10m so that the steady
    /// state can be counted); also the length of a steady-state window.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub resync: Duration,

    /// Simulated time a package spends COPYING.
    #[arg(long, default_value_t = 300)]
    pub copying_ms: u64,

    /// Simulated time a package spends VALIDATING.
    #[arg(long, default_value_t = 200)]
    pub validating_ms: u64,

    /// Resync windows counted in the steady state (after one more to settle).
    #[arg(long, default_value_t = 2)]
    pub steady_windows: u32,

    /// Objects whose spec.source.s3Key is edited in the change phase.
    #[arg(long, default_value_t = 20)]
    pub changes: usize,

    /// Pause between two edits of the change phase.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub change_interval: Duration,

    /// Create requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub create_concurrency: usize,

    /// Longest wait for the objects to become Ready (create phase and change phase).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub ready_timeout: Duration,

    /// The operator's --log-level (a tracing filter such as `ospkg=debug,info`; the chart's
    /// `info` by default). Debug logging slows the operator: for finding out why, not for
    /// figures.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Phases to leave out (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<Phase>,

    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// The operator binary (hack/bench.sh passes the release build).
    #[arg(long)]
    pub operator_bin: PathBuf,

    /// The simulator binary; without it the simulator runs inside this process.
    #[arg(long)]
    pub sim_bin: Option<PathBuf>,

    /// The repository checkout: crds/ and deploy/ are read from it, and its commit is
    /// reported as the operator's.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,

    /// Keep the logs (operator, simulator) here; by default they go to a temporary directory
    /// that is removed unless the run fails.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

impl Options {
    fn check(&self) -> Result<()> {
        if self.objects == 0 {
            bail!("--objects must be at least 1");
        }
        if self.regions == 0 || self.regions > REGIONS.len() {
            bail!("--regions must be within 1..={}", REGIONS.len());
        }
        if self.rate == 0 {
            bail!("--rate must be at least 1");
        }
        if self.resync.is_zero() {
            bail!("--resync must be longer than zero");
        }
        Ok(())
    }

    fn runs(&self, phase: Phase) -> bool {
        !self.skip.contains(&phase)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn epoch_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Prints a progress line (stderr; stdout carries the table).
pub(crate) fn progress(message: &str) {
    eprintln!("ospkg-bench: {message}");
}

/// The API of `OpenSearchPackage` objects in [`NAMESPACE`].
fn packages_api(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("ospkg.dev", "v1alpha1", "OpenSearchPackage");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "opensearchpackages");
    Api::namespaced_with(client, NAMESPACE, &resource)
}

/// Runs every phase and returns the figures (also written to `--json`).
pub async fn run(options: &Options) -> Result<Report> {
    options.check()?;
    let mut temp = None;
    let dir = match &options.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            let t = tempfile::Builder::new().prefix("ospkg-bench-").tempdir()?;
            let path = t.path().to_path_buf();
            temp = Some(t);
            path
        }
    };
    let result = run_in(options, &dir).await;
    if let (Err(_), Some(t)) = (&result, temp) {
        eprintln!("ospkg-bench: logs kept in {}", t.keep().display());
    }
    result
}

async fn run_in(options: &Options, dir: &Path) -> Result<Report> {
    let started_at = jiff::Timestamp::now().to_string();
    let mut machine = machine::machine()?;
    let repo = std::path::absolute(&options.repo)?;
    let operator_info = OperatorInfo {
        commit: machine::commit(&repo).unwrap_or_else(|e| format!("unknown ({e:#})")),
        version: machine::operator_version(&options.operator_bin)?,
        args: Vec::new(),
        env: Vec::new(),
    };

    progress("starting kube-apiserver + etcd");
    let cp = ControlPlane::start().await?;
    cp.install_crds(repo.join("crds")).await?;
    cp.create_namespace(OPERATOR_NAMESPACE).await?;
    cp.create_namespace(NAMESPACE).await?;
    let rbac = operator::rbac_yaml(&repo)?;
    cp.apply_yaml(&rbac).await?;

    progress("starting the simulator");
    let sim = Simulator::start(
        &SimSettings {
            binary: options.sim_bin.as_deref(),
            copying_ms: options.copying_ms,
            validating_ms: options.validating_ms,
            rate: options.rate,
            package_quota: options.objects.div_ceil(options.regions),
        },
        dir,
    )
    .await?;

    let resync = humantime::format_duration(options.resync).to_string();
    let args: Vec<String> = std::iter::once("run".to_string())
        .chain(
            operator::chart_args(
                &repo,
                &[
                    ("--aws-rate-limit", options.rate.to_string()),
                    ("--resync-interval", resync),
                    ("--region", DEFAULT_REGION.to_string()),
                    ("--log-level", options.log_level.clone()),
                ],
            )?
            .into_iter()
            .filter(|a| a != "run" && !a.starts_with("--metrics-addr=")),
        )
        .collect();
    let leader_election = operator::flag(&args, "--leader-election") != Some("false");
    let env = operator::chart_env(&repo)?;
    let launch = Launch::prepare(
        &cp,
        &options.operator_bin,
        args.clone(),
        env.clone(),
        &rbac,
        sim.endpoint(),
        dir,
    )
    .await?;
    let env_words: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    progress(&format!(
        "starting the operator: {}",
        env_words
            .iter()
            .chain(&args)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let (mut operator, startup) = launch.start("operator.log").await?;

    let client = cp.client().await?;
    let api = packages_api(client);
    let tracker = Tracker::start(api.clone());
    let objects = phases::objects(options);
    phases::upload_sources(&sim, &objects).await?;

    let create = phases::create(options, &api, &tracker, &sim, &objects, &mut operator)
        .await
        .context("create phase")?;
    let steady = if options.runs(Phase::Steady) {
        Some(phases::steady(options, &sim, &objects, &operator).await?)
    } else {
        None
    };
    let changes = if options.runs(Phase::Changes) {
        Some(
            phases::changes(options, &api, &tracker, &sim, &objects)
                .await
                .context("change phase")?,
        )
    } else {
        None
    };
    let memory = operator.memory()?;
    let restart = if options.runs(Phase::Restart) {
        operator.stop().await?;
        let (restarted, restart) = phases::restart(options, &launch, &sim).await?;
        operator = restarted;
        Some(restart)
    } else {
        None
    };
    operator.stop().await?;
    machine.load_at_end = machine::load();

    let report = Report {
        started_at,
        machine,
        operator: OperatorInfo {
            args,
            env: env_words,
            ..operator_info
        },
        settings: Settings {
            objects: options.objects,
            regions: options.regions,
            rate_per_region: options.rate,
            resync_ms: options.resync.as_millis() as u64,
            copying_ms: options.copying_ms,
            validating_ms: options.validating_ms,
            leader_election,
            simulator_binary: sim.is_binary(),
        },
        startup,
        create,
        steady,
        changes,
        memory,
        restart,
    };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}
