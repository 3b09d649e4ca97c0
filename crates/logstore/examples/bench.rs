//! Log store benchmark: generates realistic Calico flow logs from many clusters, ingests them
//! in batches (each batch durable before the next, as the server does) from one or several
//! concurrent writer threads (each batch from a different cluster and spool stream), then times
//! a filtered search, a free-text search and a top-10 terms aggregation and reports bytes on
//! disk per record. It runs on mimalloc, the allocator the `cattery` binary uses, so the CPU
//! it reports is what the server spends.
//!
//! `cargo run --release -p cattery-logstore --example bench -- [--records N] [--clusters C]
//! [--batch B] [--writers W] [--queries Q] [--dir PATH] [--writer-threads T]
//! [--writer-memory-mb M] [--merge-min-segments S] [--zstd-level L] [--source-text 0|1]
//! [--engine-floor [--drop FIELD,...]]`
//!
//! `--engine-floor` measures tantivy alone on the same documents (see [`engine_floor`]).
//!
//! Records are handed over as the server does: with `cluster` set and, unless
//! `--source-text 0`, with the JSON text they arrived as (generating both is not counted as
//! the store's CPU).

#![recursion_limit = "256"]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use cattery_logstore::{
    EmbeddedStore, Filter, IngestRecord, LogStore, LogType, Retention, SearchRequest, StoreOptions,
    TimeRange,
};
use serde_json::{Value, json};

/// The allocator of the `cattery` binary (`crates/cli`): measure what the server runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The seeded generator of the data set (`fastrand`), so every run sees the same records.
struct Rng(fastrand::Rng);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.u64(..n)
    }
}

const NAMESPACES: [&str; 12] = [
    "shop",
    "checkout",
    "payments",
    "web",
    "api",
    "db",
    "cache",
    "auth",
    "search",
    "kube-system",
    "monitoring",
    "logging",
];
const APPS: [&str; 8] = [
    "frontend", "backend", "redis", "postgres", "nginx", "envoy", "worker", "coredns",
];

