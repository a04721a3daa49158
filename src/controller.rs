//! The reconcile loop: observe (AWS reads) → plan (pure) → act (one step) → status (server-side
//! apply) → requeue.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::backend::{
    BackendError, DomainAssociation, Package, PackageBackend, PackageFilter, PackageStatus,
};
use crate::crd::{FIELD_MANAGER, FINALIZER, InFlight, OpenSearchPackage, OpenSearchPackageStatus};
use crate::digest::SpecDigest;
use crate::metrics::Metrics;
use crate::plan::{self, CleanupStep, Observation, Step, package_name, reconcile_request};
use crate::status::{
    self, Outcome, READY, RECONCILING, STALLED, StallReason, WaitReason, apply_outcome,
};

/// Errors that end a reconcile early. AWS errors are not among them: they are handled in the
/// reconcile and written to status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no namespace")]
    NoNamespace,
}

impl Error {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::NoNamespace => "no_namespace",
        }
    }
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context<B> {
    pub client: Client,
    pub backend: B,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Region for objects that name none.
    pub default_region: String,
    /// Steady-state requeue interval (jittered ±10 %).
    pub resync: Duration,
    /// The watch caches: the only list of objects (name conflicts, prerequisites).
    pub stores: Vec<Store<OpenSearchPackage>>,
    pub snapshots: RegionSnapshots,
    backoff: Mutex<HashMap<String, u32>>,
    /// Per object: the fingerprint of the last reconcile and when the next one is due. A watch
    /// event that changes nothing the user controls (the operator's own status write) waits
    /// for that time instead of costing another round of AWS reads.
    due: Mutex<HashMap<String, (u64, Instant)>>,
}

impl<B: PackageBackend> Context<B> {
    pub fn new(
        client: Client,
        backend: B,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        default_region: String,
        resync: Duration,
        stores: Vec<Store<OpenSearchPackage>>,
    ) -> Self {
        Self {
            client,
            backend,
            recorder,
            metrics,
            default_region,
            resync,
            stores,
            // Half the resync: every object's steady-state check in one resync window is
            // served by at most two DescribePackages per region.
            snapshots: RegionSnapshots::new(resync / 2),
            backoff: Mutex::new(HashMap::new()),
            due: Mutex::new(HashMap::new()),
        }
    }

    /// Next delay for a transient failure of this object: 1 s doubling to 5 min, ±20 % jitter.
    fn next_backoff(&self, key: &str) -> Duration {
        let attempt = {
            let mut map = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(key.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let base = Duration::from_secs(1).saturating_mul(1 << attempt.saturating_sub(1).min(9));
        jitter(base.min(Duration::from_secs(300)), 0.2)
    }

    fn reset_backoff(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Time left until this object's next reconcile is due, when nothing the user controls
    /// changed since the last one.
    fn not_yet_due(&self, key: &str, fingerprint: u64) -> Option<Duration> {
        let due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let (last, at) = due.get(key)?;
        (*last == fingerprint)
            .then(|| at.checked_duration_since(Instant::now()))
            .flatten()
    }

    fn schedule(&self, key: &str, fingerprint: u64, delay: Duration) {
        self.due
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), (fingerprint, Instant::now() + delay));
    }

    /// Drops the object's schedule so its next reconcile runs in full, as when its requeue
    /// timer fires (tests stand in for the timer with it).
    pub fn make_due(&self, obj: &OpenSearchPackage) {
        self.due
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&object_key(obj));
    }

    fn forget(&self, key: &str) {
        self.due
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.reset_backoff(key);
    }

    fn resync_delay(&self) -> Duration {
        jitter(self.resync, 0.1)
    }
}

fn jitter(d: Duration, fraction: f64) -> Duration {
    let factor = rand::rng().random_range(1.0 - fraction..=1.0 + fraction);
    d.mul_f64(factor)
}

/// One DescribePackages per region per resync window, shared by every settled object in that
/// region. Objects with work under way read their package directly.
pub struct RegionSnapshots {
    max_age: Duration,
    regions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Snapshot>>>>>,
}

struct Snapshot {
    taken: Instant,
    packages: Arc<Vec<Package>>,
}

