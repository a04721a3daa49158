//! The checked-in CRD YAML must be exactly what the Rust types generate.

use std::path::Path;

const REFRESH: &str =
    "run `hack/generate.sh` (or `cargo run -q -- crd NAME > crds/NAME.ospkg.dev.yaml`)";

#[test]
fn checked_in_crds_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crds = ospkg::crd::crds();
    for (plural, crd) in &crds {
        let path = root.join(format!("crds/{plural}.ospkg.dev.yaml"));
        let generated = ospkg::crd::crd_yaml_of(crd).expect("CRD serializes");
        let checked_in = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}): {REFRESH}", path.display()));
        assert!(
            generated == checked_in,
            "{} is stale: {REFRESH}",
            path.display()
        );
    }
    // Nothing else lives in crds/: a CRD dropped from the types must not linger.
    let files = std::fs::read_dir(root.join("crds")).expect("crds/").count();
    assert_eq!(files, crds.len(), "crds/ holds a file no type generates");
}

// The chart carries the CRD as a template; tests/cluster/chart renders it with helm and
// compares it with this file.
