//! One task per live tunnel that pulls spooled log records from the agent.
//!
//! The request for the next batch carries `after=<last seq stored>`, which is the
//! acknowledgement: the agent deletes records only once the management plane has them
//! durably. A resend (after a lost answer, a restart of either side) carries the same
//! sequence numbers and the store keeps each record once.
//!
//! A batch whose stream id another cluster owns (a cloned spool directory, a forged id) is
//! refused whole: nothing is stored and `after` does not move. The refusal is counted
//! (`cattery_logs_streams_refused_total{cluster}`), logged with both cluster names, shown as
//! the cluster's `LogsStreamRefused` condition and written to the audit trail of cluster
//! `cluster`; the next poll carries `refuse=<stream>` so the agent sets that stream's records
//! aside and continues under a fresh stream id instead of resending them forever.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use cattery_api::agent_protocol::{
    AGENT_AUTHORITY, HEADER_FIRST_SEQ, HEADER_LAST_SEQ, HEADER_LOG_STREAM, LogLine, PATH_LOGS_NEXT,
};
use cattery_api::logs::{LogType, text_with_cluster, validate};
use cattery_logstore::{IngestRecord, LogStoreError};
use cattery_tunnel::session::Sender;
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use super::{LogService, TailItem};
use crate::audit_trail::{AuditEvent, AuditTrail};
use crate::registry::Registry;

/// Largest compressed batch accepted from an agent.
pub const MAX_BATCH_COMPRESSED: usize = 64 << 20;
/// Largest batch after decompression (guards against compression bombs).
pub const MAX_BATCH_DECOMPRESSED: u64 = 256 << 20;
const LONG_POLL_MS: u64 = 10_000;
const RETRY: Duration = Duration::from_secs(1);

/// Why one pull did not store anything.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("the agent has no log pipeline")]
    NoPipeline,
    #[error("{0}")]
    Transient(String),
    /// Another cluster owns the batch's stream id; nothing of it was stored.
    #[error("log stream {stream} belongs to cluster {owner:?}")]
    Refused { stream: String, owner: String },
}

/// Longest stream id accepted from an agent (agents use 32 hex digits).
const MAX_STREAM_ID: usize = 128;

