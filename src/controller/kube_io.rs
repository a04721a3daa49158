//! Everything the reconcile writes to Kubernetes: the finalizer, the status (server-side
//! apply, skipped when unchanged) and Events; and the memory of those writes that keeps a
//! reconcile from acting on a cached copy older than them.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Resource, ResourceExt};
use tracing::warn;

use std::collections::HashMap;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use super::events::Event;
use super::{Error, Job};
use crate::crd::{FIELD_MANAGER, FINALIZER, OpenSearchPackage, OpenSearchPackageStatus, slim};

/// Adds the finalizer and returns the object as the patch left it.
pub async fn add_finalizer<B>(job: &Job<'_, B>) -> Result<OpenSearchPackage, Error> {
    let obj = job.obj;
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
    json_patch(job, patch).await
}

pub async fn remove_finalizer<B>(job: &Job<'_, B>) -> Result<(), Error> {
    let obj = job.obj;
    fence(job)?;
    let Some(index) = obj.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch = serde_json::json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]);
    json_patch(job, patch).await?;
    Ok(())
}

async fn json_patch<B>(
    job: &Job<'_, B>,
    patch: serde_json::Value,
) -> Result<OpenSearchPackage, Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    let patched = job
        .api
        .patch(
            &job.obj.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await?;
    Ok(job.ctx.own_writes.record(job.obj, patched))
}

/// Only the leader writes; a replica that lost the Lease (or was paused past it) stops here.
pub(super) fn fence<B>(job: &Job<'_, B>) -> Result<(), Error> {
    if job.ctx.leadership.is_leader() {
        Ok(())
    } else {
        Err(Error::NotLeader)
    }
}

