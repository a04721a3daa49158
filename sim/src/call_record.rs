//! One API call's record: what the call log keeps of it, written when its answer is built
//! (or when the connection is dropped instead of answering).

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::ApiError;
use crate::journal::{EntryKind, LogEntry};
use crate::server::{error_response, request_id};
use crate::service::Sim;
use crate::state::Scope;

/// What the call log records of one call, filled in as the call proceeds.
pub(crate) struct CallRecord {
    pub(crate) operation: &'static str,
    pub(crate) scope: Scope,
    pub(crate) access_key_id: Option<String>,
    pub(crate) package_id: Option<String>,
    pub(crate) domain_name: Option<String>,
    pub(crate) fault: Option<&'static str>,
    pub(crate) effect: bool,
    pub(crate) commit_message: Option<String>,
    pub(crate) lookup: bool,
    /// The assumed-role ARN of a caller signing with session credentials.
    pub(crate) caller_arn: Option<String>,
}

impl CallRecord {
    /// Logs the call and builds its HTTP answer.
    pub(crate) fn finish(self, sim: &Sim, result: Result<Value, ApiError>) -> Response {
        let (status, error_code) = match &result {
            Ok(_) => (StatusCode::OK, None),
            Err(e) => (e.status(), Some(e.code().to_string())),
        };
        self.log(sim, Some(status.as_u16()), error_code);
        match result {
            Ok(value) => {
                let mut response = (StatusCode::OK, axum::Json(value)).into_response();
                response
                    .headers_mut()
                    .insert("x-amzn-RequestId", request_id());
                response
            }
            Err(e) => error_response(&e),
        }
    }

    /// Logs the call (without a status: none is sent) and builds an answer that makes the
    /// server drop the connection before writing anything.
    pub(crate) fn close(self, sim: &Sim) -> Response {
        self.log(sim, None, None);
        Response::new(axum::body::Body::new(AbortedBody))
    }

    fn log(self, sim: &Sim, status: Option<u16>, error_code: Option<String>) {
        let mut service = sim.lock();
        let at_ms = service.elapsed(service.now());
        service.journal.push(LogEntry {
            seq: 0,
            at_ms,
            kind: EntryKind::Call,
            operation: Some(self.operation.to_string()),
            account: self.scope.account,
            region: self.scope.region,
            access_key_id: self.access_key_id,
            package_id: self.package_id,
            domain_name: self.domain_name,
            bucket: None,
            key: None,
            status,
            error_code,
            association_status: None,
            fault: self.fault.map(str::to_string),
            effect: self.effect,
            commit_message: self.commit_message,
            lookup: self.lookup,
            caller_arn: self.caller_arn,
            ..LogEntry::default()
        });
    }
}

/// A response body that fails on its first poll. hyper then ends the connection before
/// flushing the status line it has buffered, so the client reads no response at all (an
/// empty reply, as when the service's connection breaks after it acted).
struct AbortedBody;

impl hyper::body::Body for AbortedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection closed by ospkg-sim (closeAfterEffect)",
        ))))
    }
}
