//! `cattery-bench logstore`: the log store on the flow records the simulator writes.
//!
//! Records come from the simulator's own traffic model ([`cattery_sim::traffic`]): one
//! seeded simulated cluster per `--clusters`, each drawing interactions as `cattery
//! sim-cluster --logs-dir` does, serialised as Felix's JSON lines, then handed to the store
//! as the server's log puller does (validated, `cluster` added, the text kept as the
//! record's source). Only the flow records are kept (the DNS and L7 records of the same
//! interactions are dropped), so the numbers are per flow, as in earlier runs. Records are
//! stamped across one fixed day, so runs are comparable.
//!
//! It ingests them in batches (each batch durable before the next, as the server does) from
//! one or several concurrent writer threads (each batch from a different cluster and spool
//! stream), then times a filtered search, a free-text search and a top-10 terms aggregation
//! and reports bytes on disk per record. It runs on mimalloc, the allocator the `cattery`
//! binary uses, so the CPU it reports is what the server spends. `--engine-floor` measures
//! tantivy alone on the same documents (see [`engine_floor`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cattery_logstore::{
    EmbeddedStore, Filter, IngestRecord, LogStore, LogType, Retention, SearchRequest, StoreOptions,
    TimeRange,
};
use cattery_sim::traffic::SeededTraffic;
use cattery_sim::traffic::model::{Aggregation, Record, Window};
use cattery_sim::traffic::rng::Rng;
use serde_json::json;

/// Flags of `cattery-bench logstore`.
#[derive(clap::Args, Debug)]
pub struct LogstoreBenchArgs {
    /// Flow records to ingest.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
    /// Simulated clusters the records come from.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub clusters: u64,
    /// Records per ingest call (one cluster's shipment).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Concurrent writer threads (at most one per cluster).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub writers: u64,
    /// Queries of each kind timed (after 5 untimed ones).
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Seed of the simulated clusters' traffic (cluster `c` uses seed + c).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Store directory (default: a fresh one under $TMPDIR); deleted at the end.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Indexing threads per writer (default: the store's).
    #[arg(long)]
    pub writer_threads: Option<usize>,
    /// Indexing memory per writer, MiB (default: the store's).
    #[arg(long)]
    pub writer_memory_mb: Option<usize>,
    /// Segments merged at once (default: the store's).
    #[arg(long)]
    pub merge_min_segments: Option<usize>,
    /// Docstore zstd level (default: the store's).
    #[arg(long)]
    pub zstd_level: Option<i32>,
    /// Hand records over without their JSON text (the store serialises them again).
    #[arg(long)]
    pub no_source_text: bool,
    /// Measure tantivy alone on the same documents instead of the store.
    #[arg(long)]
    pub engine_floor: bool,
    /// With --engine-floor: tantivy fields to leave out of the documents (`_all,_source`).
    #[arg(long, value_delimiter = ',', requires = "engine_floor")]
    pub drop: Vec<String>,
}

/// CPU time this process has used so far (all threads, live or exited), from /proc.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and
    // 13th, in clock ticks (100 per second on Linux).
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// CPU time the calling thread has used so far, from /proc (nanosecond resolution).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

