//! The chart's life on a real API server: upgrading from 0.1.0 (whose CRD Helm did not own)
//! updates the CRD, later upgrades keep updating it, `helm uninstall` keeps it, and the chart
//! installs as a subchart of an umbrella chart with `global` values.

use super::*;

/// The last chart version that shipped the CRD in `crds/` (see tests/fixtures/chart/).
const PREVIOUS_CHART: &str = "tests/fixtures/chart/opensearch-package-operator-0.1.0.tgz";
const CRD_NAME: &str = "opensearchpackages.ospkg.dev";
/// The CRD the chart added after 0.1.0: created, not taken over, by the first upgrade.
const ROLES_CRD_NAME: &str = "opensearchpackageroles.ospkg.dev";

/// `helm <args> --kubeconfig <admin>`; fails the test unless it succeeds.
fn helm_ok(cp: &testenv::ControlPlane, args: &[&str]) -> String {
    let output = helm_on(cp, args);
    assert!(
        output.status.success(),
        "helm {} failed: {}",
        args.join(" "),
        stderr(&output)
    );
    stdout(&output)
}

fn helm_on(cp: &testenv::ControlPlane, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    let kubeconfig = cp.kubeconfig_path().to_str().unwrap();
    all.extend(["--kubeconfig", kubeconfig]);
    run_helm(&all)
}

/// The package CRD as the API server has it.
async fn server_crd(cp: &testenv::ControlPlane) -> serde_json::Value {
    server_crd_named(cp, CRD_NAME).await
}

async fn server_crd_named(cp: &testenv::ControlPlane, name: &str) -> serde_json::Value {
    let text = kubectl_ok(cp, &["get", "crd", name, "-o", "json"]).await;
    serde_json::from_str(&text).expect("kubectl prints JSON")
}

/// Property names of `spec` in the CRD's (first) version schema.
fn spec_fields_json(crd: &serde_json::Value) -> BTreeSet<String> {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object()
        .expect("spec properties")
        .keys()
        .cloned()
        .collect()
}

fn spec_fields_yaml(crd: &Value) -> BTreeSet<String> {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_mapping()
        .expect("spec properties")
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

fn annotation<'a>(crd: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    crd["metadata"]["annotations"][key].as_str()
}

fn label<'a>(crd: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    crd["metadata"]["labels"][key].as_str()
}

