//! Counting connections once although both ends report them.
//!
//! Felix writes a flow record at each end of a connection between two workloads: the
//! source's (`reporter: src`, decided by its egress policies) and, if the packets left the
//! source, the destination's (`reporter: dst`, decided by its ingress policies). Summing
//! stored records therefore counts every allowed pod-to-pod connection twice, and a
//! connection denied at the destination once as allowed (the source let it out) and once as
//! denied.
//!
//! The rule (see `docs/design/0014-manager-ui.md`, "Counting flows"): a connection is
//! counted by the record of the end that decided its fate last.
//!
//! - `reporter: dst` records always count: the destination's verdict is final.
//! - `reporter: src` records count when no destination record exists for them: the source
//!   denied the connection (`action: deny`, nothing left the source), or the destination is
//!   not a workload endpoint that reports (`dest_type` other than `wep`: the internet, a
//!   network set, a host).
//!
//! So the only records left out are `reporter: src`, `action: allow`, `dest_type: wep`:
//! their twin at the destination is counted instead. Denied records are never left out (a
//! connection has at most one denied record), so counts of denied flows are unchanged.
//!
//! Aggregations cannot join records, so pages apply the rule to buckets: [`split`] nests
//! terms aggregations over `reporter` and `dest_type` around a page's own leaf
//! aggregations, and [`leaves`] walks them back, yielding only the buckets that count.

use serde_json::{Value, json};

/// The workload-endpoint `dest_type`: an end that writes its own flow records.
const WORKLOAD_ENDPOINT: &str = "wep";

/// Whether a flow record with these fields counts towards its connection (the rule above).
pub(crate) fn counts(reporter: &str, dest_type: &str, action: &str) -> bool {
    !(reporter == "src" && dest_type == WORKLOAD_ENDPOINT && action == "allow")
}

/// Nests `inner` (a page's aggregations, holding a terms aggregation over `action`) under
/// terms aggregations over `reporter` and `dest_type` (two more aggregations towards the
/// store's limit per request), so the rule can be applied to the answer with [`leaves`].
pub(crate) fn split(inner: Value) -> Value {
    json!({"rp": {"terms": {"field": "reporter", "size": 4}, "aggs": {
        "dt": {"terms": {"field": "dest_type", "size": 8}, "aggs": inner}
    }}})
}

fn buckets(v: &Value) -> &[Value] {
    v["buckets"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn key(b: &Value) -> &str {
    b["key"].as_str().unwrap_or("-")
}

/// Walks the answer of [`split`] under `v` (a bucket or the `aggregations` object): for
/// every `action_agg` bucket that counts, calls `f(action, bucket)`.
pub(crate) fn leaves<'a>(v: &'a Value, action_agg: &str, mut f: impl FnMut(&'a str, &'a Value)) {
    for rp in buckets(&v["rp"]) {
        for dt in buckets(&rp["dt"]) {
            for a in buckets(&dt[action_agg]) {
                let action = key(a);
                if counts(key(rp), key(dt), action) {
                    f(action, a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_counted_at_the_end_that_decided_it() {
        // Allowed pod to pod: both ends report; the destination's record counts.
        assert!(!counts("src", "wep", "allow"));
        assert!(counts("dst", "wep", "allow"));
        // Denied at the destination: the source let it out (allow), the destination denied.
        assert!(counts("dst", "wep", "deny"));
        // Denied at the source: only the source reports.
        assert!(counts("src", "wep", "deny"));
        // To the internet: only the source reports.
        assert!(counts("src", "net", "allow"));
        assert!(counts("src", "ns", "allow"));
        // From the internet: only the destination reports.
        assert!(counts("dst", "wep", "allow"));
    }

    #[test]
    fn leaves_yield_only_counted_buckets() {
        let v = json!({"rp": {"buckets": [
            {"key": "src", "dt": {"buckets": [
                {"key": "wep", "a": {"buckets": [{"key": "allow", "doc_count": 10}, {"key": "deny", "doc_count": 2}]}},
                {"key": "net", "a": {"buckets": [{"key": "allow", "doc_count": 3}]}}
            ]}},
            {"key": "dst", "dt": {"buckets": [
                {"key": "wep", "a": {"buckets": [{"key": "allow", "doc_count": 9}, {"key": "deny", "doc_count": 1}]}}
            ]}}
        ]}});
        let mut seen = vec![];
        leaves(&v, "a", |action, b| {
            seen.push((action.to_string(), b["doc_count"].as_u64().unwrap()))
        });
        seen.sort();
        assert_eq!(
            seen,
            [
                ("allow".to_string(), 3),
                ("allow".to_string(), 9),
                ("deny".to_string(), 1),
                ("deny".to_string(), 2)
            ]
        );
        let wrapped = split(json!({"a": {"terms": {"field": "action"}}}));
        assert_eq!(wrapped["rp"]["terms"]["field"], "reporter");
        assert_eq!(
            wrapped["rp"]["aggs"]["dt"]["aggs"]["a"]["terms"]["field"],
            "action"
        );
    }
}
