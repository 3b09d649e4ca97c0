//! `POST /apis/logs.cattery.dev/v1/{type}/search` and `GET …/{type}/tail` (server-sent events).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cattery_api::logs::LogType;
use futures_util::Stream;
use serde_json::Value;

use crate::AppState;
use crate::auth::Identity;
use crate::handler::extract::Path;
use crate::handler::{ApiError, AuthzOutcome, MAX_RESOURCE_BODY, identity, read_body};

/// Which clusters a caller may read logs of.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterScope {
    /// Every cluster, including removed ones whose logs are kept.
    All,
    /// Only these.
    Only(Vec<String>),
}

/// Authorization of log reads. An explicitly requested cluster without permission → 403
/// naming what is missing; `*` → the clusters the caller may read, silently (everything
/// when a rule is unrestricted). Permission comes from either convention: cattery's
/// (`logs.cattery.dev`, resource = type, resourceNames = clusters) or Calico's
/// (`lma.tigera.io`, resources = clusters, resourceNames = types).
pub fn authorize_log_clusters(
    authz: &cattery_rbac::Authorizer,
    who: &Identity,
    log_type: LogType,
    requested: &[String],
) -> Result<(ClusterScope, AuthzOutcome), ApiError> {
    let requester = cattery_rbac::Requester {
        user: &who.user,
        groups: &who.groups,
    };
    let asked = requested.join(",");
    if requested.iter().any(|c| c == "*") {
        return Ok(match authz.log_clusters(&requester, log_type.as_str()) {
            cattery_rbac::Names::All => (
                ClusterScope::All,
                AuthzOutcome {
                    allowed: true,
                    reason: format!("RBAC: {log_type} logs of every cluster"),
                    name: Some(asked),
                },
            ),
            cattery_rbac::Names::Only(names) => {
                let names: Vec<String> = names.into_iter().collect();
                let reason = format!("RBAC: {log_type} logs limited to clusters {names:?}");
                (
                    ClusterScope::Only(names),
                    AuthzOutcome {
                        allowed: true,
                        reason,
                        name: Some(asked),
                    },
                )
            }
        });
    }
    let mut reasons = Vec::new();
    for c in requested {
        let d = authz.log_access(&requester, log_type.as_str(), c);
        if !d.allowed {
            let outcome = AuthzOutcome {
                allowed: false,
                reason: d.reason.clone(),
                name: Some(asked),
            };
            return Err(ApiError::with_reason(403, "Forbidden", d.reason).with_outcome(outcome));
        }
        reasons.push(d.reason);
    }
    reasons.dedup();
    Ok((
        ClusterScope::Only(requested.to_vec()),
        AuthzOutcome {
            allowed: true,
            reason: reasons.join("; "),
            name: Some(asked),
        },
    ))
}

fn log_type(name: &str) -> Result<LogType, ApiError> {
    name.parse().map_err(|e: String| ApiError::new(404, e))
}

fn requested_clusters(v: &Value) -> Result<Vec<String>, ApiError> {
    match v.get("clusters") {
        None | Some(Value::Null) => Err(ApiError::new(
            400,
            "field \"clusters\" is required: a list of cluster names, or [\"*\"] for all",
        )),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::new(400, "field \"clusters\" must hold strings"))
            })
            .collect(),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(_) => Err(ApiError::new(
            400,
            "field \"clusters\" must be a non-empty list of cluster names or [\"*\"]",
        )),
    }
}

