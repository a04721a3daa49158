//! The real backend: [`PackageBackend`] over `aws-sdk-opensearch`.
//!
//! One SDK client per (identity, region), built lazily from one base configuration: the
//! operator serves objects in several regions and, through roles granted to namespaces,
//! several accounts; building a client per call would throw away its connection pool and
//! identity cache.
//! Failures become [`BackendError`](super::BackendError)s in [`super::errors`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_opensearch::Client;
use aws_sdk_opensearch::config::{Config, Credentials, Region};
use aws_sdk_opensearch::types as sdk;

use convert::{
    association_from_sdk, configuration, encryption, key_store_access, missing, package_from_sdk,
    package_source, timestamp, vending,
};

use super::errors::map_sdk_error;
use super::identity::{Identities, Identity, Scope};
pub use super::sdk::{Timeouts, sdk_defaults};
use super::sdk::{paced, sent_once};
use super::{
    AssociatePackage, BackendResult, CreatePackage, DomainAssociation, Package, PackageBackend,
    PackageFilter, PackagePage, PackageVersion, UpdatePackage, sort_newest_first,
};

/// [`super::PAGE_SIZE`] as the SDK takes it.
const PAGE_SIZE: i32 = super::PAGE_SIZE as i32;

/// The longest a call of `conf` waits for an answer (its operation timeout, else its attempt
/// timeout), and a little more for the clocks of two replicas: a request still on its way
/// when the client gave up is assumed to take effect by then, or not at all.
fn longest_wait(conf: &Config) -> Duration {
    const CLOCKS: Duration = Duration::from_secs(5);
    let timeouts = conf.timeout_config();
    timeouts
        .and_then(|t| t.operation_timeout().or(t.operation_attempt_timeout()))
        .unwrap_or(super::UNANSWERED_WINDOW)
        + CLOCKS
}

/// [`PackageBackend`] over the Amazon OpenSearch Service API.
pub struct AwsBackend {
    /// Everything but the region and a role's credentials; each client is built from it.
    base: Config,
    identities: Arc<Identities>,
    clients: RwLock<HashMap<(Identity, String), Client>>,
    /// The longest a call waits for its answer: [`PackageBackend::unanswered_window`].
    unanswered_window: Duration,
}

impl fmt::Debug for AwsBackend {
    // The configuration holds a credentials provider: print only the regions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        let mut regions: Vec<&String> = clients.keys().map(|(_, region)| region).collect();
        regions.sort();
        regions.dedup();
        f.debug_struct("AwsBackend")
            .field("regions", &regions)
            .field("clients", &clients.len())
            .finish_non_exhaustive()
    }
}

impl AwsBackend {
    /// A backend using the shared AWS configuration (credentials, retries, timeouts, endpoint
    /// overrides such as `AWS_ENDPOINT_URL_OPENSEARCH`); the region is set per call.
    pub fn new(sdk_config: SdkConfig) -> Self {
        let identities = Arc::new(Identities::new(sdk_config.clone()));
        Self::with_identities(sdk_config, identities)
    }

    /// [`AwsBackend::new`] sharing the role sessions (and the operator's account) with the
    /// S3 backend.
    pub fn with_identities(sdk_config: SdkConfig, identities: Arc<Identities>) -> Self {
        let mut base = Config::new(&sdk_config).to_builder();
        if let Some(http) = sdk_config.http_client() {
            base = base.http_client(paced(http));
        }
        let base = base.build();
        AwsBackend {
            unanswered_window: longest_wait(&base),
            base,
            identities,
            clients: RwLock::new(HashMap::new()),
        }
    }

    /// A backend from a finished service configuration (tests: a canned HTTP client, retries
    /// off). The configuration's region is replaced per call; it can use only the identity
    /// the configuration carries.
    pub fn from_conf(conf: Config) -> Self {
        AwsBackend {
            unanswered_window: longest_wait(&conf),
            base: conf,
            identities: Arc::new(Identities::default()),
            clients: RwLock::new(HashMap::new()),
        }
    }

    /// The role sessions and the operator's own account.
    pub fn identities(&self) -> &Arc<Identities> {
        &self.identities
    }

    /// A backend that talks to `endpoint_url` (the simulator, in tests and the demo) with
    /// static dummy credentials and otherwise exactly the SDK settings the operator ships with.
    pub async fn for_endpoint(endpoint_url: &str) -> Self {
        Self::for_endpoint_with(endpoint_url, Timeouts::default()).await
    }

