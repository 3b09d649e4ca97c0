//! Dialing the management plane: TCP (directly or through an HTTP CONNECT proxy), then
//! TLS 1.3 with the cluster's client certificate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::BoxedIo;

/// Why a dial failed; [`DialError::is_permanent`] says whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// `host:port` could not be parsed.
    #[error("invalid management cluster address {0:?}: expected HOST:PORT")]
    BadAddress(String),
    /// TCP connect failed (refused, unreachable, DNS).
    #[error("cannot reach {addr}: {source}")]
    Unreachable {
        /// Address dialed.
        addr: String,
        /// Socket error.
        source: std::io::Error,
    },
    /// The HTTP CONNECT proxy failed or refused.
    #[error("HTTPS proxy {proxy}: {message}")]
    Proxy {
        /// Proxy address.
        proxy: String,
        /// What went wrong.
        message: String,
    },
    /// The TLS handshake failed.
    #[error("{}", crate::tls::explain(.0))]
    Tls(rustls::Error),
    /// TLS failed below rustls (connection reset during the handshake, for example).
    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        /// Address dialed.
        addr: String,
        /// I/O error.
        source: std::io::Error,
    },
    /// Nothing happened for too long.
    #[error("timed out after {0:?} connecting to {1}")]
    Timeout(Duration, String),
}

impl DialError {
    /// True when only a person can fix the cause (wrong CA, revoked certificate…).
    pub fn is_permanent(&self) -> bool {
        match self {
            DialError::BadAddress(_) => true,
            DialError::Tls(e) => crate::tls::is_permanent(e),
            _ => false,
        }
    }
}

/// An HTTP proxy for the tunnel (`HTTPS_PROXY`), used with the CONNECT method.
#[derive(Clone, Debug)]
pub struct Proxy {
    /// `host:port` of the proxy.
    pub addr: String,
    /// `Proxy-Authorization` header value when the URL carried credentials.
    pub authorization: Option<String>,
}

impl Proxy {
    /// Reads `HTTPS_PROXY`/`https_proxy` and `NO_PROXY`/`no_proxy` for `target_host`.
    pub fn from_env(target_host: &str) -> Option<Proxy> {
        let get = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok();
        let url = get("HTTPS_PROXY", "https_proxy").filter(|s| !s.is_empty())?;
        if let Some(no) = get("NO_PROXY", "no_proxy")
            && no_proxy_matches(&no, target_host)
        {
            return None;
        }
        Proxy::parse(&url)
    }

    /// Parses `http://[user:pass@]host[:port]`; the port defaults to 80 as the scheme says.
    pub fn parse(url: &str) -> Option<Proxy> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let addr = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        use base64::Engine;
        let authorization = auth.map(|a| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(a)
            )
        });
        Some(Proxy {
            addr,
            authorization,
        })
    }
}

fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .any(|entry| {
            entry == "*"
                || entry == host
                || host.ends_with(&format!(".{}", entry.trim_start_matches('.')))
        })
}

/// Splits `host:port` (IPv6 in brackets allowed).
pub fn split_host_port(addr: &str) -> Result<(String, u16), DialError> {
    let bad = || DialError::BadAddress(addr.to_string());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Opens TCP to `addr`, through `proxy` when given.
pub async fn connect_tcp(addr: &str, proxy: Option<&Proxy>) -> Result<BoxedIo, DialError> {
    let Some(proxy) = proxy else {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| DialError::Unreachable {
                addr: addr.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        return Ok(Box::new(tcp));
    };
    let perr = |message: String| DialError::Proxy {
        proxy: proxy.addr.clone(),
        message,
    };
    let tcp = TcpStream::connect(&proxy.addr)
        .await
        .map_err(|source| DialError::Unreachable {
            addr: proxy.addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| perr(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut req = http::Request::connect(addr)
        .header(http::header::HOST, addr)
        .body(Empty::<Bytes>::new())
        .map_err(|e| perr(e.to_string()))?;
    if let Some(a) = &proxy.authorization {
        let v = http::HeaderValue::from_str(a).map_err(|e| perr(e.to_string()))?;
        req.headers_mut()
            .insert(http::header::PROXY_AUTHORIZATION, v);
    }
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| perr(e.to_string()))?;
    if res.status() != http::StatusCode::OK {
        return Err(perr(format!("CONNECT {addr} answered {}", res.status())));
    }
    let upgraded = hyper::upgrade::on(res)
        .await
        .map_err(|e| perr(e.to_string()))?;
    Ok(Box::new(TokioIo::new(upgraded)))
}

/// Dials `addr` and completes the TLS handshake, within `timeout`.
pub async fn dial(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&Proxy>,
    timeout: Duration,
) -> Result<TlsStream<BoxedIo>, DialError> {
    let (host, _port) = split_host_port(addr)?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| DialError::BadAddress(addr.to_string()))?;
    let fut = async {
        let io = connect_tcp(addr, proxy).await?;
        TlsConnector::from(tls)
            .connect(server_name, io)
            .await
            .map_err(|e| match crate::tls::find_rustls_error(&e) {
                Some(r) => DialError::Tls(r.clone()),
                None => DialError::Handshake {
                    addr: addr.to_string(),
                    source: e,
                },
            })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| DialError::Timeout(timeout, addr.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("http://user:pw@proxy.local:3128/").unwrap();
        assert_eq!(p.addr, "proxy.local:3128");
        assert_eq!(p.authorization.as_deref(), Some("Basic dXNlcjpwdw=="));
        assert_eq!(Proxy::parse("proxy.local").unwrap().addr, "proxy.local:80");
    }

    #[test]
    fn no_proxy_rules() {
        assert!(no_proxy_matches(
            "localhost,.corp.example",
            "mgmt.corp.example"
        ));
        assert!(no_proxy_matches("*", "x"));
        assert!(!no_proxy_matches("corp.example", "example"));
    }

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("a.b:9449").unwrap(), ("a.b".into(), 9449));
        assert_eq!(split_host_port("[::1]:9449").unwrap(), ("::1".into(), 9449));
        assert!(split_host_port("a.b").is_err());
        assert!(split_host_port(":1").is_err());
    }
}