impl RegionSnapshots {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            regions: Mutex::new(HashMap::new()),
        }
    }

    /// Every package of the region, fetched at most once per `max_age`; concurrent callers
    /// wait for the one fetch in flight.
    pub async fn get<B: PackageBackend>(
        &self,
        backend: &B,
        region: &str,
    ) -> Result<Arc<Vec<Package>>, BackendError> {
        let slot = self
            .regions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(region.to_owned())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(snapshot) = guard.as_ref()
            && snapshot.taken.elapsed() < self.max_age
        {
            return Ok(snapshot.packages.clone());
        }
        let packages = Arc::new(
            backend
                .describe_packages(region, PackageFilter::All)
                .await?,
        );
        *guard = Some(Snapshot {
            taken: Instant::now(),
            packages: packages.clone(),
        });
        Ok(packages)
    }
}

fn object_key(obj: &OpenSearchPackage) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The region this object's package lives in: fixed in status at the first reconcile.
fn region_of(obj: &OpenSearchPackage, default_region: &str) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.region.clone())
        .or_else(|| obj.spec.region.clone())
        .unwrap_or_else(|| default_region.to_owned())
}

fn condition_is(obj: &OpenSearchPackage, type_: &str, status: &str) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status)
    })
}

/// Ready for the current generation, with nothing in flight and no pending request: such an
/// object's package can be read from the shared region snapshot.
fn is_settled(obj: &OpenSearchPackage) -> bool {
    let Some(status) = obj.status.as_ref() else {
        return false;
    };
    condition_is(obj, READY, "True")
        && status.observed_generation == obj.metadata.generation
        && status.in_flight.is_none()
        && status.last_handled_reconcile_at.as_deref() == reconcile_request(obj)
}

/// Entry point for kube-runtime.
pub async fn reconcile<B: PackageBackend>(
    obj: Arc<OpenSearchPackage>,
    ctx: Arc<Context<B>>,
) -> Result<Action, Error> {
    let key = object_key(&obj);
    if let Some(remaining) = ctx.not_yet_due(&key, fingerprint(&obj)) {
        return Ok(Action::requeue(remaining));
    }
    let started = Instant::now();
    let span = info_span!("reconcile", namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any());
    let result = reconcile_object(&obj, &ctx).instrument(span).await;
    let label = match &result {
        Ok(_) if condition_is(&obj, STALLED, "True") => "stalled",
        Ok(_) => "success",
        Err(e) => e.label(),
    };
    ctx.metrics.observe_reconcile(label, started.elapsed());
    result
}

/// What the user controls that should trigger a reconcile: the spec (generation), the
/// reconcile request, deletion and the finalizer. Status writes change none of it.
fn fingerprint(obj: &OpenSearchPackage) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.generation.hash(&mut hasher);
    reconcile_request(obj).hash(&mut hasher);
    obj.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    obj.finalizers()
        .iter()
        .any(|f| f == FINALIZER)
        .hash(&mut hasher);
    hasher.finish()
}

/// Requeue policy for errors that escaped the reconcile (Kubernetes API failures).
pub fn error_policy<B: PackageBackend>(
    obj: Arc<OpenSearchPackage>,
    error: &Error,
    ctx: Arc<Context<B>>,
) -> Action {
    warn!(object = %object_key(&obj), %error, "reconcile failed");
    Action::requeue(ctx.next_backoff(&object_key(&obj)))
}

async fn reconcile_object<B: PackageBackend>(
    obj: &OpenSearchPackage,
    ctx: &Context<B>,
) -> Result<Action, Error> {
    let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<OpenSearchPackage> = Api::namespaced(ctx.client.clone(), &namespace);
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);

    if obj.meta().deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        return cleanup(obj, ctx, &api).await;
    }
    if !has_finalizer {
        add_finalizer(&api, obj).await?;
        // The patch is a change the watch delivers: the next reconcile starts from it.
        return Ok(Action::await_change());
    }
    apply(obj, ctx, &api).await
}

async fn add_finalizer(api: &Api<OpenSearchPackage>, obj: &OpenSearchPackage) -> Result<(), Error> {
    let patch = if obj.meta().finalizers.is_none() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": obj.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    json_patch(api, obj, patch).await
}

async fn remove_finalizer(
    api: &Api<OpenSearchPackage>,
    obj: &OpenSearchPackage,
) -> Result<(), Error> {
    let Some(index) = obj.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch = serde_json::json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]);
    json_patch(api, obj, patch).await
}

