//! The Kubernetes audit webhook: an HTTPS endpoint that accepts the `EventList` batches a
//! kube-apiserver posts when started with `--audit-webhook-config-file`.
//!
//! On first start the agent creates a small CA and a serving certificate plus a random
//! bearer token, and writes `audit-webhook.kubeconfig` — the file to hand to
//! kube-apiserver — next to them (keys and token 0600). Events are appended to the spool;
//! when the spool is full the webhook answers 503 so kube-apiserver keeps and retries the
//! batch rather than anything being dropped here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use cattery_api::logs::LogType;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::spool::{Spool, SpoolError};

/// Largest `EventList` accepted (kube-apiserver's default batch is far smaller).
pub const MAX_BODY: usize = 16 << 20;

/// Where the webhook listens and keeps its credentials.
#[derive(Clone, Debug)]
pub struct AuditWebhookConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// Directory for the CA, serving certificate, token and kubeconfig.
    pub dir: PathBuf,
    /// Extra DNS names or IPs for the serving certificate (how kube-apiserver reaches us).
    pub hosts: Vec<String>,
}

struct Credentials {
    cert_pem: String,
    key_pem: String,
    ca_pem: String,
    token: String,
}

/// Writes a key, token or kubeconfig atomically with mode 0600 ([`cattery_files`]).
fn write_private(path: &Path, data: &str) -> anyhow::Result<()> {
    cattery_files::write_private(path, data.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Creates the webhook's CA, serving certificate and token in `cfg.dir` if they do not
/// exist yet (so a caller can hand them to kube-apiserver before the agent starts).
pub fn prepare(cfg: &AuditWebhookConfig) -> anyhow::Result<()> {
    credentials(cfg).map(|_| ())
}

fn credentials(cfg: &AuditWebhookConfig) -> anyhow::Result<Credentials> {
    let files = [
        "webhook-ca.crt",
        "webhook.crt",
        "webhook.key",
        "webhook.token",
    ]
    .map(|f| cfg.dir.join(f));
    if files.iter().all(|f| f.exists()) {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        return Ok(Credentials {
            ca_pem: read(&files[0])?,
            cert_pem: read(&files[1])?,
            key_pem: read(&files[2])?,
            token: read(&files[3])?.trim().to_string(),
        });
    }
    // A new directory is owner-only; an existing one (chosen by the operator) keeps its mode.
    if !cfg.dir.exists() {
        cattery_files::create_private_dir(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
    }
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cattery-agent-audit-webhook-ca");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    hosts.extend(cfg.hosts.iter().cloned());
    if !cfg.addr.ip().is_unspecified() {
        hosts.push(cfg.addr.ip().to_string());
    }
    hosts.sort();
    hosts.dedup();
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(hosts)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cattery-agent-audit-webhook");
    let cert = params.signed_by(&key, &issuer)?;
    let mut token = [0u8; 32];
    getrandom::fill(&mut token).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let creds = Credentials {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: ca.pem(),
        token: hex::encode(token),
    };
    write_private(&files[2], &creds.key_pem)?;
    write_private(&files[3], &creds.token)?;
    for (path, pem) in [(&files[0], &creds.ca_pem), (&files[1], &creds.cert_pem)] {
        cattery_files::write_public(path, pem.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(creds)
}

fn kubeconfig(url: &str, creds: &Credentials) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(&creds.ca_pem);
    format!(
        "# kube-apiserver --audit-webhook-config-file for the Cattery agent (contains a token: keep it 0600)\napiVersion: v1\nkind: Config\nclusters:\n- name: cattery-agent\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: kube-apiserver\n  user:\n    token: {}\ncontexts:\n- name: webhook\n  context:\n    cluster: cattery-agent\n    user: kube-apiserver\ncurrent-context: webhook\n",
        creds.token
    )
}

fn reply(status: StatusCode, msg: &str) -> http::Response<Full<Bytes>> {
    let s = cattery_api::Status::failure(status.as_u16(), msg);
    let mut res = http::Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&s).unwrap_or_default(),
    )));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

async fn handle(
    req: http::Request<Incoming>,
    token: Arc<String>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
) -> http::Response<Full<Bytes>> {
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    use subtle::ConstantTimeEq;
    if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        return reply(
            StatusCode::UNAUTHORIZED,
            "the audit webhook needs the bearer token from audit-webhook.kubeconfig",
        );
    }
    if req.method() != http::Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an audit.k8s.io/v1 EventList",
        );
    }
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("EventList larger than {MAX_BODY} bytes"),
        );
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("EventList larger than {MAX_BODY} bytes"),
            );
        }
    };
    let list: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return reply(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}")),
    };
    if list["kind"] != "EventList" {
        return reply(
            StatusCode::BAD_REQUEST,
            "kind must be EventList (apiVersion audit.k8s.io/v1)",
        );
    }
    let Some(items) = list["items"].as_array() else {
        return reply(StatusCode::BAD_REQUEST, "field \"items\" must be an array");
    };
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if !item.is_object() {
            metrics.rejected(LogType::Audit);
            tracing::warn!("audit webhook: item {i} is not an object; skipped");
            continue;
        }
        lines.push(serde_json::to_vec(item).unwrap_or_default());
    }
    let records: Vec<(LogType, &[u8])> = lines
        .iter()
        .map(|l| (LogType::Audit, l.as_slice()))
        .collect();
    if records.is_empty() {
        return http::Response::new(Full::new(Bytes::new()));
    }
    let s = spool.clone();
    let owned: Vec<(LogType, Vec<u8>)> = records.iter().map(|(t, d)| (*t, d.to_vec())).collect();
    let res = tokio::task::spawn_blocking(move || {
        let refs: Vec<(LogType, &[u8])> = owned.iter().map(|(t, d)| (*t, d.as_slice())).collect();
        s.append(&refs, None)
    })
    .await;
    match res {
        Ok(Ok(_)) => {
            metrics.read(LogType::Audit, records.len() as u64);
            http::Response::new(Full::new(Bytes::new()))
        }
        Ok(Err(SpoolError::Full { .. })) => {
            let mut r = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent's spool is full; retry later",
            );
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
            r
        }
        Ok(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, &format!("spool: {e}")),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Starts the webhook; returns the bound address. Writes `DIR/audit-webhook.kubeconfig`.
pub async fn start(
    cfg: AuditWebhookConfig,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let creds = credentials(&cfg)?;
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("binding the audit webhook on {}", cfg.addr))?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    write_private(
        &cfg.dir.join("audit-webhook.kubeconfig"),
        &kubeconfig(&format!("https://{host}:{}/audit", addr.port()), &creds),
    )?;
    let chain = cattery_tunnel::pem::certs("audit webhook certificate", &creds.cert_pem)?;
    let key = cattery_tunnel::pem::private_key("audit webhook key", &creds.key_pem)?;
    let tls = cattery_tunnel::tls::https_server_config(chain, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let token = Arc::new(creds.token);
    tracing::info!(%addr, "audit webhook listening; kubeconfig for kube-apiserver: {}", cfg.dir.join("audit-webhook.kubeconfig").display());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let (acceptor, token, spool, metrics) = (
                acceptor.clone(),
                token.clone(),
                spool.clone(),
                metrics.clone(),
            );
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                        .await
                else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| {
                    let (token, spool, metrics) = (token.clone(), spool.clone(), metrics.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(handle(req, token, spool, metrics).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
