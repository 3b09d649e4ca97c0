//! Reverse HTTP/2 sessions with settings tuned for long-lived tunnels.
//!
//! hyper's defaults are made for short client connections; a tunnel carries every watch of
//! every user of a cluster for days, so we raise the stream limit, enable adaptive flow
//! control windows (BDP estimation) and send keepalive pings so a dead path is noticed
//! within about [`KEEPALIVE_INTERVAL`] + [`KEEPALIVE_TIMEOUT`] (15 s).

use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::client::conn::http2 as h2client;
use hyper::server::conn::http2 as h2server;
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::TunnelIo;

/// How often each side pings the other.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a ping may go unanswered before the tunnel is declared dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent streams the agent accepts: every open watch holds one for its lifetime.
pub const MAX_CONCURRENT_STREAMS: u32 = 10_000;
/// Largest header block accepted in either direction (kube-apiserver allows about 1 MiB).
pub const MAX_HEADER_LIST_SIZE: u32 = 1 << 20;
/// Largest HTTP/2 frame we accept; larger frames cut per-frame overhead on bulk transfers.
pub const MAX_FRAME_SIZE: u32 = 1 << 20;

/// The management plane's handle for sending requests down a tunnel.
pub type Sender<B> = h2client::SendRequest<B>;

/// Management-plane side: run the HTTP/2 *client* on an accepted tunnel connection.
///
/// Returns the sender and the connection future, which must be polled (spawned) for the
/// tunnel to make progress; it resolves when the tunnel ends.
pub async fn client_handshake<I, B>(
    io: I,
) -> hyper::Result<(
    Sender<B>,
    h2client::Connection<TokioIo<I>, B, TokioExecutor>,
)>
where
    I: TunnelIo,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    h2client::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .adaptive_window(true)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(io))
        .await
}

/// Agent side: serve HTTP/2 on the connection the agent dialed.
///
/// Extended CONNECT (RFC 8441) is enabled so upgrades (exec, attach, port-forward) can be
/// carried. The returned future resolves when the tunnel ends; call
/// `graceful_shutdown` on it to drain.
pub fn serve<I, S>(io: I, service: S) -> h2server::Connection<TokioIo<I>, S, TokioExecutor>
where
    I: TunnelIo,
    S: HttpService<Incoming>,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    h2server::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .adaptive_window(true)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
}
