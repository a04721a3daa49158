use super::*;

fn scope(region: &str) -> Scope {
    Scope {
        account: "123456789012".to_string(),
        region: region.to_string(),
    }
}

fn config(seed: u64) -> FaultConfig {
    FaultConfig {
        seed,
        operations: BTreeMap::from([(
            "*".to_string(),
            OperationFaults {
                throttle: 0.2,
                internal: 0.2,
                unavailable: 0.1,
                ..Default::default()
            },
        )]),
        ..Default::default()
    }
}

fn run(seed: u64) -> Vec<Verdict> {
    let mut injector = FaultInjector::new(config(seed));
    (0..200)
        .map(|_| {
            injector
                .decide("DescribePackages", Some(&scope("us-east-1")))
                .verdict
        })
        .collect()
}

#[test]
fn same_seed_same_faults() {
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    let faults = run(7).iter().filter(|v| **v != Verdict::Proceed).count();
    assert!((60..140).contains(&faults), "{faults}");
}

#[test]
fn bucket_allows_burst_then_limits() {
    let mut injector = FaultInjector::new(FaultConfig {
        rate_limit: Some(RateLimit {
            per_second: 0.001,
            burst: 3,
        }),
        ..Default::default()
    });
    let verdicts: Vec<_> = (0..5)
        .map(|_| {
            injector
                .decide("DescribePackages", Some(&scope("us-east-1")))
                .verdict
        })
        .collect();
    assert_eq!(
        &verdicts[..3],
        &[Verdict::Proceed, Verdict::Proceed, Verdict::Proceed]
    );
    assert_eq!(
        &verdicts[3..],
        &[Verdict::RateLimited, Verdict::RateLimited]
    );
}

#[test]
fn each_account_and_region_has_its_own_bucket() {
    let mut injector = FaultInjector::new(FaultConfig {
        rate_limit: Some(RateLimit {
            per_second: 0.001,
            burst: 2,
        }),
        ..Default::default()
    });
    let other_account = Scope {
        account: "111122223333".to_string(),
        region: "us-east-1".to_string(),
    };
    let mut decide = |scope: &Scope| injector.decide("DescribePackages", Some(scope)).verdict;
    // us-east-1 spends its burst of two ...
    assert_eq!(decide(&scope("us-east-1")), Verdict::Proceed);
    assert_eq!(decide(&scope("us-east-1")), Verdict::Proceed);
    assert_eq!(decide(&scope("us-east-1")), Verdict::RateLimited);
    // ... which leaves eu-west-1's and another account's in us-east-1 full.
    assert_eq!(decide(&scope("eu-west-1")), Verdict::Proceed);
    assert_eq!(decide(&other_account), Verdict::Proceed);
    assert_eq!(decide(&other_account), Verdict::Proceed);
    assert_eq!(decide(&other_account), Verdict::RateLimited);
    assert_eq!(decide(&scope("eu-west-1")), Verdict::Proceed);
    assert_eq!(decide(&scope("eu-west-1")), Verdict::RateLimited);
    assert_eq!(decide(&scope("us-east-1")), Verdict::RateLimited);
}

#[test]
fn buckets_refill_at_the_rate_per_scope() {
    let mut injector = FaultInjector::new(FaultConfig {
        rate_limit: Some(RateLimit {
            per_second: 50.0,
            burst: 1,
        }),
        ..Default::default()
    });
    let a = scope("us-east-1");
    let b = scope("us-west-2");
    assert_eq!(
        injector.decide("DescribePackages", Some(&a)).verdict,
        Verdict::Proceed
    );
    assert_eq!(
        injector.decide("DescribePackages", Some(&a)).verdict,
        Verdict::RateLimited
    );
    // One token comes back after 1/50 s; b's first request never waited for a's.
    std::thread::sleep(std::time::Duration::from_millis(40));
    assert_eq!(
        injector.decide("DescribePackages", Some(&a)).verdict,
        Verdict::Proceed
    );
    assert_eq!(
        injector.decide("DescribePackages", Some(&b)).verdict,
        Verdict::Proceed
    );
    assert_eq!(
        injector.decide("DescribePackages", Some(&b)).verdict,
        Verdict::RateLimited
    );
}

