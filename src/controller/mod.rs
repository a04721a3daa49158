//! The reconcile loop: observe (AWS reads) → plan (pure) → act (one step) → status (server-side
//! apply) → requeue.
//!
//! | file | what it does |
//! |---|---|
//! | `context` | [`Context`]: what every reconcile shares (caches, observers, schedule, limits) |
//! | `observe` | reads AWS and the watch cache into an [`Observation`] |
//! | `act` | one function per [`Action`](crate::plan::Action): the AWS call and its effect |
//! | `effect` | what a step leaves behind; failed calls mapped to effects |
//! | `events` | the catalogue of Kubernetes Events |
//! | `export` | the `spec.export` ConfigMap |
//! | `kube_io` | finalizer, status and event writes |
//! | `schedule` | requeue delays, backoff, the "not yet due" gate |
//! | `regions` | the per-region observers: AWS as a watched source |
//! | `slots` | how many reconciles work at once, and in which order |

mod act;
mod context;
mod effect;
mod events;
mod export;
mod kube_io;
mod names;
mod observe;
mod regions;
mod schedule;
mod slots;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action as Requeued;
use kube::{Resource, ResourceExt};
use tracing::{Instrument, debug, info_span, warn};

pub use context::{Context, DEFAULT_AWS_RATE, DEFAULT_CONCURRENCY};
pub use effect::Failed;
pub use events::Event;
pub use kube_io::{Events, OwnWrites};
pub use names::{PackageNames, Stream as NameStream};
pub use observe::region_of;
pub use regions::{Listing, Regions, Wakers};
pub use schedule::{Schedule, Turn};
pub use slots::Slots;

use crate::backend::{PackageBackend, Scope};
use crate::crd::{DeletionPolicy, FINALIZER, OpenSearchPackage, OpenSearchPackageStatus};
use crate::plan::{self, Decision, Observation, Requeue};
use crate::status::{self, Outcome, apply_outcome, reconcile_request};
use crate::tenancy::{AccessError, Refusal};
use crate::vocabulary::{ConditionType, WaitReason};
use effect::Effect;

/// Errors that end a reconcile early. AWS errors are not among them: they are handled in the
/// reconcile and written to status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no namespace")]
    NoNamespace,
    #[error("this replica no longer holds the leader Lease")]
    NotLeader,
}

impl Error {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::NoNamespace => "no_namespace",
            Self::NotLeader => "not_leader",
        }
    }
}

/// One reconcile of one object: what every step needs to know.
pub struct Job<'a, B> {
    pub ctx: &'a Arc<Context<B>>,
    pub obj: &'a OpenSearchPackage,
    pub api: &'a Api<OpenSearchPackage>,
    /// Where the object's AWS calls go: its package's account and region, and the identity
    /// that reaches them.
    pub scope: &'a Scope,
    pub now: Timestamp,
}

pub(crate) fn object_key(obj: &OpenSearchPackage) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// How long a reconcile that met the closed leader fence waits before trying again. The fence
/// can open again in the same term (a renewal confirmed late under load): then the object
/// must come back by itself, since nothing else changes it. When the term ends instead, its
/// controllers go and the next term lists every object afresh.
const FENCE_RETRY: Duration = Duration::from_secs(2);

/// Entry point for kube-runtime.
pub async fn reconcile<B: PackageBackend>(
    obj: Arc<OpenSearchPackage>,
    ctx: Arc<Context<B>>,
) -> Result<Requeued, Error> {
    debug!(object = %object_key(&obj), "reconcile started");
    if !ctx.leadership.is_leader() {
        return Ok(Requeued::requeue(FENCE_RETRY));
    }
    // A cached copy older than our own last write is never acted on: the write's answer is.
    let obj = ctx.own_writes.newest(obj);
    let woken = match ctx.schedule.turn(&obj) {
        Turn::NotYet(remaining) => {
            debug!(object = %object_key(&obj), ?remaining, "not yet due");
            return Ok(Requeued::requeue(remaining));
        }
        Turn::Woken => true,
        Turn::Due => false,
    };
    let Some(_slot) = ctx.slots.acquire(woken).await else {
        // Shutting down: the next process (or leader) reconciles the object.
        return Ok(Requeued::await_change());
    };
    let started = Instant::now();
    let span = info_span!("reconcile", namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any());
    // Boxed: kube-runtime keeps every reconcile's future while it waits for a slot, and the
    // work's future is large; the ones waiting stay small (thousands at start-up).
    let result = Box::pin(reconcile_object(&obj, &ctx).instrument(span)).await;
    // Labelled by the status the reconcile left (its own write, if it made one).
    let left = ctx.own_writes.latest(&obj);
    let status = left.as_deref().unwrap_or(&obj).status.as_ref();
    let stalled = status.is_some_and(|s| s.is_true(ConditionType::Stalled));
    let retrying = status
        .and_then(|s| s.condition(ConditionType::Reconciling))
        .is_some_and(|c| c.status == "True" && c.reason == WaitReason::Retrying.as_str());
    let label = match &result {
        Ok(_) if stalled => "stalled",
        Ok(_) if retrying => "retrying",
        Ok(_) => "success",
        Err(e) => e.label(),
    };
    ctx.metrics.observe_reconcile(label, started.elapsed());
    result
}

