//! The HTTP server against a real socket: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ospkg::metrics::Metrics;
use ospkg::server::{Health, OPENMETRICS_CONTENT_TYPE, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 GET: `Connection: close` lets the body run to the end of the stream.
async fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .expect("read response");
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<_> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(
        listener,
        Arc::clone(&metrics),
        Arc::clone(&health),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        metrics,
        health,
        stop: Some(stop),
        task,
    }
}

#[tokio::test]
async fn healthz_answers_while_the_process_runs() {
    let server = start().await;
    let response = get(server.addr, "/healthz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok");
}

#[tokio::test]
async fn readyz_follows_the_health_flag() {
    let server = start().await;
    let response = get(server.addr, "/readyz").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body, "not ready");

    server.health.set_ready(true);
    let response = get(server.addr, "/readyz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok");

    // Readiness can be lost again, e.g. when the watch has to restart.
    server.health.set_ready(false);
    assert_eq!(get(server.addr, "/readyz").await.status, 503);
    // Liveness does not depend on readiness.
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
}

#[tokio::test]
async fn metrics_shows_every_family_in_openmetrics_format() {
    let server = start().await;
    server
        .metrics
        .observe_reconcile("success", Duration::from_millis(20));
    server
        .metrics
        .observe_reconcile("stalled", Duration::from_secs(1));
    server
        .metrics
        .aws_call(ospkg::backend::Operation::CreatePackage, "ok");
    server
        .metrics
        .aws_call(ospkg::backend::Operation::AssociatePackage, "conflict");
    server
        .metrics
        .set_package_status("search/synonyms", Some("AVAILABLE"));
    server
        .metrics
        .set_package_status("search/stopwords", Some("COPYING"));
    server.metrics.set_domains_behind("search/synonyms", 2);

    let response = get(server.addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some(OPENMETRICS_CONTENT_TYPE)
    );
    let body = &response.body;
    for expected in [
        "# TYPE ospkg_reconciles counter",
        "ospkg_reconciles_total{result=\"success\"} 1",
        "ospkg_reconciles_total{result=\"stalled\"} 1",
        "# TYPE ospkg_reconcile_duration_seconds histogram",
        "ospkg_reconcile_duration_seconds_count 2",
        "ospkg_aws_calls_total{operation=\"CreatePackage\",outcome=\"ok\"} 1",
        "ospkg_aws_calls_total{operation=\"AssociatePackage\",outcome=\"conflict\"} 1",
        "ospkg_packages{package_status=\"AVAILABLE\"} 1",
        "ospkg_packages{package_status=\"COPYING\"} 1",
        "ospkg_domains_behind 2",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in\n{body}");
    }
    assert!(body.ends_with("# EOF\n"), "{body}");

    // A later scrape sees later values.
    server.metrics.forget("search/stopwords");
    let body = get(server.addr, "/metrics").await.body;
    assert!(
        body.contains("ospkg_packages{package_status=\"COPYING\"} 0"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let server = start().await;
    assert_eq!(get(server.addr, "/").await.status, 404);
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let mut server = start().await;
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    if let Some(stop) = server.stop.take() {
        stop.send(()).expect("server is listening for shutdown");
    }
    let result = tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("serve returns within 10 s")
        .expect("serve task did not panic");
    assert!(result.is_ok(), "{result:?}");
    assert!(TcpStream::connect(server.addr).await.is_err());
}

/// The value of the sample `name` (no labels) in an OpenMetrics scrape.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| {
            let (sample, value) = line.split_once(' ')?;
            (sample == name).then(|| value.trim().parse::<f64>().expect("a numeric value"))
        })
        .unwrap_or_else(|| panic!("no sample {name} in\n{body}"))
}

#[tokio::test]
async fn metrics_shows_the_processs_own_cpu_memory_and_file_descriptors() {
    let server = start().await;
    let before = get(server.addr, "/metrics").await.body;
    for family in [
        "# TYPE process_cpu_seconds counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_virtual_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_max_fds gauge",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(before.contains(family), "missing {family:?} in\n{before}");
    }

    // Held while scraping: 64 more open files and 64 MiB of touched memory.
    let files: Vec<std::fs::File> = (0..64)
        .map(|_| std::fs::File::open(env!("CARGO_MANIFEST_DIR")).expect("open"))
        .collect();
    let ballast = std::hint::black_box(vec![1u8; 64 << 20]);
    // Burn CPU until the process has used at least 0.2 s more (other tests run beside this
    // one, so the counter may grow faster; it must not stay put).
    let cpu_before = sample(&before, "process_cpu_seconds_total");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut spins = 0u64;
    loop {
        for i in 0..1_000_000u64 {
            spins = std::hint::black_box(spins.wrapping_add(i));
        }
        let now = metrics_process_cpu(&server).await;
        if now >= cpu_before + 0.2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process_cpu_seconds_total stayed at {now} (started at {cpu_before})"
        );
    }

    let body = get(server.addr, "/metrics").await.body;
    let resident = sample(&body, "process_resident_memory_bytes");
    let virtual_memory = sample(&body, "process_virtual_memory_bytes");
    assert!(
        resident >= f64::from(64u32 << 20),
        "resident {resident} bytes while holding 64 MiB"
    );
    assert!(virtual_memory >= resident, "{virtual_memory} < {resident}");
    let open = sample(&body, "process_open_fds");
    let max = sample(&body, "process_max_fds");
    assert!(open >= 64.0 + 3.0, "{open} open fds while holding 64 files");
    assert!(max >= open, "max_fds {max} < open_fds {open}");
    let start = sample(&body, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start <= now && start > now - 24.0 * 3600.0,
        "process_start_time_seconds {start} is not a start time of this test process (now {now})"
    );
    // The ballast and the files are alive until here.
    drop(std::hint::black_box(ballast));
    drop(files);
}

async fn metrics_process_cpu(server: &Server) -> f64 {
    sample(
        &get(server.addr, "/metrics").await.body,
        "process_cpu_seconds_total",
    )
}
