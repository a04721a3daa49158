//! A [`PackageBackend`] wrapper that rate-limits and counts every AWS call.
//!
//! The limiter keeps the operator under the service's throttling limits instead of
//! discovering them through `ThrottlingException`s; the counts feed
//! `ospkg_aws_calls_total{operation,outcome}`.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::watch;

use super::{
    AssociatePackage, BackendError, BackendResult, CreatePackage, DomainAssociation, Operation,
    Package, PackageBackend, PackageFilter, PackagePage, PackageVersion, Place, Scope,
    UpdatePackage,
};
use crate::leader::Leadership;
use crate::metrics::Metrics;

/// A region's rate limiter and who is waiting for it.
struct Lane {
    limiter: DefaultDirectRateLimiter,
    waiting: watch::Sender<Waiting>,
}

/// The calls waiting for a region's limiter that others let go first.
#[derive(Clone, Copy, Debug, Default)]
struct Waiting {
    /// Region listings (at most one per region: its observer's).
    listings: usize,
    /// Calls that change something.
    changes: usize,
}

/// Wraps `inner` with a client-side rate limiter per (account, region) and call metrics.
///
/// The service throttles per (account, region): every identity that reaches an account (the
/// operator's own, the roles granted to namespaces) shares that account's limiter.
///
/// The region listing goes first, then calls that change something, then other reads: while
/// one waits for the region's limiter, the others wait behind it. The listing is paced by its
/// observer (at most one a second, see `controller::regions`) and wakes the objects whose
/// imports finished: queued behind hundreds of creates, it would leave those objects unseen
/// until every create was sent.
///
/// Every page of DescribePackages is a call and takes a token: a region-wide listing of
/// thousands of packages costs the service tens of requests, and counted as one it went over
/// the service's limit while creates took the rest (each extra page throttled and retried).
/// Version history and a package's domains, one page almost always, are one call each.
pub struct Metered<B> {
    inner: B,
    metrics: Arc<Metrics>,
    quota: Quota,
    lanes: Mutex<HashMap<Place, Arc<Lane>>>,
    leadership: Arc<Leadership>,
}

impl Lane {
    /// Takes a token once nobody who goes first is waiting (`free`), looking again whenever
    /// the next token is due: one who goes first may have come meanwhile.
    async fn take_turn(&self, free: impl Fn(&Waiting) -> bool) {
        let mut waiting = self.waiting.subscribe();
        loop {
            // The sender lives in the lane, which `self` is: this cannot fail.
            let _ = waiting.wait_for(&free).await;
            match self.limiter.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
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
            lanes: Mutex::new(HashMap::new()),
            leadership: Arc::new(Leadership::always()),
        }
    }

    /// Refuses every call that changes something unless this replica leads: the last line
    /// of defence of a replica that lost its Lease (or was paused past it) mid-reconcile.
    pub fn with_leadership(mut self, leadership: Arc<Leadership>) -> Self {
        self.leadership = leadership;
        self
    }

    /// The (account, region)'s lane, created on first use: the accounts and regions in play
    /// are only known from the objects.
    fn lane(&self, place: Place) -> Arc<Lane> {
        // A poisoned map is still a valid map of lanes.
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        lanes
            .entry(place)
            .or_insert_with(|| {
                Arc::new(Lane {
                    limiter: RateLimiter::direct(self.quota),
                    waiting: watch::Sender::new(Waiting::default()),
                })
            })
            .clone()
    }

    /// Waits for a token of the region's limiter: the region listing first, then changes,
    /// then other reads.
    async fn admit(&self, scope: &Scope, operation: Operation, listing: bool) {
        let lane = self.lane(scope.place());
        if listing {
            lane.waiting.send_modify(|w| w.listings += 1);
            lane.limiter.until_ready().await;
            lane.waiting.send_modify(|w| w.listings -= 1);
        } else if operation.is_mutating() {
            lane.waiting.send_modify(|w| w.changes += 1);
            lane.take_turn(|w| w.listings == 0).await;
            lane.waiting.send_modify(|w| w.changes -= 1);
        } else {
            lane.take_turn(|w| w.listings == 0 && w.changes == 0).await;
        }
    }

    /// Waits for the region's limiter, makes the call and counts its outcome. The call is
    /// built only after the wait so no request work starts before a token is granted.
    async fn call<T, F, Fut>(
        &self,
        scope: &Scope,
        operation: Operation,
        call: F,
    ) -> BackendResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        self.paced_call(scope, operation, false, call).await
    }

    /// [`Self::call`]; `listing`: the region listing, which goes first.
    async fn paced_call<T, F, Fut>(
        &self,
        scope: &Scope,
        operation: Operation,
        listing: bool,
        call: F,
    ) -> BackendResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        self.admit(scope, operation, listing).await;
        if operation.is_mutating() && !self.leadership.is_leader() {
            return Err(BackendError::Transient(format!(
                "{operation} not sent: this replica does not hold the leader Lease"
            )));
        }
        let started = std::time::Instant::now();
        let result = call().await;
        self.metrics
            .aws_call_duration(operation, &scope.account, &scope.region, started.elapsed());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.label(),
        };
        self.metrics.aws_call(operation, outcome);
        result
    }
}

