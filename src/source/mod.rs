//! Following a package's S3 source: re-import when the file's content changes under the same
//! key (`spec.source.followContent`, or the operator's `--follow-content` default).
//!
//! | file | what it does |
//! |---|---|
//! | `mod` | [`Follower`]: which objects follow their source, when their object is read (HeadObject), what was read |
//! | `view` | what a reconcile knows about the source ([`SourceView`]); the digest, stall, tag and status rules on it (pure) |
//! | `slots` | each object's check slot in the interval, spread by UID |
//!
//! The object version read (ETag, VersionId) is part of the digest, so a changed file goes
//! through the same exactly-once machinery as a spec change: one UpdatePackage per version.
//! A followed object's source is read
//! - at its first reconcile, and whenever its generation or reconcile request changes;
//! - at its slot, once per check interval (spread over the interval by UID; never more often,
//!   whatever the resync);
//! - after a restart, at once only if the object is not Ready: a Ready object keeps the version
//!   status records until its slot, so a restart or a new leader does not read every object;
//! - again right before an import it would start, when the last read is more than a moment old
//!   (a new file seen while an import runs is read again once that import is done), so the
//!   import's digest and tag name the version the service reads.

mod slots;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kube::ResourceExt;

pub use view::{SourceView, desired_digest, gate, object_version, record, source_status, tag};

use crate::backend::s3::S3Backend;
use crate::backend::{BackendError, Scope};
use crate::crd::{OpenSearchPackage, OpenSearchPackageStatus};
use crate::status::{is_settled, reconcile_request};

/// The default `--source-check-interval`.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// A read older than this is repeated before it starts an import, so the import's digest and
/// tag name the version the service is about to read (an import can wait minutes for the one
/// before it to finish, and the file can change meanwhile).
const FRESH: Duration = Duration::from_secs(1);

/// How objects follow their sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowSettings {
    /// Whether an object that does not say (`spec.source.followContent` unset) follows.
    pub by_default: bool,
    /// How often a followed object's source is read.
    pub check_interval: Duration,
}

impl Default for FollowSettings {
    fn default() -> Self {
        Self {
            by_default: false,
            check_interval: DEFAULT_CHECK_INTERVAL,
        }
    }
}

/// Which followed object versions were read, and when each object's source is read next.
pub struct Follower {
    settings: FollowSettings,
    /// `None`: no S3 client (a context built without one); following objects cannot be read.
    s3: Option<Arc<S3Backend>>,
    /// By object UID.
    seen: Mutex<HashMap<String, Seen>>,
}

