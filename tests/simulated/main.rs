//! Tests against an in-process simulator of the OpenSearch Service: the AWS backend end to
//! end, and reconciles (with a mock Kubernetes API) driving the backend as shipped (the SDK
//! backend behind the rate limiter, metrics and leader fence, `support::Backend`), crashes
//! and faults included; objects that follow their S3 source, and the S3 client against a
//! second S3 implementation (moto).

mod backend_sim;
mod exactly_once;
mod observe_and_suspend;
mod reconcile;
mod source;
mod source_moto;
mod support;
