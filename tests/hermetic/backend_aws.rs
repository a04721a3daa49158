//! The real backend against canned HTTP responses: the exact requests it sends (method, path,
//! query, JSON body), how it pages, how it reads answers, and how every error the service
//! returns becomes a `BackendError`.

use aws_sdk_opensearch::config::{Config, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use jiff::Timestamp;
use ospkg::backend::aws::AwsBackend;
use ospkg::backend::{
    AssociatePackage, BackendError, CreatePackage, DomainAssociation, DomainPackageStatus, Package,
    PackageBackend, PackageFilter, PackageStatus, PackageVersion, ServiceError, Source,
    UpdatePackage,
};
use ospkg::crd::{
    KeyStoreAccess, PackageConfiguration, PackageEncryption, PackageType, RequirementLevel,
};
use serde_json::{Value, json};

const REGION: &str = "eu-west-1";

/// One canned answer: status, headers, body.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn ok(body: Value) -> Answer {
    Answer {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
    }
}

/// A backend whose HTTP client answers with `answers` in order, and that client (to read the
/// requests back). Retries are off so each call is exactly one request.
fn backend(answers: Vec<Answer>) -> (AwsBackend, StaticReplayClient) {
    let events = answers
        .into_iter()
        .map(|answer| {
            let mut response = http::Response::builder().status(answer.status);
            for (name, value) in answer.headers {
                response = response.header(name, value);
            }
            ReplayEvent::new(
                http::Request::builder()
                    .uri("https://unused")
                    .body(SdkBody::empty())
                    .unwrap(),
                response.body(SdkBody::from(answer.body)).unwrap(),
            )
        })
        .collect();
    let client = StaticReplayClient::new(events);
    let conf = Config::builder()
        .behavior_version_latest()
        // Replaced per call: the requests must go to the call's region.
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .http_client(client.clone())
        .retry_config(RetryConfig::disabled())
        .build();
    (AwsBackend::from_conf(conf), client)
}

/// What the backend sent: method, host, path, query, JSON body (`None` when empty).
#[derive(Debug)]
struct Sent {
    method: String,
    host: String,
    path: String,
    query: Option<String>,
    body: Option<Value>,
    content_type: Option<String>,
}

fn sent(client: &StaticReplayClient) -> Vec<Sent> {
    client
        .actual_requests()
        .map(|request| {
            let uri: http::Uri = request.uri().parse().unwrap();
            let bytes = request.body().bytes().unwrap_or_default();
            Sent {
                method: request.method().to_owned(),
                host: uri.host().unwrap_or_default().to_owned(),
                path: uri.path().to_owned(),
                query: uri.query().map(str::to_owned),
                body: (!bytes.is_empty()).then(|| serde_json::from_slice(bytes).unwrap()),
                content_type: request.headers().get("content-type").map(str::to_owned),
            }
        })
        .collect()
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn source() -> Source {
    Source {
        bucket: "my-bucket".into(),
        key: "plugins/my-plugin.zip".into(),
    }
}

fn plugin_configuration() -> PackageConfiguration {
    PackageConfiguration {
        license_requirement: RequirementLevel::Required,
        configuration_requirement: RequirementLevel::Optional,
        license_filepath: Some("licenses/LICENSE.txt".into()),
        requires_restart_for_configuration_update: Some(true),
    }
}

fn kms() -> PackageEncryption {
    PackageEncryption {
        enabled: true,
        kms_key_identifier: Some("alias/packages".into()),
    }
}

fn package_details() -> Value {
    json!({
        "PackageID": "F111222333",
        "PackageName": "my-plugin",
        "PackageType": "ZIP-PLUGIN",
        "PackageDescription": "A plugin",
        "PackageStatus": "COPYING",
        "CreatedAt": 1.605225005466E9,
        "LastUpdatedAt": 1700000000,
        "EngineVersion": "OpenSearch_2.15",
        "PackageOwner": "123456789012",
        "PackageVendingOptions": {"VendingEnabled": true},
        "SomethingNew": {"ignored": true}
    })
}

#[tokio::test]
async fn create_package_sends_every_member_and_reads_the_details() {
    let (backend, client) = backend(vec![ok(json!({"PackageDetails": package_details()}))]);
    let package = backend
        .create_package(
            &own_scope(REGION),
            CreatePackage {
                name: "my-plugin".into(),
                package_type: PackageType::ZipPlugin,
                source: source(),
                description: Some("A plugin".into()),
                engine_version: Some("OpenSearch_2.15".into()),
                configuration: Some(plugin_configuration()),
                encryption: Some(kms()),
                vending_enabled: Some(true),
            },
        )
        .await
        .unwrap();

    let sent = sent(&client);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].host, "es.eu-west-1.amazonaws.com");
    assert_eq!(sent[0].path, "/2021-01-01/packages");
    assert_eq!(sent[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        sent[0].body,
        Some(json!({
            "PackageName": "my-plugin",
            "PackageType": "ZIP-PLUGIN",
            "PackageSource": {"S3BucketName": "my-bucket", "S3Key": "plugins/my-plugin.zip"},
            "PackageDescription": "A plugin",
            "EngineVersion": "OpenSearch_2.15",
            "PackageConfiguration": {
                "LicenseRequirement": "REQUIRED",
                "ConfigurationRequirement": "OPTIONAL",
                "LicenseFilepath": "licenses/LICENSE.txt",
                "RequiresRestartForConfigurationUpdate": true
            },
            "PackageEncryptionOptions": {
                "EncryptionEnabled": true,
                "KmsKeyIdentifier": "alias/packages"
            },
            "PackageVendingOptions": {"VendingEnabled": true}
        }))
    );

    assert_eq!(
        package,
        Package {
            id: "F111222333".into(),
            name: "my-plugin".into(),
            package_type: "ZIP-PLUGIN".into(),
            status: PackageStatus::Copying,
            description: Some("A plugin".into()),
            available_version: None,
            engine_version: Some("OpenSearch_2.15".into()),
            error: None,
            created_at: Some(Timestamp::from_millisecond(1_605_225_005_466).unwrap()),
            last_updated_at: Some(ts(1_700_000_000)),
            allow_listed_users: None,
        }
    );
}

