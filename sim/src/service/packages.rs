//! The operations on packages: CreatePackage, UpdatePackage, DescribePackages,
//! GetPackageVersionHistory, DeletePackage and UpdatePackageScope.

use super::*;

impl Service {
    /// Copies (snapshots) the source object now and decides what copy and validation find.
    pub(super) fn revision(
        &self,
        package_type: PackageType,
        engine_version: Option<&str>,
        source: PackageSource,
        version: u32,
        commit_message: Option<String>,
        configuration: Option<PackageConfiguration>,
    ) -> Revision {
        let now = self.now();
        let durations = self.clock.durations;
        // A key S3 denies reads of cannot be copied either: COPY_FAILED, as for a missing one.
        let object = self
            .objects
            .readable(&source.s3_bucket_name, &source.s3_key);
        let inspection = inspect(
            package_type,
            engine_version,
            &source.s3_bucket_name,
            &source.s3_key,
            object.map(|o| o.bytes.as_ref()),
        );
        let copying = Phase::new(now, durations.copying_ms);
        Revision {
            version: matches!(inspection, Inspection::Valid { .. }).then_some(version),
            commit_message,
            etag: object.map(|o| o.etag.clone()),
            version_id: object.and_then(|o| o.version_id.clone()),
            source,
            copying,
            validating: Phase::new(copying.until_ms, durations.validating_ms),
            inspection,
            configuration,
        }
    }

    pub(super) fn create_package(
        &mut self,
        scope: &Scope,
        input: CreatePackageInput,
    ) -> Result<Value, ApiError> {
        let quota = self.quotas.packages_per_region;
        let region = self.region(scope);
        if region
            .packages
            .iter()
            .any(|p| !p.aws_owned() && p.name == input.name)
        {
            return Err(ApiError::ResourceAlreadyExists(format!(
                "A package named {} already exists in this account and Region.",
                input.name
            )));
        }
        let owned = region.packages.iter().filter(|p| !p.aws_owned()).count();
        if owned >= quota {
            return Err(ApiError::LimitExceeded(format!(
                "Maximum number of packages ({quota}) reached for this account and Region."
            )));
        }
        let revision = self.revision(
            input.package_type,
            input.engine_version.as_deref(),
            input.source,
            1,
            None,
            input.configuration,
        );
        self.next_package += 1;
        let listed_from_ms = revision
            .copying
            .since_ms
            .saturating_add(self.faults.read_after_write_lag_ms());
        let package = Package {
            id: format!("F{}", 100_000_000 + self.next_package),
            name: input.name,
            package_type: input.package_type,
            description: input.description,
            engine_version: input.engine_version,
            owner: scope.account.clone(),
            created_ms: revision.copying.since_ms,
            vending: input.vending,
            encryption: input.encryption,
            allow_list: Vec::new(),
            revisions: vec![revision],
            deleting: None,
            delete_failure: None,
            listed_from_ms,
        };
        let now = self.now();
        let details = package.details(now);
        self.region(scope).packages.push(package);
        Ok(json!({ "PackageDetails": details }))
    }

    pub(super) fn update_package(
        &mut self,
        scope: &Scope,
        input: UpdatePackageInput,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        let package = self
            .region(scope)
            .package(&input.package_id)
            .ok_or_else(|| ApiError::package_not_found(&input.package_id))?;
        if package.aws_owned() {
            return Err(ApiError::Validation(
                "Operation not allowed. This package cannot be updated.".to_string(),
            ));
        }
        let status = package.status(now);
        if matches!(status, "COPYING" | "VALIDATING" | "DELETING") {
            return Err(ApiError::Validation(format!(
                "Operation not allowed. Package {} is {status}; it can be updated once it is AVAILABLE, COPY_FAILED or VALIDATION_FAILED.",
                input.package_id
            )));
        }
        let configuration = input
            .configuration
            .or_else(|| package.latest().and_then(|r| r.configuration.clone()));
        let (package_type, version) = (package.package_type, package.next_version());
        let engine_version = package.engine_version.clone();
        let revision = self.revision(
            package_type,
            engine_version.as_deref(),
            input.source,
            version,
            input.commit_message,
            configuration,
        );
        let package = self
            .region(scope)
            .package_mut(&input.package_id)
            .ok_or_else(|| ApiError::package_not_found(&input.package_id))?;
        if input.description.is_some() {
            package.description = input.description;
        }
        if input.encryption.is_some() {
            package.encryption = input.encryption;
        }
        // An update after a failed deletion makes the package an ordinary one again.
        package.deleting = None;
        package.delete_failure = None;
        package.revisions.push(revision);
        Ok(json!({ "PackageDetails": package.details(now) }))
    }

    pub(super) fn describe_packages(
        &mut self,
        scope: &Scope,
        input: DescribePackagesInput,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        // Listings lag behind CreatePackage (when configured); lookups by ID do not, unless
        // configured to.
        let by_id = !self.faults.lag_lookups_by_id()
            && input
                .filters
                .iter()
                .any(|f| f.name == FilterName::PackageId);
        let region = self.region(scope);
        let visible = |p: &&Package| by_id || p.listed(now);
        // A lookup by exact IDs that finds none of them is "not found", as for the other
        // by-ID operations.
        for filter in &input.filters {
            if filter.name == FilterName::PackageId
                && filter.values.iter().all(|v| !v.contains(['*', '?']))
                && !region
                    .packages
                    .iter()
                    .filter(visible)
                    .any(|p| filter.values.contains(&p.id))
            {
                return Err(ApiError::package_not_found(&filter.values.join(", ")));
            }
        }
        // Filters are matched on the stored packages and only the page is turned into
        // PackageDetails (the costly part); the packages of earlier pages are only skipped,
        // so paging through a region of thousands stays cheap at every page.
        let matching = region
            .packages
            .iter()
            .filter(visible)
            .filter(|p| input.filters.iter().all(|f| filter_matches(f, p, now)));
        let (page, token) = paginate(matching, &input.page, "describe")?;
        let page: Vec<PackageDetails> = page.into_iter().map(|p| p.details(now)).collect();
        Ok(with_token(json!({ "PackageDetailsList": page }), token))
    }

