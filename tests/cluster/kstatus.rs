//! The package's status judged by kstatus itself (`sigs.k8s.io/cli-utils/pkg/kstatus/status`),
//! the library Flux's `wait`/`healthChecks` and other GitOps tools use: Current when Ready,
//! InProgress while an update is under way, Failed when Stalled.
//!
//! `hack/kstatus` is a few lines of Go around `status.Compute`. It is built with the `go` on
//! PATH (or `$OSPKG_GO`) and cached under `${OSPKG_CACHE:-$HOME/.cache/ospkg}/kstatus/`, keyed
//! by the digest of its sources, so it is built once per change.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SOURCES: [&str; 3] = ["go.mod", "go.sum", "main.go"];

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OSPKG_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("neither OSPKG_CACHE nor HOME is set");
    Path::new(&home).join(".cache/ospkg")
}

/// The kstatus binary, built on first use.
fn kstatus() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_kstatus)
}

fn build_kstatus() -> PathBuf {
    let module = Path::new(ROOT).join("hack/kstatus");
    let mut digest = Sha256::new();
    for file in SOURCES {
        let path = module.join(file);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        digest.update(file.as_bytes());
        digest.update(&bytes);
    }
    let key = hex::encode(&digest.finalize()[..8]);
    let dir = cache_dir().join("kstatus");
    let binary = dir.join(format!("kstatus-{key}"));
    if binary.is_file() {
        return binary;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    // Another test process may build at the same time: build to a private name, then rename.
    let partial = dir.join(format!("kstatus-{key}.{}.tmp", std::process::id()));
    let go = std::env::var_os("OSPKG_GO").unwrap_or_else(|| "go".into());
    let output = Command::new(&go)
        .args(["build", "-trimpath", "-o"])
        .arg(&partial)
        .arg(".")
        .current_dir(&module)
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kstatus tests need Go to build hack/kstatus: running {} failed: {e} \
                 (install Go or set OSPKG_GO)",
                go.to_string_lossy()
            )
        });
    assert!(
        output.status.success(),
        "go build in hack/kstatus failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &binary)
        .unwrap_or_else(|e| panic!("moving the kstatus binary to {}: {e}", binary.display()));
    binary
}

/// `(status, message)` of the single object in a delivery fixture.
fn status_of(fixture: &str) -> (String, String) {
    let path = Path::new(ROOT)
        .join("tests/fixtures/delivery")
        .join(fixture);
    status_of_file(&path)
}

/// `(status, message)` kstatus computes for the single object in the YAML file at `path`
/// (the end-to-end tests judge live objects with it too).
pub fn status_of_file(path: &Path) -> (String, String) {
    let output = Command::new(kstatus())
        .arg(path)
        .output()
        .expect("running kstatus");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kstatus {} failed: {}{stdout}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .next()
        .unwrap_or_else(|| panic!("kstatus printed nothing for {}", path.display()));
    let rest = line
        .strip_prefix(&format!("{}: ", path.display()))
        .unwrap_or_else(|| panic!("unexpected kstatus output: {line}"));
    let (status, message) = rest.split_once(' ').unwrap_or((rest, ""));
    (status.to_owned(), message.to_owned())
}

fn assert_status(fixture: &str, expected: &str, message_contains: &str) {
    let (status, message) = status_of(fixture);
    assert_eq!(
        status, expected,
        "{fixture}: kstatus says {status} ({message})"
    );
    assert!(
        message.contains(message_contains),
        "{fixture}: kstatus message {message:?} does not contain {message_contains:?}"
    );
}

#[test]
fn ready_is_current() {
    assert_status("ready.yaml", "Current", "");
}

#[test]
fn copying_is_in_progress() {
    assert_status(
        "copying.yaml",
        "InProgress",
        "Copying s3://acme-search-dicts",
    );
}

#[test]
fn rolling_out_to_domains_is_in_progress() {
    assert_status("rolling-out.yaml", "InProgress", "catalog-prod");
}

#[test]
fn a_generation_not_yet_observed_is_in_progress() {
    // Ready is still True from generation 2: only observedGeneration tells the change apart.
    assert_status(
        "generation-behind.yaml",
        "InProgress",
        "latest observed generation is 2",
    );
}

#[test]
fn validation_failed_is_failed_with_the_stalled_message() {
    assert_status(
        "validation-failed.yaml",
        "Failed",
        "plugin-descriptor.properties is missing",
    );
}

#[test]
fn name_conflict_is_failed_naming_the_owner() {
    assert_status(
        "name-conflict.yaml",
        "Failed",
        "owned by OpenSearchPackage search/product-synonyms",
    );
}

#[test]
fn association_failed_is_failed() {
    assert_status("association-failed.yaml", "Failed", "ASSOCIATION_FAILED");
}

#[test]
fn suspended_keeps_its_last_status() {
    // A suspended object keeps the conditions it had (here Ready from the generation before
    // the suspension) while observedGeneration follows the spec: kstatus says Current, so a
    // Flux `wait` on it passes instead of running into its timeout.
    assert_status("suspended.yaml", "Current", "");
}

#[test]
fn an_object_without_status_is_current_to_kstatus() {
    // kstatus cannot tell that nobody has looked at a new object yet (no observedGeneration,
    // no conditions), so it is Current until the operator's first status write. This pins
    // the documented caveat in docs/install.md (Flux section).
    assert_status("new.yaml", "Current", "");
}
