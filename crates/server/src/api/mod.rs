//! The people-facing API on :9443: Kubernetes-style resources and the cluster proxy.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http_body_util::BodyExt;
use serde::Serialize;

use crate::AppState;
use crate::auth::Identity;

pub mod clusters;
pub mod error;

pub use error::ApiError;

/// Largest body accepted by resource endpoints (proxied bodies have their own limit).
pub const MAX_RESOURCE_BODY: usize = 1 << 20;

/// All routes. Everything except `/healthz` requires a bearer token.
pub fn router(state: Arc<AppState>) -> Router {
    let authenticated = Router::new()
        .route("/version", get(version))
        .route(
            "/apis/cattery.dev/v1/managedclusters",
            get(clusters::list).post(clusters::create),
        )
        .route(
            "/apis/cattery.dev/v1/managedclusters/{name}",
            get(clusters::get).delete(clusters::delete),
        )
        .route(
            "/apis/cattery.dev/v1/managementclusters/default",
            get(clusters::management_cluster),
        )
        .route("/clusters/{name}/k8s", any(crate::proxy::handle))
        .route("/clusters/{name}/k8s/{*rest}", any(crate::proxy::handle))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(authenticated)
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(404, format!("no route for {} {}", req.method(), req.uri().path()))
}

async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"cattery": env!("CARGO_PKG_VERSION")}))
}

/// Resolves the bearer token to an [`Identity`] stored in the request's extensions.
async fn authenticate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token else {
        return ApiError::new(401, "no bearer token: pass --token, set CATTERY_TOKEN or run `cattery login`").into_response();
    };
    let Some(identity) = state.auth.authenticate(token) else {
        tracing::info!(path = req.uri().path(), "authentication failed: unknown token");
        return ApiError::new(401, "the bearer token is not valid").into_response();
    };
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// The caller's identity (present on every authenticated route).
pub fn identity(req: &Request) -> Identity {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .expect("authenticate middleware runs before every authenticated route")
}

/// Reads a request body up to `limit` bytes, answering 413 beyond it.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            413,
            format!("request body is larger than the {limit}-byte limit"),
        )),
        Err(e) => Err(ApiError::new(400, format!("reading request body: {e}"))),
    }
}

/// Serializes `value` as YAML when the client accepts only YAML, else JSON.
pub fn respond<T: Serialize>(headers: &http::HeaderMap, code: http::StatusCode, value: &T) -> Response {
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
