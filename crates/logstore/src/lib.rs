//! Central log storage for Cattery: the [`LogStore`] trait the server ingests into and
//! searches, and [`EmbeddedStore`], its default implementation on tantivy (docs/architecture.md
//! decision 9). An Elasticsearch/OpenSearch backend can implement the same trait; how it maps
//! is written down in `docs/design/0005-logstore.md`.
//!
//! * Records keep Calico's field names ([`cattery_api::logs`]); filters, sorts and aggregations
//!   use those names, and hits return the records as they were sent (plus `cluster`).
//! * Ingest is exactly-once per agent spool stream of a cluster: a resent record (seq at or
//!   below what the target index already holds for that cluster's stream) is skipped, and `ingest` returns only once the
//!   stored records are committed to disk, so the server can acknowledge the batch.
//! * Searches answer in Elasticsearch's JSON shape.

#![forbid(unsafe_code)]

mod aggs;
mod engine;
pub mod engine_floor;
mod error;
mod owners;
mod query;
mod request;
mod retention;
mod schema;
mod sort;
mod text;

use std::sync::{Arc, OnceLock};

pub use cattery_api::logs::LogType;
pub use engine::{EmbeddedStore, StoreOptions};
pub use error::LogStoreError;
pub use query::{matches, validate_filters};
pub use request::{
    ALL_CLUSTERS, DEFAULT_SIZE, Filter, Hit, Hits, MAX_SIZE, RangeBounds, SearchRequest,
    SearchResponse, SortField, SortOrder, TimeRange, Total,
};
pub use retention::Retention;

/// One validated record to store, with its position in the agent's spool stream.
#[derive(Clone, Debug, PartialEq)]
pub struct IngestRecord {
    /// Sequence number in the spool stream (strictly increasing within a stream).
    pub seq: u64,
    /// Which kind of log it is.
    pub log_type: LogType,
    /// The record's time (from [`cattery_api::logs::validate`]), which picks its daily index.
    pub time_ms: i64,
    /// The record as sent, with `cluster` set.
    pub record: serde_json::Value,
    /// The record's JSON text, when the caller has it (as received, `cluster` added — see
    /// [`cattery_api::logs::text_with_cluster`]): stored as the record's source instead of
    /// serialising `record` again. It must parse to `record`. `None`: `record` is serialised.
    pub source: Option<Vec<u8>>,
}

/// What an ingest did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Records newly stored.
    pub stored: usize,
    /// Records skipped because they were already stored (a resend).
    pub duplicates: usize,
}

/// Where logs are stored and searched. Implementations are shared by all request handlers.
pub trait LogStore: Send + Sync {
    /// Stores `records` of `cluster` that came from the agent spool `stream` (a uuid string),
    /// in seq order. Exactly-once: a record whose seq is <= the highest seq already stored for
    /// (cluster, stream, target index) is skipped (counted in `duplicates`); the same stream id
    /// under another cluster is another stream, so one cluster can never make the store skip
    /// another's records. The first cluster to present a stream id owns it for good; a batch
    /// of any other cluster under it is refused whole with [`LogStoreError::StreamOwned`]
    /// (nothing stored), so the misuse is reported instead of silently split. Durable (committed and
    /// fsynced) when it returns `Ok` — the server acknowledges only after that.
    fn ingest(
        &self,
        cluster: &str,
        stream: &str,
        records: Vec<IngestRecord>,
    ) -> Result<IngestReport, LogStoreError>;

    /// Runs a search over one log type. `req.clusters` is already resolved by the caller to
    /// concrete names (never `*`); an empty list matches nothing.
    fn search(
        &self,
        log_type: LogType,
        req: &SearchRequest,
    ) -> Result<SearchResponse, LogStoreError>;

    /// Deletes whole daily indices older than each type's retention; returns their names.
    fn expire(&self, now_ms: i64) -> Result<Vec<String>, LogStoreError>;
}

/// The (immutable) schema of each log type, built once.
pub(crate) fn schema_of(t: LogType) -> Arc<schema::TypeSchema> {
    static SCHEMAS: OnceLock<[Arc<schema::TypeSchema>; 4]> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| LogType::ALL.map(|t| Arc::new(schema::TypeSchema::new(t))));
    all[LogType::ALL.iter().position(|x| *x == t).unwrap_or(0)].clone()
}
