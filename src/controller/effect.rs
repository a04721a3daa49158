//! What a reconcile step leaves behind: the conditions to write, the events to publish and
//! when to look again. Failed AWS calls map to an effect here, in one place.

use tracing::warn;

use super::events::Event;
use crate::backend::{BackendError, Operation};
use crate::plan::{Requeue, Verdict};
use crate::status::Outcome;
use crate::vocabulary::{StallReason, WaitReason};

#[derive(Debug)]
pub struct Effect {
    /// The conditions to write; `None` leaves them as they are.
    pub outcome: Option<Outcome>,
    pub events: Vec<Event>,
    pub requeue: Requeue,
    /// AWS answered that the recorded package (or an association) does not exist, while what
    /// this reconcile read said it did: the next reconcile must read from a listing that
    /// starts after now, or it would act on the same stale view again.
    pub reread: bool,
}

impl Effect {
    pub fn new(outcome: Outcome, requeue: Requeue) -> Self {
        Self {
            outcome: Some(outcome),
            events: Vec::new(),
            requeue,
            reread: false,
        }
    }

    pub fn progressing(reason: WaitReason, message: impl Into<String>, requeue: Requeue) -> Self {
        Self::new(Outcome::progressing(reason, message), requeue)
    }

    /// A failure that passes by itself: `Retrying`, backing off.
    pub fn retrying(message: impl Into<String>) -> Self {
        Self::progressing(WaitReason::Retrying, message, Requeue::Backoff)
    }

    /// Nothing to write; look again.
    pub fn only(requeue: Requeue) -> Self {
        Self {
            outcome: None,
            events: Vec::new(),
            requeue,
            reread: false,
        }
    }

    /// Stalled: checked again slowly when the cause lies with others, at the resync otherwise.
    pub fn stalled(reason: StallReason, message: String) -> Self {
        let requeue = if reason.waits_on_others() {
            Requeue::Slowly
        } else {
            Requeue::Resync
        };
        Self::new(Outcome::Stalled { reason, message }, requeue)
    }

    /// The next reconcile reads from a listing that starts after this one ([`Self::reread`]).
    pub fn reread(mut self) -> Self {
        self.reread = true;
        self
    }

    pub fn with(mut self, event: Event) -> Self {
        self.events.push(event);
        self
    }

    /// The effect of settling on a verdict.
    pub fn settle(verdict: Verdict) -> Self {
        let requeue = verdict.requeue();
        match verdict {
            Verdict::Done => Self::new(Outcome::Ready, requeue),
            Verdict::Wait { reason, message } => Self::progressing(reason, message, requeue),
            Verdict::Stall { reason, message } => {
                Self::new(Outcome::Stalled { reason, message }, requeue)
            }
            // Flux's convention: a suspended object keeps the conditions it had, so a GitOps
            // wait on it neither hangs nor flips.
            Verdict::Suspended { new_generation } => {
                let effect = Self::only(requeue);
                if new_generation {
                    effect.with(Event::Suspended)
                } else {
                    effect
                }
            }
            Verdict::DeletionHeld { message } => {
                Self::progressing(WaitReason::Deleting, message, requeue)
            }
            Verdict::Finished => Self::only(requeue),
        }
    }
}

/// An AWS call that failed, and which one.
#[derive(Debug)]
pub struct Failed {
    pub operation: Operation,
    pub error: BackendError,
}

impl Failed {
    pub fn new(operation: Operation, error: BackendError) -> Self {
        Self { operation, error }
    }

    /// Retryable failures back off; rejections stall until the user changes something.
    pub fn effect(&self) -> Effect {
        let Self { operation, error } = self;
        let reason = match error {
            BackendError::Throttled(_)
            | BackendError::Transient(_)
            | BackendError::Unanswered(_)
            | BackendError::NotSent(_)
            | BackendError::Conflict(_) => {
                warn!(%operation, %error, "retrying after a transient AWS error");
                return Effect::retrying(format!("{operation}: {error}; retrying"));
            }
            // The package vanished between reading and acting, or someone took the name
            // between our lookup and our create: the next observation, from a listing newer
            // than this answer, decides. Backing off: a read that keeps answering so (an
            // association the listing of domains still shows) is no hot loop.
            BackendError::NotFound(_) | BackendError::AlreadyExists(_) => {
                return Effect::retrying(format!("{operation}: {error}")).reread();
            }
            // A rejected read is no verdict on the spec (a listing's page token the service
            // no longer takes): read again, backing off.
            BackendError::Invalid(_) if !operation.is_mutating() => {
                warn!(%operation, %error, "retrying a rejected read");
                return Effect::retrying(format!("{operation}: {error}; retrying"));
            }
            // A rejected call stays stalled until the user acts; denied access and quotas are
            // fixed outside the object and are retried at every resync.
            BackendError::Invalid(_) => StallReason::InvalidRequest,
            BackendError::AccessDenied(_) => StallReason::AccessDenied,
            BackendError::LimitExceeded(_) => StallReason::LimitExceeded,
            BackendError::Credentials(_) => StallReason::RoleNotAssumable,
        };
        let message = format!("{operation} was rejected: {}", error.message());
        Effect::stalled(reason, message)
    }
}
