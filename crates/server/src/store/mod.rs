//! The state store: clusters and certificate fingerprints (tokens and RBAC objects are
//! in the resource store; [`TokenRecord`] and [`RbacRecord`] are the rows of the tables
//! they were kept in before, read once at start by [`crate::migrate`]).
//!
//! Behind a trait so a PostgreSQL implementation can serve several server replicas later;
//! SQLite in the data directory is the embedded default. Calls are synchronous and short
//! (a handful of rows); callers keep hot data (the fingerprint index, token hashes) in memory.

use std::collections::BTreeMap;

pub mod sqlite;

pub use sqlite::SqliteStore;

/// A registered managed cluster as persisted.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterRecord {
    /// DNS-1123 label.
    pub name: String,
    /// Unique id of this registration (a re-added name gets a new one).
    pub uid: String,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
    /// Hex SHA-256 of the current client certificate.
    pub cert_fingerprint: String,
    /// RFC 3339 expiry of that certificate.
    pub cert_not_after: String,
}

/// A client certificate ever issued, and whether it is still honoured.
#[derive(Clone, Debug, PartialEq)]
pub struct CertRecord {
    /// Hex SHA-256 of the DER.
    pub fingerprint: String,
    /// Cluster it was issued for.
    pub cluster: String,
    /// `Some(reason)` once revoked (cluster removed, certificate superseded).
    pub revoked: Option<String>,
}

/// A bearer token as kept before tokens moved into the resource store; only its hash.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    /// Public id (safe to show and log).
    pub id: String,
    /// User name the token authenticates as.
    pub user: String,
    /// Groups of that user.
    pub groups: Vec<String>,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// RFC 3339.
    pub created_at: String,
    /// What the token is for.
    pub description: Option<String>,
    /// RFC 3339 expiry; `None` = never.
    pub expires_at: Option<String>,
    /// RFC 3339 revocation time; a revoked token is refused.
    pub revoked_at: Option<String>,
    /// RFC 3339 time of the last successful authentication.
    pub last_used_at: Option<String>,
}

/// An RBAC object (`ClusterRole`, `ClusterRoleBinding`, `Role`, `RoleBinding`) as kept
/// before RBAC objects moved into the resource store.
#[derive(Clone, Debug, PartialEq)]
pub struct RbacRecord {
    /// Object kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The object as JSON.
    pub body: String,
}

/// A state-store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An object with this name exists.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// Object kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// No object with this name.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Object kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// The database failed.
    #[error("state store: {0}")]
    Backend(String),
}

/// Persistent state of the management plane.
pub trait StateStore: Send + Sync {
    /// Inserts a cluster and its current certificate in one transaction.
    fn create_cluster(&self, cluster: &ClusterRecord) -> Result<(), StoreError>;
    /// Deletes a cluster and revokes every certificate issued for it, in one transaction.
    fn delete_cluster(&self, name: &str, reason: &str) -> Result<ClusterRecord, StoreError>;
    /// All clusters, by name.
    fn list_clusters(&self) -> Result<Vec<ClusterRecord>, StoreError>;
    /// Every certificate ever issued (for the in-memory fingerprint index).
    fn certificates(&self) -> Result<Vec<CertRecord>, StoreError>;
}