/// Whether an agent's stream id has the shape agents give it (so it can be echoed in a
/// query string and a log line as it is).
fn valid_stream_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_STREAM_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Pulls until `closed` is cancelled or the tunnel fails.
pub async fn run(
    logs: Arc<LogService>,
    registry: Arc<Registry>,
    audit: Arc<AuditTrail>,
    cluster: String,
    sender: Sender<Body>,
    closed: CancellationToken,
) {
    let mut after: Option<u64> = None;
    // The stream to tell the agent to set aside on the next poll, and the streams whose
    // refusal this puller has already reported (each is reported once, counted every time).
    let mut refuse: Option<String> = None;
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        if closed.is_cancelled() || sender.is_closed() {
            return;
        }
        let pulled = tokio::select! {
            _ = closed.cancelled() => return,
            r = pull_once(&logs, &registry, &cluster, sender.clone(), after, refuse.as_deref()) => r,
        };
        if pulled.is_ok() {
            refuse = None;
        }
        match pulled {
            Ok(Some(last)) => after = Some(last),
            Ok(None) => {}
            Err(PullError::Refused { stream, owner }) => {
                logs.metrics.stream_refused(&cluster);
                if reported.insert(stream.clone()) {
                    report_refusal(&registry, &audit, &cluster, &stream, &owner);
                }
                refuse = Some(stream);
                tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
            Err(PullError::NoPipeline) => {
                tracing::info!(
                    cluster,
                    "the agent runs without a log pipeline; not pulling logs"
                );
                return;
            }
            Err(PullError::Transient(e)) => {
                if sender.is_closed() {
                    return;
                }
                // An agent that does not know `refuse` answers 400: poll without it (the
                // refused batch comes again and is refused again, counted each time).
                refuse = None;
                tracing::warn!(cluster, "pulling logs: {e}; retrying");
                tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

/// Logs, shows in the cluster's status and audits that `cluster`'s batch under `stream`
/// was refused because `owner` owns the stream id.
fn report_refusal(
    registry: &Registry,
    audit: &AuditTrail,
    cluster: &str,
    stream: &str,
    owner: &str,
) {
    tracing::warn!(
        cluster,
        owner,
        stream,
        "refusing logs of cluster {cluster:?}: their stream id {stream} belongs to cluster \
         {owner:?} (a spool directory copied from that cluster, or a forged id); nothing of \
         the batch is stored and the agent is told to set the stream aside"
    );
    registry.note_stream_refused(cluster, stream, owner);
    audit.record(AuditEvent {
        user: Some(format!("cattery:agent:{cluster}")),
        verb: "create".into(),
        request_uri: format!("{PATH_LOGS_NEXT}?stream={stream}"),
        api_group: Some("cattery.dev".into()),
        resource: Some("logstreams".into()),
        name: Some(stream.to_owned()),
        allowed: false,
        reason: format!(
            "log stream {stream} belongs to cluster {owner:?}; batch from cluster {cluster:?} refused"
        ),
        code: 409,
        stage: "ResponseComplete",
        ..Default::default()
    });
}

fn header<'a>(res: &'a http::Response<hyper::body::Incoming>, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

/// One long-poll; returns the last stored seq of the batch, if any.
async fn pull_once(
    logs: &Arc<LogService>,
    registry: &Arc<Registry>,
    cluster: &str,
    mut sender: Sender<Body>,
    after: Option<u64>,
    refuse: Option<&str>,
) -> Result<Option<u64>, PullError> {
    let t = |e: String| PullError::Transient(e);
    let mut uri = format!(
        "http://{AGENT_AUTHORITY}{PATH_LOGS_NEXT}?waitMs={LONG_POLL_MS}&maxRecords=5000&maxBytes=8388608"
    );
    if let Some(a) = after {
        uri.push_str(&format!("&after={a}"));
    }
    if let Some(stream) = refuse {
        // Only ids that passed `valid_stream_id` get here, so no escaping is needed.
        uri.push_str(&format!("&refuse={stream}"));
    }
    let req = http::Request::get(uri)
        .body(Body::empty())
        .map_err(|e| t(e.to_string()))?;
    sender.ready().await.map_err(|e| t(e.to_string()))?;
    let res = tokio::time::timeout(
        Duration::from_millis(LONG_POLL_MS) + Duration::from_secs(30),
        sender.send_request(req),
    )
    .await
    .map_err(|_| t("the agent did not answer the log poll".into()))?
    .map_err(|e| t(e.to_string()))?;
    match res.status() {
        http::StatusCode::NO_CONTENT => return Ok(None),
        http::StatusCode::NOT_FOUND => return Err(PullError::NoPipeline),
        s if !s.is_success() => return Err(t(format!("agent answered {s}"))),
        _ => {}
    }
    let started = Instant::now();
    let stream = header(&res, HEADER_LOG_STREAM)
        .unwrap_or_default()
        .to_string();
    let first: u64 = header(&res, HEADER_FIRST_SEQ)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let last: u64 = header(&res, HEADER_LAST_SEQ)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| t("batch without a last-seq header".into()))?;
    if stream.is_empty() {
        return Err(t("batch without a stream id".into()));
    }
    if !valid_stream_id(&stream) {
        return Err(t(format!(
            "batch with an invalid stream id (1 to {MAX_STREAM_ID} letters, digits, '-' or '_')"
        )));
    }
    if stream == crate::audit_trail::STREAM {
        // The management plane's own audit trail: never an agent's.
        return Err(PullError::Refused {
            stream,
            owner: cattery_api::MANAGEMENT_CLUSTER_NAME.into(),
        });
    }
    let gz = http_body_util::Limited::new(res.into_body(), MAX_BATCH_COMPRESSED)
        .collect()
        .await
        .map_err(|e| t(format!("reading batch {stream}:{first}-{last}: {e}")))?
        .to_bytes();
    let logs2 = logs.clone();
    let cluster2 = cluster.to_string();
    let stored =
        tokio::task::spawn_blocking(move || ingest(&logs2, &cluster2, &stream, first, last, &gz))
            .await
            .map_err(|e| t(e.to_string()))??;
    logs.metrics.ingest_time(started.elapsed().as_secs_f64());
    if stored > 0 {
        registry.note_logs(cluster);
    }
    Ok(Some(last))
}

/// Decodes, validates and stores one batch; returns how many records were newly stored.
fn ingest(
    logs: &LogService,
    cluster: &str,
    stream: &str,
    first: u64,
    last: u64,
    gz: &[u8],
) -> Result<usize, PullError> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(MAX_BATCH_DECOMPRESSED + 1)
        .read_to_end(&mut text)
        .map_err(|e| {
            PullError::Transient(format!(
                "batch {stream}:{first}-{last} is not valid gzip: {e}"
            ))
        })?;
    if text.len() as u64 > MAX_BATCH_DECOMPRESSED {
        return Err(PullError::Transient(format!(
            "batch {stream}:{first}-{last} decompresses to more than {MAX_BATCH_DECOMPRESSED} bytes"
        )));
    }
    let mut records = Vec::new();
    for (i, line) in text
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        let (parsed, text) = match LogLine::parse(line) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(
                    cluster,
                    "batch {stream}:{first}-{last} line {}: not a log line: {e}",
                    i + 1
                );
                logs.metrics.rejected(LogType::Flows, cluster, 1);
                continue;
            }
        };
        let LogLine {
            seq,
            log_type,
            mut record,
        } = parsed;
        logs.metrics.received(log_type, cluster, 1);
        // The record's text as it arrived saves the store serialising it again; validation
        // adds `cluster`, so only a record without one can use it (with `cluster` appended).
        let had_cluster = record.get("cluster").is_some();
        match validate(log_type, &mut record, cluster) {
            Ok(time_ms) => records.push(IngestRecord {
                seq,
                log_type,
                time_ms,
                record,
                source: text
                    .filter(|_| !had_cluster)
                    .and_then(|t| text_with_cluster(t, cluster)),
            }),
            Err(e) => {
                tracing::warn!(
                    cluster,
                    "rejected {log_type} record seq {seq} (batch {stream}:{first}-{last}, line {}): {e}",
                    i + 1
                );
                logs.metrics.rejected(log_type, cluster, 1);
            }
        }
    }
    let kept: Vec<(LogType, Option<serde_json::Value>)> = records
        .iter()
        .map(|r| (r.log_type, logs.has_subscribers().then(|| r.record.clone())))
        .collect();
    let report = logs
        .store
        .ingest(cluster, stream, records)
        .map_err(|e| match e {
            LogStoreError::StreamOwned { stream, owner, .. } => {
                PullError::Refused { stream, owner }
            }
            e => PullError::Transient(format!("storing batch {stream}:{first}-{last}: {e}")),
        })?;
    if report.duplicates > 0 {
        tracing::info!(
            cluster,
            "batch {stream}:{first}-{last}: {} records were already stored (a resend)",
            report.duplicates
        );
    }
    // A resend's already-stored records are the oldest ones, at the front of the batch.
    let (dups, fresh) = kept.split_at(report.duplicates.min(kept.len()));
    for (t, _) in dups {
        logs.metrics.duplicates(*t, cluster, 1);
    }
    for (t, _) in fresh {
        logs.metrics.stored(*t, cluster, 1);
    }
    logs.publish(fresh.iter().filter_map(|(log_type, record)| {
        record.clone().map(|record| TailItem {
            cluster: cluster.to_string(),
            log_type: *log_type,
            record,
        })
    }));
    Ok(report.stored)
}
