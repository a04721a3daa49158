//! Success paths through every operation with aws-sdk-opensearch: members round-trip, states
//! move on the (manual) clock, versions and history, associations, pagination and filters.

mod common;

use aws_sdk_opensearch::types::{
    DescribePackagesFilter, DescribePackagesFilterName as FilterName, KeyStoreAccessOption,
    PackageAssociationConfiguration, PackageConfiguration, PackageDetailsForAssociation,
    PackageEncryptionOptions, PackageScopeOperationEnum, PackageType, PackageVendingOptions,
    RequirementLevel,
};
use common::*;
use ospkg_sim::{EntryKind, FaultConfig};

#[tokio::test]
async fn create_round_trips_members_and_moves_through_copying_validating_available() {
    let sim = sim().await;
    let client = client(&sim);
    let admin = sim.admin();
    admin
        .put_object("pkgs", "synonyms.txt", b"car, automobile\n".to_vec())
        .await
        .unwrap();
    let created = client
        .create_package()
        .package_name("my-synonyms")
        .package_type(PackageType::TxtDictionary)
        .package_description("Synonyms for cars")
        .package_source(source("pkgs", "synonyms.txt"))
        .package_configuration(
            PackageConfiguration::builder()
                .license_requirement(RequirementLevel::None)
                .configuration_requirement(RequirementLevel::Optional)
                .license_filepath("licenses/LICENSE.txt")
                .requires_restart_for_configuration_update(true)
                .build()
                .unwrap(),
        )
        .package_vending_options(
            PackageVendingOptions::builder()
                .vending_enabled(true)
                .build()
                .unwrap(),
        )
        .package_encryption_options(
            PackageEncryptionOptions::builder()
                .encryption_enabled(true)
                .kms_key_identifier("alias/my-key")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .package_details
        .unwrap();
    let id = created.package_id().unwrap().to_string();
    assert!(
        id.starts_with('F') && id[1..].bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
    assert_eq!(status(&created), "COPYING");
    assert_eq!(created.package_name(), Some("my-synonyms"));
    assert_eq!(created.package_type(), Some(&PackageType::TxtDictionary));
    assert_eq!(created.package_description(), Some("Synonyms for cars"));
    assert_eq!(created.package_owner(), Some("123456789012"));
    assert!(created.created_at().is_some() && created.last_updated_at().is_some());
    assert_eq!(created.available_package_version(), None);
    let enc = created.package_encryption_options().unwrap();
    assert_eq!(
        (enc.encryption_enabled(), enc.kms_key_identifier()),
        (true, Some("alias/my-key"))
    );
    assert!(created.package_vending_options().unwrap().vending_enabled());
    assert_eq!(created.allow_listed_user_list(), &[] as &[String]);

    admin.advance_clock(1999).await.unwrap();
    assert_eq!(status(&describe(&client, &id).await), "COPYING");
    admin.advance_clock(1).await.unwrap();
    assert_eq!(status(&describe(&client, &id).await), "VALIDATING");
    admin.advance_clock(1000).await.unwrap();
    let available = describe(&client, &id).await;
    assert_eq!(status(&available), "AVAILABLE");
    assert_eq!(available.available_package_version(), Some("v1"));
    assert!(available.error_details().is_none());
    let conf = available.available_package_configuration().unwrap();
    assert_eq!(conf.license_requirement(), &RequirementLevel::None);
    assert_eq!(
        conf.configuration_requirement(),
        &RequirementLevel::Optional
    );
    assert_eq!(conf.license_filepath(), Some("licenses/LICENSE.txt"));
    assert_eq!(conf.requires_restart_for_configuration_update(), Some(true));
    let created_at = available.created_at().unwrap().secs();
    let updated_at = available.last_updated_at().unwrap().secs();
    assert_eq!(
        updated_at - created_at,
        3,
        "LastUpdatedAt is when it became AVAILABLE"
    );
}

#[tokio::test]
async fn plugin_descriptor_fills_available_plugin_properties() {
    let sim = sim().await;
    let client = client(&sim);
    let zip = plugin_zip(Some(DESCRIPTOR), 5000);
    sim.admin()
        .put_object("pkgs", "plugin.zip", zip)
        .await
        .unwrap();
    let id = client
        .create_package()
        .package_name("example-plugin")
        .package_type(PackageType::ZipPlugin)
        .engine_version("OpenSearch_2.15")
        .package_source(source("pkgs", "plugin.zip"))
        .send()
        .await
        .unwrap()
        .package_details
        .unwrap()
        .package_id
        .unwrap();
    sim.admin().advance_clock(3000).await.unwrap();
    let details = describe(&client, &id).await;
    assert_eq!(status(&details), "AVAILABLE");
    assert_eq!(details.engine_version(), Some("OpenSearch_2.15"));
    let props = details.available_plugin_properties().unwrap();
    assert_eq!(props.name(), Some("example-plugin"));
    assert_eq!(props.description(), Some("Example plugin"));
    assert_eq!(props.version(), Some("1.2.3"));
    assert_eq!(props.class_name(), Some("org.example.ExamplePlugin"));
    assert_eq!(
        props.uncompressed_size_in_bytes(),
        Some(5000 + DESCRIPTOR.len() as i64)
    );
    let history = client
        .get_package_version_history()
        .package_id(&id)
        .send()
        .await
        .unwrap();
    let v1 = &history.package_version_history_list()[0];
    assert_eq!(
        v1.plugin_properties().unwrap().class_name(),
        Some("org.example.ExamplePlugin")
    );
}

#[tokio::test]
async fn updates_make_versions_with_commit_messages_newest_first() {
    let sim = sim().await;
    let client = client(&sim);
    let admin = sim.admin();
    let id = available_dictionary(&sim, &client, "versioned").await;
    for (n, message) in [(2, "second"), (3, "third")] {
        admin
            .put_object("pkgs", "versioned.txt", format!("rev {n}\n").into_bytes())
            .await
            .unwrap();
        let updated = client
            .update_package()
            .package_id(&id)
            .package_source(source("pkgs", "versioned.txt"))
            .commit_message(message)
            .package_description(format!("description {n}"))
            .send()
            .await
            .unwrap()
            .package_details
            .unwrap();
        assert_eq!(status(&updated), "COPYING");
        // The previous version stays the available one while the update is processed.
        assert_eq!(
            updated.available_package_version(),
            Some(format!("v{}", n - 1).as_str())
        );
        assert_eq!(
            updated.package_description(),
            Some(format!("description {n}").as_str())
        );
        admin.advance_clock(2000).await.unwrap();
        let validating = describe(&client, &id).await;
        assert_eq!(status(&validating), "VALIDATING");
        assert_eq!(
            validating.available_package_version(),
            Some(format!("v{}", n - 1).as_str())
        );
        admin.advance_clock(1000).await.unwrap();
        let details = describe(&client, &id).await;
        assert_eq!(status(&details), "AVAILABLE");
        assert_eq!(
            details.available_package_version(),
            Some(format!("v{n}").as_str())
        );
    }
    let history = client
        .get_package_version_history()
        .package_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(history.package_id(), Some(id.as_str()));
    let versions: Vec<(Option<&str>, Option<&str>)> = history
        .package_version_history_list()
        .iter()
        .map(|h| (h.package_version(), h.commit_message()))
        .collect();
    assert_eq!(
        versions,
        vec![
            (Some("v3"), Some("third")),
            (Some("v2"), Some("second")),
            (Some("v1"), None)
        ]
    );
    assert!(
        history
            .package_version_history_list()
            .iter()
            .all(|h| h.created_at().is_some())
    );

    // History pages too.
    let pages: Vec<_> = client
        .get_package_version_history()
        .package_id(&id)
        .max_results(2)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(pages.len(), 2);
    assert_eq!(
        pages[1]
            .as_ref()
            .unwrap()
            .package_version_history_list()
            .len(),
        1
    );
}

#[tokio::test]
async fn update_rereads_the_object_and_a_bad_one_fails_validation() {
    let sim = sim().await;
    let client = client(&sim);
    let admin = sim.admin();
    admin
        .put_object("pkgs", "p.zip", plugin_zip(Some(DESCRIPTOR), 10))
        .await
        .unwrap();
    let id = client
        .create_package()
        .package_name("plugin-one")
        .package_type(PackageType::ZipPlugin)
        .engine_version("OpenSearch_2.15")
        .package_source(source("pkgs", "p.zip"))
        .send()
        .await
        .unwrap()
        .package_details
        .unwrap()
        .package_id
        .unwrap();
    admin.advance_clock(3000).await.unwrap();
    // Same key, new bytes: the update reads the object again.
    let v2 = DESCRIPTOR.replace("version=1.2.3", "version=2.0.0");
    admin
        .put_object("pkgs", "p.zip", plugin_zip(Some(&v2), 10))
        .await
        .unwrap();
    client
        .update_package()
        .package_id(&id)
        .package_source(source("pkgs", "p.zip"))
        .send()
        .await
        .unwrap();
    admin.advance_clock(3000).await.unwrap();
    let details = describe(&client, &id).await;
    assert_eq!(details.available_package_version(), Some("v2"));
    assert_eq!(
        details.available_plugin_properties().unwrap().version(),
        Some("2.0.0")
    );

    admin
        .put_object("pkgs", "p.zip", b"not a zip".to_vec())
        .await
        .unwrap();
    client
        .update_package()
        .package_id(&id)
        .package_source(source("pkgs", "p.zip"))
        .commit_message("broken")
        .send()
        .await
        .unwrap();
    admin.advance_clock(3000).await.unwrap();
    let failed = describe(&client, &id).await;
    assert_eq!(status(&failed), "VALIDATION_FAILED");
    assert!(
        failed
            .error_details()
            .unwrap()
            .error_message()
            .unwrap()
            .contains("zip")
    );
    // The last good version is still what domains can get.
    assert_eq!(failed.available_package_version(), Some("v2"));
    assert_eq!(
        failed.available_plugin_properties().unwrap().version(),
        Some("2.0.0")
    );

    // Fixing the object and updating again gives v3 (a failed update uses no number).
    admin
        .put_object("pkgs", "p.zip", plugin_zip(Some(DESCRIPTOR), 10))
        .await
        .unwrap();
    client
        .update_package()
        .package_id(&id)
        .package_source(source("pkgs", "p.zip"))
        .send()
        .await
        .unwrap();
    admin.advance_clock(3000).await.unwrap();
    let fixed = describe(&client, &id).await;
    assert_eq!(
        (status(&fixed), fixed.available_package_version()),
        ("AVAILABLE", Some("v3"))
    );
    assert!(fixed.error_details().is_none());
}

#[tokio::test]
async fn association_lifecycle_versions_and_removal() {
    let sim = sim().await;
    let client = client(&sim);
    let admin = sim.admin();
    let id = available_dictionary(&sim, &client, "assoc-dict").await;

    let associating = client
        .associate_package()
        .package_id(&id)
        .domain_name("search")
        .send()
        .await
        .unwrap()
        .domain_package_details
        .unwrap();
    assert_eq!(
        associating.domain_package_status().unwrap().as_str(),
        "ASSOCIATING"
    );
    assert_eq!(associating.domain_name(), Some("search"));
    assert_eq!(associating.package_name(), Some("assoc-dict"));
    assert_eq!(
        associating.package_type(),
        Some(&PackageType::TxtDictionary)
    );
    assert_eq!(
        associating.reference_path(),
        Some(format!("analyzers/{id}").as_str())
    );
    assert!(associating.last_updated().is_some());
    admin.advance_clock(3000).await.unwrap();
    let listed = client
        .list_packages_for_domain()
        .domain_name("search")
        .send()
        .await
        .unwrap();
    let active = &listed.domain_package_details_list()[0];
    assert_eq!(active.domain_package_status().unwrap().as_str(), "ACTIVE");
    assert_eq!(active.package_version(), Some("v1"));

    // A new version reaches the domain only by associating again.
    admin
        .put_object("pkgs", "assoc-dict.txt", b"new\n".to_vec())
        .await
        .unwrap();
    client
        .update_package()
        .package_id(&id)
        .package_source(source("pkgs", "assoc-dict.txt"))
        .send()
        .await
        .unwrap();
    admin.advance_clock(3000).await.unwrap();
    let domains = client
        .list_domains_for_package()
        .package_id(&id)
        .send()
        .await
        .unwrap();
    let still = &domains.domain_package_details_list()[0];
    assert_eq!(
        (still.domain_name(), still.package_version()),
        (Some("search"), Some("v1"))
    );
    let again = client
        .associate_package()
        .package_id(&id)
        .domain_name("search")
        .send()
        .await
        .unwrap()
        .domain_package_details
        .unwrap();
    assert_eq!(
        again.domain_package_status().unwrap().as_str(),
        "ASSOCIATING"
    );
    // PackageVersion is what the domain runs: v1 until v2 is ACTIVE.
    assert_eq!(again.package_version(), Some("v1"));
    admin.advance_clock(3000).await.unwrap();
    let domains = client
        .list_domains_for_package()
        .package_id(&id)
        .send()
        .await
        .unwrap();
    let updated = &domains.domain_package_details_list()[0];
    assert_eq!(updated.domain_package_status().unwrap().as_str(), "ACTIVE");
    assert_eq!(updated.package_version(), Some("v2"));

    let dissociating = client
        .dissociate_package()
        .package_id(&id)
        .domain_name("search")
        .send()
        .await
        .unwrap()
        .domain_package_details
        .unwrap();
    assert_eq!(
        dissociating.domain_package_status().unwrap().as_str(),
        "DISSOCIATING"
    );
    admin.advance_clock(1999).await.unwrap();
    let listed = client
        .list_packages_for_domain()
        .domain_name("search")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.domain_package_details_list().len(), 1);
    admin.advance_clock(1).await.unwrap();
    let listed = client
        .list_packages_for_domain()
        .domain_name("search")
        .send()
        .await
        .unwrap();
    assert!(listed.domain_package_details_list().is_empty());

    let deleted = client
        .delete_package()
        .package_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(status(deleted.package_details().unwrap()), "DELETING");
    assert_eq!(status(&describe(&client, &id).await), "DELETING");
    admin.advance_clock(1000).await.unwrap();
    let (code, _) = failure(
        client
            .get_package_version_history()
            .package_id(&id)
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");

    // The log shows each association state in order, with simulated times.
    let log = admin.log().await.unwrap();
    let transitions: Vec<(String, u64)> = log
        .iter()
        .filter(|e| e.kind == EntryKind::Association)
        .map(|e| (e.association_status.clone().unwrap(), e.at_ms))
        .collect();
    let states: Vec<&str> = transitions.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        states,
        [
            "ASSOCIATING",
            "ACTIVE",
            "ASSOCIATING",
            "ACTIVE",
            "DISSOCIATING",
            "DISSOCIATED"
        ]
    );
    assert_eq!(transitions[1].1 - transitions[0].1, 3000);
    assert!(transitions.windows(2).all(|w| w[0].1 <= w[1].1));
}

#[tokio::test]
async fn associate_and_dissociate_several_with_prerequisites_and_configuration() {
    let sim = sim().await;
    let client = client(&sim);
    let admin = sim.admin();
    admin
        .put_object("pkgs", "license.txt", b"LICENSE".to_vec())
        .await
        .unwrap();
    admin
        .put_object("pkgs", "plugin.zip", plugin_zip(Some(DESCRIPTOR), 10))
        .await
        .unwrap();
    let license = client
        .create_package()
        .package_name("example-license")
        .package_type(PackageType::PackageLicense)
        .package_source(source("pkgs", "license.txt"))
        .send()
        .await
        .unwrap()
        .package_details
        .unwrap()
        .package_id
        .unwrap();
    let plugin = client
        .create_package()
        .package_name("example-plugin")
        .package_type(PackageType::ZipPlugin)
        .engine_version("OpenSearch_2.15")
        .package_source(source("pkgs", "plugin.zip"))
        .send()
        .await
        .unwrap()
        .package_details
        .unwrap()
        .package_id
        .unwrap();
    admin.advance_clock(3000).await.unwrap();
    let key_store = PackageAssociationConfiguration::builder()
        .key_store_access_option(
            KeyStoreAccessOption::builder()
                .key_store_access_enabled(true)
                .key_access_role_arn("arn:aws:iam::123456789012:role/keystore")
                .build()
                .unwrap(),
        )
        .build();
    let out = client
        .associate_packages()
        .domain_name("logs")
        .package_list(
            PackageDetailsForAssociation::builder()
                .package_id(&license)
                .build()
                .unwrap(),
        )
        .package_list(
            PackageDetailsForAssociation::builder()
                .package_id(&plugin)
                .prerequisite_package_id_list(&license)
                .association_configuration(key_store.clone())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let list = out.domain_package_details_list();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|d| d.domain_package_status().unwrap().as_str() == "ASSOCIATING")
    );
    assert_eq!(
        list[1].prerequisite_package_id_list(),
        std::slice::from_ref(&license)
    );
    assert_eq!(list[1].association_configuration(), Some(&key_store));
    admin.advance_clock(3000).await.unwrap();
    let listed = client
        .list_packages_for_domain()
        .domain_name("logs")
        .send()
        .await
        .unwrap();
    assert!(
        listed.domain_package_details_list().iter().all(|d| d
            .domain_package_status()
            .unwrap()
            .as_str()
            == "ACTIVE")
    );

    let out = client
        .dissociate_packages()
        .domain_name("logs")
        .package_list(&plugin)
        .package_list(&license)
        .send()
        .await
        .unwrap();
    assert!(
        out.domain_package_details_list().iter().all(|d| d
            .domain_package_status()
            .unwrap()
            .as_str()
            == "DISSOCIATING")
    );
    admin.advance_clock(2000).await.unwrap();
    let listed = client
        .list_packages_for_domain()
        .domain_name("logs")
        .send()
        .await
        .unwrap();
    assert!(listed.domain_package_details_list().is_empty());
}