impl<B: PackageBackend> PackageBackend for Metered<B> {
    /// Not limited: STS is not the package API, and the answer is asked once.
    async fn own_account(&self) -> BackendResult<String> {
        self.inner.own_account().await
    }

    /// Not limited either: STS AssumeRole.
    async fn check_role(&self, session: &super::RoleSession, region: &str) -> BackendResult<()> {
        self.inner.check_role(session, region).await
    }

    /// Each page is a call: one token each. The region listing's pages go first (see
    /// [`Metered`]).
    async fn describe_packages_page(
        &self,
        scope: &Scope,
        filter: PackageFilter,
        next_token: Option<String>,
    ) -> BackendResult<PackagePage> {
        let listing = filter == PackageFilter::All;
        self.paced_call(scope, Operation::DescribePackages, listing, || {
            self.inner.describe_packages_page(scope, filter, next_token)
        })
        .await
    }

    async fn create_package(
        &self,
        scope: &Scope,
        request: CreatePackage,
    ) -> BackendResult<Package> {
        self.call(scope, Operation::CreatePackage, || {
            self.inner.create_package(scope, request)
        })
        .await
    }

    async fn update_package(
        &self,
        scope: &Scope,
        request: UpdatePackage,
    ) -> BackendResult<Package> {
        self.call(scope, Operation::UpdatePackage, || {
            self.inner.update_package(scope, request)
        })
        .await
    }

    async fn delete_package(&self, scope: &Scope, package_id: &str) -> BackendResult<Package> {
        self.call(scope, Operation::DeletePackage, || {
            self.inner.delete_package(scope, package_id)
        })
        .await
    }

