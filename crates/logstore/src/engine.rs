//! The embedded engine: one tantivy index per log type per UTC day under the data directory
//! (`DIR/flows-2026-11-24/`), opened on demand.
//!
//! * **Writes.** Each open index has at most one `IndexWriter`, behind a mutex that also
//!   guards the index's exactly-once watermarks (highest `_seq` stored or queued per
//!   `(cluster, stream)`).
//!   Only a bounded number of writers stay open (least recently used are closed). An ingest
//!   returns only after a commit containing its documents (tantivy fsyncs the segment files
//!   and `meta.json`) has finished and the reader has been reloaded, so an acknowledged batch
//!   is durable and visible to the next search.
//! * **Group commit.** Concurrent ingests into the same index share commits: callers build
//!   their documents outside the lock and hand them over in chunks (added to the writer at
//!   once, or queued while a commit runs); the first caller done adding that finds no commit
//!   running becomes the leader and commits everything added so far, for everyone; the
//!   others wait for the numbered commit their documents went into. N agents shipping at
//!   once cost one commit (one segment per indexing thread, one fsync round, one reader
//!   reload) instead of N. A failed commit closes the writer and fails every caller whose
//!   documents were not committed; watermarks are then recovered from the index.
//! * **Exactly-once.** When a writer is opened the watermarks are recovered from the
//!   committed documents themselves (`cluster`/`_stream`/`_seq` fast fields), so there is no
//!   side file that a crash could leave out of step with the index. A watermark belongs to a
//!   stream *of a cluster* (the tunnel's certificate, never what the agent says): a spool
//!   directory cloned into another cluster, or an agent presenting another cluster's stream
//!   id with a huge seq, can never make this store skip that other cluster's records.
//! * **Reads.** Searches pick the daily indices the time range overlaps, run one query per
//!   index (segments in parallel on a shared executor), and merge hits, counts and
//!   intermediate aggregation results.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use cattery_api::logs::LogType;
use serde_json::Value;
use tantivy::aggregation::intermediate_agg_result::IntermediateAggregationResults;
use tantivy::aggregation::{
    AggContextParams, AggregationLimitsGuard, DistributedAggregationCollector,
};
use tantivy::collector::Count;
use tantivy::index::IndexSettings;
use tantivy::indexer::LogMergePolicy;
use tantivy::query::EnableScoring;
use tantivy::schema::Value as _;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{
    DocAddress, Executor, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument,
    TantivyError,
};

use crate::owners::StreamOwners;
use crate::request::{Hit, Hits, SearchRequest, SearchResponse, Total};
use crate::retention::{Retention, day_of, index_name, parse_index_name};
use crate::schema::{CLUSTER, SEQ, STREAM, TypeSchema};
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
    /// Merge policy: how many segments of about the same size are merged into one
    /// (tantivy's `LogMergePolicy::min_num_segments`). Higher means less merging at ingest
    /// and more segments per search.
    pub merge_min_segments: usize,
    /// Aggregation memory one search may use (tantivy's estimate, over every daily index
    /// it reads); beyond it the search fails with 400.
    pub aggregation_memory_bytes: u64,
    /// Buckets one search may return; beyond it the search fails with 400.
    pub aggregation_buckets: u32,
    /// Aggregation memory all concurrent searches together may reserve: each search with
    /// aggregations reserves `aggregation_memory_bytes` while it runs, and one that finds
    /// the budget taken fails with [`LogStoreError::Busy`] (429) instead of waiting.
    pub search_memory_budget_bytes: u64,
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
            merge_min_segments: 8,
            aggregation_memory_bytes: 256 << 20,
            aggregation_buckets: 65_000,
            search_memory_budget_bytes: 1 << 30,
        }
    }
}

/// The settings every new daily index is created with: zstd-compressed stored records in
/// 64 KiB blocks.
pub(crate) fn index_settings(options: &StoreOptions) -> IndexSettings {
    IndexSettings {
        docstore_compression: Compressor::Zstd(ZstdCompressor {
            compression_level: Some(options.docstore_zstd_level),
        }),
        docstore_blocksize: 64 * 1024,
        ..IndexSettings::default()
    }
}

