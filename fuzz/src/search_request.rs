//! Log search bodies: `SearchRequest::from_json`, then the filter, query, sort and aggregation
//! parsers behind a search, run against a small store.

use std::sync::OnceLock;

use cattery_api::logs::LogType;
use cattery_logstore::{EmbeddedStore, IngestRecord, LogStore, Retention, SearchRequest};

/// One store for the whole run (opening one per input would dominate the time), holding one
/// flow record so that aggregations and sorts have something to work on.
fn store() -> &'static EmbeddedStore {
    static STORE: OnceLock<(tempfile::TempDir, EmbeddedStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = EmbeddedStore::open(dir.path(), Retention::default()).expect("open store");
            let mut record = serde_json::json!({
                "start_time": 1_795_478_405, "end_time": 1_795_478_410, "action": "allow",
                "reporter": "src", "proto": "tcp", "source_ip": "10.0.0.1",
                "source_name": "frontend", "source_namespace": "shop", "dest_ip": "10.1.2.3",
                "dest_name": "redis-0", "dest_namespace": "cache", "dest_port": 6379,
                "bytes_in": 10, "bytes_out": 20,
            });
            let time_ms = cattery_api::logs::validate(LogType::Flows, &mut record, "c1")
                .expect("the seed record is valid");
            let rec = IngestRecord {
                seq: 1,
                log_type: LogType::Flows,
                time_ms,
                record,
                source: None,
            };
            store
                .ingest("c1", "00000000-0000-4000-8000-000000000000", vec![rec])
                .expect("ingest the seed record");
            (dir, store)
        })
        .1
}

/// Runs one input; panics when an invariant breaks.
pub fn check(data: &[u8]) {
    let Ok(mut req) = SearchRequest::from_json(data) else {
        return;
    };
    let json = serde_json::to_vec(&req).expect("a SearchRequest serialises");
    let again = SearchRequest::from_json(&json).expect("a serialised SearchRequest parses");
    assert_eq!(again, req, "from_json(serialise(req)) != req");
    // A search of no cluster may answer before parsing the rest; search the stored one.
    if req.clusters.is_empty() {
        req.clusters.push("c1".into());
    }
    for t in LogType::ALL {
        let valid = cattery_logstore::validate_filters(t, &req.filters).is_ok();
        match store().search(t, &req) {
            // A search the filters' validation refuses is refused by the store too.
            Ok(res) => {
                assert!(valid, "search accepted filters validate_filters refuses");
                let size = req
                    .checked_size()
                    .expect("an accepted search has a valid size");
                assert!(res.hits.hits.len() <= size, "more hits than size");
            }
            Err(cattery_logstore::LogStoreError::BadRequest { .. }) => {}
            Err(e) => panic!("search failed other than as a bad request: {e}"),
        }
    }
}