fn pct(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

pub(crate) fn dir_bytes(p: &std::path::Path) -> u64 {
    // Files can vanish while we walk (tantivy merges delete segments): skip them.
    let mut n = 0;
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

/// One day of traffic (a fixed day so runs are comparable): 2026-11-24T00:00:00Z.
const DAY_START: i64 = 1_795_478_400;

/// Interactions in a row that may yield no flow before the model is deemed broken.
const MAX_EMPTY_INTERACTIONS: usize = 10_000;

/// Each simulated cluster's traffic, and what the queries pick their values from.
pub(crate) struct Sources {
    /// The clusters' names, in the order of `traffic`.
    names: Vec<String>,
    traffic: Vec<Mutex<SeededTraffic>>,
    /// Records are stamped evenly over `[start_s, start_s + span_s)` (epoch seconds).
    start_s: i64,
    span_s: u64,
    /// Namespaces seen in denied flows' sources, and words (service and namespace names)
    /// seen anywhere: the values the queries ask for, so they match real records.
    vocabulary: Mutex<(BTreeSet<String>, BTreeSet<String>, BTreeSet<String>)>,
}

impl Sources {
    /// `clusters` clusters named `cluster-000`, … with records over one fixed day.
    fn new(clusters: u64, seed: u64) -> Sources {
        let names = (0..clusters as usize).map(cluster_name).collect();
        Sources::named(names, seed, DAY_START, 86_400)
    }

    /// Clusters `names` (cluster `c` seeded `seed + c`), records stamped evenly over
    /// `span_s` seconds from `start_s`.
    pub(crate) fn named(names: Vec<String>, seed: u64, start_s: i64, span_s: u64) -> Sources {
        Sources {
            traffic: names
                .iter()
                .enumerate()
                .map(|(c, name)| {
                    Mutex::new(SeededTraffic::new(
                        name,
                        seed.wrapping_add(c as u64),
                        Aggregation::Felix,
                    ))
                })
                .collect(),
            names,
            start_s,
            span_s: span_s.max(1),
            vocabulary: Mutex::default(),
        }
    }
}

fn cluster_name(c: usize) -> String {
    format!("cluster-{c:03}")
}

/// Batch `b` (`n` flows from record number `first` of `records`) as cluster `c` ships it:
/// (cluster, stream, records), each record as the server's puller hands it to the store.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_batch(
    sources: &Sources,
    c: usize,
    n: usize,
    first: u64,
    records: u64,
    seq0: u64,
    source_text: bool,
) -> (String, String, Vec<IngestRecord>) {
    let cluster = sources.names[c].clone();
    let stream = format!("stream-{c:03}");
    let mut traffic = sources.traffic[c].lock().unwrap_or_else(|e| e.into_inner());
    let mut recs = Vec::with_capacity(n);
    let (mut deny_ns, mut words) = (BTreeSet::new(), BTreeSet::new());
    let mut empty = 0;
    while recs.len() < n {
        let i = recs.len() as u64;
        let end_s = sources.start_s
            + (u128::from(first + i) * u128::from(sources.span_s - 1) / u128::from(records.max(1)))
                as i64;
        let end_ns = i128::from(end_s) * 1_000_000_000;
        let window = Window {
            start_ns: end_ns - 1_000_000_000,
            end_ns,
        };
        let mut got = false;
        for r in traffic.interaction(window) {
            let Record::Flow(f) = r else { continue };
            if recs.len() >= n {
                break;
            }
            got = true;
            if f.action == "deny" && f.source_namespace != "-" {
                deny_ns.insert(f.source_namespace.clone());
            }
            for w in [&f.dest_service_name, &f.dest_namespace] {
                if !w.is_empty() && w != "-" {
                    words.insert(w.clone());
                }
            }
            let line = cattery_sim::traffic::felix_json::to_line(&*f);
            let mut record: serde_json::Value =
                serde_json::from_str(&line).expect("the simulator writes JSON lines");
            let time_ms = cattery_api::logs::validate(LogType::Flows, &mut record, &cluster)
                .expect("the simulator's flow records validate");
            let source = source_text
                .then(|| cattery_api::logs::text_with_cluster(line.as_bytes(), &cluster))
                .flatten();
            recs.push(IngestRecord {
                seq: seq0 + 1 + recs.len() as u64,
                log_type: LogType::Flows,
                time_ms,
                record,
                source,
            });
        }
        if got {
            empty = 0;
        } else {
            empty += 1;
            assert!(
                empty < MAX_EMPTY_INTERACTIONS,
                "the traffic model of {cluster} produced no flow in {MAX_EMPTY_INTERACTIONS} interactions"
            );
        }
    }
    let mut v = sources.vocabulary.lock().unwrap_or_else(|e| e.into_inner());
    v.0.extend(deny_ns);
    v.1.extend(words);
    (cluster, stream, recs)
}

/// `--engine-floor`: what tantivy alone costs per flow. The same records, schema, settings,
/// merge policy and documents as the store, but fed straight into one `IndexWriter` (no
/// exactly-once watermarks, no group commit, no locks), committing every `per_commit`
/// documents. Reports the CPU of building the documents (ours) apart from everything else
/// the process spends (tantivy: indexing threads, commits, merges, docstore compression).
/// `left_out` names tantivy fields left out of the documents (`_all`, `_source`, …) to show
/// what each costs.
fn engine_floor(
    sources: &Sources,
    records: u64,
    clusters: u64,
    per_commit: usize,
    options: &StoreOptions,
    dir: &Path,
    left_out: &[String],
) -> anyhow::Result<()> {
    use cattery_logstore::engine_floor;
    use tantivy::schema::Value as _;
    let schema = engine_floor::schema(LogType::Flows);
    let dropped: Vec<tantivy::schema::Field> = left_out
        .iter()
        .map(|name| {
            schema
                .get_field(name)
                .map_err(|_| anyhow::anyhow!("--drop: no field {name:?} in the flows schema"))
        })
        .collect::<anyhow::Result<_>>()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let index = tantivy::Index::builder()
        .schema(schema)
        .settings(engine_floor::settings(options))
        .create_in_dir(dir)
        .context("creating the index")?;
    let mut writer = engine_floor::writer(&index, options).context("opening the writer")?;
    let (mut gen_cpu, mut build_cpu) = (Duration::ZERO, Duration::ZERO);
    let cpu_before = process_cpu();
    let started = Instant::now();
    let mut first = 0u64;
    let mut b = 0u64;
    let mut since_commit = 0;
    let mut docs = Vec::with_capacity(per_commit);
    while first < records {
        let n = per_commit.min((records - first) as usize);
        let t = thread_cpu();
        let c = (b % clusters) as usize;
        let (cluster, stream, recs) = make_batch(sources, c, n, first, records, first, true);
        let t2 = thread_cpu();
        gen_cpu += t2.saturating_sub(t);
        docs.extend(recs.iter().map(|r| {
            let doc = engine_floor::document(&cluster, &stream, r);
            if dropped.is_empty() {
                doc
            } else {
                let mut kept = tantivy::TantivyDocument::new();
                for (f, v) in doc.field_values() {
                    if !dropped.contains(&f) {
                        kept.add_field_value(f, &tantivy::schema::OwnedValue::from(v.as_value()));
                    }
                }
                kept
            }
        }));
        let t3 = thread_cpu();
        build_cpu += t3.saturating_sub(t2);
        drop(recs);
        gen_cpu += thread_cpu().saturating_sub(t3);
        for doc in docs.drain(..) {
            writer.add_document(doc).context("adding a document")?;
        }
        since_commit += n;
        if since_commit >= per_commit {
            writer.commit().context("committing")?;
            since_commit = 0;
        }
        first += n as u64;
        b += 1;
    }
    writer.commit().context("committing")?;
    let at_last_commit = process_cpu().saturating_sub(cpu_before);
    writer
        .wait_merging_threads()
        .context("waiting for merges")?;
    let wall = started.elapsed();
    let total = process_cpu().saturating_sub(cpu_before);
    let engine = total.saturating_sub(gen_cpu).saturating_sub(build_cpu);
    let engine_at_last_commit = at_last_commit
        .saturating_sub(gen_cpu)
        .saturating_sub(build_cpu);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / records as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "engine floor: {records} flows, commit every {per_commit}, {} indexing threads, fields left out: {}",
        options.writer_threads.max(1),
        if left_out.is_empty() {
            "none".to_string()
        } else {
            left_out.join(", ")
        }
    );
    println!(
        "  building documents (ours): {:.1} µs/flow; tantivy (indexing, commits, merges, docstore): {:.1} µs/flow; together {:.1} µs/flow",
        per(build_cpu),
        per(engine),
        per(build_cpu + engine)
    );
    println!(
        "  tantivy until the last commit returned (merges still running then are left out, as in the store's measure): {:.1} µs/flow",
        per(engine_at_last_commit)
    );
    println!(
        "  ⇒ at most {:.0} flows/s on {cores} fully available cores for tantivy alone, {:.0} with our document building; wall {:.1} s",
        cores as f64 * 1e6 / per(engine),
        cores as f64 * 1e6 / per(build_cpu + engine),
        wall.as_secs_f64()
    );
    println!(
        "  disk: {:.1} bytes/flow",
        dir_bytes(dir) as f64 / records as f64
    );
    Ok(())
}

