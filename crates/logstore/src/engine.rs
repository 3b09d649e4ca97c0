//! The embedded engine: one tantivy index per log type per UTC day under the data directory
//! (`DIR/flows-2026-11-24/`), opened on demand.
//!
//! * **Writes.** Each open index has at most one `IndexWriter`, behind a mutex that also
//!   guards the index's exactly-once watermarks (highest `_seq` stored per stream). Only a
//!   bounded number of writers stay open (least recently used are closed). An ingest
//!   commits (tantivy fsyncs the segment files and `meta.json`) and reloads the reader of
//!   every index it touched before it returns, so an acknowledged batch is durable and
//!   visible to the next search.
//! * **Exactly-once.** When a writer is opened the watermarks are recovered from the
//!   committed documents themselves (`_stream`/`_seq` fast fields), so there is no side
//!   file that a crash could leave out of step with the index.
//! * **Reads.** Searches pick the daily indices the time range overlaps, run one query per
//!   index (segments in parallel on a shared executor), and merge hits, counts and
//!   intermediate aggregation results.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use cattery_api::logs::LogType;
use serde_json::Value;
use tantivy::aggregation::intermediate_agg_result::IntermediateAggregationResults;
use tantivy::aggregation::{
    AggContextParams, AggregationLimitsGuard, DistributedAggregationCollector,
};
use tantivy::collector::Count;
use tantivy::index::IndexSettings;
use tantivy::query::EnableScoring;
use tantivy::schema::Value as _;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{
    DocAddress, Executor, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument,
    TantivyError,
};

use crate::request::{Hit, Hits, SearchRequest, SearchResponse, Total};
use crate::retention::{Retention, day_of, index_name, parse_index_name};
use crate::schema::{SEQ, STREAM, TypeSchema};
use crate::sort::{GVal, TopCollector};
use crate::{IngestRecord, IngestReport, LogStore, LogStoreError, aggs, query, schema_of, sort};

/// Tuning knobs of the embedded engine.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Indexing threads per writer.
    pub writer_threads: usize,
    /// Indexing memory per writer (split across its threads; tantivy needs ≥ 15 MB per thread).
    pub writer_memory_bytes: usize,
    /// How many writers (daily indices being written) stay open at once.
    pub max_open_writers: usize,
    /// Threads searching segments in parallel.
    pub search_threads: usize,
    /// zstd level of the stored original records.
    pub docstore_zstd_level: i32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        StoreOptions {
            writer_threads: cores.clamp(1, 4),
            writer_memory_bytes: 128 << 20,
            max_open_writers: 4,
            search_threads: cores.clamp(1, 8),
            docstore_zstd_level: 3,
        }
    }
}

/// The default [`crate::LogStore`]: tantivy indices in a local directory.
pub struct EmbeddedStore {
    dir: PathBuf,
    retention: Retention,
    options: StoreOptions,
    executor: Executor,
    state: Mutex<State>,
}

/// A daily index: its log type and UTC day (days since the epoch).
type IndexKey = (LogType, i64);

/// Which indices exist and which are open.
#[derive(Default)]
struct State {
    /// Every index directory there is (from the directory scan plus those created since).
    known: BTreeSet<(LogType, i64)>,
    /// Opened indices.
    open: BTreeMap<(LogType, i64), Arc<DayIndex>>,
    /// Indices with an open writer, least recently used first.
    writers: Vec<(LogType, i64)>,
}

/// One open daily index.
struct DayIndex {
    name: String,
    path: PathBuf,
    index: Index,
    reader: IndexReader,
    writer: Mutex<Option<Writer>>,
}

/// An open writer and the exactly-once watermarks it guards.
struct Writer {
    writer: IndexWriter,
    marks: HashMap<String, u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (watermarks are only advanced
    // after a successful commit), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EmbeddedStore {
    /// Opens (creating if needed) a store in `dir` with default tuning.
    pub fn open(dir: &Path, retention: Retention) -> Result<Self, LogStoreError> {
        Self::open_with(dir, retention, StoreOptions::default())
    }

    /// Opens (creating if needed) a store in `dir`.
    pub fn open_with(
        dir: &Path,
        retention: Retention,
        options: StoreOptions,
    ) -> Result<Self, LogStoreError> {
        std::fs::create_dir_all(dir)?;
        let mut state = State::default();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(key) = entry.file_name().to_str().and_then(parse_index_name) {
                state.known.insert(key);
            }
        }
        let executor = Executor::multi_thread(options.search_threads.max(1), "logsearch-")?;
        Ok(EmbeddedStore {
            dir: dir.to_path_buf(),
            retention,
            options,
            executor,
            state: Mutex::new(state),
        })
    }

