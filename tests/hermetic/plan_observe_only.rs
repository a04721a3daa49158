//! The plan for `managementPolicy: Observe`: whatever AWS shows, the only actions are
//! records of what was seen (Track, Untrack); nothing that calls AWS, deletion included.

use ospkg::backend::{DomainAssociation, DomainPackageStatus, Package, PackageStatus};
use ospkg::crd::{OpenSearchPackage, OpenSearchPackageStatus};
use ospkg::plan::{Action, Decision, Observation, Verdict, plan, plan_cleanup};
use ospkg::vocabulary::{StallReason, WaitReason};
use serde_json::json;

const ID: &str = "F222";

fn observer(extra: serde_json::Value) -> OpenSearchPackage {
    let mut spec = json!({"packageType": "TXT-DICTIONARY", "managementPolicy": "Observe"});
    if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    let mut obj = OpenSearchPackage::new(
        "shared-synonyms",
        serde_json::from_value(spec).expect("valid spec"),
    );
    obj.metadata.namespace = Some("search".into());
    obj.metadata.generation = Some(1);
    obj
}

/// An observer that recorded package `ID`.
fn tracking(extra: serde_json::Value) -> OpenSearchPackage {
    let mut obj = observer(extra);
    obj.status = Some(OpenSearchPackageStatus {
        package_id: Some(ID.into()),
        observed_generation: Some(1),
        ..Default::default()
    });
    obj
}

fn package(status: PackageStatus, package_type: &str) -> Package {
    Package {
        id: ID.into(),
        name: "shared-synonyms".into(),
        package_type: package_type.into(),
        status,
        description: None,
        available_version: Some("v3".into()),
        engine_version: None,
        error: None,
        created_at: None,
        last_updated_at: None,
        allow_listed_users: None,
    }
}

fn seen(status: PackageStatus) -> Observation {
    Observation {
        package: Some(package(status, "TXT-DICTIONARY")),
        ..Default::default()
    }
}

/// Fails when the decision is anything that would call AWS.
fn assert_no_call(decision: &Decision) {
    match decision {
        Decision::Settle(_) | Decision::Act(Action::Track { .. } | Action::Untrack) => {}
        Decision::Act(other) => panic!("an observer planned an AWS call: {other:?}"),
    }
}

fn stall_reason(decision: &Decision) -> Option<StallReason> {
    match decision {
        Decision::Settle(Verdict::Stall { reason, .. }) => Some(*reason),
        _ => None,
    }
}

#[test]
fn a_missing_package_stalls_and_is_never_created() {
    let step = plan(&observer(json!({})), &Observation::default());
    assert_eq!(stall_reason(&step), Some(StallReason::PackageNotFound));
    let Decision::Settle(Verdict::Stall { message, .. }) = step else {
        unreachable!()
    };
    assert!(message.contains("\"shared-synonyms\""), "{message}");
    assert!(message.contains("never creates"), "{message}");
}

#[test]
fn a_package_found_by_name_is_tracked_then_reported() {
    let step = plan(&observer(json!({})), &seen(PackageStatus::Available));
    let Decision::Act(Action::Track { package }) = step else {
        panic!("expected Track, got {step:?}");
    };
    assert_eq!(package.id, ID);
    assert_eq!(
        plan(&tracking(json!({})), &seen(PackageStatus::Available)),
        Decision::Settle(Verdict::Done)
    );
}

#[test]
fn with_a_package_id_the_object_name_need_not_be_a_package_name() {
    let mut obj = observer(json!({"packageID": ID}));
    obj.metadata.name = Some("shared.synonyms".into());
    assert!(matches!(
        plan(&obj, &seen(PackageStatus::Available)),
        Decision::Act(Action::Track { .. })
    ));
    let step = plan(&obj, &Observation::default());
    assert_eq!(stall_reason(&step), Some(StallReason::PackageNotFound));
    let Decision::Settle(Verdict::Stall { message, .. }) = step else {
        unreachable!()
    };
    assert!(message.contains(ID), "{message}");
    // Without one, such a name is refused as before.
    let mut obj = observer(json!({}));
    obj.metadata.name = Some("shared.synonyms".into());
    assert_eq!(
        stall_reason(&plan(&obj, &Observation::default())),
        Some(StallReason::InvalidSpec)
    );
}

