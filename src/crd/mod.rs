//! The `OpenSearchPackage` custom resource (`ospkg.dev/v1alpha1`).
//!
//! The schema generated from these types is the contract users write YAML against
//! (`crds/opensearchpackages.ospkg.dev.yaml`). Every field carries a doc comment because that
//! text is what `kubectl explain` prints. Validation that the API server can do (patterns,
//! lengths, enums, CEL rules for immutability and cross-field rules) lives here so that bad
//! input is rejected at admission with a message that names the field.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod role;
mod status;

pub use role::{OpenSearchPackageRole, OpenSearchPackageRoleSpec, OpenSearchPackageRoleStatus};
pub use status::{
    DomainStatus, ErrorDetails, InFlight, OpenSearchPackageStatus, SourceStatus,
    VersionHistoryEntry,
};

/// API group of every resource this operator serves.
pub const GROUP: &str = "ospkg.dev";
/// Finalizer that holds an object until its package is cleaned up.
pub const FINALIZER: &str = "ospkg.dev/finalizer";
/// Annotation whose change asks for an immediate reconcile (echoed to
/// `status.lastHandledReconcileAt`).
pub const RECONCILE_REQUESTED_AT: &str = "ospkg.dev/reconcile-requested-at";
/// Field manager used for every server-side apply this operator makes.
pub const FIELD_MANAGER: &str = "opensearch-package-operator";

