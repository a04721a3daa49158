//! When each object is reconciled again: backoff for transient failures, polling while
//! associations change, the region observer's wake-up while a package is imported, the jittered resync otherwise, and a per-object "not yet due" gate so the operator's
//! own status writes (which the watch delivers back) do not cost another round of AWS reads.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use rand::Rng;

use crate::crd::{FINALIZER, OpenSearchPackage};
use crate::plan::Requeue;
use crate::status::reconcile_request;
use crate::vocabulary::ConditionType;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
const SOON: Duration = Duration::from_millis(200);
const SLOWLY: Duration = Duration::from_secs(60);
const POLL_MIN: Duration = Duration::from_secs(2);
pub(super) const POLL_MAX: Duration = Duration::from_secs(30);

/// Whether a reconcile runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Nothing the user controls changed and the object's time has not come: this long yet.
    NotYet(Duration),
    /// Its region's observer saw its package change.
    Woken,
    /// Its time came, or the user changed it.
    Due,
}

/// Per-object scheduling state, keyed by the object's UID: a deleted and recreated object
/// with the same name starts afresh.
pub struct Schedule {
    resync: Duration,
    backoff: Mutex<HashMap<String, u32>>,
    /// The fingerprint of the last reconcile and when the next one is due.
    due: Mutex<HashMap<String, (u64, Instant)>>,
    /// When each object last changed its package in AWS.
    acted: Mutex<HashMap<String, Instant>>,
    /// The write-ahead intent (by its `startedAt`) whose call this process saw answered with
    /// an error that leaves its effect unknown (a 5xx): the call is over, so what AWS shows
    /// from then on tells whether it took effect.
    answered: Mutex<HashMap<String, String>>,
    /// Objects made due (woken by their region's observer) whose next reconcile must run in
    /// full, even when a reconcile already running records a later due time after the wake.
    woken: Mutex<HashSet<String>>,
}

impl Schedule {
    pub fn new(resync: Duration) -> Self {
        Self {
            resync,
            backoff: Mutex::new(HashMap::new()),
            due: Mutex::new(HashMap::new()),
            acted: Mutex::new(HashMap::new()),
            answered: Mutex::new(HashMap::new()),
            woken: Mutex::new(HashSet::new()),
        }
    }

    pub fn resync(&self) -> Duration {
        self.resync
    }