async fn json_patch(
    api: &Api<OpenSearchPackage>,
    obj: &OpenSearchPackage,
    patch: serde_json::Value,
) -> Result<(), Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}

/// Writes the whole status with server-side apply; skipped when nothing changed.
async fn write_status(
    api: &Api<OpenSearchPackage>,
    obj: &OpenSearchPackage,
    status: &OpenSearchPackageStatus,
) -> Result<(), Error> {
    if obj.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": OpenSearchPackage::api_version(&()),
        "kind": OpenSearchPackage::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    Ok(())
}

async fn publish<B>(
    ctx: &Context<B>,
    obj: &OpenSearchPackage,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let reference: ObjectReference = obj.object_ref(&());
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &reference).await {
        // Events are best effort: losing one must not fail the reconcile.
        warn!(%error, reason, "could not publish event");
    }
}

/// The object that owns this object's (region, package name), when it is another one.
///
/// The owner is the object that recorded the package id; failing that, the oldest object
/// (then the first by namespace/name).
fn name_owner<B>(ctx: &Context<B>, obj: &OpenSearchPackage, region: &str) -> Option<String> {
    let name = package_name(obj);
    let mut contenders: Vec<Arc<OpenSearchPackage>> = ctx
        .stores
        .iter()
        .flat_map(|s| s.state())
        .filter(|o| o.uid() != obj.uid())
        .filter(|o| package_name(o) == name && region_of(o, &ctx.default_region) == region)
        .collect();
    if contenders.is_empty() {
        return None;
    }
    contenders.push(Arc::new(obj.clone()));
    let rank = |o: &OpenSearchPackage| {
        let owns = o.status.as_ref().is_some_and(|s| s.package_id.is_some());
        (
            !owns,
            o.meta().creation_timestamp.clone().map(|t| t.0),
            object_key(o),
        )
    };
    let owner = contenders.iter().min_by_key(|o| rank(o))?;
    (owner.uid() != obj.uid()).then(|| object_key(owner))
}

/// Prerequisite objects (same namespace) that are Ready, by name → package id.
fn ready_prerequisites<B>(ctx: &Context<B>, obj: &OpenSearchPackage) -> BTreeMap<String, String> {
    let namespace = obj.namespace();
    let wanted: Vec<&String> = obj
        .spec
        .domains
        .iter()
        .flat_map(|d| d.prerequisites.iter())
        .collect();
    if wanted.is_empty() {
        return BTreeMap::new();
    }
    ctx.stores
        .iter()
        .flat_map(|s| s.state())
        .filter(|o| o.namespace() == namespace && wanted.contains(&&o.name_any()))
        .filter(|o| condition_is(o, READY, "True"))
        .filter_map(|o| {
            let id = o.status.as_ref()?.package_id.clone()?;
            Some((o.name_any(), id))
        })
        .collect()
}

/// DescribePackages for one package by id or name; "not found" is no package, not an error.
async fn describe_one<B: PackageBackend>(
    backend: &B,
    region: &str,
    filter: PackageFilter,
) -> Result<Option<Package>, BackendError> {
    let found = match backend.describe_packages(region, filter.clone()).await {
        Ok(found) => found,
        Err(BackendError::NotFound(_)) => return Ok(None),
        Err(other) => return Err(other),
    };
    Ok(found.into_iter().find(|p| match &filter {
        PackageFilter::Id(id) => &p.id == id,
        PackageFilter::Name(name) => &p.name == name,
        PackageFilter::All => true,
    }))
}

