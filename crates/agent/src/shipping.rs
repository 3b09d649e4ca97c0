//! Serving spooled log records to the management plane over the tunnel.
//!
//! The management plane *pulls*: it asks for the next batch after the last sequence number
//! it has made durable, which is also the acknowledgement. This keeps logs on the one
//! authenticated tunnel connection (the batch's cluster is the tunnel's certificate) and
//! lets the management plane set the pace, so a slow store back-pressures the agents instead
//! of being flooded; records wait safely in the spool meanwhile.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cattery_api::agent_protocol::{HEADER_FIRST_SEQ, HEADER_LAST_SEQ, HEADER_LOG_STREAM};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::metrics::Metrics;
use crate::spool::Spool;
use crate::upstream::AgentBody;

/// Longest long-poll the agent honours.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Largest batch the agent builds, whatever is asked.
const MAX_BATCH_RECORDS: usize = 20_000;
const MAX_BATCH_BYTES: usize = 16 << 20;

/// Parameters of a `/logs/next` request.
#[derive(Debug, Default, PartialEq)]
pub struct NextQuery {
    /// Acknowledged up to here.
    pub after: Option<u64>,
    /// Batch size limits.
    pub max_records: usize,
    /// Uncompressed bytes limit.
    pub max_bytes: usize,
    /// Long-poll duration.
    pub wait: Duration,
    /// A stream id the management plane refused (another cluster owns it): its records are
    /// set aside and the spool continues under a fresh id ([`Spool::abandon_stream`]).
    pub refuse: Option<String>,
}

impl NextQuery {
    /// Parses the query string, with defaults and caps.
    pub fn parse(query: Option<&str>) -> Result<NextQuery, String> {
        let mut q = NextQuery {
            after: None,
            max_records: 5_000,
            max_bytes: 4 << 20,
            wait: Duration::from_secs(10),
            refuse: None,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| format!("query parameter {k}={v:?} is not a number"))
            };
            match k {
                "after" => q.after = Some(num()?),
                // Saturating: a number too large for usize is simply over the cap.
                "maxRecords" => {
                    q.max_records = usize::try_from(num()?)
                        .unwrap_or(usize::MAX)
                        .clamp(1, MAX_BATCH_RECORDS)
                }
                "maxBytes" => {
                    q.max_bytes = usize::try_from(num()?)
                        .unwrap_or(usize::MAX)
                        .clamp(1024, MAX_BATCH_BYTES)
                }
                "waitMs" => q.wait = Duration::from_millis(num()?).min(MAX_WAIT),
                "refuse"
                    if !v.is_empty()
                        && v.len() <= 128
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    q.refuse = Some(v.to_owned())
                }
                "refuse" => return Err(format!("query parameter refuse={v:?} is not a stream id")),
                other => return Err(format!("unknown query parameter {other:?}")),
            }
        }
        Ok(q)
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> http::Response<AgentBody> {
    let mut res = http::Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res
}

/// Acknowledges `q.after`, then returns the next batch (gzip NDJSON of
/// [`cattery_api::agent_protocol::LogLine`]) or 204 after waiting `q.wait` for data.
pub async fn next_batch(
    spool: Arc<Spool>,
    q: NextQuery,
    metrics: Arc<Metrics>,
) -> http::Response<AgentBody> {
    if let Some(after) = q.after {
        let s = spool.clone();
        let acked_before = spool.stats().acked_seq;
        match tokio::task::spawn_blocking(move || s.ack(after)).await {
            Ok(Ok(())) => {}
            // The caller's number is wrong, not the spool: say which parameter.
            Ok(Err(e @ crate::spool::SpoolError::AckBeyondEnd { .. })) => {
                tracing::warn!("refused an acknowledgement: {e}");
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter after={after}: {e}"),
                );
            }
            Ok(Err(e)) => {
                tracing::error!("acknowledging spooled records up to {after}: {e}");
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("ack failed: {e}"),
                );
            }
            Err(e) => {
                tracing::error!("acknowledging spooled records up to {after}: {e}");
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("ack failed: {e}"),
                );
            }
        }
        metrics.shipped(after.saturating_sub(acked_before));
    }
    if let Some(stream) = q.refuse.clone() {
        let s = spool.clone();
        let abandoned = tokio::task::spawn_blocking(move || s.abandon_stream(&stream))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = abandoned {
            tracing::error!("setting aside the refused log stream: {e}");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("abandoning the refused stream failed: {e}"),
            );
        }
    }
    let mut changes = spool.subscribe();
    let deadline = tokio::time::Instant::now() + q.wait;
    loop {
        let s = spool.clone();
        let (after, max_records, max_bytes) = (q.after, q.max_records, q.max_bytes);
        let batch =
            match tokio::task::spawn_blocking(move || s.read_batch(after, max_records, max_bytes))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    return reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("reading the spool: {e}"),
                    );
                }
                Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
        if !batch.records.is_empty() {
            // The batch's own epoch: records older than this opening keep their stream id.
            return encode(&batch.stream_id, &batch.records);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return reply(StatusCode::NO_CONTENT, "") },
            _ = tokio::time::sleep_until(deadline) => return reply(StatusCode::NO_CONTENT, ""),
        }
    }
}

