//! The Argo CD resource actions (`deploy/argocd/actions/`: `discovery.lua`, and `reconcile`,
//! `suspend`, `resume`) run by a real Lua 5.1 interpreter on every case of
//! `deploy/argocd/actions/action_test.yaml`, Argo CD's own test layout, and the `argocd-cm`
//! snippet that ships them.
//!
//! The interpreter gets what Argo CD gives action scripts (its `util/lua`): the base, `table`
//! and `package` libraries, and an `os` module with only `time` and `date`, reached through
//! `require("os")` (there is no global `os`). No `string`, `math` or `io`.

use std::collections::BTreeSet;
use std::path::Path;

use mlua::{Lua, LuaOptions, StdLib};
use serde::Deserialize;
use serde_yaml::Value;

use super::argocd_health::{strip_strings, to_lua};

const ACTIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/argocd/actions");
const ARGOCD_CM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/argocd/argocd-cm.yaml"
);
const ACTIONS: [&str; 3] = ["reconcile", "suspend", "resume"];
const RECONCILE_ANNOTATION: &str = "ospkg.dev/reconcile-requested-at";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionTests {
    discovery_tests: Vec<DiscoveryCase>,
    action_tests: Vec<ActionCase>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiscoveryCase {
    input_path: String,
    result: Vec<Offered>,
}

/// An action as discovery offers it (Argo CD's `ResourceAction`).
#[derive(Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
#[serde(rename_all = "camelCase")]
struct Offered {
    name: String,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    icon_class: String,
    #[serde(default)]
    display_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionCase {
    action: String,
    input_path: String,
    expected_output_path: String,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn read_yaml(relative: &str) -> Value {
    let path = Path::new(ACTIONS_DIR).join(relative);
    serde_yaml::from_str(&read(&path)).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn tests() -> ActionTests {
    let path = Path::new(ACTIONS_DIR).join("action_test.yaml");
    serde_yaml::from_str(&read(&path)).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn discovery_script() -> String {
    read(&Path::new(ACTIONS_DIR).join("discovery.lua"))
}

fn action_script(action: &str) -> String {
    read(&Path::new(ACTIONS_DIR).join(action).join("action.lua"))
}

/// A Lua 5.1 state with what Argo CD gives action scripts.
fn action_lua() -> Lua {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::PACKAGE | StdLib::OS,
        LuaOptions::default(),
    )
    .expect("creating a Lua state");
    lua.load(
        r#"
        local time, date = os.time, os.date
        os = nil
        package.loaded.os = nil
        package.preload.os = function() return { time = time, date = date } end
        "#,
    )
    .set_name("sandbox")
    .exec()
    .expect("restricting os");
    lua
}

/// A Lua value as Argo CD reads it back (gopher-json): tables with keys 1..n are arrays,
/// numbers that are whole are integers.
fn from_lua(value: &mlua::Value) -> Value {
    match value {
        mlua::Value::Nil => Value::Null,
        mlua::Value::Boolean(b) => Value::Bool(*b),
        mlua::Value::Integer(i) => Value::Number((*i).into()),
        mlua::Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            Value::Number((*n as i64).into())
        }
        mlua::Value::Number(n) => Value::Number((*n).into()),
        mlua::Value::String(s) => Value::String(s.to_str().expect("UTF-8").to_string()),
        mlua::Value::Table(table) => {
            let len = table.raw_len();
            let pairs: Vec<(mlua::Value, mlua::Value)> = table
                .pairs()
                .map(|pair| pair.expect("a table entry"))
                .collect();
            if len > 0 && pairs.len() == len {
                Value::Sequence(
                    (1..=len)
                        .map(|i| from_lua(&table.raw_get(i).expect("an array item")))
                        .collect(),
                )
            } else {
                let mut map = serde_yaml::Mapping::new();
                for (key, item) in &pairs {
                    let key = key.as_string().expect("object keys are strings");
                    map.insert(
                        Value::String(key.to_str().expect("UTF-8").to_string()),
                        from_lua(item),
                    );
                }
                Value::Mapping(map)
            }
        }
        other => panic!("a script returned a {}", other.type_name()),
    }
}

/// Runs `script` on `object` the way Argo CD does: the object in global `obj`.
fn run(script: &str, name: &str, object: &Value) -> Result<Value, String> {
    let lua = action_lua();
    let obj = to_lua(&lua, object).map_err(|e| e.to_string())?;
    lua.globals().set("obj", obj).map_err(|e| e.to_string())?;
    let result: mlua::Value = lua
        .load(script)
        .set_name(name)
        .eval()
        .map_err(|e| e.to_string())?;
    Ok(from_lua(&result))
}

fn discover(object: &Value) -> Result<BTreeSet<Offered>, String> {
    let result = run(&discovery_script(), "discovery.lua", object)?;
    let map = result.as_mapping().ok_or("discovery returned no table")?;
    let mut offered = BTreeSet::new();
    for (name, action) in map {
        let mut action = action.clone();
        if let Value::Mapping(fields) = &mut action {
            fields.insert("name".into(), name.clone());
        }
        offered.insert(serde_yaml::from_value(action).map_err(|e| e.to_string())?);
    }
    Ok(offered)
}

#[test]
fn every_discovery_case_offers_exactly_the_expected_actions() {
    let mut failures = Vec::new();
    for case in tests().discovery_tests {
        let expected: BTreeSet<Offered> = case.result.into_iter().collect();
        match discover(&read_yaml(&case.input_path)) {
            Ok(actual) if actual == expected => {}
            Ok(actual) => failures.push(format!(
                "{}: expected {expected:?}, got {actual:?}",
                case.input_path
            )),
            Err(e) => failures.push(format!("{}: discovery failed: {e}", case.input_path)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_action_case_produces_the_expected_object() {
    let mut failures = Vec::new();
    for case in tests().action_tests {
        let input = read_yaml(&case.input_path);
        let expected = read_yaml(&case.expected_output_path);
        let before = jiff::Timestamp::now();
        let result = run(&action_script(&case.action), &case.action, &input);
        let after = jiff::Timestamp::now();
        let mut actual = match result {
            Ok(actual) => actual,
            Err(e) => {
                failures.push(format!("{} {}: failed: {e}", case.action, case.input_path));
                continue;
            }
        };
        if case.action == "reconcile" {
            // The value is the time the action ran, to the second, in UTC.
            let written = actual["metadata"]["annotations"][RECONCILE_ANNOTATION]
                .as_str()
                .expect("the reconcile annotation is set")
                .to_owned();
            let at: jiff::Timestamp = written.parse().unwrap_or_else(|e| {
                panic!("{RECONCILE_ANNOTATION}: {written:?} is not a timestamp: {e}")
            });
            assert!(written.ends_with('Z') && written.len() == 20, "{written}");
            let second = jiff::SignedDuration::from_secs(1);
            assert!(
                at >= before.checked_sub(second).unwrap() && at <= after,
                "{written} is not the time the action ran ({before} … {after})"
            );
            assert_ne!(
                Some(written.as_str()),
                input["metadata"]["annotations"][RECONCILE_ANNOTATION].as_str(),
                "the request must get a new value"
            );
            let placeholder = expected["metadata"]["annotations"][RECONCILE_ANNOTATION].clone();
            actual["metadata"]["annotations"][RECONCILE_ANNOTATION] = placeholder;
        }
        if actual != expected {
            failures.push(format!(
                "{} {}: expected\n{}got\n{}",
                case.action,
                case.input_path,
                serde_yaml::to_string(&expected).unwrap(),
                serde_yaml::to_string(&actual).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_action_is_discovered_and_tested() {
    let tests = tests();
    for action in ACTIONS {
        assert!(
            Path::new(ACTIONS_DIR)
                .join(action)
                .join("action.lua")
                .is_file(),
            "no {action}/action.lua"
        );
        assert!(
            tests.action_tests.iter().any(|case| case.action == action),
            "action_test.yaml has no case for {action}"
        );
        for case in &tests.discovery_tests {
            assert!(
                case.result.iter().any(|offered| offered.name == action),
                "{}: {action} is not in the expected result",
                case.input_path
            );
        }
    }
    // Each action is on offer in one case and held back in another.
    for action in ACTIONS {
        let states: BTreeSet<bool> = tests
            .discovery_tests
            .iter()
            .flat_map(|case| case.result.iter())
            .filter(|offered| offered.name == action)
            .map(|offered| offered.disabled)
            .collect();
        assert_eq!(states.len(), 2, "{action} is never or always disabled");
    }
}

#[test]
fn the_interpreter_gives_what_argo_cd_gives_actions() {
    let lua = action_lua();
    for library in ["string", "math", "io", "os", "debug"] {
        let loaded: mlua::Value = lua.globals().get(library).unwrap();
        assert!(loaded.is_nil(), "{library} must not be a global");
    }
    let names: Vec<String> = lua
        .load(
            r#"
            local os = require("os")
            local names = {}
            for name, _ in pairs(os) do table.insert(names, name) end
            table.sort(names)
            return names
            "#,
        )
        .eval()
        .expect("require(\"os\") works");
    assert_eq!(names, ["date", "time"]);
    let date: String = lua
        .load(r#"return require("os").date("!%Y-%m-%dT%H:%M:%SZ", 0)"#)
        .eval()
        .unwrap();
    assert_eq!(date, "1970-01-01T00:00:00Z");
    assert!(
        lua.load(r#"return require("os").execute("true")"#)
            .exec()
            .is_err(),
        "os.execute must be unavailable"
    );
    assert!(lua.load(r#"return ("abc"):len()"#).exec().is_err());
}

#[test]
fn scripts_use_only_what_argo_cd_gives_them() {
    let mut scripts = vec![("discovery.lua".to_owned(), discovery_script())];
    for action in ACTIONS {
        scripts.push((format!("{action}/action.lua"), action_script(action)));
    }
    let mut offences = Vec::new();
    for (name, script) in &scripts {
        let requires_os = script.contains("local os = require(\"os\")");
        for (number, line) in script.lines().enumerate() {
            let code = strip_strings(line.split("--").next().unwrap_or(""));
            for library in ["string.", "math.", "io.", "debug."] {
                if code.contains(library) {
                    offences.push(format!("{name}:{}: uses {library}", number + 1));
                }
            }
            if code.contains("os.") && !requires_os {
                offences.push(format!(
                    "{name}:{}: uses os without local os = require(\"os\")",
                    number + 1
                ));
            }
            if code.contains(':') {
                offences.push(format!("{name}:{}: method call: {line}", number + 1));
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn the_argocd_cm_snippet_ships_the_health_check_and_the_actions() {
    let cm: Value = serde_yaml::from_str(&read(Path::new(ARGOCD_CM))).expect("argocd-cm parses");
    let data = &cm["data"];
    let health = data["resource.customizations.health.ospkg.dev_OpenSearchPackage"]
        .as_str()
        .expect("the health check");
    assert_eq!(
        health,
        read(&Path::new(ACTIONS_DIR).join("../health.lua")),
        "examples/argocd/argocd-cm.yaml is stale: run hack/generate.sh"
    );
    let actions = data["resource.customizations.actions.ospkg.dev_OpenSearchPackage"]
        .as_str()
        .expect("the actions");
    let actions: Value = serde_yaml::from_str(actions).expect("the actions are YAML");
    assert_eq!(
        actions["discovery.lua"].as_str(),
        Some(discovery_script().as_str()),
        "examples/argocd/argocd-cm.yaml is stale: run hack/generate.sh"
    );
    let definitions = actions["definitions"].as_sequence().expect("definitions");
    let names: Vec<&str> = definitions
        .iter()
        .map(|d| d["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ACTIONS);
    for definition in definitions {
        let name = definition["name"].as_str().unwrap();
        assert_eq!(
            definition["action.lua"].as_str(),
            Some(action_script(name).as_str()),
            "{name}: examples/argocd/argocd-cm.yaml is stale: run hack/generate.sh"
        );
    }
}
