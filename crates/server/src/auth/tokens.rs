//! Opaque bearer tokens issued by the management plane.
//!
//! A token is `cat_` + 256 random bits, shown once; only its SHA-256 is stored, in the
//! `Token` object of the resource store (field [`HASH_FIELD`], which no read returns).
//! The hashes are kept in memory, keyed by hash: looking a token up leaks nothing about
//! the secret (an attacker would need SHA-256 preimages), and the found hash is compared
//! again in constant time. The map follows the store ([`crate::follow`]): a token created,
//! revoked or deleted is honoured or refused from the next request on, whichever handler
//! wrote it. Last-used times are collected in memory and written to the store in batches
//! (at most once a minute per token), so authentication never waits on a database write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cattery_store::{Filter, Obj, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{Identity, generate_token, random_id};
use crate::api::kinds::HubKind;
use crate::api::resources::HubStore;
use crate::follow::Follower;

/// How often a token's last-used time is refreshed at most.
const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);

/// The stored Token's field holding the hex SHA-256 of its secret. Never served: every
/// read goes through [`crate::api::tokens::view`], which removes it.
pub(crate) const HASH_FIELD: &str = "secretHash";

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

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_time(s: Option<&str>) -> Option<OffsetDateTime> {
    s.and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
}

fn str_at<'a>(o: &'a Value, p: &str) -> Option<&'a str> {
    o.pointer(p).and_then(Value::as_str)
}

/// The map entry of a stored Token object (None when its hash does not decode).
fn entry(t: &Value) -> Option<([u8; 32], Entry)> {
    let hash: [u8; 32] = hex::decode(t.get(HASH_FIELD)?.as_str()?)
        .ok()?
        .try_into()
        .ok()?;
    let groups = t
        .pointer("/spec/groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Some((
        hash,
        Entry {
            id: str_at(t, "/metadata/name")?.to_string(),
            identity: Identity {
                user: str_at(t, "/spec/user")?.to_string(),
                groups,
            },
            expires_at: parse_time(str_at(t, "/status/expirationTimestamp")),
            revoked_at: str_at(t, "/status/revocationTimestamp").map(String::from),
        },
    ))
}

fn hashes(store: &HubStore) -> HashMap<[u8; 32], Entry> {
    let (tokens, _) = store.snapshot(&Filter::all(HubKind::Token));
    tokens.iter().filter_map(|t| entry(t)).collect()
}

