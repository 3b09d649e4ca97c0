//! Simulator-only debug endpoints (not Kubernetes APIs) and the request log.
//!
//! - `GET /_sim/info`: which simulated cluster this is;
//! - `GET /_sim/requests`: the last [`REQUEST_LOG_LIMIT`] requests, so tests
//!   can check what a proxy in front of the cluster forwarded (impersonation
//!   headers, which credential). The `Authorization` header is only ever
//!   kept as a SHA-256 of its value, never stored or logged itself;
//! - `GET /_sim/logstats`: counts of generated traffic-log records and audit
//!   events (see [`logstats`]);
//! - `POST /_sim/compact`: drops the watch history, as an etcd compaction does, and ends
//!   every open watch with an ERROR event carrying `410 Expired` (as kube-apiserver does
//!   to a watcher whose history is gone): clients must list again, which is what tests
//!   of a reflector's relist need;
//! - `GET /_sim/bytes?size=N`: N bytes of a fixed pattern, streamed in
//!   [`BYTES_CHUNK`]-sized chunks without holding N bytes in memory (for
//!   throughput benchmarks such as `cattery-bench tunnel`); N is at most
//!   [`MAX_BYTES`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::status::ApiError;

/// How many requests `/_sim/requests` remembers.
pub const REQUEST_LOG_LIMIT: usize = 1_000;

/// One received request, as reported by `/_sim/requests`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    time: String,
    method: String,
    path: String,
    query: Option<String>,
    impersonate_user: Option<String>,
    impersonate_groups: Vec<String>,
    impersonate_extra: BTreeMap<String, Vec<String>>,
    authorization_sha256: Option<String>,
    user_agent: Option<String>,
}

/// Ring buffer of the last requests.
#[derive(Default)]
pub struct RequestLog(Mutex<VecDeque<RequestRecord>>);

impl RequestLog {
    fn push(&self, r: RequestRecord) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == REQUEST_LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(r);
    }

    fn snapshot(&self) -> Vec<RequestRecord> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Decodes the percent-encoding kube-apiserver allows in `Impersonate-Extra-` keys.
pub(crate) fn unescape(key: &str) -> String {
    form_urlencoded::parse(format!("k={}", key.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| key.to_string())
}

fn record(headers: &HeaderMap, method: &str, uri: &http::Uri) -> RequestRecord {
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Ok(v) = value.to_str()
        {
            extra.entry(unescape(key)).or_default().push(v.to_string());
        }
    }
    let now = time::OffsetDateTime::now_utc();
    RequestRecord {
        time: now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        impersonate_user: header_str(headers, "impersonate-user"),
        impersonate_groups: headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect(),
        impersonate_extra: extra,
        authorization_sha256: headers
            .get(http::header::AUTHORIZATION)
            .map(|v| hex::encode(Sha256::digest(v.as_bytes()))),
        user_agent: header_str(headers, "user-agent"),
    }
}

/// Middleware: records every request (before authentication, so rejected
/// ones show up too) and logs it at debug level without secrets.
pub async fn log_requests(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let rec = record(req.headers(), req.method().as_str(), req.uri());
    st.requests.push(rec.clone());
    let resp = next.run(req).await;
    tracing::debug!(
        cluster = %st.name,
        method = %rec.method,
        path = %rec.path,
        query = rec.query.as_deref().unwrap_or(""),
        impersonate_user = rec.impersonate_user.as_deref().unwrap_or(""),
        status = resp.status().as_u16(),
        "request"
    );
    resp
}

/// `GET /_sim/info`.
pub async fn info(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "name": st.name,
        "podCIDR": st.store.pod_cidr().to_string(),
        "gitVersion": crate::discovery::GIT_VERSION,
        "resourceVersion": st.store.current_rv().to_string(),
        "startedAt": st.started_at,
    }))
}

/// `GET /_sim/logstats`: how many traffic-log records were written (per
/// type, and per action for flows) and how many audit events were
/// generated, sent and dropped.
pub async fn logstats(State(st): State<Arc<AppState>>) -> Json<Value> {
    let mut v = st.traffic_stats.to_json(st.traffic.as_ref());
    v["audit"] = st.audit_stats.to_json(st.audit.is_some());
    Json(v)
}

/// `POST /_sim/compact`: `{"compactedAt": RV}`.
pub async fn compact(State(st): State<Arc<AppState>>) -> Json<Value> {
    let rv = st.store.compact();
    st.compacted.send_replace(rv);
    Json(json!({"compactedAt": rv}))
}

/// `GET /_sim/requests`.
pub async fn requests(State(st): State<Arc<AppState>>) -> Json<Vec<RequestRecord>> {
    Json(st.requests.snapshot())
}

