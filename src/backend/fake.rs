//! In-memory backend for tests.
//!
//! [`FakeBackend`] keeps packages per region and follows the service rules the operator relies
//! on (duplicate names, unknown ids, no delete while associated, AWS-owned packages are
//! read-only). Operations take effect at once; tests can hold imports and associations in
//! their in-progress states, force failed states, inject the next error of an operation, seed
//! packages made outside the operator, and read back every request made.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::{SignedDuration, Timestamp};

use super::{
    AssociatePackage, BackendError, BackendResult, CreatePackage, DomainAssociation,
    DomainPackageStatus, Package, PackageBackend, PackageFilter, PackageStatus, PackageVersion,
    ServiceError, UpdatePackage, is_aws_owned_id, sort_newest_first,
};
use crate::crd::PackageType;

/// The AWS operations behind [`PackageBackend`], for call counts and error injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    DescribePackages,
    CreatePackage,
    UpdatePackage,
    DeletePackage,
    GetPackageVersionHistory,
    AssociatePackage,
    DissociatePackage,
    ListDomainsForPackage,
    UpdatePackageScope,
}

impl Operation {
    /// Every operation, in the order above.
    pub const ALL: [Operation; 9] = [
        Operation::DescribePackages,
        Operation::CreatePackage,
        Operation::UpdatePackage,
        Operation::DeletePackage,
        Operation::GetPackageVersionHistory,
        Operation::AssociatePackage,
        Operation::DissociatePackage,
        Operation::ListDomainsForPackage,
        Operation::UpdatePackageScope,
    ];

    /// The AWS operation name (as in IAM actions and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DescribePackages => "DescribePackages",
            Self::CreatePackage => "CreatePackage",
            Self::UpdatePackage => "UpdatePackage",
            Self::DeletePackage => "DeletePackage",
            Self::GetPackageVersionHistory => "GetPackageVersionHistory",
            Self::AssociatePackage => "AssociatePackage",
            Self::DissociatePackage => "DissociatePackage",
            Self::ListDomainsForPackage => "ListDomainsForPackage",
            Self::UpdatePackageScope => "UpdatePackageScope",
        }
    }
}

/// One call made to the fake, with its region and arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    DescribePackages {
        region: String,
        filter: PackageFilter,
    },
    CreatePackage {
        region: String,
        request: CreatePackage,
    },
    UpdatePackage {
        region: String,
        request: UpdatePackage,
    },
    DeletePackage {
        region: String,
        package_id: String,
    },
    GetPackageVersionHistory {
        region: String,
        package_id: String,
    },
    AssociatePackage {
        region: String,
        request: AssociatePackage,
    },
    DissociatePackage {
        region: String,
        package_id: String,
        domain_name: String,
    },
    ListDomainsForPackage {
        region: String,
        package_id: String,
    },
    UpdatePackageScope {
        region: String,
        package_id: String,
        users: Vec<String>,
    },
}

impl Request {
    pub fn operation(&self) -> Operation {
        match self {
            Self::DescribePackages { .. } => Operation::DescribePackages,
            Self::CreatePackage { .. } => Operation::CreatePackage,
            Self::UpdatePackage { .. } => Operation::UpdatePackage,
            Self::DeletePackage { .. } => Operation::DeletePackage,
            Self::GetPackageVersionHistory { .. } => Operation::GetPackageVersionHistory,
            Self::AssociatePackage { .. } => Operation::AssociatePackage,
            Self::DissociatePackage { .. } => Operation::DissociatePackage,
            Self::ListDomainsForPackage { .. } => Operation::ListDomainsForPackage,
            Self::UpdatePackageScope { .. } => Operation::UpdatePackageScope,
        }
    }

    pub fn region(&self) -> &str {
        match self {
            Self::DescribePackages { region, .. }
            | Self::CreatePackage { region, .. }
            | Self::UpdatePackage { region, .. }
            | Self::DeletePackage { region, .. }
            | Self::GetPackageVersionHistory { region, .. }
            | Self::AssociatePackage { region, .. }
            | Self::DissociatePackage { region, .. }
            | Self::ListDomainsForPackage { region, .. }
            | Self::UpdatePackageScope { region, .. } => region,
        }
    }
}

/// An in-memory [`PackageBackend`]. Clones share their state, so a test keeps one clone to
/// steer and inspect while the code under test owns another.
#[derive(Clone, Debug, Default)]
pub struct FakeBackend {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Packages by region, then by id.
    regions: HashMap<String, BTreeMap<String, Stored>>,
    /// Number of the last `F…` id handed out (ids are unique across regions).
    last_id: u64,
    /// Mutations so far; each one moves the fake clock by a second.
    ticks: i64,
    hold_imports: bool,
    hold_associations: bool,
    failures: HashMap<Operation, VecDeque<BackendError>>,
    journal: Vec<Request>,
}

#[derive(Clone, Debug)]
struct Stored {
    package: Package,
    history: Vec<PackageVersion>,
    /// The version being imported while the package is held in COPYING/VALIDATING.
    pending_version: Option<String>,
    vending_enabled: bool,
    associations: BTreeMap<String, Association>,
}

