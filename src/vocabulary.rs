//! The words the operator compares: condition types, statuses and reasons, and the service's
//! package and association statuses. Each is typed once here with its string form derived;
//! the rest of the crate matches on variants and never spells these strings.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use strum::{AsRefStr, Display, EnumString, IntoStaticStr};

/// The kstatus condition types this operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr)]
pub enum ConditionType {
    Ready,
    Reconciling,
    Stalled,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Conditions are written in this order, so an unchanged status stays byte-identical.
    pub fn rank(type_: &str) -> u8 {
        match type_.parse::<Self>() {
            Ok(Self::Ready) => 0,
            Ok(Self::Reconciling) => 1,
            Ok(Self::Stalled) => 2,
            Err(_) => 3,
        }
    }
}

/// `metav1.Condition.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// The `Ready` condition's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr)]
pub enum ReadyReason {
    /// The package is AVAILABLE at this generation's version on every listed domain.
    Available,
    /// Work is under way (see `Reconciling`).
    Progressing,
    /// Progress needs the user (see `Stalled`).
    Failed,
    /// The object is being deleted.
    Deleting,
}

impl ReadyReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why the operator is waiting (the `Reconciling` condition's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr)]
pub enum WaitReason {
    Creating,
    Copying,
    Validating,
    Updating,
    PackageBusy,
    RollingOut,
    Dissociating,
    #[strum(serialize = "WaitingForPrerequisites")]
    Prerequisites,
    Retrying,
    Deleting,
    /// managementPolicy Observe: the package was just found (or lost) and is read again.
    Observing,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the wait ends with a change of the package itself (which the region listing
    /// shows), rather than of its associations or of other objects.
    pub fn shows_in_listing(self) -> bool {
        matches!(
            self,
            Self::Creating | Self::Copying | Self::Validating | Self::Updating | Self::PackageBusy
        )
    }
}

/// Why progress needs the user (the `Stalled` condition's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr)]
pub enum StallReason {
    InvalidSpec,
    NameConflict,
    AlreadyExists,
    CopyFailed,
    ValidationFailed,
    AssociationFailed,
    InvalidRequest,
    AccessDenied,
    LimitExceeded,
    InUse,
    /// A listed domain does not exist (in this account and region).
    DomainNotFound,
    /// A listed prerequisite package does not exist.
    PrerequisiteNotFound,
    /// A prerequisite package is not ACTIVE on the domain it is needed on.
    PrerequisiteNotActive,
    /// The service could not delete the package.
    DeleteFailed,
    /// The service reports a package status this operator does not know.
    UnexpectedPackageStatus,
    /// managementPolicy Observe: no package of this name exists (an observer never creates one).
    PackageNotFound,
    /// spec.export names a ConfigMap this object does not own.
    ExportConflict,
    /// The API server refused to write the export ConfigMap (e.g. missing RBAC).
    ExportFailed,
    /// A followed source object does not exist (HeadObject: 404); checked again at every
    /// source check.
    SourceNotFound,
    /// Reading a followed source object was denied (HeadObject: 403); checked again at every
    /// source check.
    SourceAccessDenied,
    /// The spec names a domain or source bucket outside its namespace's OpenSearchPackageRole
    /// grant, or adopts a package without the grant allowing it. No AWS call is made.
    NotGranted,
    /// Two or more OpenSearchPackageRoles select the namespace. No AWS call is made.
    AmbiguousRole,
    /// No OpenSearchPackageRole selects the namespace and the operator refuses such
    /// namespaces (`--unbound-namespaces deny`). No AWS call is made.
    NoRole,
    /// STS refused the namespace's role (trust policy, external id).
    RoleNotAssumable,
    /// The namespace's identity now reaches another account than the one this object's
    /// package lives in (status.accountID). No AWS call is made.
    AccountChanged,
}

impl StallReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Stalls caused by a call the service rejected as invalid. AWS state does not show
    /// them, and the same call would be rejected again, so the recorded condition is what
    /// keeps the operator from calling again until the user acts (a new generation or a
    /// reconcile request). Every other stall is re-derived or retried slowly: its cause lies
    /// outside the object (IAM, quotas, domains, other objects) and may go away by itself.
    pub fn is_sticky(self) -> bool {
        matches!(self, Self::InvalidRequest)
    }

    /// Stalls that wait on something other than this object's spec (another domain, a
    /// domain, prerequisite or observed package to appear, the service, a ConfigMap in the
    /// way, RBAC): checked again every minute.
    pub fn waits_on_others(self) -> bool {
        matches!(
            self,
            Self::InUse
                | Self::DomainNotFound
                | Self::PrerequisiteNotFound
                | Self::PrerequisiteNotActive
                | Self::DeleteFailed
                | Self::UnexpectedPackageStatus
                | Self::PackageNotFound
                | Self::ExportConflict
                | Self::ExportFailed
                | Self::NotGranted
                | Self::AmbiguousRole
                | Self::NoRole
                | Self::RoleNotAssumable
                | Self::AccountChanged
        )
    }
}

/// Implements the string conversions and serde/JSON-schema string forms of a service enum
/// whose `Other(String)` variant keeps values the service added after this operator was built.
macro_rules! service_enum_strings {
    ($name:ident) => {
        impl $name {
            /// The service's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    Self::Other(value) => value,
                    known => known.as_ref(),
                }
            }
        }

        impl $name {
            /// The service's value; one this operator does not know becomes `Other`.
            pub fn from_service(value: &str) -> Self {
                // `Other` is the parse default, so this cannot fail.
                value
                    .parse()
                    .unwrap_or_else(|_| Self::Other(value.to_owned()))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::from_service(&value)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.as_str().to_owned()
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed("String")
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                String::json_schema(generator)
            }
        }
    };
}

