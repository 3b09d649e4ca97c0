//! Real kubectl against the simulator: get, get -w, apply, delete, exec,
//! HTTPS with a bearer token.

mod common;

use common::{Options, Sim, Streaming};
use sha2::{Digest, Sha256};

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  containers:
  - name: web
    image: nginx:1.27
  - name: sidecar
    image: busybox:1.36
";

#[tokio::test]
async fn get_prints_seeded_objects_as_tables() {
    let sim = Sim::start().await;
    let pods = sim.kubectl_ok(&["get", "pods", "-n", "shop"]).await;
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(
        pods.lines()
            .any(|l| l.starts_with("cart-") && l.contains("1/1") && l.contains("Running")),
        "{pods}"
    );
    assert_eq!(pods.lines().count(), 4, "{pods}");

    let all = sim
        .kubectl_ok(&["get", "po", "-A", "-l", "app in (api,db)"])
        .await;
    assert!(
        all.lines().next().unwrap().starts_with("NAMESPACE"),
        "{all}"
    );
    assert_eq!(
        all.lines().filter(|l| l.starts_with("payments")).count(),
        2,
        "{all}"
    );

    let ns = sim
        .kubectl_ok(&[
            "get",
            "ns",
            "-l",
            "cattery.dev/sim-cluster=test-sim",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(ns.trim(), "namespace/kube-system");

    let svc = sim
        .kubectl_ok(&[
            "get",
            "svc",
            "-n",
            "payments",
            "db",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await;
    assert!(svc.starts_with("10.96."), "{svc}");
    let netpol = sim.kubectl_ok(&["get", "netpol", "-n", "payments"]).await;
    assert!(
        netpol.contains("db-allow-api") && netpol.contains("app=db"),
        "{netpol}"
    );

    let info = sim.kubectl_ok(&["get", "--raw", "/_sim/info"]).await;
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["name"], "test-sim");

    let missing = sim.kubectl(&["get", "pod", "nope", "-n", "shop"]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("pods \"nope\" not found"));
    sim.shutdown().await;
}

#[tokio::test]
async fn get_watch_prints_events_while_open() {
    let sim = Sim::start().await;
    let mut watch = Streaming::spawn(&sim, &["get", "pods", "-n", "shop", "-w"]);
    watch
        .until("the seeded checkout pod", |l| l.starts_with("checkout-"))
        .await;

    let path = sim.file("pod.yaml", POD);
    sim.kubectl_ok(&["apply", "-f", &path]).await;
    let line = watch.until("the new pod", |l| l.starts_with("web ")).await;
    assert!(line.contains("2/2") && line.contains("Running"), "{line}");

    sim.kubectl_ok(&["delete", "pod", "web", "-n", "shop"])
        .await;
    watch.until("the deletion", |l| l.starts_with("web ")).await;
    assert!(
        watch.child.try_wait().unwrap().is_none(),
        "the watch is still open"
    );
    watch.child.kill().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn apply_creates_then_patches() {
    let sim = Sim::start().await;
    let path = sim.file("pod.yaml", POD);
    let out = sim.kubectl_ok(&["apply", "-f", &path]).await;
    assert_eq!(out.trim(), "pod/web created");

    let changed = POD
        .replace("nginx:1.27", "nginx:1.28")
        .replace("app: web", "app: web\n    tier: front");
    sim.file("pod.yaml", &changed);
    let out = sim.kubectl_ok(&["apply", "-f", &path]).await;
    assert_eq!(out.trim(), "pod/web configured");
    let images = sim
        .kubectl_ok(&[
            "get",
            "pod",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.containers[*].image}",
        ])
        .await;
    assert_eq!(
        images, "nginx:1.28 busybox:1.36",
        "strategic merge kept both containers in order"
    );
    let meta = sim
        .kubectl_ok(&[
            "get",
            "pod",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.labels.tier} {.metadata.generation}",
        ])
        .await;
    assert_eq!(meta, "front 2");
    let out = sim.kubectl_ok(&["apply", "-f", &path]).await;
    assert_eq!(out.trim(), "pod/web unchanged");

    // A custom type (merge patch path) and a wrong-namespace error.
    let mcc = sim.file(
        "mcc.yaml",
        "apiVersion: cattery.dev/v1\nkind: ManagementClusterConnection\nmetadata:\n  name: main\nspec:\n  url: https://a\n",
    );
    sim.kubectl_ok(&["apply", "-f", &mcc]).await;
    sim.file(
        "mcc.yaml",
        &std::fs::read_to_string(&mcc)
            .unwrap()
            .replace("https://a", "https://b"),
    );
    sim.kubectl_ok(&["apply", "-f", &mcc]).await;
    let url = sim
        .kubectl_ok(&[
            "get",
            "managementclusterconnections",
            "main",
            "-o",
            "jsonpath={.spec.url}",
        ])
        .await;
    assert_eq!(url, "https://b");

    let bad = sim.file(
        "bad.yaml",
        &POD.replace("namespace: shop", "namespace: nowhere"),
    );
    let out = sim.kubectl(&["apply", "-f", &bad]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("namespaces \"nowhere\" not found"));
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_objects_and_namespaces() {
    let sim = Sim::start().await;
    let out = sim
        .kubectl_ok(&["delete", "svc", "cart", "-n", "shop"])
        .await;
    assert_eq!(out.trim(), "service \"cart\" deleted");
    let gone = sim.kubectl(&["get", "svc", "cart", "-n", "shop"]).await;
    assert!(!gone.status.success());

    sim.kubectl_ok(&["delete", "ns", "payments"]).await;
    let out = sim.kubectl(&["get", "pods", "-n", "payments"]).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No resources found"),
        "{out:?}"
    );
    let out = sim.kubectl(&["get", "netpol", "-A"]).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No resources found"),
        "{out:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn exec_over_websocket() {
    let sim = Sim::start().await;
    let pod = "cart-7d4b9c6f8-m5p2w";
    let out = sim
        .kubectl_ok(&["exec", "-n", "shop", pod, "--", "echo", "hi"])
        .await;
    assert_eq!(out, "hi\n");
    assert_eq!(
        sim.kubectl_ok(&["exec", "-n", "shop", pod, "--", "hostname"])
            .await,
        format!("{pod}\n")
    );

    let out = sim
        .kubectl(&["exec", "-n", "shop", pod, "--", "ls", "/"])
        .await;
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ls: command not found"));

    let mut cat = sim.kubectl_cmd(&["exec", "-i", "-n", "shop", pod, "--", "cat"]);
    cat.stdin(std::process::Stdio::piped());
    let mut child = cat.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"one\ntwo\n").await.unwrap();
    }
    let out = tokio::time::timeout(common::WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"one\ntwo\n");

    let out = sim
        .kubectl(&["exec", "-n", "shop", "nope", "--", "echo"])
        .await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pods \"nope\" not found"),
        "{out:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn https_with_bearer_token() {
    let sim = Sim::start_with(Options {
        name: "secure",
        tls: true,
        token: Some("s3cret"),
        ..Options::default()
    })
    .await;
    assert!(sim.url.starts_with("https://"));
    let ns = sim
        .kubectl_ok(&[
            "get",
            "ns",
            "kube-system",
            "-o",
            "jsonpath={.metadata.labels}",
        ])
        .await;
    assert!(
        ns.contains("\"cattery.dev/sim-cluster\":\"secure\""),
        "{ns}"
    );
    assert_eq!(
        sim.kubectl_ok(&[
            "exec", "-n", "payments", "db-0", "--", "echo", "over", "tls"
        ])
        .await,
        "over tls\n"
    );

    // The request log keeps a hash of the Authorization header, never the token.
    let log = sim.kubectl_ok(&["get", "--raw", "/_sim/requests"]).await;
    let want = hex::encode(Sha256::digest(b"Bearer s3cret"));
    assert!(log.contains(&want), "{log}");
    assert!(!log.contains("s3cret"));
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let sim = Sim::start_with(Options {
        token: Some("right"),
        client_token: Some("wrong"),
        ..Options::default()
    })
    .await;
    let out = sim.kubectl(&["get", "pods", "-n", "shop"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("You must be logged in to the server"),
        "{out:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_creates_then_merges() {
    let sim = Sim::start().await;
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: ssa\n  namespace: shop\nspec:\n  podSelector:\n    matchLabels:\n      app: cart\n  policyTypes: [Ingress]\n";
    let path = sim.file("np.yaml", np);
    let out = sim
        .kubectl_ok(&["apply", "--server-side", "-f", &path])
        .await;
    assert_eq!(
        out.trim(),
        "networkpolicy.networking.k8s.io/ssa serverside-applied"
    );
    let get = [
        "get",
        "networkpolicy",
        "ssa",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.podSelector.matchLabels.app} {.metadata.generation}",
    ];
    assert_eq!(sim.kubectl_ok(&get).await, "cart 1");
    sim.file("np.yaml", &np.replace("app: cart", "app: checkout"));
    sim.kubectl_ok(&["apply", "--server-side", "-f", &path])
        .await;
    assert_eq!(sim.kubectl_ok(&get).await, "checkout 2");
    let log = sim.kubectl_ok(&["get", "--raw", "/_sim/requests"]).await;
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["method"] == "PATCH"
                && r["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("fieldManager=kubectl"))),
        "kubectl sent a server-side apply: {log}"
    );
}

