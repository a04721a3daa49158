//! The pure middle of the reconcile: from the object and what AWS showed, decide what happens
//! next. No network here, so every decision is covered by table-driven tests.
//!
//! A [`Decision`] is either a [`Verdict`] (the object settles where it is: done, waiting,
//! stalled, suspended, finished deleting) or one [`Action`] (one AWS call, or one record of a
//! call an earlier attempt made). The controller performs actions and writes verdicts.
//! Objects with `managementPolicy: Observe` are planned by `observe_only`, whose only
//! actions record what was seen and never call AWS.

mod cleanup;
mod domains;
mod observe_only;
mod package;

use std::collections::BTreeMap;

pub use cleanup::plan_cleanup;

use crate::backend::s3::ObjectVersion;
use crate::backend::{
    AssociatePackage, CreatePackage, DomainAssociation, Package, PackageVersion, Source,
    UpdatePackage,
};
use crate::crd::{OpenSearchPackage, OpenSearchPackageSpec};
use crate::digest::SpecDigest;
use crate::source::{self, SourceView};
use crate::vocabulary::{StallReason, WaitReason};

/// Decide the next step for an object that is not being deleted. An object whose followed
/// source cannot be read makes no import and is not Ready ([`source::gate`]).
pub fn plan(obj: &OpenSearchPackage, observed: &Observation) -> Decision {
    source::gate(package::plan(obj, observed), observed, &obj.spec)
}

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
    /// The S3 source object's version, for an object that follows it.
    pub source: SourceView,
    /// The call of the open write-ahead intent got no answer and may still take effect: what
    /// AWS shows now can prove that it did, not that it did not.
    pub intent_unsettled: bool,
}

impl Observation {
    /// The digest the object's spec and its source's version call for.
    pub fn digest(&self, obj: &OpenSearchPackage) -> SpecDigest {
        source::desired_digest(&obj.spec, obj.status.as_ref(), &self.source)
    }
}

/// What the plan decided. Made once per reconcile and consumed at once, so the size of the
/// action requests does not matter.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    /// Nothing to call: the object settles here.
    Settle(Verdict),
    /// One thing to do.
    Act(Action),
}

/// Where an object settles without an AWS call, and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Everything matches the spec.
    Done,
    /// Something is under way in AWS; look again later.
    Wait { reason: WaitReason, message: String },
    /// Progress needs the user (or, for `InUse`, someone else) to change something.
    Stall {
        reason: StallReason,
        message: String,
    },
    /// `spec.suspend` is true: change nothing in AWS and leave the conditions as they were.
    /// `new_generation` when this generation had not been seen yet (an Event says so).
    Suspended { new_generation: bool },
    /// Deleting, but `spec.suspend` holds back the calls deletion needs until it is false
    /// (or `deletionPolicy` is `Retain`): the object waits, saying so.
    DeletionHeld { message: String },
    /// Deleting: nothing (more) to do in AWS, the finalizer can go.
    Finished,
}

/// When to reconcile an object again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Look again soon: something was just changed or recorded.
    Soon,
    /// Poll: AWS is changing associations (read per object).
    Poll,
    /// Wait for the region observer: AWS is working on the package, which the region listing
    /// shows.
    Observe,
    /// Nothing to do until the resync.
    Resync,
    /// A transient failure: back off.
    Backoff,
    /// Check back slowly (waiting on something outside this object).
    Slowly,
    /// Only a change of the object can bring more work.
    Never,
}

impl Verdict {
    /// When an object that settled here is looked at again.
    pub fn requeue(&self) -> Requeue {
        match self {
            Self::Done | Self::Suspended { .. } | Self::DeletionHeld { .. } => Requeue::Resync,
            Self::Wait { reason, .. } if reason.shows_in_listing() => Requeue::Observe,
            Self::Wait { .. } => Requeue::Poll,
            Self::Stall { reason, .. } if reason.waits_on_others() => Requeue::Slowly,
            Self::Stall { .. } => Requeue::Resync,
            Self::Finished => Requeue::Never,
        }
    }
}

/// One AWS call (or the record of one made before a crash).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the package (`recreate` when a recorded package vanished outside the cluster);
    /// `digest` is what it imports.
    Create {
        request: CreatePackage,
        recreate: bool,
        digest: SpecDigest,
    },
    /// Take over an existing package found by name; no call. `ours` when the create record
    /// says this object created it before a crash; then `digest` is what that create sent.
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
    /// An UpdatePackage whose answer was lost (crash, timeout, 5xx): the package shows whether
    /// it `happened`; record that, without calling again.
    ResolveUpdate { digest: SpecDigest, happened: bool },
    /// Replace the allow list (UpdatePackageScope OVERRIDE).
    UpdateScope { users: Vec<String> },
    /// Associate (or re-associate, to apply a new version) domains.
    Associate { requests: Vec<AssociatePackage> },
    /// Dissociate a domain: one that left the spec, or, while `deleting`, each of this
    /// object's domains before the package goes.
    Dissociate {
        package_id: String,
        domain: String,
        deleting: bool,
    },
    /// Delete the package; `after_failure` carries the service's message when an earlier
    /// deletion ended in DELETE_FAILED.
    Delete {
        package_id: String,
        after_failure: Option<String>,
    },
    /// managementPolicy Observe: record the package found (by id or name) as the one
    /// observed; no call.
    Track { package: Package },
    /// managementPolicy Observe: the recorded package is gone; forget it (the next look-up
    /// goes by id or name again); no call.
    Untrack,
}

impl Action {
    /// Whether the action changes the package as DescribePackages shows it (so what is read
    /// next must have been read after it).
    pub fn changes_package(&self) -> bool {
        matches!(
            self,
            Self::Create { .. }
                | Self::Update { .. }
                | Self::UpdateScope { .. }
                | Self::Delete { .. }
        )
    }
}

impl Decision {
    pub(crate) fn stall(reason: StallReason, message: String) -> Self {
        Self::Settle(Verdict::Stall { reason, message })
    }

    pub(crate) fn wait(reason: WaitReason, message: String) -> Self {
        Self::Settle(Verdict::Wait { reason, message })
    }
}

/// The package name this object manages: `spec.packageName`, else `metadata.name`.
pub fn package_name(obj: &OpenSearchPackage) -> &str {
    obj.spec
        .package_name
        .as_deref()
        .or(obj.metadata.name.as_deref())
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
        source: source_of(spec),
        description: spec.description.clone(),
        engine_version: spec.engine_version.clone(),
        configuration: spec.configuration.clone(),
        encryption: spec.encryption.clone(),
        vending_enabled: spec.vending.as_ref().map(|v| v.enabled),
    }
}

/// The request UpdatePackage sends for this spec; `followed` names the source object's
/// version in the commit message (an object that follows its source).
pub fn update_request(
    spec: &OpenSearchPackageSpec,
    package_id: String,
    digest: &SpecDigest,
    followed: Option<&ObjectVersion>,
) -> UpdatePackage {
    let tag = followed.map(source::tag);
    UpdatePackage {
        package_id,
        source: source_of(spec),
        description: spec.description.clone(),
        commit_message: digest
            .commit_message_tagged(spec.commit_message.as_deref(), tag.as_deref()),
        configuration: spec.configuration.clone(),
        encryption: spec.encryption.clone(),
    }
}

fn source_of(spec: &OpenSearchPackageSpec) -> Source {
    Source {
        bucket: spec.source.s3_bucket_name.clone(),
        key: spec.source.s3_key.clone(),
    }
}