/// Requeue policy for errors that escaped the reconcile (Kubernetes API failures).
pub fn error_policy<B: PackageBackend>(
    obj: Arc<OpenSearchPackage>,
    error: &Error,
    ctx: Arc<Context<B>>,
) -> Requeued {
    warn!(object = %object_key(&obj), %error, "reconcile failed");
    match error {
        // Not the object's failure: it must not back off for minutes once the fence opens.
        Error::NotLeader => Requeued::requeue(FENCE_RETRY),
        _ => Requeued::requeue(ctx.schedule.after_error(&obj)),
    }
}

async fn reconcile_object<B: PackageBackend>(
    obj: &OpenSearchPackage,
    ctx: &Arc<Context<B>>,
) -> Result<Requeued, Error> {
    let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<OpenSearchPackage> = Api::namespaced(ctx.client.clone(), &namespace);
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
    let region = region_of(obj, &ctx.default_region);
    let deleting = obj.meta().deletion_timestamp.is_some();
    let access = if deleting && !(has_finalizer && deletion_needs_aws(obj)) {
        // Nothing (left) to do in AWS for this object: its namespace's role (gone, ambiguous,
        // refused) cannot hold it in Terminating.
        Err(None)
    } else {
        ctx.tenancy
            .scope(&ctx.backend, obj, &region, deleting)
            .await
            .map_err(Some)
    };
    let scope = match &access {
        Ok(scope) => scope.clone(),
        // No AWS call follows: the scope only carries the region into status.
        Err(_) => Scope::own(
            obj.status
                .as_ref()
                .and_then(|s| s.account_id.clone())
                .unwrap_or_default(),
            region.clone(),
        ),
    };
    let job = Job {
        ctx,
        obj,
        api: &api,
        scope: &scope,
        now: Timestamp::now(),
    };
    if let Err(Some(refused)) = access {
        return refuse(&job, refused).await;
    }
    if deleting {
        if !has_finalizer {
            return Ok(Requeued::await_change());
        }
        return cleanup(&job).await;
    }
    if !has_finalizer {
        // Goes on from the object as the patch left it rather than wait for the watch to
        // deliver it (a round trip that takes seconds on a busy API server).
        let obj = kube_io::add_finalizer(&job).await?;
        return apply(&Job { obj: &obj, ..job }).await;
    }
    apply(&job).await
}

/// An object its namespace's identity or grant does not let reach AWS: no call, a status
/// that says why.
async fn refuse<B: PackageBackend>(
    job: &Job<'_, B>,
    error: AccessError,
) -> Result<Requeued, Error> {
    let obj = job.obj;
    let mut status = obj.status.clone().unwrap_or_default();
    status.observed_generation = obj.metadata.generation;
    status.last_handled_reconcile_at = reconcile_request(obj).map(str::to_owned);
    let effect = match error {
        AccessError::Refused(Refusal::Stalled { reason, message }) => {
            Effect::stalled(reason, message)
        }
        AccessError::Refused(Refusal::NotSynced) => Effect::progressing(
            WaitReason::Retrying,
            "waiting for the OpenSearchPackageRole and Namespace caches to sync",
            plan::Requeue::Soon,
        ),
        AccessError::OwnAccount(error) => {
            Failed::new(crate::backend::Operation::GetCallerIdentity, error).effect()
        }
    };
    finish(job, status, effect).await
}

/// An object that is not being deleted: observe, plan, perform one action or settle.
async fn apply<B: PackageBackend>(job: &Job<'_, B>) -> Result<Requeued, Error> {
    let obj = job.obj;
    let mut status = obj.status.clone().unwrap_or_default();
    status.region = Some(job.scope.region.clone());
    status.account_id = Some(job.scope.account.clone());
    status.observed_generation = obj.metadata.generation;
    status.last_handled_reconcile_at = reconcile_request(obj).map(str::to_owned);

    let effect = match observe::observe(job.ctx, obj, job.scope, false).await {
        Err(failed) => failed.effect(),
        Ok(observed) => {
            record_observation(&mut status, obj, &observed);
            let decision = plan::plan(obj, &observed);
            debug!(?decision, "planned");
            match decision {
                Decision::Settle(verdict) => Effect::settle(verdict),
                Decision::Act(action) => perform(job, &mut status, action).await?,
            }
        }
    };
    job.ctx.source.record(obj, &mut status);
    finish(job, status, effect).await
}

