//! The per-object gauges: objects by package status, domains behind (in total and per
//! object), and each object's conditions. They are kept from per-object facts, so a gauge is always an exact count
//! rather than a sum of increments that could drift when an object is reconciled again or
//! deleted.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use prometheus_client::encoding::EncodeLabelSet;

use super::Metrics;
use crate::vocabulary::{ConditionStatus, ConditionType};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StatusLabels {
    pub(super) package_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ObjectLabels {
    namespace: String,
    name: String,
}

impl ObjectLabels {
    /// The labels of an object key, "namespace/name".
    fn of(object: &str) -> Self {
        let (namespace, name) = object.split_once('/').unwrap_or(("", object));
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ConditionLabels {
    namespace: String,
    name: String,
    condition: &'static str,
    status: &'static str,
}

/// Per-object facts behind the gauges.
#[derive(Debug, Default)]
pub(super) struct Objects {
    /// object ("namespace/name") → last seen packageStatus.
    status: HashMap<String, String>,
    /// packageStatus → number of objects in it; values that reach zero stay at zero.
    status_counts: BTreeMap<String, i64>,
    /// object → domains not yet on the package's current version.
    behind: HashMap<String, usize>,
    /// object → the condition series it has.
    conditions: HashMap<String, Vec<ConditionLabels>>,
}

impl Metrics {
    /// Records the object's conditions: for each condition type it has, 1 on its status and
    /// 0 on the others; types it no longer has are dropped.
    pub fn set_conditions(&self, namespace: &str, name: &str, conditions: &[Condition]) {
        let mut series = Vec::new();
        for type_ in [
            ConditionType::Ready,
            ConditionType::Reconciling,
            ConditionType::Stalled,
        ] {
            let Some(current) = conditions.iter().find(|c| c.type_ == type_.as_str()) else {
                continue;
            };
            for status in [
                ConditionStatus::True,
                ConditionStatus::False,
                ConditionStatus::Unknown,
            ] {
                let labels = ConditionLabels {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    condition: type_.as_str(),
                    status: status.as_str(),
                };
                let value = i64::from(current.status == status.as_str());
                self.conditions.get_or_create(&labels).set(value);
                series.push(labels);
            }
        }
        let key = format!("{namespace}/{name}");
        let mut objects = self.lock();
        for old in objects.conditions.remove(&key).unwrap_or_default() {
            if !series.contains(&old) {
                self.conditions.remove(&old);
            }
        }
        objects.conditions.insert(key, series);
    }

    /// Records the object's packageStatus; `None` forgets the object.
    pub fn set_package_status(&self, object: &str, status: Option<&str>) {
        let mut objects = self.lock();
        let previous = match status {
            Some(status) => objects.status.insert(object.to_owned(), status.to_owned()),
            None => objects.status.remove(object),
        };
        if previous.as_deref() == status {
            return;
        }
        if let Some(previous) = previous {
            self.add_to_status(&mut objects, &previous, -1);
        }
        if let Some(status) = status {
            self.add_to_status(&mut objects, status, 1);
        }
    }

    /// Records how many of the object's ("namespace/name") domains are not yet on the current
    /// version.
    pub fn set_domains_behind(&self, object: &str, behind: usize) {
        self.object_domains_behind
            .get_or_create(&ObjectLabels::of(object))
            .set(i64::try_from(behind).unwrap_or(i64::MAX));
        let mut objects = self.lock();
        if behind == 0 {
            objects.behind.remove(object);
        } else {
            objects.behind.insert(object.to_owned(), behind);
        }
        self.update_domains_behind(&objects);
    }

    /// Drops everything recorded about a deleted object ("namespace/name").
    pub fn forget(&self, object: &str) {
        self.set_package_status(object, None);
        self.object_domains_behind.remove(&ObjectLabels::of(object));
        let mut objects = self.lock();
        if objects.behind.remove(object).is_some() {
            self.update_domains_behind(&objects);
        }
        for labels in objects.conditions.remove(object).unwrap_or_default() {
            self.conditions.remove(&labels);
        }
    }

    /// Drops everything recorded about every object.
    pub(super) fn forget_all(&self) {
        let mut objects = self.lock();
        *objects = Objects::default();
        self.packages.clear();
        self.conditions.clear();
        self.object_domains_behind.clear();
        self.domains_behind.set(0);
    }

    /// A poisoned lock only means another thread panicked mid-update; the maps are still
    /// usable, and metrics must not take the process down.
    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add_to_status(&self, objects: &mut Objects, status: &str, delta: i64) {
        let count = objects.status_counts.entry(status.to_owned()).or_default();
        *count = (*count + delta).max(0);
        self.packages
            .get_or_create(&StatusLabels {
                package_status: status.to_owned(),
            })
            .set(*count);
    }

    fn update_domains_behind(&self, objects: &Objects) {
        let total: usize = objects.behind.values().sum();
        self.domains_behind
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packages(metrics: &Metrics, status: &str) -> Option<i64> {
        metrics
            .packages
            .get(&StatusLabels {
                package_status: status.to_owned(),
            })
            .map(|g| g.get())
    }

    #[test]
    fn package_gauge_counts_objects_by_their_latest_status() {
        let metrics = Metrics::new();
        metrics.set_package_status("ns/a", Some("COPYING"));
        metrics.set_package_status("ns/b", Some("COPYING"));
        metrics.set_package_status("ns/c", Some("AVAILABLE"));
        assert_eq!(packages(&metrics, "COPYING"), Some(2));
        assert_eq!(packages(&metrics, "AVAILABLE"), Some(1));

        // Seeing the same status again must not count the object twice.
        metrics.set_package_status("ns/c", Some("AVAILABLE"));
        assert_eq!(packages(&metrics, "AVAILABLE"), Some(1));

        metrics.set_package_status("ns/a", Some("AVAILABLE"));
        metrics.set_package_status("ns/b", Some("AVAILABLE"));
        assert_eq!(packages(&metrics, "AVAILABLE"), Some(3));
        // A status nobody is in any more reads 0 instead of its last value.
        assert_eq!(packages(&metrics, "COPYING"), Some(0));
    }

    #[test]
    fn none_status_and_forget_drop_the_object() {
        let metrics = Metrics::new();
        metrics.set_package_status("ns/a", Some("AVAILABLE"));
        metrics.set_package_status("ns/b", Some("AVAILABLE"));
        metrics.set_package_status("ns/a", None);
        assert_eq!(packages(&metrics, "AVAILABLE"), Some(1));

        metrics.set_domains_behind("ns/b", 2);
        metrics.forget("ns/b");
        assert_eq!(packages(&metrics, "AVAILABLE"), Some(0));
        assert_eq!(metrics.domains_behind.get(), 0);

        // Forgetting an unknown object changes nothing.
        metrics.forget("ns/unknown");
        metrics.set_package_status("ns/unknown", None);
        assert_eq!(packages(&metrics, "AVAILABLE"), Some(0));
    }

    #[test]
    fn domains_behind_is_the_sum_over_objects() {
        let metrics = Metrics::new();
        metrics.set_domains_behind("ns/a", 2);
        metrics.set_domains_behind("ns/b", 3);
        assert_eq!(metrics.domains_behind.get(), 5);

        // A new value replaces the object's previous one.
        metrics.set_domains_behind("ns/a", 1);
        assert_eq!(metrics.domains_behind.get(), 4);
        metrics.set_domains_behind("ns/b", 0);
        assert_eq!(metrics.domains_behind.get(), 1);
        metrics.forget("ns/a");
        assert_eq!(metrics.domains_behind.get(), 0);
    }

    #[test]
    fn each_object_has_its_own_domains_behind_series() {
        let metrics = Metrics::new();
        metrics.set_domains_behind("search/synonyms", 2);
        metrics.set_domains_behind("search/stopwords", 0);
        let text = metrics.encode();
        assert!(
            text.contains("ospkg_object_domains_behind{namespace=\"search\",name=\"synonyms\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ospkg_object_domains_behind{namespace=\"search\",name=\"stopwords\"} 0"),
            "{text}"
        );
        metrics.forget("search/synonyms");
        let text = metrics.encode();
        assert!(!text.contains("name=\"synonyms\""), "{text}");
        assert!(text.contains("name=\"stopwords\""), "{text}");
    }

    #[test]
    fn a_replica_that_stops_leading_drops_every_per_object_series() {
        let metrics = Metrics::new();
        metrics.set_leader(true);
        metrics.set_package_status("ns/a", Some("AVAILABLE"));
        metrics.set_domains_behind("ns/a", 1);
        metrics.set_conditions(
            "ns",
            "a",
            &[condition("Ready", "False"), condition("Stalled", "True")],
        );
        metrics.set_leader(false);
        let text = metrics.encode();
        for gone in [
            "ospkg_object_condition{",
            "ospkg_object_domains_behind{",
            "ospkg_packages{",
        ] {
            assert!(!text.contains(gone), "{gone} left in\n{text}");
        }
        assert!(text.contains("ospkg_domains_behind 0"), "{text}");
        assert!(text.contains("ospkg_leader 0"), "{text}");

        // Leading again starts from scratch: counts are not carried over.
        metrics.set_leader(true);
        metrics.set_package_status("ns/a", Some("AVAILABLE"));
        assert_eq!(packages(&metrics, "AVAILABLE"), Some(1));
    }

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::UNIX_EPOCH,
            ),
        }
    }

    #[test]
    fn conditions_are_one_series_per_status_and_go_with_the_object() {
        let metrics = Metrics::new();
        metrics.set_conditions(
            "ns",
            "a",
            &[condition("Ready", "False"), condition("Stalled", "True")],
        );
        let text = metrics.encode();
        assert!(text.contains(
            "ospkg_object_condition{namespace=\"ns\",name=\"a\",condition=\"Stalled\",status=\"True\"} 1"
        ), "{text}");
        assert!(text.contains(
            "ospkg_object_condition{namespace=\"ns\",name=\"a\",condition=\"Ready\",status=\"True\"} 0"
        ), "{text}");
        // Ready now, no longer stalled: the Stalled series go.
        metrics.set_conditions("ns", "a", &[condition("Ready", "True")]);
        let text = metrics.encode();
        assert!(!text.contains("condition=\"Stalled\""), "{text}");
        metrics.forget("ns/a");
        assert!(!metrics.encode().contains("ospkg_object_condition{"));
    }
}
