//! Domain rollout end to end: associations on several domains, Sequential and Parallel
//! rollouts, a failed association and its retry, removing a domain, deletion with domains
//! (and with a domain the operator did not associate), and the vending allow-list.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ospkg::backend::aws::AwsBackend;
use ospkg::backend::{AssociatePackage, PackageBackend};
use ospkg::crd::OpenSearchPackage;
use ospkg_sim::{Durations, EntryKind, FaultConfig, LogEntry, SimConfig};

use super::support::own_scope;
use super::support::{
    self, CONVERGE, DOMAIN, TestEnv, condition, dictionary, fast_durations, is_current, status_of,
};

/// The second domain of these tests (the first is [`DOMAIN`]).
const SECOND: &str = "catalog-eu";
const SETTLE: Duration = Duration::from_secs(4);

fn count(calls: &BTreeMap<String, u64>, operation: &str) -> u64 {
    calls.get(operation).copied().unwrap_or(0)
}

/// A test world whose simulator has [`DOMAIN`], [`SECOND`] and `extra` domains.
async fn start(ns: &str, durations: Durations, extra: &[&str]) -> TestEnv {
    let mut sim = SimConfig::default()
        .durations(durations)
        .domain(SECOND, "OpenSearch_2.19");
    for domain in extra {
        sim = sim.domain(domain, "OpenSearch_2.19");
    }
    let cp = support::shared_control_plane()
        .await
        .expect("control plane");
    TestEnv::start_with(cp, ns, sim).await
}

fn with_associating_ms(ms: u64) -> Durations {
    Durations {
        associating_ms: ms,
        ..fast_durations()
    }
}

/// `domains:` listing these names, plus `extra` spec lines.
fn domains_spec(domains: &[&str], extra: &str) -> String {
    let mut yaml = String::from(extra);
    yaml.push_str("domains:\n");
    for domain in domains {
        yaml.push_str(&format!("  - name: {domain}\n"));
    }
    yaml
}

/// Whether every listed domain is ACTIVE on `version` in the object's status.
fn all_active(obj: &OpenSearchPackage, domains: &[&str], version: &str) -> bool {
    let Some(status) = obj.status.as_ref() else {
        return false;
    };
    domains.iter().all(|name| {
        status.domains.iter().any(|d| {
            d.domain_name == *name
                && d.domain_package_status.as_ref().map(|s| s.as_str()) == Some("ACTIVE")
                && d.package_version.as_deref() == Some(version)
        })
    })
}

fn is_ready(obj: &OpenSearchPackage) -> bool {
    is_current(obj) && condition(obj, "Ready").is_some_and(|c| c.status == "True")
}

