//! `Token` endpoints: create (the secret is returned once), list, get, revoke.
//!
//! Creating a token for a user is as powerful as acting as that user, so it needs `create`
//! on `tokens` (only `cattery-admin` has it built in) and, as Kubernetes asks of
//! impersonation, `impersonate` on the token's user (`serviceaccounts` for a service
//! account) and on each of its groups — unless the caller mints a token for themself with
//! some of their own groups ([`cattery_rbac::Authorizer::check_impersonation`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use cattery_api::wire::{check_type, decode};
use cattery_api::{API_VERSION, List, ObjectMeta, Token, TokenSpec, TokenStatus};

use super::extract::Path;
use super::gate::AuthzOutcome;
use super::{ApiError, MAX_RESOURCE_BODY, check_metadata, identity, read_body, respond};
use crate::AppState;
use crate::auth::Identity;
use crate::auth::tokens::NewToken;
use crate::store::TokenRecord;

use cattery_api::token::MAX_EXPIRATION_SECONDS;
/// Longest user or group name.
const MAX_NAME: usize = 256;

fn cell(o: &serde_json::Value, p: &str) -> serde_json::Value {
    serde_json::json!(
        o.pointer(p)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
    )
}

/// What `kubectl get tokens` prints (never a secret: listed tokens carry none).
const TOKEN_COLUMNS: &[cattery_store::http::table::Column] = &[
    cattery_store::http::table::Column {
        name: "User",
        ty: "string",
        priority: 0,
        cell: |o| cell(o, "/spec/user"),
    },
    cattery_store::http::table::Column {
        name: "Expires",
        ty: "string",
        priority: 0,
        cell: |o| cell(o, "/status/expirationTimestamp"),
    },
    cattery_store::http::table::Column {
        name: "Revoked",
        ty: "string",
        priority: 0,
        cell: |o| cell(o, "/status/revocationTimestamp"),
    },
    cattery_store::http::table::Column {
        name: "Last-Used",
        ty: "string",
        priority: 1,
        cell: |o| cell(o, "/status/lastUsedTimestamp"),
    },
    cattery_store::http::table::Column {
        name: "Description",
        ty: "string",
        priority: 1,
        cell: |o| cell(o, "/spec/description"),
    },
];

fn to_token(r: TokenRecord, secret: Option<String>) -> Token {
    Token {
        api_version: API_VERSION.into(),
        kind: "Token".into(),
        metadata: ObjectMeta {
            name: r.id,
            creation_timestamp: Some(r.created_at),
            ..Default::default()
        },
        spec: TokenSpec {
            user: r.user,
            groups: r.groups,
            expiration_seconds: None,
            description: r.description,
        },
        status: TokenStatus {
            token: secret,
            expiration_timestamp: r.expires_at,
            last_used_timestamp: r.last_used_at,
            revocation_timestamp: r.revoked_at,
        },
    }
}

fn invalid(msg: String) -> ApiError {
    ApiError::with_reason(400, "Invalid", msg)
}

/// Checks a user or group name. Names under `system:` are Kubernetes' own; only the
/// service-account forms may be issued, so a token can never claim e.g. `system:masters`.
fn check_name(field: &str, v: &str, group: bool) -> Result<(), ApiError> {
    if v.trim().is_empty() {
        return Err(invalid(format!("Token {field}: must not be empty")));
    }
    if v.len() > MAX_NAME {
        return Err(invalid(format!(
            "Token {field}: longer than {MAX_NAME} characters"
        )));
    }
    if v.chars().any(|c| c.is_control() || c == ',') {
        return Err(invalid(format!(
            "Token {field}: {v:?} contains a control character or a comma"
        )));
    }
    if let Some(rest) = v.strip_prefix("system:") {
        let allowed = if group {
            rest == "serviceaccounts" || rest.starts_with("serviceaccounts:")
        } else {
            rest.strip_prefix("serviceaccount:")
                .and_then(|r| r.split_once(':'))
                .is_some_and(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains(':'))
        };
        if !allowed {
            return Err(invalid(format!(
                "Token {field}: {v:?} is reserved (names starting with \"system:\" other than service accounts cannot be issued)"
            )));
        }
    }
    Ok(())
}

