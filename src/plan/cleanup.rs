//! Deletion: dissociate this object's domains, wait for other users to go, delete.

use std::collections::BTreeSet;

use super::{Action, Decision, Observation, Verdict};
use crate::backend::Operation;
use crate::crd::{DeletionPolicy, OpenSearchPackage};
use crate::vocabulary::{DomainPackageStatus, PackageStatus, StallReason, WaitReason};

/// Decide the next step for an object that is being deleted.
pub fn plan_cleanup(obj: &OpenSearchPackage, observed: &Observation) -> Decision {
    let finished = Decision::Settle(Verdict::Finished);
    // An observer never changes the package, deletion included.
    if obj.spec.deletion_policy == DeletionPolicy::Retain || !obj.spec.manages() {
        return finished;
    }
    let status = obj.status.clone().unwrap_or_default();
    let Some(package) = &observed.package else {
        // A create that got no answer may still make the package after the object is gone:
        // it would be left behind, owned by nobody.
        if let Some(intent) = status
            .in_flight
            .as_ref()
            .filter(|_| observed.intent_unsettled)
        {
            return Decision::wait(
                WaitReason::Deleting,
                format!(
                    "{} sent at {} got no answer; waiting to see whether it made a package to delete",
                    intent.operation, intent.started_at
                ),
            );
        }
        return finished;
    };
    let ours = status.package_id.as_deref() == Some(package.id.as_str())
        || status
            .in_flight
            .as_ref()
            .is_some_and(|f| f.operation == Operation::CreatePackage);
    if !ours || package.is_aws_owned() || observed.name_owner.is_some() {
        return finished;
    }
    match &package.status {
        PackageStatus::Deleted => return finished,
        PackageStatus::Deleting => {
            return Decision::wait(WaitReason::Deleting, "package is DELETING".into());
        }
        _ => {}
    }
    // Dissociating and deleting change AWS, which a suspended object never does: deletion
    // waits for `suspend: false` (or `deletionPolicy: Retain`, which lets the object go).
    if obj.spec.suspend {
        return Decision::Settle(Verdict::DeletionHeld {
            message: "deletion waits while spec.suspend is true: set it to false to delete the package, or set deletionPolicy: Retain to keep it".into(),
        });
    }

    let associations = observed.associations.clone().unwrap_or_default();
    let mine = managed_domains(obj);
    let mut dissociating = Vec::new();
    for association in &associations {
        if !mine.contains(association.domain_name.as_str()) {
            continue;
        }
        if association.status == DomainPackageStatus::Dissociating {
            dissociating.push(association.domain_name.clone());
        } else {
            return Decision::Act(Action::Dissociate {
                package_id: package.id.clone(),
                domain: association.domain_name.clone(),
                deleting: true,
            });
        }
    }
    if !dissociating.is_empty() {
        return Decision::wait(
            WaitReason::Deleting,
            format!("dissociating from {}", dissociating.join(", ")),
        );
    }
    let others: Vec<&str> = associations
        .iter()
        .filter(|a| !mine.contains(a.domain_name.as_str()))
        .map(|a| a.domain_name.as_str())
        .collect();
    if !others.is_empty() {
        return Decision::stall(
            StallReason::InUse,
            format!(
                "the package is still associated with domains this object does not manage: {}; dissociate them to finish deletion",
                others.join(", ")
            ),
        );
    }
    let after_failure = (package.status == PackageStatus::DeleteFailed).then(|| {
        let detail = package.error.as_ref().and_then(|e| e.error_message.clone());
        detail.unwrap_or_else(|| "the service could not delete the package".into())
    });
    Decision::Act(Action::Delete {
        package_id: package.id.clone(),
        after_failure,
    })
}

/// The domains this object manages: those in its spec, and those it associated before that
/// status still lists as its own.
fn managed_domains(obj: &OpenSearchPackage) -> BTreeSet<&str> {
    let recorded = obj.status.iter().flat_map(|s| s.domains.iter());
    obj.spec
        .domains
        .iter()
        .map(|d| d.name.as_str())
        .chain(
            recorded
                .filter(|d| !d.unmanaged)
                .map(|d| d.domain_name.as_str()),
        )
        .collect()
}
