//! A minimal AWS STS on the package API's listener: `AssumeRole` and `GetCallerIdentity` in
//! the query protocol (form-encoded `POST /`, XML answers), the trust the admin API declares
//! (`/_sim/sts/…`), and the table of issued sessions that makes their credentials name the
//! role's account. See sim/README.md, "STS".

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::journal::{EntryKind, LogEntry};
use crate::server::{self, Caller};
use crate::service::{Service, Sim};

/// Access key ids of issued credentials start with this, as AWS's temporary keys do; then
/// come the role's 12-digit account and a unique suffix of at least four characters.
pub const SESSION_KEY_PREFIX: &str = "ASIA";
/// The query protocol's namespace and API version.
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
const API_VERSION: &str = "2011-06-15";
/// STS's session length when `DurationSeconds` is not given.
const DEFAULT_DURATION: u64 = 3600;
const MIN_DURATION: u64 = 900;
const MAX_DURATION: u64 = 43_200;
/// A role's `MaxSessionDuration` when its declaration gives none (IAM's default).
pub const DEFAULT_MAX_SESSION_DURATION: u64 = 3600;
/// Role chaining (AssumeRole signed with session credentials) is limited to one hour.
const CHAINED_MAX_DURATION: u64 = 3600;
/// Sessions that expired longer ago than this are forgotten (their token becomes unknown).
const FORGET_AFTER_MS: u64 = 24 * 3600 * 1000;
const MESSAGE_INVALID_TOKEN: &str = "The security token included in the request is invalid.";
const MESSAGE_EXPIRED_TOKEN: &str = "The security token included in the request is expired";

/// Wall-clock milliseconds since the epoch. Credentials expire in real time, not on the
/// simulated clock: the SDKs compare `Expiration` with the system clock.
pub fn real_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A role that may be assumed: its trust policy, as far as the simulator models one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StsRole {
    /// `arn:aws:iam::<12 digits>:role/[path/]<name>`.
    pub role_arn: String,
    /// AssumeRole must carry exactly this `ExternalId` (else AccessDenied); `None`: any or
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Credentials issued for this role are valid this many seconds, whatever
    /// `DurationSeconds` asked for (which is still validated); e.g. 20 to watch a client
    /// refresh them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_seconds: Option<u64>,
    /// The role's `MaxSessionDuration` (3600–43200 seconds; IAM's default 3600): a larger
    /// `DurationSeconds` is a ValidationError.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_duration: Option<u64>,
}

impl StsRole {
    pub fn new(role_arn: impl Into<String>) -> Self {
        StsRole {
            role_arn: role_arn.into(),
            external_id: None,
            lifetime_seconds: None,
            max_session_duration: None,
        }
    }

    pub fn external_id(mut self, external_id: impl Into<String>) -> Self {
        self.external_id = Some(external_id.into());
        self
    }

    pub fn lifetime_seconds(mut self, seconds: u64) -> Self {
        self.lifetime_seconds = Some(seconds);
        self
    }

    pub fn max_session_duration(mut self, seconds: u64) -> Self {
        self.max_session_duration = Some(seconds);
        self
    }

    /// Why the declaration is refused, if it is.
    pub fn check(&self) -> Result<(), String> {
        if parse_role_arn(&self.role_arn).is_none() {
            return Err(format!(
                "roleArn {:?} is not arn:aws:iam::<12 digits>:role/<name>",
                self.role_arn
            ));
        }
        if let Some(id) = &self.external_id
            && check_external_id(id).is_err()
        {
            return Err(format!(
                "externalId {id:?} is not 2-1224 characters of [\\w+=,.@:/-]"
            ));
        }
        if self.lifetime_seconds == Some(0) {
            return Err("lifetimeSeconds must be at least 1".to_string());
        }
        if let Some(max) = self.max_session_duration
            && !(DEFAULT_MAX_SESSION_DURATION..=MAX_DURATION).contains(&max)
        {
            return Err(format!(
                "maxSessionDuration must be {DEFAULT_MAX_SESSION_DURATION}-{MAX_DURATION} seconds, got {max}"
            ));
        }
        Ok(())
    }
}

