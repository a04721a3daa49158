//! A local simulator of the Amazon OpenSearch Service custom-package APIs, with a minimal S3
//! and a minimal STS (AssumeRole, GetCallerIdentity), for tests, benchmarks and demos. Start it in-process with [`start`] or run the `ospkg-sim`
//! binary; drive it with any AWS SDK (endpoint URL, any region, any credentials) and control it
//! with [`AdminClient`].

pub mod admin;
pub mod artifact;
mod call_record;
pub mod client;
pub mod clock;
pub mod error;
pub mod faults;
pub mod journal;
pub mod s3;
pub mod server;
pub mod service;
pub mod state;
pub mod sts;
pub mod validate;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use admin::{ResetOptions, RevokeSessions, ScriptRequest};
pub use client::{AdminClient, AdminError};
pub use clock::{ClockMode, ClockSettings, Durations};
pub use faults::{FaultConfig, OperationFaults, RateLimit, ScriptedFault};
pub use journal::{EntryKind, LogEntry};
pub use s3::BucketSettings;
pub use service::Quotas;
pub use state::DomainDecl;
pub use sts::{StsRole, StsSession};

use service::{Service, Settings, Sim, Snapshot};

/// Largest request body accepted (plugin zips can be large).
const BODY_LIMIT: usize = 512 * 1024 * 1024;

/// How the simulator starts. `Default` gives the binary's defaults with both listeners on
/// ephemeral loopback ports.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub s3_listen: SocketAddr,
    pub default_region: String,
    pub default_account: String,
    /// Domains that exist from the start. `region: None` means every region; `account: None`
    /// the default account.
    pub domains: Vec<DomainDecl>,
    pub durations: Durations,
    pub clock_mode: ClockMode,
    pub clock_speed: f64,
    /// Initial fault configuration (its `seed` seeds the fault RNG).
    pub faults: FaultConfig,
    /// Custom packages per (account, region).
    pub package_quota: usize,
    /// Associations per domain.
    pub domain_quota: usize,
    /// Load state from this file at start (if it exists) and write it back while running.
    pub state_file: Option<PathBuf>,
    /// Roles the STS lets callers assume from the start (and after a reset with
    /// `keepRoles: false`). None by default: every AssumeRole is AccessDenied.
    pub sts_roles: Vec<StsRole>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            s3_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            default_region: "us-east-1".to_string(),
            default_account: "123456789012".to_string(),
            domains: Vec::new(),
            durations: Durations::default(),
            clock_mode: ClockMode::Real,
            clock_speed: 1.0,
            faults: FaultConfig::default(),
            package_quota: 25,
            domain_quota: 20,
            state_file: None,
            sts_roles: Vec::new(),
        }
    }
}

impl SimConfig {
    /// Declares a domain in the default account, in every region.
    pub fn domain(mut self, name: &str, engine_version: &str) -> Self {
        self.domains.push(DomainDecl {
            name: name.to_string(),
            engine_version: engine_version.to_string(),
            region: None,
            account: None,
        });
        self
    }

    /// A clock that moves only through the admin API (deterministic tests).
    pub fn manual_clock(mut self) -> Self {
        self.clock_mode = ClockMode::Manual;
        self
    }

    pub fn durations(mut self, durations: Durations) -> Self {
        self.durations = durations;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.faults.seed = seed;
        self
    }

    /// Faults from the start (e.g. `failAssociations` for a domain).
    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    pub fn domain_quota(mut self, quota: usize) -> Self {
        self.domain_quota = quota;
        self
    }

    pub fn package_quota(mut self, quota: usize) -> Self {
        self.package_quota = quota;
        self
    }

    pub fn region(mut self, region: &str) -> Self {
        self.default_region = region.to_string();
        self
    }

    pub fn account(mut self, account: &str) -> Self {
        self.default_account = account.to_string();
        self
    }