#[tokio::test]
async fn create_package_sends_only_what_is_set() {
    let (backend, client) = backend(vec![ok(json!({"PackageDetails": {
        "PackageID": "F1", "PackageName": "synonyms", "PackageType": "TXT-DICTIONARY",
        "PackageStatus": "AVAILABLE", "AvailablePackageVersion": "v1"
    }}))]);
    let package = backend
        .create_package(
            &own_scope(REGION),
            CreatePackage {
                name: "synonyms".into(),
                package_type: PackageType::TxtDictionary,
                source: Source {
                    bucket: "dicts".into(),
                    key: "synonyms.txt".into(),
                },
                description: None,
                engine_version: None,
                configuration: None,
                encryption: None,
                vending_enabled: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        sent(&client)[0].body,
        Some(json!({
            "PackageName": "synonyms",
            "PackageType": "TXT-DICTIONARY",
            "PackageSource": {"S3BucketName": "dicts", "S3Key": "synonyms.txt"}
        }))
    );
    assert_eq!(package.status, PackageStatus::Available);
    assert_eq!(package.available_version.as_deref(), Some("v1"));
}

#[tokio::test]
async fn update_package_sends_commit_message_configuration_and_encryption() {
    let mut details = package_details();
    details["PackageStatus"] = json!("VALIDATION_FAILED");
    details["AvailablePackageVersion"] = json!("v1");
    details["ErrorDetails"] = json!({
        "ErrorType": "PluginValidationFailure",
        "ErrorMessage": "PluginValidationFailureReason : not supported"
    });
    let (backend, client) = backend(vec![ok(json!({"PackageDetails": details}))]);
    let package = backend
        .update_package(
            &own_scope(REGION),
            UpdatePackage {
                package_id: "F111222333".into(),
                source: source(),
                description: Some("A better plugin".into()),
                commit_message: "Fix the build [ospkg:0a1b2c3d]".into(),
                configuration: Some(plugin_configuration()),
                encryption: Some(PackageEncryption {
                    enabled: false,
                    kms_key_identifier: None,
                }),
            },
        )
        .await
        .unwrap();

    let sent = sent(&client);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path, "/2021-01-01/packages/update");
    assert_eq!(
        sent[0].body,
        Some(json!({
            "PackageID": "F111222333",
            "PackageSource": {"S3BucketName": "my-bucket", "S3Key": "plugins/my-plugin.zip"},
            "PackageDescription": "A better plugin",
            "CommitMessage": "Fix the build [ospkg:0a1b2c3d]",
            "PackageConfiguration": {
                "LicenseRequirement": "REQUIRED",
                "ConfigurationRequirement": "OPTIONAL",
                "LicenseFilepath": "licenses/LICENSE.txt",
                "RequiresRestartForConfigurationUpdate": true
            },
            "PackageEncryptionOptions": {"EncryptionEnabled": false}
        }))
    );
    assert_eq!(package.status, PackageStatus::ValidationFailed);
    assert_eq!(
        package.error,
        Some(ServiceError {
            error_type: Some("PluginValidationFailure".into()),
            error_message: Some("PluginValidationFailureReason : not supported".into()),
        })
    );
}

