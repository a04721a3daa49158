//! `/readyz` reports ready only once the watch has synced: against a real API server, the
//! operator stays unready while its CRD is missing (the watch cannot list) and turns ready
//! once the CRD is installed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Some((code, body))
}

async fn wait_for_code(port: u16, path: &str, code: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if get(port, path).await.is_some_and(|(c, _)| c == code) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn readyz_waits_for_the_watch_to_sync() {
    let cp = testenv::ControlPlane::start().await.expect("control plane");
    let port = testenv::free_port().expect("port");
    let log = cp.dir().join("operator.log");
    let mut operator = testenv::Process::spawn(
        "operator",
        Command::new(env!("CARGO_BIN_EXE_opensearch-package-operator"))
            .args([
                "run",
                "--region",
                "us-east-1",
                "--resync-interval",
                "30s",
                "--log-level",
                "info,kube_runtime=debug,ospkg=debug",
                "--leader-election-namespace",
                "default",
            ])
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .env("KUBECONFIG", cp.kubeconfig_path())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Nothing listens there: no AWS call may happen in this test anyway.
            .env("AWS_ENDPOINT_URL_OPENSEARCH", "http://127.0.0.1:9"),
        &log,
    )
    .expect("operator starts");

    assert!(
        wait_for_code(port, "/healthz", 200, Duration::from_secs(30)).await,
        "healthz never answered: {}",
        operator.log_tail(40)
    );
    // The CRD is not installed: the watch cannot sync, so the operator is alive but not ready.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, _) = get(port, "/readyz").await.expect("readyz answers");
    assert_eq!(
        code,
        503,
        "ready before the watch synced: {}",
        operator.log_tail(40)
    );

    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    cp.install_crds(&crds).await.expect("CRD installed");
    assert!(
        wait_for_code(port, "/readyz", 200, Duration::from_secs(60)).await,
        "never became ready after the CRD was installed: {}",
        operator.log_tail(40)
    );

    let (code, metrics) = get(port, "/metrics").await.expect("metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("# TYPE ospkg_reconcile_duration_seconds histogram"),
        "{metrics}"
    );
    assert!(
        operator.try_status().expect("status").is_none(),
        "operator exited"
    );
}
