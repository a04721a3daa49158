//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder runs the
//! controllers, so two replicas never both call AWS or write status.
//!
//! The Lease is acquired and renewed by `kube-lease-manager`. On top of it, [`Leadership`]
//! is the fence every write passes: it is valid only until the last renewal this process
//! has confirmed (by reading the Lease back) plus the renew deadline. A replica that cannot
//! renew in time, or that was paused (SIGSTOP) past its lease, finds the fence closed before
//! its next AWS change or status write, and its controllers are stopped at once. It then
//! stands by again, as a candidate: its next term builds fresh controllers, watch caches and
//! reconcile memory, exactly what a restarted process would have, while a brief API server
//! outage (longer than the renew deadline) does not turn into a container restart.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tracing::{debug, info, warn};

/// How this replica takes part in leader election.
#[derive(Clone, Debug)]
pub struct Election {
    pub lease_name: String,
    pub namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// How long a Lease is valid after its last renewal; a standby takes over after it.
    pub lease_duration: Duration,
    /// The leader stops when it has not confirmed a renewal for this long.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks at the Lease.
    pub retry_period: Duration,
}

/// Whether this replica may change anything: AWS packages or object status.
#[derive(Debug)]
pub struct Leadership {
    /// `None`: leader election is off, this replica always leads.
    valid_until: Option<Mutex<Option<Instant>>>,
}

impl Leadership {
    /// Without leader election: always the leader.
    pub fn always() -> Self {
        Self { valid_until: None }
    }

    /// With leader election: not the leader until a Lease is acquired.
    pub fn elected() -> Self {
        Self {
            valid_until: Some(Mutex::new(None)),
        }
    }

    /// Whether this replica leads right now (its last confirmed renewal is recent enough).
    pub fn is_leader(&self) -> bool {
        match &self.valid_until {
            None => true,
            Some(until) => until
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some_and(|t| Instant::now() < t),
        }
    }

    fn confirm_until(&self, until: Instant) {
        if let Some(valid) = &self.valid_until {
            let mut valid = valid.lock().unwrap_or_else(PoisonError::into_inner);
            if valid.is_none_or(|t| t < until) {
                *valid = Some(until);
            }
        }
    }

    fn revoke(&self) {
        if let Some(valid) = &self.valid_until {
            *valid.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

/// The namespace of the Lease when none is configured: the pod's own, from the downward API
/// (`POD_NAMESPACE`) or the service account's namespace file.
pub fn own_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|ns| !ns.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|ns| ns.trim().to_owned())
                .filter(|ns| !ns.is_empty())
        })
}

/// This replica's identity: the pod name (`POD_NAME`), else the host name.
pub fn own_identity() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("opensearch-package-operator-{}", std::process::id()))
}

/// Stands by for the Lease and runs `lead()` while holding it, until a shutdown request
/// (`lead()` then returns; the Lease is released so a standby takes over at once). A replica
/// that loses the Lease, or cannot renew it before the renew deadline, stops leading at once
/// (its controllers are dropped, the fence closes) and stands by again: the next term starts
/// with fresh controllers, caches and memory, as a new process would, without counting as a
/// crash. `on_change` hears every change of leadership.
pub async fn run<F, Fut>(
    client: Client,
    election: Election,
    leadership: &Leadership,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    on_change: impl Fn(bool),
    lead: F,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let leases: Api<Lease> = Api::namespaced(client.clone(), &election.namespace);
    loop {
        on_change(false);
        info!(lease = %election.lease_name, identity = %election.identity, "standing by for the leader Lease");
        let Some(manager) = acquire(&client, &election, &mut shutdown).await? else {
            return Ok(());
        };
        leadership.confirm_until(Instant::now() + election.renew_deadline);
        on_change(true);
        info!(identity = %election.identity, "acquired the leader Lease");

        let shut_down = tokio::select! {
            () = lead() => true,
            () = keep_renewing(&manager, &election) => {
                warn!("the leader Lease was taken by another replica; standing by");
                false
            }
            () = confirm_renewals(&leases, &election, leadership) => {
                warn!("the leader Lease was not renewed before the deadline; standing by");
                false
            }
        };
        leadership.revoke();
        on_change(false);
        if shut_down {
            // Hand over at once instead of making the standby wait for the Lease to expire.
            match manager.release().await {
                Ok(()) => info!("released the leader Lease"),
                Err(error) => warn!(%error, "could not release the leader Lease"),
            }
            return Ok(());
        }
    }
}