#[derive(Clone, Debug)]
struct Association {
    current: DomainAssociation,
    /// The version the domain moves to when a held association completes.
    target_version: Option<String>,
}

/// The fake clock starts here so timestamps are the same in every run.
const EPOCH_SECONDS: i64 = 1_700_000_000;

impl State {
    fn now(&mut self) -> Timestamp {
        self.ticks += 1;
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(EPOCH_SECONDS + self.ticks)
    }

    fn region(&mut self, region: &str) -> &mut BTreeMap<String, Stored> {
        self.regions.entry(region.to_owned()).or_default()
    }

    fn stored(&mut self, region: &str, id: &str) -> BackendResult<&mut Stored> {
        self.regions
            .get_mut(region)
            .and_then(|packages| packages.get_mut(id))
            .ok_or_else(|| not_found(id))
    }

    /// The next `F…` id not taken in any region (seeded packages may use any id).
    fn new_id(&mut self) -> String {
        loop {
            self.last_id += 1;
            let id = format!("F{}", self.last_id);
            if !self
                .regions
                .values()
                .any(|packages| packages.contains_key(&id))
            {
                return id;
            }
        }
    }

    /// Records the call and returns the injected error, if any.
    fn begin(&mut self, request: Request) -> BackendResult<()> {
        let operation = request.operation();
        self.journal.push(request);
        match self
            .failures
            .get_mut(&operation)
            .and_then(VecDeque::pop_front)
        {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

fn not_found(id: &str) -> BackendError {
    BackendError::NotFound(format!("Package not found: {id}"))
}

fn next_version(history: &[PackageVersion]) -> String {
    let newest = history
        .iter()
        .filter_map(|v| v.version.trim_start_matches('v').parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("v{}", newest + 1)
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has already failed; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ----- knobs -------------------------------------------------------------------------

    /// While held, CreatePackage and UpdatePackage leave the package in COPYING until
    /// [`FakeBackend::finish_import`] or [`FakeBackend::set_package_status`].
    pub fn hold_imports(&self, hold: bool) {
        self.lock().hold_imports = hold;
    }

    /// While held, AssociatePackage leaves the association in ASSOCIATING and
    /// DissociatePackage in DISSOCIATING until [`FakeBackend::finish_association`] or
    /// [`FakeBackend::set_association_status`].
    pub fn hold_associations(&self, hold: bool) {
        self.lock().hold_associations = hold;
    }

    /// The next call of `operation` fails with `error` (queued: several calls fail in turn).
    /// The failed call is still counted and recorded.
    pub fn fail_next(&self, operation: Operation, error: BackendError) {
        self.lock()
            .failures
            .entry(operation)
            .or_default()
            .push_back(error);
    }

    /// Completes a held import: the pending version becomes available, status AVAILABLE.
    pub fn finish_import(&self, region: &str, package_id: &str) -> BackendResult<()> {
        self.set_package_status(region, package_id, PackageStatus::Available, None)
    }

    /// Sets a package's status and error details. AVAILABLE makes a pending version the
    /// available one; COPY_FAILED / VALIDATION_FAILED drop it (the import failed).
    pub fn set_package_status(
        &self,
        region: &str,
        package_id: &str,
        status: PackageStatus,
        error: Option<ServiceError>,
    ) -> BackendResult<()> {
        let mut state = self.lock();
        let now = state.now();
        let stored = state.stored(region, package_id)?;
        match status {
            PackageStatus::Available => {
                if let Some(version) = stored.pending_version.take() {
                    stored.package.available_version = Some(version);
                }
            }
            ref s if s.is_failed() => stored.pending_version = None,
            _ => {}
        }
        stored.package.status = status;
        stored.package.error = error;
        stored.package.last_updated_at = Some(now);
        Ok(())
    }

    /// Completes a held association (ACTIVE on the target version) or dissociation (gone).
    pub fn finish_association(
        &self,
        region: &str,
        package_id: &str,
        domain_name: &str,
    ) -> BackendResult<()> {
        let status = {
            let mut state = self.lock();
            let stored = state.stored(region, package_id)?;
            let association = stored
                .associations
                .get(domain_name)
                .ok_or_else(|| not_associated(package_id, domain_name))?;
            association.current.status.clone()
        };
        match status {
            DomainPackageStatus::Dissociating => {
                let mut state = self.lock();
                state
                    .stored(region, package_id)?
                    .associations
                    .remove(domain_name);
                Ok(())
            }
            _ => self.set_association_status(
                region,
                package_id,
                domain_name,
                DomainPackageStatus::Active,
                None,
            ),
        }
    }

    /// Sets an association's status and error details; ACTIVE moves the domain to the version
    /// it was associated with.
    pub fn set_association_status(
        &self,
        region: &str,
        package_id: &str,
        domain_name: &str,
        status: DomainPackageStatus,
        error: Option<ServiceError>,
    ) -> BackendResult<()> {
        let mut state = self.lock();
        let now = state.now();
        let stored = state.stored(region, package_id)?;
        let association = stored
            .associations
            .get_mut(domain_name)
            .ok_or_else(|| not_associated(package_id, domain_name))?;
        if status == DomainPackageStatus::Active
            && let Some(version) = association.target_version.take()
        {
            association.current.package_version = Some(version);
        }
        association.current.status = status;
        association.current.error = error;
        association.current.last_updated = Some(now);
        Ok(())
    }

    /// Adds a package made outside the operator (by hand, by AWS: `G…` ids), as given. Its
    /// history is its available version, if any; `vending_enabled` decides whether
    /// UpdatePackageScope is allowed. Replaces a package with the same id.
    pub fn seed_package(&self, region: &str, package: Package, vending_enabled: bool) {
        let history = package
            .available_version
            .iter()
            .map(|v| PackageVersion {
                version: v.clone(),
                commit_message: None,
                created_at: package.created_at,
            })
            .collect();
        let mut state = self.lock();
        state.region(region).insert(
            package.id.clone(),
            Stored {
                package,
                history,
                pending_version: None,
                vending_enabled,
                associations: BTreeMap::new(),
            },
        );
    }

    /// Replaces a package's version history (e.g. to stage an update whose status write was
    /// lost). Any order; it is returned newest first.
    pub fn seed_history(
        &self,
        region: &str,
        package_id: &str,
        history: Vec<PackageVersion>,
    ) -> BackendResult<()> {
        self.lock().stored(region, package_id)?.history = history;
        Ok(())
    }

    /// Adds (or replaces) an association as given, e.g. one made outside the operator.
    pub fn seed_association(
        &self,
        region: &str,
        association: DomainAssociation,
    ) -> BackendResult<()> {
        let mut state = self.lock();
        let stored = state.stored(region, &association.package_id)?;
        stored.associations.insert(
            association.domain_name.clone(),
            Association {
                current: association,
                target_version: None,
            },
        );
        Ok(())
    }

    // ----- inspection --------------------------------------------------------------------

    /// How many times `operation` was called (failed calls included).
    pub fn calls(&self, operation: Operation) -> usize {
        self.lock()
            .journal
            .iter()
            .filter(|r| r.operation() == operation)
            .count()
    }

    /// Every call so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().journal.clone()
    }

    /// The most recent call of `operation`.
    pub fn last_request(&self, operation: Operation) -> Option<Request> {
        self.lock()
            .journal
            .iter()
            .rev()
            .find(|r| r.operation() == operation)
            .cloned()
    }

    /// The most recent CreatePackage request.
    pub fn last_create(&self) -> Option<CreatePackage> {
        match self.last_request(Operation::CreatePackage)? {
            Request::CreatePackage { request, .. } => Some(request),
            _ => None,
        }
    }

    /// The most recent UpdatePackage request.
    pub fn last_update(&self) -> Option<UpdatePackage> {
        match self.last_request(Operation::UpdatePackage)? {
            Request::UpdatePackage { request, .. } => Some(request),
            _ => None,
        }
    }

    /// The most recent AssociatePackage request.
    pub fn last_associate(&self) -> Option<AssociatePackage> {
        match self.last_request(Operation::AssociatePackage)? {
            Request::AssociatePackage { request, .. } => Some(request),
            _ => None,
        }
    }

    /// Forgets the recorded calls (not the packages), e.g. after a test's setup.
    pub fn reset_calls(&self) {
        self.lock().journal.clear();
    }

    /// The package as DescribePackages would return it.
    pub fn package(&self, region: &str, package_id: &str) -> Option<Package> {
        let state = self.lock();
        Some(state.regions.get(region)?.get(package_id)?.package.clone())
    }

    /// Every package in `region`, by id.
    pub fn packages(&self, region: &str) -> Vec<Package> {
        let state = self.lock();
        state
            .regions
            .get(region)
            .map(|packages| packages.values().map(|s| s.package.clone()).collect())
            .unwrap_or_default()
    }

    /// The package's associations, by domain name.
    pub fn associations(&self, region: &str, package_id: &str) -> Vec<DomainAssociation> {
        let state = self.lock();
        state
            .regions
            .get(region)
            .and_then(|packages| packages.get(package_id))
            .map(|s| s.associations.values().map(|a| a.current.clone()).collect())
            .unwrap_or_default()
    }
}

fn not_associated(package_id: &str, domain_name: &str) -> BackendError {
    BackendError::NotFound(format!(
        "Package {package_id} is not associated with domain {domain_name}"
    ))
}

impl PackageBackend for FakeBackend {
    async fn describe_packages(
        &self,
        region: &str,
        filter: PackageFilter,
    ) -> BackendResult<Vec<Package>> {
        let mut state = self.lock();
        state.begin(Request::DescribePackages {
            region: region.to_owned(),
            filter: filter.clone(),
        })?;
        let packages = state.region(region).values().map(|s| &s.package);
        Ok(match filter {
            PackageFilter::All => packages.cloned().collect(),
            PackageFilter::Id(id) => packages.filter(|p| p.id == id).cloned().collect(),
            PackageFilter::Name(name) => packages.filter(|p| p.name == name).cloned().collect(),
        })
    }

    async fn create_package(&self, region: &str, request: CreatePackage) -> BackendResult<Package> {
        let mut state = self.lock();
        state.begin(Request::CreatePackage {
            region: region.to_owned(),
            request: request.clone(),
        })?;
        if state
            .region(region)
            .values()
            .any(|s| s.package.name == request.name)
        {
            return Err(BackendError::AlreadyExists(format!(
                "Package with name {} already exists",
                request.name
            )));
        }
        if request.package_type == PackageType::ZipPlugin && request.engine_version.is_none() {
            return Err(BackendError::Invalid(
                "Operation not allowed. EngineVersion is a required parameter for this operation."
                    .into(),
            ));
        }
        let id = state.new_id();
        let now = state.now();
        let held = state.hold_imports;
        let version = "v1".to_owned();
        let package = Package {
            id: id.clone(),
            name: request.name,
            package_type: request.package_type.as_str().to_owned(),
            status: if held {
                PackageStatus::Copying
            } else {
                PackageStatus::Available
            },
            description: request.description,
            available_version: (!held).then(|| version.clone()),
            engine_version: request.engine_version,
            error: None,
            created_at: Some(now),
            last_updated_at: Some(now),
            allow_listed_users: None,
            owner: None,
        };
        state.region(region).insert(
            id,
            Stored {
                package: package.clone(),
                history: vec![PackageVersion {
                    version: version.clone(),
                    commit_message: None,
                    created_at: Some(now),
                }],
                pending_version: held.then_some(version),
                vending_enabled: request.vending_enabled.unwrap_or(false),
                associations: BTreeMap::new(),
            },
        );
        Ok(package)
    }

    async fn update_package(&self, region: &str, request: UpdatePackage) -> BackendResult<Package> {
        let mut state = self.lock();
        state.begin(Request::UpdatePackage {
            region: region.to_owned(),
            request: request.clone(),
        })?;
        let now = state.now();
        let held = state.hold_imports;
        let stored = state.stored(region, &request.package_id)?;
        if stored.package.is_aws_owned() {
            return Err(BackendError::Invalid(
                "Operation not allowed. This package cannot be updated.".into(),
            ));
        }
        // As the simulator does: only a settled package (available or failed) takes a new
        // version.
        if stored.package.status.is_importing() {
            return Err(BackendError::Invalid(format!(
                "Operation not allowed. Package {} is {}; it can be updated once it is AVAILABLE, COPY_FAILED or VALIDATION_FAILED.",
                request.package_id,
                stored.package.status.as_str()
            )));
        }
        let version = next_version(&stored.history);
        stored.history.push(PackageVersion {
            version: version.clone(),
            commit_message: Some(request.commit_message),
            created_at: Some(now),
        });
        if request.description.is_some() {
            stored.package.description = request.description;
        }
        stored.package.error = None;
        stored.package.last_updated_at = Some(now);
        if held {
            stored.package.status = PackageStatus::Copying;
            stored.pending_version = Some(version);
        } else {
            stored.package.status = PackageStatus::Available;
            stored.package.available_version = Some(version);
        }
        Ok(stored.package.clone())
    }

    async fn delete_package(&self, region: &str, package_id: &str) -> BackendResult<Package> {
        let mut state = self.lock();
        state.begin(Request::DeletePackage {
            region: region.to_owned(),
            package_id: package_id.to_owned(),
        })?;
        let stored = state.stored(region, package_id)?;
        if is_aws_owned_id(package_id) {
            return Err(BackendError::Invalid(
                "Operation not allowed. This package cannot be deleted.".into(),
            ));
        }
        if let Some(domain) = stored.associations.keys().next() {
            return Err(BackendError::Conflict(format!(
                "Package {package_id} is associated with domain {domain}"
            )));
        }
        let mut package = stored.package.clone();
        state.region(region).remove(package_id);
        package.status = PackageStatus::Deleting;
        Ok(package)
    }

    async fn package_version_history(
        &self,
        region: &str,
        package_id: &str,
    ) -> BackendResult<Vec<PackageVersion>> {
        let mut state = self.lock();
        state.begin(Request::GetPackageVersionHistory {
            region: region.to_owned(),
            package_id: package_id.to_owned(),
        })?;
        let mut history = state.stored(region, package_id)?.history.clone();
        sort_newest_first(&mut history);
        Ok(history)
    }

    async fn associate_package(
        &self,
        region: &str,
        request: AssociatePackage,
    ) -> BackendResult<DomainAssociation> {
        let mut state = self.lock();
        state.begin(Request::AssociatePackage {
            region: region.to_owned(),
            request: request.clone(),
        })?;
        let now = state.now();
        let held = state.hold_associations;
        let packages = state.region(region);
        if let Some(missing) = request
            .prerequisites
            .iter()
            .find(|id| !packages.contains_key(id.as_str()))
        {
            return Err(not_found(missing));
        }
        let stored = packages
            .get_mut(&request.package_id)
            .ok_or_else(|| not_found(&request.package_id))?;
        if stored.package.status != PackageStatus::Available {
            return Err(BackendError::Invalid(format!(
                "Package {} is not AVAILABLE (status {})",
                request.package_id,
                stored.package.status.as_str()
            )));
        }
        let previous = stored.associations.get(&request.domain_name);
        if let Some(previous) = previous
            && matches!(
                previous.current.status,
                DomainPackageStatus::Associating | DomainPackageStatus::Dissociating
            )
        {
            return Err(BackendError::Conflict(format!(
                "Domain {} has an operation in progress for package {}",
                request.domain_name, request.package_id
            )));
        }
        let target = stored.package.available_version.clone();
        let association = DomainAssociation {
            domain_name: request.domain_name.clone(),
            package_id: request.package_id.clone(),
            status: if held {
                DomainPackageStatus::Associating
            } else {
                DomainPackageStatus::Active
            },
            package_version: if held {
                previous.and_then(|p| p.current.package_version.clone())
            } else {
                target.clone()
            },
            reference_path: (stored.package.package_type == PackageType::TxtDictionary.as_str())
                .then(|| format!("analyzers/{}", request.package_id)),
            prerequisites: request.prerequisites,
            last_updated: Some(now),
            error: None,
        };
        stored.associations.insert(
            request.domain_name,
            Association {
                current: association.clone(),
                target_version: held.then_some(target).flatten(),
            },
        );
        Ok(association)
    }

    async fn dissociate_package(
        &self,
        region: &str,
        package_id: &str,
        domain_name: &str,
    ) -> BackendResult<DomainAssociation> {
        let mut state = self.lock();
        state.begin(Request::DissociatePackage {
            region: region.to_owned(),
            package_id: package_id.to_owned(),
            domain_name: domain_name.to_owned(),
        })?;
        let now = state.now();
        let held = state.hold_associations;
        let stored = state.stored(region, package_id)?;
        let association = stored
            .associations
            .get_mut(domain_name)
            .ok_or_else(|| not_associated(package_id, domain_name))?;
        if matches!(
            association.current.status,
            DomainPackageStatus::Associating | DomainPackageStatus::Dissociating
        ) {
            return Err(BackendError::Conflict(format!(
                "Domain {domain_name} has an operation in progress for package {package_id}"
            )));
        }
        association.current.status = DomainPackageStatus::Dissociating;
        association.current.last_updated = Some(now);
        let answer = association.current.clone();
        if !held {
            stored.associations.remove(domain_name);
        }
        Ok(answer)
    }

    async fn list_domains_for_package(
        &self,
        region: &str,
        package_id: &str,
    ) -> BackendResult<Vec<DomainAssociation>> {
        let mut state = self.lock();
        state.begin(Request::ListDomainsForPackage {
            region: region.to_owned(),
            package_id: package_id.to_owned(),
        })?;
        let stored = state.stored(region, package_id)?;
        Ok(stored
            .associations
            .values()
            .map(|a| a.current.clone())
            .collect())
    }

    async fn update_package_scope(
        &self,
        region: &str,
        package_id: &str,
        users: Vec<String>,
    ) -> BackendResult<Vec<String>> {
        let mut state = self.lock();
        state.begin(Request::UpdatePackageScope {
            region: region.to_owned(),
            package_id: package_id.to_owned(),
            users: users.clone(),
        })?;
        let now = state.now();
        let stored = state.stored(region, package_id)?;
        if !stored.vending_enabled {
            return Err(BackendError::Invalid(format!(
                "Package vending is not enabled for package {package_id}"
            )));
        }
        stored.package.allow_listed_users = Some(users.clone());
        stored.package.last_updated_at = Some(now);
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Source;

    const REGION: &str = "eu-west-1";

    fn create(name: &str) -> CreatePackage {
        CreatePackage {
            name: name.to_owned(),
            package_type: PackageType::TxtDictionary,
            source: Source {
                bucket: "bucket".into(),
                key: format!("{name}.txt"),
            },
            description: Some("synonyms".into()),
            engine_version: None,
            configuration: None,
            encryption: None,
            vending_enabled: None,
        }
    }

    fn update(id: &str, message: &str) -> UpdatePackage {
        UpdatePackage {
            package_id: id.to_owned(),
            source: Source {
                bucket: "bucket".into(),
                key: "new.txt".into(),
            },
            description: None,
            commit_message: message.to_owned(),
            configuration: None,
            encryption: None,
        }
    }

    fn associate(id: &str, domain: &str) -> AssociatePackage {
        AssociatePackage {
            package_id: id.to_owned(),
            domain_name: domain.to_owned(),
            prerequisites: vec![],
            key_store_access: None,
        }
    }

    fn aws_owned(id: &str) -> Package {
        Package {
            id: id.to_owned(),
            name: "analysis-icu".into(),
            package_type: "ZIP-PLUGIN".into(),
            status: PackageStatus::Available,
            description: None,
            available_version: Some("v1".into()),
            engine_version: Some("OpenSearch_2.15".into()),
            error: None,
            created_at: None,
            last_updated_at: None,
            allow_listed_users: None,
            owner: Some("AWS".into()),
        }
    }

    #[tokio::test]
    async fn create_assigns_ids_and_v1_and_refuses_duplicate_names() {
        let fake = FakeBackend::new();
        let a = fake
            .create_package(REGION, create("synonyms"))
            .await
            .unwrap();
        let b = fake
            .create_package(REGION, create("stopwords"))
            .await
            .unwrap();
        assert_eq!((a.id.as_str(), b.id.as_str()), ("F1", "F2"));
        assert_eq!(a.status, PackageStatus::Available);
        assert_eq!(a.available_version.as_deref(), Some("v1"));
        assert_eq!(a.package_type, "TXT-DICTIONARY");
        assert_eq!(a.description.as_deref(), Some("synonyms"));

        let err = fake
            .create_package(REGION, create("synonyms"))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::AlreadyExists(_)), "{err:?}");
        // Names are unique per region only.
        let other = fake
            .create_package("us-east-1", create("synonyms"))
            .await
            .unwrap();
        assert_eq!(other.id, "F3");
        assert_eq!(fake.calls(Operation::CreatePackage), 4);
    }

    #[tokio::test]
    async fn zip_plugin_needs_an_engine_version() {
        let fake = FakeBackend::new();
        let mut request = create("plugin");
        request.package_type = PackageType::ZipPlugin;
        let err = fake
            .create_package(REGION, request.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");
        request.engine_version = Some("OpenSearch_2.15".into());
        let package = fake.create_package(REGION, request).await.unwrap();
        assert_eq!(package.engine_version.as_deref(), Some("OpenSearch_2.15"));
    }

    #[tokio::test]
    async fn describe_filters_by_id_and_name_and_lists_foreign_packages() {
        let fake = FakeBackend::new();
        fake.seed_package(REGION, aws_owned("G123"), false);
        let mine = fake
            .create_package(REGION, create("synonyms"))
            .await
            .unwrap();

        let all = fake
            .describe_packages(REGION, PackageFilter::All)
            .await
            .unwrap();
        let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["F1", "G123"]);
        assert!(all[1].is_aws_owned());

        let by_id = fake
            .describe_packages(REGION, PackageFilter::Id(mine.id.clone()))
            .await
            .unwrap();
        assert_eq!(by_id, vec![mine.clone()]);
        let by_name = fake
            .describe_packages(REGION, PackageFilter::Name("synonyms".into()))
            .await
            .unwrap();
        assert_eq!(by_name, vec![mine]);
        // An unknown id is an empty answer, not an error; the caller decides.
        let none = fake
            .describe_packages(REGION, PackageFilter::Id("F99".into()))
            .await
            .unwrap();
        assert!(none.is_empty());
        let elsewhere = fake
            .describe_packages("us-east-1", PackageFilter::All)
            .await
            .unwrap();
        assert!(elsewhere.is_empty());
        assert_eq!(
            fake.last_request(Operation::DescribePackages),
            Some(Request::DescribePackages {
                region: "us-east-1".into(),
                filter: PackageFilter::All
            })
        );
    }

    #[tokio::test]
    async fn update_adds_a_version_with_its_commit_message() {
        let fake = FakeBackend::new();
        let package = fake
            .create_package(REGION, create("synonyms"))
            .await
            .unwrap();
        let updated = fake
            .update_package(
                REGION,
                update(&package.id, "more synonyms [ospkg:0123abcd]"),
            )
            .await
            .unwrap();
        assert_eq!(updated.available_version.as_deref(), Some("v2"));
        fake.update_package(REGION, update(&package.id, "third"))
            .await
            .unwrap();

        let history = fake
            .package_version_history(REGION, &package.id)
            .await
            .unwrap();
        let versions: Vec<(&str, Option<&str>)> = history
            .iter()
            .map(|v| (v.version.as_str(), v.commit_message.as_deref()))
            .collect();
        assert_eq!(
            versions,
            [
                ("v3", Some("third")),
                ("v2", Some("more synonyms [ospkg:0123abcd]")),
                ("v1", None)
            ]
        );
        assert!(history[0].created_at > history[1].created_at);
        assert_eq!(
            fake.last_update().map(|u| u.commit_message).as_deref(),
            Some("third")
        );

        let err = fake
            .update_package(REGION, update("F42", "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");
        let err = fake
            .package_version_history(REGION, "F42")
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn held_imports_stay_copying_until_finished_or_failed() {
        let fake = FakeBackend::new();
        fake.hold_imports(true);
        let package = fake
            .create_package(REGION, create("synonyms"))
            .await
            .unwrap();
        assert_eq!(package.status, PackageStatus::Copying);
        assert_eq!(package.available_version, None);

        // The service is busy importing: no update, no association.
        let err = fake
            .update_package(REGION, update(&package.id, "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");
        let err = fake
            .associate_package(REGION, associate(&package.id, "search"))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");

        fake.set_package_status(REGION, &package.id, PackageStatus::Validating, None)
            .unwrap();
        fake.finish_import(REGION, &package.id).unwrap();
        let now = fake.package(REGION, &package.id).unwrap();
        assert_eq!(now.status, PackageStatus::Available);
        assert_eq!(now.available_version.as_deref(), Some("v1"));

        fake.update_package(REGION, update(&package.id, "bad file"))
            .await
            .unwrap();
        let error = ServiceError {
            error_type: Some("ValidationFailure".into()),
            error_message: Some("not a dictionary".into()),
        };
        fake.set_package_status(
            REGION,
            &package.id,
            PackageStatus::ValidationFailed,
            Some(error.clone()),
        )
        .unwrap();
        let failed = fake.package(REGION, &package.id).unwrap();
        assert_eq!(failed.status, PackageStatus::ValidationFailed);
        assert_eq!(failed.error, Some(error));
        // The failed version never became available.
        assert_eq!(failed.available_version.as_deref(), Some("v1"));
        // An update is how a user fixes a failed package.
        fake.hold_imports(false);
        let fixed = fake
            .update_package(REGION, update(&package.id, "good file"))
            .await
            .unwrap();
        assert_eq!(fixed.status, PackageStatus::Available);
        assert_eq!(fixed.available_version.as_deref(), Some("v3"));
        assert_eq!(fixed.error, None);
    }

    #[tokio::test]
    async fn associations_follow_versions_and_block_delete() {
        let fake = FakeBackend::new();
        let package = fake
            .create_package(REGION, create("synonyms"))
            .await
            .unwrap();
        let association = fake
            .associate_package(REGION, associate(&package.id, "search"))
            .await
            .unwrap();
        assert_eq!(association.status, DomainPackageStatus::Active);
        assert_eq!(association.package_version.as_deref(), Some("v1"));
        assert_eq!(association.reference_path.as_deref(), Some("analyzers/F1"));

        fake.update_package(REGION, update(&package.id, "v2"))
            .await
            .unwrap();
        // The domain keeps v1 until the package is associated again.
        let listed = fake
            .list_domains_for_package(REGION, &package.id)
            .await
            .unwrap();
        assert_eq!(listed[0].package_version.as_deref(), Some("v1"));

        fake.hold_associations(true);
        let applying = fake
            .associate_package(REGION, associate(&package.id, "search"))
            .await
            .unwrap();
        assert_eq!(applying.status, DomainPackageStatus::Associating);
        assert_eq!(applying.package_version.as_deref(), Some("v1"));
        let err = fake
            .associate_package(REGION, associate(&package.id, "search"))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Conflict(_)), "{err:?}");
        fake.finish_association(REGION, &package.id, "search")
            .unwrap();
        let listed = fake
            .list_domains_for_package(REGION, &package.id)
            .await
            .unwrap();
        assert_eq!(listed[0].status, DomainPackageStatus::Active);
        assert_eq!(listed[0].package_version.as_deref(), Some("v2"));

        let err = fake.delete_package(REGION, &package.id).await.unwrap_err();
        assert!(matches!(err, BackendError::Conflict(_)), "{err:?}");

        let leaving = fake
            .dissociate_package(REGION, &package.id, "search")
            .await
            .unwrap();
        assert_eq!(leaving.status, DomainPackageStatus::Dissociating);
        assert_eq!(fake.associations(REGION, &package.id).len(), 1);
        fake.finish_association(REGION, &package.id, "search")
            .unwrap();
        assert!(fake.associations(REGION, &package.id).is_empty());
        fake.hold_associations(false);

        let err = fake
            .dissociate_package(REGION, &package.id, "search")
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");

        let deleted = fake.delete_package(REGION, &package.id).await.unwrap();
        assert_eq!(deleted.status, PackageStatus::Deleting);
        assert!(fake.package(REGION, &package.id).is_none());
        let err = fake.delete_package(REGION, &package.id).await.unwrap_err();
        assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn association_failures_and_prerequisites() {
        let fake = FakeBackend::new();
        let plugin = fake.create_package(REGION, create("plugin")).await.unwrap();
        let mut request = associate(&plugin.id, "search");
        request.prerequisites = vec!["F77".into()];
        let err = fake
            .associate_package(REGION, request.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");

        let license = fake
            .create_package(REGION, create("license"))
            .await
            .unwrap();
        request.prerequisites = vec![license.id.clone()];
        let association = fake
            .associate_package(REGION, request.clone())
            .await
            .unwrap();
        assert_eq!(association.prerequisites, vec![license.id]);
        assert_eq!(fake.last_associate(), Some(request));

        let error = ServiceError {
            error_type: Some("AssociationFailure".into()),
            error_message: Some("plugin conflict".into()),
        };
        fake.set_association_status(
            REGION,
            &plugin.id,
            "search",
            DomainPackageStatus::AssociationFailed,
            Some(error.clone()),
        )
        .unwrap();
        let listed = fake
            .list_domains_for_package(REGION, &plugin.id)
            .await
            .unwrap();
        assert_eq!(listed[0].status, DomainPackageStatus::AssociationFailed);
        assert_eq!(listed[0].error, Some(error));
        // A failed association can be retried.
        let retried = fake
            .associate_package(REGION, associate(&plugin.id, "search"))
            .await
            .unwrap();
        assert_eq!(retried.status, DomainPackageStatus::Active);
    }

    #[tokio::test]
    async fn aws_owned_packages_cannot_be_deleted_or_updated() {
        let fake = FakeBackend::new();
        fake.seed_package(REGION, aws_owned("G555"), false);
        let err = fake.delete_package(REGION, "G555").await.unwrap_err();
        assert_eq!(
            err,
            BackendError::Invalid("Operation not allowed. This package cannot be deleted.".into())
        );
        let err = fake
            .update_package(REGION, update("G555", "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");
        assert!(fake.package(REGION, "G555").is_some());
    }

    #[tokio::test]
    async fn seeded_packages_and_associations_are_served() {
        let fake = FakeBackend::new();
        let mut foreign = aws_owned("F900");
        foreign.name = "made-by-hand".into();
        foreign.package_type = "TXT-DICTIONARY".into();
        fake.seed_package(REGION, foreign.clone(), false);
        fake.seed_history(
            REGION,
            "F900",
            vec![
                PackageVersion {
                    version: "v1".into(),
                    commit_message: None,
                    created_at: None,
                },
                PackageVersion {
                    version: "v2".into(),
                    commit_message: Some("x [ospkg:deadbeef]".into()),
                    created_at: None,
                },
            ],
        )
        .unwrap();
        fake.seed_association(
            REGION,
            DomainAssociation {
                domain_name: "other".into(),
                package_id: "F900".into(),
                status: DomainPackageStatus::Active,
                package_version: Some("v1".into()),
                reference_path: None,
                prerequisites: vec![],
                last_updated: None,
                error: None,
            },
        )
        .unwrap();
        let found = fake
            .describe_packages(REGION, PackageFilter::Name("made-by-hand".into()))
            .await
            .unwrap();
        assert_eq!(found, vec![foreign]);
        let history = fake.package_version_history(REGION, "F900").await.unwrap();
        assert_eq!(history[0].version, "v2");
        let next = fake
            .update_package(REGION, update("F900", "next"))
            .await
            .unwrap();
        assert_eq!(next.available_version.as_deref(), Some("v3"));
        assert_eq!(
            fake.list_domains_for_package(REGION, "F900")
                .await
                .unwrap()
                .len(),
            1
        );
        // New ids skip seeded ones.
        fake.seed_package("us-east-1", aws_owned("F1"), false);
        let created = fake.create_package(REGION, create("fresh")).await.unwrap();
        assert_eq!(created.id, "F2");
    }

    #[tokio::test]
    async fn scope_needs_vending_and_replaces_the_list() {
        let fake = FakeBackend::new();
        let plain = fake.create_package(REGION, create("plain")).await.unwrap();
        let err = fake
            .update_package_scope(REGION, &plain.id, vec!["GLOBAL".into()])
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");

        let mut request = create("vended");
        request.vending_enabled = Some(true);
        let vended = fake.create_package(REGION, request).await.unwrap();
        let users = vec!["111122223333".to_owned(), "444455556666".to_owned()];
        assert_eq!(
            fake.update_package_scope(REGION, &vended.id, users.clone())
                .await
                .unwrap(),
            users
        );
        let only = vec!["444455556666".to_owned()];
        assert_eq!(
            fake.update_package_scope(REGION, &vended.id, only.clone())
                .await
                .unwrap(),
            only
        );
        assert_eq!(
            fake.package(REGION, &vended.id).unwrap().allow_listed_users,
            Some(only)
        );
        let err = fake
            .update_package_scope(REGION, "F404", vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn injected_errors_fail_the_next_calls_in_turn() {
        let fake = FakeBackend::new();
        fake.fail_next(
            Operation::CreatePackage,
            BackendError::Throttled("slow down".into()),
        );
        fake.fail_next(
            Operation::CreatePackage,
            BackendError::Transient("503".into()),
        );
        let first = fake.create_package(REGION, create("synonyms")).await;
        let second = fake.create_package(REGION, create("synonyms")).await;
        let third = fake.create_package(REGION, create("synonyms")).await;
        assert_eq!(first, Err(BackendError::Throttled("slow down".into())));
        assert_eq!(second, Err(BackendError::Transient("503".into())));
        assert_eq!(third.map(|p| p.id), Ok("F1".to_owned()));
        // Failed calls changed nothing but are counted.
        assert_eq!(fake.calls(Operation::CreatePackage), 3);
        assert_eq!(fake.calls(Operation::UpdatePackage), 0);
        assert_eq!(fake.last_update(), None);
        assert_eq!(fake.packages(REGION).len(), 1);

        let clone = fake.clone();
        clone.reset_calls();
        assert_eq!(fake.calls(Operation::CreatePackage), 0);
        assert!(fake.requests().is_empty());
    }

    #[test]
    fn operation_names_are_the_aws_names() {
        let names: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            names,
            [
                "DescribePackages",
                "CreatePackage",
                "UpdatePackage",
                "DeletePackage",
                "GetPackageVersionHistory",
                "AssociatePackage",
                "DissociatePackage",
                "ListDomainsForPackage",
                "UpdatePackageScope"
            ]
        );
    }
}
