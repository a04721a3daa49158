//! One region's packages as the observer last read them, and what changed between two reads.

use std::collections::HashSet;
use std::time::Instant;

use crate::backend::Package;
use crate::crd::OpenSearchPackage;
use crate::plan::package_name;

/// Every package of one region, as one listing saw them.
///
/// Kept as a vector sorted by id (and an index sorted by name) rather than maps: every
/// region holds one, two while the next is compared with it, with as many entries as the
/// region has packages (thousands); the maps' spare buckets and the copies of their keys
/// were half of that memory.
#[derive(Debug)]
pub struct Listing {
    /// When the region-wide listing was started: it reflects every change made before then.
    pub started: Instant,
    /// The packages read again by id since (a busy region's quick look at the packages it
    /// follows), sorted by id, with when the newest such read started.
    reread: Vec<(String, Instant)>,
    /// Sorted by id, one entry per id.
    packages: Vec<Package>,
    /// Positions in `packages`, sorted by the package's name.
    by_name: Vec<u32>,
}

impl Listing {
    pub(super) fn new(started: Instant, mut packages: Vec<Package>) -> Self {
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
            reread: Vec::new(),
            packages,
            by_name,
        }
    }

    /// When the read this listing's entry for the package `id` came from was started (the
    /// region-wide listing's start for a package looked up by name, `None`): every change
    /// made to the package before then shows in it.
    pub fn started_for(&self, id: Option<&str>) -> Instant {
        id.and_then(|id| {
            let at = self
                .reread
                .binary_search_by(|(i, _)| i.as_str().cmp(id))
                .ok()?;
            Some(self.reread[at].1)
        })
        .unwrap_or(self.started)
    }

    /// This listing with the packages `ids` (sorted) as a read by id started at `started`
    /// found them (`found`): one of them not found is gone. The other packages keep what
    /// they were read as.
    pub(super) fn reread(&self, started: Instant, ids: &[String], found: Vec<Package>) -> Self {
        let followed = |id: &String| ids.binary_search(id).is_ok();
        let packages = self
            .packages
            .iter()
            .filter(|p| !followed(&p.id))
            .cloned()
            .chain(found.into_iter().filter(|p| followed(&p.id)))
            .collect();
        let mut listing = Self::new(self.started, packages);
        listing.reread = self.reread.clone();
        for id in ids {
            match listing.reread.binary_search_by(|(i, _)| i.cmp(id)) {
                Ok(at) => listing.reread[at].1 = started,
                Err(at) => listing.reread.insert(at, (id.clone(), started)),
            }
        }
        listing
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
    pub(super) fn changes(&self, newer: &Listing) -> Changes {
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
pub(super) struct Changes {
    pub(super) ids: HashSet<String>,
    pub(super) names: HashSet<String>,
}

impl Changes {
    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether the object's package is among them: by its recorded id, or by its name while
    /// it has recorded none.
    pub(super) fn concern(&self, obj: &OpenSearchPackage) -> bool {
        match obj.status.as_ref().and_then(|s| s.package_id.as_ref()) {
            Some(id) => self.ids.contains(id),
            None => self.names.contains(package_name(obj)),
        }
    }
}
