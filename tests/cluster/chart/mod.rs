//! The Helm chart and the manifests rendered from it (`deploy/`): lint, schema, rendering,
//! staleness, acceptance by a real API server and the RBAC rights it grants. Submodules:
//! `values` (rendering of the optional values), `docs` (the generated README and the Artifact
//! Hub annotations), `lifecycle` (CRD upgrades, subchart installs) and `aggregation` (the
//! built-in view/edit/admin roles).
//!
//! helm (and helm-docs) are found through `$OSPKG_HELM` (`$OSPKG_HELM_DOCS`), then the env
//! file `hack/build-control-plane.sh` writes (`${OSPKG_CACHE:-$HOME/.cache/ospkg}/bin/env`),
//! then by running that script (it builds them, etcd and kube-apiserver from Go modules the
//! first time, which takes minutes). The API-server tests use `testenv::ControlPlane`.

mod aggregation;
mod docs;
mod lifecycle;
mod values;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = "charts/opensearch-package-operator";
const RELEASE: &str = "opensearch-package-operator";
const NAMESPACE: &str = "opensearch-package-operator";
const SERVICE_ACCOUNT: &str = "opensearch-package-operator";
/// The CRDs in `crds/` (the hermetic tests check that nothing else is there), the package one
/// first.
const CRD_FILES: [&str; 2] = [
    "opensearchpackages.ospkg.dev.yaml",
    "opensearchpackageroles.ospkg.dev.yaml",
];
const CRD_FILE: &str = CRD_FILES[0];
/// Passed to `helm template`/`lint`, whose default depends on how helm was built (a plain
/// `go build` assumes 1.20, older than the chart's kubeVersion). Same as hack/generate.sh.
const KUBE_VERSION: &str = "v1.36.0";

// ---------------------------------------------------------------------------------------
// helm

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OSPKG_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("neither OSPKG_CACHE nor HOME is set");
    Path::new(&home).join(".cache/ospkg")
}

/// `<var>=<path>` from `export <var>=<path>` lines.
fn tool_from_env_lines(text: &str, var: &str) -> Option<PathBuf> {
    let prefix = format!("{var}=");
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export ").or(Some(line.trim())))
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|value| PathBuf::from(value.trim().trim_matches(|c| c == '"' || c == '\'')))
        .find(|path| path.is_file())
}

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| tool("OSPKG_HELM"))
}

fn helm_docs() -> &'static Path {
    static HELM_DOCS: OnceLock<PathBuf> = OnceLock::new();
    HELM_DOCS.get_or_init(|| tool("OSPKG_HELM_DOCS"))
}

/// A binary of `hack/build-control-plane.sh` by its variable (`OSPKG_HELM`, ...).
fn tool(var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{var}={} does not exist", path.display());
        return path;
    }
    let env_file = cache_dir().join("bin/env");
    if let Some(path) = std::fs::read_to_string(&env_file)
        .ok()
        .and_then(|text| tool_from_env_lines(&text, var))
    {
        return path;
    }
    let script = Path::new(ROOT).join("hack/build-control-plane.sh");
    eprintln!(
        "building {var} with {} (minutes the first time)",
        script.display()
    );
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{var} is unavailable: set it, or fix {} which failed ({}):\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    tool_from_env_lines(&String::from_utf8_lossy(&output.stdout), var).unwrap_or_else(|| {
        panic!(
            "{var} is unavailable: {} printed no existing {var}; set it",
            script.display()
        )
    })
}

fn run_helm(args: &[&str]) -> Output {
    Command::new(helm())
        .args(args)
        .current_dir(ROOT)
        // Keep helm away from the user's repositories, plugins and cache.
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("ospkg-helm-test/config"),
        )
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("ospkg-helm-test/cache"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("ospkg-helm-test/data"),
        )
        .output()
        .expect("running helm")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `helm template` of the chart with extra arguments (`--set ...`); the rendered text.
fn template_text(extra: &[&str]) -> String {
    let mut args = vec![
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ];
    args.extend_from_slice(extra);
    let output = run_helm(&args);
    assert!(
        output.status.success(),
        "helm {} failed: {}",
        args.join(" "),
        stderr(&output)
    );
    stdout(&output)
}

/// The rendered objects.
fn template(extra: &[&str]) -> Vec<Value> {
    documents(&template_text(extra))
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} rendered; kinds: {:?}", kinds(objects)))
}

fn find_named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// lint, schema, rendering

#[test]
fn helm_lint_is_clean() {
    let variants: [&[&str]; 5] = [
        &[],
        &["--set", "watchNamespaces={search,search-staging}"],
        &[
            "--set",
            "serviceMonitor.enabled=true,podDisruptionBudget.enabled=true,region=eu-west-1",
        ],
        &[
            "--set",
            "podMonitor.enabled=true,podMonitor.scrapeTimeout=10s,commonLabels.team=search",
        ],
        &[
            "--set",
            "crds.install=false,rbac.aggregateToDefaultRoles=false,unboundNamespaces=deny",
        ],
    ];
    for extra in variants {
        let mut args = vec!["lint", "--strict", CHART, "--kube-version", KUBE_VERSION];
        args.extend_from_slice(extra);
        let output = run_helm(&args);
        let text = stdout(&output) + &stderr(&output);
        assert!(output.status.success(), "helm {}:\n{text}", args.join(" "));
        assert!(
            !text.contains("[WARNING]") && !text.contains("[ERROR]"),
            "helm {} reports problems:\n{text}",
            args.join(" ")
        );
    }
}

