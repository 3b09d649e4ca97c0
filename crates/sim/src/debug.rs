//! Simulator-only debug endpoints (not Kubernetes APIs) and the request log.
//!
//! - `GET /_sim/info`: which simulated cluster this is;
//! - `GET /_sim/requests`: the last [`REQUEST_LOG_LIMIT`] requests, so tests
//!   can check what a proxy in front of the cluster forwarded (impersonation
//!   headers, which credential). The `Authorization` header is only ever
//!   kept as a SHA-256 of its value, never stored or logged itself.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;

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
fn unescape(key: &str) -> String {
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
        "gitVersion": crate::discovery::GIT_VERSION,
        "resourceVersion": st.store.current_rv().to_string(),
        "startedAt": st.started_at,
    }))
}

/// `GET /_sim/requests`.
pub async fn requests(State(st): State<Arc<AppState>>) -> Json<Vec<RequestRecord>> {
    Json(st.requests.snapshot())
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
    fn log_is_bounded() {
        let log = RequestLog::default();
        for _ in 0..REQUEST_LOG_LIMIT + 5 {
            log.push(record(&HeaderMap::new(), "GET", &"/".parse().unwrap()));
        }
        assert_eq!(log.snapshot().len(), REQUEST_LOG_LIMIT);
    }
}
