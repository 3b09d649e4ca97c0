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
//!
//! It also times the two log aggregations the Manager UI makes (the overview's flows over
//! time, the service graph's four levels of terms with sums), as [`crate::ui`] sends them,
//! over the bench's day. Then, when `clickhouse-server` is installed, its measured peer
//! ([`crate::clickhouse`]) gets the same records in the same batches from the same writers
//! and the same questions (not the free-text search), its answers are checked against the
//! store's, and one table puts both side by side.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cattery_api::logs::FieldKind;
use cattery_logstore::{
    EmbeddedStore, Filter, IngestRecord, LogStore, LogType, Retention, SearchRequest, StoreOptions,
    TimeRange,
};
use cattery_sim::traffic::SeededTraffic;
use cattery_sim::traffic::model::{Aggregation, Record, Window};
use cattery_sim::traffic::rng::Rng;
use serde_json::{Value, json};

use crate::clickhouse::{ClickHouse, literal};

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
    /// The ClickHouse server of the measured peer (a name looked up on $PATH and in
    /// /usr/sbin, or a path).
    #[arg(long, default_value = "clickhouse-server")]
    pub clickhouse: String,
    /// Leave out the ClickHouse peer.
    #[arg(long)]
    pub no_clickhouse: bool,
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
    let peer_dir = PathBuf::from(format!("{}-clickhouse", dir.display()));
    anyhow::ensure!(
        !peer_dir.exists(),
        "{} exists: the ClickHouse peer keeps its data there and deletes it at the end, so move it away",
        peer_dir.display()
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
    let result = if args.engine_floor {
        engine_floor(
            &Sources::new(args.clusters, args.seed),
            args.records,
            args.clusters,
            (args.batch * args.writers) as usize,
            &options,
            &dir,
            &args.drop,
        )
    } else {
        compare(&args, &dir, &peer_dir, options)
    };
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&peer_dir);
    result
}

/// What one engine did with the records: ingest, disk, query times and answers.
#[derive(Default)]
struct Measured {
    /// Flows per second of time inside the ingest calls.
    ingest_per_s: f64,
    /// The engine's CPU per flow until the last ingest call returned, µs.
    cpu_us: f64,
    /// The engine's CPU per flow once its background merges settled, µs (when known).
    cpu_settled_us: Option<f64>,
    /// Bytes on disk per flow.
    bytes_per_flow: f64,
    filtered: Vec<Duration>,
    text: Vec<Duration>,
    terms: Vec<Duration>,
    histogram: Vec<Duration>,
    graph: Vec<Duration>,
    answers: Answers,
}

/// What the queries answered, in a form both engines give, so the peer is checked to have
/// done the same work.
#[derive(Debug, Default, PartialEq)]
struct Answers {
    /// Matches of each filtered search.
    filtered: Vec<u64>,
    /// The top-10 terms' counts (largest first; keys left out: ties may order differently)
    /// and the total they were counted over.
    terms: (Vec<u64>, u64),
    /// The overview's histogram: (bucket start, epoch seconds; action; flows), non-empty
    /// buckets only, sorted.
    histogram: Vec<(i64, String, u64)>,
    /// The graph's (cluster, source ns, destination ns, action) groups: how many, and the
    /// sums of their flows, bytes in and num_flows.
    graph: (usize, u64, u64, u64),
}

/// The queries both engines are asked, drawn once (the order of draws is that of earlier
/// runs, so the store's numbers stay comparable with them).
struct Plan {
    /// Filtered searches: (10 clusters, window start in epoch seconds, source namespace of
    /// denied flows).
    filtered: Vec<(Vec<String>, i64, Option<String>)>,
    /// Free-text searches: (10 clusters, window start, two words). The store only.
    text: Vec<(Vec<String>, i64, String)>,
    /// Every cluster's name.
    all: Vec<String>,
    /// The overview's and the graph's searches over the bench's day, as the UI sends them.
    histogram: Value,
    graph: Value,
}

/// The filtered and free-text searches' window.
const WINDOW_S: i64 = 6 * 3600;