/// Desired state of an Amazon OpenSearch Service custom package.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ospkg.dev",
    version = "v1alpha1",
    kind = "OpenSearchPackage",
    plural = "opensearchpackages",
    shortname = "ospkg",
    category = "opensearch",
    category = "aws",
    namespaced,
    status = "OpenSearchPackageStatus",
    doc = "An Amazon OpenSearch Service custom package (dictionary, plugin, plugin licence or plugin configuration) imported from S3 and applied to domains.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.packageType"}"#,
    printcolumn = r#"{"name":"Package ID","type":"string","jsonPath":".status.packageID"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.packageStatus"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.availablePackageVersion"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Region","type":"string","priority":1,"jsonPath":".status.region"}"#,
    printcolumn = r#"{"name":"Account","type":"string","priority":1,"jsonPath":".status.accountID"}"#,
    printcolumn = r#"{"name":"Domains","type":"string","priority":1,"jsonPath":".status.domainsReady"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    validation = Rule::new("has(self.spec.packageName) || has(self.spec.packageID) || (size(self.metadata.name) >= 3 && size(self.metadata.name) <= 256 && self.metadata.name.matches('^[a-z][a-z0-9-]+$'))").message("metadata.name is not a valid package name (^[a-z][a-z0-9-]+$, 3-256 characters): set spec.packageName").field_path(".spec.packageName"),
    validation = Rule::new("(has(self.spec.packageName) ? self.spec.packageName : self.metadata.name) == (has(oldSelf.spec.packageName) ? oldSelf.spec.packageName : oldSelf.metadata.name)").message("packageName is immutable (it defaults to metadata.name, which may be written out)").field_path(".spec.packageName"),
    validation = Rule::new("has(self.spec.region) == has(oldSelf.spec.region) ? (!has(self.spec.region) || self.spec.region == oldSelf.spec.region) : (has(self.spec.region) && has(oldSelf.status) && has(oldSelf.status.region) && self.spec.region == oldSelf.status.region)").message("region is immutable (it may be written out only as the region recorded in status.region)").field_path(".spec.region")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.packageType == 'ZIP-PLUGIN' ? (has(self.engineVersion) || self.managementPolicy == 'Observe') : !has(self.engineVersion)").message("engineVersion is required when packageType is ZIP-PLUGIN (unless managementPolicy is Observe) and forbidden otherwise").field_path(".engineVersion"),
    validation = Rule::new("self.packageType == 'ZIP-PLUGIN' || !has(self.configuration)").message("configuration is only for ZIP-PLUGIN packages").field_path(".configuration"),
    validation = Rule::new("self.packageType == 'ZIP-PLUGIN' || !has(self.domains) || self.domains.all(d, !has(d.prerequisites) || size(d.prerequisites) == 0)").message("domains[].prerequisites are only for ZIP-PLUGIN packages").field_path(".domains"),
    validation = Rule::new("self.packageType == 'ZIP-PLUGIN' || !has(self.domains) || self.domains.all(d, !has(d.keyStoreAccess))").message("domains[].keyStoreAccess is only for ZIP-PLUGIN packages").field_path(".domains"),
    validation = Rule::new("!has(self.allowListedUsers) || (has(self.vending) && self.vending.enabled)").message("allowListedUsers needs vending.enabled: true (only a vended package can be shared)").field_path(".allowListedUsers"),
    validation = Rule::new("self.managementPolicy == oldSelf.managementPolicy").message("managementPolicy is immutable").field_path(".managementPolicy"),
    validation = Rule::new("self.managementPolicy == 'Observe' || !has(self.packageID)").message("packageID is only for managementPolicy Observe (a managed package's id is assigned by AWS)").field_path(".packageID"),
    validation = Rule::new("has(self.packageID) == has(oldSelf.packageID) && (!has(self.packageID) || self.packageID == oldSelf.packageID)").message("packageID is immutable").field_path(".packageID"),
    validation = Rule::new("self.managementPolicy == 'Observe' || has(self.source)").message("source is required unless managementPolicy is Observe").field_path(".source"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !has(self.source)").message("source must not be set when managementPolicy is Observe (an observed package is never imported)").field_path(".source"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !has(self.description)").message("description must not be set when managementPolicy is Observe (an observed package is never updated)").field_path(".description"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !has(self.configuration)").message("configuration must not be set when managementPolicy is Observe (an observed package is never updated)").field_path(".configuration"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !has(self.encryption)").message("encryption must not be set when managementPolicy is Observe (an observed package is never updated)").field_path(".encryption"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !has(self.commitMessage)").message("commitMessage must not be set when managementPolicy is Observe (an observed package is never updated)").field_path(".commitMessage"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !has(self.vending)").message("vending must not be set when managementPolicy is Observe (an observed package is never created)").field_path(".vending"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !has(self.allowListedUsers)").message("allowListedUsers must not be set when managementPolicy is Observe (an observed package's scope is never changed)").field_path(".allowListedUsers"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !has(self.domains) || size(self.domains) == 0").message("domains must not be set when managementPolicy is Observe (an observed package is never associated or dissociated; its associations are reported in status.domains)").field_path(".domains"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !has(self.rollout)").message("rollout must not be set when managementPolicy is Observe").field_path(".rollout"),
    validation = Rule::new("self.managementPolicy == 'Manage' || !self.adoptExisting").message("adoptExisting must not be true when managementPolicy is Observe (an observer never takes a package over)").field_path(".adoptExisting"),
    validation = Rule::new("has(self.engineVersion) == has(oldSelf.engineVersion) && (!has(self.engineVersion) || self.engineVersion == oldSelf.engineVersion)").message("engineVersion is immutable").field_path(".engineVersion"),
    validation = Rule::new("(has(self.vending) && self.vending.enabled) == (has(oldSelf.vending) && oldSelf.vending.enabled)").message("vending is immutable: it is set when the package is created").field_path(".vending")
)]
pub struct OpenSearchPackageSpec {
    /// Kind of package. One of TXT-DICTIONARY, ZIP-PLUGIN, PACKAGE-LICENSE, PACKAGE-CONFIG. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("packageType is immutable"))]
    pub package_type: PackageType,

    /// Name of the package in OpenSearch Service (^[a-z][a-z0-9-]+$, 3-256 characters).
    /// Defaults to metadata.name. Immutable (writing out the default is no change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 256), regex(pattern = r"^[a-z][a-z0-9-]+$"))]
    pub package_name: Option<String>,

    /// managementPolicy Observe only: the id of the package to observe (e.g. F123456789, an
    /// AWS-owned G... plugin, or a pkg-... package shared with this account), looked up
    /// instead of the name. A managed package's id is assigned by AWS. Immutable.
    #[serde(default, rename = "packageID", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([FG][0-9]+|pkg-[a-f0-9]+)$"))]
    pub package_id: Option<String>,

