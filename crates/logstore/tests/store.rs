//! The embedded store against a known generated data set: every expected answer is computed
//! here, independently of the engine, from the generator's own structs.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use cattery_logstore::{
    EmbeddedStore, Filter, IngestRecord, IngestReport, LogStore, LogStoreError, LogType,
    RangeBounds, Retention, SearchRequest, SortField, SortOrder, TimeRange, matches,
};
use serde_json::{Value, json};

/// 2026-11-24T00:00:00Z in seconds.
const BASE: i64 = 1_795_478_400;
const CLUSTERS: [&str; 3] = ["east", "west", "north"];
const NAMESPACES: [&str; 4] = ["shop", "web", "db", "kube-system"];

#[derive(Clone, Debug)]
struct Flow {
    id: String,
    cluster: &'static str,
    src_ns: &'static str,
    src_name: String,
    src_ip: IpAddr,
    dst_name: String,
    dst_port: i64,
    action: &'static str,
    bytes_in: i64,
    end_time: i64,
    labels: Vec<String>,
    policies: Vec<String>,
}

impl Flow {
    fn json(&self) -> Value {
        json!({
            "start_time": self.end_time - 5, "end_time": self.end_time,
            "source_ip": self.src_ip.to_string(), "source_name": self.src_name, "source_name_aggr": "-",
            "source_namespace": self.src_ns, "source_port": 40000, "source_type": "wep",
            "source_labels": {"labels": self.labels},
            "dest_ip": "10.9.9.9", "dest_name": self.dst_name, "dest_namespace": "db", "dest_port": self.dst_port,
            "dest_type": "wep", "dest_labels": null, "proto": "tcp", "action": self.action, "reporter": "src",
            "policies": {"enforced_policies": self.policies, "pending_policies": []},
            "bytes_in": self.bytes_in, "bytes_out": 10, "packets_in": 1, "packets_out": 1,
            "num_flows": 1, "num_flows_started": 1, "num_flows_completed": 1,
            "host": format!("node-{}", self.bytes_in % 3), "process_name": "-", "cluster": self.cluster,
        })
    }
}

/// The seeded generator of the data set (`fastrand`), so every run sees the same records.
struct Rng(fastrand::Rng);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.u64(..) >> 33
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.0.usize(..xs.len())]
    }
}

/// `n` flows over ~`n` minutes from 2026-11-24T00:00Z, three per timestamp (ties), from
/// two streams per cluster.
fn dataset(n: usize) -> Vec<(String, u64, Flow)> {
    let mut rng = Rng::new(42);
    let mut seqs: BTreeMap<String, u64> = BTreeMap::new();
    (0..n)
        .map(|i| {
            let cluster = rng.pick(&CLUSTERS);
            let stream = format!("{cluster}-s{}", rng.next() % 2);
            let seq = seqs.entry(stream.clone()).or_insert(0);
            *seq += 1;
            let src_ip: IpAddr = if rng.next().is_multiple_of(4) {
                format!("fd00:{:x}::{:x}", rng.next() % 3, rng.next() % 200)
                    .parse()
                    .unwrap()
            } else {
                format!(
                    "10.{}.{}.{}",
                    rng.next() % 3,
                    rng.next() % 4,
                    rng.next() % 250
                )
                .parse()
                .unwrap()
            };
            let src_ns = rng.pick(&NAMESPACES);
            let labels: Vec<String> = (0..rng.next() % 3)
                .map(|j| format!("app={}", ["a", "b", "c"][(j as usize + i) % 3]))
                .collect();
            let f = Flow {
                id: format!("{stream}:{seq}"),
                cluster,
                src_ns,
                src_name: format!("{}-{}", rng.pick(&["web-", "api-", "db-"]), rng.next() % 20),
                src_ip,
                dst_name: format!("svc-{}", rng.next() % 5),
                dst_port: rng.pick(&[53i64, 80, 443, 5432]),
                action: if rng.next().is_multiple_of(5) {
                    "deny"
                } else {
                    "allow"
                },
                bytes_in: (rng.next() % 5000) as i64,
                end_time: BASE + (i as i64 / 3) * 180,
                labels,
                policies: vec![format!(
                    "0|default|{src_ns}/default.p{}|allow|0",
                    rng.next() % 3
                )],
            };
            (stream, *seq, f)
        })
        .collect()
}

