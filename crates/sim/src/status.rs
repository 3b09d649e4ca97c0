//! Kubernetes `Status` errors.
//!
//! Every failure the simulator returns is a `Status` object (kind Status,
//! apiVersion v1, status Failure) with the `reason` and `code` a
//! kube-apiserver would use, because clients (kubectl, client-go, kube-rs)
//! branch on `reason`/`code`, not on the message.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

/// An API error, rendered as a Kubernetes `Status`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is malformed (bad body, mismatched kind...).
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong bearer token.
    #[error("Unauthorized")]
    Unauthorized,
    /// 404: the object (or its namespace) does not exist.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// Resource (plural) as Kubernetes reports it, e.g. `pods`.
        kind: String,
        /// Object name.
        name: String,
    },
    /// 404 for a URL the simulator does not serve.
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// 405: the verb is not supported on this URL.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409 AlreadyExists.
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists {
        /// Resource (plural).
        kind: String,
        /// Object name.
        name: String,
    },
    /// 409 Conflict (stale resourceVersion).
    #[error("{0}")]
    Conflict(String),
    /// 410 Gone: a watch or list asked for history we no longer keep.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// What the client asked for.
        requested: u64,
        /// The oldest resourceVersion still retained.
        oldest: u64,
    },
    /// 413: the body exceeds the 3 MiB limit.
    #[error("request entity too large: limit is {0} bytes")]
    TooLarge(usize),
    /// 415: a content type we don't handle (e.g. server-side apply).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422 Invalid: the object fails validation of `field`.
    #[error("{kind} \"{name}\" is invalid: {field}: {detail}")]
    Invalid {
        /// Object kind.
        kind: String,
        /// Object name (may be empty).
        name: String,
        /// JSON path of the offending field.
        field: String,
        /// What is wrong with it.
        detail: String,
    },
    /// 500: the store could not persist a write.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// HTTP status code of this error.
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AlreadyExists { .. } | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Expired { .. } => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Expired { .. } => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound { kind, name } | ApiError::AlreadyExists { kind, name } => {
                Some(json!({"name": name, "kind": kind}))
            }
            ApiError::Invalid {
                kind,
                name,
                field,
                detail,
            } => Some(json!({
                "name": name,
                "kind": kind,
                "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}],
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

impl From<cattery_store::StoreError> for ApiError {
    fn from(e: cattery_store::StoreError) -> Self {
        use cattery_store::StoreError as S;
        match e {
            S::NotFound { resource, name } => ApiError::NotFound {
                kind: resource,
                name,
            },
            S::AlreadyExists { resource, name } => ApiError::AlreadyExists {
                kind: resource,
                name,
            },
            S::Conflict(m) => ApiError::Conflict(m),
            S::Expired { requested, oldest } => ApiError::Expired { requested, oldest },
            S::BadRequest(m) => ApiError::BadRequest(m),
            S::Backend(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code(), axum::Json(self.to_status())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_status_has_details() {
        let s = ApiError::NotFound {
            kind: "pods".into(),
            name: "x".into(),
        }
        .to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "pods \"x\" not found");
        assert_eq!(s["details"]["name"], "x");
    }
}
