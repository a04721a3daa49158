//! The per-object gauges: objects by package status, domains behind (in total and per
//! object), and each object's conditions. They are kept from per-object facts, so a gauge is
//! always an exact count rather than a sum of increments that could drift when an object is
//! reconciled again or deleted.
//!
//! The per-object series are not kept as one labelled gauge each (nine condition series and
//! one domains series per object would each hold their own copies of the object's namespace
//! and name): [`ObjectSeries`] writes them at scrape time from one small entry per object.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Metrics;
use crate::vocabulary::{ConditionStatus, ConditionType};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StatusLabels {
    pub(super) package_status: String,
}

/// The condition types with a series, in the order they are written.
const CONDITION_TYPES: [ConditionType; 3] = [
    ConditionType::Ready,
    ConditionType::Reconciling,
    ConditionType::Stalled,
];

const CONDITION_STATUSES: [ConditionStatus; 3] = [
    ConditionStatus::True,
    ConditionStatus::False,
    ConditionStatus::Unknown,
];

/// What the per-object series say about one object.
#[derive(Debug, Default)]
struct Facts {
    /// The last seen packageStatus.
    package_status: Option<Box<str>>,
    /// Domains not yet on the package's current version; `None` until first recorded.
    domains_behind: Option<usize>,
    /// Per [`CONDITION_TYPES`]: `None` when the object has no such condition, else its status
    /// (`Some(None)`: a status outside the three, every series 0).
    conditions: [Option<Option<ConditionStatus>>; 3],
}

/// Per-object facts behind the gauges, shared with the [`ObjectSeries`] collector.
#[derive(Debug, Default)]
pub(super) struct Objects {
    /// object ("namespace/name") → its facts; ordered, so a scrape lists objects by key.
    facts: BTreeMap<String, Facts>,
    /// packageStatus → number of objects in it; values that reach zero stay at zero.
    status_counts: BTreeMap<String, i64>,
    /// The sum of every object's `domains_behind`, kept as they change: every reconcile sets
    /// its object's, and summing thousands of objects each time was most of the operator's
    /// CPU in a settled cluster.
    domains_behind_total: usize,
}

pub(super) type SharedObjects = Arc<Mutex<Objects>>;

/// A poisoned lock only means another thread panicked mid-update; the maps are still usable,
/// and metrics must not take the process down.
fn lock(objects: &Mutex<Objects>) -> MutexGuard<'_, Objects> {
    objects.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `ospkg_object_domains_behind` and `ospkg_object_condition` at scrape time.
#[derive(Debug)]
pub(super) struct ObjectSeries(pub(super) SharedObjects);

impl Collector for ObjectSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let objects = lock(&self.0);
        let mut family = encoder.encode_descriptor(
            "object_domains_behind",
            "Each object's listed domains not yet on the package's current version",
            None,
            MetricType::Gauge,
        )?;
        for (key, facts) in &objects.facts {
            let Some(behind) = facts.domains_behind else {
                continue;
            };
            let (namespace, name) = split_key(key);
            let labels = [("namespace", namespace), ("name", name)];
            ConstGauge::new(i64::try_from(behind).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "object_condition",
            "Each object's Ready, Reconciling and Stalled conditions: 1 for the status it has",
            None,
            MetricType::Gauge,
        )?;
        for (key, facts) in &objects.facts {
            let (namespace, name) = split_key(key);
            for (type_, current) in CONDITION_TYPES.iter().zip(&facts.conditions) {
                let Some(current) = current else { continue };
                for status in CONDITION_STATUSES {
                    let labels = [
                        ("namespace", namespace),
                        ("name", name),
                        ("condition", type_.as_str()),
                        ("status", status.as_str()),
                    ];
                    ConstGauge::new(i64::from(*current == Some(status)))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// "namespace/name" → (namespace, name).
fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

impl Metrics {
    /// Records the object's conditions: for each condition type it has, 1 on its status and
    /// 0 on the others; types it no longer has are dropped.
    pub fn set_conditions(&self, namespace: &str, name: &str, conditions: &[Condition]) {
        let recorded = CONDITION_TYPES.map(|type_| {
            conditions
                .iter()
                .find(|c| c.type_ == type_.as_str())
                .map(|c| {
                    CONDITION_STATUSES
                        .into_iter()
                        .find(|s| c.status == s.as_str())
                })
        });
        let key = format!("{namespace}/{name}");
        self.lock().facts.entry(key).or_default().conditions = recorded;
    }

    /// Records the object's packageStatus; `None` forgets it.
    pub fn set_package_status(&self, object: &str, status: Option<&str>) {
        let mut objects = self.lock();
        let previous = match (status, objects.facts.get_mut(object)) {
            (Some(status), Some(facts)) => facts.package_status.replace(status.into()),
            (Some(status), None) => {
                let facts = Facts {
                    package_status: Some(status.into()),
                    ..Facts::default()
                };
                objects.facts.insert(object.to_owned(), facts);
                None
            }
            (None, Some(facts)) => facts.package_status.take(),
            (None, None) => None,
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
        let mut objects = self.lock();
        let previous = match objects.facts.get_mut(object) {
            Some(facts) => facts.domains_behind.replace(behind),
            None => {
                let facts = Facts {
                    domains_behind: Some(behind),
                    ..Facts::default()
                };
                objects.facts.insert(object.to_owned(), facts);
                None
            }
        };
        self.update_domains_behind(&mut objects, previous.unwrap_or(0), behind);
    }

    /// Drops everything recorded about a deleted object ("namespace/name").
    pub fn forget(&self, object: &str) {
        self.set_package_status(object, None);
        let mut objects = self.lock();
        if let Some(facts) = objects.facts.remove(object) {
            self.update_domains_behind(&mut objects, facts.domains_behind.unwrap_or(0), 0);
        }
    }

    /// Drops everything recorded about every object.
    pub(super) fn forget_all(&self) {
        let mut objects = self.lock();
        *objects = Objects::default();
        self.packages.clear();
        self.domains_behind.set(0);
    }

    fn lock(&self) -> MutexGuard<'_, Objects> {
        lock(&self.objects)
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

    /// One object's domains behind went from `before` to `after`.
    fn update_domains_behind(&self, objects: &mut Objects, before: usize, after: usize) {
        objects.domains_behind_total =
            (objects.domains_behind_total + after).saturating_sub(before);
        self.domains_behind
            .set(i64::try_from(objects.domains_behind_total).unwrap_or(i64::MAX));
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

        // An object known by its package status first; forgetting one never counted.
        metrics.set_package_status("ns/c", Some("AVAILABLE"));
        metrics.set_domains_behind("ns/c", 2);
        metrics.forget("ns/unknown");
        assert_eq!(metrics.domains_behind.get(), 2);
        metrics.forget_all();
        assert_eq!(metrics.domains_behind.get(), 0);
        metrics.set_domains_behind("ns/c", 1);
        assert_eq!(metrics.domains_behind.get(), 1);
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
