//! The package service itself: the twelve operations over the in-memory state. This module
//! holds the state, the clock's effects (`settle`) and the dispatch; `packages` the
//! operations on packages (create, update, describe, history, delete, scope) and `domains`
//! the associations.

mod domains;
mod packages;

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
            Request::CreatePackage(_) => (None, None),
            // A lookup by ID names its packages (comma-separated when several).
            Request::DescribePackages(i) => (
                i.filters
                    .iter()
                    .find(|f| f.name == FilterName::PackageId)
                    .map(|f| f.values.join(",")),
                None,
            ),
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
}

/// `NextToken` only on pages that have a next one.
fn with_token(mut body: Value, token: Option<String>) -> Value {
    if let (Some(token), Some(obj)) = (token, body.as_object_mut()) {
        obj.insert("NextToken".to_string(), Value::String(token));
    }
    body
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
            // DescribePackages takes it in its JSON body; the other listings in the query.
            let member = if listing == "describe" {
                "NextToken"
            } else {
                "nextToken"
            };
            ApiError::invalid(
                member,
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
