//! What AWS and the cluster say about one object, gathered before planning: its package (from
//! the region listing, see [`super::regions`]), version history around updates,
//! associations when domains are involved, and from the watch cache the owner of its package
//! name and its Ready prerequisites.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;

use kube::{Resource, ResourceExt};

use super::{Context, Failed, object_key};
use crate::backend::{
    BackendError, Operation, Package, PackageBackend, PackageFilter, PackageVersion, Place, Scope,
};
use crate::crd::OpenSearchPackage;
use crate::plan::{Observation, package_name};
use crate::vocabulary::PackageStatus;

/// The region this object's package lives in: fixed in status at the first reconcile.
pub fn region_of(obj: &OpenSearchPackage, default_region: &str) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.region.clone())
        .or_else(|| obj.spec.region.clone())
        .unwrap_or_else(|| default_region.to_owned())
}

/// The account and region this object's package lives in, as far as known without AWS: the
/// account recorded in status, else the one its namespace reaches now.
pub fn place_of<B>(ctx: &Context<B>, obj: &OpenSearchPackage) -> Option<Place> {
    let account = obj
        .status
        .as_ref()
        .and_then(|s| s.account_id.clone())
        .or_else(|| ctx.tenancy.account_hint(&obj.namespace()?))?;
    Some(Place {
        account,
        region: region_of(obj, &ctx.default_region),
    })
}

/// Reads what AWS has for this object.
pub async fn observe<B: PackageBackend>(
    ctx: &Arc<Context<B>>,
    obj: &OpenSearchPackage,
    scope: &Scope,
    deleting: bool,
) -> Result<Observation, Failed> {
    let mut observed = Observation {
        name_owner: name_owner(ctx, obj, &scope.place()),
        ..Observation::default()
    };
    if observed.name_owner.is_some() {
        // Another object owns the name: this one reads and changes nothing in AWS.
        return Ok(observed);
    }
    let (since, unsettled) = read_since(ctx, obj);
    observed.intent_unsettled = unsettled;
    observed.package = find_package(ctx, obj, scope, since).await?;
    let importing = observed
        .package
        .as_ref()
        .is_some_and(|p| p.status.is_importing());
    observed.source = ctx
        .source
        .observe(obj, scope, deleting, importing)
        .await
        .map_err(|e| Failed::new(Operation::HeadObject, e))?;
    let Some(package) = observed.package.clone() else {
        return Ok(observed);
    };
    let status = obj.status.clone().unwrap_or_default();
    let ours = status.package_id.as_deref() == Some(package.id.as_str());

    if ours
        && !deleting
        && let Some(first) = first_version_of_own_package(obj, &package, &observed)
    {
        observed.history = Some(first);
    } else if ours && !deleting && history_needed(obj, &package, &observed) {
        observed.history = Some(
            ctx.backend
                .package_version_history(scope, &package.id)
                .await
                .map_err(|e| Failed::new(Operation::GetPackageVersionHistory, e))?,
        );
    }
    // An observer reports every association of the package it watches.
    let has_domains =
        !obj.spec.manages() || !obj.spec.domains.is_empty() || !status.domains.is_empty();
    let could_be_ours = ours || status.in_flight.is_some();
    if could_be_ours && (deleting || (has_domains && package.status == PackageStatus::Available)) {
        observed.associations = Some(
            ctx.backend
                .list_domains_for_package(scope, &package.id)
                .await
                .map_err(|e| Failed::new(Operation::ListDomainsForPackage, e))?,
        );
    }
    observed.ready_prerequisites = ready_prerequisites(ctx, obj);
    Ok(observed)
}

