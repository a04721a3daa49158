//! A real `kube-apiserver` backed by a real `etcd`, started as local processes on loopback
//! ports, for end-to-end tests and the local demo (see `README.md`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cp = testenv::ControlPlane::start().await?;
//! cp.install_crds("crds").await?;
//! let client = cp.client().await?;
//! # drop(client);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod binaries;
mod pki;
mod process;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use binaries::{BUILD_SCRIPT, Binaries, cache_dir};
pub use process::{Process, free_port};

/// How long a cold kube-apiserver may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an applied CRD may take to become `Established`.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// Lifetime of tokens minted by [`ControlPlane::service_account_kubeconfig`].
const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 24 * 60 * 60;
const FIELD_MANAGER: &str = "testenv";

/// Installs rustls's ring crypto provider as the process default.
///
/// The operator installs ring too: explicit, so that a dependency enabling a second rustls
/// provider cannot leave rustls unable to choose (it would panic on the first TLS client).
/// Safe to call repeatedly.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A `kube::Client` for the given kubeconfig file (its current context).
pub async fn client_for_kubeconfig(path: impl AsRef<Path>) -> Result<kube::Client> {
    let config = config_for_kubeconfig(path.as_ref()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn config_for_kubeconfig(path: &Path) -> Result<kube::Config> {
    install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
}

/// A kubeconfig that authenticates with a bearer token, trusts `ca_pem` and defaults to
/// `namespace`.
pub fn token_kubeconfig(
    server_url: &str,
    ca_pem: &str,
    user: &str,
    token: &str,
    namespace: &str,
) -> String {
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {server_url}
    certificate-authority-data: {ca_data}
users:
- name: "{user}"
  user:
    token: "{token}"
contexts:
- name: "{user}@testenv"
  context:
    cluster: testenv
    user: "{user}"
    namespace: "{namespace}"
current-context: "{user}@testenv"
"#
    )
}

/// Writes `contents` to `path` through a temporary file and a rename, so readers never see
/// a partial file.
fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, contents.as_bytes())?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A running etcd + kube-apiserver pair on 127.0.0.1.
///
/// Authentication is by bearer token: an admin token in `system:masters`, and
/// service-account tokens from the TokenRequest API. Authorization is RBAC. There is no
/// scheduler or kubelet: no Pods run. A kube-controller-manager runs only when asked for
/// ([`Self::start_with_controllers`]), with just the named controllers; by default nothing is
/// garbage-collected and no ClusterRole is aggregated.
///
/// Dropping it kills both processes and deletes its temporary directory (certificates, etcd
/// data, logs), also when a test panics. Do not keep one in a `static`: statics are never
/// dropped.
pub struct ControlPlane {
    // Field order is drop order: processes stop before their directory is removed, the
    // controller-manager before the API server it talks to.
    controller_manager: Option<Process>,
    apiserver: Process,
    etcd: Process,
    apiserver_args: Vec<OsString>,
    binaries: Binaries,
    server_url: String,
    ca_pem: String,
    admin_token: String,
    kubeconfig_path: PathBuf,
    dir: TempDir,
}

impl ControlPlane {
    /// Builds the binaries if needed (see [`Binaries::locate`]), starts etcd and
    /// kube-apiserver on free ports, and waits until the API server is ready and namespace
    /// `default` exists.
    pub async fn start() -> Result<Self> {
        Self::start_with(Binaries::locate().await?).await
    }

