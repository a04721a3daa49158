//! The state of one region's observer that reconciles share: its latest listing, what they
//! asked the next read to cover, and when the region last changed.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::Listing;
use crate::backend::{BackendError, PAGE_SIZE, Scope};

/// What the last listing attempt of a region produced.
#[derive(Clone, Debug, Default)]
pub(super) struct Latest {
    pub(super) listing: Option<Arc<Listing>>,
    /// The last failed attempt, when it is newer than `listing`.
    pub(super) failure: Option<(Instant, BackendError)>,
}

pub(super) struct Region {
    pub(super) latest: watch::Sender<Latest>,
    /// A reconcile wants a listing newer than the current one.
    pub(super) demand: Notify,
    /// What the reconciles that asked want the next read to cover.
    pub(super) wanted: Mutex<Wanted>,
    /// The identity the listing is made with: the last one a reconcile of this account and
    /// region used (every identity of an account sees the same packages).
    pub(super) scope: Mutex<Scope>,
    /// When a read last showed a package change, or a reconcile last changed one: a busy
    /// region's reads slow down as this grows old ([`super::observer::settling_interval`]).
    pub(super) news: Mutex<Instant>,
}

/// What reconciles asked the observer's next read to cover.
#[derive(Debug, Default)]
pub(super) struct Wanted {
    /// Packages (by id) a reconcile changed, or wants read again.
    ids: BTreeSet<String>,
    /// A reconcile wants a package known only by its name: only a region-wide listing finds it.
    by_name: bool,
}

/// One read of a region's packages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// Every package of the region (DescribePackages, every page).
    Region,
    /// Only these packages (sorted ids), merged over the last region-wide listing: a busy
    /// region of many pages reads the few packages it follows in one page instead.
    Followed(Vec<String>),
}

impl Region {
    pub(super) fn new(scope: Scope) -> Self {
        Self {
            latest: watch::Sender::new(Latest::default()),
            demand: Notify::new(),
            wanted: Mutex::new(Wanted::default()),
            scope: Mutex::new(scope),
            news: Mutex::new(Instant::now()),
        }
    }

    pub(super) fn heard_news(&self, at: Instant) {
        let mut news = self.news.lock().unwrap_or_else(PoisonError::into_inner);
        *news = (*news).max(at);
    }

    /// How long nothing has changed in the region, as of `now`.
    pub(super) fn quiet_for(&self, now: Instant) -> Duration {
        let news = self.news.lock().unwrap_or_else(PoisonError::into_inner);
        now.saturating_duration_since(*news)
    }

    pub(super) fn want(&self, id: Option<&str>) {
        let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        match id {
            Some(id) => {
                wanted.ids.insert(id.to_owned());
            }
            None => wanted.by_name = true,
        }
        drop(wanted);
        self.demand.notify_one();
    }

    /// The next read: the packages `following` and those wanted by id, when that is fewer
    /// pages than the region-wide listing `listing` (of its last read); the region-wide
    /// listing when there is none yet, when it is due (`due`), or when a package is wanted by
    /// name. `take` empties what was wanted (the read covers it).
    pub(super) fn next_read(
        &self,
        listing: Option<&Listing>,
        following: &[String],
        due: bool,
        take: bool,
    ) -> Read {
        let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ids: BTreeSet<String> = following.iter().cloned().collect();
        ids.extend(wanted.ids.iter().cloned());
        let read = match listing {
            Some(listing)
                if !due
                    && !wanted.by_name
                    && !ids.is_empty()
                    && ids.len().div_ceil(PAGE_SIZE) < listing.len().div_ceil(PAGE_SIZE) =>
            {
                Read::Followed(ids.into_iter().collect())
            }
            _ => Read::Region,
        };
        if take {
            if read == Read::Region {
                wanted.by_name = false;
            }
            wanted.ids.clear();
        }
        read
    }

    /// Puts back the packages a failed read was to cover. (A reconcile waiting for the read
    /// gets its failure and asks again.)
    pub(super) fn want_again(&self, read: &Read) {
        if let Read::Followed(ids) = read {
            let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
            wanted.ids.extend(ids.iter().cloned());
        }
    }
}
