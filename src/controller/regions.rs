//! AWS as a watched source: one observer per (account, region) lists the region's packages
//! (DescribePackages, every page), keeps the listing, and wakes exactly the objects whose package
//! changed. Reconciles read their package from the listing instead of calling AWS each.
//!
//! An observer lists quickly while a package one of its objects owns is being imported or
//! deleted, or while a reconcile waits for a listing newer than its own last change, and at
//! the resync interval otherwise. Quickly means every [`FAST`] for a listing of one page, less
//! often for more pages: a busy region's listings take at most one in [`LISTING_SHARE`] of its
//! rate-limit tokens ([`Regions::busy_interval`]). A reconcile that changed a package tells the
//! observer ([`Regions::changed`]), so the first listing after the change comes within that
//! interval. So a settled region costs one listing per resync, however many objects it has,
//! and an object whose package is importing is not polled at all: the observer sees the
//! package change and wakes it.
//!
//! Freshness: a reconcile may only act on a listing that started after its object's last AWS
//! change ([`super::Schedule::acted_at`]) and that is not older than what the object's status
//! recorded; otherwise it asks for a new listing and waits for it.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

use super::Context;
use super::observe::place_of;
use crate::backend::{
    BackendError, PAGE_SIZE, Package, PackageBackend, PackageFilter, Place, Scope,
};
use crate::crd::OpenSearchPackage;
use crate::plan::package_name;
use crate::status::record_package;
use crate::vocabulary::PackageStatus;

/// Shortest interval between a region's listings while something in it is changing.
pub const FAST: Duration = Duration::from_millis(500);
/// A busy region's listings take at most one in this many of the region's rate-limit tokens
/// (a listing of many pages is listed less often), leaving the rest to its objects' calls.
const LISTING_SHARE: u32 = 5;
/// Longest a reconcile waits for a fresh listing before reading its package directly.
const WAIT_LIMIT: Duration = Duration::from_secs(15);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Every package of one region, as one listing saw them.
///
/// Kept as a vector sorted by id (and an index sorted by name) rather than maps: every
/// region holds one, two while the next is compared with it, with as many entries as the
/// region has packages (thousands); the maps' spare buckets and the copies of their keys
/// were half of that memory.
#[derive(Debug)]
pub struct Listing {
    /// When the listing request was started: it reflects every change made before then.
    pub started: Instant,
    /// Sorted by id, one entry per id.
    packages: Vec<Package>,
    /// Positions in `packages`, sorted by the package's name.
    by_name: Vec<u32>,
}

impl Listing {
    fn new(started: Instant, mut packages: Vec<Package>) -> Self {
        // A package seen twice (the listing's pages moved under it) counts once, as the
        // later page saw it: reversed, a stable sort puts that copy first, and dedup keeps
        // the first.
        packages.reverse();
        packages.sort_by(|a, b| a.id.cmp(&b.id));
        packages.dedup_by(|a, b| a.id == b.id);
        packages.shrink_to_fit();
        let mut by_name: Vec<u32> = (0..packages.len())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        by_name.sort_by(|a, b| packages[*a as usize].name.cmp(&packages[*b as usize].name));
        Self {
            started,
            packages,
            by_name,
        }
    }

    pub fn by_id(&self, id: &str) -> Option<&Package> {
        let at = self
            .packages
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()?;
        self.packages.get(at)
    }

    pub fn by_name(&self, name: &str) -> Option<&Package> {
        let name_of = |i: &u32| self.packages[*i as usize].name.as_str();
        let at = self
            .by_name
            .binary_search_by(|i| name_of(i).cmp(name))
            .ok()?;
        self.packages.get(self.by_name[at] as usize)
    }

    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// The packages that differ between `self` and `newer` (appeared, changed or gone).
    fn changes(&self, newer: &Listing) -> Changes {
        let mut changes = Changes::default();
        let appeared_or_changed = newer
            .packages
            .iter()
            .filter(|p| self.by_id(&p.id) != Some(*p));
        let gone = self
            .packages
            .iter()
            .filter(|p| newer.by_id(&p.id).is_none());
        for package in appeared_or_changed.chain(gone) {
            changes.ids.insert(package.id.clone());
            changes.names.insert(package.name.clone());
        }
        changes
    }
}

