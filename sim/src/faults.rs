//! Fault injection. Reproducible: one ChaCha draw per request, in arrival order, from an RNG
//! seeded with `seed`, decides that request's fault; the same seed and the same request
//! sequence give the same faults. The rate limiter is a token bucket in real time.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Settings for one operation (or for all, under the key `"*"`). Probabilities are in [0, 1]
/// and are checked in this order on the same draw: throttle, internal, unavailable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OperationFaults {
    /// Probability of `ThrottlingException` (HTTP 400, "Rate exceeded").
    pub throttle: f64,
    /// Probability of `InternalException` (HTTP 500).
    pub internal: f64,
    /// Probability of HTTP 503 `ServiceUnavailableException`.
    pub unavailable: f64,
    /// Added before the operation runs.
    pub latency_ms: u64,
    /// The operation takes effect, then the response is held this long before it is sent.
    pub hold_response_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size (requests that may arrive at once).
    pub burst: u32,
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
}

/// What the injector decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    RateLimited,
    Throttle,
    Internal,
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    bucket: Option<Bucket>,
}

impl FaultInjector {
    pub fn new(config: FaultConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let bucket = config.rate_limit.map(|r| Bucket {
            tokens: f64::from(r.burst),
            at: Instant::now(),
        });
        FaultInjector {
            config,
            rng,
            bucket,
        }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    pub fn association_failure(&self, domain: &str) -> Option<String> {
        self.config.fail_associations.get(domain).cloned()
    }

    /// Decides one request. Always makes exactly one draw, so that the sequence of draws
    /// depends only on the number of requests, not on which ones were faulted.
    pub fn decide(&mut self, operation: &str) -> Decision {
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
        if !self.take_token() {
            return decision(Verdict::RateLimited);
        }
        let Some(f) = faults else {
            return decision(Verdict::Proceed);
        };
        let verdict = if draw < f.throttle {
            Verdict::Throttle
        } else if draw < f.throttle + f.internal {
            Verdict::Internal
        } else if draw < f.throttle + f.internal + f.unavailable {
            Verdict::Unavailable
        } else {
            Verdict::Proceed
        };
        decision(verdict)
    }

    fn take_token(&mut self) -> bool {
        let (Some(limit), Some(bucket)) = (self.config.rate_limit, self.bucket.as_mut()) else {
            return true;
        };
        let now = Instant::now();
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
mod tests {
    use super::*;

    fn config(seed: u64) -> FaultConfig {
        FaultConfig {
            seed,
            operations: BTreeMap::from([(
                "*".to_string(),
                OperationFaults {
                    throttle: 0.2,
                    internal: 0.2,
                    unavailable: 0.1,
                    ..Default::default()
                },
            )]),
            ..Default::default()
        }
    }

    fn run(seed: u64) -> Vec<Verdict> {
        let mut injector = FaultInjector::new(config(seed));
        (0..200)
            .map(|_| injector.decide("DescribePackages").verdict)
            .collect()
    }

    #[test]
    fn same_seed_same_faults() {
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let faults = run(7).iter().filter(|v| **v != Verdict::Proceed).count();
        assert!((60..140).contains(&faults), "{faults}");
    }

    #[test]
    fn bucket_allows_burst_then_limits() {
        let mut injector = FaultInjector::new(FaultConfig {
            rate_limit: Some(RateLimit {
                per_second: 0.001,
                burst: 3,
            }),
            ..Default::default()
        });
        let verdicts: Vec<_> = (0..5).map(|_| injector.decide("X").verdict).collect();
        assert_eq!(&verdicts[..3], &[Verdict::Proceed; 3]);
        assert_eq!(&verdicts[3..], &[Verdict::RateLimited; 2]);
    }
}
