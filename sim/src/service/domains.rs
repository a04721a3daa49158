//! The associations of packages with domains: AssociatePackage(s), DissociatePackage(s),
//! ListDomainsForPackage and ListPackagesForDomain.

use super::*;

impl Service {
    pub(super) fn associate(
        &mut self,
        scope: &Scope,
        domain: &str,
        entries: Vec<PackageForAssociation>,
    ) -> Result<Vec<DomainPackageDetails>, ApiError> {
        let now = self.now();
        if !self.domain_exists(scope, domain) {
            return Err(ApiError::domain_not_found(domain));
        }
        let failure = self.faults.association_failure(domain);
        let associating_ms = self.clock.durations.associating_ms;
        let domain_quota = self.quotas.packages_per_domain;
        let region = self.region(scope);

        let in_call: BTreeSet<&str> = entries.iter().map(|e| e.package_id.as_str()).collect();
        if in_call.len() != entries.len() {
            return Err(ApiError::Validation(
                "1 validation error detected: Value at 'PackageList' failed to satisfy constraint: Member must not contain the same PackageID twice".to_string(),
            ));
        }
        let existing = region
            .associations
            .get(domain)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut versions = Vec::new();
        for entry in &entries {
            let package = region
                .package(&entry.package_id)
                .ok_or_else(|| ApiError::package_not_found(&entry.package_id))?;
            let status = package.status(now);
            if status != "AVAILABLE" {
                return Err(ApiError::Validation(format!(
                    "Operation not allowed. Package {} is {status}; only AVAILABLE packages can be associated.",
                    entry.package_id
                )));
            }
            for prerequisite in &entry.prerequisites {
                if region.package(prerequisite).is_none() {
                    return Err(ApiError::ResourceNotFound(format!(
                        "Prerequisite package not found: {prerequisite}"
                    )));
                }
                let associated = existing
                    .iter()
                    .any(|a| a.package_id == *prerequisite && a.status(now).0 == "ACTIVE");
                if !associated && !in_call.contains(prerequisite.as_str()) {
                    return Err(ApiError::Validation(format!(
                        "1 validation error detected: Value '{prerequisite}' at 'PrerequisitePackageIDList' failed to satisfy constraint: the prerequisite package must be associated with domain {domain} (ACTIVE) or be associated in the same request"
                    )));
                }
            }
            versions.push(
                package
                    .available_revision(now)
                    .and_then(Revision::version_label),
            );
        }
        if let Some(busy) = existing.iter().find(|a| a.in_flight(now)) {
            return Err(ApiError::Conflict(format!(
                "Another association operation is in progress on domain {domain} (package {} is {}). Try again when it completes.",
                busy.package_id,
                busy.status(now).0
            )));
        }
        let added = entries
            .iter()
            .filter(|e| !existing.iter().any(|a| a.package_id == e.package_id))
            .count();
        if existing.len() + added > domain_quota {
            return Err(ApiError::LimitExceeded(format!(
                "Domain {domain} would have more than {domain_quota} packages associated."
            )));
        }

        let list = region.associations.entry(domain.to_string()).or_default();
        let mut changed = Vec::new();
        for (entry, version) in entries.into_iter().zip(versions) {
            let phase = AssociationPhase::Associating {
                phase: Phase::new(now, associating_ms),
                failure: failure.clone(),
            };
            match list.iter_mut().find(|a| a.package_id == entry.package_id) {
                Some(a) => {
                    a.begin(phase, now);
                    a.version = version;
                    a.prerequisites = entry.prerequisites;
                    if entry.configuration.is_some() {
                        a.configuration = entry.configuration;
                    }
                }
                None => list.push(Association {
                    package_id: entry.package_id.clone(),
                    version,
                    running: None,
                    prerequisites: entry.prerequisites,
                    configuration: entry.configuration,
                    phase,
                    settled: false,
                }),
            }
            changed.push(entry.package_id);
        }
        self.log_changes(scope, domain, &changed, now, "ASSOCIATING");
        self.views(scope, domain, &changed, now)
    }