#[test]
fn script_is_consumed_in_order_and_keeps_the_draw_sequence() {
    let plain = run(7);
    let mut injector = FaultInjector::new(
        config(7)
            .scripted("DescribePackages", ScriptedFault::AccessDenied)
            .scripted("DescribePackages", ScriptedFault::HoldAfterEffect { ms: 5 })
            .scripted("UpdatePackage", ScriptedFault::Internal),
    );
    let first = injector.decide("DescribePackages", Some(&scope("us-east-1")));
    assert_eq!(first.verdict, Verdict::AccessDenied);
    let second = injector.decide("DescribePackages", Some(&scope("us-east-1")));
    assert_eq!(
        (second.verdict, second.hold_response_ms),
        (Verdict::Proceed, 5)
    );
    // The queue of DescribePackages is spent; UpdatePackage's is untouched.
    assert_eq!(
        injector.config().script.keys().collect::<Vec<_>>(),
        ["UpdatePackage"]
    );
    let rest: Vec<Verdict> = (2..200)
        .map(|_| {
            injector
                .decide("DescribePackages", Some(&scope("us-east-1")))
                .verdict
        })
        .collect();
    assert_eq!(rest, plain[2..]);
}

#[test]
fn unauthenticated_calls_leave_the_script_alone() {
    let mut injector = FaultInjector::new(
        FaultConfig::default().scripted("DeletePackage", ScriptedFault::Throttle),
    );
    assert_eq!(
        injector.decide("DeletePackage", None).verdict,
        Verdict::Proceed
    );
    assert_eq!(
        injector
            .decide("DeletePackage", Some(&scope("us-east-1")))
            .verdict,
        Verdict::Throttle
    );
    assert_eq!(
        injector
            .decide("DeletePackage", Some(&scope("us-east-1")))
            .verdict,
        Verdict::Proceed
    );
}

#[test]
fn probabilities_are_checked_in_the_documented_order() {
    let only = |f: OperationFaults| {
        let mut injector = FaultInjector::new(FaultConfig {
            operations: BTreeMap::from([("*".to_string(), f)]),
            ..Default::default()
        });
        injector
            .decide("DeletePackage", Some(&scope("us-east-1")))
            .verdict
    };
    let certain = |name: &str| {
        let mut f = OperationFaults::default();
        match name {
            "accessDenied" => f.access_denied = 1.0,
            "errorAfterEffect" => f.error_after_effect = 1.0,
            _ => f.close_after_effect = 1.0,
        }
        f
    };
    assert_eq!(only(certain("accessDenied")), Verdict::AccessDenied);
    assert_eq!(only(certain("errorAfterEffect")), Verdict::ErrorAfterEffect);
    assert_eq!(only(certain("closeAfterEffect")), Verdict::CloseAfterEffect);
    // Earlier kinds win on the same draw.
    assert_eq!(
        only(OperationFaults {
            throttle: 1.0,
            close_after_effect: 1.0,
            ..Default::default()
        }),
        Verdict::Throttle
    );
}

#[test]
fn config_check_names_unknown_operations_and_bad_probabilities() {
    let bad_op = FaultConfig::default().scripted("UpdatePackages", ScriptedFault::Throttle);
    assert!(bad_op.check().unwrap_err().contains("UpdatePackages"));
    let bad_p = FaultConfig {
        operations: BTreeMap::from([(
            "*".to_string(),
            OperationFaults {
                access_denied: 1.5,
                ..Default::default()
            },
        )]),
        ..Default::default()
    };
    assert!(bad_p.check().unwrap_err().contains("accessDenied"));
    assert!(config(1).check().is_ok());
}

#[test]
fn scripted_faults_have_tagged_json() {
    let faults: Vec<ScriptedFault> = serde_json::from_str(
        r#"[{"kind":"throttle"},{"kind":"validation","message":"no"},{"kind":"holdAfterEffect","ms":20},{"kind":"closeAfterEffect"},{"kind":"accessDenied"},{"kind":"errorAfterEffect"}]"#,
    )
    .unwrap();
    assert_eq!(
        faults,
        [
            ScriptedFault::Throttle,
            ScriptedFault::Validation {
                message: "no".into()
            },
            ScriptedFault::HoldAfterEffect { ms: 20 },
            ScriptedFault::CloseAfterEffect,
            ScriptedFault::AccessDenied,
            ScriptedFault::ErrorAfterEffect,
        ]
    );
    let config: FaultConfig = serde_json::from_str(
        r#"{"script":{"UpdatePackage":[{"kind":"internal"}]},"readAfterWriteLagMs":5,"failDissociations":{"d":"m"},"failDeletes":{"p":"m"}}"#,
    )
    .unwrap();
    assert_eq!(config.script["UpdatePackage"], [ScriptedFault::Internal]);
    assert_eq!(config.read_after_write_lag_ms, 5);
}