/// kubectl's typed clients send protobuf bodies for built-in kinds (and do not fall back
/// to JSON on a 415): `create namespace|configmap|service` must work as against a real
/// kube-apiserver.
#[tokio::test]
async fn create_subcommands_send_protobuf_and_work() {
    let sim = Sim::start().await;
    let out = sim.kubectl(&["create", "namespace", "pb", "-v=8"]).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains("namespace/pb created"),
        "{stdout}\n{stderr}"
    );
    // The request really was protobuf.
    assert!(
        stderr.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{stderr}"
    );
    let out = sim
        .kubectl_ok(&[
            "create",
            "configmap",
            "cfg",
            "-n",
            "pb",
            "--from-literal=k=v",
        ])
        .await;
    assert!(out.contains("configmap/cfg created"), "{out}");
    let out = sim
        .kubectl_ok(&[
            "create",
            "service",
            "clusterip",
            "web",
            "-n",
            "pb",
            "--tcp=80:8080",
        ])
        .await;
    assert!(out.contains("service/web created"), "{out}");

    let ns = sim
        .kubectl_ok(&["get", "ns", "pb", "-o", "jsonpath={.status.phase}"])
        .await;
    assert_eq!(ns, "Active");
    let data = sim
        .kubectl_ok(&["get", "cm", "cfg", "-n", "pb", "-o", "jsonpath={.data.k}"])
        .await;
    assert_eq!(data, "v");
    let ports = sim
        .kubectl_ok(&[
            "get",
            "svc",
            "web",
            "-n",
            "pb",
            "-o",
            "jsonpath={.spec.ports[0].port}/{.spec.ports[0].targetPort}/{.spec.selector.app}",
        ])
        .await;
    assert_eq!(ports, "80/8080/web");
    sim.shutdown().await;
}

