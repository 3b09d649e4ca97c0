//! The management plane's own audit trail.
//!
//! Every request to the API, authenticated or not, becomes one Kubernetes
//! `audit.k8s.io/v1` Event stored as an `audit` log record of cluster
//! [`cattery_api::MANAGEMENT_CLUSTER_NAME`] (`cluster`, as Calico names the management
//! cluster), so it is searched, tailed and protected exactly like clusters' audit logs.
//! The authorization decision and its reason go in the standard annotations
//! `authorization.k8s.io/decision` and `authorization.k8s.io/reason`.
//!
//! Requests do not wait for anything: an event is pushed on a locked queue. A journal
//! thread writes the queue to the [`journal`] at least every [`JOURNAL_EVERY`] (one
//! `write` per batch, an `fdatasync` at least every second; kube-apiserver's audit-log
//! format), and an indexing
//! thread moves journaled events into the log store in the background ([`indexer`]) —
//! at the lowest CPU priority unless the backlog grows large. A full queue drops the
//! event, counts it and logs an error; it never blocks requests. On shutdown the queue is
//! journaled after the API listener has stopped, then the backlog is indexed (bounded).
//! Secret query parameters (`?access_token=…`) are redacted before an event is queued
//! ([`redact`]). See docs/design/0009-audit-journal.md.

pub mod indexer;
pub mod journal;
pub mod redact;

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::logs::LogService;
use journal::Journal;

/// The spool-stream id under which the management plane's own events are stored.
pub const STREAM: &str = "management-plane-audit";
/// Longest time an event waits in memory before it is journaled: the most a `kill -9` can
/// lose.
pub const JOURNAL_EVERY: Duration = Duration::from_millis(100);
/// Longest time a journaled event waits before it is indexed while the machine has CPU to
/// spare. Larger batches make each event cheaper to index
/// (`cargo bench -p cattery-server --bench audit_trail`).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Queue length at which the journal thread is woken before [`JOURNAL_EVERY`] has passed.
const FLUSH_AT: usize = 10_000;
const QUEUE: usize = 65_536;

/// What is known about one request once it has been answered.
#[derive(Clone, Debug, Default)]
pub struct AuditEvent {
    /// When it arrived.
    pub received: Option<OffsetDateTime>,
    /// When it was answered (set by [`AuditTrail::record`] if not set before).
    pub completed: Option<OffsetDateTime>,
    /// User name; `None` when authentication failed.
    pub user: Option<String>,
    /// Groups of that user.
    pub groups: Vec<String>,
    /// How the caller authenticated (`token:ID`, `oidc`), for `user.extra`.
    pub authenticated_by: Option<String>,
    /// Kubernetes verb (`get`, `list`, `create`, …).
    pub verb: String,
    /// Path and query.
    pub request_uri: String,
    /// The caller's address.
    pub source_ip: Option<IpAddr>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// API group of the resource.
    pub api_group: Option<String>,
    /// Resource (`managedclusters`, a log type, …).
    pub resource: Option<String>,
    /// Subresource (`proxy`).
    pub subresource: Option<String>,
    /// Object name (for cluster-scoped requests, usually the cluster).
    pub name: Option<String>,
    /// Namespace of namespaced RBAC objects.
    pub namespace: Option<String>,
    /// `true` allowed, `false` refused.
    pub allowed: bool,
    /// Why.
    pub reason: String,
    /// Response status code.
    pub code: u16,
    /// `ResponseComplete`, or `ResponseStarted` for streams (proxy, tail) whose end is
    /// not waited for.
    pub stage: &'static str,
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The wire form of an `audit.k8s.io/v1` Event, borrowed from an [`AuditEvent`]: serialized
/// straight to bytes on the journal thread, without building a JSON tree.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: &'a str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: WireUser<'a>,
    #[serde(rename = "sourceIPs")]
    source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<WireObjectRef<'a>>,
    response_status: WireStatus,
    request_received_timestamp: String,
    stage_timestamp: String,
    annotations: WireAnnotations<'a>,
}

