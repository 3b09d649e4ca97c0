//! `cattery sim-cluster`: a SIMULATED Kubernetes cluster.
//!
//! This is a real HTTP(S) peer that real clients (kubectl, client-go,
//! kube-rs, Cattery's agent) talk to exactly as they talk to a
//! kube-apiserver, so their code paths are the real ones; only the far end
//! is simulated (see decision 10 in docs/architecture.md). It serves, from
//! memory:
//!
//! - `/version`, `/healthz`, `/readyz`, `/livez`, legacy API discovery and a
//!   minimal OpenAPI v3 (`discovery.rs`);
//! - namespaces, pods, services, configmaps, networkpolicies and Cattery's
//!   `managementclusterconnections` (`resources.rs`) with list (label and
//!   field selectors, `limit`/`continue`), get, create, update, patch, delete,
//!   deletecollection and watch, with Kubernetes resourceVersion and watch
//!   semantics (the `cattery-store` crate, with the simulator's types and server-set
//!   fields in `objects.rs`; `watch_http.rs`, `api.rs`);
//! - any CustomResourceDefinition applied to it (`crd.rs`): its storage version is served
//!   like the built-in types (discovery, OpenAPI, Table with `additionalPrinterColumns`,
//!   every verb), deleting the CRD deletes its objects; custom resources are not
//!   validated against the CRD's schema;
//! - server-side `Table` printing for `kubectl get` (`table.rs`);
//! - request bodies in JSON, YAML, and Kubernetes protobuf for Namespace, ConfigMap and
//!   Service (what kubectl's `create` subcommands send, `protobuf.rs`);
//! - `dryRun=All` on every write (query parameter, or DeleteOptions for deletes): the
//!   write runs in a store transaction that is rolled back, so it is checked exactly as a
//!   real one and stores nothing;
//! - `pods/exec` over WebSocket with a tiny fake shell (`exec.rs`);
//! - debug endpoints `/_sim/info`, `/_sim/requests`, `/_sim/logstats` and
//!   `/_sim/bytes` (`debug.rs`);
//! - optional bearer-token authentication (`auth.rs`) and HTTPS (`tls.rs`);
//! - with `--logs-dir`, Calico traffic logs for its workloads (`traffic/`):
//!   `flows.log`, `dns.log` and `l7.log` in Felix's JSON-lines format,
//!   rotated like Felix's files, at `--log-rate` records per second. The
//!   traffic model is a fixed call graph of the seeded shop/payments
//!   application (frontend → cart → checkout → payments api → payments db,
//!   checkout → payments db, calls to external APIs, internet clients
//!   reaching the frontend, DNS lookups through kube-dns) resolved against
//!   the store at every tick, so pod IPs, labels, Services and new matching
//!   pods are the store's; allow/deny comes from evaluating the store's
//!   NetworkPolicies at generation time (the `cattery-netpol` crate), so a
//!   policy created through the API changes what is denied next. The seeded
//!   `payments/db-allow-api` policy denies checkout → db from the start;
//! - with `--audit-webhook`, `audit.k8s.io/v1` events for the API requests
//!   it serves, POSTed in `EventList` batches like kube-apiserver's batching
//!   webhook backend (`audit.rs`).
//!
//! The traffic model is NOT a network: no packets, sockets, conntrack, NAT
//! or timings are simulated; volumes, latencies and HTTP response codes are
//! drawn from plausible ranges by a seeded generator (`--log-seed`); only
//! Kubernetes NetworkPolicy is evaluated (no Calico policies, tiers or
//! staged policies); pods other than the seeded workloads only take part
//! through DNS lookups unless they carry a seeded workload's labels.
//!
//! What it does NOT do: no scheduling, controllers, kubelet or containers
//! (pods are `Running` the moment they are created, services get a cluster
//! IP, nothing else happens); no admission, RBAC or authorization
//! (impersonation headers are recorded, not enforced); no schema validation
//! beyond metadata, names and pod containers (`fieldValidation` is accepted
//! and ignored); strategic merge patch is approximated (see `patch.rs`), and
//! server-side apply's field ownership is simplified (lists are atomic, see
//! `cattery_store::managed_fields`); protobuf for other kinds and in responses, SPDY, finalizers and
//! graceful deletion are not implemented (deletes are immediate, a namespace's
//! contents go with it); a paginated list continues from the current state,
//! not a snapshot; `pods/log`, events and every type not listed above are
//! absent (404) unless a CRD defines them; nothing is persisted.
#![forbid(unsafe_code)]