/// Opens the writer of a daily index: its indexing threads, memory and merge policy.
pub(crate) fn open_writer(
    index: &Index,
    options: &StoreOptions,
) -> Result<IndexWriter, TantivyError> {
    let threads = options.writer_threads.max(1);
    let memory = options.writer_memory_bytes.max(threads * (16 << 20));
    let writer = index.writer_with_num_threads(threads, memory)?;
    let mut policy = LogMergePolicy::default();
    policy.set_min_num_segments(options.merge_min_segments.max(2));
    writer.set_merge_policy(Box::new(policy));
    Ok(writer)
}

/// The default [`crate::LogStore`]: tantivy indices in a local directory.
pub struct EmbeddedStore {
    dir: PathBuf,
    retention: Retention,
    options: StoreOptions,
    executor: Executor,
    state: Mutex<State>,
    /// Aggregation memory reserved by running searches (see `search_memory_budget_bytes`).
    search_memory: Mutex<u64>,
    /// Which cluster owns each stream id ([`crate::owners`]).
    owners: StreamOwners,
}

/// Aggregation memory reserved by one running search; released when dropped.
struct Reservation<'a> {
    in_use: &'a Mutex<u64>,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut in_use = lock(self.in_use);
        *in_use = in_use.saturating_sub(self.bytes);
    }
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
    /// Whether `_source` is a text field (indices of earlier versions: bytes).
    source_text: bool,
    index: Index,
    reader: IndexReader,
    /// The writer side: open writer, watermarks, documents waiting for the next commit.
    writer: Mutex<WriteState>,
    /// Signalled whenever a commit of this index finishes.
    committed: Condvar,
}

/// The write side of one daily index. Concurrent ingests share commits (group commit): each
/// caller queues its documents, then the first caller to find no commit running becomes the
/// *leader* and commits everything queued so far while the others wait for that commit.
/// Commits are numbered; a caller knows its documents are durable once the commit its
/// documents were queued for has finished.
#[derive(Default)]
struct WriteState {
    /// The open writer. `None` when closed, and while a leader is committing with it.
    writer: Option<IndexWriter>,
    /// Whether a writer is open (true while committing too); `marks` is only valid then.
    open: bool,
    /// Exactly-once watermarks: the highest seq per `(cluster, stream)` that is committed or
    /// queued.
    marks: HashMap<StreamKey, u64>,
    /// Documents (of any callers) waiting for commit number `next` because a commit was
    /// running when they arrived.
    queue: Vec<TantivyDocument>,
    /// Whether documents were added to `writer` since the last commit started (they go into
    /// commit number `next`).
    dirty: bool,
    /// Incremented whenever the writer is closed after a failure (its uncommitted documents
    /// lost), so a caller halfway through a batch notices.
    epoch: u64,
    /// The number of the next commit (the one `queue` goes into).
    next: u64,
    /// Every commit numbered up to this one has finished (successfully or not).
    finished: u64,
    /// Whether a leader is committing (commit number `next - 1`) right now.
    committing: bool,
    /// Recent failed commits and their errors (their callers report the error).
    failures: Vec<(u64, TantivyError)>,
}

impl WriteState {
    /// The commits older than `next` that failed are at most this many (followers of a
    /// failed commit wake up long before it is dropped from the list).
    const MAX_FAILURES_KEPT: usize = 64;

    /// Whether documents are waiting for commit number `next`.
    fn pending(&self) -> bool {
        self.dirty || !self.queue.is_empty()
    }

    /// Adds the queued documents to the writer, if it is here (no commit running).
    fn feed_writer(&mut self) -> Result<(), TantivyError> {
        let Some(w) = self.writer.as_ref() else {
            return Ok(());
        };
        if self.queue.is_empty() {
            return Ok(());
        }
        self.dirty = true;
        for doc in self.queue.drain(..) {
            w.add_document(doc)?;
        }
        Ok(())
    }

