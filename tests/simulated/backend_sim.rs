//! The real backend end to end against the simulator: real HTTP, real SigV4 signing (the
//! simulator takes the region from the credential scope), the simulator's wire format and
//! errors. The simulator's clock is manual, so every state change is driven by the test.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::support::own_scope;
use ospkg::backend::aws::AwsBackend;
use ospkg::backend::metered::Metered;
use ospkg::backend::{
    AssociatePackage, BackendError, CreatePackage, DomainPackageStatus, PackageBackend,
    PackageFilter, PackageStatus, Source, UpdatePackage,
};
use ospkg::crd::PackageType;
use ospkg::metrics::Metrics;
use ospkg_sim::{FaultConfig, OperationFaults, RunningSim, ScriptedFault, SimConfig};

const REGION: &str = "eu-west-1";
const BUCKET: &str = "dictionaries";

async fn start() -> (RunningSim, AwsBackend) {
    start_with(SimConfig::default()).await
}

async fn start_with(config: SimConfig) -> (RunningSim, AwsBackend) {
    let sim = ospkg_sim::start(
        config
            .domain("search", "OpenSearch_2.15")
            .domain("logs", "OpenSearch_2.15")
            .manual_clock(),
    )
    .await
    .unwrap();
    let backend = AwsBackend::for_endpoint(&sim.endpoint()).await;
    (sim, backend)
}

fn dictionary(name: &str, key: &str) -> CreatePackage {
    CreatePackage {
        name: name.to_owned(),
        package_type: PackageType::TxtDictionary,
        source: Source {
            bucket: BUCKET.into(),
            key: key.to_owned(),
        },
        description: Some("Synonyms for search".into()),
        engine_version: None,
        configuration: None,
        encryption: None,
        vending_enabled: None,
    }
}

