//! High availability: two replicas of the operator on one Lease. Only the holder reconciles;
//! the standby takes over when the leader is killed (after the Lease expires) or shuts down
//! (at once: the Lease is released); a leader paused past its Lease makes no AWS change and no
//! status write when it resumes, and stands by.

use std::time::{Duration, Instant};

use ospkg_sim::{EntryKind, SimConfig};

use super::support::{self, Operator, TestEnv, access_key, dictionary, fast_durations, status_of};

/// Two replicas, `a` leading; an object Ready at v1.
async fn two_replicas(ns: &str, name: &str) -> TestEnv {
    let cp = support::shared_control_plane()
        .await
        .expect("control plane");
    let mut env =
        TestEnv::start_with(cp, ns, SimConfig::default().durations(fast_durations())).await;
    wait_holder(&env, "a", Duration::from_secs(30)).await;
    env.add_replica("b").await;
    env.put_object("ha/v1.txt", b"tv, television\n").await;
    env.put_object("ha/v2.txt", b"tv, television, telly\n")
        .await;
    env.apply(&dictionary(name, "ha/v1.txt", None, "")).await;
    env.wait_ready(name).await;
    env
}

async fn wait_holder(env: &TestEnv, replica: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let wanted = env
        .operator
        .iter()
        .chain(&env.replicas)
        .map(|o| o.name.clone())
        .find(|n| n.ends_with(&format!("-{replica}")))
        .expect("a replica of that name");
    while env.lease_holder().await.as_deref() != Some(wanted.as_str()) {
        assert!(
            started.elapsed() < within,
            "{wanted} never held the Lease (holder {:?})",
            env.lease_holder().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Waits for the first call the simulator sees from `replica` after log entry `after`.
async fn first_call_from(env: &TestEnv, replica: &str, after: u64, within: Duration) -> Duration {
    let started = Instant::now();
    let key = access_key(replica);
    loop {
        let log = env.admin().log().await.expect("log");
        if log.iter().any(|e| {
            e.seq > after
                && e.kind == EntryKind::Call
                && e.access_key_id.as_deref() == Some(key.as_str())
        }) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "replica {replica} made no AWS call within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn last_seq(env: &TestEnv) -> u64 {
    let log = env.admin().log().await.expect("log");
    log.last().map_or(0, |e| e.seq)
}

fn standby(env: &mut TestEnv) -> &mut Operator {
    env.replicas.first_mut().expect("standby replica")
}

#[tokio::test]
async fn the_standby_takes_over_when_the_leader_is_killed_or_shuts_down() {
    let name = "ha-words";
    let mut env = two_replicas("e2e-ha-failover", name).await;
    // Only the leader talks to AWS.
    let log = env.admin().log().await.expect("log");
    assert!(
        !log.iter()
            .any(|e| e.access_key_id.as_deref() == Some(access_key("b").as_str())),
        "the standby called AWS"
    );

    // SIGKILL: the standby waits for the Lease to expire, then reconciles a pending change.
    let seq = last_seq(&env).await;
    env.operator().kill();
    let killed = Instant::now();
    env.apply(&dictionary(name, "ha/v2.txt", None, "")).await;
    first_call_from(&env, "b", seq, Duration::from_secs(40)).await;
    let takeover = killed.elapsed();
    println!("takeover after SIGKILL of the leader: {takeover:?} (lease duration 15s)");
    env.wait_ready(name).await;

    // SIGTERM: the leader (now b) finishes, releases the Lease and exits 0; a restarted a
    // takes over at once.
    env.operator().restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    standby(&mut env).signal("TERM");
    let terminated = Instant::now();
    let status = standby(&mut env)
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("the leader exits after SIGTERM");
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let handover = wait_holder(&env, "a", Duration::from_secs(20)).await;
    println!(
        "takeover after SIGTERM of the leader: {:?} (exit {:?}, Lease taken {handover:?} after)",
        terminated.elapsed(),
        status.code()
    );
    let obj = env.force_reconcile(name).await;
    assert_eq!(
        status_of(&obj).available_package_version.as_deref(),
        Some("v2")
    );
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_writes_nothing_when_it_resumes() {
    let name = "ha-paused";
    let mut env = two_replicas("e2e-ha-paused", name).await;
    let obj = env.get(name).await.expect("exists");
    let v1 = status_of(&obj).clone();

    // The leader freezes with a change on its way; the standby takes over and applies it.
    env.operator().signal("STOP");
    env.apply(&dictionary(name, "ha/v2.txt", None, "")).await;
    wait_holder(&env, "b", Duration::from_secs(40)).await;
    let obj = env
        .wait_for(name, "Ready at v2", Duration::from_secs(60), |o| {
            o.is_some_and(|o| {
                status_of(o).available_package_version.as_deref() == Some("v2")
                    && support::is_current(o)
                    && support::condition(o, "Ready").is_some_and(|c| c.status == "True")
            })
        })
        .await
        .expect("exists");
    assert_ne!(status_of(&obj).applied_digest, v1.applied_digest);
    let seq = last_seq(&env).await;
    let version = obj.metadata.resource_version.clone();

    // It resumes after losing the Lease: no AWS change, no status write; it stands by.
    env.operator().signal("CONT");
    let resumed = Instant::now();
    loop {
        let (_, metrics) = env.operator().http_get("/metrics").await.expect("metrics");
        if metrics.lines().any(|l| l == "ospkg_leader 0") {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(30),
            "the resumed replica still claims to lead:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        env.operator().exit_status().is_none(),
        "it stands by, running"
    );
    let (code, _) = env.operator().http_get("/readyz").await.expect("readyz");
    assert_eq!(code, 200, "a standby is ready");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = env.admin().log().await.expect("log");
    let from_old: Vec<_> = log
        .iter()
        .filter(|e| e.seq > seq && e.access_key_id.as_deref() == Some(access_key("a").as_str()))
        .filter(|e| {
            !matches!(
                e.operation.as_deref(),
                Some("DescribePackages" | "GetPackageVersionHistory" | "ListDomainsForPackage")
            )
        })
        .collect();
    assert!(
        from_old.is_empty(),
        "the paused leader changed AWS: {from_old:#?}"
    );
    let after = env.get(name).await.expect("exists");
    assert_eq!(
        after.metadata.resource_version,
        version,
        "the object was written after the old leader resumed:\n{}",
        env.operator_log(40)
    );
    assert_eq!(env.sim_versions(name).await, ["v2", "v1"]);
}
