//! SQLite implementation of [`StateStore`].

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{CertRecord, ClusterRecord, StateStore, StoreError, TokenRecord};

/// The embedded default state store: one SQLite file in the data directory.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS clusters (
    name TEXT PRIMARY KEY,
    uid TEXT NOT NULL,
    labels TEXT NOT NULL,
    created_at TEXT NOT NULL,
    cert_fingerprint TEXT NOT NULL,
    cert_not_after TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    fingerprint TEXT PRIMARY KEY,
    cluster TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    revoked_reason TEXT
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    groups TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
"#;

impl SqliteStore {
    /// Opens (creating if needed) `path`, in WAL mode with full fsync: state writes are rare
    /// and must survive power loss.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions
        // roll back), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn row_to_cluster(row: &rusqlite::Row<'_>) -> rusqlite::Result<ClusterRecord> {
    let labels: String = row.get(2)?;
    Ok(ClusterRecord {
        name: row.get(0)?,
        uid: row.get(1)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        created_at: row.get(3)?,
        cert_fingerprint: row.get(4)?,
        cert_not_after: row.get(5)?,
    })
}

impl StateStore for SqliteStore {
    fn create_cluster(&self, c: &ClusterRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let exists: Option<String> = tx
            .query_row(
                "SELECT name FROM clusters WHERE name = ?1",
                [&c.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if exists.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "ManagedCluster",
                name: c.name.clone(),
            });
        }
        let labels =
            serde_json::to_string(&c.labels).map_err(|e| StoreError::Backend(e.to_string()))?;
        tx.execute(
            "INSERT INTO clusters (name, uid, labels, created_at, cert_fingerprint, cert_not_after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![c.name, c.uid, labels, c.created_at, c.cert_fingerprint, c.cert_not_after],
        )
        .map_err(backend)?;
        tx.execute(
            "INSERT INTO certificates (fingerprint, cluster, issued_at, revoked_reason) VALUES (?1, ?2, ?3, NULL)",
            params![c.cert_fingerprint, c.name, c.created_at],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    fn delete_cluster(&self, name: &str, reason: &str) -> Result<ClusterRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let rec = tx
            .query_row(
                "SELECT name, uid, labels, created_at, cert_fingerprint, cert_not_after FROM clusters WHERE name = ?1",
                [name],
                row_to_cluster,
            )
            .optional()
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound {
                kind: "ManagedCluster",
                name: name.to_string(),
            })?;
        tx.execute("DELETE FROM clusters WHERE name = ?1", [name])
            .map_err(backend)?;
        tx.execute(
            "UPDATE certificates SET revoked_reason = ?2 WHERE cluster = ?1 AND revoked_reason IS NULL",
            params![name, reason],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(rec)
    }

    fn list_clusters(&self) -> Result<Vec<ClusterRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, uid, labels, created_at, cert_fingerprint, cert_not_after FROM clusters ORDER BY name")
            .map_err(backend)?;
        let rows = stmt.query_map([], row_to_cluster).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn certificates(&self) -> Result<Vec<CertRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT fingerprint, cluster, revoked_reason FROM certificates")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CertRecord {
                    fingerprint: r.get(0)?,
                    cluster: r.get(1)?,
                    revoked: r.get(2)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        let groups =
            serde_json::to_string(&t.groups).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.conn()
            .execute(
                "INSERT INTO tokens (id, user, groups, sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.id, t.user, groups, t.sha256, t.created_at],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, user, groups, sha256, created_at FROM tokens")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                let groups: String = r.get(2)?;
                Ok(TokenRecord {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    groups: serde_json::from_str(&groups).unwrap_or_default(),
                    sha256: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, fp: &str) -> ClusterRecord {
        ClusterRecord {
            name: name.into(),
            uid: format!("uid-{name}"),
            labels: [("env".to_string(), "prod".to_string())].into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            cert_fingerprint: fp.into(),
            cert_not_after: "2027-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn cluster_lifecycle_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.create_cluster(&rec("a", "f1")).unwrap();
            assert!(matches!(
                s.create_cluster(&rec("a", "f2")),
                Err(StoreError::AlreadyExists { .. })
            ));
            s.create_cluster(&rec("b", "f3")).unwrap();
            s.delete_cluster("a", "cluster removed").unwrap();
            assert!(matches!(
                s.delete_cluster("a", "x"),
                Err(StoreError::NotFound { .. })
            ));
            s.create_cluster(&rec("a", "f4")).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let names: Vec<_> = s
            .list_clusters()
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.cert_fingerprint))
            .collect();
        assert_eq!(
            names,
            vec![("a".into(), "f4".into()), ("b".into(), "f3".into())]
        );
        let mut certs = s.certificates().unwrap();
        certs.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        assert_eq!(certs[0].revoked.as_deref(), Some("cluster removed"));
        assert_eq!(certs[1].revoked, None);
        assert_eq!(certs[2].revoked, None);
        assert_eq!(s.list_clusters().unwrap()[0].labels["env"], "prod");
    }
}
