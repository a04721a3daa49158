//! Tenancy end to end: cluster-scoped OpenSearchPackageRoles bind namespaces to IAM roles in
//! other accounts (assumed through the simulator's STS) and bound what their objects may touch.
//!
//! Roles are cluster-scoped and the control plane is shared with other tests: every role
//! here selects namespaces by a label only this file sets, and only operators that watch a
//! selected namespace check a role.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use ospkg::crd::OpenSearchPackageRole;
use ospkg_sim::{DomainDecl, EntryKind, LogEntry, SimConfig, StsRole};
use serde_json::{Value, json};

use super::support::{
    BUCKET, CONVERGE, DOMAIN, TestEnv, condition, dictionary, fast_durations, shared_control_plane,
    status_of,
};

/// The account of the operator's own identity in the simulator.
const OWN_ACCOUNT: &str = "123456789012";
/// The label the roles of this file select namespaces by.
const LABEL: &str = "e2e.ospkg.dev/tenancy";

fn role_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/ospkg-tenant")
}

/// The domain every test's objects use, declared in `account` too.
fn domain_in(account: &str) -> DomainDecl {
    DomainDecl {
        name: DOMAIN.to_owned(),
        engine_version: "OpenSearch_2.19".to_owned(),
        region: None,
        account: Some(account.to_owned()),
    }
}

/// An OpenSearchPackageRole granting `account`'s role to namespaces labelled `LABEL=value`.
fn role_yaml(name: &str, account: &str, value: &str, grant: &str) -> String {
    format!(
        "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackageRole
metadata:
  name: {name}
spec:
  roleARN: {arn}
  namespaceSelector:
    matchLabels:
      {LABEL}: {value}
{grant}",
        arn = role_arn(account)
    )
}

/// The grant most objects here stay within: the test domain and bucket.
fn usual_grant() -> String {
    format!("  allowedDomains: [\"catalog-*\"]\n  allowedSourceBuckets: [\"{BUCKET}\"]\n")
}

async fn create_labelled(env: &TestEnv, ns: &str, value: Option<&str>) {
    if ns != env.ns {
        env.cp.create_namespace(ns).await.expect("namespace");
    }
    if let Some(value) = value {
        let patch = json!({"metadata": {"labels": {LABEL: value}}});
        Api::<Namespace>::all(env.client.clone())
            .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("label namespace");
    }
}

async fn delete_role(env: &TestEnv, name: &str) {
    env.cp
        .kubectl_ok(&[
            "delete",
            "opensearchpackagerole",
            name,
            "--ignore-not-found",
        ])
        .await
        .expect("delete role");
}

