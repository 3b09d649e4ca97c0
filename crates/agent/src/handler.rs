//! Requests arriving over the tunnel: control requests for the agent itself, or requests
//! to forward to the cluster's Kubernetes API.
//!
//! Forwarded requests act as someone: users' requests (authority `KUBE_AUTHORITY`)
//! impersonate the user the management plane names, within the connection's
//! `spec.impersonation`; the management plane's own controllers' requests (authority
//! [`SERVICE_AUTHORITY`], which the proxy never sets) impersonate the fixed
//! [`SERVICE_IDENTITY`] ServiceAccount, whatever their headers say. Nothing is ever
//! forwarded with the agent's own rights.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use cattery_api::Impersonation;
use cattery_api::agent_protocol::{
    AGENT_AUTHORITY, AgentInfo, HEADER_UPGRADE_METHOD, PATH_INFO, PATH_LOGS_NEXT, PATH_PING,
    PATH_REFUSED, SERVICE_ACCOUNT_NAME, SERVICE_ACCOUNT_NAMESPACE, SERVICE_AUTHORITY,
    SERVICE_IDENTITY,
};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::upstream::{AgentBody, Upstream};

/// Shared by every stream of a tunnel.
pub struct Handler {
    /// The cluster's Kubernetes API.
    pub upstream: Upstream,
    /// Who the management plane may impersonate.
    pub impersonation: Impersonation,
    /// Set when the management plane refuses this tunnel (with its reason).
    pub refused: std::sync::Mutex<Option<String>>,
    /// The log spool, when the log pipeline is enabled.
    pub spool: Option<Arc<crate::spool::Spool>>,
    /// Log pipeline metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
}

fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> http::Response<AgentBody> {
    let mut res = http::Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn status(code: u16, message: String) -> http::Response<AgentBody> {
    let s = cattery_api::Status::failure(code, message);
    full(
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
        "application/json",
        serde_json::to_vec(&s).unwrap_or_default(),
    )
}

/// Whose rights a forwarded request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acting {
    /// The user the management plane impersonates (`Impersonate-*` from the proxy).
    User,
    /// The management plane's controllers ([`SERVICE_IDENTITY`]).
    Service,
}

/// Replaces every impersonation header with `Impersonate-User: SERVICE_IDENTITY` (the API
/// server adds the ServiceAccount's groups itself).
fn impersonate_service(headers: &mut HeaderMap) {
    let drop: Vec<header::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for k in drop {
        headers.remove(k);
    }
    headers.insert(
        "impersonate-user",
        HeaderValue::from_static(SERVICE_IDENTITY),
    );
}

/// Removes the hop-by-hop headers (the list shared with the management plane's proxy,
/// and those named in `Connection`), `Host` (the URI's authority is the upstream's), and
/// the management plane's upgrade-method header, which is meant for this agent only.
fn strip(headers: &mut HeaderMap) {
    cattery_tunnel::hop_by_hop::strip(headers);
    headers.remove(header::HOST);
    headers.remove(HEADER_UPGRADE_METHOD);
}

