//! Whose credentials sign a call and where it goes.
//!
//! A call is made in a [`Scope`]: an AWS account and region, reached with an [`Identity`],
//! either the operator's own credentials (the SDK's default chain) or an IAM role a cluster
//! admin granted to the object's namespace (an `OpenSearchPackageRole`). A role is assumed
//! with STS AssumeRole through the SDK's own [`AssumeRoleProvider`]; its session is named after
//! the namespace and tagged `kubernetes-namespace`, so CloudTrail and the role's policies can
//! tell the namespaces apart. [`Identities`] keeps one provider per (role, namespace, region):
//! the SDK's identity cache holds its credentials and refreshes them before they expire.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::region::Region;
use tokio::sync::OnceCell;

use super::errors::{map_sdk_error, sts_refused};
use super::{BackendError, BackendResult};

/// Session tag naming the namespace whose objects a role session acts for.
pub const NAMESPACE_TAG: &str = "kubernetes-namespace";

/// Whose credentials sign a call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// The operator's own credentials.
    Own,
    /// A role assumed for one namespace.
    Role(RoleSession),
}

/// A role assumed on behalf of the objects of one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleSession {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub namespace: String,
}

impl RoleSession {
    /// The role's account: the fifth field of its ARN (`arn:aws:iam::ACCOUNT:role/NAME`).
    pub fn account(&self) -> Option<&str> {
        role_account(&self.role_arn)
    }

    /// `ospkg-<namespace>`, cut to STS's 64 characters (a namespace has at most 63);
    /// `ospkg-check` for the operator's own check of a role (no namespace).
    pub fn session_name(&self) -> String {
        if self.namespace.is_empty() {
            return "ospkg-check".into();
        }
        let mut name = format!("ospkg-{}", self.namespace);
        name.truncate(64);
        name
    }
}

/// The account of an IAM role ARN, when the ARN is well formed.
pub fn role_account(arn: &str) -> Option<&str> {
    let mut fields = arn.splitn(6, ':');
    let (arn_prefix, _partition, service, _region, account, resource) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let valid = arn_prefix == "arn"
        && service == "iam"
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.starts_with("role/");
    valid.then_some(account)
}

/// Where a call goes: the account and region, and the identity that reaches them.
///
/// The account and region key everything AWS limits or lists per account and region: the
/// rate limiter, the region observer, package name ownership.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub account: String,
    pub region: String,
    pub identity: Identity,
}

impl Scope {
    /// The operator's own identity in `account` (as STS GetCallerIdentity says) and `region`.
    pub fn own(account: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            region: region.into(),
            identity: Identity::Own,
        }
    }

    /// The (account, region) pair.
    pub fn place(&self) -> Place {
        Place {
            account: self.account.clone(),
            region: self.region.clone(),
        }
    }
}

/// An AWS account and region: the unit AWS rate-limits and lists packages in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub account: String,
    pub region: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// Credentials providers per identity and region, and the operator's own account.
#[derive(Default)]
pub struct Identities {
    /// The operator's configuration (its own credentials, endpoints, retries, timeouts);
    /// `None` for backends built from a finished service configuration (tests), which can only
    /// use the identity that configuration carries.
    sdk_config: Option<SdkConfig>,
    roles: RwLock<HashMap<(RoleSession, String), SharedCredentialsProvider>>,
    own_account: OnceCell<String>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roles = self.roles.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Identities")
            .field("role_sessions", &roles.len())
            .field("own_account", &self.own_account.get())
            .finish_non_exhaustive()
    }
}

impl Identities {
    pub fn new(sdk_config: SdkConfig) -> Self {
        Self {
            sdk_config: Some(sdk_config),
            ..Self::default()
        }
    }

    /// The operator's own account, asked of STS (GetCallerIdentity) once.
    pub async fn own_account(&self) -> BackendResult<String> {
        self.own_account
            .get_or_try_init(|| async {
                let sdk_config = self.sdk_config()?;
                let identity = aws_sdk_sts::Client::new(sdk_config)
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(map_sdk_error)?;
                identity.account.ok_or_else(|| {
                    BackendError::Transient("GetCallerIdentity answered no account".into())
                })
            })
            .await
            .cloned()
    }

    /// The credentials provider for `identity` in `region`; `None` for the operator's own
    /// (the configuration's). Built on first use and kept: the SDK's identity cache keys the
    /// credentials by provider, so keeping it keeps the session.
    pub async fn provider(
        &self,
        identity: &Identity,
        region: &str,
    ) -> BackendResult<Option<SharedCredentialsProvider>> {
        let Identity::Role(session) = identity else {
            return Ok(None);
        };
        let key = (session.clone(), region.to_owned());
        if let Some(found) = self
            .roles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Some(found.clone()));
        }
        let provider = SharedCredentialsProvider::new(self.assume(session, region).await?);
        let mut roles = self.roles.write().unwrap_or_else(PoisonError::into_inner);
        Ok(Some(roles.entry(key).or_insert(provider).clone()))
    }

    /// Assumes the role once, now (no cache): whether STS lets the operator assume it, with
    /// the same session tags its objects' sessions carry. `Credentials` when STS refused.
    pub async fn check(&self, session: &RoleSession, region: &str) -> BackendResult<()> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = self.assume(session, region).await?;
        provider
            .provide_credentials()
            .await
            .map(|_| ())
            .map_err(|error| {
                let message = aws_sdk_sts::error::DisplayErrorContext(&error).to_string();
                if sts_refused(&error) {
                    BackendError::Credentials(message)
                } else {
                    BackendError::Transient(message)
                }
            })
    }

    async fn assume(
        &self,
        session: &RoleSession,
        region: &str,
    ) -> BackendResult<AssumeRoleProvider> {
        let mut builder = AssumeRoleProvider::builder(session.role_arn.clone())
            .session_name(session.session_name())
            .tags([(NAMESPACE_TAG, session.namespace.as_str())])
            .region(Region::new(region.to_owned()))
            .configure(self.sdk_config()?);
        if let Some(external_id) = &session.external_id {
            builder = builder.external_id(external_id.clone());
        }
        Ok(builder.build().await)
    }

    fn sdk_config(&self) -> BackendResult<&SdkConfig> {
        self.sdk_config.as_ref().ok_or_else(|| {
            BackendError::Invalid(
                "this backend was built without an AWS SDK configuration: it cannot assume roles or ask STS".into(),
            )
        })
    }
}

/// Identities are shared by the package and S3 backends.
pub type SharedIdentities = Arc<Identities>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_arn_names_its_account() {
        assert_eq!(
            role_account("arn:aws:iam::111122223333:role/team-a"),
            Some("111122223333")
        );
        assert_eq!(
            role_account("arn:aws-cn:iam::111122223333:role/path/team-a"),
            Some("111122223333")
        );
        for bad in [
            "arn:aws:iam::1111:role/x",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:s3:::bucket",
            "role/x",
        ] {
            assert_eq!(role_account(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_session_is_named_after_its_namespace_within_the_sts_limit() {
        let session = |namespace: &str| RoleSession {
            role_arn: "arn:aws:iam::111122223333:role/x".into(),
            external_id: None,
            namespace: namespace.into(),
        };
        assert_eq!(session("team-a").session_name(), "ospkg-team-a");
        assert_eq!(session(&"n".repeat(63)).session_name().len(), 64);
    }
}
