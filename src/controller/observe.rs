//! What AWS and the cluster say about one object, gathered before planning: its package (from
//! the shared region snapshot when the object is settled), version history around updates,
//! associations when domains are involved, and from the watch cache the owner of its package
//! name and its Ready prerequisites.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::{Resource, ResourceExt};

use super::{Context, Failed};
use crate::backend::{BackendError, Operation, Package, PackageBackend, PackageFilter};
use crate::crd::OpenSearchPackage;
use crate::plan::{Observation, package_name};
use crate::status::is_settled;
use crate::vocabulary::PackageStatus;

/// The region this object's package lives in: fixed in status at the first reconcile.
pub fn region_of(obj: &OpenSearchPackage, default_region: &str) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.region.clone())
        .or_else(|| obj.spec.region.clone())
        .unwrap_or_else(|| default_region.to_owned())
}

/// Reads what AWS has for this object.
pub async fn observe<B: PackageBackend>(
    ctx: &Context<B>,
    obj: &OpenSearchPackage,
    region: &str,
    deleting: bool,
) -> Result<Observation, Failed> {
    let mut observed = Observation {
        name_owner: name_owner(ctx, obj, region),
        ..Observation::default()
    };
    if observed.name_owner.is_some() {
        // Another object owns the name: this one reads and changes nothing in AWS.
        return Ok(observed);
    }
    observed.package = find_package(ctx, obj, region, deleting).await?;
    let importing = observed
        .package
        .as_ref()
        .is_some_and(|p| p.status.is_importing());
    observed.source = ctx
        .source
        .observe(obj, region, deleting, importing)
        .await
        .map_err(|e| Failed::new(Operation::HeadObject, e))?;
    let Some(package) = observed.package.clone() else {
        return Ok(observed);
    };
    let status = obj.status.clone().unwrap_or_default();
    let ours = status.package_id.as_deref() == Some(package.id.as_str());

    if ours && !deleting && history_needed(obj, &package, &observed) {
        observed.history = Some(
            ctx.backend
                .package_version_history(region, &package.id)
                .await
                .map_err(|e| Failed::new(Operation::GetPackageVersionHistory, e))?,
        );
    }
    let has_domains = !obj.spec.domains.is_empty() || !status.domains.is_empty();
    let could_be_ours = ours || status.in_flight.is_some();
    if could_be_ours && (deleting || (has_domains && package.status == PackageStatus::Available)) {
        observed.associations = Some(
            ctx.backend
                .list_domains_for_package(region, &package.id)
                .await
                .map_err(|e| Failed::new(Operation::ListDomainsForPackage, e))?,
        );
    }
    observed.ready_prerequisites = ready_prerequisites(ctx, obj);
    Ok(observed)
}

/// The package by its recorded id (from the region snapshot when settled), else by name.
async fn find_package<B: PackageBackend>(
    ctx: &Context<B>,
    obj: &OpenSearchPackage,
    region: &str,
    deleting: bool,
) -> Result<Option<Package>, Failed> {
    let status = obj.status.as_ref();
    let Some(id) = status.and_then(|s| s.package_id.clone()) else {
        let filter = PackageFilter::Name(package_name(obj));
        return describe_one(&ctx.backend, region, filter).await;
    };
    if is_settled(obj) && !deleting {
        let all = ctx
            .snapshots
            .get(&ctx.backend, region)
            .await
            .map_err(|e| Failed::new(Operation::DescribePackages, e))?;
        // A snapshot taken before this object's last change is older than its status: read
        // the package itself rather than act on the stale version.
        let recorded = status.and_then(|s| s.available_package_version.as_ref());
        if let Some(package) = all
            .iter()
            .find(|p| p.id == id && p.available_version.as_ref() == recorded)
        {
            return Ok(Some(package.clone()));
        }
    }
    describe_one(&ctx.backend, region, PackageFilter::Id(id)).await
}

/// Version history is read when deciding about an update (the marker check) and when a new
/// version became available.
fn history_needed(obj: &OpenSearchPackage, package: &Package, observed: &Observation) -> bool {
    let status = obj.status.clone().unwrap_or_default();
    let digest = observed.digest(obj);
    let update_due = status.applied_digest.as_deref() != Some(digest.as_str())
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
    region: &str,
    filter: PackageFilter,
) -> Result<Option<Package>, Failed> {
    let found = match backend.describe_packages(region, filter.clone()).await {
        Ok(found) => found,
        Err(BackendError::NotFound(_)) => return Ok(None),
        Err(other) => return Err(Failed::new(Operation::DescribePackages, other)),
    };
    Ok(found.into_iter().find(|p| match &filter {
        PackageFilter::Id(id) => &p.id == id,
        PackageFilter::Name(name) => &p.name == name,
        PackageFilter::All => true,
    }))
}

fn cached_objects<B>(ctx: &Context<B>) -> impl Iterator<Item = Arc<OpenSearchPackage>> + '_ {
    ctx.stores.iter().flat_map(|s| s.state())
}

fn object_key(obj: &OpenSearchPackage) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The object that owns this object's (region, package name), when it is another one.
///
/// The owner is the object that recorded the package id; failing that, the oldest object
/// (then the first by namespace/name).
fn name_owner<B>(ctx: &Context<B>, obj: &OpenSearchPackage, region: &str) -> Option<String> {
    let name = package_name(obj);
    let mut contenders: Vec<Arc<OpenSearchPackage>> = cached_objects(ctx)
        .filter(|o| o.uid() != obj.uid())
        .filter(|o| package_name(o) == name && region_of(o, &ctx.default_region) == region)
        .collect();
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
    let namespace = obj.namespace();
    let wanted: Vec<&String> = obj
        .spec
        .domains
        .iter()
        .flat_map(|d| d.prerequisites.iter())
        .collect();
    if wanted.is_empty() {
        return BTreeMap::new();
    }
    cached_objects(ctx)
        .filter(|o| o.namespace() == namespace && wanted.contains(&&o.name_any()))
        .filter_map(|o| {
            let status = o.status.as_ref()?;
            let ready = status.is_true(crate::vocabulary::ConditionType::Ready);
            ready.then(|| Some((o.name_any(), status.package_id.clone()?)))?
        })
        .collect()
}