    /// A role the STS lets callers assume from the start.
    pub fn role(mut self, role: StsRole) -> Self {
        self.sts_roles.push(role);
        self
    }
}

/// A started simulator; both listeners stop when it is dropped.
pub struct RunningSim {
    endpoint: String,
    s3_endpoint: String,
    sim: Sim,
    state_file: Option<PathBuf>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSim {
    /// The package API (and `/_sim/`) base URL, e.g. `http://127.0.0.1:4510`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The S3 listener's base URL (path-style).
    pub fn s3_endpoint(&self) -> String {
        self.s3_endpoint.clone()
    }

    pub fn admin(&self) -> AdminClient {
        AdminClient::new(self.endpoint.clone())
    }

    /// Stops serving and writes the `--state` snapshot, if one is configured.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(path) = &self.state_file {
            write_snapshot(&self.sim, path).await?;
        }
        Ok(())
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds both listeners and serves until the returned handle is dropped or shut down.
pub async fn start(config: SimConfig) -> anyhow::Result<RunningSim> {
    config
        .faults
        .check()
        .map_err(|e| anyhow::anyhow!("invalid fault configuration: {e}"))?;
    sts::StsState::default()
        .set_roles(config.sts_roles.clone())
        .map_err(|e| anyhow::anyhow!("invalid STS role: {e}"))?;
    let mut service = Service::new(
        Settings {
            default_account: config.default_account.clone(),
            default_region: config.default_region.clone(),
            package_quota: config.package_quota,
            domain_quota: config.domain_quota,
            domains: config
                .domains
                .iter()
                .cloned()
                .map(|mut d| {
                    d.account
                        .get_or_insert_with(|| config.default_account.clone());
                    d
                })
                .collect(),
            faults: config.faults.clone(),
            sts_roles: config.sts_roles.clone(),
        },
        clock::Clock::new(config.clock_mode, config.clock_speed, config.durations),
    );
    if let Some(path) = &config.state_file
        && path.exists()
    {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading state file {}", path.display()))?;
        let snapshot: Snapshot = serde_json::from_str(&text)
            .with_context(|| format!("parsing state file {}", path.display()))?;
        service.restore(snapshot);
    }
    let sim: Sim = Arc::new(parking_lot::Mutex::new(service));

    let api = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let s3 = tokio::net::TcpListener::bind(config.s3_listen)
        .await
        .with_context(|| format!("binding {}", config.s3_listen))?;
    let endpoint = format!("http://{}", api.local_addr()?);
    let s3_endpoint = format!("http://{}", s3.local_addr()?);

    let api_router = Router::new()
        .nest("/_sim", admin::router())
        .fallback(server::handle)
        .with_state(sim.clone())
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let s3_router = s3::router(sim.clone()).layer(DefaultBodyLimit::max(BODY_LIMIT));

    let (stop, stopped) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(serve(api, api_router, stopped.clone())),
        tokio::spawn(serve(s3, s3_router, stopped.clone())),
    ];
    if let Some(path) = config.state_file.clone() {
        tasks.push(tokio::spawn(persist(sim.clone(), path, stopped)));
    }
    Ok(RunningSim {
        endpoint,
        s3_endpoint,
        sim,
        state_file: config.state_file,
        stop,
        tasks,
    })
}

async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "listener failed");
    }
}

/// Writes the snapshot about once a second while something changed.
async fn persist(sim: Sim, path: PathBuf, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let dirty = std::mem::take(&mut sim.lock().dirty);
        if dirty && let Err(e) = write_snapshot(&sim, &path).await {
            tracing::warn!(error = %e, path = %path.display(), "could not write state file");
        }
    }
}

async fn write_snapshot(sim: &Sim, path: &std::path::Path) -> anyhow::Result<()> {
    let text = serde_json::to_string(&sim.lock().snapshot())?;
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, text)
        .await
        .with_context(|| format!("writing {}", tmp.display()))?;
    tokio::fs::rename(&tmp, path)
        .await
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