    /// The retention in force.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Names of the daily indices on disk, oldest first per type.
    pub fn indices(&self) -> Vec<String> {
        lock(&self.state)
            .known
            .iter()
            .map(|(t, d)| index_name(*t, *d))
            .collect()
    }

    /// Returns the open index for `key`, opening it (or creating it when `create`).
    fn index(
        &self,
        key: (LogType, i64),
        create: bool,
    ) -> Result<Option<Arc<DayIndex>>, LogStoreError> {
        let mut state = lock(&self.state);
        if let Some(i) = state.open.get(&key) {
            return Ok(Some(i.clone()));
        }
        if !create && !state.known.contains(&key) {
            return Ok(None);
        }
        let name = index_name(key.0, key.1);
        let path = self.dir.join(&name);
        let ts = schema_of(key.0);
        let index = if path.join("meta.json").exists() {
            let index = Index::open_in_dir(&path)?;
            if index.schema() != ts.schema {
                return Err(LogStoreError::Corrupt {
                    index: name,
                    message: "its schema differs from this version's (written by another version?)"
                        .into(),
                });
            }
            index
        } else if create || state.known.contains(&key) {
            // Created now, or a directory left empty by a crash during creation.
            std::fs::create_dir_all(&path)?;
            let settings = IndexSettings {
                docstore_compression: Compressor::Zstd(ZstdCompressor {
                    compression_level: Some(self.options.docstore_zstd_level),
                }),
                docstore_blocksize: 64 * 1024,
                ..IndexSettings::default()
            };
            let index = Index::builder()
                .schema(ts.schema.clone())
                .settings(settings)
                .create_in_dir(&path)?;
            // Make the new directory entry itself durable.
            std::fs::File::open(&self.dir)?.sync_all()?;
            index
        } else {
            return Ok(None);
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let day = Arc::new(DayIndex {
            name,
            path,
            index,
            reader,
            writer: Mutex::new(None),
        });
        state.known.insert(key);
        state.open.insert(key, day.clone());
        Ok(Some(day))
    }

    fn open_writer(&self, day: &DayIndex) -> Result<Writer, LogStoreError> {
        let threads = self.options.writer_threads.max(1);
        let memory = self.options.writer_memory_bytes.max(threads * (16 << 20));
        let writer = day.index.writer_with_num_threads(threads, memory)?;
        day.reader.reload()?;
        let marks = recover_marks(&day.reader)?;
        Ok(Writer { writer, marks })
    }

    /// Marks `keys` as most recently written and closes the least recently used writers
    /// beyond the limit.
    fn touch_writers(&self, keys: &[(LogType, i64)]) {
        let victims: Vec<Arc<DayIndex>> = {
            let mut state = lock(&self.state);
            state.writers.retain(|k| !keys.contains(k));
            state.writers.extend_from_slice(keys);
            let excess = state
                .writers
                .len()
                .saturating_sub(self.options.max_open_writers.max(1));
            let evicted: Vec<_> = state.writers.drain(..excess).collect();
            evicted
                .iter()
                .filter_map(|k| state.open.get(k).cloned())
                .collect()
        };
        for v in victims {
            let w = lock(&v.writer).take();
            if let Some(w) = w
                && let Err(e) = w.writer.wait_merging_threads()
            {
                tracing::warn!(index = %v.name, error = %e, "closing log index writer");
            }
        }
    }

    fn searcher_context(index: &Index) -> AggContextParams {
        AggContextParams::new(
            AggregationLimitsGuard::new(Some(500_000_000), Some(65_000)),
            index.tokenizers().clone(),
        )
    }
}

/// The highest `_seq` stored per `_stream`, read from the committed documents.
fn recover_marks(reader: &IndexReader) -> Result<HashMap<String, u64>, LogStoreError> {
    let mut marks: HashMap<String, u64> = HashMap::new();
    let searcher = reader.searcher();
    for seg in searcher.segment_readers() {
        let ff = seg.fast_fields();
        let (Some(streams), Some(seqs)) = (ff.str(STREAM)?, ff.column_opt::<u64>(SEQ)?) else {
            continue;
        };
        let mut max_per_ord = vec![None::<u64>; streams.num_terms()];
        for doc in 0..seg.max_doc() {
            let (Some(ord), Some(seq)) = (streams.term_ords(doc).next(), seqs.first(doc)) else {
                continue;
            };
            let slot = &mut max_per_ord[ord as usize];
            *slot = Some(slot.map_or(seq, |m: u64| m.max(seq)));
        }
        for (ord, max) in max_per_ord.into_iter().enumerate() {
            let Some(max) = max else { continue };
            let mut name = String::new();
            if streams.ord_to_str(ord as u64, &mut name)? {
                let e = marks.entry(name).or_insert(max);
                *e = (*e).max(max);
            }
        }
    }
    Ok(marks)
}

impl LogStore for EmbeddedStore {
    fn ingest(
        &self,
        cluster: &str,
        stream: &str,
        records: Vec<IngestRecord>,
    ) -> Result<IngestReport, LogStoreError> {
        let mut groups: BTreeMap<(LogType, i64), Vec<IngestRecord>> = BTreeMap::new();
        for r in records {
            groups
                .entry((r.log_type, day_of(r.time_ms)))
                .or_default()
                .push(r);
        }
        let mut report = IngestReport::default();
        let keys: Vec<_> = groups.keys().copied().collect();
        let result = (|| {
            for (key, recs) in groups {
                let ts = schema_of(key.0);
                let day = self
                    .index(key, true)?
                    .ok_or_else(|| LogStoreError::Corrupt {
                        index: index_name(key.0, key.1),
                        message: "could not be created".into(),
                    })?;
                let mut guard = lock(&day.writer);
                if guard.is_none() {
                    *guard = Some(self.open_writer(&day)?);
                }
                let Some(w) = guard.as_mut() else { continue };
                let mut mark = w.marks.get(stream).copied();
                let mut added = 0usize;
                let mut dups = 0usize;
                let add = || -> Result<(), TantivyError> {
                    for mut r in recs {
                        if mark.is_some_and(|m| r.seq <= m) {
                            dups += 1;
                            continue;
                        }
                        if let Value::Object(o) = &mut r.record {
                            o.insert("cluster".into(), Value::String(cluster.to_string()));
                        }
                        w.writer.add_document(
                            ts.document(cluster, stream, r.seq, r.time_ms, &r.record),
                        )?;
                        mark = Some(r.seq);
                        added += 1;
                    }
                    if added > 0 {
                        w.writer.commit()?;
                    }
                    Ok(())
                };
                if let Err(e) = add() {
                    // Drop the writer: uncommitted documents are discarded and the watermarks
                    // are recovered from the index when it is reopened.
                    if let Some(w) = guard.take() {
                        drop(w.writer);
                    }
                    return Err(e.into());
                }
                if added > 0 {
                    if let Some(m) = mark {
                        w.marks.insert(stream.to_string(), m);
                    }
                    day.reader.reload()?;
                }
                report.stored += added;
                report.duplicates += dups;
            }
            Ok::<_, LogStoreError>(())
        })();
        self.touch_writers(&keys);
        result.map(|_| report)
    }

