//! The simulator's STS driven by the real SDK: aws-config's `AssumeRoleProvider` feeding an
//! OpenSearch client, aws-sdk-sts for GetCallerIdentity and errors, and raw requests for the
//! wire format.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_opensearch::config::retry::RetryConfig;
use aws_sdk_opensearch::config::{
    BehaviorVersion, Credentials, ProvideCredentials, Region, SharedCredentialsProvider,
};
use aws_sdk_opensearch::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use ospkg_sim::{EntryKind, RunningSim, SimConfig, StsRole};

use common::{create_dictionary, sim, sim_with};

const DEFAULT_ACCOUNT: &str = "123456789012";
const TENANT: &str = "444455556666";
const ROLE: &str = "arn:aws:iam::444455556666:role/ospkg/tenant-blue";

/// The SDK's shared configuration for the simulator, signed with a long-term key, no
/// retries (every call is one request).
async fn base_config(sim: &RunningSim, key: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(common::http_client())
        .endpoint_url(sim.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key, "secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

/// `base` with its credentials from `provider` (cached by the SDK's default identity cache).
fn with_provider(base: &SdkConfig, provider: AssumeRoleProvider) -> SdkConfig {
    base.clone()
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

fn sts(config: &SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(config)
}

fn opensearch(config: &SdkConfig) -> aws_sdk_opensearch::Client {
    aws_sdk_opensearch::Client::new(config)
}

/// An OpenSearch client signing with fixed (possibly session) credentials.
async fn static_client(
    sim: &RunningSim,
    key: &str,
    token: Option<&str>,
) -> (aws_sdk_opensearch::Client, aws_sdk_sts::Client) {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(common::http_client())
        .endpoint_url(sim.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            key,
            "secret",
            token.map(str::to_string),
            None,
            "test",
        ))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    (opensearch(&config), sts(&config))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The accounts the `/_sim/packages` dump has a package of that name in.
async fn accounts_with(sim: &RunningSim, name: &str) -> Vec<String> {
    let dump = sim.admin().packages().await.unwrap();
    dump["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|scope| {
            scope["packages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["details"]["PackageName"].as_str() == Some(name))
        })
        .map(|scope| scope["account"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_assumed_role_acts_in_the_role_account() {
    let sim = sim_with(SimConfig::default().role(StsRole::new(ROLE).external_id("ext-1"))).await;
    let base = base_config(&sim, "test").await;
    let provider = AssumeRoleProvider::builder(ROLE)
        .session_name("operator")
        .external_id("ext-1")
        .tags([("tenant", "blue"), ("team", "search")])
        .configure(&base)
        .build()
        .await;
    let role_config = with_provider(&base, provider);

    let id = create_dictionary(&sim, &opensearch(&role_config), "tenant-synonyms").await;
    assert_eq!(accounts_with(&sim, "tenant-synonyms").await, [TENANT]);
    // The default account's client does not see it.
    let plain = opensearch(&base);
    let (code, _) = common::failure(
        plain
            .describe_packages()
            .filters(
                aws_sdk_opensearch::types::DescribePackagesFilter::builder()
                    .name(aws_sdk_opensearch::types::DescribePackagesFilterName::PackageId)
                    .value(&id)
                    .build(),
            )
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");

    let me = sts(&role_config)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(me.account(), Some(TENANT));
    assert_eq!(
        me.arn(),
        Some("arn:aws:sts::444455556666:assumed-role/tenant-blue/operator")
    );
    assert!(
        me.user_id().unwrap().starts_with("AROA") && me.user_id().unwrap().ends_with(":operator"),
        "{me:?}"
    );

    // One session, with the request's tags, keyed by an ASIA key naming the account.
    let sessions = sim.admin().sts_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    assert!(
        session.access_key_id.starts_with("ASIA444455556666"),
        "{session:?}"
    );
    assert_eq!(session.access_key_id.len(), 20);
    assert_eq!(session.role_session_name, "operator");
    assert_eq!(session.tags["tenant"], "blue");
    assert_eq!(session.tags["team"], "search");
    // DurationSeconds not given: STS's default hour.
    assert_eq!(
        session.expires_epoch_ms - session.issued_epoch_ms,
        3_600_000
    );

    // The STS log: who assumed what, and the identity call under the role.
    let log = sim.admin().sts_log().await.unwrap();
    let ops: Vec<_> = log.iter().filter_map(|e| e.operation.as_deref()).collect();
    assert_eq!(ops, ["AssumeRole", "GetCallerIdentity"], "{log:?}");
    let assume = &log[0];
    assert_eq!(assume.kind, EntryKind::Sts);
    assert_eq!(assume.account, DEFAULT_ACCOUNT);
    assert_eq!(assume.region, "us-east-1");
    assert_eq!(assume.access_key_id.as_deref(), Some("test"));
    assert_eq!(
        assume.caller_arn.as_deref(),
        Some("arn:aws:iam::123456789012:user/sim")
    );
    assert_eq!(assume.role_arn.as_deref(), Some(ROLE));
    assert_eq!(assume.role_session_name.as_deref(), Some("operator"));
    assert!(assume.external_id_given);
    assert_eq!(assume.tags.len(), 2);
    assert_eq!((assume.status, assume.effect), (Some(200), true));
    assert_eq!(
        assume.issued_access_key_id.as_deref(),
        Some(session.access_key_id.as_str())
    );
    assert_eq!(assume.lifetime_seconds, Some(3600));
    assert_eq!(log[1].account, TENANT);

    // Package calls made with the role's credentials are the role account's; STS calls are
    // neither counted nor logged as package calls.
    let full = sim.admin().log().await.unwrap();
    let create = full
        .iter()
        .find(|e| e.kind == EntryKind::Call && e.operation.as_deref() == Some("CreatePackage"))
        .unwrap();
    assert_eq!(create.account, TENANT);
    assert_eq!(
        create.access_key_id.as_deref(),
        Some(session.access_key_id.as_str())
    );
    assert_eq!(
        create.caller_arn.as_deref(),
        Some("arn:aws:sts::444455556666:assumed-role/tenant-blue/operator")
    );
    assert!(
        full.iter()
            .filter(|e| e.kind == EntryKind::Call)
            .all(|e| !matches!(
                e.operation.as_deref(),
                Some("AssumeRole" | "GetCallerIdentity")
            ))
    );
    let calls = sim.admin().calls().await.unwrap();
    assert!(!calls.contains_key("AssumeRole"), "{calls:?}");
    assert_eq!(calls["CreatePackage"], 1);
}

#[tokio::test]
async fn roles_not_allowed_and_wrong_external_ids_are_access_denied() {
    let sim = sim().await;
    let admin = sim.admin();
    let base = base_config(&sim, "test").await;
    let assume = |external_id: Option<&str>| {
        let mut call = sts(&base)
            .assume_role()
            .role_arn(ROLE)
            .role_session_name("operator");
        if let Some(id) = external_id {
            call = call.external_id(id);
        }
        call.send()
    };

    // Nothing is assumable by default: the SDK's provider fails, and so does every call
    // that needs its credentials.
    let provider = AssumeRoleProvider::builder(ROLE)
        .session_name("operator")
        .configure(&base)
        .build()
        .await;
    let refused = provider.provide_credentials().await.unwrap_err();
    assert!(
        format!("{}", DisplayErrorContext(&refused)).contains("AccessDenied"),
        "{refused:?}"
    );
    let client = opensearch(&with_provider(&base, provider));
    let failed = client.describe_packages().send().await.unwrap_err();
    assert!(
        format!("{}", DisplayErrorContext(&failed)).contains("AccessDenied"),
        "{failed:?}"
    );
    let e = assume(None).await.unwrap_err();
    assert_eq!(e.code(), Some("AccessDenied"));
    assert_eq!(
        e.message(),
        Some(
            "User: arn:aws:iam::123456789012:user/sim is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::444455556666:role/ospkg/tenant-blue"
        )
    );
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);

    // A required external id: missing or wrong is AccessDenied, the right one works.
    admin
        .allow_role(&StsRole::new(ROLE).external_id("right-id"))
        .await
        .unwrap();
    for wrong in [None, Some("wrong-id")] {
        let e = assume(wrong).await.unwrap_err();
        assert_eq!(e.code(), Some("AccessDenied"), "{wrong:?}");
    }
    let ok = assume(Some("right-id")).await.unwrap();
    assert!(
        ok.credentials()
            .unwrap()
            .access_key_id()
            .starts_with("ASIA444455556666")
    );

    // Revoked at once, allowed again at once.
    assert!(admin.revoke_role(ROLE).await.unwrap());
    assert!(!admin.revoke_role(ROLE).await.unwrap());
    assert_eq!(
        assume(Some("right-id")).await.unwrap_err().code(),
        Some("AccessDenied")
    );
    let roles = admin
        .allow_role(&StsRole::new(ROLE).external_id("right-id"))
        .await
        .unwrap();
    assert_eq!(roles.len(), 1);
    assume(Some("right-id")).await.unwrap();
    // Without a required external id any (or none) is accepted.
    admin.set_sts_roles(&[StsRole::new(ROLE)]).await.unwrap();
    assume(None).await.unwrap();
    assume(Some("anything")).await.unwrap();
    assert_eq!(admin.sts_roles().await.unwrap(), [StsRole::new(ROLE)]);

    // The log has every outcome.
    let outcomes: Vec<_> = admin
        .sts_log()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.error_code.unwrap_or_else(|| "ok".into()))
        .collect();
    assert_eq!(
        outcomes,
        [
            "AccessDenied", // the provider
            "AccessDenied", // the OpenSearch call's provider
            "AccessDenied",
            "AccessDenied",
            "AccessDenied",
            "ok",
            "AccessDenied",
            "ok",
            "ok",
            "ok"
        ]
    );
    // Admin input is checked.
    assert!(
        admin
            .allow_role(&StsRole::new("arn:aws:iam::1:role/x"))
            .await
            .is_err()
    );
    assert!(
        admin
            .set_sts_roles(&[StsRole::new(ROLE), StsRole::new(ROLE)])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn get_caller_identity_names_the_account() {
    let sim = sim_with(SimConfig::default().role(StsRole::new(ROLE))).await;
    let plain = sts(&base_config(&sim, "test").await)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(plain.account(), Some(DEFAULT_ACCOUNT));
    assert_eq!(plain.arn(), Some("arn:aws:iam::123456789012:user/sim"));
    assert!(plain.user_id().unwrap().starts_with("AIDA"), "{plain:?}");
    assert_eq!(plain.user_id().unwrap().len(), 21);

    let other = base_config(&sim, "111122223333").await;
    let me = sts(&other).get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some("111122223333"));
    assert_eq!(me.arn(), Some("arn:aws:iam::111122223333:user/sim"));

    let assumed = sts(&other)
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("s-1")
        .send()
        .await
        .unwrap();
    let user = assumed.assumed_role_user().unwrap();
    assert_eq!(
        user.arn(),
        "arn:aws:sts::444455556666:assumed-role/tenant-blue/s-1"
    );
    let c = assumed.credentials().unwrap();
    let (_, role_sts) = static_client(&sim, c.access_key_id(), Some(c.session_token())).await;
    let me = role_sts.get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some(TENANT));
    assert_eq!(me.arn(), Some(user.arn()));
    assert_eq!(me.user_id(), Some(user.assumed_role_id()));
    // No tags, no policy: no PackedPolicySize (as STS).
    #[allow(deprecated)]
    let packed = assumed.packed_policy_size();
    assert_eq!(packed, None);
}

#[tokio::test]
async fn assume_role_is_validated_like_sts() {
    let sim =
        sim_with(SimConfig::default().role(StsRole::new(ROLE)).role(
            StsRole::new("arn:aws:iam::444455556666:role/long").max_session_duration(43_200),
        ))
        .await;
    let base = base_config(&sim, "test").await;
    let client = sts(&base);
    let call = || client.assume_role().role_arn(ROLE).role_session_name("ok");

    let (status, code, message) = refused(
        client
            .assume_role()
            .role_arn(ROLE)
            .role_session_name("has space")
            .send()
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "ValidationError"));
    assert_eq!(
        message,
        "1 validation error detected: Value 'has space' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
    );
    let (_, code, message) = refused(call().duration_seconds(899).send().await);
    assert_eq!(code, "ValidationError");
    assert!(
        message.contains("at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"),
        "{message}"
    );
    let (_, _, message) = refused(call().duration_seconds(43_201).send().await);
    assert!(message.contains("less than or equal to 43200"), "{message}");
    // Within STS's range but above the role's MaxSessionDuration (IAM's default hour).
    let (_, _, message) = refused(call().duration_seconds(7200).send().await);
    assert_eq!(
        message,
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
    );
    let (_, _, message) = refused(call().external_id("x").send().await);
    assert!(message.contains("at 'externalId'"), "{message}");
    let (_, _, message) = refused(
        client
            .assume_role()
            .role_arn("arn:aws:iam::4444:role/tenant")
            .role_session_name("ok")
            .send()
            .await,
    );
    assert_eq!(message, "arn:aws:iam::4444:role/tenant is invalid");
    let mut many = call();
    for i in 0..51 {
        many = many.tags(
            aws_sdk_sts::types::Tag::builder()
                .key(format!("k{i}"))
                .value("v")
                .build()
                .unwrap(),
        );
    }
    let (_, code, message) = refused(many.send().await);
    assert_eq!(code, "ValidationError");
    assert!(message.contains("less than or equal to 50"), "{message}");
    let (_, code, _) = refused(call().policy("not json").send().await);
    assert_eq!(code, "MalformedPolicyDocument");

    // A role allowing 12 hours gets them; the Expiration the SDK parses says so.
    let long = client
        .assume_role()
        .role_arn("arn:aws:iam::444455556666:role/long")
        .role_session_name("long")
        .duration_seconds(43_200)
        .send()
        .await
        .unwrap();
    let expires = long.credentials().unwrap().expiration().secs() as u64 * 1000;
    let lifetime = expires.abs_diff(now_ms() + 43_200_000);
    assert!(lifetime < 3000, "expires {expires}");

    // Role chaining: session credentials may assume a role for at most an hour.
    let c = long.credentials().unwrap();
    let (_, chained) = static_client(&sim, c.access_key_id(), Some(c.session_token())).await;
    let e = chained
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("chained")
        .duration_seconds(3601)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        Some(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
        )
    );
    let again = chained
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("chained")
        .send()
        .await
        .unwrap();
    assert!(again.credentials().is_some());
    let log = sim.admin().sts_log().await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(
        last.caller_arn.as_deref(),
        Some("arn:aws:sts::444455556666:assumed-role/long/long")
    );
    assert_eq!(last.account, TENANT);
}

#[tokio::test]
async fn expired_unknown_and_revoked_session_credentials_are_refused() {
    let sim = sim_with(SimConfig::default().role(StsRole::new(ROLE).lifetime_seconds(1))).await;
    let base = base_config(&sim, "test").await;

    // An ASIA key with a token the STS never issued, or none.
    let (client, sts_client) =
        static_client(&sim, "ASIA444455556666ZZZZ", Some("not-a-token")).await;
    let e = client.describe_packages().send().await.unwrap_err();
    assert_eq!(e.code(), Some("UnrecognizedClientException"));
    assert_eq!(
        e.message(),
        Some("The security token included in the request is invalid.")
    );
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    let e = sts_client.get_caller_identity().send().await.unwrap_err();
    assert_eq!(e.code(), Some("InvalidClientTokenId"));
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    let (client, _) = static_client(&sim, "ASIA444455556666ZZZZ", None).await;
    let e = client.describe_packages().send().await.unwrap_err();
    assert_eq!(e.code(), Some("UnrecognizedClientException"));

    // Credentials for one second (the role's lifetime overrides the requested hour).
    let assumed = sts(&base)
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("short")
        .duration_seconds(3600)
        .send()
        .await
        .unwrap();
    let c = assumed.credentials().unwrap().clone();
    let expires_ms = c.expiration().secs() as u64 * 1000;
    let (client, sts_client) =
        static_client(&sim, c.access_key_id(), Some(c.session_token())).await;
    tokio::time::sleep(Duration::from_millis(
        expires_ms.saturating_sub(now_ms()) + 50,
    ))
    .await;
    let e = client.describe_packages().send().await.unwrap_err();
    assert_eq!(e.code(), Some("ExpiredTokenException"));
    assert_eq!(
        e.message(),
        Some("The security token included in the request is expired")
    );
    let raw = e.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 403);
    assert_eq!(
        raw.headers().get("x-amzn-ErrorType"),
        Some("ExpiredTokenException")
    );
    let e = sts_client.get_caller_identity().send().await.unwrap_err();
    assert_eq!(e.code(), Some("ExpiredToken"));
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    // Refused calls are logged as authentication failures (no account, no key).
    let log = sim.admin().log().await.unwrap();
    let codes: Vec<_> = log
        .iter()
        .filter(|e| e.kind == EntryKind::Call)
        .map(|e| (e.error_code.clone().unwrap_or_default(), e.account.clone()))
        .collect();
    assert_eq!(
        codes,
        [
            ("UnrecognizedClientException".to_string(), String::new()),
            ("UnrecognizedClientException".to_string(), String::new()),
            ("ExpiredTokenException".to_string(), String::new()),
        ]
    );

    // Revoking a role's sessions denies calls signed with them at once (GetCallerIdentity
    // still answers, as in AWS), and AssumeRole from them.
    sim.admin().allow_role(&StsRole::new(ROLE)).await.unwrap();
    let assumed = sts(&base)
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("revoked")
        .send()
        .await
        .unwrap();
    let c = assumed.credentials().unwrap();
    let (client, sts_client) =
        static_client(&sim, c.access_key_id(), Some(c.session_token())).await;
    client.describe_packages().send().await.unwrap();
    assert_eq!(sim.admin().revoke_role_sessions(ROLE).await.unwrap(), 1);
    let e = client.describe_packages().send().await.unwrap_err();
    assert_eq!(e.code(), Some("AccessDeniedException"));
    assert_eq!(
        e.message(),
        Some(
            "User: arn:aws:sts::444455556666:assumed-role/tenant-blue/revoked is not authorized to perform: es:DescribePackages with an explicit deny in an identity-based policy"
        )
    );
    sts_client.get_caller_identity().send().await.unwrap();
    let e = sts_client
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("again")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AccessDenied"));
    // New sessions are not revoked.
    let fresh = sts(&base)
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("fresh")
        .send()
        .await
        .unwrap();
    let c = fresh.credentials().unwrap();
    let (client, _) = static_client(&sim, c.access_key_id(), Some(c.session_token())).await;
    client.describe_packages().send().await.unwrap();
}

/// The SDK's default identity cache refreshes assumed credentials before they expire, so a
/// client keeps working across expiries; this measures when it refreshes.
#[tokio::test]
async fn the_sdk_refreshes_short_lived_credentials_before_they_expire() {
    let sim = sim_with(SimConfig::default().role(StsRole::new(ROLE).lifetime_seconds(15))).await;
    let base = base_config(&sim, "test").await;
    let provider = AssumeRoleProvider::builder(ROLE)
        .session_name("refresher")
        .configure(&base)
        .build()
        .await;
    let client = opensearch(&with_provider(&base, provider));
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(18) {
        client
            .describe_packages()
            .send()
            .await
            .unwrap_or_else(|e| panic!("call {calls}: {}", DisplayErrorContext(&e)));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let sessions = sim.admin().sts_sessions().await.unwrap();
    assert!(sessions.len() >= 2, "{sessions:?}");
    // Each new session was fetched 5-10 s before the previous one expired: the lazy cache's
    // 10 s buffer less a random jitter of up to half of it (plus the 250 ms between calls
    // and the whole-second rounding of issue times).
    for pair in sessions.windows(2) {
        let ahead = pair[0].expires_epoch_ms as i64 - pair[1].issued_epoch_ms as i64;
        eprintln!("new credentials {ahead} ms before the previous ones expired");
        assert!(
            (4_000..=11_000).contains(&ahead),
            "refreshed {ahead} ms before expiry: {sessions:?}"
        );
    }
    // Every package call was signed with a live session of the role's account.
    let log = sim.admin().log().await.unwrap();
    let package_calls: Vec<_> = log.iter().filter(|e| e.kind == EntryKind::Call).collect();
    assert_eq!(package_calls.len(), calls);
    assert!(
        package_calls
            .iter()
            .all(|e| e.account == TENANT && e.status == Some(200))
    );
}

/// Status, code and message of a refused AssumeRole.
fn refused<T: std::fmt::Debug>(
    result: Result<T, aws_sdk_sts::error::SdkError<AssumeRoleError>>,
) -> (u16, String, String) {
    let e = result.expect_err("AssumeRole should fail");
    (
        e.raw_response().unwrap().status().as_u16(),
        e.code().unwrap_or("").to_string(),
        e.message().unwrap_or("").to_string(),
    )
}

/// A raw HTTP request with headers.
async fn request(
    sim: &RunningSim,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, http::HeaderMap, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<axum::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("{}{path_and_query}", sim.endpoint()));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client
        .request(
            builder
                .body(Full::new(axum::body::Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn tag<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    &xml[start..end]
}

const STS_AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000";
const FORM: (&str, &str) = (
    "content-type",
    "application/x-www-form-urlencoded; charset=utf-8",
);

#[tokio::test]
async fn the_wire_format_is_the_query_protocol() {
    let sim = sim_with(SimConfig::default().role(StsRole::new(ROLE))).await;
    let body = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A444455556666%3Arole%2Fospkg%2Ftenant-blue&RoleSessionName=raw&Tags.member.1.Key=tenant&Tags.member.1.Value=blue";
    let (status, headers, xml) = request(
        &sim,
        "POST",
        "/",
        &[FORM, ("authorization", STS_AUTH)],
        body,
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(headers["content-type"], "text/xml");
    assert!(
        xml.starts_with("<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"),
        "{xml}"
    );
    let key = tag(&xml, "AccessKeyId");
    assert!(
        key.starts_with("ASIA444455556666") && key.len() == 20,
        "{key}"
    );
    assert_eq!(tag(&xml, "SecretAccessKey").len(), 40);
    assert!(tag(&xml, "SessionToken").len() >= 100);
    let expiration = tag(&xml, "Expiration");
    assert_eq!(
        expiration.len(),
        "2026-01-01T00:00:00Z".len(),
        "{expiration}"
    );
    assert!(expiration.ends_with('Z') && expiration.as_bytes()[10] == b'T');
    assert_eq!(
        tag(&xml, "Arn"),
        "arn:aws:sts::444455556666:assumed-role/tenant-blue/raw"
    );
    assert!(tag(&xml, "AssumedRoleId").ends_with(":raw"));
    assert!(tag(&xml, "PackedPolicySize").parse::<u32>().unwrap() >= 1);
    assert_eq!(tag(&xml, "RequestId"), headers["x-amzn-requestid"]);
    // The region is the credential scope's.
    assert_eq!(sim.admin().sts_log().await.unwrap()[0].region, "eu-west-1");

    // GetCallerIdentity in the query string works too.
    let (status, _, xml) = request(
        &sim,
        "GET",
        "/?Action=GetCallerIdentity&Version=2011-06-15",
        &[("authorization", STS_AUTH)],
        "",
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(tag(&xml, "Account"), DEFAULT_ACCOUNT);

    // Errors: <ErrorResponse> with Type, Code, Message and the request id.
    let denied = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A999999999999%3Arole%2Fx&RoleSessionName=raw";
    let (status, headers, xml) = request(
        &sim,
        "POST",
        "/",
        &[FORM, ("authorization", STS_AUTH)],
        denied,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        xml.starts_with("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"),
        "{xml}"
    );
    assert_eq!(tag(&xml, "Type"), "Sender");
    assert_eq!(tag(&xml, "Code"), "AccessDenied");
    assert_eq!(tag(&xml, "RequestId"), headers["x-amzn-requestid"]);
    let es_scope = common::AUTH;
    let (status, _, xml) = request(
        &sim,
        "POST",
        "/",
        &[FORM, ("authorization", es_scope)],
        denied,
    )
    .await;
    assert_eq!((status, tag(&xml, "Code")), (403, "SignatureDoesNotMatch"));
    let (status, _, xml) = request(&sim, "POST", "/", &[FORM], denied).await;
    assert_eq!(
        (status, tag(&xml, "Code")),
        (403, "MissingAuthenticationToken")
    );
    let (status, _, xml) = request(
        &sim,
        "POST",
        "/",
        &[FORM, ("authorization", STS_AUTH)],
        "Action=GetSessionToken&Version=2011-06-15",
    )
    .await;
    assert_eq!((status, tag(&xml, "Code")), (400, "InvalidAction"));

    // A package-API scope on STS keys is still the package API's business, and a POST / that
    // is not a form goes to the package API's routing as before.
    let (status, headers, _) = request(
        &sim,
        "POST",
        "/",
        &[
            ("content-type", "application/json"),
            ("authorization", es_scope),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-amzn-errortype"], "UnknownOperationException");
}

#[tokio::test]
async fn roles_survive_a_reset_unless_asked_and_sessions_always() {
    let sim = sim_with(SimConfig::default().role(StsRole::new(ROLE))).await;
    let admin = sim.admin();
    let other = "arn:aws:iam::777788889999:role/other";
    admin.allow_role(&StsRole::new(other)).await.unwrap();
    let base = base_config(&sim, "test").await;
    let assumed = sts(&base)
        .assume_role()
        .role_arn(other)
        .role_session_name("kept")
        .send()
        .await
        .unwrap();
    admin.reset().await.unwrap();
    assert_eq!(admin.sts_roles().await.unwrap().len(), 2);
    admin
        .reset_with(ospkg_sim::ResetOptions {
            keep_roles: false,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(admin.sts_roles().await.unwrap(), [StsRole::new(ROLE)]);
    // The session issued before still works, in its account.
    let c = assumed.credentials().unwrap();
    let (client, _) = static_client(&sim, c.access_key_id(), Some(c.session_token())).await;
    create_dictionary(&sim, &client, "after-reset").await;
    assert_eq!(accounts_with(&sim, "after-reset").await, ["777788889999"]);
    assert_eq!(admin.sts_sessions().await.unwrap().len(), 1);
}
