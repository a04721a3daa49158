//! Exactly once and never stuck: crashes between the service acting and the operator hearing,
//! answers lost to 5xx and dropped connections, stale caches, and causes outside the object
//! that must neither stick nor hammer AWS. Each test runs the backend as shipped against the
//! simulator; a crash drops the reconcile in the middle of the AWS call and starts a new
//! context, so nothing after the call happens and nothing is remembered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use ospkg::backend::aws::Timeouts;
use ospkg::backend::{Operation, PackageBackend, PackageFilter};
use ospkg::controller::reconcile;
use ospkg::crd::OpenSearchPackage;
use ospkg::digest::SpecDigest;
use ospkg::vocabulary::{ConditionType, DomainPackageStatus, PackageStatus};
use ospkg_sim::{DomainDecl, Durations, FaultConfig, OperationFaults, ScriptedFault, SimConfig};
use serde_json::json;

use crate::support::own_scope;
use crate::support::{
    Aws, BUCKET, Harness, NAME, REGION, object, settled, status_of, with_finalizer,
};

fn stall_reason(obj: &OpenSearchPackage) -> Option<String> {
    let status = obj.status.as_ref()?;
    status
        .stall()
        .map(|s| s.reason.map(|r| r.as_str().to_owned()).unwrap_or_default())
}

/// Faults for one operation only.
fn one_fault(operation: &str, faults: OperationFaults) -> FaultConfig {
    FaultConfig {
        operations: BTreeMap::from([(operation.to_owned(), faults)]),
        ..FaultConfig::default()
    }
}

async fn set_faults(harness: &Harness, faults: &FaultConfig) {
    harness
        .aws
        .sim
        .admin()
        .set_faults(faults)
        .await
        .expect("faults");
}

/// A Ready object whose spec was just edited, and every UpdatePackage failing with `faults`.
async fn an_edit_whose_updates_fail(faults: OperationFaults) -> Harness {
    let harness = ready_object(Aws::immediate().await, json!({})).await;
    set_faults(&harness, &one_fault("UpdatePackage", faults)).await;
    harness
        .api
        .edit(|o| o.spec.description = Some("a new description".into()));
    harness
}

