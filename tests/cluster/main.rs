//! Tests against a real kube-apiserver and etcd (see `testenv/`): the operator end to end
//! with the simulator, the Helm chart and RBAC, readiness, kstatus on captured objects, and
//! the container image running the operator.

mod chart;
mod e2e;
mod image;
mod kstatus;
mod readiness;