mod api;
pub mod audit;
mod auth;
mod crd;
mod debug;
mod discovery;
mod exec;
mod objects;
use cattery_store::patch;
mod protobuf;
mod resources;
mod seed;
mod status;
mod table;
mod tls;
pub mod traffic;
mod watch_http;

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
    /// Pod IPs come from this CIDR (IPv4 or IPv6). Unset: a /16 in 10.128.0.0/9 chosen
    /// from the cluster name, so differently named sims usually differ; set it to be sure.
    #[arg(long, value_name = "CIDR")]
    pub pod_cidr: Option<ipnet::IpNet>,
}

/// The pod CIDR of a sim called `name` when `--pod-cidr` is not given: `10.X.0.0/16`
/// with X in 128..=255 from a hash of the name (10.0/16 and 10.96/12, the host and
/// service addresses, are never used).
pub fn default_pod_cidr(name: &str) -> ipnet::IpNet {
    use sha2::Digest as _;
    let x = 128 + sha2::Sha256::digest(name.as_bytes())[0] % 128;
    ipnet::IpNet::V4(
        ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, x, 0, 0), 16).expect("valid prefix"),
    )
}

/// Traffic-log and audit options of `cattery sim-cluster` (kept apart from
/// [`SimArgs`] so code that builds a `SimArgs` literal keeps compiling; the
/// CLI takes both through [`SimClusterArgs`]).
#[derive(clap::Args, Clone, Debug)]
pub struct LogArgs {
    /// Write Calico (Felix) format flow, DNS and L7 logs to DIR/flows.log,
    /// DIR/dns.log and DIR/l7.log.
    #[arg(long, value_name = "DIR")]
    pub logs_dir: Option<PathBuf>,
    /// Records per second, all three types together (0 = none).
    #[arg(long, default_value_t = 20.0, value_name = "N")]
    pub log_rate: f64,
    /// Time between generation ticks (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub log_interval: Duration,
    /// Seed of the traffic generator, for reproducible records (random when unset).
    #[arg(long, value_name = "N")]
    pub log_seed: Option<u64>,
    /// Stop after exactly N records in total (flows, DNS and L7 together).
    #[arg(long, value_name = "N")]
    pub log_limit: Option<u64>,
    /// Rotate a log file (NAME -> NAME.1 -> NAME.2 ...) before it exceeds this size.
    #[arg(long, default_value_t = 10 * 1024 * 1024, value_name = "BYTES")]
    pub log_max_bytes: u64,
    /// Rotated files kept per log (Felix keeps 5).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub log_max_files: usize,
    /// Flow and DNS aggregation: Felix's defaults, or none (every IP, name and port).
    #[arg(long, value_enum, default_value = "felix")]
    pub flow_aggregation: traffic::model::Aggregation,
    /// POST audit.k8s.io/v1 EventList batches of the API requests served to URL.
    #[arg(long, value_name = "URL")]
    pub audit_webhook: Option<http::Uri>,
    /// PEM CA bundle to trust for an https --audit-webhook (system roots otherwise).
    #[arg(long, value_name = "FILE")]
    pub audit_webhook_ca_file: Option<PathBuf>,
    /// File holding a bearer token to present to the audit webhook.
    #[arg(long, value_name = "FILE")]
    pub audit_webhook_token_file: Option<PathBuf>,
    /// Most events per webhook batch.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub audit_batch_max_size: usize,
    /// Longest time a batch waits to fill.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub audit_batch_max_wait: Duration,
    /// Events buffered while the webhook is down; beyond that they are dropped and counted.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub audit_queue_size: usize,
    /// User name audited for requests carrying the --token-file token.
    #[arg(long, default_value = audit::DEFAULT_TOKEN_USER, value_name = "NAME")]
    pub audit_token_user: String,
}

