//! Flows, DNS, L7 and Audit: the `cattery logs --where` filters, a time range, pages via
//! `searchAfter`, each record's full JSON, NDJSON export and a live tail.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cattery_api::logs::{LogType, get_path};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::api::enc;
use crate::ctx::{Ctx, Nav, Page, Selection, is_connected};
use crate::error::UiError;
use crate::fmt::{bytes, count, rfc3339_ms, time_el};
use crate::url_state::UrlState;

/// Records per page.
const PAGE_SIZE: usize = 50;
/// Most records one export writes.
const MAX_EXPORT: usize = 100_000;

/// The log type named in a URL, or a page saying there is no such type.
pub(crate) fn log_type(name: &str) -> Result<LogType, UiError> {
    name.parse().map_err(|_| UiError::NotFound {
        what: "log type",
        name: name.to_string(),
        hint: "The log types are flows, dns, l7 and audit.".into(),
    })
}

/// Human name of a log type's page.
pub(crate) fn title(t: LogType, sel: &Selection) -> &'static str {
    match t {
        LogType::Flows => "Flows",
        LogType::Dns => "DNS",
        LogType::L7 => "L7 (HTTP)",
        LogType::Audit if matches!(sel, Selection::Management) => "Timeline",
        LogType::Audit => "Audit",
    }
}

fn nav_key(t: LogType) -> &'static str {
    t.as_str()
}

fn placeholder(t: LogType) -> &'static str {
    match t {
        LogType::Flows => "action=deny\nsource_namespace=shop",
        LogType::Dns => "qname=payments.example.com\nrcode=NXDomain",
        LogType::L7 => "response_code>=500\nmethod=POST",
        LogType::Audit => "verb=delete\nuser.username=admin",
    }
}

