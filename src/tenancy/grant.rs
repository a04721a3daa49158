//! What an OpenSearchPackageRole lets its namespaces touch: domains, source buckets,
//! adoption. Checked before any AWS call; a pure function of the spec and the role.

use glob::Pattern;
use kube::ResourceExt;

use crate::crd::{OpenSearchPackageRole, OpenSearchPackageSpec};

/// `Ok` when the spec stays within the role's grant; else a message naming the field and the
/// role.
pub fn check(spec: &OpenSearchPackageSpec, role: &OpenSearchPackageRole) -> Result<(), String> {
    let name = role.name_any();
    let grant = &role.spec;
    if spec.manages() && !allowed(&grant.allowed_source_buckets, &spec.source.s3_bucket_name) {
        return Err(format!(
            "spec.source.s3BucketName {:?} is outside the grant of OpenSearchPackageRole {name} (allowedSourceBuckets: {})",
            spec.source.s3_bucket_name,
            listed(&grant.allowed_source_buckets)
        ));
    }
    for (i, domain) in spec.domains.iter().enumerate() {
        if !allowed(&grant.allowed_domains, &domain.name) {
            return Err(format!(
                "spec.domains[{i}].name {:?} is outside the grant of OpenSearchPackageRole {name} (allowedDomains: {})",
                domain.name,
                listed(&grant.allowed_domains)
            ));
        }
    }
    if spec.adopt_existing && !grant.allow_adoption {
        return Err(format!(
            "spec.adoptExisting is true, but OpenSearchPackageRole {name} does not allow adopting existing packages (allowAdoption: false)"
        ));
    }
    Ok(())
}

/// The patterns that do not parse as globs, for the role's status.
pub fn invalid_patterns(role: &OpenSearchPackageRole) -> Vec<String> {
    let grant = &role.spec;
    let fields = [
        ("allowedDomains", &grant.allowed_domains),
        ("allowedSourceBuckets", &grant.allowed_source_buckets),
    ];
    fields
        .iter()
        .flat_map(|(field, patterns)| {
            patterns.iter().enumerate().filter_map(move |(i, p)| {
                Pattern::new(p)
                    .err()
                    .map(|e| format!("spec.{field}[{i}] {p:?} is not a valid pattern: {e}"))
            })
        })
        .collect()
}

/// Whether `value` matches one of the patterns (exact names are patterns without wildcards).
/// A pattern that does not parse matches nothing.
fn allowed(patterns: &[String], value: &str) -> bool {
    patterns
        .iter()
        .any(|p| Pattern::new(p).is_ok_and(|p| p.matches(value)))
}

fn listed(patterns: &[String]) -> String {
    if patterns.is_empty() {
        "none".into()
    } else {
        patterns.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::OpenSearchPackageRoleSpec;

    fn role(domains: &[&str], buckets: &[&str], adoption: bool) -> OpenSearchPackageRole {
        OpenSearchPackageRole::new(
            "team-a",
            OpenSearchPackageRoleSpec {
                role_arn: "arn:aws:iam::111122223333:role/team-a".into(),
                external_id: None,
                namespace_selector: Default::default(),
                allowed_domains: domains.iter().map(|s| s.to_string()).collect(),
                allowed_source_buckets: buckets.iter().map(|s| s.to_string()).collect(),
                allow_adoption: adoption,
            },
        )
    }

    fn spec(bucket: &str, domains: &[&str], adopt: bool) -> OpenSearchPackageSpec {
        let mut spec: OpenSearchPackageSpec = serde_json::from_value(serde_json::json!({
            "packageType": "TXT-DICTIONARY",
            "source": {"s3BucketName": bucket, "s3Key": "synonyms.txt"},
            "domains": domains.iter().map(|d| serde_json::json!({"name": d})).collect::<Vec<_>>(),
        }))
        .expect("spec parses");
        spec.adopt_existing = adopt;
        spec
    }

    #[test]
    fn exact_names_and_patterns_grant_domains_and_buckets() {
        let grant = role(&["search-*", "logs"], &["team-a-*"], false);
        assert_eq!(
            check(&spec("team-a-dicts", &["search-1", "logs"], false), &grant),
            Ok(())
        );
        let outside = check(
            &spec("team-a-dicts", &["search-1", "billing"], false),
            &grant,
        )
        .expect_err("billing is not granted");
        assert!(
            outside.contains("spec.domains[1].name \"billing\""),
            "{outside}"
        );
        assert!(
            outside.contains("OpenSearchPackageRole team-a"),
            "{outside}"
        );
        let bucket = check(&spec("team-b-dicts", &[], false), &grant).expect_err("bucket");
        assert!(
            bucket.contains("spec.source.s3BucketName \"team-b-dicts\""),
            "{bucket}"
        );
    }

    #[test]
    fn an_empty_list_grants_nothing_and_adoption_needs_the_grant() {
        let none = role(&[], &[], false);
        assert!(check(&spec("any", &[], false), &none).is_err());
        let buckets_only = role(&[], &["*"], false);
        assert_eq!(check(&spec("any", &[], false), &buckets_only), Ok(()));
        assert!(check(&spec("any", &["search"], false), &buckets_only).is_err());
        let adopt = check(&spec("any", &[], true), &buckets_only).expect_err("adoption");
        assert!(adopt.contains("spec.adoptExisting"), "{adopt}");
        assert_eq!(
            check(&spec("any", &[], true), &role(&[], &["*"], true)),
            Ok(())
        );
    }

    #[test]
    fn invalid_patterns_are_named_and_match_nothing() {
        let grant = role(&["search-[", "logs"], &[], false);
        assert_eq!(invalid_patterns(&grant).len(), 1);
        assert!(invalid_patterns(&grant)[0].contains("spec.allowedDomains[0]"));
        assert!(!allowed(&grant.spec.allowed_domains, "search-["));
    }
}
