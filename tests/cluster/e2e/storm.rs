//! A randomised storm of spec changes, faults and SIGKILLs against the real API server and
//! the simulator, with two replicas of the operator on one Lease (kills hit the leader or the
//! standby). At the end every object is Ready (or Stalled when its final source is
//! truly missing) at its generation, AWS holds each object's final spec, and no spec state
//! produced two versions: the sequence of UpdatePackage calls that took effect on a package
//! never repeats a digest back to back. The after-effect faults include requests that land
//! only after the operator's (shortened) timeout gave up on them.
//!
//! The short, fixed-seed form (4 objects, 40 changes, 12 kills) runs in the suite. `OSPKG_STORM=long` runs the long form
//! (8 objects, 120 changes, 40 kills); `OSPKG_STORM_SEED` picks another seed. Both print a
//! summary line (changes, kills, faults, duplicates, lost).

use std::collections::BTreeMap;
use std::time::Duration;

use ospkg::crd::OpenSearchPackage;
use ospkg::digest::SpecDigest;
use ospkg_sim::{EntryKind, FaultConfig, LogEntry, OperationFaults, ScriptedFault, SimConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::support::{
    DOMAIN, TestEnv, condition, create_foreign_packages, dictionary, fast_durations, is_current,
    shared_control_plane,
};

struct Storm {
    objects: usize,
    changes: usize,
    kills: usize,
    seed: u64,
    /// Packages made outside the cluster in the objects' region beforehand.
    foreign: usize,
}

impl Storm {
    fn from_env() -> Self {
        let seed = std::env::var("OSPKG_STORM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_261_129);
        if std::env::var("OSPKG_STORM").as_deref() == Ok("long") {
            Self {
                objects: 8,
                changes: 120,
                kills: 40,
                seed,
                foreign: 0,
            }
        } else {
            Self {
                objects: 4,
                changes: 40,
                kills: 12,
                seed,
                foreign: 0,
            }
        }
    }
}

/// What the test asked of one object.
#[derive(Clone, Debug, PartialEq)]
struct Spec {
    key: String,
    description: String,
    revision: u32,
    domain: bool,
}

impl Spec {
    fn yaml(&self, name: &str) -> String {
        let mut extra = format!("description: {}\n", self.description);
        if self.domain {
            extra.push_str(&format!("domains:\n  - name: {DOMAIN}\n"));
        }
        dictionary(name, &self.key, Some(&self.revision.to_string()), &extra)
    }

    fn digest(&self, name: &str) -> SpecDigest {
        let obj: OpenSearchPackage = serde_yaml::from_str(&self.yaml(name)).expect("object");
        SpecDigest::of(&obj.spec)
    }

    fn is_bad(&self) -> bool {
        self.key.contains("missing")
    }
}

/// The next spec for an object: a new file, a new description, a revert, a missing file, a
/// domain added or removed, or a revision bump.
fn mutate(rng: &mut StdRng, history: &[Spec], fresh_key: &mut impl FnMut() -> String) -> Spec {
    let current = history.last().expect("history").clone();
    let roll: f64 = rng.random();
    if roll < 0.15 && history.len() >= 2 {
        return history[history.len() - 2].clone();
    }
    let mut next = current;
    match rng.random_range(0..5) {
        0 => next.key = fresh_key(),
        1 => next.description = format!("words {}", rng.random_range(0..1000)),
        2 => next.key = format!("storm/missing-{}.txt", rng.random_range(0..1000)),
        3 => next.domain = !next.domain,
        _ => next.revision += 1,
    }
    next
}

/// The operators' timeouts in the storm: short, so that a late request lands after the
/// client gave up on it (and the unanswered window, 3 s + 5 s, passes within the storm).
const TIMEOUTS: [&str; 2] = ["--aws-attempt-timeout=1s", "--aws-operation-timeout=3s"];

/// An after-effect fault on a call that changes something: the service acts, the operator
/// does not hear (a 500, a dropped connection, an answer held while it may be killed, or no
/// answer at all and the change made after the client's timeout gave up on it).
fn after_effect(rng: &mut StdRng) -> ScriptedFault {
    match rng.random_range(0..4) {
        0 => ScriptedFault::ErrorAfterEffect,
        1 => ScriptedFault::CloseAfterEffect,
        2 => ScriptedFault::HoldAfterEffect { ms: 1_500 },
        _ => ScriptedFault::LateEffect { ms: 2_000 },
    }
}

fn marker_of(entry: &LogEntry) -> Option<String> {
    let message = entry.commit_message.as_deref()?;
    let start = message.rfind("[ospkg:")?;
    Some(message[start..].trim_end().to_owned())
}

#[tokio::test]
async fn a_storm_of_changes_faults_and_kills_loses_nothing_and_duplicates_nothing() {
    run(Storm::from_env(), "e2e-storm").await;
}

/// The same storm, shorter, in a region of two pages (150 packages of other teams): the
/// region observer reads the objects' packages by id while they change, not the region.
#[tokio::test]
async fn a_storm_in_a_region_of_many_pages_loses_nothing_and_duplicates_nothing() {
    let storm = Storm {
        objects: 4,
        changes: 24,
        kills: 8,
        foreign: 150,
        ..Storm::from_env()
    };
    run(storm, "e2e-storm-big").await;
}

async fn run(storm: Storm, ns: &str) {
    let sim = SimConfig::default()
        .durations(fast_durations())
        .package_quota(storm.foreign + 25);
    let cp = shared_control_plane().await.expect("control plane");
    let env = TestEnv::without_operator(cp, ns, sim).await;
    create_foreign_packages(&env, "us-east-1", "foreign", storm.foreign).await;
    let mut env = env.with_operator_args(&TIMEOUTS).await;
    // Two replicas on one Lease: kills hit the leader or the standby.
    env.add_replica("b").await;
    let mut rng = StdRng::seed_from_u64(storm.seed);
    let names: Vec<String> = (0..storm.objects).map(|i| format!("storm-{i}")).collect();

    let mut files = 0;
    let mut stored = Vec::new();
    for _ in 0..storm.objects {
        let key = format!("storm/words-{files}.txt");
        env.put_object(&key, format!("term{files}, synonym{files}\n").as_bytes())
            .await;
        stored.push(key);
        files += 1;
    }
    // Throttling and 5xx on every call, all along.
    let base = FaultConfig {
        seed: storm.seed,
        operations: BTreeMap::from([(
            "*".to_owned(),
            OperationFaults {
                throttle: 0.03,
                internal: 0.02,
                ..OperationFaults::default()
            },
        )]),
        ..FaultConfig::default()
    };
    env.set_faults(&base).await;

    let mut histories: BTreeMap<String, Vec<Spec>> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let spec = Spec {
            key: stored[i].clone(),
            description: "words".into(),
            revision: 0,
            domain: false,
        };
        env.apply(&spec.yaml(name)).await;
        histories.insert(name.clone(), vec![spec]);
    }

    let mut kills = 0;
    let mut faults = 0;
    for change in 0..storm.changes {
        let name = names[rng.random_range(0..names.len())].clone();
        let history = &histories[&name];
        let mut fresh_key = || {
            let key = format!("storm/words-{files}.txt");
            files += 1;
            key
        };
        let next = mutate(&mut rng, history, &mut fresh_key);
        if !next.is_bad() && !stored.contains(&next.key) {
            env.put_object(&next.key, format!("{} content\n", next.key).as_bytes())
                .await;
            stored.push(next.key.clone());
        }
        let held = rng.random_bool(0.3);
        if held {
            let operation = if rng.random_bool(0.8) {
                "UpdatePackage"
            } else {
                "AssociatePackage"
            };
            env.admin()
                .script_fault(operation, after_effect(&mut rng))
                .await
                .expect("fault scripted");
            faults += 1;
        }
        env.apply(&next.yaml(&name)).await;
        histories.get_mut(&name).expect("history").push(next);

        tokio::time::sleep(Duration::from_millis(rng.random_range(0..700))).await;
        let kills_left = storm.kills - kills;
        let changes_left = storm.changes - change;
        if kills_left > 0 && rng.random_range(0..changes_left) < kills_left {
            let replica = if rng.random_bool(0.5) {
                env.operator()
            } else {
                env.replicas.first_mut().expect("second replica")
            };
            replica.kill();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
            replica.restart();
        }
    }

    // The weather clears; everything must converge on its final spec.
    env.set_faults(&FaultConfig::default()).await;
    let mut lost = Vec::new();
    for name in &names {
        let last = histories[name].last().expect("history").clone();
        let obj = env
            .wait_for(
                name,
                "settled at its generation",
                Duration::from_secs(180),
                |o| {
                    o.is_some_and(|o| {
                        is_current(o)
                            && if last.is_bad() {
                                condition(o, "Stalled")
                                    .is_some_and(|c| c.status == "True" && c.reason == "CopyFailed")
                            } else {
                                condition(o, "Ready").is_some_and(|c| c.status == "True")
                            }
                    })
                },
            )
            .await
            .expect("exists");
        let status = obj.status.clone().unwrap_or_default();
        let digest = last.digest(name);
        if status.applied_digest.as_deref() != Some(digest.as_str()) {
            lost.push(format!(
                "{name}: status records another spec than the last one"
            ));
        }
        let package = env.sim_package(name).await.expect("package in AWS");
        let details = &package["details"];
        if !last.is_bad() {
            if details["PackageDescription"] != last.description.as_str() {
                lost.push(format!("{name}: AWS holds another description: {details}"));
            }
            let newest = package["history"][0]["CommitMessage"]
                .as_str()
                .unwrap_or("");
            let updated = package["history"].as_array().map_or(0, Vec::len) > 1;
            if updated && !digest.is_marked_in(newest) {
                lost.push(format!(
                    "{name}: the newest version ({newest:?}) is not the final spec's"
                ));
            }
        }
    }

    // Every UpdatePackage that took effect, per package, in order.
    let log = env.admin().log().await.expect("simulator log");
    let mut effective: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut creates: BTreeMap<String, u32> = BTreeMap::new();
    for entry in &log {
        if entry.kind != EntryKind::Call || !entry.effect {
            continue;
        }
        let package = entry.package_id.clone().unwrap_or_default();
        match entry.operation.as_deref() {
            Some("UpdatePackage") => effective
                .entry(package)
                .or_default()
                .extend(marker_of(entry)),
            Some("CreatePackage") => *creates.entry(package).or_default() += 1,
            _ => {}
        }
    }
    let mut duplicates = Vec::new();
    for (package, markers) in &effective {
        for pair in markers.windows(2) {
            if pair[0] == pair[1] {
                duplicates.push(format!("{package}: {} twice in a row", pair[0]));
            }
        }
    }
    let packages = env.sim_packages().await;
    for name in &names {
        let count = packages
            .iter()
            .filter(|p| p["details"]["PackageName"] == name.as_str())
            .count();
        if count != 1 {
            duplicates.push(format!("{name}: {count} packages"));
        }
    }
    let updates: usize = effective.values().map(Vec::len).sum();
    let describes = |lookup: bool| {
        log.iter()
            .filter(|e| e.operation.as_deref() == Some("DescribePackages") && e.lookup == lookup)
            .count()
    };
    let late = log
        .iter()
        .filter(|e| e.fault.as_deref() == Some("lateEffect"))
        .count();
    println!(
        "storm seed {} ({} foreign packages): {} objects, {} changes, {} kills, {} after-effect faults ({} landing after the timeout), {} effective updates, {} creates, DescribePackages {} listing pages and {} by id or name, duplicates {}, lost {}",
        storm.seed,
        storm.foreign,
        storm.objects,
        storm.changes,
        kills,
        faults,
        late,
        updates,
        creates.values().sum::<u32>(),
        describes(false),
        describes(true),
        duplicates.len(),
        lost.len()
    );
    assert!(duplicates.is_empty(), "duplicates: {duplicates:#?}");
    assert!(lost.is_empty(), "lost: {lost:#?}");
}
