//! Audit events for the requests the simulator serves, delivered to a real
//! webhook receiver (axum, in the test) as kube-apiserver's batching
//! webhook backend delivers them: plain HTTP, HTTPS with a custom CA, and a
//! receiver that fails for a while.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use cattery_sim::LogArgs;
use common::{Options, Sim, WAIT};
use serde_json::{Value, json};

/// What the receiver got, and how many POSTs it should refuse first.
#[derive(Default)]
struct Received {
    batches: Mutex<Vec<Value>>,
    refuse_first: AtomicUsize,
    refused: AtomicUsize,
}

impl Received {
    fn events(&self) -> Vec<Value> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["items"].as_array().unwrap().clone())
            .collect()
    }
}

async fn receive(State(r): State<Arc<Received>>, body: Bytes) -> StatusCode {
    if r.refused.load(Ordering::SeqCst) < r.refuse_first.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let v: Value = serde_json::from_slice(&body).expect("EventList is JSON");
    r.batches.lock().unwrap().push(v);
    StatusCode::OK
}

fn receiver_app(r: Arc<Received>) -> Router {
    Router::new().route("/audit", post(receive)).with_state(r)
}

/// A plain-HTTP receiver on an ephemeral port.
async fn http_receiver(refuse_first: usize) -> (String, Arc<Received>) {
    let r = Arc::new(Received::default());
    r.refuse_first.store(refuse_first, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/audit", listener.local_addr().unwrap());
    let app = receiver_app(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

fn audit_args(url: &str) -> LogArgs {
    LogArgs {
        audit_webhook: Some(url.parse().unwrap()),
        audit_batch_max_wait: Duration::from_millis(100),
        audit_batch_max_size: 3,
        ..LogArgs::default()
    }
}

async fn wait_for_events(r: &Received, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let evs = r.events();
        if evs.len() >= n {
            return evs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} audit events arrived",
            evs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(method, path, headers, body)`.
type Call<'h> = (
    &'static str,
    &'static str,
    &'h [(&'static str, &'static str)],
    &'static str,
);

async fn logstats(sim: &Sim) -> Value {
    sim.http_json("GET", "/_sim/logstats", "application/json", "")
        .await
        .1
}

#[tokio::test]
async fn webhook_receives_event_list_batches_with_the_impersonated_user() {
    let (url, received) = http_receiver(0).await;
    let sim = Sim::start_with(Options {
        token: Some("agent-token"),
        logs: audit_args(&url),
        ..Options::default()
    })
    .await;
    let auth = ("authorization", "Bearer agent-token");
    let imp = [
        auth,
        ("impersonate-user", "alice@example.com"),
        ("impersonate-group", "dev"),
        ("user-agent", "kubectl/v1.32.0 (linux/amd64)"),
        ("x-forwarded-for", "192.0.2.7"),
    ];
    // Audited: list, get, create, delete, watch (ends with timeoutSeconds), a 404 and a 401.
    let calls: [Call; 7] = [
        ("GET", "/api/v1/namespaces/shop/pods", &imp, ""),
        ("GET", "/api/v1/namespaces/shop/services/cart", &[auth], ""),
        (
            "POST",
            "/api/v1/namespaces/shop/configmaps",
            &[auth, ("content-type", "application/json")],
            r#"{"metadata":{"name":"cm"}}"#,
        ),
        ("DELETE", "/api/v1/namespaces/shop/configmaps/cm", &imp, ""),
        (
            "GET",
            "/api/v1/namespaces/shop/pods?watch=true&timeoutSeconds=1",
            &[auth],
            "",
        ),
        ("GET", "/api/v1/namespaces/shop/pods/nope", &[auth], ""),
        ("GET", "/api/v1/namespaces", &[], ""),
    ];
    for (m, path, headers, body) in calls {
        let resp = sim.send(m, path, headers, Bytes::from(body)).await;
        assert!(resp.headers().contains_key("audit-id"), "{m} {path}");
        // Read to the end so the watch runs its course.
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
    }
    // Not audited: health, discovery, version, the simulator's own endpoints.
    for path in ["/healthz", "/version", "/api", "/apis", "/_sim/info"] {
        sim.http("GET", path, "application/json", "").await;
    }
    // One more audited request as a marker: one task sends the events in order, so once the
    // marker's event is in, every event before it is too, and the unaudited calls made none.
    let marker = "/api/v1/namespaces/shop/configmaps/marker";
    let resp = sim.send("GET", marker, &[auth], Bytes::new()).await;
    assert_eq!(resp.status(), 404);
    let mut events = wait_for_events(&received, 8).await;
    assert_eq!(
        events.len(),
        8,
        "exactly the audited requests and the marker"
    );
    assert_eq!(events.pop().unwrap()["requestURI"], marker);

    for batch in received.batches.lock().unwrap().iter() {
        assert_eq!(batch["kind"], "EventList");
        assert_eq!(batch["apiVersion"], "audit.k8s.io/v1");
        let n = batch["items"].as_array().unwrap().len();
        assert!(
            (1..=3).contains(&n),
            "batches hold at most --audit-batch-max-size"
        );
    }
    let by_uri = |uri: &str| {
        events
            .iter()
            .find(|e| e["requestURI"] == uri)
            .unwrap_or_else(|| panic!("no event for {uri}"))
            .clone()
    };
    let list = by_uri("/api/v1/namespaces/shop/pods");
    assert_eq!(list["level"], "Metadata");
    assert_eq!(list["stage"], "ResponseComplete");
    assert_eq!(list["verb"], "list");
    assert_eq!(
        list["user"],
        json!({"username": "system:serviceaccount:cattery-system:cattery-agent",
               "groups": ["system:serviceaccounts", "system:serviceaccounts:cattery-system", "system:authenticated"]})
    );
    assert_eq!(
        list["impersonatedUser"],
        json!({"username": "alice@example.com", "groups": ["dev", "system:authenticated"]})
    );
    assert_eq!(list["sourceIPs"], json!(["192.0.2.7", "127.0.0.1"]));
    assert_eq!(list["userAgent"], "kubectl/v1.32.0 (linux/amd64)");
    assert_eq!(
        list["objectRef"],
        json!({"resource": "pods", "namespace": "shop", "apiVersion": "v1"})
    );
    assert_eq!(list["responseStatus"], json!({"metadata": {}, "code": 200}));
    assert_eq!(
        list["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    let id = list["auditID"].as_str().unwrap();
    assert_eq!((id.len(), id.matches('-').count()), (36, 4));
    for field in ["requestReceivedTimestamp", "stageTimestamp"] {
        let t = list[field].as_str().unwrap();
        let frac = t.split('.').nth(1).unwrap();
        assert_eq!(frac.len(), 7, "microseconds + Z: {t}");
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap();
    }

    let get = by_uri("/api/v1/namespaces/shop/services/cart");
    assert_eq!(get["verb"], "get");
    assert!(get.get("impersonatedUser").is_none());
    assert_eq!(get["objectRef"]["name"], "cart");
    assert_eq!(
        by_uri("/api/v1/namespaces/shop/configmaps")["verb"],
        "create"
    );
    assert_eq!(
        by_uri("/api/v1/namespaces/shop/configmaps")["responseStatus"]["code"],
        201
    );
    let delete = by_uri("/api/v1/namespaces/shop/configmaps/cm");
    assert_eq!(delete["verb"], "delete");
    assert_eq!(delete["impersonatedUser"]["username"], "alice@example.com");
    let watch = by_uri("/api/v1/namespaces/shop/pods?watch=true&timeoutSeconds=1");
    assert_eq!(watch["verb"], "watch");
    let took = time::OffsetDateTime::parse(
        watch["stageTimestamp"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
        - time::OffsetDateTime::parse(
            watch["requestReceivedTimestamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
    assert!(
        took >= time::Duration::milliseconds(900),
        "a watch completes when it ends: {took}"
    );
    let missing = by_uri("/api/v1/namespaces/shop/pods/nope");
    assert_eq!(missing["responseStatus"]["code"], 404);
    assert_eq!(missing["responseStatus"]["status"], "Failure");
    let anonymous = by_uri("/api/v1/namespaces");
    assert_eq!(anonymous["user"]["username"], "system:anonymous");
    assert_eq!(anonymous["responseStatus"]["code"], 401);
    assert!(
        anonymous
            .get("annotations")
            .unwrap()
            .get("authorization.k8s.io/decision")
            .is_none()
    );

    // The seven audited calls and the marker.
    let st = logstats(&sim).await["audit"].clone();
    assert_eq!(st["generated"], 8);
    assert_eq!(st["sent"], 8);
    assert_eq!(st["dropped"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failing_webhook_gets_everything_after_retries() {
    let (url, received) = http_receiver(2).await;
    let sim = Sim::start_with(Options {
        logs: audit_args(&url),
        ..Options::default()
    })
    .await;
    for i in 0..10 {
        let (code, _) = sim
            .http(
                "GET",
                &format!("/api/v1/namespaces/default/configmaps?i={i}"),
                "application/json",
                "",
            )
            .await;
        assert_eq!(code, 200, "API requests never wait for the webhook");
    }
    let events = wait_for_events(&received, 10).await;
    let mut uris: Vec<_> = events
        .iter()
        .map(|e| e["requestURI"].as_str().unwrap().to_string())
        .collect();
    uris.sort();
    uris.dedup();
    assert_eq!(uris.len(), 10, "each event delivered once");
    let st = logstats(&sim).await["audit"].clone();
    assert_eq!(st["failedPosts"], 2);
    assert_eq!(
        (st["sent"].clone(), st["dropped"].clone()),
        (json!(10), json!(0))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    // Nothing listens on this port: every POST fails, the queue (2) fills.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut args = audit_args(&format!("http://127.0.0.1:{port}/audit"));
    args.audit_queue_size = 2;
    args.audit_batch_max_size = 1;
    let sim = Sim::start_with(Options {
        logs: args,
        ..Options::default()
    })
    .await;
    for _ in 0..8 {
        let (code, _) = sim
            .http("GET", "/api/v1/namespaces", "application/json", "")
            .await;
        assert_eq!(code, 200);
    }
    let st = logstats(&sim).await["audit"].clone();
    assert_eq!(st["generated"], 8);
    assert_eq!(st["sent"], 0);
    // One batch in flight and two queued at most; the rest were dropped.
    assert!(st["dropped"].as_u64().unwrap() >= 5, "{st}");
    sim.shutdown().await;
}

#[tokio::test]
async fn https_webhook_with_a_custom_ca() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    // A CA and a serving certificate for 127.0.0.1.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("webhook-ca.crt");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let received = Arc::new(Received::default());
    let app = receiver_app(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/audit", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });

    let mut args = audit_args(&url);
    args.audit_webhook_ca_file = Some(ca_file);
    let sim = Sim::start_with(Options {
        logs: args,
        ..Options::default()
    })
    .await;
    let resp = sim
        .send(
            "GET",
            "/apis/networking.k8s.io/v1/namespaces/payments/networkpolicies",
            &[
                ("impersonate-user", "bob"),
                ("impersonate-group", "system:masters"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let events = wait_for_events(&received, 1).await;
    assert_eq!(events[0]["objectRef"]["apiGroup"], "networking.k8s.io");
    assert_eq!(
        events[0]["impersonatedUser"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );
    sim.shutdown().await;

    // Without the CA the same receiver is not trusted: the sim refuses to start only on a bad file.
    let mut bad = audit_args(&format!("https://{}/audit", "127.0.0.1:1"));
    bad.audit_webhook_ca_file = Some(dir.path().join("missing.crt"));
    let err = cattery_sim::SimServer::bind_with_logs(
        &cattery_sim::SimArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            name: "x".into(),
            tls_dir: None,
            token_file: None,
            pod_cidr: None,
        },
        &bad,
    )
    .await
    .err()
    .expect("a missing CA file is a configuration error");
    assert!(format!("{err:#}").contains("missing.crt"), "{err:#}");
}
