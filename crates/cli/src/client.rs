//! How client commands find and call the management plane.
//!
//! Resolution order for each setting: flag, then environment (`CATTERY_SERVER`,
//! `CATTERY_TOKEN`, `CATTERY_CA_FILE`), then the file `cattery login` wrote.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use cattery_tunnel::tls::ServerRoots;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

/// Connection flags shared by every client command.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConnectArgs {
    /// Management plane API URL, e.g. https://mgmt.example.com:9443 [env: CATTERY_SERVER]
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// Bearer token [env: CATTERY_TOKEN]
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the API's certificate [env: CATTERY_CA_FILE]
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
}

/// What `cattery login` saves (mode 0600).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedLogin {
    /// API URL.
    pub server: String,
    /// Bearer token.
    pub token: String,
    /// PEM of the CA, embedded so the file is self-contained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
}

/// Path of the saved login: `$CATTERY_CONFIG`, else `$XDG_CONFIG_HOME/cattery/config.json`,
/// else `~/.config/cattery/config.json`.
pub fn config_path() -> PathBuf {
    if let Ok(p) = std::env::var("CATTERY_CONFIG") {
        return PathBuf::from(p);
    }
    let base = std::env::var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".config")
        });
    base.join("cattery").join("config.json")
}

/// A resolved target: URL, token, CA.
#[derive(Clone)]
pub struct Target {
    /// API base URL without trailing slash.
    pub server: String,
    /// Bearer token.
    pub token: String,
    /// CA PEM, or `None` for the system roots.
    pub ca_pem: Option<String>,
}

impl ConnectArgs {
    /// Resolves flags, environment and the saved login into a [`Target`].
    pub fn resolve(&self) -> anyhow::Result<Target> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let saved: Option<SavedLogin> = std::fs::read(config_path())
            .ok()
            .map(|b| {
                serde_json::from_slice(&b)
                    .with_context(|| format!("parsing {}", config_path().display()))
            })
            .transpose()?;
        let server = self
            .server
            .clone()
            .or_else(|| env("CATTERY_SERVER"))
            .or_else(|| saved.as_ref().map(|s| s.server.clone()))
            .context("no management plane given: pass --server, set CATTERY_SERVER or run `cattery login`")?;
        let token = self
            .token
            .clone()
            .or_else(|| env("CATTERY_TOKEN"))
            .or_else(|| saved.as_ref().map(|s| s.token.clone()))
            .context("no token given: pass --token, set CATTERY_TOKEN or run `cattery login`")?;
        let ca_pem = match self
            .ca_file
            .clone()
            .or_else(|| env("CATTERY_CA_FILE").map(PathBuf::from))
        {
            Some(f) => Some(
                std::fs::read_to_string(&f)
                    .with_context(|| format!("reading CA file {}", f.display()))?,
            ),
            None => saved.and_then(|s| s.certificate_authority),
        };
        Ok(Target {
            server: server.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            ca_pem,
        })
    }
}

/// An error answered by the API, carrying its `Status`.
#[derive(Debug)]
pub struct ApiFailure(pub cattery_api::Status);

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.0.message, self.0.code, self.0.reason)
    }
}
impl std::error::Error for ApiFailure {}

/// A small HTTPS client for the management plane's API.
pub struct ApiClient {
    target: Target,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ApiClient {
    /// Builds a client trusting the target's CA.
    pub fn new(target: Target) -> anyhow::Result<Self> {
        let roots = match &target.ca_pem {
            Some(pem) => ServerRoots::Ca(cattery_tunnel::pem::certs("CA certificate", pem)?),
            None => ServerRoots::System,
        };
        let tls = cattery_tunnel::tls::https_client_config(&roots)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(ApiClient {
            target,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The resolved target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends a request and returns the body of a 2xx answer; a `Status` body otherwise
    /// becomes an [`ApiFailure`].
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        Ok(self.call_full(method, path, body).await?.1)
    }

    /// Like [`ApiClient::call`], returning only the success status (e.g. 201 vs 200).
    pub async fn call_status(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<http::StatusCode> {
        Ok(self.call_full(method, path, body).await?.0)
    }

    /// Sends a request; the status and body of a 2xx answer, else an error.
    pub async fn call_full(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let url = format!("{}{}", self.target.server, path);
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.target.token),
            )
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .with_context(|| format!("invalid server URL {url:?}"))?;
        let res = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .with_context(|| format!("{method} {url}: no answer within 30s"))?
            .map_err(|e| anyhow::anyhow!("{method} {url}: {}", error_chain(&e)))?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        if status.is_success() {
            return Ok((status, bytes));
        }
        match serde_json::from_slice::<cattery_api::Status>(&bytes) {
            Ok(s) => Err(ApiFailure(s).into()),
            Err(_) => bail!(
                "{method} {url}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }

    /// Sends a GET and returns the streaming response of a 2xx answer (for live tails).
    pub async fn stream(
        &self,
        path: &str,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let url = format!("{}{}", self.target.server, path);
        let req = http::Request::get(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.target.token),
            )
            .header(http::header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .with_context(|| format!("invalid server URL {url:?}"))?;
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {}", error_chain(&e)))?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        match serde_json::from_slice::<cattery_api::Status>(&bytes) {
            Ok(s) => Err(ApiFailure(s).into()),
            Err(_) => bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&bytes)),
        }
    }

    /// GET and decode JSON.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let b = self.call(http::Method::GET, path, None).await?;
        serde_json::from_slice(&b).with_context(|| format!("decoding the answer to GET {path}"))
    }
}

/// Joins an error and its sources into one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let part = c.to_string();
        if !s.contains(&part) {
            s.push_str(": ");
            s.push_str(&part);
        }
        cur = c.source();
    }
    s
}
