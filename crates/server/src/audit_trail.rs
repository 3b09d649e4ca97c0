//! The management plane's own audit trail.
//!
//! Every request to the API, authenticated or not, becomes one Kubernetes
//! `audit.k8s.io/v1` Event stored as an `audit` log record of cluster
//! [`cattery_api::MANAGEMENT_CLUSTER_NAME`] (`cluster`, as Calico names the management
//! cluster), so it is searched, tailed and protected exactly like clusters' audit logs.
//! The authorization decision and its reason go in the standard annotations
//! `authorization.k8s.io/decision` and `authorization.k8s.io/reason`.
//!
//! Requests do not wait for the store: events go through a bounded queue to one writer
//! task that commits them in batches (at most [`FLUSH_EVERY`] apart). On shutdown the
//! writer drains the queue after the API listener has stopped. A full queue drops the
//! event, counts it and logs an error — it never blocks requests. Events are stored under
//! one stream id with time-derived sequence numbers, so the store's exactly-once rule
//! holds across restarts.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cattery_api::MANAGEMENT_CLUSTER_NAME;
use cattery_api::logs::LogType;
use cattery_logstore::IngestRecord;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::logs::{LogService, TailItem};

/// The spool-stream id under which the management plane's own events are stored.
pub const STREAM: &str = "management-plane-audit";
/// Longest time an event waits in the queue before it is committed. Larger batches make
/// each event cheaper to index (`cargo bench -p cattery-server --bench audit_trail`:
/// ~25 % less per event at 10,000 than at 2,500); kube-apiserver's audit webhook batches
/// for up to 30 s by default.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Queue length at which the writer is woken before [`FLUSH_EVERY`] has passed.
const FLUSH_AT: usize = 10_000;
const QUEUE: usize = 65_536;

/// What is known about one request once it has been answered.
#[derive(Clone, Debug, Default)]
pub struct AuditEvent {
    /// When it arrived.
    pub received: Option<OffsetDateTime>,
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

impl AuditEvent {
    /// The `audit.k8s.io/v1` Event.
    pub fn to_record(&self, now: OffsetDateTime) -> Value {
        let received = self.received.unwrap_or(now);
        let mut user = json!({
            "username": self.user.clone().unwrap_or_else(|| "system:anonymous".into()),
            "groups": if self.user.is_some() {
                self.groups.clone()
            } else {
                vec!["system:unauthenticated".to_string()]
            },
        });
        if let Some(by) = &self.authenticated_by {
            user["extra"] = json!({ "cattery.dev/authenticated-by": [by] });
        }
        let mut object_ref = serde_json::Map::new();
        for (k, v) in [
            ("apiGroup", &self.api_group),
            ("resource", &self.resource),
            ("subresource", &self.subresource),
            ("name", &self.name),
            ("namespace", &self.namespace),
        ] {
            if let Some(v) = v {
                object_ref.insert(k.into(), Value::String(v.clone()));
            }
        }
        let mut ev = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": uuid::Uuid::new_v4().to_string(),
            "stage": self.stage,
            "requestURI": self.request_uri,
            "verb": self.verb,
            "user": user,
            "sourceIPs": self.source_ip.map(|ip| vec![ip.to_string()]).unwrap_or_default(),
            "responseStatus": { "code": self.code },
            "requestReceivedTimestamp": ts(received),
            "stageTimestamp": ts(now),
            "annotations": {
                "authorization.k8s.io/decision": if self.allowed { "allow" } else { "forbid" },
                "authorization.k8s.io/reason": self.reason,
            },
        });
        if let Some(ua) = &self.user_agent {
            ev["userAgent"] = Value::String(ua.clone());
        }
        if !object_ref.is_empty() {
            ev["objectRef"] = Value::Object(object_ref);
        }
        ev
    }
}

/// Where request handlers send audit events.
///
/// The queue is a plain locked vector that the writer empties every [`FLUSH_EVERY`]:
/// queuing an event wakes nobody. (A channel woke the writer task on every request,
/// a cross-thread wake-up that cost more CPU than building and storing the event.)
pub struct AuditTrail {
    queue: Mutex<Vec<AuditEvent>>,
    /// Wakes the writer early when [`FLUSH_AT`] events are waiting.
    full: tokio::sync::Notify,
    dropped: AtomicU64,
}