#[test]
fn bad_values_fail_the_schema() {
    let cases: [(&[&str], &str); 31] = [
        (&["--set", "logFormat=xml"], "logFormat"),
        (&["--set", "leaderElection.leaseName=Bad_Name"], "leaseName"),
        // Two writers would race on UpdatePackage.
        (
            &["--set", "replicaCount=2,leaderElection.enabled=false"],
            "leaderElection",
        ),
        (&["--set", "mallocArenaMax=-1"], "mallocArenaMax"),
        (&["--set", "unboundNamespaces=allow"], "unboundNamespaces"),
        (&["--set", "roleCheckInterval=hourly"], "roleCheckInterval"),
        (&["--set-string", "followContent=yes"], "followContent"),
        (
            &["--set", "sourceCheckInterval=often"],
            "sourceCheckInterval",
        ),
        (&["--set", "logLevel=verbose"], "logLevel"),
        (&["--set-string", "concurrency=many"], "concurrency"),
        (&["--set", "concurrency=0"], "concurrency"),
        (&["--set", "replicas=2"], "replicas"),
        (&["--set", "region=Europe (Ireland)"], "region"),
        (&["--set", "resyncInterval=ten minutes"], "resyncInterval"),
        (&["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (
            &["--set", "watchNamespaces={Not_A_Namespace}"],
            "watchNamespaces",
        ),
        (&["--set", "crds.install=maybe"], "install"),
        (&["--set", "crds.upgrade=true"], "upgrade"),
        (
            &["--set", "rbac.aggregateToDefaultRoles=yes"],
            "aggregateToDefaultRoles",
        ),
        (&["--set", "image.digest=latest"], "digest"),
        (&["--set", "podSecurityContext.runAsUser=-1"], "runAsUser"),
        (&["--set", "podSecurityContext.runAsUsr=1000"], "runAsUsr"),
        (
            &["--set", "securityContext.capabilities.drop=ALL"],
            "capabilities",
        ),
        (&["--set", "extraArgs[0]=region"], "extraArgs"),
        (
            &["--set-json", r#"extraVolumes=[{"name":"ca"}]"#],
            "extraVolumes",
        ),
        (
            &[
                "--set-json",
                r#"extraVolumes=[{"name":"ca","configMap":{},"secret":{}}]"#,
            ],
            "extraVolumes",
        ),
        (
            &["--set-json", r#"extraVolumeMounts=[{"name":"ca"}]"#],
            "mountPath",
        ),
        // helm names the key, not the path, for a bad property name.
        (
            &["--set-json", r#"commonLabels={"bad key":"x"}"#],
            "bad key",
        ),
        (&["--set", "podMonitor.scrapeTimeout=fast"], "scrapeTimeout"),
        (
            &["--set", "serviceMonitor.relabelings[0].action=explode"],
            "action",
        ),
        (
            &["--set", "podMonitor.metricRelabelings[0].target=x"],
            "target",
        ),
    ];
    for (extra, field) in cases {
        let mut args = vec!["template", RELEASE, CHART, "--kube-version", KUBE_VERSION];
        args.extend_from_slice(extra);
        let output = run_helm(&args);
        let err = stderr(&output);
        assert!(
            !output.status.success(),
            "helm {} should fail the schema but rendered",
            args.join(" ")
        );
        assert!(
            err.contains("schema") && err.contains(field),
            "helm {} failed, but not with a schema error naming {field}:\n{err}",
            args.join(" ")
        );
    }
}

#[test]
fn default_values_render_a_hardened_highly_available_deployment() {
    let objects = template(&[]);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
        .map(String::from)
        .into(),
    );
    for object in &objects {
        if !matches!(
            object["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition")
        ) {
            assert_eq!(
                object["metadata"]["namespace"].as_str(),
                Some(NAMESPACE),
                "{} has no namespace",
                object["kind"].as_str().unwrap_or("?")
            );
        }
    }

    let deployment = find(&objects, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(2));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("RollingUpdate"));
    let pod = &spec["template"]["spec"];
    // Shutdown grace (20 s) plus room to release the Lease.
    assert_eq!(pod["terminationGracePeriodSeconds"].as_i64(), Some(30));
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"].as_str(),
        Some("kubernetes.io/hostname")
    );
    let pdb = find(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"].as_i64(), Some(1));
    assert_eq!(pod["serviceAccountName"].as_str(), Some(SERVICE_ACCOUNT));
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod_security["runAsUser"].as_i64(), Some(65532));
    assert_eq!(
        pod_security["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );

    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(
        security["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !container["resources"][kind][resource].is_null(),
                "resources.{kind}.{resource} is not set"
            );
        }
    }

    assert_eq!(
        strings(&container["args"]),
        [
            "run",
            "--resync-interval=10m",
            "--follow-content=false",
            "--source-check-interval=5m",
            "--unbound-namespaces=own-identity",
            "--role-check-interval=5m",
            "--concurrency=32",
            "--aws-rate-limit=10",
            "--metrics-addr=0.0.0.0:8080",
            "--log-level=info",
            "--log-format=text",
            "--shutdown-grace-period=20s",
            "--leader-election=true",
            "--leader-election-lease-duration=15s",
            "--leader-election-renew-deadline=10s",
            "--leader-election-retry-period=2s",
        ]
    );
    // Leases only, only in the release namespace.
    let role = find(&objects, "Role");
    assert_eq!(role["metadata"]["namespace"].as_str(), Some(NAMESPACE));
    let rules = role["rules"].as_sequence().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(strings(&rules[0]["apiGroups"]), ["coordination.k8s.io"]);
    assert_eq!(strings(&rules[0]["resources"]), ["leases"]);
    assert_eq!(
        strings(&rules[0]["verbs"]),
        ["get", "create", "update", "patch"]
    );
    let binding = find(&objects, "RoleBinding");
    assert_eq!(
        binding["subjects"][0]["name"].as_str(),
        Some(SERVICE_ACCOUNT)
    );
    let env = container["env"].as_sequence().expect("env");
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in env"));
        assert_eq!(
            var["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            Some(field)
        );
    }
    assert_eq!(container["ports"][0]["containerPort"].as_i64(), Some(8080));
    assert_eq!(container["ports"][0]["name"].as_str(), Some("metrics"));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"].as_str(), Some(path));
        assert_eq!(
            container[probe]["httpGet"]["port"].as_str(),
            Some("metrics")
        );
    }

    let service = find(&objects, "Service");
    assert_eq!(service["spec"]["ports"][0]["port"].as_i64(), Some(8080));
    assert_eq!(
        service["spec"]["selector"], spec["selector"]["matchLabels"],
        "the metrics Service selects the operator pod"
    );
}

/// The rules the operator needs, and nothing more.
fn expected_rules() -> Value {
    serde_yaml::from_str(
        r#"
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackages"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackages/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackages/finalizers"]
  verbs: ["update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "update", "delete"]
"#,
    )
    .unwrap()
}

/// The cluster-wide rights tenancy needs in both modes: read the OpenSearchPackageRoles and the
/// namespaces' labels, write the roles' status.
fn expected_tenancy_rules() -> Value {
    serde_yaml::from_str(
        r#"
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackageroles"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackageroles/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
"#,
    )
    .unwrap()
}

/// The ClusterRole of a cluster-wide install: the operator's rules, then tenancy's.
fn expected_cluster_rules() -> Value {
    let mut rules = expected_rules();
    let sequence = rules.as_sequence_mut().unwrap();
    sequence.extend(
        expected_tenancy_rules()
            .as_sequence()
            .unwrap()
            .iter()
            .cloned(),
    );
    rules
}

#[test]
fn values_an_umbrella_chart_passes_are_accepted() {
    // Helm hands a subchart its parent's `global` values and, by convention, `enabled`.
    let objects = template(&[
        "--set",
        "global.imageRegistry=registry.example.com,enabled=true",
    ]);
    assert!(kinds(&objects).contains("Deployment"));
}

#[test]
fn a_single_replica_is_recreated_without_a_disruption_budget() {
    let objects = template(&["--set", "replicaCount=1,leaderElection.enabled=false"]);
    let found = kinds(&objects);
    assert!(
        !found.contains("PodDisruptionBudget"),
        "a PDB for one replica blocks drains"
    );
    assert!(
        !found.contains("Role"),
        "no Lease rights without leader election"
    );
    let spec = &find(&objects, "Deployment")["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(1));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("Recreate"));
    assert!(spec["template"]["spec"]["affinity"].is_null());
    let args = strings(&spec["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--leader-election=false".to_owned()),
        "{args:?}"
    );
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--leader-election-lease")),
        "{args:?}"
    );
}

#[test]
fn rbac_is_cluster_wide_by_default_and_least_privilege() {
    let objects = template(&[]);
    let role = find_named(&objects, "ClusterRole", RELEASE);
    assert_eq!(role["rules"], expected_cluster_rules());
    // One ClusterRole for the operator: no separate tenancy one in this mode.
    let bindings: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("ClusterRoleBinding"))
        .collect();
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    let binding = find(&objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["name"].as_str(),
        Some(SERVICE_ACCOUNT)
    );
    assert_eq!(
        binding["subjects"][0]["namespace"].as_str(),
        Some(NAMESPACE)
    );
}

