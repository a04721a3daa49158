//! Everything the reconcile writes to Kubernetes: the finalizer, the status (server-side
//! apply, skipped when unchanged) and Events.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::Recorder;
use kube::{Resource, ResourceExt};
use tracing::warn;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::events::Event;
use super::{Error, Job};
use crate::crd::{FIELD_MANAGER, FINALIZER, OpenSearchPackage, OpenSearchPackageStatus};

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
    job.ctx
        .own_writes
        .record(obj, written.resource_version(), status);
    Ok(())
}

/// What this process's own status writes replaced, per object (by UID).
///
/// The watch delivers our writes back a moment later; a requeue that fires before that reads
/// the informer cache's older copy. Acting on it could repeat a call or let server-side apply
/// erase a field just written, so such a reconcile waits for the cache instead, however long
/// that takes: a busy API server has delivered writes back more than half a minute late.
///
/// A copy is older than our last write when it is one we wrote over (by resourceVersion), or
/// when it still shows a status we replaced: a user's edit can land between our read and our
/// write, and the watch then delivers that edit (a resourceVersion we never saw, without our
/// status) before our write. resourceVersions are opaque and are not compared. The memory of
/// an object ends with the first copy that is not older, or when the object is deleted.
#[derive(Default)]
pub struct OwnWrites {
    by_uid: Mutex<HashMap<String, Written>>,
}

struct Written {
    /// resourceVersions older than our last write (the ones we wrote over).
    superseded: Vec<String>,
    /// The statuses our writes replaced (`None`: none yet).
    replaced: Vec<Option<OpenSearchPackageStatus>>,
    latest: Option<String>,
    /// What our last write set.
    status: OpenSearchPackageStatus,
}

impl OwnWrites {
    fn record(
        &self,
        before: &OpenSearchPackage,
        after: Option<String>,
        written: &OpenSearchPackageStatus,
    ) {
        let Some(uid) = before.uid() else { return };
        let mut map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(uid).or_insert_with(|| Written {
            superseded: Vec::new(),
            replaced: Vec::new(),
            latest: None,
            status: written.clone(),
        });
        entry.superseded.extend(before.resource_version());
        entry.superseded.extend(entry.latest.take());
        entry.latest = after;
        let previous = std::mem::replace(&mut entry.status, written.clone());
        for replaced in [before.status.clone(), Some(previous)] {
            if replaced.as_ref() != Some(written) && !entry.replaced.contains(&replaced) {
                entry.replaced.push(replaced);
            }
        }
    }

    /// Whether `obj` is a cached copy older than a status this process wrote. A copy at or
    /// after our last write ends the watch.
    pub fn is_stale(&self, obj: &OpenSearchPackage) -> bool {
        let Some(uid) = obj.uid() else { return false };
        let mut map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(written) = map.get(&uid) else {
            return false;
        };
        let rv = obj.resource_version();
        let wrote_over = rv
            .as_ref()
            .is_some_and(|rv| written.superseded.contains(rv));
        // Our own write's copy is never older, even if the server stored our status in a form
        // that equals one we replaced.
        let shows_replaced = rv != written.latest
            && obj.status.as_ref() != Some(&written.status)
            && written.replaced.contains(&obj.status);
        let stale = wrote_over || shows_replaced;
        if !stale {
            map.remove(&uid);
        }
        stale
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
