//! The end-to-end harness: a real API server (shared by the tests of this binary while any of
//! them runs), the simulator in-process, and the operator as its real binary running with the
//! shipped RBAC. Tests drive everything through the Kubernetes API like a user would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use ospkg::crd::OpenSearchPackage;
use ospkg_sim::{AdminClient, Durations, FaultConfig, RunningSim, SimConfig};
use serde_json::Value;
use tempfile::TempDir;
use testenv::{ControlPlane, Process};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const OPERATOR_BIN: &str = env!("CARGO_BIN_EXE_opensearch-package-operator");
/// Namespace and release of the operator as the chart installs it.
pub const OPERATOR_NAMESPACE: &str = "opensearch-package-operator";
const RELEASE: &str = "opensearch-package-operator";
/// Default time allowed for the operator to reach a state.
pub const CONVERGE: Duration = Duration::from_secs(60);
/// The simulator's domain every test can associate with.
pub const DOMAIN: &str = "catalog-prod";
pub const BUCKET: &str = "e2e-dicts";
const POLL: Duration = Duration::from_millis(250);

/// The control plane shared by the tests of this binary. Each test holds an `Arc`; the static
/// holds only a `Weak`, so the processes stop (and the temp dir goes) when the last running
/// test drops its handle, also when tests fail. A later test starts a new one.
static SHARED: tokio::sync::Mutex<Weak<ControlPlane>> = tokio::sync::Mutex::const_new(Weak::new());

/// The shared control plane with the CRD and the operator's RBAC installed.
pub async fn shared_control_plane() -> Result<Arc<ControlPlane>> {
    let mut slot = SHARED.lock().await;
    if let Some(cp) = slot.upgrade() {
        return Ok(cp);
    }
    let cp = Arc::new(start_control_plane().await?);
    *slot = Arc::downgrade(&cp);
    Ok(cp)
}

/// A control plane of one's own (for tests that restart the API server).
pub async fn start_control_plane() -> Result<ControlPlane> {
    let started = Instant::now();
    let cp = ControlPlane::start()
        .await
        .context("starting the control plane")?;
    cp.install_crds(Path::new(REPO).join("crds")).await?;
    cp.create_namespace(OPERATOR_NAMESPACE).await?;
    cp.apply_yaml(&operator_rbac(&cp).await?).await?;
    eprintln!(
        "control plane {} ready in {:.1?}",
        cp.server_url(),
        started.elapsed()
    );
    Ok(cp)
}