    /// OpenSearch or Elasticsearch version the plugin is built for, e.g. OpenSearch_2.15.
    /// Required for ZIP-PLUGIN, forbidden for the other types. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(OpenSearch_[0-9]{1,2}\.[0-9]{1,2}|Elasticsearch_[0-9]\.[0-9]{1,2})$"
    ))]
    pub engine_version: Option<String>,

    /// AWS region of the package, e.g. eu-west-1. Defaults to the operator's configured
    /// region; the region used is recorded in status.region at the first reconcile and never
    /// changes for this object. Immutable (it may be written out later as the region in
    /// status.region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$"))]
    pub region: Option<String>,

    /// Where the package content is read from. A change imports a new package version.
    /// Required when managementPolicy is Manage; not allowed when it is Observe.
    #[serde(default, skip_serializing_if = "PackageSource::is_unset")]
    pub source: PackageSource,

    /// Package description (at most 1024 characters). A change imports a new package version,
    /// the only way the service offers to change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// Plugin configuration requirements (ZIP-PLUGIN packages only).
    /// A change imports a new package version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<PackageConfiguration>,

    /// Encryption of the package with a customer-managed KMS key. A change imports a new
    /// package version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<PackageEncryption>,

    /// Commit message recorded with the next package version (at most 140 characters; the
    /// operator appends its own marker). A change of this field alone creates no version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 140))]
    pub commit_message: Option<String>,

    /// Package vending (sharing with other accounts). Set at creation only. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vending: Option<Vending>,

    /// Accounts allowed to use a vended package: 12-digit account ids or GLOBAL. Needs
    /// vending.enabled: true. Applied with UpdatePackageScope (OVERRIDE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        extend("x-kubernetes-list-type" = "set"),
        length(max = 100),
        inner(regex(pattern = r"^([0-9]{12}|GLOBAL)$"))
    )]
    pub allow_listed_users: Option<Vec<String>>,

    /// Domains the package is associated with. Each domain is kept on the package's newest
    /// version; a domain removed from this list is dissociated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]),
        length(max = 100)
    )]
    pub domains: Vec<DomainTarget>,

    /// How a new package version is rolled out to the domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,

    /// What happens to the package in AWS when this object is deleted: Delete (default)
    /// removes it after dissociating this object's domains; Retain leaves it in place.
    /// Ignored when managementPolicy is Observe (an observed package is never deleted).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Adopt a package of this name that already exists in the account and region instead of
    /// failing with AlreadyExists: it is then managed (updated to this spec, deleted with
    /// deletionPolicy Delete). To track a package without managing it, use
    /// managementPolicy: Observe instead.
    #[serde(default)]
    pub adopt_existing: bool,

    /// While true, the operator makes no call that changes anything in AWS and writes no
    /// export ConfigMap. The conditions keep what they said before the suspension (so a
    /// GitOps wait on a suspended object does not hang); status.observedGeneration still
    /// follows the spec, and a Normal event with reason Suspended marks each generation seen
    /// while suspended.
    #[serde(default)]
    pub suspend: bool,

    /// Manage (default): the operator creates, updates, associates and deletes the package.
    /// Observe: it only reads an existing package, found by packageID when set, else by name
    /// (packageName, else metadata.name), and reports it in status; it never creates, updates, shares,
    /// associates, dissociates or deletes anything in AWS, also not when this object is
    /// deleted (deletionPolicy is ignored). An Observe object does not own the package name,
    /// so it may sit beside the object that manages the package. Immutable.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Publish the package's id, version and reference paths into a ConfigMap for index
    /// templates and jobs to consume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<Export>,
}

/// Whether the operator manages the package or only observes it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ManagementPolicy {
    /// Create, update, share, associate and delete the package as the spec says.
    #[default]
    Manage,
    /// Only read an existing package and report it; never call an API that changes anything.
    Observe,
}

/// A ConfigMap in the object's namespace that the operator keeps filled with what consumers
/// of the package need. It is owned by this object (ownerReference with controller: true) and
/// written only when its content changes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    /// Name of the ConfigMap (in this object's namespace). The operator creates it and
    /// refuses to overwrite one it did not create (Stalled, reason ExportConflict). When the
    /// name changes or export is removed, the ConfigMap it published before is deleted.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub config_map_name: String,

    /// Prefix for every key, e.g. SYNONYMS_ (letters, digits and underscores, starting with a
    /// letter or underscore), so that several packages' ConfigMaps can feed the same Flux
    /// postBuild.substituteFrom or envFrom without clashing keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub key_prefix: Option<String>,
}