    fn search(
        &self,
        log_type: LogType,
        req: &SearchRequest,
    ) -> Result<SearchResponse, LogStoreError> {
        let started = Instant::now();
        let ts = schema_of(log_type);
        let size = req.checked_size()?;
        let query = query::build(&ts, req)?;
        let keys = Arc::new(sort::plan(&ts, req)?);
        let after = req
            .search_after
            .as_ref()
            .map(|a| sort::parse_after(&keys, a))
            .transpose()?
            .map(Arc::new);
        let agg_req = req
            .aggs
            .as_ref()
            .map(|a| aggs::translate(&ts, a))
            .transpose()?;
        let (from, to) = req
            .time_range
            .as_ref()
            .map(|t| t.resolve())
            .transpose()?
            .unwrap_or((None, None));

        let candidates_keys: Vec<(LogType, i64)> = {
            let state = lock(&self.state);
            let lo = from.map_or(i64::MIN, day_of);
            let hi = to.map_or(i64::MAX, |t| day_of(t - 1));
            state
                .known
                .iter()
                .filter(|(t, d)| *t == log_type && *d >= lo && *d <= hi)
                .copied()
                .collect()
        };
        let mut total = 0u64;
        let mut searchers = Vec::new();
        let mut hits: Vec<(Vec<GVal>, (usize, DocAddress))> = Vec::new();
        let mut inter: Option<IntermediateAggregationResults> = None;
        if !req.clusters.is_empty() {
            for key in candidates_keys {
                let Some(day) = self.index(key, false)? else {
                    continue;
                };
                let searcher = day.reader.searcher();
                let top = TopCollector {
                    keys: keys.clone(),
                    after: after.clone(),
                    k: size,
                };
                let agg = agg_req.as_ref().map(|a| {
                    DistributedAggregationCollector::from_aggs(
                        a.clone(),
                        Self::searcher_context(&day.index),
                    )
                });
                let (count, top_hits, agg_res) = searcher
                    .search_with_executor(
                        query.as_ref(),
                        &(Count, top, agg),
                        &self.executor,
                        EnableScoring::disabled_from_searcher(&searcher),
                    )
                    .map_err(|e| engine_error(&ts, e))?;
                total += count as u64;
                let i = searchers.len();
                hits.extend(top_hits.into_iter().map(|(k, a)| (k, (i, a))));
                hits = sort::merge(&keys, hits, size);
                if let Some(r) = agg_res {
                    match &mut inter {
                        None => inter = Some(r),
                        Some(acc) => acc.merge_fruits(r).map_err(|e| engine_error(&ts, e))?,
                    }
                }
                searchers.push((day, searcher));
            }
        }
        let mut out = Vec::with_capacity(hits.len());
        for (vals, (i, addr)) in hits {
            let (day, searcher) = &searchers[i];
            let doc: TantivyDocument = searcher.doc(addr)?;
            let source = doc
                .get_first(ts.source)
                .and_then(|v| v.as_bytes())
                .map(serde_json::from_slice::<Value>)
                .transpose()
                .map_err(|e| LogStoreError::Corrupt {
                    index: day.name.clone(),
                    message: e.to_string(),
                })?
                .unwrap_or(Value::Null);
            let n = vals.len();
            let id = match (&vals[n - 1], &vals[n - 2]) {
                (GVal::Str(stream), GVal::UInt(seq)) => format!("{stream}:{seq}"),
                _ => String::new(),
            };
            out.push(Hit {
                index: day.name.clone(),
                id,
                source,
                sort: vals.iter().map(GVal::to_json).collect(),
            });
        }
        let aggregations = match agg_req {
            None => None,
            Some(a) => {
                let limits = AggregationLimitsGuard::new(Some(500_000_000), Some(65_000));
                let res = inter
                    .unwrap_or_default()
                    .into_final_result(a, limits)
                    .map_err(|e| engine_error(&ts, e))?;
                Some(serde_json::to_value(res).map_err(|e| LogStoreError::Index(e.into()))?)
            }
        };
        Ok(SearchResponse {
            took: started.elapsed().as_millis() as u64,
            timed_out: false,
            hits: Hits {
                total: Total {
                    value: total,
                    relation: "eq".into(),
                },
                hits: out,
            },
            aggregations,
        })
    }