/// Reads what AWS has for this object.
async fn observe<B: PackageBackend>(
    ctx: &Context<B>,
    obj: &OpenSearchPackage,
    region: &str,
    deleting: bool,
) -> Result<Observation, BackendError> {
    let mut observed = Observation {
        name_owner: name_owner(ctx, obj, region),
        ..Observation::default()
    };
    if observed.name_owner.is_some() {
        // Another object owns the name: this one reads and changes nothing in AWS.
        return Ok(observed);
    }
    let status = obj.status.clone().unwrap_or_default();
    let package = match &status.package_id {
        Some(id) => {
            let from_snapshot = if is_settled(obj) && !deleting {
                let all = ctx.snapshots.get(&ctx.backend, region).await?;
                // A snapshot taken before this object's last change is older than its status:
                // read the package itself rather than act on the stale version.
                all.iter()
                    .find(|p| {
                        &p.id == id && p.available_version == status.available_package_version
                    })
                    .cloned()
            } else {
                None
            };
            match from_snapshot {
                Some(p) => Some(p),
                None => describe_one(&ctx.backend, region, PackageFilter::Id(id.clone())).await?,
            }
        }
        None => {
            let filter = PackageFilter::Name(package_name(obj));
            describe_one(&ctx.backend, region, filter).await?
        }
    };
    observed.package = package;
    let Some(package) = observed.package.clone() else {
        return Ok(observed);
    };
    let ours = status.package_id.as_deref() == Some(package.id.as_str());

    if ours && !deleting {
        let digest = SpecDigest::of(&obj.spec);
        let update_due = status.applied_digest.as_deref() != Some(digest.as_str())
            && (package.status == PackageStatus::Available || package.status.is_failed());
        let new_version = package.status == PackageStatus::Available
            && (status.available_package_version != package.available_version
                || status.version_history.is_empty());
        if update_due || new_version {
            observed.history = Some(
                ctx.backend
                    .package_version_history(region, &package.id)
                    .await?,
            );
        }
    }
    let has_domains = !obj.spec.domains.is_empty() || !status.domains.is_empty();
    let could_be_ours = ours || status.in_flight.is_some();
    if could_be_ours && (deleting || (has_domains && package.status == PackageStatus::Available)) {
        observed.associations = Some(
            ctx.backend
                .list_domains_for_package(region, &package.id)
                .await?,
        );
    }
    observed.ready_prerequisites = ready_prerequisites(ctx, obj);
    Ok(observed)
}

/// What to do after a step.
enum Next {
    /// Look again soon: something was just changed.
    Soon,
    /// Poll: AWS is working.
    Poll,
    /// Nothing to do until the resync.
    Resync,
    /// A transient failure: back off.
    Backoff,
    /// Check back slowly (waiting on something outside this object).
    Slowly,
}

fn poll_delay(obj: &OpenSearchPackage, now: Timestamp) -> Duration {
    // Start at 2 s and stretch to 30 s the longer the work has been under way, so short
    // imports finish in seconds without hammering the API on long ones.
    let since = obj
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == RECONCILING))
        .map(|c| c.last_transition_time.0);
    let elapsed = since
        .and_then(|t| now.duration_since(t).try_into().ok())
        .unwrap_or(Duration::ZERO);
    (elapsed / 2).clamp(Duration::from_secs(2), Duration::from_secs(30))
}