/// Runs a search.
pub async fn search(
    State(state): State<Arc<AppState>>,
    Path(type_name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let who = identity(&req);
    // The body is read before the type is checked so an HTTP/2 client gets the 404 instead
    // of a reset stream.
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    let t = log_type(&type_name)?;
    let mut v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(400, format!("invalid JSON: {e}")))?;
    let (scope, outcome) =
        authorize_log_clusters(&state.authz.current(), &who, t, &requested_clusters(&v)?)?;
    let clusters = match scope {
        ClusterScope::All => vec![cattery_logstore::ALL_CLUSTERS.to_string()],
        ClusterScope::Only(c) => c,
    };
    v["clusters"] = serde_json::json!(clusters);
    let request =
        cattery_logstore::SearchRequest::from_json(&serde_json::to_vec(&v).unwrap_or_default())
            .map_err(store_error)?;
    let logs = state.logs.clone();
    let res = tokio::task::spawn_blocking(move || logs.store.search(t, &request))
        .await
        .map_err(|e| ApiError::new(500, e.to_string()))?;
    let res = match res {
        Ok(res) => res,
        Err(cattery_logstore::LogStoreError::Busy {
            message,
            retry_after_secs,
        }) => {
            let mut r = ApiError::new(429, message).into_response();
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(retry_after_secs),
            );
            return Ok(outcome.attach(r));
        }
        Err(e) => return Err(store_error(e)),
    };
    Ok(outcome.attach(axum::Json(res).into_response()))
}

/// Maps store errors to API errors (bad requests name the field).
pub fn store_error(e: cattery_logstore::LogStoreError) -> ApiError {
    match e {
        cattery_logstore::LogStoreError::BadRequest { field, message } => {
            ApiError::new(400, format!("field {field:?}: {message}"))
        }
        cattery_logstore::LogStoreError::Busy { message, .. } => ApiError::new(429, message),
        other => {
            tracing::error!("log store: {other}");
            ApiError::new(500, format!("log store: {other}"))
        }
    }
}

/// Parameters of a tail: `clusters=a,b` or `*`, repeated `filter=field=value`, `q=text`.
struct TailQuery {
    clusters: Vec<String>,
    filters: Vec<cattery_logstore::Filter>,
    text: Option<String>,
}

fn parse_tail_query(t: LogType, query: Option<&str>) -> Result<TailQuery, ApiError> {
    let mut q = TailQuery {
        clusters: vec![],
        filters: vec![],
        text: None,
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "clusters" => q
                .clusters
                .extend(v.split(',').filter(|c| !c.is_empty()).map(str::to_string)),
            "q" => q.text = Some(v),
            "filter" => {
                let (field, value) = v.split_once('=').ok_or_else(|| {
                    ApiError::new(400, format!("filter {v:?} must be FIELD=VALUE"))
                })?;
                q.filters
                    .push(cattery_logstore::Filter::equals(field, value));
            }
            other => {
                return Err(ApiError::new(
                    400,
                    format!("unknown query parameter {other:?}; use clusters, filter or q"),
                ));
            }
        }
    }
    if q.clusters.is_empty() {
        return Err(ApiError::new(
            400,
            "query parameter \"clusters\" is required (names, or * for all)",
        ));
    }
    cattery_logstore::validate_filters(t, &q.filters).map_err(store_error)?;
    Ok(q)
}

/// Streams records of one type as they are stored, as server-sent events.
pub async fn tail(
    State(state): State<Arc<AppState>>,
    Path(type_name): Path<String>,
    req: Request,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let t = log_type(&type_name)?;
    let who = identity(&req);
    let q = parse_tail_query(t, req.uri().query())?;
    let (scope, _) = authorize_log_clusters(&state.authz.current(), &who, t, &q.clusters)?;
    let rx = state.logs.subscribe();
    let stream =
        futures_util::stream::unfold((rx, scope, q), move |(mut rx, scope, q)| async move {
            loop {
                match rx.recv().await {
                    Ok(item) => {
                        if item.log_type != t {
                            continue;
                        }
                        if let ClusterScope::Only(c) = &scope
                            && !c.contains(&item.cluster)
                        {
                            continue;
                        }
                        if !cattery_logstore::matches(&q.filters, q.text.as_deref(), &item.record) {
                            continue;
                        }
                        let ev = Event::default().data(item.record.to_string());
                        return Some((Ok(ev), (rx, scope, q)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let ev = Event::default()
                            .event("lagged")
                            .data(format!("{{\"skipped\":{n}}}"));
                        return Some((Ok(ev), (rx, scope, q)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
