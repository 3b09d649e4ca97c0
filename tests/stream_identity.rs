//! A log stream id belongs to the first cluster that presented it (issue 13 item 1): a spool
//! directory cloned into another cluster's agent is refused and reported, never stored under
//! the first cluster's stream nor used to skip its records. Real server, simulators, agents.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

struct Agent {
    proc: Proc,
    args: Vec<String>,
    felix: PathBuf,
    spool: PathBuf,
    metrics: String,
    _sim: Proc,
}

/// Registers `name` and starts a quiet simulator (no logs of its own) and an agent that
/// tails `NAME-felix/flows.log` into the spool `spool`.
fn agent(server: &Server, d: &Path, name: &str, spool: &Path) -> Agent {
    let cfg = server.add_cluster(name);
    let sim_port = free_port();
    let listen = format!("127.0.0.1:{sim_port}");
    let sim = Proc::spawn(
        d,
        &format!("sim-{name}"),
        &["sim-cluster", "--listen", &listen, "--name", name],
        &[],
    );
    let felix = d.join(format!("{name}-felix"));
    std::fs::create_dir_all(&felix).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "agent",
        "--config",
        cfg.to_str().unwrap(),
        "--upstream",
        &format!("http://{listen}"),
        "--reconnect-max-delay",
        "1s",
        "--spool-dir",
        spool.to_str().unwrap(),
        "--metrics-addr",
        &metrics,
        "--log-file",
        &format!("flows={}", felix.join("flows.log").display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let proc = Proc::spawn(d, &format!("agent-{name}"), &refs, &[]);
    Agent {
        proc,
        args,
        felix,
        spool: spool.to_path_buf(),
        metrics,
        _sim: sim,
    }
}

impl Agent {
    fn restart(&mut self, d: &Path, as_name: &str) {
        self.proc.kill();
        let refs: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.proc = Proc::spawn(d, as_name, &refs, &[]);
    }

    /// Appends flow records `tag-from` … `tag-(to-1)` to the tailed file.
    fn write_flows(&self, tag: &str, from: u64, to: u64) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.felix.join("flows.log"))
            .unwrap();
        for i in from..to {
            let r = json!({"start_time": 1, "end_time": 1_900_000_000 + i, "action": "allow",
                           "source_name": format!("{tag}-{i}")});
            writeln!(f, "{r}").unwrap();
        }
        f.sync_all().unwrap();
    }

    fn metric(&self, name: &str) -> Option<u64> {
        let text = curl_text(&format!("http://{}/metrics", self.metrics))?;
        sample(&text, name, "")
    }
}

