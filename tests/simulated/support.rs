//! What the simulated tier shares: the simulator with the operator's backend configured as
//! shipped, a mock Kubernetes API (tower-test) that keeps the object as the API server would
//! (status patches applied, resourceVersion and generation moving) and records every request,
//! and a harness that reconciles one object the way kube-runtime would, crashes included.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::runtime::reflector;
use kube::{Client, Resource};
use ospkg::backend::Operation;
use ospkg::backend::aws::{AwsBackend, Timeouts};
use ospkg::backend::metered::Metered;
use ospkg::backend::s3::S3Backend;
use ospkg::controller::{Context, DEFAULT_AWS_RATE, reconcile};
use ospkg::crd::{FINALIZER, OpenSearchPackage, OpenSearchPackageStatus};
use ospkg::leader::Leadership;
use ospkg::metrics::Metrics;
use ospkg::source::{FollowSettings, Follower};
use ospkg::vocabulary::ConditionType;
use ospkg_sim::{Durations, RunningSim, ScriptedFault, SimConfig};
use serde_json::{Value, json};

pub const REGION: &str = "us-east-1";
pub const NAMESPACE: &str = "search";
pub const NAME: &str = "product-synonyms";
pub const BUCKET: &str = "acme-dicts";
pub const KEY: &str = "synonyms.txt";
pub const OBJECT_PATH: &str =
    "/apis/ospkg.dev/v1alpha1/namespaces/search/opensearchpackages/product-synonyms";

/// The AWS side of a test: the simulator and the operator's backend configured as shipped.
pub struct Aws {
    pub sim: RunningSim,
    pub backend: AwsBackend,
    timeouts: Timeouts,
}

impl Aws {
    /// Imports and associations finish at once.
    pub async fn immediate() -> Self {
        Self::start(SimConfig::default().durations(Durations::instant())).await
    }

    /// Time stands still: imports stay COPYING until the test advances the clock.
    pub async fn held() -> Self {
        Self::start(SimConfig::default().manual_clock()).await
    }

    pub async fn start(config: SimConfig) -> Self {
        Self::start_with(config, Timeouts::default()).await
    }

    pub async fn start_with(config: SimConfig, timeouts: Timeouts) -> Self {
        let sim = ospkg_sim::start(config).await.expect("simulator starts");
        // The file every test object imports.
        sim.admin()
            .put_object(BUCKET, KEY, b"tv, television\n".to_vec())
            .await
            .expect("object stored");
        let backend = AwsBackend::for_endpoint_with(&sim.endpoint(), timeouts).await;
        Self {
            sim,
            backend,
            timeouts,
        }
    }

    /// Another backend on the same simulator, for a reconcile's context.
    pub async fn backend(&self) -> AwsBackend {
        AwsBackend::for_endpoint_with(&self.sim.endpoint(), self.timeouts).await
    }

    /// Requests the simulator has seen for this operation.
    pub async fn calls(&self, operation: Operation) -> u64 {
        let calls = self.sim.admin().calls().await.expect("call counts");
        calls.get(operation.as_str()).copied().unwrap_or_default()
    }

    /// All requests the simulator has seen.
    pub async fn total_calls(&self) -> u64 {
        let calls = self.sim.admin().calls().await.expect("call counts");
        calls.values().sum()
    }

    /// The sequence number of the newest entry in the simulator's call log.
    pub async fn log_position(&self) -> u64 {
        let log = self.sim.admin().log().await.expect("call log");
        log.last().map(|e| e.seq).unwrap_or_default()
    }

    /// Every call after log position `after` that changes something (anything but the three
    /// reads), as "Operation package/domain".
    pub async fn changing_calls_since(&self, after: u64) -> Vec<String> {
        let log = self.sim.admin().log().await.expect("call log");
        log.into_iter()
            .filter(|e| e.seq > after && e.kind == ospkg_sim::EntryKind::Call)
            .filter_map(|e| {
                let name = e.operation.clone()?;
                let read = name.parse::<Operation>().is_ok_and(|op| !op.is_mutating());
                (!read).then(|| {
                    format!(
                        "{name} {}/{}",
                        e.package_id.unwrap_or_default(),
                        e.domain_name.unwrap_or_default()
                    )
                })
            })
            .collect()
    }
}