/// Writes the whole status with server-side apply; skipped when nothing changed. The object
/// as written is remembered: a reconcile never acts on a cached copy older than this write.
pub async fn write_status<B>(
    job: &Job<'_, B>,
    status: &OpenSearchPackageStatus,
) -> Result<(), Error> {
    let (api, obj) = (job.api, job.obj);
    // Compared with what the API server holds as far as this process knows: a write earlier
    // in this reconcile (a write-ahead intent) counts, not only the copy it started from.
    let latest = job.ctx.own_writes.latest(obj);
    if latest.as_deref().unwrap_or(obj).status.as_ref() == Some(status) {
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

/// This process's own writes (status and finalizer) per object (by UID), until the watch
/// delivers them back.
///
/// The watch delivers our writes back a moment later, or many seconds later when the API
/// server is busy (more than half a minute has been seen); a reconcile woken before that
/// (its requeue, or the region observer) finds an older copy in the informer cache. Acting
/// on that copy could repeat a call or let server-side apply erase a field just written; so
/// the reconcile acts on the object as our last write left it (the write's answer) instead,
/// without waiting for the watch.
///
/// A cached copy is older than our last write when it is one we wrote over (by
/// resourceVersion), or when it still shows a status our writes replaced: a user's edit can
/// land between our read and our write, and the watch then delivers that edit (a
/// resourceVersion we never saw, without our status) before our write, whose answer already
/// holds the edit. resourceVersions are opaque and are not compared. The memory of an object
/// ends with the first cached copy that is not older, or when the object is deleted.
#[derive(Default)]
pub struct OwnWrites {
    by_uid: Mutex<HashMap<String, Written>>,
}

struct Written {
    /// resourceVersions older than our last write (the ones we wrote over).
    superseded: Vec<String>,
    /// Digests of the statuses our writes replaced (`None`, none yet, included): while the
    /// watch is behind, thousands of objects can have an entry here.
    replaced: Vec<u64>,
    /// The object as our last write left it (slimmed like the watch cache's copies).
    latest: Arc<OpenSearchPackage>,
}

impl OwnWrites {
    /// Remembers a write: `before` is the copy the reconcile wrote over, `after` the API
    /// server's answer. Returns `after`, slimmed.
    fn record(
        &self,
        before: &OpenSearchPackage,
        mut after: OpenSearchPackage,
    ) -> OpenSearchPackage {
        slim(&mut after);
        let Some(uid) = before.uid() else {
            return after;
        };
        let latest = Arc::new(after.clone());
        let mut map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        let (written, previous) = match map.entry(uid) {
            Entry::Occupied(entry) => {
                let written = entry.into_mut();
                let previous = std::mem::replace(&mut written.latest, latest);
                (written, Some(previous))
            }
            Entry::Vacant(entry) => (
                entry.insert(Written {
                    superseded: Vec::new(),
                    replaced: Vec::new(),
                    latest,
                }),
                None,
            ),
        };
        let wrote_over = [Some(before), previous.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|copy| copy.resource_version())
            .filter(|rv| after.metadata.resource_version.as_ref() != Some(rv));
        for rv in wrote_over {
            if !written.superseded.contains(&rv) {
                written.superseded.push(rv);
            }
        }
        for copy in [Some(before), previous.as_deref()].into_iter().flatten() {
            let digest = status_digest(&copy.status);
            if copy.status != after.status && !written.replaced.contains(&digest) {
                written.replaced.push(digest);
            }
        }
        after
    }

    /// The copy a reconcile acts on: `cached` itself, or, when it is older than a write this
    /// process made, the object as that write left it. A cached copy that is not older ends
    /// the memory of the object's writes.
    pub fn newest(&self, cached: Arc<OpenSearchPackage>) -> Arc<OpenSearchPackage> {
        let Some(uid) = cached.uid() else {
            return cached;
        };
        let mut map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(written) = map.get(&uid) else {
            return cached;
        };
        let rv = cached.resource_version();
        let wrote_over = rv
            .as_ref()
            .is_some_and(|rv| written.superseded.contains(rv));
        // Our own write's copy is never older, even if it shows a status equal to one we
        // replaced.
        let shows_replaced = rv != written.latest.resource_version()
            && cached.status != written.latest.status
            && written.replaced.contains(&status_digest(&cached.status));
        if wrote_over || shows_replaced {
            return written.latest.clone();
        }
        map.remove(&uid);
        cached
    }

    /// The object as this process's last remembered write left it.
    pub fn latest(&self, obj: &OpenSearchPackage) -> Option<Arc<OpenSearchPackage>> {
        let uid = obj.uid()?;
        let map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&uid).map(|written| written.latest.clone())
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

/// A 64-bit digest of a status as serialized (statuses are not `Hash`).
fn status_digest(status: &Option<OpenSearchPackageStatus>) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_vec(status)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// How many Events one recorder publishes before it is replaced by a fresh one.
///
/// kube-runtime's `Recorder` keeps every Event it published for six minutes, to fold a
/// repeat into a series (count and last time) instead of a new Event, and scans that cache
/// on every publish. Creating thousands of objects publishes two Events each: one recorder
/// would hold them all (about 4 KiB each) and scan them all. Renewing it keeps a repeat
/// within the last few hundred Events folded, which is what folding is for (a stall that
/// comes back, an update after an update), and bounds the cache.
const EVENTS_PER_RECORDER: usize = 500;

/// Publishes the operator's Events through kube-runtime's `Recorder`, one shared recorder at
/// a time (renewed after `EVENTS_PER_RECORDER` Events). Events are best effort: losing one
/// must not fail the reconcile.
pub struct Events {
    client: kube::Client,
    reporter: Reporter,
    current: Mutex<(Recorder, usize)>,
}

impl Events {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            reporter,
            current: Mutex::new((recorder, 0)),
        }
    }

    /// Publishes an event about `obj`.
    pub async fn publish(&self, obj: &OpenSearchPackage, event: &Event) {
        let recorder = {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if current.1 >= EVENTS_PER_RECORDER {
                *current = (Recorder::new(self.client.clone(), self.reporter.clone()), 0);
            }
            current.1 += 1;
            current.0.clone()
        };
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use std::sync::Arc;

    /// An API server that answers every Event request with the Event sent, and the methods
    /// it was sent with, in order.
    fn events_api() -> (kube::Client, Arc<Mutex<Vec<String>>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let methods: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = methods.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.expect("request body");
                seen.lock().expect("methods").push(parts.method.to_string());
                let response = Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(bytes.to_vec()))
                    .expect("response");
                respond.send_response(response);
            }
        });
        (kube::Client::new(service, "default"), methods)
    }

    fn object(name: &str) -> OpenSearchPackage {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ospkg.dev/v1alpha1",
            "kind": "OpenSearchPackage",
            "metadata": {"name": name, "namespace": "search", "uid": format!("uid-{name}")},
            "spec": {
                "packageType": "TXT-DICTIONARY",
                "source": {"s3BucketName": "dictionaries", "s3Key": "synonyms.txt"},
            },
        }))
        .expect("object")
    }

    #[tokio::test]
    async fn a_repeat_is_folded_into_a_series_until_the_recorder_is_renewed() {
        let (client, methods) = events_api();
        let events = Events::new(
            client,
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: None,
            },
        );
        let ready = Event::Ready {
            version: "v1".into(),
        };
        let first = object("synonyms");
        events.publish(&first, &ready).await;
        events.publish(&first, &ready).await;
        assert_eq!(*methods.lock().expect("methods"), ["POST", "PATCH"]);

        // Other objects' Events fill the recorder; the next one is a fresh recorder, which
        // holds none of the earlier Events.
        for n in 2..EVENTS_PER_RECORDER {
            events.publish(&object(&format!("other-{n}")), &ready).await;
        }
        events.publish(&first, &ready).await;
        events.publish(&first, &ready).await;
        let methods = methods.lock().expect("methods");
        assert_eq!(methods.len(), EVENTS_PER_RECORDER + 2);
        assert_eq!(methods[EVENTS_PER_RECORDER..], ["POST", "PATCH"]);
        assert!(methods[2..EVENTS_PER_RECORDER].iter().all(|m| m == "POST"));
    }
}
