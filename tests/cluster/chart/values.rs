//! The chart's optional values, rendered with `helm template`: the CRD switches, security
//! contexts, extra arguments and volumes, common labels, the image digest, the monitors and
//! the aggregated ClusterRoles.

use serde_yaml::Value;

use super::*;

fn labels(object: &Value) -> &Value {
    &object["metadata"]["labels"]
}

fn pod_spec(objects: &[Value]) -> &Value {
    &find(objects, "Deployment")["spec"]["template"]["spec"]
}

const CRD_NAMES: [&str; 2] = [
    "opensearchpackages.ospkg.dev",
    "opensearchpackageroles.ospkg.dev",
];

#[test]
fn the_crds_are_templates_behind_crds_install_and_kept_by_default() {
    let objects = template(&[]);
    for name in CRD_NAMES {
        let crd = find_named(&objects, "CustomResourceDefinition", name);
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"].as_str(),
            Some("keep"),
            "{name}"
        );
        assert_eq!(
            labels(crd)["app.kubernetes.io/managed-by"].as_str(),
            Some("Helm")
        );
        assert!(
            labels(crd)["helm.sh/chart"]
                .as_str()
                .is_some_and(|l| l.starts_with("opensearch-package-operator-")),
            "{crd:?}"
        );
    }

    let objects = template(&["--set", "crds.keep=false"]);
    for name in CRD_NAMES {
        let crd = find_named(&objects, "CustomResourceDefinition", name);
        assert!(
            crd["metadata"]["annotations"].is_null(),
            "crds.keep=false still annotates {name}: {:?}",
            crd["metadata"]
        );
    }

    let objects = template(&["--set", "crds.install=false"]);
    assert!(
        !kinds(&objects).contains("CustomResourceDefinition"),
        "crds.install=false still renders a CRD"
    );
    assert!(kinds(&objects).contains("Deployment"));
}

#[test]
fn tenancy_values_reach_the_operator() {
    let args_of = |objects: &[Value]| strings(&pod_spec(objects)["containers"][0]["args"]);
    let defaults = args_of(&template(&[]));
    for arg in [
        "--unbound-namespaces=own-identity",
        "--role-check-interval=5m",
    ] {
        assert!(
            defaults.contains(&arg.to_owned()),
            "{arg} missing: {defaults:?}"
        );
    }
    let set = args_of(&template(&[
        "--set",
        "unboundNamespaces=deny,roleCheckInterval=90s",
    ]));
    for arg in ["--unbound-namespaces=deny", "--role-check-interval=90s"] {
        assert!(set.contains(&arg.to_owned()), "{arg} missing: {set:?}");
    }
    // Each flag once: clap refuses a repeated one.
    for flag in ["--unbound-namespaces=", "--role-check-interval="] {
        assert_eq!(
            set.iter().filter(|a| a.starts_with(flag)).count(),
            1,
            "{set:?}"
        );
    }
}

