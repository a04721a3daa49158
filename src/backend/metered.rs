//! A [`PackageBackend`] wrapper that rate-limits and counts every AWS call.
//!
//! The limiter keeps the operator under the service's throttling limits instead of
//! discovering them through `ThrottlingException`s; the counts feed
//! `ospkg_aws_calls_total{operation,outcome}`.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::{
    AssociatePackage, BackendError, BackendResult, CreatePackage, DomainAssociation, Operation,
    Package, PackageBackend, PackageFilter, PackageVersion, UpdatePackage,
};
use crate::leader::Leadership;
use crate::metrics::Metrics;

/// Wraps `inner` with a client-side rate limiter per region and call metrics.
///
/// The service throttles per (account, region). The operator runs with one set of
/// credentials, so the account is fixed and one limiter per region is one per
/// (account, region).
///
/// The limiter counts backend calls. A paginated read (DescribePackages with every page)
/// is one call here, so the quota is a budget for operations, not for HTTP requests; the
/// SDK's adaptive retry mode absorbs the rest.
pub struct Metered<B> {
    inner: B,
    metrics: Arc<Metrics>,
    quota: Quota,
    limiters: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    leadership: Arc<Leadership>,
}

impl<B> Metered<B> {
    /// `rate_per_second` is both the sustained rate and the burst, per region.
    pub fn new(inner: B, metrics: Arc<Metrics>, rate_per_second: NonZeroU32) -> Self {
        Self::with_quota(inner, metrics, Quota::per_second(rate_per_second))
    }

    fn with_quota(inner: B, metrics: Arc<Metrics>, quota: Quota) -> Self {
        Self {
            inner,
            metrics,
            quota,
            limiters: Mutex::new(HashMap::new()),
            leadership: Arc::new(Leadership::always()),
        }
    }

    /// Refuses every call that changes something unless this replica leads: the last line
    /// of defence of a replica that lost its Lease (or was paused past it) mid-reconcile.
    pub fn with_leadership(mut self, leadership: Arc<Leadership>) -> Self {
        self.leadership = leadership;
        self
    }

    /// The region's limiter, created on first use: the regions in play are only known from
    /// the objects' specs.
    fn limiter(&self, region: &str) -> Arc<DefaultDirectRateLimiter> {
        // A poisoned map is still a valid map of limiters.
        let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(limiter) = limiters.get(region) {
            return Arc::clone(limiter);
        }
        let limiter = Arc::new(RateLimiter::direct(self.quota));
        limiters.insert(region.to_owned(), Arc::clone(&limiter));
        limiter
    }

    /// Waits for the region's limiter, makes the call and counts its outcome. The call is
    /// built only after the wait so no request work starts before a token is granted.
    async fn call<T, F, Fut>(&self, region: &str, operation: Operation, call: F) -> BackendResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        self.limiter(region).until_ready().await;
        if operation.is_mutating() && !self.leadership.is_leader() {
            return Err(BackendError::Transient(format!(
                "{operation} not sent: this replica does not hold the leader Lease"
            )));
        }
        let started = std::time::Instant::now();
        let result = call().await;
        self.metrics
            .aws_call_duration(operation, region, started.elapsed());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.label(),
        };
        self.metrics.aws_call(operation, outcome);
        result
    }
}

impl<B: PackageBackend> PackageBackend for Metered<B> {
    async fn describe_packages(
        &self,
        region: &str,
        filter: PackageFilter,
    ) -> BackendResult<Vec<Package>> {
        self.call(region, Operation::DescribePackages, || {
            self.inner.describe_packages(region, filter)
        })
        .await
    }

    async fn create_package(&self, region: &str, request: CreatePackage) -> BackendResult<Package> {
        self.call(region, Operation::CreatePackage, || {
            self.inner.create_package(region, request)
        })
        .await
    }

    async fn update_package(&self, region: &str, request: UpdatePackage) -> BackendResult<Package> {
        self.call(region, Operation::UpdatePackage, || {
            self.inner.update_package(region, request)
        })
        .await
    }

    async fn delete_package(&self, region: &str, package_id: &str) -> BackendResult<Package> {
        self.call(region, Operation::DeletePackage, || {
            self.inner.delete_package(region, package_id)
        })
        .await
    }

    async fn package_version_history(
        &self,
        region: &str,
        package_id: &str,
    ) -> BackendResult<Vec<PackageVersion>> {
        self.call(region, Operation::GetPackageVersionHistory, || {
            self.inner.package_version_history(region, package_id)
        })
        .await
    }

    async fn associate_package(
        &self,
        region: &str,
        request: AssociatePackage,
    ) -> BackendResult<DomainAssociation> {
        self.call(region, Operation::AssociatePackage, || {
            self.inner.associate_package(region, request)
        })
        .await
    }

    async fn dissociate_package(
        &self,
        region: &str,
        package_id: &str,
        domain_name: &str,
    ) -> BackendResult<DomainAssociation> {
        self.call(region, Operation::DissociatePackage, || {
            self.inner
                .dissociate_package(region, package_id, domain_name)
        })
        .await
    }

    async fn list_domains_for_package(
        &self,
        region: &str,
        package_id: &str,
    ) -> BackendResult<Vec<DomainAssociation>> {
        self.call(region, Operation::ListDomainsForPackage, || {
            self.inner.list_domains_for_package(region, package_id)
        })
        .await
    }

