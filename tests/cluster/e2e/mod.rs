//! End-to-end tests: the operator binary, with the RBAC the chart ships, against a real
//! kube-apiserver + etcd and the package simulator, driven only through the Kubernetes API.
//!
//! Each test has its own namespace, simulator and operator (watching only that namespace);
//! the API server is shared while tests run, except where a test restarts it.

mod admission;
mod domains;
mod export;
mod ha;
mod observe;
mod observer;
mod source;
mod storm;
mod support;
mod tenancy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ospkg_sim::{FaultConfig, OperationFaults, SimConfig};
use support::{
    DOMAIN, TestEnv, condition, dictionary, fast_durations, start_control_plane, status_of,
};

/// How long "nothing happens" is watched for: longer than the operator's shortest poll (2 s).
const SETTLE: Duration = Duration::from_secs(4);

fn count(calls: &BTreeMap<String, u64>, operation: &str) -> u64 {
    calls.get(operation).copied().unwrap_or(0)
}

/// Asserts the events include one with this type and reason whose message contains `text`.
async fn assert_event(env: &TestEnv, name: &str, type_: &str, reason: &str, text: &str) {
    env.wait_event(name, reason, text).await;
    let events = env.events(name).await;
    assert!(
        events
            .iter()
            .any(|(t, r, m)| t == type_ && r == reason && m.contains(text)),
        "expected a {type_} event {reason} containing {text:?}, got {events:#?}"
    );
}

