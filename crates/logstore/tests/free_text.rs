//! Free-text search gives the live tail's answer (`matches`) for every word of a set of
//! awkwardly shaped flow records — in indices written now (most keyword words found through
//! the columns' dictionaries), in an index written by the previous version (every word in
//! `_all`; a fixture checked into `tests/fixtures/legacy-free-text`), and in one daily index
//! holding segments of both.

use std::collections::BTreeSet;
use std::path::Path;

use cattery_logstore::{
    ALL_CLUSTERS, EmbeddedStore, IngestRecord, LogStore, LogType, Retention, SearchRequest, matches,
};
use serde_json::Value;

/// The records of the fixture (the legacy index holds them as cluster `east`, stream
/// `fixture-stream`, seqs 1–3 and 11–13).
fn records() -> Vec<Value> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/free_text_flows.json"),
    )
    .expect("fixture records");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// Seqs the legacy fixture used: two batches of three.
fn seq_of(i: usize) -> u64 {
    if i < 3 { i as u64 + 1 } else { i as u64 + 8 }
}

/// Ingests `recs[range]` (seqs as in the fixture).
fn ingest(
    store: &EmbeddedStore,
    cluster: &str,
    stream: &str,
    recs: &[Value],
    range: std::ops::Range<usize>,
) {
    let n = range.len();
    let batch = range
        .map(|i| (i, &recs[i]))
        .map(|(i, r)| IngestRecord {
            seq: seq_of(i),
            log_type: LogType::Flows,
            time_ms: r["end_time"].as_i64().expect("end_time") * 1000,
            record: r.clone(),
            // The text as received, as the server hands it over (odd records), or none.
            source: (i % 2 == 1)
                .then(|| serde_json::to_vec(r).expect("JSON"))
                .and_then(|text| cattery_api::logs::text_with_cluster(&text, cluster)),
        })
        .collect();
    let report = store.ingest(cluster, stream, batch).expect("ingest");
    assert_eq!(report.stored, n);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

/// Words to try: every alphanumeric run of every string in the records (lower-cased, as
/// typed, and upper-cased), numbers that appear as JSON numbers, and words in no record.
fn words(recs: &[Value]) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                for w in s
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    out.insert(w.to_string());
                    out.insert(w.to_lowercase());
                    out.insert(w.to_uppercase());
                }
            }
            Value::Array(a) => a.iter().for_each(|i| walk(i, out)),
            Value::Object(o) => o.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    recs.iter().for_each(|r| walk(r, &mut out));
    for w in [
        "east",
        "west",
        "cluster",
        "80",
        "8080",
        "6379",
        "53",
        "100",
        "true",
        "false",
        "1",
        "5",
        "3",
        "unicorn",
        "stra",
        "fronten",
        "allowfrontend",
    ] {
        out.insert(w.into());
    }
    out
}

/// `(cluster, stream:seq)` of every stored record matching `query`.
fn search(store: &EmbeddedStore, query: &str) -> BTreeSet<String> {
    let req = SearchRequest {
        clusters: vec![ALL_CLUSTERS.into()],
        query: Some(query.into()),
        size: Some(1000),
        ..SearchRequest::default()
    };
    let res = store.search(LogType::Flows, &req).expect("search");
    assert_eq!(res.hits.total.value as usize, res.hits.hits.len());
    res.hits
        .hits
        .into_iter()
        .map(|h| format!("{}/{}", h.source["cluster"].as_str().unwrap_or("?"), h.id))
        .collect()
}

/// What the live tail says: the records (as stored, with `cluster`) `query` matches.
fn expected(stored: &[(String, String, Value)], query: &str) -> BTreeSet<String> {
    stored
        .iter()
        .filter(|(_, _, r)| matches(&[], Some(query), r))
        .map(|(cluster, id, _)| format!("{cluster}/{id}"))
        .collect()
}

fn stored_as(cluster: &str, stream: &str, recs: &[Value]) -> Vec<(String, String, Value)> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            r["cluster"] = Value::String(cluster.into());
            (cluster.to_string(), format!("{stream}:{}", seq_of(i)), r)
        })
        .collect()
}

fn check_every_word(store: &EmbeddedStore, stored: &[(String, String, Value)], recs: &[Value]) {
    let words = words(recs);
    let mut non_trivial = 0;
    for w in &words {
        let want = expected(stored, w);
        non_trivial += usize::from(!want.is_empty() && want.len() < stored.len());
        assert_eq!(search(store, w), want, "query {w:?}");
    }
    assert!(non_trivial > 30, "only {non_trivial} selective words");
    // Several words: every one must be in the record (not necessarily in the same value).
    for q in [
        "frontend shop",
        "frontend cache allow",
        "kube dns deny",
        "straße zebra",
        "payments backend java",
        "frontend tier pending",
        "east frontend",
        "redis 6379",
    ] {
        assert_eq!(search(store, q), expected(stored, q), "query {q:?}");
    }
}

/// Addresses spelt the way the IP column prints them back (words found through the column)
/// and otherwise (words kept in `_all`), in every IP field shape.
fn ip_records() -> Vec<Value> {
    let t = 1_795_478_400 + 100;
    [
        serde_json::json!({"source_ip": "192.168.1.255", "dest_ip": "fd00::1"}),
        serde_json::json!({"source_ip": "FD00::1", "dest_ip": "::ffff:10.1.1.1"}),
        serde_json::json!({"source_ip": "fd00:0:0::2", "dest_ip": "2001:db8::abcd:1"}),
        serde_json::json!({"source_ip": "010.1.1.1", "dest_ip": "-"}),
        serde_json::json!({"source_ip": "10.1.1.1", "dest_ip": ["10.9.9.9"]}),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, mut r)| {
        r["end_time"] = serde_json::json!(t + i as i64);
        r["action"] = serde_json::json!("allow");
        r
    })
    .collect()
}

#[test]
fn free_text_finds_every_word_in_new_indices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Retention::default()).expect("open");
    let recs = records();
    ingest(&store, "east", "fixture-stream", &recs, 0..3);
    ingest(&store, "east", "fixture-stream", &recs, 3..recs.len());
    let ips = ip_records();
    ingest(&store, "east", "ip-stream", &ips, 0..ips.len());
    let mut stored = stored_as("east", "fixture-stream", &recs);
    stored.extend(stored_as("east", "ip-stream", &ips));
    let mut all = recs.clone();
    all.extend(ips);
    check_every_word(&store, &stored, &all);
    for q in ["db8 abcd", "ffff 10", "fd00 2", "192 255", "10 9"] {
        assert_eq!(search(&store, q), expected(&stored, q), "query {q:?}");
    }
}

#[test]
fn free_text_finds_every_word_in_indices_of_the_previous_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-free-text"),
        dir.path(),
    );
    let recs = records();
    let store = EmbeddedStore::open(dir.path(), Retention::default()).expect("open legacy");
    let old = stored_as("east", "fixture-stream", &recs);
    check_every_word(&store, &old, &recs);

    // The same day written on by this version: new segments next to the old ones.
    ingest(&store, "west", "new-stream", &recs, 0..3);
    ingest(&store, "west", "new-stream", &recs, 3..recs.len());
    let mut both = old;
    both.extend(stored_as("west", "new-stream", &recs));
    check_every_word(&store, &both, &recs);

    // And after reopening (the writer closed, segments possibly merged).
    drop(store);
    let store = EmbeddedStore::open(dir.path(), Retention::default()).expect("reopen");
    check_every_word(&store, &both, &recs);
}
