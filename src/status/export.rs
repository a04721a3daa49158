//! What `spec.export` publishes: the keys of the export ConfigMap, derived from status.
//!
//! Every key is a valid shell/envsubst variable name (letters, digits, underscores), so the
//! ConfigMap works with Flux's `postBuild.substituteFrom`, `envFrom` and volume mounts alike.

use std::collections::{BTreeMap, BTreeSet};

use crate::crd::OpenSearchPackageStatus;
use crate::vocabulary::DomainPackageStatus;

/// Key of the package id.
pub const PACKAGE_ID: &str = "packageID";
/// Key of the package name.
pub const PACKAGE_NAME: &str = "packageName";
/// Key of the package type.
pub const PACKAGE_TYPE: &str = "packageType";
/// Key of the package's current (newest available) version.
pub const PACKAGE_VERSION: &str = "packageVersion";
/// Key of the AWS region.
pub const REGION: &str = "region";
/// Key of the reference path shared by every domain the package is ACTIVE on.
pub const REFERENCE_PATH: &str = "referencePath";

/// Key of one domain's reference path: `referencePath_<domain>`, dashes turned into
/// underscores (domain names have no underscores, so no two domains share a key).
pub fn domain_reference_path_key(domain: &str) -> String {
    format!("{REFERENCE_PATH}_{}", domain.replace('-', "_"))
}

/// The ConfigMap data for this status, every key prefixed with `key_prefix`; `None` while
/// there is no package to describe.
pub fn export_data(
    status: &OpenSearchPackageStatus,
    key_prefix: Option<&str>,
) -> Option<BTreeMap<String, String>> {
    let id = status.package_id.as_deref()?;
    let prefix = key_prefix.unwrap_or_default();
    let mut data = BTreeMap::new();
    let mut put = |key: &str, value: &str| {
        data.insert(format!("{prefix}{key}"), value.to_owned());
    };
    put(PACKAGE_ID, id);
    let optional = [
        (PACKAGE_NAME, &status.package_name),
        (PACKAGE_TYPE, &status.package_type),
        (PACKAGE_VERSION, &status.available_package_version),
        (REGION, &status.region),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            put(key, value);
        }
    }
    // Only domains where the package is usable: ACTIVE associations.
    let active: Vec<(&str, &str)> = status
        .domains
        .iter()
        .filter(|d| d.domain_package_status == Some(DomainPackageStatus::Active))
        .filter_map(|d| Some((d.domain_name.as_str(), d.reference_path.as_deref()?)))
        .collect();
    let paths: BTreeSet<&str> = active.iter().map(|(_, path)| *path).collect();
    if let [path] = paths.into_iter().collect::<Vec<_>>()[..] {
        put(REFERENCE_PATH, path);
    }
    for (domain, path) in active {
        put(&domain_reference_path_key(domain), path);
    }
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DomainStatus;

    fn domain(name: &str, state: DomainPackageStatus, path: &str) -> DomainStatus {
        DomainStatus {
            domain_name: name.into(),
            domain_package_status: Some(state),
            package_version: Some("v2".into()),
            reference_path: Some(path.into()),
            last_updated: None,
            error_details: None,
            unmanaged: false,
        }
    }

    #[test]
    fn nothing_is_published_before_there_is_a_package() {
        assert_eq!(export_data(&OpenSearchPackageStatus::default(), None), None);
    }

    #[test]
    fn keys_are_variable_names_and_carry_the_prefix() {
        let status = OpenSearchPackageStatus {
            package_id: Some("F12".into()),
            package_name: Some("synonyms".into()),
            package_type: Some("TXT-DICTIONARY".into()),
            available_package_version: Some("v2".into()),
            region: Some("eu-west-1".into()),
            domains: vec![
                domain("catalog-prod", DomainPackageStatus::Active, "analyzers/F12"),
                domain(
                    "catalog-new",
                    DomainPackageStatus::Associating,
                    "analyzers/F12",
                ),
            ],
            ..Default::default()
        };
        let data = export_data(&status, Some("SYN_")).expect("data");
        let expected: BTreeMap<String, String> = [
            ("SYN_packageID", "F12"),
            ("SYN_packageName", "synonyms"),
            ("SYN_packageType", "TXT-DICTIONARY"),
            ("SYN_packageVersion", "v2"),
            ("SYN_region", "eu-west-1"),
            ("SYN_referencePath", "analyzers/F12"),
            ("SYN_referencePath_catalog_prod", "analyzers/F12"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(data, expected);
        for key in data.keys() {
            let mut chars = key.chars();
            assert!(
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            );
            assert!(
                chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{key}"
            );
        }
    }

    #[test]
    fn disagreeing_domains_publish_no_shared_reference_path() {
        let status = OpenSearchPackageStatus {
            package_id: Some("F12".into()),
            domains: vec![
                domain("a-one", DomainPackageStatus::Active, "analyzers/F12"),
                domain("b-two", DomainPackageStatus::Active, "analyzers/F99"),
            ],
            ..Default::default()
        };
        let data = export_data(&status, None).expect("data");
        assert!(!data.contains_key(REFERENCE_PATH), "{data:?}");
        assert_eq!(data["referencePath_a_one"], "analyzers/F12");
        assert_eq!(data["referencePath_b_two"], "analyzers/F99");
    }
}
