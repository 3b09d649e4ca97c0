//! The management plane's controllers reach a cluster through its tunnel as the service
//! identity, and users cannot: an in-process management plane (its registry is what a
//! controller gets), a real `cattery sim-cluster` and `cattery agent` process, real TLS,
//! and curl for users.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cattery_api::agent_protocol::SERVICE_IDENTITY;
use cattery_server::cluster_client::{ClientError, ClusterClient, ListParams, USER_AGENT};
use cattery_server::{ServerConfig, start};
use common::{Sim, free_port, start_agent, test_dir};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Hub {
    url: String,
    token: String,
    ca: String,
    config: String,
}

impl Hub {
    fn cli(&self, token: &str, args: &[&str]) -> String {
        let out = Command::new(common::bin())
            .args(args)
            .env("CATTERY_SERVER", &self.url)
            .env("CATTERY_TOKEN", token)
            .env("CATTERY_CA_FILE", &self.ca)
            .env("CATTERY_CONFIG", &self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cattery {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A proxied request as a user: (status, body).
    fn curl(&self, token: &str, path: &str, headers: &[&str]) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            &self.ca,
            "-w",
            "\n%{http_code}",
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg(format!("{}{path}", self.url)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.trim().parse().unwrap(), body.to_string())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn sim_requests(sim_url: &str) -> Vec<Value> {
    let out = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "5",
            &format!("{sim_url}/_sim/requests"),
        ])
        .output()
        .unwrap();
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn policy(name: &str, app: &str) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_act_as_the_service_identity_and_users_cannot() {
    let dir = test_dir();
    let d = dir.path().to_path_buf();
    let tunnel_port = free_port();
    let shutdown = CancellationToken::new();
    let running = start(
        ServerConfig {
            data_dir: d.join("hub"),
            api_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            tunnel_addr: format!("127.0.0.1:{tunnel_port}").parse().unwrap(),
            address: Some(format!("127.0.0.1:{tunnel_port}")),
            api_tls: None,
            retention: Default::default(),
            oidc: None,
            ui_session_idle: None,
            access_control: Default::default(),
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let hub = std::sync::Arc::new(Hub {
        url: format!("https://{}", running.api_addr),
        token: running.admin_token.clone().unwrap(),
        ca: running.ca_file.display().to_string(),
        config: d.join("no-config.json").display().to_string(),
    });
    let (h, dd) = (hub.clone(), d.clone());
    let (sim, _agent) = blocking(move || {
        let sim = Sim::start(&dd, "east", None);
        let cfg = dd.join("agent-east.yaml");
        let manifest = h.cli(
            &h.token,
            &["cluster", "add", "east", "--format", "agent-config"],
        );
        std::fs::write(&cfg, manifest).unwrap();
        let agent = start_agent(&dd, "east", &cfg, &sim.url, &[]);
        (sim, agent)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        if let Ok(c) = ClusterClient::connect(&running.registry, "east") {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not connect within 30s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // list namespaces
    let namespaces = client
        .list::<Namespace>(None, &ListParams::default())
        .await
        .unwrap();
    let names: Vec<_> = namespaces
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert!(
        names.iter().any(|n| n == "shop") && names.iter().any(|n| n == "kube-system"),
        "{names:?}"
    );
    let selected = client
        .list::<Namespace>(
            None,
            &ListParams {
                label_selector: Some("cattery.dev/sim-cluster in (east)".into()),
                field_selector: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    assert_eq!(
        selected.items[0].metadata.name.as_deref(),
        Some("kube-system")
    );

    // server-side apply: create, then change
    let created = client
        .apply(&policy("allow-cart", "cart"), false)
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut watch = client
        .watch::<NetworkPolicy>(Some("shop"), &ListParams::default(), Some(&rv))
        .await
        .unwrap();
    let changed = client
        .apply(&policy("allow-cart", "checkout"), false)
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    let got: NetworkPolicy = client.get(Some("shop"), "allow-cart").await.unwrap();
    assert_eq!(
        got.spec
            .unwrap()
            .pod_selector
            .unwrap()
            .match_labels
            .unwrap()["app"],
        "checkout"
    );
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Modified(np)))) => {
            assert_eq!(np.metadata.generation, Some(2))
        }
        other => panic!("expected the change on the watch, got {other:?}"),
    }

    // delete; a missing object is a Status error with its code
    client
        .delete::<NetworkPolicy>(Some("shop"), "allow-cart")
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Deleted(_)))) => {}
        other => panic!("expected the delete on the watch, got {other:?}"),
    }
    let err = client
        .get::<NetworkPolicy>(Some("shop"), "allow-cart")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(404), "{err}");
    assert!(
        matches!(&err, ClientError::Status { reason, .. } if reason == "NotFound"),
        "{err}"
    );

    // The cluster saw every controller request as the service identity.
    let s = sim.url.clone();
    let requests = blocking(move || sim_requests(&s)).await;
    let ours: Vec<&Value> = requests
        .iter()
        .filter(|r| r["userAgent"].as_str() == Some(USER_AGENT))
        .collect();
    assert!(ours.len() >= 7, "{requests:?}");
    for r in &ours {
        assert_eq!(r["impersonateUser"], SERVICE_IDENTITY, "{r}");
        assert_eq!(r["impersonateGroups"], json!([]), "{r}");
    }
    assert!(ours.iter().any(|r| {
        r["method"] == "PATCH"
            && r["query"]
                .as_str()
                .unwrap_or("")
                .contains("fieldManager=cattery")
    }));

    // A user cannot act as it: forged impersonation, marker-like headers and a Host
    // naming the service authority are all replaced by the user's own identity.
    let h = hub.clone();
    let (code, body) = blocking(move || {
        h.curl(
            &h.token,
            "/clusters/east/k8s/api/v1/namespaces?marker=forged",
            &[
                &format!("Impersonate-User: {SERVICE_IDENTITY}"),
                "Impersonate-Group: system:masters",
                "Host: controller.cattery",
                "X-Cattery-Service: controller",
            ],
        )
    })
    .await;
    assert_eq!(code, 200, "{body}");
    let s = sim.url.clone();
    let requests = blocking(move || sim_requests(&s)).await;
    let forged = requests
        .iter()
        .find(|r| r["query"].as_str().unwrap_or("").contains("marker=forged"))
        .expect("the user's request reached the cluster");
    assert_eq!(forged["impersonateUser"], "cattery:admin", "{forged}");
    assert_eq!(
        forged["impersonateGroups"],
        json!(["cattery:admins"]),
        "{forged}"
    );

    // Nor can a user whose own name is the service identity: the agent refuses it.
    let h = hub.clone();
    let (code, body) = blocking(move || {
        let token = h.cli(
            &h.token,
            &[
                "token",
                "create",
                "--user",
                SERVICE_IDENTITY,
                "--group",
                "cattery:admins",
            ],
        );
        h.curl(
            token.trim(),
            "/clusters/east/k8s/api/v1/namespaces?marker=named",
            &[],
        )
    })
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("reserved for the management plane's controllers"),
        "{body}"
    );
    let s = sim.url.clone();
    let requests = blocking(move || sim_requests(&s)).await;
    assert!(
        !requests
            .iter()
            .any(|r| r["query"].as_str().unwrap_or("").contains("marker=named")),
        "the refused request never reached the cluster"
    );

    shutdown.cancel();
    running.wait().await;
    let _ = Path::new(&d);
}
