//! `status` of an `OpenSearchPackage`: what the operator observed and did. Written only by
//! the operator, whole, with server-side apply.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backend::Operation;
use crate::vocabulary::{DomainPackageStatus, PackageStatus};

/// Observed state of the package.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OpenSearchPackageStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Id of the package this object owns.
    #[serde(default, rename = "packageID", skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,

    /// Name of the package this object owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_name: Option<String>,

    /// Type of the package this object owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_type: Option<String>,

    /// Engine version of the package this object owns (plugins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,

    /// AWS region of the package; fixed at the first reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// AWS account of the package: the account of the namespace's OpenSearchPackageRole, or
    /// the operator's own. Recorded at the first reconcile that reaches AWS; fixed once a
    /// package is recorded.
    #[serde(default, rename = "accountID", skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,

    /// The service's PackageStatus as last seen (COPYING, VALIDATING, AVAILABLE, COPY_FAILED,
    /// VALIDATION_FAILED, DELETING, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_status: Option<PackageStatus>,

    /// Newest available package version, e.g. v3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_package_version: Option<String>,

    /// The service's error details, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<ErrorDetails>,

    /// When the package was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,

    /// When the package was last updated (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<String>,

    /// Digest of the update-relevant spec fields last sent with CreatePackage or UpdatePackage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,

    /// The S3 object version the package was last imported from, for an object that follows
    /// its source's content (spec.source.followContent). When that import failed,
    /// packageStatus and the Stalled condition say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceStatus>,

    /// Package versions, newest first, at most 10.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_history: Vec<VersionHistoryEntry>,

    /// Associations of the package with domains: those in spec.domains and any made outside
    /// this object (reported, never changed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<DomainStatus>,

    /// Accounts the package is shared with, as last applied with UpdatePackageScope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_listed_users: Option<Vec<String>>,

    /// A CreatePackage or UpdatePackage call written down before it was made, whose outcome
    /// is not yet recorded: a package found by name while a create stands is this object's
    /// own; an update stands until the package shows whether it took effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,

    /// True when this object adopted a package that existed before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,

    /// Value of the ospkg.dev/reconcile-requested-at annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,

    /// Listed domains ACTIVE on the package's current version, of all listed, e.g. 2/2
    /// (`kubectl get -o wide` shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains_ready: Option<String>,

    /// Name of the ConfigMap this object last published its export to (spec.export); it is
    /// deleted when spec.export names another one or goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_config_map_name: Option<String>,

    /// Ready, Reconciling and Stalled conditions (kstatus compatible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        schema_with = "conditions_schema",
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
}

/// `metav1.Condition` items whose `status` is one of True, False and Unknown (the upstream
/// type says so only in prose).
fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    if let Some(status) = schema
        .pointer_mut("/items/properties/status")
        .and_then(serde_json::Value::as_object_mut)
    {
        status.insert(
            "enum".into(),
            serde_json::json!(["True", "False", "Unknown"]),
        );
    }
    schema
}

/// The service's error details.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    /// Error type reported by the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Error message reported by the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// An S3 object version, as HeadObject reported it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// The object's ETag, as S3 sends it (quoted).
    pub etag: String,
    /// The object's VersionId (versioned buckets only).
    #[serde(default, rename = "versionID", skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// When the object was last modified (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// One package version.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VersionHistoryEntry {
    /// Version name, e.g. v3.
    pub package_version: String,
    /// Commit message recorded with the version (with the operator's marker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
    /// When the version was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// State of one association of the package with a domain.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DomainStatus {
    /// Name of the domain.
    pub domain_name: String,
    /// The service's DomainPackageStatus (ASSOCIATING, ACTIVE, ASSOCIATION_FAILED,
    /// DISSOCIATING, DISSOCIATION_FAILED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_package_status: Option<DomainPackageStatus>,
    /// Package version the domain runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_version: Option<String>,
    /// Path to use in index settings, e.g. analyzers/F123456789 for synonyms_path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_path: Option<String>,
    /// When the association last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    /// The service's error details for the association, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<ErrorDetails>,
    /// True when the association is not listed in spec.domains (made outside this object);
    /// the operator reports it and never changes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unmanaged: bool,
}

/// A changing AWS call written down before it is made, whose outcome is not yet recorded.
/// After a crash or a lost answer the operator resolves it from what AWS shows instead of
/// calling again.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    /// The operation: CreatePackage or UpdatePackage.
    pub operation: Operation,
    /// The spec digest sent with it.
    pub digest: String,
    /// When it was started (RFC 3339).
    pub started_at: String,
    /// UpdatePackage: the package's lastUpdatedAt when the call was made. A package that
    /// changed since then took the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_last_updated_at: Option<String>,
    /// UpdatePackage: the package's status when the call was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_status: Option<PackageStatus>,
    /// UpdatePackage: the package's available version when the call was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_package_version: Option<String>,
}
