//! One function per [`Action`]: it makes the AWS call (or records one an earlier attempt
//! made), updates the package fields of status, and returns the effect.

use tracing::info;

use super::effect::{Effect, Failed};
use super::events::Event;
use super::{Context, Error, Job, kube_io};
use crate::backend::errors::says_package_not_found;
use crate::backend::{
    AssociatePackage, BackendError, CreatePackage, Operation, Package, PackageBackend,
    PackageFilter, Scope, UpdatePackage,
};
use crate::crd::{InFlight, OpenSearchPackageStatus};
use crate::digest::SpecDigest;
use crate::plan::{Action, Requeue, package_name};
use crate::status::{self, Outcome, apply_outcome};
use crate::vocabulary::{StallReason, WaitReason};

type Status = OpenSearchPackageStatus;

pub async fn perform<B: PackageBackend>(
    job: &Job<'_, B>,
    status: &mut Status,
    action: Action,
) -> Result<Effect, Error> {
    Ok(match action {
        Action::Create {
            request,
            recreate,
            digest,
        } => create(job, status, request, recreate, digest).await?,
        Action::Adopt {
            package,
            ours,
            digest,
        } => adopt(status, &package, ours, digest),
        Action::Update { request, digest } => update(job, status, request, digest).await?,
        Action::RecordUpdate { digest, version } => record_update(status, &digest, version),
        Action::ResolveUpdate { digest, happened } => resolve_update(status, &digest, happened),
        Action::UpdateScope { users } => update_scope(job, status, users).await,
        Action::Associate { requests } => associate(job, status, requests).await?,
        Action::Dissociate {
            package_id,
            domain,
            deleting,
        } => dissociate(job, status, &package_id, domain, deleting).await,
        Action::Delete {
            package_id,
            after_failure,
        } => delete(job.ctx, job.scope, package_id, after_failure).await,
        Action::Track { package } => track(status, &package),
        Action::Untrack => untrack(status),
    })
}

/// managementPolicy Observe: the package found (by id or name) becomes the one this object
/// reports.
fn track(status: &mut Status, package: &Package) -> Effect {
    clear_package(status);
    status.domains.clear();
    status::record_package(status, package);
    Effect::progressing(WaitReason::Observing, "package found", Requeue::Soon).with(
        Event::Observing {
            name: package.name.clone(),
            id: package.id.clone(),
        },
    )
}

/// managementPolicy Observe: the observed package is gone; the next look-up goes by id or
/// name again.
fn untrack(status: &mut Status) -> Effect {
    let id = status.package_id.clone().unwrap_or_default();
    clear_package(status);
    status.domains.clear();
    Effect::progressing(
        WaitReason::Observing,
        "observed package is gone",
        Requeue::Soon,
    )
    .with(Event::ObservedPackageGone { id })
}

/// CreatePackage, written ahead: the create record (`status.inFlight`) is stored before the
/// call, so that after a crash a package found by name is known to be this object's own.
async fn create<B: PackageBackend>(
    job: &Job<'_, B>,
    status: &mut Status,
    request: CreatePackage,
    recreate: bool,
    digest: SpecDigest,
) -> Result<Effect, Error> {
    let mut events = Vec::new();
    let vanished = recreate.then(|| status.clone());
    if recreate {
        let id = status.package_id.clone().unwrap_or_default();
        events.push(Event::PackageVanished { id });
        clear_package(status);
    }
    status.in_flight = Some(intent(Operation::CreatePackage, &digest, job, None));
    let creating = Outcome::progressing(
        WaitReason::Creating,
        format!("creating package {}", request.name),
    );
    apply_outcome(status, &creating, job.obj.metadata.generation, job.now);
    kube_io::write_status(job, status).await?;

    let mut effect = match job.ctx.backend.create_package(job.scope, request).await {
        Ok(package) => {
            status.in_flight = None;
            status.applied_digest = Some(digest.as_str().to_owned());
            status::record_package(status, &package);
            Effect::progressing(WaitReason::Copying, "package is COPYING", Requeue::Observe).with(
                Event::Created {
                    name: package.name,
                    id: package.id,
                },
            )
        }
        Err(BackendError::AlreadyExists(message)) if vanished.is_some() => {
            let before = vanished.unwrap_or_default();
            return not_vanished(job, status, before, message).await;
        }
        Err(error) => {
            // The service answered, so this call made no package, and the record goes. But
            // AlreadyExists after an earlier attempt whose outcome was lost is most likely
            // that attempt's package: its record (with what it imported, which may be an
            // older spec than this attempt's) comes back, and the package found by name is
            // recorded as this object's own, then updated if the spec moved on.
            let earlier_attempt = job
                .obj
                .status
                .as_ref()
                .and_then(|s| s.in_flight.as_ref())
                .filter(|f| f.operation == Operation::CreatePackage);
            let ours = earlier_attempt.is_some() && matches!(error, BackendError::AlreadyExists(_));
            if ours {
                status.in_flight = earlier_attempt.cloned();
            } else if error.proves_no_effect() {
                status.in_flight = None;
            }
            remember_answer(job, status, &error);
            Failed::new(Operation::CreatePackage, error).effect()
        }
    };
    events.append(&mut effect.events);
    effect.events = events;
    Ok(effect)
}

