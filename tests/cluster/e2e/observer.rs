//! AWS as a watched source: the region observer's listing serves every object of the region,
//! counted by the simulator's call log.

use std::time::{Duration, Instant};

use ospkg_sim::{Durations, LogEntry, SimConfig};

use super::support::{
    TestEnv, create_foreign_packages, dictionary, fast_durations, shared_control_plane,
};

/// The calls (not association transitions) logged after `seq`.
async fn calls_after(env: &TestEnv, seq: u64) -> Vec<LogEntry> {
    env.admin()
        .log()
        .await
        .expect("call log")
        .into_iter()
        .filter(|e| e.seq > seq && e.operation.is_some())
        .collect()
}

async fn last_seq(env: &TestEnv) -> u64 {
    env.admin()
        .log()
        .await
        .expect("call log")
        .last()
        .map_or(0, |e| e.seq)
}

fn describe(entries: &[LogEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}ms {}{}",
                e.at_ms,
                e.operation.as_deref().unwrap_or("-"),
                if e.lookup { " (lookup)" } else { "" }
            )
        })
        .collect()
}

/// Where the first call of `operation` is in `calls` (described as `seen`).
fn position(calls: &[LogEntry], operation: &str, seen: &[String]) -> usize {
    calls
        .iter()
        .position(|c| c.operation.as_deref() == Some(operation))
        .unwrap_or_else(|| panic!("no {operation}: {seen:#?}"))
}

#[tokio::test]
async fn a_settled_region_costs_one_listing_per_resync_however_many_objects() {
    const OBJECTS: usize = 12;
    const RESYNC: Duration = Duration::from_secs(8);
    let cp = shared_control_plane().await.expect("control plane");
    let sim = SimConfig::default().durations(fast_durations());
    let env = TestEnv::without_operator(cp, "observer-steady", sim)
        .await
        .with_operator_args(&["--resync-interval=8s"])
        .await;
    for i in 0..OBJECTS {
        let key = format!("steady/{i}.txt");
        env.put_object(&key, format!("word{i}, term{i}\n").as_bytes())
            .await;
        env.apply(&dictionary(&format!("steady-{i}"), &key, None, ""))
            .await;
    }
    for i in 0..OBJECTS {
        env.wait_ready(&format!("steady-{i}")).await;
    }
    // Let the wake-ups that brought the last objects to Ready finish.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let from = last_seq(&env).await;
    // Two and a half resync windows: every object's own resync timer fires at least twice.
    tokio::time::sleep(RESYNC * 5 / 2).await;
    let calls = calls_after(&env, from).await;
    let seen = describe(&calls);
    assert!(
        calls
            .iter()
            .all(|c| c.operation.as_deref() == Some("DescribePackages") && !c.lookup),
        "a settled region makes nothing but region listings: {seen:#?}"
    );
    assert!(
        (2..=3).contains(&calls.len()),
        "one listing per resync window for {OBJECTS} objects: {seen:#?}"
    );
    for pair in calls.windows(2) {
        let gap = Duration::from_millis(pair[1].at_ms - pair[0].at_ms);
        assert!(
            gap >= RESYNC.mul_f64(0.9),
            "listings {gap:?} apart, resync {RESYNC:?}: {seen:#?}"
        );
    }
}

#[tokio::test]
async fn an_importing_package_is_watched_by_the_region_not_polled() {
    let durations = Durations {
        copying_ms: 3_000,
        validating_ms: 2_000,
        ..fast_durations()
    };
    let cp = shared_control_plane().await.expect("control plane");
    let env = TestEnv::without_operator(
        cp,
        "observer-import",
        SimConfig::default().durations(durations),
    )
    .await
    .with_operator()
    .await;
    env.put_object("import/slow.txt", b"slow, sluggish\n").await;
    let from = last_seq(&env).await;
    let applied = Instant::now();
    env.apply(&dictionary("slow-import", "import/slow.txt", None, ""))
        .await;
    env.wait_ready("slow-import").await;
    let took = applied.elapsed();

    let calls = calls_after(&env, from).await;
    let seen = describe(&calls);
    let created = position(&calls, "CreatePackage", &seen);
    let after_create = &calls[created + 1..];
    assert!(
        after_create
            .iter()
            .all(|c| c.operation.as_deref() == Some("DescribePackages") && !c.lookup),
        "while the package imports only the region is listed: {seen:#?}"
    );
    // The observer lists quickly while the package imports (5 s here)...
    assert!(
        after_create.len() >= 3,
        "the region was listed quickly during the import: {seen:#?}"
    );
    // ...and wakes the object when the import ends, long before its 30 s safety-net timer.
    assert!(
        took < Duration::from_secs(12),
        "Ready {took:?} after the apply: {seen:#?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.operation.as_deref() == Some("GetPackageVersionHistory"))
            .count(),
        0,
        "the first version of a new package needs no history read: {seen:#?}"
    );
}

