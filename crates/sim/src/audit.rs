//! Kubernetes audit events for the API requests the simulator serves, sent
//! to an audit webhook the way kube-apiserver's batching webhook backend
//! does (`--audit-webhook-config-file` with `--audit-webhook-mode=batch`).
//!
//! Every request except the simulator's own `/_sim/*`, health (`/healthz`,
//! `/readyz`, `/livez`), `/version`, discovery (`/api`, `/api/<v>`,
//! `/apis`, `/apis/<g>`, `/apis/<g>/<v>`) and OpenAPI paths yields one
//! `audit.k8s.io/v1` `Event` at level `Metadata`, stage `ResponseComplete`
//! (emitted when the response body ends or is dropped, so a watch is
//! audited when it closes, as kube-apiserver does):
//!
//! - `verb` as kube-apiserver's RequestInfo names it: `get`, `list`,
//!   `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
//!   or the lower-cased method for non-resource URLs;
//! - `user`: the identity of the bearer token (`--audit-token-user`,
//!   default the agent's service account) when the request carried the
//!   configured token, else `system:anonymous`;
//! - `impersonatedUser` from `Impersonate-User`/`-Group`/`-Extra-*`, with
//!   `system:authenticated` added as kube-apiserver adds it;
//! - `sourceIPs` from `X-Forwarded-For`, `X-Real-Ip` and the peer address;
//! - `objectRef`, `responseStatus.code`, `requestReceivedTimestamp` and
//!   `stageTimestamp` (RFC 3339, microseconds) and the annotation
//!   `authorization.k8s.io/decision: allow` (the simulator authorizes
//!   everything it authenticates).
//!
//! Delivery: events go into a bounded queue (`--audit-queue-size`) that API
//! handlers never wait on — when it is full the event is dropped and
//! counted. One task sends `EventList` batches of up to
//! `--audit-batch-max-size` events, or whatever arrived within
//! `--audit-batch-max-wait` of the first, and retries a failed batch with
//! exponential backoff (200 ms doubling to 5 s) until it is accepted (2xx)
//! or the simulator shuts down. Unlike kube-apiserver, which gives up on a
//! batch after its retries, a batch is never abandoned while the simulator
//! runs: a receiver that is down for a while gets everything queued (up to
//! the queue size) when it returns. On shutdown, what is queued gets one
//! last attempt within 2 s; anything not accepted is counted as dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// The identity audited for requests carrying the configured token.
pub const DEFAULT_TOKEN_USER: &str = "system:serviceaccount:cattery-system:cattery-agent";

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Where `EventList` batches are POSTed.
    pub url: http::Uri,
    /// PEM CA bundle trusted for an `https` URL (system roots otherwise).
    pub ca_file: Option<PathBuf>,
    /// Most events in one batch.
    pub batch_max_size: usize,
    /// Longest wait for a batch to fill after its first event.
    pub batch_max_wait: Duration,
    /// Events buffered while the webhook is slow or down.
    pub queue_size: usize,
    /// Username of the bearer-token identity.
    pub token_user: String,
    /// Bearer token presented to the webhook (kube-apiserver's webhook kubeconfig has one).
    pub webhook_token: Option<String>,
}

/// Counters for `/_sim/logstats`.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Events produced.
    pub generated: AtomicU64,
    /// Events accepted by the webhook.
    pub sent: AtomicU64,
    /// Events dropped (queue full, or not delivered by shutdown).
    pub dropped: AtomicU64,
    /// Batches accepted.
    pub batches: AtomicU64,
    /// POSTs that failed (each is retried).
    pub failed_posts: AtomicU64,
}

impl AuditStats {
    /// JSON for `/_sim/logstats`.
    pub fn to_json(&self, enabled: bool) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let (generated, sent, dropped) =
            (get(&self.generated), get(&self.sent), get(&self.dropped));
        json!({
            "enabled": enabled,
            "generated": generated,
            "sent": sent,
            "dropped": dropped,
            "pending": generated.saturating_sub(sent + dropped),
            "batches": get(&self.batches),
            "failedPosts": get(&self.failed_posts),
        })
    }
}