/// The service's `PackageStatus`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EnumString, AsRefStr, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum PackageStatus {
    Copying,
    CopyFailed,
    Validating,
    ValidationFailed,
    Available,
    Deleting,
    Deleted,
    DeleteFailed,
    /// A status this operator does not know (the service added one).
    #[strum(default)]
    Other(String),
}

service_enum_strings!(PackageStatus);

impl PackageStatus {
    /// The import of the newest version failed; only a new version can fix it.
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::CopyFailed | Self::ValidationFailed)
    }

    /// The service is still importing a version.
    pub fn is_importing(&self) -> bool {
        matches!(self, Self::Copying | Self::Validating)
    }
}

/// The service's `DomainPackageStatus`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EnumString, AsRefStr, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum DomainPackageStatus {
    Associating,
    AssociationFailed,
    Active,
    Dissociating,
    DissociationFailed,
    /// A status this operator does not know (the service added one).
    #[strum(default)]
    Other(String),
}

service_enum_strings!(DomainPackageStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_statuses_round_trip_and_keep_unknown_values() {
        for status in [
            PackageStatus::Copying,
            PackageStatus::CopyFailed,
            PackageStatus::ValidationFailed,
            PackageStatus::DeleteFailed,
        ] {
            assert_eq!(PackageStatus::from_service(status.as_str()), status);
        }
        assert_eq!(PackageStatus::CopyFailed.as_str(), "COPY_FAILED");
        assert_eq!(PackageStatus::CopyFailed.to_string(), "COPY_FAILED");
        let new = PackageStatus::from_service("QUARANTINED");
        assert_eq!(new, PackageStatus::Other("QUARANTINED".into()));
        assert_eq!(new.as_str(), "QUARANTINED");
        assert_eq!(new.to_string(), "QUARANTINED");
        assert_eq!(
            serde_json::to_value(&new).expect("serialize"),
            serde_json::json!("QUARANTINED")
        );
        assert_eq!(
            DomainPackageStatus::from_service("ASSOCIATION_FAILED"),
            DomainPackageStatus::AssociationFailed
        );
        assert_eq!(
            serde_json::from_value::<DomainPackageStatus>(serde_json::json!("ACTIVE"))
                .expect("deserialize"),
            DomainPackageStatus::Active
        );
    }

    #[test]
    fn reasons_have_their_published_spelling() {
        assert_eq!(
            WaitReason::Prerequisites.as_str(),
            "WaitingForPrerequisites"
        );
        assert_eq!(StallReason::InUse.as_str(), "InUse");
        assert_eq!("InUse".parse::<StallReason>(), Ok(StallReason::InUse));
        assert_eq!(ConditionStatus::from(true), ConditionStatus::True);
        assert_eq!(
            ConditionStatus::True.to_string(),
            ConditionStatus::True.as_str()
        );
        assert!(ConditionType::rank("Ready") < ConditionType::rank("Stalled"));
    }
}
