//! Scripted one-shot faults ("fail the next call"), the after-effect faults (error, closed
//! connection, held answer) scripted and probabilistic, and how they leave the seeded draw
//! sequence alone.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_opensearch::Client;
use aws_sdk_opensearch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_opensearch::types::PackageType;
use common::*;
use ospkg_sim::{AdminError, FaultConfig, OperationFaults, ScriptedFault, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Code, HTTP status and message of a failed UpdatePackage of `id`.
async fn update(client: &Client, id: &str, key: &str) -> Result<String, (String, u16, String)> {
    match client
        .update_package()
        .package_id(id)
        .package_source(source("pkgs", key))
        .send()
        .await
    {
        Ok(out) => Ok(status(out.package_details().unwrap()).to_string()),
        Err(e) => Err((
            e.code().unwrap_or("<none>").to_string(),
            e.raw_response().map_or(0, |r| r.status().as_u16()),
            e.message().unwrap_or("").to_string(),
        )),
    }
}

#[tokio::test]
async fn scripted_faults_fail_the_next_calls_in_order_without_effect() {
    let sim = sim().await;
    let admin = sim.admin();
    let client = client(&sim);
    let id = available_dictionary(&sim, &client, "scripted").await;
    for fault in [
        ScriptedFault::Throttle,
        ScriptedFault::Internal,
        ScriptedFault::Unavailable,
        ScriptedFault::AccessDenied,
        ScriptedFault::Validation {
            message: "Operation not allowed. Try later.".to_string(),
        },
    ] {
        admin.script_fault("UpdatePackage", fault).await.unwrap();
    }
    assert_eq!(
        admin.faults().await.unwrap().script["UpdatePackage"].len(),
        5
    );

    let mut seen = Vec::new();
    for _ in 0..5 {
        // Other operations are not scripted and go through.
        client.describe_packages().send().await.unwrap();
        seen.push(update(&client, &id, "scripted.txt").await.unwrap_err());
    }
    let codes: Vec<(&str, u16)> = seen.iter().map(|(c, s, _)| (c.as_str(), *s)).collect();
    assert_eq!(
        codes,
        [
            ("ThrottlingException", 400),
            ("InternalException", 500),
            ("ServiceUnavailableException", 503),
            ("AccessDeniedException", 403),
            ("ValidationException", 400),
        ]
    );
    assert_eq!(seen[0].2, "Rate exceeded");
    assert!(seen[3].2.contains("es:UpdatePackage"), "{}", seen[3].2);
    assert_eq!(seen[4].2, "Operation not allowed. Try later.");

    // None of them took effect: still v1, AVAILABLE, no update under way.
    let details = describe(&client, &id).await;
    assert_eq!(
        (status(&details), details.available_package_version()),
        ("AVAILABLE", Some("v1"))
    );
    // The queue is spent: the next update runs.
    assert!(admin.faults().await.unwrap().script.is_empty());
    assert_eq!(
        update(&client, &id, "scripted.txt").await.unwrap(),
        "COPYING"
    );
    let faults: Vec<Option<String>> = admin
        .log()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.operation.as_deref() == Some("UpdatePackage"))
        .map(|e| e.fault)
        .collect();
    assert_eq!(
        faults,
        [
            Some("throttle".to_string()),
            Some("internal".to_string()),
            Some("unavailable".to_string()),
            Some("accessDenied".to_string()),
            Some("validation".to_string()),
            None
        ]
    );
}

