//! Remote peers end to end: a FederatedPolicy placed on cluster A whose ingress rule
//! admits "pods labelled app=client in cluster B". Real `cattery server`, two
//! `cattery sim-cluster`s with distinct `--pod-cidr`s, real agents over mTLS tunnels, and
//! real kubectl through the hub's proxy to B: A's NetworkPolicy follows pods created,
//! relabelled and deleted in B within 5 s, with exactly their addresses as ipBlocks, and
//! the rule goes (never "allow all") when no pod is left. Also: a placed object deleted
//! in A directly is put back within 5 s, well inside the reconciler's 60 s resync, so it
//! is the watch that noticed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, Server, Sim, free_port, kubectl_ok, start_agent, test_dir, wait_for};
use serde_json::{Value, json};

const NP: &str = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies";
/// The target for a remote pod change to reach the target cluster.
const FOLLOW: Duration = Duration::from_secs(5);

/// A simulator giving pods addresses from `cidr`.
fn sim_with_cidr(dir: &std::path::Path, name: &str, cidr: &str) -> Sim {
    let listen = format!("127.0.0.1:{}", free_port());
    let proc = Proc::spawn(
        dir,
        &format!("sim-{name}"),
        &[
            "sim-cluster",
            "--listen",
            &listen,
            "--name",
            name,
            "--pod-cidr",
            cidr,
        ],
        &[],
    );
    let sim = Sim {
        proc,
        url: format!("http://{listen}"),
    };
    wait_for("the simulator to answer", Duration::from_secs(20), || {
        sim.get("/_sim/info")
    });
    sim
}

/// curl against a simulator's own API.
fn sim_call(sim: &Sim, method: &str, path: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("{}{path}", sim.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// A's placed policy, if it exists.
fn placed(a: &Sim) -> Option<Value> {
    let (code, obj) = sim_call(a, "GET", &format!("{NP}/allow-client"));
    (code == 200).then_some(obj)
}

/// The ipBlock CIDRs of every ingress rule of A's policy, per rule.
fn ingress_blocks(obj: &Value) -> Vec<Vec<String>> {
    obj["spec"]["ingress"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            r["from"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| p["ipBlock"]["cidr"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .collect()
}

/// Waits until A's policy has exactly `want` rules of ipBlocks; returns how long it took.
fn wait_blocks(a: &Sim, want: &[Vec<String>], what: &str) -> Duration {
    let start = Instant::now();
    let obj = wait_for(what, FOLLOW, || {
        placed(a).filter(|o| ingress_blocks(o) == want)
    });
    let took = start.elapsed();
    eprintln!("{what}: {took:?}");
    // Fail closed: the policy keeps isolating ingress whatever the rules.
    assert_eq!(obj["spec"]["policyTypes"], json!(["Ingress"]), "{obj}");
    took
}

fn pod_file(dir: &std::path::Path, name: &str, app: &str) -> String {
    pod_file_in(dir, "shop", name, app)
}

fn pod_file_in(dir: &std::path::Path, namespace: &str, name: &str, app: &str) -> String {
    let path = dir.join(format!("{namespace}-{name}.json"));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "ghcr.io/cattery-demo/client:1"}]}
    });
    std::fs::write(&path, pod.to_string()).unwrap();
    path.display().to_string()
}

/// The pod's address as B reports it through kubectl, as a host CIDR.
fn pod_cidr_of(kc: &std::path::Path, name: &str) -> String {
    pod_cidr_in(kc, "shop", name)
}

fn pod_cidr_in(kc: &std::path::Path, namespace: &str, name: &str) -> String {
    let ip = kubectl_ok(
        kc,
        &[
            "get",
            "pod",
            name,
            "-n",
            namespace,
            "-o",
            "jsonpath={.status.podIP}",
        ],
    );
    let ip: std::net::Ipv4Addr = ip.trim().parse().expect("an IPv4 pod address");
    assert_eq!(ip.octets()[..2], [10, 42], "from B's pod CIDR: {ip}");
    format!("{ip}/32")
}

/// Host CIDRs in address order (the order the hub renders them in).
fn by_address(cidrs: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
    v.sort_by_key(|c| {
        c.split('/')
            .next()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
    });
    v
}

