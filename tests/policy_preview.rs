//! Policy preview end to end: a real `cattery server`, a `cattery sim-cluster` whose
//! simulated traffic an agent ships to the hub's log store, and
//! `POST /apis/cattery.dev/v1/federatedpolicies/preview` answering what a FederatedPolicy
//! would change in that traffic. The expected counts are computed here, independently
//! of `crates/netpol`, from the same stored flows fetched through the logs search API.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);
const PREVIEW: &str = "/apis/cattery.dev/v1/federatedpolicies/preview";

fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (text, code) = server.curl(&[
        path,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body.to_string(),
    ]);
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn logstats(sim: &str) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "5", &format!("{sim}/_sim/logstats")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Every stored flow record of `cluster` (the test keeps them under one page).
fn stored_flows(server: &Server, cluster: &str) -> Vec<Value> {
    let (code, v) = post(
        server,
        "/apis/logs.cattery.dev/v1/flows/search",
        &json!({"clusters": [cluster], "size": 10_000}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["hits"]["total"]["relation"], "eq", "{v}");
    let hits = v["hits"]["hits"].as_array().unwrap();
    assert_eq!(
        hits.len() as u64,
        v["hits"]["total"]["value"].as_u64().unwrap(),
        "all stored flows fit in one page"
    );
    hits.iter().map(|h| h["_source"].clone()).collect()
}

fn has_label(rec: &Value, side: &str, kv: &str) -> bool {
    rec[format!("{side}_labels")]["labels"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == kv))
}

/// Registers `name`, labels it `env=prod`, starts a simulator producing exactly `limit`
/// log records (traffic drawn with `seed`) and an agent shipping them; returns once every
/// flow is stored.
fn cluster(
    server: &Server,
    d: &std::path::Path,
    name: &str,
    limit: u32,
    seed: u64,
) -> (Proc, Proc) {
    let cfg = server.add_cluster(name);
    let sim_port = free_port();
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let logs_dir = d.join(format!("{name}-felix"));
    let spool = d.join(format!("{name}-spool"));
    let flows_file = format!("flows={}", logs_dir.join("flows.log").display());
    let agent = Proc::spawn(
        d,
        &format!("agent-{name}"),
        &[
            "agent",
            "--config",
            cfg.to_str().unwrap(),
            "--upstream",
            &sim_url,
            "--reconnect-max-delay",
            "1s",
            "--spool-dir",
            spool.to_str().unwrap(),
            "--log-file",
            &flows_file,
        ],
        &[],
    );
    let listen = format!("127.0.0.1:{sim_port}");
    let limit_s = limit.to_string();
    let seed_s = seed.to_string();
    let sim = Proc::spawn(
        d,
        &format!("sim-{name}"),
        &[
            "sim-cluster",
            "--listen",
            &listen,
            "--name",
            name,
            "--logs-dir",
            logs_dir.to_str().unwrap(),
            "--log-rate",
            "400",
            "--log-interval",
            "100ms",
            "--log-limit",
            &limit_s,
            "--log-seed",
            &seed_s,
        ],
        &[],
    );
    server.wait_connected(name, "True");
    let (code, body) = {
        let (text, code) = server.curl(&[
            &format!("/apis/cattery.dev/v1/managedclusters/{name}"),
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            &json!({"metadata": {"labels": {"env": "prod"}}}).to_string(),
        ]);
        (code, text)
    };
    assert_eq!(code, 200, "{body}");
    let produced = wait_for("the simulator to finish producing", T, || {
        let s = logstats(&sim_url);
        (s["finished"] == true).then(|| s["flows"]["total"].as_u64().unwrap())
    });
    assert!(produced > 0);
    wait_for("every produced flow to be stored", T, || {
        (stored_flows(server, name).len() as u64 == produced).then_some(())
    });
    (agent, sim)
}

/// Lets checkout pods of any namespace reach the payments db on 5432.
fn open_db() -> Value {
    json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": "db"},
        "spec": {
            "placement": {"clusterSelector": {"matchLabels": {"env": "prod"}}},
            "resources": [{
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "db-allow-checkout", "namespace": "payments"},
                "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                         "policyTypes": ["Ingress"],
                         "ingress": [{"from": [{"namespaceSelector": {},
                                                "podSelector": {"matchLabels": {"app": "checkout"}}}],
                                      "ports": [{"protocol": "TCP", "port": 5432}]}]}
            }]
        }
    })
}