// ## Create: apply → Ready with v1, every status field filled, printer columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reaches_ready_with_every_status_field() {
    let env = TestEnv::start("e2e-ready").await;
    env.put_object(
        "synonyms/products.txt",
        b"laptop, notebook\nphone, mobile\n",
    )
    .await;
    env.apply(&dictionary(
        "product-synonyms",
        "synonyms/products.txt",
        Some("2026-11-20"),
        &format!(
            "description: Product synonyms\ncommitMessage: First import\ndomains:\n  - name: {DOMAIN}\n"
        ),
    ))
    .await;
    let obj = env.force_reconcile("product-synonyms").await;
    let obj = if support::is_current(&obj)
        && condition(&obj, "Ready").is_some_and(|c| c.status == "True")
    {
        obj
    } else {
        env.wait_ready("product-synonyms").await
    };

    let s = status_of(&obj);
    let id = s.package_id.clone().expect("status.packageID");
    assert!(id.starts_with('F'), "custom package ids start with F: {id}");
    assert_eq!(s.observed_generation, obj.metadata.generation);
    assert_eq!(s.package_name.as_deref(), Some("product-synonyms"));
    assert_eq!(s.package_type.as_deref(), Some("TXT-DICTIONARY"));
    assert_eq!(s.region.as_deref(), Some("us-east-1"));
    assert_eq!(
        s.package_status.as_ref().map(|s| s.as_str()),
        Some("AVAILABLE")
    );
    assert_eq!(s.available_package_version.as_deref(), Some("v1"));
    assert_eq!(s.error_details, None);
    for (field, value) in [
        ("createdAt", &s.created_at),
        ("lastUpdatedAt", &s.last_updated_at),
    ] {
        let value = value
            .as_deref()
            .unwrap_or_else(|| panic!("status.{field} is empty"));
        value
            .parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("status.{field} {value:?} is not RFC 3339: {e}"));
    }
    assert!(
        s.applied_digest.as_deref().is_some_and(|d| !d.is_empty()),
        "status.appliedDigest is empty"
    );
    assert_eq!(s.version_history.len(), 1, "{:?}", s.version_history);
    assert_eq!(s.version_history[0].package_version, "v1");
    assert!(s.version_history[0].created_at.is_some());
    assert_eq!(s.domains.len(), 1, "{:?}", s.domains);
    let domain = &s.domains[0];
    assert_eq!(domain.domain_name, DOMAIN);
    assert_eq!(
        domain.domain_package_status.as_ref().map(|s| s.as_str()),
        Some("ACTIVE")
    );
    assert_eq!(domain.package_version.as_deref(), Some("v1"));
    assert_eq!(
        domain.reference_path.as_deref(),
        Some(format!("analyzers/{id}").as_str())
    );
    assert!(domain.last_updated.is_some());
    assert!(s.last_handled_reconcile_at.is_some());
    assert_eq!(s.in_flight, None);

    let ready = condition(&obj, "Ready").expect("Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Available")
    );
    assert_eq!(ready.observed_generation, obj.metadata.generation);
    for other in ["Reconciling", "Stalled"] {
        assert!(
            condition(&obj, other).is_none_or(|c| c.status == "False"),
            "{other} must not be True on a Ready object: {:?}",
            obj.status
        );
    }
    assert!(
        obj.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "ospkg.dev/finalizer")
    );

    let calls = env.calls().await;
    assert_eq!(count(&calls, "CreatePackage"), 1, "{calls:?}");
    assert_eq!(count(&calls, "UpdatePackage"), 0, "{calls:?}");
    assert_eq!(count(&calls, "AssociatePackage"), 1, "{calls:?}");
    assert_eq!(env.sim_versions("product-synonyms").await, ["v1"]);

    assert_event(&env, "product-synonyms", "Normal", "Created", &id).await;
    assert_event(&env, "product-synonyms", "Normal", "Associating", DOMAIN).await;
    assert_event(&env, "product-synonyms", "Normal", "Ready", "v1").await;

    let table = env.kubectl(&["get", "ospkg", "product-synonyms"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("header")
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "PACKAGE ID",
            "STATUS",
            "VERSION",
            "READY",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        row[..6],
        [
            "product-synonyms",
            "TXT-DICTIONARY",
            id.as_str(),
            "AVAILABLE",
            "v1",
            "True"
        ],
        "{table}"
    );
    // The short name and the categories work too.
    let by_category = env.kubectl(&["get", "opensearch", "-o", "name"]).await;
    assert!(
        by_category.contains("opensearchpackage.ospkg.dev/product-synonyms"),
        "{by_category}"
    );

    let operator = env.operator.as_ref().expect("operator");
    let (code, body) = operator.http_get("/readyz").await.expect("GET /readyz");
    assert_eq!(code, 200, "/readyz: {body}");
    let (code, metrics) = operator.http_get("/metrics").await.expect("GET /metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("CreatePackage"),
        "AWS calls are counted: {metrics}"
    );

    env.capture_fixture(
        "product-synonyms",
        "ready.yaml",
        "Ready: AVAILABLE at v1 and ACTIVE on its domain.",
    )
    .await;
}

/// Applies `yaml` and waits until the object is Ready at `version`.
async fn expect_version(env: &TestEnv, name: &str, yaml: &str, version: &str) {
    env.apply(yaml).await;
    env.wait_for(
        name,
        &format!("Ready at {version}"),
        support::CONVERGE,
        |o| {
            o.is_some_and(|o| {
                support::is_current(o)
                    && condition(o, "Ready").is_some_and(|c| c.status == "True")
                    && o.status
                        .as_ref()
                        .and_then(|s| s.available_package_version.as_deref())
                        == Some(version)
            })
        },
    )
    .await;
}

