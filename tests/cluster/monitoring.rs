//! The alerts (the chart's PrometheusRule, also `deploy/prometheus/alerts.yaml`) and the
//! Grafana dashboard (`charts/.../files/grafana/`, also `deploy/grafana/` and the chart's
//! ConfigMap):
//!
//! - `promtool check rules` and `promtool test rules` (cases in
//!   `tests/fixtures/prometheus/alerts_test.yaml`) on the rules the chart renders;
//! - every metric and label the rules and the dashboard query is one a real scrape of the
//!   operator's registry carries (PromQL parsed with `promql-parser`).
//!
//! helm and promtool come from `$OSPKG_HELM`/`$OSPKG_PROMTOOL`, else the env file
//! `hack/build-control-plane.sh` writes, else that script is run (it builds them from Go
//! modules the first time).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ospkg::backend::Operation;
use ospkg::metrics::Metrics;
use promql_parser::label::Matchers;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = "charts/opensearch-package-operator";
const RELEASE: &str = "opensearch-package-operator";
const NAMESPACE: &str = "opensearch-package-operator";
const KUBE_VERSION: &str = "v1.36.0";
const DASHBOARD: &str =
    "charts/opensearch-package-operator/files/grafana/opensearch-package-operator.json";
const ALERT_TESTS: &str = "tests/fixtures/prometheus/alerts_test.yaml";

/// Labels Prometheus adds to every scraped series (the Prometheus Operator's ServiceMonitor
/// and PodMonitor add the Kubernetes ones), so queries may use them on any metric.
const TARGET_LABELS: [&str; 7] = [
    "instance",
    "job",
    "namespace",
    "pod",
    "service",
    "container",
    "endpoint",
];

// ---------------------------------------------------------------------------------------
// tools

/// `var`'s path: the environment, then the build script's env file, then the build script.
fn tool(var: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{var}={} does not exist", path.display());
        return path;
    }
    let env_file = testenv::cache_dir().expect("cache dir").join("bin/env");
    let from = |text: &str| {
        text.lines()
            .map(|line| line.trim().trim_start_matches("export "))
            .filter_map(|line| line.strip_prefix(var)?.strip_prefix('='))
            .map(|value| PathBuf::from(value.trim_matches(|c| c == '"' || c == '\'')))
            .find(|path| path.is_file())
    };
    if let Some(path) = std::fs::read_to_string(&env_file)
        .ok()
        .and_then(|text| from(&text))
    {
        return path;
    }
    let _one_build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "building {var} with {} (minutes the first time)",
        testenv::BUILD_SCRIPT
    );
    let output = Command::new("bash")
        .arg(testenv::BUILD_SCRIPT)
        .output()
        .expect("running the build script");
    assert!(
        output.status.success(),
        "{} failed ({}):\n{}",
        testenv::BUILD_SCRIPT,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    from(&String::from_utf8_lossy(&output.stdout))
        .unwrap_or_else(|| panic!("{} printed no existing {var}", testenv::BUILD_SCRIPT))
}

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| tool("OSPKG_HELM"))
}

fn promtool() -> &'static Path {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL.get_or_init(|| tool("OSPKG_PROMTOOL"))
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn run_helm(args: &[&str]) -> Output {
    let scratch = std::env::temp_dir().join("ospkg-helm-test");
    Command::new(helm())
        .args(args)
        .current_dir(ROOT)
        .env("HELM_CONFIG_HOME", scratch.join("config"))
        .env("HELM_CACHE_HOME", scratch.join("cache"))
        .env("HELM_DATA_HOME", scratch.join("data"))
        .output()
        .expect("running helm")
}

/// The chart rendered with `extra` values.
fn template(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
    args.extend_from_slice(&["--kube-version", KUBE_VERSION]);
    args.extend_from_slice(extra);
    let output = run_helm(&args);
    assert!(output.status.success(), "helm template: {}", text(&output));
    serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&output.stdout))
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).expect("rendered YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some(kind))
        .collect()
}

