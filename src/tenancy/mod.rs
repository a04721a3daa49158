//! Tenancy: which AWS identity the objects of a namespace use, and what they may touch.
//!
//! A cluster admin grants an IAM role to namespaces with a cluster-scoped
//! [`OpenSearchPackageRole`]. An object in a namespace that exactly one role selects is
//! reconciled with that role (its account is the package's), and only within its grant
//! ([`grant`]). Two or more roles: refused. None: the operator's own identity, or refused when
//! the operator runs with `--unbound-namespaces deny`. A refused object is Stalled and no AWS
//! call is made for it.
//!
//! The roles and the namespaces' labels come from watch caches ([`Tenancy::watched`], [`Watches::run`]); a change
//! that rebinds a namespace wakes its objects. [`roles`] checks each role with STS and writes
//! its status.

pub mod grant;
pub mod roles;
#[cfg(test)]
mod tests;
mod watch;

pub use watch::Watches;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Namespace;
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Client, ResourceExt};
use tracing::info;

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
        let labels = caches.labels(namespace);
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
        Some(
            self.watched
                .iter()
                .any(|namespace| selects(role, &caches.labels(namespace))),
        )
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
    /// A namespace's labels; none for a namespace not in the cache (not created yet).
    fn labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default()
    }

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
