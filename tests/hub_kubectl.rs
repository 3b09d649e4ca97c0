//! Plain kubectl against the hub itself: a real `cattery server`, real kubectl 1.32 with
//! the kubeconfig of `cattery kubeconfig --hub`, over HTTPS. Discovery, OpenAPI, Table
//! output, watch, client-side and server-side apply, label, describe, explain, delete,
//! auth can-i/whoami; and the API's answers kubectl does not show: 409 on a stale
//! resourceVersion, 410 for a watch from before the store's history, 403, 400 naming the
//! field.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

const C1: &str = "apiVersion: cattery.dev/v1
kind: ManagedCluster
metadata:
  name: c1
  labels:
    env: dev
";

fn hub_kubeconfig(server: &Server) -> std::path::PathBuf {
    let kc = server.cli_ok(&["kubeconfig", "--hub"]);
    assert!(kc.contains("current-context: cattery-hub"), "{kc}");
    let path = server.dir.join("kubeconfig-hub");
    std::fs::write(&path, kc).unwrap();
    path
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn kubectl_manages_hub_resources() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let kc = hub_kubeconfig(&server);
    let file = d.join("c1.yaml");
    std::fs::write(&file, C1).unwrap();

    // Client-side apply creates (and records its last-applied annotation).
    let out = kubectl_ok(&kc, &["apply", "-f", file.to_str().unwrap()]);
    assert!(
        out.contains("managedcluster.cattery.dev/c1 created"),
        "{out}"
    );
    let got = kubectl_ok(&kc, &["get", "managedclusters"]);
    assert!(
        got.starts_with("NAME") && got.contains("CONNECTED"),
        "{got}"
    );
    assert!(got.lines().any(|l| l.starts_with("c1 ")), "{got}");
    assert!(!got.contains("CERTIFICATE-EXPIRES"), "{got}");
    let wide = kubectl_ok(&kc, &["get", "mc", "-o", "wide"]);
    assert!(
        wide.contains("CERTIFICATE-EXPIRES") && wide.contains("env=dev"),
        "{wide}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&kubectl_ok(&kc, &["get", "mc", "c1", "-o", "json"])).unwrap();
    assert_eq!(json["metadata"]["labels"]["env"], "dev");
    assert!(
        json["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string(),
        "{json}"
    );
    assert_eq!(json["status"]["conditions"][0]["reason"], "AwaitingAgent");
    let yaml = kubectl_ok(&kc, &["get", "mc", "c1", "-o", "yaml"]);
    assert!(yaml.contains("certificateFingerprint:"), "{yaml}");

    // A watch sees the label change; the change is visible to `cattery cluster list`.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "get",
            "mc",
            "-w",
            "-o",
            "custom-columns=NAME:.metadata.name,ENV:.metadata.labels.env",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = LineReader::new(watch.stdout.take().unwrap());
    lines.wait_line("dev", T);
    let out = kubectl_ok(
        &kc,
        &["label", "managedcluster", "c1", "env=prod", "--overwrite"],
    );
    assert!(out.contains("labeled"), "{out}");
    let line = lines.wait_line("prod", T);
    assert!(line.starts_with("c1"), "{line}");
    let _ = watch.kill();
    let _ = watch.wait();
    let list = server.cli_ok(&["cluster", "list"]);
    assert!(list.contains("env=prod"), "{list}");
    let sel = kubectl_ok(&kc, &["get", "mc", "-l", "env=prod", "-o", "name"]);
    assert_eq!(sel.trim(), "managedcluster.cattery.dev/c1");
    let none = kubectl(&kc, &["get", "mc", "-l", "env=dev"]);
    assert!(stderr(&none).contains("No resources found"), "{none:?}");

    // Re-applying the file after the label change is a merge: kubectl patches env back.
    let out = kubectl_ok(&kc, &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.contains("configured"), "{out}");
    assert_eq!(
        server.cluster_json("c1")["metadata"]["labels"]["env"],
        "dev"
    );

    let desc = kubectl_ok(&kc, &["describe", "managedcluster", "c1"]);
    assert!(desc.contains("Name:") && desc.contains("env=dev"), "{desc}");
    assert!(desc.contains("AwaitingAgent"), "{desc}");
    let explain = kubectl_ok(&kc, &["explain", "managedcluster.spec"]);
    assert!(explain.contains("certificateFingerprint"), "{explain}");

    // Server-side apply of a FederatedPolicy (placed nowhere: no cluster is prod): create,
    // then change.
    let federated_policy = |mode: &str| {
        format!(
            "apiVersion: cattery.dev/v1\nkind: FederatedPolicy\nmetadata:\n  name: p1\nspec:\n  mode: {mode}\n  placement:\n    clusterSelector: {{matchLabels: {{env: prod}}}}\n  resources:\n  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {{name: deny-all, namespace: shop}}\n    spec: {{podSelector: {{}}, policyTypes: [Ingress]}}\n"
        )
    };
    let fp = d.join("fp.yaml");
    std::fs::write(&fp, federated_policy("Inform")).unwrap();
    let out = kubectl_ok(&kc, &["apply", "--server-side", "-f", fp.to_str().unwrap()]);
    assert!(out.contains("serverside-applied"), "{out}");
    std::fs::write(&fp, federated_policy("Enforce")).unwrap();
    kubectl_ok(&kc, &["apply", "--server-side", "-f", fp.to_str().unwrap()]);
    let fps = kubectl_ok(&kc, &["get", "federatedpolicies"]);
    assert!(fps.contains("Enforce") && !fps.contains("Inform"), "{fps}");

    // Unknown fields and bad YAML: 400 naming the field.
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, format!("{C1}spec:\n  colour: red\n")).unwrap();
    let out = kubectl(&kc, &["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("colour"), "{}", stderr(&out));
    let (body, code) = server.curl(&[
        "/apis/cattery.dev/v1/federatedpolicies",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/yaml",
        "--data-binary",
        "apiVersion: cattery.dev/v1\nkind: FederatedPolicy\nmetadata: {name: p2}\nspec: [",
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"kind\":\"Status\""), "{body}");

    // auth can-i / whoami, and a user without permission.
    assert_eq!(
        kubectl_ok(&kc, &["auth", "can-i", "create", "managedclusters"]).trim(),
        "yes"
    );
    let who = kubectl_ok(&kc, &["auth", "whoami"]);
    assert!(who.contains("cattery:admin"), "{who}");
    let bob = server
        .cli_ok(&["token", "create", "--user", "bob"])
        .trim()
        .to_string();
    let out = kubectl(
        &kc,
        &[
            "--token",
            &bob,
            "auth",
            "can-i",
            "create",
            "managedclusters",
        ],
    );
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(answer.starts_with("no"), "{answer}");
    let out = kubectl(&kc, &["--token", &bob, "get", "mc"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Forbidden"), "{}", stderr(&out));
    let out = kubectl(
        &kc,
        &["--token", &bob, "label", "mc", "c1", "env=x", "--overwrite"],
    );
    assert!(!out.status.success());
    assert_eq!(
        server.cluster_json("c1")["metadata"]["labels"]["env"],
        "dev"
    );

    // Tokens and RBAC objects print as Tables too; a listed token never shows its secret.
    let tokens = kubectl_ok(&kc, &["get", "tokens"]);
    assert!(
        tokens.starts_with("NAME") && tokens.contains("USER"),
        "{tokens}"
    );
    assert!(tokens.lines().any(|l| l.contains("bob")), "{tokens}");
    assert!(
        !tokens.contains(&bob) && !tokens.contains(&server.token),
        "{tokens}"
    );
    let role = d.join("role.yaml");
    std::fs::write(
        &role,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: mc-reader\nrules:\n- apiGroups: [cattery.dev]\n  resources: [managedclusters]\n  verbs: [get, list]\n",
    )
    .unwrap();
    let out = kubectl_ok(&kc, &["apply", "-f", role.to_str().unwrap()]);
    assert!(
        out.contains("clusterrole.rbac.authorization.k8s.io/mc-reader created"),
        "{out}"
    );
    let roles = kubectl_ok(&kc, &["get", "clusterroles"]);
    assert!(
        roles.starts_with("NAME") && roles.contains("mc-reader"),
        "{roles}"
    );

    // Delete.
    let out = kubectl_ok(&kc, &["delete", "managedcluster", "c1"]);
    assert!(out.contains("deleted"), "{out}");
    let out = kubectl(&kc, &["get", "mc", "c1"]);
    assert!(
        stderr(&out).contains("NotFound") || stderr(&out).contains("not found"),
        "{out:?}"
    );
    assert!(!server.cli_ok(&["cluster", "list"]).contains("c1"));
}

#[test]
fn stale_updates_conflict_and_old_watches_are_gone() {
    let dir = test_dir();
    let d = dir.path();
    let mut server = Server::start(d);
    server.cli_ok(&["cluster", "add", "c1", "--labels", "env=dev"]);
    let first = server.cluster_json("c1");
    let rv0 = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let patch = |server: &Server, labels: &str| {
        server.curl(&[
            "/apis/cattery.dev/v1/managedclusters/c1",
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            &format!(r#"{{"metadata":{{"labels":{labels}}}}}"#),
        ])
    };
    let (body, code) = patch(&server, r#"{"env":"prod"}"#);
    assert_eq!(code, 200, "{body}");
    // A PUT carrying the first resourceVersion is stale now.
    let mut stale = first.clone();
    stale["metadata"]["labels"]["env"] = "stage".into();
    let (body, code) = server.curl(&[
        "/apis/cattery.dev/v1/managedclusters/c1",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &stale.to_string(),
    ]);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains(r#""reason":"Conflict""#), "{body}");
    assert_eq!(
        server.cluster_json("c1")["metadata"]["labels"]["env"],
        "prod"
    );
    // With the current resourceVersion the same PUT succeeds.
    let current = server.cluster_json("c1");
    stale["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    let (body, code) = server.curl(&[
        "/apis/cattery.dev/v1/managedclusters/c1",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &stale.to_string(),
    ]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        server.cluster_json("c1")["metadata"]["labels"]["env"],
        "stage"
    );

    // A watch from a resourceVersion the (restarted) store no longer has: ERROR 410.
    server.proc.kill();
    server.restart("server");
    assert_eq!(
        server.cluster_json("c1")["metadata"]["labels"]["env"],
        "stage"
    );
    let (body, code) = server.curl(&[&format!(
        "/apis/cattery.dev/v1/managedclusters?watch=1&resourceVersion={rv0}&timeoutSeconds=5"
    )]);
    assert_eq!(code, 200, "{body}");
    let first_line: serde_json::Value =
        serde_json::from_str(body.lines().next().unwrap_or("")).unwrap();
    assert_eq!(first_line["type"], "ERROR", "{body}");
    assert_eq!(first_line["object"]["code"], 410, "{body}");
    assert_eq!(first_line["object"]["reason"], "Expired", "{body}");
    // A watch from now sees the next change.
    let now = server.cluster_json("c1")["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, code) = patch(&server, r#"{"team":"a"}"#);
    assert_eq!(code, 200);
    let (body, _) = server.curl(&[&format!(
        "/apis/cattery.dev/v1/managedclusters?watch=1&resourceVersion={now}&timeoutSeconds=2"
    )]);
    let ev: serde_json::Value = serde_json::from_str(body.lines().next().unwrap_or("")).unwrap();
    assert_eq!(ev["type"], "MODIFIED", "{body}");
    assert_eq!(ev["object"]["metadata"]["labels"]["team"], "a", "{body}");
}

/// `kubectl apply` (client-side and `--server-side`) and `kubectl label` against the hub's
/// field ownership: a field left out of the next apply is removed, a second field manager
/// changing an owned field is refused with a 409 naming the owner until it forces.
#[test]
fn apply_tracks_field_ownership() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let kc = hub_kubeconfig(&server);
    let policy = |labels: &str, mode: &str| {
        format!(
            "apiVersion: cattery.dev/v1\nkind: FederatedPolicy\nmetadata:\n  name: p1\n  labels: {{{labels}}}\nspec:\n  mode: {mode}\n  placement:\n    clusterSelector: {{matchLabels: {{env: prod}}}}\n  resources:\n  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {{name: deny-all, namespace: shop}}\n    spec: {{podSelector: {{}}, policyTypes: [Ingress]}}\n"
        )
    };
    let fp = d.join("fp.yaml");
    let fp_path = fp.to_str().unwrap();
    let get = || -> serde_json::Value {
        serde_json::from_str(&kubectl_ok(
            &kc,
            &[
                "get",
                "federatedpolicy",
                "p1",
                "-o",
                "json",
                "--show-managed-fields",
            ],
        ))
        .unwrap()
    };
    let managers = |v: &serde_json::Value| -> Vec<String> {
        v["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["manager"].as_str().unwrap(),
                    e["operation"].as_str().unwrap()
                )
            })
            .collect()
    };

    // Server-side: create, then re-apply without the label `tier`: it is gone.
    std::fs::write(&fp, policy("team: a, tier: web", "Inform")).unwrap();
    let out = kubectl_ok(&kc, &["apply", "--server-side", "-f", fp_path]);
    assert!(out.contains("serverside-applied"), "{out}");
    let v = get();
    assert_eq!(v["metadata"]["labels"]["tier"], "web");
    assert_eq!(managers(&v), ["kubectl/Apply"], "{v}");
    let owned = &v["metadata"]["managedFields"][0]["fieldsV1"];
    assert!(
        owned["f:metadata"]["f:labels"]["f:tier"].is_object(),
        "{owned}"
    );
    assert!(owned["f:spec"]["f:mode"].is_object(), "{owned}");
    std::fs::write(&fp, policy("team: a", "Inform")).unwrap();
    kubectl_ok(&kc, &["apply", "--server-side", "-f", fp_path]);
    let v = get();
    assert_eq!(
        v["metadata"]["labels"],
        serde_json::json!({"team": "a"}),
        "{v}"
    );

    // Another manager changing spec.mode: 409 naming kubectl and the field.
    std::fs::write(&fp, policy("team: a", "Enforce")).unwrap();
    let other = [
        "apply",
        "--server-side",
        "--field-manager=rollout",
        "-f",
        fp_path,
    ];
    let out = kubectl(&kc, &other);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("conflict") && err.contains("\"kubectl\"") && err.contains(".spec.mode"),
        "{err}"
    );
    assert_eq!(get()["spec"]["mode"], "Inform");
    // Forced, it takes spec.mode over; kubectl keeps the rest.
    let mut forced = other.to_vec();
    forced.push("--force-conflicts");
    kubectl_ok(&kc, &forced);
    let v = get();
    assert_eq!(v["spec"]["mode"], "Enforce");
    assert_eq!(managers(&v), ["kubectl/Apply", "rollout/Apply"], "{v}");
    let mf = v["metadata"]["managedFields"].as_array().unwrap();
    assert!(mf[0]["fieldsV1"]["f:spec"].get("f:mode").is_none(), "{v}");
    assert!(mf[1]["fieldsV1"]["f:spec"]["f:mode"].is_object(), "{v}");
    // kubectl re-applying Inform now conflicts with rollout.
    std::fs::write(&fp, policy("team: a", "Inform")).unwrap();
    let out = kubectl(&kc, &["apply", "--server-side", "-f", fp_path]);
    assert!(stderr(&out).contains("\"rollout\""), "{}", stderr(&out));

    // `kubectl delete -f` removes it.
    let out = kubectl_ok(&kc, &["delete", "-f", fp_path]);
    assert!(out.contains("deleted"), "{out}");
    let out = kubectl(&kc, &["get", "federatedpolicy", "p1"]);
    assert!(stderr(&out).contains("not found"), "{out:?}");

    // Client-side apply: a label dropped from the file is removed on the next apply;
    // writes record their manager as an Update.
    let c1 = d.join("c1.yaml");
    std::fs::write(&c1, format!("{C1}    team: a\n")).unwrap();
    kubectl_ok(&kc, &["apply", "-f", c1.to_str().unwrap()]);
    let v = server.cluster_json("c1");
    assert_eq!(v["metadata"]["labels"]["team"], "a", "{v}");
    assert_eq!(managers(&v), ["kubectl-client-side-apply/Update"], "{v}");
    std::fs::write(&c1, C1).unwrap();
    let out = kubectl_ok(&kc, &["apply", "-f", c1.to_str().unwrap()]);
    assert!(out.contains("configured"), "{out}");
    let v = server.cluster_json("c1");
    assert_eq!(
        v["metadata"]["labels"],
        serde_json::json!({"env": "dev"}),
        "{v}"
    );
    // `kubectl label c1 env-` removes the label, and the ownership of it.
    let out = kubectl_ok(&kc, &["label", "managedcluster", "c1", "env-"]);
    assert!(out.contains("unlabeled"), "{out}");
    let v = server.cluster_json("c1");
    assert!(
        v["metadata"]
            .get("labels")
            .is_none_or(|l| l.get("env").is_none()),
        "{v}"
    );
    assert!(
        !v["metadata"]["managedFields"].to_string().contains("f:env"),
        "{v}"
    );
    assert!(!server.cli_ok(&["cluster", "list"]).contains("env=dev"));
}

const READER: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: fleet-reader
rules:
- apiGroups: [cattery.dev]
  resources: [managedclusters]
  verbs: [get, list, watch]
- apiGroups: [cattery.dev]
  resources: [federatedpolicies]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: alice-reads
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: fleet-reader
subjects:
- kind: User
  name: alice
";

/// The rules of ClusterRole `name`, as the hub stores them.
fn rules_of(kc: &std::path::Path, name: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&kubectl_ok(kc, &["get", "clusterrole", name, "-o", "json"])).unwrap();
    v["rules"].as_array().cloned().unwrap_or_default()
}

fn write(d: &std::path::Path, name: &str, body: &str) -> String {
    let p = d.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn kubectl_manages_rbac_objects_and_they_take_effect() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let kc = hub_kubeconfig(&server);
    let alice = server
        .cli_ok(&["token", "create", "--user", "alice"])
        .trim()
        .to_string();
    let as_alice = |args: &[&str]| {
        let mut full = vec!["--token", alice.as_str()];
        full.extend_from_slice(args);
        kubectl(&kc, &full)
    };
    let out = as_alice(&["get", "mc"]);
    assert!(stderr(&out).contains("Forbidden"), "{}", stderr(&out));

    // A watch of the bindings sees the built-ins, then the one kubectl applies.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["get", "clusterrolebindings", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = LineReader::new(watch.stdout.take().unwrap());
    lines.wait_line("cattery-admin", T);

    // Client-side apply creates both; the binding grants on alice's next request.
    let reader = write(d, "reader.yaml", READER);
    let out = kubectl_ok(&kc, &["apply", "-f", &reader]);
    assert!(
        out.contains("clusterrole.rbac.authorization.k8s.io/fleet-reader created")
            && out.contains("clusterrolebinding.rbac.authorization.k8s.io/alice-reads created"),
        "{out}"
    );
    let line = lines.wait_line("alice-reads", T);
    assert!(line.contains("ClusterRole/fleet-reader"), "{line}");
    let _ = watch.kill();
    let _ = watch.wait();
    let out = as_alice(&["get", "mc"]);
    assert!(
        out.status.success() && stderr(&out).contains("No resources found"),
        "{out:?}"
    );

    // Tables: kubectl's columns, built-ins listed with the stored objects.
    let roles = kubectl_ok(&kc, &["get", "clusterroles"]);
    let header = roles.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("CREATED AT") && !header.contains("AGE"),
        "{roles}"
    );
    assert!(
        roles.lines().any(|l| l.starts_with("fleet-reader ")),
        "{roles}"
    );
    assert!(
        roles.lines().any(|l| l.starts_with("cattery-admin ")),
        "{roles}"
    );
    let wide = kubectl_ok(&kc, &["get", "clusterrolebindings", "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    for col in ["ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"] {
        assert!(header.contains(col), "{wide}");
    }
    let row = wide
        .lines()
        .find(|l| l.starts_with("alice-reads "))
        .unwrap_or_else(|| panic!("{wide}"));
    assert!(
        row.contains("ClusterRole/fleet-reader") && row.contains("alice"),
        "{row}"
    );

    // Re-applying with a rule removed removes it: `rules` is atomic (client-side apply
    // sends a strategic merge patch).
    assert_eq!(rules_of(&kc, "fleet-reader").len(), 2);
    let one_rule = READER.replace(
        "- apiGroups: [cattery.dev]\n  resources: [federatedpolicies]\n  verbs: [get, list]\n",
        "",
    );
    let reader = write(d, "reader.yaml", &one_rule);
    let out = kubectl_ok(&kc, &["apply", "-f", &reader]);
    assert!(
        out.contains("clusterrole.rbac.authorization.k8s.io/fleet-reader configured"),
        "{out}"
    );
    let rules = rules_of(&kc, "fleet-reader");
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["resources"][0], "managedclusters");
    let out = as_alice(&["get", "federatedpolicies"]);
    assert!(stderr(&out).contains("Forbidden"), "{}", stderr(&out));

    // The same with server-side apply.
    let ssa = |rules: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: ssa-role\nrules:\n{rules}"
        )
    };
    let two = "- apiGroups: [cattery.dev]\n  resources: [managedclusters]\n  verbs: [get]\n- apiGroups: [cattery.dev]\n  resources: [tokens]\n  verbs: [list]\n";
    let f = write(d, "ssa.yaml", &ssa(two));
    let out = kubectl_ok(&kc, &["apply", "--server-side", "-f", &f]);
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(rules_of(&kc, "ssa-role").len(), 2);
    let f = write(
        d,
        "ssa.yaml",
        &ssa("- apiGroups: [cattery.dev]\n  resources: [tokens]\n  verbs: [list]\n"),
    );
    kubectl_ok(&kc, &["apply", "--server-side", "-f", &f]);
    let rules = rules_of(&kc, "ssa-role");
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["resources"][0], "tokens");

    // A Role and RoleBinding in a namespace.
    let ns_objects = "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: shop-reader
  namespace: shop