/// Runs `cattery-bench logstore` and prints its report.
pub fn run(args: LogstoreBenchArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cattery-logstore-bench-{}", std::process::id()))
    });
    anyhow::ensure!(
        !dir.exists() || std::fs::read_dir(&dir)?.next().is_none(),
        "--dir {} is not empty: the bench deletes its directory at the end, so give it a new one",
        dir.display()
    );
    let mut options = StoreOptions::default();
    if let Some(v) = args.writer_threads {
        options.writer_threads = v;
    }
    if let Some(v) = args.writer_memory_mb {
        options.writer_memory_bytes = v << 20;
    }
    if let Some(v) = args.merge_min_segments {
        options.merge_min_segments = v;
    }
    if let Some(v) = args.zstd_level {
        options.docstore_zstd_level = v;
    }
    eprintln!("{options:?}");
    println!(
        "\n## `{}` — {}\n\nMachine: {}. Records: the simulator's traffic model (seeded clusters, Felix aggregation), flows only.\n",
        crate::report::command_line(),
        crate::report::today(),
        crate::report::machine(),
    );
    let sources = Sources::new(args.clusters, args.seed);
    let result = if args.engine_floor {
        engine_floor(
            &sources,
            args.records,
            args.clusters,
            (args.batch * args.writers) as usize,
            &options,
            &dir,
            &args.drop,
        )
    } else {
        store_bench(&args, &sources, &dir, options)
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Ingest, then queries, through [`EmbeddedStore`] as the server uses it.
fn store_bench(
    args: &LogstoreBenchArgs,
    sources: &Sources,
    dir: &Path,
    options: StoreOptions,
) -> anyhow::Result<()> {
    let (records, clusters, batch) = (args.records, args.clusters, args.batch as usize);
    let source_text = !args.no_source_text;
    let store = EmbeddedStore::open_with(dir, Retention::default(), options)
        .with_context(|| format!("opening a store in {}", dir.display()))?;
    let batches = records.div_ceil(batch as u64);
    let writers = args.writers.clamp(1, clusters.min(batches).max(1));
    let rounds = batches.div_ceil(writers);
    let seqs: Vec<AtomicU64> = (0..clusters).map(|_| AtomicU64::new(0)).collect();
    let round_start = Barrier::new(writers as usize);
    let round_end = Barrier::new(writers as usize);
    let ingest_time = Mutex::new(Duration::ZERO);
    let gen_cpu = Mutex::new(Duration::ZERO);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let started = Instant::now();
    let cpu_before = process_cpu();
    // Each round, every writer thread generates one batch (untimed), then all of them call
    // `ingest` at once, as concurrent agents' shipping streams do on the server; the time
    // from the common start to the last return is the round's ingest time.
    std::thread::scope(|s| {
        for w in 0..writers {
            let (store, seqs, round_start, round_end, ingest_time, gen_cpu, failure) = (
                &store,
                &seqs,
                &round_start,
                &round_end,
                &ingest_time,
                &gen_cpu,
                &failure,
            );
            s.spawn(move || {
                for r in 0..rounds {
                    let b = r * writers + w;
                    let first = b * batch as u64;
                    let n = if first < records {
                        batch.min((records - first) as usize)
                    } else {
                        0
                    };
                    // One batch = one cluster's shipment (the server ingests per cluster and
                    // stream); a round's batches are from different clusters.
                    let c = (b % clusters) as usize;
                    let gen_started = thread_cpu();
                    let seq0 = seqs[c].fetch_add(n as u64, Ordering::Relaxed);
                    let (cluster, stream, recs) =
                        make_batch(sources, c, n, first, records, seq0, source_text);
                    *gen_cpu.lock().unwrap_or_else(|e| e.into_inner()) +=
                        thread_cpu().saturating_sub(gen_started);
                    round_start.wait();
                    let t = Instant::now();
                    if n > 0 {
                        match store.ingest(&cluster, &stream, recs) {
                            Ok(res) if res.stored == n => {}
                            Ok(res) => {
                                failure
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .get_or_insert(format!(
                                        "{cluster}: stored {} of {n} records",
                                        res.stored
                                    ));
                            }
                            Err(e) => {
                                failure
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .get_or_insert(format!("{cluster}: ingest failed: {e}"));
                            }
                        }
                    }
                    if round_end.wait().is_leader() {
                        let mut total = ingest_time.lock().unwrap_or_else(|e| e.into_inner());
                        *total += t.elapsed();
                        let done = ((r + 1) * writers * batch as u64).min(records);
                        if (r + 1) % (50 / writers).max(1) == 0 {
                            eprintln!(
                                "  {done} records, {:.0}/s in ingest",
                                done as f64 / total.as_secs_f64()
                            );
                        }
                    }
                }
            });
        }
    });
    if let Some(f) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        anyhow::bail!("{f}");
    }
    let ingest_time = ingest_time.into_inner().unwrap_or_else(|e| e.into_inner());
    let wall = started.elapsed();
    let store_cpu = process_cpu()
        .saturating_sub(cpu_before)
        .saturating_sub(gen_cpu.into_inner().unwrap_or_else(|e| e.into_inner()));
    let bytes = dir_bytes(dir);
    println!(
        "records: {records} flows from {clusters} clusters, batches of {batch}, {writers} concurrent writer(s)"
    );
    println!(
        "ingest: {:.0} records/s (time inside LogStore::ingest, each batch committed+fsynced); {:.0}/s wall incl. generating the records",
        records as f64 / ingest_time.as_secs_f64(),
        records as f64 / wall.as_secs_f64()
    );
    println!(
        "store CPU: {:.1} s, {:.1} µs/record (process CPU during ingest minus record generation; includes background merges finished by then)",
        store_cpu.as_secs_f64(),
        store_cpu.as_secs_f64() * 1e6 / records as f64
    );
    println!(
        "disk: {:.1} MB, {:.1} bytes/record",
        bytes as f64 / 1e6,
        bytes as f64 / records as f64
    );
    queries(&store, args, sources)
}