impl Plan {
    fn new(args: &LogstoreBenchArgs, sources: &Sources) -> anyhow::Result<Plan> {
        let clusters = args.clusters;
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
        let (mut filtered, mut text) = (vec![], vec![]);
        for _ in 0..args.queries + 5 {
            let from = DAY_START + rng.range(0, 17) as i64 * 3600;
            let ns = rng.pick(&deny_ns).cloned();
            filtered.push((pick_clusters(&mut rng), from, ns));
            let query = format!(
                "{} {}",
                rng.pick(&words).map_or("", String::as_str),
                rng.pick(&words).map_or("", String::as_str)
            );
            text.push((pick_clusters(&mut rng), from, query));
        }
        let searches =
            crate::ui::page_searches_between(DAY_START * 1000, (DAY_START + 86_400) * 1000);
        let find = |prefix: &str| {
            searches
                .iter()
                .find(|(label, _)| label.starts_with(prefix))
                .map(|(_, body)| body.clone())
                .with_context(|| format!("the UI bench has no search {prefix:?}"))
        };
        Ok(Plan {
            filtered,
            text,
            histogram: find("overview: flows over time")?,
            graph: find("graph:")?,
            all,
        })
    }

    /// The overview histogram's bucket width, seconds (from its `fixed_interval`).
    fn interval_s(&self) -> anyhow::Result<i64> {
        let v = &self.histogram["aggs"]["over_time"]["date_histogram"]["fixed_interval"];
        v.as_str()
            .and_then(|s| s.strip_suffix('s'))
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("the overview's fixed_interval {v} is not in seconds"))
    }
}

/// How long the rounds of ingest calls took, and the CPU spent making their input.
struct Ingested {
    /// Time inside the ingest calls (each round: from the common start to the last return).
    time: Duration,
    /// CPU of generating (and preparing) the batches.
    gen_cpu: Duration,
    wall: Duration,
}

/// Ingests `args.records` flows in rounds: each round, every writer thread generates one
/// batch and `prepare`s it (untimed), then all of them `send` at once, as concurrent
/// agents' shipping streams do on the server. The same `args` and a fresh `sources` of the
/// same seed give the same batches in the same order, so both engines get the same records.
fn ingest_rounds<T>(
    args: &LogstoreBenchArgs,
    sources: &Sources,
    what: &str,
    prepare: impl Fn(String, String, Vec<IngestRecord>) -> T + Sync,
    send: impl Fn(T, usize) -> Result<(), String> + Sync,
) -> anyhow::Result<Ingested> {
    let (records, clusters, batch) = (args.records, args.clusters, args.batch as usize);
    let source_text = !args.no_source_text;
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
    std::thread::scope(|s| {
        for w in 0..writers {
            let (seqs, round_start, round_end, ingest_time, gen_cpu, failure) = (
                &seqs,
                &round_start,
                &round_end,
                &ingest_time,
                &gen_cpu,
                &failure,
            );
            let (prepare, send) = (&prepare, &send);
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
                    let input = prepare(cluster, stream, recs);
                    *gen_cpu.lock().unwrap_or_else(|e| e.into_inner()) +=
                        thread_cpu().saturating_sub(gen_started);
                    round_start.wait();
                    let t = Instant::now();
                    if n > 0
                        && let Err(e) = send(input, n)
                    {
                        failure
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
                    if round_end.wait().is_leader() {
                        let mut total = ingest_time.lock().unwrap_or_else(|e| e.into_inner());
                        *total += t.elapsed();
                        let done = ((r + 1) * writers * batch as u64).min(records);
                        if (r + 1) % (50 / writers).max(1) == 0 {
                            eprintln!(
                                "  {what}: {done} records, {:.0}/s in ingest",
                                done as f64 / total.as_secs_f64()
                            );
                        }
                    }
                }
            });
        }
    });
    if let Some(f) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        anyhow::bail!("{what}: {f}");
    }
    Ok(Ingested {
        time: ingest_time.into_inner().unwrap_or_else(|e| e.into_inner()),
        gen_cpu: gen_cpu.into_inner().unwrap_or_else(|e| e.into_inner()),
        wall: started.elapsed(),
    })
}