async fn apply<B: PackageBackend>(
    obj: &OpenSearchPackage,
    ctx: &Context<B>,
    api: &Api<OpenSearchPackage>,
) -> Result<Action, Error> {
    let region = region_of(obj, &ctx.default_region);
    let now = Timestamp::now();
    let generation = obj.metadata.generation;

    let mut status = obj.status.clone().unwrap_or_default();
    status.region = Some(region.clone());
    status.observed_generation = generation;
    status.last_handled_reconcile_at = reconcile_request(obj).map(str::to_owned);

    let observed = match observe(ctx, obj, &region, false).await {
        Ok(o) => o,
        Err(error) => {
            let next = handle_error(ctx, obj, &mut status, "observe", &error, now).await;
            return finish(ctx, obj, api, status, next, now).await;
        }
    };
    record_observation(&mut status, obj, &observed);

    let step = plan::plan(obj, &observed);
    debug!(?step, "planned");
    let was_stalled = condition_is(obj, STALLED, "True");
    let next = match step {
        Step::Suspended => {
            apply_outcome(&mut status, &Outcome::Suspended, generation, now);
            Next::Resync
        }
        Step::Stall { reason, message } => {
            stall(ctx, obj, &mut status, reason, message, now).await;
            if reason == StallReason::InUse {
                Next::Slowly
            } else {
                Next::Resync
            }
        }
        Step::Create { request, recreate } => {
            let digest = SpecDigest::of(&obj.spec);
            if recreate {
                publish(
                    ctx,
                    obj,
                    EventType::Warning,
                    "PackageVanished",
                    "Create",
                    format!(
                        "package {} was deleted outside the cluster; creating it again",
                        status.package_id.clone().unwrap_or_default()
                    ),
                )
                .await;
                clear_package(&mut status);
            }
            // Record the create before making it: after a crash, a package found by name
            // while this record stands is this object's own.
            status.in_flight = Some(InFlight {
                operation: "CreatePackage".into(),
                digest: digest.as_str().to_owned(),
                started_at: now.to_string(),
            });
            let message = format!("creating package {}", request.name);
            apply_outcome(
                &mut status,
                &Outcome::Progressing {
                    reason: WaitReason::Creating,
                    message,
                },
                generation,
                now,
            );
            write_status(api, obj, &status).await?;
            match ctx.backend.create_package(&region, request).await {
                Ok(package) => {
                    status.in_flight = None;
                    status.applied_digest = Some(digest.as_str().to_owned());
                    status::record_package(&mut status, &package);
                    publish(
                        ctx,
                        obj,
                        EventType::Normal,
                        "Created",
                        "CreatePackage",
                        format!("created package {} ({})", package.name, package.id),
                    )
                    .await;
                    progressing(
                        &mut status,
                        WaitReason::Copying,
                        "package is COPYING",
                        generation,
                        now,
                    );
                    Next::Poll
                }
                Err(error) => {
                    if !error.is_retryable() {
                        // The service answered: no package was made by this call.
                        status.in_flight = None;
                    }
                    handle_error(ctx, obj, &mut status, "CreatePackage", &error, now).await
                }
            }
        }
        Step::Adopt {
            package,
            ours,
            digest,
        } => {
            status::record_package(&mut status, &package);
            status.in_flight = None;
            status.adopted = !ours;
            status.applied_digest = digest.map(|d| d.as_str().to_owned());
            let note = if ours {
                format!("recorded package {} created before a restart", package.id)
            } else {
                format!("adopted existing package {} ({})", package.name, package.id)
            };
            publish(ctx, obj, EventType::Normal, "Adopted", "Adopt", note).await;
            progressing(
                &mut status,
                WaitReason::Updating,
                "package recorded",
                generation,
                now,
            );
            Next::Soon
        }
        Step::Update { request, digest } => {
            match ctx.backend.update_package(&region, request).await {
                Ok(package) => {
                    status.applied_digest = Some(digest.as_str().to_owned());
                    status::record_package(&mut status, &package);
                    publish(
                        ctx,
                        obj,
                        EventType::Normal,
                        "Updated",
                        "UpdatePackage",
                        format!("importing a new version of package {}", package.id),
                    )
                    .await;
                    let message = format!("package is {}", package.status.as_str());
                    progressing(&mut status, WaitReason::Updating, &message, generation, now);
                    Next::Poll
                }
                Err(error) => {
                    handle_error(ctx, obj, &mut status, "UpdatePackage", &error, now).await
                }
            }
        }
        Step::RecordUpdate { digest, version } => {
            status.applied_digest = Some(digest.as_str().to_owned());
            publish(
                ctx,
                obj,
                EventType::Normal,
                "Updated",
                "RecordUpdate",
                format!("version {version} was already imported for this spec; recorded it without a new update"),
            )
            .await;
            progressing(
                &mut status,
                WaitReason::Updating,
                "update recorded",
                generation,
                now,
            );
            Next::Soon
        }
        Step::UpdateScope { users } => {
            let package_id = status.package_id.clone().unwrap_or_default();
            match ctx
                .backend
                .update_package_scope(&region, &package_id, users.clone())
                .await
            {
                Ok(_) => {
                    status.allow_listed_users = Some(users.clone());
                    publish(
                        ctx,
                        obj,
                        EventType::Normal,
                        "ScopeUpdated",
                        "UpdatePackageScope",
                        format!("package shared with: {}", users.join(", ")),
                    )
                    .await;
                    progressing(
                        &mut status,
                        WaitReason::Updating,
                        "scope updated",
                        generation,
                        now,
                    );
                    Next::Soon
                }
                Err(error) => {
                    handle_error(ctx, obj, &mut status, "UpdatePackageScope", &error, now).await
                }
            }
        }
        Step::Associate { requests } => {
            let mut next = Next::Poll;
            let version = status.available_package_version.clone().unwrap_or_default();
            for request in requests {
                let domain = request.domain_name.clone();
                match ctx.backend.associate_package(&region, request).await {
                    Ok(association) => {
                        upsert_domain(&mut status, obj, association);
                        publish(
                            ctx,
                            obj,
                            EventType::Normal,
                            "Associating",
                            // The recorder folds events with the same reason and action into
                            // one series: name the domain so each rollout step shows.
                            &format!("AssociatePackage/{domain}"),
                            format!("applying {version} to domain {domain}"),
                        )
                        .await;
                    }
                    Err(error) => {
                        next = handle_error(ctx, obj, &mut status, "AssociatePackage", &error, now)
                            .await;
                        break;
                    }
                }
            }
            if matches!(next, Next::Poll) {
                let message = format!("rolling out {version}");
                progressing(
                    &mut status,
                    WaitReason::RollingOut,
                    &message,
                    generation,
                    now,
                );
            }
            next
        }
        Step::Dissociate { domain } => {
            let package_id = status.package_id.clone().unwrap_or_default();
            match ctx
                .backend
                .dissociate_package(&region, &package_id, &domain)
                .await
            {
                Ok(association) => {
                    upsert_domain(&mut status, obj, association);
                    publish(
                        ctx,
                        obj,
                        EventType::Normal,
                        "Dissociating",
                        &format!("DissociatePackage/{domain}"),
                        format!("dissociating from domain {domain}, no longer in spec.domains"),
                    )
                    .await;
                    let message = format!("dissociating from domain {domain}");
                    progressing(
                        &mut status,
                        WaitReason::Dissociating,
                        &message,
                        generation,
                        now,
                    );
                    Next::Poll
                }
                Err(BackendError::NotFound(_)) => Next::Soon,
                Err(error) => {
                    handle_error(ctx, obj, &mut status, "DissociatePackage", &error, now).await
                }
            }
        }
        Step::Wait { reason, message } => {
            progressing(&mut status, reason, &message, generation, now);
            Next::Poll
        }
        Step::Done => {
            apply_outcome(&mut status, &Outcome::Ready, generation, now);
            if was_stalled || !condition_is(obj, READY, "True") {
                let version = status.available_package_version.clone().unwrap_or_default();
                publish(
                    ctx,
                    obj,
                    EventType::Normal,
                    "Ready",
                    "Reconcile",
                    format!("package is available at {version} on every listed domain"),
                )
                .await;
            }
            Next::Resync
        }
    };
    finish(ctx, obj, api, status, next, now).await
}