/// Waits until the role's status says `Ready=<status>` with `reason`, for its generation.
async fn wait_role(env: &TestEnv, name: &str, status: &str, reason: &str) -> OpenSearchPackageRole {
    let api = Api::<OpenSearchPackageRole>::all(env.client.clone());
    let deadline = Instant::now() + CONVERGE;
    loop {
        let role = api.get_opt(name).await.expect("get role");
        let ready = role.as_ref().and_then(|r| {
            let s = r.status.as_ref()?;
            let c = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            (s.observed_generation == r.metadata.generation).then_some(c)
        });
        if ready.is_some_and(|c| c.status == status && c.reason == reason) {
            return role.expect("role exists");
        }
        assert!(
            Instant::now() < deadline,
            "role {name}: not Ready={status} ({reason}): {:?}\n--- operator log ---\n{}",
            role.and_then(|r| r.status),
            env.operator_log(40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The simulator's package calls (not STS) made in `account`.
async fn calls_in(env: &TestEnv, account: &str) -> Vec<LogEntry> {
    env.admin()
        .log()
        .await
        .expect("call log")
        .into_iter()
        .filter(|e| e.kind == EntryKind::Call && e.account == account)
        .collect()
}

/// The simulator's custom packages in `account` (not the AWS-owned `G…` plugins), as
/// (name, id).
async fn packages_in(env: &TestEnv, account: &str) -> Vec<(String, String)> {
    let all = env.admin().packages().await.expect("sim packages");
    all["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|scope| scope["account"] == account)
        .flat_map(|scope| scope["packages"].as_array().cloned().unwrap_or_default())
        .map(|p: Value| {
            (
                p["details"]["PackageName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["details"]["PackageID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .filter(|(_, id)| !id.starts_with('G'))
        .collect()
}

fn stall_message(obj: &ospkg::crd::OpenSearchPackage) -> String {
    condition(obj, "Stalled")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_bound_to_roles_in_two_accounts_get_two_packages() {
    const A: &str = "111111111111";
    const B: &str = "222222222222";
    let (ns_a, ns_b) = ("e2e-tenancy-a", "e2e-tenancy-b");
    let mut sim = SimConfig::default()
        .durations(fast_durations())
        .role(StsRole::new(role_arn(A)))
        .role(StsRole::new(role_arn(B)));
    sim.domains.extend([domain_in(A), domain_in(B)]);
    let cp = shared_control_plane().await.expect("control plane");
    let env = TestEnv::without_operator(cp, ns_a, sim).await;
    create_labelled(&env, ns_a, Some("two-accounts-a")).await;
    create_labelled(&env, ns_b, Some("two-accounts-b")).await;
    env.apply(&role_yaml(
        "e2e-tenancy-a",
        A,
        "two-accounts-a",
        &usual_grant(),
    ))
    .await;
    env.apply(&role_yaml(
        "e2e-tenancy-b",
        B,
        "two-accounts-b",
        &usual_grant(),
    ))
    .await;
    let env = env
        .with_operator_args(&[&format!("--namespaces={ns_a},{ns_b}")])
        .await;
    env.put_object("tenancy/synonyms.txt", b"tv, television\n")
        .await;
    let object = dictionary(
        "synonyms",
        "tenancy/synonyms.txt",
        None,
        &format!("domains:\n- name: {DOMAIN}\n"),
    );
    env.apply_in(ns_a, &object).await;
    env.apply_in(ns_b, &object).await;

    let a = env.wait_ready_in(ns_a, "synonyms").await;
    let b = env.wait_ready_in(ns_b, "synonyms").await;
    assert_eq!(status_of(&a).account_id.as_deref(), Some(A));
    assert_eq!(status_of(&b).account_id.as_deref(), Some(B));
    // The same package name in two accounts is two packages, each in its own account.
    let id_a = status_of(&a).package_id.clone().expect("package id a");
    let id_b = status_of(&b).package_id.clone().expect("package id b");
    assert_eq!(
        packages_in(&env, A).await,
        vec![("synonyms".to_owned(), id_a)]
    );
    assert_eq!(
        packages_in(&env, B).await,
        vec![("synonyms".to_owned(), id_b)]
    );
    assert!(packages_in(&env, OWN_ACCOUNT).await.is_empty());

    // Each role says it can be assumed, and names its account.
    for (name, account) in [("e2e-tenancy-a", A), ("e2e-tenancy-b", B)] {
        let role = wait_role(&env, name, "True", "Assumable").await;
        let status = role.status.expect("role status");
        assert_eq!(status.account_id.as_deref(), Some(account));
    }
    // The sessions are named after, and tagged with, the namespace they act for.
    let sessions = env.admin().sts_sessions().await.expect("sts sessions");
    for (ns, account) in [(ns_a, A), (ns_b, B)] {
        let session = sessions
            .iter()
            .find(|s| s.role_session_name == format!("ospkg-{ns}"))
            .unwrap_or_else(|| panic!("no session for {ns}: {sessions:?}"));
        assert_eq!(session.account, account);
        assert_eq!(
            session.tags.get("kubernetes-namespace").map(String::as_str),
            Some(ns)
        );
    }

    for ns in [ns_a, ns_b] {
        env.cp
            .kubectl_ok(&["-n", ns, "delete", "ospkg", "synonyms", "--wait=false"])
            .await
            .expect("delete");
    }
    env.wait_for_in(ns_a, "synonyms", "deleted", CONVERGE, |o| o.is_none())
        .await;
    env.wait_for_in(ns_b, "synonyms", "deleted", CONVERGE, |o| o.is_none())
        .await;
    assert!(packages_in(&env, A).await.is_empty());
    assert!(packages_in(&env, B).await.is_empty());
    delete_role(&env, "e2e-tenancy-a").await;
    delete_role(&env, "e2e-tenancy-b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_stay_within_their_grant_and_refusals_make_no_aws_call() {
    const GRANTED: &str = "333333333333";
    const SHARED: &str = "444444444444";
    const REFUSED: &str = "555555555555";
    let (ns_grant, ns_shared, ns_refused, ns_open) = (
        "e2e-tenancy-grant",
        "e2e-tenancy-ambiguous",
        "e2e-tenancy-refused",
        "e2e-tenancy-open",
    );
    let mut sim = SimConfig::default()
        .durations(fast_durations())
        .role(StsRole::new(role_arn(GRANTED)))
        .role(StsRole::new(role_arn(SHARED)));
    sim.domains
        .extend([domain_in(GRANTED), domain_in(SHARED), domain_in(REFUSED)]);
    let cp = shared_control_plane().await.expect("control plane");
    let env = TestEnv::without_operator(cp, ns_grant, sim).await;
    create_labelled(&env, ns_grant, Some("grant")).await;
    create_labelled(&env, ns_shared, Some("ambiguous")).await;
    create_labelled(&env, ns_refused, Some("refused")).await;
    create_labelled(&env, ns_open, None).await;
    env.apply(&role_yaml(
        "e2e-tenancy-grant",
        GRANTED,
        "grant",
        &usual_grant(),
    ))
    .await;
    for name in ["e2e-tenancy-ambiguous-1", "e2e-tenancy-ambiguous-2"] {
        env.apply(&role_yaml(name, SHARED, "ambiguous", &usual_grant()))
            .await;
    }
    env.apply(&role_yaml(
        "e2e-tenancy-refused",
        REFUSED,
        "refused",
        &usual_grant(),
    ))
    .await;
    let env = env
        .with_operator_args(&[
            &format!("--namespaces={ns_grant},{ns_shared},{ns_refused},{ns_open}"),
            "--role-check-interval=3s",
        ])
        .await;
    env.put_object("tenancy/words.txt", b"a, b\n").await;
    let with = |name: &str, extra: &str| dictionary(name, "tenancy/words.txt", None, extra);

    // Outside the grant: a domain, a bucket, adoption. Stalled, naming the grant, no call.
    env.apply_in(
        ns_grant,
        &with("other-domain", "domains:\n- name: billing\n"),
    )
    .await;
    env.apply_in(
        ns_grant,
        &dictionary("other-bucket", "tenancy/words.txt", None, "").replace(
            &format!("s3BucketName: {BUCKET}"),
            "s3BucketName: elsewhere",
        ),
    )
    .await;
    env.apply_in(ns_grant, &with("adopter", "adoptExisting: true\n"))
        .await;
    for (name, field) in [
        ("other-domain", "spec.domains[0].name \"billing\""),
        ("other-bucket", "spec.source.s3BucketName \"elsewhere\""),
        ("adopter", "spec.adoptExisting"),
    ] {
        let obj = env.wait_stalled_in(ns_grant, name, "NotGranted").await;
        let message = stall_message(&obj);
        assert!(
            message.contains(field) && message.contains("OpenSearchPackageRole e2e-tenancy-grant"),
            "{name}: {message}"
        );
    }
    // Two roles select one namespace: refused, naming both.
    env.apply_in(ns_shared, &with("shared", "")).await;
    let obj = env
        .wait_stalled_in(ns_shared, "shared", "AmbiguousRole")
        .await;
    let message = stall_message(&obj);
    assert!(
        message.contains("e2e-tenancy-ambiguous-1") && message.contains("e2e-tenancy-ambiguous-2"),
        "{message}"
    );
    // A role STS refuses: the role and the object say so.
    env.apply_in(ns_refused, &with("refused", "")).await;
    wait_role(&env, "e2e-tenancy-refused", "False", "AssumeRoleFailed").await;
    env.wait_stalled_in(ns_refused, "refused", "RoleNotAssumable")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for account in [GRANTED, SHARED, REFUSED] {
        let calls = calls_in(&env, account).await;
        assert!(calls.is_empty(), "calls in {account}: {calls:?}");
    }

    // Within the grant, the same object converges in the role's account.
    env.apply_in(
        ns_grant,
        &with("other-domain", &format!("domains:\n- name: {DOMAIN}\n")),
    )
    .await;
    let obj = env.wait_ready_in(ns_grant, "other-domain").await;
    assert_eq!(status_of(&obj).account_id.as_deref(), Some(GRANTED));
    assert_eq!(
        packages_in(&env, GRANTED)
            .await
            .into_iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>(),
        ["other-domain"]
    );
    // Only one role left: the namespace is bound again and its object converges.
    delete_role(&env, "e2e-tenancy-ambiguous-2").await;
    let obj = env.wait_ready_in(ns_shared, "shared").await;
    assert_eq!(status_of(&obj).account_id.as_deref(), Some(SHARED));
    // Ambiguous again after the finalizer went on: an object whose deletion touches nothing
    // in AWS (Retain) still goes at once, without the role it cannot have.
    env.apply_in(ns_shared, &with("kept", "deletionPolicy: Retain\n"))
        .await;
    env.wait_ready_in(ns_shared, "kept").await;
    env.apply(&role_yaml(
        "e2e-tenancy-ambiguous-2",
        SHARED,
        "ambiguous",
        &usual_grant(),
    ))
    .await;
    env.wait_stalled_in(ns_shared, "kept", "AmbiguousRole")
        .await;
    let calls = calls_in(&env, SHARED).await.len();
    env.cp
        .kubectl_ok(&["-n", ns_shared, "delete", "ospkg", "kept", "--wait=false"])
        .await
        .expect("kubectl delete");
    env.wait_for_in(ns_shared, "kept", "deleted", CONVERGE, |o| o.is_none())
        .await;
    assert_eq!(calls_in(&env, SHARED).await.len(), calls, "no AWS call");
    assert_eq!(
        packages_in(&env, SHARED).await.len(),
        2,
        "the kept package stays"
    );
    delete_role(&env, "e2e-tenancy-ambiguous-2").await;
    // The refused role, once allowed, recovers, and so does its object.
    env.admin()
        .allow_role(&StsRole::new(role_arn(REFUSED)))
        .await
        .expect("allow role");
    wait_role(&env, "e2e-tenancy-refused", "True", "Assumable").await;
    let obj = env.wait_ready_in(ns_refused, "refused").await;
    assert_eq!(status_of(&obj).account_id.as_deref(), Some(REFUSED));

    // A namespace no role selects uses the operator's own identity (the default
    // --unbound-namespaces): the same package name is another package, in its own account;
    // the granted account's package is untouched.
    env.apply_in(ns_open, &with("other-domain", "")).await;
    let obj = env.wait_ready_in(ns_open, "other-domain").await;
    assert_eq!(status_of(&obj).account_id.as_deref(), Some(OWN_ACCOUNT));
    assert_eq!(
        packages_in(&env, OWN_ACCOUNT)
            .await
            .into_iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>(),
        ["other-domain"]
    );
    let granted = packages_in(&env, GRANTED).await;
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert!(
        calls_in(&env, GRANTED).await.iter().all(|e| e
            .access_key_id
            .as_deref()
            .is_some_and(|k| k.starts_with("ASIA"))),
        "the granted account was reached without its role"
    );
    for name in [
        "e2e-tenancy-grant",
        "e2e-tenancy-ambiguous-1",
        "e2e-tenancy-refused",
    ] {
        delete_role(&env, name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_cluster_refuses_namespaces_no_role_selects() {
    let ns = "e2e-tenancy-deny";
    let cp = shared_control_plane().await.expect("control plane");
    let env = TestEnv::without_operator(cp, ns, SimConfig::default().durations(fast_durations()))
        .await
        .with_operator_args(&["--unbound-namespaces=deny"])
        .await;
    env.put_object("tenancy/denied.txt", b"a\n").await;
    env.apply(&dictionary("denied", "tenancy/denied.txt", None, ""))
        .await;
    let obj = env.wait_stalled("denied", "NoRole").await;
    assert!(
        stall_message(&obj).contains("no OpenSearchPackageRole selects namespace"),
        "{}",
        stall_message(&obj)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = env.admin().log().await.expect("log");
    assert!(
        log.iter().all(|e| e.kind != EntryKind::Call),
        "a denied namespace reached AWS: {log:?}"
    );
    // Deleting an object that never reached AWS needs no AWS either.
    env.kubectl(&["delete", "ospkg", "denied", "--wait=false"])
        .await;
    env.wait_gone("denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_credentials_are_refreshed_across_their_expiry_without_a_failed_call() {
    const ACCOUNT: &str = "666666666666";
    let ns = "e2e-tenancy-refresh";
    // Sessions of 20 s: the SDK refreshes them 5-10 s before they expire.
    let mut sim = SimConfig::default()
        .durations(fast_durations())
        .role(StsRole::new(role_arn(ACCOUNT)).lifetime_seconds(20));
    sim.domains.push(domain_in(ACCOUNT));
    let cp = shared_control_plane().await.expect("control plane");
    let env = TestEnv::without_operator(cp, ns, sim).await;
    create_labelled(&env, ns, Some("refresh")).await;
    env.apply(&role_yaml(
        "e2e-tenancy-refresh",
        ACCOUNT,
        "refresh",
        &usual_grant(),
    ))
    .await;
    let env = env.with_operator().await;
    env.put_object("tenancy/refresh.txt", b"a\n").await;
    // A new revision every few seconds for well over two session lifetimes: each is an
    // UpdatePackage and the reads around it, signed with whatever session is current.
    let started = Instant::now();
    let mut revision = 0;
    while started.elapsed() < Duration::from_secs(50) {
        revision += 1;
        env.apply(&dictionary(
            "refreshed",
            "tenancy/refresh.txt",
            Some(&revision.to_string()),
            "",
        ))
        .await;
        let obj = env.wait_ready("refreshed").await;
        assert_eq!(status_of(&obj).account_id.as_deref(), Some(ACCOUNT));
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let sessions: Vec<_> = env
        .admin()
        .sts_sessions()
        .await
        .expect("sessions")
        .into_iter()
        .filter(|s| s.role_session_name == format!("ospkg-{ns}"))
        .collect();
    assert!(
        sessions.len() >= 3,
        "expected the session to be renewed across its expiry: {sessions:?}"
    );
    let failed: Vec<LogEntry> = calls_in(&env, ACCOUNT)
        .await
        .into_iter()
        .filter(|e| e.status.is_some_and(|s| s >= 400))
        .collect();
    assert!(failed.is_empty(), "calls failed: {failed:?}");
    let versions = env.sim_versions("refreshed").await;
    assert_eq!(versions.len(), revision, "{versions:?}");
    delete_role(&env, "e2e-tenancy-refresh").await;
}
