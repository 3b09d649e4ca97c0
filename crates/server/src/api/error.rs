//! API errors rendered as Kubernetes `Status` objects.

use axum::response::{IntoResponse, Response};
use cattery_api::Status;
use cattery_api::wire::DecodeError;

use super::gate::AuthzOutcome;
use crate::registry::LookupError;
use crate::store::StoreError;

/// An error answered to an API caller as a `Status` body with the matching HTTP code.
#[derive(Debug)]
pub struct ApiError(pub Box<Status>, Option<Box<AuthzOutcome>>);

impl ApiError {
    /// An error with the standard reason for `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        ApiError(Box::new(Status::failure(code, message)), None)
    }

    /// An error with an explicit Kubernetes reason.
    pub fn with_reason(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError(Box::new(Status::with_reason(code, reason, message)), None)
    }

    /// Carries a handler's authorization decision to the audit trail.
    pub fn with_outcome(mut self, outcome: AuthzOutcome) -> Self {
        self.1 = Some(Box::new(outcome));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = http::StatusCode::from_u16(self.0.code)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = (code, axum::Json(*self.0)).into_response();
        if let Some(o) = self.1 {
            res.extensions_mut().insert(*o);
        }
        if code == http::StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"cattery\""),
            );
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::AlreadyExists { .. } => {
                ApiError::with_reason(409, "AlreadyExists", e.to_string())
            }
            StoreError::NotFound { .. } => ApiError::new(404, e.to_string()),
            StoreError::Backend(_) => {
                tracing::error!("{e}");
                ApiError::new(500, e.to_string())
            }
        }
    }
}

impl From<cattery_store::StoreError> for ApiError {
    fn from(e: cattery_store::StoreError) -> Self {
        if e.code() == 500 {
            tracing::error!("{e}");
        }
        ApiError::with_reason(e.code(), e.reason(), e.to_string())
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        ApiError::new(400, e.to_string())
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match &e {
            LookupError::NotFound(_) => ApiError::new(404, e.to_string()),
            LookupError::NotConnected { .. } => ApiError::new(503, e.to_string()),
        }
    }
}