    /// The error of the most recent failed commit (for a caller whose documents were lost).
    fn last_failure(&self) -> TantivyError {
        self.failures.last().map_or_else(
            || TantivyError::InternalError("log index writer failed".into()),
            |(_, e)| e.clone(),
        )
    }

    fn outcome(&self, commit: u64) -> Result<(), TantivyError> {
        match self.failures.iter().find(|(n, _)| *n == commit) {
            Some((_, e)) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn record_failure(&mut self, commit: u64, e: TantivyError) {
        if self.failures.len() >= Self::MAX_FAILURES_KEPT {
            self.failures.remove(0);
        }
        self.failures.push((commit, e));
    }

    /// Closes the writer, discarding anything not committed: queued documents fail (their
    /// callers get `e`) and the watermarks are forgotten (recovered from the index when it
    /// is reopened).
    fn close_after_failure(&mut self, e: &TantivyError) {
        self.writer = None;
        self.open = false;
        self.marks.clear();
        self.epoch += 1;
        if self.pending() {
            self.queue.clear();
            self.dirty = false;
            let n = self.next;
            self.next += 1;
            self.finished = n;
            self.record_failure(n, e.clone());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (a failed commit closes the writer
    // and forgets the watermarks, which are recovered from the index), so poisoning is ignored.
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
        // Log records are private: the store's directories are 0700 and its files 0600.
        // Files tantivy creates itself follow the umask (`cattery server` sets 0o077); those
        // written by earlier versions are corrected here.
        cattery_files::create_private_dir(dir)?;
        cattery_files::make_private_tree(dir)?;
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
            search_memory: Mutex::new(0),
            owners: StreamOwners::open(dir)?,
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
        let (index, source_text) = if path.join("meta.json").exists() {
            let index = Index::open_in_dir(&path)?;
            let Some(source_text) = schema_compatible(&index.schema(), &ts.schema) else {
                return Err(LogStoreError::Corrupt {
                    index: name,
                    message: "its schema differs from this version's (written by another version?)"
                        .into(),
                });
            };
            (index, source_text)
        } else if create || state.known.contains(&key) {
            // Created now, or a directory left empty by a crash during creation.
            cattery_files::create_private_dir(&path)?;
            let index = Index::builder()
                .schema(ts.schema.clone())
                .settings(index_settings(&self.options))
                .create_in_dir(&path)?;
            // Make the new directory entry itself durable.
            std::fs::File::open(&self.dir)?.sync_all()?;
            (index, true)
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
            source_text,
            index,
            reader,
            writer: Mutex::new(WriteState {
                next: 1,
                ..WriteState::default()
            }),
            committed: Condvar::new(),
        });
        state.known.insert(key);
        state.open.insert(key, day.clone());
        Ok(Some(day))
    }

    /// Opens the writer of `day` (if it is not open) and recovers its watermarks.
    fn ensure_writer(&self, day: &DayIndex, st: &mut WriteState) -> Result<(), LogStoreError> {
        if st.open {
            return Ok(());
        }
        let writer = open_writer(&day.index, &self.options)?;
        day.reader.reload()?;
        st.marks = recover_marks(&day.reader)?;
        st.writer = Some(writer);
        st.open = true;
        Ok(())
    }

    /// Stores the records of one stream into one daily index (skipping seqs at or below the
    /// stream's watermark) and returns once a commit containing them (and any earlier queued
    /// duplicate of them) has finished: (stored, duplicates).
    ///
    /// Documents are built outside the lock and handed over in chunks of [`CHUNK`]: added to
    /// the writer straight away when no commit is running (so tantivy indexes them while the
    /// rest are being built), queued for the next commit otherwise.
    fn ingest_day(
        &self,
        day: &DayIndex,
        ts: &TypeSchema,
        cluster: &str,
        stream: &str,
        records: Vec<IngestRecord>,
    ) -> Result<(usize, usize), LogStoreError> {
        let (mut added, mut dups) = (0usize, 0usize);
        let mut epoch = None;
        let mut records = records.into_iter().peekable();
        let mut chunk: Vec<(u64, TantivyDocument)> = Vec::with_capacity(CHUNK);
        let mut st = loop {
            chunk.extend(records.by_ref().take(CHUNK).map(|mut r| {
                if let Value::Object(o) = &mut r.record
                    && o.get("cluster").and_then(Value::as_str) != Some(cluster)
                {
                    o.insert("cluster".into(), Value::String(cluster.to_string()));
                    // The caller's text says otherwise: serialise the record instead.
                    r.source = None;
                }
                let doc = ts.document(
                    cluster,
                    stream,
                    r.seq,
                    r.time_ms,
                    &r.record,
                    r.source.as_deref(),
                    day.source_text,
                );
                (r.seq, doc)
            }));
            let mut st = lock(&day.writer);
            match epoch {
                None => epoch = Some(st.epoch),
                // The writer failed after this call's earlier chunks went into it: they are
                // lost, so the rest must not be stored (it would raise the watermark past them).
                Some(e) if e != st.epoch => return Err(st.last_failure().into()),
                Some(_) => {}
            }
            self.ensure_writer(day, &mut st)?;
            let key = (cluster.to_string(), stream.to_string());
            let mark = st.marks.get(&key).copied();
            let mut last = None;
            for (seq, doc) in chunk.drain(..) {
                if mark.is_some_and(|m| seq <= m) {
                    dups += 1;
                    continue;
                }
                st.queue.push(doc);
                last = Some(seq);
                added += 1;
            }
            if let Some(seq) = last {
                st.marks.insert(key, seq);
            }
            if let Err(e) = st.feed_writer() {
                st.close_after_failure(&e);
                day.committed.notify_all();
                return Err(e.into());
            }
            if records.peek().is_none() {
                break st;
            }
        };
        // The commit that makes this call's records durable: the next one if anything is
        // pending (ours, or another caller's that may hold the originals of our duplicates),
        // else the one running (it may hold them), else none.
        let target = if st.pending() {
            st.next
        } else if st.committing {
            st.next - 1
        } else {
            return Ok((added, dups));
        };
        loop {
            if st.finished >= target {
                st.outcome(target)?;
                return Ok((added, dups));
            }
            if st.committing {
                st = day.committed.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead: commit everything added or queued so far, for every caller that did.
            let n = st.next;
            st.next += 1;
            st.committing = true;
            st.dirty = false;
            let queue = std::mem::take(&mut st.queue);
            let writer = st.writer.take();
            drop(st);
            let (writer, result) = match writer {
                Some(mut w) => {
                    // A panic must not leave `committing` set (every later caller would wait
                    // forever): it fails this commit like an error does.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        commit_docs(&mut w, queue)
                    }))
                    .unwrap_or_else(|_| {
                        Err(TantivyError::InternalError("panic while committing".into()))
                    });
                    (Some(w), r)
                }
                None => (
                    None,
                    Err(TantivyError::InternalError(
                        "log index writer is closed".into(),
                    )),
                ),
            };
            // Reload outside the lock: the documents are durable even if this fails.
            let result = match result {
                Ok(()) => day.reader.reload().map_err(|e| (e, true)),
                Err(e) => Err((e, false)),
            };
            st = lock(&day.writer);
            st.committing = false;
            st.finished = n;
            match result {
                Ok(()) => st.writer = writer,
                Err((e, committed)) => {
                    st.record_failure(n, e.clone());
                    if committed {
                        st.writer = writer;
                    } else {
                        // Dropping the writer discards whatever it did not commit.
                        drop(writer);
                        st.close_after_failure(&e);
                    }
                }
            }
            day.committed.notify_all();
        }
    }

    /// Closes the writer of `day` once nothing is being committed or waiting to be.
    fn close_writer(day: &DayIndex) {
        let mut st = lock(&day.writer);
        while st.committing || st.pending() {
            st = day.committed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.open = false;
        st.marks.clear();
        // Still under the lock: an ingest that reopened the writer now would fail to take
        // tantivy's directory lock, which the old writer holds until its merges finish.
        if let Some(w) = st.writer.take()
            && let Err(e) = w.wait_merging_threads()
        {
            tracing::warn!(index = %day.name, error = %e, "closing log index writer");
        }
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
            Self::close_writer(&v);
        }
    }

    fn searcher_context(index: &Index, limits: &AggregationLimitsGuard) -> AggContextParams {
        AggContextParams::new(limits.clone(), index.tokenizers().clone())
    }

    /// Reserves `bytes` of the server-wide search memory budget, or answers
    /// [`LogStoreError::Busy`] naming the budget.
    fn reserve_search_memory(&self, bytes: u64) -> Result<Reservation<'_>, LogStoreError> {
        let budget = self.options.search_memory_budget_bytes;
        let mut in_use = lock(&self.search_memory);
        // One search always fits, even if the budget is set below a search's share.
        if *in_use > 0 && *in_use + bytes > budget {
            return Err(LogStoreError::Busy {
                message: format!(
                    "the log store is running as many aggregating searches as its search memory budget of {} MiB allows ({} MiB each); retry shortly",
                    budget >> 20,
                    bytes >> 20
                ),
                retry_after_secs: 1,
            });
        }
        *in_use += bytes;
        Ok(Reservation {
            in_use: &self.search_memory,
            bytes,
        })
    }
}

