//! The Flux health check expressions of `examples/flux/kustomizations.yaml`, evaluated the way
//! kustomize-controller evaluates `healthCheckExprs`: `inProgress`, then `failed`, then
//! `current`; the first that is true decides, and none (or an expression that cannot be
//! evaluated, such as one reading a status not written yet) keeps the object in progress. The
//! objects are the operator's own, captured in each state (`tests/fixtures/delivery/`).

use std::path::Path;

use cel::{Context, Program, Value};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/flux/kustomizations.yaml"
);
const FIXTURES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/delivery");

/// The example's expressions for OpenSearchPackage, in Flux's order of evaluation.
fn expressions() -> Vec<(&'static str, String)> {
    let text = std::fs::read_to_string(EXAMPLE).expect("the Flux example");
    let check = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("YAML"))
        .filter_map(|doc| doc["spec"]["healthCheckExprs"].as_sequence().cloned())
        .flatten()
        .find(|check| check["kind"] == "OpenSearchPackage")
        .expect("a health check for OpenSearchPackage");
    assert_eq!(check["apiVersion"], "ospkg.dev/v1alpha1");
    ["inProgress", "failed", "current"]
        .into_iter()
        .map(|name| {
            let expression = check[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} expression"));
            (name, expression.to_owned())
        })
        .collect()
}

/// The object's health as Flux would judge it: `InProgress`, `Failed` or `Current`.
fn health(object: &serde_json::Value) -> &'static str {
    let mut context = Context::default();
    // The expressions see the object's top-level fields as variables; one not there (no
    // status yet) is not bound.
    for (field, value) in object.as_object().expect("an object") {
        context
            .add_variable(field.as_str(), value.clone())
            .expect("a JSON value binds");
    }
    for (name, expression) in expressions() {
        let program = Program::compile(&expression)
            .unwrap_or_else(|e| panic!("{name}: {expression:?} does not compile: {e}"));
        if let Ok(Value::Bool(true)) = program.execute(&context) {
            return match name {
                "inProgress" => "InProgress",
                "failed" => "Failed",
                _ => "Current",
            };
        }
    }
    "InProgress"
}

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(FIXTURES_DIR).join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

use serde::Deserialize as _;

#[test]
fn the_flux_expressions_judge_every_state_of_an_object() {
    let cases = [
        // What kstatus alone calls Current: the operator has not looked yet.
        ("new.yaml", "InProgress"),
        ("copying.yaml", "InProgress"),
        ("rolling-out.yaml", "InProgress"),
        ("generation-behind.yaml", "InProgress"),
        ("ready.yaml", "Current"),
        // Flux's convention: a suspended object is judged by its last state.
        ("suspended.yaml", "Current"),
        ("validation-failed.yaml", "Failed"),
        ("name-conflict.yaml", "Failed"),
        ("association-failed.yaml", "Failed"),
    ];
    let mut failures = Vec::new();
    for (file, expected) in cases {
        let judged = health(&fixture(file));
        if judged != expected {
            failures.push(format!("{file}: {judged}, expected {expected}"));
        }
    }
    let fixtures = std::fs::read_dir(FIXTURES_DIR)
        .expect("fixtures")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension() == Some("yaml".as_ref()))
        })
        .count();
    assert_eq!(fixtures, cases.len(), "a fixture without a case here");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