/// `authentication.k8s.io/v1` `UserInfo` as it appears in audit events.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// Groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `objectRef`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Plural resource.
    pub resource: String,
    /// Namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// API group (absent for the core group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// API version.
    pub api_version: String,
    /// Subresource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

/// `responseStatus` (a `metav1.Status` with only what Metadata level keeps).
#[derive(Debug, Clone, Serialize)]
pub struct ResponseStatus {
    /// Always `{}`.
    pub metadata: BTreeMap<String, String>,
    /// `Failure` for error codes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// HTTP status code.
    pub code: u16,
}

/// One `audit.k8s.io/v1` `Event` (fields in kube-apiserver's order).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Event {
    pub level: String,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    pub user: UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    pub response_status: ResponseStatus,
    pub request_received_timestamp: String,
    pub stage_timestamp: String,
    pub annotations: BTreeMap<String, String>,
}

/// The webhook payload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventList<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: BTreeMap<String, String>,
    items: &'a [Event],
}

/// The peer address of a connection, inserted into each request by the server.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Formats a time as kube-apiserver's `MicroTime` (`2006-01-02T15:04:05.000000Z`).
pub fn micro_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Whether a path is audited (see the module docs for what is not).
pub fn is_audited(path: &str) -> bool {
    if path.starts_with("/_sim/") || path.starts_with("/openapi") {
        return false;
    }
    for p in ["/healthz", "/readyz", "/livez", "/version"] {
        if path == p || path.starts_with(&format!("{p}/")) {
            return false;
        }
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    !matches!(
        segs.as_slice(),
        ["api"] | ["api", _] | ["apis"] | ["apis", _] | ["apis", _, _]
    )
}

/// kube-apiserver's verb and object reference for a request.
pub(crate) fn verb_and_object(
    store: &crate::objects::Store,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> (String, Option<ObjectRef>) {
    let Some(t) = crate::api::parse_path(store, path) else {
        return (method.as_str().to_ascii_lowercase(), None);
    };
    let watch = t.watch_prefix || crate::api::Query::parse(query).flag("watch");
    let verb = match (method, t.name.is_some()) {
        (&Method::GET | &Method::HEAD, _) if watch => "watch",
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::GET | &Method::HEAD, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        (m, _) => return (m.as_str().to_ascii_lowercase(), None),
    };
    // A cluster-scoped namespace object is its own namespace in kube-apiserver's RequestInfo.
    let namespace = t.namespace.clone().or_else(|| {
        (t.res.kind == "Namespace")
            .then(|| t.name.clone())
            .flatten()
    });
    let obj = ObjectRef {
        resource: t.res.plural.to_string(),
        namespace,
        name: t.name.clone(),
        api_group: (!t.res.group.is_empty()).then(|| t.res.group.to_string()),
        api_version: t.res.version.to_string(),
        subresource: t.sub.clone(),
    };
    (verb.to_string(), Some(obj))
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// The authenticated user of a request.
pub fn authenticated_user(headers: &HeaderMap, token: Option<&str>, token_user: &str) -> UserInfo {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match token {
        Some(t) if crate::auth::token_matches(auth, t) => {
            let mut groups = Vec::new();
            if let Some(rest) = token_user.strip_prefix("system:serviceaccount:")
                && let Some((ns, _)) = rest.split_once(':')
            {
                groups.push("system:serviceaccounts".to_string());
                groups.push(format!("system:serviceaccounts:{ns}"));
            }
            groups.push("system:authenticated".to_string());
            UserInfo {
                username: token_user.to_string(),
                groups,
                extra: BTreeMap::new(),
            }
        }
        _ => UserInfo {
            username: "system:anonymous".to_string(),
            groups: vec!["system:unauthenticated".to_string()],
            extra: BTreeMap::new(),
        },
    }
}

/// The impersonated user, when `Impersonate-User` was sent.
pub fn impersonated_user(headers: &HeaderMap) -> Option<UserInfo> {
    let username = headers.get("impersonate-user")?.to_str().ok()?.to_string();
    let mut groups = header_values(headers, "impersonate-group");
    if username != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".to_string());
    }
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Ok(v) = value.to_str()
        {
            extra
                .entry(crate::debug::unescape(key))
                .or_default()
                .push(v.to_string());
        }
    }
    Some(UserInfo {
        username,
        groups,
        extra,
    })
}

fn source_ips(headers: &HeaderMap, peer: Option<SocketAddr>) -> Vec<String> {
    let mut ips: Vec<String> = header_values(headers, "x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
        .collect();
    if let Some(real) = headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
        && !ips.iter().any(|i| i == real)
    {
        ips.push(real.to_string());
    }
    if let Some(p) = peer {
        let ip = p.ip().to_canonical().to_string();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// The producing side: hands events to the sender without waiting.
#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::Sender<Event>,
    stats: Arc<AuditStats>,
    token_user: String,
}

impl Auditor {
    /// Queues an event; drops (and counts) it when the queue is full.
    pub fn submit(&self, ev: Event) {
        self.stats.generated.fetch_add(1, Ordering::SeqCst);
        if self.tx.try_send(ev).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::SeqCst);
            tracing::debug!("audit queue full; event dropped");
        }
    }
}

/// Completes and submits the event when the response body is done.
struct Pending {
    auditor: Auditor,
    event: Option<Event>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut ev) = self.event.take() {
            ev.stage_timestamp = micro_time(time::OffsetDateTime::now_utc());
            self.auditor.submit(ev);
        }
    }
}