/// The ids and names of the packages one listing found changed.
#[derive(Debug, Default)]
struct Changes {
    ids: HashSet<String>,
    names: HashSet<String>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether the object's package is among them: by its recorded id, or by its name while
    /// it has recorded none.
    fn concern(&self, obj: &OpenSearchPackage) -> bool {
        match obj.status.as_ref().and_then(|s| s.package_id.as_ref()) {
            Some(id) => self.ids.contains(id),
            None => self.names.contains(package_name(obj)),
        }
    }
}

/// What the last listing attempt of a region produced.
#[derive(Clone, Debug, Default)]
struct Latest {
    listing: Option<Arc<Listing>>,
    /// The last failed attempt, when it is newer than `listing`.
    failure: Option<(Instant, BackendError)>,
}

struct Region {
    latest: watch::Sender<Latest>,
    /// A reconcile wants a listing newer than the current one.
    demand: Notify,
    /// The identity the listing is made with: the last one a reconcile of this account and
    /// region used (every identity of an account sees the same packages).
    scope: Mutex<Scope>,
}

/// Where woken objects are sent: one channel per kube-runtime controller (one per watched
/// namespace, or one for all).
#[derive(Clone, Default)]
pub struct Wakers {
    routes: Vec<(
        Option<String>,
        UnboundedSender<ObjectRef<OpenSearchPackage>>,
    )>,
}

impl Wakers {
    /// Objects of `namespace` (every namespace when `None`) go to `sender`.
    pub fn route(
        &mut self,
        namespace: Option<String>,
        sender: UnboundedSender<ObjectRef<OpenSearchPackage>>,
    ) {
        self.routes.push((namespace, sender));
    }

    pub fn wake(&self, obj: &OpenSearchPackage) {
        let namespace = obj.namespace();
        if let Some((_, sender)) = self
            .routes
            .iter()
            .find(|(ns, _)| ns.is_none() || *ns == namespace)
        {
            // A closed channel means the controller is shutting down: nothing to wake.
            let _ = sender.unbounded_send(ObjectRef::from_obj(obj));
        }
    }
}

/// The region observers of one leadership term, one per (account, region).
pub struct Regions {
    resync: Duration,
    /// The AWS calls per second each (account, region) may take (`--aws-rate-limit`).
    rate: NonZeroU32,
    regions: Mutex<HashMap<Place, Arc<Region>>>,
    wakers: Wakers,
}

impl Regions {
    pub fn new(resync: Duration, rate: NonZeroU32, wakers: Wakers) -> Self {
        Self {
            resync,
            rate,
            regions: Mutex::new(HashMap::new()),
            wakers,
        }
    }

    /// The same observers' settings, waking objects through `wakers`.
    pub fn with_wakers(&self, wakers: Wakers) -> Self {
        Self::new(self.resync, self.rate, wakers)
    }

    /// The same observers' settings, for a rate limit of `rate` calls per second.
    pub fn with_rate(&self, rate: NonZeroU32) -> Self {
        Self::new(self.resync, rate, self.wakers.clone())
    }

    /// The shortest interval between listings of `listed` packages while the region is busy:
    /// [`FAST`], or longer when the listing's pages would take more than one in
    /// [`LISTING_SHARE`] of the region's rate-limit tokens; never longer than the resync.
    fn busy_interval(&self, listed: usize) -> Duration {
        let pages = listed.div_ceil(PAGE_SIZE).max(1);
        let budget = f64::from(self.rate.get()) / f64::from(LISTING_SHARE);
        Duration::from_secs_f64(pages as f64 / budget)
            .max(FAST)
            .min(self.resync.max(FAST))
    }