/// The ServiceAccount, ClusterRole and ClusterRoleBinding exactly as shipped: from `deploy/`
/// when it has been rendered, else rendered from the chart with its default values.
async fn operator_rbac(cp: &ControlPlane) -> Result<String> {
    let deploy = Path::new(REPO).join("deploy");
    let files = [
        deploy.join("serviceaccount.yaml"),
        deploy.join("clusterrole.yaml"),
        deploy.join("leader-election-role.yaml"),
    ];
    if files.iter().all(|f| f.is_file()) {
        let mut yaml = String::new();
        for file in &files {
            yaml.push_str(&std::fs::read_to_string(file)?);
            yaml.push_str("\n---\n");
        }
        return Ok(yaml);
    }
    let output = tokio::process::Command::new(&cp.binaries().helm)
        .args(["template", RELEASE])
        .arg(Path::new(REPO).join("charts/opensearch-package-operator"))
        .args(["--namespace", OPERATOR_NAMESPACE])
        .args(["--show-only", "templates/serviceaccount.yaml"])
        .args(["--show-only", "templates/clusterrole.yaml"])
        .args(["--show-only", "templates/leader-election-role.yaml"])
        .output()
        .await
        .context("running helm template")?;
    if !output.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The ServiceAccount the chart runs the operator as (its name from the rendered manifests).
fn service_account_name(rbac_yaml: &str) -> Result<String> {
    for document in serde_yaml::Deserializer::from_str(rbac_yaml) {
        let value: serde_yaml::Value = serde::Deserialize::deserialize(document)?;
        if value["kind"].as_str() == Some("ServiceAccount") {
            return Ok(value["metadata"]["name"]
                .as_str()
                .context("ServiceAccount without a name")?
                .to_owned());
        }
    }
    bail!("the shipped manifests have no ServiceAccount")
}

/// Simulator durations short enough that a package converges in a few seconds.
pub fn fast_durations() -> Durations {
    Durations {
        copying_ms: 300,
        validating_ms: 200,
        associating_ms: 300,
        dissociating_ms: 200,
        deleting_ms: 200,
    }
}

/// One test's world: its namespace on the control plane, its own simulator and operator.
pub struct TestEnv {
    // Field order is drop order: the operators stop before the simulator and the cluster.
    pub operator: Option<Operator>,
    /// More replicas of the operator (high availability tests).
    pub replicas: Vec<Operator>,
    pub sim: RunningSim,
    pub cp: Arc<ControlPlane>,
    pub ns: String,
    pub client: kube::Client,
    pub dir: TempDir,
    /// Flags added to every operator this test starts.
    pub operator_args: Vec<String>,
}

impl TestEnv {
    /// A fresh namespace `ns` on the shared control plane, a simulator with domain
    /// [`DOMAIN`], and the operator watching only `ns`.
    pub async fn start(ns: &str) -> TestEnv {
        Self::start_with(
            shared_control_plane().await.expect("control plane"),
            ns,
            SimConfig::default().durations(fast_durations()),
        )
        .await
    }

    pub async fn start_with(cp: Arc<ControlPlane>, ns: &str, sim: SimConfig) -> TestEnv {
        let env = Self::without_operator(cp, ns, sim).await;
        env.with_operator().await
    }

    pub async fn without_operator(cp: Arc<ControlPlane>, ns: &str, sim: SimConfig) -> TestEnv {
        cp.create_namespace(ns).await.expect("namespace");
        let sim = ospkg_sim::start(sim.domain(DOMAIN, "OpenSearch_2.19"))
            .await
            .expect("simulator");
        let client = cp.client().await.expect("admin client");
        let dir = tempfile::Builder::new()
            .prefix(&format!("e2e-{ns}-"))
            .tempdir()
            .expect("temp dir");
        TestEnv {
            operator: None,
            replicas: Vec::new(),
            sim,
            cp,
            ns: ns.to_owned(),
            client,
            dir,
            operator_args: Vec::new(),
        }
    }

    /// A fresh namespace on the shared control plane, a simulator as [`TestEnv::start`], and
    /// the operator with these flags (each replacing a default of the same name).
    pub async fn start_with_flags(ns: &str, flags: &[&str]) -> TestEnv {
        let cp = shared_control_plane().await.expect("control plane");
        Self::without_operator(cp, ns, SimConfig::default().durations(fast_durations()))
            .await
            .with_operator_args(flags)
            .await
    }

    pub async fn with_operator(self) -> TestEnv {
        self.with_operator_args(&[]).await
    }

    /// The operator with these flags (`--name=value` each, replacing a default of the same
    /// name); replicas added later get them too.
    pub async fn with_operator_args(mut self, flags: &[&str]) -> TestEnv {
        self.operator_args
            .extend(flags.iter().map(|f| (*f).to_owned()));
        let operator = Operator::start_replica(
            &self.cp,
            &self.sim,
            &self.ns,
            self.dir.path(),
            "a",
            &self.operator_args,
        )
        .await
        .expect("operator");
        self.operator = Some(operator);
        self
    }

    /// Starts another replica of the operator (same namespace, same Lease).
    pub async fn add_replica(&mut self, replica: &str) {
        let operator = Operator::start_replica(
            &self.cp,
            &self.sim,
            &self.ns,
            self.dir.path(),
            replica,
            &self.operator_args,
        )
        .await
        .expect("operator replica");
        self.replicas.push(operator);
    }

    /// The current holder of this test's leader Lease, if any.
    pub async fn lease_holder(&self) -> Option<String> {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        let lease = leases
            .get_opt(&format!("ospkg-{}", self.ns))
            .await
            .expect("get Lease")?;
        lease.spec?.holder_identity
    }

    pub fn operator(&mut self) -> &mut Operator {
        self.operator.as_mut().expect("the operator is running")
    }

    pub fn admin(&self) -> AdminClient {
        self.sim.admin()
    }

    /// Stores an S3 object in the simulator.
    pub async fn put_object(&self, key: &str, content: &[u8]) {
        self.admin()
            .put_object(BUCKET, key, content.to_vec())
            .await
            .expect("put object");
    }

    /// `kubectl apply --server-side` of YAML into this namespace; panics with kubectl's error.
    pub async fn apply(&self, yaml: &str) {
        if let Err(e) = self.try_apply(yaml, &[]).await {
            panic!("{e:#}");
        }
    }

    /// [`TestEnv::apply`] in another namespace (tests that span several).
    pub async fn apply_in(&self, ns: &str, yaml: &str) {
        if let Err(e) = self.try_apply_in(ns, yaml, &[]).await {
            panic!("{e:#}");
        }
    }

    /// `kubectl apply --server-side <extra>` of YAML; returns kubectl's stderr on failure.
    pub async fn try_apply(&self, yaml: &str, extra: &[&str]) -> Result<String> {
        self.try_apply_in(&self.ns, yaml, extra).await
    }

    /// [`TestEnv::try_apply`] in namespace `ns`.
    pub async fn try_apply_in(&self, ns: &str, yaml: &str, extra: &[&str]) -> Result<String> {
        let file = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile_in(self.dir.path())?;
        std::fs::write(file.path(), yaml)?;
        let path = file.path().to_str().context("utf-8 path")?;
        let mut args = vec![
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e",
            "-n",
            ns,
            "-f",
            path,
        ];
        args.extend_from_slice(extra);
        let output = self.cp.kubectl(&args).await?;
        if !output.status.success() {
            bail!(
                "kubectl apply failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `kubectl -n <ns> <args>`, panicking unless it succeeds.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        match self.cp.kubectl_ok(&all).await {
            Ok(out) => out,
            Err(e) => panic!("{e:#}"),
        }
    }

    pub async fn get(&self, name: &str) -> Option<OpenSearchPackage> {
        self.get_in(&self.ns, name).await
    }

    pub async fn get_in(&self, ns: &str, name: &str) -> Option<OpenSearchPackage> {
        Api::<OpenSearchPackage>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .expect("get OpenSearchPackage")
    }

    /// The object as YAML (for failure messages).
    pub async fn describe(&self, name: &str) -> String {
        self.describe_in(&self.ns, name).await
    }

    async fn describe_in(&self, ns: &str, name: &str) -> String {
        let api = Api::<OpenSearchPackage>::namespaced(self.client.clone(), ns);
        match api.get_opt(name).await {
            Ok(Some(mut obj)) => {
                obj.metadata.managed_fields = None;
                serde_yaml::to_string(&obj).unwrap_or_default()
            }
            Ok(None) => format!("OpenSearchPackage {ns}/{name} does not exist"),
            Err(e) => format!("reading {ns}/{name} failed: {e}"),
        }
    }

    /// Polls until `check` holds for the object (`None`: it does not exist); panics after
    /// `timeout` with the object, its events and the operator's log tail.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(Option<&OpenSearchPackage>) -> bool,
    ) -> Option<OpenSearchPackage> {
        self.wait_for_in(&self.ns, name, what, timeout, check).await
    }

    /// [`TestEnv::wait_for`] in namespace `ns`.
    pub async fn wait_for_in(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(Option<&OpenSearchPackage>) -> bool,
    ) -> Option<OpenSearchPackage> {
        let deadline = Instant::now() + timeout;
        loop {
            let obj = self.get_in(ns, name).await;
            if check(obj.as_ref()) {
                return obj;
            }
            if Instant::now() > deadline {
                panic!(
                    "{ns}/{name}: not {what} after {timeout:?}\n--- object ---\n{}\n--- events ---\n{}\n--- sim calls ---\n{:?}\n--- operator log ---\n{}",
                    self.describe_in(ns, name).await,
                    self.events_text(name).await,
                    self.admin().calls().await.unwrap_or_default(),
                    self.operator_log(60),
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the object is Ready for its current generation and returns it.
    pub async fn wait_ready(&self, name: &str) -> OpenSearchPackage {
        self.wait_ready_in(&self.ns, name).await
    }

    /// [`TestEnv::wait_ready`] in namespace `ns`.
    pub async fn wait_ready_in(&self, ns: &str, name: &str) -> OpenSearchPackage {
        self.wait_for_in(ns, name, "Ready at its generation", CONVERGE, |o| {
            o.is_some_and(|o| {
                is_current(o) && condition(o, "Ready").is_some_and(|c| c.status == "True")
            })
        })
        .await
        .expect("exists")
    }

    /// Waits until the object is Stalled with `reason` for its current generation.
    pub async fn wait_stalled(&self, name: &str, reason: &str) -> OpenSearchPackage {
        self.wait_stalled_in(&self.ns, name, reason).await
    }

    /// [`TestEnv::wait_stalled`] in namespace `ns`.
    pub async fn wait_stalled_in(&self, ns: &str, name: &str, reason: &str) -> OpenSearchPackage {
        self.wait_for_in(ns, name, &format!("Stalled ({reason})"), CONVERGE, |o| {
            o.is_some_and(|o| {
                is_current(o)
                    && condition(o, "Stalled")
                        .is_some_and(|c| c.status == "True" && c.reason == reason)
            })
        })
        .await
        .expect("exists")
    }

    pub async fn wait_gone(&self, name: &str) {
        self.wait_for(name, "deleted", CONVERGE, |o| o.is_none())
            .await;
    }

    /// Sets the reconcile-request annotation to a fresh value and waits until the operator
    /// echoes it in `status.lastHandledReconcileAt`.
    pub async fn force_reconcile(&self, name: &str) -> OpenSearchPackage {
        let token = format!("{}", jiff::Timestamp::now().as_millisecond());
        let annotation = format!("ospkg.dev/reconcile-requested-at={token}");
        self.kubectl(&[
            "annotate",
            "--overwrite",
            "opensearchpackage",
            name,
            &annotation,
        ])
        .await;
        self.wait_for(name, "echoing the reconcile request", CONVERGE, |o| {
            o.and_then(|o| o.status.as_ref())
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some(token.as_str())
        })
        .await
        .expect("exists")
    }

    /// Events about the object as (type, reason, message), oldest first.
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
        let mut events = api.list(&params).await.expect("list events").items;
        events.sort_by_key(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0)
                .or(e.last_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn events_text(&self, name: &str) -> String {
        self.events(name)
            .await
            .iter()
            .map(|(t, r, m)| format!("{t} {r}: {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until an event with `reason` (and a message containing `text`) was recorded.
    pub async fn wait_event(&self, name: &str, reason: &str, text: &str) {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let events = self.events(name).await;
            if events
                .iter()
                .any(|(_, r, m)| r == reason && m.contains(text))
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}/{name}: no event {reason} containing {text:?}; events:\n{}",
                    self.ns,
                    self.events_text(name).await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn operator_log(&self, lines: usize) -> String {
        self.operator
            .as_ref()
            .map(|o| o.log_tail(lines))
            .unwrap_or_else(|| "(no operator)".to_owned())
    }

    /// The simulator's call counts per operation.
    pub async fn calls(&self) -> BTreeMap<String, u64> {
        self.admin().calls().await.expect("sim calls")
    }

    /// The simulator's packages (its admin view): `details` and `history` per package.
    pub async fn sim_packages(&self) -> Vec<Value> {
        let all = self.admin().packages().await.expect("sim packages");
        all["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|scope| scope["packages"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The simulator's package with this name, if it exists.
    pub async fn sim_package(&self, name: &str) -> Option<Value> {
        self.sim_packages()
            .await
            .into_iter()
            .find(|p| p["details"]["PackageName"] == name)
    }

    /// Version labels of the simulator's package, newest first.
    pub async fn sim_versions(&self, name: &str) -> Vec<String> {
        let package = self
            .sim_package(name)
            .await
            .expect("package in the simulator");
        package["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["PackageVersion"].as_str().map(str::to_owned))
            .collect()
    }

    pub async fn set_faults(&self, faults: &FaultConfig) {
        self.admin().set_faults(faults).await.expect("set faults");
    }

    /// Writes the object to `tests/fixtures/e2e/<file>` when `OSPKG_CAPTURE_FIXTURES=1`.
    pub async fn capture_fixture(&self, name: &str, file: &str, comment: &str) {
        capture_fixture(self.get(name).await.as_ref(), file, comment);
    }
}

/// Whether the status describes the object's current generation.
pub fn is_current(obj: &OpenSearchPackage) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        s.observed_generation.is_some() && s.observed_generation == obj.metadata.generation
    })
}

pub fn condition<'a>(obj: &'a OpenSearchPackage, type_: &str) -> Option<&'a Condition> {
    obj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn status_of(obj: &OpenSearchPackage) -> &ospkg::crd::OpenSearchPackageStatus {
    obj.status.as_ref().expect("status")
}

/// Writes a cleaned copy of a real object (no managedFields, resourceVersion or
/// last-applied annotation) for the delivery tests, only when `OSPKG_CAPTURE_FIXTURES=1`.
pub fn capture_fixture(obj: Option<&OpenSearchPackage>, file: &str, comment: &str) {
    if std::env::var("OSPKG_CAPTURE_FIXTURES").as_deref() != Ok("1") {
        return;
    }
    let obj = obj.expect("object to capture exists");
    let mut value = serde_json::to_value(obj).expect("serialize");
    let metadata = value["metadata"].as_object_mut().expect("metadata");
    for key in ["managedFields", "resourceVersion"] {
        metadata.remove(key);
    }
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    let yaml = quote_timestamps(&serde_yaml::to_string(&value).expect("yaml"));
    let dir = Path::new(REPO).join("tests/fixtures/e2e");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let text = format!(
        "# Captured from a real run of the end-to-end suite (OSPKG_CAPTURE_FIXTURES=1 cargo test --test cluster e2e::).\n# {comment}\n{yaml}"
    );
    std::fs::write(dir.join(file), text).expect("write fixture");
}

/// Quotes RFC 3339 scalars (`key: 2026-11-20T10:02:11Z`) as kubectl does, so YAML 1.1
/// readers see strings, not timestamps.
fn quote_timestamps(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        match line.rsplit_once(": ") {
            Some((key, value)) if is_timestamp(value) => {
                out.push_str(&format!("{key}: \"{value}\""));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn is_timestamp(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() >= 20
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[10] == b'T'
        && value.ends_with('Z')
        && value.parse::<jiff::Timestamp>().is_ok()
}

/// The operator binary running as the chart's ServiceAccount against the simulator.
pub struct Operator {
    /// The replica's pod name: its identity in the leader Lease.
    pub name: String,
    process: Process,
    command: Vec<(String, String)>,
    args: Vec<String>,
    log: PathBuf,
    pub metrics_addr: String,
}

impl Operator {
    /// One replica of the operator for `ns`: its own pod name, log file and AWS access key
    /// (the simulator's call log tells replicas apart by it), the same leader Lease; each of
    /// `flags` (`--name=value`) replaces a default of the same name or is added.
    pub async fn start_replica(
        cp: &ControlPlane,
        sim: &RunningSim,
        ns: &str,
        dir: &Path,
        replica: &str,
        flags: &[String],
    ) -> Result<Self> {
        let rbac = operator_rbac(cp).await?;
        let account = service_account_name(&rbac)?;
        let kubeconfig = dir.join("operator.kubeconfig");
        cp.service_account_kubeconfig(OPERATOR_NAMESPACE, &account, &kubeconfig)
            .await?;
        let metrics_addr = format!("127.0.0.1:{}", testenv::free_port()?);
        let env = vec![
            ("KUBECONFIG".to_owned(), kubeconfig.display().to_string()),
            ("AWS_ENDPOINT_URL_OPENSEARCH".to_owned(), sim.endpoint()),
            // STS (the operator's own account, roles granted to namespaces) is the simulator's.
            ("AWS_ENDPOINT_URL_STS".to_owned(), sim.endpoint()),
            // Objects that follow their source read it from the simulator's S3.
            ("AWS_ENDPOINT_URL_S3".to_owned(), sim.s3_endpoint()),
            ("AWS_ACCESS_KEY_ID".to_owned(), access_key(replica)),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "e2e-secret".to_owned()),
            ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
            ("AWS_CONFIG_FILE".to_owned(), "/dev/null".to_owned()),
            (
                "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
                "/dev/null".to_owned(),
            ),
            ("NO_COLOR".to_owned(), "1".to_owned()),
            // As in the chart's pod: the Lease lives in the operator's namespace.
            ("POD_NAMESPACE".to_owned(), OPERATOR_NAMESPACE.to_owned()),
            ("POD_NAME".to_owned(), format!("operator-{ns}-{replica}")),
        ];
        let mut args = vec![
            "run".to_owned(),
            "--region=us-east-1".to_owned(),
            format!("--metrics-addr={metrics_addr}"),
            "--resync-interval=30s".to_owned(),
            format!("--namespaces={ns}"),
            "--log-level=info,ospkg=debug".to_owned(),
            // Every test's operator leads its own Lease: tests run side by side.
            format!("--leader-election-lease-name=ospkg-{ns}"),
        ];
        for flag in flags {
            let name = flag.split('=').next().unwrap_or(flag);
            args.retain(|a| a.split('=').next() != Some(name));
            args.push(flag.clone());
        }
        let log = dir.join(format!("operator-{replica}.log"));
        let process = spawn_operator(&env, &args, &log)?;
        Ok(Self {
            name: format!("operator-{ns}-{replica}"),
            process,
            command: env,
            args,
            log,
            metrics_addr,
        })
    }

    /// SIGKILL: no chance to write anything.
    pub fn kill(&mut self) {
        self.process.kill().expect("kill operator");
    }

    /// Starts the same binary again with the same settings (log appended).
    pub fn restart(&mut self) {
        let _ = self.process.kill();
        self.process =
            spawn_operator(&self.command, &self.args, &self.log).expect("restart operator");
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits (up to `within`) for the process to exit by itself.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `None` while the process runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_status().expect("operator status")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// `GET http://<metrics addr><path>`: the status code and body.
    pub async fn http_get(&self, path: &str) -> Result<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&self.metrics_addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.metrics_addr);
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response);
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no HTTP status line")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        Ok((code, body.to_owned()))
    }
}

/// The AWS access key id a replica signs with.
pub fn access_key(replica: &str) -> String {
    format!("AKIDE2E{}", replica.to_uppercase())
}

fn spawn_operator(env: &[(String, String)], args: &[String], log: &Path) -> Result<Process> {
    let mut command = Command::new(OPERATOR_BIN);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    for key in [
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_SESSION_TOKEN",
        "RUST_LOG",
    ] {
        command.env_remove(key);
    }
    Process::spawn("opensearch-package-operator", &mut command, log)
}

/// A TXT-DICTIONARY object in YAML reading `key` from [`BUCKET`]; `extra` is appended to
/// `spec` (indented by two spaces).
pub fn dictionary(name: &str, key: &str, revision: Option<&str>, extra: &str) -> String {
    let mut yaml = format!(
        "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackage
metadata:
  name: {name}
spec:
  packageType: TXT-DICTIONARY
  source:
    s3BucketName: {BUCKET}
    s3Key: {key}
"
    );
    if let Some(revision) = revision {
        yaml.push_str(&format!("    revision: \"{revision}\"\n"));
    }
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// Creates the package `name` from the S3 object `key` in `region`, as another team would
/// (with its own client, outside the cluster); returns its id.
pub async fn create_outside(
    env: &TestEnv,
    region: &str,
    name: &str,
    key: &str,
    description: Option<&str>,
) -> String {
    use ospkg::backend::{CreatePackage, PackageBackend, Source};
    let outside = ospkg::backend::aws::AwsBackend::for_endpoint(&env.sim.endpoint()).await;
    let package = outside
        .create_package(
            &own_scope(region),
            CreatePackage {
                name: name.to_owned(),
                package_type: ospkg::crd::PackageType::TxtDictionary,
                source: Source {
                    bucket: BUCKET.to_owned(),
                    key: key.to_owned(),
                },
                description: description.map(str::to_owned),
                engine_version: None,
                configuration: None,
                encryption: None,
                vending_enabled: None,
            },
        )
        .await
        .expect("create outside the cluster");
    package.id
}

/// Creates `count` packages named `{prefix}-{i}` in `region` outside the cluster, all from
/// one S3 object: a region of many pages.
pub async fn create_foreign_packages(env: &TestEnv, region: &str, prefix: &str, count: usize) {
    let key = format!("{prefix}/foreign.txt");
    env.put_object(&key, b"tv, television\n").await;
    for i in 0..count {
        create_outside(env, region, &format!("{prefix}-{i}"), &key, None).await;
    }
}

/// The operator's own identity in the simulator's default account, in `region`.
pub fn own_scope(region: &str) -> ospkg::backend::Scope {
    ospkg::backend::Scope::own("123456789012", region)
}
