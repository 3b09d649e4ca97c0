//! The HTTP client toward the cluster's Kubernetes API.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use cattery_tunnel::tls::ServerRoots;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::settings::UpstreamSettings;

/// Boxed error of bodies crossing the agent.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request and response body type inside the agent.
pub type AgentBody = BoxBody<Bytes, BoxError>;

/// How often a token file is re-read (projected service-account tokens rotate hourly).
const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// A client bound to one Kubernetes API endpoint, with the agent's own credentials.
#[derive(Clone)]
pub struct Upstream {
    base: http::Uri,
    /// HTTP/1.1 and HTTP/2 (by ALPN) for ordinary requests.
    client: Client<HttpsConnector<HttpConnector>, AgentBody>,
    /// HTTP/1.1 only: upgrades (exec, port-forward) need it.
    upgrade_client: Client<HttpsConnector<HttpConnector>, AgentBody>,
    token: Arc<Token>,
}

struct Token {
    file: Option<std::path::PathBuf>,
    cached: Mutex<Option<(Instant, Option<String>)>>,
}

impl Token {
    fn get(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, value)) = cached.as_ref()
            && at.elapsed() < TOKEN_REFRESH
        {
            return value.clone();
        }
        let value = match std::fs::read_to_string(file) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                tracing::warn!("cannot read upstream token file {}: {e}", file.display());
                None
            }
        };
        *cached = Some((Instant::now(), value.clone()));
        value
    }
}

impl Upstream {
    /// Builds the clients; fails if the URL or CA file is unusable.
    pub fn new(settings: &UpstreamSettings) -> anyhow::Result<Self> {
        let base: http::Uri = settings
            .url
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("upstream URL {:?}", settings.url))?;
        anyhow::ensure!(
            matches!(base.scheme_str(), Some("http") | Some("https")) && base.authority().is_some(),
            "upstream URL {:?} must be http(s)://host[:port]",
            settings.url
        );
        let roots = match &settings.ca_file {
            Some(f) => {
                let pem = std::fs::read_to_string(f)
                    .with_context(|| format!("reading upstream CA {}", f.display()))?;
                ServerRoots::Ca(cattery_tunnel::pem::certs(&f.display().to_string(), &pem)?)
            }
            None => ServerRoots::System,
        };
        let tls = cattery_tunnel::tls::https_client_config(&roots)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http.clone());
        let h1_connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // When the API server speaks HTTP/2 (kube-apiserver does, by ALPN), let it send
        // large frames and grow the windows with the measured bandwidth-delay product, as
        // the tunnel does: with hyper's defaults (16 KiB frames, fixed 2 MiB windows) a
        // large response crossed the agent in 16 KiB pieces, each one a frame and a write on
        // the tunnel too (150 MiB/s through the tunnel instead of 390; docs/benchmarks.md).
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_adaptive_window(true)
            .http2_max_frame_size(cattery_tunnel::session::MAX_FRAME_SIZE)
            .build(connector);
        let upgrade_client = Client::builder(TokioExecutor::new()).build(h1_connector);
        Ok(Upstream {
            base,
            client,
            upgrade_client,
            token: Arc::new(Token {
                file: settings.token_file.clone(),
                cached: Mutex::new(None),
            }),
        })
    }

    /// The full upstream URI for a path-and-query received over the tunnel.
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        let scheme = self.base.scheme_str().unwrap_or("https");
        let authority = self
            .base
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        let prefix = self.base.path().trim_end_matches('/');
        Ok(format!("{scheme}://{authority}{prefix}{path_and_query}").parse()?)
    }

    /// The upstream URI for the path-and-query of a request received over the tunnel,
    /// without re-parsing it when the upstream URL has no path of its own (the usual case).
    pub fn uri_for(
        &self,
        path_and_query: Option<&http::uri::PathAndQuery>,
    ) -> Result<http::Uri, http::Error> {
        let pq = path_and_query.map_or("/", |p| p.as_str());
        if !self.base.path().trim_end_matches('/').is_empty() {
            return self.uri(pq);
        }
        let mut parts = http::uri::Parts::default();
        parts.scheme = self.base.scheme().cloned();
        parts.authority = self.base.authority().cloned();
        parts.path_and_query = Some(match path_and_query {
            Some(p) if p.as_str().starts_with('/') => p.clone(),
            _ => return self.uri(pq),
        });
        Ok(http::Uri::from_parts(parts)?)
    }

    /// Adds the agent's own credentials.
    pub fn authorize(&self, headers: &mut http::HeaderMap) {
        headers.remove(http::header::AUTHORIZATION);
        if let Some(t) = self.token.get()
            && let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {t}"))
        {
            headers.insert(http::header::AUTHORIZATION, v);
        }
    }

    /// Sends an ordinary request.
    pub async fn send(
        &self,
        req: http::Request<AgentBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(req).await
    }

    /// Sends an HTTP/1.1 upgrade request.
    pub async fn send_upgrade(
        &self,
        req: http::Request<AgentBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.upgrade_client.request(req).await
    }

    /// GETs `path` with the agent's own identity and returns the JSON body.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let mut req = http::Request::get(self.uri(path)?)
            .header(http::header::ACCEPT, "application/json")
            .body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )?;
        self.authorize(req.headers_mut());
        let res = tokio::time::timeout(Duration::from_secs(10), self.send(req))
            .await
            .context("timed out")??;
        let status = res.status();
        let body = http_body_util::Limited::new(res.into_body(), 4 << 20)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading response: {e}"))?
            .to_bytes();
        anyhow::ensure!(
            status.is_success(),
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        Ok(serde_json::from_slice(&body)?)
    }

    /// `gitVersion` from `/version`.
    pub async fn kubernetes_version(&self) -> anyhow::Result<String> {
        let v = self.get_json("/version").await?;
        v["gitVersion"]
            .as_str()
            .map(str::to_string)
            .context("/version has no gitVersion")
    }
}
