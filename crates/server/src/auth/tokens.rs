//! Opaque bearer tokens issued by the management plane.
//!
//! A token is `cat_` + 256 random bits, shown once; only its SHA-256 is stored. The hashes
//! are kept in memory, keyed by hash: looking a token up leaks nothing about the secret
//! (an attacker would need SHA-256 preimages), and the found hash is compared again in
//! constant time. Revocation and expiry take effect on the next request, because the
//! in-memory entry is updated in the same call that writes the store. Last-used times are
//! collected in memory and written to the store in batches (at most once a minute per
//! token), so authentication never waits on a database write.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::{Identity, generate_token, random_id};
use crate::store::{StateStore, StoreError, TokenRecord};

/// How often a token's last-used time is refreshed at most.
const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);

/// Why a token was refused (the message goes into the 401 and the audit trail; it never
/// contains the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token with this hash exists.
    #[error("the bearer token is not valid")]
    Unknown,
    /// The token expired.
    #[error("token {id} expired at {at}")]
    Expired {
        /// Public id.
        id: String,
        /// RFC 3339 expiry.
        at: String,
    },
    /// The token was revoked.
    #[error("token {id} was revoked at {at}")]
    Revoked {
        /// Public id.
        id: String,
        /// RFC 3339 revocation time.
        at: String,
    },
}

struct Entry {
    id: String,
    identity: Identity,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<String>,
}

/// Authenticates opaque bearer tokens against the hashes in the state store.
pub struct TokenAuthenticator {
    by_hash: RwLock<HashMap<[u8; 32], Entry>>,
    /// id → (RFC 3339 time, when it was noted), not yet written to the store.
    used: Mutex<HashMap<String, (String, Instant)>>,
    /// id → when it was last noted (so a busy token is noted once a minute).
    noted: Mutex<HashMap<String, Instant>>,
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_time(s: &Option<String>) -> Option<OffsetDateTime> {
    s.as_deref()
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
}

fn entry(t: &TokenRecord) -> Option<([u8; 32], Entry)> {
    let hash: [u8; 32] = hex::decode(&t.sha256).ok()?.try_into().ok()?;
    Some((
        hash,
        Entry {
            id: t.id.clone(),
            identity: Identity {
                user: t.user.clone(),
                groups: t.groups.clone(),
            },
            expires_at: parse_time(&t.expires_at),
            revoked_at: t.revoked_at.clone(),
        },
    ))
}

/// What to create a token for.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// Who it authenticates as.
    pub identity: Identity,
    /// What it is for.
    pub description: Option<String>,
    /// Lifetime; `None` = never expires.
    pub ttl: Option<Duration>,
}

impl TokenAuthenticator {
    /// Loads the token hashes from the store.
    pub fn load(store: &dyn StateStore) -> Result<Self, StoreError> {
        let by_hash = store.tokens()?.iter().filter_map(entry).collect();
        Ok(TokenAuthenticator {
            by_hash: RwLock::new(by_hash),
            used: Mutex::default(),
            noted: Mutex::default(),
        })
    }