/// Polls until Ready at `version`; panics if it is ever seen Ready (at the current
/// generation) at `version` while not every domain is ACTIVE on it.
async fn wait_ready_only_when_active(
    env: &TestEnv,
    name: &str,
    domains: &[&str],
    version: &str,
) -> OpenSearchPackage {
    let deadline = Instant::now() + CONVERGE;
    loop {
        if let Some(obj) = env.get(name).await {
            let at_version = obj
                .status
                .as_ref()
                .and_then(|s| s.available_package_version.as_deref())
                == Some(version);
            if is_ready(&obj) && at_version {
                assert!(
                    all_active(&obj, domains, version),
                    "Ready before every domain is ACTIVE on {version}:\n{}",
                    env.describe(name).await
                );
                return obj;
            }
        }
        if Instant::now() > deadline {
            // Let wait_for produce the diagnostics.
            return env.wait_ready(name).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn association_log(env: &TestEnv) -> Vec<LogEntry> {
    env.admin()
        .log()
        .await
        .expect("sim log")
        .into_iter()
        .filter(|e| e.kind == EntryKind::Association)
        .collect()
}

fn call_entries<'a>(log: &'a [LogEntry], operation: &str) -> Vec<&'a LogEntry> {
    log.iter()
        .filter(|e| e.kind == EntryKind::Call && e.operation.as_deref() == Some(operation))
        .collect()
}

/// The most domains ever ASSOCIATING at the same time in these association entries.
fn max_concurrently_associating(entries: &[LogEntry]) -> usize {
    let mut associating = BTreeSet::new();
    let mut max = 0;
    for entry in entries {
        let domain = entry.domain_name.clone().unwrap_or_default();
        if entry.association_status.as_deref() == Some("ASSOCIATING") {
            associating.insert(domain);
        } else {
            associating.remove(&domain);
        }
        max = max.max(associating.len());
    }
    max
}

fn associating_events(events: &[(String, String, String)], domain: &str) -> usize {
    events
        .iter()
        .filter(|(t, r, m)| t == "Normal" && r == "Associating" && m.contains(domain))
        .count()
}

// 1 + 7: two domains → both ACTIVE on v1, status.domains complete, Ready only then; one
// Associating event per domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_domains_reach_active_then_ready() {
    let env = start("e2e-dom-two", with_associating_ms(600), &[]).await;
    env.put_object("dom/two.txt", b"alpha\nbeta\n").await;
    env.apply(&dictionary(
        "two",
        "dom/two.txt",
        None,
        &domains_spec(&[DOMAIN, SECOND], ""),
    ))
    .await;
    let obj = wait_ready_only_when_active(&env, "two", &[DOMAIN, SECOND], "v1").await;

    let s = status_of(&obj);
    let id = s.package_id.clone().expect("status.packageID");
    assert_eq!(s.domains.len(), 2, "{:?}", s.domains);
    assert_eq!(s.domains_ready.as_deref(), Some("2/2"));
    // `kubectl get -o wide` adds the Ready reason, region, domains and message.
    let wide = env.kubectl(&["get", "ospkg", "two", "-o", "wide"]).await;
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for column in ["REASON", "REGION", "DOMAINS", "MESSAGE"] {
        assert!(header.contains(&column), "{column} missing:\n{wide}");
    }
    assert!(wide.contains("us-east-1") && wide.contains("2/2"), "{wide}");
    for name in [DOMAIN, SECOND] {
        let d = s
            .domains
            .iter()
            .find(|d| d.domain_name == name)
            .unwrap_or_else(|| panic!("{name} missing from status.domains: {:?}", s.domains));
        assert_eq!(
            d.domain_package_status.as_ref().map(|s| s.as_str()),
            Some("ACTIVE")
        );
        assert_eq!(d.package_version.as_deref(), Some("v1"));
        assert_eq!(
            d.reference_path.as_deref(),
            Some(format!("analyzers/{id}").as_str())
        );
        assert!(!d.unmanaged, "{name} was associated by the operator");
    }
    let ready = condition(&obj, "Ready").expect("Ready");
    assert_eq!(ready.reason, "Available");

    let calls = env.calls().await;
    assert_eq!(count(&calls, "AssociatePackage"), 2, "{calls:?}");
    assert_eq!(count(&calls, "DissociatePackage"), 0, "{calls:?}");

    let log = association_log(&env).await;
    let active: Vec<_> = log
        .iter()
        .filter(|e| e.association_status.as_deref() == Some("ACTIVE"))
        .filter_map(|e| e.domain_name.clone())
        .collect();
    assert_eq!(active.len(), 2, "{log:#?}");

    for name in [DOMAIN, SECOND] {
        env.wait_event("two", "Associating", name).await;
    }
    let events = env.events("two").await;
    for name in [DOMAIN, SECOND] {
        assert_eq!(associating_events(&events, name), 1, "{events:#?}");
    }
}

