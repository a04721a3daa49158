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
    what: String,
    /// Object name; for an update, the existing object it changes.
    name: String,
    spec: String,
    /// Extra kubectl flags.
    flags: &'static [&'static str],
    /// Field path the error must name, and a further fragment of the message.
    field: String,
    message: &'static str,
}

fn case(
    what: impl Into<String>,
    name: impl Into<String>,
    spec: String,
    field: impl Into<String>,
    message: &'static str,
) -> Case {
    Case {
        what: what.into(),
        name: name.into(),
        spec,
        flags: &[],
        field: field.into(),
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
    env.apply(&object("named-dict", &dict("packageName: other-words\n")))
        .await;

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
        case("missing source", "no-source", "packageType: TXT-DICTIONARY\n".to_owned(), "spec.source", "source is required unless managementPolicy is Observe"),
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
        case("removing a packageName other than metadata.name", "named-dict", dict(""), "spec.packageName", "immutable"),
        case("changing region", "base-dict", dict("packageName: base-dict\nregion: eu-west-1\n"), "spec.region", "immutable"),
        case("changing engineVersion", "base-plugin", format!("packageType: ZIP-PLUGIN\nengineVersion: OpenSearch_2.17\n{SOURCE}"), "spec.engineVersion", "immutable"),
        Case {
            flags: &["--validate=strict"],
            ..case("unknown field (strict field validation)", "unknown-field", dict("frobnicate: true\n"), "spec.frobnicate", "")
        },
        // Cross-field rules.
        case("allowListedUsers without vending", "users-no-vending", dict("allowListedUsers:\n  - \"123456789012\"\n"), "spec.allowListedUsers", "needs vending.enabled: true"),
        case("allowListedUsers with vending disabled", "users-vending-off", dict("vending:\n  enabled: false\nallowListedUsers:\n  - GLOBAL\n"), "spec.allowListedUsers", "needs vending.enabled: true"),
        case("configuration on a dictionary", "dict-configuration", dict("configuration:\n  licenseRequirement: NONE\n  configurationRequirement: NONE\n"), "spec.configuration", "only for ZIP-PLUGIN"),
        case("prerequisites on a dictionary", "dict-prerequisites", dict("domains:\n  - name: catalog-prod\n    prerequisites:\n      - some-license\n"), "spec.domains", "prerequisites are only for ZIP-PLUGIN"),
        case("keyStoreAccess on a dictionary", "dict-keystore", dict("domains:\n  - name: catalog-prod\n    keyStoreAccess:\n      enabled: true\n"), "spec.domains", "keyStoreAccess is only for ZIP-PLUGIN"),
        Case {
            flags: &["--validate=strict"],
            ..case("keyAccessRoleArn (renamed keyAccessRoleARN)", "old-role-spelling", format!("packageType: ZIP-PLUGIN\nengineVersion: OpenSearch_2.19\n{SOURCE}domains:\n  - name: catalog-prod\n    keyStoreAccess:\n      enabled: true\n      keyAccessRoleArn: arn:aws:iam::123456789012:role/keys\n"), "keyStoreAccess.keyAccessRoleArn", "not declared in schema")
        },
        case("unknown managementPolicy", "bad-management", dict("managementPolicy: Adopt\n"), "spec.managementPolicy", "Unsupported value"),
        case("changing managementPolicy", "base-dict", dict("packageName: base-dict\nregion: us-east-1\nmanagementPolicy: Observe\n"), "spec.managementPolicy", "immutable"),
        case("packageID on a managed object", "managed-with-id", dict("packageID: F123\n"), "spec.packageID", "only for managementPolicy Observe"),
        case("malformed packageID", "bad-package-id", "packageType: TXT-DICTIONARY\nmanagementPolicy: Observe\npackageID: X1\n".to_owned(), "spec.packageID", "should match"),
        case("export ConfigMap name that is no DNS name", "bad-export-name", dict("export:\n  configMapName: Bad_Name\n"), "spec.export.configMapName", "should match"),
        case("export keyPrefix that is no variable name", "bad-export-prefix", dict("export:\n  configMapName: words\n  keyPrefix: 1-words\n"), "spec.export.keyPrefix", "should match"),
    ];
    // Observe: every field that would change the package is refused, naming the field.
    let observe = "packageType: TXT-DICTIONARY\nmanagementPolicy: Observe\n";
    let observe_cases: [(&str, &str, &str); 10] = [
        ("source", SOURCE, "source must not be set"),
        (
            "description",
            "description: words\n",
            "description must not be set",
        ),
        (
            "configuration",
            "configuration:\n  licenseRequirement: NONE\n  configurationRequirement: NONE\n",
            "configuration must not be set",
        ),
        (
            "encryption",
            "encryption:\n  enabled: true\n",
            "encryption must not be set",
        ),
        (
            "commitMessage",
            "commitMessage: words\n",
            "commitMessage must not be set",
        ),
        (
            "vending",
            "vending:\n  enabled: true\n",
            "vending must not be set",
        ),
        (
            "allowListedUsers",
            "vending:\n  enabled: true\nallowListedUsers:\n  - GLOBAL\n",
            "allowListedUsers must not be set",
        ),
        (
            "domains",
            "domains:\n  - name: catalog-prod\n",
            "domains must not be set",
        ),
        (
            "rollout",
            "rollout:\n  strategy: Parallel\n",
            "rollout must not be set",
        ),
        (
            "adoptExisting",
            "adoptExisting: true\n",
            "adoptExisting must not be true",
        ),
    ];
    let mut cases = cases;
    for (field, extra, message) in observe_cases {
        cases.push(case(
            format!("{field} on an Observe object"),
            format!("observe-{}", field.to_lowercase()),
            format!("{observe}{extra}"),
            format!("spec.{field}"),
            message,
        ));
    }
    assert!(cases.len() >= 12);

    let mut failures = Vec::new();
    for case in &cases {
        let yaml = object(&case.name, &case.spec);
        match env.try_apply(&yaml, case.flags).await {
            Ok(out) => failures.push(format!("{}: accepted ({})", case.what, out.trim())),
            Err(error) => {
                let text = format!("{error:#}");
                eprintln!(
                    "rejected {}: {}",
                    case.what,
                    text.lines().last().unwrap_or_default()
                );
                if !text.contains(&case.field) || !text.contains(case.message) {
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

    // A condition status other than True, False and Unknown is refused on the status
    // subresource too.
    let output = env
        .cp
        .kubectl(&[
            "patch",
            "ospkg",
            "base-dict",
            "-n",
            &env.ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"Maybe","reason":"Guess","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#,
        ])
        .await
        .expect("kubectl patch runs");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && error.contains("status.conditions[0].status")
            && error.contains("Unsupported value"),
        "a condition status Maybe was not refused naming the field: {error}"
    );

    // What the rules allow: an observer by id needs no valid package name, an observer of a
    // plugin needs no engineVersion, a vended package
    // may list users, a plugin may carry configuration, prerequisites and key-store access.
    let allowed = [
        ("icu.by-id", "packageType: ZIP-PLUGIN\nmanagementPolicy: Observe\npackageID: G100000001\n".to_owned()),
        ("observe-plugin", "packageType: ZIP-PLUGIN\nmanagementPolicy: Observe\npackageName: some-plugin\nexport:\n  configMapName: some-plugin\n  keyPrefix: PLUGIN_\n".to_owned()),
        ("vended", dict("vending:\n  enabled: true\nallowListedUsers:\n  - \"123456789012\"\n")),
        ("full-plugin", format!("packageType: ZIP-PLUGIN\nengineVersion: OpenSearch_2.19\n{SOURCE}configuration:\n  licenseRequirement: REQUIRED\n  configurationRequirement: NONE\ndomains:\n  - name: catalog-prod\n    prerequisites:\n      - some-license\n    keyStoreAccess:\n      enabled: true\n      keyAccessRoleARN: arn:aws:iam::123456789012:role/keys\n")),
    ];
    for (name, spec) in &allowed {
        if let Err(error) = env
            .try_apply(&object(name, spec), &["--validate=strict"])
            .await
        {
            panic!("{name} was refused: {error:#}");
        }
    }
    let plugin = env.get("full-plugin").await.expect("exists");
    let access = plugin.spec.domains[0]
        .key_store_access
        .as_ref()
        .expect("keyStoreAccess");
    assert_eq!(
        access.key_access_role_arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/keys")
    );
    let observer = env.get("observe-plugin").await.expect("exists");
    assert_eq!(
        observer.spec.management_policy,
        ospkg::crd::ManagementPolicy::Observe
    );
    let defaulted = env.get("base-dict").await.expect("exists");
    assert_eq!(
        defaulted.spec.management_policy,
        ospkg::crd::ManagementPolicy::Manage,
        "managementPolicy defaults to Manage"
    );

    // Rejected creates left nothing behind; rejected updates left the objects unchanged.
    let names = env.kubectl(&["get", "ospkg", "-o", "name"]).await;
    let mut names: Vec<&str> = names.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "opensearchpackage.ospkg.dev/base-dict",
            "opensearchpackage.ospkg.dev/base-plugin",
            "opensearchpackage.ospkg.dev/full-plugin",
            "opensearchpackage.ospkg.dev/icu.by-id",
            "opensearchpackage.ospkg.dev/named-dict",
            "opensearchpackage.ospkg.dev/observe-plugin",
            "opensearchpackage.ospkg.dev/vended",
        ]
    );
    let base = env.get("base-dict").await.expect("exists");
    assert_eq!(base.spec.package_name.as_deref(), Some("base-dict"));
    assert_eq!(base.spec.region.as_deref(), Some("us-east-1"));
    assert_eq!(base.metadata.generation, Some(1));
}

/// GitOps tools write out defaults: spelling out the default of an immutable field is no change,
/// and only the default (a different value is still refused, naming the field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_out_a_default_is_no_change() {
    let cp = support::shared_control_plane()
        .await
        .expect("control plane");
    let env = TestEnv::without_operator(cp, "e2e-admission-defaults", SimConfig::default()).await;
    env.apply(&object("plain", &dict(""))).await;

    let refused = |what: &'static str, spec: String, field: &'static str, message: &'static str| {
        case(what, "plain", spec, field, message)
    };
    let expect_refused =
        async |case: Case| match env.try_apply(&object(&case.name, &case.spec), &[]).await {
            Ok(out) => panic!("{}: accepted ({})", case.what, out.trim()),
            Err(error) => {
                let text = format!("{error:#}");
                assert!(
                    text.contains(&case.field) && text.contains(case.message),
                    "{}: the error does not name {:?} with {:?}: {text}",
                    case.what,
                    case.field,
                    case.message
                );
            }
        };
    let expect_accepted = async |what: &str, spec: String| {
        if let Err(error) = env.try_apply(&object("plain", &spec), &[]).await {
            panic!("{what} was refused: {error:#}");
        }
    };

    // packageName: metadata.name written out, and taken out again.
    expect_accepted(
        "packageName written out as metadata.name",
        dict("packageName: plain\n"),
    )
    .await;
    expect_refused(refused(
        "packageName changed",
        dict("packageName: other-name\n"),
        "spec.packageName",
        "immutable",
    ))
    .await;
    expect_accepted("packageName taken out again", dict("")).await;

    // vending: `enabled: false` is what no vending block means.
    expect_accepted(
        "vending written out as disabled",
        dict("vending:\n  enabled: false\n"),
    )
    .await;
    expect_refused(refused(
        "vending enabled",
        dict("vending:\n  enabled: true\n"),
        "spec.vending",
        "immutable",
    ))
    .await;

    // region: before a reconcile recorded one, any region is a change; afterwards, the
    // recorded region may be written out, another may not.
    expect_refused(refused(
        "region before status.region",
        dict("region: us-west-2\n"),
        "spec.region",
        "immutable",
    ))
    .await;
    env.kubectl(&[
        "patch",
        "ospkg",
        "plain",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"region":"us-west-2"}}"#,
    ])
    .await;
    expect_refused(refused(
        "region other than status.region",
        dict("region: eu-west-1\n"),
        "spec.region",
        "status.region",
    ))
    .await;
    expect_accepted(
        "region written out as status.region",
        dict("region: us-west-2\n"),
    )
    .await;
    expect_refused(refused(
        "region taken out again",
        dict(""),
        "spec.region",
        "immutable",
    ))
    .await;

    let plain = env.get("plain").await.expect("exists");
    assert_eq!(plain.spec.region.as_deref(), Some("us-west-2"));
    assert_eq!(plain.spec.package_name, None);
    // The last apply left the disabled vending block out again: also no change.
    assert_eq!(plain.spec.vending, None);
    assert_eq!(plain.metadata.generation, Some(5), "four accepted changes");
}