#[tokio::test]
async fn script_route_appends_without_replacing_the_configuration() {
    let sim = sim().await;
    let admin = sim.admin();
    let mut base = flaky(9);
    base.fail_associations
        .insert("search".to_string(), "busy".to_string());
    base.read_after_write_lag_ms = 250;
    admin.set_faults(&base).await.unwrap();
    admin
        .script_fault("DeletePackage", ScriptedFault::Throttle)
        .await
        .unwrap();
    // The wire form of the route, as a script would send it.
    let (code, _, body) = raw(
        &format!("{}/_sim/faults/script", sim.endpoint()),
        "POST",
        None,
        r#"{"operation":"DeletePackage","fault":{"kind":"holdAfterEffect","ms":40}}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let answered: FaultConfig = serde_json::from_str(&body).unwrap();
    let shown = admin.faults().await.unwrap();
    assert_eq!(answered, shown);
    assert_eq!(
        shown.script["DeletePackage"],
        [
            ScriptedFault::Throttle,
            ScriptedFault::HoldAfterEffect { ms: 40 }
        ]
    );
    let rest = FaultConfig {
        script: BTreeMap::new(),
        ..shown
    };
    assert_eq!(rest, base);

    // Unknown operations and kinds are refused.
    match admin
        .script_fault("DeletePackages", ScriptedFault::Throttle)
        .await
    {
        Err(AdminError::Status { status, body }) => {
            assert_eq!(status.as_u16(), 400);
            assert!(
                body.contains("unknown operation 'DeletePackages'"),
                "{body}"
            );
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    let (code, _, _) = raw(
        &format!("{}/_sim/faults/script", sim.endpoint()),
        "POST",
        None,
        r#"{"operation":"DeletePackage","fault":{"kind":"explode"}}"#,
    )
    .await;
    assert_eq!(code, 400);
    // PUT replaces the script with the rest.
    admin.set_faults(&FaultConfig::default()).await.unwrap();
    assert!(admin.faults().await.unwrap().script.is_empty());
}

#[tokio::test]
async fn scripted_faults_keep_the_seeded_sequence() {
    let sim = sim().await;
    let admin = sim.admin();
    admin.set_faults(&flaky(42)).await.unwrap();
    let plain = outcomes(&sim, 40).await;
    admin.set_faults(&flaky(42)).await.unwrap();
    admin
        .script_fault("DescribePackages", ScriptedFault::AccessDenied)
        .await
        .unwrap();
    // A scripted fault for another operation is not consumed by DescribePackages.
    admin
        .script_fault("UpdatePackage", ScriptedFault::Internal)
        .await
        .unwrap();
    let scripted = outcomes(&sim, 40).await;
    assert_eq!(scripted[0], "AccessDeniedException");
    // The scripted call still made its draw: every later call faults as without the script.
    assert_eq!(scripted[1..], plain[1..]);
    assert_eq!(
        admin.faults().await.unwrap().script["UpdatePackage"],
        [ScriptedFault::Internal]
    );
}

#[tokio::test]
async fn start_up_script_comes_back_on_reset() {
    let sim =
        sim_with(SimConfig::default().faults(
            FaultConfig::default().scripted("DescribePackages", ScriptedFault::Unavailable),
        ))
        .await;
    assert_eq!(
        outcomes(&sim, 2).await,
        ["ServiceUnavailableException", "ok"]
    );
    sim.admin().reset().await.unwrap();
    assert_eq!(
        outcomes(&sim, 2).await,
        ["ServiceUnavailableException", "ok"]
    );
    // A start-up configuration naming an unknown operation is refused.
    let refused = ospkg_sim::start(
        SimConfig::default()
            .faults(FaultConfig::default().scripted("Describe", ScriptedFault::Throttle)),
    )
    .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn error_after_effect_acts_then_answers_internal_error() {
    let sim = sim().await;
    let admin = sim.admin();
    admin
        .put_object("pkgs", "acted.txt", b"x".to_vec())
        .await
        .unwrap();
    admin
        .script_fault("CreatePackage", ScriptedFault::ErrorAfterEffect)
        .await
        .unwrap();
    let client = client(&sim);
    let create = || {
        client
            .create_package()
            .package_name("acted")
            .package_type(PackageType::TxtDictionary)
            .package_source(source("pkgs", "acted.txt"))
            .send()
    };
    let e = create().await.unwrap_err();
    assert_eq!(e.code(), Some("InternalException"));
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 500);
    // The package was made: the caller's retry finds the name taken.
    let (code, _) = failure(create().await);
    assert_eq!(code, "ResourceAlreadyExistsException");
    let entry = admin
        .log()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.operation.as_deref() == Some("CreatePackage"))
        .unwrap();
    assert_eq!(
        (
            entry.status,
            entry.error_code.as_deref(),
            entry.fault.as_deref()
        ),
        (
            Some(500),
            Some("InternalException"),
            Some("errorAfterEffect")
        )
    );
    assert!(entry.effect, "the create took effect");
    let refused = admin
        .log()
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.operation.as_deref() == Some("CreatePackage"))
        .unwrap();
    assert!(!refused.effect, "the refused retry had no effect");
    let id = entry.package_id.expect("the log names the package made");
    assert_eq!(describe(&client, &id).await.package_name(), Some("acted"));
}

#[tokio::test]
async fn close_after_effect_acts_then_drops_the_connection() {
    let sim = sim().await;
    let admin = sim.admin();
    let client = client(&sim);
    let id = available_dictionary(&sim, &client, "closed").await;
    admin
        .script_fault("UpdatePackage", ScriptedFault::CloseAfterEffect)
        .await
        .unwrap();
    let e = client
        .update_package()
        .package_id(&id)
        .package_source(source("pkgs", "closed.txt"))
        .commit_message("lost answer")
        .send()
        .await
        .unwrap_err();
    // No HTTP response at all: the SDK reports a dispatch failure (hyper: the connection
    // closed before a response came), which its retry policy counts as transient.
    match &e {
        SdkError::DispatchFailure(f) => {
            assert!(format!("{f:?}").contains("IncompleteMessage"), "{f:?}");
            assert!(f.is_other() || f.is_io(), "{f:?}");
        }
        other => panic!("expected a dispatch failure, got {other:?}"),
    }
    // The update took effect.
    assert_eq!(status(&describe(&client, &id).await), "COPYING");
    admin.advance_clock(3000).await.unwrap();
    let history = client
        .get_package_version_history()
        .package_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        history.package_version_history_list()[0].commit_message(),
        Some("lost answer")
    );
    let entry = admin
        .log()
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.operation.as_deref() == Some("UpdatePackage"))
        .unwrap();
    assert_eq!(
        (entry.status, entry.fault.as_deref()),
        (None, Some("closeAfterEffect"))
    );
    // The log says the call took effect, and with which commit message.
    assert!(entry.effect);
    assert_eq!(entry.commit_message.as_deref(), Some("lost answer"));

    // On the wire: the connection ends without a single byte of response.
    admin
        .script_fault("DescribePackages", ScriptedFault::CloseAfterEffect)
        .await
        .unwrap();
    let address = sim.endpoint().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /2021-01-01/packages/describe HTTP/1.1\r\nHost: {address}\r\nAuthorization: {AUTH}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // A reset instead of a clean close is fine too; either way nothing may have been sent.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the simulator closes the connection");
    assert!(
        answer.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&answer)
    );
    // The simulator keeps serving.
    client.describe_packages().send().await.unwrap();
}

