//! Accepting agents' tunnels on the tunnel port (9449).
//!
//! Each accepted connection: TLS 1.3 handshake (client certificate checked by the
//! [`Registry`] inside the handshake), then the HTTP/2 *client* handshake on it, then the
//! agent is asked for its versions and the tunnel is attached to its cluster. What runs
//! per connected cluster (the log puller, controllers) is not started here: it subscribes
//! to the registry's [`ClusterEvent`](crate::registry::ClusterEvent)s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use cattery_tunnel::session;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::agent_control::{PING_TIMEOUT, agent_info, refuse};
use crate::registry::{AttachError, Registry, Tunnel};

/// Handshakes allowed in flight at once: bounds the CPU a connection flood can take.
const MAX_PENDING_HANDSHAKES: usize = 512;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts tunnels until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    registry: Arc<Registry>,
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
        let (acceptor, registry, shutdown) = (acceptor.clone(), registry.clone(), shutdown.clone());
        let span = tracing::info_span!("tunnel", %peer);
        tokio::spawn(handle(tcp, peer, acceptor, registry, shutdown, permit).instrument(span));
    }
}

async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    registry: Arc<Registry>,
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
