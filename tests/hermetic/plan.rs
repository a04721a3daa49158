//! Table-driven tests of the pure plan: (object, what AWS showed) → the one next step.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use ospkg::backend::{
    DomainAssociation, DomainPackageStatus, Package, PackageStatus, PackageVersion, ServiceError,
};
use ospkg::crd::{
    DomainStatus, InFlight, OpenSearchPackage, OpenSearchPackageSpec, OpenSearchPackageStatus,
};
use ospkg::digest::SpecDigest;
use ospkg::plan::{Action, Decision, Observation, Verdict, plan, plan_cleanup};
use ospkg::vocabulary::{StallReason, WaitReason};
use serde_json::json;

const ID: &str = "F111";

fn spec(extra: serde_json::Value) -> OpenSearchPackageSpec {
    let mut base = json!({
        "packageType": "TXT-DICTIONARY",
        "source": {"s3BucketName": "acme-dicts", "s3Key": "synonyms.txt"},
        "commitMessage": "first words",
    });
    merge(&mut base, extra);
    serde_json::from_value(base).expect("valid spec")
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// A new object with no status.
fn fresh(extra: serde_json::Value) -> OpenSearchPackage {
    let mut obj = OpenSearchPackage::new("product-synonyms", spec(extra));
    obj.metadata.namespace = Some("search".into());
    obj.metadata.generation = Some(1);
    obj
}

/// An object that owns package `ID`, whose recorded digest is that of `applied_spec`.
fn owning(extra: serde_json::Value, applied: serde_json::Value) -> OpenSearchPackage {
    let mut obj = fresh(extra);
    obj.status = Some(OpenSearchPackageStatus {
        package_id: Some(ID.into()),
        applied_digest: Some(SpecDigest::of(&spec(applied)).as_str().to_owned()),
        available_package_version: Some("v1".into()),
        region: Some("us-east-1".into()),
        ..Default::default()
    });
    obj
}

fn package(status: PackageStatus) -> Package {
    Package {
        id: ID.into(),
        name: "product-synonyms".into(),
        package_type: "TXT-DICTIONARY".into(),
        status,
        description: None,
        available_version: Some("v1".into()),
        engine_version: None,
        error: None,
        created_at: None,
        last_updated_at: None,
        allow_listed_users: None,
    }
}

fn seen(status: PackageStatus) -> Observation {
    Observation {
        package: Some(package(status)),
        ..Default::default()
    }
}

fn stalled(step: &Decision) -> Option<StallReason> {
    match step {
        Decision::Settle(Verdict::Stall { reason, .. }) => Some(*reason),
        _ => None,
    }
}

#[test]
fn creates_a_package_that_does_not_exist() {
    let obj = fresh(json!({"description": "Product synonyms", "encryption": {"enabled": true}}));
    let Decision::Act(Action::Create {
        request,
        recreate,
        digest,
    }) = plan(&obj, &Observation::default())
    else {
        panic!("expected Create");
    };
    assert!(!recreate);
    assert_eq!(
        digest,
        SpecDigest::of(&obj.spec),
        "not following: the spec's digest"
    );
    assert_eq!(request.name, "product-synonyms");
    assert_eq!(request.source.bucket, "acme-dicts");
    assert_eq!(request.source.key, "synonyms.txt");
    assert_eq!(request.description.as_deref(), Some("Product synonyms"));
    assert!(request.encryption.is_some_and(|e| e.enabled));
}

#[test]
fn spec_package_name_wins_over_metadata_name() {
    let obj = fresh(json!({"packageName": "custom-name"}));
    let Decision::Act(Action::Create { request, .. }) = plan(&obj, &Observation::default()) else {
        panic!("expected Create");
    };
    assert_eq!(request.name, "custom-name");
}

#[test]
fn a_vanished_package_is_created_again() {
    let obj = owning(json!({}), json!({}));
    let step = plan(&obj, &Observation::default());
    assert!(
        matches!(step, Decision::Act(Action::Create { recreate: true, .. })),
        "{step:?}"
    );
}

#[test]
fn each_update_relevant_field_triggers_an_update() {
    let cases = [
        (
            "bucket",
            json!({"source": {"s3BucketName": "other-bucket"}}),
        ),
        ("key", json!({"source": {"s3Key": "v2/synonyms.txt"}})),
        ("revision", json!({"source": {"revision": "2026-11-21"}})),
        (
            "description",
            json!({"description": "now with winter terms"}),
        ),
        (
            "configuration",
            json!({"configuration": {"licenseRequirement": "NONE", "configurationRequirement": "OPTIONAL"}}),
        ),
        (
            "encryption",
            json!({"encryption": {"enabled": true, "kmsKeyIdentifier": "alias/pkg"}}),
        ),
    ];
    for (field, change) in cases {
        let obj = owning(change.clone(), json!({}));
        let step = plan(&obj, &seen(PackageStatus::Available));
        let Decision::Act(Action::Update { request, digest }) = step else {
            panic!("{field}: expected Update, got {step:?}");
        };
        assert_eq!(digest, SpecDigest::of(&obj.spec), "{field}");
        assert_eq!(request.package_id, ID, "{field}");
        assert!(
            request.commit_message.starts_with("first words [ospkg:"),
            "{field}: {}",
            request.commit_message
        );
        assert!(digest.is_marked_in(&request.commit_message), "{field}");
    }
}

#[test]
fn update_request_carries_the_new_fields() {
    let obj = owning(
        json!({"source": {"s3Key": "v2.txt"}, "description": "d2", "encryption": {"enabled": true}}),
        json!({}),
    );
    let Decision::Act(Action::Update { request, .. }) = plan(&obj, &seen(PackageStatus::Available))
    else {
        panic!("expected Update");
    };
    assert_eq!(request.source.key, "v2.txt");
    assert_eq!(request.description.as_deref(), Some("d2"));
    assert!(request.encryption.is_some_and(|e| e.enabled));
}

#[test]
fn a_changed_commit_message_alone_makes_no_update() {
    let obj = owning(
        json!({"commitMessage": "reworded"}),
        json!({"commitMessage": "first words"}),
    );
    assert_eq!(
        plan(&obj, &seen(PackageStatus::Available)),
        Decision::Settle(Verdict::Done)
    );
}

#[test]
fn waits_while_the_service_imports() {
    for (status, reason) in [
        (PackageStatus::Copying, WaitReason::Copying),
        (PackageStatus::Validating, WaitReason::Validating),
    ] {
        // Both right after create and while a changed spec waits for its turn.
        for applied in [json!({}), json!({"description": "older"})] {
            let obj = owning(json!({}), applied);
            let step = plan(&obj, &seen(status.clone()));
            assert!(
                matches!(&step, Decision::Settle(Verdict::Wait { reason: r, .. }) if *r == reason),
                "{status:?}: {step:?}"
            );
        }
    }
}

#[test]
fn failed_imports_stall_until_the_spec_changes() {
    for (status, reason) in [
        (PackageStatus::CopyFailed, StallReason::CopyFailed),
        (
            PackageStatus::ValidationFailed,
            StallReason::ValidationFailed,
        ),
    ] {
        let obj = owning(json!({}), json!({}));
        let mut observed = seen(status.clone());
        observed.package.as_mut().expect("package").error = Some(ServiceError {
            error_type: Some("ValidationFailure".into()),
            error_message: Some("not a dictionary".into()),
        });
        let step = plan(&obj, &observed);
        assert_eq!(stalled(&step), Some(reason), "{status:?}");
        let Decision::Settle(Verdict::Stall { message, .. }) = &step else {
            unreachable!()
        };
        assert!(message.contains("not a dictionary"), "{message}");

        // The user fixes the source: an update is how a bad file is replaced.
        let fixed = owning(json!({"source": {"revision": "2"}}), json!({}));
        let step = plan(&fixed, &observed);
        assert!(
            matches!(step, Decision::Act(Action::Update { .. })),
            "{status:?}: {step:?}"
        );
    }
}

#[test]
fn a_marker_in_history_records_the_update_instead_of_repeating_it() {
    let obj = owning(json!({"description": "new"}), json!({}));
    let digest = SpecDigest::of(&obj.spec);
    let mut observed = seen(PackageStatus::Available);
    observed.history = Some(vec![
        PackageVersion {
            version: "v2".into(),
            commit_message: Some(digest.commit_message(Some("first words"))),
            created_at: None,
        },
        PackageVersion {
            version: "v1".into(),
            commit_message: None,
            created_at: None,
        },
    ]);
    assert_eq!(
        plan(&obj, &observed),
        Decision::Act(Action::RecordUpdate {
            digest: digest.clone(),
            version: "v2".into()
        })
    );

    // A marker of another digest does not count.
    observed.history.as_mut().expect("history")[0].commit_message =
        Some(SpecDigest::from_status("sha256:00000000").commit_message(None));
    assert!(matches!(
        plan(&obj, &observed),
        Decision::Act(Action::Update { .. })
    ));
}

#[test]
fn a_revert_after_a_failed_import_imports_again_though_the_newest_version_is_marked() {
    // A imported as v2; B's import failed (no version, the package stays COPY_FAILED); the
    // user reverts to A. v2 carries A's marker, but AWS is not AVAILABLE at it: only an
    // update brings the package back, so the marker must not stand in for one.
    let obj = owning(json!({"description": "A"}), json!({}));
    let digest = SpecDigest::of(&obj.spec);
    for failed in [PackageStatus::CopyFailed, PackageStatus::ValidationFailed] {
        let mut observed = seen(failed.clone());
        observed.history = Some(vec![PackageVersion {
            version: "v2".into(),
            commit_message: Some(digest.commit_message(None)),
            created_at: None,
        }]);
        let step = plan(&obj, &observed);
        assert!(
            matches!(&step, Decision::Act(Action::Update { digest: d, .. }) if *d == digest),
            "{failed:?}: {step:?}"
        );
    }
}

#[test]
fn an_existing_package_is_refused_unless_adopted() {
    let found = seen(PackageStatus::Available);

    let obj = fresh(json!({}));
    assert_eq!(
        stalled(&plan(&obj, &found)),
        Some(StallReason::AlreadyExists)
    );

    let obj = fresh(json!({"adoptExisting": true}));
    let step = plan(&obj, &found);
    assert!(
        matches!(&step, Decision::Act(Action::Adopt { ours: false, digest: None, package }) if package.id == ID),
        "{step:?}"
    );

    // The create record says this object made it before a crash: it is ours, with the
    // digest the create sent.
    let mut obj = fresh(json!({}));
    obj.status = Some(OpenSearchPackageStatus {
        in_flight: Some(InFlight {
            operation: ospkg::backend::Operation::CreatePackage,
            digest: "sha256:abc".into(),
            started_at: "2026-11-26T00:00:00Z".into(),
            package_last_updated_at: None,
            package_status: None,
            available_package_version: None,
        }),
        ..Default::default()
    });
    let step = plan(&obj, &found);
    assert!(
        matches!(&step, Decision::Act(Action::Adopt { ours: true, digest: Some(d), .. }) if d.as_str() == "sha256:abc"),
        "{step:?}"
    );
}

#[test]
fn aws_owned_packages_are_never_adopted() {
    let obj = fresh(json!({"adoptExisting": true}));
    let mut observed = seen(PackageStatus::Available);
    observed.package.as_mut().expect("package").id = "G123".into();
    assert_eq!(
        stalled(&plan(&obj, &observed)),
        Some(StallReason::AlreadyExists)
    );
}

#[test]
fn a_second_object_naming_the_same_package_stalls() {
    let obj = fresh(json!({}));
    let observed = Observation {
        name_owner: Some("search/first".into()),
        ..Default::default()
    };
    let step = plan(&obj, &observed);
    assert_eq!(stalled(&step), Some(StallReason::NameConflict));
    let Decision::Settle(Verdict::Stall { message, .. }) = step else {
        unreachable!()
    };
    assert!(message.contains("search/first"), "{message}");
}

#[test]
fn suspend_changes_nothing() {
    // A generation not seen before is announced (an Event); the conditions stay as they were.
    assert_eq!(
        plan(&fresh(json!({"suspend": true})), &Observation::default()),
        Decision::Settle(Verdict::Suspended {
            new_generation: true
        })
    );
    let mut obj = owning(json!({"suspend": true, "description": "new"}), json!({}));
    obj.status.as_mut().expect("status").observed_generation = Some(1);
    assert_eq!(
        plan(&obj, &seen(PackageStatus::Available)),
        Decision::Settle(Verdict::Suspended {
            new_generation: false
        })
    );
    obj.metadata.generation = Some(2);
    assert_eq!(
        plan(&obj, &seen(PackageStatus::ValidationFailed)),
        Decision::Settle(Verdict::Suspended {
            new_generation: true
        })
    );
}

#[test]
fn an_invalid_default_name_stalls() {
    let mut obj = fresh(json!({}));
    obj.metadata.name = Some("Product.Synonyms".into());
    assert_eq!(
        stalled(&plan(&obj, &Observation::default())),
        Some(StallReason::InvalidSpec)
    );
}

fn stalled_condition(reason: StallReason, generation: i64) -> Condition {
    Condition {
        type_: "Stalled".into(),
        status: "True".into(),
        reason: reason.as_str().into(),
        message: "rejected".into(),
        observed_generation: Some(generation),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

#[test]
fn a_rejected_call_is_not_retried_until_the_user_acts() {
    let mut obj = owning(json!({"description": "new"}), json!({}));
    obj.status.as_mut().expect("status").conditions =
        vec![stalled_condition(StallReason::InvalidRequest, 1)];
    assert_eq!(
        stalled(&plan(&obj, &seen(PackageStatus::Available))),
        Some(StallReason::InvalidRequest)
    );

    // A new generation lifts it.
    let mut next_gen = obj.clone();
    next_gen.metadata.generation = Some(2);
    assert!(matches!(
        plan(&next_gen, &seen(PackageStatus::Available)),
        Decision::Act(Action::Update { .. })
    ));

    // So does a reconcile request.
    let mut requested = obj.clone();
    requested.metadata.annotations = Some(
        [(
            "ospkg.dev/reconcile-requested-at".to_owned(),
            "now".to_owned(),
        )]
        .into(),
    );
    assert!(matches!(
        plan(&requested, &seen(PackageStatus::Available)),
        Decision::Act(Action::Update { .. })
    ));
}

#[test]
fn allow_list_changes_update_the_scope_once() {
    let mut obj = owning(
        json!({"vending": {"enabled": true}, "allowListedUsers": ["123456789012"]}),
        json!({}),
    );
    assert_eq!(
        plan(&obj, &seen(PackageStatus::Available)),
        Decision::Act(Action::UpdateScope {
            users: vec!["123456789012".into()]
        })
    );
    obj.status.as_mut().expect("status").allow_listed_users = Some(vec!["123456789012".into()]);
    assert_eq!(
        plan(&obj, &seen(PackageStatus::Available)),
        Decision::Settle(Verdict::Done)
    );
}

fn association(domain: &str, status: DomainPackageStatus, version: &str) -> DomainAssociation {
    DomainAssociation {
        domain_name: domain.into(),
        package_id: ID.into(),
        status,
        package_version: Some(version.into()),
        reference_path: Some(format!("analyzers/{ID}")),
        last_updated: None,
        error: None,
    }
}

fn with_domains(associations: Vec<DomainAssociation>) -> Observation {
    Observation {
        associations: Some(associations),
        ..seen(PackageStatus::Available)
    }
}

#[test]
fn domains_are_associated_one_at_a_time_or_all_at_once() {
    let domains = json!({"domains": [{"name": "catalog-a"}, {"name": "catalog-b"}]});
    let obj = owning(domains.clone(), json!({}));
    let Decision::Act(Action::Associate { requests }) = plan(&obj, &with_domains(vec![])) else {
        panic!("expected Associate");
    };
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].domain_name, "catalog-a");

    // Sequential waits for the domain in flight.
    let busy = with_domains(vec![association(
        "catalog-a",
        DomainPackageStatus::Associating,
        "v1",
    )]);
    assert!(matches!(
        plan(&obj, &busy),
        Decision::Settle(Verdict::Wait {
            reason: WaitReason::RollingOut,
            ..
        })
    ));

    let mut parallel = domains.clone();
    merge(&mut parallel, json!({"rollout": {"strategy": "Parallel"}}));
    let obj = owning(parallel, json!({}));
    let Decision::Act(Action::Associate { requests }) = plan(&obj, &with_domains(vec![])) else {
        panic!("expected Associate");
    };
    let names: Vec<&str> = requests.iter().map(|r| r.domain_name.as_str()).collect();
    assert_eq!(names, ["catalog-a", "catalog-b"]);
}

#[test]
fn a_parallel_rollout_goes_on_past_a_failed_domain_and_then_stalls_on_it() {
    let obj = owning(
        json!({
            "rollout": {"strategy": "Parallel"},
            "domains": [{"name": "catalog-a"}, {"name": "catalog-b"}, {"name": "catalog-c"}],
        }),
        json!({}),
    );
    let failed = association("catalog-a", DomainPackageStatus::AssociationFailed, "v1");
    let Decision::Act(Action::Associate { requests }) =
        plan(&obj, &with_domains(vec![failed.clone()]))
    else {
        panic!("the other domains are associated");
    };
    let names: Vec<&str> = requests.iter().map(|r| r.domain_name.as_str()).collect();
    assert_eq!(names, ["catalog-b", "catalog-c"]);
    // The others in flight: the rollout waits for them...
    let busy = with_domains(vec![
        failed.clone(),
        association("catalog-b", DomainPackageStatus::Associating, "v1"),
        association("catalog-c", DomainPackageStatus::Active, "v1"),
    ]);
    assert!(matches!(
        plan(&obj, &busy),
        Decision::Settle(Verdict::Wait {
            reason: WaitReason::RollingOut,
            ..
        })
    ));
    // ...and stalls on the failed one once they are done.
    let done = with_domains(vec![
        failed,
        association("catalog-b", DomainPackageStatus::Active, "v1"),
        association("catalog-c", DomainPackageStatus::Active, "v1"),
    ]);
    assert!(matches!(
        plan(&obj, &done),
        Decision::Settle(Verdict::Stall {
            reason: StallReason::AssociationFailed,
            ..
        })
    ));
}

#[test]
fn a_parallel_rollout_associates_the_domains_whose_prerequisites_are_ready() {
    let obj = owning(
        json!({
            "rollout": {"strategy": "Parallel"},
            "domains": [{"name": "catalog-a", "prerequisites": ["base-plugin"]}, {"name": "catalog-b"}],
        }),
        json!({}),
    );
    let Decision::Act(Action::Associate { requests }) = plan(&obj, &with_domains(vec![])) else {
        panic!("the domain without prerequisites is associated");
    };
    let names: Vec<&str> = requests.iter().map(|r| r.domain_name.as_str()).collect();
    assert_eq!(names, ["catalog-b"]);
    let waiting = with_domains(vec![association(
        "catalog-b",
        DomainPackageStatus::Active,
        "v1",
    )]);
    assert!(matches!(
        plan(&obj, &waiting),
        Decision::Settle(Verdict::Wait {
            reason: WaitReason::Prerequisites,
            ..
        })
    ));
}

#[test]
fn a_failed_update_on_a_domain_showing_the_version_it_runs_stalls_until_a_newer_version() {
    // The domain ran v1; applying v2 failed, and PackageVersion still shows v1.
    let obj = owning(json!({"domains": [{"name": "catalog-a"}]}), json!({}));
    let mut observed = with_domains(vec![association(
        "catalog-a",
        DomainPackageStatus::AssociationFailed,
        "v1",
    )]);
    let failed_at: Timestamp = "2026-11-30T10:00:00Z".parse().expect("time");
    observed.associations.as_mut().expect("associations")[0].last_updated = Some(failed_at);
    let package = observed.package.as_mut().expect("package");
    package.available_version = Some("v2".into());
    package.last_updated_at = Some("2026-11-30T09:59:00Z".parse().expect("time"));
    assert_eq!(
        stalled(&plan(&obj, &observed)),
        Some(StallReason::AssociationFailed),
        "v2 is the version that failed: not sent again"
    );
    // v3, made after the failure, is tried.
    let package = observed.package.as_mut().expect("package");
    package.available_version = Some("v3".into());
    package.last_updated_at = Some("2026-11-30T10:05:00Z".parse().expect("time"));
    assert!(matches!(
        plan(&obj, &observed),
        Decision::Act(Action::Associate { .. })
    ));
}

#[test]
fn an_older_version_on_a_domain_is_reapplied() {
    let obj = owning(json!({"domains": [{"name": "catalog-a"}]}), json!({}));
    let mut observed = with_domains(vec![association(
        "catalog-a",
        DomainPackageStatus::Active,
        "v1",
    )]);
    assert_eq!(plan(&obj, &observed), Decision::Settle(Verdict::Done));
    observed
        .package
        .as_mut()
        .expect("package")
        .available_version = Some("v2".into());
    assert!(matches!(
        plan(&obj, &observed),
        Decision::Act(Action::Associate { .. })
    ));
}

#[test]
fn a_failed_association_stalls_naming_the_domain() {
    let obj = owning(
        json!({"domains": [{"name": "catalog-a"}, {"name": "catalog-b"}]}),
        json!({}),
    );
    let mut failed = association("catalog-a", DomainPackageStatus::AssociationFailed, "v1");
    failed.error = Some(ServiceError {
        error_type: None,
        error_message: Some("plugin conflict".into()),
    });
    let step = plan(&obj, &with_domains(vec![failed.clone()]));
    let Decision::Settle(Verdict::Stall { reason, message }) = step else {
        panic!("expected Stall");
    };
    assert_eq!(reason, StallReason::AssociationFailed);
    assert!(
        message.contains("catalog-a") && message.contains("plugin conflict"),
        "{message}"
    );

    // After a spec change the association is tried again.
    let mut obj = obj;
    obj.status.as_mut().expect("status").conditions =
        vec![stalled_condition(StallReason::AssociationFailed, 1)];
    obj.metadata.generation = Some(2);
    let Decision::Act(Action::Associate { requests }) = plan(&obj, &with_domains(vec![failed]))
    else {
        panic!("expected Associate");
    };
    assert_eq!(requests[0].domain_name, "catalog-a");
}

#[test]
fn prerequisites_must_be_ready_first() {
    let obj = owning(
        json!({"domains": [{"name": "catalog-a", "prerequisites": ["plugin-license"]}]}),
        json!({}),
    );
    let mut observed = with_domains(vec![]);
    assert!(matches!(
        plan(&obj, &observed),
        Decision::Settle(Verdict::Wait {
            reason: WaitReason::Prerequisites,
            ..
        })
    ));
    observed
        .ready_prerequisites
        .insert("plugin-license".into(), "F222".into());
    let Decision::Act(Action::Associate { requests }) = plan(&obj, &observed) else {
        panic!("expected Associate");
    };
    assert_eq!(requests[0].prerequisites, ["F222"]);
}

#[test]
fn a_domain_removed_from_the_spec_is_dissociated() {
    let mut obj = owning(json!({}), json!({}));
    obj.status.as_mut().expect("status").domains = vec![DomainStatus {
        domain_name: "catalog-a".into(),
        domain_package_status: Some(DomainPackageStatus::Active),
        package_version: Some("v1".into()),
        reference_path: None,
        last_updated: None,
        error_details: None,
        unmanaged: false,
    }];
    let observed = with_domains(vec![association(
        "catalog-a",
        DomainPackageStatus::Active,
        "v1",
    )]);
    assert_eq!(
        plan(&obj, &observed),
        Decision::Act(Action::Dissociate {
            package_id: ID.into(),
            domain: "catalog-a".into(),
            deleting: false,
        })
    );
}

#[test]
fn associations_made_outside_are_left_alone() {
    let obj = owning(json!({"domains": [{"name": "catalog-a"}]}), json!({}));
    let observed = with_domains(vec![
        association("catalog-a", DomainPackageStatus::Active, "v1"),
        association("someone-elses", DomainPackageStatus::Active, "v1"),
    ]);
    assert_eq!(plan(&obj, &observed), Decision::Settle(Verdict::Done));
}

fn deleting(extra: serde_json::Value) -> OpenSearchPackage {
    let mut obj = owning(extra, json!({}));
    obj.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    obj
}

#[test]
fn deletion_with_retain_touches_nothing() {
    let obj = deleting(json!({"deletionPolicy": "Retain"}));
    assert_eq!(
        plan_cleanup(&obj, &seen(PackageStatus::Available)),
        Decision::Settle(Verdict::Finished)
    );
}

#[test]
fn deletion_of_a_suspended_object_waits_and_changes_nothing() {
    let obj = deleting(json!({"suspend": true, "domains": [{"name": "catalog-a"}]}));
    let observed = with_domains(vec![association(
        "catalog-a",
        DomainPackageStatus::Active,
        "v1",
    )]);
    let Decision::Settle(Verdict::DeletionHeld { message }) = plan_cleanup(&obj, &observed) else {
        panic!("{:?}", plan_cleanup(&obj, &observed));
    };
    assert!(message.contains("spec.suspend"), "{message}");
    // Retain lets it go at once: that touches nothing in AWS.
    let obj = deleting(json!({"suspend": true, "deletionPolicy": "Retain"}));
    assert_eq!(
        plan_cleanup(&obj, &observed),
        Decision::Settle(Verdict::Finished)
    );
}

#[test]
fn deletion_with_delete_removes_the_package() {
    let obj = deleting(json!({}));
    let observed = with_domains(vec![]);
    assert_eq!(
        plan_cleanup(&obj, &observed),
        Decision::Act(Action::Delete {
            package_id: ID.into(),
            after_failure: None,
        })
    );
    // Already gone: nothing to do.
    assert_eq!(
        plan_cleanup(&obj, &Observation::default()),
        Decision::Settle(Verdict::Finished)
    );
}

#[test]
fn deletion_dissociates_own_domains_first_and_waits() {
    let obj = deleting(json!({"domains": [{"name": "catalog-a"}]}));
    let observed = with_domains(vec![association(
        "catalog-a",
        DomainPackageStatus::Active,
        "v1",
    )]);
    assert_eq!(
        plan_cleanup(&obj, &observed),
        Decision::Act(Action::Dissociate {
            package_id: ID.into(),
            domain: "catalog-a".into(),
            deleting: true,
        })
    );
    let observed = with_domains(vec![association(
        "catalog-a",
        DomainPackageStatus::Dissociating,
        "v1",
    )]);
    assert!(matches!(
        plan_cleanup(&obj, &observed),
        Decision::Settle(Verdict::Wait { .. })
    ));
}

#[test]
fn deletion_waits_while_another_domain_uses_the_package() {
    let obj = deleting(json!({}));
    let observed = with_domains(vec![association(
        "other-team",
        DomainPackageStatus::Active,
        "v1",
    )]);
    assert_eq!(
        plan_cleanup(&obj, &observed),
        Decision::Settle(Verdict::Stall {
            reason: StallReason::InUse,
            message: "the package is still associated with domains this object does not manage: other-team; dissociate them to finish deletion".into()
        })
    );
}

#[test]
fn deletion_never_touches_a_package_it_does_not_own() {
    // Found by name but never recorded as ours.
    let mut obj = fresh(json!({}));
    obj.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    assert_eq!(
        plan_cleanup(&obj, &seen(PackageStatus::Available)),
        Decision::Settle(Verdict::Finished)
    );

    // AWS-owned.
    let obj = deleting(json!({}));
    let mut observed = with_domains(vec![]);
    let p = observed.package.as_mut().expect("package");
    p.id = "G1".into();
    let mut obj = obj;
    obj.status.as_mut().expect("status").package_id = Some("G1".into());
    assert_eq!(
        plan_cleanup(&obj, &observed),
        Decision::Settle(Verdict::Finished)
    );
}

#[test]
fn deletion_waits_for_the_package_to_go_and_retries_a_failed_delete() {
    let obj = deleting(json!({}));
    let mut observed = with_domains(vec![]);
    observed.package.as_mut().expect("package").status = PackageStatus::Deleting;
    assert!(matches!(
        plan_cleanup(&obj, &observed),
        Decision::Settle(Verdict::Wait {
            reason: WaitReason::Deleting,
            ..
        })
    ));
    let package = observed.package.as_mut().expect("package");
    package.status = PackageStatus::DeleteFailed;
    package.error = Some(ServiceError {
        error_type: Some("DeleteFailure".into()),
        error_message: Some("internal error".into()),
    });
    assert_eq!(
        plan_cleanup(&obj, &observed),
        Decision::Act(Action::Delete {
            package_id: ID.into(),
            after_failure: Some("internal error".into()),
        })
    );
}

/// An object whose UpdatePackage was written ahead (intent) with the package as it was then.
fn with_update_intent(package: &Package) -> OpenSearchPackage {
    let mut obj = owning(json!({"description": "new"}), json!({}));
    let status = obj.status.as_mut().expect("status");
    status.in_flight = Some(InFlight {
        operation: ospkg::backend::Operation::UpdatePackage,
        digest: SpecDigest::of(&obj.spec).as_str().into(),
        started_at: "2026-11-26T00:00:00Z".into(),
        package_last_updated_at: ospkg::status::rfc3339(package.last_updated_at),
        package_status: Some(package.status.clone()),
        available_package_version: package.available_version.clone(),
    });
    obj
}

#[test]
fn an_open_update_intent_is_resolved_from_what_the_package_shows() {
    let before = package(PackageStatus::Available);
    let obj = with_update_intent(&before);
    let digest = SpecDigest::of(&obj.spec);

    // Nothing moved: the call never reached the service.
    let unchanged = Observation {
        package: Some(before.clone()),
        ..Default::default()
    };
    assert_eq!(
        plan(&obj, &unchanged),
        Decision::Act(Action::ResolveUpdate {
            digest: digest.clone(),
            happened: false
        })
    );

    // Importing, failed (a failed import leaves no version), a new version, or a new
    // lastUpdatedAt: it took effect.
    let mut copying = before.clone();
    copying.status = PackageStatus::Copying;
    let mut failed = before.clone();
    failed.status = PackageStatus::CopyFailed;
    let mut newer = before.clone();
    newer.available_version = Some("v2".into());
    let mut touched = before.clone();
    touched.last_updated_at = Some(Timestamp::UNIX_EPOCH);
    for after in [copying, failed, newer, touched] {
        let observed = Observation {
            package: Some(after.clone()),
            ..Default::default()
        };
        assert_eq!(
            plan(&obj, &observed),
            Decision::Act(Action::ResolveUpdate {
                digest: digest.clone(),
                happened: true
            }),
            "{after:?}"
        );
    }
}

#[test]
fn causes_outside_the_object_do_not_stick() {
    for reason in [
        StallReason::AccessDenied,
        StallReason::LimitExceeded,
        StallReason::DomainNotFound,
        StallReason::PrerequisiteNotActive,
    ] {
        let mut obj = owning(json!({"description": "new"}), json!({}));
        obj.status.as_mut().expect("status").conditions = vec![stalled_condition(reason, 1)];
        assert!(
            matches!(
                plan(&obj, &seen(PackageStatus::Available)),
                Decision::Act(Action::Update { .. })
            ),
            "{reason:?} must be retried without an edit"
        );
    }
}

#[test]
fn an_unknown_package_status_stalls_instead_of_waiting_forever() {
    let obj = owning(json!({}), json!({}));
    for status in [
        PackageStatus::DeleteFailed,
        PackageStatus::Other("QUARANTINED".into()),
    ] {
        let decision = plan(&obj, &seen(status.clone()));
        assert_eq!(
            stalled(&decision),
            Some(StallReason::UnexpectedPackageStatus),
            "{status:?}: {decision:?}"
        );
        let Decision::Settle(verdict) = decision else {
            unreachable!()
        };
        assert_eq!(verdict.requeue(), ospkg::plan::Requeue::Slowly);
    }
}