/// A recorded package seemed gone (a read by its id found nothing), but creating it again
/// answered AlreadyExists: unless the name now belongs to another package, the read missed it
/// (a listing not yet consistent after a create) and the object keeps its package, without
/// a PackageVanished event; it is read again, backing off. A package of another id under the
/// name is someone else's: the record goes, and the next reconcile says so.
async fn not_vanished<B: PackageBackend>(
    job: &Job<'_, B>,
    status: &mut Status,
    before: Status,
    message: String,
) -> Result<Effect, Error> {
    let recorded = before.package_id.clone().unwrap_or_default();
    let name = package_name(job.obj).to_owned();
    let holder = job
        .ctx
        .backend
        .describe_packages(job.scope, PackageFilter::Name(name.clone()))
        .await
        .ok()
        .and_then(|found| found.into_iter().find(|p| p.name == name));
    if let Some(other) = holder.filter(|p| p.id != recorded) {
        status.in_flight = None;
        let message = format!(
            "package {recorded} is gone and {name:?} now names another package ({})",
            other.id
        );
        return Ok(Effect::retrying(message)
            .reread()
            .with(Event::PackageVanished { id: recorded }));
    }
    *status = before;
    let message = format!(
        "package {recorded} was not found by its id, but its name is taken ({message}): reading it again"
    );
    Ok(Effect::retrying(message).reread())
}

/// Records a package found by name as this object's: one it created before a crash (`ours`),
/// or an existing one it was asked to adopt.
fn adopt(status: &mut Status, package: &Package, ours: bool, digest: Option<SpecDigest>) -> Effect {
    status::record_package(status, package);
    status.in_flight = None;
    status.adopted = !ours;
    status.applied_digest = digest.map(|d| d.as_str().to_owned());
    let event = if ours {
        Event::RecordedCreate {
            id: package.id.clone(),
        }
    } else {
        Event::Adopted {
            name: package.name.clone(),
            id: package.id.clone(),
        }
    };
    Effect::progressing(WaitReason::Updating, "package recorded", Requeue::Soon).with(event)
}

/// UpdatePackage, written ahead: the intent (with the package's state as observed) is stored
/// before the call, so that an answer lost to a crash, a timeout or a 5xx is resolved from what
/// the package shows instead of by calling again.
async fn update<B: PackageBackend>(
    job: &Job<'_, B>,
    status: &mut Status,
    request: UpdatePackage,
    digest: SpecDigest,
) -> Result<Effect, Error> {
    let record = intent(Operation::UpdatePackage, &digest, job, Some(status));
    status.in_flight = Some(record);
    let updating = Outcome::progressing(WaitReason::Updating, "importing a new version");
    apply_outcome(status, &updating, job.obj.metadata.generation, job.now);
    kube_io::write_status(job, status).await?;

    Ok(
        match job.ctx.backend.update_package(job.scope, request).await {
            Ok(package) => {
                status.in_flight = None;
                status.applied_digest = Some(digest.as_str().to_owned());
                status::record_package(status, &package);
                let message = format!("package is {}", package.status);
                Effect::progressing(WaitReason::Updating, message, Requeue::Observe)
                    .with(Event::Updated { id: package.id })
            }
            Err(error) => {
                if error.proves_no_effect() {
                    status.in_flight = None;
                }
                remember_answer(job, status, &error);
                Failed::new(Operation::UpdatePackage, error).effect()
            }
        },
    )
}

