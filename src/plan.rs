//! The pure middle of the reconcile: from the object and what AWS showed, decide the one next
//! step. No network here, so every decision is covered by table-driven tests.

use std::collections::{BTreeMap, BTreeSet};

use crate::backend::{
    AssociatePackage, CreatePackage, DomainAssociation, DomainPackageStatus, Package,
    PackageStatus, PackageVersion, Source, UpdatePackage,
};
use crate::crd::{DeletionPolicy, OpenSearchPackage, OpenSearchPackageSpec, RolloutStrategy};
use crate::digest::SpecDigest;
use crate::status::{StallReason, WaitReason};

/// What AWS (and the cluster) showed for one object, gathered before planning.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The package: looked up by the recorded id, or by name when there is none.
    pub package: Option<Package>,
    /// Version history, newest first, when it was read (before an update, after a new version).
    pub history: Option<Vec<PackageVersion>>,
    /// The package's associations, when they were read.
    pub associations: Option<Vec<DomainAssociation>>,
    /// Another object that owns this object's (region, packageName), as `namespace/name`.
    pub name_owner: Option<String>,
    /// Prerequisite object name → its package id, for prerequisites that are Ready.
    pub ready_prerequisites: BTreeMap<String, String>,
}

/// The one next step for an object that is not being deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `spec.suspend` is true: change nothing in AWS.
    Suspended,
    /// Progress needs the user to change something.
    Stall {
        reason: StallReason,
        message: String,
    },
    /// Create the package (`recreate` when a recorded package vanished outside the cluster).
    Create {
        request: CreatePackage,
        recreate: bool,
    },
    /// Take over an existing package found by name. `ours` when the create record says this
    /// object created it before a crash; then `digest` is what that create sent.
    Adopt {
        package: Package,
        ours: bool,
        digest: Option<SpecDigest>,
    },
    /// Import a new version.
    Update {
        request: UpdatePackage,
        digest: SpecDigest,
    },
    /// The version history already carries this digest's marker: the update happened before a
    /// crash. Record it without calling again.
    RecordUpdate { digest: SpecDigest, version: String },
    /// Replace the allow list (UpdatePackageScope OVERRIDE).
    UpdateScope { users: Vec<String> },
    /// Associate (or re-associate, to apply a new version) domains.
    Associate { requests: Vec<AssociatePackage> },
    /// Dissociate a domain no longer listed in the spec.
    Dissociate { domain: String },
    /// Something is under way in AWS; look again later.
    Wait { reason: WaitReason, message: String },
    /// Everything matches the spec.
    Done,
}

/// The one next step for an object that is being deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum CleanupStep {
    /// Dissociate one of this object's domains.
    Dissociate { domain: String },
    /// Dissociations are under way.
    Wait { message: String },
    /// Other domains still use the package: wait for them to go (slowly).
    InUse { domains: Vec<String> },
    /// Delete the package.
    Delete { package_id: String },
    /// Nothing (more) to do in AWS: the finalizer can go.
    Done,
}

/// The package name this object manages: `spec.packageName`, else `metadata.name`.
pub fn package_name(obj: &OpenSearchPackage) -> String {
    obj.spec
        .package_name
        .clone()
        .or_else(|| obj.metadata.name.clone())
        .unwrap_or_default()
}

