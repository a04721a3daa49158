//! Wire shapes of the package API (restJson1, PascalCase members, epoch-second timestamps)
//! and the parsed inputs of each operation.

use serde::{Deserialize, Serialize};

/// `PackageType` enum of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageType {
    #[serde(rename = "TXT-DICTIONARY")]
    TxtDictionary,
    #[serde(rename = "ZIP-PLUGIN")]
    ZipPlugin,
    #[serde(rename = "PACKAGE-LICENSE")]
    PackageLicense,
    #[serde(rename = "PACKAGE-CONFIG")]
    PackageConfig,
}

impl PackageType {
    pub const ALL: [PackageType; 4] = [
        PackageType::TxtDictionary,
        PackageType::ZipPlugin,
        PackageType::PackageLicense,
        PackageType::PackageConfig,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PackageType::TxtDictionary => "TXT-DICTIONARY",
            PackageType::ZipPlugin => "ZIP-PLUGIN",
            PackageType::PackageLicense => "PACKAGE-LICENSE",
            PackageType::PackageConfig => "PACKAGE-CONFIG",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        PackageType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PackageSource {
    pub s3_bucket_name: String,
    pub s3_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PackageConfiguration {
    pub license_requirement: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub license_filepath: Option<String>,
    pub configuration_requirement: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub requires_restart_for_configuration_update: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PackageVendingOptions {
    pub vending_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PackageEncryptionOptions {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kms_key_identifier: Option<String>,
    pub encryption_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyStoreAccessOption {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_access_role_arn: Option<String>,
    pub key_store_access_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssociationConfiguration {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_store_access_option: Option<KeyStoreAccessOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginProperties {
    pub name: String,
    pub description: String,
    pub version: String,
    pub class_name: String,
    pub uncompressed_size_in_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorDetails {
    pub error_type: String,
    pub error_message: String,
}

/// Epoch milliseconds on the wire as epoch seconds (a JSON number; the SDKs reject strings).
pub fn epoch_seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PackageDetails {
    #[serde(rename = "PackageID")]
    pub package_id: String,
    pub package_name: String,
    pub package_type: PackageType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_description: Option<String>,
    pub package_status: &'static str,
    pub created_at: f64,
    pub last_updated_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_package_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<ErrorDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_plugin_properties: Option<PluginProperties>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_package_configuration: Option<PackageConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_listed_user_list: Option<Vec<String>>,
    pub package_owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_vending_options: Option<PackageVendingOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_encryption_options: Option<PackageEncryptionOptions>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainPackageDetails {
    #[serde(rename = "PackageID")]
    pub package_id: String,
    pub package_name: String,
    pub package_type: PackageType,
    pub last_updated: f64,
    pub domain_name: String,
    pub domain_package_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_version: Option<String>,
    #[serde(
        rename = "PrerequisitePackageIDList",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub prerequisite_package_id_list: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<ErrorDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub association_configuration: Option<AssociationConfiguration>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PackageVersionHistory {
    pub package_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
    pub created_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_properties: Option<PluginProperties>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_configuration: Option<PackageConfiguration>,
}

// ---- parsed inputs ----

#[derive(Debug, Clone)]
pub struct CreatePackageInput {
    pub name: String,
    pub package_type: PackageType,
    pub description: Option<String>,
    pub source: PackageSource,
    pub engine_version: Option<String>,
    pub configuration: Option<PackageConfiguration>,
    pub vending: Option<PackageVendingOptions>,
    pub encryption: Option<PackageEncryptionOptions>,
}

#[derive(Debug, Clone)]
pub struct UpdatePackageInput {
    pub package_id: String,
    pub source: PackageSource,
    pub description: Option<String>,
    pub commit_message: Option<String>,
    pub configuration: Option<PackageConfiguration>,
    pub encryption: Option<PackageEncryptionOptions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterName {
    PackageId,
    PackageName,
    PackageStatus,
    PackageType,
    EngineVersion,
    PackageOwner,
}

impl FilterName {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PackageID" => FilterName::PackageId,
            "PackageName" => FilterName::PackageName,
            "PackageStatus" => FilterName::PackageStatus,
            "PackageType" => FilterName::PackageType,
            "EngineVersion" => FilterName::EngineVersion,
            "PackageOwner" => FilterName::PackageOwner,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Filter {
    pub name: FilterName,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub max_results: Option<usize>,
    pub next_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DescribePackagesInput {
    pub filters: Vec<Filter>,
    pub page: Page,
}

#[derive(Debug, Clone)]
pub struct PackageForAssociation {
    pub package_id: String,
    pub prerequisites: Vec<String>,
    pub configuration: Option<AssociationConfiguration>,
}

#[derive(Debug, Clone)]
pub struct AssociatePackagesInput {
    pub domain_name: String,
    pub packages: Vec<PackageForAssociation>,
}

#[derive(Debug, Clone)]
pub struct DissociatePackagesInput {
    pub domain_name: String,
    pub package_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeOperation {
    Add,
    Override,
    Remove,
}

impl ScopeOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeOperation::Add => "ADD",
            ScopeOperation::Override => "OVERRIDE",
            ScopeOperation::Remove => "REMOVE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpdatePackageScopeInput {
    pub package_id: String,
    pub operation: ScopeOperation,
    pub users: Vec<String>,
}