    fn expire(&self, now_ms: i64) -> Result<Vec<String>, LogStoreError> {
        let victims: Vec<(IndexKey, Option<Arc<DayIndex>>)> = {
            let mut state = lock(&self.state);
            let expired: Vec<_> = state
                .known
                .iter()
                .filter(|(t, d)| self.retention.is_expired(*t, *d, now_ms))
                .copied()
                .collect();
            expired
                .into_iter()
                .map(|k| {
                    state.known.remove(&k);
                    state.writers.retain(|w| *w != k);
                    (k, state.open.remove(&k))
                })
                .collect()
        };
        let mut deleted = Vec::new();
        for ((t, d), day) in victims {
            let path = match day {
                Some(day) => {
                    // Waits for an ingest into this index to finish, then closes its writer.
                    if let Some(w) = lock(&day.writer).take() {
                        let _ = w.writer.wait_merging_threads();
                    }
                    day.path.clone()
                }
                None => self.dir.join(index_name(t, d)),
            };
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(index = %index_name(t, d), "deleted expired log index");
            deleted.push(index_name(t, d));
        }
        if !deleted.is_empty() {
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(deleted)
    }
}

/// Errors raised while running a request's aggregations are the request's fault.
fn engine_error(ts: &TypeSchema, e: TantivyError) -> LogStoreError {
    match e {
        TantivyError::AggregationError(_)
        | TantivyError::InvalidArgument(_)
        | TantivyError::SchemaError(_) => {
            LogStoreError::bad("aggs", aggs::user_message(ts, &e.to_string()))
        }
        other => LogStoreError::Index(other),
    }
}