// ## Update: each update-relevant field makes exactly one new version; commitMessage alone none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_relevant_fields_each_make_one_version() {
    let env = TestEnv::start("e2e-versions").await;
    let name = "stopwords";
    env.put_object("stop/v1.txt", b"a\nan\nthe\n").await;
    env.put_object("stop/v2.txt", b"a\nan\nthe\nof\n").await;

    let spec = |key: &str, revision: &str, extra: &str| {
        dictionary(
            name,
            key,
            Some(revision),
            &format!("commitMessage: step {revision}\n{extra}"),
        )
    };
    // configuration is for ZIP-PLUGIN packages only: tests/hermetic/plan.rs covers its digest.
    let encryption = "encryption:\n  enabled: true\n  kmsKeyIdentifier: alias/e2e-packages\n";
    let description = "description: English stop words\n";

    expect_version(&env, name, &spec("stop/v1.txt", "1", ""), "v1").await;
    let steps: [(&str, String); 4] = [
        ("s3Key", spec("stop/v2.txt", "1", "")),
        ("encryption", spec("stop/v2.txt", "1", encryption)),
        (
            "description",
            spec("stop/v2.txt", "1", &format!("{encryption}{description}")),
        ),
        (
            "revision",
            spec("stop/v2.txt", "2", &format!("{encryption}{description}")),
        ),
    ];
    let mut last_yaml = String::new();
    for (i, (field, yaml)) in steps.iter().enumerate() {
        let version = format!("v{}", i + 2);
        expect_version(&env, name, yaml, &version).await;
        let calls = env.calls().await;
        assert_eq!(
            count(&calls, "UpdatePackage"),
            i as u64 + 1,
            "changing {field} must call UpdatePackage exactly once: {calls:?}"
        );
        let obj = env.get(name).await.expect("exists");
        let history = &status_of(&obj).version_history;
        assert_eq!(history[0].package_version, version, "{history:?}");
        let message = history[0].commit_message.as_deref().unwrap_or_default();
        assert!(
            message.contains("step ") && message.contains("[ospkg:"),
            "the version made for {field} carries the commit message and the marker: {message:?}"
        );
        assert_eq!(history.len(), i + 2, "{history:?}");
        last_yaml = yaml.clone();
    }
    assert_eq!(env.sim_versions(name).await, ["v5", "v4", "v3", "v2", "v1"]);
    assert_event(&env, name, "Normal", "Updated", "new version").await;

    // commitMessage alone: a new generation, Ready again, and no call that changes anything.
    let before = env.calls().await;
    let before_obj = env.get(name).await.expect("exists");
    let yaml = last_yaml.replace(
        "commitMessage: step 2",
        "commitMessage: only the message changed",
    );
    env.apply(&yaml).await;
    let obj = env.wait_ready(name).await;
    assert!(obj.metadata.generation > before_obj.metadata.generation);
    env.force_reconcile(name).await;
    tokio::time::sleep(SETTLE).await;
    let obj = env.force_reconcile(name).await;
    let after = env.calls().await;
    for operation in [
        "CreatePackage",
        "UpdatePackage",
        "AssociatePackage",
        "DeletePackage",
    ] {
        assert_eq!(
            count(&before, operation),
            count(&after, operation),
            "{operation} was called after a commitMessage-only change: {before:?} -> {after:?}"
        );
    }
    let s = status_of(&obj);
    assert_eq!(s.available_package_version.as_deref(), Some("v5"));
    assert_eq!(s.applied_digest, status_of(&before_obj).applied_digest);
    assert_eq!(env.sim_versions(name).await.len(), 5);
    assert!(condition(&obj, "Ready").is_some_and(|c| c.status == "True"));
}