/// The `spec` of the chart's PrometheusRule: a Prometheus rules file.
fn rendered_rules() -> Value {
    let objects = template(&["--set", "prometheusRule.enabled=true"]);
    let rules = of_kind(&objects, "PrometheusRule");
    assert_eq!(rules.len(), 1, "one PrometheusRule");
    rules[0]["spec"].clone()
}

fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("rules").iter())
        .collect()
}

/// The rendered rules and the unit tests in a directory, as `promtool` wants them.
fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alerts.yaml"),
        serde_yaml::to_string(&rendered_rules()).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        Path::new(ROOT).join(ALERT_TESTS),
        dir.path().join("alerts_test.yaml"),
    )
    .unwrap();
    dir
}

fn run_promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool")
}

// ---------------------------------------------------------------------------------------
// alerts

#[test]
fn helm_lint_is_clean_with_alerts_and_dashboard() {
    let output = run_helm(&[
        "lint",
        "--strict",
        CHART,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "prometheusRule.enabled=true,prometheusRule.alertLabels.team=search",
        "--set",
        "dashboards.enabled=true,dashboards.annotations.grafana_folder=OpenSearch",
    ]);
    let out = text(&output);
    assert!(output.status.success(), "helm lint:\n{out}");
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "helm lint reports problems:\n{out}"
    );
    // The schema guards the new values too.
    for (set, field) in [
        ("prometheusRule.enabled=yes", "enabled"),
        ("prometheusRule.severity=page", "severity"),
        ("dashboards.label=Not A Label", "label"),
        ("dashboards.namespace=Not_A_Namespace", "namespace"),
    ] {
        let output = run_helm(&["template", RELEASE, CHART, "--set", set]);
        let err = text(&output);
        assert!(!output.status.success(), "--set {set} rendered");
        assert!(
            err.contains("schema") && err.contains(field),
            "--set {set}: no schema error naming {field}:\n{err}"
        );
    }
}

#[test]
fn promtool_checks_the_rules_the_chart_renders() {
    let dir = rules_dir();
    let output = run_promtool(dir.path(), &["check", "rules", "--lint=all", "alerts.yaml"]);
    let out = text(&output);
    assert!(output.status.success(), "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
}

#[test]
fn promtool_unit_tests_of_the_alerts_pass() {
    let dir = rules_dir();
    let output = run_promtool(dir.path(), &["test", "rules", "alerts_test.yaml"]);
    assert!(
        output.status.success(),
        "promtool test rules:\n{}",
        text(&output)
    );
}

#[test]
fn promtool_unit_tests_fail_when_an_alert_changes() {
    // The unit tests hold the rules to their thresholds: a Stalled alert after 5 minutes
    // instead of 15 must fail them.
    let dir = rules_dir();
    let path = dir.path().join("alerts.yaml");
    let rules = std::fs::read_to_string(&path).unwrap();
    let changed = rules.replacen("for: 15m", "for: 5m", 1);
    assert_ne!(rules, changed, "the Stalled alert waits 15 minutes");
    std::fs::write(&path, changed).unwrap();
    let output = run_promtool(dir.path(), &["test", "rules", "alerts_test.yaml"]);
    assert!(
        !output.status.success(),
        "promtool test rules passed on a changed alert:\n{}",
        text(&output)
    );
    assert!(text(&output).contains("OpenSearchPackageStalled"));
}

#[test]
fn every_alert_has_cases_that_fire_and_cases_that_do_not() {
    let rules = rendered_rules();
    let names: BTreeSet<String> = alerts(&rules)
        .iter()
        .map(|rule| rule["alert"].as_str().expect("alert name").to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "OpenSearchPackageStalled",
            "OpenSearchPackageDomainsBehind",
            "OpenSearchPackageOperatorAWSAccessDenied",
            "OpenSearchPackageOperatorAWSThrottled",
            "OpenSearchPackageOperatorNoLeader",
            "OpenSearchPackageOperatorAbsent",
        ]
        .map(String::from)
        .into()
    );
    let tests: Value =
        serde_yaml::from_str(&std::fs::read_to_string(Path::new(ROOT).join(ALERT_TESTS)).unwrap())
            .unwrap();
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"].as_sequence().expect("tests") {
        for check in case["alert_rule_test"].as_sequence().expect("checks") {
            let name = check["alertname"].as_str().unwrap().to_owned();
            match check["exp_alerts"].as_sequence() {
                Some(expected) if !expected.is_empty() => fires.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    for name in &names {
        assert!(fires.contains(name), "no case where {name} fires");
        assert!(silent.contains(name), "no case where {name} stays silent");
    }
    for rule in alerts(&rules) {
        let name = rule["alert"].as_str().unwrap();
        for annotation in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][annotation].is_string(),
                "{name} has no {annotation}"
            );
        }
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("warning" | "critical")
            ),
            "{name}: severity"
        );
    }
}