#[test]
fn watch_namespaces_get_a_role_each_and_only_the_tenancy_cluster_role() {
    let objects = template(&["--set", "watchNamespaces={search,search-staging}"]);
    let names_of = |kind: &str| -> BTreeSet<String> {
        objects
            .iter()
            .filter(|o| o["kind"].as_str() == Some(kind))
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Besides the ones aggregated into view/edit/admin (bound to nobody), only the tenancy
    // ClusterRole: OpenSearchPackageRoles are cluster-scoped and select namespaces by label.
    let tenancy = format!("{RELEASE}-tenancy");
    assert_eq!(
        names_of("ClusterRole"),
        [
            format!("{RELEASE}-edit"),
            tenancy.clone(),
            format!("{RELEASE}-view")
        ]
        .into(),
        "cluster-wide RBAC beyond tenancy rendered with watchNamespaces"
    );
    assert_eq!(names_of("ClusterRoleBinding"), [tenancy.clone()].into());
    assert_eq!(
        find_named(&objects, "ClusterRole", &tenancy)["rules"],
        expected_tenancy_rules()
    );
    let binding = find_named(&objects, "ClusterRoleBinding", &tenancy);
    assert_eq!(binding["roleRef"]["kind"].as_str(), Some("ClusterRole"));
    assert_eq!(binding["roleRef"]["name"].as_str(), Some(tenancy.as_str()));
    assert_eq!(
        binding["subjects"][0]["name"].as_str(),
        Some(SERVICE_ACCOUNT)
    );
    assert_eq!(
        binding["subjects"][0]["namespace"].as_str(),
        Some(NAMESPACE)
    );

    // rbac.create=false: no RBAC at all, the tenancy ClusterRole included.
    let objects = template(&[
        "--set",
        "watchNamespaces={search,search-staging},rbac.create=false",
    ]);
    let found = kinds(&objects);
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(!found.contains(kind), "rbac.create=false renders a {kind}");
    }

    let objects = template(&["--set", "watchNamespaces={search,search-staging}"]);
    for namespace in ["search", "search-staging"] {
        let in_namespace = |kind: &str| {
            objects
                .iter()
                .find(|o| {
                    o["kind"].as_str() == Some(kind)
                        && o["metadata"]["namespace"].as_str() == Some(namespace)
                })
                .unwrap_or_else(|| panic!("no {kind} in namespace {namespace}"))
        };
        assert_eq!(in_namespace("Role")["rules"], expected_rules());
        let binding = in_namespace("RoleBinding");
        assert_eq!(
            binding["subjects"][0]["name"].as_str(),
            Some(SERVICE_ACCOUNT)
        );
        assert_eq!(
            binding["subjects"][0]["namespace"].as_str(),
            Some(NAMESPACE)
        );
    }
    let args =
        strings(&find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--namespaces=search,search-staging".to_owned()),
        "the operator is not limited to the namespaces: {args:?}"
    );
}

/// The container's `MALLOC_ARENA_MAX` (None when it sets none).
fn malloc_arena_max(extra: &[&str]) -> Option<String> {
    let objects = template(extra);
    let env = find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    env.iter()
        .find(|v| v["name"].as_str() == Some("MALLOC_ARENA_MAX"))
        .map(|v| v["value"].as_str().expect("a string value").to_owned())
}

#[test]
fn malloc_arenas_are_limited_to_one_unless_the_values_say_otherwise() {
    assert_eq!(malloc_arena_max(&[]).as_deref(), Some("1"));
    assert_eq!(
        malloc_arena_max(&["--set", "mallocArenaMax=4"]).as_deref(),
        Some("4")
    );
    // 0: glibc's own default, so nothing is set (and extraEnv may set it instead).
    assert_eq!(malloc_arena_max(&["--set", "mallocArenaMax=0"]), None);
}

/// One replica may run without a Lease; the Lease can be named (two releases in a namespace);
/// a PodDisruptionBudget can limit by maxUnavailable once the default minAvailable is taken
/// out with `null`, the usual Helm way.
#[test]
fn leader_election_and_budget_variants_render() {
    let objects = template(&["--set", "replicaCount=1,leaderElection.enabled=false"]);
    let args = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_sequence()
            .is_some_and(|a| a.iter().any(|a| a == "--leader-election=false")),
        "{args:?}"
    );
    let objects = template(&[
        "--set",
        "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=null,podDisruptionBudget.maxUnavailable=1",
        "--set",
        "leaderElection.leaseName=search-team-operator",
    ]);
    let args = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_sequence().is_some_and(|a| a
            .iter()
            .any(|a| a == "--leader-election-lease-name=search-team-operator")),
        "{args:?}"
    );
    let pdb = find(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"].as_i64(), Some(1), "{pdb:?}");
    assert!(pdb["spec"]["minAvailable"].is_null(), "{pdb:?}");
}

