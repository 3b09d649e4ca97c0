//! `Token` (`cattery.dev/v1`) on the resource store: its descriptor (list, get, watch and
//! delete are the generic handlers'), and create, which returns the secret once and stores
//! only its hash. Deleting a token revokes it: the object stays with its revocation time,
//! so `token list` shows when it was revoked, and it is refused from the next request on.
//! No read returns the secret or its hash ([`view`]).
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
use cattery_api::{API_VERSION, Token, TokenStatus};
use serde_json::{Value, json};

use super::gate::AuthzOutcome;
use super::kinds::{Descriptor, HubKind};
use super::{ApiError, MAX_RESOURCE_BODY, check_metadata, identity, read_body, respond};
use crate::AppState;
use crate::auth::Identity;
use crate::auth::tokens::{HASH_FIELD, NewToken};

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

/// A stored token as clients see it: without its hash, with a last-used time not yet
/// written to the store.
pub(crate) fn view(st: &AppState, obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.remove(HASH_FIELD);
    }
    let id = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(at) = st.auth.pending_last_use(&id) {
        if !obj["status"].is_object() {
            obj["status"] = json!({});
        }
        obj["status"]["lastUsedTimestamp"] = json!(at);
    }
}

/// Tokens are written only by [`create`] (and revoked by DELETE); nothing else is stored.
fn validate(_: &Value) -> Result<(), ApiError> {
    Err(ApiError::with_reason(
        405,
        "MethodNotAllowed",
        "tokens cannot be changed; create a new one and delete (revoke) the old one",
    ))
}

/// `Token`.
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    kind: HubKind::Token,
    group: cattery_rbac::GROUP_CATTERY,
    version: "v1",
    kind_name: "Token",
    plural: "tokens",
    singular: "token",
    short_names: &[],
    namespaced: false,
    validate,
    columns: TOKEN_COLUMNS,
    age_column: true,
    admit: None,
    builtins: super::kinds::no_builtins,
    create_on_update: false,
    verbs: &["create", "delete", "get", "list", "watch"],
};

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
    let (stored, secret) = state.auth.create(NewToken {
        identity: Identity {
            user: spec.user,
            groups,
        },
        description: spec.description,
        ttl,
    })?;
    let mut out = (*stored).clone();
    view(&state, &mut out);
    out["status"]["token"] = json!(secret);
    tracing::info!(
        id = out["metadata"]["name"].as_str().unwrap_or(""),
        user = out["spec"]["user"].as_str().unwrap_or(""),
        "token created"
    );
    Ok(respond(&headers, http::StatusCode::CREATED, &out))
}

/// DELETE of a token: revokes it (the object stays, with its revocation time).
pub(crate) fn revoke(state: &AppState, id: &str) -> Result<Value, ApiError> {
    let revoked = state.auth.revoke(id)?;
    let mut out = (*revoked).clone();
    view(state, &mut out);
    tracing::info!(
        id,
        user = out["spec"]["user"].as_str().unwrap_or(""),
        "token revoked"
    );
    Ok(out)
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
