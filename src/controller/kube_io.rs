//! Everything the reconcile writes to Kubernetes: the finalizer, the status (server-side
//! apply, skipped when unchanged) and Events.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::Recorder;
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::Error;
use super::events::Event;
use crate::crd::{FIELD_MANAGER, FINALIZER, OpenSearchPackage, OpenSearchPackageStatus};

pub async fn add_finalizer(
    api: &Api<OpenSearchPackage>,
    obj: &OpenSearchPackage,
) -> Result<(), Error> {
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

pub async fn remove_finalizer(
    api: &Api<OpenSearchPackage>,
    obj: &OpenSearchPackage,
) -> Result<(), Error> {
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

/// Writes the whole status with server-side apply; skipped when nothing changed.
pub async fn write_status(
    api: &Api<OpenSearchPackage>,
    obj: &OpenSearchPackage,
    status: &OpenSearchPackageStatus,
) -> Result<(), Error> {
    if obj.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": OpenSearchPackage::api_version(&()),
        "kind": OpenSearchPackage::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    Ok(())
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