impl OpenSearchPackageSpec {
    /// Whether the operator manages the package (policy Manage) rather than only observing it.
    pub fn manages(&self) -> bool {
        self.management_policy == ManagementPolicy::Manage
    }
}

/// Kind of package, as OpenSearch Service names it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PackageType {
    /// A text dictionary (synonyms, stop words, user dictionary).
    #[serde(rename = "TXT-DICTIONARY")]
    TxtDictionary,
    /// A custom OpenSearch plugin (needs engineVersion).
    #[serde(rename = "ZIP-PLUGIN")]
    ZipPlugin,
    /// A licence file for a third-party plugin.
    #[serde(rename = "PACKAGE-LICENSE")]
    PackageLicense,
    /// A configuration file for a third-party plugin.
    #[serde(rename = "PACKAGE-CONFIG")]
    PackageConfig,
}

impl PackageType {
    /// The service's spelling of this type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TxtDictionary => "TXT-DICTIONARY",
            Self::ZipPlugin => "ZIP-PLUGIN",
            Self::PackageLicense => "PACKAGE-LICENSE",
            Self::PackageConfig => "PACKAGE-CONFIG",
        }
    }
}

/// The S3 object a package is imported from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct PackageSource {
    /// S3 bucket holding the package file (S3 bucket naming rules, 3-63 characters).
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub s3_bucket_name: String,

    /// Key of the package file in the bucket (1-1024 characters).
    #[schemars(length(min = 1, max = 1024))]
    pub s3_key: String,

    /// Opaque token: change it to re-import an object whose content changed under the same
    /// key (at most 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub revision: Option<String>,

    /// Follow the object's content: the operator reads the object's ETag (and VersionId in a
    /// versioned bucket) with S3 HeadObject on a schedule of its own (--source-check-interval)
    /// and imports a new package version when it changes, exactly once per change; an
    /// unchanged object imports nothing. status.source shows the object version imported.
    /// Unset: the operator's default (--follow-content, off unless configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_content: Option<bool>,
}

impl PackageSource {
    /// No source given (an Observe object has none).
    pub fn is_unset(&self) -> bool {
        self == &Self::default()
    }
}

/// How strictly a plugin needs a licence or a configuration.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequirementLevel {
    /// The plugin cannot run without it.
    Required,
    /// The plugin can use it.
    Optional,
    /// The plugin does not use it.
    None,
}

impl RequirementLevel {
    /// The service's spelling of this level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "REQUIRED",
            Self::Optional => "OPTIONAL",
            Self::None => "NONE",
        }
    }
}

/// Configuration requirements of a plugin package.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct PackageConfiguration {
    /// Whether the plugin needs a licence package (REQUIRED, OPTIONAL or NONE).
    pub license_requirement: RequirementLevel,

    /// Whether the plugin needs a configuration package (REQUIRED, OPTIONAL or NONE).
    pub configuration_requirement: RequirementLevel,

    /// Relative path of the licence file inside the plugin (no "..", at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 256),
        regex(pattern = r"^[a-zA-Z0-9_.-]+(/[a-zA-Z0-9_.-]+)*$")
    )]
    #[x_kube(validation = Rule::new("!self.contains('..')").message("licenseFilepath must be a relative path without '..'"))]
    pub license_filepath: Option<String>,

    /// Whether a configuration update needs the domain to restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_restart_for_configuration_update: Option<bool>,
}

/// Encryption of the package with a customer-managed KMS key.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct PackageEncryption {
    /// Whether the package is encrypted with the KMS key.
    pub enabled: bool,

    /// KMS key id, alias or ARN (1-500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 500))]
    pub kms_key_identifier: Option<String>,
}

/// Package vending options.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Vending {
    /// Whether the package can be shared with other accounts.
    pub enabled: bool,
}