impl AuditTrail {
    /// Starts the writer; it stops after `stop` is cancelled and the queue is drained.
    pub fn start(
        logs: Arc<LogService>,
        stop: CancellationToken,
    ) -> (Arc<AuditTrail>, tokio::task::JoinHandle<()>) {
        let trail = Arc::new(AuditTrail {
            queue: Mutex::new(Vec::new()),
            full: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
        });
        let task = tokio::spawn(write_loop(logs, trail.clone(), stop));
        (trail, task)
    }

    /// Queues an event (never blocks on the store).
    pub fn record(&self, ev: AuditEvent) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() < QUEUE {
            q.push(ev);
            if q.len() == FLUSH_AT {
                self.full.notify_one();
            }
            return;
        }
        drop(q);
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::error!(
                "audit trail queue is full; {n} events dropped so far (the log store is not keeping up)"
            );
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes everything queued so far.
    fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Stores batches of events under [`STREAM`]. Its sequence numbers are microseconds since
/// the epoch, strictly increasing within this process and (with a sane clock) above
/// anything stored by an earlier run.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditWriter {
    last_seq: u64,
}

impl AuditWriter {
    fn next(&mut self) -> u64 {
        let now = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as u64;
        self.last_seq = now.max(self.last_seq + 1);
        self.last_seq
    }
}

async fn write_loop(logs: Arc<LogService>, trail: Arc<AuditTrail>, stop: CancellationToken) {
    let mut writer = AuditWriter::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Once the API listener has stopped nothing more can be queued: one last pass
        // stores whatever is left.
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
            _ = trail.full.notified() => false,
        };
        let batch = trail.take();
        if !batch.is_empty() {
            let l = logs.clone();
            let mut w = writer;
            match tokio::task::spawn_blocking(move || {
                w.store(&l, batch);
                w
            })
            .await
            {
                Ok(next) => writer = next,
                Err(e) => tracing::error!("audit trail: writer task failed: {e}"),
            }
        }
        if stopping {
            return;
        }
    }
}

impl AuditWriter {
    /// Turns events into records and stores them, durably (a blocking call: building the
    /// records and indexing them is CPU work that must not hold up a request worker).
    /// Failures are logged; the events are then lost, as a full queue loses them.
    pub fn store(&mut self, logs: &LogService, batch: Vec<AuditEvent>) {
        let now = OffsetDateTime::now_utc();
        let mut records = Vec::with_capacity(batch.len());
        for ev in &batch {
            let mut record = ev.to_record(now);
            match cattery_api::logs::validate(LogType::Audit, &mut record, MANAGEMENT_CLUSTER_NAME)
            {
                Ok(time_ms) => records.push(IngestRecord {
                    seq: self.next(),
                    log_type: LogType::Audit,
                    time_ms,
                    record,
                }),
                Err(e) => tracing::error!("audit trail: built an invalid event ({e}); dropped"),
            }
        }
        let tail: Vec<Value> = if logs.has_subscribers() {
            records.iter().map(|r| r.record.clone()).collect()
        } else {
            vec![]
        };
        let n = records.len();
        match logs.store.ingest(MANAGEMENT_CLUSTER_NAME, STREAM, records) {
            Ok(_) => {
                logs.metrics
                    .stored(LogType::Audit, MANAGEMENT_CLUSTER_NAME, n as u64);
                logs.publish(tail.into_iter().map(|record| TailItem {
                    cluster: MANAGEMENT_CLUSTER_NAME.to_string(),
                    log_type: LogType::Audit,
                    record,
                }));
            }
            Err(e) => tracing::error!("audit trail: storing {n} events failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut r = ev.to_record(OffsetDateTime::now_utc());
        cattery_api::logs::validate(LogType::Audit, &mut r, "cluster").unwrap();
        assert_eq!(r["annotations"]["authorization.k8s.io/decision"], "forbid");
        assert_eq!(r["objectRef"]["subresource"], "proxy");
        assert_eq!(r["cluster"], "cluster");
        let anon = AuditEvent::default().to_record(OffsetDateTime::now_utc());
        assert_eq!(anon["user"]["username"], "system:anonymous");
    }

    #[test]
    fn seq_is_strictly_increasing() {
        let mut s = AuditWriter::default();
        let a = s.next();
        let b = s.next();
        assert!(b > a);
    }
}