#[tokio::test]
async fn describe_packages_filters_by_id_and_by_name() {
    let (backend, client) = backend(vec![
        ok(json!({"PackageDetailsList": [package_details()]})),
        ok(json!({"PackageDetailsList": []})),
    ]);
    let by_id = backend
        .describe_packages(&own_scope(REGION), PackageFilter::Id("F111222333".into()))
        .await
        .unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].id, "F111222333");
    // An empty answer is not an error: the caller decides what a missing package means.
    let by_name = backend
        .describe_packages(
            &own_scope(REGION),
            PackageFilter::Name("nothing-here".into()),
        )
        .await
        .unwrap();
    assert!(by_name.is_empty());

    let sent = sent(&client);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path, "/2021-01-01/packages/describe");
    assert_eq!(
        sent[0].body,
        Some(json!({
            "Filters": [{"Name": "PackageID", "Value": ["F111222333"]}],
            "MaxResults": 100
        }))
    );
    assert_eq!(
        sent[1].body,
        Some(json!({
            "Filters": [{"Name": "PackageName", "Value": ["nothing-here"]}],
            "MaxResults": 100
        }))
    );
}

#[tokio::test]
async fn describe_packages_reads_every_page() {
    let (backend, client) = backend(vec![
        ok(json!({
            "PackageDetailsList": [{
                "PackageID": "G123456789", "PackageName": "analysis-icu",
                "PackageType": "ZIP-PLUGIN", "PackageStatus": "AVAILABLE",
                "AvailablePackageVersion": "v1", "PackageOwner": "AWS"
            }],
            "NextToken": "page-2"
        })),
        ok(json!({
            "PackageDetailsList": [{
                "PackageID": "F1", "PackageName": "synonyms", "PackageType": "TXT-DICTIONARY",
                "PackageStatus": "SOMETHING_NEW",
                "AllowListedUserList": ["111122223333", "GLOBAL"]
            }]
        })),
    ]);
    let packages = backend
        .describe_packages(&own_scope(REGION), PackageFilter::All)
        .await
        .unwrap();

    let sent = sent(&client);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, Some(json!({"MaxResults": 100})));
    assert_eq!(
        sent[1].body,
        Some(json!({"MaxResults": 100, "NextToken": "page-2"}))
    );

    assert_eq!(packages.len(), 2);
    assert!(packages[0].is_aws_owned());
    assert_eq!(packages[0].allow_listed_users, None);
    assert_eq!(
        packages[1].status,
        PackageStatus::Other("SOMETHING_NEW".into())
    );
    assert_eq!(
        packages[1].allow_listed_users,
        Some(vec!["111122223333".into(), "GLOBAL".into()])
    );
}

/// A service that hands back the token it was asked with would keep a listing paging (and
/// spending the region's rate limit) forever: the listing stops and fails, to be retried.
#[tokio::test]
async fn a_repeated_page_token_ends_the_listing() {
    let page = |token: &str| {
        ok(json!({
            "PackageDetailsList": [{
                "PackageID": "F1", "PackageName": "synonyms", "PackageType": "TXT-DICTIONARY",
                "PackageStatus": "AVAILABLE"
            }],
            "NextToken": token
        }))
    };
    let (backend, client) = backend(vec![page("again"), page("again"), page("again")]);
    let err = backend
        .describe_packages(&own_scope(REGION), PackageFilter::All)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Transient(_)), "{err:?}");
    assert!(err.message().contains("again"), "{err}");
    assert_eq!(sent(&client).len(), 2);
}