impl Handler {
    /// Entry point of the tunnel's HTTP/2 service.
    pub async fn handle(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> Result<http::Response<AgentBody>, Infallible> {
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        Ok(match authority.as_deref() {
            Some(AGENT_AUTHORITY) => self.control(req).await,
            Some(SERVICE_AUTHORITY) => self.forward(req, Acting::Service).await,
            _ => self.forward(req, Acting::User).await,
        })
    }

    async fn control(&self, req: http::Request<Incoming>) -> http::Response<AgentBody> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, PATH_PING) => full(StatusCode::OK, "text/plain", "pong"),
            (&Method::GET, PATH_INFO) => {
                let mut info = AgentInfo {
                    agent_version: crate::VERSION.into(),
                    ..Default::default()
                };
                match self.upstream.kubernetes_version().await {
                    Ok(v) => info.kubernetes_version = Some(v),
                    Err(e) => {
                        tracing::warn!("cannot read the cluster's Kubernetes version: {e:#}");
                        info.kubernetes_error = Some(format!("{e:#}"));
                    }
                }
                full(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_vec(&info).unwrap_or_default(),
                )
            }
            (&Method::GET, PATH_LOGS_NEXT) => {
                let Some(spool) = self.spool.clone() else {
                    return status(
                        404,
                        "this agent runs without a log pipeline (no --spool-dir)".into(),
                    );
                };
                match crate::shipping::NextQuery::parse(req.uri().query()) {
                    Ok(q) => crate::shipping::next_batch(spool, q, self.metrics.clone()).await,
                    Err(e) => status(400, e),
                }
            }
            (&Method::POST, PATH_REFUSED) => {
                let body = http_body_util::Limited::new(req.into_body(), 4096)
                    .collect()
                    .await
                    .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
                    .unwrap_or_default();
                tracing::error!("the management plane refused this tunnel: {body}");
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
                full(StatusCode::OK, "text/plain", "")
            }
            _ => status(
                404,
                format!("no agent endpoint {} {}", req.method(), req.uri().path()),
            ),
        }
    }

    /// Refuses to act as anyone the connection spec does not allow (and never as the agent
    /// itself: a request without `Impersonate-User` would run with the agent's own rights),
    /// nor as the controllers' identity, which only [`SERVICE_AUTHORITY`] requests get.
    fn check_impersonation(&self, headers: &HeaderMap) -> Result<(), String> {
        let user = headers
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
            .ok_or("the request does not name a user to impersonate; refusing to act with the agent's own rights")?;
        if user == SERVICE_IDENTITY {
            return Err(format!(
                "user {SERVICE_IDENTITY:?} is reserved for the management plane's controllers; a user's request cannot act as it"
            ));
        }
        if !self.impersonation.allows_user(user) {
            return Err(format!(
                "impersonating user {user:?} is not allowed by this cluster's ManagementClusterConnection spec.impersonation.users"
            ));
        }
        for g in headers.get_all("impersonate-group") {
            let g = g
                .to_str()
                .map_err(|_| "an Impersonate-Group header is not valid text")?;
            if !self.impersonation.allows_group(g) {
                return Err(format!(
                    "impersonating group {g:?} is not allowed by this cluster's ManagementClusterConnection spec.impersonation.groups"
                ));
            }
        }
        Ok(())
    }

    /// Makes a controller request act as [`SERVICE_IDENTITY`]: every impersonation header
    /// it carries is replaced. Refused when the connection spec does not allow
    /// impersonating that ServiceAccount.
    fn act_as_service(&self, headers: &mut HeaderMap) -> Result<(), String> {
        let sa = format!("{SERVICE_ACCOUNT_NAMESPACE}/{SERVICE_ACCOUNT_NAME}");
        if !self
            .impersonation
            .service_accounts
            .iter()
            .any(|x| x == "*" || *x == sa)
        {
            return Err(format!(
                "the management plane's controllers act as ServiceAccount {sa}, which this cluster's ManagementClusterConnection spec.impersonation.serviceAccounts does not allow"
            ));
        }
        impersonate_service(headers);
        Ok(())
    }

    async fn forward(
        &self,
        mut req: http::Request<Incoming>,
        acting: Acting,
    ) -> http::Response<AgentBody> {
        let checked = match acting {
            Acting::User => self.check_impersonation(req.headers()),
            Acting::Service => self.act_as_service(req.headers_mut()),
        };
        if let Err(e) = checked {
            return status(403, e);
        }
        let uri = match self.upstream.uri_for(req.uri().path_and_query()) {
            Ok(u) => u,
            Err(e) => {
                return status(
                    400,
                    format!("invalid request path {:?}: {e}", req.uri().path()),
                );
            }
        };
        if req.method() == Method::CONNECT
            && let Some(protocol) = req
                .extensions()
                .get::<hyper::ext::Protocol>()
                .map(|p| p.as_str().to_string())
        {
            return self.forward_upgrade(req, uri, protocol).await;
        }
        let (parts, body) = req.into_parts();
        let mut out = http::Request::new(body.map_err(Into::into).boxed());
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.headers_mut() = parts.headers;
        strip(out.headers_mut());
        self.upstream.authorize(out.headers_mut());
        match self.upstream.send(out).await {
            Ok(res) => {
                let (mut parts, body) = res.into_parts();
                strip(&mut parts.headers);
                http::Response::from_parts(parts, body.map_err(Into::into).boxed())
            }
            Err(e) => status(
                502,
                format!("the cluster's Kubernetes API is unreachable from the agent: {e:#}"),
            ),
        }
    }

    /// Turns an extended CONNECT from the tunnel into an HTTP/1.1 upgrade toward the API
    /// server, then splices the two byte streams.
    async fn forward_upgrade(
        &self,
        mut req: http::Request<Incoming>,
        uri: http::Uri,
        protocol: String,
    ) -> http::Response<AgentBody> {
        let method = req
            .headers()
            .get(HEADER_UPGRADE_METHOD)
            .and_then(|v| v.to_str().ok())
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::GET);
        let tunnel_side = hyper::upgrade::on(&mut req);
        let mut headers = req.headers().clone();
        strip(&mut headers);
        self.upstream.authorize(&mut headers);
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        match HeaderValue::from_str(&protocol) {
            Ok(v) => headers.insert(header::UPGRADE, v),
            Err(_) => return status(400, format!("invalid upgrade protocol {protocol:?}")),
        };
        let mut out = http::Request::new(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        );
        *out.method_mut() = method;
        *out.uri_mut() = uri;
        *out.headers_mut() = headers;
        let res = match self.upstream.send_upgrade(out).await {
            Ok(res) => res,
            Err(e) => {
                return status(
                    502,
                    format!("the cluster's Kubernetes API is unreachable from the agent: {e:#}"),
                );
            }
        };
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (mut parts, body) = res.into_parts();
            strip(&mut parts.headers);
            return http::Response::from_parts(parts, body.map_err(Into::into).boxed());
        }
        let mut reply_headers = res.headers().clone();
        strip(&mut reply_headers);
        let upstream_side = hyper::upgrade::on(res);
        tokio::spawn(async move {
            match tokio::try_join!(tunnel_side, upstream_side) {
                Ok((a, b)) => {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                        tracing::debug!("upgraded stream ended: {e}");
                    }
                }
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
        let mut reply = full(StatusCode::OK, "application/octet-stream", Bytes::new());
        *reply.headers_mut() = reply_headers;
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_requests_impersonate_only_the_controller_identity() {
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", HeaderValue::from_static("system:admin"));
        h.append(
            "impersonate-group",
            HeaderValue::from_static("system:masters"),
        );
        h.insert("impersonate-extra-scopes", HeaderValue::from_static("x"));
        impersonate_service(&mut h);
        assert_eq!(h["impersonate-user"], SERVICE_IDENTITY);
        assert!(h.get("impersonate-group").is_none());
        assert!(h.get("impersonate-extra-scopes").is_none());
    }

    #[test]
    fn strip_drops_connection_named_headers_and_the_upgrade_method() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert(HEADER_UPGRADE_METHOD, HeaderValue::from_static("POST"));
        h.insert(header::HOST, HeaderValue::from_static("kube.cattery"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        strip(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }
}