// ## Failed import: a missing S3 object → Stalled (CopyFailed) with errorDetails; fixing it → Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_stalls_until_the_source_changes() {
    let env = TestEnv::start("e2e-copy-failed").await;
    let name = "brand-names";
    let key = "brands/names.txt";
    env.apply(&dictionary(name, key, Some("1"), "")).await;

    let obj = env.wait_stalled(name, "CopyFailed").await;
    let s = status_of(&obj);
    assert_eq!(
        s.package_status.as_ref().map(|s| s.as_str()),
        Some("COPY_FAILED")
    );
    let details = s.error_details.clone().expect("status.errorDetails");
    assert!(details.error_type.is_some(), "{details:?}");
    assert!(
        details
            .error_message
            .as_deref()
            .is_some_and(|m| !m.is_empty()),
        "{details:?}"
    );
    let stalled = condition(&obj, "Stalled").expect("Stalled");
    assert!(
        stalled.message.contains("spec.source"),
        "the message says what to fix: {}",
        stalled.message
    );
    let ready = condition(&obj, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Failed")
    );
    assert!(condition(&obj, "Reconciling").is_none_or(|c| c.status == "False"));
    assert_event(&env, name, "Warning", "CopyFailed", "").await;
    env.capture_fixture(
        name,
        "copy-failed.yaml",
        "Stalled: the S3 object was missing (COPY_FAILED).",
    )
    .await;

    // Nothing is retried until the spec changes, even when asked to reconcile.
    let before = env.calls().await;
    env.force_reconcile(name).await;
    tokio::time::sleep(SETTLE).await;
    let obj = env.force_reconcile(name).await;
    let after = env.calls().await;
    assert_eq!(count(&after, "CreatePackage"), 1, "{after:?}");
    assert_eq!(
        count(&before, "UpdatePackage"),
        count(&after, "UpdatePackage")
    );
    assert!(condition(&obj, "Stalled").is_some_and(|c| c.status == "True"));

    // Upload the object under the same key and bump the revision: one update, Ready.
    env.put_object(key, b"acme\nglobex\n").await;
    env.apply(&dictionary(name, key, Some("2"), "")).await;
    let obj = env.wait_ready(name).await;
    let s = status_of(&obj);
    assert_eq!(
        s.package_status.as_ref().map(|s| s.as_str()),
        Some("AVAILABLE")
    );
    assert_eq!(s.error_details, None);
    assert!(s.available_package_version.is_some());
    assert!(condition(&obj, "Stalled").is_none_or(|c| c.status == "False"));
    let calls = env.calls().await;
    assert_eq!(count(&calls, "UpdatePackage"), 1, "{calls:?}");
    assert_event(&env, name, "Normal", "Ready", "").await;
}

// ## Crash during an update: SIGKILL after UpdatePackage took effect and before status was written → exactly one
// new version after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_update_makes_exactly_one_version() {
    let mut env = TestEnv::start("e2e-crash").await;
    let name = "crash-synonyms";
    env.put_object("crash/v1.txt", b"tv, television\n").await;
    env.put_object("crash/v2.txt", b"tv, television, telly\n")
        .await;
    expect_version(
        &env,
        name,
        &dictionary(name, "crash/v1.txt", None, ""),
        "v1",
    )
    .await;
    let applied_before = status_of(&env.get(name).await.expect("exists"))
        .applied_digest
        .clone();

    // The service takes the update, then holds its answer while the operator waits.
    let mut faults = FaultConfig::default();
    faults.operations.insert(
        "UpdatePackage".to_owned(),
        OperationFaults {
            hold_response_ms: 120_000,
            ..OperationFaults::default()
        },
    );
    env.set_faults(&faults).await;
    env.apply(&dictionary(
        name,
        "crash/v2.txt",
        None,
        "commitMessage: telly\n",
    ))
    .await;
    let deadline = std::time::Instant::now() + support::CONVERGE;
    while count(&env.calls().await, "UpdatePackage") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "UpdatePackage was never called; operator log:\n{}",
            env.operator_log(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.operator().kill();
    let obj = env.get(name).await.expect("exists");
    assert_eq!(
        status_of(&obj).applied_digest,
        applied_before,
        "the operator wrote status before the update answered; the crash window was missed"
    );

    env.set_faults(&FaultConfig::default()).await;
    env.operator().restart();
    let obj = env.wait_ready(name).await;
    let s = status_of(&obj);
    assert_eq!(s.available_package_version.as_deref(), Some("v2"));
    assert_ne!(s.applied_digest, applied_before);
    assert_eq!(env.sim_versions(name).await, ["v2", "v1"]);
    let calls = env.calls().await;
    assert_eq!(
        count(&calls, "UpdatePackage"),
        1,
        "UpdatePackage must be called exactly once across the crash: {calls:?}"
    );
    assert_eq!(s.version_history.len(), 2, "{:?}", s.version_history);
    assert!(
        s.version_history[0]
            .commit_message
            .as_deref()
            .is_some_and(|m| m.starts_with("telly [ospkg:")),
        "{:?}",
        s.version_history
    );
    // The update intent written before the call is resolved from what the package shows.
    assert_event(&env, name, "Normal", "Updated", "took effect").await;

    // And it stays that way.
    tokio::time::sleep(SETTLE).await;
    env.force_reconcile(name).await;
    assert_eq!(count(&env.calls().await, "UpdatePackage"), 1);
}

