//! kstatus-compatible conditions (`Ready`, `Reconciling`, `Stalled`).
//!
//! Conditions keep their `lastTransitionTime` unless their status flips, and are kept in a
//! fixed order, so writing an unchanged status is a no-op for the API server.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::OpenSearchPackageStatus;
use crate::vocabulary::{ConditionStatus, ConditionType, ReadyReason, StallReason, WaitReason};

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
}

impl Outcome {
    pub fn progressing(reason: WaitReason, message: impl Into<String>) -> Self {
        Self::Progressing {
            reason,
            message: message.into(),
        }
    }
}

/// Sets one condition, keeping `lastTransitionTime` when the status does not flip.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = ConditionStatus::from(status).as_str();
    let previous = conditions.iter().position(|c| c.type_ == type_.as_str());
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: type_.as_str().to_owned(),
        status: status.to_owned(),
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

fn remove_condition(conditions: &mut Vec<Condition>, type_: ConditionType) {
    conditions.retain(|c| c.type_ != type_.as_str());
}

/// Writes the three kstatus conditions for an outcome.
pub fn apply_outcome(
    status: &mut OpenSearchPackageStatus,
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) {
    use ConditionType::{Ready, Reconciling, Stalled};
    let version = status
        .available_package_version
        .clone()
        .unwrap_or_else(|| "-".into());
    let conditions = &mut status.conditions;
    let mut set = |type_, value, reason: &str, message: &str| {
        set_condition(conditions, type_, value, reason, message, generation, now);
    };
    match outcome {
        Outcome::Ready => {
            let message = format!("package is AVAILABLE at {version}");
            set(Ready, true, ReadyReason::Available.as_str(), &message);
            remove_condition(conditions, Reconciling);
            remove_condition(conditions, Stalled);
        }
        Outcome::Progressing { reason, message } => {
            let ready_reason = if *reason == WaitReason::Deleting {
                ReadyReason::Deleting
            } else {
                ReadyReason::Progressing
            };
            set(Ready, false, ready_reason.as_str(), message);
            set(Reconciling, true, reason.as_str(), message);
            remove_condition(conditions, Stalled);
        }
        Outcome::Stalled { reason, message } => {
            set(Ready, false, ReadyReason::Failed.as_str(), message);
            set(Stalled, true, reason.as_str(), message);
            remove_condition(conditions, Reconciling);
        }
    }
    conditions.sort_by_key(|c| ConditionType::rank(&c.type_));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        let ready = ConditionType::Ready;
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready,
            false,
            "Progressing",
            "a",
            Some(1),
            t0,
        );
        set_condition(
            &mut conditions,
            ready,
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
        set_condition(&mut conditions, ready, true, "Available", "c", Some(2), t1);
        assert_eq!(conditions[0].last_transition_time, Time(t1));
    }

    #[test]
    fn outcomes_map_to_kstatus_conditions() {
        let now = Timestamp::UNIX_EPOCH;
        let mut status = OpenSearchPackageStatus::default();
        let copying = Outcome::progressing(WaitReason::Copying, "copying");
        apply_outcome(&mut status, &copying, Some(3), now);
        let types: Vec<(&str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        let (t, f) = (
            ConditionStatus::True.as_str(),
            ConditionStatus::False.as_str(),
        );
        let (ready, reconciling) = (
            ConditionType::Ready.as_str(),
            ConditionType::Reconciling.as_str(),
        );
        assert_eq!(types, vec![(ready, f), (reconciling, t)]);

        let stalled = Outcome::Stalled {
            reason: StallReason::CopyFailed,
            message: "gone".into(),
        };
        apply_outcome(&mut status, &stalled, Some(3), now);
        let types: Vec<(&str, &str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            types,
            vec![
                (ready, f, ReadyReason::Failed.as_str()),
                (
                    ConditionType::Stalled.as_str(),
                    t,
                    StallReason::CopyFailed.as_str()
                )
            ]
        );
        assert!(status.is_stalled_for(StallReason::CopyFailed));

        apply_outcome(&mut status, &Outcome::Ready, Some(4), now);
        assert_eq!(status.conditions.len(), 1);
        assert!(status.is_ready_at(Some(4)));
        assert!(!status.is_ready_at(Some(3)));
        assert!(status.stall().is_none());
    }
}
