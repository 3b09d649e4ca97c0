//! A signed-in browser session against the Manager UI, for `cattery-bench ui`: it signs in
//! through the sign-in form as a person does (the form's anti-forgery cookie and field, the
//! token, the session cookie set on success) and then loads pages with the session
//! cookie, over HTTP/2 and TLS as a browser talks to `cattery server`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cattery_tunnel::tls::ServerRoots;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::api::error_chain;

/// No page may take longer than this.
const PAGE_TIMEOUT: Duration = Duration::from_secs(120);

/// What loading one page gave.
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub status: http::StatusCode,
    pub body: Bytes,
    /// From sending the request to the last byte of the body.
    pub elapsed: Duration,
}

/// A browser with a cookie jar, signed in or not.
pub(crate) struct Browser {
    base: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    /// A browser for the site at `base` (`https://HOST:PORT`) trusting only `ca_pem`;
    /// HTTP/2 or HTTP/1.1 by ALPN, as a browser negotiates.
    pub fn new(base: &str, ca_pem: &str) -> anyhow::Result<Browser> {
        let roots = ServerRoots::Ca(cattery_tunnel::pem::certs("the server's CA", ca_pem)?);
        let tls = cattery_tunnel::tls::https_client_config(&roots)?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_all_versions()
            .wrap_connector(http);
        Ok(Browser {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            cookies: BTreeMap::new(),
        })
    }

    /// Sends one request with the jar's cookies, stores the cookies the answer sets, and
    /// returns the answer (any status; redirects are not followed).
    async fn send(
        &mut self,
        method: http::Method,
        path: &str,
        form: Option<String>,
    ) -> anyhow::Result<(http::response::Parts, Loaded)> {
        let url = format!("{}{path}", self.base);
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(http::header::ACCEPT, "text/html,application/json")
            .header(http::header::USER_AGENT, "cattery-bench");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(http::header::COOKIE, jar.join("; "));
        }
        if form.is_some() {
            req = req.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        let req = req
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .with_context(|| format!("invalid URL {url:?}"))?;
        let started = Instant::now();
        let fut = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| anyhow::anyhow!("{method} {url}: {}", error_chain(&e)))?;
            let (parts, body) = res.into_parts();
            let body = body
                .collect()
                .await
                .with_context(|| format!("{method} {url}: reading the answer"))?
                .to_bytes();
            Ok::<_, anyhow::Error>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(PAGE_TIMEOUT, fut)
            .await
            .with_context(|| format!("{method} {url}: no answer within {PAGE_TIMEOUT:?}"))??;
        let elapsed = started.elapsed();
        for v in parts.headers.get_all(http::header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let c = cookie::Cookie::parse(v.to_string())
                .with_context(|| format!("{method} {url}: a Set-Cookie that does not parse"))?;
            let expired = c.max_age().is_some_and(|a| a.is_zero()) || c.value().is_empty();
            if expired {
                self.cookies.remove(c.name());
            } else {
                self.cookies
                    .insert(c.name().to_string(), c.value().to_string());
            }
        }
        let status = parts.status;
        Ok((
            parts,
            Loaded {
                status,
                body,
                elapsed,
            },
        ))
    }

    /// Signs in with `token` through the sign-in form; fails unless the server answers
    /// with a session cookie and a redirect to the page asked for.
    pub async fn sign_in(&mut self, token: &str) -> anyhow::Result<()> {
        let (_, form) = self
            .send(http::Method::GET, "/ui/sign-in?next=/ui/overview", None)
            .await?;
        anyhow::ensure!(form.status.is_success(), "GET /ui/sign-in: {}", form.status);
        let html = String::from_utf8_lossy(&form.body);
        let nonce = hidden_field(&html, "_signin")
            .context("the sign-in page has no hidden _signin field")?;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("_signin", &nonce)
            .append_pair("next", "/ui/overview")
            .append_pair("token", token)
            .finish();
        let (parts, answer) = self
            .send(http::Method::POST, "/ui/sign-in", Some(body))
            .await?;
        if !answer.status.is_redirection() {
            bail!(
                "signing in: {} instead of a redirect: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
            );
        }
        let to = parts
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        anyhow::ensure!(
            to == "/ui/overview",
            "signing in redirected to {to:?}, not to /ui/overview"
        );
        anyhow::ensure!(
            self.cookies.contains_key("__Host-cattery-session"),
            "signing in set no session cookie"
        );
        Ok(())
    }

    /// Loads `path` (GET) as the signed-in person; any answer but 200 is an error naming it.
    pub async fn load(&mut self, path: &str) -> anyhow::Result<Loaded> {
        let (parts, loaded) = self.send(http::Method::GET, path, None).await?;
        if loaded.status != http::StatusCode::OK {
            let to = parts
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| format!(" (to {l})"))
                .unwrap_or_default();
            bail!(
                "GET {path}: {}{to}: {}",
                loaded.status,
                String::from_utf8_lossy(&loaded.body[..loaded.body.len().min(300)])
            );
        }
        Ok(loaded)
    }
}

/// The value of `<input type="hidden" name="NAME" value="…">` in a page the server
/// renders (maud writes the attributes in source order: `type`, `name`, `value`).
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_fields() {
        let html = r#"<form><input type="hidden" name="_signin" value="ab12"><input type="hidden" name="next" value="/ui/overview"></form>"#;
        assert_eq!(hidden_field(html, "_signin").as_deref(), Some("ab12"));
        assert_eq!(hidden_field(html, "next").as_deref(), Some("/ui/overview"));
        assert_eq!(hidden_field(html, "token"), None);
    }
}
