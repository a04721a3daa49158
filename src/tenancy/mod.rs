//! Tenancy: which AWS identity the objects of a namespace use, and what they may touch.
//!
//! A cluster admin grants an IAM role to namespaces with a cluster-scoped
//! [`OpenSearchPackageRole`]. An object in a namespace that exactly one role selects is
//! reconciled with that role (its account is the package's), and only within its grant
//! ([`grant`]). Two or more roles: refused. None: the operator's own identity, or refused when
//! the operator runs with `--unbound-namespaces deny`. A refused object is Stalled and no AWS
//! call is made for it.
//!
//! The roles and the namespaces' labels come from watch caches ([`Tenancy::watch`]); a change
//! that rebinds a namespace wakes its objects. [`roles`] checks each role with STS and writes
//! its status.

pub mod grant;
pub mod roles;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{debug, info};

use crate::backend::{Identity, PackageBackend, RoleSession, Scope};
use crate::controller::Context;
use crate::crd::{OpenSearchPackage, OpenSearchPackageRole};
use crate::vocabulary::StallReason;

/// What the objects of a namespace that no OpenSearchPackageRole selects get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UnboundNamespaces {
    /// The operator's own identity, without restrictions (a single-team cluster).
    #[default]
    OwnIdentity,
    /// Nothing: their objects are Stalled (reason NoRole) and no AWS call is made (a shared
    /// cluster, where every team must be granted a role).
    Deny,
}

/// The identity a namespace's objects use.
#[derive(Clone, Debug)]
pub enum Binding {
    /// The operator's own identity.
    Own,
    /// The one role that selects the namespace.
    Role(Arc<OpenSearchPackageRole>),
    /// The roles (two or more) that select the namespace.
    Ambiguous(Vec<String>),
    /// No role selects the namespace, and such namespaces are refused.
    Denied,
}

impl Binding {
    /// A short value that changes whenever the binding does (a role's spec or readiness).
    fn fingerprint(&self) -> String {
        match self {
            Self::Own => "own".into(),
            Self::Denied => "denied".into(),
            Self::Ambiguous(names) => format!("ambiguous:{}", names.join(",")),
            Self::Role(role) => format!(
                "role:{}:{}:{}",
                role.name_any(),
                role.metadata.generation.unwrap_or_default(),
                role.is_ready()
            ),
        }
    }
}

/// Why an object may not reach AWS now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Stalled for a reason outside the object (rechecked every minute and on every change
    /// of the roles or namespace labels).
    Stalled {
        reason: StallReason,
        message: String,
    },
    /// The role and namespace caches have not synced yet.
    NotSynced,
}

/// The roles, the namespaces' labels, and the policy for unselected namespaces.
pub struct Tenancy {
    /// `None`: no roles are watched (tests of the reconcile alone): every namespace is unbound.
    caches: Option<Caches>,
    unbound: UnboundNamespaces,
    /// The namespaces this operator watches (empty: all).
    watched: Vec<String>,
    own_account: tokio::sync::OnceCell<String>,
    /// The last binding seen per namespace, to wake a namespace's objects when it changes.
    fingerprints: Mutex<HashMap<String, String>>,
}

struct Caches {
    roles: Store<OpenSearchPackageRole>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
}

/// Keeps the watch caches of [`Tenancy`] filled; run it next to the controllers.
pub struct Watches {
    roles: reflector::store::Writer<OpenSearchPackageRole>,
    namespaces: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    client: Client,
}

impl Default for Tenancy {
    fn default() -> Self {
        Self::unwatched(UnboundNamespaces::OwnIdentity)
    }
}

impl Tenancy {
    /// No roles: every namespace is unbound (tests of the reconcile alone).
    pub fn unwatched(unbound: UnboundNamespaces) -> Self {
        Self {
            caches: None,
            unbound,
            watched: Vec::new(),
            own_account: tokio::sync::OnceCell::new(),
            fingerprints: Mutex::new(HashMap::new()),
        }
    }