/// The package from the region listing (one that started after this object's last change
/// and is not older than its status), by recorded id or else by name. A recorded id missing
/// from the listing, or no fresh listing in time, is read directly.
async fn find_package<B: PackageBackend>(
    ctx: &Arc<Context<B>>,
    obj: &OpenSearchPackage,
    scope: &Scope,
    mut since: Option<Instant>,
) -> Result<Option<Package>, Failed> {
    let status = obj.status.as_ref();
    // Observe-only objects may name the package by id in the spec.
    let recorded = status
        .and_then(|s| s.package_id.clone())
        .or_else(|| obj.spec.package_id.clone());
    for _ in 0..2 {
        let listing = ctx
            .regions
            .listing(ctx, scope, since, recorded.as_deref())
            .await
            .map_err(|e| Failed::new(Operation::DescribePackages, e))?;
        let Some(listing) = listing else {
            break;
        };
        let found = match &recorded {
            Some(id) => listing.by_id(id),
            None => listing.by_name(package_name(obj)),
        };
        match found {
            // A listing older than what status recorded (written by an earlier process or
            // replica after this listing started): ask for a newer one.
            Some(package) if older_than_status(package, obj) => {
                since = Some(listing.started_for(recorded.as_deref()));
            }
            Some(package) => return Ok(Some(package.clone())),
            None if recorded.is_none() => return Ok(None),
            // A recorded package missing from the listing: gone, or too new to be listed yet.
            None => break,
        }
    }
    let filter = match recorded {
        Some(id) => PackageFilter::Id(id),
        None => PackageFilter::Name(package_name(obj).to_owned()),
    };
    describe_one(&ctx.backend, scope, filter).await
}

/// What the package must be read after, and whether an open intent is still unsettled.
///
/// After the object's own last change in this process. And when a write-ahead intent is open
/// whose call got no answer (a timeout, a dropped connection, or a crash, so also an intent
/// an earlier process left): the request may still reach the service until the backend's
/// unanswered window has passed since the intent was written. Until then the intent is
/// unsettled (AWS can show that the call took effect, never that it did not); afterwards only
/// a listing started after the window can show that it did not.
fn read_since<B: PackageBackend>(
    ctx: &Context<B>,
    obj: &OpenSearchPackage,
) -> (Option<Instant>, bool) {
    let acted = ctx.schedule.acted_at(obj);
    let Some(intent) = obj.status.as_ref().and_then(|s| s.in_flight.as_ref()) else {
        return (acted, false);
    };
    if ctx.schedule.was_answered(obj, &intent.started_at) {
        return (acted, false);
    }
    let Ok(started) = intent.started_at.parse::<Timestamp>() else {
        return (acted, false);
    };
    let window = ctx.backend.unanswered_window();
    let settled_at = started + window;
    let now = Timestamp::now();
    let Ok(past) = std::time::Duration::try_from(now.duration_since(settled_at)) else {
        // The window is still open.
        return (acted, true);
    };
    let settled = Instant::now().checked_sub(past);
    (acted.max(settled), false)
}

/// Whether the package as listed predates the state this object's status recorded.
fn older_than_status(package: &Package, obj: &OpenSearchPackage) -> bool {
    let recorded = obj
        .status
        .as_ref()
        .and_then(|s| s.last_updated_at.as_deref())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match (package.last_updated_at, recorded) {
        (Some(listed), Some(recorded)) => listed < recorded,
        _ => false,
    }
}

/// The first version of a package this object created and never updated is the only entry
/// of its history: no need to read it.
fn first_version_of_own_package(
    obj: &OpenSearchPackage,
    package: &Package,
    observed: &Observation,
) -> Option<Vec<PackageVersion>> {
    let status = obj.status.as_ref()?;
    let own_first = status.version_history.is_empty()
        && !status.adopted
        && status.in_flight.is_none()
        && status.applied_digest.as_deref() == Some(observed.digest(obj).as_str())
        && package.status == PackageStatus::Available;
    let version = package.available_version.clone().filter(|_| own_first)?;
    Some(vec![PackageVersion {
        version,
        commit_message: None,
        created_at: package.last_updated_at,
    }])
}

/// Version history is read when deciding about an update (the marker check; never for an
/// observer) and when a new version became available.
fn history_needed(obj: &OpenSearchPackage, package: &Package, observed: &Observation) -> bool {
    let status = obj.status.clone().unwrap_or_default();
    let digest = observed.digest(obj);
    let update_due = obj.spec.manages()
        && status.applied_digest.as_deref() != Some(digest.as_str())
        && (package.status == PackageStatus::Available || package.status.is_failed());
    // The recorded history is stale when its newest entry is not the available version (also
    // when the update's own answer already showed that version, as an instant import does).
    let newest_recorded = status.version_history.first().map(|v| &v.package_version);
    let new_version = package.status == PackageStatus::Available
        && newest_recorded != package.available_version.as_ref();
    update_due || new_version
}