/// An update whose answer was lost: the package showed whether it took effect.
fn resolve_update(status: &mut Status, digest: &SpecDigest, happened: bool) -> Effect {
    status.in_flight = None;
    if happened {
        status.applied_digest = Some(digest.as_str().to_owned());
        return Effect::progressing(WaitReason::Updating, "update recorded", Requeue::Soon)
            .with(Event::ResolvedUpdate { happened });
    }
    Effect::progressing(WaitReason::Updating, "update not made", Requeue::Soon)
        .with(Event::ResolvedUpdate { happened })
}

/// The newest version carries this spec's marker: the update was made before a crash.
fn record_update(status: &mut Status, digest: &SpecDigest, version: String) -> Effect {
    status.applied_digest = Some(digest.as_str().to_owned());
    Effect::progressing(WaitReason::Updating, "update recorded", Requeue::Soon)
        .with(Event::RecordedUpdate { version })
}

async fn update_scope<B: PackageBackend>(
    job: &Job<'_, B>,
    status: &mut Status,
    users: Vec<String>,
) -> Effect {
    let package_id = status.package_id.clone().unwrap_or_default();
    let result = job
        .ctx
        .backend
        .update_package_scope(job.scope, &package_id, users.clone())
        .await;
    match result {
        Ok(_) => {
            status.allow_listed_users = Some(users.clone());
            Effect::progressing(WaitReason::Updating, "scope updated", Requeue::Soon)
                .with(Event::ScopeUpdated { users })
        }
        Err(error) => Failed::new(Operation::UpdatePackageScope, error).effect(),
    }
}

/// Associates each requested domain in turn; a failure does not keep the others from theirs
/// (one domain of a parallel rollout missing), the first one decides the effect. Status (which
/// lists the spec's domains as this object's) is written first: an association made just
/// before a crash is then known to be this object's, to dissociate when the domain leaves the
/// spec or the object is deleted.
async fn associate<B: PackageBackend>(
    job: &Job<'_, B>,
    status: &mut Status,
    requests: Vec<AssociatePackage>,
) -> Result<Effect, Error> {
    kube_io::write_status(job, status).await?;
    let version = status.available_package_version.clone().unwrap_or_default();
    let mut events = Vec::new();
    let mut failure = None;
    for request in requests {
        let domain = request.domain_name.clone();
        let prerequisites = request.prerequisites.clone();
        let package_id = request.package_id.clone();
        match job.ctx.backend.associate_package(job.scope, request).await {
            Ok(association) => {
                status::upsert_domain(status, &job.obj.spec, association);
                let version = version.clone();
                events.push(Event::Associating { domain, version });
            }
            Err(error) => {
                failure.get_or_insert_with(|| {
                    association_failed(&domain, &package_id, &prerequisites, error)
                });
            }
        }
    }
    let mut effect = match failure {
        // Checked again at the failure's pace (a missing domain: once a minute); the domains
        // associated now show in status then.
        Some(failed) => failed,
        None => Effect::progressing(
            WaitReason::RollingOut,
            format!("rolling out {version}"),
            Requeue::Poll,
        ),
    };
    effect.events = events;
    Ok(effect)
}

/// A missing domain or prerequisite, or a prerequisite not yet active on the domain, is a
/// stall retried slowly (it may appear without an edit). The package itself missing (deleted
/// outside the cluster since it was last listed) is no stall: read again, and the next
/// observation creates it again. Other failures as for any call.
fn association_failed(
    domain: &str,
    package_id: &str,
    prerequisites: &[String],
    error: BackendError,
) -> Effect {
    let message = error.message();
    let names_prerequisite = prerequisites.iter().any(|id| names_id(message, id));
    let package_gone = names_id(message, package_id) || says_package_not_found(message);
    match &error {
        BackendError::NotFound(_) if names_prerequisite => Effect::stalled(
            StallReason::PrerequisiteNotFound,
            format!("domain {domain}: a prerequisite package does not exist: {message}"),
        ),
        BackendError::NotFound(_) if package_gone => {
            Failed::new(Operation::AssociatePackage, error).effect()
        }
        BackendError::NotFound(_) => Effect::stalled(
            StallReason::DomainNotFound,
            format!("domain {domain} was not found: {message}"),
        ),
        BackendError::Invalid(_) if names_prerequisite => Effect::stalled(
            StallReason::PrerequisiteNotActive,
            format!(
                "domain {domain}: a prerequisite package is not active on it (list the domain in the prerequisite's spec.domains): {message}"
            ),
        ),
        _ => Failed::new(Operation::AssociatePackage, error).effect(),
    }
}

