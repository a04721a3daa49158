//! The chart's aggregated ClusterRoles on a real API server with the clusterrole-aggregation
//! controller: people bound to the built-in `edit` role may create OpenSearchPackage objects,
//! `view` may read them, and with `rbac.aggregateToDefaultRoles=false` neither may. None of
//! `view`, `edit` or `admin` gives any right on OpenSearchPackageRoles (the cluster admin's
//! grant), not even bound cluster-wide.

use std::time::{Duration, Instant};

use super::*;

const PACKAGES: &str = "opensearchpackages.ospkg.dev";
const EDITOR: &str = "jane";
const VIEWER: &str = "bob";
const ADMIN: &str = "ada";
/// Bound to `edit` and `view` with ClusterRoleBindings: every namespace, and the only way the
/// built-in roles could reach a cluster-scoped kind.
const CLUSTER_EDITOR: &str = "carol";
const CLUSTER_VIEWER: &str = "vic";
const ROLES: &str = "opensearchpackageroles.ospkg.dev";
const ROLE: &str = "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackageRole
metadata:
  name: team-a
spec:
  roleARN: arn:aws:iam::111122223333:role/ospkg-team-a
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: team-a
  allowedDomains: ['*']
  allowedSourceBuckets: ['*']
";

/// Polls `kubectl auth can-i` until it answers `expected` (the controller aggregates
/// asynchronously).
async fn eventually_can(
    cp: &testenv::ControlPlane,
    user: &str,
    verb: &str,
    resource: &str,
    expected: bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while can_user(cp, user, verb, resource, &["--namespace=team-a"]).await != expected {
        assert!(
            Instant::now() < deadline,
            "{user} {verb} {resource} in team-a never became {expected}; \
             kube-controller-manager log:\n{}",
            cp.controller_manager_log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn kubectl_as(cp: &testenv::ControlPlane, user: &str, args: &[&str]) -> Output {
    let user = format!("--as={user}");
    let mut all = args.to_vec();
    all.push(&user);
    cp.kubectl(&all).await.expect("running kubectl")
}

#[tokio::test(flavor = "multi_thread")]
async fn edit_and_view_users_get_package_rights_through_the_builtin_roles() {
    let cp = testenv::ControlPlane::start_with_controllers(&["clusterrole-aggregation"])
        .await
        .expect("starting the test API server with the aggregation controller");
    let kubeconfig = cp.kubeconfig_path().to_str().unwrap().to_owned();
    let output = run_helm(&[
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(output.status.success(), "helm install: {}", stderr(&output));
    for namespace in ["team-a", "team-b"] {
        cp.create_namespace(namespace).await.unwrap();
    }
    // People bound to the built-in roles in team-a only, as a cluster admin would.
    cp.apply_yaml(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: editors, namespace: team-a}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {EDITOR}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: viewers, namespace: team-a}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {VIEWER}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: admins, namespace: team-a}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {ADMIN}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: cluster-editors}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {CLUSTER_EDITOR}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: cluster-viewers}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {CLUSTER_VIEWER}}}]