/// DescribePackages for one package by id or name; "not found" is no package, not an error.
async fn describe_one<B: PackageBackend>(
    backend: &B,
    scope: &Scope,
    filter: PackageFilter,
) -> Result<Option<Package>, Failed> {
    let found = match backend.describe_packages(scope, filter.clone()).await {
        Ok(found) => found,
        Err(BackendError::NotFound(_)) => return Ok(None),
        Err(other) => return Err(Failed::new(Operation::DescribePackages, other)),
    };
    Ok(found.into_iter().find(|p| match &filter {
        PackageFilter::Id(id) => &p.id == id,
        PackageFilter::Name(name) => &p.name == name,
        PackageFilter::Ids(ids) => ids.contains(&p.id),
        PackageFilter::All => true,
    }))
}

/// The object that owns this object's (account, region, package name), when it is another
/// one: the same name in two accounts is two packages.
///
/// The owner is the object that recorded the package id; failing that, the oldest object
/// (then the first by namespace/name).
fn name_owner<B>(ctx: &Context<B>, obj: &OpenSearchPackage, place: &Place) -> Option<String> {
    if !obj.spec.manages() {
        // An observer owns nothing and may watch any package.
        return None;
    }
    // Most names are claimed by one object: no need to look through every cached object.
    if !ctx.names.may_have_rivals(obj) {
        return None;
    }
    // Runs over every cached object: the cheap tests (no allocation) first.
    let name = package_name(obj);
    let mut contenders = ctx.cached_objects_where(|o| {
        package_name(o) == name
            && o.spec.manages()
            && o.metadata.uid != obj.metadata.uid
            && place_of(ctx, o).as_ref() == Some(place)
    });
    if contenders.is_empty() {
        return None;
    }
    contenders.push(Arc::new(obj.clone()));
    let rank = |o: &OpenSearchPackage| {
        let owns = o.status.as_ref().is_some_and(|s| s.package_id.is_some());
        (
            !owns,
            o.meta().creation_timestamp.clone().map(|t| t.0),
            object_key(o),
        )
    };
    let owner = contenders.iter().min_by_key(|o| rank(o))?;
    (owner.uid() != obj.uid()).then(|| object_key(owner))
}

/// Prerequisite objects (same namespace) that are Ready, by name → package id.
fn ready_prerequisites<B>(ctx: &Context<B>, obj: &OpenSearchPackage) -> BTreeMap<String, String> {
    let wanted: Vec<&String> = obj
        .spec
        .domains
        .iter()
        .flat_map(|d| d.prerequisites.iter())
        .collect();
    if wanted.is_empty() {
        return BTreeMap::new();
    }
    ctx.cached_objects_where(|o| {
        o.metadata.namespace == obj.metadata.namespace
            && o.metadata
                .name
                .as_ref()
                .is_some_and(|n| wanted.contains(&n))
    })
    .into_iter()
    .filter_map(|o| ready_package(&o))
    .collect()
}

/// A prerequisite object's name and package id, when it is Ready at its current generation:
/// one whose spec changed since (suspended with its last conditions, or not yet reconciled)
/// may not hold what its spec says yet.
fn ready_package(prerequisite: &OpenSearchPackage) -> Option<(String, String)> {
    let status = prerequisite.status.as_ref()?;
    status
        .is_ready_at(prerequisite.metadata.generation)
        .then(|| Some((prerequisite.name_any(), status.package_id.clone()?)))?
}

#[cfg(test)]
mod tests {
    use super::ready_package;
    use crate::crd::OpenSearchPackage;

    fn prerequisite(generation: i64, ready_at: i64) -> OpenSearchPackage {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ospkg.dev/v1alpha1",
            "kind": "OpenSearchPackage",
            "metadata": {"name": "license", "namespace": "search", "generation": generation},
            "spec": {
                "packageType": "PACKAGE-LICENSE",
                "source": {"s3BucketName": "licenses", "s3Key": "acme.lic"}
            },
            "status": {
                "packageID": "F1",
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Available", "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": ready_at
                }]
            }
        }))
        .expect("object")
    }

    #[test]
    fn a_prerequisite_counts_as_ready_only_at_its_current_generation() {
        assert_eq!(
            ready_package(&prerequisite(2, 2)),
            Some(("license".to_owned(), "F1".to_owned()))
        );
        assert_eq!(ready_package(&prerequisite(3, 2)), None);
    }
}
