//! FederatedPolicy end to end: a real `cattery server`, three `cattery sim-cluster`s with
//! real agents over mTLS tunnels, policies written through the hub's API with curl, and
//! the clusters read directly. Covers placement by label, relabelling, overrides, drift
//! repair, Inform, conflicts, an agent stopped and restarted, a user without permission,
//! Calico kinds placed on a cluster with Calico's CRDs (and Failed on one without), and
//! deletion removing exactly what was placed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, Server, Sim, start_agent, test_dir, wait_for};
use serde_json::{Value, json};

const FP: &str = "/apis/cattery.dev/v1/federatedpolicies";
const NP: &str = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies";

/// curl against a simulator's Kubernetes API (no authentication configured).
fn sim_call(sim: &Sim, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
    }
    let out = cmd.arg(format!("{}{path}", sim.url)).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Names of the NetworkPolicies in `shop` of a simulator, with their pod selector's app.
fn sim_policies(sim: &Sim) -> Vec<(String, String)> {
    let (code, list) = sim_call(sim, "GET", NP, None);
    assert_eq!(code, 200, "{list}");
    let mut out: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                o["spec"]["podSelector"]["matchLabels"]["app"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn api(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    ct: &str,
    body: &Value,
) -> (u16, Value) {
    let (text, code) = server.curl_as(
        Some(token),
        &[
            path,
            "-X",
            method,
            "-H",
            &format!("Content-Type: {ct}"),
            "-d",
            &body.to_string(),
        ],
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn label(server: &Server, cluster: &str, env: &str) {
    let (code, body) = api(
        server,
        &server.token,
        "PATCH",
        &format!("/apis/cattery.dev/v1/managedclusters/{cluster}"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"env": env}}}),
    );
    assert_eq!(code, 200, "{body}");
}

fn status(server: &Server, policy: &str) -> Value {
    let (text, code) = server.curl(&[&format!("{FP}/{policy}")]);
    assert_eq!(code, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["status"].clone()
}

/// `(cluster, state, reason)` of every cluster in a policy's status.
fn states(server: &Server, policy: &str) -> Vec<(String, String, String)> {
    status(server, policy)["clusters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").into(),
                c["state"].as_str().unwrap_or("").into(),
                c["reason"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

fn wait_states(
    server: &Server,
    policy: &str,
    want: &[(&str, &str)],
    timeout: Duration,
) -> Duration {
    let start = Instant::now();
    wait_for(
        &format!("{policy} to have states {want:?}"),
        timeout,
        || {
            let got = states(server, policy);
            let got: Vec<(&str, &str)> = got
                .iter()
                .map(|(c, s, _)| (c.as_str(), s.as_str()))
                .collect();
            (got == want).then_some(())
        },
    );
    start.elapsed()
}

fn web_policy() -> Value {
    json!({
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
            }],
            "overrides": [{
                "clusterNames": ["c2"],
                "resource": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                             "name": "allow-web"},
                "patch": {"spec": {"podSelector": {"matchLabels": {"app": "web-c2"}}}}
            }]
        }
    })
}

struct Member {
    sim: Sim,
    agent: Proc,
    config: std::path::PathBuf,
}

