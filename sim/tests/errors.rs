//! Every input validation rule of docs/aws-api.md, the modelled errors (not found, already
//! exists, conflict, limits), AWS-owned packages and authentication.

mod common;

use aws_sdk_opensearch::types::{
    DescribePackagesFilter, DescribePackagesFilterName, PackageDetailsForAssociation,
    PackageScopeOperationEnum, PackageType,
};
use common::*;
use ospkg_sim::{Quotas, SimConfig};

/// (method, path, body, member the message must name)
const RULES: &[(&str, &str, &str, &str)] = &[
    // 1. well-formed JSON and required members
    ("POST", "/2021-01-01/packages", "{not json", "JSON"),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "'PackageName'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "'PackageType'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"TXT-DICTIONARY"}"#,
        "'PackageSource'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":5,"PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "'PackageName'",
    ),
    (
        "POST",
        "/2021-01-01/packages/update",
        r#"{"PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "'PackageID'",
    ),
    (
        "POST",
        "/2021-01-01/packages/update",
        r#"{"PackageID":"F1"}"#,
        "'PackageSource'",
    ),
    (
        "POST",
        "/2021-01-01/packages/associateMultiple",
        r#"{"DomainName":"search"}"#,
        "'PackageList'",
    ),
    (
        "POST",
        "/2021-01-01/packages/associateMultiple",
        r#"{"PackageList":[{"PackageID":"F1"}]}"#,
        "'DomainName'",
    ),
    (
        "POST",
        "/2021-01-01/packages/associateMultiple",
        r#"{"PackageList":[{}],"DomainName":"search"}"#,
        "'PackageList.1.PackageID'",
    ),
    (
        "POST",
        "/2021-01-01/packages/dissociateMultiple",
        r#"{"DomainName":"search"}"#,
        "'PackageList'",
    ),
    (
        "POST",
        "/2021-01-01/packages/dissociateMultiple",
        r#"{"PackageList":["F1"]}"#,
        "'DomainName'",
    ),
    (
        "POST",
        "/2021-01-01/packages/updateScope",
        r#"{"Operation":"ADD","PackageUserList":["GLOBAL"]}"#,
        "'PackageID'",
    ),
    (
        "POST",
        "/2021-01-01/packages/updateScope",
        r#"{"PackageID":"F1","PackageUserList":["GLOBAL"]}"#,
        "'Operation'",
    ),
    (
        "POST",
        "/2021-01-01/packages/updateScope",
        r#"{"PackageID":"F1","Operation":"ADD"}"#,
        "'PackageUserList'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bkt","S3Key":"k"},"PackageConfiguration":{"ConfigurationRequirement":"NONE"}}"#,
        "'PackageConfiguration.LicenseRequirement'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bkt","S3Key":"k"},"PackageConfiguration":{"LicenseRequirement":"NONE"}}"#,
        "'PackageConfiguration.ConfigurationRequirement'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bkt","S3Key":"k"},"PackageVendingOptions":{}}"#,
        "'PackageVendingOptions.VendingEnabled'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bkt","S3Key":"k"},"PackageEncryptionOptions":{"KmsKeyIdentifier":"k"}}"#,
        "'PackageEncryptionOptions.EncryptionEnabled'",
    ),
    (
        "POST",
        "/2021-01-01/packages/associate/F1/search",
        r#"{"AssociationConfiguration":{"KeyStoreAccessOption":{}}}"#,
        "'AssociationConfiguration.KeyStoreAccessOption.KeyStoreAccessEnabled'",
    ),
    // 2. source
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"TXT-DICTIONARY","PackageSource":{"S3Key":"k"}}"#,
        "'PackageSource.S3BucketName'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bk","S3Key":"k"}}"#,
        "'PackageSource.S3BucketName'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bkt","S3Key":""}}"#,
        "'PackageSource.S3Key'",
    ),
    // 3. name
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"Bad_Name","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "'PackageName'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"ab","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "'PackageName'",
    ),
    // 4. type and engine version
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"JAR","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "'PackageType'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"ZIP-PLUGIN","EngineVersion":"OpenSearch_2","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "'EngineVersion'",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"ZIP-PLUGIN","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "EngineVersion is a required parameter",
    ),
    (
        "POST",
        "/2021-01-01/packages",
        r#"{"PackageName":"abc","PackageType":"TXT-DICTIONARY","EngineVersion":"OpenSearch_2.15","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "EngineVersion can only be specified",
    ),
    // 5. lengths and patterns
    (
        "POST",
        "/2021-01-01/packages/update",
        r#"{"PackageID":"F1","PackageSource":{"S3BucketName":"bkt","S3Key":"k"},"CommitMessage":"LONG161"}"#,
        "'CommitMessage'",
    ),
    (
        "POST",
        "/2021-01-01/packages/update",
        r#"{"PackageID":"F1","PackageSource":{"S3BucketName":"bkt","S3Key":"k"},"PackageDescription":"LONG1025"}"#,
        "'PackageDescription'",
    ),
    (
        "POST",
        "/2021-01-01/packages/update",
        r#"{"PackageID":"F1","PackageSource":{"S3BucketName":"bkt","S3Key":"k"},"PackageEncryptionOptions":{"EncryptionEnabled":true,"KmsKeyIdentifier":""}}"#,
        "'PackageEncryptionOptions.KmsKeyIdentifier'",
    ),
    (
        "POST",
        "/2021-01-01/packages/update",
        r#"{"PackageID":"F1","PackageSource":{"S3BucketName":"bkt","S3Key":"k"},"PackageConfiguration":{"LicenseRequirement":"REQUIRED","ConfigurationRequirement":"NONE","LicenseFilepath":"../etc/passwd"}}"#,
        "'PackageConfiguration.LicenseFilepath'",
    ),
    (
        "POST",
        "/2021-01-01/packages/update",
        r#"{"PackageID":"F1","PackageSource":{"S3BucketName":"bkt","S3Key":"k"},"PackageConfiguration":{"LicenseRequirement":"SOMETIMES","ConfigurationRequirement":"NONE"}}"#,
        "'PackageConfiguration.LicenseRequirement'",
    ),
    (
        "POST",
        "/2021-01-01/packages/associate/F1/search",
        r#"{"AssociationConfiguration":{"KeyStoreAccessOption":{"KeyStoreAccessEnabled":true,"KeyAccessRoleArn":"arn:aws:s3:::bucket/role"}}}"#,
        "'AssociationConfiguration.KeyStoreAccessOption.KeyAccessRoleArn'",
    ),
    // 6. package ids everywhere
    ("DELETE", "/2021-01-01/packages/X123", "", "'PackageID'"),
    ("GET", "/2021-01-01/packages/f1/history", "", "'PackageID'"),
    (
        "POST",
        "/2021-01-01/packages/update",
        r#"{"PackageID":"pkg-XYZ","PackageSource":{"S3BucketName":"bkt","S3Key":"k"}}"#,
        "'PackageID'",
    ),
    (
        "POST",
        "/2021-01-01/packages/associate/F1/search",
        r#"{"PrerequisitePackageIDList":["nope"]}"#,
        "'PrerequisitePackageIDList.1'",
    ),
    (
        "POST",
        "/2021-01-01/packages/dissociateMultiple",
        r#"{"PackageList":["F1","G"],"DomainName":"search"}"#,
        "'PackageList.2'",
    ),
    // 7. domain names
    (
        "POST",
        "/2021-01-01/packages/associate/F1/Search",
        "",
        "'DomainName'",
    ),
    (
        "GET",
        "/2021-01-01/domain/a-domain-name-that-is-far-too-long/packages",
        "",
        "'DomainName'",
    ),
    // 8. paging
    (
        "POST",
        "/2021-01-01/packages/describe",
        r#"{"MaxResults":101}"#,
        "'MaxResults'",
    ),
    (
        "POST",
        "/2021-01-01/packages/describe",
        r#"{"MaxResults":0}"#,
        "'MaxResults'",
    ),
    (
        "GET",
        "/2021-01-01/packages/G100000001/domains?maxResults=500",
        "",
        "'maxResults'",
    ),
    (
        "GET",
        "/2021-01-01/packages/G100000001/history?nextToken=abc",
        "",
        "'nextToken'",
    ),
    (
        "POST",
        "/2021-01-01/packages/describe",
        r#"{"NextToken":"abc"}"#,
        "'NextToken'",
    ),
    // 9. filters
    (
        "POST",
        "/2021-01-01/packages/describe",
        r#"{"Filters":[{"Name":"Color","Value":["x"]}]}"#,
        "'Filters.1.Name'",
    ),
    (
        "POST",
        "/2021-01-01/packages/describe",
        r#"{"Filters":[{"Name":"PackageName","Value":[]}]}"#,
        "'Filters.1.Value'",
    ),
    (
        "POST",
        "/2021-01-01/packages/describe",
        r#"{"Filters":[{"Name":"PackageName","Value":["ok","bad value!"]}]}"#,
        "'Filters.1.Value.2'",
    ),
    // 10. scope
    (
        "POST",
        "/2021-01-01/packages/updateScope",
        r#"{"PackageID":"F1","Operation":"MERGE","PackageUserList":["GLOBAL"]}"#,
        "'Operation'",
    ),
    (
        "POST",
        "/2021-01-01/packages/updateScope",
        r#"{"PackageID":"F1","Operation":"ADD","PackageUserList":["12345"]}"#,
        "'PackageUserList.1'",
    ),
];