/// A domain the package is associated with.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DomainTarget {
    /// Name of the OpenSearch Service domain (^[a-z][a-z0-9-]+$, 3-28 characters).
    #[schemars(length(min = 3, max = 28), regex(pattern = r"^[a-z][a-z0-9-]+$"))]
    pub name: String,

    /// Names of other OpenSearchPackage objects in this namespace (licence and configuration
    /// packages) that must be associated with this plugin as prerequisites (ZIP-PLUGIN
    /// packages only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        extend("x-kubernetes-list-type" = "set"),
        length(max = 20),
        inner(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))
    )]
    pub prerequisites: Vec<String>,

    /// Key-store access for the association (ZIP-PLUGIN packages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_store_access: Option<KeyStoreAccess>,
}

/// Key-store access configuration of an association.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyStoreAccess {
    /// Whether the package may access the key store.
    pub enabled: bool,

    /// IAM role the service assumes to access the key store.
    #[serde(
        default,
        rename = "keyAccessRoleARN",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(
        length(min = 20, max = 2048),
        regex(pattern = r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):iam::[0-9]+:role/.*$")
    )]
    pub key_access_role_arn: Option<String>,
}

/// Rollout of new package versions to domains.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Sequential (default): one domain at a time, stopping at the first failure.
    /// Parallel: every domain at once; a failed domain does not hold the others back.
    #[serde(default)]
    pub strategy: RolloutStrategy,
}

/// Order in which domains receive a new version.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RolloutStrategy {
    /// One domain at a time; stop at the first failure.
    #[default]
    Sequential,
    /// Every domain at once; a failed domain does not hold the others back.
    Parallel,
}

/// What happens to the AWS package when the object is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Dissociate this object's domains, then delete the package.
    #[default]
    Delete,
    /// Leave the package (and its associations) in AWS.
    Retain,
}

/// Every CRD this operator serves, by plural name (the file `crds/<plural>.ospkg.dev.yaml`).
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("opensearchpackages", OpenSearchPackage::crd()),
        ("opensearchpackageroles", OpenSearchPackageRole::crd()),
    ]
}

/// The OpenSearchPackage CRD as YAML, exactly as checked in under `crds/`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    crd_yaml_of(&OpenSearchPackage::crd())
}

/// One CRD as YAML, exactly as checked in under `crds/`.
pub fn crd_yaml_of(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    let yaml = serde_yaml::to_string(crd)?;
    Ok(format!(
        "# Generated by `opensearch-package-operator crd` from src/crd/. Do not edit.\n{yaml}"
    ))
}

/// kubectl's copy of the last applied object (client-side apply, and Argo CD by default).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the operator never reads from an object before the watch cache keeps it: the
/// managed fields (server-side apply's bookkeeping, often larger than spec and status together)
/// and kubectl's last-applied copy. At thousands of objects they are most of the cache.
pub fn slim(obj: &mut OpenSearchPackage) {
    obj.metadata.managed_fields = None;
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    #[test]
    fn slimming_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut obj: OpenSearchPackage = serde_json::from_value(serde_json::json!({
            "apiVersion": "ospkg.dev/v1alpha1",
            "kind": "OpenSearchPackage",
            "metadata": {
                "name": "synonyms",
                "namespace": "search",
                "finalizers": [FINALIZER],
            },
            "spec": {
                "packageType": "TXT-DICTIONARY",
                "source": {"s3BucketName": "dictionaries", "s3Key": "synonyms.txt"},
            },
        }))
        .expect("a valid object");
        obj.metadata.annotations = Some(
            [
                (LAST_APPLIED, "{\"spec\":{}}"),
                (RECONCILE_REQUESTED_AT, "now"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        obj.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.to_owned()),
            ..ManagedFieldsEntry::default()
        }]);
        let spec = obj.spec.clone();

        slim(&mut obj);

        assert_eq!(obj.metadata.managed_fields, None);
        let annotations = obj.metadata.annotations.as_ref().expect("annotations kept");
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(
            annotations.get(RECONCILE_REQUESTED_AT).map(String::as_str),
            Some("now")
        );
        assert_eq!(obj.metadata.finalizers, Some(vec![FINALIZER.to_owned()]));
        assert_eq!(obj.spec, spec);
    }
}