#[test]
fn federated_policy_end_to_end() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let mut members: Vec<Member> = ["c1", "c2", "c3"]
        .iter()
        .map(|name| {
            let sim = Sim::start(d, name, None);
            let config = server.add_cluster(name);
            let agent = start_agent(d, name, &config, &sim.url, &[]);
            Member { sim, agent, config }
        })
        .collect();
    for (name, env) in [("c1", "prod"), ("c2", "prod"), ("c3", "dev")] {
        server.wait_connected(name, "True");
        label(&server, name, env);
    }
    let hub_kc = d.join("kubeconfig-hub");
    std::fs::write(&hub_kc, server.cli_ok(&["kubeconfig", "--hub"])).unwrap();
    // Someone's own policy in c1, of the same kind: never touched.
    let (code, body) = sim_call(
        &members[0].sim,
        "POST",
        NP,
        Some(
            &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "hand-made", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}}}),
        ),
    );
    assert_eq!(code, 201, "{body}");

    // A user without permission on federatedpolicies: 403, and nothing is placed.
    let bob = server
        .cli_ok(&["token", "create", "--user", "bob"])
        .trim()
        .to_string();
    // The gate refuses before reading the body and closes the connection, which curl can
    // see as a reset while it is still sending (code 0); the answer itself is what counts.
    let (code, body) = (0..5)
        .map(|_| api(&server, &bob, "POST", FP, "application/json", &web_policy()))
        .find(|(code, _)| *code != 0)
        .expect("an answer to bob's create");
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden", "{body}");
    // An invalid template: 400 naming the field, nothing stored.
    let mut bad = web_policy();
    bad["spec"]["resources"][0]["spec"]["ingress"][0]["ports"][0]["port"] = json!(70000);
    let (code, body) = api(&server, &server.token, "POST", FP, "application/json", &bad);
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("spec.resources[0].spec.ingress[0].ports[0].port"),
        "{body}"
    );
    // Not stored, so the reconciler has nothing to place.
    let (text, code) = server.curl_as(Some(&server.token), &[&format!("{FP}/web")]);
    assert_eq!(code, 404, "the invalid policy was not stored: {text}");
    assert_eq!(sim_policies(&members[1].sim), vec![], "nothing was placed");

    // Placement by label, within 5 s; the override changes c2's copy only.
    let file = d.join("web.json");
    std::fs::write(&file, web_policy().to_string()).unwrap();
    let out = server.cli_ok(&["policy", "apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "federatedpolicy/web created");
    let took = wait_states(
        &server,
        "web",
        &[("c1", "Applied"), ("c2", "Applied")],
        Duration::from_secs(5),
    );
    eprintln!("Applied on 2 clusters after {took:?}");
    assert_eq!(
        sim_policies(&members[0].sim),
        vec![
            ("allow-web".into(), "web".into()),
            ("hand-made".into(), "db".into())
        ]
    );
    assert_eq!(
        sim_policies(&members[1].sim),
        vec![("allow-web".into(), "web-c2".into())]
    );
    assert_eq!(sim_policies(&members[2].sim), vec![]);
    let st = status(&server, "web");
    assert_eq!(st["counts"]["applied"], 2, "{st}");
    assert_eq!(st["observedGeneration"], 1, "{st}");
    let (live_code, live) = sim_call(&members[0].sim, "GET", &format!("{NP}/allow-web"), None);
    assert_eq!(live_code, 200);
    assert_eq!(
        live["metadata"]["labels"]["cattery.dev/federated-policy"],
        "web"
    );
    let table = server.cli_ok(&["policy", "status", "web"]);
    assert!(
        table.contains("web: generation 1, 2 clusters: 2 applied"),
        "{table}"
    );
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        rows,
        vec![vec!["c1", "Applied", "1"], vec!["c2", "Applied", "1"]],
        "{table}"
    );
    // The CLI refuses a bad template before sending it, naming the field.
    let bad_file = d.join("bad.json");
    std::fs::write(&bad_file, bad.to_string()).unwrap();
    let out = server.cli(&["policy", "apply", "-f", bad_file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.resources[0].spec.ingress[0].ports[0].port"),
        "{err}"
    );
    // Writing status does not bump the generation.
    let (text, _) = server.curl(&[&format!("{FP}/web")]);
    let obj: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(obj["metadata"]["generation"], 1, "{obj}");

    // History: each cluster's state change is an audit record of cluster `cluster`, so
    // "which clusters got generation 1, and when" is a search.
    let applied_at_1: Vec<String> =
        wait_for("audit records of Applied", Duration::from_secs(10), || {
            let (res, code) = server.curl(&[
                "/apis/logs.cattery.dev/v1/audit/search",
                "-X",
                "POST",
                "--data-binary",
                &json!({"clusters": ["cluster"], "size": 100, "filters": [
                {"field": "user.username", "equals": "system:cattery:federation-controller"},
                {"field": "objectRef.name", "equals": "web"}]})
                .to_string(),
            ]);
            assert_eq!(code, 200, "{res}");
            let v: Value = serde_json::from_str(&res).unwrap();
            let mut got: Vec<String> = v["hits"]["hits"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|h| h["_source"]["requestURI"].as_str().map(str::to_string))
                .filter(|u| u.contains("state=Applied&generation=1"))
                .collect();
            got.sort();
            (got.len() == 2).then_some(got)
        });
    assert!(applied_at_1[0].contains("cluster=c1"), "{applied_at_1:?}");
    assert!(applied_at_1[1].contains("cluster=c2"), "{applied_at_1:?}");

    // A new generation reaches every cluster (applied over our own object).
    let mut v2 = web_policy();
    v2["spec"]["resources"][0]["spec"]["ingress"][0]["ports"][0]["port"] = json!(8081);
    std::fs::write(&file, v2.to_string()).unwrap();
    let out = server.cli_ok(&["policy", "apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "federatedpolicy/web configured");
    wait_for(
        "generation 2 Applied everywhere",
        Duration::from_secs(10),
        || {
            let st = status(&server, "web");
            (st["observedGeneration"] == 2
                && st["counts"]["applied"] == 2
                && st["clusters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c["observedGeneration"] == 2))
            .then_some(())
        },
    );
    let (_, live) = sim_call(&members[0].sim, "GET", &format!("{NP}/allow-web"), None);
    assert_eq!(
        live["spec"]["ingress"][0]["ports"][0]["port"], 8081,
        "{live}"
    );
    assert_eq!(
        live["metadata"]["annotations"]["cattery.dev/federated-policy-generation"],
        "2"
    );

    // Drift: deleted in c1 directly, put back (Enforce).
    let (code, body) = sim_call(&members[0].sim, "DELETE", &format!("{NP}/allow-web"), None);
    assert_eq!(code, 200, "{body}");
    wait_for(
        "allow-web to be restored in c1",
        Duration::from_secs(10),
        || {
            sim_policies(&members[0].sim)
                .iter()
                .any(|(n, _)| n == "allow-web")
                .then_some(())
        },
    );
    wait_states(
        &server,
        "web",
        &[("c1", "Applied"), ("c2", "Applied")],
        Duration::from_secs(10),
    );

    // Relabelling: c3 joins, c1 leaves (its object is removed; the unowned one stays).
    // (c3 with plain kubectl against the hub)
    let out = common::kubectl_ok(
        &hub_kc,
        &["label", "managedcluster", "c3", "env=prod", "--overwrite"],
    );
    assert!(
        out.contains("managedcluster.cattery.dev/c3 labeled"),
        "{out}"
    );
    label(&server, "c1", "dev");
    wait_states(
        &server,
        "web",
        &[("c2", "Applied"), ("c3", "Applied")],
        Duration::from_secs(10),
    );
    assert_eq!(
        sim_policies(&members[0].sim),
        vec![("hand-made".into(), "db".into())]
    );
    assert_eq!(
        sim_policies(&members[2].sim),
        vec![("allow-web".into(), "web".into())]
    );

    // Two policies placing the same name in one cluster: the second is Failed/Conflict,
    // and the first's object is unchanged (the same object, not rewritten: same
    // resourceVersion, still owned by the first).
    let (code, first) = sim_call(&members[1].sim, "GET", &format!("{NP}/allow-web"), None);
    assert_eq!(code, 200, "{first}");
    assert_eq!(
        first["metadata"]["labels"]["cattery.dev/federated-policy"], "web",
        "{first}"
    );
    let mut copy = web_policy();
    copy["metadata"]["name"] = json!("web-copy");
    copy["spec"]["placement"] = json!({"clusterNames": ["c2"]});
    copy["spec"]["overrides"] = json!([]);
    let (code, body) = api(
        &server,
        &server.token,
        "POST",
        FP,
        "application/json",
        &copy,
    );
    assert_eq!(code, 201, "{body}");
    wait_for(
        "web-copy to conflict on c2",
        Duration::from_secs(10),
        || {
            (states(&server, "web-copy") == vec![("c2".into(), "Failed".into(), "Conflict".into())])
                .then_some(())
        },
    );
    assert_eq!(
        sim_policies(&members[1].sim),
        vec![("allow-web".into(), "web-c2".into())]
    );
    let conflict = status(&server, "web-copy")["clusters"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        conflict.contains("allow-web") && conflict.contains("web"),
        "the conflict names the object and its owner: {conflict}"
    );
    let (code, after) = sim_call(&members[1].sim, "GET", &format!("{NP}/allow-web"), None);
    assert_eq!(code, 200, "{after}");
    assert_eq!(after, first, "the first policy's object was not touched");
    let web = status(&server, "web");
    assert!(
        web["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "c2" && c["state"] == "Applied"),
        "{web}"
    );

    // A cluster where the apply fails (no Calico in the simulator): Failed, with the
    // managed cluster's own error message.
    let calico = json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": "calico-sets"},
        "spec": {"placement": {"clusterNames": ["c2"]}, "resources": [{
            "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
            "metadata": {"name": "partners"}, "spec": {"nets": ["198.51.100.0/24"]}}]}
    });
    let (code, body) = api(
        &server,
        &server.token,
        "POST",
        FP,
        "application/json",
        &calico,
    );
    assert_eq!(code, 201, "{body}");
    let failed = wait_for("calico-sets to fail on c2", Duration::from_secs(10), || {
        let st = status(&server, "calico-sets");
        let c = st["clusters"][0].clone();
        (c["state"] == "Failed").then_some(c)
    });
    assert_eq!(failed["reason"], "ApplyFailed", "{failed}");
    let msg = failed["message"].as_str().unwrap();
    assert!(
        msg.contains("GlobalNetworkSet partners") && msg.contains("the cluster answered 404"),
        "{msg}"
    );

    // The same kinds on a cluster with Calico's CRDs (c1; c2 keeps none): Applied.
    let crds = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/calico-crds/calico-v3.yaml"
    );
    let out = Command::new("kubectl")
        .args(["--server", &members[0].sim.url, "apply", "-f", crds])
        .env("HOME", d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let placed = json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": "calico-placed"},
        "spec": {"placement": {"clusterNames": ["c1"]}, "resources": [
            {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
             "metadata": {"name": "partners", "labels": {"role": "partner"}},
             "spec": {"nets": ["198.51.100.0/24"]}},
            {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
             "metadata": {"name": "allow-partners", "namespace": "shop"},
             "spec": {"order": 100, "selector": "app == 'frontend'",
                      "ingress": [{"action": "Allow", "source": {"selector": "role == 'partner'"}}]}}]}
    });
    let (code, body) = api(
        &server,
        &server.token,
        "POST",
        FP,
        "application/json",
        &placed,
    );
    assert_eq!(code, 201, "{body}");
    wait_states(
        &server,
        "calico-placed",
        &[("c1", "Applied")],
        Duration::from_secs(10),
    );
    let gns = "/apis/projectcalico.org/v3/globalnetworksets/partners";
    let (code, live) = sim_call(&members[0].sim, "GET", gns, None);
    assert_eq!(code, 200, "{live}");
    assert_eq!(live["spec"]["nets"], json!(["198.51.100.0/24"]), "{live}");
    assert_eq!(
        live["metadata"]["labels"]["cattery.dev/federated-policy"],
        "calico-placed"
    );
    let (code, live) = sim_call(
        &members[0].sim,
        "GET",
        "/apis/projectcalico.org/v3/namespaces/shop/networkpolicies/allow-partners",
        None,
    );
    assert_eq!(code, 200, "{live}");
    assert_eq!(live["spec"]["order"], 100, "{live}");

    // Plain kubectl against the hub: the FederatedPolicy and its per-cluster state.
    let names = common::kubectl_ok(&hub_kc, &["get", "federatedpolicies", "-o", "name"]);
    assert!(
        names.contains("federatedpolicy.cattery.dev/calico-placed"),
        "{names}"
    );
    let yaml = common::kubectl_ok(
        &hub_kc,
        &["get", "federatedpolicy", "calico-placed", "-o", "yaml"],
    );
    assert!(
        yaml.contains("state: Applied") && yaml.contains("name: c1"),
        "{yaml}"
    );

    // Rollout in batches of one over c1 (Calico CRDs), c2 (none), c3 (none): c1 is
    // Applied, c2's apply fails, and the rollout stops there: c3 stays Pending, untouched.
    let rollout = json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": "calico-rollout"},
        "spec": {"placement": {"clusterNames": ["c1", "c2", "c3"]},
                 "rollout": {"batchSize": 1, "maxUnavailable": 0},
                 "resources": [{"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
                    "metadata": {"name": "rollout-set"}, "spec": {"nets": ["192.0.2.0/24"]}}]}
    });
    let (code, body) = api(
        &server,
        &server.token,
        "POST",
        FP,
        "application/json",
        &rollout,
    );
    assert_eq!(code, 201, "{body}");
    wait_for("the rollout to halt at c2", Duration::from_secs(15), || {
        let got = states(&server, "calico-rollout");
        (got == vec![
            ("c1".into(), "Applied".into(), "Applied".into()),
            ("c2".into(), "Failed".into(), "ApplyFailed".into()),
            ("c3".into(), "Pending".into(), "RolloutHalted".into()),
        ])
        .then_some(())
    });
    let rs = "/apis/projectcalico.org/v3/globalnetworksets/rollout-set";
    assert_eq!(sim_call(&members[0].sim, "GET", rs, None).0, 200);
    assert_eq!(
        sim_call(&members[2].sim, "GET", rs, None).0,
        404,
        "c3 was not reached"
    );
    let (text, code) = server.curl(&[&format!("{FP}/calico-rollout"), "-X", "DELETE"]);
    assert_eq!(code, 200, "{text}");

    // Inform: nothing is written, the missing object is reported.
    let mut inform = web_policy();
    inform["metadata"]["name"] = json!("audit-only");
    inform["spec"]["mode"] = json!("Inform");
    inform["spec"]["placement"] = json!({"clusterNames": ["c1"]});
    inform["spec"]["overrides"] = json!([]);
    inform["spec"]["resources"][0]["metadata"]["name"] = json!("must-exist");
    let (code, body) = api(
        &server,
        &server.token,
        "POST",
        FP,
        "application/json",
        &inform,
    );
    assert_eq!(code, 201, "{body}");
    wait_states(
        &server,
        "audit-only",
        &[("c1", "NonCompliant")],
        Duration::from_secs(10),
    );
    assert_eq!(
        sim_policies(&members[0].sim),
        vec![("hand-made".into(), "db".into())]
    );

    // An agent stopped: Unreachable, never a stale Applied; converges after restart,
    // including a change made while it was away.
    members[2].agent.kill();
    server.wait_connected("c3", "False");
    wait_states(
        &server,
        "web",
        &[("c2", "Applied"), ("c3", "Unreachable")],
        Duration::from_secs(10),
    );
    let (code, body) = sim_call(&members[2].sim, "DELETE", &format!("{NP}/allow-web"), None);
    assert_eq!(code, 200, "{body}");
    let m = &mut members[2];
    m.agent = start_agent(d, "c3-again", &m.config, &m.sim.url, &[]);
    server.wait_connected("c3", "True");
    wait_states(
        &server,
        "web",
        &[("c2", "Applied"), ("c3", "Applied")],
        Duration::from_secs(15),
    );
    assert_eq!(
        sim_policies(&members[2].sim),
        vec![("allow-web".into(), "web".into())]
    );

    // Removing a ManagedCluster while it is reachable takes the federated objects off it.
    let (text, code) = server.curl(&["/apis/cattery.dev/v1/managedclusters/c3", "-X", "DELETE"]);
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        sim_policies(&members[2].sim),
        vec![],
        "removed with the cluster"
    );
    wait_states(
        &server,
        "web",
        &[("c2", "Applied")],
        Duration::from_secs(10),
    );

    // Deleting the policy removes exactly what it placed.
    for p in [
        "web",
        "web-copy",
        "audit-only",
        "calico-sets",
        "calico-placed",
    ] {
        let (text, code) = server.curl(&[&format!("{FP}/{p}"), "-X", "DELETE"]);
        assert_eq!(code, 200, "{text}");
    }
    wait_for(
        "the placed objects to be removed",
        Duration::from_secs(10),
        || {
            (sim_policies(&members[1].sim).is_empty() && sim_policies(&members[2].sim).is_empty())
                .then_some(())
        },
    );
    assert_eq!(
        sim_policies(&members[0].sim),
        vec![("hand-made".into(), "db".into())]
    );
    wait_for(
        "the placed Calico set to be removed",
        Duration::from_secs(10),
        || (sim_call(&members[0].sim, "GET", gns, None).0 == 404).then_some(()),
    );
}