// 2a + 7: a Sequential update to v2 never has two domains ASSOCIATING at once, and Ready
// comes back only when both are on v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_update_rolls_out_one_domain_at_a_time() {
    let env = start("e2e-dom-seq", with_associating_ms(800), &[]).await;
    env.put_object("dom/seq-1.txt", b"one\n").await;
    env.put_object("dom/seq-2.txt", b"one\ntwo\n").await;
    let spec = |key: &str, revision: &str| {
        dictionary(
            "seq",
            key,
            Some(revision),
            &domains_spec(&[DOMAIN, SECOND], "rollout:\n  strategy: Sequential\n"),
        )
    };
    env.apply(&spec("dom/seq-1.txt", "1")).await;
    wait_ready_only_when_active(&env, "seq", &[DOMAIN, SECOND], "v1").await;
    let before = association_log(&env).await.len();

    env.apply(&spec("dom/seq-2.txt", "2")).await;
    let obj = wait_ready_only_when_active(&env, "seq", &[DOMAIN, SECOND], "v2").await;
    assert!(all_active(&obj, &[DOMAIN, SECOND], "v2"));
    // Once Ready nothing is associated again (a stale view of the package must not make
    // current domains look outdated).
    tokio::time::sleep(SETTLE).await;
    let obj = env.get("seq").await.expect("exists");
    assert!(is_ready(&obj), "{}", env.describe("seq").await);

    let log = association_log(&env).await;
    assert_eq!(
        max_concurrently_associating(&log),
        1,
        "two domains ASSOCIATING at once: {log:#?}"
    );
    let update: Vec<_> = log[before..].to_vec();
    let started: Vec<_> = update
        .iter()
        .filter(|e| e.association_status.as_deref() == Some("ASSOCIATING"))
        .filter_map(|e| e.domain_name.clone())
        .collect();
    assert_eq!(started.len(), 2, "{update:#?}");
    assert_eq!(
        started.iter().collect::<BTreeSet<_>>().len(),
        2,
        "{update:#?}"
    );
    let calls = env.calls().await;
    assert_eq!(count(&calls, "AssociatePackage"), 4, "{calls:?}");

    let events = env.events("seq").await;
    for name in [DOMAIN, SECOND] {
        assert!(
            associating_events(&events, name) >= 1,
            "no Associating event for {name}: {events:#?}"
        );
    }
}

// 2b: Parallel starts every domain before either is ACTIVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_rollout_starts_every_domain_at_once() {
    let env = start("e2e-dom-par", with_associating_ms(1500), &[]).await;
    env.put_object("dom/par.txt", b"one\n").await;
    env.apply(&dictionary(
        "par",
        "dom/par.txt",
        None,
        &domains_spec(&[DOMAIN, SECOND], "rollout:\n  strategy: Parallel\n"),
    ))
    .await;
    wait_ready_only_when_active(&env, "par", &[DOMAIN, SECOND], "v1").await;

    let log = association_log(&env).await;
    let first_active = log
        .iter()
        .position(|e| e.association_status.as_deref() == Some("ACTIVE"))
        .unwrap_or_else(|| panic!("no ACTIVE entry: {log:#?}"));
    let started_before: BTreeSet<_> = log[..first_active]
        .iter()
        .filter(|e| e.association_status.as_deref() == Some("ASSOCIATING"))
        .filter_map(|e| e.domain_name.clone())
        .collect();
    assert_eq!(
        started_before.len(),
        2,
        "both domains must start before either is ACTIVE: {log:#?}"
    );
    assert_eq!(max_concurrently_associating(&log), 2, "{log:#?}");
    let calls = env.calls().await;
    assert_eq!(count(&calls, "AssociatePackage"), 2, "{calls:?}");
}

