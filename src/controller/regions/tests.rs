use super::observer::{SLOWEST_BUSY, settling_interval};
use super::region::{Read, Region};
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
    assert_eq!(regions.busy_interval(0, false), FAST);
    assert_eq!(regions.busy_interval(100, false), FAST);
    // Three pages a listing: one every 1.5 s keeps it at two tokens a second.
    assert_eq!(
        regions.busy_interval(250, false),
        Duration::from_millis(1500)
    );
    // 50 pages would be 25 s; a listing a resync is the least a busy region gets.
    assert_eq!(regions.busy_interval(5_000, false), Duration::from_secs(25));
    assert_eq!(
        regions.busy_interval(50_000, false),
        Duration::from_secs(30)
    );
    // A higher limit lists more often, never more often than FAST.
    let generous = regions.with_rate(rate(100));
    assert_eq!(generous.busy_interval(250, false), FAST);
    assert_eq!(generous.busy_interval(2_000, false), Duration::from_secs(1));
    // While creates or updates wait for the region's tokens, reads take one in ten: a page
    // a second, three pages every three seconds.
    assert_eq!(regions.busy_interval(100, true), Duration::from_secs(1));
    assert_eq!(regions.busy_interval(250, true), Duration::from_secs(3));
    assert_eq!(generous.busy_interval(100, true), FAST);
}

#[test]
fn a_read_by_id_replaces_the_packages_it_followed_and_dates_only_them() {
    let listed = Instant::now();
    let full = Listing::new(
        listed,
        vec![
            named("F1", "kept", PackageStatus::Available),
            named("F2", "importing", PackageStatus::Copying),
            named("F3", "deleting", PackageStatus::Deleting),
        ],
    );
    let reread = listed + Duration::from_secs(1);
    let ids = ["F2", "F3", "F4"].map(String::from);
    let found = vec![
        named("F2", "importing", PackageStatus::Available),
        // Just created: not in the region-wide listing yet.
        named("F4", "created", PackageStatus::Copying),
        // Not asked for: the read is only about the followed packages.
        named("F9", "stray", PackageStatus::Available),
    ];
    let merged = full.reread(reread, &ids, found);
    let status = |id: &str| merged.by_id(id).map(|p| p.status.clone());
    assert_eq!(status("F1"), Some(PackageStatus::Available));
    assert_eq!(status("F2"), Some(PackageStatus::Available));
    // Followed and not found: gone.
    assert_eq!(status("F3"), None);
    assert_eq!(status("F4"), Some(PackageStatus::Copying));
    assert_eq!(status("F9"), None);
    assert_eq!(merged.by_name("created").map(|p| p.id.as_str()), Some("F4"));
    // Only the packages read again are as new as that read; the rest (and a lookup by
    // name) are as old as the region-wide listing.
    assert_eq!(merged.started, listed);
    assert_eq!(merged.started_for(Some("F2")), reread);
    assert_eq!(merged.started_for(Some("F4")), reread);
    assert_eq!(merged.started_for(Some("F1")), listed);
    assert_eq!(merged.started_for(None), listed);
    // A later read of fewer packages keeps the date of the earlier one for the others.
    let later = reread + Duration::from_secs(1);
    let again = merged.reread(later, &["F4".to_owned()], vec![]);
    assert_eq!(again.started_for(Some("F2")), reread);
    assert_eq!(again.started_for(Some("F4")), later);
    assert!(again.by_id("F4").is_none());
    // Which also counts as a change to wake the object for.
    assert!(merged.changes(&again).ids.contains("F4"));
}

fn region() -> Region {
    Region::new(Scope::own("111122223333", "eu-west-1"))
}

fn packages(n: usize) -> Listing {
    listing(
        (0..n)
            .map(|i| named(&format!("F{i}"), &format!("p{i}"), PackageStatus::Available))
            .collect(),
    )
}

#[test]
fn a_region_of_many_pages_reads_only_what_it_follows_or_was_asked_for() {
    let region = region();
    let followed = ["F7".to_owned()];
    let (one_page, three_pages) = (packages(100), packages(250));
    let ids = |list: &[&str]| Read::Followed(list.iter().map(|s| (*s).to_owned()).collect());
    // No listing yet: the region's.
    assert_eq!(
        region.next_read(None, &followed, false, false),
        Read::Region
    );
    // A page either way: the region-wide listing, which shows every package afresh.
    assert_eq!(
        region.next_read(Some(&one_page), &followed, false, false),
        Read::Region
    );
    // Fewer pages: the followed packages and the ones a reconcile changed.
    assert_eq!(
        region.next_read(Some(&three_pages), &followed, false, false),
        ids(&["F7"])
    );
    region.want(Some("F3"));
    assert_eq!(
        region.next_read(Some(&three_pages), &followed, false, true),
        ids(&["F3", "F7"])
    );
    // Taken: the next read covers it; what follows is only what is followed.
    assert_eq!(
        region.next_read(Some(&three_pages), &followed, false, false),
        ids(&["F7"])
    );
    // Nothing followed: the region-wide listing (at the resync).
    assert_eq!(
        region.next_read(Some(&three_pages), &[], false, false),
        Read::Region
    );
    // The region-wide listing when it is due...
    assert_eq!(
        region.next_read(Some(&three_pages), &followed, true, false),
        Read::Region
    );
    // ...or a reconcile wants a package it knows only by name, until a listing covered it.
    region.want(None);
    assert_eq!(
        region.next_read(Some(&three_pages), &followed, false, true),
        Read::Region
    );
    assert_eq!(
        region.next_read(Some(&three_pages), &followed, false, false),
        ids(&["F7"])
    );
    // A failed read's packages are wanted again.
    region.want_again(&ids(&["F5"]));
    assert_eq!(
        region.next_read(Some(&three_pages), &followed, false, false),
        ids(&["F5", "F7"])
    );
    // As many followed packages as the region has pages of: the region-wide listing.
    let many: Vec<String> = (0..201).map(|i| format!("F{i}")).collect();
    assert_eq!(
        region.next_read(Some(&three_pages), &many, false, false),
        Read::Region
    );
}

#[test]
fn a_busy_region_quiet_for_long_is_read_less_often() {
    // Imports of seconds keep the fast cadence...
    assert!(settling_interval(Duration::from_secs(2)) <= FAST);
    // ...a long validation is read a quarter of its quiet time apart, at most half a minute.
    assert_eq!(
        settling_interval(Duration::from_secs(40)),
        Duration::from_secs(10)
    );
    assert_eq!(settling_interval(Duration::from_secs(3_600)), SLOWEST_BUSY);
}