fn progressing(
    status: &mut OpenSearchPackageStatus,
    reason: WaitReason,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let outcome = Outcome::Progressing {
        reason,
        message: message.to_owned(),
    };
    apply_outcome(status, &outcome, generation, now);
}

async fn stall<B>(
    ctx: &Context<B>,
    obj: &OpenSearchPackage,
    status: &mut OpenSearchPackageStatus,
    reason: StallReason,
    message: String,
    now: Timestamp,
) {
    let already = obj.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == STALLED && c.status == "True" && c.reason == reason.as_str())
    });
    if !already {
        publish(
            ctx,
            obj,
            EventType::Warning,
            reason.as_str(),
            "Reconcile",
            message.clone(),
        )
        .await;
    }
    let outcome = Outcome::Stalled { reason, message };
    apply_outcome(status, &outcome, obj.metadata.generation, now);
}

/// Maps an AWS failure into status and the requeue policy: retryable ones back off,
/// the others stall until the user changes something.
async fn handle_error<B: PackageBackend>(
    ctx: &Context<B>,
    obj: &OpenSearchPackage,
    status: &mut OpenSearchPackageStatus,
    operation: &str,
    error: &BackendError,
    now: Timestamp,
) -> Next {
    let generation = obj.metadata.generation;
    let reason = match error {
        BackendError::Throttled(_) | BackendError::Transient(_) | BackendError::Conflict(_) => {
            warn!(operation, %error, "retrying after a transient AWS error");
            let message = format!("{operation}: {error}; retrying");
            progressing(status, WaitReason::Retrying, &message, generation, now);
            return Next::Backoff;
        }
        BackendError::NotFound(_) => {
            // The package vanished between reading and acting; the next observe sees it.
            let message = format!("{operation}: {error}");
            progressing(status, WaitReason::Retrying, &message, generation, now);
            return Next::Soon;
        }
        BackendError::AlreadyExists(_) => {
            // Someone took the name between our lookup and our create; the next observe
            // finds the package by name and decides about adoption.
            let message = format!("{operation}: {error}");
            progressing(status, WaitReason::Retrying, &message, generation, now);
            return Next::Soon;
        }
        BackendError::Invalid(_) => StallReason::InvalidRequest,
        BackendError::AccessDenied(_) => StallReason::AccessDenied,
        BackendError::LimitExceeded(_) => StallReason::LimitExceeded,
    };
    let message = format!("{operation} was rejected: {}", error.message());
    stall(ctx, obj, status, reason, message, now).await;
    Next::Resync
}

