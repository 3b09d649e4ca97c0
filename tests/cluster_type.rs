//! Changing a cluster's type, end to end (issue 16 item 5): a real `cattery server`, real
//! `cattery sim-cluster`s and `cattery agent`s over mTLS tunnels, the simulators read with
//! real kubectl.
//!
//! One scenario: `c1` (env=prod) becomes managed (`cluster add` + agent), a FederatedPolicy
//! selecting env=prod is placed on it and its flow logs are stored; `c1` is removed while
//! connected (standalone again: tunnel closed, certificate refused, placed policy taken
//! off, logs kept, the policy's status forgets it); `c2` is removed while its agent is
//! stopped (the placed policy stays in the cluster, and the removal says so: in its answer,
//! which the CLI prints, and in the audit trail); `c1` is added again under the same name
//! with a new agent config (connected, the policy placed again, its old and new flow logs
//! found by one search).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Proc, Server, Sim, free_port, start_agent, test_dir, wait_for};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
const FP: &str = "/apis/cattery.dev/v1/federatedpolicies";

/// The names of the NetworkPolicies in namespace `shop` of a simulator, read with kubectl
/// against the simulator directly (not through the hub).
fn placed(d: &Path, sim: &Sim) -> Vec<String> {
    let out = Command::new("kubectl")
        .args([
            "--server",
            &sim.url,
            "--request-timeout=20s",
            "get",
            "networkpolicies",
            "-n",
            "shop",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .env("HOME", d)
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl get networkpolicies: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// `(cluster, state)` of every cluster in a policy's status.
fn states(server: &Server, policy: &str) -> Vec<(String, String)> {
    let (text, code) = server.curl(&[&format!("{FP}/{policy}")]);
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["status"]["clusters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").into(),
                c["state"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

fn wait_states(server: &Server, policy: &str, want: &[(&str, &str)]) {
    wait_for(&format!("{policy} to have states {want:?}"), T, || {
        let got = states(server, policy);
        let got: Vec<(&str, &str)> = got.iter().map(|(c, s)| (c.as_str(), s.as_str())).collect();
        (got == want).then_some(())
    });
}

/// Stored flow records of `cluster` (a search with `size: 0`; the total is exact).
fn stored_flows(server: &Server, cluster: &str) -> u64 {
    let (res, code) = server.curl(&[
        "/apis/logs.cattery.dev/v1/flows/search",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &json!({"clusters": [cluster], "size": 0}).to_string(),
    ]);
    assert_eq!(code, 200, "{res}");
    let v: Value = serde_json::from_str(&res).unwrap();
    assert_eq!(v["hits"]["total"]["relation"], "eq", "{v}");
    v["hits"]["total"]["value"].as_u64().unwrap()
}

/// Every flow record of `cluster` in the store, exported with the CLI, each checked to be
/// stamped with `cluster` and canonicalised without that field.
fn exported_flows(server: &Server, cluster: &str) -> Vec<String> {
    let out = server.cli_ok(&[
        "logs",
        "flows",
        "--cluster",
        cluster,
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
            assert_eq!(r["cluster"], cluster, "{l}");
            r.as_object_mut().unwrap().remove("cluster");
            r.to_string()
        })
        .collect();
    v.sort();
    v
}

/// Every flow record the simulator wrote into `dir` (rotated files included), canonicalised.
fn produced_flows(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name == "flows.log" || name.starts_with("flows.log.") {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                if !line.is_empty() {
                    out.push(serde_json::from_str::<Value>(line).unwrap().to_string());
                }
            }
        }
    }
    out.sort();
    out
}

fn logstats(url: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", &format!("{url}/_sim/logstats")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A simulator writing `limit` traffic-log records (flows, DNS and L7 together) into
/// `DIR/NAME-felix` and then stopping, as Felix writes its files; `seed` makes its traffic
/// differ from another run's. Its API is a cluster's API too.
fn log_writer(d: &Path, proc_name: &str, cluster: &str, seed: &str, limit: &str) -> (Sim, PathBuf) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let logs = d.join(format!("{proc_name}-felix"));
    let proc = Proc::spawn(
        d,
        proc_name,
        &[
            "sim-cluster",
            "--listen",
            &listen,
            "--name",
            cluster,
            "--logs-dir",
            logs.to_str().unwrap(),
            "--log-rate",
            "200",
            "--log-interval",
            "100ms",
            "--log-limit",
            limit,
            "--log-seed",
            seed,
        ],
        &[],
    );
    let sim = Sim {
        proc,
        url: format!("http://{listen}"),
    };
    wait_for("the simulator to answer", T, || sim.get("/_sim/info"));
    (sim, logs)
}

/// How many flow records the simulator at `url` wrote, once it has finished.
fn finished_flows(url: &str) -> u64 {
    let stats = wait_for("the simulator to finish writing logs", T, || {
        let s = logstats(url);
        (s["finished"] == true).then_some(s)
    });
    stats["flows"]["total"]
        .as_u64()
        .or_else(|| stats["flows"].as_u64())
        .unwrap_or_else(|| panic!("no flow count in {stats}"))
}

/// Starts an agent for `config` against `upstream`, shipping the flow file in `logs`.
fn logging_agent(d: &Path, name: &str, config: &Path, upstream: &str, logs: &Path) -> Proc {
    let spool = d.join(format!("{name}-spool"));
    let flows = format!("flows={}", logs.join("flows.log").display());
    start_agent(
        d,
        name,
        config,
        upstream,
        &["--spool-dir", spool.to_str().unwrap(), "--log-file", &flows],
    )
}

/// `cattery cluster add NAME --labels env=prod`; returns the agent config's path.
fn add_prod_cluster(server: &Server, d: &Path, name: &str, file: &str) -> PathBuf {
    let config = server.cli_ok(&[
        "cluster",
        "add",
        name,
        "--labels",
        "env=prod",
        "--format",
        "agent-config",
    ]);
    let path = d.join(file);
    std::fs::write(&path, config).unwrap();
    path
}

/// `cattery cluster remove NAME`; returns what it said on stderr.
fn remove_cluster(server: &Server, name: &str) -> String {
    let out = server.cli(&["cluster", "remove", name]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cattery cluster remove {name}: {err}");
    err
}

/// The reasons of the controller's audit records about ManagedCluster `name`.
fn removal_audit(server: &Server, name: &str) -> Vec<String> {
    let (res, code) = server.curl(&[
        "/apis/logs.cattery.dev/v1/audit/search",
        "-X",
        "POST",
        "--data-binary",
        &json!({"clusters": ["cluster"], "size": 100, "filters": [
            {"field": "user.username", "equals": "system:cattery:federation-controller"},
            {"field": "objectRef.resource", "equals": "managedclusters"},
            {"field": "objectRef.name", "equals": name}]})
        .to_string(),
    ]);
    assert_eq!(code, 200, "{res}");
    let v: Value = serde_json::from_str(&res).unwrap();
    v["hits"]["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            h["_source"]["annotations"]["authorization.k8s.io/reason"]
                .as_str()
                .or(h["_source"]["reason"].as_str())
                .unwrap_or(&h["_source"].to_string())
                .to_string()
        })
        .collect()
}

#[test]
fn a_cluster_becomes_standalone_and_managed_again_under_its_name() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);

    // Standalone → managed: `cluster add` and the agent. c1's simulator also writes
    // flow logs; c2 is a second prod cluster, for the removal of an unreachable one.
    let (sim1, logs1) = log_writer(d, "sim-c1", "c1", "7", "300");
    let config1 = add_prod_cluster(&server, d, "c1", "agent-c1.yaml");
    let mut agent1 = logging_agent(d, "c1", &config1, &sim1.url, &logs1);
    let sim2 = Sim::start(d, "c2", None);
    let config2 = add_prod_cluster(&server, d, "c2", "agent-c2.yaml");
    let mut agent2 = start_agent(d, "c2", &config2, &sim2.url, &[]);
    server.wait_connected("c1", "True");
    server.wait_connected("c2", "True");

    let policy = json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": "web"},
        "spec": {
            "placement": {"clusterSelector": {"matchLabels": {"env": "prod"}}},
            "resources": [{
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "allow-web", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                         "policyTypes": ["Ingress"],
                         "ingress": [{"ports": [{"port": 8080}]}]}
            }]
        }
    });
    let file = d.join("web.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    let out = server.cli_ok(&["policy", "apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "federatedpolicy/web created");
    wait_states(&server, "web", &[("c1", "Applied"), ("c2", "Applied")]);
    assert_eq!(placed(d, &sim1), vec!["allow-web"]);
    assert_eq!(placed(d, &sim2), vec!["allow-web"]);

    // Its flow logs are searchable: every record the simulator wrote, once.
    let first = finished_flows(&sim1.url);
    assert!(first > 0, "the simulator wrote flows");
    wait_for(&format!("{first} flows of c1 stored"), T, || {
        (stored_flows(&server, "c1") >= first).then_some(())
    });
    let old = produced_flows(&logs1);
    assert_eq!(
        old.len() as u64,
        first,
        "the files hold what the simulator reports"
    );
    assert_eq!(
        exported_flows(&server, "c1"),
        old,
        "c1's flows, exactly once"
    );

    // Managed → standalone while connected.
    let said = remove_cluster(&server, "c1");
    assert!(
        said.contains("its tunnel is closed and its certificate revoked"),
        "{said}"
    );
    assert!(
        said.contains("1 federated object(s) removed from the cluster"),
        "{said}"
    );
    // The placed NetworkPolicy came off before the answer.
    assert_eq!(
        placed(d, &sim1),
        Vec::<String>::new(),
        "allow-web removed from c1"
    );
    // The tunnel is closed, and the agent's reconnect with its old certificate is refused
    // at the handshake: the agent says why and stops; the server says whose it was.
    wait_for("the server to close c1's tunnel", T, || {
        server
            .proc
            .log()
            .lines()
            .any(|l| l.contains("cluster removed; tunnel closed") && l.contains("c1"))
            .then_some(())
    });
    let status = agent1.wait_exit(T);
    assert!(
        !status.success(),
        "the agent stops when its certificate is refused"
    );
    let log = agent1.log();
    assert!(log.contains("revoked"), "{log}");
    wait_for("the server to log the refusal", T, || {
        server
            .proc
            .log()
            .lines()
            .any(|l| l.contains("refused tunnel: certificate revoked") && l.contains("c1"))
            .then_some(())
    });
    let (body, code) = server.curl(&["/clusters/c1/k8s/api"]);
    assert_eq!(
        code, 404,
        "c1 is no longer reachable through the hub: {body}"
    );
    // Its logs stay, under its name; the policy's status no longer lists it.
    assert_eq!(stored_flows(&server, "c1"), first);
    assert_eq!(exported_flows(&server, "c1"), old);
    wait_states(&server, "web", &[("c2", "Applied")]);
    wait_for("the removal's audit record for c1", T, || {
        removal_audit(&server, "c1")
            .iter()
            .any(|r| r.contains("cluster c1: 1 federated object(s) removed"))
            .then_some(())
    });

    // Managed → standalone while the agent is stopped: the placed object cannot be taken
    // off, and the removal says which objects may be left (its answer, printed by the
    // CLI, and an audit record), instead of only a line in the server's log.
    agent2.kill();
    server.wait_connected("c2", "False");
    wait_states(&server, "web", &[("c2", "Unreachable")]);
    let said = remove_cluster(&server, "c2");
    assert!(
        said.contains("warning: the federated objects were not removed"),
        "{said}"
    );
    assert!(
        said.contains("web: networking.k8s.io/v1 NetworkPolicy shop/allow-web"),
        "{said}"
    );
    assert!(said.contains("cattery.dev/federated-policy"), "{said}");
    assert_eq!(
        placed(d, &sim2),
        vec!["allow-web"],
        "left in c2, as reported"
    );
    wait_for("the policy to list no cluster", T, || {
        states(&server, "web").is_empty().then_some(())
    });
    let audit = wait_for("the removal's audit record for c2", T, || {
        let a = removal_audit(&server, "c2");
        (!a.is_empty()).then_some(a)
    });
    assert!(
        audit.iter().any(|r| r.contains("not removed")
            && r.contains("web: networking.k8s.io/v1 NetworkPolicy shop/allow-web")),
        "{audit:?}"
    );

    // Standalone → managed again, under the same name, with a new agent config; the
    // cluster's Felix writes new flow files (a second simulator run: new seed, new dir).
    let config3 = add_prod_cluster(&server, d, "c1", "agent-c1-again.yaml");
    assert_ne!(
        std::fs::read_to_string(&config1).unwrap(),
        std::fs::read_to_string(&config3).unwrap(),
        "a new certificate"
    );
    let (writer, logs3) = log_writer(d, "felix-c1-again", "c1", "8", "300");
    let _agent3 = logging_agent(d, "c1-again", &config3, &sim1.url, &logs3);
    server.wait_connected("c1", "True");
    wait_states(&server, "web", &[("c1", "Applied")]);
    assert_eq!(placed(d, &sim1), vec!["allow-web"], "placed on c1 again");
    let second = finished_flows(&writer.url);
    wait_for(&format!("{} flows of c1 stored", first + second), T, || {
        (stored_flows(&server, "c1") >= first + second).then_some(())
    });
    let mut both = old.clone();
    both.extend(produced_flows(&logs3));
    both.sort();
    assert_eq!(both.len() as u64, first + second);
    assert_eq!(
        exported_flows(&server, "c1"),
        both,
        "one search finds c1's old and new flows, each once"
    );
}