/// A lease manager with a fresh view of the Lease (the manager re-reads a Lease it believes
/// held only when that holder's term has run out, and would miss a release).
async fn manager(client: &Client, election: &Election) -> anyhow::Result<LeaseManager> {
    LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.lease_duration.as_secs().max(1))
        // The holder renews once per retry period (the crate renews `grace` before expiry).
        .with_grace(
            election
                .lease_duration
                .saturating_sub(election.retry_period)
                .as_secs(),
        )
        .build()
        .await
        .with_context(|| {
            format!(
                "reading the Lease {}/{}",
                election.namespace, election.lease_name
            )
        })
}

/// Renews the Lease until another replica holds it. An API error is not a loss by itself:
/// the fence decides, by the renew deadline, whether this replica still leads.
async fn keep_renewing(manager: &LeaseManager, election: &Election) {
    loop {
        match manager.changed().await {
            Ok(false) => return,
            Ok(true) => {}
            Err(error) => {
                warn!(%error, "renewing the leader Lease");
                tokio::time::sleep(election.retry_period).await;
            }
        }
    }
}

/// Tries for the Lease once per retry period, with a fresh view each time; `None` when asked
/// to shut down first.
async fn acquire(
    client: &Client,
    election: &Election,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<LeaseManager>> {
    loop {
        let started = Instant::now();
        let attempt = async {
            let manager = manager(client, election).await?;
            let won = tokio::time::timeout(election.retry_period, manager.changed()).await;
            anyhow::Ok(matches!(won, Ok(Ok(true))).then_some(manager))
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(None),
            result = attempt => match result {
                Ok(Some(manager)) => return Ok(Some(manager)),
                Ok(None) => {}
                Err(error) => warn!(error = %format!("{error:#}"), "leader election"),
            },
        }
        // One attempt per retry period: an attempt that waited on a held Lease has used it.
        tokio::time::sleep(election.retry_period.saturating_sub(started.elapsed())).await;
    }
}

/// Reads the Lease back once per retry period and moves the fence to the last renewal plus
/// the renew deadline. Returns when the fence closes (no confirmed renewal in time, or
/// another holder).
async fn confirm_renewals(leases: &Api<Lease>, election: &Election, leadership: &Leadership) {
    loop {
        tokio::time::sleep(election.retry_period).await;
        // A read that hangs must not hold this loop: the fence closes by time either way, and
        // this replica should then stand by and try again. One slower than the renew deadline
        // could not keep the fence open.
        let read = tokio::time::timeout(election.renew_deadline, leases.get(&election.lease_name));
        match read.await {
            Err(_) => {
                warn!(timeout = ?election.renew_deadline, "reading the leader Lease timed out")
            }
            Ok(Err(error)) => warn!(%error, "reading the leader Lease"),
            Ok(Ok(lease)) => {
                let spec = lease.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(election.identity.as_str()) {
                    leadership.revoke();
                    return;
                }
                if let Some(renewed) = spec.renew_time {
                    let renewed = SystemTime::from(renewed.0);
                    let age = SystemTime::now()
                        .duration_since(renewed)
                        .unwrap_or(Duration::ZERO);
                    let remaining = election.renew_deadline.saturating_sub(age);
                    debug!(
                        ?age,
                        ?remaining,
                        "confirmed the leader Lease's last renewal"
                    );
                    leadership.confirm_until(Instant::now() + remaining);
                }
            }
        }
        if !leadership.is_leader() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_election_this_replica_always_leads() {
        assert!(Leadership::always().is_leader());
    }

    #[test]
    fn the_fence_closes_when_no_renewal_is_confirmed_in_time() {
        let leadership = Leadership::elected();
        assert!(!leadership.is_leader());
        leadership.confirm_until(Instant::now() + Duration::from_secs(60));
        assert!(leadership.is_leader());
        // An older confirmation never shortens the fence.
        leadership.confirm_until(Instant::now());
        assert!(leadership.is_leader());
        leadership.revoke();
        assert!(!leadership.is_leader());
        leadership.confirm_until(Instant::now());
        assert!(!leadership.is_leader());
    }
}