#[tokio::test]
async fn association_failure_is_injectable_per_domain() {
    let sim = sim().await;
    let client = client(&sim);
    let id = available_dictionary(&sim, &client, "fails").await;
    let mut faults = FaultConfig::default();
    faults.fail_associations.insert(
        "search".to_string(),
        "Domain is in processing state".to_string(),
    );
    sim.admin().set_faults(&faults).await.unwrap();
    client
        .associate_package()
        .package_id(&id)
        .domain_name("search")
        .send()
        .await
        .unwrap();
    client
        .associate_package()
        .package_id(&id)
        .domain_name("logs")
        .send()
        .await
        .unwrap();
    sim.admin().advance_clock(3000).await.unwrap();
    let domains = client
        .list_domains_for_package()
        .package_id(&id)
        .send()
        .await
        .unwrap();
    let by_domain: Vec<(&str, &str, Option<&str>)> = domains
        .domain_package_details_list()
        .iter()
        .map(|d| {
            (
                d.domain_name().unwrap(),
                d.domain_package_status().unwrap().as_str(),
                d.error_details().and_then(|e| e.error_message()),
            )
        })
        .collect();
    assert_eq!(
        by_domain,
        vec![
            ("logs", "ACTIVE", None),
            (
                "search",
                "ASSOCIATION_FAILED",
                Some("Domain is in processing state")
            )
        ]
    );
}