    async fn package_version_history(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> BackendResult<Vec<PackageVersion>> {
        self.call(scope, Operation::GetPackageVersionHistory, || {
            self.inner.package_version_history(scope, package_id)
        })
        .await
    }

    async fn associate_package(
        &self,
        scope: &Scope,
        request: AssociatePackage,
    ) -> BackendResult<DomainAssociation> {
        self.call(scope, Operation::AssociatePackage, || {
            self.inner.associate_package(scope, request)
        })
        .await
    }

    async fn dissociate_package(
        &self,
        scope: &Scope,
        package_id: &str,
        domain_name: &str,
    ) -> BackendResult<DomainAssociation> {
        self.call(scope, Operation::DissociatePackage, || {
            self.inner
                .dissociate_package(scope, package_id, domain_name)
        })
        .await
    }

    async fn list_domains_for_package(
        &self,
        scope: &Scope,
        package_id: &str,
    ) -> BackendResult<Vec<DomainAssociation>> {
        self.call(scope, Operation::ListDomainsForPackage, || {
            self.inner.list_domains_for_package(scope, package_id)
        })
        .await
    }

    async fn update_package_scope(
        &self,
        scope: &Scope,
        package_id: &str,
        users: Vec<String>,
    ) -> BackendResult<Vec<String>> {
        self.call(scope, Operation::UpdatePackageScope, || {
            self.inner.update_package_scope(scope, package_id, users)
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
    use crate::backend::{Identity, RoleSession};

    /// The operator's own identity in the simulator's default account.
    fn at(region: &str) -> Scope {
        Scope::own("123456789012", region)
    }

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
                .describe_packages(&at("eu-west-1"), PackageFilter::All)
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
            .describe_packages(&at("eu-west-1"), PackageFilter::All)
            .await;
        assert!(
            matches!(throttled, Err(BackendError::Throttled(_))),
            "{throttled:?}"
        );
        let missing = backend.delete_package(&at("eu-west-1"), "F404404404").await;
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
        let scope = &at("eu-west-1");
        // Outcomes do not matter here, only that each method records its operation.
        let _ = backend.describe_packages(scope, PackageFilter::All).await;
        let _ = backend.update_package_scope(scope, "F1", vec![]).await;
        let _ = backend.delete_package(scope, "F1").await;
        let _ = backend.package_version_history(scope, "F1").await;
        let _ = backend.dissociate_package(scope, "F1", "d").await;
        let _ = backend.list_domains_for_package(scope, "F1").await;
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
                .describe_packages(&at("eu-west-1"), PackageFilter::All)
                .await
                .expect("describe succeeds");
        }
        // The three calls used the whole burst: the next call in this region has to wait for
        // the next token, while another region still has its full budget.
        assert!(
            backend
                .lane(at("eu-west-1").place())
                .limiter
                .check()
                .is_err()
        );
        let other = backend.lane(at("us-east-1").place());
        for _ in 0..3 {
            assert!(other.limiter.check().is_ok());
        }
        assert!(other.limiter.check().is_err());
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
        let first = backend.lane(at("eu-west-1").place());
        assert!(Arc::ptr_eq(&first, &backend.lane(at("eu-west-1").place())));
        assert!(!Arc::ptr_eq(
            &first,
            &backend.lane(at("eu-central-1").place())
        ));
    }

    #[tokio::test]
    async fn identities_of_one_account_share_its_limiter_and_accounts_do_not() {
        let (backend, _metrics, _sim) = metered(1).await;
        let role = |account: &str| Scope {
            account: account.into(),
            region: "eu-west-1".into(),
            identity: Identity::Role(RoleSession {
                role_arn: format!("arn:aws:iam::{account}:role/team"),
                external_id: None,
                namespace: "team".into(),
            }),
        };
        let own = backend.lane(at("eu-west-1").place());
        assert!(Arc::ptr_eq(
            &own,
            &backend.lane(role("123456789012").place())
        ));
        assert!(!Arc::ptr_eq(
            &own,
            &backend.lane(role("111122223333").place())
        ));
    }

    /// The operations the simulator received, in order.
    async fn operations(sim: &RunningSim) -> Vec<String> {
        sim.admin()
            .log()
            .await
            .expect("call log")
            .into_iter()
            .filter_map(|entry| entry.operation)
            .collect()
    }

    /// The production backend against an in-process simulator, metered at `rate` calls a
    /// second, with eu-west-1's burst spent: every call there waits for the next tokens.
    async fn spent(rate: u32) -> (Arc<Metered<AwsBackend>>, RunningSim) {
        let sim = ospkg_sim::start(SimConfig::default())
            .await
            .expect("simulator starts");
        let inner = AwsBackend::for_endpoint(&sim.endpoint()).await;
        let rate = NonZeroU32::new(rate).expect("non-zero");
        let backend = Arc::new(Metered::new(inner, Arc::new(Metrics::new()), rate));
        let lane = backend.lane(at("eu-west-1").place());
        while lane.limiter.check().is_ok() {}
        (backend, sim)
    }

    /// eu-west-1's region listing, in a task of its own.
    fn spawn_listing(
        backend: &Arc<Metered<AwsBackend>>,
    ) -> tokio::task::JoinHandle<BackendResult<Vec<Package>>> {
        let backend = backend.clone();
        tokio::spawn(async move {
            backend
                .describe_packages(&at("eu-west-1"), PackageFilter::All)
                .await
        })
    }

    #[tokio::test]
    async fn a_waiting_change_goes_before_waiting_reads() {
        // The next token comes in a second.
        let (backend, sim) = spent(1).await;
        let read = tokio::spawn({
            let backend = backend.clone();
            async move {
                backend
                    .package_version_history(&at("eu-west-1"), "F000000002")
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let change = tokio::spawn({
            let backend = backend.clone();
            async move { backend.delete_package(&at("eu-west-1"), "F000000001").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let listing = spawn_listing(&backend);
        let _ = read.await.expect("read task");
        let _ = change.await.expect("change task");
        let _ = listing.await.expect("listing task");
        let order = operations(&sim).await;
        // The read asked first but waited behind the change; the listing (which goes before
        // both) was sent too.
        let at = |operation: &str| order.iter().position(|o| o == operation);
        let read_at = at("GetPackageVersionHistory").expect("read sent");
        assert!(
            at("DeletePackage").expect("change sent") < read_at,
            "{order:?}"
        );
        assert!(at("DescribePackages").is_some(), "{order:?}");
    }

    /// Creates keep coming while the objects of a busy region are created (each slot a create
    /// frees takes the next one); they must not hold back the region's listing, which is what
    /// wakes the objects whose imports finished. Racing them for each token, the listing lost
    /// as long as they came: 36 s for the benchmark's 300 objects in one region.
    #[tokio::test]
    async fn a_region_listing_goes_before_changes_that_keep_coming() {
        // A token every 50 ms.
        let (backend, sim) = spent(20).await;
        let lane = backend.lane(at("eu-west-1").place());
        let listing = spawn_listing(&backend);
        // The listing waits for its token before the changes come.
        while lane.waiting.borrow().listings == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let mut changes = Vec::new();
        for n in 0..40 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            let backend = backend.clone();
            changes.push(tokio::spawn(async move {
                backend
                    .delete_package(&at("eu-west-1"), &format!("F{n:09}"))
                    .await
            }));
        }
        listing.await.expect("listing task").expect("listing");
        for change in changes {
            let _ = change.await.expect("change task");
        }
        let order = operations(&sim).await;
        let listing_at = order
            .iter()
            .position(|o| o == "DescribePackages")
            .expect("listing sent");
        assert!(
            listing_at <= 1,
            "listing sent after {listing_at} changes: {order:?}"
        );
        assert_eq!(order.len(), 41, "{order:?}");
    }
}