#[test]
fn security_contexts_can_leave_ids_to_openshift_and_be_overridden() {
    // OpenShift's restricted SCC assigns uids and gids: null removes the chart's defaults.
    let objects = template(&[
        "--set",
        "podSecurityContext.runAsUser=null,podSecurityContext.runAsGroup=null,podSecurityContext.fsGroup=null",
        "--set",
        "securityContext.runAsUser=null,securityContext.runAsGroup=null",
    ]);
    let pod = pod_spec(&objects);
    let pod_security = pod["securityContext"]
        .as_mapping()
        .expect("pod securityContext");
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert!(
            !pod_security.contains_key(key),
            "pod securityContext keeps {key}: {pod_security:?}"
        );
    }
    assert_eq!(pod_security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        pod_security["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    let container = &pod["containers"][0]["securityContext"];
    let container_security = container.as_mapping().expect("container securityContext");
    for key in ["runAsUser", "runAsGroup"] {
        assert!(
            !container_security.contains_key(key),
            "container securityContext keeps {key}: {container_security:?}"
        );
    }
    assert_eq!(container["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(container["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&container["capabilities"]["drop"]), ["ALL"]);

    // Other ids, and a field the defaults do not set.
    let objects = template(&[
        "--set",
        "podSecurityContext.runAsUser=1000,podSecurityContext.fsGroupChangePolicy=OnRootMismatch",
        "--set",
        "securityContext.runAsUser=1000",
    ]);
    let pod = pod_spec(&objects);
    assert_eq!(pod["securityContext"]["runAsUser"].as_i64(), Some(1000));
    assert_eq!(
        pod["securityContext"]["fsGroupChangePolicy"].as_str(),
        Some("OnRootMismatch")
    );
    assert_eq!(pod["securityContext"]["fsGroup"].as_i64(), Some(65532));
    assert_eq!(
        pod["containers"][0]["securityContext"]["runAsUser"].as_i64(),
        Some(1000)
    );
}

#[test]
fn extra_args_volumes_and_mounts_are_added() {
    let objects = template(&[
        "--set",
        "extraArgs={--aws-attempt-timeout=30s,--aws-operation-timeout=90s}",
        "--set-json",
        r#"extraVolumes=[{"name":"ca-bundle","configMap":{"name":"corporate-ca"}}]"#,
        "--set-json",
        r#"extraVolumeMounts=[{"name":"ca-bundle","mountPath":"/etc/ssl/certs/corporate-ca.pem","subPath":"ca.pem","readOnly":true}]"#,
        "--set",
        "extraEnv[0].name=AWS_CA_BUNDLE,extraEnv[0].value=/etc/ssl/certs/corporate-ca.pem",
    ]);
    let pod = pod_spec(&objects);
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    assert_eq!(
        &args[args.len() - 2..],
        ["--aws-attempt-timeout=30s", "--aws-operation-timeout=90s"],
        "extra arguments come after the chart's: {args:?}"
    );
    assert_eq!(args[0], "run");

    let volumes = pod["volumes"].as_sequence().expect("volumes");
    assert_eq!(volumes.len(), 2, "{volumes:?}");
    assert_eq!(volumes[0]["name"].as_str(), Some("tmp"));
    assert_eq!(volumes[1]["name"].as_str(), Some("ca-bundle"));
    assert_eq!(
        volumes[1]["configMap"]["name"].as_str(),
        Some("corporate-ca")
    );
    let mounts = container["volumeMounts"].as_sequence().expect("mounts");
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert_eq!(mounts[0]["mountPath"].as_str(), Some("/tmp"));
    assert_eq!(mounts[1]["name"].as_str(), Some("ca-bundle"));
    assert_eq!(
        mounts[1]["mountPath"].as_str(),
        Some("/etc/ssl/certs/corporate-ca.pem")
    );
    assert_eq!(mounts[1]["readOnly"].as_bool(), Some(true));
}

#[test]
fn common_labels_are_on_every_object_but_never_in_a_selector() {
    let objects = template(&[
        "--set",
        "commonLabels.team=search,commonLabels.cost-center=c42",
        // It cannot take over a label the selector needs.
        "--set",
        "commonLabels.app\\.kubernetes\\.io/name=other",
        "--set",
        "podLabels.sidecar=none,serviceMonitor.enabled=true,serviceMonitor.labels.release=prom",
    ]);
    assert!(objects.len() >= 10, "{:?}", kinds(&objects));
    for object in &objects {
        let what = format!(
            "{} {}",
            object["kind"].as_str().unwrap_or("?"),
            object["metadata"]["name"].as_str().unwrap_or("?")
        );
        assert_eq!(labels(object)["team"].as_str(), Some("search"), "{what}");
        assert_eq!(
            labels(object)["cost-center"].as_str(),
            Some("c42"),
            "{what}"
        );
        assert_eq!(
            labels(object)["app.kubernetes.io/name"].as_str(),
            Some("opensearch-package-operator"),
            "{what}"
        );
    }
    let deployment = find(&objects, "Deployment");
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert!(selector["team"].is_null(), "{selector:?}");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod_labels["team"].as_str(), Some("search"));
    assert_eq!(pod_labels["sidecar"].as_str(), Some("none"));
    for (key, value) in selector.as_mapping().unwrap() {
        assert_eq!(&pod_labels[key], value, "the pod must match the selector");
    }
    assert!(find(&objects, "Service")["spec"]["selector"]["team"].is_null());
    assert!(
        find(&objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]["team"].is_null()
    );
    assert_eq!(
        labels(find(&objects, "ServiceMonitor"))["release"].as_str(),
        Some("prom")
    );
}

