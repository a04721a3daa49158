//! The checked-in CRD YAML must be exactly what the Rust types generate.

use std::path::Path;

const REFRESH: &str =
    "run `hack/generate.sh` (or `cargo run -q -- crd > crds/opensearchpackages.ospkg.dev.yaml`)";

fn assert_fresh(path: &Path) {
    let generated = ospkg::crd::crd_yaml().expect("CRD serializes");
    let checked_in = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} is missing ({e}): {REFRESH}", path.display()));
    assert!(
        generated == checked_in,
        "{} is stale: {REFRESH}",
        path.display()
    );
}

#[test]
fn checked_in_crd_matches_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_fresh(&root.join("crds/opensearchpackages.ospkg.dev.yaml"));
}

// The chart carries the CRD as a template; tests/cluster/chart renders it with helm and
// compares it with this file.