/// The package with `id` as DescribePackages reports it now.
async fn describe(backend: &AwsBackend, id: &str) -> ospkg::backend::Package {
    let mut found = backend
        .describe_packages(&own_scope(REGION), PackageFilter::Id(id.to_owned()))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

#[tokio::test]
async fn package_lifecycle_end_to_end() {
    let (sim, backend) = start().await;
    let admin = sim.admin();
    admin
        .put_object(BUCKET, "synonyms.txt", "car, automobile\n")
        .await
        .unwrap();

    // Create: COPYING, then VALIDATING, then AVAILABLE at v1.
    let created = backend
        .create_package(&own_scope(REGION), dictionary("synonyms", "synonyms.txt"))
        .await
        .unwrap();
    assert!(created.id.starts_with('F'), "{created:?}");
    assert_eq!(created.name, "synonyms");
    assert_eq!(created.package_type, "TXT-DICTIONARY");
    assert_eq!(created.status, PackageStatus::Copying);
    assert_eq!(created.description.as_deref(), Some("Synonyms for search"));
    assert!(created.created_at.is_some());
    let id = created.id.clone();

    let durations = admin.clock().await.unwrap().durations.unwrap();
    admin.advance_clock(durations.copying_ms).await.unwrap();
    assert_eq!(
        describe(&backend, &id).await.status,
        PackageStatus::Validating
    );
    admin.advance_clock(durations.validating_ms).await.unwrap();
    let available = describe(&backend, &id).await;
    assert_eq!(available.status, PackageStatus::Available);
    assert_eq!(available.available_version.as_deref(), Some("v1"));
    assert_eq!(available.error, None);

    // By name finds the same package.
    let by_name = backend
        .describe_packages(&own_scope(REGION), PackageFilter::Name("synonyms".into()))
        .await
        .unwrap();
    assert_eq!(by_name, vec![available.clone()]);

    // Update: a new version carrying the commit message, newest first in the history.
    admin
        .put_object(BUCKET, "synonyms-2.txt", "car, automobile, motorcar\n")
        .await
        .unwrap();
    let updated = backend
        .update_package(
            &own_scope(REGION),
            UpdatePackage {
                package_id: id.clone(),
                source: Source {
                    bucket: BUCKET.into(),
                    key: "synonyms-2.txt".into(),
                },
                description: Some("More synonyms".into()),
                commit_message: "Add motorcar [ospkg:0a1b2c3d]".into(),
                configuration: None,
                encryption: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.status, PackageStatus::Copying);
    admin
        .advance_clock(durations.copying_ms + durations.validating_ms)
        .await
        .unwrap();
    let v2 = describe(&backend, &id).await;
    assert_eq!(v2.status, PackageStatus::Available);
    assert_eq!(v2.available_version.as_deref(), Some("v2"));
    assert_eq!(v2.description.as_deref(), Some("More synonyms"));

    let history = backend
        .package_version_history(&own_scope(REGION), &id)
        .await
        .unwrap();
    let versions: Vec<(&str, Option<&str>)> = history
        .iter()
        .map(|v| (v.version.as_str(), v.commit_message.as_deref()))
        .collect();
    assert_eq!(versions[0], ("v2", Some("Add motorcar [ospkg:0a1b2c3d]")));
    assert_eq!(versions[1].0, "v1");
    assert_eq!(versions.len(), 2);
    assert!(history[0].created_at >= history[1].created_at);

    // Associate: ASSOCIATING, then ACTIVE on the newest version.
    let associating = backend
        .associate_package(
            &own_scope(REGION),
            AssociatePackage {
                package_id: id.clone(),
                domain_name: "search".into(),
                prerequisites: vec![],
                key_store_access: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(associating.status, DomainPackageStatus::Associating);
    assert_eq!(associating.domain_name, "search");
    assert_eq!(associating.package_id, id);
    admin.advance_clock(durations.associating_ms).await.unwrap();
    let domains = backend
        .list_domains_for_package(&own_scope(REGION), &id)
        .await
        .unwrap();
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0].status, DomainPackageStatus::Active);
    assert_eq!(domains[0].package_version.as_deref(), Some("v2"));
    assert_eq!(
        domains[0].reference_path.as_deref(),
        Some(format!("analyzers/{id}").as_str())
    );
    assert!(domains[0].last_updated.is_some());

    // No delete while associated.
    let err = backend
        .delete_package(&own_scope(REGION), &id)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Conflict(_)), "{err:?}");

    // Dissociate: DISSOCIATING, then gone.
    let leaving = backend
        .dissociate_package(&own_scope(REGION), &id, "search")
        .await
        .unwrap();
    assert_eq!(leaving.status, DomainPackageStatus::Dissociating);
    admin
        .advance_clock(durations.dissociating_ms)
        .await
        .unwrap();
    assert!(
        backend
            .list_domains_for_package(&own_scope(REGION), &id)
            .await
            .unwrap()
            .is_empty()
    );

    // Delete: DELETING, then not found.
    let deleting = backend
        .delete_package(&own_scope(REGION), &id)
        .await
        .unwrap();
    assert_eq!(deleting.status, PackageStatus::Deleting);
    admin.advance_clock(durations.deleting_ms).await.unwrap();
    match backend
        .describe_packages(&own_scope(REGION), PackageFilter::Id(id.clone()))
        .await
    {
        Ok(found) => assert!(found.is_empty(), "{found:?}"),
        Err(err) => assert!(matches!(err, BackendError::NotFound(_)), "{err:?}"),
    }
    let err = backend
        .package_version_history(&own_scope(REGION), &id)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");

    let calls: BTreeMap<String, u64> = admin.calls().await.unwrap();
    assert_eq!(calls.get("CreatePackage"), Some(&1));
    assert_eq!(calls.get("UpdatePackage"), Some(&1));
}