    /// Whether any token exists (first start creates the admin token when none does).
    pub fn is_empty(&self) -> bool {
        self.by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Creates a token, stores its hash and returns the record and the token (shown once).
    pub fn create(
        &self,
        store: &dyn StateStore,
        new: NewToken,
    ) -> Result<(TokenRecord, String), StoreError> {
        let token = generate_token();
        let hash = sha256(&token);
        let now = OffsetDateTime::now_utc();
        let record = TokenRecord {
            id: random_id(8),
            user: new.identity.user,
            groups: new.identity.groups,
            sha256: hex::encode(hash),
            created_at: cattery_api::rfc3339(now),
            description: new.description,
            expires_at: new.ttl.map(|ttl| cattery_api::rfc3339(now + ttl)),
            revoked_at: None,
            last_used_at: None,
        };
        store.insert_token(&record)?;
        if let Some((hash, e)) = entry(&record) {
            self.by_hash
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(hash, e);
        }
        Ok((record, token))
    }

    /// Revokes token `id`; it is refused from the next request on.
    pub fn revoke(&self, store: &dyn StateStore, id: &str) -> Result<TokenRecord, StoreError> {
        let at = cattery_api::now_rfc3339();
        let rec = store.revoke_token(id, &at)?;
        let mut map = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
        for e in map.values_mut().filter(|e| e.id == id) {
            e.revoked_at = rec.revoked_at.clone();
        }
        Ok(rec)
    }

    /// Every token (without secrets), with last-used times not yet flushed merged in.
    pub fn list(&self, store: &dyn StateStore) -> Result<Vec<TokenRecord>, StoreError> {
        let mut all = store.tokens()?;
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        for t in &mut all {
            if let Some((at, _)) = used.get(&t.id) {
                t.last_used_at = Some(at.clone());
            }
        }
        Ok(all)
    }

    /// The identity and token id of `token`, or why it is refused.
    pub fn authenticate(&self, token: &str) -> Result<(Identity, String), TokenError> {
        let presented = sha256(token);
        let map = self.by_hash.read().unwrap_or_else(|p| p.into_inner());
        let (hash, e) = map.get_key_value(&presented).ok_or(TokenError::Unknown)?;
        if !bool::from(hash.ct_eq(&presented)) {
            return Err(TokenError::Unknown);
        }
        if let Some(at) = &e.revoked_at {
            return Err(TokenError::Revoked {
                id: e.id.clone(),
                at: at.clone(),
            });
        }
        if let Some(exp) = e.expires_at
            && exp <= OffsetDateTime::now_utc()
        {
            return Err(TokenError::Expired {
                id: e.id.clone(),
                at: cattery_api::rfc3339(exp),
            });
        }
        let out = (e.identity.clone(), e.id.clone());
        drop(map);
        self.note_used(&out.1);
        Ok(out)
    }

    fn note_used(&self, id: &str) {
        let now = Instant::now();
        {
            let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
            match noted.get(id) {
                Some(t) if now.duration_since(*t) < LAST_USED_GRANULARITY => return,
                _ => {
                    noted.insert(id.to_string(), now);
                }
            }
        }
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), (cattery_api::now_rfc3339(), now));
    }

    /// Writes pending last-used times to the store (called periodically and at shutdown).
    pub fn flush_last_used(&self, store: &dyn StateStore) -> Result<(), StoreError> {
        let pending: Vec<(String, String)> = {
            let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
            used.iter()
                .map(|(id, (at, _))| (id.clone(), at.clone()))
                .collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        store.touch_tokens(&pending)?;
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        for (id, at) in pending {
            if used.get(&id).is_some_and(|(a, _)| *a == at) {
                used.remove(&id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn who() -> Identity {
        Identity {
            user: "u".into(),
            groups: vec!["g".into()],
        }
    }

    fn new(ttl: Option<Duration>) -> NewToken {
        NewToken {
            identity: who(),
            description: Some("test".into()),
            ttl,
        }
    }

    #[test]
    fn tokens_roundtrip_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let auth = TokenAuthenticator::load(&store).unwrap();
        assert!(auth.is_empty());
        let (rec, token) = auth.create(&store, new(None)).unwrap();
        assert_eq!(auth.authenticate(&token), Ok((who(), rec.id.clone())));
        assert_eq!(auth.authenticate("cat_wrong"), Err(TokenError::Unknown));
        let reloaded = TokenAuthenticator::load(&store).unwrap();
        assert_eq!(reloaded.authenticate(&token).unwrap().0, who());
        let stored = store.tokens().unwrap();
        assert!(!stored[0].sha256.contains(&token) && stored[0].sha256.len() == 64);
    }

    #[test]
    fn revoked_tokens_are_refused_at_once_and_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let auth = TokenAuthenticator::load(&store).unwrap();
        let (rec, token) = auth.create(&store, new(None)).unwrap();
        auth.revoke(&store, &rec.id).unwrap();
        assert!(matches!(
            auth.authenticate(&token),
            Err(TokenError::Revoked { .. })
        ));
        let reloaded = TokenAuthenticator::load(&store).unwrap();
        assert!(matches!(
            reloaded.authenticate(&token),
            Err(TokenError::Revoked { .. })
        ));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let auth = TokenAuthenticator::load(&store).unwrap();
        let (_, token) = auth.create(&store, new(Some(Duration::ZERO))).unwrap();
        assert!(matches!(
            auth.authenticate(&token),
            Err(TokenError::Expired { .. })
        ));
        let (_, token) = auth
            .create(&store, new(Some(Duration::from_secs(3600))))
            .unwrap();
        assert!(auth.authenticate(&token).is_ok());
    }

    #[test]
    fn last_used_is_recorded_and_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let auth = TokenAuthenticator::load(&store).unwrap();
        let (rec, token) = auth.create(&store, new(None)).unwrap();
        assert_eq!(auth.list(&store).unwrap()[0].last_used_at, None);
        auth.authenticate(&token).unwrap();
        assert!(auth.list(&store).unwrap()[0].last_used_at.is_some());
        auth.flush_last_used(&store).unwrap();
        let stored = store.tokens().unwrap();
        assert_eq!(stored[0].id, rec.id);
        assert!(stored[0].last_used_at.is_some());
    }
}
