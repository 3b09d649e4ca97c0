//! Accepting agents' tunnels on the tunnel port (9449).
//!
//! Each accepted connection: TLS 1.3 handshake (client certificate checked by the
//! [`Registry`] inside the handshake), then the HTTP/2 *client* handshake on it, then the
//! agent is asked for its versions and the tunnel is attached to its cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use cattery_api::agent_protocol::{AGENT_AUTHORITY, AgentInfo, PATH_INFO, PATH_PING, PATH_REFUSED};
use cattery_tunnel::session::{self, Sender};
use http_body_util::BodyExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::logs::LogService;
use crate::registry::{AttachError, Registry, Tunnel};

/// Handshakes allowed in flight at once: bounds the CPU a connection flood can take.
const MAX_PENDING_HANDSHAKES: usize = 512;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const INFO_TIMEOUT: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Accepts tunnels until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    registry: Arc<Registry>,
    logs: Arc<LogService>,
    shutdown: CancellationToken,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("tunnel accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many tunnel handshakes in progress; dropping connection");
            continue;
        };
        let (acceptor, registry, logs, shutdown) = (
            acceptor.clone(),
            registry.clone(),
            logs.clone(),
            shutdown.clone(),
        );
        let span = tracing::info_span!("tunnel", %peer);
        tokio::spawn(
            handle(tcp, peer, acceptor, registry, logs, shutdown, permit).instrument(span),
        );
    }
}

async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    registry: Arc<Registry>,
    logs: Arc<LogService>,
    shutdown: CancellationToken,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    // rustls reads 4 KiB per call; below it, read the socket in 64 KiB gulps (the buffer
    // exists only while data flows, so idle tunnels keep none).
    let tcp = cattery_tunnel::readbuf::ReadBuffered::new(tcp);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!("refused tunnel from {peer}: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(
                "refused tunnel from {peer}: TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}"
            );
            return;
        }
    };
    drop(permit);
    let Some(fingerprint) = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| cattery_tunnel::fingerprint_sha256(c))
    else {
        return;
    };
    let Some(name) = registry.cluster_for(&fingerprint) else {
        tracing::warn!("refused tunnel from {peer}: certificate was revoked during the handshake");
        return;
    };
    let closer = CancellationToken::new();
    let io = cattery_tunnel::closable::Closable::new(tls, closer.clone());
    let (sender, conn) = match session::client_handshake::<_, Body>(io).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(cluster = name, "HTTP/2 handshake with agent failed: {e}");
            return;
        }
    };
    let conn_task = {
        let closer = closer.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = conn => r.map_err(|e| e.to_string()).err().unwrap_or_else(|| "the agent closed it".into()),
                _ = closer.cancelled() => "closed by the management plane".into(),
                _ = shutdown.cancelled() => {
                    closer.cancel();
                    "the management plane is shutting down".into()
                }
            }
        })
    };
    let info = match tokio::time::timeout(INFO_TIMEOUT, agent_info(sender.clone())).await {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => {
            tracing::warn!(
                cluster = name,
                "agent did not report its versions: {e}; closing"
            );
            closer.cancel();
            return;
        }
        Err(_) => {
            tracing::warn!(
                cluster = name,
                "agent did not report its versions within {INFO_TIMEOUT:?}; closing"
            );
            closer.cancel();
            return;
        }
    };
    let tunnel = Tunnel {
        sender: sender.clone(),
        connected_since: cattery_api::now_rfc3339(),
        remote: peer,
        agent_version: info.agent_version.clone(),
        kubernetes_version: info.kubernetes_version.clone(),
        closer: closer.clone(),
    };
    match registry.attach(&name, &fingerprint, tunnel).await {
        Ok(id) => {
            tracing::info!(
                cluster = name,
                agent = info.agent_version,
                kubernetes = info.kubernetes_version.as_deref().unwrap_or("unknown"),
                "cluster connected"
            );
            tokio::spawn(
                crate::logs::puller::run(
                    logs,
                    registry.clone(),
                    name.clone(),
                    sender.clone(),
                    closer.clone(),
                )
                .instrument(tracing::info_span!("logs", cluster = name)),
            );
            let why = conn_task.await.unwrap_or_else(|e| e.to_string());
            tracing::info!(cluster = name, "tunnel ended: {why}");
            registry.detach(&name, id, &why);
        }
        Err(e) => {
            tracing::warn!(cluster = name, "refused tunnel from {peer}: {e}");
            if let AttachError::Conflict { .. } = e {
                let _ = tokio::time::timeout(PING_TIMEOUT, refuse(sender, e.to_string())).await;
            }
            closer.cancel();
        }
    }
}

fn control_request(method: http::Method, path: &str, body: Body) -> http::Request<Body> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://{AGENT_AUTHORITY}{path}"))
        .body(body)
        .expect("static request parts are valid")
}

async fn agent_info(mut sender: Sender<Body>) -> anyhow::Result<AgentInfo> {
    sender.ready().await?;
    let res = sender
        .send_request(control_request(http::Method::GET, PATH_INFO, Body::empty()))
        .await?;
    anyhow::ensure!(res.status().is_success(), "agent answered {}", res.status());
    let bytes = http_body_util::Limited::new(res.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

/// True if the agent behind `sender` answers a ping within a few seconds.
pub async fn ping(mut sender: Sender<Body>) -> bool {
    let fut = async {
        sender.ready().await.ok()?;
        let res = sender
            .send_request(control_request(http::Method::GET, PATH_PING, Body::empty()))
            .await
            .ok()?;
        res.status().is_success().then_some(())
    };
    matches!(tokio::time::timeout(PING_TIMEOUT, fut).await, Ok(Some(())))
}

async fn refuse(mut sender: Sender<Body>, reason: String) {
    if sender.ready().await.is_ok() {
        let _ = sender
            .send_request(control_request(
                http::Method::POST,
                PATH_REFUSED,
                Body::from(reason),
            ))
            .await;
    }
}