rules:
- apiGroups: [cattery.dev]
  resources: [managedclusters]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: bob-reads-shop
  namespace: shop
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: shop-reader
subjects:
- kind: User
  name: bob
";
    let f_ns = write(d, "ns.yaml", ns_objects);
    let out = kubectl_ok(&kc, &["apply", "-f", &f_ns]);
    assert!(
        out.contains("role.rbac.authorization.k8s.io/shop-reader created")
            && out.contains("rolebinding.rbac.authorization.k8s.io/bob-reads-shop created"),
        "{out}"
    );
    let roles = kubectl_ok(&kc, &["get", "roles", "-n", "shop"]);
    assert!(
        roles.lines().any(|l| l.starts_with("shop-reader ")),
        "{roles}"
    );
    let none = kubectl(&kc, &["get", "roles", "-n", "other"]);
    assert!(stderr(&none).contains("No resources found"), "{none:?}");
    let all = kubectl_ok(&kc, &["get", "rolebindings", "-A", "-o", "wide"]);
    let row = all
        .lines()
        .find(|l| l.starts_with("shop ") && l.contains("bob-reads-shop"))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        row.contains("Role/shop-reader") && row.contains("bob"),
        "{row}"
    );
    let v: serde_json::Value = serde_json::from_str(&kubectl_ok(
        &kc,
        &["get", "role", "shop-reader", "-n", "shop", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(v["metadata"]["namespace"], "shop");
    let out = kubectl_ok(&kc, &["delete", "-f", &f_ns]);
    assert!(out.contains("deleted"), "{out}");
    let none = kubectl(&kc, &["get", "roles", "-n", "shop"]);
    assert!(stderr(&none).contains("No resources found"), "{none:?}");

    // Alice may write bindings but holds neither `bind` nor the admin role's permissions:
    // a binding to cattery-admin is refused, naming what is missing.
    let writer = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: binding-writer
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterrolebindings]
  verbs: [get, list, create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: alice-writes-bindings
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: binding-writer
subjects:
- kind: User
  name: alice
";
    kubectl_ok(&kc, &["apply", "-f", &write(d, "writer.yaml", writer)]);
    let escalate = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: alice-is-admin
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cattery-admin
subjects:
- kind: User
  name: alice
";
    let f = write(d, "escalate.yaml", escalate);
    for extra in [&[][..], &["--server-side"][..]] {
        let mut args = vec!["apply", "-f", f.as_str()];
        args.extend_from_slice(extra);
        let out = as_alice(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("Forbidden")
                && err.contains("ClusterRole \"cattery-admin\"")
                && err.contains("`bind`"),
            "{err}"
        );
    }
    let out = kubectl(&kc, &["get", "clusterrolebinding", "alice-is-admin"]);
    assert!(stderr(&out).contains("NotFound") || stderr(&out).contains("not found"));

    // Built-ins cannot be changed or deleted.
    let out = kubectl(
        &kc,
        &[
            "label",
            "clusterrole",
            "cattery-viewer",
            "x=y",
            "--overwrite",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is built in"), "{}", stderr(&out));
    let out = kubectl(&kc, &["delete", "clusterrolebinding", "cattery-admin"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is built in"), "{}", stderr(&out));

    // A stale PUT is a 409.
    let (body, code) =
        server.curl(&["/apis/rbac.authorization.k8s.io/v1/clusterroles/fleet-reader"]);
    assert_eq!(code, 200, "{body}");
    let mut role: serde_json::Value = serde_json::from_str(&body).unwrap();
    role["metadata"]["labels"] = serde_json::json!({"team": "a"});
    let put = |role: &serde_json::Value| {
        server.curl(&[
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/fleet-reader",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &role.to_string(),
        ])
    };
    let (body, code) = put(&role);
    assert_eq!(code, 200, "{body}");
    role["metadata"]["labels"] = serde_json::json!({"team": "b"});
    let (body, code) = put(&role);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("Conflict"), "{body}");

    // Deleting the binding with kubectl revokes on alice's next request.
    let out = kubectl_ok(&kc, &["delete", "-f", &reader]);
    assert!(
        out.contains("clusterrolebinding.rbac.authorization.k8s.io \"alice-reads\" deleted"),
        "{out}"
    );
    let out = as_alice(&["get", "mc"]);
    assert!(stderr(&out).contains("Forbidden"), "{}", stderr(&out));

    // Tokens: listed and watched through the same path, never with a secret or its hash.
    let (body, code) = server.curl(&["/apis/cattery.dev/v1/tokens"]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"user\":\"alice\""), "{body}");
    assert!(
        !body.contains("secretHash") && !body.contains(&alice) && !body.contains(&server.token),
        "{body}"
    );
    let (body, code) = server.curl(&["/apis/cattery.dev/v1/tokens?watch=1&timeoutSeconds=1"]);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"type\":\"ADDED\"") && body.contains("alice"),
        "{body}"
    );
    assert!(!body.contains("secretHash"), "{body}");
}

/// `--field-selector status.connected=…` finds the clusters to look at, matched against
/// the live connection (not stored); `?limit=` answers carry `remainingItemCount`, so the
/// UI counts clusters without reading them all; other fields are refused by name.
#[test]
fn field_selector_on_the_live_connection_and_counts() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let kc = hub_kubeconfig(&server);
    for name in ["c-a", "c-c"] {
        server.add_cluster(name);
    }
    let config = server.add_cluster("c-b");
    let sim = Sim::start(d, "c-b", None);
    let _agent = start_agent(d, "c-b", &config, &sim.url, &[]);
    server.wait_connected("c-b", "True");

    let up = kubectl_ok(
        &kc,
        &[
            "get",
            "mc",
            "--field-selector",
            "status.connected=true",
            "-o",
            "name",
        ],
    );
    assert_eq!(up.trim(), "managedcluster.cattery.dev/c-b");
    let down = kubectl_ok(
        &kc,
        &[
            "get",
            "mc",
            "--field-selector",
            "status.connected!=true",
            "-o",
            "name",
        ],
    );
    assert_eq!(
        down.lines().collect::<Vec<_>>(),
        [
            "managedcluster.cattery.dev/c-a",
            "managedcluster.cattery.dev/c-c"
        ]
    );
    let by_name = kubectl_ok(
        &kc,
        &[
            "get",
            "mc",
            "--field-selector",
            "metadata.name=c-c,status.connected=false",
            "-o",
            "name",
        ],
    );
    assert_eq!(by_name.trim(), "managedcluster.cattery.dev/c-c");
    let bad = kubectl(&kc, &["get", "mc", "--field-selector", "spec.mode=x"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("field label not supported: spec.mode"),
        "{}",
        stderr(&bad)
    );

    let list = |q: &str| -> serde_json::Value {
        let (body, code) = server.curl(&[&format!("/apis/cattery.dev/v1/managedclusters?{q}")]);
        assert_eq!(code, 200, "{q}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let first = list("limit=1");
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        first["metadata"]["remainingItemCount"], 2,
        "{}",
        first["metadata"]
    );
    let connected = list("limit=1&fieldSelector=status.connected%3Dtrue");
    assert_eq!(connected["items"][0]["metadata"]["name"], "c-b");
    assert!(
        connected["metadata"].get("continue").is_none(),
        "{}",
        connected["metadata"]
    );
    let (body, code) = server.curl(&[
        "/apis/cattery.dev/v1/managedclusters?watch=1&fieldSelector=status.connected%3Dtrue",
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("lists only"), "{body}");
}