    /// Roles and namespaces from watch caches that [`Watches::run`] fills, for an operator
    /// that watches `namespaces` (empty: all).
    pub fn watched(
        client: Client,
        unbound: UnboundNamespaces,
        namespaces: Vec<String>,
    ) -> (Self, Watches) {
        let (roles, roles_writer) = reflector::store();
        let (namespaces_cache, namespaces_writer) = reflector::store();
        let tenancy = Self {
            caches: Some(Caches {
                roles,
                namespaces: namespaces_cache,
            }),
            watched: namespaces,
            ..Self::unwatched(unbound)
        };
        let watches = Watches {
            roles: roles_writer,
            namespaces: namespaces_writer,
            client,
        };
        (tenancy, watches)
    }

    /// The binding of `namespace` now; `None` until the caches have synced.
    pub fn binding(&self, namespace: &str) -> Option<Binding> {
        let Some(caches) = &self.caches else {
            return Some(self.unbound_binding());
        };
        if !caches.ready() {
            return None;
        }
        let labels = caches
            .namespaces
            .get(&ObjectRef::new(namespace))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default();
        let mut selecting: Vec<Arc<OpenSearchPackageRole>> = caches
            .roles
            .state()
            .into_iter()
            .filter(|role| selects(role, &labels))
            .collect();
        selecting.sort_by_key(|role| role.name_any());
        Some(match selecting.len() {
            0 => self.unbound_binding(),
            1 => Binding::Role(selecting.remove(0)),
            _ => Binding::Ambiguous(selecting.iter().map(|r| r.name_any()).collect()),
        })
    }

    /// Whether the role selects a namespace this operator watches (always, when it watches
    /// every namespace); `None` until the caches have synced.
    pub fn selects_watched(&self, role: &OpenSearchPackageRole) -> Option<bool> {
        if self.watched.is_empty() {
            return Some(true);
        }
        let caches = self.caches.as_ref()?;
        if !caches.ready() {
            return None;
        }
        Some(self.watched.iter().any(|namespace| {
            let labels = caches
                .namespaces
                .get(&ObjectRef::new(namespace))
                .map(|ns| ns.labels().clone())
                .unwrap_or_default();
            selects(role, &labels)
        }))
    }

    /// The first (by name) namespace this operator watches that the role selects: the
    /// session its check assumes the role with, as that namespace's objects do.
    pub fn selected_namespace(&self, role: &OpenSearchPackageRole) -> Option<String> {
        let caches = self.caches.as_ref()?;
        let mut names: Vec<String> = caches
            .namespaces
            .state()
            .iter()
            .filter(|ns| selects(role, ns.labels()))
            .map(|ns| ns.name_any())
            .filter(|name| self.watched.is_empty() || self.watched.contains(name))
            .collect();
        names.sort();
        names.into_iter().next()
    }

    fn unbound_binding(&self) -> Binding {
        match self.unbound {
            UnboundNamespaces::OwnIdentity => Binding::Own,
            UnboundNamespaces::Deny => Binding::Denied,
        }
    }

    /// The account the namespace's objects reach now, when known without asking AWS (the
    /// role's, or the operator's own once asked).
    pub fn account_hint(&self, namespace: &str) -> Option<String> {
        match self.binding(namespace)? {
            Binding::Own => self.own_account.get().cloned(),
            Binding::Role(role) => {
                crate::backend::identity::role_account(&role.spec.role_arn).map(str::to_owned)
            }
            Binding::Ambiguous(_) | Binding::Denied => None,
        }
    }

