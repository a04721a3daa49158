//! The service's error answers: one variant per modelled (or observed) error code.

use axum::http::StatusCode;

/// An error as the package API sends it: code in `x-amzn-ErrorType` and `__type`, text in
/// `message`, with the HTTP status the service model gives the code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceAlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    DisabledOperation(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    /// In the model (409) for CreatePackage and others; the simulator answers it only when
    /// scripted.
    #[error("{0}")]
    InvalidType(String),
    /// In the model without a status (the API reference lists 400); scripted only.
    #[error("{0}")]
    Base(String),
    /// Not in the model; the control plane answers it when callers exceed its request rate.
    #[error("{0}")]
    Throttling(String),
    #[error("{0}")]
    MissingAuthenticationToken(String),
    #[error("{0}")]
    IncompleteSignature(String),
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    UnknownOperation(String),
    /// Session credentials the simulator's STS did not issue (or without their token).
    #[error("{0}")]
    UnrecognizedClient(String),
    /// Session credentials past their expiration (wall clock).
    #[error("{0}")]
    ExpiredToken(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "ValidationException",
            ApiError::ResourceNotFound(_) => "ResourceNotFoundException",
            ApiError::ResourceAlreadyExists(_) => "ResourceAlreadyExistsException",
            ApiError::Conflict(_) => "ConflictException",
            ApiError::LimitExceeded(_) => "LimitExceededException",
            ApiError::DisabledOperation(_) => "DisabledOperationException",
            ApiError::AccessDenied(_) => "AccessDeniedException",
            ApiError::Internal(_) => "InternalException",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailableException",
            ApiError::InvalidType(_) => "InvalidTypeException",
            ApiError::Base(_) => "BaseException",
            ApiError::Throttling(_) => "ThrottlingException",
            ApiError::MissingAuthenticationToken(_) => "MissingAuthenticationTokenException",
            ApiError::IncompleteSignature(_) => "IncompleteSignatureException",
            ApiError::InvalidSignature(_) => "InvalidSignatureException",
            ApiError::UnknownOperation(_) => "UnknownOperationException",
            ApiError::UnrecognizedClient(_) => "UnrecognizedClientException",
            ApiError::ExpiredToken(_) => "ExpiredTokenException",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::Throttling(_) | ApiError::Base(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::ResourceNotFound(_)
            | ApiError::InvalidType(_)
            | ApiError::ResourceAlreadyExists(_)
            | ApiError::Conflict(_)
            | ApiError::LimitExceeded(_)
            | ApiError::DisabledOperation(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::AccessDenied(_)
            | ApiError::MissingAuthenticationToken(_)
            | ApiError::IncompleteSignature(_)
            | ApiError::InvalidSignature(_)
            | ApiError::UnrecognizedClient(_)
            | ApiError::ExpiredToken(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownOperation(_) => StatusCode::NOT_FOUND,
        }
    }

    /// A ValidationException in the service's "N validation error detected" phrasing, naming
    /// the member so that callers (and tests) can tell which input was refused.
    pub fn invalid(field: &str, value: &str, constraint: &str) -> Self {
        ApiError::Validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    pub fn missing(field: &str) -> Self {
        ApiError::Validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    }

    pub fn package_not_found(id: &str) -> Self {
        ApiError::ResourceNotFound(format!("Package not found: {id}"))
    }

    pub fn domain_not_found(name: &str) -> Self {
        ApiError::ResourceNotFound(format!("Domain not found: {name}"))
    }
}