"
    ))
    .await
    .expect("role bindings");

    eventually_can(&cp, EDITOR, "create", PACKAGES, true).await;
    eventually_can(&cp, ADMIN, "create", PACKAGES, true).await;
    eventually_can(&cp, VIEWER, "list", PACKAGES, true).await;
    let team_a = ["--namespace=team-a"];
    for user in [EDITOR, ADMIN] {
        for verb in [
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ] {
            assert!(
                can_user(&cp, user, verb, PACKAGES, &team_a).await,
                "{user} cannot {verb} packages"
            );
        }
        // Status is the operator's to write; another namespace is not theirs.
        assert!(
            !can_user(
                &cp,
                user,
                "update",
                "opensearchpackages.ospkg.dev/status",
                &team_a
            )
            .await
        );
        assert!(!can_user(&cp, user, "create", PACKAGES, &["--namespace=team-b"]).await);
        // Only the resources named: a future kind of the group is not granted.
        assert!(!can_user(&cp, user, "create", "tenancygrants.ospkg.dev", &team_a).await);
    }
    // Bound cluster-wide, edit reaches every namespace's packages ...
    eventually_can(&cp, CLUSTER_EDITOR, "create", PACKAGES, true).await;
    assert!(
        can_user(
            &cp,
            CLUSTER_EDITOR,
            "create",
            PACKAGES,
            &["--namespace=team-b"]
        )
        .await
    );
    assert!(can_user(&cp, CLUSTER_VIEWER, "list", PACKAGES, &["--all-namespaces"]).await);
    // ... and still no OpenSearchPackageRole: no user of the built-in roles may write one,
    // and none may even read them.
    for user in [EDITOR, ADMIN, VIEWER, CLUSTER_EDITOR, CLUSTER_VIEWER] {
        for verb in [
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ] {
            for scope in [&[][..], &team_a[..]] {
                assert!(
                    !can_user(&cp, user, verb, ROLES, scope).await,
                    "{user} may {verb} OpenSearchPackageRoles {scope:?}"
                );
            }
        }
        assert!(
            !can_user(
                &cp,
                user,
                "patch",
                "opensearchpackageroles.ospkg.dev/status",
                &[]
            )
            .await,
            "{user} may write an OpenSearchPackageRole's status"
        );
    }
    // The aggregated roles as the controller built them name no OpenSearchPackageRole.
    for builtin in ["view", "edit", "admin"] {
        let rules = kubectl_ok(
            &cp,
            &[
                "get",
                "clusterrole",
                builtin,
                "-o=jsonpath={.rules[*].resources}",
            ],
        )
        .await;
        assert!(
            rules.contains("opensearchpackages"),
            "{builtin} was not aggregated: {rules}"
        );
        assert!(
            !rules.contains("opensearchpackageroles"),
            "{builtin} names OpenSearchPackageRoles: {rules}"
        );
    }
    for verb in ["get", "list", "watch"] {
        assert!(can_user(&cp, VIEWER, verb, PACKAGES, &team_a).await);
    }
    assert!(
        can_user(
            &cp,
            VIEWER,
            "get",
            "opensearchpackages.ospkg.dev/status",
            &team_a
        )
        .await
    );
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !can_user(&cp, VIEWER, verb, PACKAGES, &team_a).await,
            "a viewer may {verb} packages"
        );
    }
    assert!(!can_user(&cp, VIEWER, "list", "tenancygrants.ospkg.dev", &team_a).await);

    // Real requests as those users.
    let dir = tempfile::tempdir().unwrap();
    let package = write_temp(
        dir.path(),
        "package.yaml",
        "apiVersion: ospkg.dev/v1alpha1
kind: OpenSearchPackage
metadata:
  name: team-synonyms
  namespace: team-a
spec:
  packageType: TXT-DICTIONARY
  source:
    s3BucketName: team-a-dicts
    s3Key: synonyms.txt
",
    );
    let created = kubectl_as(&cp, EDITOR, &["create", "-f", &package]).await;
    assert!(created.status.success(), "{}", stderr(&created));
    let listed = kubectl_as(&cp, VIEWER, &["get", "ospkg", "-n", "team-a", "-o", "name"]).await;
    assert_eq!(
        stdout(&listed).trim(),
        "opensearchpackage.ospkg.dev/team-synonyms",
        "{}",
        stderr(&listed)
    );
    let deleted = kubectl_as(
        &cp,
        VIEWER,
        &["delete", "ospkg", "-n", "team-a", "team-synonyms"],
    )
    .await;
    assert!(!deleted.status.success(), "a viewer deleted a package");
    assert!(
        stderr(&deleted).contains("forbidden"),
        "{}",
        stderr(&deleted)
    );

    // Real requests on OpenSearchPackageRoles: editors are refused, the cluster admin (this
    // kubeconfig's user) is not; then nobody but the admin may change or delete it.
    let role = write_temp(dir.path(), "role.yaml", ROLE);
    for user in [EDITOR, ADMIN, CLUSTER_EDITOR] {
        let refused = kubectl_as(&cp, user, &["create", "-f", &role]).await;
        assert!(
            !refused.status.success(),
            "{user} created an OpenSearchPackageRole"
        );
        assert!(
            stderr(&refused).contains("forbidden"),
            "{user}: {}",
            stderr(&refused)
        );
    }
    let created = kubectl_ok(&cp, &["create", "-f", &role]).await;
    assert!(
        created.contains("opensearchpackagerole.ospkg.dev/team-a"),
        "{created}"
    );
    for (user, args) in [
        (
            CLUSTER_EDITOR,
            &[
                "patch",
                "ospkgrole",
                "team-a",
                "--type=merge",
                "-p",
                r#"{"spec":{"allowAdoption":true}}"#,
            ][..],
        ),
        (CLUSTER_EDITOR, &["delete", "ospkgrole", "team-a"][..]),
        (EDITOR, &["delete", "ospkgrole", "team-a"][..]),
        (CLUSTER_VIEWER, &["get", "ospkgrole", "team-a"][..]),
        (VIEWER, &["get", "ospkgrole"][..]),
    ] {
        let refused = kubectl_as(&cp, user, args).await;
        assert!(
            !refused.status.success(),
            "{user} may kubectl {}",
            args.join(" ")
        );
        assert!(
            stderr(&refused).contains("forbidden"),
            "{user} kubectl {}: {}",
            args.join(" "),
            stderr(&refused)
        );
    }
    let unchanged = kubectl_ok(
        &cp,
        &[
            "get",
            "ospkgrole",
            "team-a",
            "-o=jsonpath={.spec.allowAdoption}",
        ],
    )
    .await;
    assert_eq!(unchanged.trim(), "false", "the role was changed");

    // Switched off, the built-in roles lose the rights again.
    let output = run_helm(&[
        "upgrade",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "rbac.aggregateToDefaultRoles=false",
    ]);
    assert!(output.status.success(), "helm upgrade: {}", stderr(&output));
    eventually_can(&cp, EDITOR, "create", PACKAGES, false).await;
    eventually_can(&cp, VIEWER, "list", PACKAGES, false).await;
    eventually_can(&cp, ADMIN, "create", PACKAGES, false).await;
    let refused = kubectl_as(
        &cp,
        EDITOR,
        &["delete", "ospkg", "-n", "team-a", "team-synonyms"],
    )
    .await;
    assert!(!refused.status.success(), "the editor still deletes");
}
