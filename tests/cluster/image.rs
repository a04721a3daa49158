//! The container image that ships (`Containerfile`, built by `hack/image.sh`): its labels and
//! configuration, and the operator running from it with podman as the chart's pod runs it —
//! user 65532, read-only root filesystem with a writable `/tmp`, no capabilities, no privilege
//! escalation — against a real API server and the simulator, until a package is Ready.
//!
//! The image is `OSPKG_IMAGE` (`hack/test.sh` builds it first and exports it with the podman
//! settings `hack/image.sh` prints); without `OSPKG_IMAGE` the test runs `hack/image.sh` itself
//! (a release build: minutes the first time) and fails with its output if that fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BINARY: &str = "/usr/local/bin/opensearch-package-operator";
const NONROOT: u32 = 65532;
const NAMESPACE: &str = "opensearch-package-operator";
const DOMAIN: &str = "catalog-prod";
const BUCKET: &str = "image-dicts";
const ACCESS_KEY: &str = "AKIDIMAGETEST";
/// Where the operator's kubeconfig is mounted in the container.
const KUBECONFIG_IN_CONTAINER: &str = "/var/run/ospkg/kubeconfig";

/// The image under test and the environment podman needs for it.
struct Image {
    reference: String,
    env: Vec<(String, String)>,
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Ok(reference) = std::env::var("OSPKG_IMAGE") {
            assert!(!reference.is_empty(), "OSPKG_IMAGE is set but empty");
            // hack/test.sh exported the CONTAINERS_* settings alongside it.
            return Image {
                reference,
                env: Vec::new(),
            };
        }
        eprintln!("OSPKG_IMAGE is not set: building the image with hack/image.sh");
        let output = Command::new(Path::new(REPO).join("hack/image.sh"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running hack/image.sh");
        assert!(
            output.status.success(),
            "hack/image.sh failed (see its output above); set OSPKG_IMAGE to test an image built elsewhere"
        );
        let mut env: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let position = env
            .iter()
            .position(|(k, _)| k == "OSPKG_IMAGE")
            .expect("hack/image.sh printed no OSPKG_IMAGE");
        let (_, reference) = env.remove(position);
        Image { reference, env }
    })
}

fn podman_command(args: &[&str]) -> Command {
    let mut command = Command::new("podman");
    command.args(args).envs(image().env.iter().cloned());
    command
}

fn podman_output(args: &[&str]) -> Output {
    podman_command(args)
        .output()
        .unwrap_or_else(|e| panic!("running podman {args:?}: {e}"))
}