/// The store, then (when installed) its ClickHouse peer, on the same records and queries;
/// then the table side by side.
fn compare(
    args: &LogstoreBenchArgs,
    dir: &Path,
    peer_dir: &Path,
    options: StoreOptions,
) -> anyhow::Result<()> {
    let sources = Sources::new(args.clusters, args.seed);
    let (ours, plan) = store_bench(args, &sources, dir, options)?;
    let peer = if args.no_clickhouse {
        Err("left out (--no-clickhouse)".to_string())
    } else if let Some(exe) = crate::haproxy::find(&args.clickhouse) {
        eprintln!("starting the ClickHouse peer ({}) …", exe.display());
        let ch = ClickHouse::start(&exe, peer_dir)?;
        let m = peer_bench(args, &ch, &plan)?;
        Ok((ch, m))
    } else {
        Err(format!(
            "left out: {} not found (install it, e.g. `apt-get install -y clickhouse-server`, or name it with --clickhouse PATH)",
            args.clickhouse
        ))
    };
    let (ch, theirs) = match peer {
        Ok(p) => p,
        Err(why) => {
            println!("\nPeer: none — {why}");
            return Ok(());
        }
    };
    let n = args.records;
    println!(
        "\nPeer: ClickHouse {} (Debian's clickhouse-server, default settings), the same {n} flows in the same batches from the same writers, over its HTTP interface (`INSERT … FORMAT JSONEachRow`, each acknowledged before the writer's next) into a MergeTree table: a column per field the store indexes (arrays for labels, policies and domains) plus the record's text, ordered by (cluster, end_time).",
        ch.version
    );
    println!(
        "Durability: the store fsyncs every ingest call before it returns; ClickHouse {} writes each insert as a new part before it answers but does not fsync it (it has no setting for that; later versions added `fsync_after_insert`).",
        ch.version
    );
    if ours.answers == theirs.answers {
        println!(
            "Answers: the peer's answers equal the store's ({} filtered-search counts, the top-10 counts, {} histogram buckets × actions, {} graph groups and their sums).",
            ours.answers.filtered.len(),
            ours.answers.histogram.len(),
            ours.answers.graph.0
        );
    } else {
        println!(
            "Answers DIFFER between the store and the peer:\n  store:      {:?}\n  ClickHouse: {:?}",
            summary(&ours.answers, &theirs.answers),
            summary(&theirs.answers, &ours.answers)
        );
    }
    for p in ch.problems() {
        println!("ClickHouse log: {p}");
    }
    render(&ours, &theirs, n, &ch.version);
    Ok(())
}

/// A short form of `a` for a mismatch report, with the first histogram row that differs
/// from `other`'s.
fn summary(a: &Answers, other: &Answers) -> String {
    let first_diff = a
        .histogram
        .iter()
        .zip(&other.histogram)
        .find(|(x, y)| x != y)
        .map(|(x, _)| x);
    format!(
        "filtered {:?}, terms {:?}, histogram {} rows with {} flows (first differing row {first_diff:?}), graph {:?}",
        a.filtered,
        a.terms,
        a.histogram.len(),
        a.histogram.iter().map(|h| h.2).sum::<u64>(),
        a.graph
    )
}

