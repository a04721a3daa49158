//! Following the S3 object end to end: the operator binary (reading the simulator's S3 through
//! `AWS_ENDPOINT_URL_S3`, as a user points it at an S3-compatible endpoint) re-imports an
//! overwritten file within one check interval, exactly once; an identical upload imports
//! nothing; overwrites during an import end with the last content AVAILABLE; a missing or
//! denied object stalls and recovers by itself; an object that does not follow costs no S3
//! call at all.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ospkg::crd::OpenSearchPackage;
use ospkg_sim::{BucketSettings, ClockSettings, Durations};
use serde_json::Value;

use super::support::{BUCKET, CONVERGE, TestEnv, condition, is_current, status_of};
use super::{assert_event, count};

/// The check interval the tests run the operator with.
const CHECK: Duration = Duration::from_secs(3);
/// Time a check may come late on a busy machine (requeue timers, the reconcile itself).
const SLACK: Duration = Duration::from_secs(3);

fn flags() -> [&'static str; 1] {
    ["--source-check-interval=3s"]
}

/// A TXT-DICTIONARY reading `key` from [`BUCKET`], following it when `follow` says so.
fn followed(name: &str, key: &str, follow: Option<bool>) -> String {
    let follow = follow
        .map(|f| format!("    followContent: {f}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackage
metadata:
  name: {name}
spec:
  packageType: TXT-DICTIONARY
  commitMessage: Synonyms from S3
  source:
    s3BucketName: {BUCKET}
    s3Key: {key}
{follow}"
    )
}

fn source_etag(obj: &OpenSearchPackage) -> Option<String> {
    obj.status.as_ref()?.source.as_ref().map(|s| s.etag.clone())
}

/// Ready at its generation, with status naming `etag` as the file imported.
async fn wait_ready_at(env: &TestEnv, name: &str, etag: &str) -> OpenSearchPackage {
    env.wait_for(name, &format!("Ready at {etag}"), CONVERGE, |o| {
        o.is_some_and(|o| {
            is_current(o)
                && condition(o, "Ready").is_some_and(|c| c.status == "True")
                && source_etag(o).as_deref() == Some(etag)
        })
    })
    .await
    .expect("exists")
}

/// The simulator's imports of package `name`: (version, ETag, status), oldest first.
async fn imports(env: &TestEnv, name: &str) -> Vec<(Option<String>, String, String)> {
    let package = env
        .sim_package(name)
        .await
        .expect("package in the simulator");
    package["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r: &Value| {
            (
                r["version"].as_str().map(str::to_owned),
                r["etag"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn calls(env: &TestEnv, operation: &str) -> u64 {
    count(&env.calls().await, operation)
}

/// Waits until the simulator has seen `n` calls of `operation`; returns how long it took.
async fn wait_calls(env: &TestEnv, operation: &str, n: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if calls(env, operation).await >= n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{operation} was not called {n} times within {within:?}: {:?}\n{}",
            env.calls().await,
            env.operator_log(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ## Must show 1: an overwrite imports one version within a check interval; identical bytes
// import none; overwrites during an import end with the last content AVAILABLE, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwritten_file_is_imported_once_within_a_check_interval() {
    let env = TestEnv::start_with_flags("e2e-follow", &flags()).await;
    let name = "followed-synonyms";
    let key = "synonyms/followed.txt";
    let admin = env.admin();
    let first = admin
        .put_object(BUCKET, key, b"tv, television\n".to_vec())
        .await
        .expect("put");
    env.apply(&followed(name, key, Some(true))).await;
    let obj = wait_ready_at(&env, name, &first).await;
    assert_eq!(
        status_of(&obj).available_package_version.as_deref(),
        Some("v1")
    );
    assert!(
        status_of(&obj)
            .source
            .as_ref()
            .and_then(|s| s.last_modified.clone())
            .is_some(),
        "{:?}",
        status_of(&obj).source
    );

    // An overwrite: one UpdatePackage within one check interval, Ready at the new version.
    let before = calls(&env, "UpdatePackage").await;
    let second = admin
        .put_object(BUCKET, key, b"tv, television, telly\n".to_vec())
        .await
        .expect("overwrite");
    let took = wait_calls(&env, "UpdatePackage", before + 1, CONVERGE).await;
    assert!(
        took <= CHECK + SLACK,
        "the new file was imported {took:?} after the overwrite; the check interval is {CHECK:?}"
    );
    let obj = wait_ready_at(&env, name, &second).await;
    let status = status_of(&obj);
    assert_eq!(status.available_package_version.as_deref(), Some("v2"));
    let short: String = second.trim_matches('"').chars().take(8).collect();
    let newest = status.version_history[0]
        .commit_message
        .clone()
        .unwrap_or_default();
    assert!(
        newest.starts_with(&format!("Synonyms from S3 [s3 etag:{short}] [ospkg:")),
        "{newest}"
    );
    assert_eq!(calls(&env, "UpdatePackage").await, before + 1);
    assert_event(&env, name, "Normal", "Updated", "importing a new version").await;

    // The same bytes again: the checks go on, no version is made.
    let heads = calls(&env, "HeadObject").await;
    admin
        .put_object(BUCKET, key, b"tv, television, telly\n".to_vec())
        .await
        .expect("identical overwrite");
    wait_calls(&env, "HeadObject", heads + 2, CONVERGE).await;
    assert_eq!(calls(&env, "UpdatePackage").await, before + 1);
    assert_eq!(env.sim_versions(name).await, ["v2", "v1"]);
    let obj = env.wait_ready(name).await;
    assert_eq!(source_etag(&obj), Some(second.clone()));

    // Two quick overwrites while an import runs (imports now take 5 s).
    let slow = Durations {
        copying_ms: 5_000,
        ..super::support::fast_durations()
    };
    admin
        .set_clock(&ClockSettings {
            durations: Some(slow),
            ..ClockSettings::default()
        })
        .await
        .expect("slow imports");
    let third = admin
        .put_object(BUCKET, key, b"third\n".to_vec())
        .await
        .expect("put");
    wait_calls(&env, "UpdatePackage", before + 2, CONVERGE).await;
    let importing = imports(&env, name).await;
    assert_eq!(
        importing.last().map(|i| (i.1.as_str(), i.2.as_str())),
        Some((third.as_str(), "COPYING")),
        "{importing:?}"
    );
    let fourth = admin
        .put_object(BUCKET, key, b"fourth\n".to_vec())
        .await
        .expect("put");
    let fifth = admin
        .put_object(BUCKET, key, b"fifth\n".to_vec())
        .await
        .expect("put");
    let obj = wait_ready_at(&env, name, &fifth).await;
    let done = imports(&env, name).await;
    let newest = done.last().expect("imports");
    assert_eq!(
        (newest.1.as_str(), newest.2.as_str()),
        (fifth.as_str(), "AVAILABLE")
    );
    assert_eq!(
        status_of(&obj).available_package_version,
        newest.0,
        "Ready at the version of the last file: {done:?}"
    );
    let etags: Vec<&str> = done.iter().map(|i| i.1.as_str()).collect();
    let distinct: BTreeSet<&str> = etags.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        etags.len(),
        "a version was imported twice: {done:?}"
    );
    // The fourth file lived for a moment only: a check may have seen it, and then it was
    // imported once like every other (the distinct ETags above), before the fifth.
    if let Some(at) = etags.iter().position(|e| *e == fourth.as_str()) {
        assert!(at < etags.len() - 1, "{done:?}");
    }
    assert!(done.iter().all(|i| i.2 == "AVAILABLE"), "{done:?}");
}

// ## Must show 2: a missing object and denied access stall, say why, and recover by
// themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_denied_file_stalls_and_recovers_without_an_edit() {
    let env = TestEnv::start_with_flags("e2e-follow-gone", &flags()).await;
    let name = "fragile-synonyms";
    let key = "synonyms/fragile.txt";
    let admin = env.admin();
    let first = admin
        .put_object(BUCKET, key, b"a, b\n".to_vec())
        .await
        .expect("put");
    env.apply(&followed(name, key, Some(true))).await;
    wait_ready_at(&env, name, &first).await;
    let generation = env.get(name).await.and_then(|o| o.metadata.generation);

    admin.delete_object(BUCKET, key).await.expect("delete");
    let obj = env.wait_stalled(name, "SourceNotFound").await;
    let ready = condition(&obj, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Failed")
    );
    assert!(ready.message.contains("is unchanged"), "{}", ready.message);
    assert_eq!(
        status_of(&obj).available_package_version.as_deref(),
        Some("v1")
    );
    assert_event(&env, name, "Warning", "SourceNotFound", "does not exist").await;
    assert_eq!(calls(&env, "UpdatePackage").await, 0);
    let described = env.kubectl(&["get", "ospkg", name, "-o", "wide"]).await;
    assert!(described.contains("Failed"), "{described}");

    // The file comes back (new content): imported, Ready, no edit of the object.
    let back = admin
        .put_object(BUCKET, key, b"a, b, c\n".to_vec())
        .await
        .expect("put");
    let obj = wait_ready_at(&env, name, &back).await;
    assert_eq!(
        status_of(&obj).available_package_version.as_deref(),
        Some("v2")
    );
    assert_eq!(calls(&env, "UpdatePackage").await, 1);

    // Access is denied: stalled, nothing imported; granted again: Ready.
    admin
        .set_bucket(
            BUCKET,
            &BucketSettings {
                deny: vec![key.to_owned()],
                ..BucketSettings::default()
            },
        )
        .await
        .expect("deny");
    let obj = env.wait_stalled(name, "SourceAccessDenied").await;
    let stalled = condition(&obj, "Stalled").expect("Stalled");
    assert!(
        stalled.message.contains("s3:GetObject"),
        "{}",
        stalled.message
    );
    assert_event(&env, name, "Warning", "SourceAccessDenied", "403").await;
    admin
        .set_bucket(BUCKET, &BucketSettings::default())
        .await
        .expect("grant");
    let obj = wait_ready_at(&env, name, &back).await;
    assert_eq!(obj.metadata.generation, generation, "no edit was needed");
    assert_eq!(calls(&env, "UpdatePackage").await, 1);
}

// ## Must show 3: an object that does not follow (the default) makes no S3 call at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_does_not_follow_makes_no_s3_call() {
    let env = TestEnv::start_with_flags("e2e-follow-off", &flags()).await;
    let admin = env.admin();
    admin
        .put_object(BUCKET, "plain.txt", b"x, y\n".to_vec())
        .await
        .expect("put");
    env.apply(&followed("plain-synonyms", "plain.txt", None))
        .await;
    env.apply(&followed("opted-out-synonyms", "plain.txt", Some(false)))
        .await;
    env.wait_ready("plain-synonyms").await;
    env.wait_ready("opted-out-synonyms").await;
    admin
        .put_object(BUCKET, "plain.txt", b"x, y, z\n".to_vec())
        .await
        .expect("overwrite");
    // Several check intervals and a forced reconcile: still not one S3 call.
    tokio::time::sleep(CHECK * 3).await;
    env.force_reconcile("plain-synonyms").await;
    let calls = env.calls().await;
    for operation in ["HeadObject", "GetObject", "PutObject", "DeleteObject"] {
        assert_eq!(count(&calls, operation), 0, "{operation}: {calls:?}");
    }
    assert_eq!(count(&calls, "UpdatePackage"), 0, "{calls:?}");
    for name in ["plain-synonyms", "opted-out-synonyms"] {
        let obj = env.get(name).await.expect("exists");
        assert_eq!(status_of(&obj).source, None, "{name}");
    }
    let operator = env.operator.as_ref().expect("operator");
    let (_, metrics) = operator.http_get("/metrics").await.expect("GET /metrics");
    assert!(!metrics.contains(r#"operation="HeadObject""#), "{metrics}");
}

// The operator-wide default follows objects that do not say (and not those that opt out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follow_content_flag_follows_objects_that_do_not_say() {
    let env = TestEnv::start_with_flags(
        "e2e-follow-default",
        &["--source-check-interval=3s", "--follow-content=true"],
    )
    .await;
    let admin = env.admin();
    let first = admin
        .put_object(BUCKET, "default.txt", b"one\n".to_vec())
        .await
        .expect("put");
    env.apply(&followed("by-default", "default.txt", None))
        .await;
    env.apply(&followed("opted-out", "default.txt", Some(false)))
        .await;
    wait_ready_at(&env, "by-default", &first).await;
    env.wait_ready("opted-out").await;
    let second = admin
        .put_object(BUCKET, "default.txt", b"two\n".to_vec())
        .await
        .expect("overwrite");
    wait_ready_at(&env, "by-default", &second).await;
    assert_eq!(env.sim_versions("by-default").await, ["v2", "v1"]);
    tokio::time::sleep(CHECK).await;
    assert_eq!(env.sim_versions("opted-out").await, ["v1"]);
    let opted_out = env.get("opted-out").await.expect("exists");
    assert_eq!(status_of(&opted_out).source, None);
    let operator = env.operator.as_ref().expect("operator");
    let (_, metrics) = operator.http_get("/metrics").await.expect("GET /metrics");
    assert!(
        metrics.contains(r#"ospkg_aws_calls_total{operation="HeadObject",outcome="ok"}"#),
        "{metrics}"
    );
}
