//! Where a [`Store`](crate::Store) persists its objects.
//!
//! The store keeps everything in memory and writes each committed transaction through
//! to its backend *before* publishing it; a backend error undoes the transaction. The
//! backend also keeps the resourceVersion counter, so a restarted store never hands out a
//! resourceVersion again (a watcher holding one from before would otherwise skip events).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::Obj;

/// Identifies a stored object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `group/plural` of the object's type (empty group for the core group).
    pub type_key: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// One change of a committed transaction.
#[derive(Debug, Clone)]
pub struct Write {
    /// Which object.
    pub key: ObjectKey,
    /// Its new state; `None` when it was deleted.
    pub object: Option<Obj>,
    /// The resourceVersion of this change.
    pub rv: u64,
}

/// What a backend holds when the store opens.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The last resourceVersion handed out.
    pub rv: u64,
    /// Every stored object.
    pub objects: Vec<(ObjectKey, Value)>,
}

/// A backend could not load or persist.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// Persistence for a [`Store`](crate::Store).
pub trait Backend: Send + Sync {
    /// Everything persisted so far.
    fn load(&self) -> Result<Loaded, BackendError>;
    /// Persists one transaction atomically: all of `writes` and `rv` as the last
    /// resourceVersion handed out, or none of it.
    fn commit(&self, rv: u64, writes: &[Write]) -> Result<(), BackendError>;
}

/// No persistence: the store lives and dies with the process (the simulator).
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory;

impl Backend for Memory {
    fn load(&self) -> Result<Loaded, BackendError> {
        Ok(Loaded::default())
    }

    fn commit(&self, _rv: u64, _writes: &[Write]) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Objects as JSON rows in SQLite (table `resources`, counter in `resource_versions`).
/// Each commit is one SQLite transaction.
pub struct Sqlite {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sqlite")
    }
}

fn sql(e: rusqlite::Error) -> BackendError {
    BackendError(format!("sqlite: {e}"))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resources (
    type TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    object TEXT NOT NULL,
    PRIMARY KEY (type, namespace, name)
);
CREATE TABLE IF NOT EXISTS resource_versions (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
";

impl Sqlite {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Sqlite, BackendError> {
        let conn = Connection::open(path)
            .map_err(|e| BackendError(format!("opening {}: {e}", path.display())))?;
        // Another connection may share the file (the hub's state database): wait for its
        // transaction instead of failing with "database is locked".
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        Self::with_connection(conn)
    }

    /// Uses an open connection (e.g. the hub's own state database), creating the tables.
    pub fn with_connection(conn: Connection) -> Result<Sqlite, BackendError> {
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for Sqlite {
    fn load(&self) -> Result<Loaded, BackendError> {
        let conn = self.conn();
        let rv: Option<i64> = conn
            .query_row("SELECT last FROM resource_versions WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)?;
        let mut stmt = conn
            .prepare("SELECT type, namespace, name, object FROM resources ORDER BY type, namespace, name")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    ObjectKey {
                        type_key: r.get(0)?,
                        namespace: r.get(1)?,
                        name: r.get(2)?,
                    },
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(sql)?;
        let mut objects = Vec::new();
        for row in rows {
            let (key, text) = row.map_err(sql)?;
            let value = serde_json::from_str(&text).map_err(|e| {
                BackendError(format!(
                    "stored object {}/{}/{} is not valid JSON: {e}",
                    key.type_key, key.namespace, key.name
                ))
            })?;
            objects.push((key, value));
        }
        Ok(Loaded {
            rv: rv.unwrap_or(0) as u64,
            objects,
        })
    }

    fn commit(&self, rv: u64, writes: &[Write]) -> Result<(), BackendError> {
        let mut conn = self.conn();
        // Immediate: the write lock is taken up front, so a second connection to the same file
        // waits (busy timeout) instead of failing on a read-to-write upgrade.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        for w in writes {
            let k = &w.key;
            match &w.object {
                Some(o) => tx
                    .execute(
                        "INSERT INTO resources (type, namespace, name, resource_version, object) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (type, namespace, name) DO UPDATE SET resource_version = excluded.resource_version, object = excluded.object",
                        params![k.type_key, k.namespace, k.name, w.rv as i64, o.to_string()],
                    )
                    .map_err(sql)?,
                None => tx
                    .execute(
                        "DELETE FROM resources WHERE type = ?1 AND namespace = ?2 AND name = ?3",
                        params![k.type_key, k.namespace, k.name],
                    )
                    .map_err(sql)?,
            };
        }
        tx.execute(
            "INSERT INTO resource_versions (id, last) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET last = excluded.last",
            params![rv as i64],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }
}