#[tokio::test]
async fn version_history_pages_with_query_parameters_and_is_newest_first() {
    let (backend, client) = backend(vec![
        ok(json!({
            "PackageID": "F1",
            "PackageVersionHistoryList": [
                {"PackageVersion": "v1", "CreatedAt": 1700000000},
                {"PackageVersion": "v10", "CommitMessage": "tenth", "CreatedAt": 1700000900}
            ],
            "NextToken": "abc/def=="
        })),
        ok(json!({
            "PackageID": "F1",
            "PackageVersionHistoryList": [
                {"PackageVersion": "v2", "CommitMessage": "second [ospkg:00ff00ff]", "CreatedAt": 1700000100.5}
            ]
        })),
    ]);
    let history = backend
        .package_version_history(&own_scope(REGION), "F1")
        .await
        .unwrap();

    let sent = sent(&client);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].method, "GET");
    assert_eq!(sent[0].path, "/2021-01-01/packages/F1/history");
    assert_eq!(sent[0].query.as_deref(), Some("maxResults=100"));
    assert_eq!(sent[0].body, None);
    assert_eq!(
        sent[1].query.as_deref(),
        Some("maxResults=100&nextToken=abc%2Fdef%3D%3D")
    );

    assert_eq!(
        history,
        vec![
            PackageVersion {
                version: "v10".into(),
                commit_message: Some("tenth".into()),
                created_at: Some(ts(1_700_000_900)),
            },
            PackageVersion {
                version: "v2".into(),
                commit_message: Some("second [ospkg:00ff00ff]".into()),
                created_at: Some(Timestamp::from_millisecond(1_700_000_100_500).unwrap()),
            },
            PackageVersion {
                version: "v1".into(),
                commit_message: None,
                created_at: Some(ts(1_700_000_000)),
            },
        ]
    );
}

fn domain_details(domain: &str, status: &str) -> Value {
    json!({
        "PackageID": "F1",
        "PackageName": "synonyms",
        "PackageType": "TXT-DICTIONARY",
        "LastUpdated": 1700000500,
        "DomainName": domain,
        "DomainPackageStatus": status,
        "PackageVersion": "v2",
        "ReferencePath": "analyzers/F1"
    })
}

#[tokio::test]
async fn associate_package_sends_prerequisites_and_key_store_access() {
    let mut details = domain_details("search", "ASSOCIATING");
    details["PrerequisitePackageIDList"] = json!(["F2", "F3"]);
    let (backend, client) = backend(vec![ok(json!({"DomainPackageDetails": details}))]);
    let association = backend
        .associate_package(
            &own_scope(REGION),
            AssociatePackage {
                package_id: "F1".into(),
                domain_name: "search".into(),
                prerequisites: vec!["F2".into(), "F3".into()],
                key_store_access: Some(KeyStoreAccess {
                    enabled: true,
                    key_access_role_arn: Some("arn:aws:iam::123456789012:role/keys".into()),
                }),
            },
        )
        .await
        .unwrap();

    let sent = sent(&client);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path, "/2021-01-01/packages/associate/F1/search");
    assert_eq!(
        sent[0].body,
        Some(json!({
            "PrerequisitePackageIDList": ["F2", "F3"],
            "AssociationConfiguration": {
                "KeyStoreAccessOption": {
                    "KeyAccessRoleArn": "arn:aws:iam::123456789012:role/keys",
                    "KeyStoreAccessEnabled": true
                }
            }
        }))
    );
    assert_eq!(
        association,
        DomainAssociation {
            domain_name: "search".into(),
            package_id: "F1".into(),
            status: DomainPackageStatus::Associating,
            package_version: Some("v2".into()),
            reference_path: Some("analyzers/F1".into()),
            last_updated: Some(ts(1_700_000_500)),
            error: None,
        }
    );
}

