//! `hack/build-control-plane.sh` is a fast no-op once the binaries are cached.

use std::process::Command;
use std::time::{Duration, Instant};

use testenv::{BUILD_SCRIPT, Binaries};

#[tokio::test]
async fn build_script_is_a_noop_when_binaries_are_cached() {
    // Builds them if this machine has not yet (minutes); then nothing may be rebuilt.
    let binaries = Binaries::locate().await.unwrap();
    let modified = |path: &std::path::Path| std::fs::metadata(path).unwrap().modified().unwrap();
    let before = modified(&binaries.kube_apiserver);

    let started = Instant::now();
    let output = Command::new("bash").arg(BUILD_SCRIPT).output().unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(!stderr.contains("building"), "rebuilt something: {stderr}");
    assert_eq!(modified(&binaries.kube_apiserver), before);

    // stdout is exactly the env lines, pointing at the binaries the harness uses.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = [
        ("OSPKG_KUBE_APISERVER", &binaries.kube_apiserver),
        (
            "OSPKG_KUBE_CONTROLLER_MANAGER",
            &binaries.kube_controller_manager,
        ),
        ("OSPKG_ETCD", &binaries.etcd),
        ("OSPKG_HELM", &binaries.helm),
        ("OSPKG_HELM_DOCS", &binaries.helm_docs),
        ("OSPKG_KUBECTL", &binaries.kubectl),
        ("OSPKG_PROMTOOL", &binaries.promtool),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stdout}");
    for (var, path) in expected {
        if std::env::var_os(var).is_none() {
            let line = format!("export {var}={}", path.display());
            assert!(
                lines.contains(&line.as_str()),
                "{line} missing from {stdout}"
            );
        }
    }
}

#[tokio::test]
async fn built_binaries_report_the_pinned_versions() {
    let binaries = Binaries::locate().await.unwrap();
    let run = |path: &std::path::Path, arg: &str| {
        let output = Command::new(path).arg(arg).output().unwrap();
        assert!(output.status.success(), "{} {arg}", path.display());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(run(&binaries.kube_apiserver, "--version").starts_with("Kubernetes v1.36."));
    assert!(run(&binaries.kube_controller_manager, "--version").starts_with("Kubernetes v1.36."));
    assert!(run(&binaries.etcd, "--version").contains("etcd Version: 3.6."));
    assert!(run(&binaries.helm, "version").contains("v3.22."));
    assert!(run(&binaries.helm_docs, "--version").contains("1.14.2"));
}