#[tokio::test]
async fn service_errors_become_backend_errors() {
    let (sim, backend) = start().await;
    let admin = sim.admin();
    admin.put_object(BUCKET, "a.txt", "a\n").await.unwrap();

    // Unknown ids.
    for err in [
        backend
            .delete_package(&own_scope(REGION), "F999999999")
            .await
            .unwrap_err(),
        backend
            .package_version_history(&own_scope(REGION), "F999999999")
            .await
            .unwrap_err(),
        backend
            .list_domains_for_package(&own_scope(REGION), "F999999999")
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");
        assert!(err.message().contains("F999999999"), "{err:?}");
    }

    // Duplicate name.
    let first = backend
        .create_package(&own_scope(REGION), dictionary("words", "a.txt"))
        .await
        .unwrap();
    let err = backend
        .create_package(&own_scope(REGION), dictionary("words", "a.txt"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::AlreadyExists(_)), "{err:?}");

    // The model's other error types, as the service would send them.
    admin
        .script_fault(
            "CreatePackage",
            ScriptedFault::InvalidType {
                message: "The package type does not match the file".into(),
            },
        )
        .await
        .unwrap();
    let err = backend
        .create_package(&own_scope(REGION), dictionary("typed", "a.txt"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");
    assert!(err.message().contains("does not match"), "{err:?}");
    admin
        .script_fault(
            "GetPackageVersionHistory",
            ScriptedFault::Base {
                message: "An error occurred".into(),
            },
        )
        .await
        .unwrap();
    let err = backend
        .package_version_history(&own_scope(REGION), &first.id)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Transient(_)), "{err:?}");

    // A plugin without an engine version is rejected with the service's message.
    let mut plugin = dictionary("plugin", "a.txt");
    plugin.package_type = PackageType::ZipPlugin;
    let err = backend
        .create_package(&own_scope(REGION), plugin)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");
    assert!(err.message().contains("EngineVersion"), "{err:?}");

    // Not AVAILABLE yet: no association; unknown domain: not found.
    let err = backend
        .associate_package(
            &own_scope(REGION),
            AssociatePackage {
                package_id: first.id.clone(),
                domain_name: "search".into(),
                prerequisites: vec![],
                key_store_access: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");
    let err = backend
        .associate_package(
            &own_scope(REGION),
            AssociatePackage {
                package_id: first.id.clone(),
                domain_name: "nowhere".into(),
                prerequisites: vec![],
                key_store_access: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");

    // Injected throttling and internal errors.
    let mut faults = FaultConfig::default();
    faults.operations.insert(
        "DescribePackages".into(),
        OperationFaults {
            throttle: 1.0,
            ..OperationFaults::default()
        },
    );
    faults.operations.insert(
        "GetPackageVersionHistory".into(),
        OperationFaults {
            internal: 1.0,
            ..OperationFaults::default()
        },
    );
    faults.operations.insert(
        "ListDomainsForPackage".into(),
        OperationFaults {
            unavailable: 1.0,
            ..OperationFaults::default()
        },
    );
    admin.set_faults(&faults).await.unwrap();
    let err = backend
        .describe_packages(&own_scope(REGION), PackageFilter::All)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Throttled(_)), "{err:?}");
    let err = backend
        .package_version_history(&own_scope(REGION), &first.id)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Transient(_)), "{err:?}");
    let err = backend
        .list_domains_for_package(&own_scope(REGION), &first.id)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn regions_are_separate_and_scope_overrides_the_allow_list() {
    let (sim, backend) = start().await;
    let admin = sim.admin();
    admin.put_object(BUCKET, "a.txt", "a\n").await.unwrap();

    let mut vended = dictionary("shared", "a.txt");
    vended.vending_enabled = Some(true);
    let package = backend
        .create_package(&own_scope(REGION), vended)
        .await
        .unwrap();

    // The same name in another region is another package.
    let elsewhere = backend
        .create_package(&own_scope("us-west-2"), dictionary("shared", "a.txt"))
        .await
        .unwrap();
    assert_ne!(elsewhere.id, package.id);
    let west: Vec<String> = backend
        .describe_packages(
            &own_scope("us-west-2"),
            PackageFilter::Name("shared".into()),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(west, vec![elsewhere.id.clone()]);

    let users = backend
        .update_package_scope(
            &own_scope(REGION),
            &package.id,
            vec!["111122223333".into(), "444455556666".into()],
        )
        .await
        .unwrap();
    assert_eq!(users, vec!["111122223333", "444455556666"]);
    let users = backend
        .update_package_scope(&own_scope(REGION), &package.id, vec!["444455556666".into()])
        .await
        .unwrap();
    assert_eq!(users, vec!["444455556666"]);
    let described = describe(&backend, &package.id).await;
    assert_eq!(
        described.allow_listed_users,
        Some(vec!["444455556666".to_owned()])
    );
}

#[tokio::test]
async fn listings_span_pages() {
    // More packages than the largest page (100), so the backend must follow NextToken.
    let (sim, backend) = start_with(SimConfig::default().package_quota(150)).await;
    let admin = sim.admin();
    admin.put_object(BUCKET, "a.txt", "a\n").await.unwrap();
    let mut ids = Vec::new();
    for n in 0..105 {
        let package = backend
            .create_package(
                &own_scope(REGION),
                dictionary(&format!("dict-{n:03}"), "a.txt"),
            )
            .await
            .unwrap();
        ids.push(package.id);
    }
    let mut seen: Vec<String> = backend
        .describe_packages(&own_scope(REGION), PackageFilter::All)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| !p.is_aws_owned())
        .map(|p| p.id)
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    let calls = admin.calls().await.unwrap();
    assert_eq!(calls.get("DescribePackages"), Some(&2), "{calls:?}");
}

/// A throttled read is retried by the SDK after a short backoff. (The SDK's adaptive mode
/// held the next attempt for 10–20 s after one throttle, at a client rate it had measured from
/// the few reads before: the region observer stood still that long while imports finished.)
#[tokio::test]
async fn a_throttled_read_is_retried_within_seconds() {
    let (sim, backend) = start().await;
    let scope = own_scope(REGION);
    for _ in 0..3 {
        backend
            .describe_packages(&scope, PackageFilter::All)
            .await
            .expect("listing");
    }
    for _ in 0..2 {
        sim.admin()
            .script_fault("DescribePackages", ospkg_sim::ScriptedFault::Throttle)
            .await
            .expect("fault scripted");
        let started = std::time::Instant::now();
        backend
            .describe_packages(&scope, PackageFilter::All)
            .await
            .expect("the retry succeeds");
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "one throttle held a read for {took:?}"
        );
    }
}

