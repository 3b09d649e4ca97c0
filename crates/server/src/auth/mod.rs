//! Bearer-token authentication.
//!
//! Tokens are 256 random bits, shown once; only their SHA-256 is stored. Presented tokens
//! are hashed and compared against every known hash in constant time.

pub mod oidc;

use std::sync::RwLock;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{StateStore, StoreError, TokenRecord};

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User name, as forwarded in `Impersonate-User`.
    pub user: String,
    /// Groups, as forwarded in `Impersonate-Group`.
    pub groups: Vec<String>,
}

/// User name of the token created on first start.
pub const ADMIN_USER: &str = "cattery:admin";
/// Group of that user; installation manifests bind it to `cluster-admin` in each cluster.
pub const ADMIN_GROUP: &str = "cattery:admins";

/// A new random token (prefix `cat_`, so leaked tokens are easy to scan for).
pub fn generate_token() -> String {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    format!(
        "cat_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    )
}

/// A short random hex id.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    hex::encode(buf)
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Authenticates bearer tokens against the hashes in the state store.
pub struct TokenAuthenticator {
    tokens: RwLock<Vec<([u8; 32], Identity)>>,
}

impl TokenAuthenticator {
    /// Loads the token hashes from the store.
    pub fn load(store: &dyn StateStore) -> Result<Self, StoreError> {
        let tokens = store
            .tokens()?
            .into_iter()
            .filter_map(|t| {
                let hash: [u8; 32] = hex::decode(&t.sha256).ok()?.try_into().ok()?;
                Some((
                    hash,
                    Identity {
                        user: t.user,
                        groups: t.groups,
                    },
                ))
            })
            .collect();
        Ok(TokenAuthenticator {
            tokens: RwLock::new(tokens),
        })
    }

    /// Whether any token exists (first start creates the admin token when none does).
    pub fn is_empty(&self) -> bool {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Creates a token for `identity`, stores its hash and returns the token (shown once).
    pub fn create(&self, store: &dyn StateStore, identity: Identity) -> Result<String, StoreError> {
        let token = generate_token();
        let hash = sha256(&token);
        store.insert_token(&TokenRecord {
            id: random_id(8),
            user: identity.user.clone(),
            groups: identity.groups.clone(),
            sha256: hex::encode(hash),
            created_at: cattery_api::now_rfc3339(),
        })?;
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((hash, identity));
        Ok(token)
    }

    /// The identity of `token`, if it is valid.
    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        let presented = sha256(token);
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for (hash, identity) in tokens.iter() {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(identity.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn tokens_roundtrip_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let auth = TokenAuthenticator::load(&store).unwrap();
        assert!(auth.is_empty());
        let id = Identity {
            user: "u".into(),
            groups: vec!["g".into()],
        };
        let token = auth.create(&store, id.clone()).unwrap();
        assert_eq!(auth.authenticate(&token), Some(id.clone()));
        assert_eq!(auth.authenticate("cat_wrong"), None);
        let reloaded = TokenAuthenticator::load(&store).unwrap();
        assert_eq!(reloaded.authenticate(&token), Some(id));
        let stored = store.tokens().unwrap();
        assert!(!stored[0].sha256.contains(&token) && stored[0].sha256.len() == 64);
    }
}
