//! The people-facing API on :9443: Kubernetes-style resources and the cluster proxy.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use crate::AppState;

pub mod clusters;
pub mod discovery;
pub mod gate;
pub mod kinds;
pub mod protobuf;
pub mod rbac;
pub mod request_info;
pub mod resources;
pub mod review;
pub mod tokens;

// What every handler shares lives in the leaf module `crate::handler`; re-exported here so
// the resource handlers below can keep importing it from `super`.
pub(crate) use crate::handler::{
    ApiError, MAX_RESOURCE_BODY, check_metadata, check_stored_metadata, extract, identity,
    read_body, respond,
};

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
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(review::access_review),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(review::whoami),
        )
        .route("/metrics", get(metrics));
    let authenticated = resources::routes(authenticated)
        // Merged into the generic `{name}` route (which has no POST): a POST there is a
        // policy preview when the name is `preview`, a 405 otherwise.
        .route(
            "/apis/cattery.dev/v1/federatedpolicies/{name}",
            post(crate::federation::preview::handle),
        )
        // Merged into the generic tokens collection (list and watch): creating a token
        // returns its secret once.
        .route("/apis/cattery.dev/v1/tokens", post(tokens::create))
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
