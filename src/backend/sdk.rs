//! The AWS SDK settings the operator ships with: its retry policy (reads retried by the SDK,
//! changes sent once) and its timeouts. The binary and the tests build their SDK
//! configuration from here, so the tests exercise what ships.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_opensearch::config::Config;
use aws_sdk_opensearch::config::SharedHttpClient;
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::retry::RetryConfig;

/// Longest wait for a TCP connection to the AWS endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one AWS call may take: a call that never answers must not hold a reconcile
/// forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// One HTTP attempt (one page of a listing, one mutating call).
    pub attempt: Duration,
    /// One operation, the SDK's retries of a read included.
    pub operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            attempt: Duration::from_secs(20),
            operation: Duration::from_secs(60),
        }
    }
}

/// The SDK's HTTPS client: rustls on ring, the crypto kube's client uses too, so the binary
/// carries one TLS stack (the SDK's default client would bring aws-lc-rs). Trusts the
/// system's CA certificates, as the default client does.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The AWS SDK settings the operator ships with: its HTTPS client, credentials and region
/// from the default chain, standard retries (for reads: see `sent_once` for changes) and
/// timeouts. Standard, not adaptive: the operator's own per-(account, region) rate limiter is
/// what keeps it under the service's limit (each retry takes a token of it too: `paced`),
/// and the SDK's adaptive mode, after one throttle, held the next read for 10–20 s at a
/// client rate measured from the few reads before it (the region observer stood still while
/// imports finished). Tests build their configuration from this too (adding an endpoint and
/// static credentials), so they exercise what ships.
pub fn sdk_defaults(timeouts: Timeouts) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(timeouts.attempt)
                .operation_timeout(timeouts.operation)
                .build(),
        )
}

/// Settings for calls that change something: one attempt, no SDK retry. An answer lost after
/// the service acted (a 5xx, a timeout, a dropped connection) would make a blind retry a second
/// version or a second change; the operator re-observes and decides instead (its write-ahead
/// intents make that safe). Reads keep the SDK's retries.
pub(super) fn sent_once() -> aws_sdk_opensearch::config::Builder {
    Config::builder().retry_config(RetryConfig::standard().with_max_attempts(1))
}

/// What an attempt after a call's first (an SDK retry) waits for: a token of the rate limiter
/// that admitted the call.
pub(super) trait Pace: Send + Sync {
    fn wait(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

tokio::task_local! {
    /// The call this task is making: the limiter that admitted it, and whether its first
    /// attempt has gone out.
    static ATTEMPTS: Attempts;
}

struct Attempts {
    pace: Arc<dyn Pace>,
    /// No attempt has gone out yet: the first one has its token (the call's admission).
    first: Cell<bool>,
}

/// Runs `call`, an SDK call admitted by `pace`'s limiter, so that the SDK's retries of it go
/// through the [`paced`] HTTP client only with a token of that limiter.
pub(super) async fn paced_call<F: Future>(pace: Arc<dyn Pace>, call: F) -> F::Output {
    let attempts = Attempts {
        pace,
        first: Cell::new(true),
    };
    ATTEMPTS.scope(attempts, call).await
}

/// Waits, before an HTTP attempt, until the attempt may go: at once for the first attempt of a
/// call (admitted with its token) and outside [`paced_call`]; for the SDK's retries, until the
/// call's limiter has a token for them. So a retry counts against the rate limit like any call:
/// it cannot take the service's token that the limiter gave the next call, which would then
/// be throttled in turn.
async fn pace_retry() {
    let retry_of = ATTEMPTS
        .try_with(|call| (!call.first.replace(false)).then(|| call.pace.clone()))
        .ok()
        .flatten();
    if let Some(pace) = retry_of {
        pace.wait().await;
    }
}

/// An SDK client's HTTP client: `inner`, with every attempt after a call's first (the SDK's
/// retries of a read) waiting for a token of the limiter that admitted the call
/// ([`paced_call`]). Without it a retry went out unmetered and could take the service's token
/// the limiter had just given the next call.
pub(super) fn paced(inner: SharedHttpClient) -> SharedHttpClient {
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Paced(inner.http_connector(settings, components)))
    })
}

#[derive(Debug)]
struct Paced(SharedHttpConnector);

impl HttpConnector for Paced {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.0.clone();
        HttpConnectorFuture::new(async move {
            pace_retry().await;
            inner.call(request).await
        })
    }
}