/// Times the three kinds of query on the ingested records.
fn queries(
    store: &EmbeddedStore,
    args: &LogstoreBenchArgs,
    sources: &Sources,
) -> anyhow::Result<()> {
    let (records, clusters, queries) = (args.records, args.clusters, args.queries);
    let (deny_ns, words) = {
        let v = sources.vocabulary.lock().unwrap_or_else(|e| e.into_inner());
        (
            v.0.iter().cloned().collect::<Vec<_>>(),
            v.1.iter().cloned().collect::<Vec<_>>(),
        )
    };
    anyhow::ensure!(
        !words.is_empty(),
        "the generated flows named no service or namespace to search for"
    );
    let all: Vec<String> = (0..clusters as usize).map(cluster_name).collect();
    let mut rng = Rng::new(99);
    let pick_clusters = |rng: &mut Rng| -> Vec<String> {
        (0..10)
            .map(|_| all[rng.range(0, clusters - 1) as usize].clone())
            .collect()
    };
    let (mut filtered, mut terms, mut text) = (vec![], vec![], vec![]);
    let (mut hits_seen, mut text_hits_seen) = (0, 0);
    for q in 0..queries + 5 {
        // Filtered search: 10 clusters, denied flows from one namespace in a 6-hour window,
        // newest 100.
        let from = DAY_START + rng.range(0, 17) as i64 * 3600;
        let range = Some(TimeRange {
            from: Some(json!(from * 1000)),
            to: Some(json!((from + 6 * 3600) * 1000)),
        });
        let mut filters = vec![Filter::equals("action", "deny")];
        if let Some(ns) = rng.pick(&deny_ns) {
            filters.push(Filter::equals("source_namespace", ns.as_str()));
        }
        let req = SearchRequest {
            clusters: pick_clusters(&mut rng),
            time_range: range.clone(),
            filters,
            size: Some(100),
            ..SearchRequest::default()
        };
        let t = Instant::now();
        let res = store
            .search(LogType::Flows, &req)
            .context("filtered search")?;
        let d = t.elapsed();
        hits_seen += res.hits.total.value;
        // Free text: 10 clusters, 6-hour window, two words (a service and a namespace seen
        // in the records), newest 100.
        let query = format!(
            "{} {}",
            rng.pick(&words).map_or("", String::as_str),
            rng.pick(&words).map_or("", String::as_str)
        );
        let req = SearchRequest {
            clusters: pick_clusters(&mut rng),
            time_range: range,
            query: Some(query),
            size: Some(100),
            ..SearchRequest::default()
        };
        let t = Instant::now();
        let res = store
            .search(LogType::Flows, &req)
            .context("free-text search")?;
        let d3 = t.elapsed();
        text_hits_seen += res.hits.total.value;
        // Top-10 terms over everything from all clusters.
        let req = SearchRequest {
            clusters: all.clone(),
            size: Some(0),
            aggs: Some(json!({"top": {"terms": {"field": "dest_namespace", "size": 10}}})),
            ..SearchRequest::default()
        };
        let t = Instant::now();
        let res = store.search(LogType::Flows, &req).context("aggregation")?;
        let d2 = t.elapsed();
        anyhow::ensure!(
            res.hits.total.value == records,
            "the aggregation counted {} records, {records} were ingested",
            res.hits.total.value
        );
        if q >= 5 {
            filtered.push(d);
            terms.push(d2);
            text.push(d3);
        }
    }
    if queries == 0 {
        return Ok(());
    }
    let n = queries as u64 + 5;
    println!(
        "filtered search (10 clusters, 2 filters, 6 h window, newest 100; avg {} matches): p50 {:.1} ms, p99 {:.1} ms",
        hits_seen / n,
        pct(&mut filtered, 0.5),
        pct(&mut filtered, 0.99)
    );
    println!(
        "free-text search (10 clusters, 2 words, 6 h window, newest 100; avg {} matches): p50 {:.1} ms, p99 {:.1} ms",
        text_hits_seen / n,
        pct(&mut text, 0.5),
        pct(&mut text, 0.99)
    );
    println!(
        "top-10 terms aggregation over all {records} records, {clusters} clusters: p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut terms, 0.5),
        pct(&mut terms, 0.99)
    );
    Ok(())
}