#[test]
fn remote_peer_follows_pods_of_another_cluster() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let a = sim_with_cidr(d, "a", "10.41.0.0/16");
    let b = sim_with_cidr(d, "b", "10.42.0.0/16");
    let _agents: Vec<Proc> = [("a", &a), ("b", &b)]
        .iter()
        .map(|(name, sim)| {
            let config = server.add_cluster(name);
            start_agent(d, name, &config, &sim.url, &[])
        })
        .collect();
    for name in ["a", "b"] {
        server.wait_connected(name, "True");
    }
    let kc_b = server.kubeconfig("b");
    let kc_a = server.kubeconfig("a");
    // A pod in B that the peer does not select, and one in A that it does not either
    // (A is not its own remote peer).
    kubectl_ok(&kc_b, &["apply", "-f", &pod_file(d, "other-1", "other")]);
    kubectl_ok(&kc_a, &["apply", "-f", &pod_file(d, "local-1", "client")]);

    let policy = json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": "clients"},
        "spec": {
            "placement": {"clusterNames": ["a"]},
            "resources": [{
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "allow-client", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                         "ingress": [{
                             "ports": [{"port": 8080}],
                             "cattery.dev/remotePeers": [{
                                 "clusterNames": ["b"],
                                 "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
                                 "podSelector": {"matchLabels": {"app": "client"}}
                             }]
                         }]}
            }]
        }
    });
    let file = d.join("clients.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    server.cli_ok(&["policy", "apply", "-f", file.to_str().unwrap()]);

    // No matching pod in B: the rule is dropped, never an empty (allow-all) `from`.
    wait_blocks(&a, &[], "placed with no remote pod");

    // A pod created in B: its /32 within 5 s.
    kubectl_ok(&kc_b, &["apply", "-f", &pod_file(d, "client-1", "client")]);
    let c1 = pod_cidr_of(&kc_b, "client-1");
    wait_blocks(&a, &[vec![c1.clone()]], "client-1 admitted");

    // A second one: both, in address order.
    kubectl_ok(&kc_b, &["apply", "-f", &pod_file(d, "client-2", "client")]);
    let c2 = pod_cidr_of(&kc_b, "client-2");
    let both = by_address(&[&c1, &c2]);
    wait_blocks(&a, &[both], "client-2 admitted");

    // Relabelled so it no longer matches: its address goes.
    kubectl_ok(
        &kc_b,
        &[
            "label",
            "pod",
            "client-1",
            "-n",
            "shop",
            "app=former",
            "--overwrite",
        ],
    );
    wait_blocks(&a, &[vec![c2.clone()]], "client-1 relabelled away");

    // Relabelled back: admitted again.
    kubectl_ok(
        &kc_b,
        &[
            "label",
            "pod",
            "client-1",
            "-n",
            "shop",
            "app=client",
            "--overwrite",
        ],
    );
    let both = by_address(&[&c1, &c2]);
    wait_blocks(&a, &[both], "client-1 relabelled back");

    // Deleted: gone; with no pod left the rule is dropped again.
    kubectl_ok(&kc_b, &["delete", "pod", "client-1", "-n", "shop"]);
    wait_blocks(&a, &[vec![c2]], "client-1 deleted");
    kubectl_ok(&kc_b, &["delete", "pod", "client-2", "-n", "shop"]);
    wait_blocks(&a, &[], "client-2 deleted");
    // The status follows too.
    wait_for("the policy to be Applied on a", FOLLOW, || {
        let (text, code) = server.curl(&["/apis/cattery.dev/v1/federatedpolicies/clients"]);
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        (v["status"]["clusters"][0]["state"] == "Applied").then_some(())
    });

    // Drift by watch: deleted in A directly, back within 5 s (the resync is 60 s).
    let (code, body) = sim_call(&a, "DELETE", &format!("{NP}/allow-client"));
    assert_eq!(code, 200, "{body}");
    let start = Instant::now();
    wait_for("allow-client to be restored in a", FOLLOW, || placed(&a));
    eprintln!("restored after {:?}", start.elapsed());

    // Deleting the policy removes it from A.
    let (text, code) = server.curl(&[
        "/apis/cattery.dev/v1/federatedpolicies/clients",
        "-X",
        "DELETE",
    ]);
    assert_eq!(code, 200, "{text}");
    wait_for(
        "allow-client to be removed",
        Duration::from_secs(10),
        || placed(&a).is_none().then_some(()),
    );
}

/// The nets of `c`'s remote-peer GlobalNetworkSets, and each set's id label.
fn calico_sets(c: &Sim) -> Vec<(String, Vec<String>)> {
    let (code, list) = sim_call(
        c,
        "GET",
        "/apis/projectcalico.org/v3/globalnetworksets?labelSelector=cattery.dev/remote-peer",
    );
    assert_eq!(code, 200, "{list}");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let id = s["metadata"]["labels"]["cattery.dev/remote-peer"]
                .as_str()
                .unwrap_or("?")
                .to_string();
            let nets = s["spec"]["nets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|n| n.as_str().unwrap_or("?").to_string())
                .collect();
            (id, nets)
        })
        .collect()
}