/// Whether `name` is a valid package name (`^[a-z][a-z0-9-]+$`, 3-256 characters).
pub fn is_valid_package_name(name: &str) -> bool {
    let mut chars = name.chars();
    (3..=256).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The request CreatePackage sends for this spec.
pub fn create_request(spec: &OpenSearchPackageSpec, name: String) -> CreatePackage {
    CreatePackage {
        name,
        package_type: spec.package_type,
        source: source(spec),
        description: spec.description.clone(),
        engine_version: spec.engine_version.clone(),
        configuration: spec.configuration.clone(),
        encryption: spec.encryption.clone(),
        vending_enabled: spec.vending.as_ref().map(|v| v.enabled),
    }
}

fn source(spec: &OpenSearchPackageSpec) -> Source {
    Source {
        bucket: spec.source.s3_bucket_name.clone(),
        key: spec.source.s3_key.clone(),
    }
}

/// Whether a stall recorded in status still stands: nothing the user can do to lift it (a new
/// generation or a new reconcile request) has happened since.
fn stall_stands(obj: &OpenSearchPackage) -> Option<(StallReason, String)> {
    let status = obj.status.as_ref()?;
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::status::STALLED && c.status == "True")?;
    let reason = StallReason::parse(&stalled.reason)?;
    // Only stalls caused by a rejected call are remembered this way; the others are
    // re-derived from AWS state on every reconcile.
    if !reason.is_sticky() {
        return None;
    }
    let same_generation = stalled.observed_generation == obj.metadata.generation;
    let same_request = status.last_handled_reconcile_at.as_deref() == reconcile_request(obj);
    (same_generation && same_request).then(|| (reason, stalled.message.clone()))
}

/// The value of the reconcile-request annotation, if set.
pub fn reconcile_request(obj: &OpenSearchPackage) -> Option<&str> {
    obj.metadata
        .annotations
        .as_ref()?
        .get(crate::crd::RECONCILE_REQUESTED_AT)
        .map(String::as_str)
}

/// Decide the next step for an object that is not being deleted.
pub fn plan(obj: &OpenSearchPackage, observed: &Observation) -> Step {
    let spec = &obj.spec;
    let status = obj.status.clone().unwrap_or_default();
    let name = package_name(obj);

    if !is_valid_package_name(&name) {
        return Step::Stall {
            reason: StallReason::InvalidSpec,
            message: format!(
                "metadata.name {name:?} is not a valid package name (^[a-z][a-z0-9-]+$, 3-256 characters): set spec.packageName"
            ),
        };
    }
    if let Some(owner) = &observed.name_owner {
        return Step::Stall {
            reason: StallReason::NameConflict,
            message: format!(
                "package {name:?} is already managed by OpenSearchPackage {owner}; give this object another spec.packageName"
            ),
        };
    }
    if spec.suspend {
        return Step::Suspended;
    }
    if let Some((reason, message)) = stall_stands(obj) {
        return Step::Stall { reason, message };
    }

    let digest = SpecDigest::of(spec);
    let Some(package) = &observed.package else {
        // Nothing in AWS: create it (again, if a recorded package vanished).
        return Step::Create {
            request: create_request(spec, name),
            recreate: status.package_id.is_some(),
        };
    };

    if status.package_id.as_deref() != Some(package.id.as_str()) {
        // Found by name, not (yet) recorded as ours.
        if package.is_aws_owned() {
            return Step::Stall {
                reason: StallReason::AlreadyExists,
                message: format!(
                    "package {name:?} ({}) is owned by AWS and cannot be managed",
                    package.id
                ),
            };
        }
        if let Some(in_flight) = status
            .in_flight
            .as_ref()
            .filter(|f| f.operation == "CreatePackage")
        {
            return Step::Adopt {
                package: package.clone(),
                ours: true,
                digest: Some(SpecDigest::from_status(&in_flight.digest)),
            };
        }
        if spec.adopt_existing {
            return Step::Adopt {
                package: package.clone(),
                ours: false,
                digest: None,
            };
        }
        return Step::Stall {
            reason: StallReason::AlreadyExists,
            message: format!(
                "a package named {name:?} already exists ({}); set spec.adoptExisting: true to manage it",
                package.id
            ),
        };
    }

    if package.status.is_importing() {
        return wait_for_import(package);
    }

    let applied = status
        .applied_digest
        .as_deref()
        .map(SpecDigest::from_status);
    if applied.as_ref() != Some(&digest) {
        if !(package.status == PackageStatus::Available || package.status.is_failed()) {
            return Step::Wait {
                reason: WaitReason::PackageBusy,
                message: format!("package is {}", package.status.as_str()),
            };
        }
        let newest = observed.history.as_ref().and_then(|h| h.first());
        if let Some(version) = newest
            && version
                .commit_message
                .as_deref()
                .is_some_and(|m| digest.is_marked_in(m))
        {
            return Step::RecordUpdate {
                digest,
                version: version.version.clone(),
            };
        }
        return Step::Update {
            request: UpdatePackage {
                package_id: package.id.clone(),
                source: source(spec),
                description: spec.description.clone(),
                commit_message: digest.commit_message(spec.commit_message.as_deref()),
                configuration: spec.configuration.clone(),
                encryption: spec.encryption.clone(),
            },
            digest,
        };
    }

    match &package.status {
        PackageStatus::CopyFailed => {
            return Step::Stall {
                reason: StallReason::CopyFailed,
                message: failure_message(package, "the package file could not be copied from S3"),
            };
        }
        PackageStatus::ValidationFailed => {
            return Step::Stall {
                reason: StallReason::ValidationFailed,
                message: failure_message(package, "the package file failed validation"),
            };
        }
        PackageStatus::Available => {}
        other => {
            return Step::Wait {
                reason: WaitReason::PackageBusy,
                message: format!("package is {}", other.as_str()),
            };
        }
    }

    if let Some(users) = &spec.allow_listed_users {
        let wanted: BTreeSet<&String> = users.iter().collect();
        let applied: BTreeSet<&String> = status.allow_listed_users.iter().flatten().collect();
        if wanted != applied {
            return Step::UpdateScope {
                users: wanted.into_iter().cloned().collect(),
            };
        }
    }

    plan_domains(obj, package, observed)
}

