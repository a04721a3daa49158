//! Finding the control-plane binaries built by `hack/build-control-plane.sh`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

/// The script that builds and caches the binaries; a no-op when they are present.
pub const BUILD_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../hack/build-control-plane.sh"
);

const VARS: [&str; 7] = [
    "OSPKG_KUBE_APISERVER",
    "OSPKG_KUBE_CONTROLLER_MANAGER",
    "OSPKG_ETCD",
    "OSPKG_HELM",
    "OSPKG_HELM_DOCS",
    "OSPKG_KUBECTL",
    "OSPKG_PROMTOOL",
];

/// Paths of the control-plane binaries and the chart tools.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub kube_apiserver: PathBuf,
    /// Started only on request ([`crate::ControlPlane::start_with_controllers`]).
    pub kube_controller_manager: PathBuf,
    pub etcd: PathBuf,
    pub helm: PathBuf,
    /// Generates the chart README (`hack/generate.sh`).
    pub helm_docs: PathBuf,
    pub kubectl: PathBuf,
    /// Checks and unit-tests the chart's alerting rules.
    pub promtool: PathBuf,
}

impl Binaries {
    /// Finds the binaries: each `OSPKG_*` environment variable wins, then the env file the
    /// build script writes (`${OSPKG_CACHE:-$HOME/.cache/ospkg}/bin/env`). When a binary is
    /// still missing, runs the build script (minutes when cold; its progress goes to stderr).
    pub async fn locate() -> Result<Self> {
        if let Ok(found) = Self::from_env_and_cache() {
            return Ok(found);
        }
        tracing::info!("building control-plane binaries with {BUILD_SCRIPT}");
        let status = tokio::process::Command::new("bash")
            .arg(BUILD_SCRIPT)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .await
            .with_context(|| format!("running {BUILD_SCRIPT}"))?;
        if !status.success() {
            bail!("{BUILD_SCRIPT} failed with {status}");
        }
        Self::from_env_and_cache()
    }

    fn from_env_and_cache() -> Result<Self> {
        let env_file = cache_dir()?.join("bin/env");
        let cached = std::fs::read_to_string(&env_file)
            .map(|text| parse_env_file(&text))
            .unwrap_or_default();
        let path = |var: &str| -> Result<PathBuf> {
            let path = std::env::var_os(var)
                .map(PathBuf::from)
                .or_else(|| cached.get(var).map(PathBuf::from))
                .with_context(|| format!("{var} is not set and not in {}", env_file.display()))?;
            if !path.is_file() {
                bail!("{var}={} does not exist", path.display());
            }
            Ok(path)
        };
        let [
            kube_apiserver,
            kube_controller_manager,
            etcd,
            helm,
            helm_docs,
            kubectl,
            promtool,
        ] = VARS.map(path);
        Ok(Self {
            kube_apiserver: kube_apiserver?,
            kube_controller_manager: kube_controller_manager?,
            etcd: etcd?,
            helm: helm?,
            helm_docs: helm_docs?,
            kubectl: kubectl?,
            promtool: promtool?,
        })
    }
}

/// `${OSPKG_CACHE:-$HOME/.cache/ospkg}`, as in the build script.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("OSPKG_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("neither OSPKG_CACHE nor HOME is set")?;
    Ok(Path::new(&home).join(".cache/ospkg"))
}

/// Reads `export KEY=VALUE` / `KEY=VALUE` lines.
fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_build_scripts_env_file() {
        let vars = parse_env_file(
            "# comment\nexport OSPKG_ETCD=/c/etcd-v3.6.16\nOSPKG_HELM='/c/helm'\n\nnonsense\n",
        );
        assert_eq!(vars["OSPKG_ETCD"], "/c/etcd-v3.6.16");
        assert_eq!(vars["OSPKG_HELM"], "/c/helm");
        assert_eq!(vars.len(), 2);
    }
}