fn ingest_all(store: &EmbeddedStore, data: &[(String, u64, Flow)], batch: usize) {
    let mut by_stream: BTreeMap<(&str, &str), Vec<IngestRecord>> = BTreeMap::new();
    for (stream, seq, f) in data {
        by_stream
            .entry((f.cluster, stream))
            .or_default()
            .push(IngestRecord {
                seq: *seq,
                log_type: LogType::Flows,
                time_ms: f.end_time * 1000,
                record: f.json(),
                // Half the records come with their JSON text, as the server's do.
                source: (seq % 2 == 0).then(|| serde_json::to_vec(&f.json()).expect("JSON")),
            });
    }
    for ((cluster, stream), recs) in by_stream {
        for chunk in recs.chunks(batch) {
            let r = store.ingest(cluster, stream, chunk.to_vec()).unwrap();
            assert_eq!(r.stored, chunk.len());
            assert_eq!(r.duplicates, 0);
        }
    }
}

fn all_clusters() -> Vec<String> {
    CLUSTERS.iter().map(|s| s.to_string()).collect()
}

fn req(filters: Vec<Filter>) -> SearchRequest {
    SearchRequest {
        clusters: all_clusters(),
        filters,
        size: Some(10_000),
        ..SearchRequest::default()
    }
}

fn ids(store: &EmbeddedStore, r: &SearchRequest) -> BTreeSet<String> {
    let res = store.search(LogType::Flows, r).unwrap();
    let ids: BTreeSet<String> = res.hits.hits.iter().map(|h| h.id.clone()).collect();
    assert_eq!(ids.len(), res.hits.hits.len(), "duplicate hits");
    assert_eq!(res.hits.total.value as usize, ids.len());
    ids
}

fn expect(data: &[(String, u64, Flow)], pred: impl Fn(&Flow) -> bool) -> BTreeSet<String> {
    data.iter()
        .filter(|(_, _, f)| pred(f))
        .map(|(_, _, f)| f.id.clone())
        .collect()
}

/// An independent expectation for one filter.
type Pred = Box<dyn Fn(&Flow) -> bool>;

fn open(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, Retention::default()).unwrap()
}

