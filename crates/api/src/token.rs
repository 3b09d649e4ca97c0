//! `Token`: an opaque bearer token for a user or service account.
//!
//! The secret itself appears exactly once, in `status.token` of the create response; the
//! server keeps only its SHA-256. `metadata.name` is the token's public id (safe to show,
//! log and pass to `cattery token revoke`).

use serde::{Deserialize, Serialize};

use crate::ObjectMeta;

/// Longest lifetime a token may be given (ten years): the server refuses longer
/// `spec.expirationSeconds`, and the CLI refuses a longer `--ttl` before sending it.
pub const MAX_EXPIRATION_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// A bearer token (`cattery.dev/v1`, kind `Token`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Token {
    /// `cattery.dev/v1`.
    pub api_version: String,
    /// `Token`.
    pub kind: String,
    /// `name` is the public id, set by the server.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Who the token authenticates as.
    pub spec: TokenSpec,
    /// Server-maintained facts.
    #[serde(default)]
    pub status: TokenStatus,
}

/// What a token stands for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenSpec {
    /// User name (`system:serviceaccount:NS:NAME` for a service account).
    pub user: String,
    /// Groups of that user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Lifetime requested at creation; absent = never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<u64>,
    /// Free text: what the token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Server-maintained facts about a token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenStatus {
    /// The secret, only in the response that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// RFC 3339 expiry, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_timestamp: Option<String>,
    /// RFC 3339 time of the last successful authentication (recorded at most once a minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_timestamp: Option<String>,
    /// RFC 3339 time it was revoked; a revoked token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_timestamp: Option<String>,
}

/// The user name of service account `name` in `namespace`, as Kubernetes spells it.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The groups Kubernetes gives every service account in `namespace`.
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
    ]
}