#[test]
fn optional_values_render() {
    let objects = template(&[
        "--set",
        "region=eu-west-1,labelSelector=team=search,logFormat=json,metrics.port=9090",
        "--set",
        "serviceMonitor.enabled=true,serviceMonitor.labels.release=prometheus",
        "--set",
        "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=1",
        "--set",
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/ospkg",
        "--set",
        "extraEnv[0].name=AWS_ENDPOINT_URL_OPENSEARCH,extraEnv[0].value=http://sim:4566",
        "--set",
        "rbac.create=false,priorityClassName=system-cluster-critical",
        "--set",
        "followContent=true,sourceCheckInterval=90s",
    ]);
    let found = kinds(&objects);
    assert!(
        !found.contains("ClusterRole"),
        "rbac.create=false still renders RBAC"
    );
    let monitor = find(&objects, "ServiceMonitor");
    assert_eq!(
        monitor["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(
        monitor["metadata"]["labels"]["release"].as_str(),
        Some("prometheus")
    );
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"].as_str(),
        Some("metrics")
    );
    let pdb = find(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"].as_i64(), Some(1));
    assert!(pdb["spec"]["maxUnavailable"].is_null());
    let account = find(&objects, "ServiceAccount");
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str(),
        Some("arn:aws:iam::111122223333:role/ospkg")
    );
    let pod = &find(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["priorityClassName"].as_str(),
        Some("system-cluster-critical")
    );
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    for arg in [
        "--region=eu-west-1",
        "--label-selector=team=search",
        "--log-format=json",
        "--metrics-addr=0.0.0.0:9090",
        "--follow-content=true",
        "--source-check-interval=90s",
    ] {
        assert!(
            args.contains(&arg.to_owned()),
            "{arg} missing from {args:?}"
        );
    }
    let env = container["env"].as_sequence().unwrap();
    assert!(
        env.iter().any(
            |v| v["name"].as_str() == Some("AWS_ENDPOINT_URL_OPENSEARCH")
                && v["value"].as_str() == Some("http://sim:4566")
        ),
        "extraEnv missing: {env:?}"
    );
    assert_eq!(container["ports"][0]["containerPort"].as_i64(), Some(9090));
}

// ---------------------------------------------------------------------------------------
// generated files

/// Files under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Files in deploy/ written by hand, besides the Argo CD actions in deploy/argocd/actions/
/// and the IAM examples in deploy/iam/ (everything else there is generated).
const HAND_WRITTEN: [&str; 3] = [
    "deploy/iam-policy.json",
    "deploy/argocd/health.lua",
    "deploy/argocd/health_test.yaml",
];

#[test]
fn generated_files_are_up_to_date() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg(Path::new(ROOT).join("hack/generate.sh"))
        .arg("--out")
        .arg(out.path())
        .env(
            "OSPKG_OPERATOR_BIN",
            env!("CARGO_BIN_EXE_opensearch-package-operator"),
        )
        .env("OSPKG_HELM", helm())
        .env("OSPKG_HELM_DOCS", helm_docs())
        .output()
        .expect("running hack/generate.sh");
    assert!(
        output.status.success(),
        "hack/generate.sh --out failed: {}",
        stderr(&output)
    );

    let generated = files_under(out.path());
    assert!(
        generated.contains(&PathBuf::from("deploy/kustomization.yaml")),
        "hack/generate.sh wrote no deploy/kustomization.yaml: {generated:?}"
    );
    let mut stale = Vec::new();
    for file in &generated {
        let fresh = std::fs::read(out.path().join(file)).unwrap();
        match std::fs::read(Path::new(ROOT).join(file)) {
            Ok(current) if current == fresh => {}
            Ok(_) => stale.push(format!("{} differs", file.display())),
            Err(_) => stale.push(format!("{} is missing", file.display())),
        }
    }
    // A file in deploy/ that the script no longer writes is stale too.
    for file in files_under(&Path::new(ROOT).join("deploy")) {
        let file = Path::new("deploy").join(file);
        let hand_written = HAND_WRITTEN.iter().any(|h| Path::new(h) == file)
            || file.starts_with("deploy/argocd/actions")
            || file.starts_with("deploy/iam");
        if !generated.contains(&file) && !hand_written {
            stale.push(format!("{} is not generated any more", file.display()));
        }
    }
    // A CRD left in the chart's crds/ would clash with the templated one.
    let chart_crds = Path::new(ROOT).join(CHART).join("crds");
    if chart_crds.exists() {
        stale.push(format!("{CHART}/crds/ exists"));
    }
    assert!(
        stale.is_empty(),
        "generated files are stale: run hack/generate.sh\n{}",
        stale.join("\n")
    );
}

/// A checked-in CRD (`crds/<file>`), as a parsed object.
fn checked_in_crd_file(file: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join("crds").join(file)).unwrap();
    serde_yaml::from_str(&text).expect("the CRD parses")
}

/// The checked-in OpenSearchPackage CRD.
fn checked_in_crd() -> Value {
    checked_in_crd_file(CRD_FILE)
}

#[test]
fn the_chart_and_deploy_carry_the_checked_in_crds() {
    let mut in_crds: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_owned())
        .collect();
    in_crds.sort();
    let mut expected_files: Vec<String> = CRD_FILES.iter().map(|f| (*f).to_owned()).collect();
    expected_files.sort();
    assert_eq!(
        in_crds, expected_files,
        "crds/ holds other CRDs than CRD_FILES"
    );

    let objects = template(&[]);
    let rendered_crds: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("CustomResourceDefinition"))
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        rendered_crds.len(),
        CRD_FILES.len(),
        "the chart renders {rendered_crds:?}"
    );
    let kustomization: Value = serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("deploy/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let resources = strings(&kustomization["resources"]);

    for file in CRD_FILES {
        let crd = std::fs::read_to_string(Path::new(ROOT).join("crds").join(file)).unwrap();
        let copy = format!("deploy/crds/{file}");
        let text = std::fs::read_to_string(Path::new(ROOT).join(&copy))
            .unwrap_or_else(|e| panic!("{copy}: {e}; run hack/generate.sh"));
        assert!(
            text == crd,
            "{copy} differs from crds/{file}: run hack/generate.sh"
        );
        assert!(
            resources.contains(&format!("crds/{file}")),
            "deploy/kustomization.yaml does not list crds/{file}: {resources:?}"
        );

        // The chart renders the same CRD, with only its own labels and annotation added.
        let mut expected = checked_in_crd_file(file);
        let name = expected["metadata"]["name"].as_str().unwrap().to_owned();
        let rendered = find_named(&objects, "CustomResourceDefinition", &name);
        assert_eq!(
            rendered["metadata"]["annotations"]["helm.sh/resource-policy"].as_str(),
            Some("keep"),
            "{name} is not kept on helm uninstall"
        );
        let mut rendered_plain = rendered.clone();
        let metadata = rendered_plain["metadata"].as_mapping_mut().unwrap();
        metadata.remove("labels");
        metadata.remove("annotations");
        expected["metadata"]
            .as_mapping_mut()
            .unwrap()
            .retain(|key, _| key.as_str() == Some("name"));
        assert_eq!(
            rendered_plain, expected,
            "the chart's CRD template differs from crds/{file}: run hack/generate.sh"
        );
    }
    assert!(
        !Path::new(ROOT).join(CHART).join("crds").exists(),
        "{CHART}/crds/ must not exist: Helm would install that copy and clash with the template"
    );
}