    /// [`AwsBackend::for_endpoint`] with other timeouts (as `--aws-attempt-timeout` and
    /// `--aws-operation-timeout` set them).
    pub async fn for_endpoint_with(endpoint_url: &str, timeouts: Timeouts) -> Self {
        let conf = sdk_defaults(timeouts)
            .endpoint_url(endpoint_url)
            .region(Region::from_static("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .load()
            .await;
        Self::new(conf)
    }

    /// The client for the scope's identity and region, built on first use.
    async fn client(&self, scope: &Scope) -> BackendResult<Client> {
        let key = (scope.identity.clone(), scope.region.clone());
        if let Some(client) = self
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(client.clone());
        }
        let credentials = self
            .identities
            .provider(&scope.identity, &scope.region)
            .await?;
        let mut builder = self
            .base
            .to_builder()
            .region(Region::new(scope.region.clone()));
        if let Some(credentials) = credentials {
            builder = builder.credentials_provider(credentials);
        }
        let client = Client::from_conf(builder.build());
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        Ok(clients.entry(key).or_insert(client).clone())
    }
}

impl PackageBackend for AwsBackend {
    async fn own_account(&self) -> BackendResult<String> {
        self.identities.own_account().await
    }

    async fn check_role(&self, session: &super::RoleSession, region: &str) -> BackendResult<()> {
        self.identities.check(session, region).await
    }

    fn unanswered_window(&self) -> Duration {
        self.unanswered_window
    }

    async fn describe_packages_page(
        &self,
        scope: &Scope,
        filter: PackageFilter,
        next_token: Option<String>,
    ) -> BackendResult<PackagePage> {
        let mut request = self
            .client(scope)
            .await?
            .describe_packages()
            .max_results(PAGE_SIZE)
            .set_next_token(next_token);
        request = match filter {
            PackageFilter::All => request,
            PackageFilter::Id(id) => request.filters(
                sdk::DescribePackagesFilter::builder()
                    .name(sdk::DescribePackagesFilterName::PackageId)
                    .value(id)
                    .build(),
            ),
            PackageFilter::Ids(ids) => request.filters(
                sdk::DescribePackagesFilter::builder()
                    .name(sdk::DescribePackagesFilterName::PackageId)
                    .set_value(Some(ids))
                    .build(),
            ),
            PackageFilter::Name(name) => request.filters(
                sdk::DescribePackagesFilter::builder()
                    .name(sdk::DescribePackagesFilterName::PackageName)
                    .value(name)
                    .build(),
            ),
        };
        let page = request.send().await.map_err(map_sdk_error)?;
        Ok(PackagePage {
            packages: page
                .package_details_list()
                .iter()
                .map(package_from_sdk)
                .collect(),
            // An empty token ends the listing as a missing one does.
            next_token: page.next_token.filter(|t| !t.is_empty()),
        })
    }

    async fn create_package(
        &self,
        scope: &Scope,
        request: CreatePackage,
    ) -> BackendResult<Package> {
        let output = self
            .client(scope)
            .await?
            .create_package()
            .package_name(request.name)
            .package_type(sdk::PackageType::from(request.package_type.as_str()))
            .package_source(package_source(request.source))
            .set_package_description(request.description)
            .set_engine_version(request.engine_version)
            .set_package_configuration(
                request
                    .configuration
                    .as_ref()
                    .map(configuration)
                    .transpose()?,
            )
            .set_package_encryption_options(
                request.encryption.as_ref().map(encryption).transpose()?,
            )
            .set_package_vending_options(request.vending_enabled.map(vending).transpose()?)
            .customize()
            .config_override(sent_once())
            .send()
            .await
            .map_err(map_sdk_error)?;
        output
            .package_details()
            .map(package_from_sdk)
            .ok_or_else(|| missing("CreatePackage", "PackageDetails"))
    }

    async fn update_package(
        &self,
        scope: &Scope,
        request: UpdatePackage,
    ) -> BackendResult<Package> {
        let output = self
            .client(scope)
            .await?
            .update_package()
            .package_id(request.package_id)
            .package_source(package_source(request.source))
            .set_package_description(request.description)
            .commit_message(request.commit_message)
            .set_package_configuration(
                request
                    .configuration
                    .as_ref()
                    .map(configuration)
                    .transpose()?,
            )
            .set_package_encryption_options(
                request.encryption.as_ref().map(encryption).transpose()?,
            )
            .customize()
            .config_override(sent_once())
            .send()
            .await
            .map_err(map_sdk_error)?;
        output
            .package_details()
            .map(package_from_sdk)
            .ok_or_else(|| missing("UpdatePackage", "PackageDetails"))
    }

    async fn delete_package(&self, scope: &Scope, package_id: &str) -> BackendResult<Package> {
        let output = self
            .client(scope)
            .await?
            .delete_package()
            .package_id(package_id)
            .customize()
            .config_override(sent_once())
            .send()
            .await
            .map_err(map_sdk_error)?;
        output
            .package_details()
            .map(package_from_sdk)
            .ok_or_else(|| missing("DeletePackage", "PackageDetails"))
    }

