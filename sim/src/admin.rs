//! The `/_sim/` admin API (not part of AWS): domains, S3 objects, faults, clock, call counts,
//! log, state dump, STS roles and sessions, and reset. JSON in and out; see sim/README.md.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::ClockSettings;
use crate::faults::{FaultConfig, FaultInjector, ScriptedFault};
use crate::journal::LogEntry;
use crate::s3::BucketSettings;
use crate::service::{Quotas, Sim};
use crate::state::DomainDecl;
use crate::sts::{StsRole, StsSession};

/// Body of `POST /_sim/reset` (optional; all default to true).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResetOptions {
    /// Keep domains declared through the admin API (false: back to the `--domain` flags).
    pub keep_domains: bool,
    /// Keep S3 objects (false: empty the object store).
    pub keep_objects: bool,
    /// Keep the STS roles declared through the admin API (false: back to the start-up ones,
    /// `SimConfig::sts_roles`). Issued sessions are always kept.
    pub keep_roles: bool,
}

impl Default for ResetOptions {
    fn default() -> Self {
        ResetOptions {
            keep_domains: true,
            keep_objects: true,
            keep_roles: true,
        }
    }
}

/// Body of `POST /_sim/sts/sessions/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeSessions {
    pub role_arn: String,
}

/// Body of `POST /_sim/clock/advance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advance {
    pub ms: u64,
}

/// Body of `POST /_sim/faults/script`: one fault for the next unscripted call of `operation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptRequest {
    pub operation: String,
    pub fault: ScriptedFault,
}

/// Routes to nest under `/_sim`; the caller supplies the state.
pub fn router() -> Router<Sim> {
    Router::new()
        .route("/health", get(health))
        .route("/reset", post(reset))
        .route("/domains", get(domains).post(add_domain))
        .route(
            "/objects/{bucket}/{*key}",
            put(put_object).delete(delete_object).get(get_object),
        )
        .route("/buckets", get(buckets))
        .route("/buckets/{bucket}", put(set_bucket))
        .route("/faults", get(faults).put(set_faults))
        .route("/faults/script", post(script_fault))
        .route("/quotas", get(quotas).put(set_quotas))
        .route("/clock", get(clock).put(set_clock))
        .route("/clock/advance", post(advance_clock))
        .route("/calls", get(calls))
        .route("/log", get(log))
        .route("/packages", get(packages))
        .route(
            "/sts/roles",
            get(sts_roles).put(set_sts_roles).post(allow_sts_role),
        )
        .route("/sts/roles/{*arn}", delete(remove_sts_role))
        .route("/sts/sessions", get(sts_sessions))
        .route("/sts/sessions/revoke", post(revoke_sts_sessions))
        .route("/sts/log", get(sts_log))
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
}

/// Parses an optional JSON body (empty means the type's default).
fn body_or_default<T: for<'de> Deserialize<'de> + Default>(bytes: &[u8]) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON body: {e}"))
}

async fn health() -> Json<Value> {
    Json(json!({ "ok": true }))
}

async fn reset(State(sim): State<Sim>, body: Bytes) -> Response {
    let options: ResetOptions = match body_or_default(&body) {
        Ok(o) => o,
        Err(message) => return bad_request(message),
    };
    sim.lock().reset(
        options.keep_domains,
        options.keep_objects,
        options.keep_roles,
    );
    Json(json!({ "reset": true })).into_response()
}

async fn domains(State(sim): State<Sim>) -> Json<Vec<DomainDecl>> {
    Json(sim.lock().domains.clone())
}

async fn add_domain(State(sim): State<Sim>, body: Bytes) -> Response {
    let mut decl: DomainDecl = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return bad_request(format!("invalid domain: {e}")),
    };
    if let Err(e) = crate::validate::domain_name("name", &decl.name) {
        return bad_request(e.to_string());
    }
    let mut service = sim.lock();
    match decl.region.as_deref() {
        None => decl.region = Some(service.settings.default_region.clone()),
        // "*": the domain exists in every region, like those of the --domain flags.
        Some("*") => decl.region = None,
        Some(_) => {}
    }
    service.declare_domain(decl.clone());
    let account = decl
        .account
        .unwrap_or_else(|| service.settings.default_account.clone());
    Json(DomainDecl {
        account: Some(account),
        ..decl
    })
    .into_response()
}