// ## Deletion: deletionPolicy Delete removes the package (after dissociating); Retain keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policies() {
    let env = TestEnv::start("e2e-delete").await;
    env.put_object("del/words.txt", b"one\ntwo\n").await;
    let domains = format!("domains:\n  - name: {DOMAIN}\n");
    env.apply(&dictionary(
        "doomed",
        "del/words.txt",
        None,
        &format!("deletionPolicy: Delete\n{domains}"),
    ))
    .await;
    env.apply(&dictionary(
        "kept",
        "del/words.txt",
        None,
        &format!("deletionPolicy: Retain\n{domains}"),
    ))
    .await;
    let doomed = env.wait_ready("doomed").await;
    let kept = env.wait_ready("kept").await;
    let doomed_id = status_of(&doomed).package_id.clone().expect("id");
    let kept_id = status_of(&kept).package_id.clone().expect("id");

    env.kubectl(&["delete", "ospkg", "doomed", "--wait=false"])
        .await;
    env.wait_gone("doomed").await;
    let deadline = std::time::Instant::now() + support::CONVERGE;
    while env.sim_package("doomed").await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "package {doomed_id} still in the simulator: {:?}",
            env.sim_package("doomed").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let calls = env.calls().await;
    assert_eq!(count(&calls, "DissociatePackage"), 1, "{calls:?}");
    assert_eq!(count(&calls, "DeletePackage"), 1, "{calls:?}");
    assert_event(&env, "doomed", "Normal", "Deleted", &doomed_id).await;

    env.kubectl(&["delete", "ospkg", "kept", "--wait=false"])
        .await;
    env.wait_gone("kept").await;
    tokio::time::sleep(SETTLE).await;
    let package = env.sim_package("kept").await.expect("retained package");
    assert_eq!(package["details"]["PackageID"], kept_id.as_str());
    assert_eq!(package["details"]["PackageStatus"], "AVAILABLE");
    let calls = env.calls().await;
    assert_eq!(count(&calls, "DissociatePackage"), 1, "{calls:?}");
    assert_eq!(count(&calls, "DeletePackage"), 1, "{calls:?}");
}

