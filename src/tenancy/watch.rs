//! Keeping the tenancy caches filled: the OpenSearchPackageRoles and the namespaces' labels
//! (metadata only), and waking the objects of namespaces whose binding changed.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use tracing::debug;

use crate::backend::PackageBackend;
use crate::controller::Context;
use crate::crd::OpenSearchPackageRole;

/// Keeps the watch caches of [`Tenancy`](super::Tenancy) filled; run it next to the controllers.
pub struct Watches {
    pub(super) roles: reflector::store::Writer<OpenSearchPackageRole>,
    pub(super) namespaces: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    pub(super) client: Client,
}

impl Watches {
    /// Fills the caches until `ctx` is gone, waking the objects of namespaces whose binding
    /// changed (a role created, changed, deleted or checked; a namespace relabelled).
    pub async fn run<B: PackageBackend>(self, ctx: std::sync::Weak<Context<B>>) {
        let roles = reflector::reflector(
            self.roles,
            watcher(
                Api::<OpenSearchPackageRole>::all(self.client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .map(|_| ())
        .boxed();
        let namespaces = reflector::reflector(
            self.namespaces,
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(self.client),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .map(|_| ())
        .boxed();
        let mut changes = futures::stream::select(roles, namespaces);
        // Bursts of events (a list at start) are handled once.
        while changes.next().await.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            while futures::FutureExt::now_or_never(changes.next()).is_some_and(|c| c.is_some()) {}
            let Some(ctx) = ctx.upgrade() else {
                return;
            };
            debug!("roles or namespaces changed");
            ctx.tenancy.rebind(&ctx);
        }
    }
}
