//! The package service itself: the twelve operations over the in-memory state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::artifact::{Inspection, inspect};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::faults::{FaultConfig, FaultInjector};
use crate::journal::{EntryKind, Journal, LogEntry};
use crate::s3::ObjectStore;
use crate::state::*;
use crate::sts::{StsRole, StsState};
use crate::wire::*;

/// The whole simulator state behind one lock; never held across an await.
pub type Sim = Arc<parking_lot::Mutex<Service>>;

/// Page size when a caller gives no `MaxResults` (the service's default is undocumented;
/// smaller than a full region's 25 + AWS packages, so callers that forget to page notice).
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// Fixed settings the service was started with (what `/_sim/reset` returns to).
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_account: String,
    pub default_region: String,
    pub package_quota: usize,
    pub domain_quota: usize,
    pub domains: Vec<DomainDecl>,
    pub faults: FaultConfig,
    /// Roles the STS lets callers assume from the start.
    pub sts_roles: Vec<StsRole>,
}

/// Service quotas, changeable at run time through `PUT /_sim/quotas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quotas {
    /// Custom packages per (account, region); AWS-owned packages do not count.
    pub packages_per_region: usize,
    /// Associations per domain (in any state, AWS packages included).
    pub packages_per_domain: usize,
}

impl Settings {
    /// The quotas the service starts (and resets) with.
    pub fn quotas(&self) -> Quotas {
        Quotas {
            packages_per_region: self.package_quota,
            packages_per_domain: self.domain_quota,
        }
    }
}

/// A parsed request to one of the twelve operations.
#[derive(Debug, Clone)]
pub enum Request {
    CreatePackage(CreatePackageInput),
    UpdatePackage(UpdatePackageInput),
    DescribePackages(DescribePackagesInput),
    GetPackageVersionHistory {
        package_id: String,
        page: Page,
    },
    DeletePackage {
        package_id: String,
    },
    AssociatePackage {
        domain_name: String,
        package: PackageForAssociation,
    },
    AssociatePackages(AssociatePackagesInput),
    DissociatePackage {
        package_id: String,
        domain_name: String,
    },
    DissociatePackages(DissociatePackagesInput),
    ListDomainsForPackage {
        package_id: String,
        page: Page,
    },
    ListPackagesForDomain {
        domain_name: String,
        page: Page,
    },
    UpdatePackageScope(UpdatePackageScopeInput),
}

impl Request {
    /// The package and domain a request is about, for the call log.
    /// A DescribePackages that names packages (by ID or name) instead of listing the region.
    pub fn is_lookup(&self) -> bool {
        match self {
            Request::DescribePackages(i) => i
                .filters
                .iter()
                .any(|f| matches!(f.name, FilterName::PackageId | FilterName::PackageName)),
            _ => false,
        }
    }

    pub fn subject(&self) -> (Option<String>, Option<String>) {
        match self {
            Request::CreatePackage(_) | Request::DescribePackages(_) => (None, None),
            Request::UpdatePackage(i) => (Some(i.package_id.clone()), None),
            Request::GetPackageVersionHistory { package_id, .. }
            | Request::DeletePackage { package_id }
            | Request::ListDomainsForPackage { package_id, .. } => (Some(package_id.clone()), None),
            Request::AssociatePackage {
                domain_name,
                package,
            } => (Some(package.package_id.clone()), Some(domain_name.clone())),
            Request::AssociatePackages(i) => (
                i.packages.first().map(|p| p.package_id.clone()),
                Some(i.domain_name.clone()),
            ),
            Request::DissociatePackage {
                package_id,
                domain_name,
            } => (Some(package_id.clone()), Some(domain_name.clone())),
            Request::DissociatePackages(i) => {
                (i.package_ids.first().cloned(), Some(i.domain_name.clone()))
            }
            Request::ListPackagesForDomain { domain_name, .. } => (None, Some(domain_name.clone())),
            Request::UpdatePackageScope(i) => (Some(i.package_id.clone()), None),
        }
    }
}

/// The parts of the state a `--state` snapshot keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub regions: Vec<(Scope, RegionState)>,
    pub domains: Vec<DomainDecl>,
    pub objects: ObjectStore,
    pub next_package: u64,
    /// Declared roles and issued sessions (absent in snapshots of older versions).
    #[serde(default)]
    pub sts: StsState,
}

#[derive(Debug)]
pub struct Service {
    pub settings: Settings,
    pub clock: Clock,
    pub regions: BTreeMap<Scope, RegionState>,
    pub domains: Vec<DomainDecl>,
    pub objects: ObjectStore,
    pub journal: Journal,
    pub faults: FaultInjector,
    /// Start with the settings' quotas; `/_sim/reset` brings those back.
    pub quotas: Quotas,
    /// The STS's roles and issued sessions.
    pub sts: StsState,
    next_package: u64,
    /// Set by every change, cleared when the `--state` snapshot is written.
    pub dirty: bool,
}

