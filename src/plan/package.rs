//! The package itself: create, adopt, update, scope; then the domains.

use std::collections::BTreeSet;

use super::{
    Action, Decision, Observation, Verdict, create_request, domains, is_valid_package_name,
    observe_only, package_name, update_request,
};
use crate::backend::{Operation, Package};
use crate::crd::{InFlight, OpenSearchPackage};
use crate::digest::SpecDigest;
use crate::status::{rfc3339, standing_rejection};
use crate::vocabulary::{PackageStatus, StallReason, WaitReason};

/// Decide the next step for an object that is not being deleted.
pub(super) fn plan(obj: &OpenSearchPackage, observed: &Observation) -> Decision {
    if !obj.spec.manages() {
        return observe_only::plan_observe_only(obj, observed);
    }
    let spec = &obj.spec;
    let status = obj.status.clone().unwrap_or_default();
    let name = package_name(obj).to_owned();

    if let Some(settled) = before_aws(obj, observed, &name) {
        return settled;
    }
    let open_intent = status.in_flight.as_ref();
    let Some(package) = &observed.package else {
        if let Some(intent) = open_intent.filter(|_| observed.intent_unsettled) {
            // A create that got no answer may still make the package: creating another now
            // could import the wrong spec under its name.
            return unsettled(intent);
        }
        // Nothing in AWS: create it (again, if a recorded package vanished).
        return Decision::Act(Action::Create {
            request: create_request(spec, name),
            recreate: status.package_id.is_some(),
            digest: observed.digest(obj),
        });
    };
    if status.package_id.as_deref() != Some(package.id.as_str()) {
        return found_by_name(obj, package, &name);
    }
    if let Some(intent) = open_intent.filter(|f| f.operation == Operation::UpdatePackage) {
        let happened = update_took_effect(intent, package);
        if !happened && observed.intent_unsettled {
            return unsettled(intent);
        }
        return Decision::Act(Action::ResolveUpdate {
            digest: SpecDigest::from_status(&intent.digest),
            happened,
        });
    }
    if package.status.is_importing() {
        return wait_for_import(package);
    }

    let digest = observed.digest(obj);
    let applied = status
        .applied_digest
        .as_deref()
        .map(SpecDigest::from_status);
    if applied.as_ref() != Some(&digest) {
        return update(obj, package, observed, digest);
    }
    match &package.status {
        PackageStatus::CopyFailed => {
            return Decision::stall(
                StallReason::CopyFailed,
                failure_message(package, "the package file could not be copied from S3"),
            );
        }
        PackageStatus::ValidationFailed => {
            return Decision::stall(
                StallReason::ValidationFailed,
                failure_message(package, "the package file failed validation"),
            );
        }
        PackageStatus::Available => {}
        other => return not_available(other, package),
    }
    if let Some(users) = scope_change(obj, package) {
        return Decision::Act(Action::UpdateScope { users });
    }
    domains::plan_domains(obj, package, observed)
}

/// What is decided before looking at AWS: a bad name, a name another object owns, a
/// suspension, a rejection the user has not acted on yet.
fn before_aws(obj: &OpenSearchPackage, observed: &Observation, name: &str) -> Option<Decision> {
    if let Some(invalid) = invalid_name(name) {
        return Some(invalid);
    }
    if let Some(owner) = &observed.name_owner {
        return Some(Decision::stall(
            StallReason::NameConflict,
            format!(
                "package {name:?} is already managed by OpenSearchPackage {owner}; give this object another spec.packageName"
            ),
        ));
    }
    if obj.spec.suspend {
        return Some(suspended(obj));
    }
    sticky_stall(obj).map(Decision::Settle)
}

/// metadata.name used as the package name, but not a valid one.
pub(super) fn invalid_name(name: &str) -> Option<Decision> {
    (!is_valid_package_name(name)).then(|| {
        Decision::stall(
            StallReason::InvalidSpec,
            format!(
                "metadata.name {name:?} is not a valid package name (^[a-z][a-z0-9-]+$, 3-256 characters): set spec.packageName"
            ),
        )
    })
}

/// `spec.suspend`: nothing changes in AWS and the conditions stay as they were.
pub(super) fn suspended(obj: &OpenSearchPackage) -> Decision {
    let seen = obj.status.as_ref().and_then(|s| s.observed_generation);
    Decision::Settle(Verdict::Suspended {
        new_generation: seen != obj.metadata.generation,
    })
}

/// A stall caused by a rejected call that the user has not acted on yet. AWS state does not
/// show it, so the recorded condition is what keeps the operator from calling again.
fn sticky_stall(obj: &OpenSearchPackage) -> Option<Verdict> {
    let stall = standing_rejection(obj)?;
    Some(Verdict::Stall {
        reason: stall.reason?,
        message: stall.message.to_owned(),
    })
}

