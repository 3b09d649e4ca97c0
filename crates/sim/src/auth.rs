//! Bearer-token authentication, like a kube-apiserver authenticating the
//! agent's service account (`--token-file`).
//!
//! Health, version and `/_sim/` debug endpoints stay open, as anonymous
//! access to `/healthz`, `/readyz`, `/livez` and `/version` is on a default
//! kube-apiserver.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::status::ApiError;

fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/livez" | "/version") || path.starts_with("/_sim/")
}

/// Whether the `Authorization` header value carries exactly `token`.
pub(crate) fn token_matches(header: Option<&[u8]>, token: &str) -> bool {
    let expected = format!("Bearer {token}");
    header.is_some_and(|h| h.ct_eq(expected.as_bytes()).into())
}

/// Middleware: 401 `Status` unless the request carries the configured token.
pub async fn require_token(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !is_public(req.uri().path()) && !token_matches(header, token) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match_exactly() {
        assert!(token_matches(Some(b"Bearer abc"), "abc"));
        assert!(!token_matches(Some(b"Bearer abcd"), "abc"));
        assert!(!token_matches(Some(b"Basic abc"), "abc"));
        assert!(!token_matches(None, "abc"));
        assert!(is_public("/healthz") && is_public("/_sim/info") && !is_public("/api/v1/pods"));
    }
}