    /// Remembers that the object just changed its package: what it reads next must have been
    /// read after now.
    pub fn record_action(&self, obj: &OpenSearchPackage) {
        self.acted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key(obj), Instant::now());
    }

    /// Remembers that the call of the intent started at `started_at` was answered (with an
    /// error that leaves its effect unknown): it cannot take effect after now.
    pub fn record_answer(&self, obj: &OpenSearchPackage, started_at: &str) {
        self.answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key(obj), started_at.to_owned());
    }

    /// Whether this process saw the call of the intent started at `started_at` answered.
    pub fn was_answered(&self, obj: &OpenSearchPackage, started_at: &str) -> bool {
        self.answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key(obj))
            .is_some_and(|s| s == started_at)
    }

    /// When the object last changed its package (in this process).
    pub fn acted_at(&self, obj: &OpenSearchPackage) -> Option<Instant> {
        self.acted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key(obj))
            .copied()
    }

    /// Whether this object's reconcile is due now, and why; consumes a wake.
    pub fn turn(&self, obj: &OpenSearchPackage) -> Turn {
        if self
            .woken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(obj))
        {
            return Turn::Woken;
        }
        let due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((last, at)) = due.get(&key(obj)) else {
            return Turn::Due;
        };
        match at.checked_duration_since(Instant::now()) {
            Some(remaining) if *last == fingerprint(obj) => Turn::NotYet(remaining),
            _ => Turn::Due,
        }
    }

    /// Time left until this object's next reconcile is due, when nothing the user controls
    /// changed since the last one.
    pub fn not_yet_due(&self, obj: &OpenSearchPackage) -> Option<Duration> {
        match self.turn(obj) {
            Turn::NotYet(remaining) => Some(remaining),
            Turn::Woken | Turn::Due => None,
        }
    }

    /// Records when the object is due next and returns the delay for kube-runtime.
    pub fn next(&self, obj: &OpenSearchPackage, requeue: Requeue, now: Timestamp) -> Duration {
        self.next_within(obj, requeue, now, None)
    }

    /// [`Self::next`], but a settled object (resync, slow checks) is due again by `at_most`
    /// when that comes sooner (its followed source's next check).
    pub fn next_within(
        &self,
        obj: &OpenSearchPackage,
        requeue: Requeue,
        now: Timestamp,
        at_most: Option<Duration>,
    ) -> Duration {
        let key = key(obj);
        // A step taken at once (`Soon`: an open intent resolved, a package just recorded) is
        // not yet progress: a failure after it goes on backing off from where it was.
        if !matches!(requeue, Requeue::Backoff | Requeue::Soon | Requeue::Slowly) {
            self.reset_backoff(&key);
        }
        let cap = |delay: Duration| at_most.map_or(delay, |limit| delay.min(limit.max(SOON)));
        let delay = match requeue {
            Requeue::Soon => SOON,
            Requeue::Poll => poll_delay(obj, now),
            // The region observer wakes the object when its package changes; this is only the
            // safety net.
            Requeue::Observe => jitter(POLL_MAX, 0.1),
            Requeue::Resync | Requeue::Never => cap(jitter(self.resync, 0.1)),
            Requeue::Backoff => self.next_backoff(&key),
            // A cause outside the object (a missing domain): once a minute, and never faster
            // than the backoff as the checks keep failing.
            Requeue::Slowly => cap(self.next_backoff(&key).max(SLOWLY)),
        };
        self.due
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (fingerprint(obj), Instant::now() + delay));
        delay
    }

    /// The delay after a failure that escaped the reconcile (a Kubernetes API error).
    pub fn after_error(&self, obj: &OpenSearchPackage) -> Duration {
        self.next_backoff(&key(obj))
    }

    /// Makes the object's next reconcile run in full, as when its requeue timer fires (tests
    /// stand in for the timer with it), also when a reconcile of it is running now and records
    /// its next due time after this.
    pub fn make_due(&self, obj: &OpenSearchPackage) {
        let key = key(obj);
        self.due
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        self.woken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key);
    }

    /// Forgets a deleted object.
    pub fn forget(&self, obj: &OpenSearchPackage) {
        self.due
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(obj));
        self.woken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(obj));
        self.reset_backoff(&key(obj));
        self.acted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(obj));
        self.answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(obj));
    }

    /// 1 s doubling to 5 min, ±20 % jitter, never outside 1 s … 5 min.
    fn next_backoff(&self, key: &str) -> Duration {
        let attempt = {
            let mut map = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(key.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let base = BACKOFF_START.saturating_mul(1 << attempt.saturating_sub(1).min(9));
        jitter(base.min(BACKOFF_CAP), 0.2).clamp(BACKOFF_START, BACKOFF_CAP)
    }

    fn reset_backoff(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

fn key(obj: &OpenSearchPackage) -> String {
    obj.uid()
        .unwrap_or_else(|| format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()))
}

/// What the user controls that should trigger a reconcile: the spec (generation), the
/// reconcile request, deletion and the finalizer. Status writes change none of it.
fn fingerprint(obj: &OpenSearchPackage) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.generation.hash(&mut hasher);
    reconcile_request(obj).hash(&mut hasher);
    obj.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    obj.finalizers()
        .iter()
        .any(|f| f == FINALIZER)
        .hash(&mut hasher);
    hasher.finish()
}

/// Starts at 2 s and stretches to 30 s the longer the work has been under way, so short
/// imports finish in seconds without hammering the API on long ones.
fn poll_delay(obj: &OpenSearchPackage, now: Timestamp) -> Duration {
    let since = obj
        .status
        .as_ref()
        .and_then(|s| s.condition(ConditionType::Reconciling))
        .map(|c| c.last_transition_time.0);
    let elapsed = since
        .and_then(|t| now.duration_since(t).try_into().ok())
        .unwrap_or(Duration::ZERO);
    (elapsed / 2).clamp(POLL_MIN, POLL_MAX)
}

fn jitter(d: Duration, fraction: f64) -> Duration {
    let factor = rand::rng().random_range(1.0 - fraction..=1.0 + fraction);
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str) -> OpenSearchPackage {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ospkg.dev/v1alpha1",
            "kind": "OpenSearchPackage",
            "metadata": {"name": "a", "namespace": "ns", "uid": uid, "generation": 1},
            "spec": {"packageType": "TXT-DICTIONARY", "source": {"s3BucketName": "b", "s3Key": "k"}},
        }))
        .expect("object")
    }

    #[test]
    fn a_slow_check_is_once_a_minute_then_never_faster_than_the_backoff() {
        let schedule = Schedule::new(Duration::from_secs(600));
        let obj = object("u1");
        let now = Timestamp::now();
        let delays: Vec<Duration> = (0..12)
            .map(|_| schedule.next(&obj, Requeue::Slowly, now))
            .collect();
        assert!(
            delays.iter().all(|d| *d >= SLOWLY && *d <= BACKOFF_CAP),
            "{delays:?}"
        );
        assert_eq!(delays[0], SLOWLY);
        assert!(delays[11] >= BACKOFF_CAP.mul_f64(0.8), "{delays:?}");
    }

    #[test]
    fn backoff_grows_and_resets() {
        let schedule = Schedule::new(Duration::from_secs(600));
        let obj = object("u1");
        let now = Timestamp::now();
        let first = schedule.next(&obj, Requeue::Backoff, now);
        let second = schedule.next(&obj, Requeue::Backoff, now);
        let third = schedule.next(&obj, Requeue::Backoff, now);
        assert!(first <= Duration::from_millis(1200), "{first:?}");
        assert!(third >= Duration::from_millis(3200), "{third:?}");
        assert!(second < third);
        // A step taken at once is not progress: the next failure backs off further.
        schedule.next(&obj, Requeue::Soon, now);
        assert!(schedule.next(&obj, Requeue::Backoff, now) >= Duration::from_millis(6400));
        // Progress (waiting on an import, a settled object) starts over.
        schedule.next(&obj, Requeue::Observe, now);
        assert!(schedule.next(&obj, Requeue::Backoff, now) <= Duration::from_millis(1200));
    }

    #[test]
    fn a_followed_source_check_brings_a_settled_object_forward_only() {
        let schedule = Schedule::new(Duration::from_secs(600));
        let obj = object("u1");
        let now = Timestamp::now();
        let check = Some(Duration::from_secs(5));
        assert_eq!(
            schedule.next_within(&obj, Requeue::Resync, now, check),
            Duration::from_secs(5)
        );
        assert_eq!(
            schedule.next_within(&obj, Requeue::Slowly, now, check),
            Duration::from_secs(5)
        );
        assert_eq!(schedule.next_within(&obj, Requeue::Soon, now, check), SOON);
        // A check due now does not make a busy loop.
        assert_eq!(
            schedule.next_within(&obj, Requeue::Resync, now, Some(Duration::ZERO)),
            SOON
        );
        // Backoff is kept: the source is read again after it, not before.
        let backoff = schedule.next_within(&obj, Requeue::Backoff, now, Some(Duration::ZERO));
        assert!(backoff >= Duration::from_millis(800), "{backoff:?}");
        // A later check leaves the resync alone.
        let later =
            schedule.next_within(&obj, Requeue::Resync, now, Some(Duration::from_secs(3600)));
        assert!(later <= Duration::from_secs(660), "{later:?}");
    }

    #[test]
    fn a_wake_during_a_reconcile_outlasts_the_due_time_that_reconcile_records() {
        let schedule = Schedule::new(Duration::from_secs(600));
        let obj = object("u1");
        let now = Timestamp::now();
        schedule.next(&obj, Requeue::Resync, now);
        assert!(schedule.not_yet_due(&obj).is_some());
        // The region observer wakes the object while a reconcile of it (which read the
        // listing before the change) is still writing its status...
        schedule.make_due(&obj);
        // ...and then records its own next due time.
        schedule.next(&obj, Requeue::Observe, now);
        // The reconcile the wake queued runs in full, once, and knows it was woken (it may
        // take a slot kept for objects whose package changed).
        assert_eq!(schedule.turn(&obj), Turn::Woken);
        assert!(matches!(schedule.turn(&obj), Turn::NotYet(_)));
    }

    #[test]
    fn a_turn_is_due_when_never_scheduled_when_its_time_came_or_when_the_user_changed_it() {
        let schedule = Schedule::new(Duration::from_secs(600));
        let mut obj = object("u1");
        assert_eq!(schedule.turn(&obj), Turn::Due);
        schedule.next(&obj, Requeue::Resync, Timestamp::now());
        assert!(
            matches!(schedule.turn(&obj), Turn::NotYet(left) if left > Duration::from_secs(500))
        );
        obj.metadata.generation = Some(2);
        assert_eq!(schedule.turn(&obj), Turn::Due);
    }

    #[test]
    fn a_recreated_object_with_the_same_name_does_not_inherit_the_schedule() {
        let schedule = Schedule::new(Duration::from_secs(600));
        let old = object("u1");
        schedule.next(&old, Requeue::Resync, Timestamp::now());
        assert!(schedule.not_yet_due(&old).is_some());
        assert!(schedule.not_yet_due(&object("u2")).is_none());
    }
}