#[tokio::test]
async fn a_failed_update_of_a_domain_leaves_the_version_it_runs() {
    let sim = sim().await;
    let client = client(&sim);
    let admin = sim.admin();
    let id = available_dictionary(&sim, &client, "kept-dict").await;
    let associate = || async {
        client
            .associate_package()
            .package_id(&id)
            .domain_name("search")
            .send()
            .await
            .unwrap();
        admin.advance_clock(3000).await.unwrap();
        let listed = client
            .list_packages_for_domain()
            .domain_name("search")
            .send()
            .await
            .unwrap();
        let details = &listed.domain_package_details_list()[0];
        (
            details.domain_package_status().unwrap().as_str().to_owned(),
            details.package_version().map(str::to_owned),
        )
    };
    assert_eq!(associate().await, ("ACTIVE".into(), Some("v1".into())));
    admin
        .put_object("pkgs", "kept-dict.txt", b"new\n".to_vec())
        .await
        .unwrap();
    client
        .update_package()
        .package_id(&id)
        .package_source(source("pkgs", "kept-dict.txt"))
        .send()
        .await
        .unwrap();
    admin.advance_clock(3000).await.unwrap();
    let mut faults = FaultConfig::default();
    faults.fail_associations.insert(
        "search".to_string(),
        "Domain is in processing state".to_string(),
    );
    admin.set_faults(&faults).await.unwrap();
    assert_eq!(
        associate().await,
        ("ASSOCIATION_FAILED".into(), Some("v1".into())),
        "applying v2 failed: the domain still runs v1"
    );
    admin.set_faults(&FaultConfig::default()).await.unwrap();
    assert_eq!(associate().await, ("ACTIVE".into(), Some("v2".into())));
}