// ## Name conflict: two objects naming the same package: the later one Stalled (NameConflict), no calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_object_for_a_package_name_is_stalled() {
    let env = TestEnv::start("e2e-conflict").await;
    env.put_object("shared/words.txt", b"alpha\nbeta\n").await;
    let shared = "packageName: shared-words\n";
    env.apply(&dictionary("owner", "shared/words.txt", None, shared))
        .await;
    let owner = env.wait_ready("owner").await;
    let owner_id = status_of(&owner).package_id.clone().expect("id");
    let before = env.calls().await;

    env.apply(&dictionary(
        "intruder",
        "shared/words.txt",
        Some("other"),
        &format!("{shared}description: tries to take over\n"),
    ))
    .await;
    let intruder = env.wait_stalled("intruder", "NameConflict").await;
    let stalled = condition(&intruder, "Stalled").expect("Stalled");
    assert!(
        stalled.message.contains("e2e-conflict/owner"),
        "the message names the owner: {}",
        stalled.message
    );
    assert_eq!(status_of(&intruder).package_id, None);
    assert_event(
        &env,
        "intruder",
        "Warning",
        "NameConflict",
        "e2e-conflict/owner",
    )
    .await;
    env.capture_fixture(
        "intruder",
        "name-conflict.yaml",
        "Stalled: another object already manages this package name.",
    )
    .await;

    env.force_reconcile("intruder").await;
    tokio::time::sleep(SETTLE).await;
    env.force_reconcile("intruder").await;
    let after = env.calls().await;
    for operation in [
        "CreatePackage",
        "UpdatePackage",
        "AssociatePackage",
        "DissociatePackage",
        "DeletePackage",
        "UpdatePackageScope",
    ] {
        assert_eq!(
            count(&before, operation),
            count(&after, operation),
            "{operation} was called for the conflicting object: {before:?} -> {after:?}"
        );
    }

    // Deleting the intruder (policy Delete) must not delete the owner's package.
    env.kubectl(&["delete", "ospkg", "intruder", "--wait=false"])
        .await;
    env.wait_gone("intruder").await;
    let owner = env.force_reconcile("owner").await;
    assert_eq!(
        status_of(&owner).package_id.as_deref(),
        Some(owner_id.as_str())
    );
    assert!(condition(&owner, "Ready").is_some_and(|c| c.status == "True"));
    let calls = env.calls().await;
    assert_eq!(count(&calls, "DeletePackage"), 0, "{calls:?}");
    assert!(env.sim_package("shared-words").await.is_some());
}

// ## API server restart: the API server restarted under a running operator: it recovers on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_survives_an_api_server_restart() {
    let cp = Arc::new(start_control_plane().await.expect("control plane"));
    let mut env = TestEnv::start_with(
        cp,
        "e2e-apiserver-restart",
        SimConfig::default().durations(fast_durations()),
    )
    .await;
    let name = "restart-words";
    env.put_object("restart/v1.txt", b"one\n").await;
    env.put_object("restart/v2.txt", b"one\ntwo\n").await;
    expect_version(
        &env,
        name,
        &dictionary(name, "restart/v1.txt", None, ""),
        "v1",
    )
    .await;
    let pid = env.operator().pid();

    Arc::get_mut(&mut env.cp)
        .expect("this test's control plane is its own")
        .restart_apiserver()
        .await
        .expect("restart kube-apiserver");

    expect_version(
        &env,
        name,
        &dictionary(name, "restart/v2.txt", None, ""),
        "v2",
    )
    .await;
    assert_eq!(
        env.operator().exit_status(),
        None,
        "the operator exited; log:\n{}",
        env.operator_log(40)
    );
    assert_eq!(env.operator().pid(), pid);
    assert_eq!(count(&env.calls().await, "UpdatePackage"), 1);
    // Status writes and events work on the new server too.
    env.force_reconcile(name).await;
}

