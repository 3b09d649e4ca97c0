//! The banner's cluster selector with a fleet larger than it lists: 150 registered
//! clusters, so a page offers the first 100 and the filter box searches the rest on the
//! server (`GET /ui/cluster-options`). A user allowed only a cluster late in name order is
//! offered exactly it (the API fills a limited page with the names RBAC allows, instead of
//! cutting the page first and filtering it empty). Real server, real chromium.

mod common;

use common::*;
use serde_json::json;

/// More than the selector lists (`PICKER_MAX` = 100 in crates/ui/src/ctx.rs).
const FLEET: usize = 150;

const LATE_POLICY: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: late-reader}
rules:
- apiGroups: ["cattery.dev"]
  resources: ["managedclusters"]
  resourceNames: ["c-149"]
  verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-late}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: late-reader, apiGroup: rbac.authorization.k8s.io}
"#;

#[test]
fn the_cluster_selector_searches_a_large_fleet_on_the_server() {
    require_browser_tooling("the_cluster_selector_searches_a_large_fleet_on_the_server");
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    for i in 0..FLEET {
        let body = json!({
            "apiVersion": "cattery.dev/v1",
            "kind": "ManagedCluster",
            "metadata": {"name": format!("c-{i:03}"), "labels": {"env": "test"}},
        });
        let (res, code) = server.post_json("/apis/cattery.dev/v1/managedclusters", &body);
        assert_eq!(code, 201, "creating c-{i:03}: {res}");
    }
    let policy = d.join("bob.yaml");
    std::fs::write(&policy, LATE_POLICY).unwrap();
    server.cli_ok(&["apply", "-f", policy.to_str().unwrap()]);
    let bob = server
        .cli_ok(&["token", "create", "--user", "bob"])
        .trim()
        .to_string();
    run_browser_spec(
        &server,
        "fleet.spec.mjs",
        &[("UI_BOB_TOKEN", bob), ("UI_FLEET", FLEET.to_string())],
        &["ok first page", "ok search", "ok pick", "ok late user"],
    );
}