impl Service {
    pub fn new(settings: Settings, clock: Clock) -> Self {
        let domains = settings.domains.clone();
        let faults = FaultInjector::new(settings.faults.clone());
        let quotas = settings.quotas();
        let sts = StsState::with_roles(settings.sts_roles.clone());
        Service {
            settings,
            clock,
            regions: BTreeMap::new(),
            domains,
            objects: ObjectStore::default(),
            journal: Journal::default(),
            faults,
            quotas,
            sts,
            next_package: 0,
            dirty: false,
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn elapsed(&self, at_ms: u64) -> u64 {
        self.clock.elapsed_ms(at_ms)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            regions: self
                .regions
                .iter()
                .map(|(s, r)| (s.clone(), r.clone()))
                .collect(),
            domains: self.domains.clone(),
            objects: self.objects.clone(),
            next_package: self.next_package,
            sts: self.sts.clone(),
        }
    }

    pub fn restore(&mut self, snapshot: Snapshot) {
        self.regions = snapshot.regions.into_iter().collect();
        self.domains = snapshot.domains;
        self.objects = snapshot.objects;
        self.next_package = snapshot.next_package;
        self.sts = snapshot.sts;
    }

    /// Back to the start-up state. AWS-owned packages come back with the regions (they are
    /// seeded on first use); declared domains, S3 objects and STS roles stay unless asked
    /// otherwise; issued STS sessions always stay (clients may hold them).
    pub fn reset(&mut self, keep_domains: bool, keep_objects: bool, keep_roles: bool) {
        self.regions.clear();
        self.journal.clear();
        self.faults = FaultInjector::new(self.settings.faults.clone());
        self.quotas = self.settings.quotas();
        if !keep_domains {
            self.domains = self.settings.domains.clone();
        }
        if !keep_objects {
            self.objects.clear();
        }
        if !keep_roles {
            // Checked at start-up, so this cannot fail.
            let _ = self.sts.set_roles(self.settings.sts_roles.clone());
        }
        self.dirty = true;
    }

    pub fn declare_domain(&mut self, mut decl: DomainDecl) {
        if decl.account.is_none() {
            decl.account = Some(self.settings.default_account.clone());
        }
        self.domains.retain(|d| {
            !(d.name == decl.name && d.account == decl.account && d.region == decl.region)
        });
        self.domains.push(decl);
        self.dirty = true;
    }

    fn domain_exists(&self, scope: &Scope, name: &str) -> bool {
        self.domains.iter().any(|d| d.matches(scope, name))
    }

    fn region(&mut self, scope: &Scope) -> &mut RegionState {
        let now = self.clock.now_ms();
        self.regions
            .entry(scope.clone())
            .or_insert_with(|| RegionState {
                packages: aws_packages(now),
                associations: BTreeMap::new(),
            })
    }

    /// Writes finished association phases to the journal and drops what has finished
    /// disappearing (deleted packages, dissociated associations).
    pub fn settle(&mut self) {
        let now = self.now();
        let mut events = Vec::new();
        for (scope, region) in &mut self.regions {
            region.packages.retain(|p| !p.gone(now));
            for (domain, list) in &mut region.associations {
                for a in list.iter_mut().filter(|a| !a.settled && !a.in_flight(now)) {
                    a.settled = true;
                    let (status, at) = match &a.phase {
                        AssociationPhase::Associating { phase, .. } => {
                            (a.status(now).0, phase.until_ms)
                        }
                        AssociationPhase::Dissociating { phase, failure } => (
                            if failure.is_some() {
                                "DISSOCIATION_FAILED"
                            } else {
                                "DISSOCIATED"
                            },
                            phase.until_ms,
                        ),
                    };
                    events.push((
                        at,
                        scope.clone(),
                        domain.clone(),
                        a.package_id.clone(),
                        status,
                    ));
                }
                list.retain(|a| !a.gone(now));
            }
            region.associations.retain(|_, list| !list.is_empty());
        }
        events.sort_by_key(|e| e.0);
        for (at, scope, domain, package_id, status) in events {
            self.log_association(at, &scope, &domain, &package_id, status);
        }
    }

    fn log_association(
        &mut self,
        at: u64,
        scope: &Scope,
        domain: &str,
        package_id: &str,
        status: &str,
    ) {
        let at_ms = self.elapsed(at);
        self.journal.push(LogEntry {
            seq: 0,
            at_ms,
            kind: EntryKind::Association,
            operation: None,
            account: scope.account.clone(),
            region: scope.region.clone(),
            access_key_id: None,
            package_id: Some(package_id.to_string()),
            domain_name: Some(domain.to_string()),
            bucket: None,
            key: None,
            status: None,
            error_code: None,
            association_status: Some(status.to_string()),
            fault: None,
            effect: false,
            commit_message: None,
            lookup: false,
            ..LogEntry::default()
        });
    }

    pub fn execute(&mut self, scope: &Scope, request: Request) -> Result<Value, ApiError> {
        self.settle();
        let result = match request {
            Request::CreatePackage(input) => self.create_package(scope, input),
            Request::UpdatePackage(input) => self.update_package(scope, input),
            Request::DescribePackages(input) => self.describe_packages(scope, input),
            Request::GetPackageVersionHistory { package_id, page } => {
                self.version_history(scope, &package_id, &page)
            }
            Request::DeletePackage { package_id } => self.delete_package(scope, &package_id),
            Request::AssociatePackage {
                domain_name,
                package,
            } => self
                .associate(scope, &domain_name, vec![package])
                .map(|mut list| json!({ "DomainPackageDetails": list.pop() })),
            Request::AssociatePackages(input) => self
                .associate(scope, &input.domain_name, input.packages)
                .map(|list| json!({ "DomainPackageDetailsList": list })),
            Request::DissociatePackage {
                package_id,
                domain_name,
            } => self
                .dissociate(scope, &domain_name, vec![package_id])
                .map(|mut list| json!({ "DomainPackageDetails": list.pop() })),
            Request::DissociatePackages(input) => self
                .dissociate(scope, &input.domain_name, input.package_ids)
                .map(|list| json!({ "DomainPackageDetailsList": list })),
            Request::ListDomainsForPackage { package_id, page } => {
                self.domains_for_package(scope, &package_id, &page)
            }
            Request::ListPackagesForDomain { domain_name, page } => {
                self.packages_for_domain(scope, &domain_name, &page)
            }
            Request::UpdatePackageScope(input) => self.update_scope(scope, input),
        };
        if result.is_ok() {
            self.dirty = true;
        }
        result
    }

    /// Copies (snapshots) the source object now and decides what copy and validation find.
    fn revision(
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
        let object = self.objects.get(&source.s3_bucket_name, &source.s3_key);
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

    fn create_package(
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

    fn update_package(
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

    fn describe_packages(
        &mut self,
        scope: &Scope,
        input: DescribePackagesInput,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        // Listings lag behind CreatePackage (when configured); lookups by ID do not.
        let by_id = input
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

    fn version_history(
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

    fn delete_package(&mut self, scope: &Scope, package_id: &str) -> Result<Value, ApiError> {
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

    fn associate(
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
                    a.version = version;
                    a.phase = phase;
                    a.settled = false;
                    a.prerequisites = entry.prerequisites;
                    if entry.configuration.is_some() {
                        a.configuration = entry.configuration;
                    }
                }
                None => list.push(Association {
                    package_id: entry.package_id.clone(),
                    version,
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

    fn dissociate(
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
                a.phase = AssociationPhase::Dissociating {
                    phase: Phase::new(now, dissociating_ms),
                    failure: failure.clone(),
                };
                a.settled = false;
            }
        }
        self.log_changes(scope, domain, &package_ids, now, "DISSOCIATING");
        self.views(scope, domain, &package_ids, now)
    }

    fn log_changes(&mut self, scope: &Scope, domain: &str, ids: &[String], now: u64, status: &str) {
        for id in ids {
            self.log_association(now, scope, domain, id, status);
        }
    }

    /// The association views of `ids` on `domain`, in the order given.
    fn views(
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

    fn domains_for_package(
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

    fn packages_for_domain(
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

    fn update_scope(
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

/// `NextToken` only on pages that have a next one.
fn with_token(mut body: Value, token: Option<String>) -> Value {
    if let (Some(token), Some(obj)) = (token, body.as_object_mut()) {
        obj.insert("NextToken".to_string(), Value::String(token));
    }
    body
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

/// Opaque tokens: the hex of `<listing>:<offset>`, so a token from another listing or a
/// made-up one is refused.
fn paginate<T>(
    items: impl IntoIterator<Item = T>,
    page: &Page,
    listing: &str,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match &page.next_token {
        None => 0,
        Some(token) => decode_token(token, listing).ok_or_else(|| {
            ApiError::invalid(
                "NextToken",
                token,
                "Member must be a token returned by a previous call",
            )
        })?,
    };
    let size = page.max_results.unwrap_or(DEFAULT_PAGE_SIZE);
    let mut rest = items.into_iter().skip(start);
    let page: Vec<T> = rest.by_ref().take(size).collect();
    let end = start + page.len();
    let token = rest
        .next()
        .is_some()
        .then(|| hex::encode(format!("{listing}:{end}")));
    Ok((page, token))
}

fn decode_token(token: &str, listing: &str) -> Option<usize> {
    let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let (kind, offset) = text.split_once(':')?;
    (kind == listing).then_some(())?;
    offset.parse().ok()
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