/// One Felix-shaped flow record.
fn flow(rng: &mut Rng, end_time: i64) -> Value {
    let sns = NAMESPACES[rng.below(12) as usize];
    let dns = NAMESPACES[rng.below(12) as usize];
    let sapp = APPS[rng.below(8) as usize];
    let dapp = APPS[rng.below(8) as usize];
    let deny = rng.below(20) == 0;
    let dport = [80, 443, 5432, 6379, 53, 8080, 9090][rng.below(7) as usize];
    let bytes_in = rng.below(100_000) as i64;
    json!({
        "start_time": end_time - 300, "end_time": end_time,
        "source_ip": format!("10.{}.{}.{}", rng.below(4), rng.below(256), rng.below(256)),
        "source_name": format!("{sapp}-{:x}-{:05x}", rng.below(16), rng.below(1 << 20)),
        "source_name_aggr": format!("{sapp}-*"), "source_namespace": sns, "source_port": 32768 + rng.below(28000),
        "source_type": "wep", "source_labels": {"labels": [format!("app={sapp}"), format!("pod-template-hash={:x}", rng.below(64))]},
        "dest_ip": format!("10.{}.{}.{}", rng.below(4), rng.below(256), rng.below(256)),
        "dest_name": format!("{dapp}-{:x}-{:05x}", rng.below(16), rng.below(1 << 20)),
        "dest_name_aggr": format!("{dapp}-*"), "dest_namespace": dns, "dest_port": dport, "dest_type": "wep",
        "dest_labels": {"labels": [format!("app={dapp}")]},
        "dest_service_name": dapp, "dest_service_namespace": dns, "dest_service_port": "http", "dest_service_port_num": dport,
        "dest_domains": null, "proto": if dport == 53 { "udp" } else { "tcp" },
        "action": if deny { "deny" } else { "allow" }, "reporter": if rng.below(2) == 0 { "src" } else { "dst" },
        "policies": {"enforced_policies": [format!("0|default|{dns}/default.allow-{dapp}|{}|{}", if deny { "deny" } else { "allow" }, if deny { -1 } else { 0 })],
                     "pending_policies": [], "transit_policies": []},
        "bytes_in": bytes_in, "bytes_out": bytes_in / 3, "packets_in": bytes_in / 1000 + 1, "packets_out": bytes_in / 3000 + 1,
        "num_flows": 1, "num_flows_started": 1, "num_flows_completed": rng.below(2),
        "nat_outgoing_ports": null, "process_name": "-", "num_process_names": 0, "process_id": "-", "num_process_ids": 0,
        "process_args": ["-"], "num_process_args": 0, "original_source_ips": null, "num_original_source_ips": 0,
        "http_requests_allowed_in": 0, "http_requests_denied_in": 0,
        "host": format!("node-{}", rng.below(50)),
    })
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

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

fn dir_bytes(p: &std::path::Path) -> u64 {
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

/// One day of traffic ending now-ish (a fixed day so runs are comparable):
/// 2026-11-24T00:00:00Z.
const DAY_START: i64 = 1_795_478_400;

/// Batch `b` (`n` records from record number `first` of `records`) as cluster `c` ships it:
/// (cluster, stream, records). Records are handed over as the server does: `cluster` set
/// (by validation) and, if `source_text`, with the text they arrived as.
fn make_batch(
    b: u64,
    c: usize,
    n: usize,
    first: u64,
    records: u64,
    seq0: u64,
    source_text: bool,
) -> (String, String, Vec<IngestRecord>) {
    let mut rng = Rng::new((b + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let cluster = format!("cluster-{c:03}");
    let stream = format!("stream-{c:03}");
    let recs = (0..n)
        .map(|i| {
            let end_time = DAY_START + ((first + i as u64) * 86_399 / records) as i64;
            let mut record = flow(&mut rng, end_time);
            record["cluster"] = json!(cluster);
            let source = source_text.then(|| serde_json::to_vec(&record).expect("JSON"));
            IngestRecord {
                seq: seq0 + 1 + i as u64,
                log_type: LogType::Flows,
                time_ms: end_time * 1000,
                record,
                source,
            }
        })
        .collect();
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
    records: u64,
    clusters: u64,
    per_commit: usize,
    options: &StoreOptions,
    dir: &std::path::Path,
    left_out: &[String],
) {
    use cattery_logstore::engine_floor;
    use tantivy::schema::Value as _;
    let schema = engine_floor::schema(LogType::Flows);
    let dropped: Vec<tantivy::schema::Field> = left_out
        .iter()
        .map(|name| {
            schema
                .get_field(name)
                .unwrap_or_else(|_| panic!("--drop: no field {name:?} in the flows schema"))
        })
        .collect();
    std::fs::create_dir_all(dir).expect("bench directory");
    let index = tantivy::Index::builder()
        .schema(schema)
        .settings(engine_floor::settings(options))
        .create_in_dir(dir)
        .expect("index");
    let mut writer = engine_floor::writer(&index, options).expect("writer");
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
        let (cluster, stream, recs) = make_batch(b, c, n, first, records, first, true);
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
            writer.add_document(doc).expect("add");
        }
        since_commit += n;
        if since_commit >= per_commit {
            writer.commit().expect("commit");
            since_commit = 0;
        }
        first += n as u64;
        b += 1;
    }
    writer.commit().expect("commit");
    let at_last_commit = process_cpu().saturating_sub(cpu_before);
    writer.wait_merging_threads().expect("merges");
    let wall = started.elapsed();
    let total = process_cpu().saturating_sub(cpu_before);
    let engine = total.saturating_sub(gen_cpu).saturating_sub(build_cpu);
    let engine_at_last_commit = at_last_commit
        .saturating_sub(gen_cpu)
        .saturating_sub(build_cpu);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / records as f64;
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
        "  ⇒ at most {:.0} flows/s on 2 fully available cores for tantivy alone, {:.0} with our document building; wall {:.1} s",
        2e6 / per(engine),
        2e6 / per(build_cpu + engine),
        wall.as_secs_f64()
    );
    println!(
        "  disk: {:.1} bytes/flow",
        dir_bytes(dir) as f64 / records as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records = arg(&args, "--records", 2_000_000);
    let clusters = arg(&args, "--clusters", 100);
    let batch = arg(&args, "--batch", 10_000) as usize;
    let writers = arg(&args, "--writers", 1);
    let queries = arg(&args, "--queries", 100) as usize;
    let source_text = arg(&args, "--source-text", 1) != 0;
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("cattery-logstore-bench-{}", std::process::id()))
        });
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = StoreOptions::default();
    options.writer_threads = arg(&args, "--writer-threads", options.writer_threads as u64) as usize;
    options.writer_memory_bytes = arg(
        &args,
        "--writer-memory-mb",
        (options.writer_memory_bytes >> 20) as u64,
    ) as usize
        * (1 << 20);
    options.merge_min_segments = arg(
        &args,
        "--merge-min-segments",
        options.merge_min_segments as u64,
    ) as usize;
    options.docstore_zstd_level =
        arg(&args, "--zstd-level", options.docstore_zstd_level as u64) as i32;
    eprintln!("{options:?}");
    if args.iter().any(|a| a == "--engine-floor") {
        let drop: Vec<String> = args
            .iter()
            .position(|a| a == "--drop")
            .and_then(|i| args.get(i + 1))
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        engine_floor(
            records,
            clusters,
            batch * writers as usize,
            &options,
            &dir,
            &drop,
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let store = EmbeddedStore::open_with(&dir, Retention::default(), options).expect("open store");

    let batches = records.div_ceil(batch as u64);
    let writers = writers.clamp(1, clusters.min(batches).max(1));
    let rounds = batches.div_ceil(writers);
    let seqs: Vec<AtomicU64> = (0..clusters).map(|_| AtomicU64::new(0)).collect();
    let round_start = Barrier::new(writers as usize);
    let round_end = Barrier::new(writers as usize);
    let ingest_time = Mutex::new(Duration::ZERO);
    let gen_cpu = Mutex::new(Duration::ZERO);
    let started = Instant::now();
    let cpu_before = process_cpu();
    // Each round, every writer thread generates one batch (untimed), then all of them call
    // `ingest` at once, as concurrent agents' shipping streams do on the server; the time
    // from the common start to the last return is the round's ingest time.
    std::thread::scope(|s| {
        for w in 0..writers {
            let (store, seqs, round_start, round_end, ingest_time, gen_cpu) = (
                &store,
                &seqs,
                &round_start,
                &round_end,
                &ingest_time,
                &gen_cpu,
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
                        make_batch(b, c, n, first, records, seq0, source_text);
                    *gen_cpu.lock().unwrap_or_else(|e| e.into_inner()) +=
                        thread_cpu().saturating_sub(gen_started);
                    round_start.wait();
                    let t = Instant::now();
                    if n > 0 {
                        let res = store.ingest(&cluster, &stream, recs).expect("ingest");
                        assert_eq!(res.stored, n);
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
    let ingest_time = ingest_time.into_inner().unwrap_or_else(|e| e.into_inner());
    let wall = started.elapsed();
    let store_cpu = process_cpu()
        .saturating_sub(cpu_before)
        .saturating_sub(gen_cpu.into_inner().unwrap_or_else(|e| e.into_inner()));
    let bytes = dir_bytes(&dir);
    println!(
        "records: {records} from {clusters} clusters, batches of {batch}, {writers} concurrent writer(s)"
    );
    println!(
        "ingest: {:.0} records/s (time inside LogStore::ingest, each batch committed+fsynced); {:.0}/s wall incl. generating JSON",
        records as f64 / ingest_time.as_secs_f64(),
        records as f64 / wall.as_secs_f64()
    );
    println!(
        "store CPU: {:.1} s, {:.1} µs/record (process CPU during ingest minus JSON generation; includes background merges finished by then)",
        store_cpu.as_secs_f64(),
        store_cpu.as_secs_f64() * 1e6 / records as f64
    );
    println!(
        "disk: {:.1} MB, {:.1} bytes/record",
        bytes as f64 / 1e6,
        bytes as f64 / records as f64
    );

    let all: Vec<String> = (0..clusters).map(|c| format!("cluster-{c:03}")).collect();
    let mut rng = Rng::new(99);
    let mut filtered = Vec::new();
    let mut terms = Vec::new();
    let mut text = Vec::new();
    let mut hits_seen = 0;
    let mut text_hits_seen = 0;
    for q in 0..queries + 5 {
        // Filtered search: 10 clusters, denied flows from one namespace in a 6-hour window, newest 100.
        let from = DAY_START + rng.below(18) as i64 * 3600;
        let picked: Vec<String> = (0..10)
            .map(|_| all[rng.below(clusters) as usize].clone())
            .collect();
        let req = SearchRequest {
            clusters: picked,
            time_range: Some(TimeRange {
                from: Some(json!(from * 1000)),
                to: Some(json!((from + 6 * 3600) * 1000)),
            }),
            filters: vec![
                Filter::equals("action", "deny"),
                Filter::equals("source_namespace", NAMESPACES[rng.below(12) as usize]),
            ],
            size: Some(100),
            ..SearchRequest::default()
        };
        let t = Instant::now();
        let res = store.search(LogType::Flows, &req).expect("search");
        let d = t.elapsed();
        hits_seen += res.hits.total.value;
        // Free text: 10 clusters, 6-hour window, two words (an app and a namespace, found in
        // names, labels, services and policies), newest 100.
        let req = SearchRequest {
            clusters: (0..10)
                .map(|_| all[rng.below(clusters) as usize].clone())
                .collect(),
            time_range: Some(TimeRange {
                from: Some(json!(from * 1000)),
                to: Some(json!((from + 6 * 3600) * 1000)),
            }),
            query: Some(format!(
                "{} {}",
                APPS[rng.below(8) as usize],
                NAMESPACES[rng.below(12) as usize]
            )),
            size: Some(100),
            ..SearchRequest::default()
        };
        let t = Instant::now();
        let res = store.search(LogType::Flows, &req).expect("free text");
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
        let res = store.search(LogType::Flows, &req).expect("aggs");
        let d2 = t.elapsed();
        assert_eq!(res.hits.total.value, records);
        if q >= 5 {
            filtered.push(d);
            terms.push(d2);
            text.push(d3);
        }
    }
    println!(
        "filtered search (10 clusters, 2 filters, 6 h window, newest 100; avg {} matches): p50 {:.1} ms, p99 {:.1} ms",
        hits_seen / (queries as u64 + 5),
        pct(&mut filtered, 0.5),
        pct(&mut filtered, 0.99)
    );
    println!(
        "free-text search (10 clusters, 2 words, 6 h window, newest 100; avg {} matches): p50 {:.1} ms, p99 {:.1} ms",
        text_hits_seen / (queries as u64 + 5),
        pct(&mut text, 0.5),
        pct(&mut text, 0.99)
    );
    println!(
        "top-10 terms aggregation over all {records} records, {clusters} clusters: p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut terms, 0.5),
        pct(&mut terms, 0.99)
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
