//! Turning what the reconcile saw and did into `status`: identity fields, versions, domains
//! and kstatus-compatible conditions.
//!
//! Conditions keep their `lastTransitionTime` unless their status flips, so writing an
//! unchanged status is a no-op for the API server.

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::backend::{DomainAssociation, Package, PackageVersion, ServiceError};
use crate::crd::{
    DomainStatus, ErrorDetails, OpenSearchPackageSpec, OpenSearchPackageStatus, VersionHistoryEntry,
};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Versions kept in `status.versionHistory`.
pub const HISTORY_LEN: usize = 10;

/// Why progress needs the user (the `Stalled` condition's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl StallReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSpec => "InvalidSpec",
            Self::NameConflict => "NameConflict",
            Self::AlreadyExists => "AlreadyExists",
            Self::CopyFailed => "CopyFailed",
            Self::ValidationFailed => "ValidationFailed",
            Self::AssociationFailed => "AssociationFailed",
            Self::InvalidRequest => "InvalidRequest",
            Self::AccessDenied => "AccessDenied",
            Self::LimitExceeded => "LimitExceeded",
            Self::InUse => "InUse",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::InvalidSpec,
            Self::NameConflict,
            Self::AlreadyExists,
            Self::CopyFailed,
            Self::ValidationFailed,
            Self::AssociationFailed,
            Self::InvalidRequest,
            Self::AccessDenied,
            Self::LimitExceeded,
            Self::InUse,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Stalls caused by a call the service rejected. AWS state does not show them, so the
    /// recorded condition is what keeps the operator from calling again until the user acts.
    pub fn is_sticky(self) -> bool {
        matches!(
            self,
            Self::InvalidRequest | Self::AccessDenied | Self::LimitExceeded
        )
    }
}

/// Why the operator is waiting (the `Reconciling` condition's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitReason {
    Creating,
    Copying,
    Validating,
    Updating,
    PackageBusy,
    RollingOut,
    Dissociating,
    Prerequisites,
    Retrying,
    Deleting,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Copying => "Copying",
            Self::Validating => "Validating",
            Self::Updating => "Updating",
            Self::PackageBusy => "PackageBusy",
            Self::RollingOut => "RollingOut",
            Self::Dissociating => "Dissociating",
            Self::Prerequisites => "WaitingForPrerequisites",
            Self::Retrying => "Retrying",
            Self::Deleting => "Deleting",
        }
    }
}

/// Where a reconcile left the object, as the conditions will say.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The package is available at the spec's version and every domain is current.
    Ready,
    /// Work is under way.
    Progressing { reason: WaitReason, message: String },
    /// The user must change something.
    Stalled {
        reason: StallReason,
        message: String,
    },
    /// `spec.suspend` is true.
    Suspended,
}

/// Sets one condition, keeping `lastTransitionTime` when the status does not flip.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status_str = if status { "True" } else { "False" };
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(c) if c.status == status_str => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: type_.to_owned(),
        status: status_str.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Writes the three kstatus conditions for an outcome.
pub fn apply_outcome(
    status: &mut OpenSearchPackageStatus,
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) {
    let conditions = &mut status.conditions;
    match outcome {
        Outcome::Ready => {
            let version = status.available_package_version.as_deref().unwrap_or("-");
            let message = format!("package is AVAILABLE at {version}");
            set_condition(
                conditions,
                READY,
                true,
                "Available",
                &message,
                generation,
                now,
            );
            remove_condition(conditions, RECONCILING);
            remove_condition(conditions, STALLED);
        }
        Outcome::Progressing { reason, message } => {
            let ready_reason = if *reason == WaitReason::Deleting {
                "Deleting"
            } else {
                "Progressing"
            };
            set_condition(
                conditions,
                READY,
                false,
                ready_reason,
                message,
                generation,
                now,
            );
            set_condition(
                conditions,
                RECONCILING,
                true,
                reason.as_str(),
                message,
                generation,
                now,
            );
            remove_condition(conditions, STALLED);
        }
        Outcome::Stalled { reason, message } => {
            set_condition(conditions, READY, false, "Failed", message, generation, now);
            set_condition(
                conditions,
                STALLED,
                true,
                reason.as_str(),
                message,
                generation,
                now,
            );
            remove_condition(conditions, RECONCILING);
        }
        Outcome::Suspended => {
            let message = "spec.suspend is true: no changes are made in AWS";
            set_condition(
                conditions,
                READY,
                false,
                "Suspended",
                message,
                generation,
                now,
            );
            remove_condition(conditions, RECONCILING);
            remove_condition(conditions, STALLED);
        }
    }
    // A stable order keeps the applied status byte-identical between reconciles.
    conditions.sort_by_key(|c| condition_rank(&c.type_));
}

fn condition_rank(type_: &str) -> u8 {
    match type_ {
        READY => 0,
        RECONCILING => 1,
        STALLED => 2,
        _ => 3,
    }
}

