//! `ospkg-sim`: runs the simulator until interrupted.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ospkg_sim::{ClockMode, DomainDecl, Durations, SimConfig};

/// Local simulator of the Amazon OpenSearch Service custom-package APIs (the twelve package
/// operations, restJson1 on `/2021-01-01/…`) with a minimal path-style S3 and an admin API
/// under `/_sim/`. Point an AWS SDK at it with an endpoint URL; any credentials work.
#[derive(Debug, Parser)]
#[command(name = "ospkg-sim", version)]
struct Args {
    /// Address of the package API and of the /_sim/ admin API (port 0 picks a free port).
    #[arg(long, env = "OSPKG_SIM_LISTEN", default_value = "127.0.0.1:4510")]
    listen: SocketAddr,

    /// Address of the minimal S3 (path-style PUT/GET/HEAD/DELETE object; port 0 picks one).
    #[arg(long, env = "OSPKG_SIM_S3_LISTEN", default_value = "127.0.0.1:4511")]
    s3_listen: SocketAddr,

    /// A domain that packages can be associated with, as NAME or NAME:ENGINE_VERSION
    /// (default engine OpenSearch_2.19). Repeatable. Declared in the default account, in
    /// every region.
    #[arg(long = "domain", value_name = "NAME[:ENGINE_VERSION]", value_parser = parse_domain)]
    domains: Vec<DomainDecl>,

    /// Region used by the admin API when a domain is declared without one.
    #[arg(long, env = "OSPKG_SIM_REGION", default_value = "us-east-1")]
    region: String,

    /// Account for access keys that are not 12-digit account ids.
    #[arg(long, env = "OSPKG_SIM_ACCOUNT", default_value = "123456789012")]
    account: String,

    /// Seed of the fault-injection RNG (same seed, same faults).
    #[arg(long, env = "OSPKG_SIM_SEED", default_value_t = 0)]
    seed: u64,

    /// Simulated ms a package spends COPYING.
    #[arg(long, env = "OSPKG_SIM_COPYING_MS", default_value_t = Durations::default().copying_ms)]
    copying_ms: u64,

    /// Simulated ms a package spends VALIDATING.
    #[arg(long, env = "OSPKG_SIM_VALIDATING_MS", default_value_t = Durations::default().validating_ms)]
    validating_ms: u64,

    /// Simulated ms an association spends ASSOCIATING.
    #[arg(long, env = "OSPKG_SIM_ASSOCIATING_MS", default_value_t = Durations::default().associating_ms)]
    associating_ms: u64,

    /// Simulated ms an association spends DISSOCIATING.
    #[arg(long, env = "OSPKG_SIM_DISSOCIATING_MS", default_value_t = Durations::default().dissociating_ms)]
    dissociating_ms: u64,

    /// Simulated ms a package spends DELETING.
    #[arg(long, env = "OSPKG_SIM_DELETING_MS", default_value_t = Durations::default().deleting_ms)]
    deleting_ms: u64,

    /// Clock: `real` (wall time times --speed) or `manual` (moves only via POST /_sim/clock/advance).
    #[arg(long, env = "OSPKG_SIM_CLOCK", default_value = "real", value_parser = parse_mode)]
    clock: ClockMode,

    /// Speed factor of the real clock (2 = transitions take half as long).
    #[arg(long, env = "OSPKG_SIM_SPEED", default_value_t = 1.0)]
    speed: f64,

    /// Custom packages allowed per account and region (LimitExceededException beyond).
    #[arg(long, env = "OSPKG_SIM_PACKAGE_QUOTA", default_value_t = 25)]
    package_quota: usize,

    /// Packages allowed per domain (LimitExceededException beyond).
    #[arg(long, env = "OSPKG_SIM_DOMAIN_QUOTA", default_value_t = 20)]
    domain_quota: usize,

    /// JSON file to load state from at start and to save it to while running and on exit.
    #[arg(long, env = "OSPKG_SIM_STATE")]
    state: Option<PathBuf>,
}

fn parse_domain(text: &str) -> Result<DomainDecl, String> {
    let (name, engine) = match text.split_once(':') {
        Some((name, engine)) => (name, engine.to_string()),
        None => (text, ospkg_sim::state::default_engine_version()),
    };
    ospkg_sim::validate::domain_name("--domain", name).map_err(|e| e.to_string())?;
    ospkg_sim::validate::engine_version("--domain", &engine).map_err(|e| e.to_string())?;
    Ok(DomainDecl {
        name: name.to_string(),
        engine_version: engine,
        region: None,
        account: None,
    })
}

fn parse_mode(text: &str) -> Result<ClockMode, String> {
    match text {
        "real" => Ok(ClockMode::Real),
        "manual" => Ok(ClockMode::Manual),
        _ => Err(format!("expected real or manual, got {text}")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = SimConfig {
        listen: args.listen,
        s3_listen: args.s3_listen,
        default_region: args.region,
        default_account: args.account,
        domains: args.domains,
        durations: Durations {
            copying_ms: args.copying_ms,
            validating_ms: args.validating_ms,
            associating_ms: args.associating_ms,
            dissociating_ms: args.dissociating_ms,
            deleting_ms: args.deleting_ms,
        },
        clock_mode: args.clock,
        clock_speed: args.speed,
        package_quota: args.package_quota,
        domain_quota: args.domain_quota,
        state_file: args.state,
        ..SimConfig::default()
    };
    config.faults.seed = args.seed;
    let sim = ospkg_sim::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "ospkg-sim listening on {} (s3 {})",
            sim.endpoint(),
            sim.s3_endpoint()
        )?;
        out.flush()?;
    }
    wait_for_signal().await;
    sim.shutdown().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
