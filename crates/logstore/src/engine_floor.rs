//! The tantivy side of the embedded store, for measuring tantivy's own cost per document
//! apart from ours (the `bench` example's `--engine-floor` mode, docs/benchmarks.md).
//!
//! The ingest target (issue 3: 200,000 flows/s on two cores, i.e. ≤ 10 µs of CPU per flow)
//! can only be judged against what the indexing engine needs for the same documents with
//! nothing of ours around it. These functions hand out exactly what [`crate::EmbeddedStore`]
//! uses — schema, index settings, the writer (threads, memory, merge policy) and the
//! documents it builds — so the example can feed an `IndexWriter` directly. The server does not use this module.

use tantivy::index::IndexSettings;
use tantivy::schema::Schema;
use tantivy::{Index, IndexWriter, TantivyDocument, TantivyError};

use crate::{IngestRecord, LogType, StoreOptions, schema_of};

/// The tantivy schema of every daily index of `log_type`.
pub fn schema(log_type: LogType) -> Schema {
    schema_of(log_type).schema.clone()
}

/// The settings a new daily index is created with.
pub fn settings(options: &StoreOptions) -> IndexSettings {
    crate::engine::index_settings(options)
}

/// A writer on `index` as the store opens one for a daily index (indexing threads, memory,
/// merge policy).
pub fn writer(index: &Index, options: &StoreOptions) -> Result<IndexWriter, TantivyError> {
    crate::engine::open_writer(index, options)
}

/// The document the store indexes for `record` of `cluster` from spool `stream`.
pub fn document(cluster: &str, stream: &str, record: &IngestRecord) -> TantivyDocument {
    schema_of(record.log_type).document(
        cluster,
        stream,
        record.seq,
        record.time_ms,
        &record.record,
        record.source.as_deref(),
        true,
    )
}