#[tokio::test]
async fn a_long_validation_is_read_less_and_less_often() {
    // A plugin-like import: a short copy, then a long validation in which nothing changes.
    let validating = Duration::from_secs(16);
    let durations = Durations {
        copying_ms: 1_000,
        validating_ms: validating.as_millis() as u64,
        ..fast_durations()
    };
    let cp = shared_control_plane().await.expect("control plane");
    let env = TestEnv::without_operator(
        cp,
        "observer-long-import",
        SimConfig::default().durations(durations),
    )
    .await
    .with_operator()
    .await;
    env.put_object("import/long.txt", b"long, lengthy\n").await;
    let from = last_seq(&env).await;
    let applied = Instant::now();
    env.apply(&dictionary("long-import", "import/long.txt", None, ""))
        .await;
    env.wait_ready("long-import").await;
    let took = applied.elapsed();

    let calls = calls_after(&env, from).await;
    let seen = describe(&calls);
    let created = position(&calls, "CreatePackage", &seen);
    let reads = calls[created + 1..]
        .iter()
        .filter(|c| c.operation.as_deref() == Some("DescribePackages"))
        .count();
    // Every half second throughout would be 34 reads; slowing down as the quiet grows (a
    // quarter of it apart) is about 15.
    assert!(reads <= 22, "{reads} reads during a 17 s import: {seen:#?}");
    // Still seen finished soon after it ends: within a quarter of the quiet, plus the wake.
    assert!(
        took < validating + Duration::from_secs(12),
        "Ready {took:?} after the apply: {seen:#?}"
    );
}

#[tokio::test]
async fn a_change_made_in_a_settled_region_is_watched_at_once_not_at_the_resync() {
    // The chart's resync (10 min): once the object is Ready, the observer sleeps until then.
    let cp = shared_control_plane().await.expect("control plane");
    let env = TestEnv::without_operator(
        cp,
        "observer-change",
        SimConfig::default().durations(fast_durations()),
    )
    .await
    .with_operator_args(&["--resync-interval=10m"])
    .await;
    env.put_object("change/v1.txt", b"first, one\n").await;
    env.put_object("change/v2.txt", b"second, two\n").await;
    env.apply(&dictionary("settled-change", "change/v1.txt", None, ""))
        .await;
    env.wait_ready("settled-change").await;
    // Let the listings of the first import end: the region is settled.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let from = last_seq(&env).await;
    let edited = Instant::now();
    env.apply(&dictionary("settled-change", "change/v2.txt", None, ""))
        .await;
    env.wait_ready("settled-change").await;
    let took = edited.elapsed();

    let calls = calls_after(&env, from).await;
    let seen = describe(&calls);
    let updated = position(&calls, "UpdatePackage", &seen);
    assert!(
        calls[updated + 1..]
            .iter()
            .any(|c| c.operation.as_deref() == Some("DescribePackages") && !c.lookup),
        "the region was listed after the update: {seen:#?}"
    );
    // The update's import takes 0.5 s; the object's own safety-net timer is 30 s.
    assert!(
        took < Duration::from_secs(10),
        "Ready {took:?} after the edit: {seen:#?}"
    );
}

#[tokio::test]
async fn a_busy_region_of_many_pages_reads_only_the_packages_it_follows() {
    // 150 packages made by other teams: the region-wide listing is two pages.
    const FOREIGN: usize = 150;
    let durations = Durations {
        copying_ms: 3_000,
        validating_ms: 2_000,
        ..fast_durations()
    };
    let cp = shared_control_plane().await.expect("control plane");
    let sim = SimConfig::default()
        .durations(durations)
        .package_quota(FOREIGN + 10);
    let env = TestEnv::without_operator(cp, "observer-big-region", sim).await;
    create_foreign_packages(&env, "us-east-1", "foreign", FOREIGN).await;
    let env = env.with_operator().await;
    env.put_object("big/own.txt", b"slow, sluggish\n").await;
    let from = last_seq(&env).await;
    let applied = Instant::now();
    env.apply(&dictionary("big-region-import", "big/own.txt", None, ""))
        .await;
    env.wait_ready("big-region-import").await;
    let took = applied.elapsed();

    let calls = calls_after(&env, from).await;
    let seen = describe(&calls);
    let created = position(&calls, "CreatePackage", &seen);
    // Before the create, the region-wide listing (both pages) served the first reconcile.
    assert!(
        calls[..created]
            .iter()
            .filter(|c| c.operation.as_deref() == Some("DescribePackages") && !c.lookup)
            .count()
            >= 2,
        "the first reconcile read the region's listing: {seen:#?}"
    );
    // While the package imports (5 s), the observer reads only it, one page each time,
    // instead of the region's two pages.
    let after_create = &calls[created + 1..];
    assert!(
        after_create
            .iter()
            .all(|c| c.operation.as_deref() == Some("DescribePackages") && c.lookup),
        "while the package imports only it is read: {seen:#?}"
    );
    assert!(
        (3..=15).contains(&after_create.len()),
        "the package was read quickly (not in a loop) during the import: {seen:#?}"
    );
    // Every read asked for the package the object created, not for the region.
    let id = env
        .get("big-region-import")
        .await
        .and_then(|o| o.status.and_then(|s| s.package_id))
        .expect("the object recorded its package");
    assert!(
        after_create
            .iter()
            .all(|c| c.package_id.as_deref() == Some(id.as_str())),
        "the reads named the object's package {id}: {calls:#?}"
    );
    assert!(
        took < Duration::from_secs(12),
        "Ready {took:?} after the apply: {seen:#?}"
    );
}
