//! The one door every API request passes: rate limit, authenticate, authorize, audit.
//!
//! 1. An address that has failed authentication too often gets 429 without its
//!    credentials being looked at ([`crate::auth::ratelimit`]).
//! 2. No or a bad credential → 401 ("who are you?"), and a failure is counted.
//! 3. The request is resolved to RBAC terms ([`super::request_info`]) and checked; a
//!    refusal → 403 whose message says what permission is missing.
//! 4. Whatever happened, one audit event is queued ([`crate::audit_trail`]). Handlers that
//!    decide themselves (log reads, filtered lists) attach an [`AuthzOutcome`] to their
//!    response, which refines the event.
//!
//! Tokens and the `Authorization` header are never logged or stored.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cattery_rbac::{Decision, Requester};

use super::ApiError;
use super::request_info::{RequestInfo, Target, resolve};
use crate::AppState;
use crate::audit_trail::AuditEvent;
use crate::auth::Identity;
use crate::auth::oidc::OidcAuthenticator;
pub(crate) use crate::handler::AuthzOutcome;

/// The client's address, inserted per connection by the HTTPS server.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// How the caller proved who they are, for `user.extra` in audit events.
#[derive(Clone, Debug)]
pub struct AuthenticatedBy(pub String);

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Resolves the request's credential to an identity, or says why not.
async fn authenticate(
    state: &AppState,
    headers: &http::HeaderMap,
) -> Result<(Identity, String), String> {
    let Some(token) = bearer(headers) else {
        return Err(
            "no bearer token: pass --token, set CATTERY_TOKEN or run `cattery login`".into(),
        );
    };
    if let Some(oidc) = &state.oidc
        && OidcAuthenticator::looks_like_jwt(token)
    {
        return oidc
            .authenticate(token)
            .await
            .map(|id| (id, "oidc".to_string()))
            .map_err(|e| format!("OIDC token refused: {e}"));
    }
    state
        .auth
        .authenticate(token)
        .map(|(id, token_id)| (id, format!("token:{token_id}")))
        .map_err(|e| e.to_string())
}

/// Decides a resolved request for `who` (log reads are decided by their handler).
pub fn decide(authz: &cattery_rbac::Authorizer, who: &Identity, info: &RequestInfo) -> Decision {
    let requester = Requester {
        user: &who.user,
        groups: &who.groups,
    };
    match &info.target {
        Target::Resource {
            api_group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let req = cattery_rbac::Request::Resource {
                verb: &info.verb,
                api_group,
                resource,
                subresource: subresource.as_deref(),
                name: name.as_deref(),
                namespace: namespace.as_deref(),
            };
            let d = authz.authorize(&requester, &req);
            if d.allowed || info.verb != "list" || name.is_some() {
                return d;
            }
            // A list is allowed when some names may be listed; the handler filters.
            match authz.allowed_names(
                &requester,
                "list",
                api_group,
                resource,
                subresource.as_deref(),
                namespace.as_deref(),
            ) {
                cattery_rbac::Names::Only(names) if !names.is_empty() => Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: list limited to resourceNames {:?}",
                        names.iter().collect::<Vec<_>>()
                    ),
                },
                _ => d,
            }
        }
        Target::NonResource { path } => authz.authorize(
            &requester,
            &cattery_rbac::Request::NonResource {
                verb: &info.verb,
                path,
            },
        ),
        Target::Logs { .. } => Decision {
            allowed: true,
            reason: "log read: decided per cluster by the log API".into(),
        },
    }
}

/// The door's decision for `who`: RBAC's, unless a benchmark build (feature `bench-modes`)
/// switched authorization off.
fn authorize(state: &AppState, who: &Identity, info: &RequestInfo) -> Decision {
    #[cfg(feature = "bench-modes")]
    if state.access_control == crate::AccessControl::AuditWithoutAuthorizationForBenchmarks {
        return Decision {
            allowed: true,
            reason: "authorization is off (benchmark)".into(),
        };
    }
    decide(&state.authz.current(), who, info)
}

/// The middleware.
pub async fn gate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let received = time::OffsetDateTime::now_utc();
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
    let upgrade = req.headers().contains_key(http::header::UPGRADE)
        || req.extensions().get::<hyper::ext::Protocol>().is_some();
    let info = resolve(req.method(), req.uri().path(), req.uri().query(), upgrade);
    let mut ev = AuditEvent {
        received: Some(received),
        verb: info.verb.clone(),
        request_uri: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        source_ip: peer.map(|p| p.ip()),
        user_agent: req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        stage: "ResponseComplete",
        ..Default::default()
    };
    match &info.target {
        Target::Resource {
            api_group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            ev.api_group = Some(api_group.clone());
            ev.resource = Some(resource.clone());
            ev.subresource = subresource.clone();
            ev.namespace = namespace.clone();
            ev.name = name.clone();
            if subresource.as_deref() == Some("proxy") {
                ev.stage = "ResponseStarted";
            }
        }
        Target::Logs { log_type } => {
            ev.api_group = Some(cattery_rbac::GROUP_LOGS.into());
            ev.resource = Some(log_type.clone());
            if req.uri().path().ends_with("/tail") {
                ev.stage = "ResponseStarted";
            }
        }
        Target::NonResource { .. } => {}
    }

    if let Some(ip) = peer.map(|p| p.ip())
        && let Some(wait) = state.limiter.blocked(ip)
    {
        ev.reason = "too many failed authentications from this address".into();
        ev.code = 429;
        state.audit.record(ev);
        let mut res = ApiError::with_reason(
            429,
            "TooManyRequests",
            format!(
                "too many failed authentications from this address; retry in {} s",
                wait.as_secs()
            ),
        )
        .into_response();
        if let Ok(v) = http::HeaderValue::from_str(&wait.as_secs().to_string()) {
            res.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        return res;
    }

    let (identity, by) = match authenticate(&state, req.headers()).await {
        Ok(x) => x,
        Err(why) => {
            if let Some(ip) = peer.map(|p| p.ip()) {
                state.limiter.failed(ip);
            }
            tracing::info!(
                peer = ?peer,
                path = req.uri().path(),
                "authentication failed: {why}"
            );
            ev.reason = format!("authentication failed: {why}");
            ev.code = 401;
            state.audit.record(ev);
            return ApiError::with_reason(401, "Unauthorized", why).into_response();
        }
    };
    #[cfg(feature = "bench-modes")]
    if state.access_control == crate::AccessControl::AuthenticationOnlyForBenchmarks {
        req.extensions_mut().insert(identity);
        req.extensions_mut().insert(AuthenticatedBy(by));
        return next.run(req).await;
    }
    ev.user = Some(identity.user.clone());
    ev.groups = identity.groups.clone();
    ev.authenticated_by = Some(by.clone());

    let decision = authorize(&state, &identity, &info);
    ev.allowed = decision.allowed;
    ev.reason = decision.reason.clone();
    if !decision.allowed {
        ev.code = 403;
        state.audit.record(ev);
        return ApiError::with_reason(403, "Forbidden", decision.reason).into_response();
    }

    req.extensions_mut().insert(identity);
    req.extensions_mut().insert(AuthenticatedBy(by));
    let res = next.run(req).await;
    if let Some(o) = res.extensions().get::<AuthzOutcome>() {
        ev.allowed = o.allowed;
        ev.reason = o.reason.clone();
        if o.name.is_some() {
            ev.name = o.name.clone();
        }
    }
    ev.code = res.status().as_u16();
    state.audit.record(ev);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(http::header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(http::header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
