//! AWS as a watched source: one observer per (account, region) lists the region's packages
//! (DescribePackages, every page), keeps the listing, and wakes exactly the objects whose package
//! changed. Reconciles read their package from the listing instead of calling AWS each.
//!
//! An observer reads quickly while a package one of its objects owns is being imported or
//! deleted, or while a reconcile waits for a read newer than its own last change, and lists
//! the region at the resync interval otherwise. Quickly means every [`FAST`] for a read of one
//! page, less often for more pages: a busy region's reads take at most one in
//! [`LISTING_SHARE`] of its rate-limit tokens (one in [`CONTENDED_LISTING_SHARE`] while
//! creates or updates wait for them; [`Regions::busy_interval`]). A reconcile that changed a
//! package tells the observer ([`Regions::changed`]), so the first read after the change
//! comes within that interval. So a settled region costs one listing per resync, however many
//! objects it has, and an object whose package is importing is not polled at all: the
//! observer sees the package change and wakes it. While nothing changes in a busy region (a
//! plugin validating for many minutes), the observer's own reads slow down to a quarter of the
//! quiet time, at most [`observer::SLOWEST_BUSY`] apart; a read a reconcile asks for still comes at once.
//!
//! A quick read of a region of more pages than the packages it follows asks only for those
//! (by id, [`region::Read::Followed`]) and merges them over the last region-wide listing
//! ([`Listing::reread`]): a region of thousands of packages is one page a read while a few
//! import. The region-wide listing comes at the resync, first, and when a reconcile waits for
//! a package it knows only by name (a create whose answer was lost).
//!
//! Freshness: a reconcile may only act on a listing whose entry for its package was read after
//! its object's last AWS change ([`super::Schedule::acted_at`], [`Listing::started_for`]) and
//! that is not older than what the object's status recorded; otherwise it asks for a new read
//! and waits for it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, warn};

use listing::Changes;
pub use listing::Listing;
use observer::observe_region;
use region::{Latest, Region};

use super::Context;
use super::observe::place_of;
use crate::backend::{BackendError, PAGE_SIZE, Package, PackageBackend, Place, Scope};
use crate::crd::OpenSearchPackage;
use crate::plan::package_name;
use crate::status::record_package;
use crate::vocabulary::PackageStatus;

/// Shortest interval between a region's listings while something in it is changing.
pub const FAST: Duration = Duration::from_millis(500);
/// A busy region's listings take at most one in this many of the region's rate-limit tokens
/// (a listing of many pages is listed less often), leaving the rest to its objects' calls.
const LISTING_SHARE: u32 = 5;
/// The same while calls that change something wait for the region's tokens (hundreds of
/// creates, say): each token a read takes is one a create waits longer for.
const CONTENDED_LISTING_SHARE: u32 = 10;
/// Longest a reconcile waits for a fresh listing before reading its package directly.
const WAIT_LIMIT: Duration = Duration::from_secs(15);

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

    /// The shortest interval between reads of `listed` packages while the region is busy:
    /// [`FAST`], or longer when the read's pages would take more than one in
    /// [`LISTING_SHARE`] of the region's rate-limit tokens ([`CONTENDED_LISTING_SHARE`] while
    /// changes wait for them: `contended`); never longer than the resync.
    fn busy_interval(&self, listed: usize, contended: bool) -> Duration {
        let pages = listed.div_ceil(PAGE_SIZE).max(1);
        let share = if contended {
            CONTENDED_LISTING_SHARE
        } else {
            LISTING_SHARE
        };
        let budget = f64::from(self.rate.get()) / f64::from(share);
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
        let region = Arc::new(Region::new(scope.clone()));
        regions.insert(place.clone(), region.clone());
        tokio::spawn(observe_region(Arc::downgrade(ctx), place, region.clone()));
        region
    }

    /// A listing of the scope's account and region whose entry for the package `id` (the
    /// region-wide listing for a package known by name, `None`) was read after `since` (any
    /// listing when `None`), asking the observer for a new read and waiting for it when the
    /// current one is older. `Ok(None)` when none came within the wait limit; the error of a
    /// failed read that started after `since`.
    pub async fn listing<B: PackageBackend>(
        &self,
        ctx: &Arc<Context<B>>,
        scope: &Scope,
        since: Option<Instant>,
        id: Option<&str>,
    ) -> Result<Option<Arc<Listing>>, BackendError> {
        let region = self.region(ctx, scope);
        let mut latest = region.latest.subscribe();
        let after = |t: Instant| since.is_none_or(|s| t > s);
        let fresh = |l: &Latest| -> bool {
            l.listing.as_ref().is_some_and(|l| after(l.started_for(id)))
                || l.failure.as_ref().is_some_and(|(t, _)| after(*t))
        };
        if !fresh(&latest.borrow()) {
            debug!(region = %scope.place(), "waiting for a fresh listing");
            region.want(id);
        }
        let found = tokio::time::timeout(WAIT_LIMIT, latest.wait_for(fresh)).await;
        if found.is_err() {
            warn!(region = %scope.place(), "no fresh listing within {WAIT_LIMIT:?}: reading the package directly");
        }
        let Ok(Ok(state)) = found else {
            return Ok(None);
        };
        match (&state.listing, &state.failure) {
            (_, Some((t, error))) if after(*t) => Err(error.clone()),
            (Some(listing), _) => Ok(Some(listing.clone())),
            (None, _) => Ok(None),
        }
    }

    /// A reconcile just changed the package `id` (create, update, delete; `None` when a
    /// create's answer was lost) in the scope's account and region: the observer reads it
    /// again within its busy interval instead of at its resync, sees the change under way
    /// and keeps reading quickly until it is done. The reconcile itself does not wait for a
    /// listing after its change, so nothing else would ask for one.
    pub fn changed<B: PackageBackend>(
        &self,
        ctx: &Arc<Context<B>>,
        scope: &Scope,
        id: Option<&str>,
    ) {
        let region = self.region(ctx, scope);
        region.heard_news(Instant::now());
        region.want(id);
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

/// The packages of this account and region that the operator's objects own and that are
/// changing in AWS (being imported or deleted) as far as this listing shows, sorted by id:
/// while there are any, the observer reads quickly.
fn following<B>(ctx: &Context<B>, place: &Place, listing: &Listing) -> Vec<String> {
    let followed = ctx.cached_objects_where(|obj| followed_id(ctx, place, listing, obj).is_some());
    let mut ids: Vec<String> = followed
        .iter()
        .filter_map(|obj| followed_id(ctx, place, listing, obj))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The id of the object's package when it is changing in AWS, as far as this listing shows.
fn followed_id<B>(
    ctx: &Context<B>,
    place: &Place,
    listing: &Listing,
    obj: &OpenSearchPackage,
) -> Option<String> {
    let changing =
        |p: &&Package| p.status.is_importing() || matches!(p.status, PackageStatus::Deleting);
    let package = match obj.status.as_ref().and_then(|s| s.package_id.as_deref()) {
        Some(id) => listing.by_id(id),
        // The cached copy may predate the object's first status write (the watch is behind):
        // no package id yet, so its package is the one with its name.
        None => listing.by_name(package_name(obj)),
    }
    .filter(changing)?;
    // Checked last: the place is built (allocated) for every cached object.
    (place_of(ctx, obj).as_ref() == Some(place)).then(|| package.id.clone())
}

mod listing;
mod observer;
mod region;
#[cfg(test)]
mod tests;
