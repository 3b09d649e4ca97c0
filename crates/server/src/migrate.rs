//! Moving tokens and RBAC objects from the tables older versions kept them in (`tokens`,
//! `rbac_objects` in `state.db`) into the resource store, once, at start.
//!
//! Every row becomes an object of the store in one store transaction (kept as it was:
//! a token's id, user, groups, hash, times and revocation; an RBAC object's body with its
//! uid and creation time); an object that already exists is left alone, so a crash after
//! the transaction and before the rows are deleted moves nothing twice. Only then are the
//! rows deleted. Tokens stay hashed: the old table never held a secret.

use cattery_store::StoreError;
use serde_json::{Value, json};

use crate::api::kinds::HubKind;
use crate::api::resources::HubStore;
use crate::auth::Identity;
use crate::auth::tokens::token_object;
use crate::store::{RbacRecord, SqliteStore, TokenRecord};

/// How many rows moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Tokens.
    pub tokens: usize,
    /// RBAC objects.
    pub rbac: usize,
}

fn token(t: &TokenRecord) -> Value {
    let mut o = token_object(
        &t.id,
        &Identity {
            user: t.user.clone(),
            groups: t.groups.clone(),
        },
        t.description.as_deref(),
        &t.sha256,
        t.expires_at.as_deref(),
    );
    if let Some(at) = &t.revoked_at {
        o["status"]["revocationTimestamp"] = json!(at);
    }
    if let Some(at) = &t.last_used_at {
        o["status"]["lastUsedTimestamp"] = json!(at);
    }
    o
}

fn rbac_kind(r: &RbacRecord) -> Option<HubKind> {
    match r.kind.as_str() {
        "ClusterRole" => Some(HubKind::ClusterRole),
        "ClusterRoleBinding" => Some(HubKind::ClusterRoleBinding),
        "Role" => Some(HubKind::Role),
        "RoleBinding" => Some(HubKind::RoleBinding),
        _ => None,
    }
}

/// Moves every legacy row of `legacy` into `resources`, then deletes the rows.
pub(crate) fn legacy_rows(legacy: &SqliteStore, resources: &HubStore) -> anyhow::Result<Moved> {
    let (tokens, rbac) = legacy.legacy_rows()?;
    if tokens.is_empty() && rbac.is_empty() {
        return Ok(Moved::default());
    }
    let moved = resources.transaction(|tx| {
        let mut moved = Moved::default();
        for t in &tokens {
            if tx.get(HubKind::Token, None, &t.id).is_some() {
                continue;
            }
            let created = t.created_at.clone();
            tx.create_with(HubKind::Token, None, token(t), |o| {
                o["metadata"]["creationTimestamp"] = json!(created);
            })?;
            moved.tokens += 1;
        }
        for r in &rbac {
            let Some(kind) = rbac_kind(r) else {
                tracing::error!(
                    kind = r.kind,
                    name = r.name,
                    "unknown stored RBAC kind; not moved"
                );
                continue;
            };
            let ns = (!r.namespace.is_empty()).then_some(r.namespace.as_str());
            if tx.get(kind, ns, &r.name).is_some() {
                continue;
            }
            let body: Value = match serde_json::from_str(&r.body) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    tracing::error!(
                        kind = r.kind,
                        name = r.name,
                        "stored RBAC object does not decode; not moved"
                    );
                    continue;
                }
            };
            let (uid, created) = (
                body.pointer("/metadata/uid").cloned(),
                body.pointer("/metadata/creationTimestamp").cloned(),
            );
            let mut obj = body;
            obj["metadata"]["name"] = json!(r.name);
            tx.create_with(kind, ns, obj, |o| {
                if let Some(uid) = uid {
                    o["metadata"]["uid"] = uid;
                }
                if let Some(c) = created {
                    o["metadata"]["creationTimestamp"] = c;
                }
            })?;
            moved.rbac += 1;
        }
        Ok::<_, StoreError>(moved)
    })?;
    legacy.forget_legacy_rows()?;
    tracing::info!(
        tokens = moved.tokens,
        rbac = moved.rbac,
        "tokens and RBAC objects moved into the resource store"
    );
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_rows_move_once_keeping_hashes_times_and_uids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let legacy = SqliteStore::open(&path).unwrap();
        legacy
            .insert_legacy_for_test(
                "INSERT INTO tokens (id, user, groups, sha256, created_at, revoked_at) VALUES \
                 ('t1', 'alice', '[\"g\"]', 'aa', '2026-01-01T00:00:00Z', NULL), \
                 ('t2', 'bob', '[]', 'bb', '2026-01-02T00:00:00Z', '2026-02-01T00:00:00Z'); \
                 INSERT INTO rbac_objects (kind, namespace, name, body) VALUES \
                 ('Role', 'shop', 'r', '{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"Role\",\"metadata\":{\"name\":\"r\",\"namespace\":\"shop\",\"uid\":\"u-1\",\"creationTimestamp\":\"2026-01-03T00:00:00Z\"},\"rules\":[]}')",
            );
        let resources = crate::api::resources::open_store(&path).unwrap();
        let moved = legacy_rows(&legacy, &resources).unwrap();
        assert_eq!(moved, Moved { tokens: 2, rbac: 1 });
        let t1 = resources.get(HubKind::Token, None, "t1").unwrap();
        assert_eq!(t1["secretHash"], "aa");
        assert_eq!(t1["spec"]["user"], "alice");
        assert_eq!(t1["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
        let t2 = resources.get(HubKind::Token, None, "t2").unwrap();
        assert_eq!(t2["status"]["revocationTimestamp"], "2026-02-01T00:00:00Z");
        let r = resources.get(HubKind::Role, Some("shop"), "r").unwrap();
        assert_eq!(r["metadata"]["uid"], "u-1");
        assert_eq!(r["metadata"]["creationTimestamp"], "2026-01-03T00:00:00Z");
        // Once: the rows are gone, a second start moves nothing.
        assert_eq!(legacy_rows(&legacy, &resources).unwrap(), Moved::default());
        assert_eq!(resources.current_rv(), 3);
    }
}
