//! The operator binary, started the way the chart starts it: the container arguments of
//! `deploy/deployment.yaml` (the chart rendered with its default values), the ServiceAccount
//! and RBAC of `deploy/`, credentials from the environment, and the simulator as the AWS
//! endpoint; plus what `/proc` says about the process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use procfs::process::Process as ProcProcess;
use testenv::{ControlPlane, Process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::{Memory, Startup};

/// Namespace of the operator as the chart installs it (its Lease lives there).
pub const OPERATOR_NAMESPACE: &str = "opensearch-package-operator";
/// The access key the operator signs with (the simulator logs it with every call).
pub const ACCESS_KEY: &str = "AKIDBENCH";
const POD_NAME: &str = "opensearch-package-operator-bench";
/// Longest wait for `/readyz` and for the Lease.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The ServiceAccount, ClusterRole(Binding) and leader-election Role exactly as shipped.
pub fn rbac_yaml(repo: &Path) -> Result<String> {
    let mut yaml = String::new();
    for file in [
        "serviceaccount.yaml",
        "clusterrole.yaml",
        "leader-election-role.yaml",
    ] {
        let path = repo.join("deploy").join(file);
        yaml.push_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        );
        yaml.push_str("\n---\n");
    }
    Ok(yaml)
}

/// The name of the ServiceAccount in the shipped manifests.
pub fn service_account(rbac_yaml: &str) -> Result<String> {
    for document in serde_yaml::Deserializer::from_str(rbac_yaml) {
        let value: serde_yaml::Value = serde::Deserialize::deserialize(document)?;
        if value["kind"].as_str() == Some("ServiceAccount") {
            return value["metadata"]["name"]
                .as_str()
                .map(str::to_string)
                .context("ServiceAccount without a name");
        }
    }
    bail!("the shipped manifests have no ServiceAccount")
}