/// The table: measure | cattery log store | ClickHouse | ratio.
fn render(ours: &Measured, theirs: &Measured, n: u64, version: &str) {
    fn ratio(a: f64, b: f64) -> String {
        if b > 0.0 {
            format!("{:.2}×", a / b)
        } else {
            "–".into()
        }
    }
    println!(
        "\n| measure ({} flows) | cattery log store | ClickHouse {version} | ratio (store ÷ ClickHouse) |\n|---|--:|--:|--:|",
        crate::report::num(n as f64, 0)
    );
    let row = |label: &str, a: f64, b: f64, digits: usize| {
        println!(
            "| {label} | {} | {} | {} |",
            crate::report::num(a, digits),
            crate::report::num(b, digits),
            ratio(a, b)
        );
    };
    row(
        "ingest flows/s (inside the calls; higher is better)",
        ours.ingest_per_s,
        theirs.ingest_per_s,
        0,
    );
    row(
        "engine CPU µs per flow (until the last call returned)",
        ours.cpu_us,
        theirs.cpu_us,
        1,
    );
    if let Some(settled) = theirs.cpu_settled_us {
        println!("| engine CPU µs per flow (once merges settled) | – | {settled:.1} | – |");
    }
    row(
        "bytes on disk per flow",
        ours.bytes_per_flow,
        theirs.bytes_per_flow,
        1,
    );
    for (label, a, b) in [
        (
            "filtered search (10 clusters, 2 filters, 6 h, newest 100)",
            &ours.filtered,
            &theirs.filtered,
        ),
        ("top-10 terms over all records", &ours.terms, &theirs.terms),
        (
            "overview: flows over 24 h by action (date histogram × terms)",
            &ours.histogram,
            &theirs.histogram,
        ),
        (
            "graph: cluster → source ns → dest ns → action, sums of bytes",
            &ours.graph,
            &theirs.graph,
        ),
    ] {
        let (mut a, mut b) = (a.clone(), b.clone());
        if a.is_empty() || b.is_empty() {
            continue;
        }
        for (p, name) in [(0.5, "p50"), (0.99, "p99")] {
            row(
                &format!("{label}, {name} ms"),
                pct(&mut a, p),
                pct(&mut b, p),
                1,
            );
        }
    }
}

/// Ingest, then queries, through [`EmbeddedStore`] as the server uses it.
fn store_bench(
    args: &LogstoreBenchArgs,
    sources: &Sources,
    dir: &Path,
    options: StoreOptions,
) -> anyhow::Result<(Measured, Plan)> {
    let (records, clusters, batch) = (args.records, args.clusters, args.batch as usize);
    let store = EmbeddedStore::open_with(dir, Retention::default(), options)
        .with_context(|| format!("opening a store in {}", dir.display()))?;
    let cpu_before = process_cpu();
    let ingested = ingest_rounds(
        args,
        sources,
        "store",
        |cluster, stream, recs| (cluster, stream, recs),
        |(cluster, stream, recs), n| match store.ingest(&cluster, &stream, recs) {
            Ok(res) if res.stored == n => Ok(()),
            Ok(res) => Err(format!("{cluster}: stored {} of {n} records", res.stored)),
            Err(e) => Err(format!("{cluster}: ingest failed: {e}")),
        },
    )?;
    let store_cpu = process_cpu()
        .saturating_sub(cpu_before)
        .saturating_sub(ingested.gen_cpu);
    let bytes = dir_bytes(dir);
    let writers = args
        .writers
        .clamp(1, clusters.min(records.div_ceil(batch as u64)).max(1));
    println!(
        "records: {records} flows from {clusters} clusters, batches of {batch}, {writers} concurrent writer(s)"
    );
    println!(
        "ingest: {:.0} records/s (time inside LogStore::ingest, each batch committed+fsynced); {:.0}/s wall incl. generating the records",
        records as f64 / ingested.time.as_secs_f64(),
        records as f64 / ingested.wall.as_secs_f64()
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
    let plan = Plan::new(args, sources)?;
    let mut m = Measured {
        ingest_per_s: records as f64 / ingested.time.as_secs_f64(),
        cpu_us: store_cpu.as_secs_f64() * 1e6 / records as f64,
        bytes_per_flow: bytes as f64 / records as f64,
        ..Measured::default()
    };
    store_queries(&store, args, &plan, &mut m)?;
    Ok((m, plan))
}

/// Runs `req` on the store and returns its answer and how long it took.
fn timed_search(
    store: &EmbeddedStore,
    req: &SearchRequest,
    what: &str,
) -> anyhow::Result<(cattery_logstore::SearchResponse, Duration)> {
    let t = Instant::now();
    let res = store
        .search(LogType::Flows, req)
        .context(what.to_string())?;
    Ok((res, t.elapsed()))
}

/// The buckets of aggregation `name` in `v` (an `aggregations` object or a bucket).
fn buckets<'a>(v: &'a Value, name: &str) -> &'a [Value] {
    v[name]["buckets"].as_array().map_or(&[], Vec::as_slice)
}