/// RFC 3339 text of a service timestamp.
pub fn rfc3339(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

fn error_details(e: &ServiceError) -> ErrorDetails {
    ErrorDetails {
        error_type: e.error_type.clone(),
        error_message: e.error_message.clone(),
    }
}

/// Copies the package's identity and state into status.
pub fn record_package(status: &mut OpenSearchPackageStatus, package: &Package) {
    status.package_id = Some(package.id.clone());
    status.package_name = Some(package.name.clone());
    status.package_type = Some(package.package_type.clone());
    status.engine_version = package.engine_version.clone();
    status.package_status = Some(package.status.as_str().to_owned());
    status.available_package_version = package.available_version.clone();
    status.error_details = package.error.as_ref().map(error_details);
    status.created_at = rfc3339(package.created_at).or(status.created_at.take());
    status.last_updated_at = rfc3339(package.last_updated_at).or(status.last_updated_at.take());
}

/// Keeps the newest [`HISTORY_LEN`] versions.
pub fn record_history(status: &mut OpenSearchPackageStatus, history: &[PackageVersion]) {
    status.version_history = history
        .iter()
        .take(HISTORY_LEN)
        .map(|v| VersionHistoryEntry {
            package_version: v.version.clone(),
            commit_message: v.commit_message.clone(),
            created_at: rfc3339(v.created_at),
        })
        .collect();
}

/// Reports every association: the spec's domains in spec order, then domains this object
/// associated before and has not finished dissociating, then associations made outside it.
pub fn record_domains(
    status: &mut OpenSearchPackageStatus,
    spec: &OpenSearchPackageSpec,
    associations: &[DomainAssociation],
) {
    let wanted: Vec<&str> = spec.domains.iter().map(|d| d.name.as_str()).collect();
    let previously_managed: BTreeSet<String> = status
        .domains
        .iter()
        .filter(|d| !d.unmanaged)
        .map(|d| d.domain_name.clone())
        .collect();
    let mut domains: Vec<DomainStatus> = Vec::new();
    for name in &wanted {
        let association = associations.iter().find(|a| a.domain_name == *name);
        domains.push(DomainStatus {
            domain_name: (*name).to_owned(),
            domain_package_status: association.map(|a| a.status.as_str().to_owned()),
            package_version: association.and_then(|a| a.package_version.clone()),
            reference_path: association.and_then(|a| a.reference_path.clone()),
            last_updated: association.and_then(|a| rfc3339(a.last_updated)),
            error_details: association.and_then(|a| a.error.as_ref().map(error_details)),
            unmanaged: false,
        });
    }
    let mut rest: Vec<&DomainAssociation> = associations
        .iter()
        .filter(|a| !wanted.contains(&a.domain_name.as_str()))
        .collect();
    rest.sort_by(|a, b| a.domain_name.cmp(&b.domain_name));
    for a in rest {
        domains.push(DomainStatus {
            domain_name: a.domain_name.clone(),
            domain_package_status: Some(a.status.as_str().to_owned()),
            package_version: a.package_version.clone(),
            reference_path: a.reference_path.clone(),
            last_updated: rfc3339(a.last_updated),
            error_details: a.error.as_ref().map(error_details),
            unmanaged: !previously_managed.contains(&a.domain_name),
        });
    }
    status.domains = domains;
}

/// Number of spec domains not yet ACTIVE on the package's current version.
pub fn domains_behind(status: &OpenSearchPackageStatus) -> usize {
    let current = status.available_package_version.as_deref();
    status
        .domains
        .iter()
        .filter(|d| !d.unmanaged)
        .filter(|d| {
            d.domain_package_status.as_deref() != Some("ACTIVE")
                || d.package_version.as_deref() != current
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            READY,
            false,
            "Progressing",
            "a",
            Some(1),
            t0,
        );
        set_condition(
            &mut conditions,
            READY,
            false,
            "Progressing",
            "b",
            Some(2),
            t1,
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(conditions[0].message, "b");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(&mut conditions, READY, true, "Available", "c", Some(2), t1);
        assert_eq!(conditions[0].last_transition_time, Time(t1));
    }

    #[test]
    fn domains_behind_counts_listed_domains_not_on_the_current_version() {
        let domain = |name: &str, state: &str, version: &str, unmanaged: bool| DomainStatus {
            domain_name: name.into(),
            domain_package_status: Some(state.into()),
            package_version: Some(version.into()),
            reference_path: None,
            last_updated: None,
            error_details: None,
            unmanaged,
        };
        let status = OpenSearchPackageStatus {
            available_package_version: Some("v2".into()),
            domains: vec![
                domain("current", "ACTIVE", "v2", false),
                domain("old", "ACTIVE", "v1", false),
                domain("moving", "ASSOCIATING", "v2", false),
                domain("someone-elses", "ACTIVE", "v1", true),
            ],
            ..Default::default()
        };
        assert_eq!(domains_behind(&status), 2);
    }

    #[test]
    fn outcomes_map_to_kstatus_conditions() {
        let now = Timestamp::UNIX_EPOCH;
        let mut status = OpenSearchPackageStatus::default();
        apply_outcome(
            &mut status,
            &Outcome::Progressing {
                reason: WaitReason::Copying,
                message: "copying".into(),
            },
            Some(3),
            now,
        );
        let types: Vec<(&str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(types, vec![(READY, "False"), (RECONCILING, "True")]);

        apply_outcome(
            &mut status,
            &Outcome::Stalled {
                reason: StallReason::CopyFailed,
                message: "gone".into(),
            },
            Some(3),
            now,
        );
        let types: Vec<(&str, &str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            types,
            vec![(READY, "False", "Failed"), (STALLED, "True", "CopyFailed")]
        );

        apply_outcome(&mut status, &Outcome::Ready, Some(4), now);
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].status, "True");
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );
    }
}