#[test]
fn an_image_digest_takes_precedence_over_the_tag() {
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let image = |extra: &[&str]| {
        let objects = template(extra);
        pod_spec(&objects)["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join(CHART).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    let app_version = chart["appVersion"].as_str().unwrap();
    assert_eq!(
        image(&[]),
        format!("ghcr.io/ospkg-dev/opensearch-package-operator:{app_version}")
    );
    assert_eq!(
        image(&["--set", "image.tag=v9.9.9"]),
        "ghcr.io/ospkg-dev/opensearch-package-operator:v9.9.9"
    );
    let by_digest = format!("image.tag=v9.9.9,image.digest={digest}");
    assert_eq!(
        image(&["--set", &by_digest]),
        format!("ghcr.io/ospkg-dev/opensearch-package-operator@{digest}")
    );
}

#[test]
fn pod_and_service_monitors_take_scrape_settings() {
    let settings = |monitor: &str| {
        [
            format!(
                "{monitor}.enabled=true,{monitor}.interval=15s,{monitor}.scrapeTimeout=10s,\
                 {monitor}.labels.release=prom"
            ),
            format!(
                "{monitor}.relabelings[0].sourceLabels[0]=__meta_kubernetes_pod_node_name,\
                 {monitor}.relabelings[0].targetLabel=node,{monitor}.relabelings[0].action=replace"
            ),
            format!(
                "{monitor}.metricRelabelings[0].sourceLabels[0]=__name__,\
                 {monitor}.metricRelabelings[0].regex=go_.*,{monitor}.metricRelabelings[0].action=drop"
            ),
        ]
    };
    for (monitor, kind, endpoints) in [
        ("podMonitor", "PodMonitor", "podMetricsEndpoints"),
        ("serviceMonitor", "ServiceMonitor", "endpoints"),
    ] {
        let values = settings(monitor);
        let mut args = Vec::new();
        for value in &values {
            args.extend(["--set", value.as_str()]);
        }
        let objects = template(&args);
        let found = kinds(&objects);
        let other = if kind == "PodMonitor" {
            "ServiceMonitor"
        } else {
            "PodMonitor"
        };
        assert!(!found.contains(other), "{monitor} also rendered a {other}");
        let object = find(&objects, kind);
        assert_eq!(
            object["apiVersion"].as_str(),
            Some("monitoring.coreos.com/v1")
        );
        assert_eq!(object["metadata"]["namespace"].as_str(), Some(NAMESPACE));
        assert_eq!(labels(object)["release"].as_str(), Some("prom"));
        let selector = &object["spec"]["selector"]["matchLabels"];
        assert_eq!(
            selector,
            &find(&objects, "Deployment")["spec"]["selector"]["matchLabels"],
            "{kind} selects the operator's pods"
        );
        let endpoint = &object["spec"][endpoints][0];
        assert_eq!(endpoint["port"].as_str(), Some("metrics"), "{kind}");
        assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
        assert_eq!(endpoint["interval"].as_str(), Some("15s"));
        assert_eq!(endpoint["scrapeTimeout"].as_str(), Some("10s"));
        // Per-object series keep the object's namespace (alerts and dashboard filter on it).
        assert_eq!(
            endpoint["honorLabels"].as_bool(),
            Some(true),
            "{endpoint:?}"
        );
        assert_eq!(
            strings(&endpoint["relabelings"][0]["sourceLabels"]),
            ["__meta_kubernetes_pod_node_name"]
        );
        assert_eq!(
            endpoint["relabelings"][0]["targetLabel"].as_str(),
            Some("node")
        );
        assert_eq!(
            endpoint["metricRelabelings"][0]["action"].as_str(),
            Some("drop")
        );
        assert_eq!(
            endpoint["metricRelabelings"][0]["regex"].as_str(),
            Some("go_.*")
        );
    }

    // Without the optional settings the endpoint carries none of them.
    let objects = template(&["--set", "podMonitor.enabled=true"]);
    let endpoint = &find(&objects, "PodMonitor")["spec"]["podMetricsEndpoints"][0];
    let keys: Vec<&str> = endpoint
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["port", "path", "honorLabels", "interval"]);

    // Both at once would scrape every pod twice.
    let output = run_helm(&[
        "template",
        RELEASE,
        CHART,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "podMonitor.enabled=true,serviceMonitor.enabled=true",
    ]);
    assert!(!output.status.success(), "both monitors rendered");
    assert!(
        stderr(&output).contains("serviceMonitor or podMonitor"),
        "{}",
        stderr(&output)
    );
}

/// Every rule of every rendered Role and ClusterRole.
fn rbac_rules(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Role" | "ClusterRole")))
        .flat_map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap().to_owned();
            o["rules"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(move |rule| (name.clone(), rule))
        })
        .collect()
}