    /// Where `obj`'s calls go (account, region, identity), or why it may not make any.
    /// `deleting`: only the identity is checked (the grant bounded what the object created).
    pub async fn scope<B: PackageBackend>(
        &self,
        backend: &B,
        obj: &OpenSearchPackage,
        region: &str,
        deleting: bool,
    ) -> Result<Scope, AccessError> {
        let namespace = obj.namespace().unwrap_or_default();
        let binding = self.binding(&namespace).ok_or(Refusal::NotSynced)?;
        let scope = match binding {
            Binding::Own => {
                let account = self
                    .own_account
                    .get_or_try_init(|| backend.own_account())
                    .await
                    .map_err(AccessError::OwnAccount)?
                    .clone();
                Scope::own(account, region)
            }
            Binding::Role(role) => {
                if !deleting {
                    grant::check(&obj.spec, &role).map_err(|message| Refusal::Stalled {
                        reason: StallReason::NotGranted,
                        message,
                    })?;
                }
                let account = crate::backend::identity::role_account(&role.spec.role_arn)
                    .ok_or_else(|| Refusal::Stalled {
                        reason: StallReason::RoleNotAssumable,
                        message: format!(
                            "OpenSearchPackageRole {} has an invalid roleARN {:?}",
                            role.name_any(),
                            role.spec.role_arn
                        ),
                    })?;
                Scope {
                    account: account.to_owned(),
                    region: region.to_owned(),
                    identity: Identity::Role(RoleSession {
                        role_arn: role.spec.role_arn.clone(),
                        external_id: role.spec.external_id.clone(),
                        namespace: namespace.clone(),
                    }),
                }
            }
            Binding::Ambiguous(names) => {
                return Err(Refusal::Stalled {
                    reason: StallReason::AmbiguousRole,
                    message: format!(
                        "namespace {namespace} is selected by more than one OpenSearchPackageRole ({}); a cluster admin must make exactly one select it",
                        names.join(", ")
                    ),
                }
                .into());
            }
            Binding::Denied => {
                return Err(Refusal::Stalled {
                    reason: StallReason::NoRole,
                    message: format!(
                        "no OpenSearchPackageRole selects namespace {namespace}, and this operator refuses such namespaces (--unbound-namespaces deny)"
                    ),
                }
                .into());
            }
        };
        let status = obj.status.clone().unwrap_or_default();
        let has_package = status.package_id.is_some() || status.in_flight.is_some();
        if let Some(recorded) = &status.account_id
            && has_package
            && *recorded != scope.account
        {
            return Err(Refusal::Stalled {
                reason: StallReason::AccountChanged,
                message: format!(
                    "the package lives in account {recorded}, but namespace {namespace} now reaches account {}; restore the namespace's role, or delete the object with deletionPolicy Retain",
                    scope.account
                ),
            }
            .into());
        }
        Ok(scope)
    }

    /// Wakes the objects of every namespace whose binding changed since the last call.
    fn rebind<B>(&self, ctx: &Context<B>) {
        let Some(caches) = &self.caches else {
            return;
        };
        if !caches.ready() {
            return;
        }
        let mut by_namespace: BTreeMap<String, Vec<Arc<OpenSearchPackage>>> = BTreeMap::new();
        for obj in ctx.cached_objects() {
            by_namespace
                .entry(obj.namespace().unwrap_or_default())
                .or_default()
                .push(obj);
        }
        let mut fingerprints = self
            .fingerprints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (namespace, objects) in by_namespace {
            let Some(binding) = self.binding(&namespace) else {
                return;
            };
            let now = binding.fingerprint();
            let before = fingerprints.insert(namespace.clone(), now.clone());
            if before.is_some_and(|b| b != now) {
                info!(%namespace, binding = %now, objects = objects.len(), "namespace rebound: waking its objects");
                for obj in objects {
                    // Its next read comes from a listing made after the change (made with
                    // the new identity), not from one that failed or predates it.
                    ctx.schedule.record_action(&obj);
                    ctx.schedule.make_due(&obj);
                    ctx.regions.wake(&obj);
                }
            }
        }
    }
}

/// Why [`Tenancy::scope`] gave no scope.
#[derive(Debug)]
pub enum AccessError {
    Refused(Refusal),
    /// STS did not say which account the operator's own identity is in.
    OwnAccount(crate::backend::BackendError),
}

