//! Process wiring: the AWS SDK configuration the operator ships with, the metered backend,
//! the health and metrics server, leader election, graceful shutdown and the kube-runtime
//! controllers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt, TryStreamExt as _};
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt as _, watcher};
use tracing::{debug, info, warn};

use crate::backend::PackageBackend;
use crate::backend::aws::{AwsBackend, Timeouts, sdk_defaults};
use crate::backend::identity::Identities;
use crate::backend::metered::Metered;
use crate::backend::s3::S3Backend;
use crate::controller::{Context, PackageNames, Wakers, error_policy, reconcile};
use crate::crd::{FIELD_MANAGER, OpenSearchPackage, OpenSearchPackageRole, slim};
use crate::leader::{self, Election, Leadership};
use crate::metrics::Metrics;
use crate::server::Health;
use crate::source::{FollowSettings, Follower};
use crate::tenancy::{Tenancy, UnboundNamespaces, roles};

/// Controller settings taken from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub default_region: String,
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub resync: Duration,
    pub concurrency: u16,
    /// AWS calls per second per (account, region), as the backend is limited to.
    pub aws_rate: std::num::NonZeroU32,
    /// How long in-flight reconciles may run on after a shutdown request.
    pub shutdown_grace: Duration,
    /// Which objects follow their S3 source's content, and how often it is read.
    pub follow: FollowSettings,
    /// What namespaces no OpenSearchPackageRole selects get.
    pub unbound_namespaces: UnboundNamespaces,
    /// How often each OpenSearchPackageRole is assumed again.
    pub role_check_interval: Duration,
    /// Whether OpenSearchPackageRoles and Namespaces are watched (off only in tests of the
    /// reconcile that install no role CRD).
    pub roles: bool,
}

impl Settings {
    fn from_args(args: &crate::config::RunArgs, default_region: String) -> Self {
        Self {
            default_region,
            namespaces: dedup(&args.namespaces),
            label_selector: args.label_selector.clone(),
            resync: args.resync_interval,
            concurrency: args.concurrency,
            aws_rate: args.aws_rate_limit,
            shutdown_grace: args.shutdown_grace_period,
            follow: FollowSettings {
                by_default: args.follow_content,
                check_interval: args.source_check_interval,
            },
            unbound_namespaces: args.unbound_namespaces,
            role_check_interval: args.role_check_interval,
            roles: true,
        }
    }
}

/// Wires the operator together and runs it until SIGINT/SIGTERM.
pub async fn run(args: crate::config::RunArgs) -> anyhow::Result<()> {
    check_ca_bundle()?;
    let sdk_config = aws_config(&args).await;
    let default_region = sdk_config
        .region()
        .map(ToString::to_string)
        .context("no AWS region: set --region (OSPKG_REGION) or AWS_REGION")?;
    let election = election(&args)?;
    let leadership = Arc::new(match election {
        Some(_) => Leadership::elected(),
        None => Leadership::always(),
    });

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    // One set of role sessions for the package and S3 clients: one AssumeRole serves both.
    let identities = Arc::new(Identities::new(sdk_config.clone()));
    let backend = Arc::new(
        Metered::new(
            AwsBackend::with_identities(sdk_config.clone(), identities.clone()),
            metrics.clone(),
            args.aws_rate_limit,
        )
        .with_leadership(leadership.clone()),
    );
    let s3 = Arc::new(
        S3Backend::new(&sdk_config, metrics.clone(), args.aws_rate_limit)
            .with_identities(identities),
    );
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;

    let (stop_server, server) = serve_http(args.metrics_addr, &metrics, &health).await?;
    info!(addr = %args.metrics_addr, region = %default_region, "serving /metrics, /healthz and /readyz");

    let settings = Settings::from_args(&args, default_region);
    let stop = shutdown_signal();
    let shared = Shared {
        metrics: metrics.clone(),
        health: health.clone(),
        leadership: leadership.clone(),
        s3: Some(s3),
    };
    // Each term as leader starts fresh controllers (watch caches, schedules, memory).
    let lead = || {
        run_controllers(
            client.clone(),
            backend.clone(),
            shared.clone(),
            settings.clone(),
            stop.clone(),
        )
    };
    match election {
        None => {
            metrics.set_leader(true);
            lead().await;
        }
        Some(election) => {
            let on_change = |leading: bool| {
                metrics.set_leader(leading);
                // A standby is ready (it does its job: standing by); a new leader is ready
                // once its watch caches have synced.
                health.set_ready(!leading);
            };
            leader::run(
                client.clone(),
                election,
                &leadership,
                stop.clone(),
                on_change,
                lead,
            )
            .await?;
        }
    }
    info!("shutting down");
    let _ = stop_server.send(());
    server.await.context("metrics server task")??;
    Ok(())
}