/// One request the reconcile sent to the API server.
#[derive(Debug, Clone)]
pub struct Sent {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// The mock API server's state: the object as stored, and every request.
#[derive(Clone)]
pub struct MockApi {
    object: Arc<Mutex<Value>>,
    sent: Arc<Mutex<Vec<Sent>>>,
    /// The status code the next request for the object is refused with, if any.
    refuse_next: Arc<Mutex<Option<StatusCode>>>,
}

impl MockApi {
    /// The object as the API server holds it now (what the watch would deliver).
    pub fn object(&self) -> OpenSearchPackage {
        serde_json::from_value(self.object.lock().expect("object").clone()).expect("object")
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("log").clone()
    }

    /// Refuses the next request for the object with `code` (and changes nothing).
    pub fn fail_next(&self, code: u16) {
        *self.refuse_next.lock().expect("refusal") =
            Some(StatusCode::from_u16(code).expect("status code"));
    }

    /// A user's edit: a changed spec moves the generation, every write the resourceVersion.
    pub fn edit(&self, change: impl FnOnce(&mut OpenSearchPackage)) {
        let mut stored = self.object.lock().expect("object");
        let mut obj: OpenSearchPackage = serde_json::from_value(stored.clone()).expect("object");
        let before = obj.spec.clone();
        change(&mut obj);
        if obj.spec != before {
            obj.metadata.generation = Some(obj.metadata.generation.unwrap_or(1) + 1);
        }
        *stored = serde_json::to_value(&obj).expect("object");
        bump(&mut stored);
    }
}

fn bump(object: &mut Value) {
    let rv: u64 = object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    object["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
}

/// A mock API server that applies status patches and JSON patches to the stored object,
/// answers with it, and records every request.
pub fn mock_client(object: OpenSearchPackage) -> (Client, MockApi) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = MockApi {
        object: Arc::new(Mutex::new(serde_json::to_value(&object).expect("object"))),
        sent: Arc::new(Mutex::new(Vec::new())),
        refuse_next: Arc::new(Mutex::new(None)),
    };
    let state = api.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .or_else(|_| serde_yaml::from_slice(&bytes))
                    .expect("JSON or YAML body")
            };
            let path = parts.uri.path().to_owned();
            let content_type = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            state.sent.lock().expect("log").push(Sent {
                method: parts.method.to_string(),
                path: path.clone(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                content_type: content_type.clone(),
                body: body.clone(),
            });
            let object_request = path.starts_with("/apis/ospkg.dev/");
            let refusal = if object_request {
                state.refuse_next.lock().expect("refusal").take()
            } else {
                // Only the OpenSearchPackage lives here (no ConfigMaps, for one).
                (!path.contains("/events")).then_some(StatusCode::NOT_FOUND)
            };
            if let Some(code) = refusal {
                respond.send_response(status_response(code, &path));
                continue;
            }
            let reply = if path.contains("/events") {
                body
            } else {
                let mut stored = state.object.lock().expect("object");
                if path.ends_with("/status") {
                    stored["status"] = body["status"].clone();
                    bump(&mut stored);
                } else if content_type == "application/json-patch+json" {
                    // The API server treats a `test` of an absent list as null; this mock
                    // checks nothing and applies the changing operations.
                    let changes: Vec<Value> = body
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|op| op["op"] != "test")
                        .cloned()
                        .collect();
                    let patch: json_patch::Patch =
                        serde_json::from_value(Value::Array(changes)).expect("JSON patch");
                    json_patch::patch(&mut stored, &patch).expect("patch applies");
                    bump(&mut stored);
                }
                stored.clone()
            };
            let response = Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).expect("reply")))
                .expect("response");
            respond.send_response(response);
        }
    });
    (Client::new(service, "default"), api)
}