/// Whether an index written with schema `on_disk` can be read and written with `current`:
/// the same fields (name, type, order), every column `current` reads present, every inverted
/// index it queries present. Indices written before keyword and time fields became
/// column-only have extra inverted indices, which are harmless; those written before
/// `_source` became text keep it as bytes. `Some(whether _source is text)` if compatible.
fn schema_compatible(
    on_disk: &tantivy::schema::Schema,
    current: &tantivy::schema::Schema,
) -> Option<bool> {
    let source_text = crate::schema::source_is_text(on_disk)?;
    let a: Vec<_> = on_disk.fields().collect();
    let b: Vec<_> = current.fields().collect();
    let same = a.len() == b.len()
        && a.iter().zip(&b).all(|((fa, ea), (fb, eb))| {
            fa == fb
                && ea.name() == eb.name()
                && (ea.field_type().value_type() == eb.field_type().value_type()
                    || ea.name() == "_source")
                && ea.is_fast() == eb.is_fast()
                && ea.is_stored() == eb.is_stored()
                && (ea.is_indexed() || !eb.is_indexed())
        });
    same.then_some(source_text)
}

/// How many documents an ingest builds before handing them to the writer.
const CHUNK: usize = 512;

/// Adds `docs` and commits (tantivy fsyncs the new segments and `meta.json`).
fn commit_docs(w: &mut IndexWriter, docs: Vec<TantivyDocument>) -> Result<(), TantivyError> {
    for d in docs {
        w.add_document(d)?;
    }
    w.commit()?;
    Ok(())
}

