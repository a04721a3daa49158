//! How many watched objects claim each package name, kept from the watch streams: a
//! reconcile whose package name no other object claims skips the scan of every cached object
//! for a rival owner (most reconciles, in a cluster of thousands of objects).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use kube::ResourceExt;
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

/// Objects (by namespace/name) and their package names, counted by name.
#[derive(Debug, Default)]
struct Names {
    objects: HashMap<(String, String), String>,
    counts: HashMap<String, u32>,
}

impl Names {
    fn insert(&mut self, obj: &OpenSearchPackage) {
        let name = package_name(obj).to_owned();
        if let Some(previous) = self.objects.insert(key(obj), name.clone()) {
            self.uncount(&previous);
        }
        *self.counts.entry(name).or_default() += 1;
    }

    fn remove(&mut self, obj: &OpenSearchPackage) {
        if let Some(previous) = self.objects.remove(&key(obj)) {
            self.uncount(&previous);
        }
    }

    fn uncount(&mut self, name: &str) {
        if let Some(count) = self.counts.get_mut(name) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(name);
            }
        }
    }

    /// The objects other than the one at `own` that claim `name`.
    fn others(&self, own: &(String, String), name: &str) -> u32 {
        let count = self.counts.get(name).copied().unwrap_or(0);
        let counted_own = self.objects.get(own).is_some_and(|n| n == name);
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
        let (own, name) = (key(obj), package_name(obj));
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

fn key(obj: &OpenSearchPackage) -> (String, String) {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

#[cfg(test)]
mod tests;