#[tokio::test]
async fn every_validation_rule_names_the_member() {
    let sim = sim().await;
    for (method, path, body, member) in RULES {
        let body = body
            .replace("LONG161", &"m".repeat(161))
            .replace("LONG1025", &"d".repeat(1025));
        let (status, headers, text) = raw(
            &format!("{}{path}", sim.endpoint()),
            method,
            Some(AUTH),
            &body,
        )
        .await;
        assert_eq!(status, 400, "{method} {path} {body}: {text}");
        assert_eq!(
            headers.get("x-amzn-errortype").unwrap(),
            "ValidationException",
            "{path}: {text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["__type"], "ValidationException");
        let message = json["message"].as_str().unwrap();
        assert!(
            message.contains(member),
            "{method} {path} {body}: {message} lacks {member}"
        );
    }
}

#[tokio::test]
async fn sdk_sees_validation_errors_as_typed_variants() {
    let sim = sim().await;
    let client = client(&sim);
    let error = client
        .create_package()
        .package_name("Bad")
        .package_type(PackageType::TxtDictionary)
        .package_source(source("bkt", "k"))
        .send()
        .await
        .unwrap_err();
    assert!(error.as_service_error().unwrap().is_validation_exception());
    let (code, message) = failure(
        client
            .describe_packages()
            .filters(
                DescribePackagesFilter::builder()
                    .name(DescribePackagesFilterName::from("Colour"))
                    .value("x")
                    .build(),
            )
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("Filters.1.Name"), "{message}");
    let (code, message) = failure(
        client
            .list_domains_for_package()
            .package_id("G100000001")
            .max_results(101)
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("maxResults"), "{message}");
    // Only AVAILABLE packages can be associated.
    let id = create_dictionary(&sim, &client, "still-copying").await;
    let (code, message) = failure(
        client
            .associate_package()
            .package_id(&id)
            .domain_name("search")
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("COPYING"), "{message}");
}

#[tokio::test]
async fn not_found_and_already_exists() {
    let sim = sim().await;
    let client = client(&sim);
    let id = available_dictionary(&sim, &client, "exists").await;
    let not_found = [
        failure(
            client
                .describe_packages()
                .filters(
                    DescribePackagesFilter::builder()
                        .name(DescribePackagesFilterName::PackageId)
                        .value("F999")
                        .build(),
                )
                .send()
                .await,
        ),
        failure(
            client
                .get_package_version_history()
                .package_id("F999")
                .send()
                .await,
        ),
        failure(client.delete_package().package_id("F999").send().await),
        failure(
            client
                .update_package()
                .package_id("F999")
                .package_source(source("bkt", "k"))
                .send()
                .await,
        ),
        failure(
            client
                .associate_package()
                .package_id("F999")
                .domain_name("search")
                .send()
                .await,
        ),
        failure(
            client
                .associate_package()
                .package_id(&id)
                .domain_name("nowhere")
                .send()
                .await,
        ),
        failure(
            client
                .dissociate_package()
                .package_id(&id)
                .domain_name("search")
                .send()
                .await,
        ),
        failure(
            client
                .list_domains_for_package()
                .package_id("F999")
                .send()
                .await,
        ),
        failure(
            client
                .list_packages_for_domain()
                .domain_name("nowhere")
                .send()
                .await,
        ),
        failure(
            client
                .update_package_scope()
                .package_id("F999")
                .operation(PackageScopeOperationEnum::Add)
                .package_user_list("GLOBAL")
                .send()
                .await,
        ),
        failure(
            client
                .associate_package()
                .package_id(&id)
                .domain_name("search")
                .prerequisite_package_id_list("F998")
                .send()
                .await,
        ),
    ];
    for (code, message) in &not_found {
        assert_eq!(code, "ResourceNotFoundException", "{message}");
    }
    assert!(not_found[0].1.contains("Package not found"));
    let (code, _) = failure(
        client
            .create_package()
            .package_name("exists")
            .package_type(PackageType::TxtDictionary)
            .package_source(source("pkgs", "exists.txt"))
            .send()
            .await,
    );
    assert_eq!(code, "ResourceAlreadyExistsException");
}

#[tokio::test]
async fn conflicts_delete_while_associated_and_one_change_per_domain() {
    let sim = sim().await;
    let client = client(&sim);
    let admin = sim.admin();
    let a = available_dictionary(&sim, &client, "first").await;
    let b = available_dictionary(&sim, &client, "second").await;
    client
        .associate_package()
        .package_id(&a)
        .domain_name("search")
        .send()
        .await
        .unwrap();
    // A second association change on the same domain while the first is under way.
    let (c, message) = failure(
        client
            .associate_package()
            .package_id(&b)
            .domain_name("search")
            .send()
            .await,
    );
    assert_eq!(c, "ConflictException", "{message}");
    let (c, _) = failure(
        client
            .dissociate_package()
            .package_id(&a)
            .domain_name("search")
            .send()
            .await,
    );
    assert_eq!(c, "ConflictException");
    let (c, _) = failure(
        client
            .associate_packages()
            .domain_name("search")
            .package_list(
                PackageDetailsForAssociation::builder()
                    .package_id(&b)
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
    );
    assert_eq!(c, "ConflictException");
    // Another domain is independent.
    client
        .associate_package()
        .package_id(&b)
        .domain_name("logs")
        .send()
        .await
        .unwrap();
    let (c, message) = failure(client.delete_package().package_id(&a).send().await);
    assert_eq!(c, "ConflictException");
    assert!(message.contains("search"), "{message}");
    admin.advance_clock(3000).await.unwrap();
    client
        .associate_package()
        .package_id(&b)
        .domain_name("search")
        .send()
        .await
        .unwrap();
    admin.advance_clock(3000).await.unwrap();
    client
        .dissociate_package()
        .package_id(&a)
        .domain_name("search")
        .send()
        .await
        .unwrap();
    let (c, _) = failure(client.delete_package().package_id(&a).send().await);
    assert_eq!(c, "ConflictException", "still DISSOCIATING");
    admin.advance_clock(2000).await.unwrap();
    client.delete_package().package_id(&a).send().await.unwrap();

    // The log proves the domain never had two changes under way at once.
    let log = admin.log().await.unwrap();
    let mut busy_until: Option<u64> = None;
    for e in log
        .iter()
        .filter(|e| e.domain_name.as_deref() == Some("search") && e.association_status.is_some())
    {
        match e.association_status.as_deref().unwrap() {
            "ASSOCIATING" | "DISSOCIATING" => {
                assert!(busy_until.is_none(), "two changes at once: {e:?}");
                busy_until = Some(e.at_ms);
            }
            _ => busy_until = None,
        }
    }
}

#[tokio::test]
async fn package_and_domain_quotas() {
    let sim = sim_with(SimConfig {
        domain_quota: 3,
        ..SimConfig::default().package_quota(4)
    })
    .await;
    let client = client(&sim);
    let mut ids = Vec::new();
    for name in ["q-one", "q-two", "q-three", "q-four"] {
        ids.push(create_dictionary(&sim, &client, name).await);
    }
    let (c, message) = failure(
        client
            .create_package()
            .package_name("q-five")
            .package_type(PackageType::TxtDictionary)
            .package_source(source("pkgs", "q-one.txt"))
            .send()
            .await,
    );
    assert_eq!(c, "LimitExceededException", "{message}");
    // The quota is per (account, region): another region has its own count.
    let west = client_for(&sim, "eu-west-1", "test");
    west.create_package()
        .package_name("q-one")
        .package_type(PackageType::TxtDictionary)
        .package_source(source("pkgs", "q-one.txt"))
        .send()
        .await
        .expect("another region's quota is its own");
    sim.admin().advance_clock(3000).await.unwrap();
    let mut request = client.associate_packages().domain_name("search");
    for id in &ids {
        request = request.package_list(
            PackageDetailsForAssociation::builder()
                .package_id(id)
                .build()
                .unwrap(),
        );
    }
    let (c, _) = failure(request.send().await);
    assert_eq!(c, "LimitExceededException");
    // AWS-owned packages are not counted against the package quota, but are against a domain's.
    let mut request = client.associate_packages().domain_name("search");
    for id in [&ids[0], &ids[1], &"G100000001".to_string()] {
        request = request.package_list(
            PackageDetailsForAssociation::builder()
                .package_id(id)
                .build()
                .unwrap(),
        );
    }
    request.send().await.unwrap();
    sim.admin().advance_clock(3000).await.unwrap();
    let (c, _) = failure(
        client
            .associate_package()
            .package_id(&ids[2])
            .domain_name("search")
            .send()
            .await,
    );
    assert_eq!(c, "LimitExceededException");

    // Raised through the admin API, both quotas let the refused calls through.
    let admin = sim.admin();
    let start = Quotas {
        packages_per_region: 4,
        packages_per_domain: 3,
    };
    assert_eq!(admin.quotas().await.unwrap(), start);
    let raised = Quotas {
        packages_per_region: 5000,
        packages_per_domain: 4,
    };
    assert_eq!(admin.set_quotas(&raised).await.unwrap(), raised);
    create_dictionary(&sim, &client, "q-five").await;
    client
        .associate_package()
        .package_id(&ids[2])
        .domain_name("search")
        .send()
        .await
        .expect("within the raised domain quota");
    // A reset brings back the start-up quotas.
    admin.reset().await.unwrap();
    assert_eq!(admin.quotas().await.unwrap(), start);
}

#[tokio::test]
async fn aws_owned_packages_are_listed_and_undeletable() {
    let sim = sim().await;
    let client = client(&sim);
    let listed = client.describe_packages().send().await.unwrap();
    let aws: Vec<_> = listed
        .package_details_list()
        .iter()
        .filter(|p| p.package_id().unwrap().starts_with('G'))
        .collect();
    assert_eq!(aws.len(), 2);
    assert!(
        aws.iter()
            .all(|p| p.package_type() == Some(&PackageType::ZipPlugin) && status(p) == "AVAILABLE")
    );
    let (c, message) = failure(
        client
            .delete_package()
            .package_id("G100000001")
            .send()
            .await,
    );
    assert_eq!(c, "ValidationException");
    assert_eq!(
        message,
        "Operation not allowed. This package cannot be deleted."
    );
    let (c, _) = failure(
        client
            .update_package()
            .package_id("G100000001")
            .package_source(source("bkt", "k"))
            .send()
            .await,
    );
    assert_eq!(c, "ValidationException");
    // They can be associated like any available plugin.
    client
        .associate_package()
        .package_id("G100000002")
        .domain_name("search")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn scope_needs_vending() {
    let sim = sim().await;
    let client = client(&sim);
    let id = create_dictionary(&sim, &client, "not-vended").await;
    let (c, _) = failure(
        client
            .update_package_scope()
            .package_id(&id)
            .operation(PackageScopeOperationEnum::Add)
            .package_user_list("111122223333")
            .send()
            .await,
    );
    assert_eq!(c, "DisabledOperationException");
}

#[tokio::test]
async fn requests_without_sigv4_for_es_are_refused() {
    let sim = sim().await;
    let url = format!("{}/2021-01-01/packages/describe", sim.endpoint());
    let (status, headers, _) = raw(&url, "POST", None, "{}").await;
    assert_eq!(
        (
            status,
            headers.get("x-amzn-errortype").unwrap().to_str().unwrap()
        ),
        (403, "MissingAuthenticationTokenException")
    );
    let s3_scoped = AUTH.replace("/es/", "/s3/");
    let (status, headers, _) = raw(&url, "POST", Some(&s3_scoped), "{}").await;
    assert_eq!(
        (
            status,
            headers.get("x-amzn-errortype").unwrap().to_str().unwrap()
        ),
        (403, "InvalidSignatureException")
    );
    let (status, headers, _) = raw(&url, "POST", Some("Bearer token"), "{}").await;
    assert_eq!(
        (
            status,
            headers.get("x-amzn-errortype").unwrap().to_str().unwrap()
        ),
        (403, "IncompleteSignatureException")
    );
    let (status, _, _) = raw(&url, "POST", Some(AUTH), "{}").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn s3_effects_on_new_packages() {
    let sim = sim().await;
    let client = client(&sim);
    let admin = sim.admin();
    admin
        .put_object("pkgs", "no-descriptor.zip", plugin_zip(None, 10))
        .await
        .unwrap();
    admin
        .put_object("pkgs", "text.zip", b"PK but not really".to_vec())
        .await
        .unwrap();
    admin
        .put_object("pkgs", "latin1.txt", vec![b'c', b'a', b'f', 0xe9])
        .await
        .unwrap();
    let create = |name: &str, package_type: PackageType, key: &str| {
        let mut request = client
            .create_package()
            .package_name(name)
            .package_type(package_type.clone())
            .package_source(source("pkgs", key));
        if package_type == PackageType::ZipPlugin {
            request = request.engine_version("OpenSearch_2.15");
        }
        async move {
            request
                .send()
                .await
                .unwrap()
                .package_details
                .unwrap()
                .package_id
                .unwrap()
        }
    };
    let missing = create("missing", PackageType::TxtDictionary, "absent.txt").await;
    let no_descriptor = create("no-descriptor", PackageType::ZipPlugin, "no-descriptor.zip").await;
    let not_zip = create("not-zip", PackageType::ZipPlugin, "text.zip").await;
    let latin1 = create("latin-dict", PackageType::TxtDictionary, "latin1.txt").await;
    let config = create("any-config", PackageType::PackageConfig, "latin1.txt").await;
    admin.advance_clock(2000).await.unwrap();
    let copy_failed = describe(&client, &missing).await;
    assert_eq!(status(&copy_failed), "COPY_FAILED");
    assert!(
        copy_failed
            .error_details()
            .unwrap()
            .error_message()
            .unwrap()
            .contains("s3://pkgs/absent.txt")
    );
    assert_eq!(status(&describe(&client, &not_zip).await), "VALIDATING");
    admin.advance_clock(1000).await.unwrap();
    for (id, needle) in [
        (&no_descriptor, "plugin-descriptor.properties"),
        (&not_zip, "zip"),
        (&latin1, "UTF-8"),
    ] {
        let details = describe(&client, id).await;
        assert_eq!(status(&details), "VALIDATION_FAILED");
        let error = details.error_details().unwrap();
        assert!(error.error_type().is_some());
        assert!(
            error.error_message().unwrap().contains(needle),
            "{:?}",
            error
        );
        assert!(details.available_package_version().is_none());
    }
    assert_eq!(status(&describe(&client, &config).await), "AVAILABLE");
    // A failed package can be deleted and created again.
    client
        .delete_package()
        .package_id(&missing)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn s3_listener_serves_objects_with_md5_etags() {
    let sim = sim().await;
    let url = format!("{}/bucket/dir/object.txt", sim.s3_endpoint());
    let (status, headers, _) = raw(&url, "PUT", None, "hello").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("etag").unwrap(),
        "\"5d41402abc4b2a76b9719d911017c592\""
    );
    let (status, _, body) = raw(&url, "GET", None, "").await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    let (status, headers, _) = raw(&url, "HEAD", None, "").await;
    assert_eq!(
        (
            status,
            headers.get("content-length").unwrap().to_str().unwrap()
        ),
        (200, "5")
    );
    // The package API reads what the S3 listener stored.
    let client = client(&sim);
    let id = client
        .create_package()
        .package_name("from-s3")
        .package_type(PackageType::TxtDictionary)
        .package_source(source("bucket", "dir/object.txt"))
        .send()
        .await
        .unwrap()
        .package_details
        .unwrap()
        .package_id
        .unwrap();
    sim.admin().advance_clock(3000).await.unwrap();
    assert_eq!(status_of(&client, &id).await, "AVAILABLE");
    let (status, _, _) = raw(&url, "DELETE", None, "").await;
    assert_eq!(status, 204);
    let (status, _, body) = raw(&url, "GET", None, "").await;
    assert_eq!(status, 404);
    assert!(body.contains("NoSuchKey"));
}

async fn status_of(client: &aws_sdk_opensearch::Client, id: &str) -> String {
    status(&describe(client, id).await).to_string()
}