/// The search body for this URL state, or the filter errors to show next to the input.
pub(crate) fn search_body(
    state: &UrlState,
    sel: &Selection,
    extra_filters: &[Value],
) -> Result<Value, Vec<String>> {
    let mut errors = vec![];
    let mut filters = vec![];
    for f in &state.filters {
        match cattery_api::filter_expr::parse_filter(f) {
            Ok(v) => filters.push(v),
            Err(e) => errors.push(format!("Filter “{f}”: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    filters.extend(extra_filters.iter().cloned());
    let (from, to) = state.window_ms();
    let mut body = json!({
        "clusters": sel.log_clusters(),
        "timeRange": {"from": from, "to": to},
        "filters": filters,
    });
    if !state.q.is_empty() {
        body["query"] = json!(state.q);
    }
    Ok(body)
}

/// Turns the API's 400 about `filters[i]` into a message about the i-th filter line.
pub(crate) fn filter_error(state: &UrlState, message: &str) -> Option<String> {
    let rest = message.strip_prefix("field \"filters[")?;
    let (i, _) = rest.split_once(']')?;
    let i: usize = i.parse().ok()?;
    let expr = state.filters.get(i)?;
    let detail = message.split_once(": ").map(|(_, m)| m).unwrap_or(message);
    Some(format!("Filter “{expr}”: {detail}"))
}

fn s<'a>(r: &'a Value, k: &str) -> &'a str {
    get_path(r, k).and_then(Value::as_str).unwrap_or("-")
}

fn n(r: &Value, k: &str) -> String {
    match get_path(r, k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(v) => v.to_string(),
    }
}

/// Felix writes L7 durations as Go `time.Duration` (nanoseconds); people read milliseconds.
fn duration_ms(r: &Value, k: &str) -> String {
    match get_path(r, k).and_then(Value::as_f64) {
        Some(ns) => format!("{:.1} ms", ns / 1e6),
        None => "-".into(),
    }
}

fn num(r: &Value, k: &str) -> f64 {
    get_path(r, k).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Column headers of a type's table.
pub(crate) fn headers(t: LogType) -> &'static [&'static str] {
    match t {
        LogType::Flows => &[
            "Time",
            "Cluster",
            "Action",
            "Source",
            "Destination",
            "Proto",
            "Reporter",
            "Bytes in/out",
        ],
        LogType::Dns => &[
            "Time", "Cluster", "Client", "Query", "Type", "Result", "Count",
        ],
        LogType::L7 => &[
            "Time",
            "Cluster",
            "Source",
            "Destination",
            "Method",
            "URL",
            "Code",
            "Duration",
        ],
        LogType::Audit => &[
            "Time", "Cluster", "User", "Verb", "Resource", "Code", "Decision",
        ],
    }
}

/// One record as table rows: the summary and its (hidden) full JSON.
pub(crate) fn row(t: LogType, r: &Value, id: &str) -> Markup {
    let when = cattery_api::logs::record_time_ms(t, r)
        .map(rfc3339_ms)
        .unwrap_or_default();
    let detail_id = format!(
        "rec-{}",
        id.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    let pretty = serde_json::to_string_pretty(r).unwrap_or_default();
    let cells: Vec<Markup> = match t {
        LogType::Flows => {
            let deny = s(r, "action") == "deny";
            vec![
                html! { span.badge.(if deny { "bad" } else { "ok" }) { (s(r, "action")) } },
                html! { (s(r, "source_namespace")) "/" (s(r, "source_name_aggr")) },
                html! { (s(r, "dest_namespace")) "/" (s(r, "dest_name_aggr")) ":" (n(r, "dest_port")) },
                html! { (s(r, "proto")) },
                html! { (s(r, "reporter")) },
                html! { (bytes(num(r, "bytes_in"))) " / " (bytes(num(r, "bytes_out"))) },
            ]
        }
        LogType::Dns => vec![
            html! { (s(r, "client_namespace")) "/" (s(r, "client_name_aggr")) },
            html! { (s(r, "qname")) },
            html! { (s(r, "qtype")) },
            html! { (s(r, "rcode")) },
            html! { (n(r, "count")) },
        ],
        LogType::L7 => vec![
            html! { (s(r, "src_namespace")) "/" (s(r, "src_name_aggr")) },
            html! { (s(r, "dest_namespace")) "/" (s(r, "dest_name_aggr")) },
            html! { (s(r, "method")) },
            html! { span.url { (s(r, "url")) } },
            html! { (n(r, "response_code")) },
            html! { (duration_ms(r, "duration_mean")) },
        ],
        LogType::Audit => vec![
            html! { (s(r, "user.username")) },
            html! { (s(r, "verb")) },
            html! { (s(r, "objectRef.namespace")) "/" (s(r, "objectRef.resource")) "/" (s(r, "objectRef.name")) },
            html! { (n(r, "responseStatus.code")) },
            html! { (s(r, "annotations.authorization.k8s.io/decision")) },
        ],
    };
    let span = cells.len() + 3;
    html! {
        tr.rec {
            td { @if when.is_empty() { "-" } @else { (time_el(&when)) } }
            td { (s(r, "cluster")) }
            @for c in cells { td { (c) } }
            td { button.small.ghost type="button" aria-expanded="false" aria-controls=(detail_id) data-toggle-row { "Details" } }
        }
        tr.detail id=(detail_id) hidden {
            td colspan=(span) { pre.record { (pretty) } }
        }
    }
}

/// A table of records (used by the log pages and the service graph's tables).
pub(crate) fn table(t: LogType, hits: &[Value], caption: &str, body_id: &str) -> Markup {
    html! {
        table.data.logs {
            caption.sr-only { (caption) }
            thead { tr {
                @for h in headers(t) { th scope="col" { (*h) } }
                th scope="col" { span.sr-only { "Record" } }
            } }
            tbody id=(body_id) {
                @for h in hits { (row(t, &h["_source"], h["_id"].as_str().unwrap_or(""))) }
            }
        }
    }
}

/// A notice when the selected cluster's tunnel is down (stored logs are still shown).
pub(crate) fn disconnected_notice(sel: &Selection) -> Markup {
    match sel {
        Selection::Managed(c) if !is_connected(c) => {
            let cond = c.status.as_ref().and_then(|s| s.connected());
            html! {
                div.notice.warn role="status" {
                    p { strong { "Cluster " (c.metadata.name) " is disconnected" }
                        @if let Some(c) = cond { " (" (c.reason) ", since " (time_el(&c.last_transition_time)) ")" }
                        ". Stored records are shown; new ones arrive when its agent reconnects." }
                }
            }
        }
        _ => html! {},
    }
}

/// `GET /ui/logs/{type}`.
pub(crate) async fn page(ctx: Ctx, Path(t): Path<String>) -> Response {
    let r = render(&ctx, &t).await;
    ctx.finish(r).await
}

async fn render(ctx: &Ctx, t: &str) -> Result<Page, UiError> {
    let t = log_type(t)?;
    let sel = ctx.selection().await?;
    let state = &ctx.state;
    let action = format!("/ui/logs/{t}");
    let title = title(t, &sel);
    let mut errors = vec![];
    let mut result = None;
    match search_body(state, &sel, &[]) {
        Err(e) => errors = e,
        Ok(mut body) => {
            body["size"] = json!(PAGE_SIZE);
            if let Some(after) = state.get("after")
                && let Ok(v) = serde_json::from_str::<Value>(after)
            {
                body["searchAfter"] = v;
            }
            match ctx
                .api
                .post::<Value>(&format!("/apis/logs.cattery.dev/v1/{t}/search"), &body)
                .await
            {
                Ok(v) => result = Some(v),
                Err(UiError::Api(s)) if s.code == 400 => {
                    errors.push(filter_error(state, &s.message).unwrap_or(s.message.clone()))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let live_ok = state
        .filters
        .iter()
        .all(|f| cattery_api::filter_expr::is_plain_equality(f));
    let hits: Vec<Value> = result
        .as_ref()
        .and_then(|v| v["hits"]["hits"].as_array().cloned())
        .unwrap_or_default();
    let total = result
        .as_ref()
        .and_then(|v| v["hits"]["total"]["value"].as_u64())
        .unwrap_or(0);
    let next = (hits.len() == PAGE_SIZE)
        .then(|| hits.last().map(|h| h["sort"].to_string()))
        .flatten();
    let first = state.get("after").is_some();
    let body = html! {
        @if matches!(sel, Selection::Management) && t == LogType::Audit {
            p.lead { "The management plane's own audit trail: who did what, when, and whether it was allowed." }
        }
        (disconnected_notice(&sel))
        (super::filter_bar(state, &action, placeholder(t), &errors, &[]))
        div.toolbar {
            p.summary role="status" {
                @if result.is_some() {
                    (count(total)) " records in " (sel.describe()) " · " (state.range().map(|r| r.1).unwrap_or("Last hour"))
                }
            }
            div.actions {
                a.button.ghost href=(format!("/ui/logs/{t}/export?{}", state.common_query())) download=(format!("{t}.ndjson")) { "Export NDJSON" }
                @if live_ok {
                    button.ghost type="button" aria-pressed="false" data-live-url=(format!("/ui/logs/{t}/live?{}", state.common_query())) data-live-target="log-rows" { "Live" }
                } @else {
                    button.ghost type="button" disabled title="Live view supports only FIELD=VALUE filters" { "Live" }
                }
            }
        }
        @if result.is_some() {
            @if hits.is_empty() {
                (super::empty(&format!("No {} records in {} for this range and these filters.", t.as_str(), sel.describe())))
                table.data.logs hidden { tbody #log-rows {} }
            } @else {
                (table(t, &hits, &format!("{title} records"), "log-rows"))
                nav.pager aria-label="Pages" {
                    @if first { a href=(format!("{action}?{}", state.with("after", None).query())) { "↖ First page" } }
                    @if let Some(n) = next { a href=(format!("{action}?{}", state.with("after", Some(&n)).query())) rel="next" { "Next page →" } }
                }
            }
        }
    };
    let mut p = Page::new(title, Nav::Logs(nav_key(t)), body);
    if !errors.is_empty() {
        p.status = http::StatusCode::BAD_REQUEST;
    }
    Ok(p)
}

/// `GET /ui/logs/{type}/export`: every matching record (up to 100,000) as NDJSON, paged
/// from the API with `searchAfter` while it is sent.
pub(crate) async fn export(ctx: Ctx, Path(t): Path<String>) -> Response {
    let t = match log_type(&t) {
        Ok(t) => t,
        Err(e) => return ctx.finish(Err(e)).await,
    };
    let sel = match ctx.selection().await {
        Ok(s) => s,
        Err(e) => return ctx.finish(Err(e)).await,
    };
    let body = match search_body(&ctx.state, &sel, &[]) {
        Ok(b) => b,
        Err(errors) => {
            return (http::StatusCode::BAD_REQUEST, errors.join("\n")).into_response();
        }
    };
    let api = ctx.api.clone();
    let path = format!("/apis/logs.cattery.dev/v1/{t}/search");
    let stream = futures_util::stream::unfold(
        (api, body, 0usize, false),
        move |(api, mut body, sent, done)| {
            let path = path.clone();
            async move {
                if done || sent >= MAX_EXPORT {
                    return None;
                }
                let want = 1000.min(MAX_EXPORT - sent);
                body["size"] = json!(want);
                let res: Value = match api.post(&path, &body).await {
                    Ok(v) => v,
                    Err(e) => {
                        let msg = format!("{{\"error\":{}}}\n", json!(e.explain().0));
                        return Some((
                            Ok::<_, Infallible>(bytes::Bytes::from(msg)),
                            (api, body, sent, true),
                        ));
                    }
                };
                let hits = res["hits"]["hits"].as_array().cloned().unwrap_or_default();
                let mut out = Vec::new();
                for h in &hits {
                    out.extend_from_slice(h["_source"].to_string().as_bytes());
                    out.push(b'\n');
                }
                let done = hits.len() < want;
                if let Some(last) = hits.last() {
                    body["searchAfter"] = last["sort"].clone();
                }
                Some((
                    Ok(bytes::Bytes::from(out)),
                    (api, body, sent + hits.len(), done),
                ))
            }
        },
    );
    (
        [
            (
                http::header::CONTENT_TYPE,
                "application/x-ndjson".to_string(),
            ),
            (
                http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{t}.ndjson\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `GET /ui/logs/{type}/live`: the API's tail as the signed-in person, each record sent
/// on as a rendered table row (`row` events).
pub(crate) async fn live(ctx: Ctx, Path(t): Path<String>) -> Response {
    let t = match log_type(&t) {
        Ok(t) => t,
        Err(e) => return ctx.finish(Err(e)).await,
    };
    let sel = match ctx.selection().await {
        Ok(s) => s,
        Err(e) => return ctx.finish(Err(e)).await,
    };
    let mut path = format!(
        "/apis/logs.cattery.dev/v1/{t}/tail?clusters={}",
        enc(&sel.log_clusters().join(","))
    );
    for f in &ctx.state.filters {
        path.push_str(&format!("&filter={}", enc(f)));
    }
    if !ctx.state.q.is_empty() {
        path.push_str(&format!("&q={}", enc(&ctx.state.q)));
    }
    let res = match ctx.api.send(http::Method::GET, &path, None).await {
        Ok(r) => r,
        Err(e) => return ctx.finish(Err(e)).await,
    };
    if !res.status().is_success() {
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return ctx.finish(Err(crate::api::api_error(status, &body))).await;
    }
    let ui = ctx.ui.clone();
    let sid = ctx.session_id.clone();
    let frames = res.into_body().into_data_stream();
    let stream = futures_util::stream::unfold(
        (frames, Vec::<u8>::new(), 0u64),
        move |(mut frames, mut buf, mut seq)| {
            let ui = ui.clone();
            let sid = sid.clone();
            async move {
                loop {
                    if let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                        let event: Vec<u8> = buf.drain(..end + 2).collect();
                        let text = String::from_utf8_lossy(&event).into_owned();
                        let mut kind = "message";
                        let mut data = String::new();
                        for line in text.lines() {
                            if let Some(k) = line.strip_prefix("event:") {
                                kind = if k.trim() == "lagged" {
                                    "lagged"
                                } else {
                                    "message"
                                };
                            } else if let Some(d) = line.strip_prefix("data:") {
                                data.push_str(d.trim_start());
                            }
                        }
                        if data.is_empty() {
                            continue;
                        }
                        if kind == "lagged" {
                            return Some((
                                Ok::<_, Infallible>(Event::default().event("lagged").data(data)),
                                (frames, buf, seq),
                            ));
                        }
                        let Ok(r) = serde_json::from_str::<Value>(&data) else {
                            continue;
                        };
                        seq += 1;
                        let html = row(t, &r, &format!("live-{seq}")).into_string();
                        return Some((
                            Ok(Event::default().event("row").data(html)),
                            (frames, buf, seq),
                        ));
                    }
                    if !ui.sessions.alive(&sid) {
                        return None;
                    }
                    match tokio::time::timeout(Duration::from_secs(30), frames.next()).await {
                        Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
                        Ok(_) => return None,
                        Err(_) => continue,
                    }
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l7_durations_are_nanoseconds_shown_as_milliseconds() {
        let r = serde_json::json!({"duration_mean": 18_000_000u64});
        assert_eq!(duration_ms(&r, "duration_mean"), "18.0 ms");
        assert_eq!(duration_ms(&r, "duration_max"), "-");
    }

    #[test]
    fn filters_translate_and_errors_name_the_line() {
        let st = UrlState::parse(Some("where=action%3Ddeny&where=bogus&range=15m"));
        let errs = search_body(&st, &Selection::All, &[]).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("“bogus”"), "{errs:?}");
        let st = UrlState::parse(Some("where=action%3Ddeny&where=nope%3D1&q=db"));
        let b = search_body(&st, &Selection::Management, &[]).unwrap();
        assert_eq!(b["clusters"], json!(["cluster"]));
        assert_eq!(
            b["filters"][0],
            json!({"field": "action", "equals": "deny"})
        );
        assert_eq!(b["query"], "db");
        assert_eq!(
            filter_error(&st, "field \"filters[1].field\": unknown field \"nope\"").as_deref(),
            Some("Filter “nope=1”: unknown field \"nope\"")
        );
        assert_eq!(filter_error(&st, "something else"), None);
    }
}