/// A Kubernetes `Status` failure answer with `code`.
fn status_response(code: StatusCode, path: &str) -> Response<Body> {
    let reason = code.canonical_reason().unwrap_or_default().replace(' ', "");
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::to_vec(&json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": reason, "code": code.as_u16(), "message": format!("{path}: {reason}"),
            }))
            .expect("reply"),
        ))
        .expect("response")
}

/// The backend as the operator runs it: the SDK backend behind the rate limiter per account and
/// region (at the default `--aws-rate-limit`), call metrics and the leader fence.
pub type Backend = Metered<AwsBackend>;

pub fn context(client: Client, backend: AwsBackend) -> Arc<Context<Backend>> {
    let leadership = Arc::new(Leadership::always());
    Arc::new(new_context(
        client,
        backend,
        Arc::new(Metrics::new()),
        leadership,
    ))
}

/// A context whose replica does not lead (yet): its fence is closed.
pub fn standby_context(client: Client, backend: AwsBackend) -> Arc<Context<Backend>> {
    let leadership = Arc::new(Leadership::elected());
    Arc::new(new_context(
        client,
        backend,
        Arc::new(Metrics::new()),
        leadership,
    ))
}

fn new_context(
    client: Client,
    backend: AwsBackend,
    metrics: Arc<Metrics>,
    leadership: Arc<Leadership>,
) -> Context<Backend> {
    let backend = Metered::new(backend, metrics.clone(), DEFAULT_AWS_RATE)
        .with_leadership(leadership.clone());
    let (store, _writer) = reflector::store::<OpenSearchPackage>();
    let reporter = Reporter {
        controller: "opensearch-package-operator".into(),
        instance: None,
    };
    Context::new(
        client,
        backend,
        reporter,
        metrics,
        REGION.into(),
        Duration::from_secs(600),
        vec![store],
    )
    .with_leadership(leadership)
}

/// A context whose objects follow their sources as `settings` say, reading the simulator's
/// S3 with the operator's S3 client (the metrics are the context's).
pub async fn following_context(
    client: Client,
    aws: &Aws,
    settings: FollowSettings,
) -> Arc<Context<Backend>> {
    let metrics = Arc::new(Metrics::new());
    let s3 = S3Backend::for_endpoint(&aws.sim.s3_endpoint(), metrics.clone()).await;
    let ctx = new_context(
        client,
        aws.backend().await,
        metrics,
        Arc::new(Leadership::always()),
    );
    Arc::new(ctx.with_source(Follower::new(settings, Some(Arc::new(s3)))))
}

/// A test object, `extra` merged over the defaults at the top level.
pub fn object(extra: Value) -> OpenSearchPackage {
    let mut value = json!({
        "apiVersion": "ospkg.dev/v1alpha1",
        "kind": "OpenSearchPackage",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": "0b1c2d3e",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {
            "packageType": "TXT-DICTIONARY",
            "source": {"s3BucketName": BUCKET, "s3Key": KEY},
        },
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut value, extra) {
        for (k, v) in extra {
            base.insert(k, v);
        }
    }
    serde_json::from_value(value).expect("object")
}

pub fn with_finalizer(mut obj: OpenSearchPackage) -> OpenSearchPackage {
    obj.meta_mut().finalizers = Some(vec![FINALIZER.into()]);
    obj
}

pub fn status_patches(sent: &[Sent]) -> Vec<&Sent> {
    sent.iter()
        .filter(|s| s.path == format!("{OBJECT_PATH}/status"))
        .collect()
}

/// One object reconciled the way kube-runtime would: each reconcile reads the object as the
/// API server holds it. A crash drops a reconcile in the middle of an AWS call and starts a
/// new process (a new context, with nothing remembered).
pub struct Harness {
    pub aws: Aws,
    pub api: MockApi,
    client: Client,
    pub ctx: Arc<Context<Backend>>,
    /// How objects follow their sources (the S3 client included), when they can.
    follow: Option<FollowSettings>,
}

