//! `AdminClient`: the `/_sim/` admin API over HTTP, for tests of this and other crates and
//! for scripts; works against an in-process simulator or the binary alike.

use std::collections::BTreeMap;

use axum::body::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admin::{Advance, ResetOptions, RevokeSessions, ScriptRequest};
use crate::clock::ClockSettings;
use crate::faults::{FaultConfig, ScriptedFault};
use crate::journal::LogEntry;
use crate::s3::BucketSettings;
use crate::service::Quotas;
use crate::state::DomainDecl;
use crate::sts::{StsRole, StsSession};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid admin URL {0}")]
    Url(String),
    #[error("admin request failed: {0}")]
    Transport(String),
    #[error("admin API answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("admin API answer is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Clone, Debug)]
pub struct AdminClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// `base_url` is the simulator's endpoint, e.g. `http://127.0.0.1:4510`.
    pub fn new(base_url: impl Into<String>) -> Self {
        let base = base_url.into().trim_end_matches('/').to_string();
        AdminClient {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Bytes, AdminError> {
        let url = format!("{}/_sim{path}", self.base);
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| AdminError::Url(url.clone()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| AdminError::Transport(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| AdminError::Transport(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(AdminError::Status {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok(bytes)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, AdminError> {
        let body = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let bytes = self.send(method, path, body).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    pub async fn health(&self) -> Result<(), AdminError> {
        self.send(Method::GET, "/health", Vec::new())
            .await
            .map(drop)
    }

    /// Stores an object (the S3 listener serves it too); returns its quoted MD5 ETag.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<String, AdminError> {
        let bytes = self
            .send(
                Method::PUT,
                &format!("/objects/{bucket}/{key}"),
                bytes.into(),
            )
            .await?;
        let answer: Value = serde_json::from_slice(&bytes)?;
        Ok(answer["etag"].as_str().unwrap_or_default().to_string())
    }

    /// Stores an object; returns its ETag and, in a versioned bucket, its VersionId.
    pub async fn put_object_version(
        &self,
        bucket: &str,
        key: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<(String, Option<String>), AdminError> {
        let bytes = self
            .send(
                Method::PUT,
                &format!("/objects/{bucket}/{key}"),
                bytes.into(),
            )
            .await?;
        let answer: Value = serde_json::from_slice(&bytes)?;
        let etag = answer["etag"].as_str().unwrap_or_default().to_string();
        Ok((etag, answer["versionId"].as_str().map(str::to_string)))
    }

    /// Replaces a bucket's settings: its region, versioning, denied keys.
    pub async fn set_bucket(
        &self,
        bucket: &str,
        settings: &BucketSettings,
    ) -> Result<BucketSettings, AdminError> {
        self.json(Method::PUT, &format!("/buckets/{bucket}"), Some(settings))
            .await
    }

    pub async fn buckets(&self) -> Result<BTreeMap<String, BucketSettings>, AdminError> {
        self.json(Method::GET, "/buckets", None::<&()>).await
    }

    /// Deletes an object (in a versioned bucket a delete marker takes its place).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), AdminError> {
        self.send(
            Method::DELETE,
            &format!("/objects/{bucket}/{key}"),
            Vec::new(),
        )
        .await
        .map(drop)
    }

    /// Declares a domain; `region: None` means the simulator's default region, `"*"` every
    /// region; `account: None` the default account.
    pub async fn add_domain(&self, domain: &DomainDecl) -> Result<DomainDecl, AdminError> {
        self.json(Method::POST, "/domains", Some(domain)).await
    }

    pub async fn domains(&self) -> Result<Vec<DomainDecl>, AdminError> {
        self.json(Method::GET, "/domains", None::<&()>).await
    }

    /// Replaces the fault configuration (and restarts its RNG from `seed`).
    pub async fn set_faults(&self, faults: &FaultConfig) -> Result<FaultConfig, AdminError> {
        self.json(Method::PUT, "/faults", Some(faults)).await
    }

    /// Queues `fault` for the next call of `operation` that has no earlier scripted fault
    /// (behind those already queued), leaving the rest of the configuration as it is.
    /// Answers the whole configuration.
    pub async fn script_fault(
        &self,
        operation: &str,
        fault: ScriptedFault,
    ) -> Result<FaultConfig, AdminError> {
        let request = ScriptRequest {
            operation: operation.to_string(),
            fault,
        };
        self.json(Method::POST, "/faults/script", Some(&request))
            .await
    }

    pub async fn faults(&self) -> Result<FaultConfig, AdminError> {
        self.json(Method::GET, "/faults", None::<&()>).await
    }

    /// The quotas in force (packages per (account, region), associations per domain).
    pub async fn quotas(&self) -> Result<Quotas, AdminError> {
        self.json(Method::GET, "/quotas", None::<&()>).await
    }

    /// Replaces the quotas for calls from now on; `reset` brings back the start-up ones.
    pub async fn set_quotas(&self, quotas: &Quotas) -> Result<Quotas, AdminError> {
        self.json(Method::PUT, "/quotas", Some(quotas)).await
    }

    pub async fn set_clock(&self, settings: &ClockSettings) -> Result<ClockSettings, AdminError> {
        self.json(Method::PUT, "/clock", Some(settings)).await
    }

    pub async fn clock(&self) -> Result<ClockSettings, AdminError> {
        self.json(Method::GET, "/clock", None::<&()>).await
    }

    pub async fn advance_clock(&self, ms: u64) -> Result<ClockSettings, AdminError> {
        self.json(Method::POST, "/clock/advance", Some(&Advance { ms }))
            .await
    }

    /// Requests that reached each operation, faulted or refused ones included.
    pub async fn calls(&self) -> Result<BTreeMap<String, u64>, AdminError> {
        self.json(Method::GET, "/calls", None::<&()>).await
    }

    pub async fn log(&self) -> Result<Vec<LogEntry>, AdminError> {
        self.json(Method::GET, "/log", None::<&()>).await
    }

    /// The state dump of `GET /_sim/packages`.
    pub async fn packages(&self) -> Result<Value, AdminError> {
        self.json(Method::GET, "/packages", None::<&()>).await
    }

    /// The roles the STS lets callers assume.
    pub async fn sts_roles(&self) -> Result<Vec<StsRole>, AdminError> {
        self.json(Method::GET, "/sts/roles", None::<&()>).await
    }

    /// Replaces every assumable role; answers the list.
    pub async fn set_sts_roles(&self, roles: &[StsRole]) -> Result<Vec<StsRole>, AdminError> {
        self.json(Method::PUT, "/sts/roles", Some(&roles)).await
    }

    /// Lets callers assume one more role (or replaces the declaration of the same ARN);
    /// answers the list.
    pub async fn allow_role(&self, role: &StsRole) -> Result<Vec<StsRole>, AdminError> {
        self.json(Method::POST, "/sts/roles", Some(role)).await
    }

    /// AssumeRole of this role is AccessDenied from now on; answers whether it was declared.
    /// Sessions already issued stay valid (see [`AdminClient::revoke_role_sessions`]).
    pub async fn revoke_role(&self, role_arn: &str) -> Result<bool, AdminError> {
        let answer: Value = self
            .json(
                Method::DELETE,
                &format!("/sts/roles/{role_arn}"),
                None::<&()>,
            )
            .await?;
        Ok(answer["removed"].as_bool().unwrap_or(false))
    }

    /// Denies every call signed with a session of this role issued so far; answers how many
    /// unexpired sessions that revoked.
    pub async fn revoke_role_sessions(&self, role_arn: &str) -> Result<u64, AdminError> {
        let request = RevokeSessions {
            role_arn: role_arn.to_string(),
        };
        let answer: Value = self
            .json(Method::POST, "/sts/sessions/revoke", Some(&request))
            .await?;
        Ok(answer["revoked"].as_u64().unwrap_or(0))
    }

    /// The sessions the STS has issued (and still remembers), oldest first.
    pub async fn sts_sessions(&self) -> Result<Vec<StsSession>, AdminError> {
        self.json(Method::GET, "/sts/sessions", None::<&()>).await
    }

    /// The STS calls of the log (entries of kind [`crate::EntryKind::Sts`]), oldest first.
    pub async fn sts_log(&self) -> Result<Vec<LogEntry>, AdminError> {
        self.json(Method::GET, "/sts/log", None::<&()>).await
    }

    pub async fn reset(&self) -> Result<(), AdminError> {
        self.reset_with(ResetOptions::default()).await
    }

    pub async fn reset_with(&self, options: ResetOptions) -> Result<(), AdminError> {
        self.json::<Value>(Method::POST, "/reset", Some(&options))
            .await
            .map(drop)
    }
}
