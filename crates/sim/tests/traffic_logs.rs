//! Simulated Calico logs on real files: their JSON shapes against the
//! reference (and the API crate's validation), exact counts with
//! `--log-limit`, rotation, and deny decisions that follow NetworkPolicies
//! created through the HTTP API.

mod common;

use std::path::Path;
use std::time::Duration;

use cattery_api::logs::{LogType, validate};
use cattery_sim::LogArgs;
use cattery_sim::traffic::model::Aggregation;
use common::{Options, Sim, WAIT};
use serde_json::{Value, json};

fn logs(dir: &Path, rate: f64, limit: Option<u64>, aggregation: Aggregation) -> LogArgs {
    LogArgs {
        logs_dir: Some(dir.to_path_buf()),
        log_rate: rate,
        log_interval: Duration::from_millis(50),
        log_seed: Some(42),
        log_limit: limit,
        flow_aggregation: aggregation,
        ..LogArgs::default()
    }
}

async fn start(logs: LogArgs) -> Sim {
    Sim::start_with(Options {
        logs,
        ..Options::default()
    })
    .await
}

async fn stats(sim: &Sim) -> Value {
    let (code, v) = sim
        .http_json("GET", "/_sim/logstats", "application/json", "")
        .await;
    assert_eq!(code, 200);
    v
}

