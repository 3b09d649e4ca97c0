//! The Kubernetes `Status` object used for every error response.

use serde::{Deserialize, Serialize};

/// A `meta/v1` Status: what kubectl and client libraries expect in an error body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always `v1`.
    pub api_version: String,
    /// Always `Status`.
    pub kind: String,
    /// `Success` or `Failure`.
    pub status: String,
    /// Human-readable explanation naming what is wrong.
    pub message: String,
    /// Machine-readable reason, e.g. `NotFound`, `AlreadyExists`, `Invalid`.
    pub reason: String,
    /// The HTTP status code.
    pub code: u16,
}

impl Status {
    /// A failure Status with the standard reason for `code`.
    pub fn failure(code: u16, message: impl Into<String>) -> Self {
        Status::with_reason(code, reason_for(code), message)
    }

    /// A failure Status with an explicit reason.
    pub fn with_reason(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Status {
            api_version: "v1".into(),
            kind: "Status".into(),
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
        }
    }
}

/// The Kubernetes `StatusReason` conventionally paired with an HTTP code.
pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "AlreadyExists",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        431 => "RequestHeaderFieldsTooLarge",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}