/// Denies all ingress to the shop's cart pods.
fn deny_cart(name: &str) -> Value {
    json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": name},
        "spec": {
            "placement": {"clusterSelector": {"matchLabels": {"env": "prod"}}},
            "resources": [{
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "cart-closed", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "cart"}},
                         "policyTypes": ["Ingress"]}
            }]
        }
    })
}

#[test]
fn preview_counts_the_flows_a_policy_would_deny() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let (_agent, _sim) = cluster(&server, d, "east", 1_500, 7);

    // The test's own rule, on the stored records: every allowed flow reported by a cart
    // pod of the shop (ingress) becomes denied; nothing else changes (the policy only
    // isolates cart pods for ingress, and adds no allow rule).
    let flows = stored_flows(&server, "east");
    let denied: Vec<&Value> = flows
        .iter()
        .filter(|r| {
            r["reporter"] == "dst"
                && r["action"] == "allow"
                && r["dest_namespace"] == "shop"
                && r["dest_type"] == "wep"
                && has_label(r, "dest", "app=cart")
        })
        .collect();
    let expected_records = denied.len() as u64;
    let expected_flows: u64 = denied
        .iter()
        .map(|r| r["num_flows"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        expected_records > 0,
        "the simulated traffic reaches the cart: {} flows stored",
        flows.len()
    );

    let (code, v) = post(&server, &format!("{PREVIEW}?since=1h"), &deny_cart("cart"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["kind"], "FederatedPolicyPreview", "{v}");
    let clusters = v["status"]["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{v}");
    let east = &clusters[0];
    assert_eq!(east["name"], "east", "{v}");
    assert_eq!(east["state"], "Evaluated", "{v}");
    assert_eq!(east["flows"]["records"], flows.len() as u64, "{v}");
    assert_eq!(east["flows"]["changed"], expected_records, "{v}");
    // The evaluator agrees with what the simulator recorded under the policies in force.
    assert_eq!(east["flows"]["recordedMismatch"], 0, "{v}");
    assert_eq!(east["flows"]["undetermined"], 0, "{v}");
    let changes = east["changes"].as_array().unwrap();
    assert!(
        changes.iter().all(|c| c["change"] == "AllowedToDenied"
            && c["direction"] == "Ingress"
            && c["destination"]["namespace"] == "shop"
            && c["detail"] == "shop/cart-closed"),
        "{v}"
    );
    let got_records: u64 = changes.iter().map(|c| c["records"].as_u64().unwrap()).sum();
    let got_flows: u64 = changes.iter().map(|c| c["flows"].as_u64().unwrap()).sum();
    assert_eq!(got_records, expected_records, "{v}");
    assert_eq!(got_flows, expected_flows, "{v}");

    // A policy that lets checkout reach the payments db, which the seeded policy denies:
    // the denied records reported by the db for checkout clients become allowed.
    let opened: Vec<&Value> = flows
        .iter()
        .filter(|r| {
            r["reporter"] == "dst"
                && r["action"] == "deny"
                && r["dest_namespace"] == "payments"
                && has_label(r, "dest", "app=db")
                && r["source_type"] == "wep"
                && has_label(r, "source", "app=checkout")
                && r["dest_port"] == 5432
                && r["proto"] == "tcp"
        })
        .collect();
    assert!(
        !opened.is_empty(),
        "checkout's denied calls to the db are stored"
    );
    let (code, v) = post(&server, PREVIEW, &open_db());
    assert_eq!(code, 200, "{v}");
    let east = &v["status"]["clusters"][0];
    assert_eq!(east["state"], "Evaluated", "{v}");
    assert_eq!(east["flows"]["changed"], opened.len() as u64, "{v}");
    let changes = east["changes"].as_array().unwrap();
    assert!(
        changes.iter().all(|c| c["change"] == "DeniedToAllowed"
            && c["source"]["namespace"] == "shop"
            && c["destination"]["namespace"] == "payments"
            && c["port"] == 5432
            && c["detail"] == "payments/db-allow-checkout"),
        "{v}"
    );
    let got: u64 = changes.iter().map(|c| c["records"].as_u64().unwrap()).sum();
    assert_eq!(got, opened.len() as u64, "{v}");

    // The CLI shows the same answer, as JSON and as a table.
    let file = d.join("cart.json");
    std::fs::write(&file, deny_cart("cart").to_string()).unwrap();
    let file = file.to_str().unwrap();
    let out = server.cli_ok(&[
        "policy", "preview", "-f", file, "--since", "1h", "-o", "json",
    ]);
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        cli["status"]["clusters"][0]["flows"]["changed"], expected_records,
        "{out}"
    );
    let table = server.cli_ok(&["policy", "preview", "-f", file]);
    assert!(
        table.contains("allowed→denied") && table.contains("shop/cart-closed"),
        "{table}"
    );

    // Nothing was stored or placed.
    let (text, code) = server.curl(&["/apis/cattery.dev/v1/federatedpolicies/cart"]);
    assert_eq!(code, 404, "{text}");

    // A bad policy: a 400 naming the field, as an apply gets.
    let mut bad = deny_cart("bad");
    bad["spec"]["resources"][0]["spec"]["podSelector"] = json!("cart");
    let (code, v) = post(&server, PREVIEW, &bad);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["kind"], "Status", "{v}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains("podSelector"), "{v}");

    // A bad window: a 400 naming the parameter.
    let (code, v) = post(
        &server,
        &format!("{PREVIEW}?since=yesterday"),
        &deny_cart("w"),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("since"), "{v}");

    // A caller without `create` on federatedpolicies: refused at the door.
    let nobody = server
        .cli_ok(&["token", "create", "--user", "nobody"])
        .trim()
        .to_string();
    // The gate refuses before reading the body and closes the connection, which curl can
    // see as a reset while still sending (code 0); the answer itself is what counts.
    let (text, code) = (0..5)
        .map(|_| {
            server.curl_as(
                Some(&nobody),
                &[
                    PREVIEW,
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    &deny_cart("cart").to_string(),
                ],
            )
        })
        .find(|(_, code)| *code != 0)
        .expect("an answer to nobody's preview");
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("federatedpolicies"), "{text}");

    // A caller who may create federatedpolicies but not read east's flows: east is
    // reported Forbidden and nothing of it is read.
    let rbac = d.join("previewer.yaml");
    std::fs::write(&rbac, PREVIEWER).unwrap();
    server.cli_ok(&["apply", "-f", rbac.to_str().unwrap()]);
    let pat = server
        .cli_ok(&["token", "create", "--user", "pat"])
        .trim()
        .to_string();
    let v = wait_for("pat's preview to be allowed", T, || {
        let (text, code) = server.curl_as(
            Some(&pat),
            &[
                PREVIEW,
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &deny_cart("cart").to_string(),
            ],
        );
        (code == 200).then(|| serde_json::from_str::<Value>(&text).unwrap())
    });
    let east = &v["status"]["clusters"][0];
    assert_eq!(east["name"], "east", "{v}");
    assert_eq!(east["state"], "Forbidden", "{v}");
    assert_eq!(east["flows"]["records"], 0, "{v}");
    assert_eq!(east["changes"], json!([]), "{v}");
}