// 3: ASSOCIATION_FAILED on the first domain stalls naming it and leaves the second alone;
// clearing the fault and requesting a reconcile resumes the rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn association_failure_stalls_then_resumes_on_request() {
    let env = start("e2e-dom-fail", fast_durations(), &[]).await;
    env.set_faults(&FaultConfig {
        fail_associations: BTreeMap::from([(
            DOMAIN.to_owned(),
            "Domain is in processing state".to_owned(),
        )]),
        ..FaultConfig::default()
    })
    .await;
    env.put_object("dom/fail.txt", b"one\n").await;
    env.apply(&dictionary(
        "failing",
        "dom/fail.txt",
        None,
        &domains_spec(&[DOMAIN, SECOND], ""),
    ))
    .await;
    let obj = env.wait_stalled("failing", "AssociationFailed").await;
    let stalled = condition(&obj, "Stalled").expect("Stalled");
    assert!(
        stalled.message.contains(DOMAIN),
        "Stalled must name {DOMAIN}: {stalled:?}"
    );
    assert!(
        condition(&obj, "Ready").is_none_or(|c| c.status != "True"),
        "{:?}",
        obj.status
    );
    tokio::time::sleep(SETTLE).await;
    let log = env.admin().log().await.expect("log");
    let second_calls: Vec<_> = call_entries(&log, "AssociatePackage")
        .into_iter()
        .filter(|e| e.domain_name.as_deref() == Some(SECOND))
        .collect();
    assert!(
        second_calls.is_empty(),
        "{SECOND} must be untouched: {second_calls:#?}"
    );
    let calls = env.calls().await;
    assert_eq!(count(&calls, "AssociatePackage"), 1, "{calls:?}");

    env.set_faults(&FaultConfig::default()).await;
    env.force_reconcile("failing").await;
    let obj = wait_ready_only_when_active(&env, "failing", &[DOMAIN, SECOND], "v1").await;
    assert!(all_active(&obj, &[DOMAIN, SECOND], "v1"));
    let calls = env.calls().await;
    assert_eq!(count(&calls, "AssociatePackage"), 3, "{calls:?}");
}

// 4: a domain removed from the spec is dissociated and leaves status.domains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_domain_is_dissociated() {
    let env = start("e2e-dom-remove", fast_durations(), &[]).await;
    env.put_object("dom/rm.txt", b"one\n").await;
    env.apply(&dictionary(
        "shrink",
        "dom/rm.txt",
        None,
        &domains_spec(&[DOMAIN, SECOND], ""),
    ))
    .await;
    wait_ready_only_when_active(&env, "shrink", &[DOMAIN, SECOND], "v1").await;

    env.apply(&dictionary(
        "shrink",
        "dom/rm.txt",
        None,
        &domains_spec(&[DOMAIN], ""),
    ))
    .await;
    let obj = env
        .wait_for("shrink", "Ready with one domain", CONVERGE, |o| {
            o.is_some_and(|o| is_ready(o) && status_of(o).domains.len() == 1)
        })
        .await
        .expect("exists");
    let s = status_of(&obj);
    assert_eq!(s.domains[0].domain_name, DOMAIN, "{:?}", s.domains);
    let calls = env.calls().await;
    assert_eq!(count(&calls, "DissociatePackage"), 1, "{calls:?}");
    assert_eq!(count(&calls, "AssociatePackage"), 2, "{calls:?}");
    let log = association_log(&env).await;
    assert!(
        log.iter().any(|e| e.domain_name.as_deref() == Some(SECOND)
            && e.association_status.as_deref() == Some("DISSOCIATED")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|e| e.domain_name.as_deref() == Some(DOMAIN)
            && e.association_status.as_deref() == Some("DISSOCIATING")),
        "{log:#?}"
    );
    env.wait_event("shrink", "Dissociating", SECOND).await;
}

