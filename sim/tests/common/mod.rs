//! Shared helpers of the simulator's integration tests.
#![allow(dead_code)]

use aws_sdk_opensearch::Client;
use aws_sdk_opensearch::config::SharedHttpClient;
use aws_sdk_opensearch::config::retry::RetryConfig;
use aws_sdk_opensearch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_opensearch::error::ProvideErrorMetadata;
use aws_sdk_opensearch::types::{PackageDetails, PackageSource, PackageType};
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use ospkg_sim::{Durations, FaultConfig, OperationFaults, RunningSim, SimConfig};

pub const DURATIONS: Durations = Durations {
    copying_ms: 2000,
    validating_ms: 1000,
    associating_ms: 3000,
    dissociating_ms: 2000,
    deleting_ms: 1000,
};

/// A simulator on a manual clock with domains `search` and `logs` in every region.
pub async fn sim() -> RunningSim {
    sim_with(SimConfig::default()).await
}

pub async fn sim_with(config: SimConfig) -> RunningSim {
    let config = config
        .manual_clock()
        .durations(DURATIONS)
        .domain("search", "OpenSearch_2.15")
        .domain("logs", "OpenSearch_2.15");
    ospkg_sim::start(config).await.expect("simulator starts")
}

/// An SDK client without retries, so every call is exactly one request.
pub fn client(sim: &RunningSim) -> Client {
    client_for(sim, "us-east-1", "test")
}

/// The SDK's HTTP client, as the operator builds it (rustls on ring): the workspace builds
/// the SDK without a default one.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

pub fn client_for(sim: &RunningSim, region: &str, access_key: &str) -> Client {
    let conf = aws_sdk_opensearch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .endpoint_url(sim.endpoint())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(access_key, "secret", None, None, "sim"))
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

/// The error code and message of a failed call.
pub fn failure<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<T, E>,
) -> (String, String) {
    let e = result.expect_err("call should fail");
    (
        e.code().unwrap_or("<none>").to_string(),
        e.message().unwrap_or("").to_string(),
    )
}

pub fn source(bucket: &str, key: &str) -> PackageSource {
    PackageSource::builder()
        .s3_bucket_name(bucket)
        .s3_key(key)
        .build()
}

pub const DESCRIPTOR: &str = "description=Example plugin\nversion=1.2.3\nname=example-plugin\nclassname=org.example.ExamplePlugin\nopensearch.version=2.15.0\njava.version=11\n";

/// A plugin zip: the descriptor (if any) plus a jar of `jar_len` bytes.
pub fn plugin_zip(descriptor: Option<&str>, jar_len: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    if let Some(d) = descriptor {
        zip.start_file("plugin-descriptor.properties", options)
            .unwrap();
        zip.write_all(d.as_bytes()).unwrap();
    }
    zip.start_file("example-plugin.jar", options).unwrap();
    zip.write_all(&vec![7u8; jar_len]).unwrap();
    zip.finish().unwrap().into_inner()
}

/// Creates a dictionary package from a fresh object and returns its id.
pub async fn create_dictionary(sim: &RunningSim, client: &Client, name: &str) -> String {
    sim.admin()
        .put_object("pkgs", &format!("{name}.txt"), b"a, b\n".to_vec())
        .await
        .unwrap();
    client
        .create_package()
        .package_name(name)
        .package_type(PackageType::TxtDictionary)
        .package_source(source("pkgs", &format!("{name}.txt")))
        .send()
        .await
        .unwrap()
        .package_details
        .unwrap()
        .package_id
        .unwrap()
}

pub async fn describe(client: &Client, id: &str) -> PackageDetails {
    client
        .describe_packages()
        .filters(
            aws_sdk_opensearch::types::DescribePackagesFilter::builder()
                .name(aws_sdk_opensearch::types::DescribePackagesFilterName::PackageId)
                .value(id)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .package_details_list
        .unwrap()
        .remove(0)
}

pub fn status(details: &PackageDetails) -> &str {
    details.package_status().map(|s| s.as_str()).unwrap_or("")
}

/// Creates a dictionary and moves the clock until it is AVAILABLE.
pub async fn available_dictionary(sim: &RunningSim, client: &Client, name: &str) -> String {
    let id = create_dictionary(sim, client, name).await;
    sim.admin()
        .advance_clock(DURATIONS.copying_ms + DURATIONS.validating_ms)
        .await
        .unwrap();
    assert_eq!(status(&describe(client, &id).await), "AVAILABLE");
    id
}

/// A raw HTTP request to the simulator, for inputs an SDK will not send.
pub async fn raw(
    url: &str,
    method: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, http::HeaderMap, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<axum::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder().method(method).uri(url);
    if let Some(auth) = authorization {
        request = request.header("authorization", auth);
    }
    let request = request
        .body(Full::new(axum::body::Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

pub const AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/es/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000";

/// Seeded throttling, 500s and 503s on DescribePackages.
pub fn flaky(seed: u64) -> FaultConfig {
    FaultConfig {
        seed,
        operations: BTreeMap::from([(
            "DescribePackages".to_string(),
            OperationFaults {
                throttle: 0.2,
                internal: 0.2,
                unavailable: 0.1,
                ..Default::default()
            },
        )]),
        ..Default::default()
    }
}

/// The outcome ("ok" or the error code) of `n` DescribePackages calls in a row.
pub async fn outcomes(sim: &RunningSim, n: usize) -> Vec<String> {
    let client = client(sim);
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(match client.describe_packages().send().await {
            Ok(_) => "ok".to_string(),
            Err(e) => e.code().unwrap_or("?").to_string(),
        });
    }
    seen
}
