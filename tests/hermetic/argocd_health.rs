//! The Argo CD health script (`deploy/argocd/health.lua`) run by a real Lua 5.1 interpreter
//! on every case of `deploy/argocd/health_test.yaml`, Argo CD's own test layout.
//!
//! The interpreter gets only the base and table libraries: Argo CD runs health scripts in a
//! restricted Lua, so a script that reaches for `string`, `math`, `os` or a string method
//! (`("x"):find(...)`) must fail here, not in a user's cluster.

use std::path::{Path, PathBuf};

use mlua::{Lua, LuaOptions, StdLib};
use serde::Deserialize;

const ARGOCD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/argocd");
const FIXTURES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/delivery");

#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<HealthCase>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthCase {
    health_status: HealthStatus,
    input_path: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct HealthStatus {
    status: String,
    message: String,
}

fn script() -> String {
    let path = Path::new(ARGOCD_DIR).join("health.lua");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn cases() -> Vec<HealthCase> {
    let path = Path::new(ARGOCD_DIR).join("health_test.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let tests: HealthTests =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    tests.tests
}

/// A Lua 5.1 state as restricted as Argo CD's: base functions and `table` only.
fn restricted_lua() -> Lua {
    Lua::new_with(StdLib::TABLE, LuaOptions::default()).expect("creating a Lua state")
}

/// Converts a YAML value to the Lua value Argo CD passes (objects become tables, null nil).
pub(super) fn to_lua(lua: &Lua, value: &serde_yaml::Value) -> mlua::Result<mlua::Value> {
    Ok(match value {
        serde_yaml::Value::Null => mlua::Value::Nil,
        serde_yaml::Value::Bool(b) => mlua::Value::Boolean(*b),
        serde_yaml::Value::Number(n) => {
            mlua::Value::Number(n.as_f64().expect("a YAML number fits an f64"))
        }
        serde_yaml::Value::String(s) => mlua::Value::String(lua.create_string(s)?),
        serde_yaml::Value::Sequence(items) => {
            let table = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
        serde_yaml::Value::Mapping(map) => {
            let table = lua.create_table()?;
            for (key, item) in map {
                let key = key.as_str().expect("object keys are strings");
                table.raw_set(key, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
        serde_yaml::Value::Tagged(tagged) => to_lua(lua, &tagged.value)?,
    })
}

/// Runs the script on one object the way Argo CD does: the object in global `obj`, the
/// result a table with `status` and `message`.
fn health(script: &str, object: &serde_yaml::Value) -> Result<HealthStatus, String> {
    let lua = restricted_lua();
    let obj = to_lua(&lua, object).map_err(|e| e.to_string())?;
    lua.globals().set("obj", obj).map_err(|e| e.to_string())?;
    let result: mlua::Table = lua
        .load(script)
        .set_name("health.lua")
        .eval()
        .map_err(|e| e.to_string())?;
    let field = |name: &str| -> Result<String, String> {
        result
            .get::<Option<String>>(name)
            .map_err(|e| format!("hs.{name}: {e}"))?
            .ok_or_else(|| format!("the script returned no {name}"))
    };
    Ok(HealthStatus {
        status: field("status")?,
        message: field("message")?,
    })
}

fn read_yaml(path: &Path) -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

#[test]
fn every_case_of_health_test_yaml_passes() {
    let script = script();
    let mut failures = Vec::new();
    for case in cases() {
        let input = Path::new(ARGOCD_DIR).join(&case.input_path);
        match health(&script, &read_yaml(&input)) {
            Ok(actual) if actual == case.health_status => {}
            Ok(actual) => failures.push(format!(
                "{}: expected {:?}, got {actual:?}",
                case.input_path, case.health_status
            )),
            Err(e) => failures.push(format!("{}: the script failed: {e}", case.input_path)),
        }
    }
    assert!(failures.is_empty(), "health.lua:\n{}", failures.join("\n"));
}

#[test]
fn health_tests_cover_every_status() {
    let cases = cases();
    assert!(
        cases.len() >= 6,
        "health_test.yaml has only {} cases",
        cases.len()
    );
    for status in ["Healthy", "Progressing", "Degraded", "Suspended"] {
        assert!(
            cases.iter().any(|c| c.health_status.status == status),
            "health_test.yaml has no {status} case"
        );
    }
    for case in &cases {
        assert!(
            !case.health_status.message.is_empty(),
            "{}: every status needs a message",
            case.input_path
        );
    }
}

#[test]
fn every_fixture_has_a_health_case() {
    let covered: Vec<String> = cases()
        .into_iter()
        .map(|c| c.input_path.trim_start_matches("testdata/").to_owned())
        .collect();
    for fixture in yaml_files(Path::new(FIXTURES_DIR)) {
        let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            covered.contains(&name),
            "tests/fixtures/delivery/{name} has no case in deploy/argocd/health_test.yaml"
        );
    }
}

#[test]
fn testdata_is_a_copy_of_the_delivery_fixtures() {
    let testdata = Path::new(ARGOCD_DIR).join("testdata");
    let fixtures = yaml_files(Path::new(FIXTURES_DIR));
    let copies = yaml_files(&testdata);
    let names = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(&fixtures),
        names(&copies),
        "deploy/argocd/testdata/ is stale: run hack/generate.sh"
    );
    for (fixture, copy) in fixtures.iter().zip(&copies) {
        assert_eq!(
            std::fs::read_to_string(fixture).unwrap(),
            std::fs::read_to_string(copy).unwrap(),
            "{} is stale: run hack/generate.sh",
            copy.display()
        );
    }
}

#[test]
fn the_interpreter_is_restricted_like_argo_cd() {
    let lua = restricted_lua();
    for library in ["string", "math", "os", "io"] {
        let loaded: mlua::Value = lua.globals().get(library).unwrap();
        assert!(loaded.is_nil(), "{library} must not be loaded");
    }
    assert!(
        lua.load(r#"return ("abc"):find("b")"#).exec().is_err(),
        "string methods must be unavailable"
    );
    lua.load("local t = {} table.insert(t, 1) for _, v in ipairs(t) do end")
        .exec()
        .expect("base and table functions are available");
}

#[test]
fn script_uses_no_string_or_math_library() {
    let mut offences = Vec::new();
    for (number, line) in script().lines().enumerate() {
        let code = strip_strings(line.split("--").next().unwrap_or(""));
        for library in ["string.", "math.", "os.", "io."] {
            if contains_word(&code, library) {
                offences.push(format!("line {}: uses {library}: {line}", number + 1));
            }
        }
        if code.contains(':') {
            offences.push(format!("line {}: method call: {line}", number + 1));
        }
    }
    assert!(offences.is_empty(), "health.lua:\n{}", offences.join("\n"));
}

/// Whether `needle` occurs in `code` not preceded by an identifier character (so `mystring.`
/// does not count as `string.`).
fn contains_word(code: &str, needle: &str) -> bool {
    code.match_indices(needle).any(|(i, _)| {
        !code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The line with the contents of double- and single-quoted strings removed.
pub(super) fn strip_strings(line: &str) -> String {
    let mut out = String::new();
    let mut quote = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}
