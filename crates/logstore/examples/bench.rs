//! Log store benchmark: generates realistic Calico flow logs from many clusters, ingests them
//! in batches (each batch durable before the next, as the server does), then times a filtered
//! search and a top-10 terms aggregation and reports bytes on disk per record.
//!
//! `cargo run --release -p cattery-logstore --example bench -- [--records N] [--clusters C]
//! [--batch B] [--queries Q] [--dir PATH]`

#![recursion_limit = "256"]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cattery_logstore::{
    EmbeddedStore, Filter, IngestRecord, LogStore, LogType, Retention, SearchRequest, TimeRange,
};
use serde_json::{Value, json};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records = arg(&args, "--records", 2_000_000);
    let clusters = arg(&args, "--clusters", 100);
    let batch = arg(&args, "--batch", 10_000) as usize;
    let queries = arg(&args, "--queries", 100) as usize;
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("cattery-logstore-bench-{}", std::process::id()))
        });
    let _ = std::fs::remove_dir_all(&dir);
    let store = EmbeddedStore::open(&dir, Retention::default()).expect("open store");

    // One day of traffic ending now-ish (a fixed day so runs are comparable).
    let day_start: i64 = 1_795_478_400; // 2026-11-24T00:00:00Z
    let mut rng = Rng(7);
    let mut seqs = vec![0u64; clusters as usize];
    let mut ingest_time = Duration::ZERO;
    let mut generated = 0u64;
    let started = Instant::now();
    while generated < records {
        // One batch = one cluster's shipment (the server ingests per cluster and stream).
        let c = (generated / batch as u64 % clusters) as usize;
        let n = batch.min((records - generated) as usize);
        let recs: Vec<IngestRecord> = (0..n)
            .map(|i| {
                let end_time = day_start + ((generated + i as u64) * 86_399 / records) as i64;
                seqs[c] += 1;
                IngestRecord {
                    seq: seqs[c],
                    log_type: LogType::Flows,
                    time_ms: end_time * 1000,
                    record: flow(&mut rng, end_time),
                }
            })
            .collect();
        let t = Instant::now();
        let cluster = format!("cluster-{c:03}");
        let r = store
            .ingest(&cluster, &format!("stream-{c:03}"), recs)
            .expect("ingest");
        ingest_time += t.elapsed();
        assert_eq!(r.stored, n);
        generated += n as u64;
        if generated.is_multiple_of(batch as u64 * 50) {
            eprintln!(
                "  {generated} records, {:.0}/s in ingest",
                generated as f64 / ingest_time.as_secs_f64()
            );
        }
    }
    let wall = started.elapsed();
    let bytes = dir_bytes(&dir);
    println!("records: {records} from {clusters} clusters, batches of {batch}");
    println!(
        "ingest: {:.0} records/s (time inside LogStore::ingest, each batch committed+fsynced); {:.0}/s wall incl. generating JSON",
        records as f64 / ingest_time.as_secs_f64(),
        records as f64 / wall.as_secs_f64()
    );
    println!(
        "disk: {:.1} MB, {:.1} bytes/record",
        bytes as f64 / 1e6,
        bytes as f64 / records as f64
    );

    let all: Vec<String> = (0..clusters).map(|c| format!("cluster-{c:03}")).collect();
    let mut rng = Rng(99);
    let mut filtered = Vec::new();
    let mut terms = Vec::new();
    let mut hits_seen = 0;
    for q in 0..queries + 5 {
        // Filtered search: 10 clusters, denied flows from one namespace in a 6-hour window, newest 100.
        let from = day_start + rng.below(18) as i64 * 3600;
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
        }
    }
    println!(
        "filtered search (10 clusters, 2 filters, 6 h window, newest 100; avg {} matches): p50 {:.1} ms, p99 {:.1} ms",
        hits_seen / (queries as u64 + 5),
        pct(&mut filtered, 0.5),
        pct(&mut filtered, 0.99)
    );
    println!(
        "top-10 terms aggregation over all {records} records, {clusters} clusters: p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut terms, 0.5),
        pct(&mut terms, 0.99)
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
