//! `managementPolicy: Observe` and `suspend`, against the simulator: an observer reports a
//! package it does not own and its call log holds not one changing call, deletion included;
//! a suspended object keeps its conditions and changes nothing in AWS.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};
use ospkg::backend::{AssociatePackage, Operation, PackageBackend, PackageFilter};
use ospkg::crd::FINALIZER;
use ospkg::vocabulary::{ConditionType, StallReason};
use ospkg_sim::{Durations, SimConfig};
use serde_json::json;

use crate::support::own_scope;
use crate::support::{
    Aws, Harness, NAME, OBJECT_PATH, REGION, object, settled, status_of, with_finalizer,
};

const DOMAIN: &str = "catalog-prod";
const SHARED: &str = "shared-synonyms";

async fn aws_with_domain() -> Aws {
    Aws::start(
        SimConfig::default()
            .durations(Durations::instant())
            .domain(DOMAIN, "OpenSearch_2.19"),
    )
    .await
}

/// A package made outside the cluster (by "someone else"), associated with [`DOMAIN`].
async fn foreign_package(aws: &Aws) -> String {
    let spec = object(json!({})).spec;
    let package = aws
        .backend
        .create_package(
            &own_scope(REGION),
            ospkg::plan::create_request(&spec, SHARED.into()),
        )
        .await
        .expect("create");
    aws.backend
        .associate_package(
            &own_scope(REGION),
            AssociatePackage {
                package_id: package.id.clone(),
                domain_name: DOMAIN.into(),
                prerequisites: Vec::new(),
                key_store_access: None,
            },
        )
        .await
        .expect("associate");
    package.id
}

fn observer() -> ospkg::crd::OpenSearchPackage {
    with_finalizer(object(json!({
        "spec": {
            "packageType": "TXT-DICTIONARY",
            "managementPolicy": "Observe",
            "packageName": SHARED,
        },
    })))
}

fn events(harness: &Harness, reason: &str) -> usize {
    harness
        .api
        .sent()
        .iter()
        .filter(|s| s.path.contains("/events") && s.body["reason"] == reason)
        .count()
}

#[tokio::test]
async fn an_observer_reports_a_package_it_does_not_own_and_never_changes_it() {
    let aws = aws_with_domain().await;
    let id = foreign_package(&aws).await;
    let start = aws.log_position().await;
    let harness = Harness::new(aws, observer()).await;

    let obj = harness.settle(10).await;
    let status = status_of(&obj);
    assert!(status.is_ready_at(obj.metadata.generation), "{status:#?}");
    assert_eq!(status.package_id.as_deref(), Some(id.as_str()));
    assert_eq!(status.package_name.as_deref(), Some(SHARED));
    assert_eq!(status.available_package_version.as_deref(), Some("v1"));
    assert_eq!(status.version_history.len(), 1);
    assert_eq!(status.domains.len(), 1, "{:?}", status.domains);
    let domain = &status.domains[0];
    assert_eq!(domain.domain_name, DOMAIN);
    assert_eq!(
        domain.reference_path.as_deref(),
        Some(format!("analyzers/{id}").as_str())
    );
    assert!(domain.unmanaged, "an observer manages no association");
    assert_eq!(events(&harness, "Observing"), 1);

    // A new version made by its owner shows up at the next check.
    let spec = object(json!({})).spec;
    let digest = ospkg::digest::SpecDigest::of(&spec);
    harness
        .aws
        .backend
        .update_package(
            &own_scope(REGION),
            ospkg::plan::update_request(&spec, id.clone(), &digest, None),
        )
        .await
        .expect("the owner updates");
    let after_owner = harness.aws.log_position().await;
    // The region observer's next listing shows the change.
    harness.resync().await;
    let obj = harness.settle(10).await;
    assert_eq!(
        status_of(&obj).available_package_version.as_deref(),
        Some("v2"),
        "{:#?}",
        obj.status
    );
    assert_eq!(status_of(&obj).version_history.len(), 2);
    // The domain still runs v1: an observer does not apply the new version.
    assert_eq!(
        status_of(&obj).domains[0].package_version.as_deref(),
        Some("v1")
    );
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    assert_eq!(
        harness.aws.changing_calls_since(after_owner).await,
        Vec::<String>::new()
    );

    // Deleting the object (deletionPolicy defaults to Delete) leaves the package alone.
    let before_delete = harness.aws.log_position().await;
    harness
        .api
        .edit(|o| o.meta_mut().deletion_timestamp = Some(Time(Timestamp::now())));
    harness.reconcile().await;
    let finalizer_removed = harness.api.sent().iter().any(|s| {
        s.method == "PATCH"
            && s.path == OBJECT_PATH
            && s.body.to_string().contains("remove")
            && s.body.to_string().contains(FINALIZER)
    });
    assert!(finalizer_removed, "{:#?}", harness.api.sent());
    // Not even a read was needed to let the object go.
    assert_eq!(harness.aws.log_position().await, before_delete);
    let still_there = harness
        .aws
        .backend
        .describe_packages(&own_scope(REGION), PackageFilter::Id(id.clone()))
        .await
        .expect("describe");
    assert_eq!(still_there.len(), 1);
    assert_eq!(still_there[0].status.as_str(), "AVAILABLE");

    // Over the whole life of the observer: reads only.
    let calls = harness.aws.changing_calls_since(start).await;
    let own_update: Vec<String> = calls
        .into_iter()
        .filter(|c| !c.starts_with(Operation::UpdatePackage.as_str()))
        .collect();
    assert_eq!(own_update, Vec::<String>::new());
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
}