fn wait_for_import(package: &Package) -> Step {
    let reason = match package.status {
        PackageStatus::Copying => WaitReason::Copying,
        _ => WaitReason::Validating,
    };
    Step::Wait {
        reason,
        message: format!("package is {}", package.status.as_str()),
    }
}

fn failure_message(package: &Package, fallback: &str) -> String {
    let detail = package
        .error
        .as_ref()
        .and_then(|e| e.error_message.clone().or_else(|| e.error_type.clone()));
    let what = detail.unwrap_or_else(|| fallback.to_owned());
    format!("{what}; fix the source and change spec.source (for example bump spec.source.revision)")
}

/// Domains this object manages: those in spec, plus those it managed before (status entries
/// not marked unmanaged), which must be dissociated when they leave the spec.
fn plan_domains(obj: &OpenSearchPackage, package: &Package, observed: &Observation) -> Step {
    let spec = &obj.spec;
    let status = obj.status.clone().unwrap_or_default();
    let Some(associations) = &observed.associations else {
        return Step::Done;
    };
    let by_domain: BTreeMap<&str, &DomainAssociation> = associations
        .iter()
        .map(|a| (a.domain_name.as_str(), a))
        .collect();
    let wanted: BTreeSet<&str> = spec.domains.iter().map(|d| d.name.as_str()).collect();

    // Domains this object associated before and that left the spec.
    for previous in status.domains.iter().filter(|d| !d.unmanaged) {
        if wanted.contains(previous.domain_name.as_str()) {
            continue;
        }
        match by_domain
            .get(previous.domain_name.as_str())
            .map(|a| &a.status)
        {
            None => {}
            Some(DomainPackageStatus::Dissociating) => {
                return Step::Wait {
                    reason: WaitReason::Dissociating,
                    message: format!("dissociating from domain {}", previous.domain_name),
                };
            }
            Some(_) => {
                return Step::Dissociate {
                    domain: previous.domain_name.clone(),
                };
            }
        }
    }

    let current = package.available_version.as_deref();
    let mut in_progress = Vec::new();
    let mut needed = Vec::new();
    for target in &spec.domains {
        match by_domain.get(target.name.as_str()) {
            Some(a) if a.status == DomainPackageStatus::Associating => {
                in_progress.push(target.name.clone());
            }
            Some(a) if a.status == DomainPackageStatus::Dissociating => {
                in_progress.push(target.name.clone());
            }
            Some(a) if a.status == DomainPackageStatus::AssociationFailed => {
                // A failure is final for the attempt that made it. A new package version, a
                // new generation or a reconcile request (which lift the recorded stall) try
                // again.
                let stale = a.package_version.as_deref() != current;
                if !stale && !association_stall_lifted(obj) {
                    let detail = a
                        .error
                        .as_ref()
                        .and_then(|e| e.error_message.clone())
                        .unwrap_or_else(|| "association failed".into());
                    return Step::Stall {
                        reason: StallReason::AssociationFailed,
                        message: format!("domain {}: {detail}", target.name),
                    };
                }
                needed.push(target);
            }
            Some(a)
                if a.status == DomainPackageStatus::Active
                    && a.package_version.as_deref() == current => {}
            _ => needed.push(target),
        }
    }

    if needed.is_empty() {
        if in_progress.is_empty() {
            return Step::Done;
        }
        return Step::Wait {
            reason: WaitReason::RollingOut,
            message: format!("associating with {}", in_progress.join(", ")),
        };
    }

    let strategy = spec
        .rollout
        .as_ref()
        .map(|r| r.strategy)
        .unwrap_or_default();
    if strategy == RolloutStrategy::Sequential && !in_progress.is_empty() {
        return Step::Wait {
            reason: WaitReason::RollingOut,
            message: format!("associating with {}", in_progress.join(", ")),
        };
    }

    let mut requests = Vec::new();
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
            return Step::Wait {
                reason: WaitReason::Prerequisites,
                message: format!(
                    "waiting for prerequisite packages to be Ready: {}",
                    missing.join(", ")
                ),
            };
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
    Step::Associate { requests }
}