/// `--dry-run=server` (`dryRun=All`) on create, patch and delete: checked, nothing stored.
#[tokio::test]
async fn server_dry_run_stores_nothing() {
    let sim = Sim::start().await;
    let out = sim
        .kubectl_ok(&["create", "namespace", "dry", "--dry-run=server"])
        .await;
    assert!(
        out.contains("namespace/dry created (server dry run)"),
        "{out}"
    );
    let out = sim.kubectl(&["get", "ns", "dry"]).await;
    assert!(!out.status.success(), "nothing was created");
    let pod = sim.file("pod.yaml", POD);
    sim.kubectl_ok(&["apply", "-f", &pod, "--dry-run=server"])
        .await;
    assert!(
        !sim.kubectl(&["get", "pod", "web", "-n", "shop"])
            .await
            .status
            .success()
    );
    sim.kubectl_ok(&["apply", "-f", &pod]).await;
    sim.kubectl_ok(&[
        "label",
        "pod",
        "web",
        "-n",
        "shop",
        "tier=x",
        "--dry-run=server",
    ])
    .await;
    sim.kubectl_ok(&["delete", "pod", "web", "-n", "shop", "--dry-run=server"])
        .await;
    let labels = sim
        .kubectl_ok(&[
            "get",
            "pod",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.labels}",
        ])
        .await;
    assert!(!labels.contains("tier"), "{labels}");
    // Invalid input is still refused in a dry run.
    let out = sim
        .kubectl(&["create", "namespace", "Bad_Name", "--dry-run=server"])
        .await;
    assert!(!out.status.success());
    let (code, status) = sim
        .http_json(
            "POST",
            "/api/v1/namespaces?dryRun=Some",
            "application/json",
            r#"{"metadata": {"name": "x"}}"#,
        )
        .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("dryRun"),
        "{status}"
    );
    sim.shutdown().await;
}