fn stall_message(obj: &OpenSearchPackage) -> String {
    status_of(obj)
        .condition(ConditionType::Stalled)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Reconciles, 50 ms apart, until the object settles or `rounds` are done; returns it.
async fn settle_by_reconciles(harness: &Harness, rounds: usize) -> OpenSearchPackage {
    for _ in 0..rounds {
        harness.reconcile().await;
        let obj = harness.api.object();
        if settled(&obj) {
            return obj;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    harness.api.object()
}

/// A simulator with instant imports and these faults.
async fn with_faults(faults: FaultConfig) -> Aws {
    Aws::start(
        SimConfig::default()
            .durations(Durations::instant())
            .faults(faults),
    )
    .await
}

/// Ready at its generation.
#[track_caller]
fn assert_ready(obj: &OpenSearchPackage) {
    assert!(
        status_of(obj).is_ready_at(obj.metadata.generation),
        "{obj:#?}"
    );
}

async fn ready_object(aws: Aws, extra: serde_json::Value) -> Harness {
    let harness = Harness::new(aws, with_finalizer(object(extra))).await;
    let obj = harness.settle(10).await;
    assert!(
        status_of(&obj).is_ready_at(obj.metadata.generation),
        "{:#?}",
        obj.status
    );
    harness
}

/// The package as the service holds it now.
async fn package(harness: &Harness) -> ospkg::backend::Package {
    let found = harness
        .aws
        .backend
        .describe_packages(&own_scope(REGION), PackageFilter::Name(NAME.into()))
        .await
        .expect("describe");
    found.into_iter().next().expect("the package exists")
}

async fn versions(harness: &Harness) -> Vec<ospkg::backend::PackageVersion> {
    let id = package(harness).await.id;
    harness
        .aws
        .backend
        .package_version_history(&own_scope(REGION), &id)
        .await
        .expect("history")
}

#[tokio::test]
async fn a_failed_import_across_a_crash_is_not_updated_twice() {
    let mut harness = ready_object(Aws::immediate().await, json!({})).await;
    // The new key does not exist: the import will fail, and a failed import leaves no
    // version behind to carry the marker.
    harness
        .api
        .edit(|o| o.spec.source.s3_key = "missing.txt".into());
    harness.crash_during(Operation::UpdatePackage).await;

    let obj = harness.settle(10).await;
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("CopyFailed"),
        "{obj:#?}"
    );
    assert_eq!(
        harness.aws.calls(Operation::UpdatePackage).await,
        1,
        "one spec change, one UpdatePackage"
    );
    assert_eq!(package(&harness).await.status, PackageStatus::CopyFailed);
}

#[tokio::test]
async fn a_revert_across_a_crash_makes_aws_hold_the_reverted_spec() {
    let mut harness = ready_object(
        Aws::immediate().await,
        json!({"spec": {"packageType": "TXT-DICTIONARY", "source": {"s3BucketName": BUCKET, "s3Key": "synonyms.txt"}, "description": "alpha"}}),
    )
    .await;
    let alpha = SpecDigest::of(&harness.api.object().spec);
    harness
        .api
        .edit(|o| o.spec.description = Some("beta".into()));
    harness.crash_during(Operation::UpdatePackage).await;
    // The user reverts while the operator is down.
    harness
        .api
        .edit(|o| o.spec.description = Some("alpha".into()));

    let obj = harness.settle(10).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    let held = package(&harness).await;
    assert_eq!(held.description.as_deref(), Some("alpha"));
    let history = versions(&harness).await;
    assert_eq!(history.len(), 3, "{history:#?}");
    assert!(
        history[0]
            .commit_message
            .as_deref()
            .is_some_and(|m| alpha.is_marked_in(m)),
        "the newest version is alpha's: {history:#?}"
    );
    assert_eq!(
        status_of(&obj).applied_digest.as_deref(),
        Some(alpha.as_str())
    );
}

#[tokio::test]
async fn an_error_after_the_effect_makes_exactly_one_package_and_one_version() {
    let aws = Aws::immediate().await;
    for operation in ["CreatePackage", "UpdatePackage"] {
        aws.sim
            .admin()
            .script_fault(operation, ScriptedFault::ErrorAfterEffect)
            .await
            .expect("fault scripted");
    }
    let harness = Harness::new(aws, with_finalizer(object(json!({})))).await;
    let obj = harness.settle(10).await;
    assert_ready(&obj);
    assert_eq!(harness.aws.calls(Operation::CreatePackage).await, 1);
    assert_eq!(
        status_of(&obj).available_package_version.as_deref(),
        Some("v1")
    );

    harness
        .api
        .edit(|o| o.spec.description = Some("now with winter terms".into()));
    let obj = harness.settle(10).await;
    assert_ready(&obj);
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    assert_eq!(
        status_of(&obj).available_package_version.as_deref(),
        Some("v2")
    );
    assert_eq!(versions(&harness).await.len(), 2);
}

#[tokio::test]
async fn a_dropped_connection_after_the_effect_makes_one_version() {
    let harness = ready_object(Aws::immediate().await, json!({})).await;
    harness
        .aws
        .sim
        .admin()
        .script_fault("UpdatePackage", ScriptedFault::CloseAfterEffect)
        .await
        .expect("fault scripted");
    harness
        .api
        .edit(|o| o.spec.description = Some("changed".into()));
    let obj = harness.settle(10).await;
    assert_ready(&obj);
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    assert_eq!(versions(&harness).await.len(), 2);
}

#[tokio::test]
async fn an_unknown_domain_stalls_slowly_and_recovers_when_it_appears() {
    let harness = Harness::new(
        Aws::immediate().await,
        with_finalizer(object(json!({"spec": {
            "packageType": "TXT-DICTIONARY",
            "source": {"s3BucketName": BUCKET, "s3Key": "synonyms.txt"},
            "domains": [{"name": "nowhere"}],
        }}))),
    )
    .await;
    let obj = harness.settle(10).await;
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("DomainNotFound"),
        "{obj:#?}"
    );
    assert!(
        stall_message(&obj).contains("nowhere"),
        "{}",
        stall_message(&obj)
    );

    // Checked again once a minute, not in a loop: each check costs a few calls.
    let remaining = harness
        .ctx
        .schedule
        .not_yet_due(&obj)
        .expect("a requeue is scheduled");
    assert!(remaining >= Duration::from_secs(50), "{remaining:?}");
    let before = harness.aws.total_calls().await;
    for _ in 0..3 {
        harness.reconcile().await;
    }
    let per_check = (harness.aws.total_calls().await - before) / 3;
    assert!(per_check <= 3, "{per_check} calls per check");

    // The domain appears: the object converges without an edit.
    harness
        .aws
        .sim
        .admin()
        .add_domain(&DomainDecl {
            name: "nowhere".into(),
            engine_version: "OpenSearch_2.19".into(),
            region: None,
            account: None,
        })
        .await
        .expect("domain added");
    let obj = harness.settle(10).await;
    assert_ready(&obj);
}

#[tokio::test]
async fn an_already_exists_answer_to_a_retried_create_keeps_the_package_ours() {
    // The first create takes effect but its answer is lost; the new package is not yet
    // visible by name, so the next reconcile creates again and hears AlreadyExists.
    let faults = FaultConfig {
        read_after_write_lag_ms: 1_500,
        ..FaultConfig::default()
    }
    .scripted("CreatePackage", ScriptedFault::ErrorAfterEffect);
    let aws = with_faults(faults).await;
    let harness = Harness::new(aws, with_finalizer(object(json!({})))).await;
    let obj = settle_by_reconciles(&harness, 100).await;
    assert_ready(&obj);
    assert!(harness.aws.calls(Operation::CreatePackage).await >= 2);
    let all = harness
        .aws
        .backend
        .describe_packages(&own_scope(REGION), PackageFilter::Name(NAME.into()))
        .await
        .expect("describe");
    assert_eq!(all.len(), 1);
    assert_eq!(status_of(&obj).package_id, Some(all[0].id.clone()));
}

/// An object whose first reconcile created its package: the harness, the object as it was
/// before that reconcile's status write (what a lagging watch still holds) and after it.
async fn created_by_one_reconcile() -> (Harness, OpenSearchPackage, OpenSearchPackage) {
    let harness = Harness::new(Aws::held().await, with_finalizer(object(json!({})))).await;
    let before = harness.api.object();
    harness.reconcile().await;
    let written = harness.api.object();
    assert!(status_of(&written).package_id.is_some());
    (harness, before, written)
}

/// The informer can still hold the object from before the reconcile's status write (no
/// packageID, no create record): acting on that copy would create a second package or erase
/// the id. The write's answer is acted on instead.
#[tokio::test]
async fn a_cache_older_than_our_own_write_is_not_acted_on() {
    let (harness, before, written) = created_by_one_reconcile().await;
    assert_not_acted_on(&harness, before, &written).await;

    // Once the watch delivers the write, reconciles go on from it.
    harness.reconcile().await;
    assert_eq!(harness.aws.calls(Operation::CreatePackage).await, 1);
}

/// The region observer can wake an object whose import ended before the watch has delivered
/// the object's own last write (seconds later, on a busy API server). The reconcile goes on
/// from that write's answer at once: the object is Ready without waiting for the watch.
#[tokio::test]
async fn an_object_woken_before_the_watch_delivers_its_write_goes_on_at_once() {
    let harness = Harness::new(Aws::immediate().await, with_finalizer(object(json!({})))).await;
    let before = harness.api.object();
    harness.reconcile().await;
    let created = harness.api.object();
    assert!(status_of(&created).package_id.is_some());
    assert!(!is_ready(&created));

    harness.ctx.make_due(&before);
    reconcile(Arc::new(before), harness.ctx.clone())
        .await
        .expect("reconcile");
    let now = harness.api.object();
    assert!(is_ready(&now), "{:#?}", now.status);
    assert_eq!(status_of(&now).package_id, status_of(&created).package_id);
    assert_eq!(harness.aws.calls(Operation::CreatePackage).await, 1);
}

fn is_ready(obj: &OpenSearchPackage) -> bool {
    obj.status
        .as_ref()
        .is_some_and(|s| s.is_true(ospkg::vocabulary::ConditionType::Ready))
}

/// A busy API server can deliver our own write back much later than usual (it did, by more
/// than half a minute, with thousands of objects on a loaded machine). However late the watch
/// is, the old copy is never acted on: acting on it found the package this object had just
/// created, without the create record, and stalled the object on its own package.
#[tokio::test]
async fn a_cache_that_lags_past_half_a_minute_is_still_not_acted_on() {
    let (harness, before, written) = created_by_one_reconcile().await;
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_not_acted_on(&harness, before, &written).await;
}

/// Reconciles `stale`, a cached copy older than `written` (the object after our status
/// write), and checks that it was not acted on: no second create, no write (the package is
/// still importing), the status as written. (The region observer may have listed meanwhile: that is not the reconcile.)
async fn assert_not_acted_on(
    harness: &Harness,
    stale: OpenSearchPackage,
    written: &OpenSearchPackage,
) {
    let creates = harness.aws.calls(Operation::CreatePackage).await;
    let writes = harness.api.sent().len();
    harness.ctx.make_due(&stale);
    reconcile(Arc::new(stale), harness.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        harness.aws.calls(Operation::CreatePackage).await,
        creates,
        "no second create"
    );
    assert_eq!(harness.api.sent().len(), writes, "no write");
    assert_eq!(status_of(&harness.api.object()), status_of(written));
}

/// A user's edit can land between a reconcile's read and its status write. The watch then
/// delivers the edit (a copy the reconcile never saw, without its status) before the write:
/// that copy is older than the write all the same, and is not acted on.
#[tokio::test]
async fn an_edit_that_landed_before_our_write_is_not_taken_for_news() {
    let harness = Harness::new(Aws::held().await, with_finalizer(object(json!({})))).await;
    let before = harness.api.object();
    harness.api.edit(|o| {
        o.labels_mut().insert("team".into(), "search".into());
    });
    let edited = harness.api.object();
    harness.ctx.make_due(&before);
    reconcile(Arc::new(before), harness.ctx.clone())
        .await
        .expect("reconcile");
    let written = harness.api.object();
    assert!(status_of(&written).package_id.is_some());
    assert_eq!(
        written.labels().get("team").map(String::as_str),
        Some("search")
    );
    assert_not_acted_on(&harness, edited, &written).await;

    // Once the watch delivers the write, reconciles go on.
    harness.reconcile().await;
    assert!(status_of(&harness.api.object()).package_id.is_some());
}

/// The fence can close for a moment and open again in the same term (a renewal confirmed
/// late under load). An object whose reconcile met the closed fence must come back by itself:
/// nothing else changes it, and the same term's controllers go on (it is not re-listed).
#[tokio::test]
async fn a_reconcile_that_meets_a_closed_fence_comes_back() {
    let harness = Harness::new(Aws::immediate().await, with_finalizer(object(json!({})))).await;
    let (client, _api) = crate::support::mock_client(harness.api.object());
    let standby = crate::support::standby_context(client, harness.aws.backend().await);
    let requeued = reconcile(Arc::new(harness.api.object()), standby)
        .await
        .expect("reconcile");
    assert_ne!(
        requeued,
        kube::runtime::controller::Action::await_change(),
        "the object would wait for a change that never comes"
    );
    assert_eq!(
        harness.aws.total_calls().await,
        0,
        "no AWS call while not leading"
    );
}

#[tokio::test]
async fn access_denied_on_reads_stalls_and_recovers_without_an_edit() {
    let harness = ready_object(Aws::immediate().await, json!({})).await;
    let denied = one_fault(
        "DescribePackages",
        OperationFaults {
            access_denied: 1.0,
            ..OperationFaults::default()
        },
    );
    set_faults(&harness, &denied).await;
    harness.resync().await;
    let obj = harness.api.object();
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("AccessDenied"),
        "{obj:#?}"
    );

    // The IAM fix lands; the next scheduled check (the resync) recovers.
    set_faults(&harness, &FaultConfig::default()).await;
    harness.resync().await;
    let obj = harness.settle(3).await;
    assert_ready(&obj);
}