    pub(super) fn dissociate(
        &mut self,
        scope: &Scope,
        domain: &str,
        package_ids: Vec<String>,
    ) -> Result<Vec<DomainPackageDetails>, ApiError> {
        let now = self.now();
        if !self.domain_exists(scope, domain) {
            return Err(ApiError::domain_not_found(domain));
        }
        let dissociating_ms = self.clock.durations.dissociating_ms;
        let failure = self.faults.dissociation_failure(domain);
        let region = self.region(scope);
        let existing = region
            .associations
            .get(domain)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for id in &package_ids {
            if region.package(id).is_none() {
                return Err(ApiError::package_not_found(id));
            }
            if !existing.iter().any(|a| a.package_id == *id) {
                return Err(ApiError::ResourceNotFound(format!(
                    "Package {id} is not associated with domain {domain}."
                )));
            }
        }
        if let Some(busy) = existing.iter().find(|a| a.in_flight(now)) {
            return Err(ApiError::Conflict(format!(
                "Another association operation is in progress on domain {domain} (package {} is {}). Try again when it completes.",
                busy.package_id,
                busy.status(now).0
            )));
        }
        if let Some(list) = region.associations.get_mut(domain) {
            for a in list
                .iter_mut()
                .filter(|a| package_ids.contains(&a.package_id))
            {
                let phase = AssociationPhase::Dissociating {
                    phase: Phase::new(now, dissociating_ms),
                    failure: failure.clone(),
                };
                a.begin(phase, now);
            }
        }
        self.log_changes(scope, domain, &package_ids, now, "DISSOCIATING");
        self.views(scope, domain, &package_ids, now)
    }

    pub(super) fn log_changes(
        &mut self,
        scope: &Scope,
        domain: &str,
        ids: &[String],
        now: u64,
        status: &str,
    ) {
        for id in ids {
            self.log_association(now, scope, domain, id, status);
        }
    }

    /// The association views of `ids` on `domain`, in the order given.
    pub(super) fn views(
        &mut self,
        scope: &Scope,
        domain: &str,
        ids: &[String],
        now: u64,
    ) -> Result<Vec<DomainPackageDetails>, ApiError> {
        let region = self.region(scope);
        let list = region
            .associations
            .get(domain)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        ids.iter()
            .map(|id| {
                let a = list
                    .iter()
                    .find(|a| a.package_id == *id)
                    .ok_or_else(|| ApiError::Internal(format!("association of {id} vanished")))?;
                let package = region
                    .package(id)
                    .ok_or_else(|| ApiError::package_not_found(id))?;
                Ok(a.details(domain, package, now))
            })
            .collect()
    }

    pub(super) fn domains_for_package(
        &mut self,
        scope: &Scope,
        package_id: &str,
        page: &Page,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        let region = self.region(scope);
        let package = region
            .package(package_id)
            .ok_or_else(|| ApiError::package_not_found(package_id))?;
        let list: Vec<DomainPackageDetails> = region
            .associations
            .iter()
            .flat_map(|(domain, list)| {
                list.iter()
                    .filter(|a| a.package_id == package_id)
                    .map(|a| a.details(domain, package, now))
            })
            .collect();
        let (list, token) = paginate(list, page, "domains")?;
        Ok(with_token(
            json!({ "DomainPackageDetailsList": list }),
            token,
        ))
    }

    pub(super) fn packages_for_domain(
        &mut self,
        scope: &Scope,
        domain: &str,
        page: &Page,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        if !self.domain_exists(scope, domain) {
            return Err(ApiError::domain_not_found(domain));
        }
        let region = self.region(scope);
        let list: Vec<DomainPackageDetails> = region
            .associations
            .get(domain)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|a| Some(a.details(domain, region.package(&a.package_id)?, now)))
            .collect();
        let (list, token) = paginate(list, page, "packages")?;
        Ok(with_token(
            json!({ "DomainPackageDetailsList": list }),
            token,
        ))
    }
}
