//! The people-facing API on :9443: Kubernetes-style resources and the cluster proxy.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http_body_util::BodyExt;
use serde::Serialize;

use crate::AppState;
use crate::auth::Identity;

pub mod clusters;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod gate;
pub mod kinds;
pub mod protobuf;
pub mod rbac;
pub mod request_info;
pub mod resources;
pub mod review;
pub mod tokens;

pub use error::ApiError;

/// Largest body accepted by resource endpoints (proxied bodies have their own limit).
pub const MAX_RESOURCE_BODY: usize = 1 << 20;

/// All routes. Everything except `/healthz` passes the [`gate`]: authentication,
/// authorization and the audit trail.
pub fn router(state: Arc<AppState>) -> Router {
    let authenticated = Router::new()
        .route("/version", get(version))
        .route("/api", get(discovery::api))
        .route("/apis", get(discovery::apis))
        .route("/apis/{group}", get(discovery::group))
        .route("/apis/{group}/{version}", get(discovery::group_version))
        .route("/openapi/v3", get(discovery::openapi_index))
        .route("/openapi/v3/{*rest}", get(discovery::openapi_v3_doc))
        .route(
            "/apis/cattery.dev/v1/managementclusters/default",
            get(clusters::management_cluster),
        )
        .route(
            "/apis/logs.cattery.dev/v1/{type}/search",
            post(crate::logs::api::search),
        )
        .route(
            "/apis/logs.cattery.dev/v1/{type}/tail",
            get(crate::logs::api::tail),
        )
        .route(
            "/apis/cattery.dev/v1/tokens",
            get(tokens::list).post(tokens::create),
        )
        .route(
            "/apis/cattery.dev/v1/tokens/{id}",
            get(tokens::get).delete(tokens::revoke),
        )
        .route(
            "/apis/rbac.authorization.k8s.io/v1/{plural}",
            get(rbac::list_all).post(rbac::create_cluster_scoped),
        )
        .route(
            "/apis/rbac.authorization.k8s.io/v1/{plural}/{name}",
            get(rbac::get_cluster_scoped)
                .put(rbac::replace_cluster_scoped)
                .delete(rbac::delete_cluster_scoped),
        )
        .route(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{plural}",
            get(rbac::list_namespaced).post(rbac::create_namespaced),
        )
        .route(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{plural}/{name}",
            get(rbac::get_namespaced)
                .put(rbac::replace_namespaced)
                .delete(rbac::delete_namespaced),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(review::access_review),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(review::whoami),
        )
        .route("/metrics", get(metrics));
    let authenticated = resources::routes(authenticated)
        .route("/clusters/{name}/k8s", any(proxy))
        .route("/clusters/{name}/k8s/{*rest}", any(proxy))
        .fallback(not_found)
        .method_not_allowed_fallback(extract::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::gate,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .method_not_allowed_fallback(extract::method_not_allowed)
        .merge(authenticated)
        .with_state(state)
}

/// The cluster proxy, behind [`extract::Path`] so an undecodable path is a `Status` too.
async fn proxy(
    state: State<Arc<AppState>>,
    extract::Path(params): extract::Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    crate::proxy::handle(state, axum::extract::Path(params), req).await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        404,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.logs.metrics.render(),
    )
        .into_response()
}

async fn version() -> axum::Json<serde_json::Value> {
    // kubectl reads gitVersion/major/minor; `cattery` stays for existing clients.
    axum::Json(serde_json::json!({
        "cattery": env!("CARGO_PKG_VERSION"),
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION"), "-cattery"),
        "major": "",
        "minor": "",
    }))
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

/// [`check_metadata`] for kinds kept in the resource store, which keep labels and
/// annotations (so `kubectl apply`'s last-applied annotation round-trips).
pub fn check_stored_metadata(kind: &str, meta: &cattery_api::ObjectMeta) -> Result<(), ApiError> {
    let mut m = meta.clone();
    m.annotations.clear();
    check_metadata(kind, &m, true)
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
