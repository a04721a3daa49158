//! opensearch-package-operator: manage Amazon OpenSearch Service custom packages from
//! Kubernetes.
#![forbid(unsafe_code)]

pub mod backend;
pub mod crd;
pub mod digest;
pub mod plan;
pub mod status;
pub mod metrics;
pub mod server;
pub mod config;
pub mod telemetry;