#[test]
fn spec_package_name_and_the_package_type_must_match() {
    let obj = observer(json!({"packageType": "ZIP-PLUGIN"}));
    let step = plan(&obj, &seen(PackageStatus::Available));
    assert_eq!(stall_reason(&step), Some(StallReason::InvalidSpec));
}

#[test]
fn an_aws_owned_package_can_be_observed() {
    let mut observed = Observation {
        package: Some(package(PackageStatus::Available, "ZIP-PLUGIN")),
        ..Default::default()
    };
    if let Some(p) = observed.package.as_mut() {
        p.id = "G123".into();
    }
    let step = plan(&observer(json!({"packageType": "ZIP-PLUGIN"})), &observed);
    assert!(
        matches!(&step, Decision::Act(Action::Track { package }) if package.id == "G123"),
        "{step:?}"
    );
}

#[test]
fn a_vanished_package_is_forgotten_then_looked_up_by_name() {
    let step = plan(&tracking(json!({})), &Observation::default());
    assert_eq!(step, Decision::Act(Action::Untrack));
}

#[test]
fn every_package_state_settles_without_a_call() {
    let states = [
        (PackageStatus::Copying, Some(WaitReason::Copying), None),
        (
            PackageStatus::Validating,
            Some(WaitReason::Validating),
            None,
        ),
        (PackageStatus::Deleting, Some(WaitReason::PackageBusy), None),
        (
            PackageStatus::CopyFailed,
            None,
            Some(StallReason::CopyFailed),
        ),
        (
            PackageStatus::ValidationFailed,
            None,
            Some(StallReason::ValidationFailed),
        ),
        (
            PackageStatus::DeleteFailed,
            None,
            Some(StallReason::UnexpectedPackageStatus),
        ),
        (PackageStatus::Available, None, None),
    ];
    for (state, wait, stall) in states {
        let mut observed = seen(state.clone());
        observed.associations = Some(vec![DomainAssociation {
            domain_name: "catalog-prod".into(),
            package_id: ID.into(),
            status: DomainPackageStatus::Active,
            package_version: Some("v2".into()),
            reference_path: Some(format!("analyzers/{ID}")),
            last_updated: None,
            error: None,
        }]);
        let step = plan(&tracking(json!({})), &observed);
        assert_no_call(&step);
        match (&step, wait, stall) {
            (Decision::Settle(Verdict::Wait { reason, .. }), Some(wanted), None) => {
                assert_eq!(*reason, wanted, "{state}")
            }
            (Decision::Settle(Verdict::Stall { reason, .. }), None, Some(wanted)) => {
                assert_eq!(*reason, wanted, "{state}")
            }
            (Decision::Settle(Verdict::Done), None, None) => {}
            other => panic!("{state}: unexpected {other:?}"),
        }
    }
}

#[test]
fn suspend_applies_to_observers_too() {
    let step = plan(
        &tracking(json!({"suspend": true})),
        &seen(PackageStatus::Available),
    );
    assert_eq!(
        step,
        Decision::Settle(Verdict::Suspended {
            new_generation: false
        })
    );
}

#[test]
fn deleting_an_observer_never_touches_the_package() {
    // Even with deletionPolicy Delete (the default) and the package right there.
    let mut obj = tracking(json!({"deletionPolicy": "Delete"}));
    obj.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    let mut observed = seen(PackageStatus::Available);
    observed.associations = Some(Vec::new());
    assert_eq!(
        plan_cleanup(&obj, &observed),
        Decision::Settle(Verdict::Finished)
    );
}