#[tokio::test]
async fn an_observer_stalls_while_its_package_is_missing_and_recovers_when_it_appears() {
    let aws = aws_with_domain().await;
    let harness = Harness::new(aws, observer()).await;
    let obj = harness.settle(10).await;
    let stall = status_of(&obj)
        .stall()
        .map(|s| (s.reason, s.message.to_owned()));
    let Some((Some(StallReason::PackageNotFound), message)) = stall else {
        panic!("expected Stalled PackageNotFound: {:#?}", obj.status);
    };
    assert!(message.contains(SHARED), "{message}");
    assert_eq!(
        harness.aws.changing_calls_since(0).await,
        Vec::<String>::new(),
        "an observer created something"
    );

    // Someone creates the package: the observer finds it.
    let id = foreign_package(&harness.aws).await;
    let after_create = harness.aws.log_position().await;
    // The region observer's next listing shows the change.
    harness.resync().await;
    let obj = harness.settle(10).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    assert_eq!(status_of(&obj).package_id.as_deref(), Some(id.as_str()));

    // It is deleted outside: the observer forgets it and says so.
    harness
        .aws
        .backend
        .dissociate_package(&own_scope(REGION), &id, DOMAIN)
        .await
        .expect("dissociate");
    harness
        .aws
        .backend
        .delete_package(&own_scope(REGION), &id)
        .await
        .expect("delete");
    let after_delete = harness.aws.log_position().await;
    // The region observer's next listing shows the change.
    harness.resync().await;
    let obj = harness.settle(10).await;
    assert!(
        status_of(&obj).is_stalled_for(StallReason::PackageNotFound),
        "{:#?}",
        obj.status
    );
    assert_eq!(status_of(&obj).package_id, None);
    assert_eq!(events(&harness, "PackageVanished"), 1);
    let changing: Vec<String> = harness
        .aws
        .changing_calls_since(after_create)
        .await
        .into_iter()
        .filter(|c| {
            let from_the_test =
                c.starts_with("DissociatePackage") || c.starts_with("DeletePackage");
            !from_the_test
        })
        .collect();
    assert_eq!(changing, Vec::<String>::new());
    assert_eq!(
        harness.aws.changing_calls_since(after_delete).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn suspend_keeps_the_last_conditions_and_changes_nothing() {
    let harness = Harness::new(Aws::immediate().await, with_finalizer(object(json!({})))).await;
    let ready = harness.settle(10).await;
    let ready_condition = status_of(&ready)
        .condition(ConditionType::Ready)
        .cloned()
        .expect("Ready");
    assert_eq!(ready_condition.status, "True");

    // Suspend and change the source in the same edit.
    harness.api.edit(|o| {
        o.spec.suspend = true;
        o.spec.description = Some("new words, later".into());
    });
    let start = harness.aws.log_position().await;
    harness.reconcile().await;
    let obj = harness.api.object();
    let status = status_of(&obj);
    assert_eq!(status.observed_generation, Some(2), "the new spec was seen");
    assert_eq!(
        status.conditions,
        status_of(&ready).conditions,
        "the conditions are kept exactly as they were"
    );
    assert_eq!(
        status.condition(ConditionType::Ready),
        Some(&ready_condition)
    );
    assert_eq!(events(&harness, "Suspended"), 1);
    assert_eq!(
        harness.aws.changing_calls_since(start).await,
        Vec::<String>::new()
    );

    // Looking again changes nothing and says nothing new.
    let writes = harness.api.sent().len();
    harness.reconcile().await;
    let later: Vec<_> = harness.api.sent()[writes..]
        .iter()
        .filter(|s| s.method != "GET")
        .cloned()
        .collect();
    assert!(later.is_empty(), "{later:#?}");
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 0);

    // Resuming applies what was held back, once.
    harness.api.edit(|o| o.spec.suspend = false);
    let obj = harness.settle(10).await;
    assert!(settled(&obj));
    assert!(status_of(&obj).is_ready_at(Some(3)), "{:#?}", obj.status);
    assert_eq!(harness.aws.calls(Operation::UpdatePackage).await, 1);
    let package = harness
        .aws
        .backend
        .describe_packages(&own_scope(REGION), PackageFilter::Name(NAME.into()))
        .await
        .expect("describe");
    assert_eq!(package[0].description.as_deref(), Some("new words, later"));
}

#[tokio::test]
async fn an_observer_finds_an_aws_owned_package_by_its_id() {
    // The simulator, like the service, lists AWS-provided optional plugins (G… ids).
    let aws = aws_with_domain().await;
    let start = aws.log_position().await;
    let mut obj = with_finalizer(object(json!({
        "spec": {
            "packageType": "ZIP-PLUGIN",
            "managementPolicy": "Observe",
            "packageID": "G100000001",
        },
    })));
    // Not a valid package name: with packageID it is never used as one.
    obj.metadata.name = Some("icu.plugin".into());
    let harness = Harness::new(aws, obj).await;
    let obj = harness.settle(10).await;
    let status = status_of(&obj);
    assert!(status.is_ready_at(obj.metadata.generation), "{status:#?}");
    assert_eq!(status.package_id.as_deref(), Some("G100000001"));
    assert_eq!(status.package_name.as_deref(), Some("analysis-icu"));
    assert_eq!(status.package_type.as_deref(), Some("ZIP-PLUGIN"));
    assert_eq!(
        harness.aws.changing_calls_since(start).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_suspended_object_being_deleted_waits_and_deletes_once_resumed() {
    let harness = Harness::new(
        aws_with_domain().await,
        with_finalizer(object(json!({"spec": {
            "packageType": "TXT-DICTIONARY",
            "source": {"s3BucketName": crate::support::BUCKET, "s3Key": "synonyms.txt"},
            "domains": [{"name": DOMAIN}],
        }}))),
    )
    .await;
    let obj = harness.settle(20).await;
    assert!(status_of(&obj).is_ready_at(obj.metadata.generation));
    harness.api.edit(|o| o.spec.suspend = true);
    harness.reconcile().await;

    let start = harness.aws.log_position().await;
    harness
        .api
        .edit(|o| o.meta_mut().deletion_timestamp = Some(Time(Timestamp::now())));
    for _ in 0..3 {
        harness.reconcile().await;
    }
    assert_eq!(
        harness.aws.changing_calls_since(start).await,
        Vec::<String>::new(),
        "no dissociation and no delete while suspended"
    );
    let obj = harness.api.object();
    assert!(obj.finalizers().iter().any(|f| f == FINALIZER));
    let ready = status_of(&obj)
        .condition(ConditionType::Ready)
        .cloned()
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Deleting")
    );
    assert!(ready.message.contains("spec.suspend"), "{}", ready.message);

    // Resumed: the deletion goes on, dissociating first.
    harness.api.edit(|o| o.spec.suspend = false);
    for _ in 0..20 {
        harness.reconcile().await;
        if !harness
            .api
            .object()
            .finalizers()
            .iter()
            .any(|f| f == FINALIZER)
        {
            break;
        }
    }
    let calls = harness.aws.changing_calls_since(start).await;
    assert!(
        calls.iter().any(|c| c.starts_with("DissociatePackage"))
            && calls.iter().any(|c| c.starts_with("DeletePackage")),
        "{calls:?}"
    );
}
