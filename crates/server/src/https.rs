//! Serving the API router over HTTPS (HTTP/1.1 with upgrades, and HTTP/2).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Largest request head (request line + headers) accepted over HTTP/1.1; beyond it hyper
/// answers 431 rather than dropping the connection.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest HTTP/2 header list h2 decodes. Beyond [`MAX_HEADER_BYTES`] but within this,
/// the request reaches [`refuse_large_headers`] and gets a 431 `Status`; at h2's own limit
/// h2 refuses the stream (`REFUSED_STREAM` or a connection error while the header block is
/// still arriving), which clients retry and then report as a dead connection. So h2's limit
/// only bounds memory; the answer to a too-large header comes from us.
const MAX_H2_HEADER_LIST_BYTES: u32 = 1 << 20;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts HTTPS connections until `shutdown`, then drains open requests for a few seconds.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: CancellationToken,
) {
    let router = router.layer(axum::middleware::from_fn(refuse_large_headers));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("API accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // Fewer `recv` calls under TLS for uploads; no memory held while idle.
            let tcp = cattery_tunnel::readbuf::ReadBuffered::new(tcp);
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "API TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .max_buf_size(MAX_HEADER_BYTES)
                .header_read_timeout(Duration::from_secs(30));
            builder
                .http2()
                .timer(TokioTimer::new())
                .adaptive_window(true)
                .max_header_list_size(MAX_H2_HEADER_LIST_BYTES)
                .max_concurrent_streams(1000);
            let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                router,
                move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(crate::api::gate::PeerAddr(peer));
                    req
                },
            ));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, "API connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("API connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// The size of a request head as HTTP/2 counts it (RFC 9113 §6.5.2: name + value + 32 per
/// field, plus the request target).
fn head_size(req: &axum::extract::Request) -> usize {
    let fields: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum();
    fields + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
}

/// Answers 431 with a `Status` naming the limit when a request's headers exceed
/// [`MAX_HEADER_BYTES`] (over HTTP/1.1 hyper already answers 431 before this runs).
async fn refuse_large_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let size = head_size(&req);
    if size > MAX_HEADER_BYTES {
        return crate::api::ApiError::new(
            431,
            format!(
                "request headers of {size} bytes are larger than the {MAX_HEADER_BYTES}-byte limit"
            ),
        )
        .into_response();
    }
    next.run(req).await
}