// 5: deletion dissociates the object's domains, then deletes the package; a domain the
// operator did not associate blocks deletion (Stalled InUse) until it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_dissociates_and_waits_for_foreign_domains() {
    const FOREIGN: &str = "catalog-other";
    let mut env = start("e2e-dom-delete", fast_durations(), &[FOREIGN]).await;
    env.put_object("dom/del.txt", b"one\n").await;
    env.apply(&dictionary(
        "gone",
        "dom/del.txt",
        None,
        &domains_spec(&[DOMAIN, SECOND], "deletionPolicy: Delete\n"),
    ))
    .await;
    let obj = wait_ready_only_when_active(&env, "gone", &[DOMAIN, SECOND], "v1").await;
    let id = status_of(&obj).package_id.clone().expect("id");

    let backend = AwsBackend::for_endpoint(&env.sim.endpoint()).await;
    backend
        .associate_package(
            &own_scope("us-east-1"),
            AssociatePackage {
                package_id: id.clone(),
                domain_name: FOREIGN.to_owned(),
                prerequisites: Vec::new(),
                key_store_access: None,
            },
        )
        .await
        .expect("associate the foreign domain");

    env.kubectl(&["delete", "ospkg", "gone", "--wait=false"])
        .await;
    let obj = env
        .wait_for("gone", "Stalled (InUse)", CONVERGE, |o| {
            o.is_some_and(|o| {
                condition(o, "Stalled").is_some_and(|c| c.status == "True" && c.reason == "InUse")
            })
        })
        .await
        .expect("exists");
    let stalled = condition(&obj, "Stalled").expect("Stalled");
    assert!(
        stalled.message.contains(FOREIGN),
        "InUse must name {FOREIGN}: {stalled:?}"
    );
    tokio::time::sleep(SETTLE).await;
    let calls = env.calls().await;
    assert_eq!(count(&calls, "DissociatePackage"), 2, "{calls:?}");
    assert_eq!(count(&calls, "DeletePackage"), 0, "{calls:?}");
    assert!(env.get("gone").await.is_some(), "deleted while in use");

    backend
        .dissociate_package(&own_scope("us-east-1"), &id, FOREIGN)
        .await
        .expect("dissociate the foreign domain");
    let deadline = Instant::now() + CONVERGE;
    while !association_log(&env).await.iter().any(|e| {
        e.domain_name.as_deref() == Some(FOREIGN)
            && e.association_status.as_deref() == Some("DISSOCIATED")
    }) {
        assert!(Instant::now() < deadline, "{FOREIGN} never dissociated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The operator re-checks an InUse package only slowly (a minute); a restarted operator
    // looks at it at once.
    env.operator().restart();
    env.wait_gone("gone").await;
    let log = env.admin().log().await.expect("log");
    let deletes = call_entries(&log, "DeletePackage");
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    let delete_seq = deletes[0].seq;
    for domain in [DOMAIN, SECOND, FOREIGN] {
        let gone = log
            .iter()
            .find(|e| {
                e.domain_name.as_deref() == Some(domain)
                    && e.association_status.as_deref() == Some("DISSOCIATED")
            })
            .unwrap_or_else(|| panic!("{domain} never dissociated: {log:#?}"));
        assert!(
            gone.seq < delete_seq,
            "{domain} dissociated after DeletePackage"
        );
    }
    let calls = env.calls().await;
    assert_eq!(count(&calls, "DissociatePackage"), 3, "{calls:?}");
    assert_eq!(count(&calls, "DeletePackage"), 1, "{calls:?}");
}

// 6: allowListedUsers on a vended package: one UpdatePackageScope per change, in status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_listed_users_update_scope_once_per_change() {
    let env = start("e2e-dom-scope", fast_durations(), &[]).await;
    env.put_object("dom/scope.txt", b"one\n").await;
    let spec = |users: &[&str]| {
        let mut extra = String::from("vending:\n  enabled: true\nallowListedUsers:\n");
        for user in users {
            extra.push_str(&format!("  - \"{user}\"\n"));
        }
        dictionary("vended", "dom/scope.txt", None, &extra)
    };
    let wait_users = |users: &'static [&'static str]| {
        let env = &env;
        async move {
            env.wait_for("vended", "Ready with the allow-list", CONVERGE, |o| {
                o.is_some_and(|o| {
                    is_ready(o)
                        && status_of(o).allow_listed_users.as_deref().is_some_and(|u| {
                            u.iter().map(String::as_str).collect::<BTreeSet<_>>()
                                == users.iter().copied().collect::<BTreeSet<_>>()
                        })
                })
            })
            .await
            .expect("exists")
        }
    };

    env.apply(&spec(&["111122223333"])).await;
    wait_users(&["111122223333"]).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(count(&env.calls().await, "UpdatePackageScope"), 1);

    env.apply(&spec(&["111122223333", "444455556666"])).await;
    wait_users(&["111122223333", "444455556666"]).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(count(&env.calls().await, "UpdatePackageScope"), 2);

    let package = env.sim_package("vended").await.expect("package");
    let listed: BTreeSet<_> = package["details"]["AllowListedUserList"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from(["111122223333", "444455556666"]),
        "{package}"
    );
}

