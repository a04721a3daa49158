//! The plan of objects that follow their S3 source (pure): the object version read is part of
//! the digest; switching following on or off imports nothing by itself; an object whose
//! source cannot be read makes no import and is not Ready, but finishes everything else.

use ospkg::backend::s3::ObjectVersion;
use ospkg::backend::{DomainAssociation, Operation, Package, PackageStatus, PackageVersion};
use ospkg::crd::{
    InFlight, OpenSearchPackage, OpenSearchPackageStatus, SourceStatus, VersionHistoryEntry,
};
use ospkg::digest::SpecDigest;
use ospkg::plan::{Action, Decision, Observation, Verdict, plan};
use ospkg::source::{SourceView, record, source_status, tag};
use ospkg::vocabulary::StallReason;
use serde_json::json;

const ID: &str = "F222";

fn object(extra: serde_json::Value) -> OpenSearchPackage {
    let mut spec = json!({
        "packageType": "TXT-DICTIONARY",
        "source": {"s3BucketName": "acme-dicts", "s3Key": "synonyms.txt", "followContent": true},
        "commitMessage": "winter terms",
    });
    if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    let mut obj = OpenSearchPackage::new(
        "product-synonyms",
        serde_json::from_value(spec).expect("spec"),
    );
    obj.metadata.namespace = Some("search".into());
    obj.metadata.generation = Some(1);
    obj
}

fn version(etag: &str, modified: &str) -> ObjectVersion {
    ObjectVersion {
        etag: format!("\"{etag}\""),
        version_id: None,
        last_modified: Some(modified.parse().expect("timestamp")),
    }
}

/// `obj` owning package `ID` (AVAILABLE at v1, created at `created`), with `applied` as its
/// applied digest and `source` as the version status records.
fn owning(
    mut obj: OpenSearchPackage,
    applied: SpecDigest,
    source: Option<&ObjectVersion>,
    created: &str,
) -> OpenSearchPackage {
    obj.status = Some(OpenSearchPackageStatus {
        package_id: Some(ID.into()),
        applied_digest: Some(applied.as_str().to_owned()),
        available_package_version: Some("v1".into()),
        source: source.map(source_status),
        version_history: vec![VersionHistoryEntry {
            package_version: "v1".into(),
            commit_message: None,
            created_at: Some(created.into()),
        }],
        ..Default::default()
    });
    obj
}

fn following(obj: &OpenSearchPackage, version: &ObjectVersion) -> SpecDigest {
    SpecDigest::following(&obj.spec, &version.etag, version.version_id.as_deref())
}

fn available() -> Package {
    Package {
        id: ID.into(),
        name: "product-synonyms".into(),
        package_type: "TXT-DICTIONARY".into(),
        status: PackageStatus::Available,
        description: None,
        available_version: Some("v1".into()),
        engine_version: None,
        error: None,
        created_at: None,
        last_updated_at: Some("2026-11-20T10:00:00Z".parse().expect("timestamp")),
        allow_listed_users: None,
    }
}

fn observed(source: SourceView) -> Observation {
    Observation {
        package: Some(available()),
        source,
        ..Default::default()
    }
}

fn stall(step: &Decision) -> Option<(StallReason, &str)> {
    match step {
        Decision::Settle(Verdict::Stall { reason, message }) => Some((*reason, message)),
        _ => None,
    }
}

const EARLY: &str = "2026-11-20T09:00:00Z";
const IMPORT: &str = "2026-11-20T10:00:00Z";
const LATE: &str = "2026-11-20T11:00:00Z";

#[test]
fn a_new_object_is_created_at_the_version_read() {
    let obj = object(json!({}));
    let v1 = version("aaaa1111", EARLY);
    let observation = Observation {
        source: SourceView::Current(v1.clone()),
        ..Default::default()
    };
    let Decision::Act(Action::Create { digest, .. }) = plan(&obj, &observation) else {
        panic!("expected Create");
    };
    assert_eq!(digest, following(&obj, &v1));
    assert_ne!(digest, SpecDigest::of(&obj.spec));
}