#[test]
fn the_plain_rules_file_holds_the_charts_rules() {
    let path = Path::new(ROOT).join("deploy/prometheus/alerts.yaml");
    let plain: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("deploy/prometheus/alerts.yaml parses");
    assert_eq!(
        plain,
        rendered_rules(),
        "deploy/prometheus/alerts.yaml is stale: run hack/generate.sh"
    );
}

#[test]
fn the_prometheus_rule_is_off_by_default_and_takes_labels() {
    assert!(of_kind(&template(&[]), "PrometheusRule").is_empty());
    let objects = template(&[
        "--set",
        "prometheusRule.enabled=true,prometheusRule.labels.release=prometheus",
        "--set",
        "prometheusRule.alertLabels.team=search,prometheusRule.alertLabels.severity=page",
    ]);
    let rule = of_kind(&objects, "PrometheusRule")[0];
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(rule["metadata"]["namespace"].as_str(), Some(NAMESPACE));
    assert_eq!(
        rule["metadata"]["labels"]["release"].as_str(),
        Some("prometheus")
    );
    for alert in alerts(&rule["spec"]) {
        assert_eq!(alert["labels"]["team"].as_str(), Some("search"));
        assert_eq!(alert["labels"]["severity"].as_str(), Some("page"));
    }
    // The absent check names the release namespace.
    let absent = alerts(&rule["spec"])
        .into_iter()
        .find(|a| a["alert"].as_str() == Some("OpenSearchPackageOperatorAbsent"))
        .unwrap();
    assert_eq!(
        absent["expr"].as_str(),
        Some(format!("absent(ospkg_build_info{{namespace=\"{NAMESPACE}\"}})").as_str())
    );
}

// ---------------------------------------------------------------------------------------
// dashboard

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join(DASHBOARD)).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// The PromQL of every panel target, with Grafana's variables replaced by what they stand for.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |target| {
                    let expr = target["expr"].as_str().expect("a PromQL expr");
                    let expr = expr
                        .replace("$__rate_interval", "5m")
                        .replace("\"$namespace\"", "\".*\"");
                    (title.clone(), expr)
                })
        })
        .collect()
}

#[test]
fn the_dashboard_is_grafana_json_with_the_panels_users_need() {
    let dashboard = dashboard();
    assert_eq!(
        dashboard["uid"].as_str(),
        Some("opensearch-package-operator")
    );
    assert!(dashboard["schemaVersion"].as_i64().unwrap() >= 36);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "{title}: id");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_i64(), "{title}: gridPos.{key}");
        }
        if panel["type"] != "row" {
            // Provisioned by a sidecar, a dashboard cannot ask for a data source on import.
            assert_eq!(
                panel["datasource"]["uid"].as_str(),
                Some("${datasource}"),
                "{title}"
            );
            assert!(!panel["targets"].as_array().unwrap().is_empty(), "{title}");
        }
    }
    let queries = dashboard_queries(&dashboard).into_iter().map(|(_, q)| q);
    let all = queries.collect::<Vec<_>>().join("\n");
    for needed in [
        "ospkg_object_condition{",
        "condition=\"Stalled\"",
        "ospkg_aws_calls_total",
        "ospkg_aws_call_duration_seconds_bucket",
        "outcome!=\"ok\"",
        "ospkg_leader",
        "ospkg_reconciles_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(all.contains(needed), "no panel queries {needed}");
    }
    let tables: Vec<_> = panels(&dashboard)
        .into_iter()
        .filter(|p| p["type"] == "table")
        .collect();
    assert!(
        tables.iter().any(|t| t["targets"][0]["expr"]
            .as_str()
            .unwrap()
            .contains("condition=\"Stalled\"")),
        "a table of stalled objects"
    );
}

