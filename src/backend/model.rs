//! The operator's own types for what the package APIs send and answer: packages, versions,
//! associations, filters and the requests of the calls that change something.

use jiff::Timestamp;

use crate::crd::{KeyStoreAccess, PackageConfiguration, PackageEncryption, PackageType};
use crate::vocabulary::{DomainPackageStatus, PackageStatus};

/// A package as the service describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub package_type: String,
    pub status: PackageStatus,
    pub description: Option<String>,
    pub available_version: Option<String>,
    pub engine_version: Option<String>,
    pub error: Option<ServiceError>,
    pub created_at: Option<Timestamp>,
    pub last_updated_at: Option<Timestamp>,
    /// Accounts the package is shared with (vending-enabled packages only).
    pub allow_listed_users: Option<Vec<String>>,
}

impl Package {
    /// AWS-owned packages (optional plugins) have ids starting with `G`; the operator never
    /// changes them.
    pub fn is_aws_owned(&self) -> bool {
        is_aws_owned_id(&self.id)
    }
}

/// Whether a package id names an AWS-owned package.
pub fn is_aws_owned_id(id: &str) -> bool {
    id.starts_with('G')
}

/// Error details the service attaches to a package or an association.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServiceError {
    pub error_type: Option<String>,
    pub error_message: Option<String>,
}

/// One entry of a package's version history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageVersion {
    pub version: String,
    pub commit_message: Option<String>,
    pub created_at: Option<Timestamp>,
}

/// An association of a package with a domain.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainAssociation {
    pub domain_name: String,
    pub package_id: String,
    pub status: DomainPackageStatus,
    pub package_version: Option<String>,
    pub reference_path: Option<String>,
    pub last_updated: Option<Timestamp>,
    pub error: Option<ServiceError>,
}

/// One page of DescribePackages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackagePage {
    pub packages: Vec<Package>,
    /// Where the next page starts; `None` on the last page.
    pub next_token: Option<String>,
}

/// Which packages DescribePackages should return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageFilter {
    /// Every package visible in the region (all pages).
    All,
    /// The package with this id.
    Id(String),
    /// The package with this name.
    Name(String),
    /// The packages with these ids (at most [`PAGE_SIZE`], so one page): a region observer's
    /// quick look at the packages it follows in a region of many pages.
    Ids(Vec<String>),
}

impl PackageFilter {
    /// Whether a region observer lists with it (its pages go before other calls).
    pub fn is_observer_listing(&self) -> bool {
        matches!(self, Self::All | Self::Ids(_))
    }
}

/// Where a package version is imported from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub bucket: String,
    pub key: String,
}

/// Everything CreatePackage sends.
#[derive(Clone, Debug, PartialEq)]
pub struct CreatePackage {
    pub name: String,
    pub package_type: PackageType,
    pub source: Source,
    pub description: Option<String>,
    pub engine_version: Option<String>,
    pub configuration: Option<PackageConfiguration>,
    pub encryption: Option<PackageEncryption>,
    pub vending_enabled: Option<bool>,
}

/// Everything UpdatePackage sends.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdatePackage {
    pub package_id: String,
    pub source: Source,
    pub description: Option<String>,
    pub commit_message: String,
    pub configuration: Option<PackageConfiguration>,
    pub encryption: Option<PackageEncryption>,
}

/// Everything AssociatePackage sends.
#[derive(Clone, Debug, PartialEq)]
pub struct AssociatePackage {
    pub package_id: String,
    pub domain_name: String,
    pub prerequisites: Vec<String>,
    pub key_store_access: Option<KeyStoreAccess>,
}
