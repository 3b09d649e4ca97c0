//! `/clusters/{name}/k8s/<path>`: forwards a request through the cluster's tunnel.
//!
//! The caller's credentials are never forwarded: `Authorization` and any client-supplied
//! `Impersonate-*` headers are dropped and `Impersonate-User`/`Impersonate-Group` are set
//! from the authenticated identity, so the managed cluster's own RBAC applies. Bodies stream
//! in both directions (watches print events as they happen). HTTP/1.1 upgrades (exec,
//! attach, port-forward over WebSocket or SPDY) become extended CONNECT (RFC 8441) streams.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use cattery_api::agent_protocol::{HEADER_UPGRADE_METHOD, KUBE_AUTHORITY};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use hyper_util::rt::TokioIo;

use crate::AppState;
use crate::auth::Identity;
use crate::handler::{ApiError, identity};

/// Largest proxied request body (kube-apiserver itself caps most at 3 MiB).
pub const MAX_PROXY_BODY: u64 = 16 << 20;

/// Removes hop-by-hop headers (the list shared with the agent, including those named in
/// `Connection`) and `Host`: the tunnel request's authority is set from its URI.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    cattery_tunnel::hop_by_hop::strip(headers);
    headers.remove(header::HOST);
}

/// Removes the caller's credentials and impersonation headers, then impersonates `who`.
pub fn set_identity(headers: &mut HeaderMap, who: &Identity) -> Result<(), ApiError> {
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::COOKIE);
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for k in drop {
        headers.remove(k);
    }
    let value = |s: &str| {
        HeaderValue::from_str(s)
            .map_err(|_| ApiError::new(400, format!("identity {s:?} cannot be sent as a header")))
    };
    headers.insert("impersonate-user", value(&who.user)?);
    for g in &who.groups {
        headers.append("impersonate-group", value(g)?);
    }
    Ok(())
}

