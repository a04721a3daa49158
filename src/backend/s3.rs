//! The S3 side: HeadObject over `aws-sdk-s3`, for objects that follow their source's content
//! (`spec.source.followContent`).
//!
//! Built from the same SDK configuration as the OpenSearch client (credentials, retries for
//! reads, timeouts; see [`super::sdk`]). One client per region, built lazily. A bucket in
//! another region than the package answers with its region (`x-amz-bucket-region`); the call is
//! repeated there once and the bucket's region remembered. A configured S3 endpoint
//! (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`: the simulator, MinIO, a VPC endpoint) is
//! addressed path-style, which every S3-compatible server understands.
//!
//! Calls are rate-limited per (account, region) with a budget of their own (S3 limits are
//! separate from and far above the OpenSearch Service's), the SDK's retries of a call included
//! ([`super::sdk::paced`]), and counted in `ospkg_aws_calls_total` with the operation
//! `HeadObject`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Config, Credentials, Region};
use aws_sdk_s3::error::SdkError;
use aws_types::service_config::ServiceConfigKey;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;

use super::errors::map_sdk_error;
use super::identity::{Identities, Identity, Place, Scope};
use super::sdk::{Pace, Timeouts, paced, paced_call, sdk_defaults};
use super::{BackendError, BackendResult, Operation};
use crate::metrics::Metrics;

/// The header S3 names a bucket's region in, on every answer about a bucket in another region.
const BUCKET_REGION: &str = "x-amz-bucket-region";

/// An S3 object version as HeadObject reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The ETag as S3 sends it (quoted).
    pub etag: String,
    /// The VersionId, in a versioned bucket.
    pub version_id: Option<String>,
    pub last_modified: Option<Timestamp>,
}

/// HeadObject for package sources, per region, rate-limited and counted.
pub struct S3Backend {
    /// Everything but the region and a role's credentials; each client is built from it.
    base: Config,
    /// Whether requests name the bucket in the path: a configured endpoint.
    path_style: bool,
    identities: Arc<Identities>,
    clients: RwLock<HashMap<(Identity, String), Client>>,
    /// Buckets found in another region than the one first asked.
    bucket_regions: RwLock<HashMap<String, String>>,
    limiter: Arc<DefaultKeyedRateLimiter<Place>>,
    metrics: Arc<Metrics>,
}

/// One (account, region) of the HeadObject limiter, for the SDK's retries of a call it
/// admitted ([`paced_call`]).
struct Lane {
    limiter: Arc<DefaultKeyedRateLimiter<Place>>,
    place: Place,
}

impl Pace for Lane {
    fn wait(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.limiter.until_key_ready(&self.place))
    }
}

impl fmt::Debug for S3Backend {
    // The configuration holds a credentials provider: print only the regions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        let mut regions: Vec<&String> = clients.keys().map(|(_, region)| region).collect();
        regions.sort();
        regions.dedup();
        f.debug_struct("S3Backend")
            .field("regions", &regions)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// The client the operator runs with: the shared AWS configuration (credentials, retries,
    /// timeouts, an endpoint override such as `AWS_ENDPOINT_URL_S3`), `rate_per_second`
    /// HeadObject calls per second and region (also the burst).
    pub fn new(sdk_config: &SdkConfig, metrics: Arc<Metrics>, rate_per_second: NonZeroU32) -> Self {
        Self::with_quota(sdk_config, metrics, Quota::per_second(rate_per_second))
    }

    fn with_quota(sdk_config: &SdkConfig, metrics: Arc<Metrics>, quota: Quota) -> Self {
        let path_style = s3_endpoint_configured(sdk_config);
        let mut base = aws_sdk_s3::config::Builder::from(sdk_config).force_path_style(path_style);
        // The SDK's retries of a HeadObject take a token of its limiter too.
        if let Some(http) = sdk_config.http_client() {
            base = base.http_client(paced(http));
        }
        let base = base.build();
        Self {
            base,
            path_style,
            identities: Arc::new(Identities::new(sdk_config.clone())),
            clients: RwLock::new(HashMap::new()),
            bucket_regions: RwLock::new(HashMap::new()),
            limiter: Arc::new(RateLimiter::keyed(quota)),
            metrics,
        }
    }