/// An object being deleted: dissociate its domains, delete its package, drop the finalizer.
async fn cleanup<B: PackageBackend>(job: &Job<'_, B>) -> Result<Requeued, Error> {
    let obj = job.obj;
    let mut status = obj.status.clone().unwrap_or_default();
    let observed = if deletion_needs_aws(obj) {
        match observe::observe(job.ctx, obj, job.scope, true).await {
            Ok(observed) => observed,
            Err(failed) => return finish(job, status, failed.effect()).await,
        }
    } else {
        Observation::default()
    };
    if let Some(associations) = &observed.associations {
        status::record_domains(&mut status, &obj.spec, associations);
    }
    let effect = match plan::plan_cleanup(obj, &observed) {
        Decision::Settle(verdict) => Effect::settle(verdict),
        Decision::Act(action) => perform(job, &mut status, action).await?,
    };
    finish(job, status, effect).await
}

/// Whether deleting the object may call AWS: it owns a package (or may, with a create in
/// flight) and its policy deletes it. Retain, Observe and a package never made let it go.
fn deletion_needs_aws(obj: &OpenSearchPackage) -> bool {
    let status = obj.status.as_ref();
    obj.spec.deletion_policy == DeletionPolicy::Delete
        && obj.spec.manages()
        && status.is_some_and(|s| s.package_id.is_some() || s.in_flight.is_some())
}

/// Performs one action and remembers when: reads after it must come from a newer listing.
async fn perform<B: PackageBackend>(
    job: &Job<'_, B>,
    status: &mut OpenSearchPackageStatus,
    action: plan::Action,
) -> Result<Effect, Error> {
    let changes_package = action.changes_package();
    let effect = act::perform(job, status, action).await;
    if changes_package {
        job.ctx.schedule.record_action(job.obj);
        let id = status.package_id.as_deref();
        job.ctx.regions.changed(job.ctx, job.scope, id);
    }
    effect
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

/// Publishes the effect's Events (best effort: a failure is logged).
async fn publish_events<B>(job: &Job<'_, B>, effect: &Effect) {
    for event in &effect.events {
        job.ctx.events.publish(job.obj, event).await;
    }
}

/// Writes the effect: conditions, metrics, status, then its Events; when deletion finished,
/// its Events and the finalizer's removal instead. Returns the next requeue.
async fn finish<B: PackageBackend>(
    job: &Job<'_, B>,
    mut status: OpenSearchPackageStatus,
    mut effect: Effect,
) -> Result<Requeued, Error> {
    let (obj, ctx) = (job.obj, job.ctx);
    if obj.meta().deletion_timestamp.is_none() {
        export::publish(job, &mut status, &mut effect).await?;
    }
    // A transient failure on the way (a read, a cache not yet synced) says nothing about a
    // rejected call the user has not acted on: that stall stands, or the next reconcile would
    // send the call again.
    let retrying = matches!(
        &effect.outcome,
        Some(Outcome::Progressing {
            reason: WaitReason::Retrying,
            ..
        })
    );
    if retrying && status::standing_rejection(obj).is_some() {
        effect.outcome = None;
    }
    if effect.reread {
        // AWS said the package is gone where the view this reconcile acted on showed it: the
        // next reconcile reads from a listing that starts after now (then, by id, directly).
        ctx.schedule.record_action(obj);
        ctx.regions
            .changed(ctx, job.scope, status.package_id.as_deref());
    }
    let before = obj.status.clone().unwrap_or_default();
    match &effect.outcome {
        Some(Outcome::Stalled { reason, message }) if !before.is_stalled_for(*reason) => {
            effect.events.push(Event::Stalled {
                reason: *reason,
                message: message.clone(),
            });
        }
        Some(Outcome::Ready)
            if before.stall().is_some() || !before.is_true(ConditionType::Ready) =>
        {
            let version = status.available_package_version.clone().unwrap_or_default();
            effect.events.push(Event::Ready { version });
        }
        _ => {}
    }
    if let Some(outcome) = &effect.outcome {
        apply_outcome(&mut status, outcome, obj.metadata.generation, job.now);
    }
    status.domains_ready = status::domains_ready(&status);
    let key = object_key(obj);
    if effect.requeue == Requeue::Never && obj.meta().deletion_timestamp.is_some() {
        publish_events(job, &effect).await;
        kube_io::remove_finalizer(job).await?;
        ctx.metrics.forget(&key);
        ctx.schedule.forget(obj);
        ctx.own_writes.forget(obj);
        return Ok(Requeued::await_change());
    }
    let package_status = status.package_status.as_ref().map(|s| s.as_str());
    ctx.metrics.set_package_status(&key, package_status);
    ctx.metrics
        .set_domains_behind(&key, status::domains_behind(&status));
    let namespace = obj.namespace().unwrap_or_default();
    ctx.metrics
        .set_conditions(&namespace, &obj.name_any(), &status.conditions);
    kube_io::write_status(job, &status).await?;
    // After the status: the Events tell what the status now records (one whose write failed
    // is derived again by the retry), and the status (what readiness waits on) does not
    // wait for them.
    publish_events(job, &effect).await;
    // A followed source is read at its slot: wake up for it.
    let check = ctx.source.next_check_in(obj);
    Ok(Requeued::requeue(ctx.schedule.next_within(
        obj,
        effect.requeue,
        job.now,
        check,
    )))
}
