//! Tests that need no server: the pure plan, the CRD and generated files, the command line,
//! the AWS backend against canned HTTP exchanges, the Argo CD health script and resource
//! actions, the Flux health check expressions, and the metrics endpoint.

mod argocd_actions;
mod argocd_health;
mod backend_aws;
mod cli;
mod crd;
mod flux_health;
mod metrics_server;
mod plan;
mod plan_observe_only;
mod plan_source;