fn categories(crd: &serde_json::Value) -> Vec<String> {
    crd["spec"]["names"]["categories"]
        .as_array()
        .map(|c| c.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

const PACKAGE: &str = "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackage
metadata:
  name: survivor
  namespace: search
spec:
  packageType: TXT-DICTIONARY
  source:
    s3BucketName: acme-search-dicts
    s3Key: synonyms.txt
";

#[tokio::test(flavor = "multi_thread")]
async fn helm_upgrade_from_0_1_0_takes_the_crd_over_and_keeps_updating_it() {
    let cp = testenv::ControlPlane::start()
        .await
        .expect("starting the test API server");
    let install = |release: &str, namespace: &str| {
        helm_ok(
            &cp,
            &[
                "install",
                release,
                PREVIOUS_CHART,
                "--namespace",
                namespace,
                "--create-namespace",
                "--set",
                "region=eu-west-1",
            ],
        )
    };

    // 0.1.0 installs the CRD from crds/: Helm creates it but does not own it.
    install(RELEASE, NAMESPACE);
    let before = server_crd(&cp).await;
    assert_eq!(label(&before, "app.kubernetes.io/managed-by"), None);
    assert_eq!(annotation(&before, "helm.sh/resource-policy"), None);
    cp.create_namespace("search").await.unwrap();
    cp.apply_yaml(PACKAGE).await.expect("a package under 0.1.0");

    // Helm refuses to take over an object it did not create ...
    let upgrade = |extra: &[&str]| {
        let mut args = vec!["upgrade", RELEASE, CHART, "--namespace", NAMESPACE];
        args.extend_from_slice(extra);
        helm_on(&cp, &args)
    };
    let refused = upgrade(&[]);
    assert!(
        !refused.status.success(),
        "the upgrade took the CRD over unasked"
    );
    assert!(
        stderr(&refused).contains("invalid ownership metadata"),
        "{}",
        stderr(&refused)
    );
    // ... unless told to (Helm 3.17 or newer), with the command docs/operations.md gives.
    let taken = upgrade(&["--reset-then-reuse-values", "--take-ownership"]);
    assert!(taken.status.success(), "{}", stderr(&taken));
    let values = helm_ok(
        &cp,
        &[
            "get",
            "values",
            RELEASE,
            "--namespace",
            NAMESPACE,
            "--all",
            "-o",
            "yaml",
        ],
    );
    let values: Value = serde_yaml::from_str(&values).unwrap();
    assert_eq!(
        values["region"].as_str(),
        Some("eu-west-1"),
        "settings kept"
    );
    assert_eq!(
        values["crds"]["keep"].as_bool(),
        Some(true),
        "new defaults taken"
    );

    let after = server_crd(&cp).await;
    assert_eq!(label(&after, "app.kubernetes.io/managed-by"), Some("Helm"));
    assert_eq!(
        annotation(&after, "meta.helm.sh/release-name"),
        Some(RELEASE)
    );
    assert_eq!(annotation(&after, "helm.sh/resource-policy"), Some("keep"));
    let chart_label = label(&after, "helm.sh/chart")
        .unwrap_or_default()
        .to_owned();
    let chart_yaml: Value = serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join(CHART).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        chart_label,
        format!(
            "opensearch-package-operator-{}",
            chart_yaml["version"].as_str().unwrap()
        )
    );
    assert_ne!(
        chart_yaml["version"].as_str(),
        Some("0.1.0"),
        "the chart version must move on from the fixture's"
    );
    assert_eq!(
        spec_fields_json(&after),
        spec_fields_yaml(&checked_in_crd()),
        "the server's CRD is not the current chart's"
    );
    assert_ne!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "helm upgrade did not write the CRD"
    );
    // The CRD 0.1.0 did not have is created by the upgrade, owned by the release and kept.
    let roles = server_crd_named(&cp, ROLES_CRD_NAME).await;
    assert_eq!(label(&roles, "app.kubernetes.io/managed-by"), Some("Helm"));
    assert_eq!(
        annotation(&roles, "meta.helm.sh/release-name"),
        Some(RELEASE)
    );
    assert_eq!(annotation(&roles, "helm.sh/resource-policy"), Some("keep"));

    // Every later upgrade applies the chart's CRD: here a copy of the chart whose CRD gains a
    // category (the crds/ directory of 0.1.0 could never do this).
    let copy = tempfile::tempdir().unwrap();
    let changed = copy.path().join("opensearch-package-operator");
    let status = Command::new("cp")
        .arg("-R")
        .arg(Path::new(ROOT).join(CHART))
        .arg(&changed)
        .status()
        .unwrap();
    assert!(status.success());
    let template = changed.join("templates/crds").join(CRD_FILE);
    let text = std::fs::read_to_string(&template).unwrap();
    assert!(
        text.contains("    categories:\n"),
        "no categories in the CRD template"
    );
    std::fs::write(
        &template,
        text.replacen("    categories:\n", "    categories:\n    - upgraded\n", 1),
    )
    .unwrap();
    helm_ok(
        &cp,
        &[
            "upgrade",
            RELEASE,
            changed.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
        ],
    );
    let changed_crd = server_crd(&cp).await;
    assert!(
        categories(&changed_crd).contains(&"upgraded".to_owned()),
        "helm upgrade did not change the CRD: {:?}",
        categories(&changed_crd)
    );

    // helm uninstall keeps the CRD and with it the objects.
    helm_ok(&cp, &["uninstall", RELEASE, "--namespace", NAMESPACE]);
    let kept = server_crd(&cp).await;
    assert_eq!(
        kept["metadata"]["deletionTimestamp"],
        serde_json::Value::Null
    );
    let kept_roles = server_crd_named(&cp, ROLES_CRD_NAME).await;
    assert_eq!(
        kept_roles["metadata"]["deletionTimestamp"],
        serde_json::Value::Null
    );
    let objects = kubectl_ok(&cp, &["get", "ospkg", "-n", "search", "-o", "name"]).await;
    assert_eq!(objects.trim(), "opensearchpackage.ospkg.dev/survivor");

    // Installing again under another name: 0.1.0 skips the existing CRD, the upgrade is
    // refused (the CRD names the old release), and the labels and annotations
    // docs/operations.md gives hand it over without --take-ownership.
    install("ospkg", "operators");
    let refused = helm_on(
        &cp,
        &["upgrade", "ospkg", CHART, "--namespace", "operators"],
    );
    assert!(!refused.status.success(), "took over another release's CRD");
    assert!(
        stderr(&refused).contains("invalid ownership metadata"),
        "{}",
        stderr(&refused)
    );
    // Both CRDs name the old release now (the roles CRD came with the first upgrade).
    kubectl_ok(
        &cp,
        &[
            "label",
            "crd",
            CRD_NAME,
            ROLES_CRD_NAME,
            "app.kubernetes.io/managed-by=Helm",
            "--overwrite",
        ],
    )
    .await;
    kubectl_ok(
        &cp,
        &[
            "annotate",
            "crd",
            CRD_NAME,
            ROLES_CRD_NAME,
            "meta.helm.sh/release-name=ospkg",
            "meta.helm.sh/release-namespace=operators",
            "--overwrite",
        ],
    )
    .await;
    helm_ok(
        &cp,
        &["upgrade", "ospkg", CHART, "--namespace", "operators"],
    );
    let adopted = server_crd(&cp).await;
    assert_eq!(
        annotation(&adopted, "meta.helm.sh/release-name"),
        Some("ospkg")
    );
    assert!(
        !categories(&adopted).contains(&"upgraded".to_owned()),
        "the upgrade did not apply this chart's CRD"
    );
    let objects = kubectl_ok(&cp, &["get", "ospkg", "-n", "search", "-o", "name"]).await;
    assert_eq!(objects.trim(), "opensearchpackage.ospkg.dev/survivor");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_umbrella_chart_installs_it_as_a_subchart_with_global_values() {
    let dir = tempfile::tempdir().unwrap();
    let umbrella = dir.path().join("platform");
    std::fs::create_dir_all(&umbrella).unwrap();
    let chart_path = Path::new(ROOT).join(CHART);
    let chart_yaml: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_path.join("Chart.yaml")).unwrap())
            .unwrap();
    std::fs::write(
        umbrella.join("Chart.yaml"),
        format!(
            "apiVersion: v2
name: platform
version: 1.0.0
dependencies:
  - name: opensearch-package-operator
    version: {}
    repository: file://{}
    condition: opensearch-package-operator.enabled
",
            chart_yaml["version"].as_str().unwrap(),
            chart_path.display()
        ),
    )
    .unwrap();
    std::fs::write(
        umbrella.join("values.yaml"),
        "global:
  imageRegistry: registry.example.com
  imagePullSecrets: []
  labels:
    team: platform
opensearch-package-operator:
  enabled: true
  region: eu-west-1
  replicaCount: 1
  leaderElection:
    enabled: false
",
    )
    .unwrap();
    let umbrella = umbrella.to_str().unwrap();
    let output = run_helm(&["dependency", "build", umbrella]);
    assert!(output.status.success(), "{}", stderr(&output));

    let cp = testenv::ControlPlane::start()
        .await
        .expect("starting the test API server");
    helm_ok(
        &cp,
        &[
            "install",
            "platform",
            umbrella,
            "--namespace",
            "platform",
            "--create-namespace",
            "--set",
            "global.environment=test",
        ],
    );
    let crd = server_crd(&cp).await;
    assert_eq!(
        annotation(&crd, "meta.helm.sh/release-name"),
        Some("platform")
    );
    let args = kubectl_ok(
        &cp,
        &[
            "get",
            "deployment",
            "-n",
            "platform",
            "platform-opensearch-package-operator",
            "-o=jsonpath={.spec.template.spec.containers[0].args}",
        ],
    )
    .await;
    assert!(args.contains("--region=eu-west-1"), "{args}");
    assert!(args.contains("--leader-election=false"), "{args}");

    // The subchart's switch: off, it renders nothing.
    let output = run_helm(&[
        "template",
        "platform",
        umbrella,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "opensearch-package-operator.enabled=false",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        documents(&stdout(&output)).is_empty(),
        "enabled=false still renders:\n{}",
        stdout(&output)
    );
}
