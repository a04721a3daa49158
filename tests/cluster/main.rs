//! Tests against a real kube-apiserver and etcd (see `testenv/`): the operator end to end
//! with the simulator, the Helm chart and RBAC, readiness, kstatus on captured objects, the
//! alerts and dashboard (with promtool), the container image running the operator, and a smoke
//! run of the benchmark.

mod bench_smoke;
mod chart;
mod e2e;
mod image;
mod kstatus;
mod monitoring;
mod readiness;
