//! opensearch-package-operator: manage Amazon OpenSearch Service custom packages from
//! Kubernetes.
#![forbid(unsafe_code)]

pub mod crd;
pub mod backend;