    /// Like [`Self::start`], plus a kube-controller-manager that runs only `controllers`
    /// (names as in its `--controllers` flag, e.g. `clusterrole-aggregation`), with the admin
    /// kubeconfig, no leader election and no serving port.
    pub async fn start_with_controllers(controllers: &[&str]) -> Result<Self> {
        if controllers.is_empty() || controllers.iter().any(|c| c.is_empty() || c.contains(',')) {
            bail!("name at least one controller, one per item: {controllers:?}");
        }
        let mut control_plane = Self::start().await?;
        let log = control_plane.dir.path().join("kube-controller-manager.log");
        let mut manager = Process::spawn(
            "kube-controller-manager",
            Command::new(&control_plane.binaries.kube_controller_manager)
                .arg(join(
                    "--kubeconfig=",
                    control_plane.kubeconfig_path.clone().into(),
                ))
                .arg(format!("--controllers={}", controllers.join(",")))
                .arg("--leader-elect=false")
                .arg("--secure-port=0"),
            &log,
        )?;
        // It has no health endpoint without a serving port: give it a moment to fail on
        // bad flags, so that surfaces here rather than as a missing effect later.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(status) = manager.try_status()? {
            bail!(
                "kube-controller-manager exited with {status}; last log lines:\n{}",
                manager.log_tail(40)
            );
        }
        control_plane.controller_manager = Some(manager);
        Ok(control_plane)
    }

    /// The kube-controller-manager log, when one runs (useful in assertion messages).
    pub fn controller_manager_log_tail(&self, lines: usize) -> String {
        self.controller_manager
            .as_ref()
            .map(|m| m.log_tail(lines))
            .unwrap_or_default()
    }

    /// Like [`Self::start`], with the given binaries.
    pub async fn start_with(binaries: Binaries) -> Result<Self> {
        install_crypto_provider();
        let mut attempt = 1;
        loop {
            match Self::start_once(binaries.clone()).await {
                // A free port was taken by someone else before our server bound it.
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    tracing::warn!("port conflict, retrying: {e:#}");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(binaries: Binaries) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("testenv-").tempdir()?;
        let path = |name: &str| dir.path().join(name);

        let pki = pki::Pki::generate()?;
        std::fs::write(path("ca.crt"), &pki.ca_pem)?;
        std::fs::write(path("apiserver.crt"), &pki.serving_cert_pem)?;
        std::fs::write(path("apiserver.key"), &pki.serving_key_pem)?;
        std::fs::write(path("service-account.key"), &pki.service_account_key_pem)?;
        std::fs::write(path("service-account.pub"), &pki.service_account_public_pem)?;
        let admin_token = format!("{:032x}", rand::random::<u128>());
        std::fs::write(
            path("tokens.csv"),
            format!("{admin_token},admin,admin,system:masters\n"),
        )?;

        let [etcd_port, peer_port, apiserver_port] = process::free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Process::spawn(
            "etcd",
            Command::new(&binaries.etcd)
                .arg("--name=testenv")
                .arg(format!("--data-dir={}", path("etcd").display()))
                .arg(format!("--listen-client-urls={etcd_url}"))
                .arg(format!("--advertise-client-urls={etcd_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=testenv={peer_url}"))
                .arg("--unsafe-no-fsync")
                .arg("--log-level=warn"),
            path("etcd.log"),
        )?;
        wait_for_etcd(&mut etcd, etcd_port).await?;

        let server_url = format!("https://127.0.0.1:{apiserver_port}");
        let p = |name: &str| path(name).into_os_string();
        let apiserver_args: Vec<OsString> = [
            format!("--etcd-servers={etcd_url}").into(),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={apiserver_port}").into(),
            join("--cert-dir=", p("apiserver-certs")),
            join("--tls-cert-file=", p("apiserver.crt")),
            join("--tls-private-key-file=", p("apiserver.key")),
            join("--client-ca-file=", p("ca.crt")),
            join("--token-auth-file=", p("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            join("--service-account-key-file=", p("service-account.pub")),
            join(
                "--service-account-signing-key-file=",
                p("service-account.key"),
            ),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            "--allow-privileged=true".into(),
        ]
        .into();

        let kubeconfig_path = path("admin.kubeconfig");
        std::fs::write(
            &kubeconfig_path,
            token_kubeconfig(&server_url, &pki.ca_pem, "admin", &admin_token, "default"),
        )?;

        let apiserver = spawn_apiserver(&binaries, &apiserver_args, &path("kube-apiserver.log"))?;
        let mut control_plane = Self {
            controller_manager: None,
            apiserver,
            etcd,
            apiserver_args,
            binaries,
            server_url,
            ca_pem: pki.ca_pem,
            admin_token,
            kubeconfig_path,
            dir,
        };
        control_plane.wait_for_apiserver().await?;
        Ok(control_plane)
    }

    /// The admin kubeconfig (token user in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The CA certificate that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The admin bearer token (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The binaries in use, e.g. `helm` for chart tests.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The temporary directory holding certificates, etcd data and the process logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The kube-apiserver log (useful in assertion messages).
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        self.apiserver.log_tail(lines)
    }

    /// A client with admin rights.
    pub async fn client(&self) -> Result<kube::Client> {
        client_for_kubeconfig(&self.kubeconfig_path).await
    }

    /// Runs `kubectl --kubeconfig <admin> <args>`; the exit status is the caller's to check.
    pub async fn kubectl(&self, args: &[&str]) -> Result<Output> {
        self.kubectl_with_stdin(args, None).await
    }

    /// Runs kubectl like [`Self::kubectl`] and fails with its stderr unless it succeeds;
    /// returns its stdout.
    pub async fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.kubectl(args).await?;
        checked("kubectl", args, output)
    }

    async fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut child = tokio::process::Command::new(&self.binaries.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig_path)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting kubectl")?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await?;
        }
        Ok(child.wait_with_output().await?)
    }

    /// `kubectl apply --server-side --force-conflicts -f <path>` (a file or a directory).
    pub async fn apply_file(&self, path: impl AsRef<Path>) -> Result<String> {
        let path = path.as_ref().to_str().context("path is not UTF-8")?;
        self.kubectl_ok(&apply_args(path)).await
    }

    /// Applies YAML text (one or more documents) like [`Self::apply_file`].
    pub async fn apply_yaml(&self, yaml: &str) -> Result<String> {
        let args = apply_args("-");
        let output = self.kubectl_with_stdin(&args, Some(yaml)).await?;
        checked("kubectl", &args, output)
    }

    /// Creates a namespace (a no-op if it exists).
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.client().await?)
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&namespace),
            )
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(())
    }

    /// Applies every `*.yaml`/`*.yml` file in `dir` and waits until each
    /// CustomResourceDefinition among them is `Established`. Returns the CRD names.
    pub async fn install_crds(&self, dir: impl AsRef<Path>) -> Result<Vec<String>> {
        let dir = dir.as_ref();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.retain(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml"));
        files.sort();
        if files.is_empty() {
            bail!("no *.yaml files in {}", dir.display());
        }
        let mut names = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file)?;
            names.extend(crd_names(&text).with_context(|| format!("parsing {}", file.display()))?);
            self.apply_file(file).await?;
        }
        let crds = Api::<CustomResourceDefinition>::all(self.client().await?);
        for name in &names {
            tokio::time::timeout(
                CRD_TIMEOUT,
                await_condition(crds.clone(), name, conditions::is_crd_established()),
            )
            .await
            .with_context(|| format!("CRD {name} not Established after {CRD_TIMEOUT:?}"))??;
        }
        Ok(names)
    }

    /// A service-account token from the TokenRequest API (valid for 24 hours).
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(SERVICE_ACCOUNT_TOKEN_SECONDS),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = Api::<ServiceAccount>::namespaced(self.client().await?, namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for serviceaccount {namespace}/{name}"))?;
        response
            .status
            .and_then(|s| s.token)
            .context("TokenRequest returned no token")
    }

    /// Writes to `out` a kubeconfig that authenticates only as ServiceAccount
    /// `namespace/name` (which must exist), so a process using it has exactly the RBAC rights
    /// bound to that ServiceAccount. Its default namespace is `namespace`.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        out: impl AsRef<Path>,
    ) -> Result<()> {
        let token = self.service_account_token(namespace, name).await?;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let kubeconfig = token_kubeconfig(&self.server_url, &self.ca_pem, &user, &token, namespace);
        write_atomically(out.as_ref(), &kubeconfig)
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after 10 s) and starts it again on the same
    /// port with the same etcd and certificates; returns once it is ready.
    pub async fn restart_apiserver(&mut self) -> Result<()> {
        self.apiserver.terminate(Duration::from_secs(10)).await?;
        let log = self.dir.path().join("kube-apiserver.log");
        self.apiserver = spawn_apiserver(&self.binaries, &self.apiserver_args, &log)?;
        self.wait_for_apiserver().await
    }

    async fn wait_for_apiserver(&mut self) -> Result<()> {
        let mut config = config_for_kubeconfig(&self.kubeconfig_path).await?;
        config.connect_timeout = Some(Duration::from_secs(2));
        config.read_timeout = Some(Duration::from_secs(10));
        let client = kube::Client::try_from(config)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for process in [&mut self.etcd, &mut self.apiserver] {
                if let Some(status) = process.try_status()? {
                    bail!(
                        "{} exited with {status}; last log lines:\n{}",
                        process.name(),
                        process.log_tail(40)
                    );
                }
            }
            let Err(last_error) = apiserver_ready(&client).await else {
                return Ok(());
            };
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver not ready after {START_TIMEOUT:?} ({last_error:#}); \
                     last log lines:\n{}",
                    self.apiserver.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn join(flag: &str, value: OsString) -> OsString {
    let mut arg = OsString::from(flag);
    arg.push(value);
    arg
}

fn spawn_apiserver(binaries: &Binaries, args: &[OsString], log: &Path) -> Result<Process> {
    Process::spawn(
        "kube-apiserver",
        Command::new(&binaries.kube_apiserver).args(args),
        log,
    )
}

async fn apiserver_ready(client: &kube::Client) -> Result<()> {
    let readyz = http::Request::get("/readyz").body(Vec::new())?;
    client.request_text(readyz).await.context("/readyz")?;
    Api::<Namespace>::all(client.clone())
        .get_opt("default")
        .await?
        .context("namespace default does not exist yet")?;
    Ok(())
}

/// Polls etcd's `/health` over plain HTTP until it answers 200.
async fn wait_for_etcd(etcd: &mut Process, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = etcd.try_status()? {
            bail!(
                "etcd exited with {status}; last log lines:\n{}",
                etcd.log_tail(40)
            );
        }
        if etcd_healthy(port).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "etcd not healthy after 30s; last log lines:\n{}",
                etcd.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn etcd_healthy(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(response)) => {
            response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200")
        }
        _ => false,
    }
}

fn apply_args(file: &str) -> [&str; 6] {
    [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=testenv",
        "-f",
        file,
    ]
}

fn checked(program: &str, args: &[&str], output: Output) -> Result<String> {
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Names of the CustomResourceDefinitions in a multi-document YAML text.
fn crd_names(yaml: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value: serde_yaml::Value = serde::Deserialize::deserialize(document)?;
        if value["kind"].as_str() == Some("CustomResourceDefinition") {
            let name = value["metadata"]["name"]
                .as_str()
                .context("a CustomResourceDefinition has no metadata.name")?;
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_crd_names_in_multi_document_yaml() {
        let yaml = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                    metadata:\n  name: widgets.example.com\n---\n---\napiVersion: v1\n\
                    kind: Namespace\nmetadata:\n  name: x\n";
        assert_eq!(crd_names(yaml).unwrap(), ["widgets.example.com"]);
    }

    #[test]
    fn token_kubeconfig_is_readable_by_kube() {
        let yaml = token_kubeconfig("https://127.0.0.1:6443", "PEM", "admin", "t0ken", "ns");
        let kubeconfig = Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(kubeconfig.current_context.as_deref(), Some("admin@testenv"));
        let user = kubeconfig.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some());
    }
}
