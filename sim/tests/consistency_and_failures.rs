//! Read-after-write lag of listings, injected dissociation and deletion failures, plugins
//! built for another engine release, and the caller's access key in the call log.

mod common;

use aws_sdk_opensearch::Client;
use aws_sdk_opensearch::types::{
    DescribePackagesFilter, DescribePackagesFilterName as FilterName, PackageType,
};
use common::*;
use ospkg_sim::{EntryKind, FaultConfig};

async fn names(client: &Client, filter: Option<(FilterName, &str)>) -> Vec<String> {
    let mut request = client.describe_packages().max_results(100);
    if let Some((name, value)) = filter {
        request = request.filters(
            DescribePackagesFilter::builder()
                .name(name)
                .value(value)
                .build(),
        );
    }
    request
        .send()
        .await
        .unwrap()
        .package_details_list()
        .iter()
        .filter_map(|p| p.package_name().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn new_packages_reach_listings_after_the_read_after_write_lag() {
    let sim = sim().await;
    let admin = sim.admin();
    let client = client(&sim);
    let earlier = create_dictionary(&sim, &client, "earlier").await;
    admin
        .set_faults(&FaultConfig {
            read_after_write_lag_ms: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let id = create_dictionary(&sim, &client, "lagging").await;

    // Neither by name nor in an unfiltered listing...
    assert!(
        names(&client, Some((FilterName::PackageName, "lagging")))
            .await
            .is_empty()
    );
    assert_eq!(
        names(&client, Some((FilterName::PackageType, "TXT-DICTIONARY"))).await,
        ["earlier"]
    );
    let all = names(&client, None).await;
    assert!(all.contains(&"earlier".to_string()), "{all:?}");
    assert!(!all.contains(&"lagging".to_string()), "{all:?}");
    // ...but by ID, and the name is taken.
    assert_eq!(describe(&client, &id).await.package_name(), Some("lagging"));
    assert_eq!(
        describe(&client, &earlier).await.package_name(),
        Some("earlier")
    );
    let (code, _) = failure(
        client
            .create_package()
            .package_name("lagging")
            .package_type(PackageType::TxtDictionary)
            .package_source(source("pkgs", "lagging.txt"))
            .send()
            .await,
    );
    assert_eq!(code, "ResourceAlreadyExistsException");

    admin.advance_clock(999).await.unwrap();
    assert!(!names(&client, None).await.contains(&"lagging".to_string()));
    admin.advance_clock(1).await.unwrap();
    assert_eq!(
        names(&client, Some((FilterName::PackageName, "lagging"))).await,
        ["lagging"]
    );
    assert!(names(&client, None).await.contains(&"lagging".to_string()));
}

#[tokio::test]
async fn injected_dissociation_failure_keeps_the_association() {
    let sim = sim().await;
    let admin = sim.admin();
    let client = client(&sim);
    let id = available_dictionary(&sim, &client, "sticky").await;
    for domain in ["search", "logs"] {
        client
            .associate_package()
            .package_id(&id)
            .domain_name(domain)
            .send()
            .await
            .unwrap();
    }
    admin.advance_clock(DURATIONS.associating_ms).await.unwrap();
    let mut faults = FaultConfig::default();
    faults.fail_dissociations.insert(
        "search".to_string(),
        "Domain is in processing state".to_string(),
    );
    admin.set_faults(&faults).await.unwrap();
    for domain in ["search", "logs"] {
        let answer = client
            .dissociate_package()
            .package_id(&id)
            .domain_name(domain)
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer
                .domain_package_details()
                .unwrap()
                .domain_package_status()
                .unwrap()
                .as_str(),
            "DISSOCIATING"
        );
    }
    admin
        .advance_clock(DURATIONS.dissociating_ms)
        .await
        .unwrap();
    let listed = client
        .list_domains_for_package()
        .package_id(&id)
        .send()
        .await
        .unwrap();
    let by_domain: Vec<(&str, &str, Option<&str>, Option<&str>)> = listed
        .domain_package_details_list()
        .iter()
        .map(|d| {
            (
                d.domain_name().unwrap(),
                d.domain_package_status().unwrap().as_str(),
                d.error_details().and_then(|e| e.error_type()),
                d.error_details().and_then(|e| e.error_message()),
            )
        })
        .collect();
    assert_eq!(
        by_domain,
        [(
            "search",
            "DISSOCIATION_FAILED",
            Some("DissociationFailure"),
            Some("Domain is in processing state")
        )]
    );
    let entered: Vec<(String, String)> = admin
        .log()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Association)
        .filter_map(|e| Some((e.domain_name?, e.association_status?)))
        .filter(|(_, s)| s.starts_with("DISSOC"))
        .collect();
    assert!(
        entered.contains(&("search".to_string(), "DISSOCIATION_FAILED".to_string())),
        "{entered:?}"
    );
    assert!(entered.contains(&("logs".to_string(), "DISSOCIATED".to_string())));
    // Still associated: the package cannot be deleted.
    let (code, _) = failure(client.delete_package().package_id(&id).send().await);
    assert_eq!(code, "ConflictException");
    // Once the domain behaves, dissociating again removes it.
    admin.set_faults(&FaultConfig::default()).await.unwrap();
    client
        .dissociate_package()
        .package_id(&id)
        .domain_name("search")
        .send()
        .await
        .unwrap();
    admin
        .advance_clock(DURATIONS.dissociating_ms)
        .await
        .unwrap();
    let listed = client
        .list_domains_for_package()
        .package_id(&id)
        .send()
        .await
        .unwrap();
    assert!(listed.domain_package_details_list().is_empty());
}

#[tokio::test]
async fn injected_delete_failure_ends_in_delete_failed() {
    let sim = sim().await;
    let admin = sim.admin();
    let client = client(&sim);
    let by_name = available_dictionary(&sim, &client, "keep-by-name").await;
    let by_id = available_dictionary(&sim, &client, "keep-by-id").await;
    let normal = available_dictionary(&sim, &client, "goes-away").await;
    let mut faults = FaultConfig::default();
    faults.fail_deletes.insert(
        "keep-by-name".to_string(),
        "KMS key is disabled".to_string(),
    );
    faults
        .fail_deletes
        .insert(by_id.clone(), "Internal failure".to_string());
    admin.set_faults(&faults).await.unwrap();
    for id in [&by_name, &by_id, &normal] {
        let answer = client.delete_package().package_id(id).send().await.unwrap();
        assert_eq!(status(answer.package_details().unwrap()), "DELETING");
        assert!(answer.package_details().unwrap().error_details().is_none());
    }
    assert_eq!(status(&describe(&client, &by_name).await), "DELETING");
    admin.advance_clock(DURATIONS.deleting_ms).await.unwrap();
    for (id, message) in [
        (&by_name, "KMS key is disabled"),
        (&by_id, "Internal failure"),
    ] {
        let details = describe(&client, id).await;
        assert_eq!(status(&details), "DELETE_FAILED");
        let error = details.error_details().unwrap();
        assert_eq!(
            (error.error_type(), error.error_message()),
            (Some("DeleteFailure"), Some(message))
        );
    }
    let (code, _) = failure(
        client
            .describe_packages()
            .filters(
                DescribePackagesFilter::builder()
                    .name(FilterName::PackageId)
                    .value(&normal)
                    .build(),
            )
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
    let listed = names(&client, None).await;
    assert!(listed.contains(&"keep-by-name".to_string()));

    // Deleting again, once the cause is gone, succeeds.
    admin.set_faults(&FaultConfig::default()).await.unwrap();
    let answer = client
        .delete_package()
        .package_id(&by_name)
        .send()
        .await
        .unwrap();
    assert_eq!(status(answer.package_details().unwrap()), "DELETING");
    admin.advance_clock(DURATIONS.deleting_ms).await.unwrap();
    assert!(
        !names(&client, None)
            .await
            .contains(&"keep-by-name".to_string())
    );
    // A package whose deletion failed can be updated again.
    let updated = client
        .update_package()
        .package_id(&by_id)
        .package_source(source("pkgs", "keep-by-id.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(updated.package_details().unwrap()), "COPYING");
    assert!(updated.package_details().unwrap().error_details().is_none());
}

/// Creates a ZIP-PLUGIN for `engine` from a descriptor and returns its id.
async fn plugin(
    sim: &ospkg_sim::RunningSim,
    client: &Client,
    name: &str,
    engine: &str,
    descriptor: &str,
) -> String {
    let key = format!("{name}.zip");
    sim.admin()
        .put_object("pkgs", &key, plugin_zip(Some(descriptor), 10))
        .await
        .unwrap();
    client
        .create_package()
        .package_name(name)
        .package_type(PackageType::ZipPlugin)
        .engine_version(engine)
        .package_source(source("pkgs", &key))
        .send()
        .await
        .unwrap()
        .package_details
        .unwrap()
        .package_id
        .unwrap()
}

#[tokio::test]
async fn plugin_built_for_another_engine_release_fails_validation() {
    let sim = sim().await;
    let client = client(&sim);
    // DESCRIPTOR says opensearch.version=2.15.0.
    let wrong = plugin(&sim, &client, "wrong-engine", "OpenSearch_2.19", DESCRIPTOR).await;
    let right = plugin(&sim, &client, "right-engine", "OpenSearch_2.15", DESCRIPTOR).await;
    let patch = DESCRIPTOR.replace("opensearch.version=2.15.0", "opensearch.version=2.15.2");
    let patch = plugin(&sim, &client, "patch-release", "OpenSearch_2.15", &patch).await;
    let unversioned = DESCRIPTOR.replace("opensearch.version=2.15.0\n", "");
    let unversioned = plugin(&sim, &client, "no-version", "OpenSearch_2.19", &unversioned).await;
    sim.admin()
        .advance_clock(DURATIONS.copying_ms + DURATIONS.validating_ms)
        .await
        .unwrap();

    let details = describe(&client, &wrong).await;
    assert_eq!(status(&details), "VALIDATION_FAILED");
    let error = details.error_details().unwrap();
    assert_eq!(error.error_type(), Some("PluginValidationFailure"));
    let message = error.error_message().unwrap();
    assert!(
        message.starts_with("PluginValidationFailureReason : ")
            && message.contains("2.15.0")
            && message.contains("OpenSearch_2.19"),
        "{message}"
    );
    assert!(details.available_plugin_properties().is_none());
    for id in [&right, &patch, &unversioned] {
        assert_eq!(status(&describe(&client, id).await), "AVAILABLE");
    }

    // An update to a build for another release fails too and keeps the last good version.
    let newer = DESCRIPTOR.replace("opensearch.version=2.15.0", "opensearch.version=2.17.0");
    sim.admin()
        .put_object("pkgs", "right-engine.zip", plugin_zip(Some(&newer), 10))
        .await
        .unwrap();
    client
        .update_package()
        .package_id(&right)
        .package_source(source("pkgs", "right-engine.zip"))
        .send()
        .await
        .unwrap();
    sim.admin()
        .advance_clock(DURATIONS.copying_ms + DURATIONS.validating_ms)
        .await
        .unwrap();
    let details = describe(&client, &right).await;
    assert_eq!(status(&details), "VALIDATION_FAILED");
    assert!(
        details
            .error_details()
            .and_then(|e| e.error_message())
            .unwrap()
            .contains("2.17.0")
    );
    assert_eq!(details.available_package_version(), Some("v1"));
}

#[tokio::test]
async fn call_log_names_the_access_key_of_each_caller() {
    let sim = sim().await;
    let alice = client_for(&sim, "us-east-1", "AKIDALICE");
    let bob = client_for(&sim, "us-east-1", "AKIDBOB");
    alice.describe_packages().send().await.unwrap();
    bob.describe_packages().send().await.unwrap();
    let (code, _, _) = raw(
        &format!("{}/2021-01-01/packages/describe", sim.endpoint()),
        "POST",
        None,
        "{}",
    )
    .await;
    assert_eq!(code, 403);
    let keys: Vec<Option<String>> = sim
        .admin()
        .log()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Call)
        .map(|e| e.access_key_id)
        .collect();
    assert_eq!(
        keys,
        [
            Some("AKIDALICE".to_string()),
            Some("AKIDBOB".to_string()),
            None
        ]
    );
    // The wire spelling.
    let (_, _, body) = raw(&format!("{}/_sim/log", sim.endpoint()), "GET", None, "").await;
    assert!(body.contains(r#""accessKeyId":"AKIDALICE""#), "{body}");
}