#[tokio::test]
async fn hold_after_effect_delays_the_answer_of_one_call() {
    let sim = sim().await;
    let admin = sim.admin();
    admin
        .put_object("pkgs", "late.txt", b"x".to_vec())
        .await
        .unwrap();
    admin
        .script_fault("CreatePackage", ScriptedFault::HoldAfterEffect { ms: 3000 })
        .await
        .unwrap();
    admin
        .script_fault("CreatePackage", ScriptedFault::HoldAfterEffect { ms: 300 })
        .await
        .unwrap();
    let client = client(&sim);
    let create = |name: &'static str| {
        client
            .create_package()
            .package_name(name)
            .package_type(PackageType::TxtDictionary)
            .package_source(source("pkgs", "late.txt"))
            .send()
    };
    // The caller gives up before the answer comes, but the package exists.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), create("late-one"))
            .await
            .is_err()
    );
    let listed = client.describe_packages().send().await.unwrap();
    assert!(
        listed
            .package_details_list()
            .iter()
            .any(|p| p.package_name() == Some("late-one"))
    );
    // The second hold is shorter; the answer arrives after it.
    let started = Instant::now();
    create("late-two").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The script is spent: no hold.
    let started = Instant::now();
    create("late-three").await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
    let held: Vec<Option<String>> = admin
        .log()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.operation.as_deref() == Some("CreatePackage"))
        .map(|e| e.fault)
        .collect();
    assert_eq!(
        held,
        [
            Some("holdAfterEffect".to_string()),
            Some("holdAfterEffect".to_string()),
            None
        ]
    );
}