#[derive(Serialize)]
struct WireUser<'a> {
    username: &'a str,
    groups: WireGroups<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<WireExtra<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireGroups<'a> {
    Authenticated(&'a [String]),
    Anonymous([&'static str; 1]),
}

#[derive(Serialize)]
struct WireExtra<'a> {
    #[serde(rename = "cattery.dev/authenticated-by")]
    authenticated_by: [&'a str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireObjectRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    api_group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subresource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

#[derive(Serialize)]
struct WireStatus {
    code: u16,
}

#[derive(Serialize)]
struct WireAnnotations<'a> {
    #[serde(rename = "authorization.k8s.io/decision")]
    decision: &'static str,
    #[serde(rename = "authorization.k8s.io/reason")]
    reason: &'a str,
}

impl AuditEvent {
    fn wire<'a>(&'a self, audit_id: &'a str) -> Wire<'a> {
        let now = OffsetDateTime::now_utc();
        let completed = self.completed.unwrap_or(now);
        let object_ref = WireObjectRef {
            api_group: self.api_group.as_deref(),
            resource: self.resource.as_deref(),
            subresource: self.subresource.as_deref(),
            name: self.name.as_deref(),
            namespace: self.namespace.as_deref(),
        };
        let any_ref = [
            &self.api_group,
            &self.resource,
            &self.subresource,
            &self.name,
            &self.namespace,
        ]
        .iter()
        .any(|v| v.is_some());
        Wire {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            audit_id,
            stage: self.stage,
            request_uri: &self.request_uri,
            verb: &self.verb,
            user: WireUser {
                username: self.user.as_deref().unwrap_or("system:anonymous"),
                groups: if self.user.is_some() {
                    WireGroups::Authenticated(&self.groups)
                } else {
                    WireGroups::Anonymous(["system:unauthenticated"])
                },
                extra: self.authenticated_by.as_deref().map(|by| WireExtra {
                    authenticated_by: [by],
                }),
            },
            source_ips: self
                .source_ip
                .map(|ip| vec![ip.to_string()])
                .unwrap_or_default(),
            user_agent: self.user_agent.as_deref(),
            object_ref: any_ref.then_some(object_ref),
            response_status: WireStatus { code: self.code },
            request_received_timestamp: ts(self.received.unwrap_or(completed)),
            stage_timestamp: ts(completed),
            annotations: WireAnnotations {
                decision: if self.allowed { "allow" } else { "forbid" },
                reason: &self.reason,
            },
        }
    }

    /// Appends the `audit.k8s.io/v1` Event as one line of JSON (without the newline),
    /// with a fresh `auditID`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
        serde_json::to_writer(out, &self.wire(id))
    }

    /// The `audit.k8s.io/v1` Event as a JSON value.
    pub fn to_record(&self) -> Value {
        let mut line = Vec::new();
        match self.write_json(&mut line) {
            Ok(()) => serde_json::from_slice(&line).unwrap_or_default(),
            Err(_) => Value::Null,
        }
    }
}

/// Where request handlers send audit events.
///
/// The queue is a plain locked vector that the journal thread empties every
/// [`JOURNAL_EVERY`]: queuing an event wakes nobody. (A channel woke a writer on every
/// request, a cross-thread wake-up that cost more CPU than the event.)
pub struct AuditTrail {
    queue: Mutex<Vec<AuditEvent>>,
    /// Wakes the journal thread early ([`FLUSH_AT`] events waiting, or stopping).
    wake: Condvar,
    stopping: AtomicBool,
    dropped: AtomicU64,
    journal: Arc<Journal>,
    logs: Arc<LogService>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuditTrail {
    /// Opens the journal in `dir` and starts the journal and indexing threads; they stop
    /// after `stop` is cancelled, once the queue is journaled and the backlog indexed
    /// (at most [`indexer::DRAIN_LIMIT`]).
    pub fn start(
        dir: &Path,
        logs: Arc<LogService>,
        stop: CancellationToken,
    ) -> std::io::Result<(Arc<AuditTrail>, tokio::task::JoinHandle<()>)> {
        let journal = Arc::new(Journal::open(dir)?);
        let (events, _) = journal.backlog();
        if events > 0 {
            tracing::info!(
                "audit journal: {events} events from an earlier run are waiting to be indexed"
            );
        }
        let trail = Arc::new(AuditTrail {
            queue: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            journal: journal.clone(),
            logs: logs.clone(),
        });
        let writer = std::thread::Builder::new()
            .name("audit-journal".into())
            .spawn({
                let trail = trail.clone();
                move || trail.journal_loop()
            })?;
        let indexer_stop = Arc::new(AtomicBool::new(false));
        let indexer = std::thread::Builder::new()
            .name("audit-indexer".into())
            .spawn({
                let journal = journal.clone();
                let stop = indexer_stop.clone();
                move || indexer::run(&journal, &logs, &stop)
            })?;
        let t = trail.clone();
        let task = tokio::spawn(async move {
            stop.cancelled().await;
            t.stopping.store(true, Ordering::Release);
            t.wake.notify_all();
            let joined = tokio::task::spawn_blocking(move || {
                if writer.join().is_err() {
                    tracing::error!("audit journal: the journal thread panicked");
                }
                indexer_stop.store(true, Ordering::Release);
                journal.wake();
                if indexer.join().is_err() {
                    tracing::error!("audit journal: the indexing thread panicked");
                }
            })
            .await;
            if let Err(e) = joined {
                tracing::error!("audit journal: stopping failed: {e}");
            }
        });
        Ok((trail, task))
    }

    /// Queues an event (never blocks on the journal or the store). Secrets in its query
    /// string are redacted first ([`redact`]).
    pub fn record(&self, mut ev: AuditEvent) {
        ev.completed.get_or_insert_with(OffsetDateTime::now_utc);
        if let std::borrow::Cow::Owned(u) = redact::redact_uri(&ev.request_uri) {
            ev.request_uri = u;
        }
        let mut q = lock(&self.queue);
        if q.len() < QUEUE {
            q.push(ev);
            if q.len() == FLUSH_AT {
                self.wake.notify_one();
            }
            return;
        }
        drop(q);
        self.count_dropped(1);
    }

    fn count_dropped(&self, n: u64) {
        self.logs.metrics.audit_dropped(n);
        let before = self.dropped.fetch_add(n, Ordering::Relaxed);
        // Log at 1, 2, 4, 8, … dropped so far, not once per event.
        if (before + n).ilog2() != before.checked_ilog2().unwrap_or(u32::MAX) {
            tracing::error!(
                "audit trail: {} events dropped so far (the journal is not keeping up or \
                 cannot be written)",
                before + n
            );
        }
    }

    /// Events dropped because the queue was full or the journal could not be written.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events queued or journaled but not yet searchable.
    pub fn backlog(&self) -> u64 {
        lock(&self.queue).len() as u64 + self.journal.backlog().0
    }

    /// Journals whatever is queued, every [`JOURNAL_EVERY`] (sooner at [`FLUSH_AT`]
    /// events), until stopped.
    fn journal_loop(&self) {
        let mut writer = self.journal.writer();
        let mut buf = Vec::with_capacity(1 << 20);
        loop {
            let (batch, stopping) = {
                let mut q = lock(&self.queue);
                if q.len() < FLUSH_AT && !self.stopping.load(Ordering::Acquire) {
                    q = self
                        .wake
                        .wait_timeout(q, JOURNAL_EVERY)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                (
                    std::mem::take(&mut *q),
                    self.stopping.load(Ordering::Acquire),
                )
            };
            self.write(&mut writer, &mut buf, &batch);
            if let Err(e) = writer.sync_if_due() {
                tracing::error!("audit journal: fdatasync failed: {e}");
            }
            if stopping {
                // Nothing more arrives once the API listener has stopped; take the rest.
                let rest = std::mem::take(&mut *lock(&self.queue));
                self.write(&mut writer, &mut buf, &rest);
                if let Err(e) = writer.sync() {
                    tracing::error!("audit journal: the final fdatasync failed: {e}");
                }
                return;
            }
        }
    }

    fn write(&self, writer: &mut journal::SegmentWriter, buf: &mut Vec<u8>, batch: &[AuditEvent]) {
        if batch.is_empty() {
            return;
        }
        buf.clear();
        let mut lines = 0;
        for ev in batch {
            let start = buf.len();
            match ev.write_json(buf) {
                Ok(()) => {
                    buf.push(b'\n');
                    lines += 1;
                }
                Err(e) => {
                    buf.truncate(start);
                    tracing::error!("audit trail: could not encode an event ({e}); dropped");
                    self.count_dropped(1);
                }
            }
        }
        // One retry: a failed append cuts its segment back and the retry starts a new one.
        let result = writer
            .append(&self.journal, buf, lines)
            .or_else(|_| writer.append(&self.journal, buf, lines));
        if let Err(e) = result {
            tracing::error!("audit trail: writing {lines} events to the journal failed: {e}");
            self.count_dropped(lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cattery_api::logs::LogType;

    #[test]
    fn events_validate_as_audit_records() {
        let ev = AuditEvent {
            user: Some("bob".into()),
            groups: vec!["dev".into()],
            verb: "get".into(),
            request_uri: "/clusters/east/k8s/api/v1/pods".into(),
            source_ip: Some("127.0.0.1".parse().unwrap()),
            api_group: Some("cattery.dev".into()),
            resource: Some("managedclusters".into()),
            subresource: Some("proxy".into()),
            name: Some("east".into()),
            allowed: false,
            reason: "no".into(),
            code: 403,
            stage: "ResponseComplete",
            ..Default::default()
        };
        let mut r = ev.to_record();
        cattery_api::logs::validate(LogType::Audit, &mut r, "cluster").unwrap();
        assert_eq!(r["annotations"]["authorization.k8s.io/decision"], "forbid");
        assert_eq!(r["objectRef"]["subresource"], "proxy");
        assert_eq!(r["cluster"], "cluster");
        let anon = AuditEvent::default().to_record();
        assert_eq!(anon["user"]["username"], "system:anonymous");
    }

    fn store(dir: &Path) -> Arc<LogService> {
        let store = cattery_logstore::EmbeddedStore::open(
            &dir.join("logs"),
            cattery_logstore::Retention::default(),
        )
        .unwrap();
        Arc::new(LogService::new(Arc::new(store)))
    }

    fn stored(logs: &LogService) -> Vec<Value> {
        let req = cattery_logstore::SearchRequest {
            clusters: vec![cattery_api::MANAGEMENT_CLUSTER_NAME.into()],
            size: Some(10_000),
            ..Default::default()
        };
        let res = logs.store.search(LogType::Audit, &req).unwrap();
        res.hits.hits.into_iter().map(|h| h.source).collect()
    }

    fn event(i: usize) -> AuditEvent {
        AuditEvent {
            user: Some(format!("user-{i}")),
            verb: "get".into(),
            request_uri: format!("/apis/cattery.dev/v1/managedclusters?i={i}"),
            allowed: true,
            reason: "test".into(),
            code: 200,
            stage: "ResponseComplete",
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recorded_events_are_journaled_and_indexed_by_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let logs = store(dir.path());
        let stop = CancellationToken::new();
        let (trail, task) =
            AuditTrail::start(&dir.path().join("journal"), logs.clone(), stop.clone()).unwrap();
        for i in 0..25 {
            trail.record(event(i));
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(trail.backlog(), 0);
        assert_eq!(trail.dropped(), 0);
        let metrics = logs.metrics.render();
        assert!(
            metrics.contains("cattery_logs_audit_backlog_events 0"),
            "{metrics}"
        );
        let mut users: Vec<String> = stored(&logs)
            .iter()
            .map(|r| r["user"]["username"].as_str().unwrap().to_string())
            .collect();
        users.sort();
        let mut want: Vec<String> = (0..25).map(|i| format!("user-{i}")).collect();
        want.sort();
        assert_eq!(users, want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_journaled_before_a_crash_are_indexed_once_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        // A run that journaled 30 events and died before indexing them.
        let lines: Vec<(u64, Vec<u8>)> = {
            let j = Journal::open(&jdir).unwrap();
            let mut w = j.writer();
            let mut buf = Vec::new();
            for i in 0..30 {
                event(i).write_json(&mut buf).unwrap();
                buf.push(b'\n');
            }
            w.append(&j, &buf, 30).unwrap();
            j.read(100, 1 << 20).unwrap().unwrap().lines
        };
        let logs = store(dir.path());
        // Part of it had been stored before the crash (progress not saved).
        assert_eq!(indexer::index_lines(&logs, &lines[..10]).unwrap(), 10);
        let stop = CancellationToken::new();
        let (trail, task) = AuditTrail::start(&jdir, logs.clone(), stop.clone()).unwrap();
        assert_eq!(trail.backlog(), 30);
        stop.cancel();
        task.await.unwrap();
        assert_eq!(trail.backlog(), 0);
        assert_eq!(
            stored(&logs).len(),
            30,
            "each journaled event stored exactly once"
        );
        // Indexing the same lines again stores nothing.
        assert_eq!(indexer::index_lines(&logs, &lines).unwrap(), 0);
        assert_eq!(stored(&logs).len(), 30);
    }

    #[test]
    fn a_damaged_journal_line_is_skipped_and_the_rest_stored() {
        let dir = tempfile::tempdir().unwrap();
        let logs = store(dir.path());
        let mut lines = Vec::new();
        for i in 0..5u64 {
            let mut line = Vec::new();
            event(i as usize).write_json(&mut line).unwrap();
            lines.push((100 + i, line));
        }
        lines[2].1 = b"{\"kind\":\"Event\",\"trunc".to_vec(); // torn in the middle
        lines[3].1 = b"{\"kind\":\"Event\"}".to_vec(); // JSON, but no audit event
        assert_eq!(indexer::index_lines(&logs, &lines).unwrap(), 3);
        let users: Vec<String> = stored(&logs)
            .iter()
            .map(|r| r["user"]["username"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(users.len(), 3);
        for u in ["user-0", "user-1", "user-4"] {
            assert!(users.iter().any(|x| x == u), "{u} missing from {users:?}");
        }
        assert!(
            logs.metrics.render().contains(
                "cattery_logs_records_rejected_total{type=\"audit\",cluster=\"cluster\"} 2"
            ),
            "{}",
            logs.metrics.render()
        );
    }
}
