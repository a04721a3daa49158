//! The simulated service's state. Nothing runs in the background: each record keeps the
//! times at which its phases end, and its current status is computed from the clock on read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::artifact::Inspection;
use crate::wire::*;

/// Who owns the AWS-provided optional plugins (`G…` packages).
pub const AWS_OWNER: &str = "AWS";

/// State is kept apart per (account, region), as the service does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

/// A time span of a transition in simulated epoch ms; the phase is over once `until_ms` is
/// reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub since_ms: u64,
    pub until_ms: u64,
}

impl Phase {
    pub fn new(now: u64, duration_ms: u64) -> Self {
        Phase {
            since_ms: now,
            until_ms: now.saturating_add(duration_ms),
        }
    }

    pub fn done(&self, now: u64) -> bool {
        now >= self.until_ms
    }
}

/// One CreatePackage or UpdatePackage: the snapshot of the source taken at call time and
/// what copying and validating it will have found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// `Some(n)` for `vn`; a revision that fails copy or validation gets no version number.
    pub version: Option<u32>,
    pub commit_message: Option<String>,
    pub source: PackageSource,
    /// The ETag (and VersionId, in a versioned bucket) of the object version copied.
    pub etag: Option<String>,
    #[serde(default)]
    pub version_id: Option<String>,
    pub copying: Phase,
    pub validating: Phase,
    pub inspection: Inspection,
    pub configuration: Option<PackageConfiguration>,
}

impl Revision {
    /// Status of this revision and since when it holds.
    pub fn status(&self, now: u64) -> (&'static str, u64) {
        if !self.copying.done(now) {
            return ("COPYING", self.copying.since_ms);
        }
        if let Inspection::CopyFailed(_) = self.inspection {
            return ("COPY_FAILED", self.copying.until_ms);
        }
        if !self.validating.done(now) {
            return ("VALIDATING", self.validating.since_ms);
        }
        match self.inspection {
            Inspection::ValidationFailed(_) => ("VALIDATION_FAILED", self.validating.until_ms),
            _ => ("AVAILABLE", self.validating.until_ms),
        }
    }

    pub fn available(&self, now: u64) -> bool {
        self.version.is_some() && self.validating.done(now)
    }

    pub fn version_label(&self) -> Option<String> {
        self.version.map(|v| format!("v{v}"))
    }

