//! A short run of the benchmark (`hack/bench.sh`, the `ospkg-bench` crate) with the debug
//! operator binary and the simulator in-process: 6 objects over 2 regions, 5-second resync,
//! every phase. It checks that the figures the benchmark reports are those of what happened
//! (one CreatePackage per object, an UpdatePackage found for every edit, import → Ready for
//! every object, the JSON written is the report), not the operator's performance.

use std::path::Path;

use clap::Parser;
use ospkg_bench::{Options, Report};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const OPERATOR_BIN: &str = env!("CARGO_BIN_EXE_opensearch-package-operator");

#[tokio::test]
async fn benchmark_smoke_run_reports_what_happened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let options = Options::try_parse_from([
        "ospkg-bench",
        "--objects=6",
        "--regions=2",
        "--rate=20",
        "--resync=5s",
        "--steady-windows=1",
        "--changes=2",
        "--change-interval=100ms",
        "--ready-timeout=90s",
        &format!("--operator-bin={OPERATOR_BIN}"),
        &format!("--repo={REPO}"),
        &format!("--json={}", json.display()),
        &format!("--work-dir={}", dir.path().join("logs").display()),
    ])
    .expect("the documented flags parse");
    let report = match ospkg_bench::run(&options).await {
        Ok(report) => report,
        Err(e) => panic!(
            "benchmark failed: {e:#}\n--- operator log ---\n{}",
            log_tail(&dir.path().join("logs/operator.log"))
        ),
    };
    eprintln!("{}", report.to_markdown());

    // The chart's arguments, with the benchmark's rate and resync.
    let args = &report.operator.args;
    for expected in [
        "run",
        "--aws-rate-limit=20",
        "--resync-interval=5s",
        "--leader-election=true",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    // And the chart's environment: one malloc arena.
    assert_eq!(
        report.operator.env,
        ["MALLOC_ARENA_MAX=1"],
        "{:?}",
        report.operator.env
    );
    assert!(report.settings.leader_election);
    assert!(!report.operator.commit.is_empty());
    assert!(report.startup.readyz_ms > 0.0 && report.startup.leader_ms >= report.startup.readyz_ms);

    let create = &report.create;
    // A burst of 20 per region is more than these objects need, so nothing is throttled and
    // every object costs exactly one CreatePackage request.
    assert_eq!(create.throttled, 0, "{create:?}");
    assert_eq!(create.calls.get("CreatePackage"), Some(&6), "{create:?}");
    assert_eq!(create.total_calls, create.calls.values().sum::<u64>());
    assert_eq!(create.calls_per_object, create.total_calls as f64 / 6.0);
    // 3 objects per region at 20/s plus one 500 ms import.
    assert_eq!(create.lower_bound_ms, 3.0 / 20.0 * 1000.0 + 500.0);
    // Nothing can be Ready before its import (300 ms copy + 200 ms validation) ended.
    assert!(create.all_ready_ms > 500.0, "{create:?}");
    assert_eq!(create.import_end_to_ready.count, 6, "{create:?}");
    assert_eq!(create.created_to_create_package.count, 6, "{create:?}");

    let steady = report.steady.as_ref().expect("steady phase ran");
    assert_eq!(steady.windows, 1);
    // 3 own + 2 AWS packages: one page per listing.
    assert_eq!(steady.pages_per_region_listing, 1);
    assert!(steady.cpu_seconds >= 0.0 && steady.cpu_percent_of_core < 100.0);

    let changes = report.changes.as_ref().expect("change phase ran");
    assert_eq!(changes.edited, 2);
    assert_eq!((changes.without_update, changes.not_ready), (0, 0));
    assert_eq!(changes.change_to_update.count, 2);
    assert!(changes.change_to_ready.median_ms >= changes.change_to_update.median_ms);

    assert!(report.memory.peak_rss_mib >= report.memory.rss_mib && report.memory.rss_mib > 1.0);
    // The two parts of RSS add up to it (procfs rounds each to a KiB).
    let parts = report.memory.anon_mib + report.memory.file_mib;
    assert!(report.memory.anon_mib > 1.0 && report.memory.file_mib > 1.0);
    assert!(
        (parts - report.memory.rss_mib).abs() < 1.0,
        "{:?}",
        report.memory
    );
    let restart = report.restart.as_ref().expect("restart phase ran");
    assert!(restart.startup.readyz_ms > 0.0);
    assert_eq!(
        restart.total_calls_first_resync,
        restart.calls_first_resync.values().sum::<u64>()
    );

    let text = std::fs::read_to_string(&json).expect("JSON written");
    let written: Report = serde_json::from_str(&text).expect("the JSON is a Report");
    assert_eq!(written.create.calls, report.create.calls);
    assert_eq!(
        text,
        serde_json::to_string_pretty(&report).expect("serializes") + "\n"
    );
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