#[tokio::test]
async fn describe_pages_and_all_six_filters() {
    let sim = sim().await;
    let client = client(&sim);
    let admin = sim.admin();
    let mut ids = Vec::new();
    for name in ["dict-a", "dict-b", "dict-c", "dict-d", "other-e"] {
        ids.push(create_dictionary(&sim, &client, name).await);
    }
    admin
        .put_object("pkgs", "plugin.zip", plugin_zip(Some(DESCRIPTOR), 10))
        .await
        .unwrap();
    client
        .create_package()
        .package_name("zip-f")
        .package_type(PackageType::ZipPlugin)
        .engine_version("OpenSearch_2.15")
        .package_source(source("pkgs", "plugin.zip"))
        .send()
        .await
        .unwrap();
    admin.advance_clock(3000).await.unwrap();
    admin
        .put_object("pkgs", "dict-d.txt", b"x".to_vec())
        .await
        .unwrap();
    client
        .update_package()
        .package_id(&ids[3])
        .package_source(source("pkgs", "dict-d.txt"))
        .send()
        .await
        .unwrap(); // dict-d is COPYING again

    // 2 AWS packages + 6 own ones, in pages of 3.
    let pages: Vec<_> = client
        .describe_packages()
        .max_results(3)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p.as_ref().unwrap().package_details_list().len())
        .collect();
    assert_eq!(sizes, vec![3, 3, 2]);
    assert!(pages[2].as_ref().unwrap().next_token().is_none());

    assert_eq!(
        names(
            &client,
            vec![(FilterName::PackageId, vec![&ids[0], &ids[2]])]
        )
        .await,
        ["dict-a", "dict-c"]
    );
    assert_eq!(
        names(&client, vec![(FilterName::PackageName, vec!["dict-*"])]).await,
        ["dict-a", "dict-b", "dict-c", "dict-d"]
    );
    assert_eq!(
        names(&client, vec![(FilterName::PackageName, vec!["other-?"])]).await,
        ["other-e"]
    );
    assert_eq!(
        names(&client, vec![(FilterName::PackageStatus, vec!["COPYING"])]).await,
        ["dict-d"]
    );
    assert_eq!(
        names(&client, vec![(FilterName::PackageType, vec!["ZIP-PLUGIN"])]).await,
        ["analysis-icu", "mapper-murmur3", "zip-f"]
    );
    assert_eq!(
        names(
            &client,
            vec![(FilterName::EngineVersion, vec!["OpenSearch_2.15"])]
        )
        .await,
        ["zip-f"]
    );
    assert_eq!(
        names(&client, vec![(FilterName::PackageOwner, vec!["AWS"])]).await,
        ["analysis-icu", "mapper-murmur3"]
    );
    // AND across filters, OR within one.
    assert_eq!(
        names(
            &client,
            vec![
                (FilterName::PackageOwner, vec!["123456789012"]),
                (
                    FilterName::PackageType,
                    vec!["ZIP-PLUGIN", "PACKAGE-LICENSE"]
                ),
            ]
        )
        .await,
        ["zip-f"]
    );
    let (code, message) = failure(
        client
            .describe_packages()
            .next_token("garbage")
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("NextToken"), "{message}");
}

