//! The OpenSearchPackageRole controller: assumes each role (STS AssumeRole, with the session
//! of the first namespace it selects, as that namespace's objects do; `ospkg-check` with an
//! empty namespace tag when it selects none) when it changes and every check interval, and
//! writes whether that worked to its status (`Ready`, `observedGeneration`, `accountID`).
//!
//! The status changes only when the answer does, so a settled role costs one AssumeRole per
//! interval and no writes. Objects of the role's namespaces are woken when its readiness
//! changes (see [`super::Tenancy`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::grant;
use crate::backend::identity::role_account;
use crate::backend::{BackendError, PackageBackend, RoleSession};
use crate::controller::Context;
use crate::crd::{FIELD_MANAGER, OpenSearchPackageRole, OpenSearchPackageRoleStatus};

/// After a check that could not reach STS.
const RETRY: Duration = Duration::from_secs(30);

/// What the role reconciles share: the package controllers' context (client, backend,
/// leadership, the tenancy caches) and the check schedule.
pub struct RoleContext<B> {
    pub ctx: Arc<Context<B>>,
    /// How often a role is assumed again while nothing changes.
    pub interval: Duration,
    /// The generation and time of each role's last check, by UID.
    checked: Mutex<HashMap<String, (Option<i64>, Instant)>>,
}

impl<B> RoleContext<B> {
    pub fn new(ctx: Arc<Context<B>>, interval: Duration) -> Self {
        Self {
            ctx,
            interval,
            checked: Mutex::new(HashMap::new()),
        }
    }

    /// How long until the role's next check is due; `None` when it is due now.
    fn not_yet_due(&self, role: &OpenSearchPackageRole) -> Option<Duration> {
        let checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        let (generation, at) = checked.get(&role.uid()?)?;
        (*generation == role.metadata.generation)
            .then(|| self.interval.checked_sub(at.elapsed()))
            .flatten()
    }

    fn record_check(&self, role: &OpenSearchPackageRole) {
        if let Some(uid) = role.uid() {
            self.checked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(uid, (role.metadata.generation, Instant::now()));
        }
    }
}

/// The verdict of one check.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    status: &'static str,
    reason: &'static str,
    message: String,
}

/// Entry point for kube-runtime.
pub async fn reconcile<B: PackageBackend>(
    role: Arc<OpenSearchPackageRole>,
    ctx: Arc<RoleContext<B>>,
) -> Result<Action, kube::Error> {
    if !ctx.ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    // Several installations of the operator may share a cluster, each watching its own
    // namespaces: a role is checked by those whose namespaces it selects.
    match ctx.ctx.tenancy.selects_watched(&role) {
        Some(true) => {}
        Some(false) => return Ok(Action::requeue(ctx.interval)),
        None => return Ok(Action::requeue(RETRY)),
    }
    if let Some(remaining) = ctx.not_yet_due(&role) {
        return Ok(Action::requeue(remaining));
    }
    let verdict = check(&role, &ctx).await;
    let retry = verdict.reason == "CheckFailed";
    write_status(&role, &ctx, verdict).await?;
    if retry {
        return Ok(Action::requeue(RETRY));
    }
    ctx.record_check(&role);
    Ok(Action::requeue(ctx.interval))
}

pub fn error_policy<B>(
    role: Arc<OpenSearchPackageRole>,
    error: &kube::Error,
    _ctx: Arc<RoleContext<B>>,
) -> Action {
    warn!(role = %role.name_any(), %error, "writing the role's status failed");
    Action::requeue(RETRY)
}

async fn check<B: PackageBackend>(role: &OpenSearchPackageRole, ctx: &RoleContext<B>) -> Verdict {
    let mut problems = grant::invalid_patterns(role);
    if let Err(error) = Selector::try_from(role.spec.namespace_selector.clone()) {
        problems.push(format!("spec.namespaceSelector is invalid: {error}"));
    }
    if role_account(&role.spec.role_arn).is_none() {
        problems.push(format!(
            "spec.roleARN {:?} is not an IAM role ARN",
            role.spec.role_arn
        ));
    }
    if !problems.is_empty() {
        return Verdict {
            status: "False",
            reason: "InvalidSpec",
            message: problems.join("; "),
        };
    }
    // The session of a namespace the role serves, so a trust policy that limits the
    // `kubernetes-namespace` tag judges the check as it judges that namespace's objects.
    let session = RoleSession {
        role_arn: role.spec.role_arn.clone(),
        external_id: role.spec.external_id.clone(),
        namespace: ctx.ctx.tenancy.selected_namespace(role).unwrap_or_default(),
    };
    match ctx
        .ctx
        .backend
        .check_role(&session, &ctx.ctx.default_region)
        .await
    {
        Ok(()) => Verdict {
            status: "True",
            reason: "Assumable",
            message: format!("the operator assumed {}", role.spec.role_arn),
        },
        Err(BackendError::Credentials(message)) => {
            info!(role = %role.name_any(), %message, "STS refused the role");
            Verdict {
                status: "False",
                reason: "AssumeRoleFailed",
                message: format!(
                    "STS refused to let the operator assume {}: {message}",
                    role.spec.role_arn
                ),
            }
        }
        Err(other) => Verdict {
            status: "Unknown",
            reason: "CheckFailed",
            message: format!("could not ask STS (retrying): {other}"),
        },
    }
}

async fn write_status<B>(
    role: &OpenSearchPackageRole,
    ctx: &RoleContext<B>,
    verdict: Verdict,
) -> Result<(), kube::Error> {
    let before = role.status.clone().unwrap_or_default();
    let previous = before.conditions.iter().find(|c| c.type_ == "Ready");
    let unchanged = previous.is_some_and(|c| {
        c.status == verdict.status && c.reason == verdict.reason && c.message == verdict.message
    });
    let condition = Condition {
        type_: "Ready".into(),
        status: verdict.status.into(),
        reason: verdict.reason.into(),
        message: verdict.message,
        observed_generation: role.metadata.generation,
        last_transition_time: match previous {
            Some(c) if c.status == verdict.status => c.last_transition_time.clone(),
            _ => Time(jiff::Timestamp::now()),
        },
    };
    let status = OpenSearchPackageRoleStatus {
        observed_generation: role.metadata.generation,
        account_id: role_account(&role.spec.role_arn).map(str::to_owned),
        conditions: vec![condition],
    };
    if unchanged && before == status {
        return Ok(());
    }
    if !ctx.ctx.leadership.is_leader() {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": OpenSearchPackageRole::api_version(&()),
        "kind": OpenSearchPackageRole::kind(&()),
        "status": status,
    });
    Api::<OpenSearchPackageRole>::all(ctx.ctx.client.clone())
        .patch_status(
            &role.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
    Ok(())
}