// ---------------------------------------------------------------------------------------
// IAM

#[test]
fn iam_policy_grants_exactly_the_package_actions() {
    let path = Path::new(ROOT).join("deploy/iam-policy.json");
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().expect("Statement list");
    let mut actions = BTreeSet::new();
    for statement in statements {
        assert_eq!(statement["Effect"], "Allow");
        let list = match &statement["Action"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(items) => items
                .iter()
                .map(|a| a.as_str().expect("action names are strings").to_owned())
                .collect(),
            other => panic!("Action must be a string or a list, got {other}"),
        };
        for action in list {
            assert!(!action.contains('*'), "wildcard action {action}");
            assert!(actions.insert(action.clone()), "{action} is granted twice");
        }
    }
    // Exactly the OpenSearch Service operations the real backend calls: a call without its
    // action fails in production with AccessDenied, an action without a call is privilege
    // nobody needs.
    let backend = std::fs::read_to_string(Path::new(ROOT).join("src/backend/aws.rs"))
        .expect("reading src/backend/aws.rs");
    let called: BTreeSet<String> = sdk_operations_called(&backend)
        .into_iter()
        .map(|op| format!("es:{op}"))
        .collect();
    assert!(
        called.contains("es:CreatePackage") && called.contains("es:DescribePackages"),
        "found no package operations in src/backend/aws.rs: {called:?}"
    );
    let es: BTreeSet<String> = actions
        .iter()
        .filter(|a| a.starts_with("es:"))
        .cloned()
        .collect();
    assert_eq!(
        es, called,
        "deploy/iam-policy.json must grant exactly the es: actions src/backend/aws.rs calls \
         (left: granted, right: called)"
    );

    // The S3 actions: what the service needs to read a package's file with the caller's
    // rights (s3:GetObject), and exactly what the operator's own S3 client calls (HeadObject
    // of followed sources is authorised by s3:GetObject).
    let s3_client = std::fs::read_to_string(Path::new(ROOT).join("src/backend/s3.rs"))
        .expect("reading src/backend/s3.rs");
    let s3_calls = s3_operations_called(&s3_client);
    assert_eq!(
        s3_calls.keys().copied().collect::<Vec<_>>(),
        ["head_object"],
        "src/backend/s3.rs calls these S3 operations"
    );
    let mut s3_needed: BTreeSet<&str> = s3_calls.values().copied().collect();
    s3_needed.insert("s3:GetObject");
    let s3_granted: BTreeSet<&str> = actions
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("s3:"))
        .collect();
    assert_eq!(
        s3_granted, s3_needed,
        "deploy/iam-policy.json must grant exactly the s3: actions the imports and src/backend/s3.rs need \
         (left: granted, right: needed)"
    );
    let others: BTreeSet<&str> = actions
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("es:") && !a.starts_with("s3:"))
        .collect();
    assert_eq!(
        others,
        [
            "kms:CreateGrant",
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:GenerateDataKey",
        ]
        .into(),
        "non-es, non-s3 actions"
    );
    let kms = statements
        .iter()
        .find(|s| s["Action"].to_string().contains("kms:"))
        .unwrap();
    assert!(
        !kms["Action"].to_string().contains("es:") && !kms["Action"].to_string().contains("s3:"),
        "KMS actions have their own statement"
    );
    assert_eq!(
        kms["Condition"]["StringLike"]["kms:ViaService"], "es.*.amazonaws.com",
        "KMS use is limited to OpenSearch Service"
    );
    let s3 = statements
        .iter()
        .find(|s| s["Action"].to_string().contains("s3:GetObject"))
        .unwrap();
    for resource in s3["Resource"].as_array().expect("S3 resources") {
        let resource = resource.as_str().unwrap();
        assert!(
            resource.starts_with("arn:aws:s3:::") && resource != "arn:aws:s3:::*",
            "s3:GetObject must name the source buckets, not {resource}"
        );
    }
}

/// The `Action` of a policy statement as a list.
fn statement_actions(statement: &serde_json::Value) -> Vec<String> {
    match &statement["Action"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|a| a.as_str().expect("action names are strings").to_owned())
            .collect(),
        other => panic!("Action must be a string or a list, got {other}"),
    }
}

fn read_policy(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let policy: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid JSON: {e}"));
    assert_eq!(policy["Version"], "2012-10-17", "{path}");
    policy
}

/// The tenancy examples in deploy/iam/ (docs/install.md): the operator's own role may assume
/// and tag sessions of the granted roles only, and a granted role trusts the operator's role
/// only for sessions tagged with the namespace, under the tag key the operator sends.
#[test]
fn iam_tenancy_examples_are_valid_and_least_privilege() {
    // Every JSON file in deploy/ parses (the IAM examples, the Grafana dashboard, ...).
    let deploy = Path::new(ROOT).join("deploy");
    let json_files: Vec<PathBuf> = files_under(&deploy)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(
        json_files.iter().any(|f| f.starts_with("iam")),
        "no deploy/iam/*.json: {json_files:?}"
    );
    for file in &json_files {
        let text = std::fs::read_to_string(deploy.join(file)).unwrap();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("deploy/{} is not valid JSON: {e}", file.display()));
    }

    // The session tag key, as src/backend/identity.rs names it.
    let identity = std::fs::read_to_string(Path::new(ROOT).join("src/backend/identity.rs"))
        .expect("reading src/backend/identity.rs");
    let tag = identity
        .lines()
        .find_map(|l| l.trim().strip_prefix("pub const NAMESPACE_TAG: &str = \""))
        .and_then(|rest| rest.strip_suffix("\";"))
        .expect("NAMESPACE_TAG in src/backend/identity.rs");
    assert_eq!(tag, "kubernetes-namespace");
    let request_tag = format!("aws:RequestTag/{tag}");

    let policy = read_policy("deploy/iam/operator-assume-roles-policy.json");
    let statements = policy["Statement"].as_array().expect("Statement list");
    let mut actions = BTreeSet::new();
    for statement in statements {
        assert_eq!(statement["Effect"], "Allow");
        actions.extend(statement_actions(statement));
        let resources = match &statement["Resource"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(items) => items
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect(),
            other => panic!("Resource must be a string or a list, got {other}"),
        };
        for resource in resources {
            assert!(
                resource.starts_with("arn:aws:iam::") && resource.contains(":role/"),
                "the operator may assume only roles, not {resource}"
            );
            assert_ne!(
                resource, "arn:aws:iam::*:role/*",
                "every role of every account"
            );
        }
    }
    assert_eq!(
        actions,
        ["sts:AssumeRole", "sts:TagSession"]
            .map(String::from)
            .into(),
        "the operator's own role needs exactly these to assume a granted role"
    );

    let trust = read_policy("deploy/iam/package-role-trust-policy.json");
    let statements = trust["Statement"].as_array().expect("Statement list");
    let mut trusted = BTreeSet::new();
    for statement in statements {
        assert_eq!(statement["Effect"], "Allow");
        let principal = statement["Principal"]["AWS"]
            .as_str()
            .expect("an AWS principal");
        assert!(
            principal.starts_with("arn:aws:iam::") && principal.contains(":role/"),
            "the trusted principal is the operator's role, not {principal}"
        );
        for action in statement_actions(statement) {
            // Both the assumption and the tagging require the namespace tag.
            assert_eq!(
                statement["Condition"]["StringLike"][&request_tag], "*",
                "{action} does not require the {tag} session tag"
            );
            trusted.insert(action);
        }
    }
    assert_eq!(
        trusted,
        ["sts:AssumeRole", "sts:TagSession"]
            .map(String::from)
            .into()
    );
    let assume = statements
        .iter()
        .find(|s| statement_actions(s).contains(&"sts:AssumeRole".to_owned()))
        .unwrap();
    assert!(
        assume["Condition"]["StringEquals"]["sts:ExternalId"].is_string(),
        "the example shows the external id condition (spec.externalID)"
    );
    let tag_session = statements
        .iter()
        .find(|s| statement_actions(s).contains(&"sts:TagSession".to_owned()))
        .unwrap();
    assert_eq!(
        tag_session["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
        serde_json::json!([tag]),
        "only the namespace tag may be set"
    );
}

