//! The package API over HTTP: requests parsed and routed (the routing table is in `routes`),
//! SigV4 scope, fault injection, call log, and the error wire format.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::call_record::CallRecord;
use crate::error::ApiError;
use crate::faults::Verdict;
use crate::service::{Request, Sim};
use crate::state::Scope;
use crate::validate::{self, Body};
use crate::wire::PackageForAssociation;

mod routes;

pub use routes::Operation;
use routes::{Route, route};
pub(crate) use routes::{percent_decode, query_pairs};

/// Who made a request: the state it addresses and the access key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub scope: Scope,
    pub access_key_id: String,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` when the key is one the simulator's
    /// STS issued (set once its session token has been checked).
    pub assumed_role_arn: Option<String>,
}

/// Region and account from the SigV4 credential scope
/// (`Credential=AKID/DATE/REGION/es/aws4_request`). Signatures are not verified.
pub fn scope_from_headers(headers: &HeaderMap, default_account: &str) -> Result<Scope, ApiError> {
    caller_from_headers(headers, default_account).map(|c| c.scope)
}

/// The caller named by the SigV4 `Authorization` header; see [`scope_from_headers`]. The
/// account is the access key id when that is 12 digits, the role's account for keys the
/// simulator's STS issues (`ASIA` + 12 digits + suffix), else `default_account`. The session
/// token of `ASIA…` keys is not checked here (see [`crate::sts::StsState::package_caller`]).
pub fn caller_from_headers(headers: &HeaderMap, default_account: &str) -> Result<Caller, ApiError> {
    caller_for_service(headers, default_account, "es")
}

/// [`caller_from_headers`] for a credential scoped to `expected_service` (`es`, `sts`).
pub fn caller_for_service(
    headers: &HeaderMap,
    default_account: &str,
    expected_service: &str,
) -> Result<Caller, ApiError> {
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::MissingAuthenticationToken(
            "Missing Authentication Token".to_string(),
        ));
    };
    let auth = auth.to_str().unwrap_or("");
    let Some(params) = auth.strip_prefix("AWS4-HMAC-SHA256") else {
        return Err(ApiError::IncompleteSignature(format!(
            "Authorization header requires the AWS4-HMAC-SHA256 algorithm. Authorization={auth}"
        )));
    };
    let param = |name: &str| {
        params
            .split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
    };
    let (Some(credential), Some(_), Some(_)) = (
        param("Credential"),
        param("SignedHeaders"),
        param("Signature"),
    ) else {
        return Err(ApiError::IncompleteSignature(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters."
                .to_string(),
        ));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [key_id, _date, region, service, "aws4_request"] = parts.as_slice() else {
        return Err(ApiError::IncompleteSignature(format!(
            "Credential must have the form <key>/<date>/<region>/<service>/aws4_request: {credential}"
        )));
    };
    if *service != expected_service {
        return Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{expected_service}'. (got '{service}')"
        )));
    }
    if region.is_empty() || key_id.is_empty() {
        return Err(ApiError::IncompleteSignature(format!(
            "Credential has an empty access key or region: {credential}"
        )));
    }
    let account = crate::sts::account_of_key(key_id).unwrap_or(default_account);
    Ok(Caller {
        scope: Scope {
            account: account.to_string(),
            region: region.to_string(),
        },
        access_key_id: key_id.to_string(),
        assumed_role_arn: None,
    })
}

fn required_label(value: Option<String>, field: &str) -> Result<String, ApiError> {
    value.ok_or_else(|| ApiError::missing(field))
}

fn parse_request(route: &Route, uri: &Uri, body: &[u8]) -> Result<Request, ApiError> {
    let json = validate::parse_json(body)?;
    let body = Body::new(&json);
    let package_id = || -> Result<String, ApiError> {
        let id = required_label(route.package_id.clone(), "PackageID")?;
        validate::package_id("PackageID", &id)?;
        Ok(id)
    };
    let domain_name = || -> Result<String, ApiError> {
        let name = required_label(route.domain_name.clone(), "DomainName")?;
        validate::domain_name("DomainName", &name)?;
        Ok(name)
    };
    let page = || validate::query_page(&query_pairs(uri));
    Ok(match route.operation {
        Operation::CreatePackage => Request::CreatePackage(validate::create_package(&body)?),
        Operation::UpdatePackage => Request::UpdatePackage(validate::update_package(&body)?),
        Operation::DescribePackages => {
            Request::DescribePackages(validate::describe_packages(&body)?)
        }
        Operation::GetPackageVersionHistory => Request::GetPackageVersionHistory {
            package_id: package_id()?,
            page: page()?,
        },
        Operation::DeletePackage => Request::DeletePackage {
            package_id: package_id()?,
        },
        Operation::AssociatePackage => {
            let package_id = package_id()?;
            let domain_name = domain_name()?;
            let parsed = validate::associate_package(&body)?;
            Request::AssociatePackage {
                domain_name,
                package: PackageForAssociation {
                    package_id,
                    ..parsed
                },
            }
        }
        Operation::AssociatePackages => {
            Request::AssociatePackages(validate::associate_packages(&body)?)
        }
        Operation::DissociatePackage => Request::DissociatePackage {
            package_id: package_id()?,
            domain_name: domain_name()?,
        },
        Operation::DissociatePackages => {
            Request::DissociatePackages(validate::dissociate_packages(&body)?)
        }
        Operation::ListDomainsForPackage => Request::ListDomainsForPackage {
            package_id: package_id()?,
            page: page()?,
        },
        Operation::ListPackagesForDomain => Request::ListPackagesForDomain {
            domain_name: domain_name()?,
            page: page()?,
        },
        Operation::UpdatePackageScope => {
            Request::UpdatePackageScope(validate::update_package_scope(&body)?)
        }
    })
}

/// Every request outside `/_sim/` lands here.
pub async fn handle(
    State(sim): State<Sim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if crate::sts::is_sts_request(&method, &uri, &headers) {
        return crate::sts::handle(sim, method, uri, headers, body).await;
    }
    let Some(route) = route(&method, uri.path()) else {
        return error_response(&ApiError::UnknownOperation(format!(
            "No operation matches {method} {}",
            uri.path()
        )));
    };
    let operation = route.operation.name();
    let (decision, caller) = {
        let mut service = sim.lock();
        service.journal.count_call(operation);
        let token = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok());
        let caller =
            caller_from_headers(&headers, &service.settings.default_account).and_then(|c| {
                let now = crate::sts::real_now_ms();
                service.sts.package_caller(c, token, now, operation)
            });
        let scope = caller.as_ref().ok().map(|c| &c.scope);
        let decision = service.faults.decide(operation, scope);
        (decision, caller)
    };
    let mut record = CallRecord {
        operation,
        scope: Scope {
            account: String::new(),
            region: String::new(),
        },
        access_key_id: None,
        package_id: route.package_id.clone(),
        domain_name: route.domain_name.clone(),
        fault: None,
        effect: false,
        commit_message: None,
        lookup: false,
        caller_arn: None,
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(e) => return record.finish(&sim, Err(e)),
    };
    record.scope = caller.scope.clone();
    record.access_key_id = Some(caller.access_key_id.clone());
    record.caller_arn = caller.assumed_role_arn.clone();
    record.fault = decision
        .verdict
        .fault_name()
        .or((decision.hold_response_ms > 0).then_some("holdAfterEffect"));
    if decision.verdict == Verdict::RateLimited {
        return record.finish(&sim, Err(ApiError::Throttling("Rate exceeded".to_string())));
    }
    if decision.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
    }
    if let Some(e) = injected_error(&decision.verdict, operation, &caller) {
        return record.finish(&sim, Err(e));
    }
    if let Verdict::LateEffect(ms) = decision.verdict {
        // The request is on its way: it runs later, on its own, and no answer ever comes.
        let sim = sim.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            // Nobody hears the answer; the record says what happened.
            let _ = run(&sim, &caller, &route, &uri, &body, &mut record);
            record.close(&sim);
        });
        return std::future::pending().await;
    }
    let result = run(&sim, &caller, &route, &uri, &body, &mut record);
    if let Ok(value) = &result
        && record.package_id.is_none()
        && route.operation == Operation::CreatePackage
    {
        record.package_id = value["PackageDetails"]["PackageID"]
            .as_str()
            .map(str::to_string);
    }
    // After-effect faults replace whatever the operation answered.
    let response = match decision.verdict {
        Verdict::ErrorAfterEffect => record.finish(
            &sim,
            Err(ApiError::Internal(
                "Internal error (injected by ospkg-sim after the operation took effect)"
                    .to_string(),
            )),
        ),
        Verdict::CloseAfterEffect => record.close(&sim),
        _ => record.finish(&sim, result),
    };
    if decision.hold_response_ms > 0 {
        // The operation has taken effect; the caller just does not hear of it yet.
        tokio::time::sleep(Duration::from_millis(decision.hold_response_ms)).await;
    }
    response
}

/// Runs the operation a request asks for and notes in its call record what it touched and
/// whether it took effect.
fn run(
    sim: &Sim,
    caller: &Caller,
    route: &Route,
    uri: &Uri,
    body: &[u8],
    record: &mut CallRecord,
) -> Result<Value, ApiError> {
    let result = match parse_request(route, uri, body) {
        Ok(request) => {
            let (package_id, domain_name) = request.subject();
            record.lookup = request.is_lookup();
            record.package_id = record.package_id.take().or(package_id);
            record.domain_name = record.domain_name.take().or(domain_name);
            sim.lock().execute(&caller.scope, request)
        }
        Err(e) => Err(e),
    };
    record.effect = result.is_ok();
    record.commit_message = commit_message(record.operation, body);
    result
}

/// The commit message an UpdatePackage carries, for the call log.
fn commit_message(operation: &str, body: &[u8]) -> Option<String> {
    (operation == Operation::UpdatePackage.name())
        .then(|| serde_json::from_slice::<Value>(body).ok())
        .flatten()
        .and_then(|b| b["CommitMessage"].as_str().map(str::to_string))
}

/// The error a before-effect fault answers instead of running the operation.
fn injected_error(verdict: &Verdict, operation: &str, caller: &Caller) -> Option<ApiError> {
    Some(match verdict {
        Verdict::Throttle => ApiError::Throttling("Rate exceeded".to_string()),
        Verdict::Internal => {
            ApiError::Internal("Internal error (injected by ospkg-sim)".to_string())
        }
        Verdict::Unavailable => {
            ApiError::ServiceUnavailable("Service unavailable (injected by ospkg-sim)".to_string())
        }
        Verdict::AccessDenied => ApiError::AccessDenied(format!(
            "User: {} is not authorized to perform: es:{operation} because no identity-based policy allows the es:{operation} action (injected by ospkg-sim)",
            caller.assumed_role_arn.clone().unwrap_or_else(|| format!(
                "arn:aws:iam::{}:user/{}",
                caller.scope.account, caller.access_key_id
            ))
        )),
        Verdict::Validation(message) => ApiError::Validation(message.clone()),
        Verdict::InvalidType(message) => ApiError::InvalidType(message.clone()),
        Verdict::Base(message) => ApiError::Base(message.clone()),
        Verdict::Proceed
        | Verdict::RateLimited
        | Verdict::ErrorAfterEffect
        | Verdict::CloseAfterEffect
        | Verdict::LateEffect(_) => return None,
    })
}

pub(crate) fn request_id() -> HeaderValue {
    let id: u128 = rand::random();
    let hex = format!("{id:032x}");
    let text = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("sim"))
}

pub fn error_response(error: &ApiError) -> Response {
    let body = json!({ "__type": error.code(), "message": error.to_string() });
    let mut response = (error.status(), axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert("x-amzn-ErrorType", HeaderValue::from_static(error.code()));
    headers.insert("x-amzn-RequestId", request_id());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn scope_comes_from_the_credential() {
        let h = auth(
            "AWS4-HMAC-SHA256 Credential=111122223333/20240101/eu-west-1/es/aws4_request, SignedHeaders=host, Signature=abc",
        );
        let s = scope_from_headers(&h, "123456789012").unwrap();
        assert_eq!(
            (s.account.as_str(), s.region.as_str()),
            ("111122223333", "eu-west-1")
        );
        let h = auth(
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/es/aws4_request, SignedHeaders=host, Signature=abc",
        );
        assert_eq!(
            scope_from_headers(&h, "123456789012").unwrap().account,
            "123456789012"
        );
        let h = auth(
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
        );
        assert_eq!(
            scope_from_headers(&h, "1").unwrap_err().code(),
            "InvalidSignatureException"
        );
        // Keys the simulator's STS issues name the role's account.
        let h = auth(
            "AWS4-HMAC-SHA256 Credential=ASIA444455556666AAAB/20240101/us-east-1/es/aws4_request, SignedHeaders=host, Signature=abc",
        );
        assert_eq!(
            scope_from_headers(&h, "123456789012").unwrap().account,
            "444455556666"
        );
        let h = auth(
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=abc",
        );
        assert_eq!(
            caller_for_service(&h, "123456789012", "sts")
                .unwrap()
                .scope
                .region,
            "us-east-1"
        );
        assert_eq!(
            scope_from_headers(&HeaderMap::new(), "1")
                .unwrap_err()
                .code(),
            "MissingAuthenticationTokenException"
        );
    }

    #[test]
    fn routes() {
        let r = route(&Method::POST, "/2021-01-01/packages/associate/F1/my-domain").unwrap();
        assert_eq!(r.operation, Operation::AssociatePackage);
        assert_eq!(r.domain_name.as_deref(), Some("my-domain"));
        assert!(route(&Method::GET, "/2021-01-01/packages").is_none());
        assert_eq!(percent_decode("a%2Fb+c", false), "a/b+c");
        assert_eq!(percent_decode("a+b", true), "a b");
    }
}
