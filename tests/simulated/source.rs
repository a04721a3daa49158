//! Objects that follow their S3 source (`spec.source.followContent`): reconciles with the
//! operator's S3 client against the simulator's S3. A changed file makes exactly one
//! UpdatePackage, an unchanged one none; a missing or unreadable object makes none, says why
//! and recovers by itself; an object that does not follow makes no S3 call at all.

use std::time::Duration;

use ospkg::backend::Operation;
use ospkg::crd::OpenSearchPackage;
use ospkg::source::FollowSettings;
use ospkg::vocabulary::ConditionType;
use ospkg_sim::{BucketSettings, Durations, SimConfig};
use serde_json::{Value, json};

use crate::support::{Aws, BUCKET, Harness, KEY, object, settled, status_of, with_finalizer};

/// The operator's defaults: objects follow when they say so.
fn settings() -> FollowSettings {
    FollowSettings::default()
}

fn followed(extra: Value) -> OpenSearchPackage {
    let mut spec = json!({
        "packageType": "TXT-DICTIONARY",
        "source": {"s3BucketName": BUCKET, "s3Key": KEY, "followContent": true},
        "commitMessage": "synonyms",
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    with_finalizer(object(json!({ "spec": spec })))
}

async fn ready(harness: &Harness) -> OpenSearchPackage {
    let obj = harness.settle(10).await;
    assert!(
        status_of(&obj).is_ready_at(obj.metadata.generation),
        "{:#?}",
        obj.status
    );
    obj
}

/// Reconciles at check slots until the object settles (Ready, or Stalled).
async fn settle_at_check(harness: &Harness) -> OpenSearchPackage {
    harness.reconcile_at_check().await;
    harness.settle(10).await
}

fn etag(obj: &OpenSearchPackage) -> Option<String> {
    status_of(obj).source.map(|s| s.etag)
}

fn stall_reason(obj: &OpenSearchPackage) -> Option<String> {
    status_of(obj)
        .stall()
        .and_then(|s| s.reason.map(|r| r.as_str().to_owned()))
}

/// Events the reconciles published, as (type, reason, note).
fn events(harness: &Harness) -> Vec<(String, String, String)> {
    harness
        .api
        .sent()
        .iter()
        .filter(|s| s.path.contains("/events"))
        .map(|s| {
            (
                s.body["type"].as_str().unwrap_or_default().to_owned(),
                s.body["reason"].as_str().unwrap_or_default().to_owned(),
                s.body["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The simulator's record of each import: (version, ETag, status), oldest first.
async fn imports(harness: &Harness) -> Vec<(Option<String>, String, String)> {
    let dump = harness.aws.sim.admin().packages().await.expect("dump");
    let package = dump["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|scope| scope["packages"].as_array().cloned().unwrap_or_default())
        .find(|p| p["details"]["PackageName"] == "product-synonyms")
        .expect("the package");
    package["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| {
            (
                r["version"].as_str().map(str::to_owned),
                r["etag"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_followed_object_is_created_from_the_version_read_and_status_says_which() {
    let aws = Aws::immediate().await;
    let first = aws
        .sim
        .admin()
        .put_object(BUCKET, KEY, b"tv, television\n".to_vec())
        .await
        .expect("object");
    let harness = Harness::following(aws, followed(json!({})), settings()).await;
    let obj = ready(&harness).await;
    assert_eq!(etag(&obj), Some(first.clone()));
    let source = status_of(&obj).source.expect("status.source");
    assert!(source.last_modified.is_some(), "{source:?}");
    assert_eq!(source.version_id, None, "the bucket is not versioned");
    assert_eq!(harness.aws.calls(Operation::CreatePackage).await, 1);
    // Reconciles between checks use what was read.
    for _ in 0..3 {
        harness.reconcile().await;
    }
    assert_eq!(harness.aws.calls(Operation::HeadObject).await, 1);
    let metrics = harness.ctx.metrics.encode();
    assert!(
        metrics.contains(r#"ospkg_aws_calls_total{operation="HeadObject",outcome="ok"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_changed_file_makes_exactly_one_update_and_an_unchanged_one_none() {
    let aws = Aws::immediate().await;
    let harness = Harness::following(aws, followed(json!({})), settings()).await;
    ready(&harness).await;
    let admin = harness.aws.sim.admin();

    let changed = admin
        .put_object(BUCKET, KEY, b"tv, television, telly\n".to_vec())
        .await
        .expect("overwrite");
    // Not the object's check yet: nothing is read, nothing happens.
    harness.reconcile().await;
    assert_eq!(harness.aws.calls(Operation::HeadObject).await, 1);
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 0);

    let obj = settle_at_check(&harness).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    assert_eq!(etag(&obj), Some(changed.clone()));
    let status = status_of(&obj);
    assert_eq!(status.available_package_version.as_deref(), Some("v2"));
    let newest = status.version_history[0]
        .commit_message
        .clone()
        .unwrap_or_default();
    let short: String = changed.trim_matches('"').chars().take(8).collect();
    assert!(
        newest.starts_with(&format!("synonyms [s3 etag:{short}] [ospkg:")),
        "the version history names the file version: {newest}"
    );
    assert!(
        events(&harness)
            .iter()
            .any(|(t, r, _)| t == "Normal" && r == "Updated"),
        "{:?}",
        events(&harness)
    );

    // The same bytes again: same ETag, no new version.
    admin
        .put_object(BUCKET, KEY, b"tv, television, telly\n".to_vec())
        .await
        .expect("identical overwrite");
    let obj = settle_at_check(&harness).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    assert!(harness.aws.calls(Operation::HeadObject).await >= 3);
    let etags: Vec<String> = imports(&harness).await.into_iter().map(|i| i.1).collect();
    assert_eq!(etags.len(), 2, "{etags:?}");
    assert_eq!(etags[1], changed);
}

#[tokio::test]
async fn overwrites_during_an_import_end_with_the_last_content_available_once() {
    // Imports take 2 s + 1 s of a clock that moves only when the test says.
    let aws = Aws::start(SimConfig::default().manual_clock()).await;
    let harness = Harness::following(aws, followed(json!({})), settings()).await;
    let admin = harness.aws.sim.admin();
    let advance = || async {
        admin.advance_clock(3_000).await.expect("clock");
    };
    for _ in 0..10 {
        harness.reconcile().await;
        advance().await;
        if settled(&harness.api.object()) {
            break;
        }
    }
    assert!(settled(&harness.api.object()));

    let second = admin
        .put_object(BUCKET, KEY, b"second\n".to_vec())
        .await
        .expect("put");
    harness.reconcile_at_check().await;
    harness.reconcile().await;
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    assert_eq!(
        imports(&harness)
            .await
            .last()
            .map(|i| i.2.clone())
            .as_deref(),
        Some("COPYING")
    );
    // Two overwrites while the second version imports; the object is checked in between.
    admin
        .put_object(BUCKET, KEY, b"third\n".to_vec())
        .await
        .expect("put");
    harness.reconcile_at_check().await;
    let fourth = admin
        .put_object(BUCKET, KEY, b"fourth\n".to_vec())
        .await
        .expect("put");
    harness.reconcile_at_check().await;
    assert_eq!(
        harness.aws.calls(Operation::UpdatePackage).await,
        1,
        "nothing is imported while an import runs"
    );
    for _ in 0..10 {
        advance().await;
        // The region observer's next listing shows the import's progress.
        harness.resync().await;
        if settled(&harness.api.object()) {
            break;
        }
    }
    let obj = harness.api.object();
    assert!(
        status_of(&obj).is_ready_at(obj.metadata.generation),
        "{:#?}",
        obj.status
    );
    assert_eq!(etag(&obj), Some(fourth.clone()));
    let imports = imports(&harness).await;
    let etags: Vec<&str> = imports.iter().map(|i| i.1.as_str()).collect();
    assert_eq!(
        etags[1..],
        [second.as_str(), fourth.as_str()],
        "each version once, the third never: {imports:?}"
    );
    assert_eq!(
        imports.last().map(|i| (i.0.as_deref(), i.2.as_str())),
        Some((Some("v3"), "AVAILABLE"))
    );
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 2);
}

#[tokio::test]
async fn a_file_seen_during_an_import_is_read_again_before_it_is_imported() {
    let aws = Aws::start(SimConfig::default().manual_clock()).await;
    let harness = Harness::following(aws, followed(json!({})), settings()).await;
    let admin = harness.aws.sim.admin();
    let finish_imports = || async {
        for _ in 0..10 {
            admin.advance_clock(3_000).await.expect("clock");
            // The region observer's next listing shows the import's progress.
            harness.resync().await;
            if settled(&harness.api.object()) {
                return;
            }
        }
        panic!("did not settle: {:#?}", harness.api.object().status);
    };
    finish_imports().await;

    let second = admin
        .put_object(BUCKET, KEY, b"second\n".to_vec())
        .await
        .expect("put");
    harness.reconcile_at_check().await;
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    // The check during the import sees a third file; a fourth replaces it before the
    // import is done, and no check comes in between.
    admin
        .put_object(BUCKET, KEY, b"third\n".to_vec())
        .await
        .expect("put");
    harness.reconcile_at_check().await;
    let fourth = admin
        .put_object(BUCKET, KEY, b"fourth\n".to_vec())
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let heads = harness.aws.calls(Operation::HeadObject).await;
    finish_imports().await;

    assert_eq!(
        harness.aws.calls(Operation::HeadObject).await,
        heads + 1,
        "read once more, right before the import"
    );
    let etags: Vec<String> = imports(&harness).await.into_iter().map(|i| i.1).collect();
    assert_eq!(
        etags[1..],
        [second, fourth.clone()],
        "the third file is never imported"
    );
    let obj = harness.api.object();
    assert_eq!(etag(&obj), Some(fourth.clone()));
    let short: String = fourth.trim_matches('"').chars().take(8).collect();
    let newest = status_of(&obj).version_history[0]
        .commit_message
        .clone()
        .unwrap_or_default();
    assert!(newest.contains(&format!("[s3 etag:{short}]")), "{newest}");
}

#[tokio::test]
async fn a_missing_object_stalls_without_an_update_and_recovers_when_it_is_back() {
    let aws = Aws::immediate().await;
    let harness = Harness::following(aws, followed(json!({})), settings()).await;
    let before = ready(&harness).await;
    let admin = harness.aws.sim.admin();
    admin.delete_object(BUCKET, KEY).await.expect("delete");

    let obj = settle_at_check(&harness).await;
    assert_eq!(stall_reason(&obj).as_deref(), Some("SourceNotFound"));
    let status = status_of(&obj);
    let ready = status.condition(ConditionType::Ready).expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Failed")
    );
    assert!(
        ready.message.contains("does not exist") && ready.message.contains("is unchanged"),
        "{}",
        ready.message
    );
    // The live package is untouched and status still says what it holds.
    assert_eq!(status.available_package_version.as_deref(), Some("v1"));
    assert_eq!(status.source, status_of(&before).source);
    assert!(
        events(&harness)
            .iter()
            .any(|(t, r, n)| t == "Warning" && r == "SourceNotFound" && n.contains(KEY)),
        "{:?}",
        events(&harness)
    );
    // Reconciles between checks do not read S3 again.
    let heads = harness.aws.calls(Operation::HeadObject).await;
    harness.reconcile().await;
    assert_eq!(harness.aws.calls(Operation::HeadObject).await, heads);

    // The file is back: no edit, the next check finds it. Same bytes: nothing to import.
    admin
        .put_object(BUCKET, KEY, b"tv, television\n".to_vec())
        .await
        .expect("restore");
    let obj = settle_at_check(&harness).await;
    assert!(
        status_of(&obj).is_ready_at(obj.metadata.generation),
        "{:#?}",
        obj.status
    );
    assert!(status_of(&obj).stall().is_none());
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 0);
    assert!(
        events(&harness)
            .iter()
            .any(|(t, r, _)| t == "Normal" && r == "Ready"),
        "{:?}",
        events(&harness)
    );
    let metrics = harness.ctx.metrics.encode();
    assert!(
        metrics.contains(r#"ospkg_aws_calls_total{operation="HeadObject",outcome="not_found"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn access_denied_stalls_without_an_update_and_recovers_when_granted() {
    let aws = Aws::immediate().await;
    let harness = Harness::following(aws, followed(json!({})), settings()).await;
    ready(&harness).await;
    let admin = harness.aws.sim.admin();
    let deny = BucketSettings {
        deny: vec![KEY.into()],
        ..BucketSettings::default()
    };
    admin.set_bucket(BUCKET, &deny).await.expect("deny");
    // A new file behind the denial is not imported either.
    admin
        .put_object(BUCKET, KEY, b"new words\n".to_vec())
        .await
        .expect("overwrite");

    let obj = settle_at_check(&harness).await;
    assert_eq!(stall_reason(&obj).as_deref(), Some("SourceAccessDenied"));
    let message = status_of(&obj)
        .condition(ConditionType::Stalled)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("s3:GetObject"), "{message}");
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 0);
    assert!(
        events(&harness)
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "SourceAccessDenied"),
        "{:?}",
        events(&harness)
    );

    admin
        .set_bucket(BUCKET, &BucketSettings::default())
        .await
        .expect("grant");
    let obj = settle_at_check(&harness).await;
    assert!(
        status_of(&obj).is_ready_at(obj.metadata.generation),
        "{:#?}",
        obj.status
    );
    assert_eq!(
        harness.aws.calls(Operation::UpdatePackage).await,
        1,
        "the new file"
    );
}

#[tokio::test]
async fn a_missing_object_creates_nothing_until_it_exists() {
    let aws = Aws::immediate().await;
    let obj = followed(
        json!({"source": {"s3BucketName": BUCKET, "s3Key": "later.txt", "followContent": true}}),
    );
    let harness = Harness::following(aws, obj, settings()).await;
    harness.reconcile().await;
    let obj = harness.api.object();
    assert_eq!(stall_reason(&obj).as_deref(), Some("SourceNotFound"));
    assert!(
        status_of(&obj)
            .condition(ConditionType::Ready)
            .is_some_and(|c| c.message.contains("no package is created")),
        "{:#?}",
        obj.status
    );
    assert_eq!(harness.aws.calls(Operation::CreatePackage).await, 0);

    harness
        .aws
        .sim
        .admin()
        .put_object(BUCKET, "later.txt", b"a, b\n".to_vec())
        .await
        .expect("put");
    let obj = settle_at_check(&harness).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    assert_eq!(harness.aws.calls(Operation::CreatePackage).await, 1);
}

#[tokio::test]
async fn an_object_that_does_not_follow_makes_no_s3_call() {
    let aws = Aws::immediate().await;
    // The operator can read S3, but neither the object nor the default asks for it.
    let harness = Harness::following(aws, with_finalizer(object(json!({}))), settings()).await;
    ready(&harness).await;
    harness
        .aws
        .sim
        .admin()
        .put_object(BUCKET, KEY, b"changed\n".to_vec())
        .await
        .expect("overwrite");
    for _ in 0..3 {
        harness.reconcile_at_check().await;
    }
    assert_eq!(harness.aws.calls(Operation::HeadObject).await, 0);
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 0);
    assert_eq!(status_of(&harness.api.object()).source, None);
}

#[tokio::test]
async fn the_operator_default_decides_for_objects_that_do_not_say() {
    let on = FollowSettings {
        by_default: true,
        ..FollowSettings::default()
    };
    let harness = Harness::following(
        Aws::immediate().await,
        with_finalizer(object(json!({}))),
        on,
    )
    .await;
    let obj = ready(&harness).await;
    assert_eq!(harness.aws.calls(Operation::HeadObject).await, 1);
    assert!(etag(&obj).is_some());

    // An object that says no is not followed, whatever the default.
    let mut opted_out = with_finalizer(object(json!({})));
    opted_out.spec.source.follow_content = Some(false);
    let harness = Harness::following(Aws::immediate().await, opted_out, on).await;
    ready(&harness).await;
    harness.reconcile_at_check().await;
    assert_eq!(harness.aws.calls(Operation::HeadObject).await, 0);
}

#[tokio::test]
async fn a_crash_during_the_update_of_a_changed_file_makes_one_version() {
    let aws = Aws::immediate().await;
    let mut harness = Harness::following(aws, followed(json!({})), settings()).await;
    ready(&harness).await;
    let changed = harness
        .aws
        .sim
        .admin()
        .put_object(BUCKET, KEY, b"after the crash\n".to_vec())
        .await
        .expect("overwrite");
    harness.ctx.make_source_due(&harness.api.object());
    harness.crash_during(Operation::UpdatePackage).await;

    // A new process: it remembers nothing, the object is not Ready, so it reads the source.
    let obj = harness.settle(10).await;
    assert!(
        status_of(&obj).is_ready_at(obj.metadata.generation),
        "{:#?}",
        obj.status
    );
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    assert_eq!(etag(&obj), Some(changed));
}

#[tokio::test]
async fn switching_following_on_imports_only_a_file_changed_since_the_import() {
    let aws = Aws::start(
        SimConfig::default()
            .manual_clock()
            .durations(Durations::instant()),
    )
    .await;
    let admin = aws.sim.admin();
    // The file is older than the package's import by more than Last-Modified's second.
    admin.advance_clock(5_000).await.expect("clock");
    let mut obj = with_finalizer(object(json!({})));
    obj.spec.source.follow_content = Some(false);
    let harness = Harness::following(aws, obj, settings()).await;
    ready(&harness).await;

    harness
        .api
        .edit(|o| o.spec.source.follow_content = Some(true));
    let obj = harness.settle(10).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    assert_eq!(harness.aws.calls(Operation::HeadObject).await, 1);
    assert_eq!(
        harness.aws.calls(Operation::UpdatePackage).await,
        0,
        "the package already holds the file"
    );
    assert!(etag(&obj).is_some(), "status names the file it holds");

    admin.advance_clock(5_000).await.expect("clock");
    admin
        .put_object(BUCKET, KEY, b"newer\n".to_vec())
        .await
        .expect("overwrite");
    let obj = settle_at_check(&harness).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);

    // Switching it off imports nothing either.
    harness
        .api
        .edit(|o| o.spec.source.follow_content = Some(false));
    let obj = harness.settle(10).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    assert_eq!(harness.aws.calls(Operation::HeadObject).await, 2);
}

#[tokio::test]
async fn a_versioned_bucket_is_followed_by_version_id() {
    let aws = Aws::immediate().await;
    let admin = aws.sim.admin();
    let versioned = BucketSettings {
        versioned: true,
        ..BucketSettings::default()
    };
    admin.set_bucket(BUCKET, &versioned).await.expect("bucket");
    let (_, first) = admin
        .put_object_version(BUCKET, KEY, b"one\n".to_vec())
        .await
        .expect("put");
    let harness = Harness::following(aws, followed(json!({})), settings()).await;
    let obj = ready(&harness).await;
    assert_eq!(status_of(&obj).source.and_then(|s| s.version_id), first);

    // Every upload to a versioned bucket is a new version, the same bytes too.
    let (_, second) = admin
        .put_object_version(BUCKET, KEY, b"one\n".to_vec())
        .await
        .expect("put");
    let obj = settle_at_check(&harness).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    let second = second.expect("a VersionId");
    assert_eq!(
        status_of(&obj).source.and_then(|s| s.version_id).as_deref(),
        Some(second.as_str())
    );
    let newest = status_of(&obj).version_history[0]
        .commit_message
        .clone()
        .unwrap_or_default();
    assert!(newest.contains(&format!("version:{second}]")), "{newest}");
}

#[tokio::test]
async fn a_bucket_in_another_region_is_read_there() {
    let aws = Aws::immediate().await;
    let admin = aws.sim.admin();
    let elsewhere = BucketSettings {
        region: Some("eu-central-1".into()),
        ..BucketSettings::default()
    };
    admin.set_bucket(BUCKET, &elsewhere).await.expect("bucket");
    let harness = Harness::following(aws, followed(json!({})), settings()).await;
    let obj = ready(&harness).await;
    assert!(etag(&obj).is_some());
    harness.reconcile_at_check().await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let log = harness.aws.sim.admin().log().await.expect("log");
    let heads: Vec<(String, Option<u16>)> = log
        .iter()
        .filter(|e| e.operation.as_deref() == Some("HeadObject"))
        .map(|e| (e.region.clone(), e.status))
        .collect();
    assert_eq!(
        heads,
        [
            ("us-east-1".to_owned(), Some(301)),
            ("eu-central-1".to_owned(), Some(200)),
            // The bucket's region is remembered: the next check goes there at once.
            ("eu-central-1".to_owned(), Some(200)),
        ]
    );
}
