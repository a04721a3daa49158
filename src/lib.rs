//! opensearch-package-operator: manage Amazon OpenSearch Service custom packages from
//! Kubernetes.
#![forbid(unsafe_code)]

pub mod backend;
pub mod config;
pub mod controller;
pub mod crd;
pub mod digest;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod runtime;
pub mod server;
pub mod source;
pub mod status;
pub mod telemetry;
pub mod tenancy;
pub mod vocabulary;
