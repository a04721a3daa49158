//! What every reconcile shares: the clients, the watch caches, the region observers, the
//! schedule and the limits.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;

use super::{Events, OwnWrites, PackageNames, Regions, Schedule, Slots, Wakers};
use crate::backend::PackageBackend;
use crate::crd::OpenSearchPackage;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::source::Follower;
use crate::tenancy::Tenancy;

/// Reconciles working at once unless `--concurrency` ([`Context::with_concurrency`]) says
/// otherwise.
pub const DEFAULT_CONCURRENCY: u16 = 32;

/// AWS calls per second per (account, region) unless `--aws-rate-limit`
/// ([`Context::with_aws_rate`]) says otherwise.
pub const DEFAULT_AWS_RATE: NonZeroU32 = NonZeroU32::new(10).expect("10 is not zero");

/// Everything a reconcile needs, shared by all of them.
pub struct Context<B> {
    pub client: Client,
    pub backend: B,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// Region for objects that name none.
    pub default_region: String,
    /// The watch caches: the only list of objects (name conflicts, prerequisites).
    pub stores: Vec<Store<OpenSearchPackage>>,
    /// The package names the watched objects claim, kept from the same watches.
    pub names: Arc<PackageNames>,
    /// The region observers: every package read starts from their listings.
    pub regions: Regions,
    pub schedule: Schedule,
    pub own_writes: OwnWrites,
    /// Whether this replica may write (it holds the leader Lease, or runs alone).
    pub leadership: Arc<Leadership>,
    /// Objects that follow their S3 source's content.
    pub source: Follower,
    /// Which identity each namespace's objects use, and what they may touch.
    pub tenancy: Tenancy,
    /// The reconciles that may work at once (`--concurrency`), first come first served.
    pub slots: Slots,
}

impl<B: PackageBackend> Context<B> {
    pub fn new(
        client: Client,
        backend: B,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        default_region: String,
        resync: Duration,
        stores: Vec<Store<OpenSearchPackage>>,
    ) -> Self {
        Self {
            events: Events::new(client.clone(), reporter),
            client,
            backend,
            metrics,
            default_region,
            stores,
            names: Arc::default(),
            regions: Regions::new(resync, DEFAULT_AWS_RATE, Wakers::default()),
            schedule: Schedule::new(resync),
            own_writes: OwnWrites::default(),
            leadership: Arc::new(Leadership::always()),
            source: Follower::default(),
            tenancy: Tenancy::default(),
            slots: Slots::new(DEFAULT_CONCURRENCY.into()),
        }
    }

    /// Lets `concurrency` reconciles work at once.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.slots = Slots::new(concurrency);
        self
    }

    /// Resolves namespaces to identities and grants with these roles and policy.
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// Reads followed sources with this follower (its S3 client and settings).
    pub fn with_source(mut self, follower: Follower) -> Self {
        self.source = follower;
        self
    }

    /// Fences every status write and AWS change with leader election.
    pub fn with_leadership(mut self, leadership: Arc<Leadership>) -> Self {
        self.leadership = leadership;
        self
    }

    /// Sends objects woken by the region observers to these controllers.
    pub fn with_wakers(mut self, wakers: Wakers) -> Self {
        self.regions = self.regions.with_wakers(wakers);
        self
    }

    /// Knows the package names of the watched objects from `names` (fed by the watches of
    /// [`Self::stores`]).
    pub fn with_package_names(mut self, names: Arc<PackageNames>) -> Self {
        self.names = names;
        self
    }

    /// Paces the region listings for a rate limit of `rate` AWS calls per second per
    /// (account, region), the backend's.
    pub fn with_aws_rate(mut self, rate: NonZeroU32) -> Self {
        self.regions = self.regions.with_rate(rate);
        self
    }

    /// Drops the object's schedule so its next reconcile runs in full, as when its requeue
    /// timer fires (tests stand in for the timer with it).
    pub fn make_due(&self, obj: &OpenSearchPackage) {
        self.schedule.make_due(obj);
    }

    /// Makes the object's next reconcile read its followed source, as when its check slot
    /// comes (tests stand in for the slot with it).
    pub fn make_source_due(&self, obj: &OpenSearchPackage) {
        self.source.make_due(obj);
        self.schedule.make_due(obj);
    }
}

impl<B> Context<B> {
    /// Every object in the watch caches.
    pub fn cached_objects(&self) -> impl Iterator<Item = Arc<OpenSearchPackage>> + '_ {
        self.stores.iter().flat_map(|s| s.state())
    }

    /// The objects in the watch caches that `wanted` picks. Cheaper than filtering
    /// [`Self::cached_objects`] when few are picked: only those are cloned out of the cache
    /// (this runs per reconcile and per region listing, over thousands of objects).
    pub fn cached_objects_where(
        &self,
        wanted: impl Fn(&OpenSearchPackage) -> bool,
    ) -> Vec<Arc<OpenSearchPackage>> {
        self.stores
            .iter()
            .flat_map(|s| s.state_filter(&wanted))
            .collect()
    }

    /// Whether `wanted` picks any object in the watch caches (none is cloned).
    pub fn any_cached_object(&self, wanted: impl Fn(&OpenSearchPackage) -> bool) -> bool {
        self.stores.iter().any(|s| s.find(&wanted).is_some())
    }
}