    async fn package_version_history(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> BackendResult<Vec<PackageVersion>> {
        let mut pages = self
            .client(scope)
            .await?
            .get_package_version_history()
            .package_id(package_id)
            .max_results(PAGE_SIZE)
            .into_paginator()
            .send();
        let mut history = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(map_sdk_error)?;
            history.extend(
                page.package_version_history_list()
                    .iter()
                    .map(|v| PackageVersion {
                        version: v.package_version().unwrap_or_default().to_owned(),
                        commit_message: v.commit_message().map(str::to_owned),
                        created_at: timestamp(v.created_at()),
                    }),
            );
        }
        sort_newest_first(&mut history);
        Ok(history)
    }

    async fn associate_package(
        &self,
        scope: &Scope,
        request: AssociatePackage,
    ) -> BackendResult<DomainAssociation> {
        let prerequisites = (!request.prerequisites.is_empty()).then_some(request.prerequisites);
        let association = request
            .key_store_access
            .as_ref()
            .map(key_store_access)
            .transpose()?
            .map(|option| {
                sdk::PackageAssociationConfiguration::builder()
                    .key_store_access_option(option)
                    .build()
            });
        let output = self
            .client(scope)
            .await?
            .associate_package()
            .package_id(request.package_id)
            .domain_name(request.domain_name)
            .set_prerequisite_package_id_list(prerequisites)
            .set_association_configuration(association)
            .customize()
            .config_override(sent_once())
            .send()
            .await
            .map_err(map_sdk_error)?;
        output
            .domain_package_details()
            .map(association_from_sdk)
            .ok_or_else(|| missing("AssociatePackage", "DomainPackageDetails"))
    }

    async fn dissociate_package(
        &self,
        scope: &Scope,
        package_id: &str,
        domain_name: &str,
    ) -> BackendResult<DomainAssociation> {
        let output = self
            .client(scope)
            .await?
            .dissociate_package()
            .package_id(package_id)
            .domain_name(domain_name)
            .customize()
            .config_override(sent_once())
            .send()
            .await
            .map_err(map_sdk_error)?;
        output
            .domain_package_details()
            .map(association_from_sdk)
            .ok_or_else(|| missing("DissociatePackage", "DomainPackageDetails"))
    }

    async fn list_domains_for_package(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> BackendResult<Vec<DomainAssociation>> {
        let mut pages = self
            .client(scope)
            .await?
            .list_domains_for_package()
            .package_id(package_id)
            .max_results(PAGE_SIZE)
            .into_paginator()
            .send();
        let mut associations = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(map_sdk_error)?;
            associations.extend(
                page.domain_package_details_list()
                    .iter()
                    .map(association_from_sdk),
            );
        }
        Ok(associations)
    }

    async fn update_package_scope(
        &self,
        scope: &Scope,
        package_id: &str,
        users: Vec<String>,
    ) -> BackendResult<Vec<String>> {
        let output = self
            .client(scope)
            .await?
            .update_package_scope()
            .package_id(package_id)
            .operation(sdk::PackageScopeOperationEnum::Override)
            .set_package_user_list(Some(users))
            .customize()
            .config_override(sent_once())
            .send()
            .await
            .map_err(map_sdk_error)?;
        Ok(output.package_user_list().to_vec())
    }
}

mod convert;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clients_are_built_once_per_identity_and_region() {
        let backend = AwsBackend::for_endpoint("http://127.0.0.1:1").await;
        let own = |region: &str| Scope::own("123456789012", region);
        let role = Scope {
            identity: Identity::Role(super::super::RoleSession {
                role_arn: "arn:aws:iam::111122223333:role/team-a".into(),
                external_id: None,
                namespace: "team-a".into(),
            }),
            ..Scope::own("111122223333", "eu-west-1")
        };
        let a = backend.client(&own("eu-west-1")).await.unwrap();
        let _ = backend.client(&own("eu-west-1")).await.unwrap();
        let b = backend.client(&own("us-east-2")).await.unwrap();
        let c = backend.client(&role).await.unwrap();
        assert_eq!(a.config().region().map(Region::as_ref), Some("eu-west-1"));
        assert_eq!(b.config().region().map(Region::as_ref), Some("us-east-2"));
        assert_eq!(c.config().region().map(Region::as_ref), Some("eu-west-1"));
        assert_eq!(
            format!("{backend:?}"),
            r#"AwsBackend { regions: ["eu-west-1", "us-east-2"], clients: 3, .. }"#
        );
    }
}