/// A watermark's key: the cluster (from the tunnel certificate) and the agent's stream id.
type StreamKey = (String, String);

/// The highest `_seq` stored per `(cluster, _stream)`, read from the committed documents (an
/// index written before watermarks were per cluster has both columns too, so it keeps
/// working).
fn recover_marks(reader: &IndexReader) -> Result<HashMap<StreamKey, u64>, LogStoreError> {
    let mut marks: HashMap<StreamKey, u64> = HashMap::new();
    let searcher = reader.searcher();
    for seg in searcher.segment_readers() {
        let ff = seg.fast_fields();
        let (Some(clusters), Some(streams), Some(seqs)) = (
            ff.str(CLUSTER)?,
            ff.str(STREAM)?,
            ff.column_opt::<u64>(SEQ)?,
        ) else {
            continue;
        };
        let mut max_per_ords: HashMap<(u64, u64), u64> = HashMap::new();
        for doc in 0..seg.max_doc() {
            let (Some(c), Some(s), Some(seq)) = (
                clusters.term_ords(doc).next(),
                streams.term_ords(doc).next(),
                seqs.first(doc),
            ) else {
                continue;
            };
            let slot = max_per_ords.entry((c, s)).or_insert(seq);
            *slot = (*slot).max(seq);
        }
        for ((c, s), max) in max_per_ords {
            let (mut cluster, mut stream) = (String::new(), String::new());
            if clusters.ord_to_str(c, &mut cluster)? && streams.ord_to_str(s, &mut stream)? {
                let e = marks.entry((cluster, stream)).or_insert(max);
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
        // Before anything is stored: a stream id first presented by another cluster is
        // refused whole (its records are neither stored nor used to skip any).
        self.owners.claim(cluster, stream)?;
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
                let (stored, dups) = self.ingest_day(&day, &ts, cluster, stream, recs)?;
                report.stored += stored;
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
        // One guard for the whole request: its memory and bucket limits hold across every
        // daily index searched, not per index.
        let limits = AggregationLimitsGuard::new(
            Some(self.options.aggregation_memory_bytes),
            Some(self.options.aggregation_buckets),
        );
        let _reservation = match &agg_req {
            Some(_) if !req.clusters.is_empty() => {
                Some(self.reserve_search_memory(self.options.aggregation_memory_bytes)?)
            }
            _ => None,
        };
        let (from, to) = req
            .time_range
            .as_ref()
            .map(|t| t.resolve())
            .transpose()?
            .unwrap_or((None, None));

        let candidates_keys: Vec<(LogType, i64)> = {
            let state = lock(&self.state);
            let lo = from.map_or(i64::MIN, day_of);
            let hi = to.map_or(i64::MAX, |t| day_of(t.saturating_sub(1)));
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
                        Self::searcher_context(&day.index, &limits),
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
                .and_then(|v| v.as_str().map(str::as_bytes).or_else(|| v.as_bytes()))
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
                    // Waits for commits into this index to finish, then closes its writer.
                    Self::close_writer(&day);
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

/// Errors raised while running a request's aggregations are the request's fault
/// (including going over the per-request memory and bucket limits).
fn engine_error(ts: &TypeSchema, e: TantivyError) -> LogStoreError {
    match e {
        TantivyError::AggregationError(
            tantivy::aggregation::AggregationError::MemoryExceeded { limit, current },
        ) => LogStoreError::bad(
            "aggs",
            format!(
                "the aggregations need more than the limit of {} MiB of memory per search (at {} MiB when stopped); use fewer aggregations, smaller sizes or a shorter time range",
                limit.get_bytes() >> 20,
                current.get_bytes() >> 20
            ),
        ),
        TantivyError::AggregationError(
            tantivy::aggregation::AggregationError::BucketLimitExceeded { limit, current },
        ) => LogStoreError::bad(
            "aggs",
            format!(
                "the aggregations return more than the limit of {limit} buckets per search ({current} so far); use smaller sizes, longer intervals or a shorter time range"
            ),
        ),
        TantivyError::AggregationError(_)
        | TantivyError::InvalidArgument(_)
        | TantivyError::SchemaError(_) => {
            LogStoreError::bad("aggs", aggs::user_message(ts, &e.to_string()))
        }
        other => LogStoreError::Index(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_memory_budget_turns_away_searches_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            aggregation_memory_bytes: 100 << 20,
            search_memory_budget_bytes: 250 << 20,
            search_threads: 1,
            ..StoreOptions::default()
        };
        let store = EmbeddedStore::open_with(dir.path(), Retention::default(), options).unwrap();
        let a = store.reserve_search_memory(100 << 20).unwrap();
        let b = store.reserve_search_memory(100 << 20).unwrap();
        let e = store.reserve_search_memory(100 << 20).err().unwrap();
        assert!(
            matches!(&e, LogStoreError::Busy { message, retry_after_secs: 1 } if message.contains("250 MiB")),
            "{e}"
        );
        drop(a);
        let c = store.reserve_search_memory(100 << 20).unwrap();
        drop((b, c));
        assert_eq!(*lock(&store.search_memory), 0);
        // A search larger than the whole budget still runs when it is alone.
        let _big = store.reserve_search_memory(1 << 30).unwrap();
    }
}
