//! Domains: apply the package's current version to every listed domain, dissociate the ones
//! that left the spec.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Decision, Observation, Verdict};
use crate::backend::{AssociatePackage, DomainAssociation, Package};
use crate::crd::{DomainTarget, OpenSearchPackage, RolloutStrategy};
use crate::status::stall_lifted;
use crate::vocabulary::{DomainPackageStatus, StallReason, WaitReason};

/// Domains this object manages: those in spec, plus those it managed before (status entries
/// not marked unmanaged), which must be dissociated when they leave the spec.
pub(super) fn plan_domains(
    obj: &OpenSearchPackage,
    package: &Package,
    observed: &Observation,
) -> Decision {
    let Some(associations) = &observed.associations else {
        return Decision::Settle(Verdict::Done);
    };
    let by_domain: BTreeMap<&str, &DomainAssociation> = associations
        .iter()
        .map(|a| (a.domain_name.as_str(), a))
        .collect();
    if let Some(decision) = leave_removed_domains(obj, package, &by_domain) {
        return decision;
    }

    let current = package.available_version.as_deref();
    let parallel = strategy(obj) == RolloutStrategy::Parallel;
    let mut in_progress = Vec::new();
    let mut needed = Vec::new();
    // A failed domain stops a sequential rollout; a parallel one goes on with the others and
    // stalls on it once they are done.
    let mut failed = None;
    for target in &obj.spec.domains {
        let Some(a) = by_domain.get(target.name.as_str()) else {
            needed.push(target);
            continue;
        };
        match &a.status {
            DomainPackageStatus::Associating | DomainPackageStatus::Dissociating => {
                in_progress.push(target.name.clone());
            }
            DomainPackageStatus::AssociationFailed => {
                // A failure is final for the attempt that made it. A new package version, a
                // new generation or a reconcile request (which lift the recorded stall) try
                // again.
                let stale = failed_before_the_current_version(a, package);
                if !stale && !association_stall_lifted(obj) {
                    let detail = a
                        .error
                        .as_ref()
                        .and_then(|e| e.error_message.clone())
                        .unwrap_or_else(|| "association failed".into());
                    let stall = Decision::stall(
                        StallReason::AssociationFailed,
                        format!("domain {}: {detail}", target.name),
                    );
                    if !parallel {
                        return stall;
                    }
                    failed.get_or_insert(stall);
                    continue;
                }
                needed.push(target);
            }
            DomainPackageStatus::Active if a.package_version.as_deref() == current => {}
            _ => needed.push(target),
        }
    }
    match (
        rollout(obj, package, observed, needed, &in_progress),
        failed,
    ) {
        (Decision::Settle(Verdict::Done), Some(stall)) => stall,
        (decision, _) => decision,
    }
}

/// Whether a failed association is older than the package's current version (which it then
/// never tried). `PackageVersion` shows the version the domain runs, which a failed update
/// leaves as it was, so the times decide: the package changed after the failure. Without
/// them, a version other than the current one counts as older.
fn failed_before_the_current_version(failed: &DomainAssociation, package: &Package) -> bool {
    match (failed.last_updated, package.last_updated_at) {
        (Some(failed_at), Some(changed_at)) => changed_at > failed_at,
        _ => failed.package_version != package.available_version,
    }
}

fn strategy(obj: &OpenSearchPackage) -> RolloutStrategy {
    obj.spec
        .rollout
        .as_ref()
        .map(|r| r.strategy)
        .unwrap_or_default()
}

/// Dissociates (one at a time) the domains this object associated before that left the spec.
fn leave_removed_domains(
    obj: &OpenSearchPackage,
    package: &Package,
    by_domain: &BTreeMap<&str, &DomainAssociation>,
) -> Option<Decision> {
    let wanted: BTreeSet<&str> = obj.spec.domains.iter().map(|d| d.name.as_str()).collect();
    let status = obj.status.as_ref()?;
    for previous in status.domains.iter().filter(|d| !d.unmanaged) {
        let domain = previous.domain_name.as_str();
        if wanted.contains(domain) {
            continue;
        }
        match by_domain.get(domain).map(|a| &a.status) {
            None => {}
            Some(DomainPackageStatus::Dissociating) => {
                return Some(Decision::wait(
                    WaitReason::Dissociating,
                    format!("dissociating from domain {domain}"),
                ));
            }
            Some(_) => {
                return Some(Decision::Act(Action::Dissociate {
                    package_id: package.id.clone(),
                    domain: domain.to_owned(),
                    deleting: false,
                }));
            }
        }
    }
    None
}

/// Associates the domains that need the current version: one at a time (`Sequential`) or all
/// at once (`Parallel`), once their prerequisites are Ready. A sequential rollout waits for a
/// domain's prerequisites before going on; a parallel one associates the domains whose
/// prerequisites are Ready and waits for the rest.
fn rollout(
    obj: &OpenSearchPackage,
    package: &Package,
    observed: &Observation,
    needed: Vec<&DomainTarget>,
    in_progress: &[String],
) -> Decision {
    let rolling_out = || {
        Decision::wait(
            WaitReason::RollingOut,
            format!("associating with {}", in_progress.join(", ")),
        )
    };
    if needed.is_empty() {
        if in_progress.is_empty() {
            return Decision::Settle(Verdict::Done);
        }
        return rolling_out();
    }
    let strategy = strategy(obj);
    if strategy == RolloutStrategy::Sequential && !in_progress.is_empty() {
        return rolling_out();
    }

    let mut requests = Vec::new();
    let mut waiting = None;
    for target in needed {
        let mut prerequisites = Vec::new();
        let mut missing = Vec::new();
        for name in &target.prerequisites {
            match observed.ready_prerequisites.get(name) {
                Some(id) => prerequisites.push(id.clone()),
                None => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            let wait = Decision::wait(
                WaitReason::Prerequisites,
                format!(
                    "waiting for prerequisite packages to be Ready: {}",
                    missing.join(", ")
                ),
            );
            if strategy == RolloutStrategy::Sequential {
                return wait;
            }
            waiting.get_or_insert(wait);
            continue;
        }
        requests.push(AssociatePackage {
            package_id: package.id.clone(),
            domain_name: target.name.clone(),
            prerequisites,
            key_store_access: target.key_store_access.clone(),
        });
        if strategy == RolloutStrategy::Sequential {
            break;
        }
    }
    match waiting {
        Some(wait) if requests.is_empty() => wait,
        _ => Decision::Act(Action::Associate { requests }),
    }
}

/// Whether an ASSOCIATION_FAILED stall was recorded and the user has since acted on it (a new
/// generation or a new reconcile request).
fn association_stall_lifted(obj: &OpenSearchPackage) -> bool {
    obj.status
        .as_ref()
        .and_then(|s| s.stall())
        .filter(|s| s.reason == Some(StallReason::AssociationFailed))
        .is_some_and(|s| stall_lifted(obj, &s))
}
