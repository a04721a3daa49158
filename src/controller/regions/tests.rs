use super::*;
use crate::backend::Package;

fn package(status: PackageStatus) -> Package {
    Package {
        id: "F1".into(),
        name: "synonyms".into(),
        package_type: "TXT-DICTIONARY".into(),
        status,
        description: None,
        available_version: None,
        engine_version: None,
        error: None,
        created_at: Some("2026-11-30T08:00:00Z".parse().expect("a time")),
        last_updated_at: Some("2026-11-30T08:00:00Z".parse().expect("a time")),
        allow_listed_users: None,
    }
}

/// An object whose status recorded `recorded` (as the reconcile that created it does).
fn object_that_recorded(recorded: &Package) -> OpenSearchPackage {
    let mut obj: OpenSearchPackage = serde_json::from_value(serde_json::json!({
        "apiVersion": "ospkg.dev/v1alpha1",
        "kind": "OpenSearchPackage",
        "metadata": {"name": "synonyms", "namespace": "search", "uid": "u1"},
        "spec": {"packageType": "TXT-DICTIONARY", "source": {"s3BucketName": "b", "s3Key": "k"}},
    }))
    .expect("an object");
    let mut status = crate::crd::OpenSearchPackageStatus::default();
    record_package(&mut status, recorded);
    obj.status = Some(status);
    obj
}

fn listing(packages: Vec<Package>) -> Listing {
    Listing::new(Instant::now(), packages)
}

#[test]
fn an_import_listed_as_status_recorded_it_is_no_news() {
    let copying = package(PackageStatus::Copying);
    let obj = object_that_recorded(&copying);
    assert!(!news_for(&obj, &listing(vec![copying.clone()])));

    // The import moved on, ended, or the package went: news.
    let mut validating = package(PackageStatus::Validating);
    validating.last_updated_at = Some("2026-11-30T08:00:01Z".parse().expect("a time"));
    assert!(news_for(&obj, &listing(vec![validating])));
    assert!(news_for(
        &obj,
        &listing(vec![package(PackageStatus::Available)])
    ));
    assert!(news_for(&obj, &listing(vec![])));
}

#[test]
fn an_object_that_recorded_no_package_or_has_a_call_in_flight_is_always_woken() {
    let copying = package(PackageStatus::Copying);
    let mut obj = object_that_recorded(&copying);
    if let Some(status) = obj.status.as_mut() {
        status.package_id = None;
    }
    assert!(news_for(&obj, &listing(vec![copying.clone()])));

    let mut obj = object_that_recorded(&copying);
    if let Some(status) = obj.status.as_mut() {
        status.in_flight = Some(
            serde_json::from_value(serde_json::json!({
                "operation": "UpdatePackage",
                "digest": "sha256:0",
                "startedAt": "2026-11-30T08:00:00Z",
            }))
            .expect("an intent"),
        );
    }
    assert!(news_for(&obj, &listing(vec![copying])));

    let mut obj = object_that_recorded(&package(PackageStatus::Copying));
    obj.status = None;
    assert!(news_for(
        &obj,
        &listing(vec![package(PackageStatus::Copying)])
    ));
}

fn named(id: &str, name: &str, status: PackageStatus) -> Package {
    Package {
        id: id.into(),
        name: name.into(),
        ..package(status)
    }
}

#[test]
fn a_listing_finds_its_packages_by_id_and_by_name() {
    let packages = vec![
        named("F3", "alpha", PackageStatus::Available),
        named("F1", "charlie", PackageStatus::Copying),
        named("F2", "bravo", PackageStatus::Available),
        // The same package on two pages: once, as the later page saw it.
        named("F1", "charlie", PackageStatus::Available),
    ];
    let listing = listing(packages);
    assert_eq!(listing.len(), 3);
    for (id, name) in [("F1", "charlie"), ("F2", "bravo"), ("F3", "alpha")] {
        assert_eq!(listing.by_id(id).map(|p| p.name.as_str()), Some(name));
        assert_eq!(listing.by_name(name).map(|p| p.id.as_str()), Some(id));
    }
    let charlie = listing.by_id("F1").map(|p| p.status.clone());
    assert_eq!(charlie, Some(PackageStatus::Available));
    assert!(listing.by_id("F4").is_none());
    assert!(listing.by_name("delta").is_none());
}

#[test]
fn changes_are_the_packages_that_appeared_changed_or_went() {
    let before = listing(vec![
        named("F1", "kept", PackageStatus::Available),
        named("F2", "importing", PackageStatus::Copying),
        named("F3", "deleted", PackageStatus::Available),
    ]);
    let after = listing(vec![
        named("F4", "created", PackageStatus::Copying),
        named("F2", "importing", PackageStatus::Available),
        named("F1", "kept", PackageStatus::Available),
    ]);
    let changes = before.changes(&after);
    let mut ids: Vec<_> = changes.ids.iter().map(String::as_str).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["F2", "F3", "F4"]);
    assert!(changes.names.contains("created") && !changes.names.contains("kept"));
    assert!(after.changes(&after).is_empty());
}

#[test]
fn a_busy_region_lists_within_a_fifth_of_its_rate_limit() {
    let rate = |n| NonZeroU32::new(n).expect("not zero");
    let regions = Regions::new(Duration::from_secs(30), rate(10), Wakers::default());
    // One page (or none yet): the shortest interval. Two tokens a second of ten.
    assert_eq!(regions.busy_interval(0), FAST);
    assert_eq!(regions.busy_interval(100), FAST);
    // Three pages a listing: one every 1.5 s keeps it at two tokens a second.
    assert_eq!(regions.busy_interval(250), Duration::from_millis(1500));
    // 50 pages would be 25 s; a listing a resync is the least a busy region gets.
    assert_eq!(regions.busy_interval(5_000), Duration::from_secs(25));
    assert_eq!(regions.busy_interval(50_000), Duration::from_secs(30));
    // A higher limit lists more often, never more often than FAST.
    let generous = regions.with_rate(rate(100));
    assert_eq!(generous.busy_interval(250), FAST);
    assert_eq!(generous.busy_interval(2_000), Duration::from_secs(1));
}
