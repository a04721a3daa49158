//! Everything the reconcile writes to Kubernetes: the finalizer, the status (server-side
//! apply, skipped when unchanged) and Events.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::Recorder;
use kube::{Resource, ResourceExt};
use tracing::warn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::events::Event;
use super::{Error, Job};
use crate::crd::{FIELD_MANAGER, FINALIZER, OpenSearchPackage, OpenSearchPackageStatus, slim};

pub async fn add_finalizer<B>(job: &Job<'_, B>) -> Result<(), Error> {
    let (api, obj) = (job.api, job.obj);
    fence(job)?;
    // The `test` operations make the patch fail rather than clobber a concurrent change.
    let patch = if obj.meta().finalizers.is_none() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": obj.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    json_patch(api, obj, patch).await
}

pub async fn remove_finalizer<B>(job: &Job<'_, B>) -> Result<(), Error> {
    let (api, obj) = (job.api, job.obj);
    fence(job)?;
    let Some(index) = obj.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch = serde_json::json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]);
    json_patch(api, obj, patch).await
}

async fn json_patch(
    api: &Api<OpenSearchPackage>,
    obj: &OpenSearchPackage,
    patch: serde_json::Value,
) -> Result<(), Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}

/// Only the leader writes; a replica that lost the Lease (or was paused past it) stops here.
pub(super) fn fence<B>(job: &Job<'_, B>) -> Result<(), Error> {
    if job.ctx.leadership.is_leader() {
        Ok(())
    } else {
        Err(Error::NotLeader)
    }
}

/// Writes the whole status with server-side apply; skipped when nothing changed. The new
/// resourceVersion is remembered so a reconcile never acts on a cache older than this write.
pub async fn write_status<B>(
    job: &Job<'_, B>,
    status: &OpenSearchPackageStatus,
) -> Result<(), Error> {
    let (api, obj) = (job.api, job.obj);
    if obj.status.as_ref() == Some(status) {
        return Ok(());
    }
    fence(job)?;
    let patch = serde_json::json!({
        "apiVersion": OpenSearchPackage::api_version(&()),
        "kind": OpenSearchPackage::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
    job.ctx.own_writes.record(obj, written);
    Ok(())
}

/// The objects as this process's own status writes left them, per object (by UID), until the
/// watch delivers them.
///
/// The watch delivers our writes back a moment later (seconds, when the API server is busy);
/// a reconcile that starts before that (woken because an import ended, say) would read the
/// watch cache's older copy. Acting on it could repeat a call or let server-side apply erase
/// a field just written, so such a reconcile acts on the object as the API server answered
/// our write instead: what the cache will hold.
#[derive(Default)]
pub struct OwnWrites {
    by_uid: Mutex<HashMap<String, Written>>,
}

struct Written {
    /// resourceVersions older than our last write (the ones we wrote over).
    superseded: Vec<String>,
    /// The object as the API server returned it from our last write.
    latest: Arc<OpenSearchPackage>,
    at: Instant,
}

/// After this long the memory is dropped even if the watch never delivered our write.
const OWN_WRITE_MEMORY: Duration = Duration::from_secs(30);

impl OwnWrites {
    fn record(&self, before: &OpenSearchPackage, mut after: OpenSearchPackage) {
        let Some(uid) = before.uid() else { return };
        slim(&mut after);
        let after = Arc::new(after);
        let mut map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(uid).or_insert_with(|| Written {
            superseded: Vec::new(),
            latest: after.clone(),
            at: Instant::now(),
        });
        entry.superseded.extend(before.resource_version());
        if !Arc::ptr_eq(&entry.latest, &after) {
            entry.superseded.extend(entry.latest.resource_version());
        }
        entry.latest = after;
        entry.at = Instant::now();
    }

    /// The object as our last status write left it, when `obj` is a cached copy older than
    /// that write. A copy at or after our last write ends the memory.
    pub fn newer_than(&self, obj: &OpenSearchPackage) -> Option<Arc<OpenSearchPackage>> {
        let uid = obj.uid()?;
        let mut map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        let written = map.get(&uid)?;
        let rv = obj.resource_version();
        let stale = written.at.elapsed() < OWN_WRITE_MEMORY
            && rv.is_some_and(|rv| written.superseded.contains(&rv));
        if stale {
            Some(written.latest.clone())
        } else {
            map.remove(&uid);
            None
        }
    }

    pub fn forget(&self, obj: &OpenSearchPackage) {
        if let Some(uid) = obj.uid() {
            self.by_uid
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&uid);
        }
    }
}

/// Publishes an event about `obj`. Events are best effort: losing one must not fail the
/// reconcile.
pub async fn publish(recorder: &Recorder, obj: &OpenSearchPackage, event: &Event) {
    let reference: ObjectReference = obj.object_ref(&());
    let kube_event = kube::runtime::events::Event {
        type_: event.type_(),
        reason: event.reason().to_owned(),
        note: Some(event.note()),
        action: event.action(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&kube_event, &reference).await {
        warn!(%error, reason = event.reason(), "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_version(rv: &str, package_id: Option<&str>) -> OpenSearchPackage {
        let mut obj: OpenSearchPackage = serde_json::from_value(serde_json::json!({
            "apiVersion": "ospkg.dev/v1alpha1",
            "kind": "OpenSearchPackage",
            "metadata": {"name": "synonyms", "namespace": "search", "uid": "u1", "resourceVersion": rv},
            "spec": {"packageType": "TXT-DICTIONARY", "source": {"s3BucketName": "b", "s3Key": "k"}},
        }))
        .expect("an object");
        obj.status = Some(OpenSearchPackageStatus {
            package_id: package_id.map(str::to_owned),
            ..OpenSearchPackageStatus::default()
        });
        obj
    }

    #[test]
    fn a_cached_copy_older_than_our_writes_is_replaced_by_what_the_last_write_returned() {
        let own = OwnWrites::default();
        let cached = at_version("1", None);
        // Two writes before the watch delivers either: the intent, then the created package.
        own.record(&cached, at_version("2", None));
        own.record(&at_version("2", None), at_version("3", Some("F1")));

        for behind in ["1", "2"] {
            let newer = own
                .newer_than(&at_version(behind, None))
                .expect("the written object");
            assert_eq!(newer.resource_version().as_deref(), Some("3"));
            assert_eq!(
                newer.status.as_ref().and_then(|s| s.package_id.as_deref()),
                Some("F1")
            );
        }
        // The watch caught up: the cache is used again, and the memory is gone.
        assert!(own.newer_than(&at_version("3", Some("F1"))).is_none());
        assert!(own.newer_than(&at_version("2", None)).is_none());
    }

    #[test]
    fn a_copy_newer_than_our_write_is_used_as_it_is() {
        let own = OwnWrites::default();
        own.record(&at_version("1", None), at_version("2", None));
        // Someone changed the object after our write.
        assert!(own.newer_than(&at_version("5", None)).is_none());
    }

    #[test]
    fn the_written_object_is_kept_slim() {
        let own = OwnWrites::default();
        let mut written = at_version("2", None);
        written.metadata.managed_fields = Some(Vec::new());
        own.record(&at_version("1", None), written);
        let newer = own
            .newer_than(&at_version("1", None))
            .expect("the written object");
        assert_eq!(newer.metadata.managed_fields, None);
    }
}