/// Waits until A's NetworkPolicy and C's GlobalNetworkSet both hold exactly `want`.
fn wait_both(a: &Sim, c: &Sim, want: &[String], what: &str) -> Duration {
    let took = if want.is_empty() {
        wait_blocks(a, &[], what)
    } else {
        wait_blocks(a, &[want.to_vec()], what)
    };
    let start = Instant::now();
    wait_for(&format!("{what} (Calico)"), FOLLOW, || {
        let sets = calico_sets(c);
        (sets.len() == 1 && sets[0].1 == want).then_some(())
    });
    took + start.elapsed()
}

/// The policy's status as the hub stores it.
fn policy_status(server: &Server, name: &str) -> Value {
    let (text, code) = server.curl(&[&format!("/apis/cattery.dev/v1/federatedpolicies/{name}")]);
    assert_eq!(code, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["status"].clone()
}

/// The remote peer's unhappy paths and its namespace selector, for both renderings
/// (Kubernetes ipBlocks on A, a Calico GlobalNetworkSet on C, which has Calico's CRDs):
/// namespaces gaining and losing the selected label take their pods in and out; the
/// remote cluster's watch history compacted (its watches get `410 Expired`) makes the
/// hub list again and keep following; the remote cluster disconnected keeps the rendered
/// peer (a silent policy change otherwise) and the status says the peer cluster is
/// Unreachable; a pod deleted while it was away is gone after it reconnects, and pod
/// changes are followed within 5 s again.
#[test]
fn remote_peer_survives_disconnects_and_expired_watches() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let a = sim_with_cidr(d, "a", "10.41.0.0/16");
    let b = sim_with_cidr(d, "b", "10.42.0.0/16");
    let c = sim_with_cidr(d, "c", "10.43.0.0/16");
    let crds = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/calico-crds/calico-v3.yaml"
    );
    let out = Command::new("kubectl")
        .args(["--server", &c.url, "apply", "-f", crds])
        .env("HOME", d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config_b = server.add_cluster("b");
    let mut agent_b = start_agent(d, "b", &config_b, &b.url, &[]);
    let _agents: Vec<Proc> = [("a", &a), ("c", &c)]
        .iter()
        .map(|(name, sim)| {
            let config = server.add_cluster(name);
            start_agent(d, name, &config, &sim.url, &[])
        })
        .collect();
    for name in ["a", "b", "c"] {
        server.wait_connected(name, "True");
    }
    let kc_b = server.kubeconfig("b");
    // In B: shop is labelled team=blue, `extra` is not (yet); a client pod in each.
    kubectl_ok(&kc_b, &["label", "namespace", "shop", "team=blue"]);
    kubectl_ok(&kc_b, &["create", "namespace", "extra"]);
    kubectl_ok(&kc_b, &["apply", "-f", &pod_file(d, "client-1", "client")]);
    kubectl_ok(
        &kc_b,
        &[
            "apply",
            "-f",
            &pod_file_in(d, "extra", "client-x", "client"),
        ],
    );
    let c1 = pod_cidr_of(&kc_b, "client-1");
    let cx = pod_cidr_in(&kc_b, "extra", "client-x");

    let peer = json!([{
        "clusterNames": ["b"],
        "namespaceSelector": {"matchLabels": {"team": "blue"}},
        "podSelector": {"matchLabels": {"app": "client"}}
    }]);
    let kube = json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": "clients"},
        "spec": {
            "placement": {"clusterNames": ["a"]},
            "resources": [{
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "allow-client", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                         "ingress": [{"ports": [{"port": 8080}],
                                      "cattery.dev/remotePeers": peer}]}
            }]
        }
    });
    let calico = json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": "calico-clients"},
        "spec": {
            "placement": {"clusterNames": ["c"]},
            "resources": [{
                "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                "metadata": {"name": "allow-client"},
                "spec": {"selector": "app == 'web'",
                         "ingress": [{"action": "Allow", "protocol": "TCP",
                                      "destination": {"ports": [8080]},
                                      "cattery.dev/remotePeers": peer}]}
            }]
        }
    });
    for (name, p) in [("clients", &kube), ("calico-clients", &calico)] {
        let file = d.join(format!("{name}.json"));
        std::fs::write(&file, p.to_string()).unwrap();
        server.cli_ok(&["policy", "apply", "-f", file.to_str().unwrap()]);
    }

    // Only the labelled namespace's pod, on both targets.
    wait_both(&a, &c, std::slice::from_ref(&c1), "shop's client admitted");
    // C's policy selects exactly that set.
    let sets = calico_sets(&c);
    let (code, gnp) = sim_call(
        &c,
        "GET",
        "/apis/projectcalico.org/v3/globalnetworkpolicies/allow-client",
    );
    assert_eq!(code, 200, "{gnp}");
    assert_eq!(
        gnp["spec"]["ingress"][0]["source"]["selector"],
        format!("cattery.dev/remote-peer == '{}'", sets[0].0),
        "{gnp}"
    );
    assert_eq!(
        gnp["spec"]["ingress"][0]["source"]["namespaceSelector"], "global()",
        "{gnp}"
    );

    // A namespace gaining the label brings its pods in; losing it takes them out.
    kubectl_ok(&kc_b, &["label", "namespace", "extra", "team=blue"]);
    let both = by_address(&[&c1, &cx]);
    wait_both(&a, &c, &both, "extra labelled team=blue");
    kubectl_ok(&kc_b, &["label", "namespace", "shop", "team-"]);
    wait_both(&a, &c, std::slice::from_ref(&cx), "shop unlabelled");

    // B's watch history compacted: every open watch ends with 410 Expired. The hub lists
    // again (a pods list reaches B after the compaction) and keeps following.
    let seen = b.requests().len();
    let (code, body) = sim_call(&b, "POST", "/_sim/compact");
    assert_eq!(code, 200, "{body}");
    kubectl_ok(&kc_b, &["label", "namespace", "shop", "team=blue"]);
    wait_both(&a, &c, &both, "shop labelled again after the compaction");
    let relisted = wait_for("the hub to list B's pods again", FOLLOW, || {
        b.requests().into_iter().skip(seen).find(|r| {
            r["method"] == "GET"
                && r["path"] == "/api/v1/pods"
                && !r["query"].as_str().unwrap_or("").contains("watch=")
        })
    });
    eprintln!("relisted after the compaction: {relisted}");

    // B disconnected: the rendered peer stays as last seen (an emptied rule would be a
    // silent policy change), the targets stay Applied, and the status says B is
    // Unreachable, with what the rules are rendered from.
    agent_b.kill();
    server.wait_connected("b", "False");
    for name in ["clients", "calico-clients"] {
        let st = wait_for(
            &format!("{name}'s status to say b is Unreachable"),
            Duration::from_secs(10),
            || {
                let st = policy_status(&server, name);
                (st["remoteClusters"][0]["state"] == "Unreachable").then_some(st)
            },
        );
        let remote = &st["remoteClusters"][0];
        assert_eq!(remote["name"], "b", "{st}");
        assert!(
            remote["message"]
                .as_str()
                .unwrap_or("")
                .contains("last seen"),
            "{st}"
        );
        assert_eq!(st["clusters"][0]["state"], "Applied", "{st}");
    }
    let table = server.cli_ok(&["policy", "status", "clients"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("b ") && l.contains("Unreachable") && l.contains("last seen")),
        "{table}"
    );
    assert_eq!(
        placed(&a).map(|o| ingress_blocks(&o)),
        Some(vec![both.clone()]),
        "a's rule kept while b is away"
    );
    assert_eq!(calico_sets(&c)[0].1, both, "c's set kept while b is away");

    // While B is away a pod goes there (deleted in B directly): the hub cannot see it.
    let (code, body) = sim_call(&b, "DELETE", "/api/v1/namespaces/extra/pods/client-x");
    assert_eq!(code, 200, "{body}");

    // B back: its pods are listed again, so the deleted one goes; then a pod change is
    // followed within 5 s, and the status says B is watched again.
    agent_b = start_agent(d, "b-again", &config_b, &b.url, &[]);
    server.wait_connected("b", "True");
    wait_both(
        &a,
        &c,
        std::slice::from_ref(&c1),
        "client-x gone after b reconnected",
    );
    kubectl_ok(&kc_b, &["apply", "-f", &pod_file(d, "client-2", "client")]);
    let c2 = pod_cidr_of(&kc_b, "client-2");
    let took = wait_both(
        &a,
        &c,
        &by_address(&[&c1, &c2]),
        "client-2 admitted after the reconnect",
    );
    assert!(took < 2 * FOLLOW, "{took:?}");
    for name in ["clients", "calico-clients"] {
        wait_for(
            &format!("{name}'s status to say b is Connected"),
            FOLLOW,
            || {
                let st = policy_status(&server, name);
                (st["remoteClusters"][0]["state"] == "Connected"
                    && st["clusters"][0]["state"] == "Applied")
                    .then_some(())
            },
        );
    }
    drop(agent_b);
}
