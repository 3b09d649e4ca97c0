//! The agent's main loop: dial, serve the tunnel until it ends, back off, dial again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cattery_tunnel::backoff::Backoff;
use cattery_tunnel::dial::{DialError, Proxy, dial, split_host_port};
use cattery_tunnel::session;
use hyper::service::service_fn;
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;
use crate::settings::AgentSettings;
use crate::upstream::Upstream;

const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// A tunnel that stayed up this long counts as healthy: the next reconnect starts fast.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);
const MIN_DELAY: Duration = Duration::from_millis(250);

/// A condition retrying cannot fix; the agent stops and says what a person must do.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The settings are unusable.
    #[error("{0:#}")]
    Config(anyhow::Error),
    /// The cluster's certificate has expired.
    #[error(
        "this cluster's certificate expired at {0}; re-register the cluster (cattery cluster remove/add) and apply the new manifest"
    )]
    CertificateExpired(String),
    /// The management plane refused the certificate, or we refused the management plane's.
    #[error("{0}")]
    Refused(String),
}

/// Runs the agent like [`run`], but on a single-threaded tokio runtime of its own, in a
/// dedicated OS thread; the returned future resolves when that thread's agent stops.
///
/// The agent is I/O-bound: every proxied request hops between several tasks (the
/// tunnel's HTTP/2 connection, the stream's task, the upstream HTTP/1.1 connection). On
/// a multi-threaded runtime each hop can wake another worker thread (a futex wake-up and
/// a context switch); on one thread they are queue operations. `cattery agent` runs this
/// way, and so does the agent that `cattery-bench tunnel` loads.
pub async fn run_on_dedicated_thread(
    settings: AgentSettings,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("agent-{}", settings.cluster))
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(settings, shutdown)),
                Err(e) => Err(AgentError::Config(anyhow::anyhow!(
                    "starting the agent's runtime: {e}"
                ))),
            };
            let _ = tx.send(result);
        })
        .map_err(|e| AgentError::Config(anyhow::anyhow!("starting the agent's thread: {e}")))?;
    let result = rx.await.unwrap_or_else(|_| {
        Err(AgentError::Config(anyhow::anyhow!(
            "the agent's thread ended without a result (it panicked)"
        )))
    });
    // The thread has sent its result and is only dropping its runtime now.
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    result
}

/// Runs the agent until `shutdown` is cancelled (Ok) or a permanent error occurs.
pub async fn run(settings: AgentSettings, shutdown: CancellationToken) -> Result<(), AgentError> {
    if let Some(not_after) = settings.cert_not_after()
        && not_after < time::OffsetDateTime::now_utc()
    {
        return Err(AgentError::CertificateExpired(cattery_api::rfc3339(
            not_after,
        )));
    }
    let upstream = Upstream::new(&settings.upstream).map_err(AgentError::Config)?;
    let tls = cattery_tunnel::tls::tunnel_client_config(
        &settings.server_roots,
        settings.cert_chain.clone(),
        settings.key.clone_key(),
    )
    .map_err(|e| AgentError::Config(e.into()))?;
    let tls = Arc::new(tls);
    let addr = settings.management_cluster_addr.clone();
    let (host, _) = split_host_port(&addr).map_err(|e| AgentError::Config(e.into()))?;
    let pipeline = crate::pipeline::start(&settings.logs, shutdown.clone())
        .await
        .map_err(AgentError::Config)?;
    let mut backoff = Backoff::new(MIN_DELAY, settings.reconnect_max_delay);
    tracing::info!(
        cluster = settings.cluster,
        management = addr,
        upstream = settings.upstream.url,
        "agent starting"
    );

    loop {
        let proxy = Proxy::from_env(&host);
        let dialed = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = dial(&addr, tls.clone(), proxy.as_ref(), DIAL_TIMEOUT) => r,
        };
        match dialed {
            Err(e) if e.is_permanent() => return Err(AgentError::Refused(e.to_string())),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!("{e}; retrying in {:.1}s", delay.as_secs_f64());
                if sleep_or_shutdown(delay, &shutdown).await {
                    return Ok(());
                }
                continue;
            }
            Ok(stream) => {
                let handler = Arc::new(Handler {
                    upstream: upstream.clone(),
                    impersonation: settings.impersonation.clone(),
                    refused: Default::default(),
                    spool: pipeline.spool.clone(),
                    metrics: pipeline.metrics.clone(),
                });
                let started = Instant::now();
                let svc = {
                    let handler = handler.clone();
                    service_fn(move |req| handler.clone().handle(req))
                };
                let conn = session::serve(stream, svc);
                tokio::pin!(conn);
                tracing::info!(management = addr, "tunnel established");
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
                        return Ok(());
                    }
                };
                let refused = handler
                    .refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                match (&result, refused) {
                    (_, Some(reason)) => tracing::warn!("tunnel refused: {reason}"),
                    (Ok(()), None) => tracing::warn!("tunnel closed by the management plane"),
                    (Err(e), None) => {
                        if let Some(tls_err) = cattery_tunnel::tls::find_rustls_error(e)
                            && cattery_tunnel::tls::is_permanent(tls_err)
                        {
                            return Err(AgentError::Refused(
                                DialError::Tls(tls_err.clone()).to_string(),
                            ));
                        }
                        tracing::warn!("tunnel lost: {e}");
                    }
                }
                if started.elapsed() >= HEALTHY_SESSION {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::info!("reconnecting in {:.1}s", delay.as_secs_f64());
                if sleep_or_shutdown(delay, &shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Sleeps for `d`; true if shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::UpstreamSettings;
    use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};

    #[tokio::test]
    async fn an_expired_certificate_stops_the_agent_before_dialing() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "old");
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(400);
        params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(35);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let connection = cattery_api::ManagementClusterConnectionSpec {
            // Nothing listens here: the agent must stop before trying.
            management_cluster_addr: "127.0.0.1:9".into(),
            tls: Default::default(),
            impersonation: Default::default(),
        };
        let settings = AgentSettings::from_parts(
            &connection,
            &cert.pem(),
            &key.serialize_pem(),
            &ca.pem(),
            UpstreamSettings {
                url: "http://127.0.0.1:9".into(),
                token_file: None,
                ca_file: None,
            },
            "test",
        )
        .unwrap();
        let err = run(settings, CancellationToken::new()).await.unwrap_err();
        assert!(matches!(err, AgentError::CertificateExpired(_)), "{err}");
        assert!(err.to_string().contains("re-register"), "{err}");
    }
}
