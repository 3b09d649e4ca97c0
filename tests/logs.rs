//! End-to-end tests of central logs: simulator → files / audit webhook → agent spool →
//! tunnel → management plane store → search API and CLI. Real processes and files.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

/// Total stored records of `log_type` for `clusters`.
fn stored(server: &Server, log_type: &str, clusters: &[&str]) -> u64 {
    let (v, code) = search(server, log_type, json!({"clusters": clusters, "size": 0}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["hits"]["total"]["relation"], "eq");
    v["hits"]["total"]["value"].as_u64().unwrap()
}

fn search(server: &Server, log_type: &str, body: Value) -> (Value, u16) {
    let (res, code) = server.curl(&[
        &format!("/apis/logs.cattery.dev/v1/{log_type}/search"),
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body.to_string(),
    ]);
    (
        serde_json::from_str(&res).unwrap_or(Value::String(res)),
        code,
    )
}

/// Every record in every (rotated) file of `stem` under `dir`, canonicalised.
fn produced(dir: &Path, stem: &str) -> Vec<String> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name == format!("{stem}.log") || name.starts_with(&format!("{stem}.log.")) {
            for line in std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .filter(|l| !l.is_empty())
            {
                out.push(serde_json::from_str::<Value>(line).unwrap().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Every stored record of `log_type`, without `cluster`, canonicalised (exported with the CLI).
fn exported(server: &Server, log_type: &str) -> Vec<String> {
    let out = server.cli_ok(&[
        "logs",
        log_type,
        "--all-clusters",
        "--since",
        "30d",
        "--limit",
        "0",
        "-o",
        "ndjson",
    ]);
    let mut v: Vec<String> = out
        .lines()
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).unwrap();
            r.as_object_mut().unwrap().remove("cluster");
            r.to_string()
        })
        .collect();
    v.sort();
    v
}

fn logstats(sim: &str) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "5", &format!("{sim}/_sim/logstats")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

struct Cluster {
    agent: Proc,
    _sim: Proc,
    sim_url: String,
    logs_dir: std::path::PathBuf,
    agent_args: Vec<String>,
}

/// Registers `name`, starts its agent (spool + file sources + audit webhook) and a simulator
/// producing `limit` records (all types together) at `rate`/s into rotating files (rotated
/// every few seconds: slower than the tailer's 250 ms poll, as with Felix's 100 MB files).
fn cluster(server: &Server, d: &Path, name: &str, rate: u32, limit: u32) -> Cluster {
    let cfg = server.add_cluster(name);
    let sim_port = free_port();
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let logs_dir = d.join(format!("{name}-felix"));
    let agent_dir = d.join(format!("{name}-agent"));
    let webhook = format!("127.0.0.1:{}", free_port());
    let mut agent_args: Vec<String> = vec![
        "agent".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--upstream".into(),
        sim_url.clone(),
        "--reconnect-max-delay".into(),
        "1s".into(),
        "--spool-dir".into(),
        agent_dir.join("spool").display().to_string(),
        "--audit-webhook-addr".into(),
        webhook.clone(),
        "--audit-webhook-dir".into(),
        agent_dir.join("webhook").display().to_string(),
    ];
    for t in ["flows", "dns", "l7"] {
        agent_args.push("--log-file".into());
        agent_args.push(format!(
            "{t}={}",
            logs_dir.join(format!("{t}.log")).display()
        ));
    }
    let refs: Vec<&str> = agent_args.iter().map(String::as_str).collect();
    let agent = Proc::spawn(d, &format!("agent-{name}"), &refs, &[]);
    let token = agent_dir.join("webhook/webhook.token");
    wait_for("the agent's audit webhook credentials", T, || {
        token.exists().then_some(())
    });
    let listen = format!("127.0.0.1:{sim_port}");
    let (rate_s, limit_s) = (rate.to_string(), limit.to_string());
    let webhook_ca = agent_dir.join("webhook/webhook-ca.crt");
    let webhook_url = format!("https://{webhook}/audit");
    let sim_args = [
        "sim-cluster",
        "--listen",
        &listen,
        "--name",
        name,
        "--logs-dir",
        logs_dir.to_str().unwrap(),
        "--log-rate",
        &rate_s,
        "--log-interval",
        "100ms",
        "--log-limit",
        &limit_s,
        "--log-seed",
        "7",
        "--log-max-bytes",
        "300000",
        "--log-max-files",
        "1000",
        "--flow-aggregation",
        "none",
        "--audit-webhook",
        &webhook_url,
        "--audit-webhook-ca-file",
        webhook_ca.to_str().unwrap(),
        "--audit-webhook-token-file",
        token.to_str().unwrap(),
    ];
    let sim = Proc::spawn(d, &format!("sim-{name}"), &sim_args, &[]);
    wait_for("the simulator", T, || {
        (!logstats(&sim_url).is_null()).then_some(())
    });
    server.wait_connected(name, "True");
    Cluster {
        agent,
        _sim: sim,
        sim_url,
        logs_dir,
        agent_args,
    }
}

impl Cluster {
    fn restart_agent(&mut self, d: &Path, suffix: &str) {
        self.agent.kill(); // SIGKILL
        let refs: Vec<&str> = self.agent_args.iter().map(String::as_str).collect();
        self.agent = Proc::spawn(d, &format!("agent-restarted-{suffix}"), &refs, &[]);
    }

    fn produced_total(&self) -> u64 {
        logstats(&self.sim_url)["total"].as_u64().unwrap_or(0)
    }

    fn wait_finished(&self) -> Value {
        wait_for(
            "the simulator to finish producing",
            Duration::from_secs(120),
            || {
                let s = logstats(&self.sim_url);
                (s["finished"] == true).then_some(s)
            },
        )
    }
}

fn assert_exactly_once(server: &Server, c: &Cluster, stats: &Value) {
    for t in ["flows", "dns", "l7"] {
        let want = stats[t]["total"]
            .as_u64()
            .or_else(|| stats[t].as_u64())
            .unwrap();
        wait_for(&format!("{want} {t} records stored"), T, || {
            (stored(server, t, &["*"]) >= want).then_some(())
        });
        let files = produced(&c.logs_dir, t);
        assert_eq!(
            files.len() as u64,
            want,
            "{t}: the simulator's files hold what it reports"
        );
        let store = exported(server, t);
        assert_eq!(store.len(), files.len(), "{t}: stored count");
        assert!(
            store == files,
            "{t}: the stored records are exactly the produced ones"
        );
    }
}

#[test]
fn every_record_is_stored_exactly_once_across_agent_and_server_kills_and_rotation() {
    let dir = test_dir();
    let d = dir.path();
    let mut server = Server::start(d);
    let mut c = cluster(&server, d, "alpha", 300, 3000);

    wait_for("600 records produced", T, || {
        (c.produced_total() >= 600).then_some(())
    });
    c.restart_agent(d, "1");
    wait_for("1500 records produced", T, || {
        (c.produced_total() >= 1500).then_some(())
    });
    server.proc.kill(); // SIGKILL mid-stream
    server.restart("server-2");
    let stats = c.wait_finished();
    assert_eq!(stats["total"], 3000);
    assert!(
        stats["rotations"].as_u64().unwrap() > 3,
        "files rotated: {stats}"
    );
    assert_exactly_once(&server, &c, &stats);
    // The status shows when logs last arrived.
    assert!(server.cluster_json("alpha")["status"]["lastLogsReceived"].is_string());
}

#[test]
fn logs_written_during_a_30s_outage_arrive_after_reconnect() {
    let dir = test_dir();
    let d = dir.path();
    let mut server = Server::start(d);
    let c = cluster(&server, d, "beta", 100, 2000);
    wait_for("some records stored", T, || {
        (stored(&server, "flows", &["beta"]) > 0).then_some(())
    });
    server.proc.kill();
    let before = c.produced_total();
    // The outage itself is the scenario: the agent cannot reach the management plane for 30 s.
    std::thread::sleep(Duration::from_secs(30));
    assert!(
        c.produced_total() > before + 500,
        "the cluster kept producing during the outage"
    );
    server.restart("server-2");
    let stats = c.wait_finished();
    assert_exactly_once(&server, &c, &stats);
}

#[test]
fn records_are_stamped_with_the_tunnel_cluster_and_bad_records_are_rejected_alone() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let c = cluster(&server, d, "gamma", 0, 0);
    let f = c.logs_dir.join("flows.log");
    std::fs::create_dir_all(&c.logs_dir).unwrap();
    let lines = [
        json!({"start_time": 1, "end_time": 1_900_000_000, "action": "deny", "cluster": "someone-else", "source_namespace": "forged"}).to_string(),
        "this is not json".to_string(),
        json!({"start_time": 1, "end_time": "not a time", "action": "allow"}).to_string(),
        json!({"start_time": 1, "end_time": 1_900_000_001, "action": "allow", "dest_port": {"bad": true}}).to_string(),
        json!({"start_time": 1, "end_time": 1_900_000_002, "action": "allow", "source_namespace": "fine"}).to_string(),
    ];
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    wait_for("two valid records stored", T, || {
        (stored(&server, "flows", &["gamma"]) == 2).then_some(())
    });
    assert_eq!(
        stored(&server, "flows", &["someone-else"]),
        0,
        "a cluster cannot store records as another"
    );
    let (v, _) = search(
        &server,
        "flows",
        json!({"clusters": ["gamma"], "filters": [{"field": "source_namespace", "equals": "forged"}]}),
    );
    assert_eq!(v["hits"]["hits"][0]["_source"]["cluster"], "gamma");
    let (metrics, _) = server.curl(&["/metrics"]);
    let rejected: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("cattery_logs_records_rejected_total") && l.contains("cluster=\"gamma\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(rejected, 2, "{metrics}");
    // The agent skips the one line that is not JSON, saying why and in which file; the two
    // records of the wrong shape are the server's to reject.
    let agent_log = c.agent.log();
    let skipped: Vec<&str> = agent_log
        .lines()
        .filter(|l| l.contains("skipping a malformed line"))
        .collect();
    assert_eq!(
        skipped.len(),
        1,
        "the agent names the bad line: {agent_log}"
    );
    assert!(
        skipped[0].contains("skipping a malformed line: not a JSON object")
            && skipped[0].contains("flows.log"),
        "{}",
        skipped[0]
    );

    // Bad queries name what is wrong; unknown types are 404.
    let (v, code) = search(
        &server,
        "flows",
        json!({"clusters": ["gamma"], "filters": [{"field": "nope", "equals": 1}]}),
    );
    assert_eq!(code, 400);
    assert!(v.to_string().contains("nope"), "{v}");
    let (v, code) = search(
        &server,
        "flows",
        json!({"clusters": ["gamma"], "size": "many"}),
    );
    assert_eq!(code, 400);
    assert!(v.to_string().contains("size"), "{v}");
    let (_, code) = search(&server, "packets", json!({"clusters": ["gamma"]}));
    assert_eq!(code, 404);
    let (v, code) = search(&server, "flows", json!({"size": 1}));
    assert_eq!(code, 400);
    assert!(v.to_string().contains("clusters"), "{v}");
}

#[test]
fn audit_events_flow_through_the_webhook_live_tail_and_survive_cluster_removal() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let c = cluster(&server, d, "delta", 0, 0);
    let kc = server.kubeconfig("delta");

    // Follow audit logs live, then make a request through the management plane.
    let mut follow = std::process::Command::new(bin());
    for (k, v) in server.env() {
        follow.env(k, v);
    }
    let mut follow = follow
        .args([
            "logs",
            "audit",
            "--cluster",
            "delta",
            "--since",
            "1m",
            "-f",
            "-o",
            "ndjson",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = LineReader::new(follow.stdout.take().unwrap());
    // The tail is subscribed once the CLI has printed history (none) and opened the stream;
    // keep making requests until one shows up live.
    let mut event = None;
    for i in 0..60 {
        kubectl_ok(
            &kc,
            &["get", "configmaps", "-n", "shop", "-l", &format!("try={i}")],
        );
        if let Some(line) = lines.try_line_containing("configmaps", Duration::from_millis(500)) {
            event = Some(line);
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let event: Value =
        serde_json::from_str(&event.expect("an audit event arrived on the live tail")).unwrap();
    assert_eq!(event["cluster"], "delta");
    assert_eq!(event["verb"], "list");
    assert_eq!(event["impersonatedUser"]["username"], "cattery:admin");

    let (v, _) = search(
        &server,
        "audit",
        json!({"clusters": ["delta"], "filters": [{"field": "impersonatedUser.username", "equals": "cattery:admin"}], "aggs": {"verbs": {"terms": {"field": "verb"}}}}),
    );
    assert!(v["hits"]["total"]["value"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(
        v["aggregations"]["verbs"]["buckets"][0]["key"], "list",
        "{v}"
    );

    // Removing the cluster keeps its logs; adding it again reattaches them.
    let before = stored(&server, "audit", &["delta"]);
    server.cli_ok(&["cluster", "remove", "delta"]);
    assert_eq!(stored(&server, "audit", &["delta"]), before);
    server.cli_ok(&["cluster", "add", "delta"]);
    assert_eq!(stored(&server, "audit", &["delta"]), before);
    drop(c);
}

#[test]
fn cli_queries_answer_correctly() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let c = cluster(&server, d, "eps", 400, 800);
    let stats = c.wait_finished();
    let want = stats["flows"]["total"].as_u64().unwrap();
    wait_for("all flows stored", T, || {
        (stored(&server, "flows", &["eps"]) == want).then_some(())
    });
    // Independent answer: count deny flows per source namespace straight from the files.
    let mut deny_by_ns: BTreeMap<String, u64> = BTreeMap::new();
    for line in produced(&c.logs_dir, "flows") {
        let r: Value = serde_json::from_str(&line).unwrap();
        if r["action"] == "deny" {
            *deny_by_ns
                .entry(r["source_namespace"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(
        !deny_by_ns.is_empty(),
        "the seeded policy denies some traffic"
    );
    let out = server.cli_ok(&[
        "logs",
        "flows",
        "--cluster",
        "eps",
        "--since",
        "1d",
        "--where",
        "action=deny",
        "--top",
        "source_namespace",
        "-o",
        "json",
    ]);
    let top: Value = serde_json::from_str(&out).unwrap();
    let got: BTreeMap<String, u64> = top["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["key"].as_str().unwrap().to_string(),
                b["doc_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, deny_by_ns);
    let table = server.cli_ok(&[
        "logs",
        "flows",
        "--cluster",
        "eps",
        "--since",
        "1d",
        "--where",
        "action=deny",
        "--limit",
        "3",
    ]);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.lines().all(|l| l.contains(" deny ")), "{table}");
}

/// The sum of the samples of `name` (a Prometheus text exposition) whose labels contain `label`.
fn metric(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn file_sources_count_read_and_rejected_records_in_the_agent_metrics() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let mut c = cluster(&server, d, "delta", 0, 0);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    c.agent_args
        .extend(["--metrics-addr".to_string(), metrics_addr.clone()]);
    c.restart_agent(d, "metrics");
    server.wait_connected("delta", "True");
    std::fs::create_dir_all(&c.logs_dir).unwrap();
    let good = |i: u64| {
        json!({"start_time": 1, "end_time": 1_900_000_000 + i, "action": "allow"}).to_string()
    };
    let lines = [good(1), "not json".into(), good(2), "[1]".into(), good(3)];
    std::fs::write(c.logs_dir.join("flows.log"), lines.join("\n") + "\n").unwrap();
    std::fs::write(c.logs_dir.join("dns.log"), "{\"broken\n").unwrap();
    wait_for("three flows stored", T, || {
        (stored(&server, "flows", &["delta"]) == 3).then_some(())
    });
    let url = format!("http://{metrics_addr}/metrics");
    let text = wait_for("the agent's metrics to count the file records", T, || {
        let out = std::process::Command::new("curl")
            .args(["-sf", "--max-time", "5", &url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (metric(
            &text,
            "cattery_agent_records_rejected_total",
            "type=\"dns\"",
        ) >= 1)
            .then_some(text)
    });
    assert_eq!(
        metric(&text, "cattery_agent_records_read_total", "type=\"flows\""),
        3,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "cattery_agent_records_rejected_total",
            "type=\"flows\""
        ),
        2,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "cattery_agent_records_rejected_total",
            "type=\"dns\""
        ),
        1,
        "{text}"
    );
}