#[tokio::test]
async fn a_black_holed_call_times_out_instead_of_holding_the_reconcile() {
    let timeouts = Timeouts {
        attempt: Duration::from_secs(1),
        operation: Duration::from_secs(2),
    };
    let aws = Aws::start_with(
        SimConfig::default().durations(Durations::instant()),
        timeouts,
    )
    .await;
    let slow = one_fault(
        "*",
        OperationFaults {
            latency_ms: 600_000,
            ..OperationFaults::default()
        },
    );
    aws.sim.admin().set_faults(&slow).await.expect("faults");
    let harness = Harness::new(aws, with_finalizer(object(json!({})))).await;
    tokio::time::timeout(Duration::from_secs(15), harness.reconcile())
        .await
        .expect("the reconcile ends: AWS calls time out");
    let obj = harness.api.object();
    let reconciling = status_of(&obj)
        .condition(ConditionType::Reconciling)
        .cloned()
        .expect("Reconciling");
    assert_eq!(reconciling.reason, "Retrying", "{reconciling:?}");
}

#[tokio::test]
async fn an_association_made_just_before_a_crash_is_dissociated_when_the_domain_goes() {
    let aws = Aws::start(
        SimConfig::default()
            .durations(Durations::instant())
            .domain("search", "OpenSearch_2.19"),
    )
    .await;
    let mut harness = ready_object(aws, json!({})).await;
    harness.api.edit(|o| {
        o.spec.domains = vec![serde_json::from_value(json!({"name": "search"})).expect("domain")];
    });
    harness.crash_during(Operation::AssociatePackage).await;
    // The user drops the domain again while the operator is down.
    harness.api.edit(|o| o.spec.domains.clear());

    let obj = harness.settle(20).await;
    assert_ready(&obj);
    let id = status_of(&obj).package_id.expect("id");
    let associations = harness
        .aws
        .backend
        .list_domains_for_package(&own_scope(REGION), &id)
        .await
        .expect("associations");
    assert!(associations.is_empty(), "{associations:#?}");
    assert_eq!(harness.aws.calls(Operation::DissociatePackage).await, 1);
}