    /// A client for the S3 at `endpoint_url` (the simulator, another S3 implementation in
    /// tests) with static dummy credentials and otherwise the settings the operator ships with,
    /// the path-style addressing of a configured endpoint included.
    pub async fn for_endpoint(endpoint_url: &str, metrics: Arc<Metrics>) -> Self {
        let rate = NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN);
        Self::for_endpoint_at(endpoint_url, metrics, rate).await
    }

    /// [`S3Backend::for_endpoint`] at `rate_per_second` HeadObject calls per region.
    pub async fn for_endpoint_at(
        endpoint_url: &str,
        metrics: Arc<Metrics>,
        rate_per_second: NonZeroU32,
    ) -> Self {
        let conf = sdk_defaults(Timeouts::default())
            .endpoint_url(endpoint_url)
            .region(Region::from_static("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .load()
            .await;
        Self::new(&conf, metrics, rate_per_second)
    }

    /// Reads with the role sessions the package backend uses (one AssumeRole per session for
    /// both).
    pub fn with_identities(mut self, identities: Arc<Identities>) -> Self {
        self.identities = identities;
        self
    }

    /// Whether requests name the bucket in the path (`https://host/bucket/key`).
    pub fn path_style(&self) -> bool {
        self.path_style
    }

    /// The region a bucket was found in, once a call was redirected there.
    pub fn known_bucket_region(&self, bucket: &str) -> Option<String> {
        self.bucket_regions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(bucket)
            .cloned()
    }

    /// HeadObject of `s3://bucket/key` with the scope's identity, asked in the bucket's region
    /// when it is known, else in the scope's (the package's). `NotFound` when the object (or
    /// its current version) does not exist, `AccessDenied` on 403.
    pub async fn head_object(
        &self,
        scope: &Scope,
        bucket: &str,
        key: &str,
    ) -> BackendResult<ObjectVersion> {
        let started = Instant::now();
        let region = scope.region.as_str();
        let asked = self
            .known_bucket_region(bucket)
            .unwrap_or_else(|| region.to_owned());
        let mut result = self.head_in(scope, &asked, bucket, key).await;
        if let Err(Head::Elsewhere(other)) = &result {
            tracing::debug!(bucket, from = %asked, to = %other, "bucket is in another region");
            self.bucket_regions
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(bucket.to_owned(), other.clone());
            let other = other.clone();
            result = self.head_in(scope, &other, bucket, key).await;
        }
        let result = result.map_err(|e| e.into_backend_error(bucket, key));
        self.metrics.aws_call_duration(
            Operation::HeadObject,
            &scope.account,
            region,
            started.elapsed(),
        );
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.label(),
        };
        self.metrics.aws_call(Operation::HeadObject, outcome);
        result
    }

    async fn head_in(
        &self,
        scope: &Scope,
        region: &str,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectVersion, Head> {
        let place = Place {
            account: scope.account.clone(),
            region: region.to_owned(),
        };
        self.limiter.until_key_ready(&place).await;
        let client = self
            .client(&scope.identity, region)
            .await
            .map_err(Head::Other)?;
        let lane = Arc::new(Lane {
            limiter: Arc::clone(&self.limiter),
            place,
        });
        let answer = paced_call(lane, client.head_object().bucket(bucket).key(key).send()).await;
        let output = match answer {
            Ok(output) => output,
            Err(SdkError::ServiceError(context)) => {
                let raw = context.raw();
                let status = raw.status().as_u16();
                let elsewhere = raw
                    .headers()
                    .get(BUCKET_REGION)
                    .filter(|r| !r.is_empty() && *r != region)
                    .map(str::to_owned);
                return Err(match elsewhere {
                    Some(other) => Head::Elsewhere(other),
                    None => Head::Status(status),
                });
            }
            Err(other) => return Err(Head::Other(map_sdk_error(other))),
        };
        // A delete marker as the current version: the object is gone (S3 answers 404 then;
        // this covers a server that answers it with a 200).
        if output.delete_marker() == Some(true) {
            return Err(Head::Status(404));
        }
        Ok(ObjectVersion {
            etag: output.e_tag().unwrap_or_default().to_owned(),
            version_id: output
                .version_id()
                .filter(|v| !v.is_empty() && *v != "null")
                .map(str::to_owned),
            last_modified: output
                .last_modified()
                .and_then(|t| Timestamp::from_second(t.secs()).ok()),
        })
    }

    /// The client for `identity` in `region`, built on first use.
    async fn client(&self, identity: &Identity, region: &str) -> BackendResult<Client> {
        let key = (identity.clone(), region.to_owned());
        if let Some(client) = self
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(client.clone());
        }
        let credentials = self.identities.provider(identity, region).await?;
        let mut builder = self
            .base
            .to_builder()
            .region(Region::new(region.to_owned()));
        if let Some(credentials) = credentials {
            builder = builder.credentials_provider(credentials);
        }
        let client = Client::from_conf(builder.build());
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        Ok(clients.entry(key).or_insert(client).clone())
    }
}

/// How one HeadObject request failed.
enum Head {
    /// The bucket lives in this other region.
    Elsewhere(String),
    /// S3 answered with this HTTP status (HEAD answers carry no error body).
    Status(u16),
    /// No answer: a timeout, a dropped connection, credentials not available.
    Other(BackendError),
}