/// Whether an ASSOCIATION_FAILED stall was recorded and the user has since acted on it (a new
/// generation or a new reconcile request).
fn association_stall_lifted(obj: &OpenSearchPackage) -> bool {
    let Some(status) = obj.status.as_ref() else {
        return false;
    };
    let recorded = status.conditions.iter().find(|c| {
        c.type_ == crate::status::STALLED
            && c.status == "True"
            && c.reason == StallReason::AssociationFailed.as_str()
    });
    recorded.is_some_and(|c| {
        c.observed_generation != obj.metadata.generation
            || status.last_handled_reconcile_at.as_deref() != reconcile_request(obj)
    })
}

/// Decide the next step for an object that is being deleted.
pub fn plan_cleanup(obj: &OpenSearchPackage, observed: &Observation) -> CleanupStep {
    if obj.spec.deletion_policy == DeletionPolicy::Retain {
        return CleanupStep::Done;
    }
    let status = obj.status.clone().unwrap_or_default();
    let Some(package) = &observed.package else {
        return CleanupStep::Done;
    };
    let ours = status.package_id.as_deref() == Some(package.id.as_str())
        || status
            .in_flight
            .as_ref()
            .is_some_and(|f| f.operation == "CreatePackage");
    if !ours || package.is_aws_owned() || observed.name_owner.is_some() {
        return CleanupStep::Done;
    }
    if matches!(
        package.status,
        PackageStatus::Deleting | PackageStatus::Deleted
    ) {
        return CleanupStep::Done;
    }

    let associations = observed.associations.clone().unwrap_or_default();
    let mine: BTreeSet<String> = obj
        .spec
        .domains
        .iter()
        .map(|d| d.name.clone())
        .chain(
            status
                .domains
                .iter()
                .filter(|d| !d.unmanaged)
                .map(|d| d.domain_name.clone()),
        )
        .collect();
    let mut dissociating = Vec::new();
    for association in &associations {
        if !mine.contains(&association.domain_name) {
            continue;
        }
        if association.status == DomainPackageStatus::Dissociating {
            dissociating.push(association.domain_name.clone());
        } else {
            return CleanupStep::Dissociate {
                domain: association.domain_name.clone(),
            };
        }
    }
    if !dissociating.is_empty() {
        return CleanupStep::Wait {
            message: format!("dissociating from {}", dissociating.join(", ")),
        };
    }
    let others: Vec<String> = associations
        .iter()
        .filter(|a| !mine.contains(&a.domain_name))
        .map(|a| a.domain_name.clone())
        .collect();
    if !others.is_empty() {
        return CleanupStep::InUse { domains: others };
    }
    CleanupStep::Delete {
        package_id: package.id.clone(),
    }
}
