//! Fault injection. Reproducible: one ChaCha draw per request, in arrival order, from an RNG
//! seeded with `seed`, decides that request's fault; the same seed and the same request
//! sequence give the same faults. Scripted faults ("fail the next call") are queued per
//! operation and consumed in order, ahead of the draw (which is still made). The rate limiter
//! is a token bucket in real time per (account, region), as AWS throttles the control plane.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::server::Operation;
use crate::state::Scope;

/// Settings for one operation (or for all, under the key `"*"`). Probabilities are in [0, 1]
/// and are checked in this order on the same draw: throttle, internal, unavailable,
/// accessDenied, errorAfterEffect, closeAfterEffect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OperationFaults {
    /// Probability of `ThrottlingException` (HTTP 400, "Rate exceeded").
    pub throttle: f64,
    /// Probability of `InternalException` (HTTP 500).
    pub internal: f64,
    /// Probability of HTTP 503 `ServiceUnavailableException`.
    pub unavailable: f64,
    /// Probability of `AccessDeniedException` (HTTP 403), without effect.
    pub access_denied: f64,
    /// Probability that the operation takes effect and the caller gets `InternalException`.
    pub error_after_effect: f64,
    /// Probability that the operation takes effect and the connection is closed unanswered.
    pub close_after_effect: f64,
    /// Added before the operation runs.
    pub latency_ms: u64,
    /// The operation takes effect, then the response is held this long before it is sent.
    pub hold_response_ms: u64,
}

impl OperationFaults {
    fn probabilities(&self) -> [(&'static str, f64); 6] {
        [
            ("throttle", self.throttle),
            ("internal", self.internal),
            ("unavailable", self.unavailable),
            ("accessDenied", self.access_denied),
            ("errorAfterEffect", self.error_after_effect),
            ("closeAfterEffect", self.close_after_effect),
        ]
    }
}

/// A token bucket per (account, region): each account and region has its own `burst` and
/// refills at `per_second`, independently of the others (as AWS rate-limits per account
/// and region).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Tokens added per second, per (account, region).
    pub per_second: f64,
    /// Bucket size per (account, region) (requests that may arrive at once).
    pub burst: u32,
}

/// One scripted outcome for the next call of an operation (JSON: `{"kind":"throttle"}`,
/// `{"kind":"validation","message":"…"}`, `{"kind":"holdAfterEffect","ms":2000}`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ScriptedFault {
    /// `ThrottlingException` (HTTP 400, "Rate exceeded"); no effect.
    Throttle,
    /// `InternalException` (HTTP 500); no effect.
    Internal,
    /// `ServiceUnavailableException` (HTTP 503); no effect.
    Unavailable,
    /// `AccessDeniedException` (HTTP 403) naming the operation; no effect.
    AccessDenied,
    /// `ValidationException` (HTTP 400) with this message; no effect.
    Validation { message: String },
    /// `InvalidTypeException` (HTTP 409) with this message; no effect.
    InvalidType { message: String },
    /// `BaseException` (HTTP 400) with this message; no effect.
    Base { message: String },
    /// The operation takes effect, then the caller gets `InternalException` (HTTP 500).
    ErrorAfterEffect,
    /// The operation takes effect, then the connection is closed without an HTTP response.
    CloseAfterEffect,
    /// The operation takes effect, then its answer is held `ms` milliseconds.
    HoldAfterEffect { ms: u64 },
    /// No answer ever comes (the request hangs until the caller gives up), and the operation
    /// takes effect `ms` milliseconds after it arrived, whether the caller still waits or not:
    /// a request that reaches the service after the client timed out.
    LateEffect { ms: u64 },
}

/// What `PUT /_sim/faults` accepts and `GET /_sim/faults` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultConfig {
    pub seed: u64,
    /// Operation name (`UpdatePackage`, …) or `"*"` for every operation without its own entry.
    pub operations: BTreeMap<String, OperationFaults>,
    pub rate_limit: Option<RateLimit>,
    /// Domain name → message: associations started on that domain (in any account or region)
    /// end in ASSOCIATION_FAILED with this message.
    pub fail_associations: BTreeMap<String, String>,
    /// Operation name → faults for its next calls, in order: each call of the operation takes
    /// the head of its queue instead of the probabilistic outcome. `GET /_sim/faults` shows
    /// what is left.
    pub script: BTreeMap<String, Vec<ScriptedFault>>,
    /// A package made by CreatePackage is missing from DescribePackages listings (no
    /// `PackageID` filter) for this many simulated milliseconds.
    pub read_after_write_lag_ms: u64,
    /// The lag applies to lookups by `PackageID` too (answered "Package not found" until it
    /// has passed), as an eventually consistent read might.
    pub lag_lookups_by_id: bool,
    /// Domain name → message: dissociations started on that domain (in any account or region)
    /// end in DISSOCIATION_FAILED with this message; the association stays.
    pub fail_dissociations: BTreeMap<String, String>,
    /// Package name or ID → message: DeletePackage of that package ends in DELETE_FAILED with
    /// this message after the deleting time, instead of removing it.
    pub fail_deletes: BTreeMap<String, String>,
}