/// The test's own rule for a policy that isolates the shop's `app` pods for ingress and
/// allows nothing: every allowed record reported by such a pod (ingress) becomes denied,
/// nothing else changes. `(records, flows)`.
fn isolated_shop_ingress(flows: &[Value], app: &str) -> (u64, u64) {
    let hit: Vec<&Value> = flows
        .iter()
        .filter(|r| {
            r["reporter"] == "dst"
                && r["action"] == "allow"
                && r["dest_namespace"] == "shop"
                && r["dest_type"] == "wep"
                && has_label(r, "dest", &format!("app={app}"))
        })
        .collect();
    let flows = hit
        .iter()
        .map(|r| r["num_flows"].as_u64().unwrap_or(0))
        .sum();
    (hit.len() as u64, flows)
}

/// A preview over a placement of three clusters: two connected ones with different
/// stored traffic (one of them with an override that isolates another app), and one
/// whose agent is stopped. Each connected cluster's counts equal the ones computed here
/// from its own stored flows; the stopped one is `Unreachable`, not an empty success;
/// the Calico kind of the policy is named as not evaluated on every evaluated cluster.
#[test]
fn preview_reports_each_cluster_of_the_placement() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let (_east_agent, _east_sim) = cluster(&server, d, "east", 1_200, 7);
    let (_west_agent, _west_sim) = cluster(&server, d, "west", 700, 23);
    let (mut north_agent, _north_sim) = cluster(&server, d, "north", 300, 5);
    north_agent.kill();
    server.wait_connected("north", "False");

    let east_flows = stored_flows(&server, "east");
    let west_flows = stored_flows(&server, "west");
    let north_flows = stored_flows(&server, "north");
    assert_ne!(
        east_flows.len(),
        west_flows.len(),
        "the two clusters had different traffic"
    );
    assert!(!north_flows.is_empty(), "north's flows are stored");
    // east gets the template (cart isolated); west's override isolates checkout instead.
    let east_want = isolated_shop_ingress(&east_flows, "cart");
    let west_want = isolated_shop_ingress(&west_flows, "checkout");
    assert!(
        east_want.0 > 0 && west_want.0 > 0,
        "{east_want:?} {west_want:?}"
    );

    let mut policy = deny_cart("fleet");
    policy["spec"]["overrides"] = json!([{
        "clusterNames": ["west"],
        "resource": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "name": "cart-closed"},
        "patch": {"spec": {"podSelector": {"matchLabels": {"app": "checkout"}}}}
    }]);
    policy["spec"]["resources"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "legacy-closed"},
            "spec": {"order": 10, "selector": "app == 'legacy'",
                     "ingress": [{"action": "Deny"}]}
        }));
    let (code, v) = post(&server, &format!("{PREVIEW}?since=1h"), &policy);
    assert_eq!(code, 200, "{v}");
    let clusters = v["status"]["clusters"].as_array().unwrap();
    let names: Vec<&str> = clusters
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["east", "north", "west"], "{v}");

    for (c, stored, (records, flows), app) in [
        (&clusters[0], &east_flows, east_want, "cart"),
        (&clusters[2], &west_flows, west_want, "checkout"),
    ] {
        let name = &c["name"];
        assert_eq!(c["state"], "Evaluated", "{name}: {c}");
        assert_eq!(c["flows"]["records"], stored.len() as u64, "{name}: {c}");
        assert_eq!(c["flows"]["changed"], records, "{name}: {c}");
        assert_eq!(c["flows"]["recordedMismatch"], 0, "{name}: {c}");
        assert_eq!(c["flows"]["undetermined"], 0, "{name}: {c}");
        let changes = c["changes"].as_array().unwrap();
        assert!(
            changes.iter().all(|ch| ch["change"] == "AllowedToDenied"
                && ch["direction"] == "Ingress"
                && ch["destination"]["namespace"] == "shop"
                && ch["destination"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(app))
                && ch["detail"] == "shop/cart-closed"),
            "{name}: {c}"
        );
        let got_records: u64 = changes.iter().map(|c| c["records"].as_u64().unwrap()).sum();
        let got_flows: u64 = changes.iter().map(|c| c["flows"].as_u64().unwrap()).sum();
        assert_eq!((got_records, got_flows), (records, flows), "{name}: {c}");
        // The Calico kind is named, not silently skipped.
        let calico: Vec<&Value> = c["notEvaluated"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "GlobalNetworkPolicy")
            .collect();
        assert_eq!(calico.len(), 1, "{name}: {c}");
        assert_eq!(calico[0]["name"], "legacy-closed", "{name}: {c}");
        assert_eq!(
            calico[0]["apiVersion"], "projectcalico.org/v3",
            "{name}: {c}"
        );
        assert_eq!(calico[0]["origin"], "policy", "{name}: {c}");
        assert!(
            calico[0]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("not evaluated"),
            "{name}: {c}"
        );
    }

    // north has stored flows, but its policies in force cannot be read: Unreachable,
    // with why, and no counts that could pass for "nothing changes".
    let north = &clusters[1];
    assert_eq!(north["state"], "Unreachable", "{north}");
    assert!(
        north["message"]
            .as_str()
            .unwrap_or("")
            .contains("not connected"),
        "{north}"
    );
    assert_eq!(north["flows"]["records"], 0, "{north}");
    assert_eq!(north["changes"], json!([]), "{north}");
}

/// `pat` may create FederatedPolicies (so preview them) and nothing else.
const PREVIEWER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: policy-author}
rules:
- apiGroups: ["cattery.dev"]
  resources: ["federatedpolicies"]
  verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: pat-policy-author}
subjects: [{kind: User, name: pat, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: policy-author, apiGroup: rbac.authorization.k8s.io}
"#;