/// The operator container of `deploy/deployment.yaml`.
fn chart_container(repo: &Path) -> Result<serde_yaml::Value> {
    let path = repo.join("deploy/deployment.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let deployment: serde_yaml::Value = serde_yaml::from_str(&text)?;
    Ok(deployment["spec"]["template"]["spec"]["containers"][0].clone())
}

/// The container arguments of `deploy/deployment.yaml`, each `--flag=value` of `overrides`
/// replacing the chart's (or added when the chart has none).
pub fn chart_args(repo: &Path, overrides: &[(&str, String)]) -> Result<Vec<String>> {
    let mut args: Vec<String> = chart_container(repo)?["args"]
        .as_sequence()
        .context("deploy/deployment.yaml has no container args")?
        .iter()
        .map(|a| {
            a.as_str()
                .map(str::to_string)
                .context("an arg is not a string")
        })
        .collect::<Result<_>>()?;
    for (flag, value) in overrides {
        let prefix = format!("{flag}=");
        let arg = format!("{flag}={value}");
        match args.iter_mut().find(|a| a.starts_with(&prefix)) {
            Some(existing) => *existing = arg,
            None => args.push(arg),
        }
    }
    Ok(args)
}

/// The environment variables `deploy/deployment.yaml` sets to a value (such as
/// `MALLOC_ARENA_MAX`); those taken from the pod (`valueFrom`) are set by [`Launch::start`].
pub fn chart_env(repo: &Path) -> Result<Vec<(String, String)>> {
    let container = chart_container(repo)?;
    let Some(env) = container["env"].as_sequence() else {
        return Ok(Vec::new());
    };
    env.iter()
        .filter_map(|var| Some((var["name"].as_str()?, var.get("value")?)))
        .map(|(name, value)| {
            let value = value
                .as_str()
                .with_context(|| format!("the value of {name} is not a string"))?;
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

/// The value of `--flag=value` in `args`.
pub fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
}

/// Everything needed to start (and restart) the operator.
pub struct Launch {
    pub binary: PathBuf,
    /// `run` and the chart's arguments with the benchmark's overrides, without
    /// `--metrics-addr` (each start picks a free port).
    pub args: Vec<String>,
    /// The environment variables the chart sets to a value ([`chart_env`]).
    pub env: Vec<(String, String)>,
    pub kubeconfig: PathBuf,
    pub sim_endpoint: String,
    pub dir: PathBuf,
}

impl Launch {
    /// Writes a kubeconfig that authenticates as the chart's ServiceAccount.
    pub async fn prepare(
        cp: &ControlPlane,
        binary: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
        rbac_yaml: &str,
        sim_endpoint: String,
        dir: &Path,
    ) -> Result<Launch> {
        let kubeconfig = dir.join("operator.kubeconfig");
        cp.service_account_kubeconfig(
            OPERATOR_NAMESPACE,
            &service_account(rbac_yaml)?,
            &kubeconfig,
        )
        .await?;
        Ok(Launch {
            binary: binary.to_path_buf(),
            args,
            env,
            kubeconfig,
            sim_endpoint,
            dir: dir.to_path_buf(),
        })
    }

    /// Starts the operator and waits until `/readyz` answers 200 and it holds the Lease.
    pub async fn start(&self, log_name: &str) -> Result<(Operator, Startup)> {
        let metrics_addr = format!("127.0.0.1:{}", testenv::free_port()?);
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .arg(format!("--metrics-addr={metrics_addr}"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("AWS_ENDPOINT_URL_OPENSEARCH", &self.sim_endpoint)
            .env("AWS_ENDPOINT_URL_STS", &self.sim_endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", "bench-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("NO_COLOR", "1")
            // The chart's pod sets neither: a developer's shell often does, and a captured
            // backtrace on every error would make the figures the developer's, not a user's.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            // As in the chart's pod (downward API).
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .env("POD_NAME", POD_NAME)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        // Nothing from this shell may change the operator's settings.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("OSPKG_")
                || [
                    "AWS_PROFILE",
                    "AWS_REGION",
                    "AWS_DEFAULT_REGION",
                    "AWS_SESSION_TOKEN",
                    "RUST_LOG",
                ]
                .contains(&key.as_ref())
            {
                command.env_remove(key.as_ref());
            }
        }
        let started = Instant::now();
        let process = Process::spawn(
            "opensearch-package-operator",
            &mut command,
            self.dir.join(log_name),
        )?;
        let mut operator = Operator {
            process,
            metrics_addr,
        };
        let readyz = operator.wait_for(Probe::Readyz).await?;
        let readyz_ms = readyz.duration_since(started).as_secs_f64() * 1000.0;
        let leader = operator.wait_for(Probe::Leader).await?;
        let leader_ms = leader.duration_since(started).as_secs_f64() * 1000.0;
        Ok((
            operator,
            Startup {
                readyz_ms,
                leader_ms,
            },
        ))
    }
}

#[derive(Clone, Copy)]
enum Probe {
    Readyz,
    Leader,
}

/// The running operator; killed when dropped.
pub struct Operator {
    process: Process,
    metrics_addr: String,
}

impl Operator {
    /// Polls `probe` every 10 ms; the instant it first held.
    async fn wait_for(&mut self, probe: Probe) -> Result<Instant> {
        let what = match probe {
            Probe::Readyz => "answering 200 on /readyz",
            Probe::Leader => "holding the Lease",
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_status()? {
                bail!(
                    "the operator exited ({status}) before {what}:\n{}",
                    self.process.log_tail(30)
                );
            }
            let holds = match probe {
                Probe::Readyz => self
                    .http_get("/readyz")
                    .await
                    .is_ok_and(|(code, _)| code == 200),
                Probe::Leader => self.is_leader().await,
            };
            if holds {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator is not {what} after {START_TIMEOUT:?}:\n{}",
                    self.process.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// SIGTERM, then SIGKILL after the chart's termination grace period.
    pub async fn stop(mut self) -> Result<()> {
        self.process.terminate(Duration::from_secs(30)).await?;
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.process.try_status(), Ok(None))
    }

    /// `ospkg_leader` is 1 on `/metrics`.
    async fn is_leader(&self) -> bool {
        let Ok((200, body)) = self.http_get("/metrics").await else {
            return false;
        };
        body.lines()
            .filter(|l| l.starts_with("ospkg_leader"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .any(|v| v == 1.0)
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let stat = self.proc()?.stat()?;
        Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
    }

    /// The process's memory now, in MiB.
    pub fn memory(&self) -> Result<Memory> {
        let status = self.proc()?.status()?;
        let mib = |kib: Option<u64>| kib.unwrap_or(0) as f64 / 1024.0;
        Ok(Memory {
            peak_rss_mib: mib(status.vmhwm),
            rss_mib: mib(status.vmrss),
            anon_mib: mib(status.rssanon),
            file_mib: mib(status.rssfile),
        })
    }

    fn proc(&self) -> Result<ProcProcess> {
        let pid = i32::try_from(self.pid())?;
        Ok(ProcProcess::new(pid)?)
    }

    /// `GET http://<metrics addr><path>`: status code and body.
    async fn http_get(&self, path: &str) -> Result<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(&self.metrics_addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.metrics_addr);
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response);
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no HTTP status line")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        Ok((code, body.to_string()))
    }
}