/// Size of each chunk `/_sim/bytes` sends.
pub const BYTES_CHUNK: usize = 64 * 1024;
/// Largest `size` `/_sim/bytes` accepts (64 GiB).
pub const MAX_BYTES: u64 = 64 << 30;

/// The fixed pattern every `/_sim/bytes` chunk is cut from: printable, so a body
/// dumped to a terminal stays readable, and not all zeros, so compression would show.
static PATTERN: [u8; BYTES_CHUNK] = {
    let mut p = [0u8; BYTES_CHUNK];
    let mut i = 0;
    while i < BYTES_CHUNK {
        p[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    p
};

/// Parses the `size` parameter of `/_sim/bytes` from a raw query string.
fn parse_size(query: Option<&str>) -> Result<u64, ApiError> {
    let raw = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "size")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::BadRequest("query parameter size is required".into()))?;
    let n: u64 = raw.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "size {raw:?} is not a non-negative integer (bytes)"
        ))
    })?;
    if n > MAX_BYTES {
        return Err(ApiError::BadRequest(format!(
            "size {n} exceeds the limit of {MAX_BYTES} bytes"
        )));
    }
    Ok(n)
}

/// The chunks of an `n`-byte body: static slices of [`PATTERN`], so nothing is copied.
fn chunks(n: u64) -> impl Iterator<Item = bytes::Bytes> + Send {
    let full = n / BYTES_CHUNK as u64;
    let rest = (n % BYTES_CHUNK as u64) as usize;
    (0..full)
        .map(|_| bytes::Bytes::from_static(&PATTERN))
        .chain((rest > 0).then(|| bytes::Bytes::from_static(&PATTERN[..rest])))
}

/// `GET /_sim/bytes?size=N`: streams N bytes (`Content-Length: N`).
pub async fn bytes(uri: http::Uri) -> Result<Response, ApiError> {
    let n = parse_size(uri.query())?;
    let stream = futures_util::stream::iter(chunks(n).map(Ok::<_, std::convert::Infallible>));
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(http::header::CONTENT_LENGTH, n)
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_impersonation_and_hashes_authorization() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer secret".parse().unwrap());
        h.insert("impersonate-user", "alice".parse().unwrap());
        h.append("impersonate-group", "dev".parse().unwrap());
        h.append("impersonate-group", "ops".parse().unwrap());
        h.append("impersonate-extra-cattery.dev%2fteam", "a".parse().unwrap());
        let r = record(&h, "GET", &"/api/v1/pods?limit=1".parse().unwrap());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["impersonateUser"], "alice");
        assert_eq!(v["impersonateGroups"], json!(["dev", "ops"]));
        assert_eq!(v["impersonateExtra"], json!({"cattery.dev/team": ["a"]}));
        assert_eq!(
            v["authorizationSha256"],
            hex::encode(Sha256::digest(b"Bearer secret"))
        );
        assert_eq!(v["query"], "limit=1");
        assert!(!v.to_string().contains("secret"));
    }

    #[test]
    fn bytes_size_is_validated() {
        assert_eq!(parse_size(Some("size=0")).unwrap(), 0);
        assert_eq!(parse_size(Some("a=b&size=1024")).unwrap(), 1024);
        assert_eq!(
            parse_size(Some(&format!("size={MAX_BYTES}"))).unwrap(),
            MAX_BYTES
        );
        for bad in [
            None,
            Some("size="),
            Some("size=-1"),
            Some("size=1.5"),
            Some("size=abc"),
            Some(&*format!("size={}", MAX_BYTES + 1)),
        ] {
            let e = parse_size(bad).unwrap_err();
            assert_eq!(e.code(), http::StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn bytes_chunks_add_up() {
        for n in [
            0,
            1,
            BYTES_CHUNK as u64 - 1,
            BYTES_CHUNK as u64,
            3 * BYTES_CHUNK as u64 + 7,
        ] {
            let c: Vec<_> = chunks(n).collect();
            assert_eq!(c.iter().map(|b| b.len() as u64).sum::<u64>(), n);
            assert!(c.iter().all(|b| !b.is_empty() && b.len() <= BYTES_CHUNK));
            assert!(c.iter().all(|b| b[..] == PATTERN[..b.len()]));
        }
    }

    #[tokio::test]
    async fn bytes_endpoint_streams_exact_length() {
        use http_body_util::BodyExt;
        let res = bytes("/_sim/bytes?size=200000".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(res.headers()[http::header::CONTENT_LENGTH], "200000");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 200_000);
        assert_eq!(body[26], b'a');
        let bad = bytes("/_sim/bytes?size=x".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(bad.code(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn log_is_bounded() {
        let log = RequestLog::default();
        for _ in 0..REQUEST_LOG_LIMIT + 5 {
            log.push(record(&HeaderMap::new(), "GET", &"/".parse().unwrap()));
        }
        assert_eq!(log.snapshot().len(), REQUEST_LOG_LIMIT);
    }
}
