//! Watches the benchmark's objects and notes, for each object and generation, the moment the
//! watch delivered it Ready (`Ready=True` with `status.observedGeneration` equal to
//! `metadata.generation`). Condition timestamps have whole-second precision, so the watch's
//! delivery time is used instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::task::JoinHandle;

type ReadyAt = HashMap<(String, i64), SystemTime>;

/// A watch over one namespace's objects; stops when dropped.
pub struct Tracker {
    ready: Arc<Mutex<ReadyAt>>,
    task: JoinHandle<()>,
}

impl Tracker {
    pub fn start(api: Api<DynamicObject>) -> Tracker {
        let ready: Arc<Mutex<ReadyAt>> = Arc::default();
        let seen = ready.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                let object = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                    Ok(_) => continue,
                    Err(e) => {
                        eprintln!("watch error (retrying): {e}");
                        continue;
                    }
                };
                let now = SystemTime::now();
                if let (Some(name), Some(generation)) =
                    (object.metadata.name.clone(), ready_generation(&object))
                    && let Ok(mut ready) = seen.lock()
                {
                    ready.entry((name, generation)).or_insert(now);
                }
            }
        });
        Tracker { ready, task }
    }

    /// When the watch first delivered `name` Ready at `generation`.
    pub fn ready_at(&self, name: &str, generation: i64) -> Option<SystemTime> {
        self.ready
            .lock()
            .ok()?
            .get(&(name.to_string(), generation))
            .copied()
    }

    /// How many of `objects` (name, generation) have been Ready at that generation.
    pub fn count_ready<'a>(&self, objects: impl Iterator<Item = (&'a str, i64)>) -> usize {
        let Ok(ready) = self.ready.lock() else {
            return 0;
        };
        objects
            .filter(|(name, generation)| ready.contains_key(&(name.to_string(), *generation)))
            .count()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The generation the object is Ready at, if it is Ready for its current generation.
fn ready_generation(object: &DynamicObject) -> Option<i64> {
    let generation = object.metadata.generation?;
    let status = object.data.get("status")?;
    let observed = status.get("observedGeneration").and_then(Value::as_i64)?;
    let ready = status
        .get("conditions")?
        .as_array()?
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    (ready && observed == generation).then_some(generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(generation: i64, status: Value) -> DynamicObject {
        let mut object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "ospkg.dev/v1alpha1",
            "kind": "OpenSearchPackage",
            "metadata": {"name": "a", "generation": generation},
        }))
        .expect("object");
        object.data = serde_json::json!({ "status": status });
        object
    }

    #[test]
    fn ready_only_for_the_observed_generation() {
        let ready = serde_json::json!({
            "observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True"}],
        });
        assert_eq!(ready_generation(&object(2, ready.clone())), Some(2));
        assert_eq!(ready_generation(&object(3, ready)), None);
        let not_ready = serde_json::json!({
            "observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "False"}],
        });
        assert_eq!(ready_generation(&object(2, not_ready)), None);
        assert_eq!(ready_generation(&object(2, Value::Null)), None);
    }
}
