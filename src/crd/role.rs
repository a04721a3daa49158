//! The `OpenSearchPackageRole` custom resource (`ospkg.dev/v1alpha1`, cluster-scoped): a cluster
//! admin's grant of an IAM role, and of what it may touch, to a set of namespaces.
//!
//! Objects in a namespace that exactly one role selects are reconciled with that role's
//! credentials (STS AssumeRole), and only within its grant: the domains and source buckets it
//! allows, and adoption of existing packages only when it allows it. A namespace that no
//! role selects uses the operator's own identity, or is refused (`--unbound-namespaces deny`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An IAM role the operator assumes for the OpenSearchPackages of the namespaces it selects, and what
/// those objects may touch.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ospkg.dev",
    version = "v1alpha1",
    kind = "OpenSearchPackageRole",
    plural = "opensearchpackageroles",
    shortname = "ospkgrole",
    category = "opensearch",
    category = "aws",
    status = "OpenSearchPackageRoleStatus",
    doc = "A cluster admin's grant: the IAM role the operator assumes for the OpenSearchPackages of the selected namespaces, the domains and source buckets they may use, and whether they may adopt existing packages.",
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.roleARN"}"#,
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".status.accountID"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OpenSearchPackageRoleSpec {
    /// ARN of the IAM role to assume, e.g. arn:aws:iam::111122223333:role/ospkg-team-a. Its
    /// account is where the selected namespaces' packages live. The role's trust policy must
    /// allow the operator's own role sts:AssumeRole and sts:TagSession.
    #[serde(rename = "roleARN")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$"))]
    pub role_arn: String,

    /// External id the role's trust policy requires (sts:ExternalId), if any.
    #[serde(
        default,
        rename = "externalID",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 2, max = 1224), regex(pattern = r"^[\w+=,.@:/-]+$"))]
    pub external_id: Option<String>,

    /// Namespaces whose OpenSearchPackages use this role (a label selector on Namespaces;
    /// `{}` selects every namespace). A namespace selected by two roles is refused.
    pub namespace_selector: LabelSelector,

    /// Domain names the selected namespaces' packages may be associated with: exact names or
    /// glob patterns (`search-*`, `*`). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub allowed_domains: Vec<String>,

    /// S3 buckets the selected namespaces' packages may be imported from: exact names or glob
    /// patterns (`team-a-*`, `*`). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub allowed_source_buckets: Vec<String>,

    /// Whether the selected namespaces' objects may adopt packages that already exist in the
    /// account (spec.adoptExisting). Off by default: adopting, with deletionPolicy Delete,
    /// would let a namespace delete a package some other tool created.
    #[serde(default)]
    pub allow_adoption: bool,
}

/// What the operator found out about the role.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OpenSearchPackageRoleStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The AWS account of the role (from its ARN).
    #[serde(default, rename = "accountID", skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,

    /// Ready: True when the operator could assume the role at the last check (reason
    /// Assumable); False with reason AssumeRoleFailed (STS refused: trust policy, external
    /// id) or InvalidSpec (a pattern that does not parse).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl OpenSearchPackageRole {
    /// Whether the last check could assume the role, for the current generation.
    pub fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.observed_generation == self.metadata.generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    }
}
