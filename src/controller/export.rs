//! `spec.export`: the ConfigMap an object publishes its package id, version and reference
//! paths to. It is owned by the object (ownerReference with `controller: true`, so the
//! garbage collector removes it with the object), written only when its content changes, and
//! never written over when something else owns it.
//!
//! Needs `get`, `create`, `update` and `delete` on ConfigMaps; nothing lists or watches them
//! (a ConfigMap changed or deleted by hand is put right at the object's next full reconcile).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};

use super::effect::Effect;
use super::events::Event;
use super::{Error, Job, kube_io};
use crate::crd::{FIELD_MANAGER, OpenSearchPackage, OpenSearchPackageStatus};
use crate::plan::Requeue;
use crate::status::Outcome;
use crate::status::export::export_data;
use crate::vocabulary::StallReason;

/// Label set on every export ConfigMap.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", FIELD_MANAGER);

/// Brings the export ConfigMap in line with `status` (and removes one published under an
/// earlier name). A ConfigMap in the way, or a write the API server refuses, stalls the
/// object; transient API errors end the reconcile and are retried with backoff.
pub async fn publish<B>(
    job: &Job<'_, B>,
    status: &mut OpenSearchPackageStatus,
    effect: &mut Effect,
) -> Result<(), Error> {
    let obj = job.obj;
    if obj.spec.suspend {
        // A suspended object writes nothing, the ConfigMap included.
        return Ok(());
    }
    let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<ConfigMap> = Api::namespaced(job.ctx.client.clone(), &namespace);
    let wanted = obj.spec.export.as_ref();
    let result = async {
        if let Some(previous) = status.exported_config_map_name.clone()
            && wanted.map(|e| e.config_map_name.as_str()) != Some(previous.as_str())
        {
            remove(job, &api, &previous, effect).await?;
            status.exported_config_map_name = None;
        }
        let Some(export) = wanted else {
            return Ok(());
        };
        let Some(data) = export_data(status, export.key_prefix.as_deref()) else {
            return Ok(());
        };
        write(job, &api, &export.config_map_name, data, effect).await?;
        status.exported_config_map_name = Some(export.config_map_name.clone());
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(Refused::Conflict(message)) => {
            stall(effect, StallReason::ExportConflict, message);
            Ok(())
        }
        Err(Refused::Api(error)) => match &error {
            kube::Error::Api(response) if is_permanent(response.code) => {
                let message = format!(
                    "the export ConfigMap could not be written: {}",
                    response.message
                );
                stall(effect, StallReason::ExportFailed, message);
                Ok(())
            }
            _ => Err(Error::Kube(error)),
        },
        Err(Refused::Fenced(error)) => Err(error),
    }
}

enum Refused {
    /// The ConfigMap exists and this object does not own it.
    Conflict(String),
    Api(kube::Error),
    /// This replica may not write (it lost the leader Lease).
    Fenced(Error),
}

impl From<kube::Error> for Refused {
    fn from(error: kube::Error) -> Self {
        Self::Api(error)
    }
}

/// 4xx answers other than a conflict (a concurrent change: read again) are not going to
/// pass by retrying soon: missing RBAC (403), an invalid object (422), a terminating
/// namespace (403).
fn is_permanent(code: u16) -> bool {
    (400..500).contains(&code) && code != 409 && code != 429
}

/// Whether `cm` is controlled by `obj`.
fn owned_by(cm: &ConfigMap, obj: &OpenSearchPackage) -> bool {
    let uid = obj.uid();
    cm.owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == uid.as_ref())
}

async fn write<B>(
    job: &Job<'_, B>,
    api: &Api<ConfigMap>,
    name: &str,
    data: BTreeMap<String, String>,
    effect: &mut Effect,
) -> Result<(), Refused> {
    let obj = job.obj;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let Some(mut cm) = api.get_opt(name).await? else {
        // Objects read from the API server always have a name and a uid.
        let mut owner = obj.controller_owner_ref(&()).unwrap_or_default();
        owner.block_owner_deletion = Some(true);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: obj.namespace(),
                labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        };
        kube_io::fence(job).map_err(Refused::Fenced)?;
        api.create(&params, &cm).await?;
        effect.events.push(Event::Exported {
            config_map: name.to_owned(),
            created: true,
        });
        return Ok(());
    };
    if !owned_by(&cm, obj) {
        let holder = cm
            .owner_references()
            .iter()
            .find(|r| r.controller == Some(true))
            .map(|r| format!(", which belongs to {} {}", r.kind, r.name))
            .unwrap_or_default();
        return Err(Refused::Conflict(format!(
            "ConfigMap {name} already exists and is not owned by this object{holder}; set spec.export.configMapName to another name or delete that ConfigMap"
        )));
    }
    let labelled = cm.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1);
    if cm.data.as_ref() == Some(&data) && cm.binary_data.is_none() && labelled {
        return Ok(());
    }
    cm.data = Some(data);
    cm.binary_data = None;
    cm.labels_mut()
        .insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
    // The resourceVersion read above makes this a compare-and-swap: a concurrent change
    // fails it with a conflict, and the next reconcile reads again.
    kube_io::fence(job).map_err(Refused::Fenced)?;
    api.replace(name, &params, &cm).await?;
    effect.events.push(Event::Exported {
        config_map: name.to_owned(),
        created: false,
    });
    Ok(())
}

/// Deletes a ConfigMap this object published under a name it no longer exports to; one it
/// does not own (any more) is left alone.
async fn remove<B>(
    job: &Job<'_, B>,
    api: &Api<ConfigMap>,
    name: &str,
    effect: &mut Effect,
) -> Result<(), Refused> {
    let Some(cm) = api.get_opt(name).await? else {
        return Ok(());
    };
    if !owned_by(&cm, job.obj) {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: cm.uid(),
            resource_version: cm.resource_version(),
        }),
        ..DeleteParams::default()
    };
    kube_io::fence(job).map_err(Refused::Fenced)?;
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(response)) if response.code == 404 => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    effect.events.push(Event::ExportRemoved {
        config_map: name.to_owned(),
    });
    Ok(())
}

/// The package's own stall comes first; otherwise the export's stall is what the user must
/// fix. Work under way keeps its requeue; a settled object looks again every minute.
fn stall(effect: &mut Effect, reason: StallReason, message: String) {
    if matches!(effect.outcome, Some(Outcome::Stalled { .. })) {
        return;
    }
    effect.outcome = Some(Outcome::Stalled { reason, message });
    if matches!(effect.requeue, Requeue::Resync | Requeue::Never) {
        effect.requeue = Requeue::Slowly;
    }
}