impl From<Refusal> for AccessError {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

impl Caches {
    fn ready(&self) -> bool {
        // A store is ready once its watch delivered the first full list.
        futures::FutureExt::now_or_never(self.roles.wait_until_ready()).is_some_and(|r| r.is_ok())
            && futures::FutureExt::now_or_never(self.namespaces.wait_until_ready())
                .is_some_and(|r| r.is_ok())
    }
}

/// Whether the role's namespace selector matches these namespace labels. A selector that
/// does not parse matches nothing (the role's status says why).
fn selects(role: &OpenSearchPackageRole, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(role.spec.namespace_selector.clone()).is_ok_and(|s| s.matches(labels))
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

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::crd::OpenSearchPackageRoleSpec;

    fn role(name: &str, selector: &[(&str, &str)]) -> OpenSearchPackageRole {
        let labels = selector
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OpenSearchPackageRole::new(
            name,
            OpenSearchPackageRoleSpec {
                role_arn: format!("arn:aws:iam::111122223333:role/{name}"),
                external_id: None,
                namespace_selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(labels),
                    ..Default::default()
                },
                allowed_domains: Vec::new(),
                allowed_source_buckets: Vec::new(),
                allow_adoption: false,
            },
        )
    }

    fn namespace(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            _phantom: Default::default(),
        }
    }

    /// A tenancy whose caches hold these roles and namespaces (synced unless `synced` is
    /// false).
    fn tenancy(
        roles: Vec<OpenSearchPackageRole>,
        namespaces: Vec<PartialObjectMeta<Namespace>>,
        unbound: UnboundNamespaces,
        synced: bool,
    ) -> Tenancy {
        let (role_store, mut role_writer) = reflector::store();
        let (ns_store, mut ns_writer) = reflector::store();
        role_writer.apply_watcher_event(&Event::Init);
        for role in roles {
            role_writer.apply_watcher_event(&Event::InitApply(role));
        }
        ns_writer.apply_watcher_event(&Event::Init);
        for ns in namespaces {
            ns_writer.apply_watcher_event(&Event::InitApply(ns));
        }
        if synced {
            role_writer.apply_watcher_event(&Event::InitDone);
            ns_writer.apply_watcher_event(&Event::InitDone);
        }
        Tenancy {
            caches: Some(Caches {
                roles: role_store,
                namespaces: ns_store,
            }),
            ..Tenancy::unwatched(unbound)
        }
    }

    fn fixture(unbound: UnboundNamespaces, synced: bool) -> Tenancy {
        tenancy(
            vec![
                role("team-a", &[("team", "a")]),
                role("team-b", &[("team", "b")]),
                role("shared-1", &[("shared", "yes")]),
                role("shared-2", &[("shared", "yes")]),
            ],
            vec![
                namespace("a", &[("team", "a")]),
                namespace("b", &[("team", "b")]),
                namespace("both", &[("shared", "yes")]),
                namespace("none", &[]),
            ],
            unbound,
            synced,
        )
    }

    #[test]
    fn a_namespace_selected_by_one_role_is_bound_to_it() {
        let tenancy = fixture(UnboundNamespaces::OwnIdentity, true);
        for (ns, expected) in [("a", "team-a"), ("b", "team-b")] {
            match tenancy.binding(ns) {
                Some(Binding::Role(role)) => assert_eq!(role.name_any(), expected),
                other => panic!("{ns}: {other:?}"),
            }
        }
        assert_eq!(tenancy.account_hint("a").as_deref(), Some("111122223333"));
    }

    #[test]
    fn two_roles_are_ambiguous_and_none_follows_the_flag() {
        let open = fixture(UnboundNamespaces::OwnIdentity, true);
        match open.binding("both") {
            Some(Binding::Ambiguous(names)) => assert_eq!(names, ["shared-1", "shared-2"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(open.binding("none"), Some(Binding::Own)));
        // A namespace not in the cache (not created yet) has no labels: no role selects it.
        assert!(matches!(open.binding("unknown"), Some(Binding::Own)));
        let shared = fixture(UnboundNamespaces::Deny, true);
        assert!(matches!(shared.binding("none"), Some(Binding::Denied)));
        assert!(matches!(shared.binding("a"), Some(Binding::Role(_))));
    }

    #[test]
    fn nothing_is_bound_before_the_caches_synced() {
        // Falling back to the operator's own identity before the roles are known would let
        // a namespace reach the operator's account: wait instead.
        let tenancy = fixture(UnboundNamespaces::OwnIdentity, false);
        assert!(tenancy.binding("a").is_none());
        assert!(tenancy.binding("none").is_none());
    }

    #[test]
    fn a_binding_changes_its_fingerprint_with_the_role() {
        let mut first = role("team-a", &[("team", "a")]);
        first.metadata.generation = Some(1);
        let mut second = first.clone();
        second.metadata.generation = Some(2);
        let fingerprint = |r: OpenSearchPackageRole| Binding::Role(Arc::new(r)).fingerprint();
        assert_ne!(fingerprint(first.clone()), fingerprint(second));
        assert_eq!(fingerprint(first.clone()), fingerprint(first));
        assert_ne!(Binding::Own.fingerprint(), Binding::Denied.fingerprint());
    }

    fn object(ns: &str, domain: &str) -> OpenSearchPackage {
        let mut obj: OpenSearchPackage = serde_json::from_value(serde_json::json!({
            "apiVersion": "ospkg.dev/v1alpha1",
            "kind": "OpenSearchPackage",
            "metadata": {"name": "synonyms", "namespace": ns},
            "spec": {
                "packageType": "TXT-DICTIONARY",
                "source": {"s3BucketName": "dicts", "s3Key": "s.txt"},
                "domains": [{"name": domain}],
            },
        }))
        .expect("object parses");
        obj.status = Some(Default::default());
        obj
    }

    fn refusal(result: Result<Scope, AccessError>) -> Option<StallReason> {
        match result {
            Err(AccessError::Refused(Refusal::Stalled { reason, .. })) => Some(reason),
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_scope_is_the_roles_and_the_grant_and_account_are_enforced() {
        let mut granted = role("team-a", &[("team", "a")]);
        granted.spec.allowed_domains = vec!["search-*".into()];
        granted.spec.allowed_source_buckets = vec!["dicts".into()];
        let tenancy = tenancy(
            vec![granted],
            vec![namespace("a", &[("team", "a")])],
            UnboundNamespaces::Deny,
            true,
        );
        // Never called: a role's account comes from its ARN.
        let backend = crate::backend::aws::AwsBackend::for_endpoint("http://127.0.0.1:1").await;
        let scope = tenancy
            .scope(&backend, &object("a", "search-1"), "eu-west-1", false)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(scope.account, "111122223333");
        assert_eq!(scope.region, "eu-west-1");
        match &scope.identity {
            Identity::Role(session) => {
                assert_eq!(session.namespace, "a");
                assert_eq!(session.role_arn, "arn:aws:iam::111122223333:role/team-a");
            }
            other => panic!("{other:?}"),
        }
        let outside = object("a", "billing");
        assert_eq!(
            refusal(tenancy.scope(&backend, &outside, "eu-west-1", false).await),
            Some(StallReason::NotGranted)
        );
        // Deleting checks the identity only: the grant bounded what the object created.
        assert!(
            tenancy
                .scope(&backend, &outside, "eu-west-1", true)
                .await
                .is_ok()
        );
        // A package recorded in another account is not reached through this one.
        let mut moved = object("a", "search-1");
        moved.status = Some(crate::crd::OpenSearchPackageStatus {
            account_id: Some("999999999999".into()),
            package_id: Some("F1".into()),
            ..Default::default()
        });
        assert_eq!(
            refusal(tenancy.scope(&backend, &moved, "eu-west-1", false).await),
            Some(StallReason::AccountChanged)
        );
        assert_eq!(
            refusal(
                tenancy
                    .scope(&backend, &object("other", "search-1"), "eu-west-1", false)
                    .await
            ),
            Some(StallReason::NoRole)
        );
    }
}
