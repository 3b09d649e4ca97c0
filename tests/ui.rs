//! Browser tests of the Manager UI: real server, simulated clusters with logs and their
//! agents, and Debian's chromium driven by Playwright (`tests/ui/ui.spec.mjs`, run with
//! node). Screenshots of every page land in `target/ui-screenshots/`.
//!
//! Needs `/usr/bin/chromium`, `node`, `kubectl` and `npm ci` in `tests/ui`. Without them the
//! test fails with a message saying what to install (a test that did not run must not
//! count as passing).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

const ALICE_POLICY: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: east-operator}
rules:
- apiGroups: ["cattery.dev"]
  resources: ["managedclusters"]
  resourceNames: ["east"]
  verbs: ["get", "list"]
- apiGroups: ["cattery.dev"]
  resources: ["managedclusters/proxy"]
  resourceNames: ["east"]
  verbs: ["get"]
- apiGroups: ["logs.cattery.dev"]
  resources: ["flows", "dns", "l7"]
  resourceNames: ["east"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-east}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: east-operator, apiGroup: rbac.authorization.k8s.io}
"#;

fn stored(server: &Server, t: &str, cluster: &str) -> u64 {
    let (res, code) = server.curl(&[
        &format!("/apis/logs.cattery.dev/v1/{t}/search"),
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &json!({"clusters": [cluster], "size": 0}).to_string(),
    ]);
    assert_eq!(code, 200, "{res}");
    let v: Value = serde_json::from_str(&res).unwrap();
    v["hits"]["total"]["value"].as_u64().unwrap_or(0)
}

#[test]
fn manager_ui_in_a_real_browser() {
    require_browser_tooling("manager_ui_in_a_real_browser");
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    // east keeps generating for the whole test: the policy the spec creates through the
    // proxy must get hits.
    let _east = logging_cluster(&server, d, "east", "100", "100000");
    let _west = logging_cluster(&server, d, "west", "100", "3000");
    let policy = d.join("alice.yaml");
    std::fs::write(&policy, ALICE_POLICY).unwrap();
    server.cli_ok(&["apply", "-f", policy.to_str().unwrap()]);
    let alice = server
        .cli_ok(&["token", "create", "--user", "alice"])
        .trim()
        .to_string();
    // A simulator for the cluster the browser adds (its agent is started by the spec with
    // the agent config the page shows).
    let north = Sim::start(d, "north", None);
    for c in ["east", "west"] {
        for t in ["flows", "dns", "l7"] {
            wait_for(&format!("{t} of {c} stored"), T, || {
                (stored(&server, t, c) > 0).then_some(())
            });
        }
    }
    run_browser_spec(
        &server,
        "ui.spec.mjs",
        &[
            ("UI_ALICE_TOKEN", alice.clone()),
            ("UI_CA_FILE", server.ca.display().to_string()),
            ("UI_WORK_DIR", d.display().to_string()),
            ("UI_CATTERY_BIN", bin().to_string()),
            ("UI_NORTH_UPSTREAM", north.url.clone()),
            (
                "UI_EAST_KUBECONFIG",
                server.kubeconfig("east").display().to_string(),
            ),
        ],
        &[
            "ok sign-in",
            "ok csrf",
            "ok cluster switch",
            "ok logs export",
            "ok logs live",
            "ok flow counts",
            "ok add cluster copy download once",
            "ok graph",
            "ok policies",
            "ok add cluster live",
            "ok bound user",
            "ok sign-out",
        ],
    );
    // The browser's actions went through the API's door: they are in the audit trail as
    // the signed-in users.
    let audited = |who: &str| {
        let out = server.cli_ok(&[
            "logs",
            "audit",
            "--cluster",
            "cluster",
            "--since",
            "10m",
            "--limit",
            "0",
            "-o",
            "ndjson",
            "--where",
            "userAgent=cattery-ui*",
            "--where",
            &format!("user.username={who}"),
        ]);
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    // Both records must arrive; the audit indexer may commit them in different batches.
    wait_for(
        "the UI's create and remove of north audited as the admin",
        T,
        || {
            let ev = audited("cattery:admin");
            let created = ev
                .iter()
                .any(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "managedclusters");
            let removed = ev
                .iter()
                .any(|e| e["verb"] == "delete" && e["objectRef"]["name"] == "north");
            (created && removed).then_some(())
        },
    );
    wait_for("alice's UI reads in the audit trail", T, || {
        let ev = audited("alice");
        ev.iter()
            .any(|e| e["annotations"]["authorization.k8s.io/decision"] == "forbid")
            .then_some(())
    });
}
