//! The few management-plane API calls the benches make to set up (register clusters,
//! upload policy, create tokens, read cluster status), over HTTPS with the server's CA.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use cattery_tunnel::tls::ServerRoots;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// No set-up call may take longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A management plane to call.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Base URL, `https://HOST:PORT`.
    pub server: String,
    /// Bearer token.
    pub token: String,
    /// PEM of the CA the server's certificate chains to.
    pub ca_pem: String,
}

/// An HTTP/1.1 client for the API (the load itself goes through [`crate::load`]).
pub(crate) struct ApiClient {
    target: Target,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ApiClient {
    /// A client trusting only `target.ca_pem`.
    pub fn new(target: Target) -> anyhow::Result<Self> {
        let roots = ServerRoots::Ca(cattery_tunnel::pem::certs(
            "the server's CA",
            &target.ca_pem,
        )?);
        let tls = cattery_tunnel::tls::https_client_config(&roots)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Ok(ApiClient {
            target,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends a request and returns the body of a 2xx answer; an error naming the method,
    /// URL, status and the server's message otherwise.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        self.call_as(method, path, "application/json", body).await
    }

    /// [`ApiClient::call`] with a body of `content_type` (e.g. a merge patch).
    pub async fn call_as(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        let url = format!("{}{path}", self.target.server);
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.target.token),
            )
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, content_type);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .with_context(|| format!("invalid URL {url:?}"))?;
        let res = tokio::time::timeout(CALL_TIMEOUT, self.client.request(req))
            .await
            .with_context(|| format!("{method} {url}: no answer within {CALL_TIMEOUT:?}"))?
            .map_err(|e| anyhow::anyhow!("{method} {url}: {}", error_chain(&e)))?;
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{method} {url}: reading the answer"))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        match serde_json::from_slice::<cattery_api::Status>(&bytes) {
            Ok(s) => bail!("{method} {url}: {} ({} {})", s.message, s.code, s.reason),
            Err(_) => bail!(
                "{method} {url}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }

    /// Starts a GET whose answer is a stream (a watch) and returns its body once the
    /// server answered 200; the body is read as it arrives.
    pub async fn open(&self, path: &str) -> anyhow::Result<hyper::body::Incoming> {
        let url = format!("{}{path}", self.target.server);
        let req = http::Request::get(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.target.token),
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .with_context(|| format!("invalid URL {url:?}"))?;
        let res = tokio::time::timeout(CALL_TIMEOUT, self.client.request(req))
            .await
            .with_context(|| format!("GET {url}: no answer within {CALL_TIMEOUT:?}"))?
            .map_err(|e| anyhow::anyhow!("GET {url}: {}", error_chain(&e)))?;
        if !res.status().is_success() {
            let status = res.status();
            let b = res.into_body().collect().await.map(|c| c.to_bytes());
            bail!(
                "GET {url}: {status}: {}",
                String::from_utf8_lossy(&b.unwrap_or_default())
            );
        }
        Ok(res.into_body())
    }

    /// GET and decode JSON.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let b = self.call(http::Method::GET, path, None).await?;
        serde_json::from_slice(&b).with_context(|| format!("decoding the answer to GET {path}"))
    }
}

/// Joins an error and its sources into one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
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
