//! End-to-end test of a spool directory restored from a backup (issue 13, item 1): server,
//! simulator and agent as real processes; audit events (each unique, and never produced
//! again) go through the agent's webhook and spool to the store.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// Every stored audit record of the cluster, canonicalised, with how often it is stored.
fn stored_audit(server: &Server) -> BTreeMap<String, usize> {
    let out = server.cli_ok(&[
        "logs",
        "audit",
        "--cluster",
        "omega",
        "--since",
        "30d",
        "--limit",
        "0",
        "-o",
        "ndjson",
    ]);
    let mut counts = BTreeMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        *counts.entry(v.to_string()).or_default() += 1;
    }
    counts
}

/// Makes one request per `label` through the management plane (retrying while the agent
/// reconnects) and waits until the audit event of each is stored.
fn requests(server: &Server, kc: &Path, labels: &[String]) {
    for label in labels {
        wait_for(&format!("request {label} through the tunnel"), T, || {
            kubectl(kc, &["get", "configmaps", "-n", "shop", "-l", label])
                .status
                .success()
                .then_some(())
        });
    }
    wait_for(&format!("audit events of {labels:?} stored"), T, || {
        let stored = stored_audit(server);
        labels
            .iter()
            .all(|l| stored.keys().any(|r| r.contains(l.as_str())))
            .then_some(())
    });
}

/// An agent with a spool and the audit webhook, and a simulator sending audit events for
/// the requests it serves (no log files).
struct Cluster {
    agent: Proc,
    _sim: Proc,
    spool: std::path::PathBuf,
    args: Vec<String>,
}

fn cluster(server: &Server, d: &Path, name: &str) -> Cluster {
    let cfg = server.add_cluster(name);
    let sim_port = free_port();
    let agent_dir = d.join(format!("{name}-agent"));
    let spool = agent_dir.join("spool");
    let webhook = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "agent",
        "--config",
        cfg.to_str().unwrap(),
        "--upstream",
        &format!("http://127.0.0.1:{sim_port}"),
        "--reconnect-max-delay",
        "1s",
        "--spool-dir",
        spool.to_str().unwrap(),
        "--audit-webhook-addr",
        &webhook,
        "--audit-webhook-dir",
        agent_dir.join("webhook").to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Proc::spawn(d, &format!("agent-{name}"), &refs, &[]);
    let token = agent_dir.join("webhook/webhook.token");
    wait_for("the agent's audit webhook credentials", T, || {
        token.exists().then_some(())
    });
    let listen = format!("127.0.0.1:{sim_port}");
    let ca = agent_dir.join("webhook/webhook-ca.crt");
    let url = format!("https://{webhook}/audit");
    let sim = Proc::spawn(
        d,
        &format!("sim-{name}"),
        &[
            "sim-cluster",
            "--listen",
            &listen,
            "--name",
            name,
            "--audit-webhook",
            &url,
            "--audit-webhook-ca-file",
            ca.to_str().unwrap(),
            "--audit-webhook-token-file",
            token.to_str().unwrap(),
        ],
        &[],
    );
    server.wait_connected(name, "True");
    Cluster {
        agent,
        _sim: sim,
        spool,
        args,
    }
}

impl Cluster {
    fn restart_agent(&mut self, d: &Path, suffix: &str) {
        let refs: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.agent = Proc::spawn(d, &format!("agent-{suffix}"), &refs, &[]);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

#[test]
fn a_spool_restored_from_a_backup_loses_no_record_and_stores_none_twice() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let mut c = cluster(&server, d, "omega");
    let kc = server.kubeconfig("omega");
    let spool = c.spool.clone();
    let backup = d.join("spool-backup");
    let phase = |p: &str| (0..5).map(|i| format!("phase-{p}-{i}")).collect::<Vec<_>>();

    requests(&server, &kc, &phase("one"));
    c.agent.kill();
    copy_dir(&spool, &backup);
    c.restart_agent(d, "after-backup");
    // Shipped after the backup: the restored ledger knows nothing of these seqs.
    requests(&server, &kc, &phase("two"));
    c.agent.kill();
    std::fs::remove_dir_all(&spool).unwrap();
    copy_dir(&backup, &spool);
    c.restart_agent(d, "after-restore");
    // Written after the restore with seqs the original already used: before epochs, the
    // server dropped them as duplicates of phase two.
    requests(&server, &kc, &phase("three"));

    let stored = stored_audit(&server);
    let twice: Vec<_> = stored.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:#?}");
    for label in [phase("one"), phase("two"), phase("three")].concat() {
        assert!(
            stored.keys().any(|r| r.contains(label.as_str())),
            "the audit event of {label} was lost"
        );
    }
    let log = c.agent.log();
    assert!(log.contains("log spool opened"), "{log}");
}