fn clear_package(status: &mut OpenSearchPackageStatus) {
    status.package_id = None;
    status.package_status = None;
    status.available_package_version = None;
    status.applied_digest = None;
    status.error_details = None;
    status.version_history.clear();
    status.created_at = None;
    status.last_updated_at = None;
}

/// Copies what was read from AWS into status (only for a package this object owns).
fn record_observation(
    status: &mut OpenSearchPackageStatus,
    obj: &OpenSearchPackage,
    observed: &Observation,
) {
    let Some(package) = &observed.package else {
        return;
    };
    if status.package_id.as_deref() != Some(package.id.as_str()) {
        return;
    }
    status::record_package(status, package);
    if let Some(history) = &observed.history {
        status::record_history(status, history);
    }
    if let Some(associations) = &observed.associations {
        status::record_domains(status, &obj.spec, associations);
    }
}

fn upsert_domain(
    status: &mut OpenSearchPackageStatus,
    obj: &OpenSearchPackage,
    association: DomainAssociation,
) {
    let mut associations: Vec<DomainAssociation> = Vec::new();
    // Rebuild from the recorded entries plus the fresh one, so the ordering rules of
    // `record_domains` apply.
    for d in &status.domains {
        if d.domain_name == association.domain_name {
            continue;
        }
        associations.push(DomainAssociation {
            domain_name: d.domain_name.clone(),
            package_id: status.package_id.clone().unwrap_or_default(),
            status: crate::backend::DomainPackageStatus::parse(
                d.domain_package_status.as_deref().unwrap_or_default(),
            ),
            package_version: d.package_version.clone(),
            reference_path: d.reference_path.clone(),
            prerequisites: Vec::new(),
            last_updated: d.last_updated.as_deref().and_then(|t| t.parse().ok()),
            error: d
                .error_details
                .as_ref()
                .map(|e| crate::backend::ServiceError {
                    error_type: e.error_type.clone(),
                    error_message: e.error_message.clone(),
                }),
        });
    }
    associations.push(association);
    status::record_domains(status, &obj.spec, &associations);
}

async fn finish<B: PackageBackend>(
    ctx: &Context<B>,
    obj: &OpenSearchPackage,
    api: &Api<OpenSearchPackage>,
    status: OpenSearchPackageStatus,
    next: Next,
    now: Timestamp,
) -> Result<Action, Error> {
    let key = object_key(obj);
    ctx.metrics
        .set_package_status(&key, status.package_status.as_deref());
    ctx.metrics
        .set_domains_behind(&key, status::domains_behind(&status));
    write_status(api, obj, &status).await?;
    if !matches!(next, Next::Backoff) {
        ctx.reset_backoff(&key);
    }
    let delay = match next {
        Next::Soon => Duration::from_millis(200),
        Next::Poll => poll_delay(obj, now),
        Next::Resync => ctx.resync_delay(),
        Next::Backoff => ctx.next_backoff(&key),
        Next::Slowly => Duration::from_secs(60),
    };
    ctx.schedule(&key, fingerprint(obj), delay);
    Ok(Action::requeue(delay))
}