/// `podman <args>`'s stdout; panics with its stderr unless it succeeds.
fn podman(args: &[&str]) -> String {
    let output = podman_output(args);
    assert!(
        output.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn inspect_image() -> Value {
    let text = podman(&["image", "inspect", &image().reference]);
    let all: Value = serde_json::from_str(&text).expect("podman image inspect prints JSON");
    all[0].clone()
}

#[test]
fn the_image_labels_describe_the_binary_it_runs() {
    let inspected = inspect_image();
    let config = &inspected["Config"];
    let labels = &config["Labels"];
    let label = |name: &str| {
        labels[format!("org.opencontainers.image.{name}")]
            .as_str()
            .unwrap_or_else(|| panic!("no label org.opencontainers.image.{name}: {labels}"))
            .to_owned()
    };
    assert_eq!(label("title"), "opensearch-package-operator");
    assert_eq!(label("description"), env!("CARGO_PKG_DESCRIPTION"));
    assert_eq!(label("source"), env!("CARGO_PKG_REPOSITORY"));
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    // The commit the image was built from (`-dirty`: with uncommitted changes).
    let revision = label("revision");
    let sha = revision.strip_suffix("-dirty").unwrap_or(&revision);
    assert!(
        sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
        "revision {revision:?} is not a git commit"
    );
    let created: jiff::Timestamp = label("created")
        .parse()
        .expect("the created label is an RFC 3339 time");
    assert!(created > "2025-01-01T00:00:00Z".parse().unwrap());

    // Non-root by default (also where no runAsUser is set), the chart's port, `run`.
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!([BINARY]));
    assert_eq!(config["Cmd"], serde_json::json!(["run"]));
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some(),
        "8080 is not exposed: {config}"
    );

    // The binary inside says the version and commit the labels name.
    let version = podman(&[
        "run",
        "--rm",
        "--pull=never",
        "--network=none",
        "--read-only",
        "--cap-drop=ALL",
        &image().reference,
        "version",
    ]);
    assert_eq!(
        version.trim(),
        format!(
            "opensearch-package-operator {} ({revision})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// A container removed (also when the test fails) when dropped; its log survives in a file.
struct Container {
    name: String,
    log: PathBuf,
}

impl Container {
    /// The log as the operator wrote it (podman's k8s-file format, one line per record).
    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn running(&self) -> bool {
        let output = podman_output(&["inspect", "--format", "{{.State.Running}}", &self.name]);
        output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "true"
    }

    fn pid(&self) -> u32 {
        podman(&["inspect", "--format", "{{.State.Pid}}", &self.name])
            .trim()
            .parse()
            .expect("a pid")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_output(&["rm", "--force", "--time", "2", &self.name]);
    }
}

/// `key:\t<fields>` from /proc/<pid>/status.
fn proc_status_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The options of the (topmost) mount at `target` in the process's mount namespace.
fn mount_options(pid: u32, target: &str) -> Vec<String> {
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    // id parent major:minor root mount-point options ... - fstype source super-options
    let line = mountinfo
        .lines()
        .rfind(|line| line.split_whitespace().nth(4) == Some(target))
        .unwrap_or_else(|| panic!("no mount at {target}:\n{mountinfo}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let mut options: Vec<String> = fields[5].split(',').map(str::to_owned).collect();
    if let Some(dash) = fields.iter().position(|f| *f == "-") {
        options.push(format!("fstype={}", fields[dash + 1]));
    }
    options
}

/// The container args of the shipped Deployment (`deploy/deployment.yaml`), with the metrics
/// address moved to `metrics_addr` (the container shares the host's network).
fn shipped_args(metrics_addr: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(REPO).join("deploy/deployment.yaml"))
        .expect("deploy/deployment.yaml");
    let deployment: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("the Deployment's container has args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect();
    assert!(
        args.iter().any(|a| a.starts_with("--metrics-addr=")),
        "the shipped args set no --metrics-addr: {args:?}"
    );
    args.into_iter()
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                format!("--metrics-addr={metrics_addr}")
            } else {
                a
            }
        })
        .collect()
}

async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    Some((code, body.unwrap_or_default()))
}

async fn kubectl_ok(cp: &testenv::ControlPlane, args: &[&str]) -> String {
    match cp.kubectl_ok(args).await {
        Ok(out) => out,
        Err(e) => panic!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_the_operator_as_nonroot_on_a_read_only_root_to_ready() {
    let image = image();
    let cp = testenv::ControlPlane::start()
        .await
        .expect("starting the test API server");
    let crds = Path::new(REPO).join("crds");
    kubectl_ok(
        &cp,
        &["apply", "--server-side", "-f", crds.to_str().unwrap()],
    )
    .await;
    kubectl_ok(
        &cp,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/opensearchpackages.ospkg.dev",
        ],
    )
    .await;
    cp.create_namespace(NAMESPACE).await.expect("namespace");
    // The ServiceAccount and its rights exactly as shipped.
    for file in [
        "serviceaccount.yaml",
        "clusterrole.yaml",
        "leader-election-role.yaml",
    ] {
        cp.apply_file(Path::new(REPO).join("deploy").join(file))
            .await
            .unwrap_or_else(|e| panic!("applying deploy/{file}: {e:#}"));
    }
    let kubeconfig = cp.dir().join("operator.kubeconfig");
    cp.service_account_kubeconfig(NAMESPACE, "opensearch-package-operator", &kubeconfig)
        .await
        .expect("service-account kubeconfig");
    // Readable by the container's user; the directory around it stays private.
    std::fs::set_permissions(
        &kubeconfig,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod kubeconfig");

    let sim = ospkg_sim::start(
        ospkg_sim::SimConfig::default()
            .durations(ospkg_sim::Durations {
                copying_ms: 300,
                validating_ms: 200,
                associating_ms: 300,
                dissociating_ms: 200,
                deleting_ms: 200,
            })
            .domain(DOMAIN, "OpenSearch_2.19"),
    )
    .await
    .expect("simulator");
    sim.admin()
        .put_object(BUCKET, "synonyms.txt", b"tv, television\n".to_vec())
        .await
        .expect("upload");

    // The container, configured as the chart's pod: its args, the downward-API env, the pod's
    // security context; AWS is the simulator, with fake credentials.
    let metrics_addr = format!("127.0.0.1:{}", testenv::free_port().expect("port"));
    let container = Container {
        name: format!("ospkg-image-test-{}", std::process::id()),
        log: cp.dir().join("operator-container.log"),
    };
    let volume = format!("{}:{KUBECONFIG_IN_CONTAINER}:ro", kubeconfig.display());
    let log_opt = format!("path={}", container.log.display());
    let env = [
        format!("KUBECONFIG={KUBECONFIG_IN_CONTAINER}"),
        format!("POD_NAME={}", container.name),
        format!("POD_NAMESPACE={NAMESPACE}"),
        format!("AWS_ENDPOINT_URL_OPENSEARCH={}", sim.endpoint()),
        format!("AWS_ENDPOINT_URL_STS={}", sim.endpoint()),
        "AWS_REGION=us-east-1".to_owned(),
        format!("AWS_ACCESS_KEY_ID={ACCESS_KEY}"),
        "AWS_SECRET_ACCESS_KEY=image-test".to_owned(),
        "AWS_EC2_METADATA_DISABLED=true".to_owned(),
    ];
    let user = format!("{NONROOT}:{NONROOT}");
    let mut args: Vec<&str> = vec![
        "run",
        "--detach",
        "--rm",
        "--pull=never",
        "--name",
        &container.name,
        // Should this test be killed before it removes the container, it still ends.
        "--timeout=900",
        "--network=host",
        "--user",
        &user,
        "--read-only",
        // Only /tmp is writable, as the chart's emptyDir makes it (podman would add more).
        "--read-only-tmpfs=false",
        "--tmpfs=/tmp:rw,size=16m,mode=1777",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--volume",
        &volume,
        "--log-driver=k8s-file",
        "--log-opt",
        &log_opt,
    ];
    for var in &env {
        args.extend(["--env", var]);
    }
    args.push(&image.reference);
    let operator_args = shipped_args(&metrics_addr);
    args.extend(operator_args.iter().map(String::as_str));
    podman(&args);

    // Up and ready: it started (with the image's CA bundle) and its watch synced.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http_get(&metrics_addr, "/readyz")
            .await
            .is_some_and(|(code, _)| code == 200)
        {
            break;
        }
        assert!(
            container.running(),
            "the container stopped; its log:\n{}",
            container.log_tail(40)
        );
        assert!(
            Instant::now() < deadline,
            "/readyz not 200 within 60 s; log:\n{}",
            container.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The process as the kernel sees it: uid/gid 65532, no capabilities, no new privileges,
    // a read-only root and a writable /tmp.
    let pid = container.pid();
    assert_eq!(
        proc_status_field(pid, "Uid"),
        format!("{NONROOT} {NONROOT} {NONROOT} {NONROOT}")
    );
    assert_eq!(
        proc_status_field(pid, "Gid"),
        format!("{NONROOT} {NONROOT} {NONROOT} {NONROOT}")
    );
    assert_eq!(proc_status_field(pid, "CapEff"), "0000000000000000");
    assert_eq!(proc_status_field(pid, "CapPrm"), "0000000000000000");
    assert_eq!(proc_status_field(pid, "NoNewPrivs"), "1");
    let root = mount_options(pid, "/");
    assert!(root.contains(&"ro".to_owned()), "root mount: {root:?}");
    let tmp = mount_options(pid, "/tmp");
    assert!(
        tmp.contains(&"rw".to_owned()) && tmp.contains(&"fstype=tmpfs".to_owned()),
        "/tmp mount: {tmp:?}"
    );
    // Through the process's root: nothing can be written there, even by root, but /tmp works.
    let proc_root = PathBuf::from(format!("/proc/{pid}/root"));
    let denied = std::fs::write(proc_root.join("written-by-test"), b"x")
        .expect_err("the root filesystem accepted a write");
    assert_eq!(
        denied.raw_os_error(),
        Some(30), // EROFS
        "writing to the root failed otherwise: {denied}"
    );
    std::fs::write(proc_root.join("tmp/written-by-test"), b"x").expect("/tmp is writable");
    let bundle = std::fs::read_to_string(proc_root.join("etc/ssl/certs/ca-certificates.crt"))
        .expect("the image has the CA bundle");
    assert!(bundle.contains("BEGIN CERTIFICATE"));

    // The build identity the labels name.
    let labels = &inspect_image()["Config"]["Labels"];
    let (code, metrics) = http_get(&metrics_addr, "/metrics").await.expect("metrics");
    assert_eq!(code, 200);
    let build_info = format!(
        "ospkg_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        labels["org.opencontainers.image.version"].as_str().unwrap(),
        labels["org.opencontainers.image.revision"]
            .as_str()
            .unwrap()
    );
    assert!(
        metrics.lines().any(|l| l == build_info),
        "no {build_info} in /metrics:\n{metrics}"
    );

    // A package, associated with a domain, reaches Ready.
    cp.create_namespace("search").await.expect("namespace");
    cp.apply_yaml(&format!(
        "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackage
metadata:
  name: image-synonyms
  namespace: search
spec:
  packageType: TXT-DICTIONARY
  source:
    s3BucketName: {BUCKET}
    s3Key: synonyms.txt
  domains:
    - name: {DOMAIN}
"
    ))
    .await
    .expect("package applied");
    let jsonpath = r#"-o=jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.availablePackageVersion} {.status.domains[0].domainPackageStatus}"#;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen = kubectl_ok(
            &cp,
            &["get", "ospkg", "-n", "search", "image-synonyms", jsonpath],
        )
        .await;
        if seen.trim() == "True v1 ACTIVE" {
            break;
        }
        assert!(
            container.running(),
            "the container stopped; its log:\n{}",
            container.log_tail(60)
        );
        assert!(
            Instant::now() < deadline,
            "not Ready with v1 ACTIVE on {DOMAIN} (saw {seen:?}); log:\n{}",
            container.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The operator in the container made the calls: signed with the credentials given to it,
    // in the region from its environment, one create and one association.
    let log = sim.admin().log().await.expect("sim log");
    let calls: Vec<_> = log
        .iter()
        .filter(|e| e.kind == ospkg_sim::EntryKind::Call)
        .collect();
    assert!(
        calls
            .iter()
            .all(|c| c.access_key_id.as_deref() == Some(ACCESS_KEY) && c.region == "us-east-1"),
        "calls: {calls:?}"
    );
    let made = |operation: &str| {
        calls
            .iter()
            .filter(|c| c.operation.as_deref() == Some(operation) && c.effect)
            .count()
    };
    assert_eq!(made("CreatePackage"), 1, "calls: {calls:?}");
    assert_eq!(made("AssociatePackage"), 1, "calls: {calls:?}");
    assert!(container.running(), "log:\n{}", container.log_tail(40));
}
