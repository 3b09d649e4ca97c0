//! End-to-end tests of authentication, RBAC and the audit trail: real server, real agents
//! and simulators, real tokens, requests over HTTPS with curl and the CLI.
//!
//! The matrix test writes the expected answer for every user × cluster × door by hand
//! (from the roles below), independently of the authorizer, and checks the server agrees —
//! including Calico-style `lma.tigera.io` roles giving the same answers as cattery-style
//! ones — and that every request left an audit record with the same decision.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
const CLUSTERS: [&str; 2] = ["east", "west"];
const TYPES: [&str; 4] = ["flows", "dns", "l7", "audit"];

const POLICY: &str = r#"
# alice (a user): cattery-style, east only: see it, reach it, read its flows and dns.
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
  resources: ["flows", "dns"]
  resourceNames: ["east"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-east}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: east-operator, apiGroup: rbac.authorization.k8s.io}
---
# carol (through group netops): the same rights written in Calico's convention.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: calico-east-operator}
rules:
- apiGroups: ["cattery.dev"]
  resources: ["managedclusters"]
  resourceNames: ["east"]
  verbs: ["get", "list"]
- apiGroups: ["cattery.dev"]
  resources: ["managedclusters/proxy"]
  resourceNames: ["east"]
  verbs: ["get"]
- apiGroups: ["lma.tigera.io"]
  resources: ["east"]
  resourceNames: ["flows", "dns"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: netops-east}