#[test]
fn the_chart_ships_the_dashboard_in_a_configmap_for_the_grafana_sidecar() {
    assert!(of_kind(&template(&[]), "ConfigMap").is_empty());
    let objects = template(&[
        "--set",
        "dashboards.enabled=true,dashboards.annotations.grafana_folder=OpenSearch",
    ]);
    let map = of_kind(&objects, "ConfigMap")[0];
    assert_eq!(map["metadata"]["namespace"].as_str(), Some(NAMESPACE));
    assert_eq!(
        map["metadata"]["labels"]["grafana_dashboard"].as_str(),
        Some("1")
    );
    assert_eq!(
        map["metadata"]["annotations"]["grafana_folder"].as_str(),
        Some("OpenSearch")
    );
    let json = map["data"]["opensearch-package-operator.json"]
        .as_str()
        .expect("the dashboard in data");
    let shipped: serde_json::Value = serde_json::from_str(json).expect("JSON in the ConfigMap");
    assert_eq!(shipped, dashboard());
    let copy = std::fs::read_to_string(
        Path::new(ROOT).join("deploy/grafana/opensearch-package-operator.json"),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&copy).unwrap(),
        dashboard(),
        "deploy/grafana/ is stale: run hack/generate.sh"
    );

    // Another sidecar label, another namespace.
    let objects = template(&[
        "--set",
        "dashboards.enabled=true,dashboards.label=dashboards.example.com/grafana",
        "--set",
        "dashboards.labelValue=ops,dashboards.namespace=monitoring",
    ]);
    let map = of_kind(&objects, "ConfigMap")[0];
    assert_eq!(map["metadata"]["namespace"].as_str(), Some("monitoring"));
    assert_eq!(
        map["metadata"]["labels"]["dashboards.example.com/grafana"].as_str(),
        Some("ops")
    );
    assert!(map["metadata"]["labels"]["grafana_dashboard"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_accepts_the_dashboard_configmap() {
    let cp = testenv::ControlPlane::start()
        .await
        .expect("starting the test API server");
    cp.create_namespace(NAMESPACE).await.unwrap();
    let objects = template(&["--set", "dashboards.enabled=true"]);
    let map = serde_yaml::to_string(of_kind(&objects, "ConfigMap")[0]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard.yaml");
    std::fs::write(&path, map).unwrap();
    let out = cp
        .kubectl_ok(&["apply", "--dry-run=server", "-f", path.to_str().unwrap()])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        out.contains("configmap/opensearch-package-operator-dashboard"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// the metrics the queries name

/// Series names of a real scrape of the operator's registry, each with the labels it has.
/// Every family is fed once so that each has samples.
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    let metrics = Metrics::new();
    metrics.set_leader(true);
    metrics.observe_reconcile("success", Duration::from_millis(5));
    metrics.aws_call(Operation::DescribePackages, "ok");
    metrics.aws_call_duration(
        Operation::DescribePackages,
        "123456789012",
        "eu-west-1",
        Duration::from_millis(30),
    );
    metrics.set_package_status("search/synonyms", Some("AVAILABLE"));
    metrics.set_domains_behind("search/synonyms", 1);
    let condition = |type_: &str, status: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: "Reason".into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
    };
    metrics.set_conditions(
        "search",
        "synonyms",
        &[condition("Ready", "False"), condition("Stalled", "True")],
    );

    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics.encode().lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).expect("a sample line");
        let labels = series.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{') {
            let set = &rest[..rest.find('}').expect("closing brace")];
            // Label values here never contain `,` or `=`.
            for pair in set.split(',') {
                let (name, _) = pair.split_once('=').expect("name=value");
                labels.insert(name.to_owned());
            }
        }
    }
    series
}

/// The vector selectors in an expression, and the labels it groups or matches by.
#[derive(Default)]
struct Selectors {
    selectors: Vec<VectorSelector>,
    grouping: Vec<String>,
}

impl ExprVisitor for Selectors {
    type Error = ();

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        match expr {
            Expr::VectorSelector(vs) => self.selectors.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.selectors.push(ms.vs.clone()),
            Expr::Aggregate(agg) => {
                if let Some(modifier) = &agg.modifier {
                    self.grouping
                        .extend(modifier.labels().labels.iter().cloned());
                }
            }
            Expr::Binary(binary) => {
                if let Some(matching) = binary.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                    self.grouping
                        .extend(matching.labels().labels.iter().cloned());
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

fn matcher_names(matchers: &Matchers) -> Vec<String> {
    matchers
        .matchers
        .iter()
        .chain(matchers.or_matchers.iter().flatten())
        .map(|m| m.name.clone())
        .collect()
}

/// Problems with one query: metrics the operator does not export, labels they do not carry.
fn check_query(
    source: &str,
    expr: &str,
    exported: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let parsed = match parser::parse(expr) {
        Ok(parsed) => parsed,
        Err(e) => return vec![format!("{source}: {expr:?} does not parse: {e}")],
    };
    let mut found = Selectors::default();
    walk_expr(&mut found, &parsed).expect("walking the expression");
    let mut problems = Vec::new();
    let mut labels_in_play: BTreeSet<String> = TARGET_LABELS.map(String::from).into();
    for selector in &found.selectors {
        let Some(name) = &selector.name else {
            problems.push(format!(
                "{source}: a selector without a metric name in {expr:?}"
            ));
            continue;
        };
        let Some(labels) = exported.get(name) else {
            problems.push(format!("{source}: {name} is not exported by the operator"));
            continue;
        };
        labels_in_play.extend(labels.iter().cloned());
        for label in matcher_names(&selector.matchers) {
            if !labels.contains(&label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!("{source}: {name} has no label {label}"));
            }
        }
    }
    for label in &found.grouping {
        if !labels_in_play.contains(label) {
            problems.push(format!(
                "{source}: groups or matches by {label}, which none of its metrics has"
            ));
        }
    }
    problems
}

#[test]
fn the_scrape_names_every_family_the_checks_rely_on() {
    let exported = exported();
    for name in [
        "ospkg_object_condition",
        "ospkg_object_domains_behind",
        "ospkg_aws_calls_total",
        "ospkg_aws_call_duration_seconds_bucket",
        "ospkg_build_info",
        "ospkg_leader",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(exported.contains_key(name), "{name} missing: {exported:?}");
    }
    assert!(exported["ospkg_object_condition"].contains("condition"));
    // The check finds what is wrong.
    let problems = check_query(
        "self-test",
        "sum by (region) (rate(ospkg_aws_calls_total{outcome=\"throttled\",status=\"x\"}[5m])) + ospkg_nonexistent",
        &exported,
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn rules_and_dashboard_query_only_what_the_operator_exports() {
    let exported = exported();
    let mut problems = Vec::new();
    let mut checked = 0;
    for rule in alerts(&rendered_rules()) {
        let source = format!("alert {}", rule["alert"].as_str().unwrap());
        problems.extend(check_query(
            &source,
            rule["expr"].as_str().unwrap(),
            &exported,
        ));
        checked += 1;
    }
    let dashboard = dashboard();
    for (title, expr) in dashboard_queries(&dashboard) {
        problems.extend(check_query(&format!("panel {title:?}"), &expr, &exported));
        checked += 1;
    }
    // Template variables: `label_values(metric, label)`.
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(query) = variable["query"]["query"].as_str() else {
            continue;
        };
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected variable query {query}"));
        let (metric, label) = inner.split_once(',').expect("label_values(metric, label)");
        match exported.get(metric.trim()) {
            Some(labels) if labels.contains(label.trim()) => {}
            _ => problems.push(format!("variable: {query} names no exported label")),
        }
        checked += 1;
    }
    assert!(checked > 20, "only {checked} queries found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
