//! Starts the agent's log pipeline: spool, file sources, audit webhook and metrics endpoint.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::settings::LogSettings;
use crate::sources::files::FileSource;
use crate::spool::{Spool, SpoolConfig};

/// The running pipeline's shared parts.
pub struct Pipeline {
    /// The spool, if logs are enabled.
    pub spool: Option<Arc<Spool>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Opens the spool and starts every configured source; they stop with `shutdown`.
pub async fn start(cfg: &LogSettings, shutdown: CancellationToken) -> anyhow::Result<Pipeline> {
    let metrics = Arc::new(Metrics::default());
    let spool = match &cfg.spool_dir {
        None => None,
        Some(dir) => {
            let mut sc = SpoolConfig::new(dir.clone());
            if cfg.spool_max_bytes > 0 {
                sc.max_bytes = cfg.spool_max_bytes;
            }
            let (spool, report) = Spool::open(sc)
                .with_context(|| format!("opening the spool in {}", dir.display()))?;
            for q in &report.quarantined {
                tracing::error!(
                    "spool segment {} quarantined: {}",
                    q.path.display(),
                    q.reason
                );
            }
            Some(Arc::new(spool))
        }
    };
    if let Some(spool) = &spool {
        for (log_type, path) in &cfg.files {
            let source = FileSource::new(path.clone(), *log_type, spool.clone())
                .with_metrics(metrics.clone());
            tokio::spawn(source.run(shutdown.clone()));
        }
        if let Some(wh) = &cfg.audit_webhook {
            crate::audit_webhook::start(
                wh.clone(),
                spool.clone(),
                metrics.clone(),
                shutdown.clone(),
            )
            .await?;
        }
    } else if !cfg.files.is_empty() || cfg.audit_webhook.is_some() {
        anyhow::bail!("log files and the audit webhook need --spool-dir");
    }
    if let Some(addr) = cfg.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
        let (m, s) = (metrics.clone(), spool.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let (m, s) = (m.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (m, s) = (m.clone(), s.clone());
                            async move {
                                let mut res = if req.uri().path() == "/metrics" {
                                    http::Response::new(Full::new(Bytes::from(
                                        m.render(s.as_ref()),
                                    )))
                                } else {
                                    let mut r = http::Response::new(Full::new(Bytes::from_static(
                                        b"not found\n",
                                    )));
                                    *r.status_mut() = http::StatusCode::NOT_FOUND;
                                    r
                                };
                                res.headers_mut().insert(
                                    http::header::CONTENT_TYPE,
                                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                                );
                                Ok::<_, std::convert::Infallible>(res)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    }
    Ok(Pipeline { spool, metrics })
}
