//! Turning SDK failures into [`BackendError`]s.
//!
//! Errors are identified by the service's error *code* ([`ProvideErrorMetadata::code`]),
//! never by HTTP status: the status the service sends for a code is not stable (see
//! docs/aws-api.md, "Errors"). [`classify_service_error`] is the single place that turns a
//! code into a [`BackendError`].

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_opensearch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::operation::BuildError;

use super::BackendError;

/// Whether a service message says that the package does not exist ("Package not found", in
/// any case): a ValidationException that means not found, or which of the things an
/// AssociatePackage names is missing.
pub fn says_package_not_found(message: &str) -> bool {
    message.to_ascii_lowercase().contains("package not found")
}

/// Turns any SDK failure into a [`BackendError`]: service errors by their code; no answer (a
/// timeout, a failed dispatch, an unreadable response) as [`BackendError::Unanswered`]; a
/// request that could not be made (credentials not available yet) as
/// [`BackendError::NotSent`].
pub fn map_sdk_error<E>(err: SdkError<E, HttpResponse>) -> BackendError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(context) => {
            let service = context.err();
            classify_service_error(
                service.code(),
                service.message(),
                context.raw().status().as_u16(),
            )
        }
        // The request could not be built: a required member or a path label (an empty
        // package id) is missing, which retrying cannot fix. Other construction failures
        // (e.g. credentials that could not be loaded) may pass.
        SdkError::ConstructionFailure(_) if caused_by_build_error(&err) => {
            BackendError::Invalid(DisplayErrorContext(&err).to_string())
        }
        // A role STS refused to let the operator assume: nothing was sent.
        _ if role_refused(&err) => BackendError::Credentials(DisplayErrorContext(&err).to_string()),
        // The request may have reached the service, and its effect may come after this.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            BackendError::Unanswered(DisplayErrorContext(&err).to_string())
        }
        // Credentials not available yet: the request was never sent.
        SdkError::ConstructionFailure(_) => {
            BackendError::NotSent(DisplayErrorContext(&err).to_string())
        }
        _ => BackendError::Transient(DisplayErrorContext(&err).to_string()),
    }
}