    /// Wakes the object for a reconcile now (its binding to an identity changed).
    pub fn wake(&self, obj: &OpenSearchPackage) {
        self.wakers.wake(obj);
    }

    /// The observer of the scope's account and region, started on first use: they are only
    /// known from the objects. Lists with the scope's identity from now on.
    fn region<B: PackageBackend>(&self, ctx: &Arc<Context<B>>, scope: &Scope) -> Arc<Region> {
        let place = scope.place();
        let mut regions = self.regions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(region) = regions.get(&place) {
            let mut listing_scope = region.scope.lock().unwrap_or_else(PoisonError::into_inner);
            if *listing_scope != *scope {
                *listing_scope = scope.clone();
            }
            return region.clone();
        }
        let region = Arc::new(Region {
            latest: watch::Sender::new(Latest::default()),
            demand: Notify::new(),
            scope: Mutex::new(scope.clone()),
        });
        regions.insert(place.clone(), region.clone());
        tokio::spawn(observe_region(Arc::downgrade(ctx), place, region.clone()));
        region
    }

    /// A listing of the scope's account and region that started after `since` (any listing when `None`), asking the
    /// observer for a new one and waiting for it when the current one is older. `Ok(None)` when
    /// none came within the wait limit; the error of a failed listing attempt that started
    /// after `since`.
    pub async fn listing<B: PackageBackend>(
        &self,
        ctx: &Arc<Context<B>>,
        scope: &Scope,
        since: Option<Instant>,
    ) -> Result<Option<Arc<Listing>>, BackendError> {
        let region = self.region(ctx, scope);
        let mut latest = region.latest.subscribe();
        let fresh = |l: &Latest| -> bool {
            let after = |t: Instant| since.is_none_or(|s| t > s);
            l.listing.as_ref().is_some_and(|l| after(l.started))
                || l.failure.as_ref().is_some_and(|(t, _)| after(*t))
        };
        if !fresh(&latest.borrow()) {
            debug!(region = %scope.place(), "waiting for a fresh listing");
            region.demand.notify_one();
        }
        let found = tokio::time::timeout(WAIT_LIMIT, latest.wait_for(fresh)).await;
        if found.is_err() {
            warn!(region = %scope.place(), "no fresh listing within {WAIT_LIMIT:?}: reading the package directly");
        }
        let Ok(Ok(state)) = found else {
            return Ok(None);
        };
        let after = |t: Instant| since.is_none_or(|s| t > s);
        match (&state.listing, &state.failure) {
            (_, Some((t, error))) if after(*t) => Err(error.clone()),
            (Some(listing), _) => Ok(Some(listing.clone())),
            (None, _) => Ok(None),
        }
    }

    /// A reconcile just changed a package in the scope's account and region (create, update,
    /// delete): the observer lists again within its busy interval instead of at its resync,
    /// sees the change under way and keeps listing quickly until it is done. The reconcile itself does
    /// not wait for a listing after its change, so nothing else would ask for one.
    pub fn changed<B: PackageBackend>(&self, ctx: &Arc<Context<B>>, scope: &Scope) {
        self.region(ctx, scope).demand.notify_one();
    }

    fn wake_changed<B>(
        &self,
        ctx: &Context<B>,
        place: &Place,
        changes: &Changes,
        listing: &Listing,
    ) {
        if changes.is_empty() {
            return;
        }
        let woken = ctx.cached_objects_where(|obj| {
            changes.concern(obj)
                && place_of(ctx, obj).as_ref() == Some(place)
                && news_for(obj, listing)
        });
        for obj in woken {
            debug!(region = %place, object = %super::object_key(&obj), "package changed: waking");
            ctx.schedule.make_due(&obj);
            self.wakers.wake(&obj);
        }
    }
}

