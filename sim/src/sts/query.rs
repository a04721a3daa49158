//! STS's query protocol: which requests are STS's, their form parameters, `AssumeRole` and
//! `GetCallerIdentity`, and the XML answers and errors. AssumeRole's input is validated in
//! `input`.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::input::{assume_role_input, packed_policy_size};
use super::names::{iso8601, parse_role_arn, unique_id};
use super::{
    API_VERSION, CHAINED_MAX_DURATION, DEFAULT_DURATION, DEFAULT_MAX_SESSION_DURATION,
    MESSAGE_EXPIRED_TOKEN, MESSAGE_INVALID_TOKEN, StsSession, TokenError, XMLNS, real_now_ms,
};
use crate::error::ApiError;
use crate::journal::{EntryKind, LogEntry};
use crate::server::{self, Caller};
use crate::service::{Service, Sim};

/// An error as STS sends it: `<ErrorResponse>` XML with the status the code has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl StsError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        StsError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn validation(message: impl Into<String>) -> Self {
        StsError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }

    pub(super) fn invalid(field: &str, value: &str, constraint: &str) -> Self {
        StsError::validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    pub(super) fn missing(field: &str) -> Self {
        StsError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    }

    fn access_denied(message: impl Into<String>) -> Self {
        StsError::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    fn token(error: TokenError) -> Self {
        match error {
            TokenError::Invalid => StsError::new(
                StatusCode::FORBIDDEN,
                "InvalidClientTokenId",
                MESSAGE_INVALID_TOKEN,
            ),
            TokenError::Expired => {
                StsError::new(StatusCode::FORBIDDEN, "ExpiredToken", MESSAGE_EXPIRED_TOKEN)
            }
        }
    }

    /// STS's codes for the signature problems the package API reports as `…Exception`.
    fn from_signature(error: ApiError) -> Self {
        match error {
            ApiError::MissingAuthenticationToken(_) => StsError::new(
                StatusCode::FORBIDDEN,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ),
            ApiError::InvalidSignature(m) => {
                StsError::new(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", m)
            }
            other => StsError::new(
                StatusCode::BAD_REQUEST,
                "IncompleteSignature",
                other.to_string(),
            ),
        }
    }

    fn response(&self, request_id: &str) -> Response {
        let kind = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            self.code,
            xml_escape(&self.message)
        );
        xml_response(self.status, body, request_id)
    }
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-RequestId", id);
    }
    response
}

/// Whether a request outside `/_sim/` is for STS: the query protocol's `POST /` with a form
/// body (or an `Action` in the query string), or `GET /?Action=…`. Anything else goes to the
/// package API's routing as before.
pub fn is_sts_request(method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
    if uri.path() != "/" {
        return false;
    }
    let has_action = server::query_pairs(uri).iter().any(|(k, _)| k == "Action");
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    match *method {
        Method::POST => form || has_action,
        Method::GET => has_action,
        _ => false,
    }
}

/// `key=value&…` of a form body.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                server::percent_decode(k, true),
                server::percent_decode(v, true),
            )
        })
        .collect()
}

/// The caller's ARN as STS names it in answers and AccessDenied messages.
fn caller_arn(caller: &Caller) -> String {
    caller
        .assumed_role_arn
        .clone()
        .unwrap_or_else(|| format!("arn:aws:iam::{}:user/sim", caller.scope.account))
}

/// Serves one STS request (see [`is_sts_request`]) and logs it as an `sts` entry.
pub async fn handle(
    sim: Sim,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = server::query_pairs(&uri);
    if method == Method::POST {
        params.extend(form_pairs(&body));
    }
    let request_id = server::request_id().to_str().unwrap_or("sim").to_string();
    let mut service = sim.lock();
    let at_ms = service.elapsed(service.now());
    let mut entry = LogEntry {
        at_ms,
        kind: EntryKind::Sts,
        ..LogEntry::default()
    };
    let result = serve(&mut service, &mut entry, &params, &headers, real_now_ms());
    let response = match &result {
        Ok((root, result)) => {
            entry.effect = true;
            entry.status = Some(200);
            xml_response(
                StatusCode::OK,
                format!(
                    "<{root} xmlns=\"{XMLNS}\">\n{result}  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{root}>\n"
                ),
                &request_id,
            )
        }
        Err(e) => {
            entry.status = Some(e.status.as_u16());
            entry.error_code = Some(e.code.to_string());
            e.response(&request_id)
        }
    };
    service.journal.push(entry);
    service.dirty = true;
    response
}

