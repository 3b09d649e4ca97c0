//! `cattery sim-cluster`: a SIMULATED Kubernetes cluster.
//!
//! This is a real HTTP(S) peer that real clients (kubectl, client-go,
//! kube-rs, Cattery's agent) talk to exactly as they talk to a
//! kube-apiserver, so their code paths are the real ones; only the far end
//! is simulated (see decision 10 in ARCHITECTURE.md). It serves, from
//! memory:
//!
//! - `/version`, `/healthz`, `/readyz`, `/livez`, legacy API discovery and a
//!   minimal OpenAPI v3 (`discovery.rs`);
//! - namespaces, pods, services, configmaps, networkpolicies and Cattery's
//!   `managementclusterconnections` (`resources.rs`) with list (label and
//!   field selectors, `limit`/`continue`), get, create, update, patch, delete,
//!   deletecollection and watch, with Kubernetes resourceVersion and watch
//!   semantics (`store.rs`, `watch.rs`, `api.rs`);
//! - server-side `Table` printing for `kubectl get` (`table.rs`);
//! - `pods/exec` over WebSocket with a tiny fake shell (`exec.rs`);
//! - debug endpoints `/_sim/info`, `/_sim/requests` and `/_sim/bytes` (`debug.rs`);
//! - optional bearer-token authentication (`auth.rs`) and HTTPS (`tls.rs`).
//!
//! What it does NOT do: no scheduling, controllers, kubelet or containers
//! (pods are `Running` the moment they are created, services get a cluster
//! IP, nothing else happens); no admission, RBAC or authorization
//! (impersonation headers are recorded, not enforced); no schema validation
//! beyond metadata, names and pod containers (`fieldValidation` is accepted
//! and ignored); strategic merge patch is approximated (see `patch.rs`);
//! server-side apply, dry-run, protobuf, SPDY, finalizers and graceful
//! deletion are not implemented (deletes are immediate, a namespace's
//! contents go with it); a paginated list continues from the current state,
//! not a snapshot; `pods/log`, events and every type not listed above are
//! absent (404); nothing is persisted.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod debug;
mod discovery;
mod exec;
mod patch;
mod resources;
mod seed;
mod selector;
mod status;
mod store;
mod table;
mod tls;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Command-line options of `cattery sim-cluster`.
#[derive(clap::Args, Clone, Debug)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Name of the simulated cluster (shown in /_sim/info and seeded objects).
    #[arg(long, default_value = "sim")]
    pub name: String,
    /// Serve HTTPS with a self-signed CA written to DIR/ca.crt.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Require `Authorization: Bearer <contents of FILE>` like a kube-apiserver would.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// State shared by every handler.
pub(crate) struct AppState {
    /// Cluster name.
    pub(crate) name: String,
    /// When the simulator started (RFC 3339).
    pub(crate) started_at: String,
    /// All objects and the watch history.
    pub(crate) store: store::Store,
    /// Required bearer token, if any.
    pub(crate) token: Option<String>,
    /// Recent requests for `/_sim/requests`.
    pub(crate) requests: debug::RequestLog,
    /// Cancelled on shutdown: ends watches and exec sessions.
    pub(crate) shutdown: CancellationToken,
}

/// A bound, not yet running, simulated cluster.
pub struct SimServer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// Base URL, e.g. `http://127.0.0.1:6443`.
    pub url: String,
    /// PEM of the CA that signed the serving certificate when `--tls-dir` is set.
    pub ca_cert_pem: Option<String>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    name: String,
    token: Option<String>,
}

impl SimServer {
    /// Binds the listener, reads the token file and creates TLS material
    /// when asked, so configuration errors surface before serving.
    pub async fn bind(args: &SimArgs) -> anyhow::Result<SimServer> {
        let token = match &args.token_file {
            Some(path) => {
                let t = std::fs::read_to_string(path)
                    .with_context(|| format!("reading token file {}", path.display()))?
                    .trim()
                    .to_string();
                anyhow::ensure!(!t.is_empty(), "token file {} is empty", path.display());
                Some(t)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let local_addr = listener.local_addr()?;
        let (tls, ca_cert_pem) = match &args.tls_dir {
            Some(dir) => {
                let m = tls::load_or_create(dir, &args.name, local_addr)?;
                (
                    Some(tokio_rustls::TlsAcceptor::from(m.config)),
                    Some(m.ca_pem),
                )
            }
            None => (None, None),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(SimServer {
            local_addr,
            url: format!("{scheme}://{local_addr}"),
            ca_cert_pem,
            listener,
            tls,
            name: args.name.clone(),
            token,
        })
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, ends open
    /// watches and exec sessions, and waits (up to 5 s) for connections.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let store = store::Store::new(&self.name);
        seed::seed(&store, &self.name);
        let state = Arc::new(AppState {
            name: self.name.clone(),
            started_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            store,
            token: self.token,
            requests: debug::RequestLog::default(),
            shutdown: shutdown.child_token(),
        });
        let app = router(state.clone());
        tracing::info!(name = %self.name, url = %self.url, "simulated cluster serving");
        let tracker = TaskTracker::new();
        loop {
            let (tcp, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (app, tls, stop) = (app.clone(), self.tls.clone(), shutdown.clone());
            tracker.spawn(async move {
                let _ = tcp.set_nodelay(true);
                match tls {
                    None => serve_connection(tcp, app, stop).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => serve_connection(stream, app, stop).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        state.shutdown.cancel();
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after 5s; dropping them");
        }
        Ok(())
    }
}

/// Serves one connection (HTTP/1.1 with upgrades, or h2) until it ends or
/// shutdown asks it to finish its in-flight requests.
async fn serve_connection<I>(io: I, app: Router, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn router(state: Arc<AppState>) -> Router {
    let health = || async { "ok" };
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(health))
        .route("/livez", get(health))
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::api_versions))
        .route("/api/{version}", get(discovery::core_resources))
        .route("/apis", get(discovery::api_groups))
        .route("/apis/{group}", get(discovery::api_group_handler))
        .route("/apis/{group}/{version}", get(discovery::group_resources))
        .route("/openapi/v3", get(discovery::openapi_v3_index))
        .route("/openapi/v3/{*rest}", get(discovery::openapi_v3_doc))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/exec",
            any(exec::handle),
        )
        .route("/_sim/info", get(debug::info))
        .route("/_sim/requests", get(debug::requests))
        .route("/_sim/bytes", get(debug::bytes))
        .fallback(api::handle)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            debug::log_requests,
        ))
        .with_state(state)
}
