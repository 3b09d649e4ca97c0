//! Which cluster owns each agent spool stream id.
//!
//! A stream id is chosen by an agent, so it proves nothing: a spool directory cloned into a
//! second cluster, or a compromised agent, can present another cluster's id. Watermarks are
//! already per `(cluster, stream)`, so such a batch cannot make the store skip the first
//! cluster's records; this table makes the misuse visible and refusable. The first cluster
//! that presents a stream id owns it for good (kept in `streams.db` beside the indices, so
//! it survives restarts and outlives the indices retention deletes); any other cluster's
//! batch under that id is refused with [`LogStoreError::StreamOwned`] before anything is
//! stored. A removed cluster keeps its streams; a cluster re-added under the same name gets
//! them back (its logs are reattached). See docs/design/0006-log-shipping.md.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::LogStoreError;

/// File name of the owner table inside the store's directory.
pub(crate) const FILE: &str = "streams.db";

/// The persistent stream → owner table, cached in memory.
pub(crate) struct StreamOwners {
    db: Mutex<(Connection, HashMap<String, String>)>,
}

fn db_err(path: &Path, e: rusqlite::Error) -> LogStoreError {
    LogStoreError::Io(std::io::Error::other(format!("{}: {e}", path.display())))
}

impl StreamOwners {
    /// Opens (creating if needed) the table in `dir`, owner-only (0600).
    pub(crate) fn open(dir: &Path) -> Result<StreamOwners, LogStoreError> {
        let path = dir.join(FILE);
        if !path.exists() {
            cattery_files::write_private_new(&path, b"")?;
        }
        let conn = Connection::open(&path).map_err(|e| db_err(&path, e))?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS stream_owners (
                 stream TEXT PRIMARY KEY NOT NULL,
                 cluster TEXT NOT NULL,
                 first_seen TEXT NOT NULL
             );",
        )
        .map_err(|e| db_err(&path, e))?;
        cattery_files::make_private(&path)?;
        let mut cache = HashMap::new();
        {
            let mut stmt = conn
                .prepare("SELECT stream, cluster FROM stream_owners")
                .map_err(|e| db_err(&path, e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| db_err(&path, e))?;
            for row in rows {
                let (stream, cluster) = row.map_err(|e| db_err(&path, e))?;
                cache.insert(stream, cluster);
            }
        }
        Ok(StreamOwners {
            db: Mutex::new((conn, cache)),
        })
    }

    /// Makes `cluster` the owner of `stream` if nobody owns it yet (durably, before it
    /// returns), and refuses the stream if another cluster does.
    pub(crate) fn claim(&self, cluster: &str, stream: &str) -> Result<(), LogStoreError> {
        let mut guard = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let (conn, cache) = &mut *guard;
        let owner = match cache.get(stream) {
            Some(owner) => owner.clone(),
            None => {
                let err = |e| LogStoreError::Io(std::io::Error::other(format!("{FILE}: {e}")));
                conn.execute(
                    "INSERT OR IGNORE INTO stream_owners (stream, cluster, first_seen) \
                     VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                    params![stream, cluster],
                )
                .map_err(err)?;
                let owner: String = conn
                    .query_row(
                        "SELECT cluster FROM stream_owners WHERE stream = ?1",
                        params![stream],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(err)?
                    .unwrap_or_else(|| cluster.to_owned());
                cache.insert(stream.to_owned(), owner.clone());
                owner
            }
        };
        if owner == cluster {
            Ok(())
        } else {
            Err(LogStoreError::StreamOwned {
                stream: stream.to_owned(),
                owner,
                cluster: cluster.to_owned(),
            })
        }
    }

    /// The cluster owning `stream`, if any.
    #[cfg(test)]
    pub(crate) fn owner(&self, stream: &str) -> Option<String> {
        let guard = self.db.lock().unwrap_or_else(|e| e.into_inner());
        guard.1.get(stream).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cluster_owns_a_stream_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let owners = StreamOwners::open(dir.path()).unwrap();
        owners.claim("east", "s1").unwrap();
        owners.claim("east", "s1").unwrap();
        owners.claim("west", "s2").unwrap();
        drop(owners);
        let owners = StreamOwners::open(dir.path()).unwrap();
        match owners.claim("west", "s1") {
            Err(LogStoreError::StreamOwned {
                stream,
                owner,
                cluster,
            }) => assert_eq!((&*stream, &*owner, &*cluster), ("s1", "east", "west")),
            other => panic!("expected StreamOwned, got {other:?}"),
        }
        assert_eq!(owners.owner("s2").as_deref(), Some("west"));
        owners.claim("west", "s2").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