/// Polls `/_sim/logstats` until `pred` holds (bounded by [`WAIT`]).
async fn stats_until(sim: &Sim, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = stats(sim).await;
        if pred(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not reached within {WAIT:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_raw(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "whole lines only");
    text.lines().map(str::to_string).collect()
}

fn read_lines(path: &Path) -> Vec<Value> {
    read_raw(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect()
}

/// The keys of the outermost object of a JSON text, in the order written
/// (serde_json's `Value` sorts them, so this scans the text).
fn raw_keys(json: &str) -> Vec<String> {
    let (mut keys, mut depth, mut in_str, mut esc, mut start) = (Vec::new(), 0, false, false, 0);
    let b = json.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => {
                    in_str = false;
                    let rest = json[i + 1..].trim_start();
                    if depth == 1 && rest.starts_with(':') {
                        keys.push(json[start..i].to_string());
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => {
                in_str = true;
                start = i + 1;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
    }
    keys
}

/// Felix's key order for flows.log (docs/reference/calico-flow-fields.md).
const FLOW_KEYS: &[&str] = &[
    "start_time",
    "end_time",
    "source_ip",
    "source_name",
    "source_name_aggr",
    "source_namespace",
    "nat_outgoing_ports",
    "source_port",
    "source_type",
    "source_labels",
    "dest_ip",
    "dest_name",
    "dest_name_aggr",
    "dest_namespace",
    "dest_port",
    "dest_type",
    "dest_labels",
    "dest_service_namespace",
    "dest_service_name",
    "dest_service_port",
    "dest_service_port_num",
    "dest_domains",
    "proto",
    "action",
    "reporter",
    "policies",
    "bytes_in",
    "bytes_out",
    "num_flows",
    "num_flows_started",
    "num_flows_completed",
    "packets_in",
    "packets_out",
    "transit_bytes_in",
    "transit_bytes_out",
    "transit_packets_in",
    "transit_packets_out",
    "http_requests_allowed_in",
    "http_requests_denied_in",
    "process_name",
    "num_process_names",
    "process_id",
    "num_process_ids",
    "process_args",
    "num_process_args",
    "original_source_ips",
    "num_original_source_ips",
    "tcp_mean_send_congestion_window",
    "tcp_min_send_congestion_window",
    "tcp_mean_smooth_rtt",
    "tcp_max_smooth_rtt",
    "tcp_mean_min_rtt",
    "tcp_max_min_rtt",
    "tcp_mean_mss",
    "tcp_min_mss",
    "tcp_total_retransmissions",
    "tcp_lost_packets",
    "tcp_unrecovered_to",
];

const L7_KEYS: &[&str] = &[
    "start_time",
    "end_time",
    "duration_mean",
    "duration_max",
    "latency",
    "bytes_in",
    "bytes_out",
    "count",
    "src_name_aggr",
    "src_namespace",
    "src_type",
    "source_port_num",
    "dest_name_aggr",
    "dest_namespace",
    "dest_type",
    "dest_port_num",
    "dest_service_name",
    "dest_service_namespace",
    "dest_service_port_name",
    "dest_service_port",
    "method",
    "user_agent",
    "url",
    "response_code",
    "route_name",
    "type",
    "gateway_name",
    "protocol",
];

const DNS_KEYS: &[&str] = &[
    "start_time",
    "end_time",
    "type",
    "count",
    "client_name",
    "client_name_aggr",
    "client_namespace",
    "client_ip",
    "client_labels",
    "servers",
    "qname",
    "qclass",
    "qtype",
    "rcode",
    "rrsets",
    "latency",
    "latency_count",
    "latency_mean",
    "latency_max",
];

fn is_rfc3339_nano(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
        && s.ends_with('Z')
}

#[tokio::test]
async fn felix_shapes_and_exact_counts_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(logs(dir.path(), 2000.0, Some(600), Aggregation::Felix)).await;
    let st = stats_until(&sim, "the log limit", |v| v["finished"] == true).await;
    assert_eq!(st["total"], 600);
    assert_eq!(st["seed"], 42);
    assert_eq!(st["writeErrors"], 0);

    let flows = read_lines(&dir.path().join("flows.log"));
    let dns = read_lines(&dir.path().join("dns.log"));
    let l7 = read_lines(&dir.path().join("l7.log"));
    // Felix's keys in Felix's order, on the wire.
    for (file, want) in [
        ("flows.log", FLOW_KEYS),
        ("dns.log", DNS_KEYS),
        ("l7.log", L7_KEYS),
    ] {
        for line in read_raw(&dir.path().join(file)) {
            assert_eq!(raw_keys(&line), want, "{file}: {line}");
        }
    }
    // Nested DNS objects keep Go's field order too.
    for line in read_raw(&dir.path().join("dns.log")) {
        assert!(
            line.contains(r#""servers":[{"name":"coredns-76f75df574-x9z2l","name_aggr":"coredns-76f75df574-*","namespace":"kube-system","ip":""#),
            "{line}"
        );
        // A search-path miss answers NXDomain with no records; the real name one A record.
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let want = match v["rcode"].as_str() {
            Some("NXDomain") => r#""rrsets":null"#.to_string(),
            Some("NoError") => format!(
                r#""rrsets":[{{"name":{},"class":"IN","type":"A","rdata":[""#,
                v["qname"]
            ),
            other => panic!("unexpected rcode {other:?}: {line}"),
        };
        assert!(line.contains(&want), "want {want} in {line}");
    }
    let nested = r#"{"servers":[{"name":"a","ip":"b"}],"x":{"y":1},"z":"a\"b:"}"#;
    assert_eq!(raw_keys(nested), ["servers", "x", "z"]);
    assert_eq!(
        flows.len() + dns.len() + l7.len(),
        600,
        "N produced = N written"
    );
    assert_eq!(st["flows"]["total"], flows.len());
    assert_eq!(st["dns"], dns.len());
    assert_eq!(st["l7"], l7.len());
    let denied = flows.iter().filter(|f| f["action"] == "deny").count();
    assert_eq!(st["flows"]["deny"], denied);
    assert!(!dns.is_empty() && !l7.is_empty());

    // Flows: Felix's keys in Felix's order, Calico's types and nulls.
    for f in &flows {
        let mut rec = f.clone();
        validate(LogType::Flows, &mut rec, "east").unwrap_or_else(|e| panic!("{e}: {f}"));
        assert!(f["start_time"].is_i64() && f["end_time"].is_i64());
        assert!(f["start_time"].as_i64() <= f["end_time"].as_i64());
        assert!(["allow", "deny"].contains(&f["action"].as_str().unwrap()));
        assert!(["src", "dst"].contains(&f["reporter"].as_str().unwrap()));
        assert!(["tcp", "udp"].contains(&f["proto"].as_str().unwrap()));
        assert!(f["source_port"].is_null(), "Felix aggregates source ports");
        assert!(f["dest_port"].is_u64());
        assert!(f["policies"]["enforced_policies"].is_array());
        assert_eq!(
            f["policies"]["enforced_policies"],
            f["policies"]["pending_policies"]
        );
        assert_eq!(f["policies"]["transit_policies"], json!([]));
        let entry = f["policies"]["enforced_policies"][0].as_str().unwrap();
        let parts: Vec<&str> = entry.split('|').collect();
        assert_eq!(
            parts.len(),
            5,
            "<index>|<tier>|<name>|<action>|<rule>: {entry}"
        );
        assert_eq!(parts[3], f["action"]);
        parts[4].parse::<i64>().unwrap();
        for side in ["source", "dest"] {
            match f[format!("{side}_type")].as_str().unwrap() {
                "wep" => {
                    let labels = &f[format!("{side}_labels")]["labels"];
                    assert!(
                        labels
                            .as_array()
                            .unwrap()
                            .iter()
                            .all(|l| l.as_str().unwrap().contains('='))
                    );
                    assert_ne!(f[format!("{side}_namespace")], "-");
                }
                "net" => {
                    assert!(f[format!("{side}_labels")].is_null());
                    assert_eq!(f[format!("{side}_namespace")], "-");
                    assert_eq!(f[format!("{side}_name")], "-");
                    assert!(
                        ["pub", "pvt"].contains(&f[format!("{side}_name_aggr")].as_str().unwrap())
                    );
                }
                other => panic!("unexpected endpoint type {other}"),
            }
        }
        if f["action"] == "allow" {
            // Aggregated by pod prefix: no IPs, no names.
            assert!(f["source_ip"].is_null() && f["dest_ip"].is_null(), "{f}");
            assert_eq!(f["source_name"], "-");
        } else {
            assert!(f["dest_ip"].is_string() || f["dest_type"] == "net");
        }
        if f["dest_service_name"] == "-" {
            assert!(f["dest_service_port_num"].is_null());
        } else {
            assert!(f["dest_service_port_num"].is_u64());
        }
        assert_eq!(f["process_args"], json!(["-"]));
        assert!(f["original_source_ips"].is_null() && f["nat_outgoing_ports"].is_null());
        assert!(f.get("host").is_none(), "fluentd adds host, not Felix");
    }
    // The seeded policy denies checkout -> payments/db from the start.
    let seeded_deny = flows.iter().find(|f| {
        f["reporter"] == "dst"
            && f["action"] == "deny"
            && f["dest_name_aggr"] == "db-*"
            && f["source_namespace"] == "shop"
    });
    let seeded_deny = seeded_deny.expect("a denied checkout -> db flow");
    assert_eq!(
        seeded_deny["policies"]["enforced_policies"],
        json!(["0|default|payments/knp.default.db-allow-api|deny|-1"])
    );
    assert!(flows.iter().any(|f| f["action"] == "allow"
        && f["policies"]["enforced_policies"][0]
            == "0|default|payments/knp.default.db-allow-api|allow|0"));
    assert!(flows.iter().any(|f| {
        f["policies"]["enforced_policies"][0]
            .as_str()
            .unwrap()
            .starts_with("0|__PROFILE__|__PROFILE__.kns.")
    }));
    assert!(
        flows
            .iter()
            .any(|f| f["dest_domains"] == json!(["api.stripe.com"]))
    );
    assert!(
        flows
            .iter()
            .any(|f| f["proto"] == "udp" && f["dest_service_port"] == "dns")
    );

    // DNS: RFC 3339 nano times, type "log", labels as a map, nested servers/rrsets.
    for d in &dns {
        let mut rec = d.clone();
        validate(LogType::Dns, &mut rec, "east").unwrap_or_else(|e| panic!("{e}: {d}"));
        assert!(is_rfc3339_nano(d["start_time"].as_str().unwrap()), "{d}");
        assert!(is_rfc3339_nano(d["end_time"].as_str().unwrap()), "{d}");
        assert_eq!(d["type"], "log");
        assert!(d["client_labels"].is_object());
        assert!(d["client_ip"].is_null() && d["client_name"] == "-");
        assert_eq!(d["servers"][0]["namespace"], "kube-system");
        assert_eq!(d["qclass"], "IN");
        assert_eq!(d["latency_count"], d["latency"]["count"]);
        assert!(d["latency_mean"].as_u64().unwrap() <= d["latency_max"].as_u64().unwrap());
        match d["rcode"].as_str().unwrap() {
            "NoError" => {
                let rr = &d["rrsets"][0];
                assert_eq!(rr["name"], d["qname"]);
                rr["rdata"][0]
                    .as_str()
                    .unwrap()
                    .parse::<std::net::IpAddr>()
                    .unwrap();
            }
            "NXDomain" => assert!(
                d["rrsets"].is_null(),
                "Go marshals an empty rrset map as null"
            ),
            other => panic!("rcode {other}"),
        }
    }
    assert!(
        dns.iter()
            .any(|d| d["qname"] == "cart.shop.svc.cluster.local")
    );

    // L7: src_ prefixes, numeric service port, string response code.
    for l in &l7 {
        let mut rec = l.clone();
        validate(LogType::L7, &mut rec, "east").unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(l["dest_service_port"].is_u64());
        assert!(l["response_code"].as_str().unwrap().parse::<u16>().is_ok());
        assert!(l["duration_mean"].as_u64().unwrap() <= l["duration_max"].as_u64().unwrap());
        assert!(["GET", "POST", "DELETE"].contains(&l["method"].as_str().unwrap()));
        assert!(l["count"].as_u64().unwrap() >= 1);
        assert_eq!(l["type"], "http/1.1");
    }
    assert!(
        l7.iter()
            .any(|l| l["src_type"] == "net" && l["dest_service_name"] == "frontend")
    );

    // Nothing more is written after the limit: `finished` is set after the last write, as the
    // generator returns, so the files already hold everything they ever will.
    assert_eq!(stats(&sim).await["total"], 600);
    let on_disk: usize = ["flows.log", "dns.log", "l7.log"]
        .iter()
        .map(|f| read_lines(&dir.path().join(f)).len())
        .sum();
    assert_eq!(on_disk, 600);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_same_seed_gives_the_same_records() {
    let strip = |mut v: Value| {
        let o = v.as_object_mut().unwrap();
        for k in ["start_time", "end_time"] {
            o.remove(k);
        }
        v
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let sim = start(logs(dir.path(), 1000.0, Some(120), Aggregation::None)).await;
        stats_until(&sim, "the log limit", |v| v["finished"] == true).await;
        sim.shutdown().await;
        let flows: Vec<Value> = read_lines(&dir.path().join("flows.log"))
            .into_iter()
            .map(strip)
            .collect();
        runs.push(flows);
    }
    assert!(!runs[0].is_empty());
    // Pod names are fixed by the seed; IPs are allocated in the same order.
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test]
async fn rotation_keeps_whole_lines_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = logs(dir.path(), 2000.0, Some(400), Aggregation::Felix);
    args.log_max_bytes = 16 * 1024;
    args.log_max_files = 50;
    let sim = start(args).await;
    let st = stats_until(&sim, "the log limit", |v| v["finished"] == true).await;
    assert!(st["rotations"].as_u64().unwrap() >= 2, "{st}");
    let mut flows = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            std::fs::metadata(&path).unwrap().len() <= 16 * 1024,
            "{name} over the limit"
        );
        if name.starts_with("flows.log") {
            flows += read_lines(&path).len();
        }
    }
    assert!(dir.path().join("flows.log.1").exists());
    assert_eq!(
        st["flows"]["total"], flows,
        "every flow line is in some file"
    );
    sim.shutdown().await;
}

/// Flow lines written after `offset` bytes of flows.log.
fn flows_after(dir: &Path, offset: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("flows.log")).unwrap();
    text[offset..]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_policy_created_through_the_api_changes_what_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = logs(dir.path(), 400.0, None, Aggregation::None);
    args.log_max_bytes = 1 << 30;
    let sim = start(args).await;
    let to_cart = |f: &Value| f["reporter"] == "dst" && f["dest_service_name"] == "cart";

    // Before: frontend -> cart is allowed by the namespace profile.
    stats_until(&sim, "some flows", |v| {
        v["flows"]["total"].as_u64().unwrap() > 100
    })
    .await;
    let before = flows_after(dir.path(), 0);
    let allowed: Vec<_> = before.iter().filter(|f| to_cart(f)).collect();
    assert!(!allowed.is_empty());
    assert!(allowed.iter().all(|f| f["action"] == "allow"
        && f["policies"]["enforced_policies"]
            == json!(["0|__PROFILE__|__PROFILE__.kns.shop|allow|0"])));

    // Create a policy: cart only accepts traffic from pods labelled role=admin.
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "cart-admins-only"},
        "spec": {"podSelector": {"matchLabels": {"app": "cart"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "admin"}}}]}]}
    });
    let (code, body) = sim
        .http_json(
            "POST",
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies",
            "application/json",
            policy.to_string(),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    // Records of an interaction drawn before the policy may still be queued:
    // look only at lines written well after it.
    let mark = stats(&sim).await["flows"]["total"].as_u64().unwrap();
    stats_until(&sim, "more flows", |v| {
        v["flows"]["total"].as_u64().unwrap() > mark + 150
    })
    .await;
    let offset = std::fs::read_to_string(dir.path().join("flows.log"))
        .unwrap()
        .lines()
        .take(mark as usize + 20)
        .map(|l| l.len() + 1)
        .sum();
    let after = flows_after(dir.path(), offset);
    let to_cart_after: Vec<_> = after.iter().filter(|f| to_cart(f)).collect();
    assert!(!to_cart_after.is_empty());
    for f in &to_cart_after {
        assert_eq!(f["action"], "deny", "{f}");
        assert_eq!(
            f["policies"]["enforced_policies"],
            json!(["0|default|shop/knp.default.cart-admins-only|deny|-1"])
        );
        assert_eq!(f["packets_out"], 0, "nothing answers a denied SYN");
        assert!(
            f["source_ip"].is_string(),
            "--flow-aggregation none keeps IPs"
        );
    }
    // The source side still reports its (allowed) egress attempt.
    assert!(after.iter().any(|f| f["reporter"] == "src"
        && f["dest_service_name"] == "cart"
        && f["action"] == "allow"
        && f["bytes_in"] == 0));

    // A pod that matches the policy's `from` gets through once it exists.
    let admin = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "frontend-admin", "labels": {"app": "frontend", "role": "admin"}},
        "spec": {"containers": [{"name": "c", "image": "frontend"}]}});
    let (code, body) = sim
        .http_json(
            "POST",
            "/api/v1/namespaces/shop/pods",
            "application/json",
            admin.to_string(),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = flows_after(dir.path(), 0);
        if all.iter().any(|f| {
            to_cart(f)
                && f["source_name"] == "frontend-admin"
                && f["policies"]["enforced_policies"][0]
                    == "0|default|shop/knp.default.cart-admins-only|allow|0"
        }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no allowed admin -> cart flow"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn no_logs_dir_means_no_generator() {
    let sim = Sim::start().await;
    let v = stats(&sim).await;
    assert_eq!(v["enabled"], false);
    assert_eq!(v["total"], 0);
    assert_eq!(v["audit"]["enabled"], false);
    sim.shutdown().await;
}
