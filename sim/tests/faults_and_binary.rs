//! Reproducible fault injection, the rate limiter, held responses, call counts, and the
//! binary's start-up line and --help.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_opensearch::error::ProvideErrorMetadata;
use aws_sdk_opensearch::types::PackageType;
use common::*;
use ospkg_sim::{FaultConfig, OperationFaults, RateLimit};

#[tokio::test]
async fn same_seed_gives_the_same_faults() {
    let sim = sim().await;
    let admin = sim.admin();
    admin.set_faults(&flaky(42)).await.unwrap();
    let first = outcomes(&sim, 60).await;
    admin.set_faults(&flaky(42)).await.unwrap();
    let again = outcomes(&sim, 60).await;
    assert_eq!(first, again);
    admin.set_faults(&flaky(43)).await.unwrap();
    assert_ne!(first, outcomes(&sim, 60).await);
    for code in [
        "ThrottlingException",
        "InternalException",
        "ServiceUnavailableException",
        "ok",
    ] {
        assert!(
            first.iter().any(|o| o == code),
            "{code} never drawn in {first:?}"
        );
    }
    // A second simulator started with that seed faults the same way.
    let other = sim_with(ospkg_sim::SimConfig {
        faults: flaky(42),
        ..Default::default()
    })
    .await;
    assert_eq!(outcomes(&other, 60).await, first);
    // Faulted calls are counted too.
    assert_eq!(admin.calls().await.unwrap()["DescribePackages"], 180);
    let log = admin.log().await.unwrap();
    let internal = log
        .iter()
        .find(|e| e.error_code.as_deref() == Some("InternalException"))
        .unwrap();
    assert_eq!(internal.status, Some(500));
}

#[tokio::test]
async fn rate_limiter_answers_throttling_above_its_rate() {
    let sim = sim().await;
    sim.admin()
        .set_faults(&FaultConfig {
            rate_limit: Some(RateLimit {
                per_second: 2.0,
                burst: 5,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let client = client(&sim);
    let mut throttled = 0;
    for _ in 0..12 {
        if let Err(e) = client.describe_packages().send().await {
            assert_eq!(e.code(), Some("ThrottlingException"));
            assert_eq!(e.message(), Some("Rate exceeded"));
            assert_eq!(e.raw_response().unwrap().status().as_u16(), 400);
            throttled += 1;
        }
    }
    assert!((5..=7).contains(&(12 - throttled)), "{throttled} throttled");
    // The bucket is per (account, region): another region, and another account in the same
    // region, still have their whole burst.
    for other in [
        client_for(&sim, "eu-west-1", "test"),
        client_for(&sim, "us-east-1", "111122223333"),
    ] {
        for _ in 0..5 {
            other
                .describe_packages()
                .send()
                .await
                .expect("a bucket of its own");
        }
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    client
        .describe_packages()
        .send()
        .await
        .expect("a token came back");
}

#[tokio::test]
async fn held_response_arrives_after_the_operation_took_effect() {
    let sim = sim().await;
    let admin = sim.admin();
    admin
        .put_object("pkgs", "held.txt", b"x".to_vec())
        .await
        .unwrap();
    admin
        .set_faults(&FaultConfig {
            operations: BTreeMap::from([(
                "CreatePackage".to_string(),
                OperationFaults {
                    hold_response_ms: 2000,
                    ..Default::default()
                },
            )]),
            ..Default::default()
        })
        .await
        .unwrap();
    let client = client(&sim);
    let call = client
        .create_package()
        .package_name("held")
        .package_type(PackageType::TxtDictionary)
        .package_source(source("pkgs", "held.txt"))
        .send();
    // The client gives up (as if killed) before the answer comes...
    assert!(
        tokio::time::timeout(Duration::from_millis(400), call)
            .await
            .is_err()
    );
    // ...but the package exists.
    let listed = client.describe_packages().send().await.unwrap();
    assert!(
        listed
            .package_details_list()
            .iter()
            .any(|p| p.package_name() == Some("held"))
    );
    assert_eq!(admin.calls().await.unwrap()["CreatePackage"], 1);
    let entry = admin
        .log()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.operation.as_deref() == Some("CreatePackage"))
        .unwrap();
    assert_eq!(
        (entry.status, entry.package_id.is_some()),
        (Some(200), true)
    );
}

#[tokio::test]
async fn latency_delays_before_the_operation() {
    let sim = sim().await;
    sim.admin()
        .set_faults(&FaultConfig {
            operations: BTreeMap::from([(
                "*".to_string(),
                OperationFaults {
                    latency_ms: 300,
                    ..Default::default()
                },
            )]),
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    client(&sim).describe_packages().send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn binary_starts_quickly_and_prints_where_it_listens() {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ospkg-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
            "--domain",
            "search:OpenSearch_2.15",
            "--domain",
            "logs",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let elapsed = started.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(
        line.starts_with("ospkg-sim listening on http://127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("(s3 http://127.0.0.1:"), "{line}");
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_ospkg-sim"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--s3-listen",
        "--domain",
        "--region",
        "--account",
        "--seed",
        "--copying-ms",
        "--validating-ms",
        "--associating-ms",
        "--dissociating-ms",
        "--deleting-ms",
        "--clock",
        "--speed",
        "--package-quota",
        "--domain-quota",
        "--state",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("ospkg-sim-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    let config = || ospkg_sim::SimConfig {
        state_file: Some(path.clone()),
        ..Default::default()
    };
    let first = sim_with(config()).await;
    let id = create_dictionary(&first, &client(&first), "kept").await;
    first.shutdown().await.unwrap();
    let second = sim_with(config()).await;
    let details = describe(&client(&second), &id).await;
    assert_eq!(details.package_name(), Some("kept"));
    drop(second);
    std::fs::remove_dir_all(&dir).unwrap();
}
