//! Runs a local kube-apiserver + etcd for the demo until SIGINT or SIGTERM.
//!
//! Prints `export KUBECONFIG=<path>` once the API server is ready; the kubeconfig file
//! appears (atomically) at the same moment and is removed on shutdown.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(about = "Run a local kube-apiserver + etcd until interrupted")]
struct Args {
    /// Where to write the admin kubeconfig.
    #[arg(long, default_value = ".cache/dev/kubeconfig")]
    kubeconfig: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let kubeconfig = std::path::absolute(&args.kubeconfig)?;
    // A file left from an earlier run would point at a dead server.
    let _ = std::fs::remove_file(&kubeconfig);

    let mut terminate = signal(SignalKind::terminate())?;
    let control_plane = tokio::select! {
        started = testenv::ControlPlane::start() => started?,
        _ = tokio::signal::ctrl_c() => return Ok(()),
        _ = terminate.recv() => return Ok(()),
    };

    if let Some(dir) = kubeconfig.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = kubeconfig.with_extension("tmp");
    std::fs::copy(control_plane.kubeconfig_path(), &tmp)?;
    std::fs::rename(&tmp, &kubeconfig)?;

    eprintln!(
        "kube-apiserver {} is ready (logs in {}); Ctrl-C to stop",
        control_plane.server_url(),
        control_plane.dir().display()
    );
    println!("export KUBECONFIG={}", kubeconfig.display());

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stopping");
    let _ = std::fs::remove_file(&kubeconfig);
    drop(control_plane);
    Ok(())
}