/// Whether a listing that changed the object's package can move the object on: not when it
/// shows the package still importing exactly as the object's status recorded it (as when the
/// package a reconcile just created first appears), since the object would only wait again.
fn news_for(obj: &OpenSearchPackage, listing: &Listing) -> bool {
    let Some(status) = obj.status.as_ref() else {
        return true;
    };
    let Some(id) = status.package_id.as_deref() else {
        return true;
    };
    let Some(package) = listing.by_id(id) else {
        return true;
    };
    if !package.status.is_importing() || status.in_flight.is_some() {
        return true;
    }
    let mut recorded = status.clone();
    record_package(&mut recorded, package);
    recorded != *status
}

/// Whether anything of this account and region that the operator's objects own is changing
/// in AWS.
fn region_busy<B>(ctx: &Context<B>, place: &Place, listing: &Listing) -> bool {
    ctx.any_cached_object(|obj| busy(ctx, place, listing, obj))
}

/// Whether the object's package is changing in AWS, as far as this listing shows.
fn busy<B>(ctx: &Context<B>, place: &Place, listing: &Listing, obj: &OpenSearchPackage) -> bool {
    let changing =
        |p: &Package| p.status.is_importing() || matches!(p.status, PackageStatus::Deleting);
    // The cached copy may predate the object's first status write (the watch is behind):
    // no package id yet, so its package is the one with its name.
    let status = obj.status.as_ref();
    let busy = match status.and_then(|s| s.package_id.as_deref()) {
        Some(id) => listing.by_id(id).is_some_and(changing),
        None => {
            status.is_some_and(|s| s.in_flight.is_some())
                || listing.by_name(package_name(obj)).is_some_and(changing)
        }
    };
    // Checked last: the place is built (allocated) for every cached object.
    busy && place_of(ctx, obj).as_ref() == Some(place)
}

/// The observer of one account and region: lists, publishes, wakes, sleeps; ends with its
/// term's context.
async fn observe_region<B: PackageBackend>(
    ctx: Weak<Context<B>>,
    name: Place,
    region: Arc<Region>,
) {
    let mut failures: u32 = 0;
    // The shortest interval between listings, from the last listing's size.
    let mut interval = FAST;
    loop {
        // STS refused the identity: listing again costs an AssumeRole, not a package API
        // call, and a reconcile that asks for a listing may come with a role that works now.
        let mut refused = false;
        let Some(context) = ctx.upgrade() else {
            return;
        };
        let started = Instant::now();
        let scope = region
            .scope
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let result = context
            .backend
            .describe_packages(&scope, PackageFilter::All)
            .await;
        let pause = match result {
            Ok(packages) => {
                failures = 0;
                let listing = Arc::new(Listing::new(started, packages));
                let previous = region.latest.borrow().listing.clone();
                region.latest.send_replace(Latest {
                    listing: Some(listing.clone()),
                    failure: None,
                });
                if let Some(previous) = previous {
                    let changes = previous.changes(&listing);
                    debug!(region = %name, packages = listing.len(), changed = changes.ids.len(), "listed");
                    context
                        .regions
                        .wake_changed(&context, &name, &changes, &listing);
                }
                interval = context.regions.busy_interval(listing.len());
                let busy = region_busy(&context, &name, &listing);
                debug!(region = %name, busy, ?interval, "next listing {}", if busy { "soon" } else { "at the resync" });
                if busy {
                    interval
                } else {
                    context.regions.resync
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                refused = matches!(error, BackendError::Credentials(_));
                warn!(region = %name, %error, "listing the region's packages failed");
                region
                    .latest
                    .send_modify(|l| l.failure = Some((started, error)));
                BACKOFF_START
                    .saturating_mul(1 << failures.saturating_sub(1).min(6))
                    .min(BACKOFF_CAP)
            }
        };
        drop(context);
        // Sleep until the next listing is due, or until a reconcile asks for one: never more
        // often than the busy interval, and never sooner than the backoff after a failure.
        let earliest = if failures > 0 && !refused {
            pause
        } else {
            interval.min(pause)
        };
        tokio::select! {
            () = tokio::time::sleep_until((started + pause).into()) => {}
            () = region.demand.notified() => {
                tokio::time::sleep_until((started + earliest).into()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