async fn put_object(
    State(sim): State<Sim>,
    Path((bucket, key)): Path<(String, String)>,
    body: Bytes,
) -> Json<Value> {
    let mut service = sim.lock();
    let now = service.now();
    let object = service.objects.put(&bucket, &key, body, now);
    service.dirty = true;
    Json(json!({
        "bucket": bucket,
        "key": key,
        "etag": object.etag,
        "versionId": object.version_id,
    }))
}

async fn get_object(
    State(sim): State<Sim>,
    Path((bucket, key)): Path<(String, String)>,
) -> Response {
    match sim.lock().objects.get(&bucket, &key) {
        Some(o) => o.bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn delete_object(
    State(sim): State<Sim>,
    Path((bucket, key)): Path<(String, String)>,
) -> Json<Value> {
    let mut service = sim.lock();
    let now = service.now();
    let deleted = service.objects.delete(&bucket, &key, now);
    service.dirty = true;
    Json(json!({ "deleted": deleted }))
}

async fn buckets(State(sim): State<Sim>) -> Json<BTreeMap<String, BucketSettings>> {
    Json(sim.lock().objects.buckets())
}

/// Replaces a bucket's settings (region, versioning, denied keys).
async fn set_bucket(State(sim): State<Sim>, Path(bucket): Path<String>, body: Bytes) -> Response {
    let settings: BucketSettings = match body_or_default(&body) {
        Ok(s) => s,
        Err(message) => return bad_request(message),
    };
    let mut service = sim.lock();
    service.objects.set_settings(&bucket, settings.clone());
    service.dirty = true;
    Json(settings).into_response()
}

async fn faults(State(sim): State<Sim>) -> Json<FaultConfig> {
    Json(sim.lock().faults.config().clone())
}

/// Replaces the whole fault configuration and restarts the RNG from its seed.
async fn set_faults(State(sim): State<Sim>, body: Bytes) -> Response {
    let config: FaultConfig = match body_or_default(&body) {
        Ok(c) => c,
        Err(message) => return bad_request(message),
    };
    if let Err(message) = config.check() {
        return bad_request(message);
    }
    sim.lock().faults = FaultInjector::new(config.clone());
    Json(config).into_response()
}

/// Appends one fault to an operation's script; the rest of the configuration and the RNG
/// are left alone. Answers the whole configuration.
async fn script_fault(State(sim): State<Sim>, body: Bytes) -> Response {
    let request: ScriptRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(format!(
                "expected {{\"operation\": NAME, \"fault\": {{\"kind\": …}}}}: {e}"
            ));
        }
    };
    let mut service = sim.lock();
    if let Err(message) = service
        .faults
        .push_script(&request.operation, request.fault)
    {
        return bad_request(message);
    }
    Json(service.faults.config().clone()).into_response()
}

async fn quotas(State(sim): State<Sim>) -> Json<Quotas> {
    Json(sim.lock().quotas)
}

/// Replaces the quotas; they apply to calls from now on (packages and associations that
/// already exist are kept, also above a lowered quota).
async fn set_quotas(State(sim): State<Sim>, body: Bytes) -> Response {
    let quotas: Quotas = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => {
            return bad_request(format!(
                "expected {{\"packagesPerRegion\": N, \"packagesPerDomain\": N}}: {e}"
            ));
        }
    };
    sim.lock().quotas = quotas;
    Json(quotas).into_response()
}

async fn clock(State(sim): State<Sim>) -> Json<ClockSettings> {
    Json(sim.lock().clock.settings())
}

async fn set_clock(State(sim): State<Sim>, body: Bytes) -> Response {
    let settings: ClockSettings = match body_or_default(&body) {
        Ok(s) => s,
        Err(message) => return bad_request(message),
    };
    let mut service = sim.lock();
    service.clock.apply(&settings);
    Json(service.clock.settings()).into_response()
}

