//! The binary's command line, run as a child process.

use std::process::{Command, Output};

fn operator(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opensearch-package-operator"));
    command.args(args);
    // The developer's own settings must not leak into what is being tested.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OSPKG_") {
            command.env_remove(&name);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

fn output(command: &mut Command) -> Output {
    command.output().expect("the operator binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn crd_prints_the_custom_resource_definition() {
    let out = output(&mut operator(&["crd"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = stdout(&out);
    assert!(yaml.contains("kind: CustomResourceDefinition"), "{yaml}");
    assert!(yaml.contains("OpenSearchPackage"), "{yaml}");
}

#[test]
fn version_prints_the_package_version() {
    let out = output(&mut operator(&["version"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "opensearch-package-operator {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

#[test]
fn run_help_lists_every_flag_and_variable() {
    let out = output(&mut operator(&["run", "--help"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for (flag, var) in [
        ("--region", "OSPKG_REGION"),
        ("--namespaces", "OSPKG_NAMESPACES"),
        ("--label-selector", "OSPKG_LABEL_SELECTOR"),
        ("--resync-interval", "OSPKG_RESYNC_INTERVAL"),
        ("--concurrency", "OSPKG_CONCURRENCY"),
        ("--metrics-addr", "OSPKG_METRICS_ADDR"),
        ("--log-level", "OSPKG_LOG_LEVEL"),
        ("--log-format", "OSPKG_LOG_FORMAT"),
        ("--aws-rate-limit", "OSPKG_AWS_RATE_LIMIT"),
        ("--aws-attempt-timeout", "OSPKG_AWS_ATTEMPT_TIMEOUT"),
        ("--aws-operation-timeout", "OSPKG_AWS_OPERATION_TIMEOUT"),
        ("--leader-election", "OSPKG_LEADER_ELECTION"),
        (
            "--leader-election-lease-name",
            "OSPKG_LEADER_ELECTION_LEASE_NAME",
        ),
        (
            "--leader-election-namespace",
            "OSPKG_LEADER_ELECTION_NAMESPACE",
        ),
        (
            "--leader-election-lease-duration",
            "OSPKG_LEADER_ELECTION_LEASE_DURATION",
        ),
        (
            "--leader-election-renew-deadline",
            "OSPKG_LEADER_ELECTION_RENEW_DEADLINE",
        ),
        (
            "--leader-election-retry-period",
            "OSPKG_LEADER_ELECTION_RETRY_PERIOD",
        ),
        ("--shutdown-grace-period", "OSPKG_SHUTDOWN_GRACE_PERIOD"),
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
        assert!(
            help.contains(&format!("env: {var}")),
            "{var} missing from\n{help}"
        );
    }
}

#[test]
fn bad_log_format_names_the_flag() {
    let out = output(&mut operator(&["run", "--log-format", "xml"]));
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains("--log-format"), "{message}");
    assert!(message.contains("xml"), "{message}");
}

#[test]
fn bad_environment_value_names_the_flag() {
    // Parsing fails before anything starts, which proves the variable is read.
    let out = output(operator(&["run"]).env("OSPKG_CONCURRENCY", "0"));
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains("--concurrency"), "{message}");
}

#[test]
fn missing_subcommand_is_an_error() {
    let out = output(&mut operator(&[]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Usage"), "{}", stderr(&out));
}

#[test]
fn a_piped_text_log_has_no_colour_codes() {
    // A kubeconfig for a server that is not there: the operator starts, logs, and retries.
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: 'https://127.0.0.1:9', insecure-skip-tls-verify: true}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
",
    )
    .expect("kubeconfig");
    let mut child = operator(&[
        "run",
        "--region=us-east-1",
        "--leader-election=false",
        "--metrics-addr=127.0.0.1:0",
    ])
    .env("KUBECONFIG", &kubeconfig)
    .env_remove("NO_COLOR")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("the operator starts");
    std::thread::sleep(std::time::Duration::from_secs(3));
    child.kill().expect("kill");
    let out = child.wait_with_output().expect("output");
    let log = stdout(&out);
    assert!(log.contains("serving /metrics"), "{log}\n{}", stderr(&out));
    assert!(
        !log.contains('\u{1b}'),
        "ANSI codes in a piped log:\n{log:?}"
    );
}

#[test]
fn no_ca_bundle_is_a_clear_error_not_a_panic() {
    let out = output(
        operator(&["run", "--region=us-east-1", "--leader-election=false"])
            .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
            .env("SSL_CERT_DIR", "/nonexistent"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no CA certificates found"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
