//! `status`: what the reconcile saw and did, written back to the object. Questions about a
//! status ("Ready at this generation?", "does a stall stand?") are answered here, once, so no
//! other module scans conditions by hand.

mod conditions;
pub mod export;
mod record;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

pub use conditions::{Outcome, apply_outcome, set_condition};
pub use record::{
    HISTORY_LEN, domains_behind, domains_ready, record_domains, record_history, record_package,
    rfc3339, upsert_domain,
};

use crate::crd::{OpenSearchPackage, OpenSearchPackageStatus, RECONCILE_REQUESTED_AT};
use crate::vocabulary::{ConditionStatus, ConditionType, StallReason};

/// A `Stalled=True` condition as recorded in status.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedStall<'a> {
    pub reason: Option<StallReason>,
    pub message: &'a str,
    pub observed_generation: Option<i64>,
}

impl OpenSearchPackageStatus {
    /// The condition of this type, if written.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_.as_str())
    }

    /// Whether the condition of this type is `True`.
    pub fn is_true(&self, type_: ConditionType) -> bool {
        self.condition(type_)
            .is_some_and(|c| c.status == ConditionStatus::True.as_str())
    }

    /// `Ready=True`, written for this generation.
    pub fn is_ready_at(&self, generation: Option<i64>) -> bool {
        self.condition(ConditionType::Ready).is_some_and(|c| {
            c.status == ConditionStatus::True.as_str() && c.observed_generation == generation
        })
    }

    /// The `Stalled=True` condition, if any.
    pub fn stall(&self) -> Option<RecordedStall<'_>> {
        let c = self
            .condition(ConditionType::Stalled)
            .filter(|c| c.status == ConditionStatus::True.as_str())?;
        Some(RecordedStall {
            reason: c.reason.parse().ok(),
            message: &c.message,
            observed_generation: c.observed_generation,
        })
    }

    /// Stalled for this reason right now.
    pub fn is_stalled_for(&self, reason: StallReason) -> bool {
        self.stall().is_some_and(|s| s.reason == Some(reason))
    }
}

/// The value of the reconcile-request annotation, if set.
pub fn reconcile_request(obj: &OpenSearchPackage) -> Option<&str> {
    obj.metadata
        .annotations
        .as_ref()?
        .get(RECONCILE_REQUESTED_AT)
        .map(String::as_str)
}

/// Whether the user has acted since `stall` was recorded: a new generation or a new reconcile
/// request lifts a stall caused by a rejected call or a failed association.
pub fn stall_lifted(obj: &OpenSearchPackage, stall: &RecordedStall<'_>) -> bool {
    let handled = obj
        .status
        .as_ref()
        .and_then(|s| s.last_handled_reconcile_at.as_deref());
    stall.observed_generation != obj.metadata.generation || handled != reconcile_request(obj)
}

/// The recorded stall, when it is on a call the service rejected and the user has not acted
/// on it since (no new generation, no reconcile request): it stands until they do.
pub fn standing_rejection(obj: &OpenSearchPackage) -> Option<RecordedStall<'_>> {
    let stall = obj.status.as_ref()?.stall()?;
    stall.reason.filter(|r| r.is_sticky())?;
    (!stall_lifted(obj, &stall)).then_some(stall)
}

/// Ready for the current generation, with nothing in flight and no pending reconcile
/// request: such an object's package may be read from the shared region snapshot.
pub fn is_settled(obj: &OpenSearchPackage) -> bool {
    let Some(status) = obj.status.as_ref() else {
        return false;
    };
    status.is_ready_at(obj.metadata.generation)
        && status.in_flight.is_none()
        && status.last_handled_reconcile_at.as_deref() == reconcile_request(obj)
}
