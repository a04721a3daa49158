//! The observer task of one account and region: reads the region's packages, publishes the
//! listing, wakes the objects whose package changed, and sleeps until the next read is due or
//! a reconcile asks for one.

use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::region::{Latest, Read, Region};
use super::{FAST, Listing, following};
use crate::backend::{
    BackendError, PAGE_SIZE, Package, PackageBackend, PackageFilter, Place, Scope,
};
use crate::controller::Context;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The observer of one account and region: reads, publishes, wakes, sleeps; ends with its
/// term's context.
pub(super) async fn observe_region<B: PackageBackend>(
    ctx: Weak<Context<B>>,
    name: Place,
    region: Arc<Region>,
) {
    let mut failures: u32 = 0;
    // When the last region-wide listing started.
    let mut listed: Option<Instant> = None;
    // What the last listing showed changing: the packages the observer follows.
    let mut followed: Vec<String> = Vec::new();
    loop {
        // STS refused the identity: listing again costs an AssumeRole, not a package API
        // call, and a reconcile that asks for a listing may come with a role that works now.
        let mut refused = false;
        let Some(context) = ctx.upgrade() else {
            return;
        };
        let resync = context.regions.resync;
        let due = |now: Instant| listed.is_none_or(|l| now >= l + resync);
        let started = Instant::now();
        let previous = region.latest.borrow().listing.clone();
        let read = region.next_read(previous.as_deref(), &followed, due(started), true);
        let scope = region
            .scope
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let result = read_packages(&context.backend, &scope, &read).await;
        let next = match result {
            Ok(packages) => {
                failures = 0;
                let listing = Arc::new(match (&read, &previous) {
                    (Read::Followed(ids), Some(previous)) => {
                        previous.reread(started, ids, packages)
                    }
                    _ => {
                        listed = Some(started);
                        Listing::new(started, packages)
                    }
                });
                region.latest.send_replace(Latest {
                    listing: Some(listing.clone()),
                    failure: None,
                });
                if let Some(previous) = previous {
                    let changes = previous.changes(&listing);
                    if !changes.is_empty() {
                        region.heard_news(started);
                    }
                    debug!(region = %name, packages = listing.len(), changed = changes.ids.len(), ?read, "listed");
                    context
                        .regions
                        .wake_changed(&context, &name, &changes, &listing);
                }
                followed = following(&context, &name, &listing);
                let next = region.next_read(Some(&listing), &followed, false, false);
                let contended = context.backend.changes_waiting(&name);
                // Reads a reconcile asks for (after its own change) come at the busy interval
                // (below); the observer's own reads slow down while nothing changes.
                let interval = context
                    .regions
                    .busy_interval(pages_of(&next, &listing), contended)
                    .max(settling_interval(region.quiet_for(started)));
                let busy = !followed.is_empty();
                debug!(region = %name, busy, ?interval, "next listing {}", if busy { "soon" } else { "at the resync" });
                match (busy, listed) {
                    (true, _) | (false, None) => started + interval,
                    (false, Some(listed)) => (listed + resync).max(started + interval),
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                refused = matches!(error, BackendError::Credentials(_));
                warn!(region = %name, %error, "listing the region's packages failed");
                region.want_again(&read);
                region
                    .latest
                    .send_modify(|l| l.failure = Some((started, error)));
                started
                    + BACKOFF_START
                        .saturating_mul(1 << failures.saturating_sub(1).min(6))
                        .min(BACKOFF_CAP)
            }
        };
        drop(context);
        // Sleep until the next read is due, or until a reconcile asks for one: never more
        // often than the busy interval of the read it asked for, and never sooner than the
        // backoff after a failure.
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            () = region.demand.notified() => {
                let earliest = if failures > 0 && !refused {
                    next
                } else {
                    let Some(context) = ctx.upgrade() else {
                        return;
                    };
                    let latest = region.latest.borrow().listing.clone();
                    let interval = latest.map_or(FAST, |listing| {
                        let read = region.next_read(Some(&listing), &followed, false, false);
                        let contended = context.backend.changes_waiting(&name);
                        context
                            .regions
                            .busy_interval(pages_of(&read, &listing), contended)
                    });
                    (started + interval).min(next)
                };
                tokio::time::sleep_until(earliest.into()).await;
            }
        }
    }
}

/// The slowest a busy region is read: a package that has been validating for many minutes (a
/// plugin) is read as often as an importing object is polled at most (every half minute).
pub(super) const SLOWEST_BUSY: Duration = crate::controller::schedule::POLL_MAX;

/// The observer's own interval between reads of a busy region that nothing has changed in for
/// `quiet`: a quarter of that (so an import is seen finished within a quarter of its time
/// again), at most [`SLOWEST_BUSY`]. Imports of seconds stay at [`FAST`].
pub(super) fn settling_interval(quiet: Duration) -> Duration {
    (quiet / 4).min(SLOWEST_BUSY)
}

/// The pages `read` takes: the region-wide listing's as `listing` counted them.
fn pages_of(read: &Read, listing: &Listing) -> usize {
    match read {
        Read::Region => listing.len(),
        Read::Followed(ids) => ids.len(),
    }
}

/// Reads the packages of one region, or only the followed ones (by id, one page per
/// [`PAGE_SIZE`] of them: none found is none left).
async fn read_packages<B: PackageBackend>(
    backend: &B,
    scope: &Scope,
    read: &Read,
) -> Result<Vec<Package>, BackendError> {
    let ids = match read {
        Read::Region => return backend.describe_packages(scope, PackageFilter::All).await,
        Read::Followed(ids) => ids,
    };
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(PAGE_SIZE) {
        match backend
            .describe_packages(scope, PackageFilter::Ids(chunk.to_vec()))
            .await
        {
            Ok(packages) => found.extend(packages),
            Err(BackendError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(found)
}