/// Credentials the simulator's STS issued, as `GET /_sim/sts/sessions` shows them (the secret
/// key is not kept: signatures are not verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StsSession {
    pub access_key_id: String,
    pub session_token: String,
    pub role_arn: String,
    /// The role's account: calls signed with these credentials act in it.
    pub account: String,
    pub role_session_name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Wall-clock epoch milliseconds (whole seconds, as `Expiration` is sent).
    pub issued_epoch_ms: u64,
    pub expires_epoch_ms: u64,
    /// Revoked through `POST /_sim/sts/sessions/revoke`: calls signed with it are denied.
    #[serde(default)]
    pub revoked: bool,
}

impl StsSession {
    /// `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`.
    pub fn arn(&self) -> String {
        assumed_role_arn(&self.role_arn, &self.role_session_name)
    }
}

/// Why a request's session credentials are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No session with that token (or none given, or a token for another key).
    Invalid,
    Expired,
}

/// The declared roles and the sessions issued; kept in the `--state` snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StsState {
    #[serde(default)]
    roles: Vec<StsRole>,
    /// By session token.
    #[serde(default)]
    sessions: BTreeMap<String, StsSession>,
    #[serde(default)]
    next_key: u64,
}

impl StsState {
    pub fn with_roles(roles: Vec<StsRole>) -> Self {
        StsState {
            roles,
            ..StsState::default()
        }
    }

    pub fn roles(&self) -> &[StsRole] {
        &self.roles
    }

    /// Replaces every role (checked; one declaration per ARN).
    pub fn set_roles(&mut self, roles: Vec<StsRole>) -> Result<(), String> {
        for (i, role) in roles.iter().enumerate() {
            role.check()?;
            if roles[..i].iter().any(|r| r.role_arn == role.role_arn) {
                return Err(format!("roleArn {:?} is declared twice", role.role_arn));
            }
        }
        self.roles = roles;
        Ok(())
    }

    /// Adds a role, or replaces the declaration of the same ARN.
    pub fn allow(&mut self, role: StsRole) -> Result<(), String> {
        role.check()?;
        match self.roles.iter_mut().find(|r| r.role_arn == role.role_arn) {
            Some(existing) => *existing = role,
            None => self.roles.push(role),
        }
        Ok(())
    }

    /// Forgets a role's trust: AssumeRole of it is AccessDenied from now on. Sessions already
    /// issued stay valid, as in AWS (see [`StsState::revoke_sessions`]).
    pub fn remove(&mut self, role_arn: &str) -> bool {
        let before = self.roles.len();
        self.roles.retain(|r| r.role_arn != role_arn);
        self.roles.len() != before
    }

    /// Denies every call signed with a session of this role issued so far (as IAM's "revoke
    /// active sessions" does); returns how many unexpired sessions that newly revoked.
    pub fn revoke_sessions(&mut self, role_arn: &str, now_ms: u64) -> usize {
        let mut revoked = 0;
        for session in self.sessions.values_mut() {
            if session.role_arn == role_arn && !session.revoked {
                session.revoked = true;
                revoked += usize::from(now_ms < session.expires_epoch_ms);
            }
        }
        revoked
    }

    /// Every session still remembered, oldest first.
    pub fn sessions(&self) -> Vec<StsSession> {
        let mut sessions: Vec<StsSession> = self.sessions.values().cloned().collect();
        sessions.sort_by(|a, b| {
            (a.issued_epoch_ms, &a.access_key_id).cmp(&(b.issued_epoch_ms, &b.access_key_id))
        });
        sessions
    }

