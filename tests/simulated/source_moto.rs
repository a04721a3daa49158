//! The operator's S3 client (HeadObject, built with the settings it ships with) against a
//! second, independent S3 implementation: moto's standalone server (PyPI `moto[server]`,
//! installed in a cached venv by `hack/moto-server.sh`). What the simulator's S3 answers is
//! checked here against another implementation of the same wire protocol.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use ospkg::backend::BackendError;
use ospkg::backend::s3::S3Backend;
use ospkg::metrics::Metrics;
use testenv::Process;

const REGION: &str = "us-east-1";

/// A moto server on a free loopback port, stopped when dropped.
struct Moto {
    endpoint: String,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl Moto {
    async fn start() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let output = Command::new("bash")
            .arg(root.join("hack/moto-server.sh"))
            .output()
            .expect("running hack/moto-server.sh");
        assert!(
            output.status.success(),
            "hack/moto-server.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let command = String::from_utf8(output.stdout).expect("utf-8 path");
        let port = testenv::free_port().expect("free port");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut moto = Command::new(command.trim());
        moto.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let process = Process::spawn("moto_server", &mut moto, dir.path().join("moto.log"))
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen: {}",
                process.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            endpoint,
            _process: process,
            _dir: dir,
        }
    }

    /// A plain SDK client to arrange buckets and objects with.
    fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(ospkg::backend::sdk::https_client())
            .endpoint_url(&self.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

async fn put(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &str,
) -> (String, Option<String>) {
    let out = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .expect("put object");
    (
        out.e_tag().expect("an ETag").to_owned(),
        out.version_id().map(str::to_owned),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_head_object_reads_moto_s3_alike() {
    let moto = Moto::start().await;
    let setup = moto.client();
    let metrics = Arc::new(Metrics::new());
    let heads = S3Backend::for_endpoint(&moto.endpoint, metrics.clone()).await;

    // An unversioned bucket: the ETag, and an overwrite changes it.
    setup
        .create_bucket()
        .bucket("moto-dicts")
        .send()
        .await
        .expect("create bucket");
    let (etag, _) = put(&setup, "moto-dicts", "synonyms.txt", "tv, television\n").await;
    let read = heads
        .head_object(
            &crate::support::own_scope(REGION),
            "moto-dicts",
            "synonyms.txt",
        )
        .await
        .expect("head");
    assert_eq!(read.etag, etag);
    // The simulator's S3 gives the same bytes the same ETag (the quoted MD5).
    let sim = ospkg_sim::start(ospkg_sim::SimConfig::default())
        .await
        .expect("simulator");
    let sim_etag = sim
        .admin()
        .put_object("moto-dicts", "synonyms.txt", b"tv, television\n".to_vec())
        .await
        .expect("put");
    assert_eq!(read.etag, sim_etag);
    assert_eq!(read.version_id, None);
    assert!(read.last_modified.is_some());
    let (changed, _) = put(&setup, "moto-dicts", "synonyms.txt", "tv, telly\n").await;
    assert_ne!(changed, etag);
    let again = heads
        .head_object(
            &crate::support::own_scope(REGION),
            "moto-dicts",
            "synonyms.txt",
        )
        .await
        .expect("head");
    assert_eq!(again.etag, changed);
    let (same, _) = put(&setup, "moto-dicts", "synonyms.txt", "tv, telly\n").await;
    assert_eq!(same, changed, "identical bytes, identical ETag");

    // A missing object.
    let missing = heads
        .head_object(
            &crate::support::own_scope(REGION),
            "moto-dicts",
            "nothing.txt",
        )
        .await;
    assert!(
        matches!(missing, Err(BackendError::NotFound(ref m)) if m.contains("s3://moto-dicts/nothing.txt")),
        "{missing:?}"
    );

    // A versioned bucket: the VersionId, new with every upload; a delete marker hides it.
    setup
        .create_bucket()
        .bucket("moto-versioned")
        .send()
        .await
        .expect("create bucket");
    setup
        .put_bucket_versioning()
        .bucket("moto-versioned")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    let (_, v1) = put(&setup, "moto-versioned", "s.txt", "one\n").await;
    let (_, v2) = put(&setup, "moto-versioned", "s.txt", "one\n").await;
    let v2 = v2.expect("a VersionId");
    assert_ne!(v1.as_deref(), Some(v2.as_str()));
    let read = heads
        .head_object(
            &crate::support::own_scope(REGION),
            "moto-versioned",
            "s.txt",
        )
        .await
        .expect("head");
    assert_eq!(read.version_id.as_deref(), Some(v2.as_str()));
    setup
        .delete_object()
        .bucket("moto-versioned")
        .key("s.txt")
        .send()
        .await
        .expect("delete");
    let gone = heads
        .head_object(
            &crate::support::own_scope(REGION),
            "moto-versioned",
            "s.txt",
        )
        .await;
    assert!(matches!(gone, Err(BackendError::NotFound(_))), "{gone:?}");

    let text = metrics.encode();
    for line in [
        r#"ospkg_aws_calls_total{operation="HeadObject",outcome="ok"} 3"#,
        r#"ospkg_aws_calls_total{operation="HeadObject",outcome="not_found"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