/// Refuses (403, naming every missing permission) a token for an identity the caller could
/// not impersonate: a token is as strong as its identity.
fn check_may_mint(
    state: &AppState,
    who: &Identity,
    user: &str,
    groups: &[String],
) -> Result<(), ApiError> {
    let caller = cattery_rbac::Requester {
        user: &who.user,
        groups: &who.groups,
    };
    let target = cattery_rbac::Requester { user, groups };
    state
        .authz
        .current()
        .check_impersonation(&caller, &target)
        .map_err(|why| {
            let message = format!(
                "a token for user {user:?} would let you act as them: {why}; a token may only be created for an identity you could impersonate, or for yourself with some of your own groups"
            );
            ApiError::with_reason(403, "Forbidden", message.clone()).with_outcome(AuthzOutcome {
                allowed: false,
                reason: message,
                name: None,
            })
        })
}

/// `POST /apis/cattery.dev/v1/tokens`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let who = identity(&req);
    let headers = req.headers().clone();
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    let token: Token = decode(&body)?;
    check_type(&token.api_version, &token.kind, &[API_VERSION], "Token")?;
    check_metadata("Token", &token.metadata, false)?;
    if !token.metadata.name.is_empty() {
        return Err(invalid(
            "Token metadata.name: is assigned by the server; leave it empty".into(),
        ));
    }
    if token.status != TokenStatus::default() {
        return Err(invalid(
            "Token status: is set by the server; leave it empty".into(),
        ));
    }
    let spec = token.spec;
    check_name("spec.user", &spec.user, false)?;
    for (i, g) in spec.groups.iter().enumerate() {
        check_name(&format!("spec.groups[{i}]"), g, true)?;
    }
    let ttl = match spec.expiration_seconds {
        None => None,
        Some(0) => {
            return Err(invalid(
                "Token spec.expirationSeconds: must be at least 1 (omit it for no expiry)".into(),
            ));
        }
        Some(s) if s > MAX_EXPIRATION_SECONDS => {
            return Err(invalid(format!(
                "Token spec.expirationSeconds: at most {MAX_EXPIRATION_SECONDS} (ten years)"
            )));
        }
        Some(s) => Some(Duration::from_secs(s)),
    };
    if let Some(d) = &spec.description
        && d.len() > 1024
    {
        return Err(invalid(
            "Token spec.description: longer than 1024 bytes".into(),
        ));
    }
    let mut groups = spec.groups;
    groups.dedup();
    check_may_mint(&state, &who, &spec.user, &groups)?;
    let (record, secret) = state.auth.create(
        state.store.as_ref(),
        NewToken {
            identity: Identity {
                user: spec.user,
                groups,
            },
            description: spec.description,
            ttl,
        },
    )?;
    tracing::info!(id = record.id, user = record.user, "token created");
    Ok(respond(
        &headers,
        http::StatusCode::CREATED,
        &to_token(record, Some(secret)),
    ))
}

/// `GET /apis/cattery.dev/v1/tokens` (never includes secrets).
pub async fn list(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let items = state
        .auth
        .list(state.store.as_ref())?
        .into_iter()
        .map(|r| to_token(r, None))
        .collect();
    Ok(super::respond_printed(
        req.headers(),
        http::StatusCode::OK,
        &List::new(API_VERSION, "Token", items),
        TOKEN_COLUMNS,
    ))
}

/// `GET /apis/cattery.dev/v1/tokens/{id}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let r = state
        .auth
        .list(state.store.as_ref())?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::new(404, format!("tokens {id:?} not found")))?;
    Ok(super::respond_printed(
        req.headers(),
        http::StatusCode::OK,
        &to_token(r, None),
        TOKEN_COLUMNS,
    ))
}

/// `DELETE /apis/cattery.dev/v1/tokens/{id}`: revokes the token (the record stays, so
/// `token list` shows when it was revoked).
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let r = state.auth.revoke(state.store.as_ref(), &id)?;
    tracing::info!(id, user = r.user, "token revoked");
    Ok(respond(
        req.headers(),
        http::StatusCode::OK,
        &to_token(r, None),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_refused() {
        assert!(check_name("spec.user", "alice", false).is_ok());
        assert!(check_name("spec.user", "system:serviceaccount:ci:deployer", false).is_ok());
        assert!(check_name("spec.user", "system:admin", false).is_err());
        assert!(check_name("spec.user", "system:serviceaccount:ci", false).is_err());
        assert!(check_name("spec.groups[0]", "system:masters", true).is_err());
        assert!(check_name("spec.groups[0]", "system:serviceaccounts:ci", true).is_ok());
        assert!(check_name("spec.user", " ", false).is_err());
        assert!(check_name("spec.user", "a\nb", false).is_err());
    }
}