/// Runs one request: the answer's root element name and its `…Result` element.
fn serve(
    service: &mut Service,
    entry: &mut LogEntry,
    params: &[(String, String)],
    headers: &HeaderMap,
    now_ms: u64,
) -> Result<(&'static str, String), StsError> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let action = param("Action");
    entry.operation = action.clone();
    let Some(action) = action else {
        return Err(StsError::new(
            StatusCode::BAD_REQUEST,
            "MissingAction",
            "Missing Action",
        ));
    };
    let mut caller = server::caller_for_service(headers, &service.settings.default_account, "sts")
        .map_err(StsError::from_signature)?;
    entry.account = caller.scope.account.clone();
    entry.region = caller.scope.region.clone();
    entry.access_key_id = Some(caller.access_key_id.clone());
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    let session = service
        .sts
        .authenticate(&caller.access_key_id, token, now_ms)
        .map_err(StsError::token)?
        .cloned();
    if let Some(session) = &session {
        caller.scope.account = session.account.clone();
        caller.assumed_role_arn = Some(session.arn());
        entry.account = session.account.clone();
    }
    entry.caller_arn = Some(caller_arn(&caller));
    match action.as_str() {
        "GetCallerIdentity" => Ok(("GetCallerIdentityResponse", get_caller_identity(&caller))),
        "AssumeRole" => assume_role(service, entry, params, &caller, session.as_ref(), now_ms)
            .map(|result| ("AssumeRoleResponse", result)),
        other => Err(StsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("Could not find operation {other} for version {API_VERSION}"),
        )),
    }
}

fn get_caller_identity(caller: &Caller) -> String {
    let arn = caller_arn(caller);
    let user_id = match &caller.assumed_role_arn {
        Some(_) => {
            // assumed-role/NAME/SESSION: the role's id and the session name.
            let session = arn.rsplit('/').next().unwrap_or_default();
            let role = arn.rsplit_once('/').map_or("", |(role, _)| role);
            format!("{}:{session}", unique_id("AROA", role))
        }
        None => unique_id("AIDA", &caller.access_key_id),
    };
    format!(
        "  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  </GetCallerIdentityResult>\n",
        xml_escape(&arn),
        xml_escape(&user_id),
        caller.scope.account
    )
}

fn assume_role(
    service: &mut Service,
    entry: &mut LogEntry,
    params: &[(String, String)],
    caller: &Caller,
    caller_session: Option<&StsSession>,
    now_ms: u64,
) -> Result<String, StsError> {
    // What the request asked for is logged whether or not it is valid.
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    entry.role_arn = param("RoleArn");
    entry.role_session_name = param("RoleSessionName");
    entry.external_id_given = param("ExternalId").is_some();
    let input = assume_role_input(params);
    if let Ok(input) = &input {
        entry.tags = input.tags.iter().cloned().collect();
    }
    let input = input?;
    let denied = || {
        StsError::access_denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
            caller_arn(caller),
            input.role_arn
        ))
    };
    if caller_session.is_some_and(|s| s.revoked) {
        return Err(StsError::access_denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {} with an explicit deny in an identity-based policy",
            caller_arn(caller),
            input.role_arn
        )));
    }
    let role = service
        .sts
        .role(&input.role_arn)
        .cloned()
        .ok_or_else(denied)?;
    if let Some(required) = &role.external_id
        && input.external_id.as_ref() != Some(required)
    {
        return Err(denied());
    }
    let requested = input.duration.unwrap_or(DEFAULT_DURATION);
    let max = role
        .max_session_duration
        .unwrap_or(DEFAULT_MAX_SESSION_DURATION);
    if caller_session.is_some() && input.duration.is_some_and(|d| d > CHAINED_MAX_DURATION) {
        return Err(StsError::validation(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        ));
    }
    if requested > max {
        return Err(StsError::validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }
    let lifetime = role.lifetime_seconds.unwrap_or(requested);
    let account = parse_role_arn(&input.role_arn)
        .map(|r| r.account.to_string())
        .unwrap_or_default();
    let (session, secret) = service.sts.issue(&input, &account, lifetime, now_ms);
    entry.issued_access_key_id = Some(session.access_key_id.clone());
    entry.lifetime_seconds = Some(lifetime);
    let role_name = input
        .role_arn
        .rsplit_once('/')
        .map_or(input.role_arn.as_str(), |(_, name)| name);
    // The same id GetCallerIdentity derives from the assumed-role ARN.
    let role_id = unique_id(
        "AROA",
        &format!("arn:aws:sts::{account}:assumed-role/{role_name}"),
    );
    let packed = packed_policy_size(&input).map_or(String::new(), |size| {
        format!("    <PackedPolicySize>{size}</PackedPolicySize>\n")
    });
    Ok(format!(
        "  <AssumeRoleResult>\n    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n    <AssumedRoleUser>\n      <AssumedRoleId>{role_id}:{}</AssumedRoleId>\n      <Arn>{}</Arn>\n    </AssumedRoleUser>\n{packed}  </AssumeRoleResult>\n",
        session.access_key_id,
        xml_escape(&secret),
        xml_escape(&session.session_token),
        iso8601(session.expires_epoch_ms),
        session.role_session_name,
        xml_escape(&session.arn()),
    ))
}