#[tokio::test]
async fn package_scope_add_override_remove() {
    let sim = sim().await;
    let client = client(&sim);
    sim.admin()
        .put_object("pkgs", "v.txt", b"x".to_vec())
        .await
        .unwrap();
    let id = client
        .create_package()
        .package_name("vended")
        .package_type(PackageType::TxtDictionary)
        .package_source(source("pkgs", "v.txt"))
        .package_vending_options(
            PackageVendingOptions::builder()
                .vending_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .package_details
        .unwrap()
        .package_id
        .unwrap();
    let scope = |op: PackageScopeOperationEnum, users: &[&str]| {
        let mut request = client.update_package_scope().package_id(&id).operation(op);
        for u in users {
            request = request.package_user_list(*u);
        }
        request.send()
    };
    let out = scope(
        PackageScopeOperationEnum::Add,
        &["111122223333", "444455556666"],
    )
    .await
    .unwrap();
    assert_eq!(out.package_id(), Some(id.as_str()));
    assert_eq!(out.operation(), Some(&PackageScopeOperationEnum::Add));
    assert_eq!(out.package_user_list(), &["111122223333", "444455556666"]);
    let out = scope(PackageScopeOperationEnum::Remove, &["111122223333"])
        .await
        .unwrap();
    assert_eq!(out.package_user_list(), &["444455556666"]);
    let out = scope(PackageScopeOperationEnum::Override, &["GLOBAL"])
        .await
        .unwrap();
    assert_eq!(out.package_user_list(), &["GLOBAL"]);
    assert_eq!(
        describe(&client, &id).await.allow_listed_user_list(),
        &["GLOBAL"]
    );
}

#[tokio::test]
async fn regions_and_accounts_have_separate_state() {
    let sim = sim().await;
    let east = client(&sim);
    let west = client_for(&sim, "eu-west-1", "test");
    let other_account = client_for(&sim, "us-east-1", "111122223333");
    let id = create_dictionary(&sim, &east, "shared-name").await;
    for c in [&west, &other_account] {
        let (code, _) = failure(c.get_package_version_history().package_id(&id).send().await);
        assert_eq!(code, "ResourceNotFoundException");
        let listed = c.describe_packages().send().await.unwrap();
        let owners: Vec<_> = listed
            .package_details_list()
            .iter()
            .map(|p| p.package_owner().unwrap().to_string())
            .collect();
        assert_eq!(owners, ["AWS", "AWS"], "only the seeded AWS packages");
        // The same name is free there.
        let created = c
            .create_package()
            .package_name("shared-name")
            .package_type(PackageType::TxtDictionary)
            .package_source(source("pkgs", "shared-name.txt"))
            .send()
            .await
            .unwrap();
        assert_ne!(
            created.package_details().unwrap().package_id(),
            Some(id.as_str())
        );
    }
    let owner = describe(&other_account, "F100000003").await;
    assert_eq!(owner.package_owner(), Some("111122223333"));
    let log = sim.admin().log().await.unwrap();
    let scopes: std::collections::BTreeSet<(String, String)> = log
        .iter()
        .filter(|e| e.operation.as_deref() == Some("CreatePackage"))
        .map(|e| (e.account.clone(), e.region.clone()))
        .collect();
    assert_eq!(scopes.len(), 3);
}

async fn names(
    client: &aws_sdk_opensearch::Client,
    filters: Vec<(FilterName, Vec<&str>)>,
) -> Vec<String> {
    let mut request = client.describe_packages();
    for (name, values) in filters {
        let mut f = DescribePackagesFilter::builder().name(name);
        for v in values {
            f = f.value(v);
        }
        request = request.filters(f.build());
    }
    let out = request.send().await.unwrap();
    out.package_details_list()
        .iter()
        .map(|p| p.package_name().unwrap().to_string())
        .collect()
}
