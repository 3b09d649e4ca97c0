//! What the API's handlers share (in `crate::api`, `crate::logs::api` and `crate::proxy`):
//! the `Status` error type, extractors that reject with a `Status`, body limits, the
//! caller's identity, YAML/JSON responses and the handler's own authorization outcome.
//!
//! A leaf: it depends on no handler and not on the router, so handlers in different
//! modules can share it without importing each other.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::Serialize;

use crate::auth::Identity;

pub(crate) mod error;
pub(crate) mod extract;

pub(crate) use error::ApiError;

/// Largest body accepted by resource endpoints (proxied bodies have their own limit).
pub(crate) const MAX_RESOURCE_BODY: usize = 1 << 20;

/// A handler's own authorization result (log reads, filtered lists), for the audit trail.
#[derive(Clone, Debug)]
pub struct AuthzOutcome {
    /// Allowed or refused.
    pub allowed: bool,
    /// Why.
    pub reason: String,
    /// The objects it concerned (for log reads: the clusters asked for).
    pub name: Option<String>,
}

impl AuthzOutcome {
    /// Attaches this outcome to `res`.
    pub fn attach(self, mut res: Response) -> Response {
        res.extensions_mut().insert(self);
        res
    }
}

/// The caller's identity (present on every authenticated route).
pub fn identity(req: &Request) -> Identity {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .expect("authenticate middleware runs before every authenticated route")
}

/// Reads a request body up to `limit` bytes, answering 413 beyond it. A declared
/// `Content-Length` over the limit is refused before reading, so a client waiting on
/// `Expect: 100-continue` gets the 413 instead of a connection reset mid-upload.
pub async fn read_body(req: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let req = refuse_oversized(req, limit as u64).await?;
    let body: Body = req.into_body();
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            413,
            format!("request body is larger than the {limit}-byte limit"),
        )),
        Err(e) => Err(ApiError::new(400, format!("reading request body: {e}"))),
    }
}

/// Largest body read and discarded before answering 413 over HTTP/2 (see [`refuse_oversized`]).
const MAX_DISCARD: u64 = 64 << 20;

/// Answers 413 when the declared `Content-Length` exceeds `limit`.
///
/// Over HTTP/1.1 the body is left unread, so a client waiting on `Expect: 100-continue`
/// never sends it. Over HTTP/2 the body (up to [`MAX_DISCARD`]) is read and dropped first:
/// answering mid-upload resets the stream, and common clients then report a framing error
/// instead of the 413.
pub async fn refuse_oversized(req: Request, limit: u64) -> Result<Request, ApiError> {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(len) = declared.filter(|len| *len > limit) else {
        return Ok(req);
    };
    if req.version() == http::Version::HTTP_2 && len <= MAX_DISCARD {
        let mut body = req.into_body();
        let drain = async {
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drain).await;
    }
    Err(ApiError::new(
        413,
        format!("request body of {len} bytes is larger than the {limit}-byte limit"),
    ))
}

/// Refuses `metadata` that a Cattery resource of `kind` cannot honour, rather than dropping
/// it: standard fields it does not keep that mean something (`namespace` on these
/// cluster-scoped resources, `generateName`, `ownerReferences`, `finalizers`), annotations
/// (not stored), and labels unless `keeps_labels`; labels it keeps must follow Kubernetes'
/// rules. Server-set fields (`resourceVersion`, `managedFields`, …) are ignored, as
/// kube-apiserver ignores them on create.
pub fn check_metadata(
    kind: &str,
    meta: &cattery_api::ObjectMeta,
    keeps_labels: bool,
) -> Result<(), ApiError> {
    let invalid = |field: &str, msg: String| {
        ApiError::with_reason(400, "Invalid", format!("{kind} metadata.{field}: {msg}"))
    };
    if let Some(f) = meta.unsupported().next() {
        let why = if f == "namespace" {
            format!("{kind} is cluster-scoped; remove the namespace")
        } else {
            format!("not supported on {kind}; remove it")
        };
        return Err(invalid(f, why));
    }
    if !meta.annotations.is_empty() {
        return Err(invalid(
            "annotations",
            format!("{kind} annotations are not stored; remove them"),
        ));
    }
    if !keeps_labels && !meta.labels.is_empty() {
        return Err(invalid(
            "labels",
            format!("{kind} labels are not stored; remove them"),
        ));
    }
    cattery_api::validate_labels(&meta.labels).map_err(|e| invalid("labels", e.to_string()))
}

/// Serializes `value` as YAML when the client accepts only YAML, else JSON.
pub fn respond<T: Serialize>(
    headers: &http::HeaderMap,
    code: http::StatusCode,
    value: &T,
) -> Response {
    let wants_yaml = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("yaml") && !a.contains("json"));
    if wants_yaml {
        let json = serde_json::to_value(value).unwrap_or_default();
        match serde_saphyr::to_string(&json) {
            Ok(y) => (code, [(http::header::CONTENT_TYPE, "application/yaml")], y).into_response(),
            Err(e) => ApiError::new(500, format!("encoding YAML: {e}")).into_response(),
        }
    } else {
        (code, axum::Json(value)).into_response()
    }
}

/// [`check_metadata`] for kinds kept in the resource store, which keep labels and
/// annotations (so `kubectl apply`'s last-applied annotation round-trips).
pub(crate) fn check_stored_metadata(
    kind: &str,
    meta: &cattery_api::ObjectMeta,
) -> Result<(), ApiError> {
    let mut m = meta.clone();
    m.annotations.clear();
    check_metadata(kind, &m, true)
}
