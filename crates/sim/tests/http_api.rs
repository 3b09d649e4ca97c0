//! The Kubernetes API semantics over raw HTTP: resourceVersions and watch,
//! conflicts, Status errors, patches, the request log, h2 and shutdown.

mod common;

use bytes::Bytes;
use common::Sim;
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/shop/pods";
const JSON: &str = "application/json";

fn pod(name: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    .to_string()
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn discovery_version_and_health() {
    let sim = Sim::start().await;
    let (code, v) = sim.http_json("GET", "/version", JSON, "").await;
    assert_eq!((code, v["gitVersion"].as_str()), (200, Some("v1.32.0-sim")));
    assert_eq!(
        sim.http("GET", "/healthz", JSON, "").await,
        (200, b"ok".to_vec())
    );
    let (_, v) = sim.http_json("GET", "/apis", JSON, "").await;
    let groups: Vec<_> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    assert_eq!(
        groups,
        ["networking.k8s.io", "cattery.dev", "apiextensions.k8s.io"]
    );
    let (_, v) = sim.http_json("GET", "/apis/cattery.dev/v1", JSON, "").await;
    assert_eq!(v["resources"][0]["kind"], "ManagementClusterConnection");
    assert_eq!(v["resources"][0]["namespaced"], false);
    let (code, v) = sim.http_json("GET", "/openapi/v2", JSON, "").await;
    assert_eq!(
        (code, v["kind"].as_str(), v["reason"].as_str()),
        (404, Some("Status"), Some("NotFound"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_from_a_list_resource_version_sees_every_later_event_in_order() {
    let sim = Sim::start().await;
    let (_, list) = sim.http_json("GET", PODS, JSON, "").await;
    assert_eq!(list["kind"], "PodList");
    let list_rv = rv(&list);
    let mut watch = sim
        .stream(&format!("{PODS}?watch=true&resourceVersion={list_rv}"))
        .await;

    let (code, created) = sim.http_json("POST", PODS, JSON, pod("w1")).await;
    assert_eq!(code, 201, "{created}");
    assert!(rv(&created) > list_rv);
    assert_eq!(created["status"]["phase"], "Running");
    let ip: std::net::IpAddr = created["status"]["podIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        cattery_sim::default_pod_cidr("test-sim").contains(&ip),
        "{ip} is in the sim's pod CIDR"
    );
    let (code, patched) = sim
        .http_json(
            "PATCH",
            &format!("{PODS}/w1"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"1"}}}"#,
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    let (code, _) = sim
        .http_json("DELETE", &format!("{PODS}/w1"), JSON, "")
        .await;
    assert_eq!(code, 200);

    let mut last = list_rv;
    for want in ["ADDED", "MODIFIED", "DELETED"] {
        let ev = watch.next().await.unwrap();
        assert_eq!(ev["type"], want, "{ev}");
        assert_eq!(ev["object"]["metadata"]["name"], "w1");
        assert!(rv(&ev["object"]) > last, "resourceVersions increase");
        last = rv(&ev["object"]);
    }

    // A second watch from the same point replays the same history.
    let mut replay = sim
        .stream(&format!(
            "{PODS}?watch=true&resourceVersion={list_rv}&timeoutSeconds=1"
        ))
        .await;
    let types: Vec<_> = [
        replay.next().await,
        replay.next().await,
        replay.next().await,
    ]
    .into_iter()
    .map(|e| e.unwrap()["type"].clone())
    .collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
    assert!(
        replay.next().await.is_none(),
        "timeoutSeconds ends the stream"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_synthetic_added() {
    let sim = Sim::start().await;
    let mut w = sim
        .stream("/api/v1/watch/namespaces/payments/pods?labelSelector=app%3Ddb")
        .await;
    let ev = w.next().await.unwrap();
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("db-0"))
    );

    let mut w = sim.stream("/api/v1/pods?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan").await;
    let mut added = 0;
    loop {
        let ev = w.next().await.unwrap();
        if ev["type"] == "BOOKMARK" {
            assert_eq!(
                ev["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
                "true"
            );
            break;
        }
        assert_eq!(ev["type"], "ADDED");
        added += 1;
    }
    assert_eq!(added, 6, "every seeded pod");
    sim.shutdown().await;
}

#[tokio::test]
async fn conflicts_and_status_errors() {
    let sim = Sim::start().await;
    let (_, created) = sim.http_json("POST", PODS, JSON, pod("p")).await;
    let (code, v) = sim.http_json("POST", PODS, JSON, pod("p")).await;
    assert_eq!((code, v["reason"].as_str()), (409, Some("AlreadyExists")));

    let mut update = created.clone();
    update["metadata"]["labels"]["v"] = json!("2");
    let (code, updated) = sim
        .http_json("PUT", &format!("{PODS}/p"), JSON, update.to_string())
        .await;
    assert_eq!(code, 200, "{updated}");
    let (code, v) = sim
        .http_json("PUT", &format!("{PODS}/p"), JSON, update.to_string())
        .await;
    assert_eq!(
        (code, v["reason"].as_str()),
        (409, Some("Conflict")),
        "stale resourceVersion"
    );

    let (code, v) = sim
        .http_json("POST", "/api/v1/namespaces/ghost/pods", JSON, pod("p"))
        .await;
    assert_eq!(code, 404);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("namespaces \"ghost\" not found"),
        "{v}"
    );

    let svc = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}"#;
    let (code, v) = sim.http_json("POST", PODS, JSON, svc).await;
    assert_eq!(code, 400);
    assert!(v["message"].as_str().unwrap().contains("kind"), "{v}");

    let (code, v) = sim.http_json("POST", PODS, JSON, pod("Bad_Name")).await;
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.name");

    let (code, v) = sim
        .http_json(
            "POST",
            PODS,
            JSON,
            r#"{"metadata": {"name": "x", "labels": {"a": 1}}}"#,
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        v["message"].as_str().unwrap().contains("metadata.labels.a"),
        "{v}"
    );

    let (code, v) = sim.http_json("POST", PODS, JSON, "{\"metadata\": ").await;
    assert_eq!(code, 400);
    assert!(
        v["message"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );

    let big = format!(
        r#"{{"metadata": {{"name": "big"}}, "data": {{"x": "{}"}}}}"#,
        "a".repeat(4 << 20)
    );
    let (code, v) = sim
        .http_json("POST", "/api/v1/namespaces/shop/configmaps", JSON, big)
        .await;
    assert_eq!(
        (code, v["reason"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );

    let (code, v) = sim
        .http_json(
            "PATCH",
            &format!("{PODS}/p"),
            "application/apply-patch+yaml",
            "{}",
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        v["message"].as_str().unwrap().contains("fieldManager"),
        "{v}"
    );
    let (code, v) = sim
        .http_json(
            "PATCH",
            &format!("{PODS}/p?fieldManager=t"),
            "application/apply-patch+yaml",
            "metadata:\n  name: p\n",
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("apiVersion must be set"),
        "{v}"
    );
    let (code, _) = sim
        .http_json(
            "PATCH",
            &format!("{PODS}/p?fieldManager=t"),
            "application/apply-patch+cbor",
            "",
        )
        .await;
    assert_eq!(code, 415);

    let (code, v) = sim
        .http_json(
            "GET",
            "/api/v1/namespaces/shop/pods/cart-7d4b9c6f8-m5p2w/exec?command=ls",
            JSON,
            "",
        )
        .await;
    assert_eq!(code, 400);
    assert!(v["message"].as_str().unwrap().contains("WebSocket"), "{v}");
    sim.shutdown().await;
}

#[tokio::test]
async fn yaml_bodies_patches_and_selectors() {
    let sim = Sim::start().await;
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  labels:\n    tier: web\ndata:\n  a: \"1\"\n";
    let (code, v) = sim
        .http_json(
            "POST",
            "/api/v1/namespaces/shop/configmaps",
            "application/yaml",
            yaml,
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = sim
        .http_json(
            "POST",
            "/api/v1/namespaces/shop/configmaps",
            "application/yaml",
            "a: [",
        )
        .await;
    assert_eq!(code, 400);
    assert!(v["message"].as_str().unwrap().contains("YAML"), "{v}");

    let ops =
        r#"[{"op": "add", "path": "/data/b", "value": "2"}, {"op": "remove", "path": "/data/a"}]"#;
    let (code, v) = sim
        .http_json(
            "PATCH",
            "/api/v1/namespaces/shop/configmaps/cfg",
            "application/json-patch+json",
            ops,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"], json!({"b": "2"}));

    let (_, list) = sim
        .http_json(
            "GET",
            "/api/v1/configmaps?labelSelector=tier%3Dweb",
            JSON,
            "",
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (code, deleted) = sim
        .http_json(
            "DELETE",
            "/api/v1/namespaces/shop/configmaps?labelSelector=tier%3Dweb",
            JSON,
            "",
        )
        .await;
    assert_eq!(
        (code, deleted["items"][0]["metadata"]["name"].as_str()),
        (200, Some("cfg"))
    );
    let (code, _) = sim
        .http_json("GET", "/api/v1/namespaces/shop/configmaps/cfg", JSON, "")
        .await;
    assert_eq!(code, 404, "deletecollection removed it");
    let (_, left) = sim
        .http_json("GET", "/api/v1/namespaces/shop/configmaps", JSON, "")
        .await;
    assert_eq!(
        left["items"][0]["metadata"]["name"], "frontend-config",
        "and only it"
    );
    let (_, list) = sim
        .http_json(
            "GET",
            "/api/v1/pods?fieldSelector=metadata.namespace%3Dpayments",
            JSON,
            "",
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (_, page) = sim.http_json("GET", "/api/v1/pods?limit=4", JSON, "").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    let token = page["metadata"]["continue"].as_str().unwrap();
    let (_, rest) = sim
        .http_json(
            "GET",
            &format!("/api/v1/pods?limit=4&continue={token}"),
            JSON,
            "",
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn request_log_records_impersonation_without_secrets() {
    let sim = Sim::start().await;
    let headers = [
        ("authorization", "Bearer very-secret"),
        ("impersonate-user", "alice@example.com"),
        ("impersonate-group", "devs"),
        ("impersonate-extra-scopes", "view"),
        ("user-agent", "cattery-test"),
    ];
    let resp = sim
        .send("GET", "/api/v1/namespaces?limit=1", &headers, Bytes::new())
        .await;
    assert_eq!(resp.status(), 200);
    let (_, log) = sim.http_json("GET", "/_sim/requests", JSON, "").await;
    let rec = log
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["userAgent"] == "cattery-test")
        .unwrap();
    assert_eq!(rec["path"], "/api/v1/namespaces");
    assert_eq!(rec["query"], "limit=1");
    assert_eq!(rec["impersonateUser"], "alice@example.com");
    assert_eq!(rec["impersonateGroups"], json!(["devs"]));
    assert_eq!(rec["impersonateExtra"], json!({"scopes": ["view"]}));
    assert_eq!(rec["authorizationSha256"].as_str().unwrap().len(), 64);
    assert!(!log.to_string().contains("very-secret"));
    sim.shutdown().await;
}

#[tokio::test]
async fn serves_http2_with_prior_knowledge() {
    let sim = Sim::start().await;
    let tcp = tokio::net::TcpStream::connect(sim.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("{}/_sim/info", sim.url))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["name"],
        "test-sim"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let sim = Sim::start().await;
    let mut w = sim.stream("/api/v1/namespaces?watch=true").await;
    for _ in 0..5 {
        assert_eq!(w.next().await.unwrap()["type"], "ADDED");
    }
    sim.shutdown().await;
    assert!(w.next().await.is_none(), "the watch ended with the server");
}

#[tokio::test]
async fn server_side_apply_creates_merges_and_keeps_concurrency() {
    let sim = Sim::start().await;
    let url = "/api/v1/namespaces/shop/configmaps/ssa?fieldManager=cattery";
    let apply = "application/apply-patch+yaml";
    let (code, v) = sim
        .http_json(
            "PATCH",
            url,
            apply,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n",
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let created = rv(&v);
    let (code, v) = sim
        .http_json("PATCH", url, apply, r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}}"#)
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({"b": "2"}),
        "a field the manager no longer applies (and nobody else owns) is removed"
    );
    assert_eq!(v["metadata"]["managedFields"][0]["manager"], "cattery");
    assert_eq!(
        v["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:b": {}}})
    );
    assert!(rv(&v) > created);
    let same = rv(&v);
    let (_, v) = sim
        .http_json("PATCH", url, apply, r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}}"#)
        .await;
    assert_eq!(
        rv(&v),
        same,
        "re-applying the same configuration is not a write"
    );
    let (code, v) = sim
        .http_json("PATCH", url, apply, format!(r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "ssa", "resourceVersion": "{created}"}}}}"#))
        .await;
    assert_eq!((code, v["reason"].as_str()), (409, Some("Conflict")), "{v}");
    let (code, v) = sim
        .http_json(
            "PATCH",
            url,
            apply,
            r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ssa"}}"#,
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = sim
        .http_json(
            "PATCH",
            "/api/v1/namespaces/nope/configmaps/x?fieldManager=t",
            apply,
            r#"{"apiVersion": "v1", "kind": "ConfigMap"}"#,
        )
        .await;
    assert_eq!(
        (code, v["details"]["name"].as_str()),
        (404, Some("nope")),
        "{v}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn compaction_expires_open_watches_and_old_resource_versions() {
    let sim = Sim::start().await;
    let (_, list) = sim.http_json("GET", PODS, JSON, "").await;
    let list_rv = rv(&list);
    let mut watch = sim
        .stream(&format!("{PODS}?watch=true&resourceVersion={list_rv}"))
        .await;
    let (code, _) = sim.http_json("POST", PODS, JSON, pod("c1")).await;
    assert_eq!(code, 201);
    assert_eq!(watch.next().await.unwrap()["type"], "ADDED");

    let (code, body) = sim.http_json("POST", "/_sim/compact", JSON, "").await;
    assert_eq!(code, 200, "{body}");
    let at = body["compactedAt"].as_u64().unwrap();
    assert!(at > list_rv, "{body}");
    // The open watch ends with a 410 Expired ERROR event, as kube-apiserver's does.
    let ev = watch.next().await.unwrap();
    assert_eq!(ev["type"], "ERROR", "{ev}");
    assert_eq!(ev["object"]["code"], 410, "{ev}");
    assert_eq!(ev["object"]["reason"], "Expired", "{ev}");
    assert!(watch.next().await.is_none(), "the stream ended");

    // A watch from before the compaction is expired; one from it sees later writes.
    let mut old = sim
        .stream(&format!("{PODS}?watch=true&resourceVersion={list_rv}"))
        .await;
    let ev = old.next().await.unwrap();
    assert_eq!(
        (ev["type"].clone(), ev["object"]["code"].clone()),
        ("ERROR".into(), 410.into()),
        "{ev}"
    );
    let mut fresh = sim
        .stream(&format!("{PODS}?watch=true&resourceVersion={at}"))
        .await;
    let (code, _) = sim.http_json("POST", PODS, JSON, pod("c2")).await;
    assert_eq!(code, 201);
    let ev = fresh.next().await.unwrap();
    assert_eq!(ev["type"], "ADDED", "{ev}");
    assert_eq!(ev["object"]["metadata"]["name"], "c2");
    sim.shutdown().await;
}
