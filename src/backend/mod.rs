//! The narrow seam between the reconciler and the OpenSearch Service package APIs.
//!
//! [`PackageBackend`] has one method per AWS [`Operation`] the operator uses and speaks the
//! operator's own types. [`aws::AwsBackend`] is its one implementation, over
//! `aws-sdk-opensearch`; [`metered::Metered`] wraps it with the rate limiter and call metrics.
//! [`s3::S3Backend`] reads the version of a followed source object (HeadObject).
//! Tests run it against the simulator in `sim/`, the project's only model of the service.

pub mod aws;
pub mod errors;
pub mod identity;
pub mod metered;
mod model;
pub mod s3;
pub mod sdk;

use std::future::Future;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use strum::{Display, EnumIter, EnumString, IntoStaticStr};

pub use crate::vocabulary::{DomainPackageStatus, PackageStatus};
pub use identity::{Identity, Place, RoleSession, Scope};
pub use model::*;

/// Packages per page of a listing: the largest page the service accepts, so the fewest
/// round trips for the same answer.
pub const PAGE_SIZE: usize = 100;

/// The AWS operations behind [`PackageBackend`], named as in the AWS API, IAM actions and the
/// `operation` label of the call metrics.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Display,
    EnumString,
    EnumIter,
    IntoStaticStr,
    Serialize,
    Deserialize,
    JsonSchema,
)]
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
    /// S3 HeadObject: the version of a followed source object (see [`s3`]). A read, never
    /// written down in `status.inFlight`, so not in that field's schema.
    #[schemars(skip)]
    HeadObject,
    /// STS GetCallerIdentity: the operator's own account, asked once. Never in
    /// `status.inFlight`.
    #[schemars(skip)]
    GetCallerIdentity,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the call changes something in AWS (and so must never be sent blindly twice).
    pub fn is_mutating(self) -> bool {
        !matches!(
            self,
            Self::DescribePackages
                | Self::GetPackageVersionHistory
                | Self::ListDomainsForPackage
                | Self::HeadObject
                | Self::GetCallerIdentity
        )
    }
}

/// What went wrong with an AWS call, in the terms the reconciler acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The package (or domain, or association) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A package with this name already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Another operation on the resource is in progress.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The service (or the client-side limiter) throttled the call.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The service rejected the input; retrying the same input cannot help.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The credentials lack a permission.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// A quota is exhausted (packages per region, packages per domain).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// A fault that may pass, with the call finished: a 5xx answer, a request that could not
    /// be signed or sent.
    #[error("transient error: {0}")]
    Transient(String),
    /// No answer came (a timeout, a dropped connection, an unreadable response): the request
    /// may have reached the service and may still take effect, until the client's operation
    /// timeout has passed since it was sent ([`PackageBackend::unanswered_window`]).
    #[error("no answer: {0}")]
    Unanswered(String),
    /// The request was never sent (this replica does not lead; credentials could not be
    /// loaded): it took no effect, and may be sent later.
    #[error("not sent: {0}")]
    NotSent(String),
    /// STS refused the role the call was to be signed with (AssumeRole denied, a wrong
    /// external id): the call was not sent.
    #[error("role not assumable: {0}")]
    Credentials(String),
}

