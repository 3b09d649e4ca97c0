//! SQLite implementation of [`StateStore`].

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{CertRecord, ClusterRecord, RbacRecord, StateStore, StoreError, TokenRecord};

/// The embedded default state store: one SQLite file in the data directory.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

/// Creates `path` empty with mode 0600 if it does not exist (an empty file is a valid new
/// SQLite database), and sets 0600 on it and its `-wal`/`-shm` files if they exist.
fn make_private_db(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(cattery_files::PRIVATE_FILE_MODE)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        cattery_files::make_private(Path::new(&p))?;
    }
    Ok(())
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

/// Schema changes after the first release, applied in order; `PRAGMA user_version` records
/// how many have run. Never edit an entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: token lifecycle (issue 4) and RBAC objects.
    r#"
ALTER TABLE tokens ADD COLUMN description TEXT;
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN revoked_at TEXT;
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
CREATE TABLE rbac_objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
"#,
];

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let done: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", (i + 1) as i64))
            .map_err(|e| StoreError::Backend(format!("schema migration {}: {e}", i + 1)))?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

const TOKEN_COLUMNS: &str =
    "id, user, groups, sha256, created_at, description, expires_at, revoked_at, last_used_at";

fn row_to_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let groups: String = r.get(2)?;
    Ok(TokenRecord {
        id: r.get(0)?,
        user: r.get(1)?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        sha256: r.get(3)?,
        created_at: r.get(4)?,
        description: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
        last_used_at: r.get(8)?,
    })
}

fn row_to_rbac(r: &rusqlite::Row<'_>) -> rusqlite::Result<RbacRecord> {
    Ok(RbacRecord {
        kind: r.get(0)?,
        namespace: r.get(1)?,
        name: r.get(2)?,
        body: r.get(3)?,
    })
}

impl SqliteStore {
    /// The rows of the tables tokens and RBAC objects were kept in before they moved into
    /// the resource store, read once at start by [`crate::migrate`].
    pub(crate) fn legacy_rows(&self) -> Result<(Vec<TokenRecord>, Vec<RbacRecord>), StoreError> {
        let conn = self.conn();
        let tokens = conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
            ))
            .and_then(|mut st| st.query_map([], row_to_token)?.collect())
            .map_err(backend)?;
        let rbac = conn
            .prepare("SELECT kind, namespace, name, body FROM rbac_objects ORDER BY kind, namespace, name")
            .and_then(|mut st| st.query_map([], row_to_rbac)?.collect())
            .map_err(backend)?;
        Ok((tokens, rbac))
    }

    /// Deletes the legacy rows once they are in the resource store, so they move once.
    pub(crate) fn forget_legacy_rows(&self) -> Result<(), StoreError> {
        self.conn()
            .execute_batch("BEGIN IMMEDIATE; DELETE FROM tokens; DELETE FROM rbac_objects; COMMIT;")
            .map_err(backend)
    }

    /// Runs `sql` (tests that need rows in the legacy tables).
    #[cfg(test)]
    pub(crate) fn insert_legacy_for_test(&self, sql: &str) {
        self.conn().execute_batch(sql).expect("legacy rows");
    }

    /// Opens (creating if needed) `path`, in WAL mode with full fsync: state writes are rare
    /// and must survive power loss.
    ///
    /// The database holds token hashes and cluster records, so it is owner-only (0600)
    /// whatever the umask: the file is created with that mode before SQLite opens it
    /// (SQLite gives its `-wal` and `-shm` files the database file's mode), and the modes
    /// of files left by earlier versions are corrected on every open.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        make_private_db(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        let mut conn = Connection::open(path).map_err(backend)?;
        // The hub's resource store opens the same file: a write waits for the other
        // connection's transaction instead of failing with "database is locked".
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        migrate(&mut conn)?;
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
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
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
                kind: "ManagedCluster".into(),
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
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let rec = tx
            .query_row(
                "SELECT name, uid, labels, created_at, cert_fingerprint, cert_not_after FROM clusters WHERE name = ?1",
                [name],
                row_to_cluster,
            )
            .optional()
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound {
                kind: "ManagedCluster".into(),
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

    #[test]
    fn the_database_and_its_wal_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        // Another version's database, readable by everyone.
        drop(Connection::open(&path).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = SqliteStore::open(&path).unwrap();
        s.create_cluster(&rec("a", "f1")).unwrap();
        let fresh = dir.path().join("fresh.db");
        let t = SqliteStore::open(&fresh).unwrap();
        t.create_cluster(&rec("a", "f1")).unwrap();
        let mut seen = 0;
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            seen += 1;
        }
        // Both databases with their -wal and -shm files.
        assert_eq!(seen, 6);
    }

    #[test]
    fn old_schema_is_migrated_and_legacy_rows_are_read_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute(
                "INSERT INTO tokens (id, user, groups, sha256, created_at) VALUES ('t1', 'u', '[\"g\"]', 'abc', '2026-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        s.conn()
            .execute(
                "INSERT INTO rbac_objects (kind, namespace, name, body) VALUES ('Role', 'ns', 'r', '{}')",
                [],
            )
            .unwrap();
        let (tokens, rbac) = s.legacy_rows().unwrap();
        assert_eq!(
            (tokens[0].id.as_str(), tokens[0].groups.clone()),
            ("t1", vec!["g".to_string()])
        );
        assert_eq!(tokens[0].revoked_at, None);
        assert_eq!(
            (rbac[0].kind.as_str(), rbac[0].namespace.as_str()),
            ("Role", "ns")
        );
        drop(s);
        // Reopening does not re-run the schema migration.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.legacy_rows().unwrap().0.len(), 1);
        s.forget_legacy_rows().unwrap();
        let (tokens, rbac) = s.legacy_rows().unwrap();
        assert!(tokens.is_empty() && rbac.is_empty());
    }
}
