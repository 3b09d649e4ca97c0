//! The Cattery management plane (`cattery server`).
//!
//! Two listeners: the API for people (:9443, bearer tokens) and the tunnel listener for
//! agents (:9449, mTLS). State lives in SQLite in the data directory; the CA, the server's
//! certificates and the first admin token are created there on first start.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

// Public: what `cattery` (crates/cli), crates/bench and the workspace tests use. Everything
// else is crate-private, so the modules below can change without breaking another crate.
pub mod auth;
pub mod cluster_client;

pub(crate) mod agent_control;
pub(crate) mod api;
pub(crate) mod audit_trail;
pub(crate) mod authz;
pub(crate) mod cluster_tasks;
pub(crate) mod federation;
pub(crate) mod files;
pub(crate) mod follow;
pub(crate) mod handler;
pub(crate) mod https;
pub(crate) mod logs;
pub(crate) mod manifest;
pub(crate) mod migrate;
pub(crate) mod pki;
pub(crate) mod proxy;
pub(crate) mod registry;
pub(crate) mod store;
pub(crate) mod tunnel_listener;

pub use audit_trail::AuditTrail;
pub use registry::Registry;

/// What the in-crate benchmarks (`benches/`) drive directly; not an API for other crates.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::audit_trail::AuditEvent;
    pub use crate::audit_trail::indexer::index_lines;
    pub use crate::logs::LogService;
}

use auth::oidc::{OidcAuthenticator, OidcConfig};
use auth::ratelimit::FailureLimiter;
use auth::tokens::NewToken;
use auth::{ADMIN_GROUP, ADMIN_USER, Identity, TokenAuthenticator};
use pki::Ca;
use store::{SqliteStore, StateStore};

/// How to run the management plane.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Holds the CA, certificates, tokens and the state database.
    pub data_dir: PathBuf,
    /// People-facing HTTPS listener.
    pub api_addr: SocketAddr,
    /// Agents' mTLS tunnel listener.
    pub tunnel_addr: SocketAddr,
    /// `host:port` agents dial (`ManagementCluster.spec.address`); derived when `None`.
    pub address: Option<String>,
    /// User-supplied API certificate and key (PEM files); the CA issues one otherwise.
    pub api_tls: Option<(PathBuf, PathBuf)>,
    /// Days to keep each log type.
    pub retention: cattery_logstore::Retention,
    /// Accept OIDC JWTs from this issuer as well as Cattery's own tokens.
    pub oidc: Option<OidcConfig>,
    /// The UI's sessions end after this long without a request (default 30 minutes).
    pub ui_session_idle: Option<std::time::Duration>,
    /// What the API's door checks. Without the `bench-modes` feature the only value is
    /// [`AccessControl::Enforced`]; the feature adds the modes `cattery-bench rbac` uses to
    /// measure what authorization and auditing cost.
    pub access_control: AccessControl,
}

/// What the API's door checks (see [`api::gate`]).
///
/// A production build (`cattery`, built without the `bench-modes` feature) has one
/// mode: everything is authenticated, authorized and audited. The other modes are compiled
/// in only for the benchmark crate (`crates/bench`), which enables `bench-modes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessControl {
    /// Authentication, RBAC authorization and the audit trail (the only production mode).
    #[default]
    Enforced,
    /// Authentication only: every authenticated caller may do everything and nothing is
    /// audited. For benchmarks measuring RBAC's cost (feature `bench-modes` only).
    #[cfg(feature = "bench-modes")]
    AuthenticationOnlyForBenchmarks,
    /// Authentication and the audit trail, no authorization: every authenticated caller
    /// may do everything, and every request is audited as allowed. For benchmarks that
    /// separate RBAC's own cost from the audit trail's (feature `bench-modes` only).
    #[cfg(feature = "bench-modes")]
    AuditWithoutAuthorizationForBenchmarks,
}

/// Shared state of the API handlers.
pub(crate) struct AppState {
    /// Clusters and tunnels.
    pub registry: Arc<Registry>,
    /// Token authentication.
    pub auth: TokenAuthenticator,
    /// OIDC authentication, when configured.
    pub oidc: Option<Arc<OidcAuthenticator>>,
    /// Failed-authentication budget per source address.
    pub limiter: FailureLimiter,
    /// The RBAC policy in force.
    pub authz: authz::Authz,
    /// The management plane's own audit trail.
    pub audit: Arc<audit_trail::AuditTrail>,
    /// What the door checks (read only by the `bench-modes` modes; production enforces).
    #[cfg_attr(not(feature = "bench-modes"), allow(dead_code))]
    pub access_control: AccessControl,
    /// Signs cluster certificates.
    pub ca: Ca,
    /// `host:port` agents dial.
    pub address: String,
    /// Central logs.
    pub logs: Arc<logs::LogService>,
    /// Kubernetes-style objects (ManagedCluster, FederatedPolicy, tokens, RBAC objects),
    /// with watch.
    pub resources: Arc<api::resources::HubStore>,
    /// Cancelled when the server stops (ends open watches).
    pub shutdown: CancellationToken,
    /// The FederatedPolicy reconciler's shared state (clusters being removed).
    pub federation: federation::Handle,
}

