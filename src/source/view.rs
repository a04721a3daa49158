//! What a reconcile knows about a followed source, and the pure rules built on it: the digest
//! the spec and the object version call for, the stall when the object cannot be read, the
//! commit-message tag, and what status records.

use jiff::{SignedDuration, Timestamp};

use crate::backend::s3::ObjectVersion;
use crate::crd::{OpenSearchPackageSpec, OpenSearchPackageStatus, SourceStatus};
use crate::digest::SpecDigest;
use crate::plan::{Action, Decision, Observation, Verdict};
use crate::vocabulary::StallReason;

/// The longest VersionId quoted whole in a commit message (S3's are 32 characters).
const TAG_VERSION_ID: usize = 40;

/// What the reconcile knows about the object's source.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum SourceView {
    /// The object does not follow its source's content (spec or operator default).
    #[default]
    NotFollowed,
    /// Followed, not read yet and nothing recorded: a Ready object waits for its check slot
    /// (the package holds what the spec asks for until the object is read).
    Unchecked,
    /// The object's current version: read with HeadObject, or, for a Ready object after a
    /// restart, the version status records until its next check.
    Current(ObjectVersion),
    /// HeadObject answered 404.
    Missing(String),
    /// HeadObject answered 403.
    Denied(String),
}

impl SourceView {
    pub fn is_followed(&self) -> bool {
        !matches!(self, Self::NotFollowed)
    }

    /// The version the object is at, when it was read.
    pub fn current(&self) -> Option<&ObjectVersion> {
        match self {
            Self::Current(version) => Some(version),
            _ => None,
        }
    }
}

/// The digest this spec and source call for.
///
/// Following, it covers the object version read: a changed file is a new digest (one
/// UpdatePackage), an unchanged one is not. Two cases count as already applied, so switching
/// following on or off imports nothing by itself:
/// - switched on: the package's newest version was created after the object was last
///   modified, so it holds this content (the applied digest is the spec's without content);
/// - switched off (or the object unreadable): the applied digest is the spec's at the version
///   status records.
pub fn desired_digest(
    spec: &OpenSearchPackageSpec,
    status: Option<&OpenSearchPackageStatus>,
    view: &SourceView,
) -> SpecDigest {
    let applied = status
        .and_then(|s| s.applied_digest.as_deref())
        .map(SpecDigest::from_status);
    let recorded = status.and_then(|s| s.source.as_ref());
    let plain = SpecDigest::of(spec);
    let at_recorded =
        recorded.map(|r| SpecDigest::following(spec, &r.etag, r.version_id.as_deref()));
    match view {
        SourceView::Current(version) => {
            let wanted = SpecDigest::following(spec, &version.etag, version.version_id.as_deref());
            let holds_it = applied.as_ref() == Some(&plain)
                && newest_version_created(status)
                    .is_some_and(|created| imported_after(version.last_modified, created));
            if holds_it { plain } else { wanted }
        }
        // Nothing read (yet): the version status records is the best knowledge.
        SourceView::Unchecked | SourceView::Missing(_) | SourceView::Denied(_) => {
            at_recorded.unwrap_or(plain)
        }
        SourceView::NotFollowed => match at_recorded {
            Some(at) if applied.as_ref() == Some(&at) => at,
            _ => plain,
        },
    }
}

fn newest_version_created(status: Option<&OpenSearchPackageStatus>) -> Option<Timestamp> {
    status?
        .version_history
        .first()?
        .created_at
        .as_deref()?
        .parse()
        .ok()
}

/// Whether an import started at `created` read an object last modified at `modified`.
/// `Last-Modified` has whole seconds, so a modification in the same second as the import
/// does not count (the safe side is one more import).
fn imported_after(modified: Option<Timestamp>, created: Timestamp) -> bool {
    modified.is_some_and(|m| m + SignedDuration::from_secs(1) <= created)
}

/// An object whose source cannot be read makes no CreatePackage or UpdatePackage and is not
/// Ready; everything else (resolving earlier calls, domains, scope) goes on. The package
/// already in AWS is left as it is.
pub fn gate(decision: Decision, observed: &Observation, spec: &OpenSearchPackageSpec) -> Decision {
    let (reason, why) = match &observed.source {
        SourceView::Missing(message) => (StallReason::SourceNotFound, message),
        SourceView::Denied(message) => (StallReason::SourceAccessDenied, message),
        _ => return decision,
    };
    let blocked = matches!(
        decision,
        Decision::Act(Action::Create { .. } | Action::Update { .. })
            | Decision::Settle(Verdict::Done)
    );
    if !blocked {
        return decision;
    }
    let package = observed
        .package
        .as_ref()
        .filter(|_| !matches!(decision, Decision::Act(Action::Create { .. })));
    let kept = match package.and_then(|p| Some((p, p.available_version.as_deref()?))) {
        Some((package, version)) => format!(
            "package {} is unchanged (still {} at {version})",
            package.id, package.status
        ),
        None => "no package is created until it can be read".to_owned(),
    };
    let source = format!("s3://{}/{}", spec.source.s3_bucket_name, spec.source.s3_key);
    Decision::stall(
        reason,
        format!("{why}; {kept}; {source} is checked again at every source check"),
    )
}

/// The commit-message tag naming the object version an import reads, e.g.
/// `[s3 etag:9b2cf535 version:3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrH]`.
pub fn tag(version: &ObjectVersion) -> String {
    let etag: String = version.etag.trim_matches('"').chars().take(8).collect();
    match version.version_id.as_deref() {
        Some(id) if id.chars().count() > TAG_VERSION_ID => {
            let short: String = id.chars().take(TAG_VERSION_ID - 1).collect();
            format!("[s3 etag:{etag} version:{short}…]")
        }
        Some(id) => format!("[s3 etag:{etag} version:{id}]"),
        None => format!("[s3 etag:{etag}]"),
    }
}

/// Records in status which object version the package was last imported from: the version
/// read, once the applied digest is the one it calls for. Forgotten when the package is
/// updated without following.
pub fn record(
    status: &mut OpenSearchPackageStatus,
    spec: &OpenSearchPackageSpec,
    view: &SourceView,
) {
    let applied = status.applied_digest.clone();
    match view {
        SourceView::Current(version)
            if applied.as_deref() == Some(desired_digest(spec, Some(status), view).as_str()) =>
        {
            status.source = Some(source_status(version));
        }
        SourceView::NotFollowed if applied.as_deref() == Some(SpecDigest::of(spec).as_str()) => {
            status.source = None;
        }
        _ => {}
    }
}

pub fn source_status(version: &ObjectVersion) -> SourceStatus {
    SourceStatus {
        etag: version.etag.clone(),
        version_id: version.version_id.clone(),
        last_modified: version.last_modified.map(|t| t.to_string()),
    }
}

pub fn object_version(status: &SourceStatus) -> ObjectVersion {
    ObjectVersion {
        etag: status.etag.clone(),
        version_id: status.version_id.clone(),
        last_modified: status.last_modified.as_deref().and_then(|t| t.parse().ok()),
    }
}