/// A plugin zip the simulator accepts: a descriptor and a jar.
fn plugin_zip() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("plugin-descriptor.properties", options)
        .expect("zip entry");
    zip.write_all(
        b"name=acme-analysis\ndescription=ACME analysis\nversion=1.4.0\nclassname=com.acme.AnalysisPlugin\n",
    )
    .expect("descriptor");
    zip.start_file("acme-analysis.jar", options)
        .expect("zip entry");
    zip.write_all(&[7u8; 64]).expect("jar");
    zip.finish().expect("zip").into_inner()
}

fn package_object(name: &str, package_type: &str, key: &str, extra: &str) -> String {
    let mut yaml = format!(
        "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackage
metadata:
  name: {name}
spec:
  packageType: {package_type}
  source:
    s3BucketName: {bucket}
    s3Key: {key}
",
        bucket = support::BUCKET
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

// A ZIP-PLUGIN whose licence and configuration packages are other objects: it waits until
// they are Ready, then is associated with them as prerequisites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_waits_for_its_prerequisites_and_is_associated_with_them() {
    let mut env = start("e2e-prerequisites", fast_durations(), &[]).await;
    env.put_object("plugins/acme-analysis.zip", &plugin_zip())
        .await;
    env.put_object("licenses/acme.lic", b"licensee: e2e\n")
        .await;
    env.put_object("config/acme.yml", b"tokens: 512\n").await;

    let plugin_domains = format!(
        "domains:\n  - name: {DOMAIN}\n    prerequisites:\n      - acme-license\n      - acme-config\n"
    );
    env.apply(&package_object(
        "acme-plugin",
        "ZIP-PLUGIN",
        "plugins/acme-analysis.zip",
        &format!(
            "engineVersion: OpenSearch_2.19\nconfiguration:\n  licenseRequirement: REQUIRED\n  configurationRequirement: REQUIRED\n  licenseFilepath: config/license.lic\n{plugin_domains}"
        ),
    ))
    .await;
    // The prerequisites do not exist yet: the plugin is imported but not associated.
    env.wait_for(
        "acme-plugin",
        "waiting for its prerequisites",
        CONVERGE,
        |o| {
            o.and_then(|o| condition(o, "Reconciling"))
                .is_some_and(|c| c.reason == "WaitingForPrerequisites")
        },
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(count(&env.calls().await, "AssociatePackage"), 0);

    let on_domain = format!("domains:\n  - name: {DOMAIN}\n");
    env.apply(&package_object(
        "acme-license",
        "PACKAGE-LICENSE",
        "licenses/acme.lic",
        &on_domain,
    ))
    .await;
    env.apply(&package_object(
        "acme-config",
        "PACKAGE-CONFIG",
        "config/acme.yml",
        &on_domain,
    ))
    .await;
    let license = env.wait_ready("acme-license").await;
    let config = env.wait_ready("acme-config").await;
    let plugin = env.wait_ready("acme-plugin").await;
    assert!(
        all_active(&plugin, &[DOMAIN], "v1"),
        "{:?}",
        status_of(&plugin)
    );

    let mut wanted: Vec<String> = [&license, &config]
        .iter()
        .map(|o| status_of(o).package_id.clone().expect("prerequisite id"))
        .collect();
    wanted.sort();
    let plugin_id = status_of(&plugin).package_id.clone().expect("plugin id");
    // What the service recorded for the association, read from the simulator's state.
    let state = env.sim.admin().packages().await.expect("simulator state");
    let association = state["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|scope| scope["associations"].as_array().into_iter().flatten())
        .find(|a| a["PackageID"] == plugin_id.as_str() && a["DomainName"] == DOMAIN)
        .expect("plugin associated with the domain");
    let mut prerequisites: Vec<String> = association["PrerequisitePackageIDList"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    prerequisites.sort();
    assert_eq!(prerequisites, wanted);

    // Every domain is on its package's current version: the lag metric says so.
    let (code, metrics) = env.operator().http_get("/metrics").await.expect("metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.lines().any(|l| l == "ospkg_domains_behind 0"),
        "{metrics}"
    );
}
