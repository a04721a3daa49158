//! Binding namespaces to roles, and the scope of an object, from filled caches.
use kube::api::ObjectMeta;
use kube::runtime::watcher::Event;

use super::*;
use crate::crd::OpenSearchPackageRoleSpec;

fn role(name: &str, selector: &[(&str, &str)]) -> OpenSearchPackageRole {
    let labels = selector
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    OpenSearchPackageRole::new(
        name,
        OpenSearchPackageRoleSpec {
            role_arn: format!("arn:aws:iam::111122223333:role/{name}"),
            external_id: None,
            namespace_selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some(labels),
                ..Default::default()
            },
            allowed_domains: Vec::new(),
            allowed_source_buckets: Vec::new(),
            allow_adoption: false,
        },
    )
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
    PartialObjectMeta {
        types: None,
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        },
        _phantom: Default::default(),
    }
}

/// A tenancy whose caches hold these roles and namespaces (synced unless `synced` is
/// false).
fn tenancy(
    roles: Vec<OpenSearchPackageRole>,
    namespaces: Vec<PartialObjectMeta<Namespace>>,
    unbound: UnboundNamespaces,
    synced: bool,
) -> Tenancy {
    let (role_store, mut role_writer) = reflector::store();
    let (ns_store, mut ns_writer) = reflector::store();
    role_writer.apply_watcher_event(&Event::Init);
    for role in roles {
        role_writer.apply_watcher_event(&Event::InitApply(role));
    }
    ns_writer.apply_watcher_event(&Event::Init);
    for ns in namespaces {
        ns_writer.apply_watcher_event(&Event::InitApply(ns));
    }
    if synced {
        role_writer.apply_watcher_event(&Event::InitDone);
        ns_writer.apply_watcher_event(&Event::InitDone);
    }
    Tenancy {
        caches: Some(Caches {
            roles: role_store,
            namespaces: ns_store,
        }),
        ..Tenancy::unwatched(unbound)
    }
}

fn fixture(unbound: UnboundNamespaces, synced: bool) -> Tenancy {
    tenancy(
        vec![
            role("team-a", &[("team", "a")]),
            role("team-b", &[("team", "b")]),
            role("shared-1", &[("shared", "yes")]),
            role("shared-2", &[("shared", "yes")]),
        ],
        vec![
            namespace("a", &[("team", "a")]),
            namespace("b", &[("team", "b")]),
            namespace("both", &[("shared", "yes")]),
            namespace("none", &[]),
        ],
        unbound,
        synced,
    )
}

#[test]
fn a_namespace_selected_by_one_role_is_bound_to_it() {
    let tenancy = fixture(UnboundNamespaces::OwnIdentity, true);
    for (ns, expected) in [("a", "team-a"), ("b", "team-b")] {
        match tenancy.binding(ns) {
            Some(Binding::Role(role)) => assert_eq!(role.name_any(), expected),
            other => panic!("{ns}: {other:?}"),
        }
    }
    assert_eq!(tenancy.account_hint("a").as_deref(), Some("111122223333"));
}

#[test]
fn two_roles_are_ambiguous_and_none_follows_the_flag() {
    let open = fixture(UnboundNamespaces::OwnIdentity, true);
    match open.binding("both") {
        Some(Binding::Ambiguous(names)) => assert_eq!(names, ["shared-1", "shared-2"]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(open.binding("none"), Some(Binding::Own)));
    // A namespace not in the cache (not created yet) has no labels: no role selects it.
    assert!(matches!(open.binding("unknown"), Some(Binding::Own)));
    let shared = fixture(UnboundNamespaces::Deny, true);
    assert!(matches!(shared.binding("none"), Some(Binding::Denied)));
    assert!(matches!(shared.binding("a"), Some(Binding::Role(_))));
}

#[test]
fn nothing_is_bound_before_the_caches_synced() {
    // Falling back to the operator's own identity before the roles are known would let
    // a namespace reach the operator's account: wait instead.
    let tenancy = fixture(UnboundNamespaces::OwnIdentity, false);
    assert!(tenancy.binding("a").is_none());
    assert!(tenancy.binding("none").is_none());
}

#[test]
fn a_binding_changes_its_fingerprint_with_the_role() {
    let mut first = role("team-a", &[("team", "a")]);
    first.metadata.generation = Some(1);
    let mut second = first.clone();
    second.metadata.generation = Some(2);
    let fingerprint = |r: OpenSearchPackageRole| Binding::Role(Arc::new(r)).fingerprint();
    assert_ne!(fingerprint(first.clone()), fingerprint(second));
    assert_eq!(fingerprint(first.clone()), fingerprint(first));
    assert_ne!(Binding::Own.fingerprint(), Binding::Denied.fingerprint());
}

fn object(ns: &str, domain: &str) -> OpenSearchPackage {
    let mut obj: OpenSearchPackage = serde_json::from_value(serde_json::json!({
        "apiVersion": "ospkg.dev/v1alpha1",
        "kind": "OpenSearchPackage",
        "metadata": {"name": "synonyms", "namespace": ns},
        "spec": {
            "packageType": "TXT-DICTIONARY",
            "source": {"s3BucketName": "dicts", "s3Key": "s.txt"},
            "domains": [{"name": domain}],
        },
    }))
    .expect("object parses");
    obj.status = Some(Default::default());
    obj
}

fn refusal(result: Result<Scope, AccessError>) -> Option<StallReason> {
    match result {
        Err(AccessError::Refused(Refusal::Stalled { reason, .. })) => Some(reason),
        _ => None,
    }
}

#[tokio::test]
async fn the_scope_is_the_roles_and_the_grant_and_account_are_enforced() {
    let mut granted = role("team-a", &[("team", "a")]);
    granted.spec.allowed_domains = vec!["search-*".into()];
    granted.spec.allowed_source_buckets = vec!["dicts".into()];
    let tenancy = tenancy(
        vec![granted],
        vec![namespace("a", &[("team", "a")])],
        UnboundNamespaces::Deny,
        true,
    );
    // Never called: a role's account comes from its ARN.
    let backend = crate::backend::aws::AwsBackend::for_endpoint("http://127.0.0.1:1").await;
    let scope = tenancy
        .scope(&backend, &object("a", "search-1"), "eu-west-1", false)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(scope.account, "111122223333");
    assert_eq!(scope.region, "eu-west-1");
    match &scope.identity {
        Identity::Role(session) => {
            assert_eq!(session.namespace, "a");
            assert_eq!(session.role_arn, "arn:aws:iam::111122223333:role/team-a");
        }
        other => panic!("{other:?}"),
    }
    let outside = object("a", "billing");
    assert_eq!(
        refusal(tenancy.scope(&backend, &outside, "eu-west-1", false).await),
        Some(StallReason::NotGranted)
    );
    // Deleting checks the identity only: the grant bounded what the object created.
    assert!(
        tenancy
            .scope(&backend, &outside, "eu-west-1", true)
            .await
            .is_ok()
    );
    // A package recorded in another account is not reached through this one.
    let mut moved = object("a", "search-1");
    moved.status = Some(crate::crd::OpenSearchPackageStatus {
        account_id: Some("999999999999".into()),
        package_id: Some("F1".into()),
        ..Default::default()
    });
    assert_eq!(
        refusal(tenancy.scope(&backend, &moved, "eu-west-1", false).await),
        Some(StallReason::AccountChanged)
    );
    assert_eq!(
        refusal(
            tenancy
                .scope(&backend, &object("other", "search-1"), "eu-west-1", false)
                .await
        ),
        Some(StallReason::NoRole)
    );
}