#[tokio::test]
async fn a_failed_delete_says_so_and_is_retried_until_the_package_goes() {
    let harness = ready_object(Aws::immediate().await, json!({})).await;
    let failing = FaultConfig {
        fail_deletes: BTreeMap::from([(NAME.to_owned(), "disk on fire".to_owned())]),
        ..FaultConfig::default()
    };
    set_faults(&harness, &failing).await;
    harness.api.edit(|o| {
        o.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
    });
    let mut obj = harness.api.object();
    for _ in 0..5 {
        harness.reconcile().await;
        obj = harness.api.object();
        if stall_reason(&obj).is_some() {
            break;
        }
    }
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("DeleteFailed"),
        "{obj:#?}"
    );
    assert!(stall_message(&obj).contains("disk on fire"));

    set_faults(&harness, &FaultConfig::default()).await;
    for _ in 0..5 {
        harness.reconcile().await;
        if harness
            .api
            .object()
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty()
        {
            break;
        }
    }
    assert!(
        harness
            .api
            .object()
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty(),
        "the finalizer goes once the package is gone"
    );
    let left = harness
        .aws
        .backend
        .describe_packages(&own_scope(REGION), PackageFilter::Name(NAME.into()))
        .await
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:#?}");
}

/// The service answers every UpdatePackage with a 5xx that proves nothing: each answer leaves
/// an open intent, resolved by looking before the next send. That look is not progress: the
/// sends still back off (1 s, 2 s, 4 s, ...) instead of repeating about once a second.
#[tokio::test]
async fn an_update_the_service_keeps_failing_is_resent_with_a_growing_backoff() {
    let harness = an_edit_whose_updates_fail(OperationFaults {
        internal: 1.0,
        ..OperationFaults::default()
    })
    .await;

    // Each reconcile runs as its requeue timer fires; after each send, the delay until the
    // next one is noted.
    let mut delays = Vec::new();
    for _ in 0..12 {
        let before = harness.aws.calls(Operation::UpdatePackage).await;
        harness.reconcile().await;
        if harness.aws.calls(Operation::UpdatePackage).await > before {
            let obj = harness.api.object();
            let delay = harness.ctx.schedule.not_yet_due(&obj).expect("a requeue");
            delays.push(delay);
            assert!(
                obj.status
                    .as_ref()
                    .and_then(|s| s.in_flight.as_ref())
                    .is_some(),
                "the answer proved nothing: the intent stays open: {obj:#?}"
            );
        }
    }
    assert!(delays.len() >= 4, "{delays:?}");
    // 1 s, 2 s, 4 s, 8 s, each ±20 % (and less the time since the reconcile scheduled it).
    for (n, delay) in delays.iter().enumerate().take(5) {
        let floor = Duration::from_millis(700).saturating_mul(1 << n);
        assert!(
            *delay >= floor,
            "send {}: next after {delay:?}: {delays:?}",
            n + 1
        );
    }
    assert_eq!(
        stall_reason(&harness.api.object()),
        None,
        "a 5xx is retried, not stalled"
    );
}