/// The AWS SDK's HTTPS client needs CA certificates and panics without any: say so instead.
fn check_ca_bundle() -> anyhow::Result<()> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "no CA certificates found for TLS to AWS: install the system CA bundle (ca-certificates) or point SSL_CERT_FILE at one ({})",
            errors.join("; ")
        );
    }
    Ok(())
}

/// The AWS SDK configuration from the shipped defaults and the command line.
async fn aws_config(args: &crate::config::RunArgs) -> aws_config::SdkConfig {
    let mut loader = sdk_defaults(Timeouts {
        attempt: args.aws_attempt_timeout,
        operation: args.aws_operation_timeout,
    });
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    loader.load().await
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Starts the HTTP server for /metrics, /healthz and /readyz; it stops when the returned
/// sender is used or dropped.
async fn serve_http(
    addr: std::net::SocketAddr,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) -> anyhow::Result<(tokio::sync::oneshot::Sender<()>, ServerTask)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Ok((stop, server))
}

/// The leader election settings, or `None` when it is switched off.
fn election(args: &crate::config::RunArgs) -> anyhow::Result<Option<Election>> {
    if !args.leader_election {
        return Ok(None);
    }
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(leader::own_namespace)
        .context(
            "leader election needs the Lease's namespace: set --leader-election-namespace (OSPKG_LEADER_ELECTION_NAMESPACE) or POD_NAMESPACE",
        )?;
    Ok(Some(Election {
        lease_name: args.leader_election_lease_name.clone(),
        namespace,
        identity: leader::own_identity(),
        lease_duration: args.leader_election_lease_duration,
        renew_deadline: args.leader_election_renew_deadline,
        retry_period: args.leader_election_retry_period,
    }))
}

/// A channel that turns `true` on SIGTERM or SIGINT.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(error) => {
                    warn!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = terminate => info!("SIGTERM: finishing in-flight work"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT: finishing in-flight work"),
        }
        let _ = stop.send(true);
    });
    stopped
}

/// A namespace listed twice must not get two controllers over the same objects.
fn dedup(namespaces: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    namespaces
        .iter()
        .filter(|ns| seen.insert(ns.as_str()))
        .cloned()
        .collect()
}

/// What the controllers share with the rest of the process.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub leadership: Arc<Leadership>,
    /// Reads followed sources (HeadObject); `None`: no object can follow its source.
    pub s3: Option<Arc<S3Backend>>,
}