#[tokio::test]
async fn associate_package_without_options_sends_an_empty_object() {
    let (backend, client) = backend(vec![ok(
        json!({"DomainPackageDetails": domain_details("search", "ACTIVE")}),
    )]);
    let association = backend
        .associate_package(
            &own_scope(REGION),
            AssociatePackage {
                package_id: "F1".into(),
                domain_name: "search".into(),
                prerequisites: vec![],
                key_store_access: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(sent(&client)[0].body, Some(json!({})));
    assert_eq!(association.status, DomainPackageStatus::Active);
}

#[tokio::test]
async fn dissociate_and_delete_use_their_paths_and_send_no_body() {
    let mut deleting = package_details();
    deleting["PackageStatus"] = json!("DELETING");
    let (backend, client) = backend(vec![
        ok(json!({"DomainPackageDetails": domain_details("search", "DISSOCIATING")})),
        ok(json!({"PackageDetails": deleting})),
    ]);
    let association = backend
        .dissociate_package(&own_scope(REGION), "F1", "search")
        .await
        .unwrap();
    assert_eq!(association.status, DomainPackageStatus::Dissociating);
    let package = backend
        .delete_package(&own_scope(REGION), "F111222333")
        .await
        .unwrap();
    assert_eq!(package.status, PackageStatus::Deleting);

    let sent = sent(&client);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path, "/2021-01-01/packages/dissociate/F1/search");
    assert_eq!(sent[0].body, None);
    assert_eq!(sent[1].method, "DELETE");
    assert_eq!(sent[1].path, "/2021-01-01/packages/F111222333");
    assert_eq!(sent[1].body, None);
}

#[tokio::test]
async fn list_domains_for_package_reads_every_page() {
    let mut failed = domain_details("logs", "ASSOCIATION_FAILED");
    failed["ErrorDetails"] = json!({"ErrorType": "AssociationFailure", "ErrorMessage": "boom"});
    let (backend, client) = backend(vec![
        ok(json!({
            "DomainPackageDetailsList": [domain_details("search", "ACTIVE")],
            "NextToken": "t2"
        })),
        ok(json!({"DomainPackageDetailsList": [failed]})),
    ]);
    let associations = backend
        .list_domains_for_package(&own_scope(REGION), "F1")
        .await
        .unwrap();

    let sent = sent(&client);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].method, "GET");
    assert_eq!(sent[0].path, "/2021-01-01/packages/F1/domains");
    assert_eq!(sent[0].query.as_deref(), Some("maxResults=100"));
    assert_eq!(
        sent[1].query.as_deref(),
        Some("maxResults=100&nextToken=t2")
    );

    let domains: Vec<(&str, &DomainPackageStatus)> = associations
        .iter()
        .map(|a| (a.domain_name.as_str(), &a.status))
        .collect();
    assert_eq!(
        domains,
        [
            ("search", &DomainPackageStatus::Active),
            ("logs", &DomainPackageStatus::AssociationFailed)
        ]
    );
    assert_eq!(
        associations[1].error,
        Some(ServiceError {
            error_type: Some("AssociationFailure".into()),
            error_message: Some("boom".into()),
        })
    );
}

#[tokio::test]
async fn update_package_scope_overrides_the_list() {
    let (backend, client) = backend(vec![
        ok(json!({
            "PackageID": "F1",
            "Operation": "OVERRIDE",
            "PackageUserList": ["111122223333"]
        })),
        ok(json!({"PackageID": "F1", "Operation": "OVERRIDE", "PackageUserList": []})),
    ]);
    let users = backend
        .update_package_scope(&own_scope(REGION), "F1", vec!["111122223333".into()])
        .await
        .unwrap();
    assert_eq!(users, vec!["111122223333".to_owned()]);
    // An empty list withdraws every share; it must still be sent.
    let users = backend
        .update_package_scope(&own_scope(REGION), "F1", vec![])
        .await
        .unwrap();
    assert!(users.is_empty());

    let sent = sent(&client);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path, "/2021-01-01/packages/updateScope");
    assert_eq!(
        sent[0].body,
        Some(json!({
            "PackageID": "F1",
            "Operation": "OVERRIDE",
            "PackageUserList": ["111122223333"]
        }))
    );
    assert_eq!(
        sent[1].body,
        Some(json!({"PackageID": "F1", "Operation": "OVERRIDE", "PackageUserList": []}))
    );
}