/// The upgrade protocol requested by an HTTP/1.1 client, if any.
fn upgrade_protocol(headers: &HeaderMap) -> Option<String> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !connection_upgrade {
        return None;
    }
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Proxies one request to cluster `name`.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    Path(params): Path<Vec<(String, String)>>,
    mut req: Request,
) -> Response {
    let name = params
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    req = match crate::handler::refuse_oversized(req, MAX_PROXY_BODY).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match forward(&state, &name, &mut req).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

/// `http://<kube authority><rest>?<query>` for a request to `/clusters/{name}/k8s<rest>`.
fn target_uri(uri: &http::Uri, name: &str) -> Result<http::Uri, ApiError> {
    let rest = uri
        .path()
        .strip_prefix("/clusters/")
        .and_then(|p| p.strip_prefix(name))
        .and_then(|p| p.strip_prefix("/k8s"))
        .unwrap_or("");
    let query = uri.query();
    let mut target = String::with_capacity(
        "http://".len() + KUBE_AUTHORITY.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1,
    );
    target.push_str("http://");
    target.push_str(KUBE_AUTHORITY);
    target.push_str(if rest.is_empty() { "/" } else { rest });
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    http::Uri::try_from(target)
        .map_err(|e| ApiError::new(400, format!("invalid request target: {e}")))
}

async fn forward(state: &AppState, name: &str, req: &mut Request) -> Result<Response, ApiError> {
    let who = identity(req);
    let uri = target_uri(req.uri(), name)?;
    let mut sender = state.registry.sender(name)?;
    let upgrade = upgrade_protocol(req.headers());
    // The request itself is not used after this point (only its method, body and
    // upgrade extension), so its headers are moved rather than copied.
    let mut headers = std::mem::take(req.headers_mut());
    strip_hop_by_hop(&mut headers);
    set_identity(&mut headers, &who)?;

    let unavailable = |e: hyper::Error| {
        ApiError::new(
            503,
            format!("cluster {name:?}: the tunnel failed while sending the request: {e}"),
        )
    };
    if let Some(protocol) = upgrade {
        let client_upgrade = hyper::upgrade::on(&mut *req);
        headers.insert(
            HEADER_UPGRADE_METHOD,
            HeaderValue::from_str(req.method().as_str()).expect("methods are valid header values"),
        );
        let mut out = http::Request::new(Body::empty());
        *out.method_mut() = Method::CONNECT;
        *out.uri_mut() = uri;
        *out.headers_mut() = headers;
        out.extensions_mut()
            .insert(hyper::ext::Protocol::from(protocol.as_str()));
        sender.ready().await.map_err(unavailable)?;
        let res = sender.send_request(out).await.map_err(unavailable)?;
        if res.status() != StatusCode::OK {
            return Ok(plain_response(res));
        }
        let mut reply_headers = res.headers().clone();
        strip_hop_by_hop(&mut reply_headers);
        let tunnel_upgrade = hyper::upgrade::on(res);
        let cluster = name.to_string();
        tokio::spawn(async move {
            let (client, tunnel) = match tokio::try_join!(client_upgrade, tunnel_upgrade) {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(cluster, "upgrade failed: {e}");
                    return;
                }
            };
            let (mut client, mut tunnel) = (TokioIo::new(client), TokioIo::new(tunnel));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut tunnel).await {
                tracing::debug!(cluster, "upgraded stream ended: {e}");
            }
        });
        let mut reply = Response::new(Body::empty());
        *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *reply.headers_mut() = reply_headers;
        reply
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        reply.headers_mut().insert(
            header::UPGRADE,
            HeaderValue::from_str(&protocol).expect("came from a header"),
        );
        return Ok(reply);
    }

    let body = std::mem::take(req.body_mut());
    // A failure reading the caller's body (a malformed chunked encoding, a body over the
    // limit) makes the tunnel request fail too; it is remembered so the caller is told
    // that their body was the problem (400/413), not that the tunnel failed (503).
    let body_error: Arc<std::sync::OnceLock<(u16, String)>> = Arc::default();
    let seen = body_error.clone();
    let body = http_body_util::BodyExt::map_err(
        http_body_util::Limited::new(body, MAX_PROXY_BODY as usize),
        move |e| {
            let answer = if e.is::<http_body_util::LengthLimitError>() {
                (
                    413,
                    format!("request body is larger than the {MAX_PROXY_BODY}-byte limit"),
                )
            } else {
                (400, format!("reading the request body failed: {e}"))
            };
            let _ = seen.set(answer);
            e
        },
    );
    let mut out = http::Request::new(Body::new(body));
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    sender.ready().await.map_err(unavailable)?;
    let res = sender
        .send_request(out)
        .await
        .map_err(|e| match body_error.get() {
            Some((code, message)) => ApiError::new(*code, message.clone()),
            None => unavailable(e),
        })?;
    Ok(plain_response(res))
}

fn plain_response(res: http::Response<hyper::body::Incoming>) -> Response {
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_foreign_impersonation_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer secret"));
        h.insert("impersonate-user", HeaderValue::from_static("system:admin"));
        h.insert("impersonate-extra-scopes", HeaderValue::from_static("x"));
        h.insert("accept", HeaderValue::from_static("application/json"));
        let who = Identity {
            user: "alice".into(),
            groups: vec!["dev".into(), "ops".into()],
        };
        set_identity(&mut h, &who).unwrap();
        assert!(h.get("authorization").is_none());
        assert!(h.get("impersonate-extra-scopes").is_none());
        assert_eq!(h["impersonate-user"], "alice");
        let groups: Vec<_> = h.get_all("impersonate-group").iter().collect();
        assert_eq!(groups, ["dev", "ops"]);
        assert_eq!(h["accept"], "application/json");
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn target_keeps_path_and_query_after_the_cluster_prefix() {
        let t = |u: &str| {
            target_uri(&u.parse().unwrap(), "alpha")
                .unwrap()
                .to_string()
        };
        assert_eq!(
            t("/clusters/alpha/k8s/api/v1/pods?watch=1&limit=2"),
            format!("http://{KUBE_AUTHORITY}/api/v1/pods?watch=1&limit=2")
        );
        assert_eq!(
            t("/clusters/alpha/k8s"),
            format!("http://{KUBE_AUTHORITY}/")
        );
        assert_eq!(
            t("/clusters/alpha/k8s?x=1"),
            format!("http://{KUBE_AUTHORITY}/?x=1")
        );
    }

    #[test]
    fn upgrade_detection() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_protocol(&h).as_deref(), Some("websocket"));
    }
}