/// A throttled UpdatePackage never reached the service: its intent, written before the call,
/// is cleared again on the API server, not only in the reconcile's copy.
#[tokio::test]
async fn a_throttled_update_leaves_no_open_intent_behind() {
    let harness = an_edit_whose_updates_fail(OperationFaults {
        throttle: 1.0,
        ..OperationFaults::default()
    })
    .await;
    let mut delays = Vec::new();
    for _ in 0..4 {
        harness.reconcile().await;
        let obj = harness.api.object();
        assert!(
            obj.status
                .as_ref()
                .and_then(|s| s.in_flight.as_ref())
                .is_none(),
            "no call reached the service, no intent stays open: {obj:#?}"
        );
        delays.push(harness.ctx.schedule.not_yet_due(&obj).expect("a requeue"));
    }
    assert!(
        delays[3] >= Duration::from_millis(5_600),
        "throttled sends back off: {delays:?}"
    );
}

/// A rejected UpdatePackage stalls until the user acts. A read failing on the way (throttled
/// listings here) is retried, but it neither lifts the stall nor lets the rejected call go out
/// again once the reads work.
#[tokio::test]
async fn a_failing_read_does_not_lift_a_rejection_the_user_has_not_acted_on() {
    let harness = ready_object(Aws::immediate().await, json!({})).await;
    harness
        .aws
        .sim
        .admin()
        .script_fault(
            "UpdatePackage",
            ScriptedFault::Validation {
                message: "the service refuses this file".into(),
            },
        )
        .await
        .expect("fault scripted");
    harness
        .api
        .edit(|o| o.spec.description = Some("a new description".into()));
    let obj = harness.settle(10).await;
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("InvalidRequest"),
        "{obj:#?}"
    );
    let sent = harness.aws.calls(Operation::UpdatePackage).await;

    let throttled = one_fault(
        "DescribePackages",
        OperationFaults {
            throttle: 1.0,
            ..OperationFaults::default()
        },
    );
    set_faults(&harness, &throttled).await;
    harness.resync().await;
    let obj = harness.api.object();
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("InvalidRequest"),
        "a throttled read leaves the stall standing: {obj:#?}"
    );

    set_faults(&harness, &FaultConfig::default()).await;
    for _ in 0..3 {
        harness.resync().await;
    }
    let obj = harness.api.object();
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("InvalidRequest"),
        "{obj:#?}"
    );
    assert_eq!(
        harness.aws.calls(Operation::UpdatePackage).await,
        sent,
        "the rejected call is not sent again before the user acts"
    );
}