/// One object's last read.
struct Seen {
    /// What the read was made for: a change of any of these reads again at once.
    basis: Basis,
    view: SourceView,
    next_check: Instant,
    /// When HeadObject gave `view`; `None` for a version taken from status.
    read_at: Option<Instant>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Basis {
    bucket: String,
    key: String,
    generation: Option<i64>,
    reconcile_request: Option<String>,
}

impl Basis {
    fn of(obj: &OpenSearchPackage) -> Self {
        Self {
            bucket: obj.spec.source.s3_bucket_name.clone(),
            key: obj.spec.source.s3_key.clone(),
            generation: obj.metadata.generation,
            reconcile_request: reconcile_request(obj).map(str::to_owned),
        }
    }
}

impl Default for Follower {
    /// Nothing follows its source unless it says so, and no object can be read.
    fn default() -> Self {
        Self::new(FollowSettings::default(), None)
    }
}

impl Follower {
    pub fn new(settings: FollowSettings, s3: Option<Arc<S3Backend>>) -> Self {
        Self {
            settings,
            s3,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> FollowSettings {
        self.settings
    }

    /// Whether this object follows its source's content.
    pub fn follows(&self, obj: &OpenSearchPackage) -> bool {
        obj.spec
            .source
            .follow_content
            .unwrap_or(self.settings.by_default)
    }

    /// What the reconcile knows about the object's source: read with HeadObject when due (see
    /// the module docs), else as last read, with the scope's identity. The scope's region is
    /// the package's; a bucket elsewhere is found by the S3 client. `importing`: the package is importing a version now (a new file
    /// waits for it, and is read again once it is done). Transient failures are errors (the
    /// reconcile backs off and reads again); a missing object or denied access is a view, not
    /// an error.
    pub async fn observe(
        &self,
        obj: &OpenSearchPackage,
        scope: &Scope,
        deleting: bool,
        importing: bool,
    ) -> Result<SourceView, BackendError> {
        if deleting || !self.follows(obj) {
            self.forget(obj);
            return Ok(SourceView::NotFollowed);
        }
        let uid = key(obj);
        let basis = Basis::of(obj);
        if let Some(view) = self.remembered(&uid, &basis, obj, importing) {
            return Ok(view);
        }
        let s3 = self.s3.as_ref().ok_or_else(|| {
            BackendError::Transient("this operator has no S3 client to read sources with".into())
        })?;
        let view = match s3.head_object(scope, &basis.bucket, &basis.key).await {
            Ok(version) => SourceView::Current(version),
            Err(BackendError::NotFound(message)) => SourceView::Missing(message),
            Err(BackendError::AccessDenied(message)) => SourceView::Denied(message),
            Err(other) => return Err(other),
        };
        self.remember(&uid, basis, view.clone());
        Ok(view)
    }

    /// The last read, while it is valid: until the object's slot, and, when it would start an
    /// import, for a moment only (while an import runs, until it is done). For a Ready object
    /// this process has not read yet, the version status records (valid until the slot).
    fn remembered(
        &self,
        uid: &str,
        basis: &Basis,
        obj: &OpenSearchPackage,
        importing: bool,
    ) -> Option<SourceView> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = seen.get(uid) {
            let valid = last.basis == *basis && Instant::now() < last.next_check;
            let fresh = last.read_at.is_some_and(|at| at.elapsed() < FRESH);
            let valid = valid && (fresh || importing || !starts_import(obj, &last.view));
            return valid.then(|| last.view.clone());
        }
        if !is_settled(obj) {
            return None;
        }
        let recorded = obj.status.as_ref().and_then(|s| s.source.as_ref());
        let view = match recorded {
            Some(source) => SourceView::Current(object_version(source)),
            None => SourceView::Unchecked,
        };
        seen.insert(
            uid.to_owned(),
            Seen {
                basis: basis.clone(),
                view: view.clone(),
                next_check: self.next_check(uid),
                read_at: None,
            },
        );
        Some(view)
    }

    fn remember(&self, uid: &str, basis: Basis, view: SourceView) {
        let next_check = self.next_check(uid);
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                uid.to_owned(),
                Seen {
                    basis,
                    view,
                    next_check,
                    read_at: Some(Instant::now()),
                },
            );
    }

    /// The object's next slot, as an instant.
    fn next_check(&self, uid: &str) -> Instant {
        let now = jiff::Timestamp::now();
        let now_ms = u64::try_from(now.as_millisecond()).unwrap_or_default();
        let slot = slots::next_slot(uid, self.settings.check_interval, now_ms);
        Instant::now() + Duration::from_millis(slot.saturating_sub(now_ms))
    }

    /// How long until the object's source is read next (the reconcile requeues by then).
    /// `None` when nothing is scheduled, or the check is overdue because the reconcile ended
    /// before reading (a name conflict, a failed read): the object then keeps its own requeue,
    /// never a busy loop.
    pub fn next_check_in(&self, obj: &OpenSearchPackage) -> Option<Duration> {
        if !self.follows(obj) {
            return None;
        }
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let last = seen.get(&key(obj))?;
        let left = last.next_check.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }

    /// What the reconcile read for this object (`NotFollowed` when it follows nothing or
    /// has not been read).
    pub fn view(&self, obj: &OpenSearchPackage) -> SourceView {
        if !self.follows(obj) {
            return SourceView::NotFollowed;
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key(obj))
            .map(|s| s.view.clone())
            .unwrap_or(SourceView::Unchecked)
    }

    /// Records in status the object version the package was last imported from.
    pub fn record(&self, obj: &OpenSearchPackage, status: &mut OpenSearchPackageStatus) {
        record(status, &obj.spec, &self.view(obj));
    }

    /// Makes the object's source due for reading at its next reconcile (tests stand in for
    /// the slot with it).
    pub fn make_due(&self, obj: &OpenSearchPackage) {
        if let Some(last) = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&key(obj))
        {
            last.next_check = Instant::now();
        }
    }

    /// Forgets an object (deleted, or no longer following).
    pub fn forget(&self, obj: &OpenSearchPackage) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(obj));
    }
}

/// Whether this view calls for an import: its digest is not the one applied.
fn starts_import(obj: &OpenSearchPackage, view: &SourceView) -> bool {
    let status = obj.status.as_ref();
    let applied = status.and_then(|s| s.applied_digest.as_deref());
    matches!(view, SourceView::Current(_))
        && applied != Some(desired_digest(&obj.spec, status, view).as_str())
}

