//! The tunnel between a managed cluster's agent and the management plane.
//!
//! The agent dials TCP + TLS 1.3 with its client certificate and then *serves* HTTP/2 on
//! the connection it dialed; the management plane runs the HTTP/2 *client* on the
//! connection it accepted ("reverse HTTP/2", as cloudflared does). Every proxied request is
//! one h2 stream, so streaming, flow control and back-pressure come from hyper. Upgrades
//! travel as extended CONNECT (RFC 8441).
//!
//! This crate has no domain logic: who a certificate belongs to is decided by the caller
//! through [`tls::PeerCheck`].
#![forbid(unsafe_code)]

pub mod backoff;
pub mod closable;
pub mod dial;
pub mod fingerprint;
pub mod hop_by_hop;
pub mod pem;
pub mod readbuf;
pub mod session;
pub mod tls;

pub use fingerprint::fingerprint_sha256;

/// Any bidirectional byte stream a tunnel can run over (TCP+TLS today; QUIC or WebSocket
/// could implement it later).
pub trait TunnelIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> TunnelIo for T {}

/// A boxed [`TunnelIo`].
pub type BoxedIo = Box<dyn TunnelIo>;

/// ALPN protocol spoken inside the tunnel.
pub const ALPN_TUNNEL: &[u8] = b"h2";
