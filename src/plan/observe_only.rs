//! `managementPolicy: Observe`: track an existing package found by id or name and report it. Every
//! decision here is a verdict or a record of what was seen ([`Action::Track`],
//! [`Action::Untrack`]); nothing that changes AWS is ever planned.

use super::package::{failure_message_for, invalid_name, suspended, wait_for_import};
use super::{Action, Decision, Observation, Verdict, package_name};
use crate::crd::OpenSearchPackage;
use crate::vocabulary::{PackageStatus, StallReason, WaitReason};

/// Decide what an observing object reports.
pub(super) fn plan_observe_only(obj: &OpenSearchPackage, observed: &Observation) -> Decision {
    let name = package_name(obj).to_owned();
    let wanted_id = obj.spec.package_id.as_deref();
    if wanted_id.is_none()
        && let Some(invalid) = invalid_name(&name)
    {
        return invalid;
    }
    if obj.spec.suspend {
        return suspended(obj);
    }
    let recorded = obj.status.as_ref().and_then(|s| s.package_id.as_deref());
    let Some(package) = &observed.package else {
        if recorded.is_some() {
            return Decision::Act(Action::Untrack);
        }
        let what = match wanted_id {
            Some(id) => format!("no package with id {id} is visible"),
            None => format!("no package named {name:?} exists"),
        };
        return Decision::stall(
            StallReason::PackageNotFound,
            format!(
                "{what} in this account and region; managementPolicy Observe never creates one (create it, or fix spec.packageName / spec.packageID)"
            ),
        );
    };
    if recorded != Some(package.id.as_str()) {
        let wanted = obj.spec.package_type.as_str();
        if package.package_type != wanted {
            return Decision::stall(
                StallReason::InvalidSpec,
                format!(
                    "package {:?} ({}) is a {}, not a {wanted} as spec.packageType says",
                    package.name, package.id, package.package_type
                ),
            );
        }
        return Decision::Act(Action::Track {
            package: package.clone(),
        });
    }
    match &package.status {
        PackageStatus::Available => Decision::Settle(Verdict::Done),
        status if status.is_importing() => wait_for_import(package),
        PackageStatus::CopyFailed => Decision::stall(
            StallReason::CopyFailed,
            failure_message_for(package, "the package's newest import could not be copied"),
        ),
        PackageStatus::ValidationFailed => Decision::stall(
            StallReason::ValidationFailed,
            failure_message_for(package, "the package's newest import failed validation"),
        ),
        PackageStatus::Deleting => {
            Decision::wait(WaitReason::PackageBusy, "package is DELETING".into())
        }
        other => Decision::stall(
            StallReason::UnexpectedPackageStatus,
            failure_message_for(package, &format!("package is {other}")),
        ),
    }
}