fn key(obj: &OpenSearchPackage) -> String {
    obj.uid()
        .unwrap_or_else(|| format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::s3::ObjectVersion;
    use crate::crd::OpenSearchPackageStatus;
    use crate::digest::SpecDigest;
    use crate::status::{Outcome, apply_outcome};

    fn object(follow: Option<bool>) -> OpenSearchPackage {
        let mut obj: OpenSearchPackage = serde_json::from_value(serde_json::json!({
            "apiVersion": "ospkg.dev/v1alpha1",
            "kind": "OpenSearchPackage",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {"packageType": "TXT-DICTIONARY", "source": {"s3BucketName": "b", "s3Key": "k"}},
        }))
        .expect("object");
        obj.spec.source.follow_content = follow;
        obj
    }

    fn version(etag: &str) -> ObjectVersion {
        ObjectVersion {
            etag: etag.into(),
            version_id: None,
            last_modified: None,
        }
    }

    /// Ready at its generation, imported from `imported`.
    fn settled(mut obj: OpenSearchPackage, imported: &ObjectVersion) -> OpenSearchPackage {
        let mut status = OpenSearchPackageStatus {
            applied_digest: Some(
                SpecDigest::following(&obj.spec, &imported.etag, None)
                    .as_str()
                    .into(),
            ),
            source: Some(source_status(imported)),
            ..Default::default()
        };
        apply_outcome(
            &mut status,
            &Outcome::Ready,
            obj.metadata.generation,
            jiff::Timestamp::now(),
        );
        obj.status = Some(status);
        obj
    }

    #[test]
    fn the_object_decides_and_the_default_fills_in() {
        let off = Follower::default();
        let on = Follower::new(
            FollowSettings {
                by_default: true,
                ..FollowSettings::default()
            },
            None,
        );
        assert!(!off.follows(&object(None)));
        assert!(off.follows(&object(Some(true))));
        assert!(on.follows(&object(None)));
        assert!(!on.follows(&object(Some(false))));
        assert_eq!(off.next_check_in(&object(None)), None);
    }

    #[test]
    fn a_ready_object_after_a_restart_keeps_the_recorded_version_until_its_slot() {
        let follower = Follower::default();
        let v1 = version("\"one\"");
        let obj = settled(object(Some(true)), &v1);
        let basis = Basis::of(&obj);
        assert_eq!(
            follower.remembered("u-1", &basis, &obj, false),
            Some(SourceView::Current(v1.clone()))
        );
        let next = follower.next_check_in(&obj).expect("a slot");
        assert!(next <= DEFAULT_CHECK_INTERVAL, "{next:?}");
        // A new generation is read at once.
        let mut edited = obj.clone();
        edited.metadata.generation = Some(2);
        assert_eq!(
            follower.remembered("u-1", &Basis::of(&edited), &edited, false),
            None
        );
        // At the slot it is read, and an overdue check never makes a busy requeue.
        follower.make_due(&obj);
        assert_eq!(follower.remembered("u-1", &basis, &obj, false), None);
        assert_eq!(follower.next_check_in(&obj), None);
    }

    #[test]
    fn a_read_that_would_start_an_import_is_repeated_unless_fresh_or_waiting() {
        let follower = Follower::default();
        let v1 = version("\"one\"");
        let obj = settled(object(Some(true)), &v1);
        let basis = Basis::of(&obj);
        let v2 = SourceView::Current(version("\"two\""));
        follower.remember("u-1", basis.clone(), v2.clone());
        // Just read: used as it is.
        assert_eq!(
            follower.remembered("u-1", &basis, &obj, false),
            Some(v2.clone())
        );
        // A moment later it would start an import: read again first ...
        if let Some(last) = follower
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut("u-1")
        {
            last.read_at = Instant::now().checked_sub(FRESH * 2);
        }
        assert_eq!(follower.remembered("u-1", &basis, &obj, false), None);
        // ... unless an import runs, which the new file waits for anyway.
        assert_eq!(follower.remembered("u-1", &basis, &obj, true), Some(v2));
        // A version already imported needs no fresh read.
        follower.remember("u-1", basis.clone(), SourceView::Current(v1.clone()));
        if let Some(last) = follower
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut("u-1")
        {
            last.read_at = Instant::now().checked_sub(FRESH * 2);
        }
        assert_eq!(
            follower.remembered("u-1", &basis, &obj, false),
            Some(SourceView::Current(v1))
        );
    }
}