subjects: [{kind: Group, name: netops, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: calico-east-operator, apiGroup: rbac.authorization.k8s.io}
---
# dave: built-in network viewer (flows, dns, l7 of every cluster; no audit, no proxy).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dave-network-viewer}
subjects: [{kind: User, name: dave, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: cattery-network-viewer, apiGroup: rbac.authorization.k8s.io}
---
# erin (group auditors): built-in viewer (all logs incl. audit, no proxy).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: auditors-viewer}
subjects: [{kind: Group, name: auditors, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: cattery-viewer, apiGroup: rbac.authorization.k8s.io}
---
# grace: Calico wildcard — audit logs of every cluster, management plane included.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: calico-all-audit}
rules:
- apiGroups: ["lma.tigera.io"]
  resources: ["*"]
  resourceNames: ["audit*"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: grace-audit}
subjects: [{kind: User, name: grace, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: calico-all-audit, apiGroup: rbac.authorization.k8s.io}
---
# the ci/deployer service account: built-in cluster admin (clusters and proxy, no logs).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: deployer-cluster-admin}
subjects: [{kind: ServiceAccount, name: deployer, namespace: ci}]
roleRef: {kind: ClusterRole, name: cattery-cluster-admin, apiGroup: rbac.authorization.k8s.io}
"#;

/// What a user may do, written out by hand from POLICY.
struct Expect {
    /// get of the ManagedCluster object.
    get: BTreeSet<&'static str>,
    /// Clusters in their (filtered) list; `None` = list refused.
    list: Option<BTreeSet<&'static str>>,
    /// GET through the proxy.
    proxy: BTreeSet<&'static str>,
    /// (type, cluster) pairs readable; cluster "cluster" = the management plane's audit.
    logs: BTreeSet<(&'static str, &'static str)>,
}

fn set<const N: usize>(items: [&'static str; N]) -> BTreeSet<&'static str> {
    items.into_iter().collect()
}

fn pairs(
    types: &[&'static str],
    clusters: &[&'static str],
) -> BTreeSet<(&'static str, &'static str)> {
    types
        .iter()
        .flat_map(|t| clusters.iter().map(move |c| (*t, *c)))
        .collect()
}

fn expectations() -> BTreeMap<&'static str, Expect> {
    let all3 = ["east", "west", "cluster"];
    let east_operator = || Expect {
        get: set(["east"]),
        list: Some(set(["east"])),
        proxy: set(["east"]),
        logs: pairs(&["flows", "dns"], &["east"]),
    };
    BTreeMap::from([
        (
            "admin",
            Expect {
                get: set(["east", "west"]),
                list: Some(set(["east", "west"])),
                proxy: set(["east", "west"]),
                logs: pairs(&TYPES, &all3),
            },
        ),
        ("alice", east_operator()),
        ("carol", east_operator()),
        (
            "dave",
            Expect {
                get: set(["east", "west"]),
                list: Some(set(["east", "west"])),
                proxy: set([]),
                logs: pairs(&["flows", "dns", "l7"], &all3),
            },
        ),
        (
            "erin",
            Expect {
                get: set(["east", "west"]),
                list: Some(set(["east", "west"])),
                proxy: set([]),
                logs: pairs(&TYPES, &all3),
            },
        ),
        (
            "grace",
            Expect {
                get: set([]),
                list: None,
                proxy: set([]),
                logs: pairs(&["audit"], &all3),
            },
        ),
        (
            "deployer",
            Expect {
                get: set(["east", "west"]),
                list: Some(set(["east", "west"])),
                proxy: set(["east", "west"]),
                logs: pairs(&[], &[]),
            },
        ),
        (
            "frank",
            Expect {
                get: set([]),
                list: None,
                proxy: set([]),
                logs: pairs(&[], &[]),
            },
        ),
    ])
}

fn search_as(server: &Server, token: &str, ua: &str, t: &str, body: Value) -> (Value, u16) {
    let (res, code) = server.curl_as(
        Some(token),
        &[
            &format!("/apis/logs.cattery.dev/v1/{t}/search"),
            "-A",
            ua,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
        ],
    );
    (
        serde_json::from_str(&res).unwrap_or(Value::String(res)),
        code,
    )
}

/// Clusters present in a `*` search (terms aggregation on `cluster`).
fn clusters_seen(v: &Value) -> BTreeSet<String> {
    v["aggregations"]["c"]["buckets"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|b| b["key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn create_token(server: &Server, args: &[&str]) -> String {
    let mut full = vec!["token", "create"];
    full.extend_from_slice(args);
    server.cli_ok(&full).trim().to_string()
}

#[test]
fn rbac_matrix_through_every_door_with_audit() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let _east = logging_cluster(&server, d, "east", "200", "600");
    let _west = logging_cluster(&server, d, "west", "200", "600");
    let policy = d.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let applied = server.cli_ok(&["apply", "-f", policy.to_str().unwrap()]);
    assert!(
        applied.contains("clusterrole/east-operator created"),
        "{applied}"
    );

    let mut tokens: BTreeMap<&str, String> = BTreeMap::new();
    tokens.insert("admin", server.token.clone());
    tokens.insert("alice", create_token(&server, &["--user", "alice"]));
    tokens.insert(
        "carol",
        create_token(&server, &["--user", "carol", "--group", "netops"]),
    );
    tokens.insert("dave", create_token(&server, &["--user", "dave"]));
    tokens.insert(
        "erin",
        create_token(&server, &["--user", "erin", "--group", "auditors"]),
    );
    tokens.insert("grace", create_token(&server, &["--user", "grace"]));
    tokens.insert(
        "deployer",
        create_token(&server, &["--service-account", "ci/deployer"]),
    );
    tokens.insert("frank", create_token(&server, &["--user", "frank"]));

    // Data from both clusters (and the management plane's own audit) must be stored
    // before `*` searches can show filtering.
    wait_for("flows, dns and l7 of both clusters", T, || {
        TYPES[..3]
            .iter()
            .all(|t| {
                let (v, code) = search_as(
                    &server,
                    &server.token,
                    "setup",
                    t,
                    json!({"clusters": ["*"], "size": 0,
                           "aggs": {"c": {"terms": {"field": "cluster", "size": 10}}}}),
                );
                code == 200
                    && clusters_seen(&v).is_superset(&["east", "west"].map(String::from).into())
            })
            .then_some(())
    });

    // (user agent, expected allowed) of every request, to check the audit trail after.
    let mut sent: Vec<(String, &str, bool)> = Vec::new();
    let mut n = 0;
    let mut ua = |user: &str| {
        n += 1;
        format!("matrix-{user}-{n}")
    };
    for (user, exp) in expectations() {
        let token = &tokens[user];
        for c in CLUSTERS {
            // API: get the ManagedCluster.
            let a = ua(user);
            let (body, code) = server.curl_as(
                Some(token),
                &[
                    &format!("/apis/cattery.dev/v1/managedclusters/{c}"),
                    "-A",
                    &a,
                ],
            );
            let want = exp.get.contains(c);
            assert_eq!(code, if want { 200 } else { 403 }, "{user} get {c}: {body}");
            if !want {
                assert!(
                    body.contains("may not get managedclusters"),
                    "{user}: {body}"
                );
            }
            sent.push((a, user, want));

            // Proxy.
            let a = ua(user);
            let (body, code) = server.curl_as(
                Some(token),
                &[&format!("/clusters/{c}/k8s/api/v1/namespaces"), "-A", &a],
            );
            let want = exp.proxy.contains(c);
            assert_eq!(
                code,
                if want { 200 } else { 403 },
                "{user} proxy {c}: {body}"
            );
            if want {
                assert!(body.contains("NamespaceList"), "{user} proxy {c}: {body}");
            } else {
                assert!(body.contains("managedclusters/proxy"), "{user}: {body}");
            }
            sent.push((a, user, want));
        }
        // Log search, per type and explicitly named cluster (management plane included).
        for t in TYPES {
            for c in ["east", "west", "cluster"] {
                let a = ua(user);
                let (v, code) =
                    search_as(&server, token, &a, t, json!({"clusters": [c], "size": 1}));
                let want = exp.logs.contains(&(t, c));
                assert_eq!(code, if want { 200 } else { 403 }, "{user} {t} of {c}: {v}");
                if !want {
                    let msg = v["message"].as_str().unwrap_or("");
                    assert!(
                        msg.contains(&format!("may not read {t} logs of cluster \"{c}\"")),
                        "{user} {t} {c}: the 403 must say what is missing: {msg}"
                    );
                }
                sent.push((a, user, want));
            }
            // `*`: only permitted clusters, silently.
            let a = ua(user);
            let (v, code) = search_as(
                &server,
                token,
                &a,
                t,
                json!({"clusters": ["*"], "size": 0,
                       "aggs": {"c": {"terms": {"field": "cluster", "size": 10}}}}),
            );
            assert_eq!(code, 200, "{user} {t} of *: {v}");
            let seen = clusters_seen(&v);
            let permitted: BTreeSet<String> = exp
                .logs
                .iter()
                .filter(|(tt, _)| *tt == t)
                .map(|(_, c)| c.to_string())
                .collect();
            assert!(
                seen.is_subset(&permitted),
                "{user} {t} of *: saw {seen:?}, may see {permitted:?}"
            );
            if t != "audit" {
                // Both clusters have flows, dns and l7, so everything permitted shows up.
                let with_data: BTreeSet<String> =
                    permitted.into_iter().filter(|c| c != "cluster").collect();
                assert!(
                    seen.is_superset(&with_data),
                    "{user} {t} of *: saw {seen:?}, expected {with_data:?}"
                );
            }
            sent.push((a, user, true));
        }
        // Cluster list, filtered.
        let a = ua(user);
        let (body, code) = server.curl_as(
            Some(token),
            &["/apis/cattery.dev/v1/managedclusters", "-A", &a],
        );
        match &exp.list {
            None => assert_eq!(code, 403, "{user} list: {body}"),
            Some(names) => {
                assert_eq!(code, 200, "{user} list: {body}");
                let v: Value = serde_json::from_str(&body).unwrap();
                let got: BTreeSet<&str> = v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["metadata"]["name"].as_str().unwrap())
                    .collect();
                assert_eq!(&got, names, "{user} list");
            }
        }
        sent.push((a, user, exp.list.is_some()));
    }

    // The CLI's can-i asks the same question and gets the same answers.
    for (user, args, want) in [
        ("alice", vec!["get", "managedclusters/proxy", "east"], true),
        ("alice", vec!["get", "managedclusters/proxy", "west"], false),
        ("carol", vec!["get", "flows", "east"], true),
        ("carol", vec!["get", "l7", "east"], false),
        ("grace", vec!["get", "audit", "cluster"], true),
        ("frank", vec!["list", "managedclusters"], false),
    ] {
        let mut cmd = vec!["auth", "can-i", "--token", &tokens[user]];
        cmd.extend(args.iter());
        let out = server.cli(&cmd);
        assert_eq!(out.status.success(), want, "{user} can-i {args:?}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.trim(), if want { "yes" } else { "no" });
    }

    // Every decision left an audit record with the same decision.
    let expected: BTreeMap<String, (&str, bool)> =
        sent.iter().map(|(a, u, w)| (a.clone(), (*u, *w))).collect();
    let records = wait_for("every matrix request in the audit trail", T, || {
        let (v, code) = search_as(
            &server,
            &server.token,
            "checker",
            "audit",
            json!({"clusters": ["cluster"], "size": 5000,
                   "filters": [{"field": "userAgent", "prefix": "matrix-"}]}),
        );
        assert_eq!(code, 200, "{v}");
        let hits = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
        (hits.len() >= expected.len()).then_some(hits)
    });
    assert_eq!(
        records.len(),
        expected.len(),
        "one audit record per request"
    );
    for h in records {
        let r = &h["_source"];
        let ua = r["userAgent"].as_str().unwrap();
        let (user, allowed) = expected[ua];
        let username = r["user"]["username"].as_str().unwrap();
        if user == "deployer" {
            assert_eq!(username, "system:serviceaccount:ci:deployer");
        } else if user == "admin" {
            assert_eq!(username, "cattery:admin");
        } else {
            assert_eq!(username, user);
        }
        let decision = r["annotations"]["authorization.k8s.io/decision"]
            .as_str()
            .unwrap();
        assert_eq!(decision, if allowed { "allow" } else { "forbid" }, "{r}");
        assert!(
            !r["annotations"]["authorization.k8s.io/reason"]
                .as_str()
                .unwrap()
                .is_empty()
        );
        assert_eq!(r["cluster"], "cluster");
        assert_eq!(r["sourceIPs"][0], "127.0.0.1");
        let code = r["responseStatus"]["code"].as_u64().unwrap();
        assert_eq!(code == 403, !allowed, "{r}");
    }
}

#[test]
fn tokens_expire_revoke_and_failures_are_limited() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);

    // 401 (who are you?) vs 403 (not allowed, and why).
    let (body, code) = server.curl_as(None, &["/apis/cattery.dev/v1/managedclusters"]);
    assert_eq!(code, 401, "{body}");
    let (body, code) = server.curl_as(
        Some("cat_not-a-token"),
        &["/apis/cattery.dev/v1/managedclusters"],
    );
    assert_eq!(code, 401, "{body}");
    let nobody = create_token(&server, &["--user", "nobody"]);
    let (body, code) = server.curl_as(Some(&nobody), &["/apis/cattery.dev/v1/managedclusters"]);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("nobody") && body.contains("list managedclusters"),
        "{body}"
    );
    // whoami works for everyone.
    let out = server.cli_ok(&["auth", "whoami", "--token", &nobody]);
    assert!(out.contains("Username: nobody"), "{out}");

    // Revocation applies to the very next request.
    let bob = create_token(&server, &["--user", "bob", "--description", "to revoke"]);
    let (_, code) = server.curl_as(Some(&bob), &["/version"]);
    assert_eq!(code, 200);
    let list = server.cli_ok(&["token", "list", "-o", "json"]);
    let v: Value = serde_json::from_str(&list).unwrap();
    let bob_item = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["spec"]["user"] == "bob")
        .unwrap()
        .clone();
    assert!(
        bob_item["status"]["lastUsedTimestamp"].is_string(),
        "{bob_item}"
    );
    assert!(
        bob_item["status"].get("token").is_none(),
        "list never shows secrets"
    );
    let id = bob_item["metadata"]["name"].as_str().unwrap();
    server.cli_ok(&["token", "revoke", id]);
    let (body, code) = server.curl_as(Some(&bob), &["/version"]);
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains(&format!("token {id} was revoked at ")),
        "{body}"
    );

    // Expiry: refused as soon as the lifetime is over.
    let short = create_token(&server, &["--user", "short", "--ttl", "2s"]);
    let (_, code) = server.curl_as(Some(&short), &["/version"]);
    assert_eq!(code, 200);
    let body = wait_for("the 2 s token to expire", Duration::from_secs(10), || {
        let (body, code) = server.curl_as(Some(&short), &["/version"]);
        (code == 401).then_some(body)
    });
    assert!(body.contains("expired"), "{body}");

    // Reserved identities cannot be minted.
    let out = server.cli(&[
        "token",
        "create",
        "--user",
        "x",
        "--group",
        "system:masters",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reserved"),
        "{out:?}"
    );

    // A user cannot grant themselves more than they have (escalation check).
    let limited_role = d.join("limited.yaml");
    std::fs::write(
        &limited_role,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: rbac-writer}\nrules:\n- apiGroups: [rbac.authorization.k8s.io]\n  resources: [clusterroles, clusterrolebindings]\n  verbs: [get, list, create, update]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: mallory-rbac-writer}\nsubjects: [{kind: User, name: mallory}]\nroleRef: {kind: ClusterRole, name: rbac-writer, apiGroup: rbac.authorization.k8s.io}\n",
    )
    .unwrap();
    server.cli_ok(&["apply", "-f", limited_role.to_str().unwrap()]);
    let mallory = create_token(&server, &["--user", "mallory"]);
    let grab = d.join("grab.yaml");
    std::fs::write(
        &grab,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: mallory-admin}\nsubjects: [{kind: User, name: mallory}]\nroleRef: {kind: ClusterRole, name: cattery-admin, apiGroup: rbac.authorization.k8s.io}\n",
    )
    .unwrap();
    let out = server.cli(&["apply", "-f", grab.to_str().unwrap(), "--token", &mallory]);
    assert!(
        !out.status.success(),
        "escalation must be refused (`*` would include bind)"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permissions you do not have"),
        "{out:?}"
    );
    // Built-ins cannot be changed.
    let out = server.cli(&["delete", "clusterrole", "cattery-admin"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("built in"),
        "{out:?}"
    );

    // Failed authentication is rate limited per address: after the burst, 429 even for
    // a valid token, with Retry-After.
    let mut limited = false;
    for _ in 0..40 {
        let (_, code) = server.curl_as(Some("cat_guess"), &["/version"]);
        if code == 429 {
            limited = true;
            break;
        }
        assert_eq!(code, 401);
    }
    assert!(limited, "40 failures from one address must be rate limited");
    let (body, code) = server.curl_as(Some(&server.token), &["/version", "-i"]);
    assert_eq!(code, 429, "{body}");
    assert!(body.to_ascii_lowercase().contains("retry-after:"), "{body}");

    // No token reaches the server's log (the admin token is printed once, on first start,
    // to stdout — not through the logger — so it is not checked here).
    let log = server.proc.log();
    for t in [&nobody, &bob, &short, &mallory] {
        assert!(
            !log.contains(t.as_str()),
            "a token was written to the server log"
        );
    }
    assert!(!log.contains("cat_guess"));
}

/// An ES256 key for signing test JWTs, and its JWK.
struct Issuer {
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
}

impl Issuer {
    fn new(kid: &str) -> Issuer {
        use base64::Engine;
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Issuer {
            key: jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                        "x": b64(&raw[1..33]), "y": b64(&raw[33..])}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = self.jwk["kid"].as_str().map(str::to_string);
        jsonwebtoken::encode(&h, claims, &self.key).unwrap()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn oidc_tokens_are_verified_and_mapped_to_rbac_subjects() {
    const ISS: &str = "https://idp.example.test";
    const AUD: &str = "cattery";
    let dir = test_dir();
    let d = dir.path();
    let issuer = Issuer::new("k1");
    let stranger = Issuer::new("k1"); // same kid, different key
    let jwks = d.join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [issuer.jwk]}).to_string()).unwrap();

    let api_port = free_port();
    let api = format!("127.0.0.1:{api_port}");
    let tunnel = format!("127.0.0.1:{}", free_port());
    let data = d.join("server-data");
    let proc = Proc::spawn(
        d,
        "server",
        &[
            "server",
            "--data-dir",
            data.to_str().unwrap(),
            "--api-addr",
            &api,
            "--tunnel-addr",
            &tunnel,
            "--oidc-issuer-url",
            ISS,
            "--oidc-client-id",
            AUD,
            "--oidc-jwks-file",
            jwks.to_str().unwrap(),
        ],
        &[],
    );
    let token = wait_for("admin.token", T, || {
        std::fs::read_to_string(data.join("admin.token"))
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .trim()
    .to_string();
    let server = Server {
        proc,
        dir: d.into(),
        ca: data.join("ca.crt"),
        data,
        api_port,
        tunnel_port: 0,
        url: format!("https://{api}"),
        token,
    };
    wait_for("the API", T, || {
        (server.curl(&["/healthz"]).1 == 200).then_some(())
    });

    // Group oidc:netops (prefixed, so IdP groups cannot pose as local ones) may read logs.
    let binding = d.join("oidc-binding.yaml");
    std::fs::write(
        &binding,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: oidc-netops}\nsubjects: [{kind: Group, name: \"oidc:netops\"}]\nroleRef: {kind: ClusterRole, name: cattery-network-viewer, apiGroup: rbac.authorization.k8s.io}\n",
    )
    .unwrap();
    server.cli_ok(&["apply", "-f", binding.to_str().unwrap()]);

    let now = unix_now();
    let good = json!({"iss": ISS, "aud": AUD, "sub": "alice", "groups": ["netops"],
                      "iat": now, "exp": now + 300});
    let jwt = issuer.sign(&good);
    let out = server.cli_ok(&["auth", "whoami", "--token", &jwt]);
    assert!(out.contains("Username: oidc:alice"), "{out}");
    assert!(
        out.contains("oidc:netops") && out.contains("Via:      oidc"),
        "{out}"
    );
    let (body, code) = server.curl_as(
        Some(&jwt),
        &[
            "/apis/logs.cattery.dev/v1/flows/search",
            "-X",
            "POST",
            "--data-binary",
            r#"{"clusters":["*"],"size":0}"#,
        ],
    );
    assert_eq!(code, 200, "group binding applies to the OIDC user: {body}");
    let (body, code) = server.curl_as(
        Some(&jwt),
        &[
            "/apis/logs.cattery.dev/v1/audit/search",
            "-X",
            "POST",
            "--data-binary",
            r#"{"clusters":["cluster"],"size":0}"#,
        ],
    );
    assert_eq!(code, 403, "network viewers may not read audit logs: {body}");

    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    for (what, jwt, needle) in [
        ("bad signature", stranger.sign(&good), "signature"),
        (
            "wrong issuer",
            issuer.sign(&with("iss", json!("https://evil.test"))),
            "issuer",
        ),
        (
            "wrong audience",
            issuer.sign(&with("aud", json!("someone-else"))),
            "audience",
        ),
        (
            "expired",
            issuer.sign(&with("exp", json!(now - 600))),
            "expired",
        ),
    ] {
        let (body, code) = server.curl_as(Some(&jwt), &["/version"]);
        assert_eq!(code, 401, "{what}: {body}");
        assert!(body.to_lowercase().contains(needle), "{what}: {body}");
    }

    // The refusals are in the audit trail, without the token.
    let records = wait_for("OIDC refusals in the audit trail", T, || {
        let (res, code) = server.curl(&[
            "/apis/logs.cattery.dev/v1/audit/search",
            "-X",
            "POST",
            "--data-binary",
            r#"{"clusters":["cluster"],"size":100,"filters":[{"field":"responseStatus.code","equals":401}]}"#,
        ]);
        assert_eq!(code, 200, "{res}");
        let v: Value = serde_json::from_str(&res).unwrap();
        let hits = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
        (hits.len() >= 4).then_some(hits)
    });
    for h in &records {
        let r = &h["_source"];
        assert_eq!(r["user"]["username"], "system:anonymous");
        assert!(
            r["annotations"]["authorization.k8s.io/reason"]
                .as_str()
                .unwrap()
                .contains("OIDC token refused"),
            "{r}"
        );
        assert!(!r.to_string().contains(&jwt), "no token in audit records");
    }
}

/// Audit events are journaled within ~100 ms of the request and indexed later: a `kill -9`
/// after they are journaled loses none, and the restart indexes each exactly once.
#[test]
fn audit_events_survive_a_server_kill_and_are_stored_once() {
    let dir = test_dir();
    let mut server = Server::start(dir.path());
    const N: usize = 20;
    let agent = "audit-kill-probe";
    for _ in 0..N {
        let (body, code) = server.curl(&["/version", "-A", agent]);
        assert_eq!(code, 200, "{body}");
    }
    let journal = server.data.join("audit-journal");
    let journaled = || -> usize {
        std::fs::read_dir(&journal)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().extension() == Some("ndjson".as_ref()))
                    .map(|e| {
                        std::fs::read_to_string(e.path())
                            .unwrap_or_default()
                            .matches(agent)
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    wait_for("the requests in the audit journal", T, || {
        (journaled() >= N).then_some(())
    });
    server.proc.kill(); // SIGKILL, possibly before anything was indexed
    server.restart("server-2");
    let search = format!(
        r#"{{"clusters":["cluster"],"size":0,"filters":[{{"field":"userAgent","equals":"{agent}"}}]}}"#
    );
    let count = || -> Option<u64> {
        let (res, code) = server.curl(&[
            "/apis/logs.cattery.dev/v1/audit/search",
            "-X",
            "POST",
            "--data-binary",
            &search,
        ]);
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&res).ok()?;
        v["hits"]["total"]["value"].as_u64()
    };
    wait_for(
        "the journaled events to be searchable after the restart",
        T,
        || count().filter(|&n| n >= N as u64),
    );
    // Let the indexer finish whatever it was doing (the searches themselves add events
    // of another user agent), then check nothing was stored twice.
    wait_for("the audit journal to be fully indexed", T, || {
        let left = std::fs::read_dir(&journal).ok()?.flatten().count();
        // At most the active segment and the progress file remain.
        (left <= 2).then_some(())
    });
    assert_eq!(
        count(),
        Some(N as u64),
        "each journaled event stored exactly once"
    );
}

const MINTERS: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: token-minter}
rules:
- apiGroups: [cattery.dev]
  resources: [tokens]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-ci}
rules:
- apiGroups: [""]
  resources: [users]
  resourceNames: [ci]
  verbs: [impersonate]
- apiGroups: [""]
  resources: [groups]
  resourceNames: [builders]
  verbs: [impersonate]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: minters}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: token-minter}
subjects:
- {kind: User, name: minter, apiGroup: rbac.authorization.k8s.io}
- {kind: User, name: delegate, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: delegate-ci}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-ci}
subjects:
- {kind: User, name: delegate, apiGroup: rbac.authorization.k8s.io}
"#;

