//! Copying what AWS showed into status: the package's identity and state, its versions and
//! its domains.

use std::collections::BTreeSet;

use jiff::Timestamp;

use crate::backend::{DomainAssociation, Package, PackageVersion, ServiceError};
use crate::crd::{
    DomainStatus, ErrorDetails, OpenSearchPackageSpec, OpenSearchPackageStatus, VersionHistoryEntry,
};
use crate::vocabulary::DomainPackageStatus;

/// Versions kept in `status.versionHistory`.
pub const HISTORY_LEN: usize = 10;

/// RFC 3339 text of a service timestamp.
pub fn rfc3339(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

fn error_details(e: &ServiceError) -> ErrorDetails {
    ErrorDetails {
        error_type: e.error_type.clone(),
        error_message: e.error_message.clone(),
    }
}

/// Copies the package's identity and state into status.
pub fn record_package(status: &mut OpenSearchPackageStatus, package: &Package) {
    status.package_id = Some(package.id.clone());
    status.package_name = Some(package.name.clone());
    status.package_type = Some(package.package_type.clone());
    status.engine_version = package.engine_version.clone();
    status.package_status = Some(package.status.clone());
    status.available_package_version = package.available_version.clone();
    status.error_details = package.error.as_ref().map(error_details);
    status.created_at = rfc3339(package.created_at).or(status.created_at.take());
    status.last_updated_at = rfc3339(package.last_updated_at).or(status.last_updated_at.take());
}

/// Keeps the newest [`HISTORY_LEN`] versions.
pub fn record_history(status: &mut OpenSearchPackageStatus, history: &[PackageVersion]) {
    status.version_history = history
        .iter()
        .take(HISTORY_LEN)
        .map(|v| VersionHistoryEntry {
            package_version: v.version.clone(),
            commit_message: v.commit_message.clone(),
            created_at: rfc3339(v.created_at),
        })
        .collect();
}

fn domain_status(name: &str, a: Option<&DomainAssociation>, unmanaged: bool) -> DomainStatus {
    DomainStatus {
        domain_name: name.to_owned(),
        domain_package_status: a.map(|a| a.status.clone()),
        package_version: a.and_then(|a| a.package_version.clone()),
        reference_path: a.and_then(|a| a.reference_path.clone()),
        last_updated: a.and_then(|a| rfc3339(a.last_updated)),
        error_details: a.and_then(|a| a.error.as_ref().map(error_details)),
        unmanaged,
    }
}

/// Reports every association: the spec's domains in spec order, then domains this object
/// associated before and has not finished dissociating, then associations made outside it.
pub fn record_domains(
    status: &mut OpenSearchPackageStatus,
    spec: &OpenSearchPackageSpec,
    associations: &[DomainAssociation],
) {
    let wanted: Vec<&str> = spec.domains.iter().map(|d| d.name.as_str()).collect();
    let previously_managed: BTreeSet<&str> = status
        .domains
        .iter()
        .filter(|d| !d.unmanaged)
        .map(|d| d.domain_name.as_str())
        .collect();
    let mut domains: Vec<DomainStatus> = wanted
        .iter()
        .map(|name| {
            let association = associations.iter().find(|a| a.domain_name == *name);
            domain_status(name, association, false)
        })
        .collect();
    let mut rest: Vec<&DomainAssociation> = associations
        .iter()
        .filter(|a| !wanted.contains(&a.domain_name.as_str()))
        .collect();
    rest.sort_by(|a, b| a.domain_name.cmp(&b.domain_name));
    for a in rest {
        let unmanaged = !previously_managed.contains(a.domain_name.as_str());
        domains.push(domain_status(&a.domain_name, Some(a), unmanaged));
    }
    status.domains = domains;
}

/// Records one association just changed by this object, keeping the others as recorded.
pub fn upsert_domain(
    status: &mut OpenSearchPackageStatus,
    spec: &OpenSearchPackageSpec,
    association: DomainAssociation,
) {
    let package_id = status.package_id.clone().unwrap_or_default();
    let mut associations: Vec<DomainAssociation> = status
        .domains
        .iter()
        .filter(|d| d.domain_name != association.domain_name)
        .filter_map(|d| {
            Some(DomainAssociation {
                domain_name: d.domain_name.clone(),
                package_id: package_id.clone(),
                // An entry without a status was never associated: nothing to keep.
                status: d.domain_package_status.clone()?,
                package_version: d.package_version.clone(),
                reference_path: d.reference_path.clone(),
                last_updated: d.last_updated.as_deref().and_then(|t| t.parse().ok()),
                error: d.error_details.as_ref().map(|e| ServiceError {
                    error_type: e.error_type.clone(),
                    error_message: e.error_message.clone(),
                }),
            })
        })
        .collect();
    associations.push(association);
    record_domains(status, spec, &associations);
}

/// "ready/listed" for the domains this object manages, `None` when it lists none.
pub fn domains_ready(status: &OpenSearchPackageStatus) -> Option<String> {
    let listed = status.domains.iter().filter(|d| !d.unmanaged).count();
    (listed > 0).then(|| format!("{}/{listed}", listed - domains_behind(status)))
}

/// Number of spec domains not yet ACTIVE on the package's current version.
pub fn domains_behind(status: &OpenSearchPackageStatus) -> usize {
    let current = status.available_package_version.as_deref();
    status
        .domains
        .iter()
        .filter(|d| !d.unmanaged)
        .filter(|d| {
            d.domain_package_status != Some(DomainPackageStatus::Active)
                || d.package_version.as_deref() != current
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_behind_counts_listed_domains_not_on_the_current_version() {
        let domain =
            |name: &str, state: DomainPackageStatus, version: &str, unmanaged| DomainStatus {
                domain_name: name.into(),
                domain_package_status: Some(state),
                package_version: Some(version.into()),
                reference_path: None,
                last_updated: None,
                error_details: None,
                unmanaged,
            };
        let status = OpenSearchPackageStatus {
            available_package_version: Some("v2".into()),
            domains: vec![
                domain("current", DomainPackageStatus::Active, "v2", false),
                domain("old", DomainPackageStatus::Active, "v1", false),
                domain("moving", DomainPackageStatus::Associating, "v2", false),
                domain("someone-elses", DomainPackageStatus::Active, "v1", true),
            ],
            ..Default::default()
        };
        assert_eq!(domains_behind(&status), 2);
        assert_eq!(domains_ready(&status).as_deref(), Some("1/3"));
        assert_eq!(domains_ready(&OpenSearchPackageStatus::default()), None);
    }
}
