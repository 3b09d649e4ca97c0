//! Server-side sessions: a random 256-bit id in an `HttpOnly; Secure; SameSite=Strict`
//! cookie maps to the person's token, identity and CSRF secret, in memory only.
//!
//! Sessions are keyed by the SHA-256 of their id, so the table never holds a usable
//! cookie value and a lookup is a hash-map probe, not a comparison an attacker can time.
//! A session ends after `idle` without use, `absolute` after sign-in, at sign-out, or when
//! the API stops accepting its token. An SSO session also ends when its ID token expires,
//! unless the issuer gave a refresh token that still gets a new one
//! ([`crate::refresh`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie (the `__Host-` prefix makes browsers insist on Secure, Path=/ and
/// no Domain).
pub(crate) const COOKIE: &str = "__Host-cattery-session";
/// The short-lived cookie that protects the sign-in form itself from cross-site posts.
pub(crate) const SIGNIN_COOKIE: &str = "__Host-cattery-signin";

/// What a session knows.
#[derive(Clone)]
pub(crate) struct Session {
    /// The bearer token every API call presents.
    pub(crate) token: Arc<str>,
    /// The user name the API reported at sign-in.
    pub(crate) user: String,
    /// Their groups.
    pub(crate) groups: Vec<String>,
    /// The CSRF token state-changing requests must carry.
    pub(crate) csrf: String,
    created: Instant,
    last_seen: Instant,
    /// Set for a sign-in with SSO: the ID token's lifetime and how to renew it.
    pub(crate) sso: Option<SsoState>,
}

/// The ID token side of an SSO session (its bearer token is the ID token).
#[derive(Clone)]
pub(crate) struct SsoState {
    /// When the ID token expires: the session ends then unless refreshed.
    pub(crate) expires: Instant,
    /// When to ask for a new ID token (ahead of `expires`; later after a failed try).
    pub(crate) refresh_at: Instant,
    /// The issuer's refresh token, if it gave one.
    pub(crate) refresh_token: Option<Arc<str>>,
    /// Held while refreshing, so that concurrent requests of one session refresh once
    /// (issuers that rotate refresh tokens refuse the second use of one).
    pub(crate) lock: Arc<tokio::sync::Mutex<()>>,
}

/// How long before an ID token's expiry it is refreshed: a minute, or half its lifetime if
/// that is shorter.
fn refresh_lead(lifetime: Duration) -> Duration {
    (lifetime / 2).min(Duration::from_secs(60))
}

/// How long to wait before trying a refresh again after one failed.
pub(crate) const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// The table of live sessions.
pub(crate) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    idle: Duration,
    absolute: Duration,
    max: usize,
}