    pub fn plugin(&self) -> Option<&PluginProperties> {
        match &self.inspection {
            Inspection::Valid { plugin } => plugin.as_ref(),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<&ErrorDetails> {
        match &self.inspection {
            Inspection::CopyFailed(e) | Inspection::ValidationFailed(e) => Some(e),
            Inspection::Valid { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub package_type: PackageType,
    pub description: Option<String>,
    pub engine_version: Option<String>,
    pub owner: String,
    pub created_ms: u64,
    pub vending: Option<PackageVendingOptions>,
    pub encryption: Option<PackageEncryptionOptions>,
    pub allow_list: Vec<String>,
    /// Oldest first; never empty.
    pub revisions: Vec<Revision>,
    pub deleting: Option<Phase>,
    /// Set when the deletion under way will fail: DELETE_FAILED with this message once
    /// `deleting` is over, instead of disappearing.
    #[serde(default)]
    pub delete_failure: Option<String>,
    /// Simulated epoch ms from which listings show the package (read-after-write lag).
    #[serde(default)]
    pub listed_from_ms: u64,
}

impl Package {
    pub fn aws_owned(&self) -> bool {
        self.id.starts_with('G')
    }

    pub fn latest(&self) -> Option<&Revision> {
        self.revisions.last()
    }

    pub fn status(&self, now: u64) -> &'static str {
        if let Some(deleting) = self.deleting {
            return self.deletion_status(deleting, now).0;
        }
        self.latest().map_or("AVAILABLE", |r| r.status(now).0)
    }

    /// DELETING, then DELETE_FAILED when the deletion was made to fail (a deletion that
    /// succeeds ends with the package gone).
    fn deletion_status(&self, deleting: Phase, now: u64) -> (&'static str, u64) {
        if deleting.done(now) && self.delete_failure.is_some() {
            ("DELETE_FAILED", deleting.until_ms)
        } else {
            ("DELETING", deleting.since_ms)
        }
    }

    /// Whether listings that are not by `PackageID` show the package yet.
    pub fn listed(&self, now: u64) -> bool {
        now >= self.listed_from_ms
    }

    /// The newest revision that has become available by `now`.
    pub fn available_revision(&self, now: u64) -> Option<&Revision> {
        self.revisions.iter().rev().find(|r| r.available(now))
    }

    /// Version numbers only grow, so the newest numbered revision holds the largest.
    pub fn next_version(&self) -> u32 {
        self.revisions
            .iter()
            .rev()
            .find_map(|r| r.version)
            .unwrap_or(0)
            + 1
    }

    pub fn gone(&self, now: u64) -> bool {
        self.deleting.is_some_and(|d| d.done(now)) && self.delete_failure.is_none()
    }

    pub fn details(&self, now: u64) -> PackageDetails {
        let latest = self.latest();
        let (status, since) = match (self.deleting, latest) {
            (Some(d), _) => self.deletion_status(d, now),
            (None, Some(r)) => r.status(now),
            (None, None) => ("AVAILABLE", self.created_ms),
        };
        let available = self.available_revision(now);
        let error_details = match status {
            "COPY_FAILED" | "VALIDATION_FAILED" => latest.and_then(|r| r.error().cloned()),
            "DELETE_FAILED" => self.delete_failure.as_ref().map(|message| ErrorDetails {
                error_type: "DeleteFailure".to_string(),
                error_message: message.clone(),
            }),
            _ => None,
        };
        PackageDetails {
            package_id: self.id.clone(),
            package_name: self.name.clone(),
            package_type: self.package_type,
            package_description: self.description.clone(),
            package_status: status,
            created_at: epoch_seconds(self.created_ms),
            last_updated_at: epoch_seconds(since.max(self.created_ms)),
            available_package_version: available.and_then(Revision::version_label),
            error_details,
            engine_version: self.engine_version.clone(),
            available_plugin_properties: available.and_then(|r| r.plugin().cloned()),
            available_package_configuration: available.and_then(|r| r.configuration.clone()),
            allow_listed_user_list: self
                .vending
                .as_ref()
                .filter(|v| v.vending_enabled)
                .map(|_| self.allow_list.clone()),
            package_owner: self.owner.clone(),
            package_vending_options: self.vending.clone(),
            package_encryption_options: self.encryption.clone(),
        }
    }

    /// Newest first, as the operator's exactly-once check reads "the newest entry".
    pub fn history(&self, now: u64) -> Vec<PackageVersionHistory> {
        self.revisions
            .iter()
            .rev()
            .filter(|r| r.available(now))
            .filter_map(|r| {
                Some(PackageVersionHistory {
                    package_version: r.version_label()?,
                    commit_message: r.commit_message.clone(),
                    created_at: epoch_seconds(r.copying.since_ms),
                    plugin_properties: r.plugin().cloned(),
                    package_configuration: r.configuration.clone(),
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AssociationPhase {
    /// Ends ACTIVE, or ASSOCIATION_FAILED with this message.
    Associating {
        phase: Phase,
        failure: Option<String>,
    },
    /// Ends with the association gone, or DISSOCIATION_FAILED with this message (the
    /// association stays).
    Dissociating {
        phase: Phase,
        #[serde(default)]
        failure: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Association {
    pub package_id: String,
    /// The package version being applied (and, once ACTIVE, running on the domain).
    pub version: Option<String>,
    /// The version the domain ran before the current phase began: what `PackageVersion`
    /// shows until an association makes `version` ACTIVE (and after one fails).
    #[serde(default)]
    pub running: Option<String>,
    pub prerequisites: Vec<String>,
    pub configuration: Option<AssociationConfiguration>,
    pub phase: AssociationPhase,
    /// Whether the end of the current phase has been written to the journal.
    pub settled: bool,
}

impl Association {
    pub fn status(&self, now: u64) -> (&'static str, u64) {
        match &self.phase {
            AssociationPhase::Associating { phase, failure } => {
                if !phase.done(now) {
                    ("ASSOCIATING", phase.since_ms)
                } else if failure.is_some() {
                    ("ASSOCIATION_FAILED", phase.until_ms)
                } else {
                    ("ACTIVE", phase.until_ms)
                }
            }
            AssociationPhase::Dissociating { phase, failure } => {
                if phase.done(now) && failure.is_some() {
                    ("DISSOCIATION_FAILED", phase.until_ms)
                } else {
                    ("DISSOCIATING", phase.since_ms)
                }
            }
        }
    }

    /// The version the domain runs now: the one the last association to become ACTIVE applied.
    pub fn running_version(&self, now: u64) -> Option<String> {
        match self.status(now).0 {
            "ACTIVE" => self.version.clone(),
            _ => self.running.clone(),
        }
    }

    /// Starts a new phase (an association or a dissociation), remembering what the domain runs.
    pub fn begin(&mut self, phase: AssociationPhase, now: u64) {
        self.running = self.running_version(now);
        self.phase = phase;
        self.settled = false;
    }

    /// An association change still under way (what makes a second change a conflict).
    pub fn in_flight(&self, now: u64) -> bool {
        match &self.phase {
            AssociationPhase::Associating { phase, .. }
            | AssociationPhase::Dissociating { phase, .. } => !phase.done(now),
        }
    }

    pub fn gone(&self, now: u64) -> bool {
        matches!(
            &self.phase,
            AssociationPhase::Dissociating { phase, failure: None } if phase.done(now)
        )
    }

    pub fn details(&self, domain: &str, package: &Package, now: u64) -> DomainPackageDetails {
        let (status, since) = self.status(now);
        let error_details = match &self.phase {
            AssociationPhase::Associating {
                failure: Some(message),
                ..
            } if status == "ASSOCIATION_FAILED" => Some(ErrorDetails {
                error_type: "AssociationFailure".to_string(),
                error_message: message.clone(),
            }),
            AssociationPhase::Dissociating {
                failure: Some(message),
                ..
            } if status == "DISSOCIATION_FAILED" => Some(ErrorDetails {
                error_type: "DissociationFailure".to_string(),
                error_message: message.clone(),
            }),
            _ => None,
        };
        DomainPackageDetails {
            package_id: package.id.clone(),
            package_name: package.name.clone(),
            package_type: package.package_type,
            last_updated: epoch_seconds(since),
            domain_name: domain.to_string(),
            domain_package_status: status,
            // The version the domain runs: an update being applied (or failed) shows the
            // version before it.
            package_version: self.running_version(now),
            prerequisite_package_id_list: self.prerequisites.clone(),
            reference_path: (package.package_type == PackageType::TxtDictionary)
                .then(|| format!("analyzers/{}", package.id)),
            error_details,
            association_configuration: self.configuration.clone(),
        }
    }
}

/// Everything the service holds for one (account, region).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionState {
    /// In creation order, which is also the listing order.
    pub packages: Vec<Package>,
    /// Domain name → its associations, in association order.
    pub associations: BTreeMap<String, Vec<Association>>,
}

impl RegionState {
    pub fn package(&self, id: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.id == id)
    }

    pub fn package_mut(&mut self, id: &str) -> Option<&mut Package> {
        self.packages.iter_mut().find(|p| p.id == id)
    }

    /// The domains a package is associated with (in any association state).
    pub fn domains_of(&self, package_id: &str) -> Vec<String> {
        self.associations
            .iter()
            .filter(|(_, list)| list.iter().any(|a| a.package_id == package_id))
            .map(|(domain, _)| domain.clone())
            .collect()
    }
}

/// A domain packages can be associated with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainDecl {
    pub name: String,
    #[serde(default = "default_engine_version")]
    pub engine_version: String,
    /// `None`: the domain exists in every region (how `--domain` flags declare them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `None` on input means the default account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

pub fn default_engine_version() -> String {
    "OpenSearch_2.19".to_string()
}

impl DomainDecl {
    pub fn matches(&self, scope: &Scope, name: &str) -> bool {
        self.name == name
            && self.account.as_deref() == Some(scope.account.as_str())
            && self.region.as_ref().is_none_or(|r| *r == scope.region)
    }
}

/// The AWS-provided optional plugins seeded into every (account, region).
pub fn aws_packages(now: u64) -> Vec<Package> {
    let plugin = |id: &str, name: &str, class: &str, description: &str| {
        let props = PluginProperties {
            name: name.to_string(),
            description: description.to_string(),
            version: "2.19.0".to_string(),
            class_name: class.to_string(),
            uncompressed_size_in_bytes: 1_048_576,
        };
        Package {
            id: id.to_string(),
            name: name.to_string(),
            package_type: PackageType::ZipPlugin,
            description: Some(description.to_string()),
            engine_version: Some("OpenSearch_2.19".to_string()),
            owner: AWS_OWNER.to_string(),
            created_ms: now,
            vending: None,
            encryption: None,
            allow_list: Vec::new(),
            revisions: vec![Revision {
                version: Some(1),
                commit_message: None,
                source: PackageSource {
                    s3_bucket_name: "aws-opensearch-optional-plugins".to_string(),
                    s3_key: format!("{name}.zip"),
                },
                etag: None,
                version_id: None,
                copying: Phase::new(now, 0),
                validating: Phase::new(now, 0),
                inspection: Inspection::Valid {
                    plugin: Some(props),
                },
                configuration: None,
            }],
            deleting: None,
            delete_failure: None,
            listed_from_ms: 0,
        }
    };
    vec![
        plugin(
            "G100000001",
            "analysis-icu",
            "org.opensearch.plugin.analysis.icu.AnalysisICUPlugin",
            "The ICU analysis plugin (AWS-provided optional plugin).",
        ),
        plugin(
            "G100000002",
            "mapper-murmur3",
            "org.opensearch.plugin.mapper.MapperMurmur3Plugin",
            "The murmur3 mapper plugin (AWS-provided optional plugin).",
        ),
    ]
}
