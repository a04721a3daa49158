//! How many watched objects claim each package name, kept from the watch streams: a
//! reconcile whose package name no other object claims skips the scan of every cached object
//! for a rival owner (most reconciles, in a cluster of thousands of objects).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};

use kube::runtime::watcher::Event;

use crate::crd::OpenSearchPackage;
use crate::plan::package_name;

/// The package names of the objects of every watch stream of one leadership term.
///
/// Each stream's entries mirror its watch cache, and are updated before it (the stream's
/// events pass here first): an object the cache holds is always counted, so "no other object
/// claims this name" is never wrong, only sometimes late to turn true. Without a stream
/// (tests that build a context of their own caches) nothing is known: every name may have
/// rivals.
#[derive(Debug, Default)]
pub struct PackageNames {
    streams: Mutex<Vec<StreamNames>>,
}

/// Objects (by "namespace/name") and a hash of their package names, counted by that hash.
///
/// Hashes, not names: thousands of objects, each name kept twice, were megabytes. Two names
/// with one hash only make a scan that finds no rival, never a rival missed.
#[derive(Debug, Default)]
struct Names {
    objects: HashMap<Box<str>, u64>,
    counts: HashMap<u64, u32>,
}

impl Names {
    fn insert(&mut self, obj: &OpenSearchPackage) {
        let name = name_hash(obj);
        if let Some(previous) = self.objects.insert(key(obj), name) {
            self.uncount(previous);
        }
        *self.counts.entry(name).or_default() += 1;
    }

    fn remove(&mut self, obj: &OpenSearchPackage) {
        if let Some(previous) = self.objects.remove(&key(obj)) {
            self.uncount(previous);
        }
    }

    fn uncount(&mut self, name: u64) {
        if let Some(count) = self.counts.get_mut(&name) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&name);
            }
        }
    }

    /// The objects other than the one at `own` whose package name hashes to `name`.
    fn others(&self, own: &str, name: u64) -> u32 {
        let count = self.counts.get(&name).copied().unwrap_or(0);
        let counted_own = self.objects.get(own) == Some(&name);
        count - u32::from(counted_own)
    }
}

/// One watch stream's objects.
#[derive(Debug, Default)]
struct StreamNames {
    current: Names,
    /// The objects of a relist under way, which replace `current` when it ends.
    relisting: Option<Names>,
}

/// The handle of one stream's entries.
#[derive(Clone, Copy, Debug)]
pub struct Stream(usize);

impl PackageNames {
    /// A new stream whose events [`Self::observe`] is given.
    pub fn stream(&self) -> Stream {
        let mut streams = self.lock();
        streams.push(StreamNames::default());
        Stream(streams.len() - 1)
    }

    /// Follows one event of the stream's watch.
    pub fn observe(&self, stream: Stream, event: &Event<OpenSearchPackage>) {
        let mut streams = self.lock();
        let Some(names) = streams.get_mut(stream.0) else {
            return;
        };
        match event {
            Event::Apply(obj) => names.current.insert(obj),
            Event::Delete(obj) => names.current.remove(obj),
            Event::Init => names.relisting = Some(Names::default()),
            Event::InitApply(obj) => {
                if let Some(relisting) = names.relisting.as_mut() {
                    relisting.insert(obj);
                }
            }
            Event::InitDone => {
                if let Some(relisted) = names.relisting.take() {
                    names.current = relisted;
                }
            }
        }
    }

    /// Whether an object other than `obj` may claim `obj`'s package name: always, unless
    /// the streams are known and show none.
    pub fn may_have_rivals(&self, obj: &OpenSearchPackage) -> bool {
        let streams = self.lock();
        if streams.is_empty() {
            return true;
        }
        let (own, name) = (key(obj), name_hash(obj));
        streams.iter().any(|s| {
            s.current.others(&own, name) > 0
                || s.relisting
                    .as_ref()
                    .is_some_and(|r| r.others(&own, name) > 0)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StreamNames>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(obj: &OpenSearchPackage) -> Box<str> {
    let namespace = obj.metadata.namespace.as_deref().unwrap_or_default();
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    format!("{namespace}/{name}").into_boxed_str()
}

fn name_hash(obj: &OpenSearchPackage) -> u64 {
    let mut hasher = DefaultHasher::new();
    package_name(obj).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests;