#[test]
fn an_unchanged_object_imports_nothing_and_a_changed_one_imports_once() {
    let v1 = version("aaaa1111", EARLY);
    let obj = object(json!({}));
    let obj = owning(obj.clone(), following(&obj, &v1), Some(&v1), IMPORT);
    assert_eq!(
        plan(&obj, &observed(SourceView::Current(v1.clone()))),
        Decision::Settle(Verdict::Done)
    );

    let v2 = version("bbbb2222", LATE);
    let step = plan(&obj, &observed(SourceView::Current(v2.clone())));
    let Decision::Act(Action::Update { request, digest }) = step else {
        panic!("expected Update, got {step:?}");
    };
    assert_eq!(digest, following(&obj, &v2));
    assert_eq!(
        request.commit_message,
        format!("winter terms [s3 etag:bbbb2222] {}", digest.marker())
    );
}

#[test]
fn the_version_history_names_the_object_version() {
    let plain = version("0123456789abcdef0123456789abcdef", EARLY);
    assert_eq!(tag(&plain), "[s3 etag:01234567]");
    let versioned = ObjectVersion {
        version_id: Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into()),
        ..plain.clone()
    };
    assert_eq!(
        tag(&versioned),
        "[s3 etag:01234567 version:3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY]"
    );
    let long = ObjectVersion {
        version_id: Some("x".repeat(100)),
        ..plain
    };
    assert!(tag(&long).chars().count() < 70, "{}", tag(&long));
}

#[test]
fn a_new_version_id_with_the_same_bytes_is_a_new_import() {
    // In a versioned bucket every upload is a new version, whatever its bytes.
    let v1 = ObjectVersion {
        version_id: Some("one".into()),
        ..version("aaaa1111", EARLY)
    };
    let v2 = ObjectVersion {
        version_id: Some("two".into()),
        ..v1.clone()
    };
    let obj = object(json!({}));
    let obj = owning(obj.clone(), following(&obj, &v1), Some(&v1), IMPORT);
    assert!(matches!(
        plan(&obj, &observed(SourceView::Current(v2))),
        Decision::Act(Action::Update { .. })
    ));
}

#[test]
fn switching_following_on_imports_only_a_file_changed_since_the_last_import() {
    let obj = object(json!({}));
    // The package was imported (without following) at IMPORT.
    let before_following = owning(obj.clone(), SpecDigest::of(&obj.spec), None, IMPORT);
    let unchanged = version("aaaa1111", EARLY);
    assert_eq!(
        plan(&before_following, &observed(SourceView::Current(unchanged))),
        Decision::Settle(Verdict::Done),
        "the package already holds a file last modified before its import"
    );
    for modified in [LATE, "2026-11-20T10:00:00Z"] {
        let changed = version("bbbb2222", modified);
        let step = plan(
            &before_following,
            &observed(SourceView::Current(changed.clone())),
        );
        assert!(
            matches!(&step, Decision::Act(Action::Update { digest, .. }) if *digest == following(&obj, &changed)),
            "modified at {modified}: {step:?}"
        );
    }
    // Not read yet after the switch: nothing to do until the object's check.
    assert_eq!(
        plan(&before_following, &observed(SourceView::Unchecked)),
        Decision::Settle(Verdict::Done)
    );
}

#[test]
fn switching_following_off_imports_nothing() {
    let v1 = version("aaaa1111", EARLY);
    let followed = object(json!({}));
    let mut obj = owning(
        followed.clone(),
        following(&followed, &v1),
        Some(&v1),
        IMPORT,
    );
    obj.spec.source.follow_content = Some(false);
    assert_eq!(
        plan(&obj, &observed(SourceView::NotFollowed)),
        Decision::Settle(Verdict::Done)
    );
    // A spec change afterwards is an ordinary update, without the object version.
    obj.spec.description = Some("now plain".into());
    let step = plan(&obj, &observed(SourceView::NotFollowed));
    assert!(
        matches!(&step, Decision::Act(Action::Update { digest, request }) if *digest == SpecDigest::of(&obj.spec) && !request.commit_message.contains("[s3 ")),
        "{step:?}"
    );
}

#[test]
fn a_missing_object_creates_nothing() {
    let obj = object(json!({}));
    let step = plan(
        &obj,
        &Observation {
            source: SourceView::Missing("s3://acme-dicts/synonyms.txt does not exist".into()),
            ..Default::default()
        },
    );
    let (reason, message) = stall(&step).expect("stalled");
    assert_eq!(reason, StallReason::SourceNotFound);
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("no package is created"), "{message}");
}