// The remaining states the delivery tests (kstatus, Argo CD health) read as fixtures:
// copying, stalled on validation failure, suspended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_validation_failure_and_suspend() {
    let cp = support::shared_control_plane()
        .await
        .expect("control plane");
    let env = TestEnv::start_with(
        cp,
        "e2e-states",
        SimConfig::default()
            .durations(fast_durations())
            .manual_clock(),
    )
    .await;
    env.put_object("states/good.txt", b"good\n").await;
    env.put_object("states/latin1.txt", b"caf\xe9\n").await;

    // The simulator's clock stands still: the package stays COPYING.
    env.apply(&dictionary("copying", "states/good.txt", None, ""))
        .await;
    let obj = env
        .wait_for("copying", "COPYING", support::CONVERGE, |o| {
            o.is_some_and(|o| {
                support::is_current(o)
                    && o.status
                        .as_ref()
                        .and_then(|s| s.package_status.as_ref().map(|s| s.as_str()))
                        == Some("COPYING")
                    && condition(o, "Reconciling").is_some_and(|c| c.status == "True")
            })
        })
        .await
        .expect("exists");
    assert_eq!(
        condition(&obj, "Reconciling").expect("Reconciling").reason,
        "Copying"
    );
    assert_eq!(condition(&obj, "Ready").expect("Ready").status, "False");
    env.capture_fixture(
        "copying",
        "copying.yaml",
        "Reconciling: the package is COPYING from S3.",
    )
    .await;

    env.apply(&dictionary("not-utf8", "states/latin1.txt", None, ""))
        .await;
    env.wait_for("not-utf8", "created", support::CONVERGE, |o| {
        o.and_then(|o| o.status.as_ref())
            .is_some_and(|s| s.package_id.is_some())
    })
    .await;
    env.admin()
        .advance_clock(5_000)
        .await
        .expect("advance clock");
    env.wait_ready("copying").await;
    let obj = env.wait_stalled("not-utf8", "ValidationFailed").await;
    let s = status_of(&obj);
    assert_eq!(
        s.package_status.as_ref().map(|s| s.as_str()),
        Some("VALIDATION_FAILED")
    );
    assert!(s.error_details.is_some(), "{s:?}");
    assert_event(&env, "not-utf8", "Warning", "ValidationFailed", "").await;
    env.capture_fixture(
        "not-utf8",
        "validation-failed.yaml",
        "Stalled: the dictionary is not UTF-8 text (VALIDATION_FAILED).",
    )
    .await;

    // Suspend a Ready object and change it in the same edit: the change is seen
    // (observedGeneration) but not applied, and the conditions stay exactly as they were, so a
    // GitOps wait on it passes (kstatus Current) instead of hanging.
    env.apply(&dictionary("paused", "states/good.txt", None, ""))
        .await;
    env.wait_for("paused", "created", support::CONVERGE, |o| {
        o.and_then(|o| o.status.as_ref())
            .is_some_and(|s| s.package_id.is_some())
    })
    .await;
    env.admin()
        .advance_clock(5_000)
        .await
        .expect("advance clock");
    let ready = env.wait_ready("paused").await;
    let before = env.calls().await;
    env.apply(&dictionary(
        "paused",
        "states/good.txt",
        Some("2"),
        "suspend: true\n",
    ))
    .await;
    let obj = env
        .wait_for(
            "paused",
            "the suspended generation seen",
            support::CONVERGE,
            |o| o.is_some_and(|o| o.spec.suspend && support::is_current(o)),
        )
        .await
        .expect("exists");
    assert_eq!(
        status_of(&obj).conditions,
        status_of(&ready).conditions,
        "suspending changed the conditions"
    );
    let kept = condition(&obj, "Ready").expect("Ready");
    assert_eq!(
        (kept.status.as_str(), kept.reason.as_str()),
        ("True", "Available")
    );
    assert!(kept.observed_generation < obj.metadata.generation);
    assert_event(
        &env,
        "paused",
        "Normal",
        "Suspended",
        "changes nothing in AWS",
    )
    .await;
    let file = env.dir.path().join("paused.yaml");
    let mut live = serde_json::to_value(&obj).expect("serialize");
    live["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("managedFields");
    std::fs::write(&file, serde_yaml::to_string(&live).expect("yaml")).expect("write");
    let (kstatus, message) = crate::kstatus::status_of_file(&file);
    assert_eq!(kstatus, "Current", "kstatus: {kstatus} {message}");
    tokio::time::sleep(SETTLE).await;
    env.force_reconcile("paused").await;
    let after = env.calls().await;
    for operation in [
        "CreatePackage",
        "UpdatePackage",
        "AssociatePackage",
        "DeletePackage",
    ] {
        assert_eq!(
            count(&before, operation),
            count(&after, operation),
            "{operation} was called while suspended"
        );
    }
    env.capture_fixture(
        "paused",
        "suspended.yaml",
        "Suspended (after a change): the conditions are kept from before the suspension.",
    )
    .await;
}