#[test]
fn filters_match_independent_answers_and_live_tail_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = dataset(1500);
    ingest_all(&store, &data, 97);
    let in_cidr = |ip: &IpAddr, net: &str| {
        let (lo, hi): (u128, u128) = match (ip, net) {
            (IpAddr::V4(v4), "10.1.0.0/16") => (u32::from(*v4) as u128, 0),
            (IpAddr::V6(v6), "fd00:1::/32") => (u128::from(*v6), 1),
            _ => return false,
        };
        if hi == 0 {
            (lo as u32) >> 16 == (10 << 8 | 1)
        } else {
            lo >> 96 == 0xfd00_0001
        }
    };
    let cases: Vec<(Filter, Pred)> = vec![
        (
            Filter::equals("action", "deny"),
            Box::new(|f| f.action == "deny"),
        ),
        (
            Filter {
                field: "source_namespace".into(),
                in_: Some(vec![json!("shop"), json!("db")]),
                ..Filter::default()
            },
            Box::new(|f| f.src_ns == "shop" || f.src_ns == "db"),
        ),
        (
            Filter {
                field: "source_name".into(),
                prefix: Some("api-".into()),
                ..Filter::default()
            },
            Box::new(|f| f.src_name.starts_with("api-")),
        ),
        (
            Filter {
                field: "source_ip".into(),
                cidr: Some("10.1.0.0/16".into()),
                ..Filter::default()
            },
            Box::new(move |f| in_cidr(&f.src_ip, "10.1.0.0/16")),
        ),
        (
            Filter {
                field: "source_ip".into(),
                cidr: Some("fd00:1::/32".into()),
                ..Filter::default()
            },
            Box::new(move |f| in_cidr(&f.src_ip, "fd00:1::/32")),
        ),
        (
            Filter {
                field: "bytes_in".into(),
                range: Some(RangeBounds {
                    gte: Some(json!(100)),
                    lt: Some(json!(1000)),
                    ..RangeBounds::default()
                }),
                ..Filter::default()
            },
            Box::new(|f| (100..1000).contains(&f.bytes_in)),
        ),
        (
            Filter {
                field: "dest_port".into(),
                not_equals: Some(json!(53)),
                ..Filter::default()
            },
            Box::new(|f| f.dst_port != 53),
        ),
        (
            Filter::equals("dest_port", 443),
            Box::new(|f| f.dst_port == 443),
        ),
        (
            Filter::equals("source_labels.labels", "app=b"),
            Box::new(|f| f.labels.iter().any(|l| l == "app=b")),
        ),
        (
            Filter {
                field: "source_labels.labels".into(),
                not_equals: Some(json!("app=a")),
                ..Filter::default()
            },
            Box::new(|f| !f.labels.iter().any(|l| l == "app=a")),
        ),
        (
            Filter {
                field: "policies.enforced_policies".into(),
                prefix: Some("0|default|web/".into()),
                ..Filter::default()
            },
            Box::new(|f| f.src_ns == "web"),
        ),
        (
            Filter {
                field: "end_time".into(),
                range: Some(RangeBounds {
                    gte: Some(json!("2026-11-24T10:00:00Z")),
                    lt: Some(json!((BASE + 86_400 + 3600) * 1000)),
                    ..RangeBounds::default()
                }),
                ..Filter::default()
            },
            Box::new(|f| f.end_time >= BASE + 36_000 && f.end_time < BASE + 86_400 + 3600),
        ),
        (
            Filter::equals("source_ip", "fd00:2::10"),
            Box::new(|f| f.src_ip == "fd00:2::10".parse::<IpAddr>().unwrap()),
        ),
        (
            Filter::equals("cluster", "west"),
            Box::new(|f| f.cluster == "west"),
        ),
    ];
    for (i, (filter, pred)) in cases.iter().enumerate() {
        let want = expect(&data, pred);
        assert!(
            !want.is_empty() && want.len() < data.len(),
            "case {i} is not selective: {}",
            want.len()
        );
        let got = ids(&store, &req(vec![filter.clone()]));
        assert_eq!(got, want, "case {i}: {filter:?}");
        let tail: BTreeSet<String> = data
            .iter()
            .filter(|(_, _, f)| matches(std::slice::from_ref(filter), None, &f.json()))
            .map(|(_, _, f)| f.id.clone())
            .collect();
        assert_eq!(
            tail, want,
            "live-tail matches() disagrees on case {i}: {filter:?}"
        );
    }

    // Filters combine with AND, plus free text.
    let combo = vec![
        Filter::equals("action", "allow"),
        Filter::equals("dest_port", 80),
    ];
    let mut r = req(combo.clone());
    // Words are lower-cased alphanumeric runs; all must appear somewhere in the record.
    r.query = Some("Kube-System svc".into());
    let want = expect(&data, |f| {
        f.action == "allow" && f.dst_port == 80 && f.src_ns == "kube-system"
    });
    assert!(!want.is_empty());
    assert_eq!(ids(&store, &r), want);
    let tail = expect(&data, |f| {
        matches(&combo, Some("Kube-System svc"), &f.json())
    });
    assert_eq!(tail, want);

    // Time range on the record time.
    let mut r = req(vec![]);
    r.time_range = Some(TimeRange {
        from: Some(json!("2026-11-24T23:00:00Z")),
        to: Some(json!((BASE + 86_400 + 600) * 1000)),
    });
    assert_eq!(
        ids(&store, &r),
        expect(&data, |f| f.end_time >= BASE + 82_800
            && f.end_time < BASE + 87_000)
    );
}

#[test]
fn clusters_restrict_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = dataset(600);
    ingest_all(&store, &data, 50);
    let mut r = req(vec![]);
    r.clusters = vec!["east".into(), "north".into()];
    let got = ids(&store, &r);
    assert_eq!(got, expect(&data, |f| f.cluster != "west"));
    let res = store.search(LogType::Flows, &r).unwrap();
    assert!(res.hits.hits.iter().all(|h| h.source["cluster"] != "west"));
    r.clusters = vec![];
    assert_eq!(ids(&store, &r).len(), 0);
    r.clusters = vec!["nope".into()];
    assert_eq!(ids(&store, &r).len(), 0);
    r.clusters = vec![cattery_logstore::ALL_CLUSTERS.into()];
    assert_eq!(ids(&store, &r), expect(&data, |_| true));
    // Another log type has nothing.
    let res = store.search(LogType::Dns, &req(vec![])).unwrap();
    assert_eq!(res.hits.total.value, 0);
}