/// A package found by name that this object has not recorded as its own.
fn found_by_name(obj: &OpenSearchPackage, package: &Package, name: &str) -> Decision {
    if package.is_aws_owned() {
        return Decision::stall(
            StallReason::AlreadyExists,
            format!(
                "package {name:?} ({}) is owned by AWS and cannot be managed",
                package.id
            ),
        );
    }
    let create_record = obj
        .status
        .as_ref()
        .and_then(|s| s.in_flight.as_ref())
        .filter(|f| f.operation == Operation::CreatePackage);
    if let Some(record) = create_record {
        return Decision::Act(Action::Adopt {
            package: package.clone(),
            ours: true,
            digest: Some(SpecDigest::from_status(&record.digest)),
        });
    }
    if obj.spec.adopt_existing {
        return Decision::Act(Action::Adopt {
            package: package.clone(),
            ours: false,
            digest: None,
        });
    }
    Decision::stall(
        StallReason::AlreadyExists,
        format!(
            "a package named {name:?} already exists ({}); set spec.adoptExisting: true to manage it",
            package.id
        ),
    )
}

/// The spec changed since the last create or update: import a new version, unless the package
/// is AVAILABLE at a newest version that already carries this spec's marker (the update
/// happened before a crash). A failed package is updated even then: a later import failed
/// (a spec reverted after it, say), and only an update makes AWS hold this spec again.
fn update(
    obj: &OpenSearchPackage,
    package: &Package,
    observed: &Observation,
    digest: SpecDigest,
) -> Decision {
    if !(package.status == PackageStatus::Available || package.status.is_failed()) {
        return not_available(&package.status, package);
    }
    let newest = observed.history.as_ref().and_then(|h| h.first());
    if package.status == PackageStatus::Available
        && let Some(version) = newest
        && version
            .commit_message
            .as_deref()
            .is_some_and(|m| digest.is_marked_in(m))
    {
        return Decision::Act(Action::RecordUpdate {
            digest,
            version: version.version.clone(),
        });
    }
    Decision::Act(Action::Update {
        request: update_request(
            &obj.spec,
            package.id.clone(),
            &digest,
            observed.source.current(),
        ),
        digest,
    })
}

/// The allow list to apply, when the spec's differs from the package's (as AWS shows it, or,
/// when AWS does not show it, as last applied).
fn scope_change(obj: &OpenSearchPackage, package: &Package) -> Option<Vec<String>> {
    let users = obj.spec.allow_listed_users.as_ref()?;
    let wanted: BTreeSet<&String> = users.iter().collect();
    let current = package.allow_listed_users.as_ref().or(obj
        .status
        .as_ref()
        .and_then(|s| s.allow_listed_users.as_ref()));
    let applied: BTreeSet<&String> = current.into_iter().flatten().collect();
    (wanted != applied).then(|| wanted.into_iter().cloned().collect())
}

/// A call written ahead that got no answer and may still take effect: wait until it took
/// effect or its window has passed, and only then decide (calling again now could make a second
/// version, or a package of an older spec).
fn unsettled(intent: &InFlight) -> Decision {
    Decision::Settle(Verdict::Wait {
        reason: WaitReason::Retrying,
        message: format!(
            "{} sent at {} got no answer; waiting to see whether it took effect before deciding again",
            intent.operation, intent.started_at
        ),
    })
}

/// Whether an UpdatePackage recorded in `intent` took effect: the package changed since the
/// intent was written (its status began anew, or its status or version moved). This holds
/// whether the import then succeeded or failed (a failed import leaves no version).
fn update_took_effect(intent: &InFlight, package: &Package) -> bool {
    intent.package_last_updated_at != rfc3339(package.last_updated_at)
        || intent.package_status.as_ref() != Some(&package.status)
        || intent.available_package_version != package.available_version
}

/// A package that is neither AVAILABLE nor failed: wait while the service works on it; say so
/// when it is in a state this operator cannot act on.
fn not_available(status: &PackageStatus, package: &Package) -> Decision {
    match status {
        PackageStatus::Copying | PackageStatus::Validating | PackageStatus::Deleting => {
            Decision::wait(WaitReason::PackageBusy, format!("package is {status}"))
        }
        _ => Decision::stall(
            StallReason::UnexpectedPackageStatus,
            failure_message_for(
                package,
                &format!("package is {status}, a state this operator cannot act on"),
            ),
        ),
    }
}

pub(super) fn failure_message_for(package: &Package, what: &str) -> String {
    match package
        .error
        .as_ref()
        .and_then(|e| e.error_message.as_deref())
    {
        Some(detail) => format!("{what}: {detail}"),
        None => what.to_owned(),
    }
}

pub(super) fn wait_for_import(package: &Package) -> Decision {
    let reason = match package.status {
        PackageStatus::Copying => WaitReason::Copying,
        _ => WaitReason::Validating,
    };
    Decision::wait(reason, format!("package is {}", package.status))
}

fn failure_message(package: &Package, fallback: &str) -> String {
    let detail = package
        .error
        .as_ref()
        .and_then(|e| e.error_message.clone().or_else(|| e.error_type.clone()));
    let what = detail.unwrap_or_else(|| fallback.to_owned());
    format!("{what}; fix the source and change spec.source (for example bump spec.source.revision)")
}
