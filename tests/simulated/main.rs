//! Tests against an in-process simulator of the OpenSearch Service: the AWS backend end to
//! end, and reconciles (with a mock Kubernetes API) driving the backend as shipped.

mod backend_sim;
mod reconcile;