async fn advance_clock(State(sim): State<Sim>, body: Bytes) -> Response {
    let advance: Advance = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(format!("expected {{\"ms\": N}}: {e}")),
    };
    let mut service = sim.lock();
    service.clock.advance(advance.ms);
    service.settle();
    Json(service.clock.settings()).into_response()
}

async fn calls(State(sim): State<Sim>) -> Json<BTreeMap<String, u64>> {
    Json(sim.lock().journal.calls())
}

async fn log(State(sim): State<Sim>) -> Json<Vec<LogEntry>> {
    let mut service = sim.lock();
    service.settle();
    Json(service.journal.entries())
}

/// Every (account, region) with its packages and associations as the API would show them.
async fn packages(State(sim): State<Sim>) -> Json<Value> {
    let mut service = sim.lock();
    service.settle();
    let now = service.now();
    let scopes: Vec<Value> = service
        .regions
        .iter()
        .map(|(scope, region)| {
            let packages: Vec<Value> = region
                .packages
                .iter()
                .map(|p| {
                    json!({
                        "details": p.details(now),
                        "history": p.history(now),
                        "revisions": p.revisions.iter().map(|r| json!({
                            "version": r.version_label(),
                            "status": r.status(now).0,
                            "etag": r.etag,
                            "versionId": r.version_id,
                            "commitMessage": r.commit_message,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let associations: Vec<Value> = region
                .associations
                .iter()
                .flat_map(|(domain, list)| {
                    list.iter().filter_map(|a| {
                        let package = region.package(&a.package_id)?;
                        serde_json::to_value(a.details(domain, package, now)).ok()
                    })
                })
                .collect();
            json!({
                "account": scope.account,
                "region": scope.region,
                "packages": packages,
                "associations": associations,
            })
        })
        .collect();
    Json(json!({ "scopes": scopes }))
}

async fn sts_roles(State(sim): State<Sim>) -> Json<Vec<StsRole>> {
    Json(sim.lock().sts.roles().to_vec())
}

/// Replaces every assumable role; answers the list.
async fn set_sts_roles(State(sim): State<Sim>, body: Bytes) -> Response {
    let roles: Vec<StsRole> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("expected [{{\"roleArn\": …}}, …]: {e}")),
    };
    let mut service = sim.lock();
    if let Err(message) = service.sts.set_roles(roles) {
        return bad_request(message);
    }
    service.dirty = true;
    Json(service.sts.roles().to_vec()).into_response()
}

/// Adds one role (or replaces the declaration of the same ARN); answers the list.
async fn allow_sts_role(State(sim): State<Sim>, body: Bytes) -> Response {
    let role: StsRole = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("expected {{\"roleArn\": …}}: {e}")),
    };
    let mut service = sim.lock();
    if let Err(message) = service.sts.allow(role) {
        return bad_request(message);
    }
    service.dirty = true;
    Json(service.sts.roles().to_vec()).into_response()
}

/// `DELETE /_sim/sts/roles/{arn}`: the role can no longer be assumed.
async fn remove_sts_role(State(sim): State<Sim>, Path(arn): Path<String>) -> Json<Value> {
    let mut service = sim.lock();
    let removed = service.sts.remove(&arn);
    service.dirty = true;
    Json(json!({ "removed": removed }))
}

async fn sts_sessions(State(sim): State<Sim>) -> Json<Vec<StsSession>> {
    Json(sim.lock().sts.sessions())
}

/// Denies every call signed with a session of the role issued so far.
async fn revoke_sts_sessions(State(sim): State<Sim>, body: Bytes) -> Response {
    let request: RevokeSessions = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("expected {{\"roleArn\": …}}: {e}")),
    };
    let mut service = sim.lock();
    let revoked = service
        .sts
        .revoke_sessions(&request.role_arn, crate::sts::real_now_ms());
    service.dirty = true;
    Json(json!({ "revoked": revoked })).into_response()
}

/// The STS entries of the call log.
async fn sts_log(State(sim): State<Sim>) -> Json<Vec<LogEntry>> {
    let entries = sim.lock().journal.entries();
    Json(
        entries
            .into_iter()
            .filter(|e| e.kind == crate::journal::EntryKind::Sts)
            .collect(),
    )
}