/// S3 operations called as SDK fluent builders (`client.head_object()`) in `source`, with the
/// IAM action each needs (HeadObject is authorised by s3:GetObject).
fn s3_operations_called(source: &str) -> std::collections::BTreeMap<&'static str, &'static str> {
    const OPERATIONS: [(&str, &str); 8] = [
        ("head_object", "s3:GetObject"),
        ("get_object", "s3:GetObject"),
        ("get_object_attributes", "s3:GetObject"),
        ("head_bucket", "s3:ListBucket"),
        ("list_objects_v2", "s3:ListBucket"),
        ("list_object_versions", "s3:ListBucketVersions"),
        ("get_bucket_location", "s3:GetBucketLocation"),
        ("get_bucket_versioning", "s3:GetBucketVersioning"),
    ];
    OPERATIONS
        .into_iter()
        .filter(|(op, _)| source.contains(&format!(".{op}()")))
        .collect()
}

/// OpenSearch Service operations (PascalCase) called as SDK fluent builders
/// (`client.create_package()`) in `source`.
fn sdk_operations_called(source: &str) -> BTreeSet<String> {
    const OPERATIONS: [&str; 17] = [
        "associate_package",
        "associate_packages",
        "create_package",
        "delete_package",
        "describe_packages",
        "dissociate_package",
        "dissociate_packages",
        "get_package_version_history",
        "list_domains_for_package",
        "list_packages_for_domain",
        "update_package",
        "update_package_scope",
        "describe_domain",
        "describe_domains",
        "list_domain_names",
        "describe_domain_config",
        "get_compatible_versions",
    ];
    OPERATIONS
        .iter()
        .filter(|op| source.contains(&format!(".{op}()")))
        .map(|op| {
            op.split('_')
                .map(|word| {
                    let mut chars = word.chars();
                    let first = chars.next().unwrap().to_ascii_uppercase();
                    std::iter::once(first).chain(chars).collect::<String>()
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// a real API server

fn write_temp(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn kubectl_ok(cp: &testenv::ControlPlane, args: &[&str]) -> String {
    match cp.kubectl_ok(args).await {
        Ok(out) => out,
        Err(e) => panic!("{e:#}\nkube-apiserver log:\n{}", cp.apiserver_log_tail(20)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_accepts_the_chart_deploy_and_examples() {
    let cp = testenv::ControlPlane::start()
        .await
        .expect("starting the test API server");
    cp.install_crds(Path::new(ROOT).join("crds"))
        .await
        .expect("installing the CRD");
    let dir = tempfile::tempdir().unwrap();

    // The namespaces must exist: a dry run does not create them for the objects inside.
    for namespace in [NAMESPACE, "search", "search-staging"] {
        cp.create_namespace(namespace).await.unwrap();
    }

    let variants: [(&str, &[&str]); 3] = [
        ("default", &[]),
        (
            "namespaced",
            &["--set", "watchNamespaces={search,search-staging}"],
        ),
        (
            "everything",
            &[
                "--set",
                "podDisruptionBudget.enabled=true,region=eu-west-1",
                "--set",
                "extraEnv[0].name=AWS_ENDPOINT_URL_OPENSEARCH,extraEnv[0].value=http://sim:4566",
            ],
        ),
    ];
    for (name, extra) in variants {
        let rendered = write_temp(dir.path(), &format!("{name}.yaml"), &template_text(extra));
        let out = kubectl_ok(&cp, &["apply", "--dry-run=server", "-f", &rendered]).await;
        assert!(out.contains("deployment.apps/"), "{name}: {out}");
    }

    let deploy = Path::new(ROOT).join("deploy");
    let out = kubectl_ok(
        &cp,
        &["apply", "-k", deploy.to_str().unwrap(), "--dry-run=server"],
    )
    .await;
    for object in [
        "namespace/opensearch-package-operator",
        "customresourcedefinition.apiextensions.k8s.io/opensearchpackages.ospkg.dev",
        "customresourcedefinition.apiextensions.k8s.io/opensearchpackageroles.ospkg.dev",
        "serviceaccount/opensearch-package-operator",
        "clusterrole.rbac.authorization.k8s.io/opensearch-package-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/opensearch-package-operator",
        "deployment.apps/opensearch-package-operator",
        "service/opensearch-package-operator-metrics",
    ] {
        assert!(
            out.contains(object),
            "kubectl apply -k deploy/ did not apply {object}:\n{out}"
        );
    }

    for example in [
        "txt-dictionary",
        "zip-plugin",
        "package-license",
        "package-config",
        "observe-only",
    ] {
        let path = Path::new(ROOT).join(format!("examples/{example}.yaml"));
        let out = kubectl_ok(
            &cp,
            &["apply", "--dry-run=server", "-f", path.to_str().unwrap()],
        )
        .await;
        assert!(
            out.contains("opensearchpackage.ospkg.dev/"),
            "{example}: {out}"
        );
    }
    // The two teams' OpenSearchPackageRoles of docs/install.md.
    let roles = Path::new(ROOT).join("examples/package-roles.yaml");
    let out = kubectl_ok(
        &cp,
        &["apply", "--dry-run=server", "-f", roles.to_str().unwrap()],
    )
    .await;
    for role in ["team-search", "team-logs"] {
        assert!(
            out.contains(&format!("opensearchpackagerole.ospkg.dev/{role}")),
            "examples/package-roles.yaml: {out}"
        );
    }

    // The examples Artifact Hub shows with the CRD.
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join(CHART).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    let examples = chart["annotations"]["artifacthub.io/crdsExamples"]
        .as_str()
        .expect("crdsExamples");
    let examples: Vec<Value> = serde_yaml::from_str(examples).expect("a YAML list");
    for (i, example) in examples.iter().enumerate() {
        let path = write_temp(
            dir.path(),
            &format!("crds-example-{i}.yaml"),
            &serde_yaml::to_string(example).unwrap(),
        );
        let out = kubectl_ok(&cp, &["apply", "--dry-run=server", "-f", &path]).await;
        let kind = example["kind"].as_str().unwrap().to_lowercase();
        assert!(out.contains(&format!("{kind}.ospkg.dev/")), "{out}");
    }
}

/// `kubectl auth can-i` as the chart's ServiceAccount (a SubjectAccessReview against the
/// server's RBAC authorizer).
async fn can_i(cp: &testenv::ControlPlane, verb: &str, resource: &str, scope: &[&str]) -> bool {
    let user = format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    can_user(cp, &user, verb, resource, scope).await
}

/// `kubectl auth can-i --as <user>`; `resource` may name a subresource (`things/status`).
async fn can_user(
    cp: &testenv::ControlPlane,
    user: &str,
    verb: &str,
    resource: &str,
    scope: &[&str],
) -> bool {
    let user = format!("--as={user}");
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(format!("--subresource={sub}"))),
        None => (resource, None),
    };
    let mut args = vec!["auth", "can-i", verb, resource, user.as_str()];
    args.extend(subresource.as_deref());
    args.extend_from_slice(scope);
    let output = cp.kubectl(&args).await.expect("running kubectl auth can-i");
    match stdout(&output).trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl {}: {other} {}", args.join(" "), stderr(&output)),
    }
}

/// The cluster-wide rights tenancy needs, in both modes: OpenSearchPackageRoles and
/// Namespaces are read cluster-wide, the roles' status is written, and nothing else on them.
async fn assert_tenancy_rights(cp: &testenv::ControlPlane, context: &str) {
    let allowed = [
        ("get", "opensearchpackageroles.ospkg.dev"),
        ("list", "opensearchpackageroles.ospkg.dev"),
        ("watch", "opensearchpackageroles.ospkg.dev"),
        ("patch", "opensearchpackageroles.ospkg.dev/status"),
        ("get", "namespaces"),
        ("list", "namespaces"),
        ("watch", "namespaces"),
    ];
    let denied = [
        ("create", "opensearchpackageroles.ospkg.dev"),
        ("update", "opensearchpackageroles.ospkg.dev"),
        ("patch", "opensearchpackageroles.ospkg.dev"),
        ("delete", "opensearchpackageroles.ospkg.dev"),
        ("deletecollection", "opensearchpackageroles.ospkg.dev"),
        ("update", "opensearchpackageroles.ospkg.dev/status"),
        ("create", "namespaces"),
        ("update", "namespaces"),
        ("patch", "namespaces"),
        ("delete", "namespaces"),
    ];
    for (verb, resource) in allowed {
        assert!(
            can_i(cp, verb, resource, &[]).await,
            "{context}: the operator cannot {verb} {resource} cluster-wide"
        );
    }
    for (verb, resource) in denied {
        assert!(
            !can_i(cp, verb, resource, &[]).await,
            "{context}: the operator may {verb} {resource}, which it must not"
        );
    }
}

async fn assert_rights(cp: &testenv::ControlPlane, scope: &[&str], context: &str) {
    let allowed = [
        ("get", "opensearchpackages.ospkg.dev"),
        ("list", "opensearchpackages.ospkg.dev"),
        ("watch", "opensearchpackages.ospkg.dev"),
        ("patch", "opensearchpackages.ospkg.dev"),
        ("update", "opensearchpackages.ospkg.dev"),
        ("patch", "opensearchpackages.ospkg.dev/status"),
        ("update", "opensearchpackages.ospkg.dev/finalizers"),
        ("create", "events.events.k8s.io"),
        ("patch", "events.events.k8s.io"),
        // spec.export
        ("get", "configmaps"),
        ("create", "configmaps"),
        ("update", "configmaps"),
        ("delete", "configmaps"),
    ];
    let denied = [
        ("create", "opensearchpackages.ospkg.dev"),
        ("delete", "opensearchpackages.ospkg.dev"),
        ("get", "secrets"),
        ("list", "secrets"),
        ("list", "configmaps"),
        ("watch", "configmaps"),
        ("patch", "configmaps"),
        ("get", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("create", "pods"),
        ("create", "events"),
        ("create", "leases.coordination.k8s.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        // The admin's grant is read, never written (only its status).
        ("create", "opensearchpackageroles.ospkg.dev"),
        ("update", "opensearchpackageroles.ospkg.dev"),
        ("patch", "opensearchpackageroles.ospkg.dev"),
        ("delete", "opensearchpackageroles.ospkg.dev"),
        ("update", "opensearchpackageroles.ospkg.dev/status"),
        ("patch", "namespaces"),
        ("delete", "namespaces"),
    ];
    for (verb, resource) in allowed {
        assert!(
            can_i(cp, verb, resource, scope).await,
            "{context}: the operator cannot {verb} {resource} {scope:?}"
        );
    }
    for (verb, resource) in denied {
        assert!(
            !can_i(cp, verb, resource, scope).await,
            "{context}: the operator may {verb} {resource} {scope:?}, which it must not"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_grants_the_operator_exactly_its_rights() {
    let cp = testenv::ControlPlane::start()
        .await
        .expect("starting the test API server");
    let kubeconfig = cp.kubeconfig_path().to_str().unwrap().to_owned();

    // A real install, the chart's CRD template included. There is no controller-manager,
    // so no pod starts; the objects and the rights they grant are what is checked.
    let output = run_helm(&[
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(
        output.status.success(),
        "helm install failed: {}",
        stderr(&output)
    );
    let crd = kubectl_ok(
        &cp,
        &["get", "crd", "opensearchpackages.ospkg.dev", "-o", "name"],
    )
    .await;
    assert!(crd.contains("opensearchpackages.ospkg.dev"), "{crd}");

    assert_rights(&cp, &["--namespace=search"], "cluster-wide").await;
    assert_rights(&cp, &["--all-namespaces"], "cluster-wide").await;
    assert_tenancy_rights(&cp, "cluster-wide").await;
    let roles_crd = kubectl_ok(
        &cp,
        &[
            "get",
            "crd",
            "opensearchpackageroles.ospkg.dev",
            "-o",
            "name",
        ],
    )
    .await;
    assert!(
        roles_crd.contains("opensearchpackageroles.ospkg.dev"),
        "{roles_crd}"
    );

    // Limited to namespaces: rights there, none elsewhere.
    for namespace in ["search", "search-staging", "elsewhere"] {
        cp.create_namespace(namespace).await.unwrap();
    }
    let output = run_helm(&[
        "upgrade",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "watchNamespaces={search,search-staging}",
    ]);
    assert!(
        output.status.success(),
        "helm upgrade failed: {}",
        stderr(&output)
    );
    assert_rights(&cp, &["--namespace=search"], "namespaced").await;
    assert_rights(&cp, &["--namespace=search-staging"], "namespaced").await;
    // Roles and namespaces are read cluster-wide in this mode too.
    assert_tenancy_rights(&cp, "namespaced").await;
    for (verb, resource) in [
        ("get", "opensearchpackages.ospkg.dev"),
        ("list", "opensearchpackages.ospkg.dev"),
        ("patch", "opensearchpackages.ospkg.dev/status"),
    ] {
        for scope in ["--namespace=elsewhere", "--all-namespaces"] {
            assert!(
                !can_i(&cp, verb, resource, &[scope]).await,
                "namespaced: the operator may {verb} {resource} {scope}"
            );
        }
    }
}

/// The whole Helm path: install the chart, run the operator with the token of the chart's
/// ServiceAccount (so only the chart's RBAC applies), and bring a package to Ready against the
/// simulator.
#[tokio::test(flavor = "multi_thread")]
async fn helm_installed_operator_brings_a_package_to_ready() {
    let cp = testenv::ControlPlane::start()
        .await
        .expect("starting the test API server");
    let kubeconfig = cp.kubeconfig_path().to_str().unwrap().to_owned();
    let output = run_helm(&[
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(
        output.status.success(),
        "helm install failed: {}",
        stderr(&output)
    );

    let sim = ospkg_sim::start(
        ospkg_sim::SimConfig::default().durations(ospkg_sim::Durations::instant()),
    )
    .await
    .expect("simulator");
    sim.admin()
        .put_object("helm-dicts", "synonyms.txt", b"tv, television\n".to_vec())
        .await
        .expect("upload");

    let operator_kubeconfig = cp.dir().join("operator.kubeconfig");
    cp.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT, &operator_kubeconfig)
        .await
        .expect("service-account kubeconfig");
    let metrics_port = testenv::free_port().expect("port");
    let mut operator = testenv::Process::spawn(
        "operator",
        Command::new(env!("CARGO_BIN_EXE_opensearch-package-operator"))
            .args(["run", "--region", "us-east-1", "--resync-interval", "30s"])
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            // As the chart's pod: the downward API names the pod and its namespace, where
            // the chart's Role lets it take the leader Lease.
            .env("POD_NAME", "opensearch-package-operator-0")
            .env("POD_NAMESPACE", NAMESPACE)
            .env("KUBECONFIG", &operator_kubeconfig)
            .env("AWS_ENDPOINT_URL_OPENSEARCH", sim.endpoint())
            // GetCallerIdentity (the own identity's account) and AssumeRole go to the
            // simulator's STS, on the same listener.
            .env("AWS_ENDPOINT_URL_STS", sim.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true"),
        cp.dir().join("operator.log"),
    )
    .expect("operator starts");

    // It checks an OpenSearchPackageRole and writes its status, with the chart's rights on
    // roles (read cluster-wide, patch status). The role selects no namespace, so the package
    // below keeps the operator's own identity; whatever STS answers, the status names the
    // role's account and the generation it describes.
    cp.apply_yaml(
        "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackageRole
metadata:
  name: helm-team
spec:
  roleARN: arn:aws:iam::444455556666:role/ospkg-helm-team
  namespaceSelector:
    matchLabels:
      ospkg.dev/team: nobody
",
    )
    .await
    .expect("role applied");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let jsonpath = r#"-o=jsonpath={.status.accountID} {.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].reason}"#;
    loop {
        let out = cp
            .kubectl(&["get", "ospkgrole", "helm-team", jsonpath])
            .await
            .expect("kubectl");
        let seen = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let fields: Vec<&str> = seen.split(' ').collect();
        if fields.len() == 3 && !fields[2].is_empty() {
            assert_eq!(&fields[..2], ["444455556666", "1"], "{seen}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator wrote no status for the role (saw {seen:?}); operator log:\n{}",
            operator.log_tail(60)
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    cp.create_namespace("search").await.expect("namespace");
    cp.apply_yaml(
        "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackage
metadata:
  name: helm-synonyms
  namespace: search
spec:
  packageType: TXT-DICTIONARY
  source:
    s3BucketName: helm-dicts
    s3Key: synonyms.txt
",
    )
    .await
    .expect("package applied");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let jsonpath = r#"-o=jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.availablePackageVersion}"#;
    loop {
        let out = cp
            .kubectl(&["get", "ospkg", "-n", "search", "helm-synonyms", jsonpath])
            .await
            .expect("kubectl");
        let seen = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if seen == "True v1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not Ready with v1 (saw {seen:?}); operator log:\n{}",
            operator.log_tail(60)
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        operator.try_status().expect("status").is_none(),
        "operator exited"
    );
    // The Deployment asks for two pods (no kubelet here runs them).
    let replicas = cp
        .kubectl(&[
            "get",
            "deployment",
            "-n",
            NAMESPACE,
            "-o=jsonpath={.items[0].spec.replicas}",
        ])
        .await
        .expect("kubectl");
    assert_eq!(String::from_utf8_lossy(&replicas.stdout).trim(), "2");
    // It leads, on the Lease the chart's Role allows.
    let holder = cp
        .kubectl(&[
            "get",
            "lease",
            "-n",
            NAMESPACE,
            "opensearch-package-operator",
            "-o=jsonpath={.spec.holderIdentity}",
        ])
        .await
        .expect("kubectl");
    assert_eq!(
        String::from_utf8_lossy(&holder.stdout).trim(),
        "opensearch-package-operator-0"
    );
    let log = operator.log_tail(400);
    assert!(
        !log.contains(" is forbidden"),
        "the operator was refused by the API server:\n{log}"
    );
}