impl Harness {
    pub async fn new(aws: Aws, obj: OpenSearchPackage) -> Self {
        let (client, api) = mock_client(obj);
        let ctx = context(client.clone(), aws.backend().await);
        Self {
            aws,
            api,
            client,
            ctx,
            follow: None,
        }
    }

    /// An operator that can follow sources (with an S3 client), configured with `settings`.
    pub async fn following(aws: Aws, obj: OpenSearchPackage, settings: FollowSettings) -> Self {
        let (client, api) = mock_client(obj);
        let ctx = following_context(client.clone(), &aws, settings).await;
        Self {
            aws,
            api,
            client,
            ctx,
            follow: Some(settings),
        }
    }

    /// One reconcile at the object's source check slot: its source is read.
    pub async fn reconcile_at_check(&self) {
        let obj = self.api.object();
        self.ctx.make_source_due(&obj);
        reconcile(Arc::new(obj), self.ctx.clone())
            .await
            .expect("reconcile");
    }

    /// One reconcile of the current object, as when its requeue timer fires.
    pub async fn reconcile(&self) {
        let obj = self.api.object();
        self.ctx.make_due(&obj);
        reconcile(Arc::new(obj), self.ctx.clone())
            .await
            .expect("reconcile");
    }

    /// The region observer's next listing (standing in for its resync timer), then a
    /// reconcile.
    pub async fn resync(&self) {
        let since = Some(std::time::Instant::now());
        // A failed listing is an answer too: the reconcile reports it.
        let _ = self
            .ctx
            .regions
            .listing(&self.ctx, &own_scope(REGION), since, None)
            .await;
        self.reconcile().await;
    }

    /// Reconciles until the object settles at its generation (Ready, or Stalled with
    /// `stalled_ok`), at most `rounds` times; returns it.
    pub async fn settle(&self, rounds: usize) -> OpenSearchPackage {
        for _ in 0..rounds {
            self.reconcile().await;
            let obj = self.api.object();
            if settled(&obj) {
                return obj;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let obj = self.api.object();
        panic!("did not settle: {:#?}", obj.status);
    }

    /// Makes the next `operation` call take effect and hold its answer, runs a reconcile
    /// until the call has reached the service, then drops it: the process died between the
    /// service acting and the operator hearing. A new process takes over.
    pub async fn crash_during(&mut self, operation: Operation) {
        let before = self.aws.calls(operation).await;
        self.aws
            .sim
            .admin()
            .script_fault(
                operation.as_str(),
                ScriptedFault::HoldAfterEffect { ms: 5_000 },
            )
            .await
            .expect("fault scripted");
        let obj = self.api.object();
        self.ctx.make_due(&obj);
        let run = reconcile(Arc::new(obj), self.ctx.clone());
        tokio::pin!(run);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            tokio::select! {
                result = &mut run => panic!("the reconcile ended before {operation} was called: {result:?}"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if self.aws.calls(operation).await > before {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{operation} was never called"
            );
        }
        self.restart().await;
    }

    /// A new operator process: nothing remembered but what the API server and AWS hold.
    pub async fn restart(&mut self) {
        self.ctx = match self.follow {
            Some(settings) => following_context(self.client.clone(), &self.aws, settings).await,
            None => context(self.client.clone(), self.aws.backend().await),
        };
    }
}

/// Ready or Stalled at the object's generation, with no call in flight.
pub fn settled(obj: &OpenSearchPackage) -> bool {
    let Some(status) = obj.status.as_ref() else {
        return false;
    };
    let generation = obj.metadata.generation;
    let stalled_now = status
        .condition(ConditionType::Stalled)
        .is_some_and(|c| c.status == "True" && c.observed_generation == generation);
    status.in_flight.is_none() && (status.is_ready_at(generation) || stalled_now)
}

pub fn status_of(obj: &OpenSearchPackage) -> OpenSearchPackageStatus {
    obj.status.clone().unwrap_or_default()
}

/// The operator's own identity in the simulator's default account, in `region`.
pub fn own_scope(region: &str) -> ospkg::backend::Scope {
    ospkg::backend::Scope::own("123456789012", region)
}
