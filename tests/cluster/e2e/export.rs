//! `spec.export`: the ConfigMap an object publishes for index templates and jobs, against the
//! real API server with the operator's shipped RBAC: owned by the object, written only when its
//! content changes, put back when deleted, never written over when someone else owns it, and
//! removed when the object exports elsewhere or no more.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use super::support::{CONVERGE, DOMAIN, TestEnv, condition, dictionary, is_current, status_of};
use super::{SETTLE, assert_event};

fn config_maps(env: &TestEnv) -> Api<ConfigMap> {
    Api::namespaced(env.client.clone(), &env.ns)
}

/// Waits until ConfigMap `name` exists and `check` holds for it (`None`: absent).
async fn wait_config_map(
    env: &TestEnv,
    name: &str,
    what: &str,
    check: impl Fn(Option<&ConfigMap>) -> bool,
) -> Option<ConfigMap> {
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let cm = config_maps(env).get_opt(name).await.expect("get ConfigMap");
        if check(cm.as_ref()) {
            return cm;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ConfigMap {name}: not {what} after {CONVERGE:?}: {cm:#?}\n--- operator log ---\n{}",
            env.operator_log(40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn data(cm: Option<&ConfigMap>) -> BTreeMap<String, String> {
    cm.and_then(|c| c.data.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_configmap_follows_the_package() {
    let env = TestEnv::start("e2e-export").await;
    env.put_object("export/v1.txt", b"tv, television\n").await;
    env.put_object("export/v2.txt", b"tv, television, telly\n")
        .await;
    let name = "exported";
    let spec = |key: &str, config_map: &str| {
        dictionary(
            name,
            key,
            None,
            &format!(
                "domains:\n  - name: {DOMAIN}\nexport:\n  configMapName: {config_map}\n  keyPrefix: SYN_\n"
            ),
        )
    };
    env.apply(&spec("export/v1.txt", "synonyms-refs")).await;
    let obj = env.wait_ready(name).await;
    let id = status_of(&obj).package_id.clone().expect("id");
    assert_eq!(
        status_of(&obj).exported_config_map_name.as_deref(),
        Some("synonyms-refs")
    );

    let cm = wait_config_map(&env, "synonyms-refs", "at v1", |cm| {
        data(cm).get("SYN_packageVersion").map(String::as_str) == Some("v1")
    })
    .await
    .expect("exists");
    let path = format!("analyzers/{id}");
    let expected: BTreeMap<String, String> = [
        ("SYN_packageID", id.as_str()),
        ("SYN_packageName", name),
        ("SYN_packageType", "TXT-DICTIONARY"),
        ("SYN_packageVersion", "v1"),
        ("SYN_region", "us-east-1"),
        ("SYN_referencePath", path.as_str()),
        ("SYN_referencePath_catalog_prod", path.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(data(Some(&cm)), expected);
    let owners = cm.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].kind, "OpenSearchPackage");
    assert_eq!(owners[0].api_version, "ospkg.dev/v1alpha1");
    assert_eq!(owners[0].name, name);
    assert_eq!(Some(&owners[0].uid), obj.metadata.uid.as_ref());
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(owners[0].block_owner_deletion, Some(true));
    assert_eq!(
        cm.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str),
        Some("opensearch-package-operator")
    );
    assert_event(
        &env,
        name,
        "Normal",
        "Exported",
        "created ConfigMap synonyms-refs",
    )
    .await;

    // Unchanged content is not written again.
    let written = cm.metadata.resource_version.clone();
    env.force_reconcile(name).await;
    tokio::time::sleep(SETTLE).await;
    env.force_reconcile(name).await;
    let cm = config_maps(&env).get("synonyms-refs").await.expect("get");
    assert_eq!(cm.metadata.resource_version, written, "rewritten unchanged");

    // A new version is published once the domain runs it.
    env.apply(&spec("export/v2.txt", "synonyms-refs")).await;
    env.wait_for(name, "Ready at v2", CONVERGE, |o| {
        o.is_some_and(|o| {
            is_current(o)
                && condition(o, "Ready").is_some_and(|c| c.status == "True")
                && status_of(o).available_package_version.as_deref() == Some("v2")
        })
    })
    .await;
    wait_config_map(&env, "synonyms-refs", "at v2", |cm| {
        data(cm).get("SYN_packageVersion").map(String::as_str) == Some("v2")
    })
    .await;
    assert_event(
        &env,
        name,
        "Normal",
        "Exported",
        "updated ConfigMap synonyms-refs",
    )
    .await;

    // Deleted by hand: put back at the next reconcile.
    env.kubectl(&["delete", "configmap", "synonyms-refs"]).await;
    env.force_reconcile(name).await;
    wait_config_map(&env, "synonyms-refs", "put back", |cm| {
        data(cm).get("SYN_packageID") == Some(&id)
    })
    .await;

    // Another name: the new ConfigMap is made and the old one goes.
    env.apply(&spec("export/v2.txt", "synonyms-refs-2")).await;
    wait_config_map(&env, "synonyms-refs-2", "created", |cm| {
        data(cm).get("SYN_packageVersion").map(String::as_str) == Some("v2")
    })
    .await;
    wait_config_map(&env, "synonyms-refs", "deleted", |cm| cm.is_none()).await;

    // No more export: the ConfigMap goes and status forgets it.
    env.apply(&dictionary(
        name,
        "export/v2.txt",
        None,
        &format!("domains:\n  - name: {DOMAIN}\n"),
    ))
    .await;
    wait_config_map(&env, "synonyms-refs-2", "deleted", |cm| cm.is_none()).await;
    let obj = env
        .wait_for(name, "no export recorded", CONVERGE, |o| {
            o.is_some_and(|o| is_current(o) && status_of(o).exported_config_map_name.is_none())
        })
        .await
        .expect("exists");
    assert!(condition(&obj, "Ready").is_some_and(|c| c.status == "True"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_owned_by_someone_else_is_never_overwritten() {
    let env = TestEnv::start("e2e-export-conflict").await;
    env.put_object("conflict/words.txt", b"one\n").await;
    env.kubectl(&[
        "create",
        "configmap",
        "taken",
        "--from-literal=owner=someone-else",
    ])
    .await;
    let name = "wants-taken";
    env.apply(&dictionary(
        name,
        "conflict/words.txt",
        None,
        "export:\n  configMapName: taken\n",
    ))
    .await;
    let obj = env.wait_stalled(name, "ExportConflict").await;
    let stalled = condition(&obj, "Stalled").expect("Stalled");
    assert!(
        stalled.message.contains("taken") && stalled.message.contains("not owned"),
        "{}",
        stalled.message
    );
    assert!(
        status_of(&obj).package_id.is_some(),
        "the package itself is made"
    );
    assert_eq!(
        condition(&obj, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    assert_event(&env, name, "Warning", "ExportConflict", "taken").await;
    tokio::time::sleep(SETTLE).await;
    let cm = config_maps(&env).get("taken").await.expect("get");
    assert_eq!(
        data(Some(&cm)),
        [("owner".to_owned(), "someone-else".to_owned())].into(),
        "the operator wrote over a ConfigMap it does not own"
    );
    assert!(cm.metadata.owner_references.is_none());

    // Once it is out of the way, the export is made and the object is Ready.
    env.kubectl(&["delete", "configmap", "taken"]).await;
    env.force_reconcile(name).await;
    env.wait_ready(name).await;
    let cm = wait_config_map(&env, "taken", "exported", |cm| {
        data(cm).contains_key("packageID")
    })
    .await
    .expect("exists");
    assert!(!data(Some(&cm)).contains_key("owner"));
}