impl FaultConfig {
    /// Appends `fault` to the queue of `operation` (builder style, for `SimConfig::faults`).
    pub fn scripted(mut self, operation: &str, fault: ScriptedFault) -> Self {
        self.script
            .entry(operation.to_string())
            .or_default()
            .push(fault);
        self
    }

    /// Refuses what the injector cannot honour: unknown operation names, probabilities
    /// outside [0, 1], an impossible rate limit.
    pub fn check(&self) -> Result<(), String> {
        for (op, f) in &self.operations {
            if op != "*" {
                known_operation(op)?;
            }
            for (name, p) in f.probabilities() {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("{op}.{name} must be within [0, 1] (got {p})"));
                }
            }
        }
        for op in self.script.keys() {
            known_operation(op)?;
        }
        if let Some(limit) = self.rate_limit
            && (limit.per_second.is_nan() || limit.per_second < 0.0 || limit.burst == 0)
        {
            return Err("rateLimit needs perSecond >= 0 and burst >= 1".to_string());
        }
        Ok(())
    }
}

/// The S3 listener's operations, which take scripted faults too (`throttle`: 503 SlowDown;
/// any other kind: 500 InternalError).
pub const S3_OPERATIONS: [&str; 4] = ["HeadObject", "GetObject", "PutObject", "DeleteObject"];

/// `Ok` for one of the twelve package operation names or, for scripts, an S3 operation.
pub fn known_operation(name: &str) -> Result<(), String> {
    match Operation::from_name(name) {
        Some(_) => Ok(()),
        None if S3_OPERATIONS.contains(&name) => Ok(()),
        None => Err(format!(
            "unknown operation '{name}'; expected one of: {}, {}",
            Operation::ALL.map(Operation::name).join(", "),
            S3_OPERATIONS.join(", ")
        )),
    }
}

/// What the injector decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    RateLimited,
    Throttle,
    Internal,
    Unavailable,
    AccessDenied,
    Validation(String),
    InvalidType(String),
    Base(String),
    ErrorAfterEffect,
    CloseAfterEffect,
    /// No answer; the operation runs this many milliseconds after the request arrived.
    LateEffect(u64),
}