/// Whether `message` names the package `id` as a word of its own (`F10` is not in `F100`).
fn names_id(message: &str, id: &str) -> bool {
    !id.is_empty()
        && message
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .any(|word| word == id)
}

/// Dissociates one domain: one that left the spec, or one of this object's domains before the
/// package is deleted. An association already gone is fine.
async fn dissociate<B: PackageBackend>(
    job: &Job<'_, B>,
    status: &mut Status,
    package_id: &str,
    domain: String,
    deleting: bool,
) -> Effect {
    let result = job
        .ctx
        .backend
        .dissociate_package(job.scope, package_id, &domain)
        .await;
    match result {
        Ok(association) => status::upsert_domain(status, &job.obj.spec, association),
        Err(BackendError::NotFound(_)) if deleting => {}
        // Gone already, though what this reconcile read still showed it: read again.
        Err(BackendError::NotFound(_)) => return Effect::only(Requeue::Backoff).reread(),
        Err(error) => return Failed::new(Operation::DissociatePackage, error).effect(),
    }
    let reason = if deleting {
        WaitReason::Deleting
    } else {
        WaitReason::Dissociating
    };
    let message = format!("dissociating from domain {domain}");
    Effect::progressing(reason, message, Requeue::Poll)
        .with(Event::Dissociating { domain, deleting })
}

/// DeletePackage; the finalizer goes once the package is gone (a package already gone counts
/// as deleted, `Requeue::Never`). After a DELETE_FAILED the call is repeated slowly while the
/// object says why it is stuck.
async fn delete<B: PackageBackend>(
    ctx: &Context<B>,
    scope: &Scope,
    package_id: String,
    after_failure: Option<String>,
) -> Effect {
    match ctx.backend.delete_package(scope, &package_id).await {
        Ok(_) => {
            info!(package_id, "deleting package");
            let effect = match after_failure {
                Some(message) => Effect::stalled(
                    StallReason::DeleteFailed,
                    format!("deleting package {package_id} failed: {message}; retrying"),
                ),
                None => Effect::progressing(
                    WaitReason::Deleting,
                    format!("deleting package {package_id}"),
                    Requeue::Observe,
                ),
            };
            effect.with(Event::Deleted { id: package_id })
        }
        Err(BackendError::NotFound(_)) => Effect::only(Requeue::Never),
        Err(error) => Failed::new(Operation::DeletePackage, error).effect(),
    }
}

/// A call written ahead that failed with its intent left open: when the service answered (a
/// 5xx; AlreadyExists for a create whose earlier attempt was lost), the call is over and the
/// next observation decides at once; with no answer, it may still take effect until the
/// backend's window has passed (see `observe::read_since`).
fn remember_answer<B>(job: &Job<'_, B>, status: &Status, error: &BackendError) {
    if let Some(intent) = &status.in_flight
        && !matches!(error, BackendError::Unanswered(_))
    {
        job.ctx.schedule.record_answer(job.obj, &intent.started_at);
    }
}

/// The write-ahead record of a call about to be made; for an update, with the package as
/// last observed (`observed`), which later tells whether the call took effect.
fn intent<B>(
    operation: Operation,
    digest: &SpecDigest,
    job: &Job<'_, B>,
    observed: Option<&Status>,
) -> InFlight {
    InFlight {
        operation,
        digest: digest.as_str().to_owned(),
        started_at: job.now.to_string(),
        package_last_updated_at: observed.and_then(|s| s.last_updated_at.clone()),
        package_status: observed.and_then(|s| s.package_status.clone()),
        available_package_version: observed.and_then(|s| s.available_package_version.clone()),
    }
}

/// Forgets a package that vanished outside the cluster before creating it again.
fn clear_package(status: &mut Status) {
    status.package_id = None;
    status.package_status = None;
    status.available_package_version = None;
    status.applied_digest = None;
    status.error_details = None;
    status.version_history.clear();
    status.created_at = None;
    status.last_updated_at = None;
}

#[cfg(test)]
mod tests {
    use super::names_id;

    #[test]
    fn an_id_is_named_only_as_a_word_of_its_own() {
        assert!(names_id("Package not found: F10", "F10"));
        assert!(names_id("prerequisite pkg-ab12 is missing", "pkg-ab12"));
        assert!(!names_id("Package not found: F100", "F10"));
        assert!(!names_id("Package not found: pkg-ab123", "pkg-ab12"));
        assert!(!names_id("anything", ""));
    }
}
