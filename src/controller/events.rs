//! Every Kubernetes Event the operator publishes, in one catalogue: each variant owns its
//! type, reason, action and message.

use kube::runtime::events::EventType;

use crate::vocabulary::StallReason;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Created {
        name: String,
        id: String,
    },
    /// A recorded package was deleted outside the cluster and is created again.
    PackageVanished {
        id: String,
    },
    Adopted {
        name: String,
        id: String,
    },
    /// A package created before a restart was found and recorded.
    RecordedCreate {
        id: String,
    },
    Updated {
        id: String,
    },
    /// A version made before a restart was found and recorded.
    RecordedUpdate {
        version: String,
    },
    /// An UpdatePackage whose answer was lost was resolved from what the package showed.
    ResolvedUpdate {
        happened: bool,
    },
    ScopeUpdated {
        users: Vec<String>,
    },
    Associating {
        domain: String,
        version: String,
    },
    Dissociating {
        domain: String,
        deleting: bool,
    },
    Deleted {
        id: String,
    },
    Stalled {
        reason: StallReason,
        message: String,
    },
    Ready {
        version: String,
    },
    /// `spec.suspend` is true for a generation not seen before.
    Suspended,
    /// managementPolicy Observe: a package found by id or name is now reported.
    Observing {
        name: String,
        id: String,
    },
    /// managementPolicy Observe: the reported package no longer exists.
    ObservedPackageGone {
        id: String,
    },
    /// The export ConfigMap was created or changed.
    Exported {
        config_map: String,
        created: bool,
    },
    /// A ConfigMap published earlier was deleted (spec.export changed or went).
    ExportRemoved {
        config_map: String,
    },
}

impl Event {
    pub fn type_(&self) -> EventType {
        match self {
            Self::PackageVanished { .. }
            | Self::ObservedPackageGone { .. }
            | Self::Stalled { .. } => EventType::Warning,
            _ => EventType::Normal,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Created { .. } => "Created",
            Self::PackageVanished { .. } => "PackageVanished",
            Self::Adopted { .. } | Self::RecordedCreate { .. } => "Adopted",
            Self::Updated { .. } | Self::RecordedUpdate { .. } | Self::ResolvedUpdate { .. } => {
                "Updated"
            }
            Self::ScopeUpdated { .. } => "ScopeUpdated",
            Self::Associating { .. } => "Associating",
            Self::Dissociating { .. } => "Dissociating",
            Self::Deleted { .. } => "Deleted",
            Self::Stalled { reason, .. } => reason.as_str(),
            Self::Ready { .. } => "Ready",
            Self::Suspended => "Suspended",
            Self::Observing { .. } => "Observing",
            Self::ObservedPackageGone { .. } => "PackageVanished",
            Self::Exported { .. } | Self::ExportRemoved { .. } => "Exported",
        }
    }

    /// The recorder folds events with the same reason and action into one series, so domain
    /// steps name their domain in the action: each rollout step shows.
    pub fn action(&self) -> String {
        match self {
            Self::Created { .. } => "CreatePackage".into(),
            Self::PackageVanished { .. } => "Create".into(),
            Self::Adopted { .. } | Self::RecordedCreate { .. } => "Adopt".into(),
            Self::Updated { .. } => "UpdatePackage".into(),
            Self::RecordedUpdate { .. } => "RecordUpdate".into(),
            Self::ResolvedUpdate { .. } => "ResolveUpdate".into(),
            Self::ScopeUpdated { .. } => "UpdatePackageScope".into(),
            Self::Associating { domain, .. } => format!("AssociatePackage/{domain}"),
            Self::Dissociating { domain, .. } => format!("DissociatePackage/{domain}"),
            Self::Deleted { .. } => "DeletePackage".into(),
            Self::Stalled { .. } | Self::Ready { .. } | Self::Suspended => "Reconcile".into(),
            Self::Observing { .. } => "Observe".into(),
            Self::ObservedPackageGone { .. } => "Forget".into(),
            Self::Exported {
                config_map,
                created: true,
            } => format!("CreateConfigMap/{config_map}"),
            Self::Exported {
                config_map,
                created: false,
            } => format!("UpdateConfigMap/{config_map}"),
            Self::ExportRemoved { config_map } => format!("DeleteConfigMap/{config_map}"),
        }
    }

    pub fn note(&self) -> String {
        match self {
            Self::Created { name, id } => format!("created package {name} ({id})"),
            Self::PackageVanished { id } => {
                format!("package {id} was deleted outside the cluster; creating it again")
            }
            Self::Adopted { name, id } => format!("adopted existing package {name} ({id})"),
            Self::RecordedCreate { id } => {
                format!("recorded package {id} created before a restart")
            }
            Self::Updated { id } => format!("importing a new version of package {id}"),
            Self::RecordedUpdate { version } => format!(
                "version {version} was already imported for this spec; recorded it without a new update"
            ),
            Self::ResolvedUpdate { happened: true } => {
                "an update whose answer was lost took effect; recorded it without calling again"
                    .into()
            }
            Self::ResolvedUpdate { happened: false } => {
                "an update whose answer was lost did not take effect; it will be made".into()
            }
            Self::ScopeUpdated { users } => {
                format!("package shared with: {}", users.join(", "))
            }
            Self::Associating { domain, version } => {
                format!("applying {version} to domain {domain}")
            }
            Self::Dissociating {
                domain,
                deleting: true,
            } => format!("dissociating from domain {domain} before deleting the package"),
            Self::Dissociating {
                domain,
                deleting: false,
            } => format!("dissociating from domain {domain}, no longer in spec.domains"),
            Self::Deleted { id } => format!("package {id} is being deleted"),
            Self::Stalled { message, .. } => message.clone(),
            Self::Ready { version } => {
                format!("package is available at {version} on every listed domain")
            }
            Self::Suspended => "spec.suspend is true: this generation changes nothing in AWS; the conditions keep their last state".into(),
            Self::Observing { name, id } => {
                format!("observing package {name} ({id}); managementPolicy Observe never changes it")
            }
            Self::ObservedPackageGone { id } => {
                format!("observed package {id} no longer exists; looking it up again")
            }
            Self::Exported {
                config_map,
                created: true,
            } => format!("created ConfigMap {config_map} with the package's id, version and reference paths"),
            Self::Exported {
                config_map,
                created: false,
            } => format!("updated ConfigMap {config_map}"),
            Self::ExportRemoved { config_map } => {
                format!("deleted ConfigMap {config_map}, no longer named in spec.export")
            }
        }
    }
}