impl Default for LogArgs {
    fn default() -> Self {
        LogArgs {
            logs_dir: None,
            log_rate: 20.0,
            log_interval: Duration::from_secs(1),
            log_seed: None,
            log_limit: None,
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 5,
            flow_aggregation: traffic::model::Aggregation::Felix,
            audit_webhook: None,
            audit_webhook_ca_file: None,
            audit_webhook_token_file: None,
            audit_batch_max_size: 100,
            audit_batch_max_wait: Duration::from_secs(1),
            audit_queue_size: 10_000,
            audit_token_user: audit::DEFAULT_TOKEN_USER.to_string(),
        }
    }
}

/// Everything `cattery sim-cluster` takes: the API server's options and the
/// traffic-log/audit options.
#[derive(clap::Args, Clone, Debug)]
pub struct SimClusterArgs {
    /// API server options.
    #[command(flatten)]
    pub sim: SimArgs,
    /// Traffic logs and audit.
    #[command(flatten)]
    pub logs: LogArgs,
}

/// Parses `1s`, `250ms`, `2m` (humantime's forms) or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|e| format!("invalid duration {s:?}: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e}; use e.g. 1s, 250ms, 2m"))
}

/// State shared by every handler.
pub(crate) struct AppState {
    /// Cluster name.
    pub(crate) name: String,
    /// When the simulator started (RFC 3339).
    pub(crate) started_at: String,
    /// All objects and the watch history.
    pub(crate) store: objects::Store,
    /// Required bearer token, if any.
    pub(crate) token: Option<String>,
    /// Recent requests for `/_sim/requests`.
    pub(crate) requests: debug::RequestLog,
    /// Cancelled on shutdown: ends watches and exec sessions.
    pub(crate) shutdown: CancellationToken,
    /// The resourceVersion of the last `/_sim/compact`: open watches end with a
    /// `410 Expired` when it changes.
    pub(crate) compacted: tokio::sync::watch::Sender<u64>,
    /// Traffic-log generator settings, when `--logs-dir` is set.
    pub(crate) traffic: Option<traffic::TrafficConfig>,
    /// Counters of generated traffic logs.
    pub(crate) traffic_stats: Arc<traffic::TrafficStats>,
    /// Audit event producer, when `--audit-webhook` is set.
    pub(crate) audit: Option<audit::Auditor>,
    /// Counters of audit events.
    pub(crate) audit_stats: Arc<audit::AuditStats>,
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
    pod_cidr: ipnet::IpNet,
    token: Option<String>,
    traffic: Option<traffic::TrafficConfig>,
    audit: Option<(audit::Auditor, Arc<audit::AuditStats>, audit::Sender)>,
}

impl SimServer {
    /// Binds the listener, reads the token file and creates TLS material
    /// when asked, so configuration errors surface before serving. No
    /// traffic logs and no audit (see [`SimServer::bind_with_logs`]).
    pub async fn bind(args: &SimArgs) -> anyhow::Result<SimServer> {
        Self::bind_with_logs(args, &LogArgs::default()).await
    }

    /// [`SimServer::bind`] for everything `cattery sim-cluster` takes.
    pub async fn bind_cluster(args: &SimClusterArgs) -> anyhow::Result<SimServer> {
        Self::bind_with_logs(&args.sim, &args.logs).await
    }