/// A response body that audits its request when it ends or is dropped.
struct AuditedBody {
    inner: Body,
    _pending: Pending,
}

impl HttpBody for AuditedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: audits every audited request (see the module docs).
pub(crate) async fn audit_requests(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(auditor) = st.audit.clone() else {
        return next.run(req).await;
    };
    if !is_audited(req.uri().path()) {
        return next.run(req).await;
    }
    let received = micro_time(time::OffsetDateTime::now_utc());
    let headers = req.headers();
    let (verb, object_ref) =
        verb_and_object(&st.store, req.method(), req.uri().path(), req.uri().query());
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
    let event = Event {
        level: "Metadata".into(),
        audit_id: headers
            .get("audit-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 64)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        stage: "ResponseComplete".into(),
        request_uri: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
        verb,
        user: authenticated_user(headers, st.token.as_deref(), &auditor.token_user),
        impersonated_user: impersonated_user(headers),
        source_ips: source_ips(headers, peer),
        user_agent: headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        object_ref,
        response_status: ResponseStatus {
            metadata: BTreeMap::new(),
            status: None,
            code: 0,
        },
        request_received_timestamp: received,
        stage_timestamp: String::new(),
        annotations: BTreeMap::new(),
    };
    let audit_id = event.audit_id.clone();
    let mut resp = next.run(req).await;
    let mut event = event;
    let code = resp.status().as_u16();
    event.response_status.code = code;
    if code >= 400 {
        event.response_status.status = Some("Failure".into());
    }
    if code != 401 {
        event
            .annotations
            .insert("authorization.k8s.io/decision".into(), "allow".into());
        event.annotations.insert(
            "authorization.k8s.io/reason".into(),
            "the simulated cluster authorizes every authenticated request".into(),
        );
    }
    if let Ok(v) = http::HeaderValue::from_str(&audit_id) {
        resp.headers_mut().insert("audit-id", v);
    }
    let (parts, body) = resp.into_parts();
    let body = AuditedBody {
        inner: body,
        _pending: Pending {
            auditor,
            event: Some(event),
        },
    };
    Response::from_parts(parts, Body::new(body))
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn client(config: &AuditConfig) -> anyhow::Result<HttpsClient> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading --audit-webhook-ca-file {}", path.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("parsing --audit-webhook-ca-file {}", path.display()))?;
            anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
            for c in certs {
                roots.add(c).context("adding the audit webhook CA")?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Checks the configuration and builds the queue; the returned sender task
/// must be spawned (see [`Sender::run`]).
pub fn start(config: AuditConfig) -> anyhow::Result<(Auditor, Arc<AuditStats>, Sender)> {
    match config.url.scheme_str() {
        Some("http" | "https") => {}
        _ => anyhow::bail!(
            "--audit-webhook {} must be an http:// or https:// URL",
            config.url
        ),
    }
    anyhow::ensure!(
        config.batch_max_size > 0,
        "--audit-batch-max-size must be positive"
    );
    anyhow::ensure!(config.queue_size > 0, "--audit-queue-size must be positive");
    let client = client(&config)?;
    let (tx, rx) = mpsc::channel(config.queue_size);
    let stats = Arc::new(AuditStats::default());
    let auditor = Auditor {
        tx,
        stats: stats.clone(),
        token_user: config.token_user.clone(),
    };
    let sender = Sender {
        rx,
        client,
        config,
        stats: stats.clone(),
    };
    Ok((auditor, stats, sender))
}

/// The consuming side: batches events and POSTs them.
pub struct Sender {
    rx: mpsc::Receiver<Event>,
    client: HttpsClient,
    config: AuditConfig,
    stats: Arc<AuditStats>,
}

impl Sender {
    /// Sends batches until `shutdown`, then flushes what is queued (bounded).
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                ev = self.rx.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.config.batch_max_wait;
            while batch.len() < self.config.batch_max_size {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    () = shutdown.cancelled() => break,
                    ev = self.rx.recv() => match ev {
                        Some(ev) => batch.push(ev),
                        None => break,
                    },
                }
            }
            self.deliver(&batch, &shutdown).await;
        }
        // Shutdown: one bounded attempt for everything still queued.
        self.rx.close();
        let mut rest = Vec::new();
        while let Ok(ev) = self.rx.try_recv() {
            rest.push(ev);
        }
        let flush = async {
            for chunk in rest.chunks(self.config.batch_max_size) {
                if self.post(chunk).await.is_ok() {
                    self.accepted(chunk.len());
                } else {
                    self.stats
                        .dropped
                        .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), flush)
            .await
            .is_err()
        {
            let s = &self.stats;
            let lost = s.generated.load(Ordering::SeqCst)
                - s.sent.load(Ordering::SeqCst)
                - s.dropped.load(Ordering::SeqCst);
            s.dropped.fetch_add(lost, Ordering::SeqCst);
        }
    }

    fn accepted(&self, n: usize) {
        self.stats.sent.fetch_add(n as u64, Ordering::SeqCst);
        self.stats.batches.fetch_add(1, Ordering::SeqCst);
    }

    /// Retries `batch` with backoff until it is accepted or shutdown.
    async fn deliver(&self, batch: &[Event], shutdown: &CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.post(batch).await {
                Ok(()) => {
                    self.accepted(batch.len());
                    return;
                }
                Err(e) => {
                    self.stats.failed_posts.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(error = %e, events = batch.len(), retry_in = ?backoff,
                        "audit webhook did not accept a batch");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    let last = tokio::time::timeout(Duration::from_secs(2), self.post(batch)).await;
                    if matches!(last, Ok(Ok(()))) {
                        self.accepted(batch.len());
                    } else {
                        self.stats.dropped.fetch_add(batch.len() as u64, Ordering::SeqCst);
                    }
                    return;
                }
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn post(&self, batch: &[Event]) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&EventList {
            kind: "EventList",
            api_version: "audit.k8s.io/v1",
            metadata: BTreeMap::new(),
            items: batch,
        })?;
        let mut req = http::Request::post(self.config.url.clone());
        if let Some(t) = &self.config.webhook_token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                "kube-apiserver-admission (cattery-sim)",
            )
            .body(Full::new(Bytes::from(body)))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .context("timed out")??;
        let status = resp.status();
        anyhow::ensure!(status.is_success(), "webhook answered {status}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_object_refs_like_kube_apiserver() {
        let store = crate::objects::Store::new("t", "10.244.0.0/16".parse().unwrap());
        let verb_and_object =
            |m: &Method, p: &str, q: Option<&str>| verb_and_object(&store, m, p, q);
        let cases = [
            ("GET", "/api/v1/namespaces/shop/pods", None, "list"),
            ("GET", "/api/v1/namespaces/shop/pods/a", None, "get"),
            ("GET", "/api/v1/pods", Some("watch=true"), "watch"),
            ("GET", "/api/v1/watch/namespaces/shop/pods", None, "watch"),
            ("POST", "/api/v1/namespaces/shop/pods", None, "create"),
            ("PUT", "/api/v1/namespaces/shop/pods/a", None, "update"),
            ("PATCH", "/api/v1/namespaces/shop/pods/a", None, "patch"),
            ("DELETE", "/api/v1/namespaces/shop/pods/a", None, "delete"),
            (
                "DELETE",
                "/api/v1/namespaces/shop/pods",
                None,
                "deletecollection",
            ),
            ("POST", "/not/a/resource", None, "post"),
        ];
        for (m, path, q, want) in cases {
            let (verb, _) = verb_and_object(&m.parse().unwrap(), path, q);
            assert_eq!(verb, want, "{m} {path}");
        }
        let (_, obj) = verb_and_object(
            &Method::DELETE,
            "/apis/networking.k8s.io/v1/namespaces/payments/networkpolicies/p",
            None,
        );
        let v = serde_json::to_value(obj.unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"resource": "networkpolicies", "namespace": "payments", "name": "p",
                   "apiGroup": "networking.k8s.io", "apiVersion": "v1"})
        );
        let (_, obj) = verb_and_object(&Method::GET, "/api/v1/namespaces/shop/pods/a/exec", None);
        let v = serde_json::to_value(obj.unwrap()).unwrap();
        assert_eq!(v["subresource"], "exec");
        assert!(v.get("apiGroup").is_none(), "core group has no apiGroup");
    }

    #[test]
    fn audited_paths() {
        for p in [
            "/api/v1/pods",
            "/apis/networking.k8s.io/v1/networkpolicies",
            "/metrics",
        ] {
            assert!(is_audited(p), "{p}");
        }
        for p in [
            "/_sim/logstats",
            "/healthz",
            "/readyz/ping",
            "/version",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/networking.k8s.io",
            "/apis/networking.k8s.io/v1",
            "/openapi/v3",
        ] {
            assert!(!is_audited(p), "{p}");
        }
    }

    #[test]
    fn users_and_impersonation() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        h.insert("impersonate-user", "alice@example.com".parse().unwrap());
        h.append("impersonate-group", "dev".parse().unwrap());
        h.append(
            "impersonate-extra-cattery.dev%2fcluster",
            "east".parse().unwrap(),
        );
        let u = authenticated_user(&h, Some("s3cret"), DEFAULT_TOKEN_USER);
        assert_eq!(u.username, DEFAULT_TOKEN_USER);
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:cattery-system",
                "system:authenticated"
            ]
        );
        assert_eq!(
            authenticated_user(&h, Some("other"), DEFAULT_TOKEN_USER).username,
            "system:anonymous"
        );
        assert_eq!(
            authenticated_user(&h, None, DEFAULT_TOKEN_USER).username,
            "system:anonymous"
        );
        let imp = impersonated_user(&h).unwrap();
        assert_eq!(imp.username, "alice@example.com");
        assert_eq!(imp.groups, ["dev", "system:authenticated"]);
        assert_eq!(imp.extra["cattery.dev/cluster"], ["east"]);
        assert!(impersonated_user(&HeaderMap::new()).is_none());
        h.insert("x-forwarded-for", "203.0.113.5, 10.0.0.1".parse().unwrap());
        assert_eq!(
            source_ips(&h, Some("[::ffff:127.0.0.1]:5000".parse().unwrap())),
            ["203.0.113.5", "10.0.0.1", "127.0.0.1"]
        );
    }

    #[test]
    fn micro_time_has_six_digits() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_795_514_400_120_000_000).unwrap();
        assert_eq!(micro_time(t), "2026-11-24T10:00:00.120000Z");
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
    }
}