impl Head {
    fn into_backend_error(self, bucket: &str, key: &str) -> BackendError {
        let object = format!("s3://{bucket}/{key}");
        match self {
            Self::Status(404) => BackendError::NotFound(format!("{object} does not exist")),
            Self::Status(403) => BackendError::AccessDenied(format!(
                "HeadObject on {object} was denied (403): grant s3:GetObject on it (S3 also answers 403 for a missing object to callers without s3:ListBucket on the bucket)"
            )),
            Self::Status(503) => {
                BackendError::Throttled(format!("HeadObject on {object}: 503 (slow down)"))
            }
            Self::Status(status) if status >= 500 => {
                BackendError::Transient(format!("HeadObject on {object}: HTTP {status}"))
            }
            Self::Status(status) => {
                BackendError::Invalid(format!("HeadObject on {object}: HTTP {status}"))
            }
            Self::Elsewhere(region) => BackendError::Transient(format!(
                "HeadObject on {object}: redirected again, to {region}"
            )),
            Self::Other(error) => error,
        }
    }
}

/// Whether an S3 endpoint is configured the way the SDK reads it: `AWS_ENDPOINT_URL_S3` (or
/// the profile's `endpoint_url` for S3), else the global `AWS_ENDPOINT_URL` / `endpoint_url`.
fn s3_endpoint_configured(sdk_config: &SdkConfig) -> bool {
    let service_specific = ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()
        .and_then(|key| sdk_config.service_config()?.load_config(key));
    service_specific.is_some() || sdk_config.endpoint_url().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(region: &str) -> Scope {
        Scope::own("123456789012", region)
    }

    #[tokio::test]
    async fn a_configured_endpoint_is_addressed_path_style_and_aws_is_not() {
        let metrics = Arc::new(Metrics::new());
        let custom = S3Backend::for_endpoint("http://s3.example.test:4511", metrics.clone()).await;
        assert!(custom.path_style());
        let aws = sdk_defaults(Timeouts::default())
            .region(Region::from_static("eu-west-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .load()
            .await;
        let rate = NonZeroU32::new(10).expect("non-zero");
        assert!(!S3Backend::new(&aws, metrics, rate).path_style());
    }

    #[tokio::test]
    async fn calls_spend_their_own_budget_per_region_and_are_counted() {
        let sim = ospkg_sim::start(ospkg_sim::SimConfig::default())
            .await
            .expect("simulator");
        let etag = sim
            .admin()
            .put_object("dicts", "s.txt", b"a, b\n".to_vec())
            .await
            .expect("put");
        let conf = sdk_defaults(Timeouts::default())
            .endpoint_url(sim.s3_endpoint())
            .region(Region::from_static("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .load()
            .await;
        let metrics = Arc::new(Metrics::new());
        // Two calls per region, then one an hour: a spent budget stays spent.
        let quota = Quota::per_hour(NonZeroU32::new(2).expect("non-zero"));
        let backend = S3Backend::with_quota(&conf, metrics.clone(), quota);
        for _ in 0..2 {
            let read = backend
                .head_object(&own("us-east-1"), "dicts", "s.txt")
                .await
                .expect("head");
            assert_eq!(read.etag, etag);
        }
        assert!(
            backend
                .limiter
                .check_key(&own("us-east-1").place())
                .is_err()
        );
        assert!(backend.limiter.check_key(&own("eu-west-1").place()).is_ok());
        let missing = backend
            .head_object(&own("eu-west-1"), "dicts", "none.txt")
            .await;
        assert!(
            matches!(missing, Err(BackendError::NotFound(_))),
            "{missing:?}"
        );
        let text = metrics.encode();
        for line in [
            r#"ospkg_aws_calls_total{operation="HeadObject",outcome="ok"} 2"#,
            r#"ospkg_aws_calls_total{operation="HeadObject",outcome="not_found"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            text.contains(r#"ospkg_aws_call_duration_seconds_count{operation="HeadObject",account="123456789012",region="eu-west-1"} 1"#),
            "{text}"
        );
        assert_eq!(
            sim.admin().calls().await.expect("calls").get("HeadObject"),
            Some(&3)
        );
    }

    #[tokio::test]
    async fn regional_clients_are_built_once() {
        let backend = S3Backend::for_endpoint("http://127.0.0.1:1", Arc::new(Metrics::new())).await;
        let a = backend.client(&Identity::Own, "eu-west-1").await.unwrap();
        let _ = backend.client(&Identity::Own, "eu-west-1").await.unwrap();
        let b = backend.client(&Identity::Own, "us-east-2").await.unwrap();
        assert_eq!(a.config().region().map(Region::as_ref), Some("eu-west-1"));
        assert_eq!(b.config().region().map(Region::as_ref), Some("us-east-2"));
        assert_eq!(
            format!("{backend:?}"),
            r#"S3Backend { regions: ["eu-west-1", "us-east-2"], .. }"#
        );
    }
}