fn page_through(
    store: &EmbeddedStore,
    base: SearchRequest,
    page: usize,
) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    let mut r = base;
    r.size = Some(page);
    loop {
        let res = store.search(LogType::Flows, &r).unwrap();
        if res.hits.hits.is_empty() {
            break;
        }
        assert!(res.hits.hits.len() <= page);
        let last = res.hits.hits.last().unwrap().sort.clone();
        out.extend(res.hits.hits.into_iter().map(|h| (h.id, h.sort)));
        r.search_after = Some(last);
    }
    out
}

#[test]
fn sort_and_search_after_page_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = dataset(1000);
    ingest_all(&store, &data, 64);

    // Default: time descending (with many ties resolved by the tiebreak).
    let pages = page_through(&store, req(vec![Filter::equals("action", "allow")]), 37);
    let want = expect(&data, |f| f.action == "allow");
    let got: Vec<&String> = pages.iter().map(|(id, _)| id).collect();
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        got.len(),
        "duplicates across pages"
    );
    assert_eq!(
        got.iter().map(|s| (*s).clone()).collect::<BTreeSet<_>>(),
        want,
        "gaps across pages"
    );
    let times: Vec<i64> = pages.iter().map(|(_, s)| s[0].as_i64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not time-descending"
    );
    let by_id: BTreeMap<&str, &Flow> = data.iter().map(|(_, _, f)| (f.id.as_str(), f)).collect();
    for (id, s) in &pages {
        assert_eq!(s[0].as_i64().unwrap(), by_id[id.as_str()].end_time * 1000);
    }

    // A keyword then a number, ascending/descending.
    let mut r = req(vec![]);
    r.sort = vec![
        SortField {
            field: "source_namespace".into(),
            order: Some(SortOrder::Asc),
        },
        SortField {
            field: "bytes_in".into(),
            order: Some(SortOrder::Desc),
        },
    ];
    let pages = page_through(&store, r, 101);
    assert_eq!(pages.len(), data.len());
    let keys: Vec<(String, i64)> = pages
        .iter()
        .map(|(id, _)| {
            (
                by_id[id.as_str()].src_ns.to_string(),
                by_id[id.as_str()].bytes_in,
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    assert_eq!(keys, sorted);
    assert_eq!(
        pages
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>()
            .len(),
        data.len()
    );
}

#[test]
fn aggregations_match_independent_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = dataset(2000);
    ingest_all(&store, &data, 300);
    let mut r = req(vec![Filter::equals("action", "allow")]);
    r.size = Some(0);
    r.aggs = Some(json!({
        "top": {"terms": {"field": "source_namespace", "size": 10}, "aggs": {"b": {"sum": {"field": "bytes_in"}}}},
        "per_hour": {"date_histogram": {"field": "end_time", "fixed_interval": "1h"}},
        "bytes": {"sum": {"field": "bytes_in"}}, "avg_b": {"avg": {"field": "bytes_in"}},
        "max_b": {"max": {"field": "bytes_in"}}, "names": {"cardinality": {"field": "source_name"}},
        "labels": {"terms": {"field": "source_labels.labels"}}
    }));
    let res = store.search(LogType::Flows, &r).unwrap();
    assert!(res.hits.hits.is_empty());
    let a = res.aggregations.unwrap();
    let sel: Vec<&Flow> = data
        .iter()
        .map(|(_, _, f)| f)
        .filter(|f| f.action == "allow")
        .collect();
    assert_eq!(res.hits.total.value as usize, sel.len());

    let mut per_ns: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    for f in &sel {
        let e = per_ns.entry(f.src_ns).or_default();
        e.0 += 1;
        e.1 += f.bytes_in;
    }
    let buckets = a["top"]["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), per_ns.len());
    for b in buckets {
        let (n, sum) = per_ns[b["key"].as_str().unwrap()];
        assert_eq!(b["doc_count"].as_u64().unwrap(), n, "{b}");
        assert_eq!(b["b"]["value"].as_f64().unwrap(), sum as f64, "{b}");
    }
    let counts: Vec<u64> = buckets
        .iter()
        .map(|b| b["doc_count"].as_u64().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "terms buckets not by count"
    );

    let mut per_hour: BTreeMap<i64, u64> = BTreeMap::new();
    for f in &sel {
        *per_hour.entry(f.end_time / 3600 * 3600 * 1000).or_default() += 1;
    }
    let got: BTreeMap<i64, u64> = a["per_hour"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["doc_count"].as_u64().unwrap() > 0)
        .map(|b| {
            (
                b["key"].as_f64().unwrap() as i64,
                b["doc_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, per_hour);
    assert!(
        a["per_hour"]["buckets"][0]["key_as_string"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-24T00:00:00")
    );

    let sum: i64 = sel.iter().map(|f| f.bytes_in).sum();
    assert_eq!(a["bytes"]["value"].as_f64().unwrap(), sum as f64);
    assert!((a["avg_b"]["value"].as_f64().unwrap() - sum as f64 / sel.len() as f64).abs() < 1e-6);
    assert_eq!(
        a["max_b"]["value"].as_f64().unwrap(),
        sel.iter().map(|f| f.bytes_in).max().unwrap() as f64
    );
    let names: HashSet<&str> = sel.iter().map(|f| f.src_name.as_str()).collect();
    let card = a["names"]["value"].as_f64().unwrap();
    assert!(
        (card - names.len() as f64).abs() <= 1.0,
        "cardinality {card} vs {}",
        names.len()
    );

    let mut per_label: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &sel {
        for l in f.labels.iter().collect::<BTreeSet<_>>() {
            *per_label.entry(l.as_str()).or_default() += 1;
        }
    }
    let got: BTreeMap<&str, u64> = a["labels"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["key"].as_str().unwrap(), b["doc_count"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, per_label);
}

fn batch(data: &[(String, u64, Flow)], stream: &str) -> Vec<IngestRecord> {
    data.iter()
        .filter(|(s, _, _)| s == stream)
        .map(|(_, seq, f)| IngestRecord {
            seq: *seq,
            log_type: LogType::Flows,
            time_ms: f.end_time * 1000,
            record: f.json(),
            source: None,
        })
        .collect()
}

fn count(store: &EmbeddedStore) -> u64 {
    let mut r = req(vec![]);
    r.size = Some(0);
    store.search(LogType::Flows, &r).unwrap().hits.total.value
}

#[test]
fn ingest_is_exactly_once_across_resends_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // Spans two days, so watermarks are per (stream, daily index).
    let data = dataset(1200);
    let recs = batch(&data, "east-s0");
    let n = recs.len();
    assert!(n > 100);
    {
        let store = open(dir.path());
        let r = store
            .ingest("east", "east-s0", recs[..n / 2].to_vec())
            .unwrap();
        assert_eq!((r.stored, r.duplicates), (n / 2, 0));
        // The same batch again.
        let r = store
            .ingest("east", "east-s0", recs[..n / 2].to_vec())
            .unwrap();
        assert_eq!((r.stored, r.duplicates), (0, n / 2));
        // An overlapping resend.
        let r = store
            .ingest("east", "east-s0", recs[n / 4..3 * n / 4].to_vec())
            .unwrap();
        assert_eq!((r.stored, r.duplicates), (3 * n / 4 - n / 2, n / 2 - n / 4));
        assert_eq!(count(&store) as usize, 3 * n / 4);
        // Another stream with the same seq numbers is not a duplicate.
        let other = batch(&data, "east-s1");
        let r = store.ingest("east", "east-s1", other.clone()).unwrap();
        assert_eq!((r.stored, r.duplicates), (other.len(), 0));
    }
    // Reopen (as after a crash/restart): watermarks come back from the indices.
    let store = open(dir.path());
    let r = store.ingest("east", "east-s0", recs.clone()).unwrap();
    assert_eq!((r.stored, r.duplicates), (n - 3 * n / 4, 3 * n / 4));
    let other = batch(&data, "east-s1");
    let r = store.ingest("east", "east-s1", other.clone()).unwrap();
    assert_eq!((r.stored, r.duplicates), (0, other.len()));
    assert_eq!(count(&store) as usize, n + other.len());
    let got = ids(&store, &req(vec![]));
    assert_eq!(
        got,
        data.iter()
            .filter(|(s, _, _)| s.starts_with("east-"))
            .map(|(_, _, f)| f.id.clone())
            .collect()
    );
    // The cluster comes from the caller, whatever the record said.
    let mut forged = batch(&data, "west-s0")[..1].to_vec();
    forged[0].record["cluster"] = json!("east");
    store.ingest("west", "west-s0", forged).unwrap();
    let mut r = req(vec![]);
    r.clusters = vec!["west".into()];
    let res = store.search(LogType::Flows, &r).unwrap();
    assert_eq!(res.hits.total.value, 1);
    assert_eq!(res.hits.hits[0].source["cluster"], "west");
}

#[test]
fn concurrent_ingests_share_commits_and_stay_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(3000);
    let streams: BTreeSet<String> = data.iter().map(|(s, _, _)| s.clone()).collect();
    let store = open(dir.path());
    let stored = std::sync::atomic::AtomicUsize::new(0);
    let dups = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        // One agent per stream, each shipping its stream in order, one batch at a time…
        for stream in &streams {
            let (store, data, stored, dups) = (&store, &data, &stored, &dups);
            scope.spawn(move || {
                let cluster = stream.split('-').next().unwrap();
                for chunk in batch(data, stream).chunks(37) {
                    let r = store.ingest(cluster, stream, chunk.to_vec()).unwrap();
                    stored.fetch_add(r.stored, std::sync::atomic::Ordering::Relaxed);
                    dups.fetch_add(r.duplicates, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        // …while a reconnected agent resends all of one stream at the same time.
        let (store, data, stored, dups) = (&store, &data, &stored, &dups);
        scope.spawn(move || {
            let r = store
                .ingest("east", "east-s0", batch(data, "east-s0"))
                .unwrap();
            stored.fetch_add(r.stored, std::sync::atomic::Ordering::Relaxed);
            dups.fetch_add(r.duplicates, std::sync::atomic::Ordering::Relaxed);
        });
    });
    let resent = batch(&data, "east-s0").len();
    assert_eq!(stored.into_inner(), data.len());
    assert_eq!(dups.into_inner(), resent);
    assert_eq!(count(&store) as usize, data.len());
    let all: BTreeSet<String> = data.iter().map(|(_, _, f)| f.id.clone()).collect();
    assert_eq!(ids(&store, &req(vec![])), all);
    // Durable: a reopened store has everything and treats a resend as duplicates.
    drop(store);
    let store = open(dir.path());
    assert_eq!(count(&store) as usize, data.len());
    let r = store
        .ingest("east", "east-s0", batch(&data, "east-s0"))
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (0, resent));
}

#[test]
fn retention_deletes_expired_days_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention::default().with(LogType::Flows, 2);
    let store = EmbeddedStore::open(dir.path(), retention).unwrap();
    let day_ms = 86_400_000i64;
    let day0 = BASE * 1000;
    let rec = |seq: u64, t: LogType, ms: i64| IngestRecord {
        seq,
        log_type: t,
        time_ms: ms,
        record: json!({"end_time": ms / 1000, "stageTimestamp": "x", "cluster": "east"}),
        source: None,
    };
    let mut recs = Vec::new();
    for d in 0..5 {
        recs.push(rec(
            d as u64 * 2 + 1,
            LogType::Flows,
            day0 + d * day_ms + 1000,
        ));
        recs.push(rec(
            d as u64 * 2 + 2,
            LogType::Audit,
            day0 + d * day_ms + 2000,
        ));
    }
    store.ingest("east", "s", recs).unwrap();
    assert_eq!(store.indices().len(), 10);
    // Now = day 4, 12:00. Flows keep 2 days: days whose end <= now - 2d (= day 2, 12:00) go: day 0 and 1.
    let now = day0 + 4 * day_ms + day_ms / 2;
    let mut deleted = store.expire(now).unwrap();
    deleted.sort();
    assert_eq!(deleted, vec!["flows-2026-11-24", "flows-2026-11-25"]);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            "audit-2026-11-24",
            "audit-2026-11-25",
            "audit-2026-11-26",
            "audit-2026-11-27",
            "audit-2026-11-28",
            "flows-2026-11-26",
            "flows-2026-11-27",
            "flows-2026-11-28",
            "streams.db",
        ]
    );
    assert_eq!(count(&store), 3);
    assert!(store.expire(now).unwrap().is_empty());
    // Still true after a restart.
    drop(store);
    let store = EmbeddedStore::open(dir.path(), retention).unwrap();
    assert_eq!(count(&store), 3);
    assert_eq!(store.indices().len(), 8);
}

/// The ends of a time range are outside input (epoch ms, or a float saturated to i64): the
/// extremes select everything or nothing instead of overflowing (`to - 1` panicked on
/// `i64::MIN`).
#[test]
fn time_ranges_at_the_limits_of_i64_select_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = dataset(20);
    ingest_all(&store, &data, 20);
    let range = |from: Option<serde_json::Value>, to: Option<serde_json::Value>| {
        let mut r = req(vec![]);
        r.time_range = Some(TimeRange { from, to });
        ids(&store, &r).len()
    };
    assert_eq!(range(None, Some(json!(i64::MIN))), 0);
    assert_eq!(range(None, Some(json!(-1e300))), 0);
    assert_eq!(range(Some(json!(i64::MAX)), None), 0);
    assert_eq!(
        range(Some(json!(i64::MIN)), Some(json!(i64::MAX))),
        data.len()
    );
    assert_eq!(range(Some(json!(-1e300)), Some(json!(1e300))), data.len());
}

fn bad_field(r: Result<impl std::fmt::Debug, LogStoreError>) -> (String, String) {
    match r {
        Err(LogStoreError::BadRequest { field, message }) => (field, message),
        other => panic!("expected a bad request, got {other:?}"),
    }
}

#[test]
fn bad_requests_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = |r: SearchRequest| store.search(LogType::Flows, &r);
    let (f, m) = bad_field(s(req(vec![Filter::equals("nope", 1)])));
    assert_eq!(f, "filters[0].field");
    assert!(
        m.contains("\"nope\"") && m.contains("source_namespace"),
        "{m}"
    );
    let (f, _) = bad_field(s(req(vec![
        Filter::equals("action", "x"),
        Filter {
            field: "action".into(),
            cidr: Some("10.0.0.0/8".into()),
            ..Filter::default()
        },
    ])));
    assert_eq!(f, "filters[1].cidr");
    let (f, _) = bad_field(s(req(vec![Filter {
        field: "source_ip".into(),
        cidr: Some("10.0.0.0/40".into()),
        ..Filter::default()
    }])));
    assert_eq!(f, "filters[0].cidr");
    let (f, _) = bad_field(s(req(vec![Filter {
        field: "bytes_in".into(),
        prefix: Some("1".into()),
        ..Filter::default()
    }])));
    assert_eq!(f, "filters[0].prefix");
    let (f, _) = bad_field(s(req(vec![Filter::equals("bytes_in", "lots")])));
    assert_eq!(f, "filters[0].equals");
    let (f, _) = bad_field(s(req(vec![Filter {
        field: "end_time".into(),
        range: Some(RangeBounds {
            gte: Some(json!("yesterday")),
            ..RangeBounds::default()
        }),
        ..Filter::default()
    }])));
    assert_eq!(f, "filters[0].range.gte");
    let (f, _) = bad_field(s(req(vec![Filter {
        field: "action".into(),
        ..Filter::default()
    }])));
    assert_eq!(f, "filters[0]");
    let mut r = req(vec![]);
    r.size = Some(10_001);
    assert_eq!(bad_field(s(r)).0, "size");
    let mut r = req(vec![]);
    r.search_after = Some(vec![json!(1)]);
    assert_eq!(bad_field(s(r)).0, "searchAfter");
    let mut r = req(vec![]);
    r.sort = vec![SortField {
        field: "bogus".into(),
        order: None,
    }];
    assert_eq!(bad_field(s(r)).0, "sort[0].field");
    let mut r = req(vec![]);
    r.aggs = Some(json!({"top": {"terms": {"field": "bogus"}}}));
    assert_eq!(bad_field(s(r)).0, "aggs.top.terms.field");
    let mut r = req(vec![]);
    r.time_range = Some(TimeRange {
        from: Some(json!("soon")),
        to: None,
    });
    assert_eq!(bad_field(s(r)).0, "timeRange.from");
    let mut r = req(vec![]);
    r.aggs = Some(json!({"h": {"date_histogram": {"field": "action", "fixed_interval": "1m"}}}));
    // Ingest something so the aggregation actually runs against an index.
    let data = dataset(10);
    ingest_all(&store, &data, 10);
    let (f, m) = bad_field(s(r));
    assert_eq!(f, "aggs.h.date_histogram.field");
    assert!(m.contains("action"), "{m}");
    let mut r = req(vec![]);
    r.aggs = Some(
        json!({"h": {"date_histogram": {"field": "end_time", "fixed_interval": "fortnightly"}}}),
    );
    let (f, m) = bad_field(s(r));
    assert!(f.starts_with("aggs"), "{f}");
    assert!(!m.contains("_time"), "{m}");
    // The request body parser names fields too.
    let (f, _) = bad_field(SearchRequest::from_json(
        br#"{"clusters":["a"],"filters":[{"field":"x","in":"notalist"}]}"#,
    ));
    assert_eq!(f, "filters[0].in");
    // validate_filters gives the live tail the same errors.
    let (f, _) = bad_field(cattery_logstore::validate_filters(
        LogType::Dns,
        &[Filter::equals("action", "deny")],
    ));
    assert_eq!(f, "filters[0].field");
}

/// Issue 13: a stream id is only a stream *of a cluster*. A spool cloned into another cluster
/// (or an agent presenting another cluster's stream id with a huge seq) must not make the
/// store skip the first cluster's records, before or after a reopen.
#[test]
fn watermarks_belong_to_a_cluster_so_a_borrowed_stream_id_skips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(1200);
    let east = batch(&data, "east-s0");
    let west = batch(&data, "west-s0");
    let n = east.len();
    assert!(n > 100 && west.len() > 10);
    let with_seq = |recs: &[IngestRecord], offset: u64| -> Vec<IngestRecord> {
        recs.iter()
            .cloned()
            .map(|mut r| {
                r.seq += offset;
                r
            })
            .collect()
    };
    let clusters = |store: &EmbeddedStore, c: &str| {
        let mut r = req(vec![]);
        r.clusters = vec![c.into()];
        r.size = Some(0);
        store.search(LogType::Flows, &r).unwrap().hits.total.value as usize
    };
    let refused = |r: Result<IngestReport, LogStoreError>| match r {
        Err(LogStoreError::StreamOwned {
            stream,
            owner,
            cluster,
        }) => assert_eq!((&*stream, &*owner, &*cluster), ("shared", "east", "west")),
        other => panic!("west's batch under east's stream must be refused: {other:?}"),
    };
    {
        let store = open(dir.path());
        let r = store
            .ingest("east", "shared", east[..n / 2].to_vec())
            .unwrap();
        assert_eq!((r.stored, r.duplicates), (n / 2, 0));
        // West presents east's stream id, with seqs far above east's: refused whole.
        refused(store.ingest("west", "shared", with_seq(&west, 1 << 40)));
        assert_eq!(clusters(&store, "west"), 0);
        // East's next records are still stored.
        let r = store
            .ingest("east", "shared", east[n / 2..3 * n / 4].to_vec())
            .unwrap();
        assert_eq!((r.stored, r.duplicates), (3 * n / 4 - n / 2, 0));
        // West's own stream is west's.
        let r = store.ingest("west", "west-own", west.clone()).unwrap();
        assert_eq!((r.stored, r.duplicates), (west.len(), 0));
    }
    // After a reopen the owner is remembered and the watermarks are recovered.
    let store = open(dir.path());
    refused(store.ingest("west", "shared", with_seq(&west, 1 << 40)));
    let r = store.ingest("east", "shared", east.clone()).unwrap();
    assert_eq!((r.stored, r.duplicates), (n - 3 * n / 4, 3 * n / 4));
    assert_eq!(clusters(&store, "east"), n);
    assert_eq!(clusters(&store, "west"), west.len());
}