    /// The session a request signed with `access_key_id` (and `token`) belongs to: `Ok(None)`
    /// for keys that are not `ASIA…` (long-term keys, served as before).
    pub fn authenticate(
        &self,
        access_key_id: &str,
        token: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<&StsSession>, TokenError> {
        if !access_key_id.starts_with(SESSION_KEY_PREFIX) {
            return Ok(None);
        }
        let session = token
            .and_then(|t| self.sessions.get(t))
            .filter(|s| s.access_key_id == access_key_id)
            .ok_or(TokenError::Invalid)?;
        if now_ms >= session.expires_epoch_ms {
            return Err(TokenError::Expired);
        }
        Ok(Some(session))
    }

    /// The package API's check of a signed caller: session credentials must be known,
    /// unexpired and not revoked; the caller then acts in the role's account.
    pub fn package_caller(
        &self,
        mut caller: Caller,
        token: Option<&str>,
        now_ms: u64,
        operation: &str,
    ) -> Result<Caller, ApiError> {
        let session = match self.authenticate(&caller.access_key_id, token, now_ms) {
            Ok(session) => session,
            Err(TokenError::Invalid) => {
                return Err(ApiError::UnrecognizedClient(
                    MESSAGE_INVALID_TOKEN.to_string(),
                ));
            }
            Err(TokenError::Expired) => {
                return Err(ApiError::ExpiredToken(MESSAGE_EXPIRED_TOKEN.to_string()));
            }
        };
        if let Some(session) = session {
            let arn = session.arn();
            if session.revoked {
                return Err(ApiError::AccessDenied(format!(
                    "User: {arn} is not authorized to perform: es:{operation} with an explicit deny in an identity-based policy"
                )));
            }
            caller.scope.account = session.account.clone();
            caller.assumed_role_arn = Some(arn);
        }
        Ok(caller)
    }

    fn role(&self, role_arn: &str) -> Option<&StsRole> {
        self.roles.iter().find(|r| r.role_arn == role_arn)
    }

    /// Issues credentials for a validated, authorized request.
    fn issue(
        &mut self,
        input: &AssumeRoleInput,
        account: &str,
        lifetime: u64,
        now_ms: u64,
    ) -> (StsSession, String) {
        self.sessions
            .retain(|_, s| now_ms < s.expires_epoch_ms.saturating_add(FORGET_AFTER_MS));
        let suffix = base32(self.next_key, 4);
        self.next_key += 1;
        let issued = now_ms / 1000 * 1000;
        let session = StsSession {
            access_key_id: format!("{SESSION_KEY_PREFIX}{account}{suffix}"),
            session_token: random_text(160, TOKEN_ALPHABET),
            role_arn: input.role_arn.clone(),
            account: account.to_string(),
            role_session_name: input.session_name.clone(),
            tags: input.tags.iter().cloned().collect(),
            issued_epoch_ms: issued,
            expires_epoch_ms: issued + lifetime * 1000,
            revoked: false,
        };
        self.sessions
            .insert(session.session_token.clone(), session.clone());
        (session, random_text(40, SECRET_ALPHABET))
    }
}

/// The account and name of a well-formed role ARN.
struct RoleArn<'a> {
    account: &'a str,
    name: &'a str,
}