fn encode(stream: &str, records: &[crate::spool::SpoolRecord]) -> http::Response<AgentBody> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for r in records {
        // The record bytes are a JSON object already (sources check it), so the line is
        // assembled without re-parsing.
        let _ = write!(
            gz,
            "{{\"seq\":{},\"type\":\"{}\",\"record\":",
            r.seq,
            r.log_type.as_str()
        );
        let _ = gz.write_all(&r.data);
        let _ = gz.write_all(b"}\n");
    }
    let body = match gz.finish() {
        Ok(b) => b,
        Err(e) => {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("compressing: {e}"),
            );
        }
    };
    let mut res = reply(StatusCode::OK, body);
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    h.insert(
        http::header::CONTENT_ENCODING,
        HeaderValue::from_static("gzip"),
    );
    if let Ok(v) = HeaderValue::from_str(stream) {
        h.insert(HEADER_LOG_STREAM, v);
    }
    h.insert(HEADER_FIRST_SEQ, HeaderValue::from(records[0].seq));
    h.insert(
        HEADER_LAST_SEQ,
        HeaderValue::from(records[records.len() - 1].seq),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_caps_the_query() {
        let q = NextQuery::parse(Some("after=7&maxRecords=999999&waitMs=120000")).unwrap();
        assert_eq!(q.after, Some(7));
        assert_eq!(q.max_records, MAX_BATCH_RECORDS);
        assert_eq!(q.wait, MAX_WAIT);
        // Numbers at the edge of u64 saturate to the caps instead of wrapping.
        let q = NextQuery::parse(Some(
            "maxRecords=18446744073709551615&maxBytes=18446744073709551615&waitMs=18446744073709551615",
        ))
        .unwrap();
        assert_eq!(
            (q.max_records, q.max_bytes, q.wait),
            (MAX_BATCH_RECORDS, MAX_BATCH_BYTES, MAX_WAIT)
        );
        assert!(
            NextQuery::parse(Some("maxBytes=18446744073709551616"))
                .unwrap_err()
                .contains("maxBytes")
        );
        assert!(
            NextQuery::parse(Some("after=x"))
                .unwrap_err()
                .contains("after")
        );
        assert!(
            NextQuery::parse(Some("bogus=1"))
                .unwrap_err()
                .contains("bogus")
        );
        assert_eq!(NextQuery::parse(None).unwrap().after, None);
        assert_eq!(
            NextQuery::parse(Some("refuse=ab12-cd_3"))
                .unwrap()
                .refuse
                .as_deref(),
            Some("ab12-cd_3")
        );
        assert!(
            NextQuery::parse(Some("refuse=a%20b"))
                .unwrap_err()
                .contains("refuse")
        );
    }

    #[test]
    fn a_refused_stream_is_set_aside_and_a_fresh_one_started() {
        let tmp = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(crate::spool::SpoolConfig::new(tmp.path())).unwrap();
        let rec: (cattery_api::logs::LogType, &[u8]) = (cattery_api::logs::LogType::Flows, b"{}");
        spool.append(&[rec; 3], None).unwrap();
        let refused = spool.stream_id();
        assert_eq!(spool.abandon_stream("someone-else").unwrap(), None);
        assert_eq!(spool.abandon_stream(&refused).unwrap(), Some(3));
        assert_ne!(spool.stream_id(), refused);
        assert!(spool.read_after(None, 10, 1 << 20).unwrap().is_empty());
        assert_eq!(spool.abandon_stream(&refused).unwrap(), None);
        let (first, _) = spool.append(&[rec], None).unwrap();
        assert_eq!(first, 4, "seqs are never reused");
        let stream = spool.stream_id();
        drop(spool);
        let (spool, _) = Spool::open(crate::spool::SpoolConfig::new(tmp.path())).unwrap();
        let batch = spool.read_batch(None, 10, 1 << 20).unwrap();
        assert_eq!(batch.stream_id, stream, "the fresh id is in the ledger");
        let seqs: Vec<u64> = batch.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [4]);
        let reasons = std::fs::read_dir(tmp.path().join("quarantine"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "reason")
            })
            .count();
        assert_eq!(reasons, 1);
    }
}
