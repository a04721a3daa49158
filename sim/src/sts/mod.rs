//! A minimal AWS STS on the package API's listener: `AssumeRole` and `GetCallerIdentity` in
//! the query protocol (form-encoded `POST /`, XML answers), the trust the admin API declares
//! (`/_sim/sts/…`), and the table of issued sessions that makes their credentials name the
//! role's account. See sim/README.md, "STS".
//!
//! This module holds the roles and the sessions; `query` serves the protocol, `input`
//! validates AssumeRole's parameters and `names` makes and reads ARNs, key ids and the other
//! names STS hands out.

mod input;
mod names;
mod query;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::server::Caller;

pub use names::account_of_key;
pub use query::{StsError, handle, is_sts_request};

use input::{AssumeRoleInput, check_external_id};
use names::{
    SECRET_ALPHABET, TOKEN_ALPHABET, assumed_role_arn, base32, parse_role_arn, random_text,
};

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

#[cfg(test)]
mod tests {
    use super::*;

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