/// The stored form of a token that existed before tokens moved into the resource store
/// (the migration keeps its id, times and hash).
pub(crate) fn token_object(
    id: &str,
    identity: &Identity,
    description: Option<&str>,
    sha256_hex: &str,
    expires_at: Option<&str>,
) -> Value {
    let mut spec = json!({"user": identity.user, "groups": identity.groups});
    if let Some(d) = description {
        spec["description"] = json!(d);
    }
    let mut status = json!({});
    if let Some(e) = expires_at {
        status["expirationTimestamp"] = json!(e);
    }
    json!({"apiVersion": cattery_api::API_VERSION, "kind": "Token",
        "metadata": {"name": id}, "spec": spec, "status": status, HASH_FIELD: sha256_hex})
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

/// Authenticates opaque bearer tokens against the hashes in the resource store.
pub struct TokenAuthenticator {
    by_hash: RwLock<HashMap<[u8; 32], Entry>>,
    follower: Follower,
    /// id → (RFC 3339 time, when it was noted), not yet written to the store.
    used: Mutex<HashMap<String, (String, Instant)>>,
    /// id → when it was last noted (so a busy token is noted once a minute).
    noted: Mutex<HashMap<String, Instant>>,
}

impl TokenAuthenticator {
    /// Loads the token hashes from the store and follows its changes.
    pub(crate) fn new(store: Arc<HubStore>) -> Self {
        let follower = Follower::new(store);
        TokenAuthenticator {
            by_hash: RwLock::new(hashes(follower.store())),
            follower,
            used: Mutex::default(),
            noted: Mutex::default(),
        }
    }

    fn refresh(&self) {
        self.follower.refresh(
            |k| k == HubKind::Token,
            |store| {
                *self.by_hash.write().unwrap_or_else(|p| p.into_inner()) = hashes(store);
            },
        );
    }

    /// Rebuilds the map eagerly after each committed token change until `stop`.
    pub(crate) async fn follow(&self, stop: CancellationToken) {
        self.follower.run(stop, || self.refresh()).await;
    }

    /// Whether any token exists (first start creates the admin token when none does).
    pub(crate) fn is_empty(&self) -> bool {
        self.refresh();
        self.by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Creates a token, stores its hash and returns the stored object and the token
    /// (shown once).
    pub(crate) fn create(&self, new: NewToken) -> Result<(Obj, String), StoreError> {
        let token = generate_token();
        let now = OffsetDateTime::now_utc();
        let expires = new.ttl.map(|ttl| cattery_api::rfc3339(now + ttl));
        let obj = token_object(
            &random_id(8),
            &new.identity,
            new.description.as_deref(),
            &hex::encode(sha256(&token)),
            expires.as_deref(),
        );
        let stored = self.follower.store().create(HubKind::Token, None, obj)?;
        Ok((stored, token))
    }

    /// Revokes token `id`; it is refused from the next request on. The object stays (with
    /// its revocation time), so `token list` shows when it was revoked.
    pub(crate) fn revoke(&self, id: &str) -> Result<Obj, StoreError> {
        let at = cattery_api::now_rfc3339();
        self.follower
            .store()
            .modify(HubKind::Token, None, id, false, |old: &Obj| {
                let mut t = (**old).clone();
                if !t["status"].is_object() {
                    t["status"] = json!({});
                }
                if t["status"]["revocationTimestamp"].is_null() {
                    t["status"]["revocationTimestamp"] = json!(at);
                }
                Ok::<_, StoreError>(t)
            })
    }

    /// The last-used time of token `id` not yet written to the store, if any.
    pub(crate) fn pending_last_use(&self, id: &str) -> Option<String> {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(at, _)| at.clone())
    }

    /// The identity and token id of `token`, or why it is refused.
    pub fn authenticate(&self, token: &str) -> Result<(Identity, String), TokenError> {
        self.refresh();
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
    pub(crate) fn flush_last_used(&self) -> Result<(), StoreError> {
        let pending: Vec<(String, String)> = {
            let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
            used.iter()
                .map(|(id, (at, _))| (id.clone(), at.clone()))
                .collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        self.follower.store().transaction(|tx| {
            for (id, at) in &pending {
                if tx.get(HubKind::Token, None, id).is_none() {
                    continue;
                }
                tx.modify(HubKind::Token, None, id, false, |old: &Obj| {
                    let mut t = (**old).clone();
                    if !t["status"].is_object() {
                        t["status"] = json!({});
                    }
                    t["status"]["lastUsedTimestamp"] = json!(at);
                    Ok::<_, StoreError>(t)
                })?;
            }
            Ok::<_, StoreError>(())
        })?;
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

    fn sqlite(dir: &std::path::Path) -> Arc<HubStore> {
        Arc::new(crate::api::resources::open_store(&dir.join("s.db")).unwrap())
    }

    #[test]
    fn tokens_roundtrip_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path());
        let auth = TokenAuthenticator::new(store.clone());
        assert!(auth.is_empty());
        let (obj, token) = auth.create(new(None)).unwrap();
        let id = obj["metadata"]["name"].as_str().unwrap().to_string();
        assert_eq!(auth.authenticate(&token), Ok((who(), id.clone())));
        assert_eq!(auth.authenticate("cat_wrong"), Err(TokenError::Unknown));
        drop((auth, store));
        let store = sqlite(dir.path());
        let reloaded = TokenAuthenticator::new(store.clone());
        assert_eq!(reloaded.authenticate(&token).unwrap().0, who());
        let stored = store.get(HubKind::Token, None, &id).unwrap();
        assert!(!stored.to_string().contains(&token));
        assert_eq!(stored[HASH_FIELD].as_str().unwrap().len(), 64);
    }

    #[test]
    fn revoked_and_deleted_tokens_are_refused_at_once_and_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path());
        let auth = TokenAuthenticator::new(store.clone());
        let (obj, token) = auth.create(new(None)).unwrap();
        let id = obj["metadata"]["name"].as_str().unwrap().to_string();
        auth.revoke(&id).unwrap();
        assert!(matches!(
            auth.authenticate(&token),
            Err(TokenError::Revoked { .. })
        ));
        drop((auth, store));
        let store = sqlite(dir.path());
        let reloaded = TokenAuthenticator::new(store.clone());
        assert!(matches!(
            reloaded.authenticate(&token),
            Err(TokenError::Revoked { .. })
        ));
        // A write straight to the store (any handler) is followed too.
        let (obj, token) = reloaded.create(new(None)).unwrap();
        assert!(reloaded.authenticate(&token).is_ok());
        let id = obj["metadata"]["name"].as_str().unwrap();
        store.delete(HubKind::Token, None, id).unwrap();
        assert_eq!(reloaded.authenticate(&token), Err(TokenError::Unknown));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let auth = TokenAuthenticator::new(Arc::new(HubStore::in_memory()));
        let (_, token) = auth.create(new(Some(Duration::ZERO))).unwrap();
        assert!(matches!(
            auth.authenticate(&token),
            Err(TokenError::Expired { .. })
        ));
        let (_, token) = auth.create(new(Some(Duration::from_secs(3600)))).unwrap();
        assert!(auth.authenticate(&token).is_ok());
    }

    #[test]
    fn last_used_is_recorded_and_flushed() {
        let store = Arc::new(HubStore::in_memory());
        let auth = TokenAuthenticator::new(store.clone());
        let (obj, token) = auth.create(new(None)).unwrap();
        let id = obj["metadata"]["name"].as_str().unwrap();
        assert_eq!(auth.pending_last_use(id), None);
        auth.authenticate(&token).unwrap();
        assert!(auth.pending_last_use(id).is_some());
        auth.flush_last_used().unwrap();
        assert_eq!(auth.pending_last_use(id), None);
        let stored = store.get(HubKind::Token, None, id).unwrap();
        assert!(
            stored["status"]["lastUsedTimestamp"].is_string(),
            "{stored}"
        );
        // Still valid after its own object changed.
        assert!(auth.authenticate(&token).is_ok());
    }
}