impl BackendError {
    /// Whether the same call may succeed later without any change by the user.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled(_)
                | Self::Transient(_)
                | Self::Unanswered(_)
                | Self::NotSent(_)
                | Self::Conflict(_)
        )
    }

    /// Whether the service answered, so a call that changes something is known not to have
    /// taken effect. A transient failure (5xx, timeout, dropped connection) may have come
    /// after the service acted.
    pub fn proves_no_effect(&self) -> bool {
        !matches!(self, Self::Transient(_) | Self::Unanswered(_))
    }

    /// A bounded label for metrics and events.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::AlreadyExists(_) => "already_exists",
            Self::Conflict(_) => "conflict",
            Self::Throttled(_) => "throttled",
            Self::Invalid(_) => "invalid",
            Self::AccessDenied(_) => "access_denied",
            Self::LimitExceeded(_) => "limit_exceeded",
            Self::Transient(_) | Self::Unanswered(_) | Self::NotSent(_) => "transient",
            Self::Credentials(_) => "credentials",
        }
    }

    /// The service's message (or the client's description of the failure).
    pub fn message(&self) -> &str {
        match self {
            Self::NotFound(m)
            | Self::AlreadyExists(m)
            | Self::Conflict(m)
            | Self::Throttled(m)
            | Self::Invalid(m)
            | Self::AccessDenied(m)
            | Self::LimitExceeded(m)
            | Self::Transient(m)
            | Self::Unanswered(m)
            | Self::NotSent(m)
            | Self::Credentials(m) => m,
        }
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// The AWS package operations the operator uses, each in a [`Scope`] (account, region and
/// the identity that reaches them).
///
/// Implementations return every page of paginated results, except DescribePackages, which
/// is served a page at a time ([`Self::describe_packages_page`]) so that every page can be
/// rate-limited like the call it is (a region-wide listing of thousands of packages is tens
/// of them). Version history is returned newest first.
pub trait PackageBackend: Send + Sync + 'static {
    /// Every package the filter selects, one page after another. A page that hands back the
    /// token it was asked with would page forever: that is a transient failure (as the SDK's
    /// paginators stop on a repeated token).
    fn describe_packages(
        &self,
        scope: &Scope,
        filter: PackageFilter,
    ) -> impl Future<Output = BackendResult<Vec<Package>>> + Send {
        async move {
            let mut packages = Vec::new();
            let mut next_token: Option<String> = None;
            loop {
                let asked = next_token.clone();
                let page = self
                    .describe_packages_page(scope, filter.clone(), next_token)
                    .await?;
                packages.extend(page.packages);
                next_token = page.next_token;
                match &next_token {
                    None => return Ok(packages),
                    Some(token) if asked.as_ref() == Some(token) => {
                        return Err(BackendError::Transient(format!(
                            "DescribePackages answered the page token it was asked with ({token}); stopped paging"
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// One page of DescribePackages, from `next_token` (the first page when `None`).
    fn describe_packages_page(
        &self,
        scope: &Scope,
        filter: PackageFilter,
        next_token: Option<String>,
    ) -> impl Future<Output = BackendResult<PackagePage>> + Send;

    fn create_package(
        &self,
        scope: &Scope,
        request: CreatePackage,
    ) -> impl Future<Output = BackendResult<Package>> + Send;

    fn update_package(
        &self,
        scope: &Scope,
        request: UpdatePackage,
    ) -> impl Future<Output = BackendResult<Package>> + Send;

    fn delete_package(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> impl Future<Output = BackendResult<Package>> + Send;

    fn package_version_history(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> impl Future<Output = BackendResult<Vec<PackageVersion>>> + Send;

    fn associate_package(
        &self,
        scope: &Scope,
        request: AssociatePackage,
    ) -> impl Future<Output = BackendResult<DomainAssociation>> + Send;

    fn dissociate_package(
        &self,
        scope: &Scope,
        package_id: &str,
        domain_name: &str,
    ) -> impl Future<Output = BackendResult<DomainAssociation>> + Send;

    fn list_domains_for_package(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> impl Future<Output = BackendResult<Vec<DomainAssociation>>> + Send;

    /// Replaces the package's allow list (UpdatePackageScope with OVERRIDE); returns the users
    /// who have access afterwards.
    fn update_package_scope(
        &self,
        scope: &Scope,
        package_id: &str,
        users: Vec<String>,
    ) -> impl Future<Output = BackendResult<Vec<String>>> + Send;

    /// The account the operator's own credentials act in (STS GetCallerIdentity, asked once).
    fn own_account(&self) -> impl Future<Output = BackendResult<String>> + Send;

    /// Assumes the role now, uncached: `Credentials` when STS refuses it.
    fn check_role(
        &self,
        session: &RoleSession,
        region: &str,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// Whether calls that change something are waiting for this account and region's rate
    /// limit (a backend without one has none waiting).
    fn changes_waiting(&self, _place: &Place) -> bool {
        false
    }

    /// How long after a changing call was sent it may still take effect when no answer came
    /// ([`BackendError::Unanswered`], or a crash during the call): the client's longest wait
    /// for a call. An intent older than this whose effect a listing started afterwards does
    /// not show did not take effect.
    fn unanswered_window(&self) -> Duration {
        UNANSWERED_WINDOW
    }
}

/// [`PackageBackend::unanswered_window`] of a backend that does not know its timeouts: the
/// default operation timeout.
pub const UNANSWERED_WINDOW: Duration = Duration::from_secs(60);

/// A shared backend (one rate limiter and client pool across leadership terms) is a backend.
impl<B: PackageBackend> PackageBackend for std::sync::Arc<B> {
    fn describe_packages(
        &self,
        scope: &Scope,
        filter: PackageFilter,
    ) -> impl Future<Output = BackendResult<Vec<Package>>> + Send {
        (**self).describe_packages(scope, filter)
    }

    fn describe_packages_page(
        &self,
        scope: &Scope,
        filter: PackageFilter,
        next_token: Option<String>,
    ) -> impl Future<Output = BackendResult<PackagePage>> + Send {
        (**self).describe_packages_page(scope, filter, next_token)
    }

    fn create_package(
        &self,
        scope: &Scope,
        request: CreatePackage,
    ) -> impl Future<Output = BackendResult<Package>> + Send {
        (**self).create_package(scope, request)
    }

    fn update_package(
        &self,
        scope: &Scope,
        request: UpdatePackage,
    ) -> impl Future<Output = BackendResult<Package>> + Send {
        (**self).update_package(scope, request)
    }

    fn delete_package(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> impl Future<Output = BackendResult<Package>> + Send {
        (**self).delete_package(scope, package_id)
    }

    fn package_version_history(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> impl Future<Output = BackendResult<Vec<PackageVersion>>> + Send {
        (**self).package_version_history(scope, package_id)
    }

    fn associate_package(
        &self,
        scope: &Scope,
        request: AssociatePackage,
    ) -> impl Future<Output = BackendResult<DomainAssociation>> + Send {
        (**self).associate_package(scope, request)
    }

    fn dissociate_package(
        &self,
        scope: &Scope,
        package_id: &str,
        domain_name: &str,
    ) -> impl Future<Output = BackendResult<DomainAssociation>> + Send {
        (**self).dissociate_package(scope, package_id, domain_name)
    }

    fn list_domains_for_package(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> impl Future<Output = BackendResult<Vec<DomainAssociation>>> + Send {
        (**self).list_domains_for_package(scope, package_id)
    }

    fn update_package_scope(
        &self,
        scope: &Scope,
        package_id: &str,
        users: Vec<String>,
    ) -> impl Future<Output = BackendResult<Vec<String>>> + Send {
        (**self).update_package_scope(scope, package_id, users)
    }

    fn own_account(&self) -> impl Future<Output = BackendResult<String>> + Send {
        (**self).own_account()
    }

    fn check_role(
        &self,
        session: &RoleSession,
        region: &str,
    ) -> impl Future<Output = BackendResult<()>> + Send {
        (**self).check_role(session, region)
    }

    fn changes_waiting(&self, place: &Place) -> bool {
        (**self).changes_waiting(place)
    }

    fn unanswered_window(&self) -> Duration {
        (**self).unanswered_window()
    }
}

/// Sorts version history newest first by the number in `vN` (the service's own order is not
/// documented).
pub fn sort_newest_first(history: &mut [PackageVersion]) {
    history.sort_by_key(|v| {
        std::cmp::Reverse(
            v.version
                .trim_start_matches('v')
                .parse::<u64>()
                .unwrap_or_default(),
        )
    });
}
