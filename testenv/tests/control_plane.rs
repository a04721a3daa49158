//! End-to-end checks of the control plane itself, against real kube-apiserver and etcd.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use testenv::{ControlPlane, client_for_kubeconfig};

const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/crds");

fn http_status<T: std::fmt::Debug>(result: kube::Result<T>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_v1_36_installs_crds_and_cleans_up_on_drop() {
    let cp = ControlPlane::start().await.unwrap();
    assert!(cp.server_url().starts_with("https://127.0.0.1:"));

    let version = cp
        .client()
        .await
        .unwrap()
        .apiserver_version()
        .await
        .unwrap();
    assert!(
        version.git_version.starts_with("v1.36."),
        "gitVersion {}",
        version.git_version
    );
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "36")
    );

    let names = cp.install_crds(CRDS).await.unwrap();
    assert_eq!(names, ["widgets.testenv.example.com"]);

    // The CRD's schema and CEL rule are enforced by the real server.
    let widget = |size: i32| {
        format!(
            "apiVersion: testenv.example.com/v1\nkind: Widget\n\
             metadata:\n  name: w{size}\n  namespace: default\nspec:\n  size: {size}\n"
        )
    };
    cp.apply_yaml(&widget(3)).await.unwrap();
    let rejected = cp.apply_yaml(&widget(0)).await.unwrap_err();
    assert!(
        format!("{rejected:#}").contains("size must be positive"),
        "{rejected:#}"
    );
    let listed = cp
        .kubectl_ok(&["get", "widgets", "-o", "name"])
        .await
        .unwrap();
    assert_eq!(listed.trim(), "widget.testenv.example.com/w3");

    // Dropping stops both servers and removes the temporary directory.
    let dir = cp.dir().to_owned();
    let port: u16 = cp.server_url().rsplit(':').next().unwrap().parse().unwrap();
    drop(cp);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_kubeconfig_has_exactly_the_bound_rights() {
    let cp = ControlPlane::start().await.unwrap();
    cp.create_namespace("team").await.unwrap();
    cp.create_namespace("team").await.unwrap(); // idempotent
    cp.apply_yaml(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: nobody, namespace: team}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: team}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-reader, namespace: team}
rules:
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-reader}
subjects:
  - {kind: ServiceAccount, name: reader, namespace: team}
"#,
    )
    .await
    .unwrap();

    let out = tempfile::tempdir().unwrap();
    let kubeconfig = |name: &str| out.path().join(format!("{name}.kubeconfig"));
    for name in ["nobody", "reader"] {
        cp.service_account_kubeconfig("team", name, kubeconfig(name))
            .await
            .unwrap();
    }
    let text = std::fs::read_to_string(kubeconfig("reader")).unwrap();
    assert!(
        !text.contains(cp.admin_token()),
        "must not carry admin rights"
    );

    let nobody = client_for_kubeconfig(kubeconfig("nobody")).await.unwrap();
    let reader = client_for_kubeconfig(kubeconfig("reader")).await.unwrap();
    let lp = ListParams::default();

    let secrets = |client: &kube::Client, ns: &str| Api::<Secret>::namespaced(client.clone(), ns);
    assert_eq!(http_status(secrets(&nobody, "team").list(&lp).await), 403);
    assert!(secrets(&reader, "team").list(&lp).await.is_ok());
    assert_eq!(
        http_status(secrets(&reader, "default").list(&lp).await),
        403
    );
    let configmaps = Api::<ConfigMap>::namespaced(reader.clone(), "team");
    assert_eq!(http_status(configmaps.list(&lp).await), 403);
    let new_secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("s".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        http_status(
            secrets(&reader, "team")
                .create(&PostParams::default(), &new_secret)
                .await
        ),
        403
    );

    // kubectl with the ServiceAccount kubeconfig sees the same rights.
    let whoami = std::process::Command::new(&cp.binaries().kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig("reader"))
        .args(["auth", "can-i", "list", "secrets"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&whoami.stdout).trim(), "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_apiserver_keeps_state_and_clients_reconnect() {
    let mut cp = ControlPlane::start().await.unwrap();
    let url = cp.server_url().to_owned();
    let client = cp.client().await.unwrap();
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let configmap = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("survivor".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    configmaps
        .create(&PostParams::default(), &configmap)
        .await
        .unwrap();

    cp.restart_apiserver().await.unwrap();
    assert_eq!(cp.server_url(), url);

    // The client made before the restart works again, and etcd kept the object.
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match configmaps.get_opt("survivor").await {
                Ok(found) => return found,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .unwrap();
    assert!(found.is_some());
    assert!(Path::new(cp.kubeconfig_path()).is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_controller_manager_aggregates_cluster_roles() {
    let cp = ControlPlane::start_with_controllers(&["clusterrole-aggregation"])
        .await
        .unwrap();
    cp.apply_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widget-viewer
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
  - apiGroups: [testenv.example.com]
    resources: [widgets]
    verbs: [get, list, watch]
"#,
    )
    .await
    .unwrap();
    // The built-in `view` role picks the rule up once the controller has run.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rules = cp
            .kubectl_ok(&["get", "clusterrole", "view", "-o=jsonpath={.rules}"])
            .await
            .unwrap();
        if rules.contains("testenv.example.com") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "view was not aggregated; controller-manager log:\n{}",
            cp.controller_manager_log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        ControlPlane::start_with_controllers(&[]).await.is_err(),
        "no controller named"
    );
}