fn curl_text(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of the sample `name` whose labels contain `label` (exactly one such line).
fn sample(text: &str, name: &str, label: &str) -> Option<u64> {
    let mut found = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(label));
    let line = found.next()?;
    assert!(found.next().is_none(), "more than one {name} {label}");
    line.rsplit(' ')
        .next()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

fn search(server: &Server, log_type: &str, body: Value) -> Value {
    let (res, code) = server.curl(&[
        &format!("/apis/logs.cattery.dev/v1/{log_type}/search"),
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body.to_string(),
    ]);
    assert_eq!(code, 200, "{res}");
    serde_json::from_str(&res).unwrap()
}

/// The `source_name` of every stored flow of `cluster`, sorted.
fn flow_names(server: &Server, cluster: &str) -> Vec<String> {
    let v = search(
        server,
        "flows",
        json!({"clusters": [cluster], "size": 10000}),
    );
    let mut names: Vec<String> = v["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_source"]["source_name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn names(tag: &str, from: u64, to: u64) -> Vec<String> {
    let mut v: Vec<String> = (from..to).map(|i| format!("{tag}-{i}")).collect();
    v.sort();
    v
}

#[test]
fn a_spool_cloned_into_another_cluster_is_refused_and_reported_and_skips_nothing() {
    let dir = test_dir();
    let d = dir.path();
    let mut server = Server::start(d);
    let mut east = agent(&server, d, "east", &d.join("east-spool"));
    server.wait_connected("east", "True");

    // East ships 40 records: its stream id is now east's.
    east.write_flows("east", 0, 40);
    wait_for("east's first 40 flows stored", T, || {
        (flow_names(&server, "east").len() == 40).then_some(())
    });

    // The management plane goes away; east spools 20 more it cannot ship.
    server.proc.kill();
    east.write_flows("east", 40, 60);
    wait_for("east to spool 20 unshipped flows", T, || {
        (east.metric("cattery_agent_spool_pending_records") == Some(20)).then_some(())
    });
    // Its spool directory (the 20 unshipped records, east's stream id) is copied into the
    // agent of another cluster, as a restore from the wrong backup would.
    east.proc.kill();
    let west_spool = d.join("west-spool");
    let cp = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&east.spool)
        .arg(&west_spool)
        .status()
        .unwrap();
    assert!(cp.success());
    let ledger = std::fs::read_to_string(east.spool.join("ledger.json")).unwrap();

    // The ownership of east's stream survives the restart of the management plane.
    server.restart("server-restarted");
    let west = agent(&server, d, "west", &west_spool);
    server.wait_connected("west", "True");

    // West's first batch is east's 20 records under east's stream id: refused and reported.
    let condition = wait_for("west's LogsStreamRefused condition", T, || {
        server.cluster_json("west")["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "LogsStreamRefused")
            .cloned()
    });
    assert_eq!(condition["status"], "True", "{condition}");
    assert_eq!(
        condition["reason"], "StreamOwnedByAnotherCluster",
        "{condition}"
    );
    let message = condition["message"].as_str().unwrap();
    let stream = message
        .strip_prefix("log stream ")
        .and_then(|m| m.split(' ').next())
        .unwrap();
    assert!(message.contains("belongs to cluster \"east\""), "{message}");
    assert!(
        ledger.contains(&format!("\"{stream}\"")),
        "the refused stream is east's: {stream} not in {ledger}"
    );
    let (metrics, code) = server.curl(&["/metrics"]);
    assert_eq!(code, 200);
    let refused = sample(
        &metrics,
        "cattery_logs_streams_refused_total",
        "cluster=\"west\"",
    )
    .unwrap_or(0);
    assert!(refused >= 1, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "cattery_logs_streams_refused_total",
            "cluster=\"east\""
        ),
        None,
        "east was never refused"
    );
    let log = server.proc.log();
    assert!(
        log.contains(&format!(
            "refusing logs of cluster \"west\": their stream id {stream} belongs to cluster \"east\""
        )),
        "{log}"
    );

    // West's agent is told and sets the stream aside in its quarantine.
    let reason = wait_for("west's agent to set the refused stream aside", T, || {
        std::fs::read_dir(west_spool.join("quarantine"))
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "reason"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .find(|r| r.contains("refused"))
    });
    assert!(reason.contains(stream), "{reason}");
    wait_for("west's agent to have nothing pending", T, || {
        (west.metric("cattery_agent_spool_pending_records") == Some(0)).then_some(())
    });

    // West's own records go under a fresh stream id and are stored as west's.
    west.write_flows("west", 0, 30);
    wait_for("west's 30 flows stored", T, || {
        (flow_names(&server, "west").len() >= 30).then_some(())
    });
    assert_eq!(flow_names(&server, "west"), names("west", 0, 30));

    // East, back, ships its 20 spooled records: none was skipped because of west.
    east.restart(d, "agent-east-restarted");
    wait_for("east's 60 flows stored", T, || {
        (flow_names(&server, "east").len() >= 60).then_some(())
    });
    let mut want = names("east", 0, 60);
    want.sort();
    assert_eq!(flow_names(&server, "east"), want);

    // One audit record of cluster `cluster` says what was refused.
    let audit = wait_for("the refusal in the audit trail", T, || {
        let v = search(
            &server,
            "audit",
            json!({"clusters": ["cluster"], "size": 10,
                   "filters": [{"field": "objectRef.resource", "equals": "logstreams"}]}),
        );
        let hits = v["hits"]["hits"].as_array().unwrap().clone();
        (!hits.is_empty()).then_some(hits)
    });
    assert_eq!(audit.len(), 1, "{audit:?}");
    let ev = &audit[0]["_source"];
    assert_eq!(ev["objectRef"]["name"], stream, "{ev}");
    assert_eq!(ev["responseStatus"]["code"], 409, "{ev}");
    assert_eq!(ev["user"]["username"], "cattery:agent:west", "{ev}");
    assert_eq!(ev["annotations"]["authorization.k8s.io/decision"], "forbid");
}