fn is_account(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:aws:iam::<12 digits>:role/[path/]<name>`, names and paths of `[\w+=,.@-]`.
fn parse_role_arn(arn: &str) -> Option<RoleArn<'_>> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, rest) = rest.split_once(':')?;
    let path_and_name = rest.strip_prefix("role/")?;
    let name = path_and_name.rsplit('/').next()?;
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_+=,.@-/".contains(&b);
    (is_account(account)
        && !name.is_empty()
        && name.len() <= 64
        && path_and_name.bytes().all(allowed))
    .then_some(RoleArn { account, name })
}

/// The account an access key id stands for: a 12-digit key is that account, a key the
/// simulator's STS issued (`ASIA` + account + suffix) the role's account, others none.
pub fn account_of_key(access_key_id: &str) -> Option<&str> {
    if is_account(access_key_id) {
        return Some(access_key_id);
    }
    let digits = access_key_id
        .strip_prefix(SESSION_KEY_PREFIX)?
        .get(..12)
        .filter(|d| is_account(d))?;
    Some(digits)
}

fn assumed_role_arn(role_arn: &str, session_name: &str) -> String {
    match parse_role_arn(role_arn) {
        Some(role) => format!(
            "arn:aws:sts::{}:assumed-role/{}/{session_name}",
            role.account, role.name
        ),
        None => format!("arn:aws:sts::000000000000:assumed-role/unknown/{session_name}"),
    }
}

/// IAM-style unique ids (`AROA…` for roles, `AIDA…` for users): 4 + 17 characters, stable
/// for the same ARN or key.
fn unique_id(prefix: &str, of: &str) -> String {
    let digest = Md5::digest(of.as_bytes());
    let mut bits = u128::from_be_bytes(digest.into());
    let mut id = prefix.to_string();
    for _ in 0..17 {
        id.push(char::from(BASE32[(bits & 31) as usize]));
        bits >>= 5;
    }
    id
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `n` in base32 (most significant first), zero-padded to at least `width` characters.
fn base32(mut n: u64, width: usize) -> String {
    let mut digits = Vec::new();
    while n > 0 || digits.len() < width {
        digits.push(BASE32[(n % 32) as usize]);
        n /= 32;
    }
    digits.iter().rev().map(|&b| char::from(b)).collect()
}

fn random_text(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| char::from(alphabet[rand::random_range(0..alphabet.len())]))
        .collect()
}

/// `2026-01-02T03:04:05Z`, as STS writes `Expiration`.
fn iso8601(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let (year, month, day) = crate::s3::civil_from_days(secs / 86_400);
    let (hour, minute, second) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// An error as STS sends it: `<ErrorResponse>` XML with the status the code has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl StsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        StsError {
            status,
            code,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        StsError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }

    fn invalid(field: &str, value: &str, constraint: &str) -> Self {
        StsError::validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    fn missing(field: &str) -> Self {
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

/// A validated AssumeRole request.
#[derive(Debug, Clone)]
struct AssumeRoleInput {
    role_arn: String,
    session_name: String,
    external_id: Option<String>,
    duration: Option<u64>,
    tags: Vec<(String, String)>,
    policy: Option<String>,
}

fn check_external_id(id: &str) -> Result<(), StsError> {
    let len = id.chars().count();
    if len < 2 {
        return Err(StsError::invalid(
            "externalId",
            id,
            "Member must have length greater than or equal to 2",
        ));
    }
    if len > 1224 {
        return Err(StsError::invalid(
            "externalId",
            id,
            "Member must have length less than or equal to 1224",
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c);
    if !id.chars().all(allowed) {
        return Err(StsError::invalid(
            "externalId",
            id,
            "Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*",
        ));
    }
    Ok(())
}

/// Parameters of an AssumeRole request, validated in the order of the model's members.
fn assume_role_input(params: &[(String, String)]) -> Result<AssumeRoleInput, StsError> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let role_arn = param("RoleArn").ok_or_else(|| StsError::missing("roleArn"))?;
    if role_arn.chars().count() < 20 {
        return Err(StsError::invalid(
            "roleArn",
            &role_arn,
            "Member must have length greater than or equal to 20",
        ));
    }
    if role_arn.chars().count() > 2048 {
        return Err(StsError::invalid(
            "roleArn",
            &role_arn,
            "Member must have length less than or equal to 2048",
        ));
    }
    let session_name =
        param("RoleSessionName").ok_or_else(|| StsError::missing("roleSessionName"))?;
    let len = session_name.chars().count();
    if len < 2 {
        return Err(StsError::invalid(
            "roleSessionName",
            &session_name,
            "Member must have length greater than or equal to 2",
        ));
    }
    if len > 64 {
        return Err(StsError::invalid(
            "roleSessionName",
            &session_name,
            "Member must have length less than or equal to 64",
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    if !session_name.chars().all(allowed) {
        return Err(StsError::invalid(
            "roleSessionName",
            &session_name,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    let duration = match param("DurationSeconds") {
        None => None,
        Some(text) => {
            let seconds: u64 = text.parse().map_err(|_| {
                StsError::validation(format!(
                    "1 validation error detected: Value '{text}' at 'durationSeconds' failed to satisfy constraint: Member must be a number"
                ))
            })?;
            if seconds < MIN_DURATION {
                return Err(StsError::invalid(
                    "durationSeconds",
                    &text,
                    "Member must have value greater than or equal to 900",
                ));
            }
            if seconds > MAX_DURATION {
                return Err(StsError::invalid(
                    "durationSeconds",
                    &text,
                    "Member must have value less than or equal to 43200",
                ));
            }
            Some(seconds)
        }
    };
    let external_id = param("ExternalId");
    if let Some(id) = &external_id {
        check_external_id(id)?;
    }
    let tags = session_tags(params)?;
    let policy = param("Policy");
    if let Some(policy) = &policy
        && !serde_json::from_str::<serde_json::Value>(policy).is_ok_and(|v| v.is_object())
    {
        return Err(StsError::new(
            StatusCode::BAD_REQUEST,
            "MalformedPolicyDocument",
            "The policy is not in the valid JSON format.",
        ));
    }
    // Only now the ARN's form: the model's length checks come first.
    if parse_role_arn(&role_arn).is_none() {
        return Err(StsError::validation(format!("{role_arn} is invalid")));
    }
    Ok(AssumeRoleInput {
        role_arn,
        session_name,
        external_id,
        duration,
        tags,
        policy,
    })
}

/// `Tags.member.N.Key` / `Tags.member.N.Value`, in the order of N.
fn session_tags(params: &[(String, String)]) -> Result<Vec<(String, String)>, StsError> {
    let mut members: BTreeMap<u32, (Option<String>, Option<String>)> = BTreeMap::new();
    for (name, value) in params {
        let Some(rest) = name.strip_prefix("Tags.member.") else {
            continue;
        };
        let Some((n, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        let member = members.entry(n).or_default();
        match field {
            "Key" => member.0 = Some(value.clone()),
            "Value" => member.1 = Some(value.clone()),
            _ => {}
        }
    }
    if members.len() > 50 {
        return Err(StsError::validation(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50",
        ));
    }
    let mut tags = Vec::new();
    for (i, (key, value)) in members.into_values().enumerate() {
        let at = |field: &str| format!("tags.{}.member.{field}", i + 1);
        let key = key.ok_or_else(|| StsError::missing(&at("key")))?;
        let value = value.ok_or_else(|| StsError::missing(&at("value")))?;
        let key_len = key.chars().count();
        if key_len < 1 {
            return Err(StsError::invalid(
                &at("key"),
                &key,
                "Member must have length greater than or equal to 1",
            ));
        }
        if key_len > 128 {
            return Err(StsError::invalid(
                &at("key"),
                &key,
                "Member must have length less than or equal to 128",
            ));
        }
        if value.chars().count() > 256 {
            return Err(StsError::invalid(
                &at("value"),
                &value,
                "Member must have length less than or equal to 256",
            ));
        }
        let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
        if !key.chars().all(allowed) {
            return Err(StsError::invalid(
                &at("key"),
                &key,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
            ));
        }
        if !value.chars().all(allowed) {
            return Err(StsError::invalid(
                &at("value"),
                &value,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
            ));
        }
        if tags
            .iter()
            .any(|(k, _): &(String, String)| k.eq_ignore_ascii_case(&key))
        {
            return Err(StsError::validation(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
            ));
        }
        tags.push((key, value));
    }
    Ok(tags)
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

/// `PackedPolicySize`: only when the request passed a session policy or tags. AWS's packing
/// is undocumented; this is the percentage of 4096 bytes the policy and tags take.
fn packed_policy_size(input: &AssumeRoleInput) -> Option<u64> {
    if input.policy.is_none() && input.tags.is_empty() {
        return None;
    }
    let bytes = input.policy.as_ref().map_or(0, String::len)
        + input
            .tags
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    Some((bytes as u64 * 100).div_ceil(4096).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        let arn = parse_role_arn("arn:aws:iam::111122223333:role/team/a/deployer").unwrap();
        assert_eq!((arn.account, arn.name), ("111122223333", "deployer"));
        for bad in [
            "arn:aws:iam::11112222333:role/x",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/a b",
            "arn:aws:s3:::111122223333:role/x",
        ] {
            assert!(parse_role_arn(bad).is_none(), "{bad}");
        }
        assert_eq!(
            assumed_role_arn("arn:aws:iam::111122223333:role/team/deployer", "s1"),
            "arn:aws:sts::111122223333:assumed-role/deployer/s1"
        );
    }

    #[test]
    fn keys_name_accounts() {
        assert_eq!(account_of_key("111122223333"), Some("111122223333"));
        assert_eq!(account_of_key("ASIA111122223333AAAB"), Some("111122223333"));
        assert_eq!(account_of_key("ASIAXYZ"), None);
        assert_eq!(account_of_key("test"), None);
        assert_eq!(base32(0, 4), "AAAA");
        assert_eq!(base32(33, 4), "AABB");
        assert_eq!(base32(32u64.pow(4), 4), "BAAAA");
    }

    #[test]
    fn dates_and_ids() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_767_323_045_999), "2026-01-02T03:04:05Z");
        let id = unique_id("AROA", "x");
        assert_eq!(id.len(), 21);
        assert_eq!(id, unique_id("AROA", "x"));
        assert_ne!(id, unique_id("AROA", "y"));
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn assume_role_validation() {
        let arn = ("RoleArn", "arn:aws:iam::111122223333:role/r");
        let ok = assume_role_input(&pairs(&[
            arn,
            ("RoleSessionName", "s@x.y"),
            ("Tags.member.2.Key", "b"),
            ("Tags.member.2.Value", "2"),
            ("Tags.member.1.Key", "a"),
            ("Tags.member.1.Value", ""),
        ]))
        .unwrap();
        assert_eq!(ok.tags, [("a".into(), "".into()), ("b".into(), "2".into())]);
        let message = |list: &[(&str, &str)]| assume_role_input(&pairs(list)).unwrap_err().message;
        assert!(message(&[arn]).contains("Value null at 'roleSessionName'"));
        assert!(message(&[arn, ("RoleSessionName", "a b")]).contains("regular expression"));
        assert!(message(&[arn, ("RoleSessionName", "a")]).contains("greater than or equal to 2"));
        let long = "s".repeat(65);
        assert!(message(&[arn, ("RoleSessionName", &long)]).contains("less than or equal to 64"));
        let with = |extra: (&'static str, &'static str)| {
            assume_role_input(&pairs(&[arn, ("RoleSessionName", "ok"), extra]))
                .unwrap_err()
                .message
        };
        assert!(with(("DurationSeconds", "899")).contains("'durationSeconds'"));
        assert!(with(("DurationSeconds", "43201")).contains("less than or equal to 43200"));
        assert!(with(("ExternalId", "x")).contains("'externalId'"));
        assert!(with(("Tags.member.1.Key", "k")).contains("Value null at 'tags.1.member.value'"));
        assert_eq!(
            assume_role_input(&pairs(&[
                ("RoleArn", "arn:aws:iam::1:role/some-role"),
                ("RoleSessionName", "ok")
            ]))
            .unwrap_err()
            .message,
            "arn:aws:iam::1:role/some-role is invalid"
        );
        let mut many = pairs(&[arn, ("RoleSessionName", "ok")]);
        for i in 1..=51 {
            many.push((format!("Tags.member.{i}.Key"), format!("k{i}")));
            many.push((format!("Tags.member.{i}.Value"), "v".into()));
        }
        assert!(
            assume_role_input(&many)
                .unwrap_err()
                .message
                .contains("less than or equal to 50")
        );
    }

    #[test]
    fn sessions_expire_and_are_bound_to_their_key() {
        let mut sts = StsState::with_roles(vec![StsRole::new("arn:aws:iam::111122223333:role/r")]);
        let input = AssumeRoleInput {
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            session_name: "s".into(),
            external_id: None,
            duration: None,
            tags: Vec::new(),
            policy: None,
        };
        let (session, _) = sts.issue(&input, "111122223333", 20, 1_000_500);
        assert_eq!(session.access_key_id, "ASIA111122223333AAAA");
        // Whole seconds, as the `Expiration` the client reads.
        assert_eq!(session.expires_epoch_ms, 1_020_000);
        let key = session.access_key_id.as_str();
        let token = Some(session.session_token.as_str());
        assert!(sts.authenticate(key, token, 1_019_999).unwrap().is_some());
        assert_eq!(
            sts.authenticate(key, token, 1_020_000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            sts.authenticate(key, Some("other"), 1_000_600),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            sts.authenticate(key, None, 1_000_600),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            sts.authenticate("ASIA111122223333AAAB", token, 1_000_600),
            Err(TokenError::Invalid)
        );
        assert_eq!(sts.authenticate("test", None, 1_000_600), Ok(None));
        assert_eq!(
            sts.revoke_sessions("arn:aws:iam::111122223333:role/r", 1_000_600),
            1
        );
        assert!(sts.sessions()[0].revoked);
    }
}
