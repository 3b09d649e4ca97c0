//! Cattery's Manager UI: the fleet in one web page, served by `cattery server` at `/` on
//! the API port (see `docs/design/0014-manager-ui.md`).
//!
//! The UI is a *client of the same door*: every read and write it makes is an in-process
//! request to the API router, carrying the signed-in person's bearer token, so
//! authentication, RBAC and the audit trail apply exactly as they do for kubectl and the
//! CLI. This crate never sees the server's stores (it does not depend on
//! `cattery-server`; the server mounts it).
//!
//! Pages are rendered on the server (maud), with htmx, server-sent events and a few small
//! self-hosted scripts for the live parts; every asset is embedded in the binary.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

mod api;
mod assets;
mod ctx;
mod error;
mod flow_count;
mod fmt;
mod layout;
mod pages;
mod refresh;
mod security;
mod session;
mod sso;
mod url_state;

pub use sso::{SsoFuture, SsoLogin, SsoPending, SsoProvider, SsoRevokeFuture, SsoStart};

/// Copies what the API's door needs from the browser's request into the UI's in-process
/// API request (the client address the failed-authentication limiter and the audit trail
/// use). The server supplies it because only the server knows its connection types.
pub type ForwardExtensions = fn(from: &http::Extensions, to: &mut http::Extensions);

/// How the UI runs.
#[derive(Clone)]
pub struct UiConfig {
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however active.
    pub session_absolute: Duration,
    /// Most sessions held at once (the oldest is dropped beyond it).
    pub max_sessions: usize,
    /// See [`ForwardExtensions`].
    pub forward: ForwardExtensions,
    /// How often live views (the clusters table) re-read the API.
    pub live_interval: Duration,
    /// "Sign in with SSO", when the server has an OpenID Connect issuer with browser
    /// sign-in configured.
    pub sso: Option<Arc<dyn SsoProvider>>,
}

impl std::fmt::Debug for UiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiConfig")
            .field("session_idle", &self.session_idle)
            .field("session_absolute", &self.session_absolute)
            .field("max_sessions", &self.max_sessions)
            .field("live_interval", &self.live_interval)
            .field("sso", &self.sso.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(12 * 3600),
            max_sessions: 10_000,
            forward: |_, _| {},
            live_interval: Duration::from_secs(1),
            sso: None,
        }
    }
}

/// Shared state of the UI's handlers.
pub(crate) struct Ui {
    pub(crate) api: api::Api,
    pub(crate) sessions: session::Sessions,
    /// SSO sign-ins waiting for the issuer's redirect back.
    pub(crate) pending: sso::PendingTable,
    pub(crate) config: UiConfig,
}

/// The API router with the UI's routes (`/` and `/ui/...`) merged in. `api` is the
/// router the UI calls for everything it shows or changes; its paths are unchanged.
pub fn router(api: Router, config: UiConfig) -> Router {
    let ui = Arc::new(Ui {
        api: api::Api::new(api.clone(), config.forward),
        sessions: session::Sessions::new(
            config.session_idle,
            config.session_absolute,
            config.max_sessions,
        ),
        pending: sso::PendingTable::default(),
        config,
    });
    let routes = Router::new()
        .route("/", get(pages::root))
        .route("/ui", get(pages::root))
        .route("/ui/", get(pages::root))
        .route(
            "/ui/sign-in",
            get(pages::signin::form).post(pages::signin::submit),
        )
        .route("/ui/sign-in/sso", get(pages::signin::sso_start))
        .route("/ui/sign-in/sso/callback", get(pages::signin::sso_callback))
        .route("/ui/sign-out", post(pages::signin::sign_out))
        .route("/ui/assets/{file}", get(assets::serve))
        .route("/ui/overview", get(pages::overview::page))
        .route(
            "/ui/clusters",
            get(pages::clusters::page).post(pages::clusters::create),
        )
        .route("/ui/clusters/new", get(pages::clusters::new_form))
        .route("/ui/clusters/events", get(pages::clusters::events))
        .route(
            "/ui/clusters/{name}/remove",
            get(pages::clusters::confirm_remove).post(pages::clusters::remove),
        )
        .route("/ui/logs/{type}", get(pages::logs::page))
        .route("/ui/logs/{type}/export", get(pages::logs::export))
        .route("/ui/logs/{type}/live", get(pages::logs::live))
        .route("/ui/graph", get(pages::graph::page))
        .route("/ui/graph/data", get(pages::graph::data))
        .route("/ui/graph/tables", get(pages::graph::tables))
        .route("/ui/policies", get(pages::policies::page))
        .route("/ui/policies/export", get(pages::policies::export))
        .route("/ui/access", get(pages::access::page))
        .route(pages::picker::SEARCH_PATH, get(pages::picker::search))
        .route("/ui/{*rest}", get(pages::not_found).post(pages::not_found))
        .layer(axum::middleware::map_response(security::headers))
        .with_state(ui);
    api.merge(routes)
}
