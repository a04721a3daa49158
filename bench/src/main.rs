//! `ospkg-bench`: see the library's documentation, or `ospkg-bench --help`.

use anyhow::bail;
use clap::Parser;
use ospkg_bench::Options;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let mut terminate = signal(SignalKind::terminate())?;
    // Stopping the run drops it, and with it every process it started (API server, etcd,
    // simulator, operator): an interrupted benchmark leaves nothing running.
    let report = tokio::select! {
        report = ospkg_bench::run(&options) => report?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted (SIGINT)"),
        _ = terminate.recv() => bail!("terminated (SIGTERM)"),
    };
    println!("{}", report.to_markdown());
    if let Some(path) = &options.json {
        eprintln!("ospkg-bench: figures written to {}", path.display());
    }
    Ok(())
}