    pub(super) fn version_history(
        &mut self,
        scope: &Scope,
        package_id: &str,
        page: &Page,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        let package = self
            .region(scope)
            .package(package_id)
            .ok_or_else(|| ApiError::package_not_found(package_id))?;
        let (list, token) = paginate(package.history(now), page, "history")?;
        Ok(with_token(
            json!({ "PackageID": package_id, "PackageVersionHistoryList": list }),
            token,
        ))
    }

    pub(super) fn delete_package(
        &mut self,
        scope: &Scope,
        package_id: &str,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        let deleting_ms = self.clock.durations.deleting_ms;
        let region = self.region(scope);
        let package = region
            .package(package_id)
            .ok_or_else(|| ApiError::package_not_found(package_id))?;
        if package.aws_owned() {
            return Err(ApiError::Validation(
                "Operation not allowed. This package cannot be deleted.".to_string(),
            ));
        }
        let domains = region.domains_of(package_id);
        if !domains.is_empty() {
            return Err(ApiError::Conflict(format!(
                "Package {package_id} is currently in use: it is associated with domain(s) {}. Dissociate it first.",
                domains.join(", ")
            )));
        }
        let name = package.name.clone();
        let failure = self.faults.delete_failure(&name, package_id);
        let package = self
            .region(scope)
            .package_mut(package_id)
            .ok_or_else(|| ApiError::package_not_found(package_id))?;
        // A deletion under way goes on; a failed one can be tried again.
        if package.status(now) != "DELETING" {
            package.deleting = Some(Phase::new(now, deleting_ms));
            package.delete_failure = failure;
        }
        // The answer shows DELETING even when deletion takes no time.
        let mut details = package.details(now);
        details.package_status = "DELETING";
        details.error_details = None;
        Ok(json!({ "PackageDetails": details }))
    }

    pub(super) fn update_scope(
        &mut self,
        scope: &Scope,
        input: UpdatePackageScopeInput,
    ) -> Result<Value, ApiError> {
        let package = self
            .region(scope)
            .package_mut(&input.package_id)
            .ok_or_else(|| ApiError::package_not_found(&input.package_id))?;
        if package.aws_owned() {
            return Err(ApiError::Validation(
                "Operation not allowed. The scope of this package cannot be changed.".to_string(),
            ));
        }
        if !package.vending.as_ref().is_some_and(|v| v.vending_enabled) {
            return Err(ApiError::DisabledOperation(format!(
                "Package vending is not enabled for package {}; create it with PackageVendingOptions.VendingEnabled to share it.",
                input.package_id
            )));
        }
        match input.operation {
            ScopeOperation::Override => {
                package.allow_list.clear();
                add_unique(&mut package.allow_list, input.users);
            }
            ScopeOperation::Add => add_unique(&mut package.allow_list, input.users),
            ScopeOperation::Remove => package.allow_list.retain(|u| !input.users.contains(u)),
        }
        Ok(json!({
            "PackageID": input.package_id,
            "Operation": input.operation.as_str(),
            "PackageUserList": package.allow_list,
        }))
    }
}

fn add_unique(list: &mut Vec<String>, users: Vec<String>) {
    for user in users {
        if !list.contains(&user) {
            list.push(user);
        }
    }
}

/// OR within one filter's values, AND across filters (the caller ANDs); `*` and `?` are
/// wildcards.
/// Whether a package matches a DescribePackages filter, on the fields its `PackageDetails`
/// would show at `now`.
fn filter_matches(filter: &Filter, package: &Package, now: u64) -> bool {
    let field = match filter.name {
        FilterName::PackageId => Some(package.id.as_str()),
        FilterName::PackageName => Some(package.name.as_str()),
        FilterName::PackageStatus => Some(package.status(now)),
        FilterName::PackageType => Some(package.package_type.as_str()),
        FilterName::EngineVersion => package.engine_version.as_deref(),
        FilterName::PackageOwner => Some(package.owner.as_str()),
    };
    field.is_some_and(|f| {
        filter
            .values
            .iter()
            .any(|v| glob(v.as_bytes(), f.as_bytes()))
    })
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_wildcards() {
        assert!(glob(b"my-*", b"my-synonyms"));
        assert!(glob(b"F?23", b"F123"));
        assert!(!glob(b"F?23", b"F1234"));
        assert!(glob(b"*", b""));
    }

    #[test]
    fn pages_and_tokens() {
        let page = Page {
            max_results: Some(2),
            next_token: None,
        };
        let (first, token) = paginate(vec![1, 2, 3], &page, "x").unwrap();
        assert_eq!(first, vec![1, 2]);
        let page = Page {
            max_results: Some(2),
            next_token: token,
        };
        let (second, token) = paginate(vec![1, 2, 3], &page, "x").unwrap();
        assert_eq!((second, token), (vec![3], None));
        let bad = Page {
            max_results: None,
            next_token: Some("zz".into()),
        };
        assert!(paginate(vec![1], &bad, "x").is_err());
    }
}