#[test]
fn aggregated_roles_name_their_resources_and_can_be_switched_off() {
    let objects = template(&[]);
    let view = find_named(&objects, "ClusterRole", &format!("{RELEASE}-view"));
    let edit = find_named(&objects, "ClusterRole", &format!("{RELEASE}-edit"));
    for (role, aggregated_to) in [
        (view, &["view", "edit", "admin"][..]),
        (edit, &["edit", "admin"][..]),
    ] {
        let labels = labels(role).as_mapping().unwrap();
        let aggregation: Vec<&str> = labels
            .iter()
            .filter_map(|(k, v)| {
                let to = k
                    .as_str()?
                    .strip_prefix("rbac.authorization.k8s.io/aggregate-to-")?;
                (v.as_str() == Some("true")).then_some(to)
            })
            .collect();
        let mut expected = aggregated_to.to_vec();
        expected.sort_unstable();
        let mut aggregation = aggregation;
        aggregation.sort_unstable();
        assert_eq!(aggregation, expected, "{:?}", role["metadata"]["name"]);
    }
    assert_eq!(
        view["rules"],
        serde_yaml::from_str::<Value>(
            r#"
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackages", "opensearchpackages/status"]
  verbs: ["get", "list", "watch"]
"#
        )
        .unwrap()
    );
    assert_eq!(
        edit["rules"],
        serde_yaml::from_str::<Value>(
            r#"
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackages"]
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
"#
        )
        .unwrap()
    );

    // No wildcard anywhere, in any variant: a future kind must never be granted by accident.
    for extra in [
        &[][..],
        &["--set", "watchNamespaces={search}"][..],
        &["--set", "leaderElection.enabled=false,replicaCount=1"][..],
    ] {
        let objects = template(extra);
        for (name, rule) in rbac_rules(&objects) {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !strings(&rule[field]).iter().any(|v| v.contains('*')),
                    "{name} has a wildcard in {field}: {rule:?}"
                );
            }
        }
        // OpenSearchPackageRoles are the cluster admin's grant: no aggregated ClusterRole
        // (view, edit, admin) names them; the operator's own roles are not aggregated.
        for role in objects.iter().filter(|o| {
            labels(o).as_mapping().is_some_and(|l| {
                l.keys()
                    .any(|k| k.as_str().unwrap().contains("aggregate-to"))
            })
        }) {
            let name = role["metadata"]["name"].as_str().unwrap();
            assert!(
                name.ends_with("-view") || name.ends_with("-edit"),
                "{name} is aggregated into the built-in roles"
            );
            for rule in role["rules"].as_sequence().unwrap() {
                assert!(
                    !strings(&rule["resources"])
                        .iter()
                        .any(|r| r.starts_with("opensearchpackageroles")),
                    "{name} grants rights on OpenSearchPackageRoles: {rule:?}"
                );
            }
        }
    }

    for off in ["rbac.aggregateToDefaultRoles=false", "rbac.create=false"] {
        let objects = template(&["--set", off]);
        let aggregated: Vec<&str> = objects
            .iter()
            .filter(|o| {
                labels(o).as_mapping().is_some_and(|l| {
                    l.keys()
                        .any(|k| k.as_str().unwrap().contains("aggregate-to"))
                })
            })
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(aggregated.is_empty(), "{off}: {aggregated:?}");
    }
}

#[test]
fn zero_replicas_stop_the_operator() {
    // docs/operations.md: scale to zero before deleting the CRD.
    let objects = template(&["--set", "replicaCount=0"]);
    let spec = &find(&objects, "Deployment")["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(0));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("Recreate"));
    assert!(!kinds(&objects).contains("PodDisruptionBudget"));
}