fn mint(server: &Server, as_token: &str, user: &str, groups: &[&str]) -> (Value, u16) {
    let body = json!({"apiVersion": "cattery.dev/v1", "kind": "Token",
                      "spec": {"user": user, "groups": groups}});
    let (text, code) = server.curl_as(
        Some(as_token),
        &[
            "/apis/cattery.dev/v1/tokens",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
        ],
    );
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (v, code)
}

#[test]
fn token_creation_cannot_mint_identities_beyond_impersonation() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let policy = d.join("minters.yaml");
    std::fs::write(&policy, MINTERS).unwrap();
    server.cli_ok(&["apply", "-f", policy.to_str().unwrap()]);
    let minter = create_token(&server, &["--user", "minter", "--group", "dev"]);
    let delegate = create_token(&server, &["--user", "delegate"]);

    // `create tokens` alone mints neither the admin, nor its group, nor a service account.
    for (user, groups, missing) in [
        (
            "cattery:admin",
            vec![],
            r#"impersonate users \"cattery:admin\""#,
        ),
        (
            "minter",
            vec!["cattery:admins"],
            r#"impersonate groups \"cattery:admins\""#,
        ),
        (
            "system:serviceaccount:ci:deployer",
            vec!["system:serviceaccounts"],
            r#"impersonate serviceaccounts \"deployer\" in namespace \"ci\""#,
        ),
        ("ci", vec!["dev"], r#"impersonate users \"ci\""#),
    ] {
        let (v, code) = mint(&server, &minter, user, &groups);
        assert_eq!(code, 403, "{user} {groups:?}: {v}");
        assert_eq!(v["kind"], "Status", "{v}");
        assert_eq!(v["reason"], "Forbidden", "{v}");
        assert!(v.to_string().contains(missing), "{user}: {v}");
    }
    // Oneself, with some of one's own groups: allowed.
    let (v, code) = mint(&server, &minter, "minter", &["dev"]);
    assert_eq!(code, 201, "{v}");
    let own = v["status"]["token"].as_str().unwrap();
    let out = server.cli_ok(&["auth", "whoami", "--token", own]);
    assert!(out.contains("Username: minter"), "{out}");
    // Exactly what `impersonate` grants: user ci with group builders, nothing more.
    let (v, code) = mint(&server, &delegate, "ci", &["builders"]);
    assert_eq!(code, 201, "{v}");
    let (v, code) = mint(&server, &delegate, "ci", &["builders", "cattery:admins"]);
    assert_eq!(code, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains(r#"impersonate groups "cattery:admins""#),
        "{v}"
    );
    // The CLI shows the reason.
    let out = server.cli(&[
        "token",
        "create",
        "--user",
        "cattery:admin",
        "--token",
        &minter,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"impersonate users "cattery:admin""#),
        "{err}"
    );
    // The admin still mints anything.
    let (v, code) = mint(&server, &server.token, "ci", &["cattery:admins"]);
    assert_eq!(code, 201, "{v}");
}

#[test]
fn rbac_objects_and_reviews_refuse_unknown_fields() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let typo = d.join("typo.yaml");
    std::fs::write(
        &typo,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: east-only}\n\
         rules:\n- apiGroups: [cattery.dev]\n  resources: [managedclusters]\n  resourceName: [east]\n  verbs: [get]\n",
    )
    .unwrap();
    let out = server.cli(&["apply", "-f", typo.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"unknown field "resourceName" in rules[0]"#),
        "{err}"
    );
    let (body, code) = server.curl(&["/apis/rbac.authorization.k8s.io/v1/clusterroles/east-only"]);
    assert_eq!(code, 404, "nothing was stored: {body}");
    // Bindings, metadata and access reviews too.
    let (body, code) = server.curl(&[
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/b",
        "-X",
        "PUT",
        "--data-binary",
        r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"b","lables":{}},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cattery-viewer"}}"#,
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains(r#"unknown field \"lables\" in metadata"#),
        "{body}"
    );
    let (body, code) = server.curl(&[
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "-X",
        "POST",
        "--data-binary",
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"get","resource":"managedclusters","nmae":"east"}}}"#,
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains(r#"unknown field \"nmae\" in spec.resourceAttributes"#),
        "{body}"
    );
    // Labels on RBAC objects follow Kubernetes' rules.
    let (body, code) = server.curl(&[
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/r",
        "-X",
        "PUT",
        "--data-binary",
        r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"r","labels":{"team":"net ops"}},"rules":[]}"#,
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains(r#"label \"team\""#), "{body}");
}

/// A data directory of an older version (tokens and RBAC objects in their own tables of
/// `state.db`) keeps its tokens, roles and bindings: they are moved into the resource
/// store at start, once, and served from there; tokens stay hashed.
#[test]
#[ignore = "failed once from a fresh clone (the request after the restart got no connection); not yet understood — issue 14 stays open for it"]
fn tokens_and_rbac_objects_of_an_older_data_dir_are_moved_and_served() {
    let dir = test_dir();
    let d = dir.path();
    let mut server = Server::start(d);
    server.proc.kill();
    let legacy_token = "cat_an-old-token-of-an-older-version";
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "legacy-views", "uid": "legacy-uid-1",
            "creationTimestamp": "2026-01-02T03:04:05Z"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": "cattery-viewer"},
        "subjects": [{"kind": "User", "name": "old-user"}]});
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "legacy-role", "namespace": "shop"},
        "rules": [{"apiGroups": ["cattery.dev"], "resources": ["managedclusters"], "verbs": ["get"]}]});
    {
        let db = rusqlite::Connection::open(server.data.join("state.db")).unwrap();
        db.execute(
            "INSERT INTO tokens (id, user, groups, sha256, created_at, description, revoked_at) \
             VALUES ('legacy01', 'old-user', '[\"old-group\"]', ?1, '2026-01-01T00:00:00Z', 'from v0', NULL), \
                    ('legacy02', 'gone-user', '[]', ?2, '2026-01-01T00:00:00Z', NULL, '2026-01-05T00:00:00Z')",
            [sha256_hex(legacy_token), sha256_hex("cat_revoked-long-ago")],
        )
        .unwrap();
        db.execute(
            "INSERT INTO rbac_objects (kind, namespace, name, body) VALUES \
             ('ClusterRoleBinding', '', 'legacy-views', ?1), ('Role', 'shop', 'legacy-role', ?2)",
            [binding.to_string(), role.to_string()],
        )
        .unwrap();
    }
    server.restart("server-2");

    // The old token authenticates, as its user and group, and the old binding applies.
    let (body, code) = server.curl_as(
        Some(legacy_token),
        &[
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
        ],
    );
    assert_eq!(code, 201, "{body}");
    assert!(
        body.contains("old-user") && body.contains("old-group"),
        "{body}"
    );
    let (body, code) = server.curl_as(
        Some(legacy_token),
        &["/apis/cattery.dev/v1/managedclusters"],
    );
    assert_eq!(code, 200, "{body}");
    let (body, code) = server.curl_as(Some("cat_revoked-long-ago"), &["/version"]);
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("token legacy02 was revoked at 2026-01-05T00:00:00Z"),
        "{body}"
    );

    // Served by the generic handlers, with their times and uid kept, never a hash.
    let (body, code) = server.curl(&["/apis/cattery.dev/v1/tokens/legacy01"]);
    assert_eq!(code, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(t["spec"]["description"], "from v0");
    assert!(!body.contains(&sha256_hex(legacy_token)), "{body}");
    let (body, code) =
        server.curl(&["/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/legacy-views"]);
    assert_eq!(code, 200, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["metadata"]["uid"], "legacy-uid-1");
    assert_eq!(b["metadata"]["creationTimestamp"], "2026-01-02T03:04:05Z");
    assert!(b["metadata"]["resourceVersion"].is_string(), "{b}");
    let (body, code) =
        server.curl(&["/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles/legacy-role"]);
    assert_eq!(code, 200, "{body}");
    let list = server.cli_ok(&["token", "list"]);
    assert!(
        list.contains("legacy01") && list.contains("legacy02"),
        "{list}"
    );

    // Moved once: the old tables are empty, and a third start serves the same objects.
    {
        let db = rusqlite::Connection::open(server.data.join("state.db")).unwrap();
        for table in ["tokens", "rbac_objects"] {
            let n: i64 = db
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
    }
    server.proc.kill();
    server.restart("server-3");
    let (body, code) = server.curl_as(
        Some(legacy_token),
        &["/apis/cattery.dev/v1/managedclusters"],
    );
    assert_eq!(code, 200, "{body}");
}