#[test]
fn an_unreadable_object_keeps_the_package_and_is_not_ready() {
    let v1 = version("aaaa1111", EARLY);
    let obj = object(json!({}));
    let obj = owning(obj.clone(), following(&obj, &v1), Some(&v1), IMPORT);
    for (view, reason) in [
        (
            SourceView::Missing("gone".into()),
            StallReason::SourceNotFound,
        ),
        (
            SourceView::Denied("denied".into()),
            StallReason::SourceAccessDenied,
        ),
    ] {
        let step = plan(&obj, &observed(view));
        let (stalled, message) = stall(&step).expect("stalled, not Ready");
        assert_eq!(stalled, reason);
        assert!(
            message.contains("F222 is unchanged (still AVAILABLE at v1)"),
            "{message}"
        );
    }
    // A spec change while the object cannot be read waits for it too.
    let mut edited = obj.clone();
    edited.spec.description = Some("new words".into());
    let step = plan(&edited, &observed(SourceView::Missing("gone".into())));
    assert_eq!(stall(&step).map(|s| s.0), Some(StallReason::SourceNotFound));
}

#[test]
fn an_unreadable_object_still_resolves_calls_and_rolls_out() {
    let v1 = version("aaaa1111", EARLY);
    let v2 = version("bbbb2222", LATE);
    let base = object(json!({}));
    let mut obj = owning(base.clone(), following(&base, &v1), Some(&v1), IMPORT);
    let status = obj.status.as_mut().expect("status");
    status.in_flight = Some(InFlight {
        operation: Operation::UpdatePackage,
        digest: following(&base, &v2).as_str().into(),
        started_at: IMPORT.into(),
        package_last_updated_at: Some("2026-11-20T09:30:00Z".into()),
        package_status: Some(PackageStatus::Available),
        available_package_version: Some("v1".into()),
    });
    let step = plan(&obj, &observed(SourceView::Missing("gone".into())));
    assert!(
        matches!(
            step,
            Decision::Act(Action::ResolveUpdate { happened: true, .. })
        ),
        "{step:?}"
    );

    let mut obj = owning(base.clone(), following(&base, &v1), Some(&v1), IMPORT);
    obj.spec.domains = serde_json::from_value(json!([{"name": "catalog-prod"}])).expect("domains");
    let mut observation = observed(SourceView::Denied("denied".into()));
    observation.associations = Some(Vec::<DomainAssociation>::new());
    let step = plan(&obj, &observation);
    assert!(
        matches!(&step, Decision::Act(Action::Associate { requests }) if requests[0].domain_name == "catalog-prod"),
        "{step:?}"
    );
}

#[test]
fn a_marked_version_after_a_crash_is_recorded_not_made_again() {
    let v1 = version("aaaa1111", EARLY);
    let v2 = version("bbbb2222", LATE);
    let base = object(json!({}));
    let obj = owning(base.clone(), following(&base, &v1), Some(&v1), IMPORT);
    let digest = following(&base, &v2);
    let mut observation = observed(SourceView::Current(v2));
    observation.history = Some(vec![PackageVersion {
        version: "v2".into(),
        commit_message: Some(digest.commit_message_tagged(None, Some("[s3 etag:bbbb2222]"))),
        created_at: None,
    }]);
    assert_eq!(
        plan(&obj, &observation),
        Decision::Act(Action::RecordUpdate {
            digest,
            version: "v2".into()
        })
    );
}

#[test]
fn status_records_the_version_imported() {
    let v1 = version("aaaa1111", EARLY);
    let v2 = version("bbbb2222", LATE);
    let base = object(json!({}));
    let obj = owning(base.clone(), following(&base, &v1), Some(&v1), IMPORT);
    let mut status = obj.status.clone().expect("status");

    // Read but not imported yet: status keeps the version imported.
    record(&mut status, &obj.spec, &SourceView::Current(v2.clone()));
    assert_eq!(
        status.source.as_ref().map(|s| s.etag.as_str()),
        Some("\"aaaa1111\"")
    );
    // Imported.
    status.applied_digest = Some(following(&base, &v2).as_str().into());
    record(&mut status, &obj.spec, &SourceView::Current(v2.clone()));
    assert_eq!(
        status.source,
        Some(SourceStatus {
            etag: "\"bbbb2222\"".into(),
            version_id: None,
            last_modified: Some(LATE.into()),
        })
    );
    // Unreadable: the record stands.
    record(&mut status, &obj.spec, &SourceView::Missing("gone".into()));
    assert!(status.source.is_some());
    // No longer followed and updated without it: the record goes.
    status.applied_digest = Some(SpecDigest::of(&obj.spec).as_str().into());
    record(&mut status, &obj.spec, &SourceView::NotFollowed);
    assert_eq!(status.source, None);
}
