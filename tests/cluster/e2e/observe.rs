//! `managementPolicy: Observe` end to end: an object tracks a package made outside the cluster
//! (status, versions, associations, export) while the operator's own calls in the simulator's
//! log are reads only; deleting the object leaves the package; a missing package stalls with
//! a clear condition until it appears.

use ospkg::backend::aws::AwsBackend;
use ospkg::backend::{AssociatePackage, PackageBackend};

use super::support;
use super::support::own_scope;
use super::support::{CONVERGE, DOMAIN, TestEnv, access_key, condition, status_of};
use super::{SETTLE, assert_event};

const REGION: &str = "us-east-1";

fn observer(name: &str, package_name: &str, extra: &str) -> String {
    format!(
        "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackage
metadata:
  name: {name}
spec:
  packageType: TXT-DICTIONARY
  managementPolicy: Observe
  packageName: {package_name}
{extra}"
    )
}

/// Creates a package as someone outside the cluster would (with its own credentials).
async fn create_outside(env: &TestEnv, name: &str, key: &str) -> String {
    env.put_object(key, b"tv, television\n").await;
    support::create_outside(env, REGION, name, key, Some("made by another team")).await
}

/// The operator's calls (signed with its access key) that change something.
async fn operator_changes(env: &TestEnv) -> Vec<String> {
    let log = env.admin().log().await.expect("call log");
    log.into_iter()
        .filter(|e| e.kind == ospkg_sim::EntryKind::Call)
        .filter(|e| e.access_key_id.as_deref() == Some(access_key("a").as_str()))
        .filter_map(|e| e.operation)
        .filter(|op| {
            !matches!(
                op.as_str(),
                "DescribePackages" | "GetPackageVersionHistory" | "ListDomainsForPackage"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_tracks_a_package_it_does_not_own_and_changes_nothing() {
    let env = TestEnv::start("e2e-observe").await;
    let id = create_outside(&env, "team-synonyms", "observe/team.txt").await;
    let backend = AwsBackend::for_endpoint(&env.sim.endpoint()).await;
    // Wait for the import (the simulator's fast durations) before associating.
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let result = backend
            .associate_package(
                &own_scope(REGION),
                AssociatePackage {
                    package_id: id.clone(),
                    domain_name: DOMAIN.to_owned(),
                    prerequisites: Vec::new(),
                    key_store_access: None,
                },
            )
            .await;
        if result.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{result:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let name = "watch-synonyms";
    env.apply(&observer(
        name,
        "team-synonyms",
        "  export:\n    configMapName: team-synonyms\n",
    ))
    .await;
    let obj = env
        .wait_for(name, "Ready with the domain ACTIVE", CONVERGE, |o| {
            o.is_some_and(|o| {
                super::support::is_current(o)
                    && condition(o, "Ready").is_some_and(|c| c.status == "True")
                    && status_of(o).domains.iter().any(|d| {
                        d.domain_package_status.as_ref().map(|s| s.as_str()) == Some("ACTIVE")
                    })
            })
        })
        .await
        .expect("exists");
    let s = status_of(&obj);
    assert_eq!(s.package_id.as_deref(), Some(id.as_str()));
    assert_eq!(s.available_package_version.as_deref(), Some("v1"));
    assert_eq!(s.version_history.len(), 1);
    assert_eq!(s.domains.len(), 1);
    assert_eq!(
        s.domains[0].reference_path.as_deref(),
        Some(format!("analyzers/{id}").as_str())
    );
    assert!(s.domains[0].unmanaged);
    assert_eq!(s.applied_digest, None);
    assert_event(&env, name, "Normal", "Observing", &id).await;
    // No finalizer work against AWS, but a finalizer (the object's metrics go with it).
    assert!(
        obj.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "ospkg.dev/finalizer")
    );

    // The export works for an observed package too.
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    let cm = cms.get("team-synonyms").await.expect("export ConfigMap");
    assert_eq!(cm.data.as_ref().and_then(|d| d.get("packageID")), Some(&id));

    // The observer owns no name: a managing object for the same package is refused as
    // "exists, not adopted", not as a name conflict with the observer.
    env.put_object("observe/mine.txt", b"mine\n").await;
    env.apply(&super::support::dictionary(
        "would-manage",
        "observe/mine.txt",
        None,
        "packageName: team-synonyms\n",
    ))
    .await;
    env.wait_stalled("would-manage", "AlreadyExists").await;
    env.kubectl(&["delete", "ospkg", "would-manage", "--wait=false"])
        .await;
    env.wait_gone("would-manage").await;

    // Deleting the observer (deletionPolicy defaults to Delete) leaves the package.
    env.kubectl(&["delete", "ospkg", name, "--wait=false"])
        .await;
    env.wait_gone(name).await;
    tokio::time::sleep(SETTLE).await;
    let package = env
        .sim_package("team-synonyms")
        .await
        .expect("package kept");
    assert_eq!(package["details"]["PackageStatus"], "AVAILABLE");
    assert_eq!(
        operator_changes(&env).await,
        Vec::<String>::new(),
        "the operator changed something for an observer"
    );
    let calls = env.calls().await;
    assert_eq!(calls.get("DeletePackage"), None, "{calls:?}");
    assert_eq!(calls.get("DissociatePackage"), None, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_of_a_missing_package_says_so_until_it_appears() {
    let env = TestEnv::start("e2e-observe-missing").await;
    let name = "watch-later";
    env.apply(&observer(name, "not-yet-there", "")).await;
    let obj = env.wait_stalled(name, "PackageNotFound").await;
    let stalled = condition(&obj, "Stalled").expect("Stalled");
    assert!(
        stalled.message.contains("not-yet-there") && stalled.message.contains("never creates"),
        "{}",
        stalled.message
    );
    let ready = condition(&obj, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Failed")
    );
    assert_event(&env, name, "Warning", "PackageNotFound", "not-yet-there").await;
    assert_eq!(operator_changes(&env).await, Vec::<String>::new());

    let id = create_outside(&env, "not-yet-there", "observe/later.txt").await;
    env.force_reconcile(name).await;
    let obj = env.wait_ready(name).await;
    assert_eq!(status_of(&obj).package_id.as_deref(), Some(id.as_str()));
    assert_eq!(operator_changes(&env).await, Vec::<String>::new());
}
