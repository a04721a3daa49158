//! The operator binary: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use ospkg::config::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole chain: "starting the controller: reading kubeconfig: …".
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Crd { name } => {
            let crds = ospkg::crd::crds();
            let chosen: Vec<_> = crds
                .iter()
                .filter(|(plural, _)| name.as_deref().is_none_or(|n| n == *plural))
                .collect();
            anyhow::ensure!(
                !chosen.is_empty(),
                "no CRD named {:?}: one of {}",
                name.unwrap_or_default(),
                crds.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
            );
            let documents = chosen
                .iter()
                .map(|(_, crd)| ospkg::crd::crd_yaml_of(crd))
                .collect::<Result<Vec<_>, _>>()
                .context("serializing the CRDs")?;
            print!("{}", documents.join("---\n"));
            Ok(())
        }
        Command::Version => {
            println!("{}", version());
            Ok(())
        }
        Command::Run(args) => {
            // One TLS crypto provider for the whole process: ring, for kube's client and the
            // AWS SDK's (`backend::sdk::https_client`). Installed explicitly so that a
            // dependency enabling a second provider cannot leave rustls unable to choose.
            rustls::crypto::ring::default_provider()
                .install_default()
                .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
            ospkg::telemetry::init(&args.log_level, args.log_format)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(ospkg::runtime::run(*args))
        }
    }
}

/// The version line; the git commit is added when the build sets `OSPKG_GIT_COMMIT`
/// (the container build does, a plain `cargo build` need not).
fn version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    match option_env!("OSPKG_GIT_COMMIT") {
        Some(commit) if !commit.is_empty() => {
            format!("opensearch-package-operator {version} ({commit})")
        }
        _ => format!("opensearch-package-operator {version}"),
    }
}