/// A JSON number or numeric string as u64 (sums come back as floats).
fn as_u64(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f.round() as u64))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// Times the kinds of query on the ingested records and prints the store's lines.
fn store_queries(
    store: &EmbeddedStore,
    args: &LogstoreBenchArgs,
    plan: &Plan,
    m: &mut Measured,
) -> anyhow::Result<()> {
    let (records, clusters, queries) = (args.records, args.clusters, args.queries);
    let (mut hits_seen, mut text_hits_seen) = (0, 0);
    let histogram = SearchRequest::from_json(&serde_json::to_vec(&plan.histogram)?)
        .context("the overview's histogram search")?;
    let graph = SearchRequest::from_json(&serde_json::to_vec(&plan.graph)?)
        .context("the graph's search")?;
    for (q, ((cs, from, ns), (text_cs, _, words))) in
        plan.filtered.iter().zip(&plan.text).enumerate()
    {
        let timed = q >= 5;
        // Filtered search: 10 clusters, denied flows from one namespace in a 6-hour window,
        // newest 100.
        let range = Some(TimeRange {
            from: Some(json!(from * 1000)),
            to: Some(json!((from + WINDOW_S) * 1000)),
        });
        let mut filters = vec![Filter::equals("action", "deny")];
        if let Some(ns) = ns {
            filters.push(Filter::equals("source_namespace", ns.as_str()));
        }
        let req = SearchRequest {
            clusters: cs.clone(),
            time_range: range.clone(),
            filters,
            size: Some(100),
            ..SearchRequest::default()
        };
        let (res, d) = timed_search(store, &req, "filtered search")?;
        hits_seen += res.hits.total.value;
        // Free text: 10 clusters, 6-hour window, two words (a service and a namespace seen
        // in the records), newest 100.
        let req = SearchRequest {
            clusters: text_cs.clone(),
            time_range: range,
            query: Some(words.clone()),
            size: Some(100),
            ..SearchRequest::default()
        };
        let (text_res, d3) = timed_search(store, &req, "free-text search")?;
        text_hits_seen += text_res.hits.total.value;
        // Top-10 terms over everything from all clusters.
        let req = SearchRequest {
            clusters: plan.all.clone(),
            size: Some(0),
            aggs: Some(json!({"top": {"terms": {"field": "dest_namespace", "size": 10}}})),
            ..SearchRequest::default()
        };
        let (terms_res, d2) = timed_search(store, &req, "aggregation")?;
        anyhow::ensure!(
            terms_res.hits.total.value == records,
            "the aggregation counted {} records, {records} were ingested",
            terms_res.hits.total.value
        );
        let (hist_res, d4) = timed_search(store, &histogram, "the overview's histogram")?;
        let (graph_res, d5) = timed_search(store, &graph, "the graph's aggregation")?;
        if timed {
            m.filtered.push(d);
            m.terms.push(d2);
            m.text.push(d3);
            m.histogram.push(d4);
            m.graph.push(d5);
        }
        m.answers.filtered.push(res.hits.total.value);
        if q == 0 {
            let aggs = |r: &cattery_logstore::SearchResponse| {
                r.aggregations.clone().unwrap_or(Value::Null)
            };
            let a = aggs(&terms_res);
            m.answers.terms = (
                buckets(&a, "top")
                    .iter()
                    .map(|b| as_u64(&b["doc_count"]))
                    .collect(),
                terms_res.hits.total.value,
            );
            let a = aggs(&hist_res);
            for b in buckets(&a, "over_time") {
                let key_s = as_u64(&b["key"]) as i64 / 1000;
                for ab in buckets(b, "action") {
                    let n = as_u64(&ab["doc_count"]);
                    if n > 0 {
                        let action = ab["key"].as_str().unwrap_or_default().to_string();
                        m.answers.histogram.push((key_s, action, n));
                    }
                }
            }
            m.answers.histogram.sort();
            let a = aggs(&graph_res);
            let mut g = (0, 0, 0, 0);
            for c in buckets(&a, "c") {
                for s in buckets(c, "s") {
                    for d in buckets(s, "d") {
                        for ab in buckets(d, "a") {
                            g.0 += 1;
                            g.1 += as_u64(&ab["doc_count"]);
                            g.2 += as_u64(&ab["bi"]["value"]);
                            g.3 += as_u64(&ab["f"]["value"]);
                        }
                    }
                }
            }
            m.answers.graph = g;
        }
    }
    if queries == 0 {
        return Ok(());
    }
    let n = queries as u64 + 5;
    println!(
        "filtered search (10 clusters, 2 filters, 6 h window, newest 100; avg {} matches): p50 {:.1} ms, p99 {:.1} ms",
        hits_seen / n,
        pct(&mut m.filtered, 0.5),
        pct(&mut m.filtered, 0.99)
    );
    println!(
        "free-text search (10 clusters, 2 words, 6 h window, newest 100; avg {} matches): p50 {:.1} ms, p99 {:.1} ms",
        text_hits_seen / n,
        pct(&mut m.text, 0.5),
        pct(&mut m.text, 0.99)
    );
    println!(
        "top-10 terms aggregation over all {records} records, {clusters} clusters: p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut m.terms, 0.5),
        pct(&mut m.terms, 0.99)
    );
    Ok(())
}