async fn cleanup<B: PackageBackend>(
    obj: &OpenSearchPackage,
    ctx: &Context<B>,
    api: &Api<OpenSearchPackage>,
) -> Result<Action, Error> {
    let key = object_key(obj);
    let region = region_of(obj, &ctx.default_region);
    let now = Timestamp::now();
    let generation = obj.metadata.generation;
    let mut status = obj.status.clone().unwrap_or_default();

    let needs_aws = obj.spec.deletion_policy == crate::crd::DeletionPolicy::Delete
        && (status.package_id.is_some() || status.in_flight.is_some());
    let observed = if needs_aws {
        match observe(ctx, obj, &region, true).await {
            Ok(o) => o,
            Err(error) => {
                let next = handle_error(ctx, obj, &mut status, "observe", &error, now).await;
                return finish(ctx, obj, api, status, next, now).await;
            }
        }
    } else {
        Observation::default()
    };
    if let Some(associations) = &observed.associations {
        status::record_domains(&mut status, &obj.spec, associations);
    }

    let deleting = |status: &mut OpenSearchPackageStatus, message: &str| {
        let outcome = Outcome::Progressing {
            reason: WaitReason::Deleting,
            message: message.to_owned(),
        };
        apply_outcome(status, &outcome, generation, now);
    };
    let next = match plan::plan_cleanup(obj, &observed) {
        CleanupStep::Done => {
            remove_finalizer(api, obj).await?;
            ctx.metrics.forget(&key);
            ctx.forget(&key);
            return Ok(Action::await_change());
        }
        CleanupStep::Dissociate { domain } => {
            let package_id = observed
                .package
                .as_ref()
                .map(|p| p.id.clone())
                .unwrap_or_default();
            match ctx
                .backend
                .dissociate_package(&region, &package_id, &domain)
                .await
            {
                Ok(_) | Err(BackendError::NotFound(_)) => {
                    publish(
                        ctx,
                        obj,
                        EventType::Normal,
                        "Dissociating",
                        &format!("DissociatePackage/{domain}"),
                        format!("dissociating from domain {domain} before deleting the package"),
                    )
                    .await;
                    deleting(&mut status, &format!("dissociating from domain {domain}"));
                    Next::Poll
                }
                Err(error) => {
                    handle_error(ctx, obj, &mut status, "DissociatePackage", &error, now).await
                }
            }
        }
        CleanupStep::Wait { message } => {
            deleting(&mut status, &message);
            Next::Poll
        }
        CleanupStep::InUse { domains } => {
            let message = format!(
                "the package is still associated with domains this object does not manage: {}; dissociate them to finish deletion",
                domains.join(", ")
            );
            stall(ctx, obj, &mut status, StallReason::InUse, message, now).await;
            Next::Slowly
        }
        CleanupStep::Delete { package_id } => {
            match ctx.backend.delete_package(&region, &package_id).await {
                Ok(_) | Err(BackendError::NotFound(_)) => {
                    info!(package_id, "deleted package");
                    publish(
                        ctx,
                        obj,
                        EventType::Normal,
                        "Deleted",
                        "DeletePackage",
                        format!("deleted package {package_id}"),
                    )
                    .await;
                    remove_finalizer(api, obj).await?;
                    ctx.metrics.forget(&key);
                    ctx.forget(&key);
                    return Ok(Action::await_change());
                }
                Err(error) => {
                    handle_error(ctx, obj, &mut status, "DeletePackage", &error, now).await
                }
            }
        }
    };
    finish(ctx, obj, api, status, next, now).await
}

/// Runs the controller until a shutdown signal: one kube-runtime controller per watched
/// namespace (or one for all), sharing the context.
pub async fn run_controllers<B: PackageBackend>(
    client: Client,
    backend: B,
    metrics: Arc<Metrics>,
    health: Arc<crate::server::Health>,
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

    let readiness = {
        let stores = stores.clone();
        tokio::spawn(async move {
            for store in &stores {
                // The store's readiness signal wakes only its most recent waiter, and the
                // controller waits on it too: poll it again every second instead of
                // relying on a wake-up.
                loop {
                    match tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready())
                        .await
                    {
                        Ok(Ok(())) => break,
                        Ok(Err(_)) => return,
                        Err(_) => continue,
                    }
                }
            }
            info!("watch caches synced");
            health.set_ready(true);
        })
    };

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

/// Controller settings taken from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub default_region: String,
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub resync: Duration,
    pub concurrency: u16,
}

/// Wires the operator together and runs it until SIGINT/SIGTERM: AWS configuration, the
/// metered backend, the health and metrics server, and the controllers.
pub async fn run(args: crate::config::RunArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use aws_config::retry::RetryConfig;

    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(RetryConfig::adaptive());
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let sdk_config = loader.load().await;
    let default_region = sdk_config
        .region()
        .map(ToString::to_string)
        .context("no AWS region: set --region (OSPKG_REGION) or AWS_REGION")?;

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(crate::server::Health::new());
    let backend = crate::backend::metered::Metered::new(
        crate::backend::aws::AwsBackend::new(sdk_config),
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
        namespaces: args.namespaces.clone(),
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
