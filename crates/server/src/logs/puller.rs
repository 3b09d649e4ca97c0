//! One task per live tunnel that pulls spooled log records from the agent.
//!
//! The request for the next batch carries `after=<last seq stored>`, which is the
//! acknowledgement: the agent deletes records only once the management plane has them
//! durably. A resend (after a lost answer, a restart of either side) carries the same
//! sequence numbers and the store keeps each record once.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use cattery_api::agent_protocol::{
    AGENT_AUTHORITY, HEADER_FIRST_SEQ, HEADER_LAST_SEQ, HEADER_LOG_STREAM, LogLine, PATH_LOGS_NEXT,
};
use cattery_api::logs::{LogType, text_with_cluster, validate};
use cattery_logstore::IngestRecord;
use cattery_tunnel::session::Sender;
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use super::{LogService, TailItem};
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
}

/// Pulls until `closed` is cancelled or the tunnel fails.
pub async fn run(
    logs: Arc<LogService>,
    registry: Arc<Registry>,
    cluster: String,
    sender: Sender<Body>,
    closed: CancellationToken,
) {
    let mut after: Option<u64> = None;
    loop {
        if closed.is_cancelled() || sender.is_closed() {
            return;
        }
        let pulled = tokio::select! {
            _ = closed.cancelled() => return,
            r = pull_once(&logs, &registry, &cluster, sender.clone(), after) => r,
        };
        match pulled {
            Ok(Some(last)) => after = Some(last),
            Ok(None) => {}
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
                tracing::warn!(cluster, "pulling logs: {e}; retrying");
                tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
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
) -> Result<Option<u64>, PullError> {
    let t = |e: String| PullError::Transient(e);
    let mut uri = format!(
        "http://{AGENT_AUTHORITY}{PATH_LOGS_NEXT}?waitMs={LONG_POLL_MS}&maxRecords=5000&maxBytes=8388608"
    );
    if let Some(a) = after {
        uri.push_str(&format!("&after={a}"));
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
        .map_err(|e| PullError::Transient(format!("storing batch {stream}:{first}-{last}: {e}")))?;
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