/// The flows fields the peer keeps as arrays of strings.
const ARRAY_FIELDS: [&str; 5] = [
    "source_labels.labels",
    "dest_labels.labels",
    "dest_domains",
    "policies.enforced_policies",
    "policies.pending_policies",
];

/// The peer's column of store field `field`.
fn column(field: &str) -> String {
    field.replace('.', "_")
}

/// The peer's table: a column per field the store indexes, plus the cluster and the record.
fn peer_table() -> String {
    let cols: Vec<String> = LogType::Flows
        .fields()
        .iter()
        .map(|&(field, kind)| {
            let ty = match kind {
                FieldKind::Keyword if ARRAY_FIELDS.contains(&field) => "Array(String)",
                FieldKind::Keyword | FieldKind::Ip | FieldKind::Rfc3339 => "String",
                FieldKind::Long | FieldKind::EpochSeconds => "Int64",
            };
            format!("{} {ty}", column(field))
        })
        .collect();
    format!(
        "CREATE TABLE flows (cluster String, {}, source String) ENGINE = MergeTree() ORDER BY (cluster, end_time)",
        cols.join(", ")
    )
}

/// `v` (field `field` of kind `kind` in a record, if there) as the peer's column takes it:
/// `null`s and missing fields as the column's default, numeric strings as numbers.
fn peer_value(field: &str, kind: FieldKind, v: Option<&Value>) -> Value {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match kind {
        FieldKind::Keyword if ARRAY_FIELDS.contains(&field) => match v {
            Some(Value::Array(items)) => {
                Value::from(items.iter().filter_map(text).collect::<Vec<_>>())
            }
            Some(v) => Value::from(text(v).into_iter().collect::<Vec<_>>()),
            None => Value::from(Vec::<String>::new()),
        },
        FieldKind::Keyword | FieldKind::Ip | FieldKind::Rfc3339 => {
            Value::from(v.and_then(text).unwrap_or_default())
        }
        FieldKind::Long | FieldKind::EpochSeconds => Value::from(match v {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or(0),
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        }),
    }
}