#[tokio::test]
async fn each_call_goes_to_its_own_region() {
    let (backend, client) = backend(vec![
        ok(json!({"PackageDetailsList": []})),
        ok(json!({"PackageDetailsList": []})),
        ok(json!({"PackageDetailsList": []})),
    ]);
    for region in ["eu-west-1", "ap-southeast-2", "eu-west-1"] {
        backend
            .describe_packages(&own_scope(region), PackageFilter::All)
            .await
            .unwrap();
    }
    let hosts: Vec<String> = sent(&client).into_iter().map(|s| s.host).collect();
    assert_eq!(
        hosts,
        [
            "es.eu-west-1.amazonaws.com",
            "es.ap-southeast-2.amazonaws.com",
            "es.eu-west-1.amazonaws.com"
        ]
    );
    let authorization: Vec<String> = client
        .actual_requests()
        .map(|r| {
            r.headers()
                .get("authorization")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(authorization[1].contains("/ap-southeast-2/es/aws4_request"));
}

/// An error answer: status, optional `x-amzn-ErrorType` header, body.
fn error(status: u16, header: Option<&str>, body: Value) -> Answer {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(code) = header {
        headers.push(("x-amzn-ErrorType", code.to_owned()));
    }
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Both ways the code may arrive: header and body together (as the simulator sends it),
/// and the service's own header-with-URL and bare body.
fn both(status: u16, code: &str, message: &str) -> Answer {
    error(
        status,
        Some(code),
        json!({"__type": code, "message": message}),
    )
}

#[tokio::test]
async fn every_error_code_maps_to_its_variant() {
    type Variant = fn(String) -> BackendError;
    let cases: Vec<(&str, Answer, Variant, &str)> = vec![
        (
            "ResourceNotFoundException (409, header and body)",
            both(409, "ResourceNotFoundException", "Package F9 not found"),
            BackendError::NotFound,
            "Package F9 not found",
        ),
        (
            "ResourceNotFoundException (400, body __type only)",
            error(
                400,
                None,
                json!({"__type": "ResourceNotFoundException", "message": "no such domain"}),
            ),
            BackendError::NotFound,
            "no such domain",
        ),
        (
            "ValidationException saying Package not found",
            error(
                400,
                Some("ValidationException:http://internal.amazon.com/coral/com.amazonaws.es/"),
                json!({"message": "Package not found: F123456789"}),
            ),
            BackendError::NotFound,
            "Package not found: F123456789",
        ),
        (
            "ValidationException, other message",
            both(
                400,
                "ValidationException",
                "Operation not allowed. This package cannot be deleted.",
            ),
            BackendError::Invalid,
            "Operation not allowed. This package cannot be deleted.",
        ),
        (
            "InvalidTypeException",
            both(409, "InvalidTypeException", "bad type"),
            BackendError::Invalid,
            "bad type",
        ),
        (
            "DisabledOperationException",
            both(409, "DisabledOperationException", "vending is off"),
            BackendError::Invalid,
            "vending is off",
        ),
        (
            "ResourceAlreadyExistsException",
            both(409, "ResourceAlreadyExistsException", "name taken"),
            BackendError::AlreadyExists,
            "name taken",
        ),
        (
            "ConflictException",
            both(409, "ConflictException", "resource currently in use"),
            BackendError::Conflict,
            "resource currently in use",
        ),
        (
            "AccessDeniedException",
            error(
                403,
                Some("AccessDeniedException"),
                json!({"Message": "not authorized to perform es:DeletePackage"}),
            ),
            BackendError::AccessDenied,
            "not authorized to perform es:DeletePackage",
        ),
        (
            "LimitExceededException",
            both(409, "LimitExceededException", "25 packages per region"),
            BackendError::LimitExceeded,
            "25 packages per region",
        ),
        (
            "ThrottlingException (400, as the service sends it)",
            error(
                400,
                Some("ThrottlingException:http://internal.amazon.com/coral/"),
                json!({"message": "Rate exceeded"}),
            ),
            BackendError::Throttled,
            "Rate exceeded",
        ),
        (
            "TooManyRequestsException",
            both(429, "TooManyRequestsException", "slow down"),
            BackendError::Throttled,
            "slow down",
        ),
        (
            "RequestLimitExceeded (body code only)",
            error(
                400,
                None,
                json!({"code": "RequestLimitExceeded", "message": "request limit"}),
            ),
            BackendError::Throttled,
            "request limit",
        ),
        (
            "InternalException",
            both(500, "InternalException", "internal failure"),
            BackendError::Transient,
            "internal failure",
        ),
        (
            "BaseException (no status in the model)",
            both(400, "BaseException", "base"),
            BackendError::Transient,
            "base",
        ),
        (
            "aws#-prefixed __type",
            error(
                409,
                None,
                json!({"__type": "aws#ConflictException", "message": "busy"}),
            ),
            BackendError::Conflict,
            "busy",
        ),
        (
            "503 without a body",
            Answer {
                status: 503,
                headers: vec![],
                body: String::new(),
            },
            BackendError::Transient,
            "HTTP 503 without an error code",
        ),
        (
            "502 with an HTML page",
            Answer {
                status: 502,
                headers: vec![("content-type", "text/html".into())],
                body: "<html>Bad Gateway</html>".into(),
            },
            BackendError::Transient,
            "",
        ),
    ];
    for (name, answer, variant, message) in cases {
        let (backend, _client) = backend(vec![answer]);
        let err = backend
            .delete_package(&own_scope(REGION), "F123456789")
            .await
            .unwrap_err();
        if message.is_empty() {
            assert_eq!(
                std::mem::discriminant(&err),
                std::mem::discriminant(&variant(String::new())),
                "{name}: {err:?}"
            );
        } else {
            assert_eq!(err, variant(message.to_owned()), "{name}");
        }
    }
}

#[tokio::test]
async fn errors_map_the_same_on_every_operation() {
    // Paginated, GET and POST operations all go through the same mapping.
    let (backend, _client) = backend(vec![
        both(409, "ResourceNotFoundException", "gone"),
        both(409, "ResourceNotFoundException", "gone"),
        both(400, "ValidationException", "Package not found"),
        both(409, "ConflictException", "busy"),
    ]);
    assert_eq!(
        backend
            .package_version_history(&own_scope(REGION), "F1")
            .await,
        Err(BackendError::NotFound("gone".into()))
    );
    assert_eq!(
        backend
            .list_domains_for_package(&own_scope(REGION), "F1")
            .await,
        Err(BackendError::NotFound("gone".into()))
    );
    assert_eq!(
        backend
            .describe_packages(&own_scope(REGION), PackageFilter::Id("F1".into()))
            .await,
        Err(BackendError::NotFound("Package not found".into()))
    );
    assert_eq!(
        backend
            .dissociate_package(&own_scope(REGION), "F1", "search")
            .await,
        Err(BackendError::Conflict("busy".into()))
    );
}

#[tokio::test]
async fn an_error_on_a_later_page_fails_the_whole_listing() {
    let (backend, client) = backend(vec![
        ok(json!({"PackageDetailsList": [package_details()], "NextToken": "p2"})),
        both(400, "ThrottlingException", "Rate exceeded"),
    ]);
    assert_eq!(
        backend
            .describe_packages(&own_scope(REGION), PackageFilter::All)
            .await,
        Err(BackendError::Throttled("Rate exceeded".into()))
    );
    assert_eq!(sent(&client).len(), 2);
}

#[tokio::test]
async fn unreadable_answers_are_transient() {
    let (backend, _client) = backend(vec![
        Answer {
            status: 200,
            headers: vec![],
            body: "{not json".into(),
        },
        // String timestamps break the SDK's deserializer.
        ok(json!({"PackageDetails": {"PackageID": "F1", "CreatedAt": "2024-01-01T00:00:00Z"}})),
        ok(json!({})),
    ]);
    let err = backend
        .delete_package(&own_scope(REGION), "F1")
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Transient(_)), "{err:?}");
    let err = backend
        .delete_package(&own_scope(REGION), "F1")
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Transient(_)), "{err:?}");
    // A success without the details the operator needs.
    assert_eq!(
        backend.delete_package(&own_scope(REGION), "F1").await,
        Err(BackendError::Transient(
            "DeletePackage response has no PackageDetails".into()
        ))
    );
}