/// A request that reaches the service after its caller gave up: no answer, and the change
/// happens later all the same.
#[tokio::test]
async fn late_effect_acts_after_the_caller_gave_up() {
    let sim = sim().await;
    let admin = sim.admin();
    let client = client(&sim);
    let id = available_dictionary(&sim, &client, "late").await;
    admin
        .script_fault("UpdatePackage", ScriptedFault::LateEffect { ms: 400 })
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(150), update(&client, &id, "late.txt"))
            .await
            .is_err(),
        "an answer came"
    );
    // The simulated clock stands still: an update that took effect is still COPYING.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        status(&describe(&client, &id).await),
        "AVAILABLE",
        "took effect too early"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        status(&describe(&client, &id).await),
        "COPYING",
        "never took effect"
    );
    let entry = admin
        .log()
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.operation.as_deref() == Some("UpdatePackage"))
        .expect("logged");
    assert_eq!(entry.fault.as_deref(), Some("lateEffect"));
    assert!(entry.effect);
    assert_eq!(entry.status, None);
}

#[tokio::test]
async fn probabilistic_access_denied_and_after_effect_faults() {
    let sim = sim().await;
    let admin = sim.admin();
    let client = client(&sim);
    let id = available_dictionary(&sim, &client, "prob").await;
    let certain = |f: fn(&mut OperationFaults)| {
        let mut faults = OperationFaults::default();
        f(&mut faults);
        faults
    };
    admin
        .set_faults(&FaultConfig {
            operations: BTreeMap::from([
                (
                    "DeletePackage".to_string(),
                    certain(|f| f.access_denied = 1.0),
                ),
                (
                    "UpdatePackage".to_string(),
                    certain(|f| f.error_after_effect = 1.0),
                ),
                (
                    "AssociatePackage".to_string(),
                    certain(|f| f.close_after_effect = 1.0),
                ),
            ]),
            ..Default::default()
        })
        .await
        .unwrap();

    let e = client
        .delete_package()
        .package_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AccessDeniedException"));
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    assert!(e.message().unwrap().contains("es:DeletePackage"));
    assert_eq!(status(&describe(&client, &id).await), "AVAILABLE");

    let (code, status_code, _) = update(&client, &id, "prob.txt").await.unwrap_err();
    assert_eq!((code.as_str(), status_code), ("InternalException", 500));
    assert_eq!(status(&describe(&client, &id).await), "COPYING");
    admin.advance_clock(3000).await.unwrap();

    let e = client
        .associate_package()
        .package_id(&id)
        .domain_name("search")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(e, SdkError::DispatchFailure(_)), "{e:?}");
    // The association was made: it is under way, and once ACTIVE the domain runs v2.
    let associated = client
        .list_packages_for_domain()
        .domain_name("search")
        .send()
        .await
        .unwrap();
    let details = &associated.domain_package_details_list()[0];
    assert_eq!(
        details.domain_package_status().map(|s| s.as_str()),
        Some("ASSOCIATING")
    );
    admin.advance_clock(60_000).await.unwrap();
    let associated = client
        .list_packages_for_domain()
        .domain_name("search")
        .send()
        .await
        .unwrap();
    let details = &associated.domain_package_details_list()[0];
    assert_eq!(
        details.domain_package_status().map(|s| s.as_str()),
        Some("ACTIVE")
    );
    assert_eq!(details.package_version(), Some("v2"));
}
