//! Everything the reconcile writes to Kubernetes: the finalizer, the status (server-side
//! apply, skipped when unchanged) and Events; and the memory of those writes that keeps a
//! reconcile from acting on a cached copy older than them.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Resource, ResourceExt};
use tracing::warn;

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
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
    /// Our last write's resourceVersion and the digest of its status: kept after the copy
    /// below is dropped, so that the reconcile still writing (its `before` may be older than
    /// this write) does not lose the write it goes on from.
    last_version: Option<String>,
    last_status: u64,
    /// The object as our last write left it (slimmed like the watch cache's copies), until
    /// the watch delivers a copy that is not older.
    latest: Option<Arc<OpenSearchPackage>>,
}

impl Written {
    /// Whether our last write is newer than `copy`: a copy we wrote over, or one that still
    /// shows a status our writes replaced (our own write's copy is never older, even if it
    /// shows a status equal to one we replaced).
    fn is_newer_than(&self, copy: &OpenSearchPackage) -> bool {
        let rv = copy.resource_version();
        let wrote_over = rv.as_ref().is_some_and(|rv| self.superseded.contains(rv));
        let status = status_digest(&copy.status);
        let shows_replaced = rv != self.last_version
            && status != self.last_status
            && self.replaced.contains(&status);
        wrote_over || shows_replaced
    }
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
        let after_version = after.resource_version();
        let after_status = status_digest(&after.status);
        let mut map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        let written = map.entry(uid).or_insert_with(|| Written {
            superseded: Vec::new(),
            replaced: Vec::new(),
            last_version: None,
            last_status: status_digest(&None),
            latest: None,
        });
        // What our writes went over: the copy this one was made from, and our last write
        // (the reconcile may have started from a copy older than it).
        let previous = written
            .last_version
            .take()
            .map(|rv| (rv, written.last_status));
        let before = (before.resource_version(), status_digest(&before.status));
        let over = std::iter::once(before).chain(previous.map(|(rv, status)| (Some(rv), status)));
        for (rv, status) in over {
            if let Some(rv) = rv
                && Some(&rv) != after_version.as_ref()
                && !written.superseded.contains(&rv)
            {
                written.superseded.push(rv);
            }
            if status != after_status && !written.replaced.contains(&status) {
                written.replaced.push(status);
            }
        }
        written.last_version = after_version;
        written.last_status = after_status;
        written.latest = Some(Arc::new(after.clone()));
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
        if written.is_newer_than(&cached)
            && let Some(latest) = &written.latest
        {
            return latest.clone();
        }
        map.remove(&uid);
        cached
    }

    /// The watch cached `copy` (and will not go back to an older one): when it is not older
    /// than our last write, the copy of that write is dropped now rather than at the
    /// object's next reconcile, which may be a resync away (an object that became Ready
    /// would keep a second full copy until then). What the write went over is kept: a
    /// reconcile may still be writing on from a copy older than it.
    pub fn delivered(&self, copy: &OpenSearchPackage) {
        let Some(uid) = copy.uid() else {
            return;
        };
        let mut map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(written) = map.get_mut(&uid)
            && !written.is_newer_than(copy)
        {
            written.latest = None;
        }
    }

    /// How many objects' last writes are kept as full copies (not yet delivered by the
    /// watch).
    pub fn undelivered(&self) -> usize {
        self.by_uid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|w| w.latest.is_some())
            .count()
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
/// a time (renewed after [`EVENTS_PER_RECORDER`] Events). Events are best effort: losing one
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

    /// `obj` at resourceVersion `rv`, with a status that recorded `package_id`.
    fn at(rv: &str, package_id: Option<&str>) -> OpenSearchPackage {
        let mut obj = object("synonyms");
        obj.metadata.resource_version = Some(rv.to_owned());
        obj.status = package_id.map(|id| OpenSearchPackageStatus {
            package_id: Some(id.to_owned()),
            ..OpenSearchPackageStatus::default()
        });
        obj
    }

    #[test]
    fn the_copy_of_a_write_is_dropped_when_the_watch_delivers_it() {
        let writes = OwnWrites::default();
        let (before, after) = (at("1", None), at("2", Some("F1")));
        writes.record(&before, after.clone());
        // The watch is behind: it delivers the copy we wrote over, and a reconcile acts on
        // our write's answer.
        writes.delivered(&before);
        assert_eq!(writes.undelivered(), 1);
        let newest = writes.newest(Arc::new(before.clone()));
        assert_eq!(newest.resource_version().as_deref(), Some("2"));
        // The watch delivers our write: no copy is kept for the object any more, before any
        // reconcile asked.
        writes.delivered(&after);
        assert_eq!(writes.undelivered(), 0);
        let newest = writes.newest(Arc::new(after));
        assert_eq!(newest.resource_version().as_deref(), Some("2"));
    }

    #[test]
    fn a_copy_newer_than_our_write_also_drops_it() {
        let writes = OwnWrites::default();
        writes.record(&at("1", None), at("2", Some("F1")));
        // A user's edit after our write: a resourceVersion we never saw, with our status.
        writes.delivered(&at("3", Some("F1")));
        assert_eq!(writes.undelivered(), 0);
    }

    /// The reconcile that creates writes the intent, calls CreatePackage, then writes the
    /// outcome over the copy it started from. The watch may deliver the intent while the
    /// call is under way: the outcome's write must still count the intent as older, or the
    /// next reconcile, finding the intent in the cache, resolves a create that is known
    /// (the benchmark saw every such object adopt its own package, then stay unready for
    /// minutes).
    #[test]
    fn a_write_delivered_while_the_reconcile_goes_on_stays_older_than_the_next() {
        let writes = OwnWrites::default();
        let started_from = at("1", None);
        let intent = at("2", Some("pending"));
        writes.record(&started_from, intent.clone());
        writes.delivered(&intent);
        let outcome = at("3", Some("F1"));
        writes.record(&started_from, outcome);
        let newest = writes.newest(Arc::new(intent));
        assert_eq!(newest.resource_version().as_deref(), Some("3"));
    }
}