/// Whether the call failed because STS answered an AssumeRole with an error (access denied,
/// a wrong external id, a disabled region), as opposed to not answering at all.
fn role_refused(err: &(dyn StdError + 'static)) -> bool {
    let mut cause = err.source();
    while let Some(c) = cause {
        if let Some(credentials) = c.downcast_ref::<CredentialsError>() {
            return sts_refused(credentials);
        }
        cause = c.source();
    }
    false
}

/// Whether a credentials provider failed because STS answered its AssumeRole with an error
/// (access denied, a wrong external id, a disabled region), not because STS did not answer.
pub fn sts_refused(credentials: &CredentialsError) -> bool {
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    match credentials {
        CredentialsError::InvalidConfiguration(_) => true,
        CredentialsError::ProviderError(_) => credentials.source().is_some_and(|s| {
            matches!(
                s.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>(),
                Some(SdkError::ServiceError(_))
            )
        }),
        _ => false,
    }
}

fn caused_by_build_error(err: &(dyn StdError + 'static)) -> bool {
    let mut cause = err.source();
    while let Some(c) = cause {
        if c.downcast_ref::<BuildError>().is_some() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Maps the service's error code (and, for two cases, its message or status) to a
/// [`BackendError`]. The message is kept as the service wrote it.
///
/// `code` may be raw (`ValidationException:http://…`, `aws#ValidationException`); it is
/// cleaned the way the SDK does. An answer without a code did not come from the service's
/// error model (a proxy, a load balancer, a 503 with no body) and is transient. `status`
/// only matters for a code the operator does not know: a 5xx then is transient, anything
/// else a rejection.
pub fn classify_service_error(
    code: Option<&str>,
    message: Option<&str>,
    status: u16,
) -> BackendError {
    let code = code.map(clean_code).filter(|c| !c.is_empty());
    let text = match (message, code) {
        (Some(m), _) if !m.is_empty() => m.to_owned(),
        (_, Some(c)) => c.to_owned(),
        _ => format!("HTTP {status} without an error code"),
    };
    let Some(code) = code else {
        return BackendError::Transient(text);
    };
    match code {
        "ResourceNotFoundException" => BackendError::NotFound(text),
        // Some paths answer an unknown package id with a ValidationException (Terraform
        // treats it as not found too).
        "ValidationException" if says_package_not_found(&text) => {
            BackendError::NotFound(text)
        }
        "ValidationException" | "InvalidTypeException" => BackendError::Invalid(text),
        // The operation is disabled for this package or account (e.g. scope changes on a
        // package without vending): the user's configuration, so retrying cannot help.
        "DisabledOperationException" => BackendError::Invalid(text),
        "ResourceAlreadyExistsException" => BackendError::AlreadyExists(text),
        "ConflictException" => BackendError::Conflict(text),
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        // Both spellings are seen for the two signature errors (with and without the suffix).
        | "MissingAuthenticationToken"
        | "MissingAuthenticationTokenException"
        | "IncompleteSignature"
        | "IncompleteSignatureException" => BackendError::AccessDenied(text),
        // The same code names a request-rate limit and a quota; only the message tells (by
        // its phrase: a quota's message can name a domain like "corporate-search").
        "LimitExceededException" if names_a_rate_limit(&text) => BackendError::Throttled(text),
        "LimitExceededException" | "ServiceQuotaExceededException" => {
            BackendError::LimitExceeded(text)
        }
        "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "Throttling"
        | "ThrottledException" => BackendError::Throttled(text),
        "InternalException"
        | "BaseException"
        | "DependencyFailureException"
        | "InternalFailure"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException"
        // Expired credentials are refreshed by the provider; the next attempt may pass.
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "RequestExpired"
        // A stale token: the next pass starts paging from the beginning.
        | "InvalidPaginationTokenException" => BackendError::Transient(text),
        _ if status >= 500 => BackendError::Transient(text),
        _ => BackendError::Invalid(format!("{code}: {text}")),
    }
}

/// `ValidationException:http://internal.amazon.com/…` and `aws#ValidationException` both
/// name `ValidationException`.
fn clean_code(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    let code = code.rsplit('#').next().unwrap_or(code);
    code.trim()
}

/// Whether a `LimitExceededException`'s message is about the request rate ("Rate exceeded")
/// rather than a quota.
fn names_a_rate_limit(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "rate exceeded",
        "rate limit",
        "request rate",
        "too many requests",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: &str, message: &str, status: u16) -> BackendError {
        classify_service_error(Some(code), Some(message), status)
    }

    #[test]
    fn codes_map_to_variants_whatever_the_status() {
        type Variant = fn(String) -> BackendError;
        let cases: &[(&str, u16, Variant)] = &[
            ("ResourceNotFoundException", 409, BackendError::NotFound),
            ("ResourceNotFoundException", 400, BackendError::NotFound),
            ("ValidationException", 400, BackendError::Invalid),
            ("InvalidTypeException", 409, BackendError::Invalid),
            ("DisabledOperationException", 409, BackendError::Invalid),
            (
                "ResourceAlreadyExistsException",
                409,
                BackendError::AlreadyExists,
            ),
            (
                "ResourceAlreadyExistsException",
                400,
                BackendError::AlreadyExists,
            ),
            ("ConflictException", 409, BackendError::Conflict),
            ("AccessDeniedException", 403, BackendError::AccessDenied),
            (
                "MissingAuthenticationTokenException",
                403,
                BackendError::AccessDenied,
            ),
            (
                "IncompleteSignatureException",
                403,
                BackendError::AccessDenied,
            ),
            ("LimitExceededException", 409, BackendError::LimitExceeded),
            (
                "ServiceQuotaExceededException",
                402,
                BackendError::LimitExceeded,
            ),
            ("ThrottlingException", 400, BackendError::Throttled),
            ("TooManyRequestsException", 429, BackendError::Throttled),
            ("RequestLimitExceeded", 400, BackendError::Throttled),
            ("InternalException", 500, BackendError::Transient),
            ("BaseException", 400, BackendError::Transient),
        ];
        for (code, status, variant) in cases {
            assert_eq!(
                classify(code, "the service said so", *status),
                variant("the service said so".to_owned()),
                "{code} with HTTP {status}"
            );
        }
    }

    #[test]
    fn a_quota_naming_a_domain_with_rate_in_it_is_still_a_limit() {
        let message = "Domain corporate-search would have more than 20 packages";
        assert_eq!(
            classify("LimitExceededException", message, 409),
            BackendError::LimitExceeded(message.into())
        );
        assert_eq!(
            classify("LimitExceededException", "Request rate limit exceeded", 400),
            BackendError::Throttled("Request rate limit exceeded".into())
        );
    }

    #[test]
    fn a_rate_limit_is_throttling_and_a_quota_is_a_limit() {
        assert_eq!(
            classify("LimitExceededException", "Rate exceeded", 400),
            BackendError::Throttled("Rate exceeded".into())
        );
        assert_eq!(
            classify(
                "LimitExceededException",
                "Maximum number of packages reached",
                409
            ),
            BackendError::LimitExceeded("Maximum number of packages reached".into())
        );
    }

    #[test]
    fn validation_saying_package_not_found_is_not_found() {
        assert_eq!(
            classify("ValidationException", "Package not found: F123", 400),
            BackendError::NotFound("Package not found: F123".into())
        );
        assert_eq!(
            classify("ValidationException", "PACKAGE NOT FOUND", 400),
            BackendError::NotFound("PACKAGE NOT FOUND".into())
        );
        assert_eq!(
            classify(
                "ValidationException",
                "Operation not allowed. This package cannot be deleted.",
                400
            ),
            BackendError::Invalid("Operation not allowed. This package cannot be deleted.".into())
        );
    }

    #[test]
    fn raw_codes_are_cleaned_like_the_sdk_does() {
        assert_eq!(
            classify(
                "ThrottlingException:http://internal.amazon.com/coral/",
                "Rate exceeded",
                400
            ),
            BackendError::Throttled("Rate exceeded".into())
        );
        assert_eq!(
            classify("aws#ConflictException", "in use", 409),
            BackendError::Conflict("in use".into())
        );
    }

    #[test]
    fn without_a_code_or_message() {
        assert_eq!(
            classify_service_error(None, None, 503),
            BackendError::Transient("HTTP 503 without an error code".into())
        );
        assert_eq!(
            classify_service_error(Some("ConflictException"), None, 409),
            BackendError::Conflict("ConflictException".into())
        );
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        assert_eq!(
            classify("SomethingNewException", "boom", 502),
            BackendError::Transient("boom".into())
        );
        assert_eq!(
            classify("SomethingNewException", "no", 400),
            BackendError::Invalid("SomethingNewException: no".into())
        );
    }
}