/// Every attempt of a read takes a token of the operator's limiter, the SDK's retries too: a
/// retry is a call the service counts, and sent unmetered it took the service's token that the
/// limiter had just given the next call (throttled in turn).
#[tokio::test]
async fn the_sdks_retry_of_a_read_waits_for_a_token_of_the_limiter() {
    let (sim, backend) = start().await;
    let metered = Metered::new(
        backend,
        Arc::new(Metrics::new()),
        NonZeroU32::new(1).expect("non-zero"),
    );
    let scope = own_scope(REGION);
    sim.admin()
        .script_fault("DescribePackages", ospkg_sim::ScriptedFault::Throttle)
        .await
        .expect("fault scripted");
    let started = std::time::Instant::now();
    // One token a second, and a burst of one: the first attempt takes the token there is, its
    // retry the next one (a second later), the next listing the one after that.
    metered
        .describe_packages(&scope, PackageFilter::All)
        .await
        .expect("the retry succeeds");
    metered
        .describe_packages(&scope, PackageFilter::All)
        .await
        .expect("the next listing");
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(1_900),
        "three attempts went out in {took:?}: the retry did not wait for a token"
    );
    let calls = sim.admin().calls().await.expect("calls");
    assert_eq!(calls.get("DescribePackages"), Some(&3), "{calls:?}");
}

/// The same for S3: a throttled HeadObject (503 SlowDown) is retried by the SDK only with a
/// token of the HeadObject limiter.
#[tokio::test]
async fn the_sdks_retry_of_a_head_object_waits_for_a_token_of_its_limiter() {
    let (sim, _backend) = start().await;
    sim.admin()
        .put_object(BUCKET, "followed.txt", "a\n")
        .await
        .expect("object stored");
    let s3 = ospkg::backend::s3::S3Backend::for_endpoint_at(
        &sim.s3_endpoint(),
        Arc::new(Metrics::new()),
        NonZeroU32::new(1).expect("non-zero"),
    )
    .await;
    sim.admin()
        .script_fault("HeadObject", ospkg_sim::ScriptedFault::Throttle)
        .await
        .expect("fault scripted");
    let scope = own_scope(REGION);
    let started = std::time::Instant::now();
    for _ in 0..2 {
        s3.head_object(&scope, BUCKET, "followed.txt")
            .await
            .expect("read");
    }
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(1_900),
        "three attempts went out in {took:?}: the retry did not wait for a token"
    );
    let log = sim.admin().log().await.expect("log");
    let heads: Vec<Option<String>> = log
        .into_iter()
        .filter(|e| e.operation.as_deref() == Some("HeadObject"))
        .map(|e| e.fault)
        .collect();
    assert_eq!(heads, [Some("throttle".to_owned()), None, None]);
}