impl Verdict {
    /// The fault's name as written in the configuration (`None` for no fault).
    pub fn fault_name(&self) -> Option<&'static str> {
        Some(match self {
            Verdict::Proceed => return None,
            Verdict::RateLimited => "rateLimit",
            Verdict::Throttle => "throttle",
            Verdict::Internal => "internal",
            Verdict::Unavailable => "unavailable",
            Verdict::AccessDenied => "accessDenied",
            Verdict::Validation(_) => "validation",
            Verdict::InvalidType(_) => "invalidType",
            Verdict::Base(_) => "base",
            Verdict::ErrorAfterEffect => "errorAfterEffect",
            Verdict::CloseAfterEffect => "closeAfterEffect",
            Verdict::LateEffect(_) => "lateEffect",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub latency_ms: u64,
    pub hold_response_ms: u64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct FaultInjector {
    config: FaultConfig,
    rng: ChaCha8Rng,
    /// One bucket per (account, region), made full on its first request.
    buckets: HashMap<Scope, Bucket>,
}

impl FaultInjector {
    pub fn new(config: FaultConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        FaultInjector {
            config,
            rng,
            buckets: HashMap::new(),
        }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    pub fn association_failure(&self, domain: &str) -> Option<String> {
        self.config.fail_associations.get(domain).cloned()
    }

    pub fn dissociation_failure(&self, domain: &str) -> Option<String> {
        self.config.fail_dissociations.get(domain).cloned()
    }

    pub fn delete_failure(&self, package_name: &str, package_id: &str) -> Option<String> {
        self.config
            .fail_deletes
            .get(package_id)
            .or_else(|| self.config.fail_deletes.get(package_name))
            .cloned()
    }

    pub fn read_after_write_lag_ms(&self) -> u64 {
        self.config.read_after_write_lag_ms
    }

    pub fn lag_lookups_by_id(&self) -> bool {
        self.config.lag_lookups_by_id
    }

    /// Appends one fault to an operation's script, leaving the rest of the configuration (and
    /// the RNG) as it is.
    pub fn push_script(&mut self, operation: &str, fault: ScriptedFault) -> Result<(), String> {
        known_operation(operation)?;
        self.config
            .script
            .entry(operation.to_string())
            .or_default()
            .push(fault);
        Ok(())
    }

    /// Decides one request of the caller's (account, region) `scope`. Always makes exactly
    /// one draw, so that the sequence of draws depends only on the number of requests, not on
    /// which ones were faulted or scripted. An unauthenticated request (`scope: None`) is
    /// refused before the rate limiter and the fault stage, so it takes no token and consumes
    /// no scripted fault.
    pub fn decide(&mut self, operation: &str, scope: Option<&Scope>) -> Decision {
        let draw: f64 = self.rng.random();
        let faults = self
            .config
            .operations
            .get(operation)
            .or_else(|| self.config.operations.get("*"))
            .cloned();
        let (latency_ms, hold_response_ms) = faults
            .as_ref()
            .map_or((0, 0), |f| (f.latency_ms, f.hold_response_ms));
        let decision = |verdict| Decision {
            verdict,
            latency_ms,
            hold_response_ms,
        };
        let Some(scope) = scope else {
            return decision(Verdict::Proceed);
        };
        if !self.take_token(scope) {
            return decision(Verdict::RateLimited);
        }
        if let Some(fault) = self.pop_script(operation) {
            return match fault {
                ScriptedFault::Throttle => decision(Verdict::Throttle),
                ScriptedFault::Internal => decision(Verdict::Internal),
                ScriptedFault::Unavailable => decision(Verdict::Unavailable),
                ScriptedFault::AccessDenied => decision(Verdict::AccessDenied),
                ScriptedFault::Validation { message } => decision(Verdict::Validation(message)),
                ScriptedFault::InvalidType { message } => decision(Verdict::InvalidType(message)),
                ScriptedFault::Base { message } => decision(Verdict::Base(message)),
                ScriptedFault::ErrorAfterEffect => decision(Verdict::ErrorAfterEffect),
                ScriptedFault::CloseAfterEffect => decision(Verdict::CloseAfterEffect),
                ScriptedFault::LateEffect { ms } => decision(Verdict::LateEffect(ms)),
                ScriptedFault::HoldAfterEffect { ms } => Decision {
                    hold_response_ms: ms,
                    ..decision(Verdict::Proceed)
                },
            };
        }
        let Some(f) = faults else {
            return decision(Verdict::Proceed);
        };
        let verdicts = [
            Verdict::Throttle,
            Verdict::Internal,
            Verdict::Unavailable,
            Verdict::AccessDenied,
            Verdict::ErrorAfterEffect,
            Verdict::CloseAfterEffect,
        ];
        let mut bound = 0.0;
        for ((_, p), verdict) in f.probabilities().into_iter().zip(verdicts) {
            bound += p;
            if draw < bound {
                return decision(verdict);
            }
        }
        decision(Verdict::Proceed)
    }

    /// The next scripted fault of an operation the injector does not decide on (the S3
    /// listener's), consumed.
    pub fn take_scripted(&mut self, operation: &str) -> Option<ScriptedFault> {
        self.pop_script(operation)
    }

    fn pop_script(&mut self, operation: &str) -> Option<ScriptedFault> {
        let queue = self.config.script.get_mut(operation)?;
        let fault = (!queue.is_empty()).then(|| queue.remove(0));
        if queue.is_empty() {
            self.config.script.remove(operation);
        }
        fault
    }

    /// Takes a token from `scope`'s bucket (made full on first use); `false` when empty.
    fn take_token(&mut self, scope: &Scope) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        let now = Instant::now();
        let bucket = self.buckets.entry(scope.clone()).or_insert(Bucket {
            tokens: f64::from(limit.burst),
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * limit.per_second;
        bucket.tokens = (bucket.tokens + refill).min(f64::from(limit.burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests;