/// A parallel rollout with one listed domain missing: the other domains get the package, the
/// object stalls naming the missing one, and the one-a-minute check costs no more calls.
#[tokio::test]
async fn a_parallel_rollout_is_not_held_back_by_a_missing_domain() {
    let harness = Harness::new(
        Aws::start(
            SimConfig::default()
                .durations(Durations::instant())
                .domain("catalog-a", "OpenSearch_2.19")
                .domain("catalog-b", "OpenSearch_2.19"),
        )
        .await,
        with_finalizer(object(json!({"spec": {
            "packageType": "TXT-DICTIONARY",
            "source": {"s3BucketName": BUCKET, "s3Key": "synonyms.txt"},
            "rollout": {"strategy": "Parallel"},
            "domains": [{"name": "nowhere"}, {"name": "catalog-a"}, {"name": "catalog-b"}],
        }}))),
    )
    .await;
    let obj = harness.settle(10).await;
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("DomainNotFound"),
        "{obj:#?}"
    );
    assert!(stall_message(&obj).contains("nowhere"));
    // The next check sees the others active, and stalls on the missing one still.
    harness.reconcile().await;
    let obj = harness.api.object();
    let status = status_of(&obj);
    let active: Vec<&str> = status
        .domains
        .iter()
        .filter(|d| d.domain_package_status == Some(DomainPackageStatus::Active))
        .map(|d| d.domain_name.as_str())
        .collect();
    assert_eq!(active, ["catalog-a", "catalog-b"], "{obj:#?}");
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("DomainNotFound"),
        "{obj:#?}"
    );
}

/// Applying a new version to a domain fails. The domain still runs the old version (which
/// `PackageVersion` shows), so the association looks behind: it must still count as the failed
/// attempt at the current version, stalled until the user acts, not associated again on every
/// pass.
#[tokio::test]
async fn a_failed_update_of_a_domain_stalls_instead_of_associating_again_and_again() {
    let harness = ready_object(
        Aws::start(
            SimConfig::default()
                .durations(Durations::instant())
                .domain("catalog-a", "OpenSearch_2.19"),
        )
        .await,
        json!({"spec": {
            "packageType": "TXT-DICTIONARY",
            "source": {"s3BucketName": BUCKET, "s3Key": "synonyms.txt"},
            "domains": [{"name": "catalog-a"}],
        }}),
    )
    .await;
    let failing = FaultConfig {
        fail_associations: BTreeMap::from([(
            "catalog-a".to_owned(),
            "the new version conflicts with an index".to_owned(),
        )]),
        ..FaultConfig::default()
    };
    set_faults(&harness, &failing).await;
    harness
        .api
        .edit(|o| o.spec.description = Some("a new description".into()));
    let obj = harness.settle(20).await;
    assert_eq!(
        stall_reason(&obj).as_deref(),
        Some("AssociationFailed"),
        "{obj:#?}"
    );
    let domain = &status_of(&obj).domains[0];
    assert_eq!(
        domain.package_version.as_deref(),
        Some("v1"),
        "the domain still runs v1: {obj:#?}"
    );
    let sent = harness.aws.calls(Operation::AssociatePackage).await;
    assert!(sent >= 2, "v1, then the failed v2: {sent}");
    for _ in 0..3 {
        harness.resync().await;
    }
    assert_eq!(
        harness.aws.calls(Operation::AssociatePackage).await,
        sent,
        "the failed version is not associated again before the user acts"
    );
    assert_eq!(
        stall_reason(&harness.api.object()).as_deref(),
        Some("AssociationFailed")
    );
}