/// 32 random bytes as hex.
pub(crate) fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random number generator works");
    hex::encode(b)
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Compares two secrets in constant time.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    pub(crate) fn new(idle: Duration, absolute: Duration, max: usize) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            absolute,
            max: max.max(1),
        }
    }

    /// Within the idle and absolute limits, and (SSO) its ID token unexpired or renewable.
    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last_seen) < self.idle
            && now.duration_since(s.created) < self.absolute
            && s.sso
                .as_ref()
                .is_none_or(|t| now < t.expires || t.refresh_token.is_some())
    }

    /// Starts a session; returns the cookie value.
    pub(crate) fn create(&self, token: Arc<str>, user: String, groups: Vec<String>) -> String {
        self.insert(token, user, groups, None)
    }

    /// Starts an SSO session whose bearer token is an ID token expiring at `expires`,
    /// renewable with `refresh_token`; returns the cookie value.
    pub(crate) fn create_sso(
        &self,
        id_token: Arc<str>,
        user: String,
        groups: Vec<String>,
        expires: Instant,
        refresh_token: Option<Arc<str>>,
    ) -> String {
        let now = Instant::now();
        let sso = SsoState {
            expires,
            refresh_at: expires - refresh_lead(expires.saturating_duration_since(now)),
            refresh_token,
            lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        self.insert(id_token, user, groups, Some(sso))
    }

    fn insert(
        &self,
        token: Arc<str>,
        user: String,
        groups: Vec<String>,
        sso: Option<SsoState>,
    ) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max {
            map.retain(|_, s| self.live(s, now));
        }
        while map.len() >= self.max {
            let oldest = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k);
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            key(&id),
            Session {
                token,
                user,
                groups,
                csrf: random_hex(),
                created: now,
                last_seen: now,
                sso,
            },
        );
        id
    }

    /// A refresh got a new ID token: it becomes the session's bearer token until
    /// `expires`; a new refresh token (issuers may rotate them) replaces the old one.
    pub(crate) fn refreshed(
        &self,
        id: &str,
        id_token: Arc<str>,
        expires: Instant,
        refresh_token: Option<Arc<str>>,
    ) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get_mut(&key(id))
            && let Some(t) = s.sso.as_mut()
        {
            s.token = id_token;
            t.expires = expires;
            t.refresh_at = expires - refresh_lead(expires.saturating_duration_since(now));
            if refresh_token.is_some() {
                t.refresh_token = refresh_token;
            }
        }
    }

    /// A refresh failed: try again in [`REFRESH_RETRY`]; the session ends when its ID token
    /// expires unless a later try succeeds.
    pub(crate) fn refresh_failed(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = map.get_mut(&key(id)).and_then(|s| s.sso.as_mut()) {
            t.refresh_at = Instant::now() + REFRESH_RETRY;
        }
    }

    /// The live session of cookie value `id` (marking it used), if any.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let k = key(id);
        let live = map.get(&k).map(|s| self.live(s, now))?;
        if !live {
            map.remove(&k);
            return None;
        }
        let s = map.get_mut(&k)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// Whether the session still exists, without marking it used (for long-lived streams,
    /// which must not keep a session alive forever).
    pub(crate) fn alive(&self, id: &str) -> bool {
        let now = Instant::now();
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&key(id)).is_some_and(|s| self.live(s, now))
    }

    /// Ends a session.
    pub(crate) fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(id));
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub(crate) fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value for `name`; `max_age` None deletes it.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Option<Duration>) -> String {
    match max_age {
        Some(age) => format!(
            "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            age.as_secs()
        ),
        None => format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_at_the_absolute_limit() {
        let s = Sessions::new(Duration::from_millis(200), Duration::from_millis(500), 10);
        let id = s.create("t".into(), "alice".into(), vec![]);
        assert_eq!(s.get(&id).unwrap().user, "alice");
        assert!(s.get("nope").is_none());
        // Kept alive by use, until the absolute limit.
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(120));
            assert!(s.get(&id).is_some());
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(s.get(&id).is_none(), "absolute limit");
        let id = s.create("t".into(), "bob".into(), vec![]);
        std::thread::sleep(Duration::from_millis(250));
        assert!(!s.alive(&id));
        assert!(s.get(&id).is_none(), "idle limit");
    }

    #[test]
    fn a_session_ends_when_its_token_expires() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(60), 10);
        let exp = Instant::now() + Duration::from_millis(150);
        let id = s.create_sso("t".into(), "oidc:alice".into(), vec![], exp, None);
        assert!(s.get(&id).is_some());
        std::thread::sleep(Duration::from_millis(200));
        assert!(!s.alive(&id));
        assert!(
            s.get(&id).is_none(),
            "ended at the token's expiry, though used"
        );
    }

    #[test]
    fn a_refresh_token_keeps_the_session_until_it_fails() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(60), 10);
        let now = Instant::now();
        let exp = now + Duration::from_secs(10);
        let id = s.create_sso("t1".into(), "oidc:a".into(), vec![], exp, Some("r1".into()));
        let t = s.get(&id).unwrap().sso.unwrap();
        // Half the (about 10 s) lifetime ahead; the session measured it a moment later.
        let lead = exp.duration_since(t.refresh_at);
        assert!(
            lead <= Duration::from_secs(5) && lead > Duration::from_millis(4900),
            "half the lifetime ahead: {lead:?}"
        );
        // Refreshed: a new bearer token and expiry; a missing new refresh token keeps the old.
        let exp2 = now + Duration::from_secs(3600);
        s.refreshed(&id, "t2".into(), exp2, None);
        let got = s.get(&id).unwrap();
        let t = got.sso.unwrap();
        assert_eq!(&*got.token, "t2");
        assert_eq!(t.refresh_token.as_deref(), Some("r1"));
        assert_eq!(
            t.refresh_at,
            exp2 - Duration::from_secs(60),
            "a minute ahead"
        );
        s.refreshed(&id, "t3".into(), exp2, Some("r2".into()));
        assert_eq!(
            s.get(&id).unwrap().sso.unwrap().refresh_token.as_deref(),
            Some("r2")
        );
        // An expired ID token with a refresh token: still there, to be refreshed.
        let id = s.create_sso(
            "t".into(),
            "oidc:b".into(),
            vec![],
            Instant::now() + Duration::from_millis(50),
            Some("r".into()),
        );
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.get(&id).is_some(), "kept for a refresh");
        s.refresh_failed(&id);
        let t = s.get(&id).unwrap().sso.unwrap();
        assert!(
            t.refresh_at > Instant::now() + REFRESH_RETRY / 2,
            "tried again later"
        );
    }

    #[test]
    fn sign_out_removes_and_the_table_is_bounded() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(60), 2);
        let a = s.create("t".into(), "a".into(), vec![]);
        let b = s.create("t".into(), "b".into(), vec![]);
        let c = s.create("t".into(), "c".into(), vec![]);
        assert!(s.get(&a).is_none(), "oldest dropped");
        assert!(s.get(&b).is_some() && s.get(&c).is_some());
        s.remove(&b);
        assert!(s.get(&b).is_none());
        assert_ne!(s.get(&c).unwrap().csrf, "");
    }

    #[test]
    fn cookies_and_secrets() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; __Host-cattery-session=abc".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        let c = set_cookie(COOKIE, "x", Some(Duration::from_secs(60)));
        for part in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(part), "{c}");
        }
    }
}