/// A started management plane.
pub struct RunningServer {
    /// Bound API address.
    pub api_addr: SocketAddr,
    /// Bound tunnel address.
    pub tunnel_addr: SocketAddr,
    /// Address written into manifests.
    pub address: String,
    /// The admin token, only on the first start (it is also in `DATA_DIR/admin.token`).
    pub admin_token: Option<String>,
    /// Path of the CA certificate clients should trust.
    pub ca_file: PathBuf,
    /// The registry (for embedding, e.g. in `cattery demo` and benchmarks).
    pub registry: Arc<Registry>,
    /// The audit trail (for benchmarks: how many events are not yet searchable).
    pub audit: Arc<audit_trail::AuditTrail>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Waits until both listeners have stopped (after the shutdown token is cancelled).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.registry.close_all();
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn derive_address(tunnel: SocketAddr) -> String {
    if tunnel.ip().is_unspecified() {
        let host = hostname().unwrap_or_else(|| "localhost".into());
        tracing::warn!(
            "no --address given; agents will dial {host}:{} (set --address to a name or IP they can reach)",
            tunnel.port()
        );
        format!("{host}:{}", tunnel.port())
    } else {
        tunnel.to_string()
    }
}

/// Deletes expired log indices at start and then hourly.
async fn expire_logs(logs: Arc<logs::LogService>, shutdown: CancellationToken) {
    loop {
        let l = logs.clone();
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        match tokio::task::spawn_blocking(move || l.store.expire(now_ms)).await {
            Ok(Ok(deleted)) if !deleted.is_empty() => {
                tracing::info!("log retention deleted {}", deleted.join(", "))
            }
            Ok(Err(e)) => tracing::error!("log retention: {e}"),
            _ => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Writes tokens' last-used times every few seconds and once more at shutdown.
async fn flush_token_use(state: Arc<AppState>, shutdown: CancellationToken) {
    loop {
        let stop = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => false,
        };
        let s = state.clone();
        let res = tokio::task::spawn_blocking(move || s.auth.flush_last_used()).await;
        if let Ok(Err(e)) = res {
            tracing::warn!("recording tokens' last use: {e}");
        }
        if stop {
            return;
        }
    }
}

/// Starts both listeners; they stop when `shutdown` is cancelled.
pub async fn start(
    cfg: ServerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    let dir = &cfg.data_dir;
    files::create_private_dir(dir)
        .with_context(|| format!("creating data dir {} (mode 0700)", dir.display()))?;
    let sqlite = SqliteStore::open(&dir.join("state.db"))
        .with_context(|| format!("opening {}", dir.join("state.db").display()))?;
    let resources = Arc::new(
        api::resources::open_store(&dir.join("state.db")).with_context(|| {
            format!(
                "opening the resource store in {}",
                dir.join("state.db").display()
            )
        })?,
    );
    migrate::legacy_rows(&sqlite, &resources)
        .context("moving tokens and RBAC objects into the resource store")?;
    let store: Arc<dyn StateStore> = Arc::new(sqlite);
    let ca = Ca::load_or_create(dir).context("loading the CA")?;
    let auth = TokenAuthenticator::new(resources.clone());
    let authz = authz::Authz::new(resources.clone());
    let oidc = match cfg.oidc.clone() {
        Some(c) => Some(
            OidcAuthenticator::new(c)
                .await
                .map(Arc::new)
                .context("setting up OIDC authentication")?,
        ),
        None => None,
    };
    let sso: Option<Arc<dyn cattery_ui::SsoProvider>> = match &oidc {
        Some(auth) => auth::oidc_login::OidcLogin::new(auth.clone())
            .await
            .context("setting up OIDC browser sign-in")?
            .map(|l| Arc::new(l) as Arc<dyn cattery_ui::SsoProvider>),
        None => None,
    };
    let admin_token = if auth.is_empty() {
        let (_, token) = auth.create(NewToken {
            identity: Identity {
                user: ADMIN_USER.into(),
                groups: vec![ADMIN_GROUP.into()],
            },
            description: Some("created on first start".into()),
            ttl: None,
        })?;
        files::write_private(&dir.join("admin.token"), format!("{token}\n").as_bytes())
            .context("writing admin.token")?;
        Some(token)
    } else {
        None
    };

    let tunnel_listener = TcpListener::bind(cfg.tunnel_addr)
        .await
        .with_context(|| format!("binding the tunnel listener on {}", cfg.tunnel_addr))?;
    let api_listener = TcpListener::bind(cfg.api_addr)
        .await
        .with_context(|| format!("binding the API listener on {}", cfg.api_addr))?;
    let tunnel_addr = tunnel_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let address = cfg
        .address
        .clone()
        .unwrap_or_else(|| derive_address(tunnel_addr));
    let (addr_host, _) = cattery_tunnel::dial::split_host_port(&address)
        .map_err(|e| anyhow::anyhow!("ManagementCluster spec.address: {e}"))?;

    let mut hosts = vec![
        addr_host,
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ];
    if let Some(h) = hostname() {
        hosts.push(h);
    }
    if !api_addr.ip().is_unspecified() {
        hosts.push(api_addr.ip().to_string());
    }
    hosts.sort();
    hosts.dedup();
    let tunnel_cert = pki::server_cert(&ca, dir, "tunnel", &hosts)?;
    let (api_chain, api_key) = match &cfg.api_tls {
        Some((cert, key)) => {
            let c = std::fs::read_to_string(cert)
                .with_context(|| format!("reading {}", cert.display()))?;
            let k = std::fs::read_to_string(key)
                .with_context(|| format!("reading {}", key.display()))?;
            (
                cattery_tunnel::pem::certs(&cert.display().to_string(), &c)?,
                cattery_tunnel::pem::private_key(&key.display().to_string(), &k)?,
            )
        }
        None => {
            let issued = pki::server_cert(&ca, dir, "api", &hosts)?;
            (
                cattery_tunnel::pem::certs("api.crt", &issued.cert_pem)?,
                cattery_tunnel::pem::private_key("api.key", &issued.key_pem)?,
            )
        }
    };

    let registry = Arc::new(Registry::open(store.clone())?);
    api::clusters::reconcile_store(&registry, &resources)
        .context("moving registered clusters into the resource store")?;
    let log_dir = dir.join("logs");
    let log_store =
        cattery_logstore::EmbeddedStore::open_with(&log_dir, cfg.retention, logs::store_options()?)
            .with_context(|| format!("opening the log store in {}", log_dir.display()))?;
    let logs = Arc::new(logs::LogService::new(Arc::new(log_store)));
    let ca_certs = cattery_tunnel::pem::certs("ca.crt", ca.cert_pem())?;
    let tunnel_tls = cattery_tunnel::tls::tunnel_server_config(
        &ca_certs,
        cattery_tunnel::pem::certs("tunnel.crt", &tunnel_cert.cert_pem)?,
        cattery_tunnel::pem::private_key("tunnel.key", &tunnel_cert.key_pem)?,
        registry.clone(),
    )?;
    let api_tls = cattery_tunnel::tls::https_server_config(api_chain, api_key)?;

    let api_stopped = CancellationToken::new();
    let journal_dir = dir.join("audit-journal");
    let (audit, audit_task) =
        audit_trail::AuditTrail::start(&journal_dir, logs.clone(), api_stopped.clone())
            .with_context(|| format!("opening the audit journal in {}", journal_dir.display()))?;
    let state = Arc::new(AppState {
        registry: registry.clone(),
        auth,
        oidc,
        limiter: FailureLimiter::default(),
        authz,
        audit: audit.clone(),
        access_control: cfg.access_control,
        ca,
        address: address.clone(),
        logs: logs.clone(),
        resources,
        shutdown: shutdown.clone(),
        federation: federation::Handle::default(),
    });
    // The Manager UI at `/` and `/ui/...`: a client of the API router, through its door.
    let router = cattery_ui::router(
        api::router(state.clone()),
        cattery_ui::UiConfig {
            forward: |from, to| {
                if let Some(peer) = from.get::<api::gate::PeerAddr>() {
                    to.insert(*peer);
                }
            },
            sso,
            session_idle: cfg
                .ui_session_idle
                .unwrap_or(cattery_ui::UiConfig::default().session_idle),
            ..Default::default()
        },
    );
    let api_done = api_stopped.clone();
    let https_task = https::serve(
        api_listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(api_tls)),
        router,
        shutdown.clone(),
    );
    let tasks = vec![
        tokio::spawn(tunnel_listener::serve(
            tunnel_listener,
            tokio_rustls::TlsAcceptor::from(Arc::new(tunnel_tls)),
            registry.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(cluster_tasks::log_pullers(
            registry.clone(),
            logs.clone(),
            audit.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(expire_logs(logs.clone(), shutdown.clone())),
        tokio::spawn(async move {
            https_task.await;
            api_done.cancel();
        }),
        tokio::spawn(async move {
            let _ = audit_task.await;
        }),
        tokio::spawn(federation::run(state.clone(), shutdown.clone())),
        tokio::spawn({
            let (st, stop) = (state.clone(), shutdown.clone());
            async move { st.authz.follow(stop).await }
        }),
        tokio::spawn({
            let (st, stop) = (state.clone(), shutdown.clone());
            async move { st.auth.follow(stop).await }
        }),
        tokio::spawn(flush_token_use(state, shutdown.clone())),
    ];
    tracing::info!(%api_addr, %tunnel_addr, address, "management plane started");
    Ok(RunningServer {
        api_addr,
        tunnel_addr,
        address,
        admin_token,
        ca_file: dir.join("ca.crt"),
        registry,
        audit,
        tasks,
    })
}