/// `ospkg_reconciles_total{result}` counts each reconcile by the status it left: the one that
/// stalls the object is `stalled`, one that meets a transient failure `retrying`.
#[tokio::test]
async fn reconciles_are_counted_by_the_status_they_leave() {
    let count = |harness: &Harness, result: &str| -> u64 {
        let text = harness.ctx.metrics.encode();
        let prefix = format!("ospkg_reconciles_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().expect("a count"))
    };
    let harness = ready_object(Aws::immediate().await, json!({})).await;
    assert_eq!(count(&harness, "stalled"), 0);
    assert!(count(&harness, "success") >= 1);

    let throttled = one_fault(
        "UpdatePackage",
        OperationFaults {
            throttle: 1.0,
            ..OperationFaults::default()
        },
    );
    set_faults(&harness, &throttled).await;
    harness
        .api
        .edit(|o| o.spec.description = Some("a new description".into()));
    harness.reconcile().await;
    assert_eq!(count(&harness, "retrying"), 1);

    set_faults(&harness, &FaultConfig::default()).await;
    harness
        .aws
        .sim
        .admin()
        .script_fault(
            "UpdatePackage",
            ScriptedFault::Validation {
                message: "the service refuses this file".into(),
            },
        )
        .await
        .expect("fault scripted");
    harness.reconcile().await;
    assert_eq!(
        stall_reason(&harness.api.object()).as_deref(),
        Some("InvalidRequest")
    );
    assert_eq!(
        count(&harness, "stalled"),
        1,
        "the reconcile that stalled it"
    );
}

/// A simulator and the backend with calls that give up quickly: 0.3 s per attempt, 0.6 s per
/// operation, so a change that got no answer is decided after 5.6 s.
async fn quick_to_give_up() -> Aws {
    let timeouts = Timeouts {
        attempt: Duration::from_millis(300),
        operation: Duration::from_millis(600),
    };
    Aws::start_with(
        SimConfig::default().durations(Durations::instant()),
        timeouts,
    )
    .await
}

/// A Ready object on [`quick_to_give_up`] whose spec was just edited; the UpdatePackage the
/// edit calls for gets no answer and takes effect `lands` after it arrives.
async fn an_edit_whose_update_lands_after(lands: Duration) -> Harness {
    let harness = ready_object(quick_to_give_up().await, json!({})).await;
    let ms = u64::try_from(lands.as_millis()).expect("a test duration");
    harness
        .aws
        .sim
        .admin()
        .script_fault("UpdatePackage", ScriptedFault::LateEffect { ms })
        .await
        .expect("fault scripted");
    harness
        .api
        .edit(|o| o.spec.description = Some("now with winter terms".into()));
    harness
}

/// Lets the region observer list and the object reconcile, 100 ms apart, until the object
/// settles or `rounds` are done; returns it.
async fn settle_by_listings(harness: &Harness, rounds: usize) -> OpenSearchPackage {
    for _ in 0..rounds {
        harness.resync().await;
        let obj = harness.api.object();
        if crate::support::settled(&obj) {
            return obj;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    harness.api.object()
}

/// An UpdatePackage that reaches the service only after the operator's timeout gave up on it:
/// the package still shows no change when the next reconcile looks, but that proves nothing
/// until the call can no longer land (the unanswered window: the operation timeout, plus a
/// margin for clocks). Sending it again at once would make a second version of the same
/// spec; the object waits, sees the late update land, and records it: one version.
#[tokio::test]
async fn an_update_that_lands_after_its_timeout_makes_one_version() {
    // After the 0.6 s operation timeout, inside the 5.6 s window.
    const LANDS: Duration = Duration::from_secs(4);
    let harness = an_edit_whose_update_lands_after(LANDS).await;

    // The update times out; until it lands, every look finds the package unchanged.
    let sent_at = std::time::Instant::now();
    harness.reconcile().await;
    let sent = |harness: &Harness| {
        let harness = harness.aws.sim.admin();
        async move { harness.calls().await.expect("calls")["UpdatePackage"] }
    };
    assert_eq!(sent(&harness).await, 1);
    for _ in 0..3 {
        harness.resync().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sent(&harness).await,
        1,
        "sent again before the first could land"
    );
    let obj = harness.api.object();
    assert!(sent_at.elapsed() < LANDS, "the test is too slow to tell");
    assert!(
        status_of(&obj).in_flight.is_some(),
        "the intent was given up: {:#?}",
        obj.status
    );

    // It lands; the next listing shows it, and the object records it.
    tokio::time::sleep(LANDS.saturating_sub(sent_at.elapsed())).await;
    let obj = settle_by_listings(&harness, 20).await;
    assert_ready(&obj);
    assert_eq!(sent(&harness).await, 1);
    assert_eq!(versions(&harness).await.len(), 2);
    assert_eq!(
        status_of(&obj).applied_digest.as_deref(),
        Some(SpecDigest::of(&obj.spec).as_str())
    );
}

/// The other side of the window: an update that got no answer and never reached the service
/// is sent again once its window has passed (and a listing started after it shows no change),
/// so a lost request is not lost for good.
#[tokio::test]
async fn an_update_that_never_lands_is_sent_again_after_its_window() {
    // Longer than the window: as good as never, for this test.
    let harness = an_edit_whose_update_lands_after(Duration::from_secs(600)).await;
    harness.reconcile().await;
    let window = harness.ctx.backend.unanswered_window();
    assert!(window < Duration::from_secs(10), "{window:?}");
    tokio::time::sleep(window).await;
    let obj = settle_by_listings(&harness, 20).await;
    assert_ready(&obj);
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 2);
    assert_eq!(versions(&harness).await.len(), 2);
}

/// Right after a create, the service's listings may not show the new package yet (as AWS's
/// eventually consistent reads can): a read by the recorded id finds nothing, and the package
/// looks deleted outside. Creating it again answers AlreadyExists: the object keeps its
/// package (no stall, no orphan, no PackageVanished warning) and is Ready once reads catch up.
#[tokio::test]
async fn a_package_not_yet_listed_after_its_create_is_not_taken_for_gone() {
    let faults = FaultConfig {
        read_after_write_lag_ms: 1_500,
        lag_lookups_by_id: true,
        ..FaultConfig::default()
    };
    let aws = with_faults(faults).await;
    let harness = Harness::new(aws, with_finalizer(object(json!({})))).await;
    harness.reconcile().await;
    let created = status_of(&harness.api.object())
        .package_id
        .expect("created and recorded");
    let obj = settle_by_reconciles(&harness, 60).await;
    assert_ready(&obj);
    assert_eq!(
        status_of(&obj).package_id.as_deref(),
        Some(created.as_str())
    );
    let all = harness
        .aws
        .backend
        .describe_packages(&own_scope(REGION), PackageFilter::Name(NAME.into()))
        .await
        .expect("describe");
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        harness.aws.calls(Operation::CreatePackage).await >= 2,
        "the scenario did not happen"
    );
    let vanished = harness
        .api
        .sent()
        .iter()
        .filter(|s| s.path.contains("/events") && s.body["reason"] == "PackageVanished")
        .count();
    assert_eq!(
        vanished, 0,
        "a PackageVanished warning for a package that was there"
    );
}

/// An object deleted while its CreatePackage got no answer: the create may still land after
/// the object is gone, and its package would be left behind, owned by nobody. Deletion waits
/// until the call can no longer land; the late package is found under the create record and
/// deleted before the finalizer goes.
#[tokio::test]
async fn deleting_an_object_whose_create_got_no_answer_leaves_no_package_behind() {
    // After the 0.6 s operation timeout, inside the 5.6 s window.
    const LANDS: Duration = Duration::from_secs(3);
    let aws = quick_to_give_up().await;
    aws.sim
        .admin()
        .script_fault(
            "CreatePackage",
            ScriptedFault::LateEffect {
                ms: LANDS.as_millis() as u64,
            },
        )
        .await
        .expect("fault scripted");
    let harness = Harness::new(aws, with_finalizer(object(json!({})))).await;
    harness.reconcile().await;
    assert!(status_of(&harness.api.object()).in_flight.is_some());
    harness.api.edit(|o| {
        o.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
    });

    let gone = |obj: &OpenSearchPackage| obj.metadata.finalizers.as_ref().is_none_or(Vec::is_empty);
    for _ in 0..80 {
        harness.resync().await;
        if gone(&harness.api.object()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone(&harness.api.object()),
        "{:#?}",
        harness.api.object().status
    );
    assert_eq!(harness.aws.calls(Operation::CreatePackage).await, 1);
    assert_eq!(harness.aws.calls(Operation::DeletePackage).await, 1);
    let left: Vec<_> = harness
        .aws
        .backend
        .describe_packages(&own_scope(REGION), PackageFilter::Name(NAME.into()))
        .await
        .expect("describe")
        .into_iter()
        .filter(|p| p.status != PackageStatus::Deleting)
        .collect();
    assert_eq!(left, Vec::new(), "a package left behind");
}

/// A create that made its package but answered a 5xx, a package the listings do not show yet,
/// and a spec edit in between: the second create (of the new spec) answers AlreadyExists. The
/// package is the first attempt's, holding the old spec: it is recorded with the old spec's
/// digest and updated to the new one, not taken for the new spec (Ready on the wrong content).
#[tokio::test]
async fn a_retried_create_of_an_edited_spec_records_what_the_first_attempt_imported() {
    let faults = FaultConfig {
        read_after_write_lag_ms: 1_500,
        ..FaultConfig::default()
    }
    .scripted("CreatePackage", ScriptedFault::ErrorAfterEffect);
    let aws = with_faults(faults).await;
    let harness = Harness::new(aws, with_finalizer(object(json!({})))).await;
    harness.reconcile().await;
    assert!(status_of(&harness.api.object()).in_flight.is_some());
    harness
        .api
        .edit(|o| o.spec.description = Some("now with winter terms".into()));
    let obj = settle_by_reconciles(&harness, 100).await;
    assert_ready(&obj);
    assert!(
        harness.aws.calls(Operation::CreatePackage).await >= 2,
        "the scenario did not happen"
    );
    let held = package(&harness).await;
    assert_eq!(
        held.description.as_deref(),
        Some("now with winter terms"),
        "AWS holds the first attempt's spec"
    );
    assert_eq!(versions(&harness).await.len(), 2);
}