    async fn update_package_scope(
        &self,
        region: &str,
        package_id: &str,
        users: Vec<String>,
    ) -> BackendResult<Vec<String>> {
        self.call(region, Operation::UpdatePackageScope, || {
            self.inner.update_package_scope(region, package_id, users)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ospkg_sim::{FaultConfig, OperationFaults, RunningSim, SimConfig};

    use super::*;
    use crate::backend::aws::AwsBackend;

    /// The production backend against an in-process simulator, metered with a limiter that
    /// allows a burst of `burst` calls per region and then one call an hour, so a spent budget
    /// stays spent however slowly the test runs.
    async fn metered(burst: u32) -> (Metered<AwsBackend>, Arc<Metrics>, RunningSim) {
        let sim = ospkg_sim::start(SimConfig::default())
            .await
            .expect("simulator starts");
        let metrics = Arc::new(Metrics::new());
        let burst = NonZeroU32::new(burst).expect("test burst is non-zero");
        let quota = Quota::per_hour(burst);
        let backend = AwsBackend::for_endpoint(&sim.endpoint()).await;
        (
            Metered::with_quota(backend, Arc::clone(&metrics), quota),
            metrics,
            sim,
        )
    }

    #[tokio::test]
    async fn calls_are_counted_by_operation_and_outcome() {
        let (backend, metrics, sim) = metered(10).await;
        for _ in 0..2 {
            backend
                .describe_packages("eu-west-1", PackageFilter::All)
                .await
                .expect("describe succeeds");
        }
        // The service throttles every DescribePackages: the SDK's own retries give up and
        // the one backend call ends throttled.
        let throttle = OperationFaults {
            throttle: 1.0,
            ..OperationFaults::default()
        };
        let faults = FaultConfig {
            operations: BTreeMap::from([("DescribePackages".to_owned(), throttle)]),
            ..FaultConfig::default()
        };
        sim.admin().set_faults(&faults).await.expect("faults set");
        let throttled = backend
            .describe_packages("eu-west-1", PackageFilter::All)
            .await;
        assert!(
            matches!(throttled, Err(BackendError::Throttled(_))),
            "{throttled:?}"
        );
        let missing = backend.delete_package("eu-west-1", "F404404404").await;
        assert!(
            matches!(missing, Err(BackendError::NotFound(_))),
            "{missing:?}"
        );
        let calls = sim.admin().calls().await.expect("calls");
        assert_eq!(calls.get("DeletePackage"), Some(&1));
        assert!(calls.get("DescribePackages").is_some_and(|n| *n >= 3));

        let text = metrics.encode();
        for line in [
            "ospkg_aws_calls_total{operation=\"DescribePackages\",outcome=\"ok\"} 2",
            "ospkg_aws_calls_total{operation=\"DescribePackages\",outcome=\"throttled\"} 1",
            "ospkg_aws_calls_total{operation=\"DeletePackage\",outcome=\"not_found\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[tokio::test]
    async fn every_operation_is_named_as_in_the_aws_api() {
        let (backend, metrics, _sim) = metered(10).await;
        let region = "eu-west-1";
        // Outcomes do not matter here, only that each method records its operation.
        let _ = backend.describe_packages(region, PackageFilter::All).await;
        let _ = backend.update_package_scope(region, "F1", vec![]).await;
        let _ = backend.delete_package(region, "F1").await;
        let _ = backend.package_version_history(region, "F1").await;
        let _ = backend.dissociate_package(region, "F1", "d").await;
        let _ = backend.list_domains_for_package(region, "F1").await;
        let text = metrics.encode();
        for operation in [
            Operation::DescribePackages,
            Operation::UpdatePackageScope,
            Operation::DeletePackage,
            Operation::GetPackageVersionHistory,
            Operation::DissociatePackage,
            Operation::ListDomainsForPackage,
        ] {
            let label = format!("operation=\"{operation}\"");
            assert!(text.contains(&label), "missing {label} in\n{text}");
        }
    }

    #[tokio::test]
    async fn calls_spend_the_region_budget() {
        let (backend, _metrics, _sim) = metered(3).await;
        for _ in 0..3 {
            backend
                .describe_packages("eu-west-1", PackageFilter::All)
                .await
                .expect("describe succeeds");
        }
        // The three calls used the whole burst: the next call in this region has to wait for
        // the next token, while another region still has its full budget.
        assert!(backend.limiter("eu-west-1").check().is_err());
        let other = backend.limiter("us-east-1");
        for _ in 0..3 {
            assert!(other.check().is_ok());
        }
        assert!(other.check().is_err());
    }

    #[tokio::test]
    async fn rate_per_second_is_both_rate_and_burst() {
        let rate = NonZeroU32::new(5).expect("non-zero");
        let inner = AwsBackend::for_endpoint("http://127.0.0.1:1").await;
        let backend = Metered::new(inner, Arc::new(Metrics::new()), rate);
        assert_eq!(backend.quota.burst_size(), rate);
        assert_eq!(
            backend.quota.replenish_interval(),
            std::time::Duration::from_millis(200)
        );
    }

    #[tokio::test]
    async fn limiter_is_created_once_per_region() {
        let (backend, _metrics, _sim) = metered(1).await;
        let first = backend.limiter("eu-west-1");
        assert!(Arc::ptr_eq(&first, &backend.limiter("eu-west-1")));
        assert!(!Arc::ptr_eq(&first, &backend.limiter("eu-central-1")));
    }
}