/// Two sims with their own pod CIDRs: kubectl creates a pod in each (an IP from that
/// sim's CIDR, Running), relabels it while a `get -w` watches, and deletes it.
#[tokio::test]
async fn pods_get_ips_from_each_sims_pod_cidr_and_can_be_relabelled() {
    let east = Sim::start_with(Options {
        name: "east",
        pod_cidr: Some("10.42.0.0/16"),
        ..Options::default()
    })
    .await;
    let west = Sim::start_with(Options {
        name: "west",
        pod_cidr: Some("10.43.0.0/16"),
        ..Options::default()
    })
    .await;
    let info = west.kubectl_ok(&["get", "--raw", "/_sim/info"]).await;
    assert!(info.contains("\"podCIDR\":\"10.43.0.0/16\""), "{info}");
    let mut ips = Vec::new();
    for (sim, prefix) in [(&east, "10.42."), (&west, "10.43.")] {
        let pod = sim.file("pod.yaml", POD);
        sim.kubectl_ok(&["apply", "-f", &pod]).await;
        let out = sim
            .kubectl_ok(&[
                "get",
                "pod",
                "web",
                "-n",
                "shop",
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ])
            .await;
        let (phase, ip) = out.split_once(' ').unwrap();
        assert_eq!(phase, "Running");
        assert!(ip.starts_with(prefix), "{ip} in {prefix}");
        ips.push(ip.to_string());
    }
    assert_ne!(ips[0], ips[1]);

    let mut watch = Streaming::spawn(
        &east,
        &[
            "get",
            "pods",
            "-n",
            "shop",
            "-l",
            "app=web",
            "-w",
            "--show-labels",
            "--no-headers",
        ],
    );
    watch.until("the pod", |l| l.starts_with("web ")).await;
    east.kubectl_ok(&["label", "pod", "web", "-n", "shop", "tier=front"])
        .await;
    watch
        .until("the relabelled pod", |l| {
            l.starts_with("web ") && l.contains("tier=front")
        })
        .await;
    let selected = east
        .kubectl_ok(&[
            "get",
            "pods",
            "-n",
            "shop",
            "-l",
            "tier=front",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(selected.trim(), "pod/web");
    east.kubectl_ok(&["delete", "pod", "web", "-n", "shop"])
        .await;
    let gone = east.kubectl(&["get", "pod", "web", "-n", "shop"]).await;
    assert!(!gone.status.success());
    east.shutdown().await;
    west.shutdown().await;
}

/// `kubectl apply --server-side` by two field managers: shared values are fine, a
/// different value of another manager's field is a conflict naming both, and
/// `--force-conflicts` takes the field over; `managedFields` shows who owns what.
#[tokio::test]
async fn server_side_apply_tracks_managers_and_conflicts() {
    let sim = Sim::start().await;
    let cm = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  namespace: shop\ndata:\n  level: \"{v}\"\n"
        )
    };
    let one = sim.file("one.yaml", &cm("1"));
    let two = sim.file("two.yaml", &cm("2"));
    let out = sim
        .kubectl_ok(&[
            "apply",
            "--server-side",
            "--field-manager=team-a",
            "-f",
            &one,
        ])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    sim.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=team-b",
        "-f",
        &one,
    ])
    .await;
    let out = sim
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=team-b",
            "-f",
            &two,
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a conflict");
    assert!(
        stderr.contains("conflict") && stderr.contains("team-a") && stderr.contains(".data.level"),
        "{stderr}"
    );
    let level = sim
        .kubectl_ok(&[
            "get",
            "cm",
            "owned",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.level}",
        ])
        .await;
    assert_eq!(level, "1", "nothing changed");
    sim.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=team-b",
        "--force-conflicts",
        "-f",
        &two,
    ])
    .await;
    let out = sim
        .kubectl_ok(&[
            "get",
            "cm",
            "owned",
            "-n",
            "shop",
            "--show-managed-fields",
            "-o",
            "jsonpath={.data.level} {.metadata.managedFields[*].manager}",
        ])
        .await;
    assert_eq!(out, "2 team-b", "team-a lost its only field");
    sim.shutdown().await;
}
