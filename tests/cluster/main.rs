//! Tests against a real kube-apiserver and etcd (see `testenv/`): the operator end to end
//! with the simulator, the Helm chart and RBAC, readiness, and kstatus on captured objects.

mod chart;
mod e2e;
mod kstatus;
mod readiness;
