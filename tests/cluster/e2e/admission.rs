//! Admission: invalid objects are rejected at admission by the real API server (OpenAPI schema and
//! CEL rules of the generated CRD), with a message naming the field.

use ospkg_sim::SimConfig;

use super::support::{self, TestEnv};

/// A valid object to start from; `spec` lines replace the defaults below.
fn object(name: &str, spec: &str) -> String {
    let mut yaml = format!(
        "apiVersion: ospkg.dev/v1alpha1\nkind: OpenSearchPackage\nmetadata:\n  name: {name}\nspec:\n"
    );
    for line in spec.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

const SOURCE: &str = "source:\n  s3BucketName: e2e-dicts\n  s3Key: words.txt\n";

fn dict(extra: &str) -> String {
    format!("packageType: TXT-DICTIONARY\n{SOURCE}{extra}")
}

struct Case {
    what: &'static str,
    /// Object name; for an update, the existing object it changes.
    name: &'static str,
    spec: String,
    /// Extra kubectl flags.
    flags: &'static [&'static str],
    /// Field path the error must name, and a further fragment of the message.
    field: &'static str,
    message: &'static str,
}

fn case(
    what: &'static str,
    name: &'static str,
    spec: String,
    field: &'static str,
    message: &'static str,
) -> Case {
    Case {
        what,
        name,
        spec,
        flags: &[],
        field,
        message,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_are_rejected_at_admission() {
    let cp = support::shared_control_plane()
        .await
        .expect("control plane");
    // No operator: admission alone decides.
    let env = TestEnv::without_operator(cp, "e2e-admission", SimConfig::default()).await;

    // Existing objects for the update cases.
    let base_dict = dict("packageName: base-dict\nregion: us-east-1\n");
    let base_plugin = format!("packageType: ZIP-PLUGIN\nengineVersion: OpenSearch_2.19\n{SOURCE}");
    env.apply(&object("base-dict", &base_dict)).await;
    env.apply(&object("base-plugin", &base_plugin)).await;

    let long_message = "x".repeat(141);
    let cases = vec![
        case("unknown packageType", "bad-type", format!("packageType: TXT\n{SOURCE}"), "spec.packageType", "Unsupported value"),
        case(
            "bucket name with capitals and underscore",
            "bad-bucket",
            "packageType: TXT-DICTIONARY\nsource:\n  s3BucketName: Bad_Bucket\n  s3Key: words.txt\n".to_owned(),
            "spec.source.s3BucketName",
            "should match",
        ),
        case("bucket name too short", "short-bucket", "packageType: TXT-DICTIONARY\nsource:\n  s3BucketName: ab\n  s3Key: words.txt\n".to_owned(), "spec.source.s3BucketName", "at least 3"),
        case("missing source", "no-source", "packageType: TXT-DICTIONARY\n".to_owned(), "spec.source", "Required value"),
        case("empty s3Key", "empty-key", "packageType: TXT-DICTIONARY\nsource:\n  s3BucketName: e2e-dicts\n  s3Key: \"\"\n".to_owned(), "spec.source.s3Key", "at least 1"),
        case("engineVersion on a dictionary", "dict-engine", dict("engineVersion: OpenSearch_2.19\n"), "spec.engineVersion", "forbidden otherwise"),
        case("ZIP-PLUGIN without engineVersion", "plugin-no-engine", format!("packageType: ZIP-PLUGIN\n{SOURCE}"), "spec.engineVersion", "required when packageType is ZIP-PLUGIN"),
        case("malformed engineVersion", "plugin-bad-engine", format!("packageType: ZIP-PLUGIN\nengineVersion: OpenSearch-2.19\n{SOURCE}"), "spec.engineVersion", "should match"),
        case("commitMessage longer than 140", "long-commit", dict(&format!("commitMessage: {long_message}\n")), "spec.commitMessage", "140"),
        case("description longer than 1024", "long-description", dict(&format!("description: {}\n", "d".repeat(1025))), "spec.description", "1024"),
        case("allowListedUsers entry that is no account id", "bad-users", dict("allowListedUsers:\n  - \"12345\"\n"), "spec.allowListedUsers[0]", "should match"),
        case("domain name with capitals", "bad-domain", dict("domains:\n  - name: Catalog_Prod\n"), "spec.domains[0].name", "should match"),
        case("domain name longer than 28", "long-domain", dict(&format!("domains:\n  - name: {}\n", "d".repeat(29))), "spec.domains[0].name", "28"),
        case("licenseFilepath escaping the plugin", "bad-license-path", format!("packageType: ZIP-PLUGIN\nengineVersion: OpenSearch_2.19\n{SOURCE}configuration:\n  licenseRequirement: REQUIRED\n  configurationRequirement: NONE\n  licenseFilepath: ../etc/passwd\n"), "spec.configuration.licenseFilepath", ".."),
        case("configuration without licenseRequirement", "config-incomplete", format!("packageType: ZIP-PLUGIN\nengineVersion: OpenSearch_2.19\n{SOURCE}configuration:\n  configurationRequirement: NONE\n"), "spec.configuration.licenseRequirement", "Required value"),
        case("unknown deletionPolicy", "bad-policy", dict("deletionPolicy: Keep\n"), "spec.deletionPolicy", "Unsupported value"),
        case("packageName too short", "short-package-name", dict("packageName: ab\n"), "spec.packageName", "at least 3"),
        case("metadata.name that is not a package name, without spec.packageName", "dotted.name", dict(""), "spec.packageName", "set spec.packageName"),
        case("changing packageType", "base-dict", "packageType: PACKAGE-LICENSE\nsource:\n  s3BucketName: e2e-dicts\n  s3Key: words.txt\npackageName: base-dict\nregion: us-east-1\n".to_owned(), "spec.packageType", "immutable"),
        case("changing packageName", "base-dict", dict("packageName: other-name\nregion: us-east-1\n"), "spec.packageName", "immutable"),
        case("removing packageName", "base-dict", dict("region: us-east-1\n"), "spec.packageName", "immutable"),
        case("changing region", "base-dict", dict("packageName: base-dict\nregion: eu-west-1\n"), "spec.region", "immutable"),
        case("changing engineVersion", "base-plugin", format!("packageType: ZIP-PLUGIN\nengineVersion: OpenSearch_2.17\n{SOURCE}"), "spec.engineVersion", "immutable"),
        Case {
            flags: &["--validate=strict"],
            ..case("unknown field (strict field validation)", "unknown-field", dict("frobnicate: true\n"), "spec.frobnicate", "")
        },
    ];
    assert!(cases.len() >= 12);

    let mut failures = Vec::new();
    for case in &cases {
        let yaml = object(case.name, &case.spec);
        match env.try_apply(&yaml, case.flags).await {
            Ok(out) => failures.push(format!("{}: accepted ({})", case.what, out.trim())),
            Err(error) => {
                let text = format!("{error:#}");
                eprintln!(
                    "rejected {}: {}",
                    case.what,
                    text.lines().last().unwrap_or_default()
                );
                if !text.contains(case.field) || !text.contains(case.message) {
                    failures.push(format!(
                        "{}: the error does not name {:?} with {:?}:\n    {text}",
                        case.what, case.field, case.message
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Rejected creates left nothing behind; rejected updates left the objects unchanged.
    let names = env.kubectl(&["get", "ospkg", "-o", "name"]).await;
    let mut names: Vec<&str> = names.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "opensearchpackage.ospkg.dev/base-dict",
            "opensearchpackage.ospkg.dev/base-plugin"
        ]
    );
    let base = env.get("base-dict").await.expect("exists");
    assert_eq!(base.spec.package_name.as_deref(), Some("base-dict"));
    assert_eq!(base.spec.region.as_deref(), Some("us-east-1"));
    assert_eq!(base.metadata.generation, Some(1));
}