/// Runs the controllers until `stop` turns true: one kube-runtime controller per watched
/// namespace (or one for all), sharing the context. After `stop`, no new reconcile starts;
/// those in flight may finish within the shutdown grace period.
pub async fn run_controllers<B: PackageBackend>(
    client: Client,
    backend: B,
    shared: Shared,
    settings: Settings,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let stopped = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
        .shared()
    };
    let (controllers, wakers, names) = package_controllers(&client, &settings, stopped.clone());
    let stores: Vec<Store<OpenSearchPackage>> = controllers.iter().map(|c| c.store()).collect();

    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let (tenancy, tenancy_watches) = if settings.roles {
        let (tenancy, watches) = Tenancy::watched(
            client.clone(),
            settings.unbound_namespaces,
            settings.namespaces.clone(),
        );
        (tenancy, Some(watches))
    } else {
        (Tenancy::unwatched(settings.unbound_namespaces), None)
    };
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            backend,
            reporter,
            shared.metrics,
            settings.default_region,
            settings.resync,
            stores.clone(),
        )
        .with_leadership(shared.leadership)
        .with_wakers(wakers)
        .with_package_names(names)
        .with_source(Follower::new(settings.follow, shared.s3))
        .with_tenancy(tenancy)
        .with_concurrency(settings.concurrency.into())
        .with_aws_rate(settings.aws_rate),
    );
    let close_slots = {
        let (ctx, stopped) = (ctx.clone(), stopped.clone());
        tokio::spawn(async move {
            stopped.await;
            ctx.slots.close();
        })
    };
    let readiness = tokio::spawn(report_readiness(stores, shared.health));
    let watches = tenancy_watches.map(|w| tokio::spawn(w.run(Arc::downgrade(&ctx))));
    let role_ctx = Arc::new(roles::RoleContext::new(
        ctx.clone(),
        settings.role_check_interval,
    ));
    // The roles' status: assumed when they change and every check interval.
    let role_checks = settings.roles.then(|| {
        Controller::new(
            Api::<OpenSearchPackageRole>::all(client),
            watcher::Config::default(),
        )
        .graceful_shutdown_on(stopped.clone())
        .run(roles::reconcile, roles::error_policy, role_ctx)
        .for_each(|_| async {})
    });

    let runs = controllers.into_iter().map(|controller| {
        controller
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(object = %object.name, "reconciled"),
                    Err(error) => debug!(%error, "reconcile loop error"),
                }
            })
    });
    let grace = settings.shutdown_grace;
    let role_checks = async move {
        if let Some(role_checks) = role_checks {
            role_checks.await;
        }
    };
    tokio::select! {
        _ = futures::future::join(futures::future::join_all(runs), role_checks) => {}
        () = async { stopped.await; tokio::time::sleep(grace).await } => {
            warn!(?grace, "in-flight reconciles did not finish within the shutdown grace period");
        }
    }
    readiness.abort();
    close_slots.abort();
    if let Some(watches) = watches {
        watches.abort();
    }
}

/// One kube-runtime controller per watched namespace (or one for all), each with its own
/// slimmed watch cache, the channels through which the region observers wake their objects,
/// and the package names the watched objects claim.
fn package_controllers(
    client: &Client,
    settings: &Settings,
    stopped: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) -> (
    Vec<Controller<OpenSearchPackage>>,
    Wakers,
    Arc<PackageNames>,
) {
    let watcher_config = match &settings.label_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let apis: Vec<Api<OpenSearchPackage>> = if settings.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    // Unbounded here: `Context::slots` bounds the reconciles that work, in order (see there).
    let controller_config = ControllerConfig::default().concurrency(0);
    let mut wakers = Wakers::default();
    let names = Arc::new(PackageNames::default());
    let controllers = apis
        .into_iter()
        .zip(watched_namespaces(&settings.namespaces))
        .map(|(api, namespace)| {
            let (wake, woken) = futures::channel::mpsc::unbounded();
            wakers.route(namespace, wake);
            // The controller's own watch, with each object slimmed before it is cached, and
            // its package name counted before that.
            let (reader, writer) = reflector::store();
            let (stream, names) = (names.stream(), names.clone());
            let events = watcher(api, watcher_config.clone())
                .modify(slim)
                .inspect_ok(move |event| names.observe(stream, event));
            let objects = reflector(writer, events).applied_objects();
            Controller::for_stream(objects, reader)
                .with_config(controller_config.clone())
                .reconcile_on(woken)
                .graceful_shutdown_on(stopped.clone())
        })
        .collect();
    (controllers, wakers, names)
}

/// The namespace each controller watches, in the order of [`run_controllers`]'s APIs (`None`:
/// all).
fn watched_namespaces(namespaces: &[String]) -> Vec<Option<String>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    }
}

/// Marks the process ready once every watch cache has synced.
async fn report_readiness(stores: Vec<Store<OpenSearchPackage>>, health: Arc<Health>) {
    for store in &stores {
        // The store's readiness signal wakes only its most recent waiter, and the controller
        // waits on it too: poll it again every second instead of relying on a wake-up.
        loop {
            match tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
    }
    info!("watch caches synced");
    health.set_ready(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_listed_twice_is_watched_once() {
        let listed = ["a", "b", "a"].map(String::from);
        assert_eq!(dedup(&listed), ["a", "b"]);
    }
}
