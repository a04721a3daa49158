//! Process wiring: the AWS SDK configuration the operator ships with, the metered backend,
//! the health and metrics server, and the kube-runtime controllers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tracing::{debug, info};

use crate::backend::PackageBackend;
use crate::backend::aws::{AwsBackend, Timeouts, sdk_defaults};
use crate::backend::metered::Metered;
use crate::controller::{Context, error_policy, reconcile};
use crate::crd::{FIELD_MANAGER, OpenSearchPackage};
use crate::metrics::Metrics;
use crate::server::Health;

/// Controller settings taken from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub default_region: String,
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub resync: Duration,
    pub concurrency: u16,
}

/// Wires the operator together and runs it until SIGINT/SIGTERM.
pub async fn run(args: crate::config::RunArgs) -> anyhow::Result<()> {
    let mut loader = sdk_defaults(Timeouts {
        attempt: args.aws_attempt_timeout,
        operation: args.aws_operation_timeout,
    });
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let sdk_config = loader.load().await;
    let default_region = sdk_config
        .region()
        .map(ToString::to_string)
        .context("no AWS region: set --region (OSPKG_REGION) or AWS_REGION")?;

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let backend = Metered::new(
        AwsBackend::new(sdk_config),
        metrics.clone(),
        args.aws_rate_limit,
    );
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    info!(addr = %args.metrics_addr, region = %default_region, "serving /metrics, /healthz and /readyz");
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        async move {
            let _ = server_stopped.await;
        },
    ));

    let settings = Settings {
        default_region,
        namespaces: dedup(&args.namespaces),
        label_selector: args.label_selector.clone(),
        resync: args.resync_interval,
        concurrency: args.concurrency,
    };
    run_controllers(client, backend, metrics, health, settings).await;
    info!("shutting down");
    let _ = stop_server.send(());
    server.await.context("metrics server task")??;
    Ok(())
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

/// Runs the controllers until a shutdown signal: one kube-runtime controller per watched
/// namespace (or one for all), sharing the context.
pub async fn run_controllers<B: PackageBackend>(
    client: Client,
    backend: B,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    settings: Settings,
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
    let controller_config = ControllerConfig::default().concurrency(settings.concurrency);
    let controllers: Vec<Controller<OpenSearchPackage>> = apis
        .into_iter()
        .map(|api| {
            Controller::new(api, watcher_config.clone())
                .with_config(controller_config.clone())
                .shutdown_on_signal()
        })
        .collect();
    let stores: Vec<Store<OpenSearchPackage>> = controllers.iter().map(|c| c.store()).collect();

    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context::new(
        client,
        backend,
        recorder,
        metrics,
        settings.default_region,
        settings.resync,
        stores.clone(),
    ));
    let readiness = tokio::spawn(report_readiness(stores, health));

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
    futures::future::join_all(runs).await;
    readiness.abort();
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
