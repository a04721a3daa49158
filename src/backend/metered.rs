//! A [`PackageBackend`] wrapper that rate-limits and counts every AWS call.
//!
//! The limiter keeps the operator under the service's throttling limits instead of
//! discovering them through `ThrottlingException`s; the counts feed
//! `ospkg_aws_calls_total{operation,outcome}`.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
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

impl super::sdk::Pace for Lane {
    /// A retry is a call already under way: it goes first, as the region listing does.
    fn wait(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.limiter.until_ready())
    }
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
/// observer (its pages take at most a fifth of the tokens, a tenth while changes wait:
/// [`PackageBackend::changes_waiting`]; see `controller::regions`) and
/// wakes the objects whose
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
    /// then other reads. Returns the lane, which the call's retries take their tokens from.
    async fn admit(&self, scope: &Scope, operation: Operation, listing: bool) -> Arc<Lane> {
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
        lane
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
        let lane = self.admit(scope, operation, listing).await;
        if operation.is_mutating() && !self.leadership.is_leader() {
            return Err(BackendError::NotSent(format!(
                "{operation}: this replica does not hold the leader Lease"
            )));
        }
        let started = std::time::Instant::now();
        let result = super::sdk::paced_call(lane, call()).await;
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

    fn changes_waiting(&self, place: &Place) -> bool {
        let lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        lanes
            .get(place)
            .is_some_and(|lane| lane.waiting.borrow().changes > 0)
    }

    fn unanswered_window(&self) -> std::time::Duration {
        self.inner.unanswered_window()
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
        let listing = filter.is_observer_listing();
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
mod tests;