#[tokio::test]
async fn connection_failures_are_unanswered() {
    // The replay client has nothing to answer with: the request never gets a response, so a
    // change it carried may still take effect.
    let (backend, _client) = backend(vec![]);
    let err = backend
        .describe_packages(&own_scope(REGION), PackageFilter::All)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unanswered(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(!err.proves_no_effect());
}

#[tokio::test]
async fn a_request_that_cannot_be_built_is_invalid_and_not_sent() {
    let (backend, client) = backend(vec![]);
    let err = backend
        .delete_package(&own_scope(REGION), "")
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");
    assert_eq!(sent(&client).len(), 0);
}

#[tokio::test]
async fn errors_never_carry_the_credentials() {
    let (denying, _client) = backend(vec![both(403, "AccessDeniedException", "denied")]);
    let err = denying
        .delete_package(&own_scope(REGION), "F1")
        .await
        .unwrap_err();
    let (unreachable, _client) = backend(vec![]);
    let transient = unreachable
        .delete_package(&own_scope(REGION), "F1")
        .await
        .unwrap_err();
    for text in [
        err.to_string(),
        transient.to_string(),
        format!("{denying:?}"),
    ] {
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("AKIDTEST"), "{text}");
    }
}

/// The operator's own identity in the simulator's default account, in `region`.
fn own_scope(region: &str) -> ospkg::backend::Scope {
    ospkg::backend::Scope::own("123456789012", region)
}