    /// [`SimServer::bind`] with traffic logs and/or audit as `logs` asks.
    pub async fn bind_with_logs(args: &SimArgs, logs: &LogArgs) -> anyhow::Result<SimServer> {
        let traffic = match &logs.logs_dir {
            Some(dir) => {
                let config = traffic::TrafficConfig {
                    dir: dir.clone(),
                    rate: logs.log_rate,
                    interval: logs.log_interval,
                    seed: logs.log_seed.unwrap_or_else(traffic::rng::Rng::random_seed),
                    limit: logs.log_limit,
                    max_bytes: logs.log_max_bytes,
                    max_files: logs.log_max_files,
                    aggregation: logs.flow_aggregation,
                };
                traffic::prepare(&config)?;
                Some(config)
            }
            None => None,
        };
        let audit = match &logs.audit_webhook {
            Some(url) => Some(audit::start(audit::AuditConfig {
                url: url.clone(),
                ca_file: logs.audit_webhook_ca_file.clone(),
                batch_max_size: logs.audit_batch_max_size,
                batch_max_wait: logs.audit_batch_max_wait,
                queue_size: logs.audit_queue_size,
                token_user: logs.audit_token_user.clone(),
                webhook_token: match &logs.audit_webhook_token_file {
                    Some(f) => Some(
                        std::fs::read_to_string(f)
                            .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?
                            .trim()
                            .to_string(),
                    ),
                    None => None,
                },
            })?),
            None => None,
        };
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
            pod_cidr: args
                .pod_cidr
                .map(|c| c.trunc())
                .unwrap_or_else(|| default_pod_cidr(&args.name)),
            token,
            traffic,
            audit,
        })
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, ends open
    /// watches and exec sessions, and waits (up to 5 s) for connections.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let store = objects::Store::new(&self.name, self.pod_cidr);
        seed::seed(&store, &self.name);
        let (auditor, audit_stats, audit_sender) = match self.audit {
            Some((a, s, sender)) => (Some(a), s, Some(sender)),
            None => (None, Arc::default(), None),
        };
        let state = Arc::new(AppState {
            name: self.name.clone(),
            started_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            store,
            token: self.token,
            requests: debug::RequestLog::default(),
            shutdown: shutdown.child_token(),
            compacted: tokio::sync::watch::Sender::new(0),
            traffic: self.traffic.clone(),
            traffic_stats: Arc::default(),
            audit: auditor,
            audit_stats,
        });
        let app = router(state.clone());
        // Background work stops after the listener, so what the last
        // requests produced is still generated and delivered.
        let background_stop = CancellationToken::new();
        let mut background = Vec::new();
        if let Some(config) = self.traffic.clone() {
            background.push(tokio::spawn(traffic::run(
                config,
                state.clone(),
                state.traffic_stats.clone(),
                background_stop.clone(),
            )));
        }
        let audit_task = audit_sender.map(|s| tokio::spawn(s.run(background_stop.clone())));
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
                    None => serve_connection(tcp, peer, app, stop).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => serve_connection(stream, peer, app, stop).await,
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
        // Requests are done: release the state's audit producer so the
        // sender sees the queue close once handlers are gone, then stop.
        background_stop.cancel();
        for task in background {
            let _ = task.await;
        }
        if let Some(task) = audit_task {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Serves one connection (HTTP/1.1 with upgrades, or h2) until it ends or
/// shutdown asks it to finish its in-flight requests.
async fn serve_connection<I>(io: I, peer: SocketAddr, app: Router, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    // Each request learns its connection's peer (audit `sourceIPs`).
    let app = tower::ServiceExt::map_request(
        app,
        move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(audit::PeerAddr(peer));
            req
        },
    );
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
        .route("/_sim/logstats", get(debug::logstats))
        .route("/_sim/compact", axum::routing::post(debug::compact))
        .fallback(api::handle)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::audit_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            debug::log_requests,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command, FromArgMatches};

    #[test]
    fn sim_cluster_flags_parse_with_defaults() {
        let cmd = SimClusterArgs::augment_args(Command::new("sim-cluster"));
        cmd.clone().debug_assert();
        let m = cmd
            .try_get_matches_from([
                "sim-cluster",
                "--logs-dir",
                "/tmp/x",
                "--log-interval",
                "250ms",
                "--audit-webhook",
                "https://127.0.0.1:9/audit",
            ])
            .unwrap();
        let a = SimClusterArgs::from_arg_matches(&m).unwrap();
        assert_eq!(a.logs.log_interval, Duration::from_millis(250));
        assert_eq!(a.logs.log_rate, 20.0);
        assert_eq!(a.logs.log_max_bytes, 10 * 1024 * 1024);
        assert_eq!(a.logs.audit_token_user, audit::DEFAULT_TOKEN_USER);
        assert_eq!(a.sim.listen.port(), 6443);
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("2 fortnights").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
