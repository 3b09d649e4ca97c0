//! "Sign in with SSO": the UI's half of the OpenID Connect authorization code flow.
//!
//! The server supplies an [`SsoProvider`] (it owns the issuer's configuration, the HTTP
//! client and the ID-token verifier); the UI keeps the browser's side: a short-lived
//! pending sign-in per browser, bound to it by a cookie, holding the `state`, `nonce` and
//! PKCE verifier until the issuer sends the browser back. A pending sign-in is used once:
//! a replayed callback finds nothing and is refused with a clear message.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

/// The cookie that binds a pending SSO sign-in to the browser that started it. It is
/// `SameSite=Lax`, not `Strict`: the issuer's redirect back is a cross-site navigation, on
/// which browsers do not send `Strict` cookies.
pub(crate) const PENDING_COOKIE: &str = "__Host-cattery-sso";
/// How long a browser may spend at the issuer.
pub(crate) const PENDING_TTL: Duration = Duration::from_secs(600);
/// Most pending sign-ins held at once (the oldest are dropped beyond it).
const MAX_PENDING: usize = 10_000;

/// The secrets of one sign-in attempt, created by [`SsoProvider::start`] and handed back to
/// [`SsoProvider::finish`].
#[derive(Clone)]
pub struct SsoPending {
    /// The `state` sent to the issuer; the callback must carry it back.
    pub state: String,
    /// The `nonce` sent to the issuer; the ID token must carry it.
    pub nonce: String,
    /// The PKCE code verifier whose S256 challenge was sent to the issuer.
    pub pkce_verifier: String,
}

/// Where to send the browser, and what to remember until it comes back.
pub struct SsoStart {
    /// The issuer's authorization endpoint with every parameter.
    pub url: String,
    /// Kept by the UI until the callback.
    pub pending: SsoPending,
}

/// A finished sign-in or refresh: the verified ID token (the session's bearer token from
/// now on), when it expires, and the refresh token that may renew it.
pub struct SsoLogin {
    /// The ID token, verified like a bearer OIDC token (plus the sign-in's `nonce`).
    pub id_token: String,
    /// Its `exp`: the session ends then unless a refresh gets a new ID token.
    pub expires_at: SystemTime,
    /// The refresh token the issuer gave, if any (kept on the server, never sent to the
    /// browser or logged). Without one the session ends at `expires_at`.
    pub refresh_token: Option<String>,
}

/// A boxed future, so the trait stays object-safe.
pub type SsoFuture<'a> = Pin<Box<dyn Future<Output = Result<SsoLogin, String>> + Send + 'a>>;

/// The answer of [`SsoProvider::revoke`]: `Ok(true)` revoked, `Ok(false)` the issuer has no
/// revocation endpoint, `Err` a sentence saying why revoking failed (never a token).
pub type SsoRevokeFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;

/// Browser sign-in at an OpenID Connect issuer. Implemented by the server, which has the
/// issuer's configuration and the verifier of its tokens.
pub trait SsoProvider: Send + Sync + 'static {
    /// A new attempt: random `state`, `nonce` and PKCE verifier, and the authorization URL
    /// carrying `state`, `nonce` and the verifier's S256 challenge.
    fn start(&self) -> SsoStart;
    /// Redeems `code` at the token endpoint with the attempt's PKCE verifier and verifies
    /// the ID token (signature, issuer, audience, expiry and the attempt's nonce). The error
    /// is a sentence for the person (never containing a token).
    fn finish<'a>(&'a self, pending: &'a SsoPending, code: &'a str) -> SsoFuture<'a>;
    /// Redeems a refresh token at the token endpoint for a new ID token, verified like the
    /// first (signature, issuer, audience, expiry). When the answer carries no new refresh
    /// token the old one stays valid (`refresh_token` is then `None` and the UI keeps the
    /// old one). An answer without an ID token is an error: the ID token is the session's
    /// bearer token. The error is a sentence for the person (never containing a token).
    fn refresh<'a>(&'a self, refresh_token: &'a str) -> SsoFuture<'a>;
    /// Where to send the browser at sign-out to end the session at the issuer too (OpenID
    /// Connect RP-initiated logout: the discovery document's `end_session_endpoint` with
    /// `id_token_hint`, `client_id` and `post_logout_redirect_uri`), or `None` when the
    /// issuer advertises no such endpoint.
    fn logout_url(&self, id_token_hint: &str) -> Option<String>;
    /// Revokes a refresh token at the issuer (RFC 7009, the discovery document's
    /// `revocation_endpoint`) at sign-out, so that the token stops working at the issuer
    /// and not only in Cattery; `Ok(false)` when the issuer advertises no such endpoint.
    fn revoke<'a>(&'a self, refresh_token: &'a str) -> SsoRevokeFuture<'a>;
}

struct Entry {
    pending: SsoPending,
    next: String,
    created: Instant,
}

/// Pending sign-ins, keyed by the SHA-256 of their cookie value.
#[derive(Default)]
pub(crate) struct PendingTable {
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl PendingTable {
    /// Remembers an attempt; returns the cookie value.
    pub(crate) fn insert(&self, pending: SsoPending, next: String) -> String {
        let id = crate::session::random_hex();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_PENDING {
            map.retain(|_, e| now.duration_since(e.created) < PENDING_TTL);
        }
        while map.len() >= MAX_PENDING {
            let oldest = map.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| *k);
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            key(&id),
            Entry {
                pending,
                next,
                created: now,
            },
        );
        id
    }

    /// Takes the attempt of cookie value `id` out of the table (so it is used once), if it
    /// is there and not too old. Returns it and the page to land on afterwards.
    pub(crate) fn take(&self, id: &str) -> Option<(SsoPending, String)> {
        let entry = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(id))?;
        (entry.created.elapsed() < PENDING_TTL).then_some((entry.pending, entry.next))
    }
}

/// A `Set-Cookie` value for the pending cookie (`None` deletes it).
pub(crate) fn pending_cookie(value: Option<&str>) -> String {
    match value {
        Some(v) => format!(
            "{PENDING_COOKIE}={v}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
            PENDING_TTL.as_secs()
        ),
        None => format!("{PENDING_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(s: &str) -> SsoPending {
        SsoPending {
            state: s.into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
        }
    }

    #[test]
    fn a_pending_sign_in_is_used_once() {
        let t = PendingTable::default();
        let id = t.insert(pending("s1"), "/ui/flows".into());
        assert!(t.take("other").is_none());
        let (p, next) = t.take(&id).expect("first use");
        assert_eq!((p.state.as_str(), next.as_str()), ("s1", "/ui/flows"));
        assert!(t.take(&id).is_none(), "a replay finds nothing");
    }

    #[test]
    fn the_pending_cookie_survives_the_cross_site_redirect_back() {
        let c = pending_cookie(Some("x"));
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=600",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(pending_cookie(None).contains("Max-Age=0"));
    }
}
