//! Reconcile tests: the production AWS backend against an in-process simulator, and a mock
//! Kubernetes API that records every request the reconcile makes, so the tests assert what is
//! sent to the API server and what reached AWS.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use ospkg::backend::{Operation, PackageBackend, PackageFilter};
use ospkg::controller::reconcile;
use ospkg::crd::{FINALIZER, OpenSearchPackageStatus};
use serde_json::json;

use crate::support::own_scope;
use crate::support::{
    Aws, Harness, OBJECT_PATH, REGION, context, mock_client, object, status_of, status_patches,
    with_finalizer,
};

/// The finalizer is the first write, before anything is asked of AWS; the same reconcile then
/// goes on from the patched object (no wait for the watch to deliver it).
#[tokio::test]
async fn a_new_object_gets_the_finalizer_first() {
    let obj = object(json!({}));
    let (client, api) = mock_client(obj.clone());
    let aws = Aws::immediate().await;
    reconcile(Arc::new(obj), context(client, aws.backend().await))
        .await
        .expect("reconcile");

    let sent = api.sent();
    assert_eq!(sent[0].method, "PATCH");
    assert_eq!(sent[0].path, OBJECT_PATH);
    assert_eq!(sent[0].content_type, "application/json-patch+json");
    assert_eq!(
        sent[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    // Then the create record (written ahead of CreatePackage) and the status after it.
    let patches = status_patches(&sent);
    assert_eq!(patches.len(), 2, "{sent:#?}");
    assert_eq!(
        patches[0].body["status"]["inFlight"]["operation"],
        "CreatePackage"
    );
    assert_eq!(aws.calls(Operation::CreatePackage).await, 1);
}

/// A failed finalizer patch stops the reconcile: nothing is asked of AWS without it.
#[tokio::test]
async fn nothing_reaches_aws_before_the_finalizer_is_in_place() {
    let obj = object(json!({}));
    let (client, api) = mock_client(obj.clone());
    api.fail_next(409);
    let aws = Aws::immediate().await;
    let result = reconcile(Arc::new(obj), context(client, aws.backend().await)).await;
    assert!(result.is_err());
    assert_eq!(aws.total_calls().await, 0);
}

#[tokio::test]
async fn create_records_the_create_then_writes_status_by_server_side_apply() {
    let obj = with_finalizer(object(json!({})));
    let (client, api) = mock_client(obj.clone());
    let aws = Aws::held().await;
    reconcile(Arc::new(obj), context(client, aws.backend().await))
        .await
        .expect("reconcile");

    assert_eq!(aws.calls(Operation::CreatePackage).await, 1);
    let sent = api.sent();
    let patches = status_patches(&sent);
    assert_eq!(patches.len(), 2, "{sent:#?}");
    for patch in &patches {
        assert_eq!(patch.method, "PATCH");
        assert_eq!(patch.content_type, "application/apply-patch+yaml");
        assert!(
            patch
                .query
                .contains("fieldManager=opensearch-package-operator"),
            "{}",
            patch.query
        );
        assert!(patch.query.contains("force=true"), "{}", patch.query);
        assert_eq!(patch.body["apiVersion"], "ospkg.dev/v1alpha1");
        assert_eq!(patch.body["kind"], "OpenSearchPackage");
    }
    // First the create record, before the call...
    let before = &patches[0].body["status"];
    assert_eq!(before["inFlight"]["operation"], "CreatePackage");
    assert!(before.get("packageID").is_none());
    assert_eq!(before["region"], REGION);
    // ...then the outcome.
    let after: OpenSearchPackageStatus =
        serde_json::from_value(patches[1].body["status"].clone()).expect("status");
    assert!(after.in_flight.is_none());
    let id = after.package_id.clone().expect("package id");
    assert!(id.starts_with('F'), "{id}");
    assert_eq!(
        after.package_status,
        Some(ospkg::vocabulary::PackageStatus::Copying)
    );
    assert!(
        after
            .applied_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert_eq!(after.observed_generation, Some(1));
    let reconciling = after
        .conditions
        .iter()
        .find(|c| c.type_ == "Reconciling")
        .expect("Reconciling condition");
    assert_eq!(reconciling.status, "True");
    assert_eq!(reconciling.observed_generation, Some(1));

    // An Event said so.
    let event = sent
        .iter()
        .find(|s| s.method == "POST" && s.path == "/apis/events.k8s.io/v1/namespaces/search/events")
        .expect("an event");
    assert_eq!(event.body["reason"], "Created");
    assert_eq!(event.body["regarding"]["name"], "product-synonyms");
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    // First reconcile brings the object to Ready against a simulator that imports at once.
    let obj = with_finalizer(object(json!({})));
    let aws = Aws::immediate().await;
    let (client, api) = mock_client(obj.clone());
    let ctx = context(client, aws.backend().await);
    reconcile(Arc::new(obj.clone()), ctx.clone())
        .await
        .expect("create");

    // Reconcile until Ready, each time from the object as the API server holds it (what the
    // watch delivers).
    for _ in 0..4 {
        let obj = api.object();
        ctx.make_due(&obj);
        reconcile(Arc::new(obj), ctx.clone())
            .await
            .expect("reconcile");
    }
    let obj = api.object();
    let status = obj.status.clone().expect("status");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "True", "{status:#?}");
    assert_eq!(status.available_package_version.as_deref(), Some("v1"));

    let before = api.sent().len();
    ctx.make_due(&obj);
    reconcile(Arc::new(obj), ctx).await.expect("steady state");
    let log = api.sent();
    assert!(
        status_patches(&log[before..]).is_empty(),
        "{:#?}",
        &log[before..]
    );
    assert_eq!(aws.calls(Operation::CreatePackage).await, 1);
    assert_eq!(aws.calls(Operation::UpdatePackage).await, 0);
}

#[tokio::test]
async fn deletion_deletes_the_package_then_removes_the_finalizer_once_it_is_gone() {
    let aws = Aws::immediate().await;
    let created = aws
        .backend
        .create_package(
            &own_scope(REGION),
            ospkg::plan::create_request(&object(json!({})).spec, "product-synonyms".into()),
        )
        .await
        .expect("create");
    let mut obj = with_finalizer(object(json!({})));
    obj.meta_mut().deletion_timestamp = Some(Time(Timestamp::now()));
    obj.status = Some(OpenSearchPackageStatus {
        package_id: Some(created.id.clone()),
        region: Some(REGION.into()),
        ..Default::default()
    });
    let (client, api) = mock_client(obj.clone());
    let ctx = context(client, aws.backend().await);
    reconcile(Arc::new(obj), ctx.clone())
        .await
        .expect("reconcile");

    // DeletePackage was accepted; the object stays until the package is gone.
    assert_eq!(aws.calls(Operation::DeletePackage).await, 1);
    assert!(
        !api.sent().iter().any(|s| s.path == OBJECT_PATH),
        "the finalizer went before the package: {:#?}",
        api.sent()
    );
    let obj = api.object();
    ctx.make_due(&obj);
    reconcile(Arc::new(obj), ctx).await.expect("reconcile");
    assert_eq!(aws.calls(Operation::DeletePackage).await, 1);
    let remaining = aws
        .backend
        .describe_packages(&own_scope(REGION), PackageFilter::Id(created.id.clone()))
        .await
        .unwrap_or_default();
    assert!(
        remaining
            .iter()
            .all(|p| p.id != created.id || p.status.as_str() == "DELETING")
    );
    let sent = api.sent();
    let finalizer = sent
        .iter()
        .find(|s| s.method == "PATCH" && s.path == OBJECT_PATH)
        .expect("finalizer patch");
    assert_eq!(
        finalizer.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
}

#[tokio::test]
async fn deletion_with_retain_only_removes_the_finalizer() {
    let aws = Aws::immediate().await;
    let created = aws
        .backend
        .create_package(
            &own_scope(REGION),
            ospkg::plan::create_request(&object(json!({})).spec, "product-synonyms".into()),
        )
        .await
        .expect("create");
    let mut obj = with_finalizer(object(json!({})));
    obj.spec.deletion_policy = ospkg::crd::DeletionPolicy::Retain;
    obj.meta_mut().deletion_timestamp = Some(Time(Timestamp::now()));
    obj.status = Some(OpenSearchPackageStatus {
        package_id: Some(created.id.clone()),
        region: Some(REGION.into()),
        ..Default::default()
    });
    let (client, api) = mock_client(obj.clone());
    let describes = aws.calls(Operation::DescribePackages).await;
    reconcile(Arc::new(obj), context(client, aws.backend().await))
        .await
        .expect("reconcile");
    assert_eq!(aws.calls(Operation::DeletePackage).await, 0);
    assert_eq!(aws.calls(Operation::DescribePackages).await, describes);
    let sent = api.sent();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].path, OBJECT_PATH);
}

#[tokio::test]
async fn a_crash_after_update_does_not_update_twice() {
    // The update happened (its marker is in the history) but status still has the old digest.
    let aws = Aws::immediate().await;
    let base = object(json!({}));
    let created = aws
        .backend
        .create_package(
            &own_scope(REGION),
            ospkg::plan::create_request(&base.spec, "product-synonyms".into()),
        )
        .await
        .expect("create");
    let old_digest = ospkg::digest::SpecDigest::of(&base.spec);
    let mut obj = with_finalizer(object(json!({})));
    obj.spec.description = Some("now with winter terms".into());
    obj.metadata.generation = Some(2);
    let new_digest = ospkg::digest::SpecDigest::of(&obj.spec);
    aws.backend
        .update_package(
            &own_scope(REGION),
            ospkg::plan::update_request(&obj.spec, created.id.clone(), &new_digest, None),
        )
        .await
        .expect("update before the crash");
    obj.status = Some(OpenSearchPackageStatus {
        package_id: Some(created.id.clone()),
        region: Some(REGION.into()),
        applied_digest: Some(old_digest.as_str().into()),
        ..Default::default()
    });
    let updates = aws.calls(Operation::UpdatePackage).await;
    let histories = aws.calls(Operation::GetPackageVersionHistory).await;
    let (client, api) = mock_client(obj.clone());
    reconcile(Arc::new(obj), context(client, aws.backend().await))
        .await
        .expect("reconcile");
    assert_eq!(aws.calls(Operation::UpdatePackage).await, updates);
    assert_eq!(
        aws.calls(Operation::GetPackageVersionHistory).await,
        histories + 1
    );
    let sent = api.sent();
    let status = &status_patches(&sent).last().expect("status").body["status"];
    assert_eq!(status["appliedDigest"], new_digest.as_str());
}

#[tokio::test]
async fn a_region_listing_older_than_status_is_not_trusted() {
    let aws = Aws::immediate().await;
    let base = object(json!({}));
    let created = aws
        .backend
        .create_package(
            &own_scope(REGION),
            ospkg::plan::create_request(&base.spec, "product-synonyms".into()),
        )
        .await
        .expect("create");
    let (client, api) = mock_client(base.clone());
    let ctx = context(client, aws.backend().await);
    let describes = aws.calls(Operation::DescribePackages).await;
    // The region listing is taken while the package is at v1...
    ctx.regions
        .listing(&ctx, &own_scope(REGION), None, None)
        .await
        .expect("listing")
        .expect("a listing in time");
    // ...then a new version becomes available and this object records it.
    let digest = ospkg::digest::SpecDigest::of(&base.spec);
    let updated = aws
        .backend
        .update_package(
            &own_scope(REGION),
            ospkg::plan::update_request(&base.spec, created.id.clone(), &digest, None),
        )
        .await
        .expect("update");
    let mut obj = with_finalizer(base);
    let mut status = OpenSearchPackageStatus {
        package_id: Some(created.id.clone()),
        region: Some(REGION.into()),
        observed_generation: Some(1),
        applied_digest: Some(digest.as_str().into()),
        package_status: Some(ospkg::vocabulary::PackageStatus::Available),
        available_package_version: Some("v2".into()),
        last_updated_at: ospkg::status::rfc3339(updated.last_updated_at),
        ..Default::default()
    };
    ospkg::status::apply_outcome(
        &mut status,
        &ospkg::status::Outcome::Ready,
        Some(1),
        Timestamp::now(),
    );
    obj.status = Some(status);

    reconcile(Arc::new(obj), ctx).await.expect("reconcile");
    let sent = api.sent();
    for patch in status_patches(&sent) {
        assert_eq!(
            patch.body["status"]["availablePackageVersion"], "v2",
            "status went back to the snapshot's version: {:#?}",
            patch.body
        );
    }
    // The listing was older than status, so a new one was taken (and nothing else read).
    assert_eq!(aws.calls(Operation::DescribePackages).await, describes + 2);
}

#[tokio::test]
async fn the_operators_own_status_write_does_not_trigger_another_round_of_reads() {
    let obj = with_finalizer(object(json!({})));
    let aws = Aws::held().await;
    let (client, api) = mock_client(obj.clone());
    let ctx = context(client, aws.backend().await);
    reconcile(Arc::new(obj.clone()), ctx.clone())
        .await
        .expect("create");
    let reads = aws.calls(Operation::DescribePackages).await;

    // The watch delivers the object with the status just written: nothing the user controls
    // changed, so the reconcile waits for its poll instead of reading AWS again.
    let echoed = api.object();
    assert!(echoed.status.is_some());
    reconcile(Arc::new(echoed), ctx.clone())
        .await
        .expect("echo");
    assert_eq!(aws.calls(Operation::DescribePackages).await, reads);

    // A spec change is acted on at once.
    api.edit(|o| o.spec.description = Some("changed".into()));
    reconcile(Arc::new(api.object()), ctx)
        .await
        .expect("change");
    assert_eq!(aws.calls(Operation::DescribePackages).await, reads + 1);
}

/// Whether a status patch sets Ready=True.
fn sets_ready(body: &serde_json::Value) -> bool {
    body["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

// The status a reconcile writes goes before the Events that tell of it: readiness (what
// `kubectl wait` and the benchmark watch) does not wait for the Event POSTs.
#[tokio::test]
async fn the_ready_status_is_written_before_its_event() {
    let harness = Harness::new(Aws::immediate().await, with_finalizer(object(json!({})))).await;
    let obj = harness.settle(10).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));

    let sent = harness.api.sent();
    let ready_status = sent
        .iter()
        .position(|s| s.path == format!("{OBJECT_PATH}/status") && sets_ready(&s.body))
        .expect("a status patch that sets Ready");
    let ready_event = sent
        .iter()
        .position(|s| s.path.contains("/events") && s.body["reason"] == "Ready")
        .expect("a Ready event");
    assert!(
        ready_status < ready_event,
        "the Ready event (request {ready_event}) went before the status (request {ready_status})"
    );
    let created_status = sent
        .iter()
        .position(|s| {
            s.path == format!("{OBJECT_PATH}/status") && s.body["status"]["packageID"].is_string()
        })
        .expect("a status patch that records the package");
    let created_event = sent
        .iter()
        .position(|s| s.path.contains("/events") && s.body["reason"] == "Created")
        .expect("a Created event");
    assert!(created_status < created_event, "{sent:#?}");
}

/// A package deleted outside the cluster while the region listing the object reads from still
/// shows it: the AssociatePackage a newly listed domain needs answers "Package not found".
/// That is the package gone, not the domain: the object reads again (a listing newer than the
/// answer), creates the package again and associates the new one, without a DomainNotFound
/// stall and without retrying the association against the gone package.
#[tokio::test]
async fn an_association_that_finds_the_package_gone_creates_it_again() {
    const DOMAIN: &str = "catalog-prod";
    let aws = Aws::start(
        ospkg_sim::SimConfig::default()
            .durations(ospkg_sim::Durations::instant())
            .domain(DOMAIN, "OpenSearch_2.19"),
    )
    .await;
    let harness = crate::support::Harness::new(aws, with_finalizer(object(json!({})))).await;
    let obj = harness.settle(10).await;
    let first_id = status_of(&obj).package_id.clone().expect("package id");

    // Deleted outside; the object's region listing still shows it.
    harness
        .aws
        .backend
        .delete_package(&own_scope(REGION), &first_id)
        .await
        .expect("delete");
    let after_delete = harness.aws.log_position().await;
    harness.api.edit(|obj| {
        obj.spec.domains = vec![serde_json::from_value(json!({"name": DOMAIN})).expect("domain")];
    });

    let obj = harness.settle(10).await;
    let status = status_of(&obj);
    let second_id = status.package_id.clone().expect("package id");
    assert_ne!(second_id, first_id, "the package was created again");
    assert!(status.is_ready_at(obj.metadata.generation), "{status:#?}");
    assert_eq!(status.domains.len(), 1, "{status:#?}");
    assert_eq!(status.domains[0].package_version.as_deref(), Some("v1"));
    let changing = harness.aws.changing_calls_since(after_delete).await;
    let associations_of_the_gone_package = changing
        .iter()
        .filter(|c| c.starts_with("AssociatePackage") && c.contains(&first_id))
        .count();
    assert!(
        associations_of_the_gone_package <= 1,
        "the association was retried against the gone package: {changing:?}"
    );
    assert_eq!(
        changing
            .iter()
            .filter(|c| c.starts_with("CreatePackage"))
            .count(),
        1,
        "{changing:?}"
    );
    let stalls: Vec<_> = harness
        .api
        .sent()
        .iter()
        .filter(|s| s.path.contains("/events") && s.body["reason"] == "DomainNotFound")
        .map(|s| s.body["note"].clone())
        .collect();
    assert!(stalls.is_empty(), "stalled as a missing domain: {stalls:?}");
}

/// A read the service rejects (here the region listing, as with a page token it no longer
/// takes) says nothing about the spec: the object retries it, backing off, and becomes Ready;
/// only a rejected change stalls until the user acts.
#[tokio::test]
async fn a_rejected_read_is_retried_not_a_stall() {
    let aws = Aws::immediate().await;
    aws.sim
        .admin()
        .script_fault(
            Operation::DescribePackages.as_str(),
            ospkg_sim::ScriptedFault::Validation {
                message: "Invalid NextToken".into(),
            },
        )
        .await
        .expect("script");
    let harness = crate::support::Harness::new(aws, with_finalizer(object(json!({})))).await;
    harness.reconcile().await;
    let obj = harness.api.object();
    let status = status_of(&obj);
    assert_eq!(status.stall(), None, "{status:#?}");
    assert!(
        status.is_true(ospkg::vocabulary::ConditionType::Reconciling),
        "{status:#?}"
    );

    // The region observer's next listing (its backoff timer, in the operator).
    harness.resync().await;
    let obj = harness.settle(10).await;
    assert!(
        status_of(&obj).is_ready_at(obj.metadata.generation),
        "{:#?}",
        obj.status
    );
}