/// `recs` as the peer's `JSONEachRow` lines.
fn peer_rows(cluster: &str, recs: &[IngestRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(recs.len() * 1536);
    for r in recs {
        let mut row = serde_json::Map::new();
        row.insert("cluster".into(), Value::from(cluster));
        for &(field, kind) in LogType::Flows.fields() {
            let v = cattery_api::logs::get_path(&r.record, field);
            row.insert(column(field), peer_value(field, kind, v));
        }
        let source = match &r.source {
            Some(text) => String::from_utf8_lossy(text).into_owned(),
            None => r.record.to_string(),
        };
        row.insert("source".into(), Value::from(source));
        serde_json::to_writer(&mut out, &row).expect("JSON values always serialize");
        out.push(b'\n');
    }
    out
}

/// The rows of a `FORMAT JSONCompact` answer.
fn compact_rows(answer: &str) -> anyhow::Result<(Vec<Vec<Value>>, Value)> {
    let v: Value = serde_json::from_str(answer).context("ClickHouse's JSONCompact answer")?;
    let rows = v["data"]
        .as_array()
        .context("no `data` in ClickHouse's answer")?
        .iter()
        .map(|r| r.as_array().cloned().unwrap_or_default())
        .collect();
    Ok((rows, v["totals"].clone()))
}

/// How long to wait for the peer's merges to settle after the last insert.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The same ingest and queries on the ClickHouse peer.
fn peer_bench(args: &LogstoreBenchArgs, ch: &ClickHouse, plan: &Plan) -> anyhow::Result<Measured> {
    let records = args.records;
    ch.query(&peer_table())?;
    // A fresh source of the same seed: the same records in the same batches.
    let sources = Sources::new(args.clusters, args.seed);
    let cpu_before = ch.cpu_seconds();
    let ingested = ingest_rounds(
        args,
        &sources,
        "ClickHouse",
        |cluster, _stream, recs| peer_rows(&cluster, &recs),
        |rows, _n| {
            ch.insert("INSERT INTO flows FORMAT JSONEachRow", rows)
                .map_err(|e| format!("{e:#}"))
        },
    )?;
    let cpu = ch.cpu_seconds() - cpu_before;
    // Merges still running, or about to be, cost CPU too; wait (bounded) until none has
    // run for a second.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut quiet = 0;
    while quiet < 5 && Instant::now() < deadline {
        let running: u64 = ch
            .query("SELECT count() FROM system.merges")?
            .trim()
            .parse()
            .unwrap_or(1);
        quiet = if running == 0 { quiet + 1 } else { 0 };
        std::thread::sleep(Duration::from_millis(200));
    }
    let settled = (quiet >= 5).then(|| ch.cpu_seconds() - cpu_before);
    let bytes: u64 = ch
        .query("SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = 'default' AND table = 'flows'")?
        .trim()
        .parse()
        .context("the peer's bytes on disk")?;
    let stored: u64 = ch
        .query("SELECT count() FROM flows")?
        .trim()
        .parse()
        .context("the peer's count")?;
    anyhow::ensure!(
        stored == records,
        "ClickHouse holds {stored} flows, {records} were inserted"
    );
    let per = |s: f64| s * 1e6 / records as f64;
    let mut m = Measured {
        ingest_per_s: records as f64 / ingested.time.as_secs_f64(),
        cpu_us: per(cpu),
        cpu_settled_us: settled.map(per),
        bytes_per_flow: bytes as f64 / records as f64,
        ..Measured::default()
    };
    println!(
        "ClickHouse: ingest {:.0} flows/s (inside the inserts), {:.1} µs/flow of its CPU until the last insert returned{}, {:.1} bytes/flow on disk",
        m.ingest_per_s,
        m.cpu_us,
        m.cpu_settled_us
            .map_or(String::new(), |s| format!(" ({s:.1} once merges settled)")),
        m.bytes_per_flow
    );
    let list = |cs: &[String]| cs.iter().map(|c| literal(c)).collect::<Vec<_>>().join(", ");
    let interval = plan.interval_s()?;
    let (day_from, day_to) = (DAY_START, DAY_START + 86_400);
    for (q, (cs, from, ns)) in plan.filtered.iter().enumerate() {
        let mut cond = format!(
            "cluster IN ({}) AND end_time >= {from} AND end_time < {} AND action = 'deny'",
            list(cs),
            from + WINDOW_S
        );
        if let Some(ns) = ns {
            cond.push_str(&format!(" AND source_namespace = {}", literal(ns)));
        }
        // The newest 100 records and how many match: two statements (the store answers
        // both in one call), timed together.
        let t = Instant::now();
        ch.query(&format!(
            "SELECT source FROM flows WHERE {cond} ORDER BY end_time DESC LIMIT 100 FORMAT TabSeparatedRaw"
        ))?;
        let matches: u64 = ch
            .query(&format!("SELECT count() FROM flows WHERE {cond}"))?
            .trim()
            .parse()
            .context("the peer's match count")?;
        let d = t.elapsed();
        let t = Instant::now();
        let terms = ch.query(
            "SELECT dest_namespace, count() AS n FROM flows GROUP BY dest_namespace WITH TOTALS ORDER BY n DESC, dest_namespace LIMIT 10 FORMAT JSONCompact",
        )?;
        let d2 = t.elapsed();
        let t = Instant::now();
        let hist = ch.query(&format!(
            "SELECT intDiv(end_time, {interval}) * {interval} AS b, action, count() FROM flows WHERE end_time >= {day_from} AND end_time < {day_to} GROUP BY b, action ORDER BY b, action FORMAT JSONCompact"
        ))?;
        let d4 = t.elapsed();
        let t = Instant::now();
        let graph = ch.query(&format!(
            "SELECT cluster, source_namespace, dest_namespace, action, count(), sum(bytes_in), sum(bytes_out), sum(num_flows) FROM flows WHERE end_time >= {day_from} AND end_time < {day_to} GROUP BY cluster, source_namespace, dest_namespace, action FORMAT JSONCompact"
        ))?;
        let d5 = t.elapsed();
        if q >= 5 {
            m.filtered.push(d);
            m.terms.push(d2);
            m.histogram.push(d4);
            m.graph.push(d5);
        }
        m.answers.filtered.push(matches);
        if q == 0 {
            let (rows, totals) = compact_rows(&terms)?;
            m.answers.terms = (
                rows.iter().map(|r| r.get(1).map_or(0, as_u64)).collect(),
                totals.get(1).map_or(0, as_u64),
            );
            let (rows, _) = compact_rows(&hist)?;
            m.answers.histogram = rows
                .iter()
                .map(|r| {
                    (
                        r.first().map_or(0, as_u64) as i64,
                        r.get(1)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        r.get(2).map_or(0, as_u64),
                    )
                })
                .collect();
            m.answers.histogram.sort();
            let (rows, _) = compact_rows(&graph)?;
            m.answers.graph = rows.iter().fold((0, 0, 0, 0), |g, r| {
                (
                    g.0 + 1,
                    g.1 + r.get(4).map_or(0, as_u64),
                    g.2 + r.get(5).map_or(0, as_u64),
                    g.3 + r.get(7).map_or(0, as_u64),
                )
            });
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_gets_defaults_for_nulls_and_arrays_for_lists() {
        assert_eq!(
            peer_value("source_ip", FieldKind::Ip, Some(&Value::Null)),
            json!("")
        );
        assert_eq!(peer_value("source_port", FieldKind::Long, None), json!(0));
        assert_eq!(
            peer_value("dest_service_port", FieldKind::Keyword, Some(&json!(443))),
            json!("443")
        );
        assert_eq!(
            peer_value(
                "dest_domains",
                FieldKind::Keyword,
                Some(&json!(["a", null, "b"]))
            ),
            json!(["a", "b"])
        );
        assert_eq!(
            peer_value(
                "source_labels.labels",
                FieldKind::Keyword,
                Some(&Value::Null)
            ),
            json!([])
        );
    }

    #[test]
    fn the_peer_table_has_a_column_per_indexed_field() {
        let t = peer_table();
        for (field, _) in LogType::Flows.fields() {
            assert!(t.contains(&format!("{} ", column(field))), "{field} in {t}");
        }
        assert!(
            t.contains("policies_enforced_policies Array(String)"),
            "{t}"
        );
        assert!(t.contains("end_time Int64"), "{t}");
    }
}
