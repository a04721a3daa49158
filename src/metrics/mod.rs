//! Prometheus metrics served on `/metrics`.
//!
//! One [`Metrics`] value is shared (in an `Arc`) by the controller, the metered backend and
//! the HTTP server. Every label value is bounded: results and outcomes are `&'static str`
//! per variant, `package_status` comes from the service's small set of states, regions are
//! the few the objects name, and the per-object series (conditions, domains behind) are
//! bounded by the number of objects (dropped when an object goes, and all of them when this
//! replica stops leading). The standard `process_*` metrics are read at each scrape.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::backend::Operation;

mod objects;
mod process;

use objects::{ObjectSeries, SharedObjects, StatusLabels};

/// Reconcile durations span a no-op resync (about a millisecond) to a slow chain of AWS
/// calls (up to a minute).
const RECONCILE_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsCallLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsLatencyLabels {
    operation: &'static str,
    /// Bounded by the accounts the operator reaches: its own and its roles'.
    account: String,
    region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// AWS calls take from a few milliseconds to the attempt timeout.
const AWS_CALL_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn aws_call_histogram() -> Histogram {
    Histogram::new(AWS_CALL_BUCKETS)
}

/// The operator's metrics and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    aws_calls: Family<AwsCallLabels, Counter>,
    packages: Family<StatusLabels, Gauge>,
    domains_behind: Gauge,
    leader: Gauge,
    aws_call_duration: Family<AwsLatencyLabels, Histogram, fn() -> Histogram>,
    /// The per-object facts, also read by the [`ObjectSeries`] collector at scrape time.
    objects: SharedObjects,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        // The process collector's names carry no prefix (`process_cpu_seconds_total`, as
        // every Prometheus client library exports them); the operator's own do.
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("ospkg");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let reconcile_duration = Histogram::new(RECONCILE_BUCKETS);
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        let packages = Family::<StatusLabels, Gauge>::default();
        let domains_behind = Gauge::default();
        let leader = Gauge::default();
        let aws_call_duration =
            Family::<AwsLatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                aws_call_histogram,
            );
        let objects = SharedObjects::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: option_env!("OSPKG_GIT_COMMIT").unwrap_or(""),
            })
            .set(1);

        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        registry.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconcile",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        registry.register(
            "aws_calls",
            "AWS API calls (OpenSearch Service; S3 HeadObject for followed sources) by operation and outcome",
            aws_calls.clone(),
        );
        registry.register(
            "packages",
            "Objects by the last seen packageStatus",
            packages.clone(),
        );
        registry.register(
            "domains_behind",
            "(object, domain) pairs not yet on the package's current version",
            domains_behind.clone(),
        );
        // ospkg_object_domains_behind and ospkg_object_condition.
        registry.register_collector(Box::new(ObjectSeries(Arc::clone(&objects))));
        registry.register_with_unit(
            "aws_call_duration",
            "Time an AWS API call took, by operation, account and region",
            Unit::Seconds,
            aws_call_duration.clone(),
        );
        registry.register(
            "build_info",
            "The operator's version and commit (always 1)",
            build_info,
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or runs without leader election)",
            leader.clone(),
        );

        Self {
            registry: root,
            reconciles,
            reconcile_duration,
            aws_calls,
            packages,
            domains_behind,
            leader,
            aws_call_duration,
            objects,
        }
    }

    /// Counts one finished reconcile and records how long it took.
    pub fn observe_reconcile(&self, result: &'static str, elapsed: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one AWS call; `outcome` is "ok" or a `BackendError::label()`.
    pub fn aws_call(&self, operation: Operation, outcome: &'static str) {
        let operation = operation.as_str();
        self.aws_calls
            .get_or_create(&AwsCallLabels { operation, outcome })
            .inc();
    }

    /// Records how long an AWS call took.
    pub fn aws_call_duration(
        &self,
        operation: Operation,
        account: &str,
        region: &str,
        elapsed: Duration,
    ) {
        self.aws_call_duration
            .get_or_create(&AwsLatencyLabels {
                operation: operation.as_str(),
                account: account.to_owned(),
                region: region.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Whether this replica leads (runs the controllers). A replica that stops leading drops
    /// every per-object series: it no longer watches the objects, and its last values would
    /// otherwise be reported (and alerted on) beside the new leader's.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
        if !leader {
            self.forget_all();
        }
    }

    /// The metrics in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an error here would be a bug in an encoder.
        if let Err(error) = encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_by_result_and_timed() {
        let metrics = Metrics::new();
        metrics.observe_reconcile("success", Duration::from_millis(3));
        metrics.observe_reconcile("success", Duration::from_millis(5));
        metrics.observe_reconcile("error", Duration::from_secs(2));

        let success = metrics.reconciles.get(&ResultLabels { result: "success" });
        assert_eq!(success.map(|c| c.get()), Some(2));
        let error = metrics.reconciles.get(&ResultLabels { result: "error" });
        assert_eq!(error.map(|c| c.get()), Some(1));
        let text = metrics.encode();
        assert!(
            text.contains("ospkg_reconcile_duration_seconds_count 3"),
            "{text}"
        );
        assert!(
            text.contains("ospkg_reconcile_duration_seconds_sum 2.008"),
            "{text}"
        );
        // 3 ms and 5 ms fall under the 5 ms bound, 2 s does not.
        assert!(
            text.contains("ospkg_reconcile_duration_seconds_bucket{le=\"0.005\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn aws_calls_are_counted_by_operation_and_outcome() {
        let metrics = Metrics::new();
        metrics.aws_call(Operation::DescribePackages, "ok");
        metrics.aws_call(Operation::DescribePackages, "ok");
        metrics.aws_call(Operation::DescribePackages, "throttled");
        metrics.aws_call(Operation::CreatePackage, "ok");

        let count = |operation, outcome| {
            metrics
                .aws_calls
                .get(&AwsCallLabels { operation, outcome })
                .map(|c| c.get())
        };
        assert_eq!(count("DescribePackages", "ok"), Some(2));
        assert_eq!(count("DescribePackages", "throttled"), Some(1));
        assert_eq!(count("CreatePackage", "ok"), Some(1));
        assert_eq!(count("CreatePackage", "throttled"), None);
    }

    #[test]
    fn encode_names_every_family_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.observe_reconcile("success", Duration::from_millis(10));
        metrics.aws_call(Operation::DescribePackages, "ok");
        metrics.set_package_status("ns/a", Some("AVAILABLE"));
        metrics.set_domains_behind("ns/a", 1);
        metrics.set_leader(true);

        let text = metrics.encode();
        assert!(text.contains("ospkg_leader 1"), "{text}");
        assert!(
            text.contains("ospkg_reconciles_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ospkg_reconcile_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("ospkg_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("ospkg_aws_calls_total{operation=\"DescribePackages\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ospkg_packages{package_status=\"AVAILABLE\"} 1"),
            "{text}"
        );
        assert!(text.contains("ospkg_domains_behind 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn build_info_and_aws_call_latency_are_exported() {
        let metrics = Metrics::new();
        metrics.aws_call_duration(
            Operation::UpdatePackage,
            "111122223333",
            "eu-west-1",
            Duration::from_millis(30),
        );
        let text = metrics.encode();
        assert!(text.contains("ospkg_build_info{version=\""), "{text}");
        assert!(text.contains(
            "ospkg_aws_call_duration_seconds_count{operation=\"UpdatePackage\",account=\"111122223333\",region=\"eu-west-1\"} 1"
        ), "{text}");
    }

    #[test]
    fn process_metrics_have_the_standard_unprefixed_names() {
        let text = Metrics::new().encode();
        for family in [
            "# TYPE process_cpu_seconds counter",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_virtual_memory_bytes gauge",
            "# TYPE process_open_fds gauge",
            "# TYPE process_max_fds gauge",
            "# TYPE process_start_time_seconds gauge",
        ] {
            assert!(text.contains(family), "no {family:?} in\n{text}");
        }
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        assert!(!text.contains("ospkg_process_"), "{text}");
    }

    #[test]
    fn metrics_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
    }
}
