//! Managed clusters: the table (sort, filter, paging on the server), adding a cluster
//! (its manifest shown once), removing one, and the live stream that turns a row
//! connected when its agent dials in.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::Path;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use cattery_api::{API_VERSION, List, ManagedCluster, ObjectMeta};
use futures_util::Stream;
use maud::{Markup, html};
use serde::Serialize;

use crate::Ui;
use crate::api::enc;
use crate::ctx::{Ctx, Nav, Page, is_connected};
use crate::error::UiError;
use crate::fmt::{count, opt_time};
use crate::url_state::UrlState;

/// Rows per page.
const PAGE_SIZE: usize = 50;
/// Most clusters one live stream follows.
const MAX_LIVE: usize = 500;

/// What a row shows of a cluster's status (also what the live stream sends).
#[derive(Clone, Debug, PartialEq, Serialize)]
struct RowStatus {
    name: String,
    connected: bool,
    status: String,
    reason: String,
    message: String,
    since: String,
    remote: String,
    agent: String,
    kubernetes: String,
    last_logs: String,
}

fn row_status(c: &ManagedCluster) -> RowStatus {
    let st = c.status.clone().unwrap_or_default();
    let cond = st.connected();
    let connected = is_connected(c);
    RowStatus {
        name: c.metadata.name.clone(),
        connected,
        status: match cond.map(|c| c.status) {
            Some(cattery_api::ConditionStatus::True) => "Connected".into(),
            Some(cattery_api::ConditionStatus::False) => "Disconnected".into(),
            _ => "Unknown".into(),
        },
        reason: cond.map(|c| c.reason.clone()).unwrap_or_default(),
        message: cond.map(|c| c.message.clone()).unwrap_or_default(),
        since: st.connected_since.unwrap_or_default(),
        remote: st.remote_address.unwrap_or_default(),
        agent: st.agent_version.unwrap_or_default(),
        kubernetes: st.kubernetes_version.unwrap_or_default(),
        last_logs: st.last_logs_received.unwrap_or_default(),
    }
}

const COLUMNS: &[(&str, &str)] = &[
    ("name", "Name"),
    ("labels", "Labels"),
    ("status", "Status"),
    ("since", "Connected since"),
    ("remote", "Remote address"),
    ("agent", "Agent"),
    ("kubernetes", "Kubernetes"),
    ("lastlogs", "Last logs"),
];

fn sort_key(r: &RowStatus, c: &ManagedCluster, by: &str) -> String {
    match by {
        "status" => format!("{}{}", u8::from(!r.connected), r.name),
        "since" => r.since.clone(),
        "remote" => r.remote.clone(),
        "agent" => r.agent.clone(),
        "kubernetes" => r.kubernetes.clone(),
        "lastlogs" => r.last_logs.clone(),
        "labels" => format!("{:?}", c.metadata.labels),
        _ => r.name.clone(),
    }
}

/// Whether a cluster matches the filter box: every word is part of the name, a label
/// `key=value`, or the status.
fn matches(c: &ManagedCluster, r: &RowStatus, filter: &str) -> bool {
    filter.split_whitespace().all(|w| {
        let w = w.to_ascii_lowercase();
        c.metadata.name.contains(&w)
            || c.metadata
                .labels
                .iter()
                .any(|(k, v)| format!("{k}={v}").to_ascii_lowercase().contains(&w))
            || r.status.to_ascii_lowercase() == w
    })
}

fn labels(l: &BTreeMap<String, String>) -> Markup {
    html! {
        @for (k, v) in l { span.chip { (k) "=" (v) } " " }
    }
}

fn status_cell(r: &RowStatus) -> Markup {
    html! {
        span.badge.(if r.connected { "ok" } else { "bad" }) data-field="status" { (r.status) }
        " "
        span.muted data-field="reason" title=(r.message) { (r.reason) }
    }
}

/// `GET /ui/clusters`.
pub(crate) async fn page(ctx: Ctx) -> Response {
    let r = render(&ctx).await;
    ctx.finish(r).await
}

async fn render(ctx: &Ctx) -> Result<Page, UiError> {
    let all = ctx.clusters().await?;
    let s = &ctx.state;
    let filter = s.get("filter").unwrap_or("").trim().to_string();
    let sort = s.get("sort").unwrap_or("name").to_string();
    let desc = s.get("order") == Some("desc");
    let mut rows: Vec<(RowStatus, &ManagedCluster)> = all
        .iter()
        .map(|c| (row_status(c), c))
        .filter(|(r, c)| matches(c, r, &filter))
        .collect();
    rows.sort_by_cached_key(|(r, c)| (sort_key(r, c, &sort), r.name.clone()));
    if desc {
        rows.reverse();
    }
    let total = rows.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page_no: usize = s
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let shown = &rows[((page_no - 1) * PAGE_SIZE).min(total)..(page_no * PAGE_SIZE).min(total)];
    let connected = all.iter().filter(|c| is_connected(c)).count();
    let names: Vec<&str> = shown.iter().map(|(r, _)| r.name.as_str()).collect();
    let base = UrlState {
        extra: vec![],
        ..s.clone()
    };
    let with_page = |p: usize| {
        let mut st = base.clone();
        if !filter.is_empty() {
            st = st.with("filter", Some(&filter));
        }
        st = st.with("sort", Some(&sort));
        if desc {
            st = st.with("order", Some("desc"));
        }
        format!(
            "/ui/clusters?{}",
            st.with("page", Some(&p.to_string())).query()
        )
    };
    let body = html! {
        div.toolbar {
            p.summary {
                (count(all.len() as u64)) " clusters · "
                span.ok-text { (connected) " connected" } " · "
                span.bad-text { (all.len() - connected) " disconnected" }
            }
            form method="get" action="/ui/clusters/new" {
                @if let Some(c) = &s.cluster { input type="hidden" name="cluster" value=(c); }
                button.primary type="submit" { "Add cluster" }
            }
        }
        form.filters method="get" action="/ui/clusters" role="search" aria-label="Filter clusters" {
            @if let Some(c) = &s.cluster { input type="hidden" name="cluster" value=(c); }
            input type="hidden" name="sort" value=(sort);
            @if desc { input type="hidden" name="order" value="desc"; }
            div.field.grow {
                label for="filter" { "Filter " span.muted { "(name, label key=value, connected/disconnected)" } }
                input #filter type="search" name="filter" value=(filter) autocomplete="off"
                    hx-get="/ui/clusters" hx-trigger="input changed delay:300ms, search"
                    hx-target="#clusters-table" hx-select="#clusters-table" hx-swap="outerHTML"
                    hx-push-url="true" hx-include="closest form";
            }
            div.field.actions { button type="submit" { "Filter" } }
        }
        div #clusters-table data-live=(format!("/ui/clusters/events?names={}", enc(&names.join(",")))) {
            @if all.is_empty() {
                (super::empty("No managed clusters yet (or none you may see). Add one with “Add cluster”."))
            } @else if total == 0 {
                (super::empty("No cluster matches the filter."))
            } @else {
                table.data {
                    caption.sr-only { "Managed clusters" }
                    thead { tr {
                        @for (key, label) in COLUMNS {
                            @let active = sort == *key;
                            @let next_desc = active && !desc;
                            th scope="col" aria-sort=[active.then_some(if desc { "descending" } else { "ascending" })] {
                                @if *key == "labels" { (label) } @else {
                                    a href=(format!("/ui/clusters?{}", {
                                        let mut st = base.with("sort", Some(key));
                                        if !filter.is_empty() { st = st.with("filter", Some(&filter)); }
                                        if next_desc { st = st.with("order", Some("desc")); }
                                        st.query()
                                    })) { (label) @if active { span aria-hidden="true" { (if desc { " ▼" } else { " ▲" }) } } }
                                }
                            }
                        }
                        th scope="col" { span.sr-only { "Actions" } }
                    } }
                    tbody {
                        @for (r, c) in shown {
                            tr data-cluster=(r.name) {
                                th scope="row" { a href=({ let mut st = base.common(); st.cluster = Some(r.name.clone()); st.link("/ui/overview") }) { (r.name) } }
                                td { (labels(&c.metadata.labels)) }
                                td { (status_cell(r)) }
                                td data-field="since" { (opt_time(Some(&r.since))) }
                                td data-field="remote" { (dash(&r.remote)) }
                                td data-field="agent" { (dash(&r.agent)) }
                                td data-field="kubernetes" { (dash(&r.kubernetes)) }
                                td data-field="last_logs" { (opt_time(Some(&r.last_logs))) }
                                td { a.small.danger-link href=(format!("/ui/clusters/{}/remove", enc(&r.name))) { "Remove" span.sr-only { " " (r.name) } } }
                            }
                        }
                    }
                }
                nav.pager aria-label="Pages" {
                    span { "Page " (page_no) " of " (pages) " · " (count(total as u64)) " shown by the filter" }
                    @if page_no > 1 { a href=(with_page(page_no - 1)) rel="prev" { "← Previous" } }
                    @if page_no < pages { a href=(with_page(page_no + 1)) rel="next" { "Next →" } }
                }
            }
        }
    };
    Ok(Page::new("Managed clusters", Nav::Clusters, body))
}

fn dash(s: &str) -> Markup {
    if s.is_empty() {
        html! { span.muted { "–" } }
    } else {
        html! { (s) }
    }
}

/// `GET /ui/clusters/new`.
pub(crate) async fn new_form(ctx: Ctx) -> Response {
    let body = add_form(&ctx, "", "", "kubernetes", None, None);
    ctx.finish(Ok(Page::new("Add cluster", Nav::Clusters, body)))
        .await
}

fn add_form(
    ctx: &Ctx,
    name: &str,
    labels: &str,
    format: &str,
    name_err: Option<&str>,
    labels_err: Option<&str>,
) -> Markup {
    html! {
        form.card.form-narrow method="post" action="/ui/clusters" {
            input type="hidden" name="_csrf" value=(ctx.session.csrf);
            div.field {
                label for="name" { "Name" }
                input #name name="name" value=(name) required autocomplete="off"
                    maxlength="63"
                    aria-describedby="name-help" aria-invalid=[name_err.map(|_| "true")];
                p #name-help.muted { "A DNS label: lower-case letters, digits and '-'." }
                @if let Some(e) = name_err { p.field-error role="alert" { (e) } }
            }
            div.field {
                label for="labels" { "Labels " span.muted { "(key=value, one per line)" } }
                textarea #labels name="labels" rows="3" aria-invalid=[labels_err.map(|_| "true")] { (labels) }
                @if let Some(e) = labels_err { p.field-error role="alert" { (e) } }
            }
            fieldset.field {
                legend { "Install with" }
                label.radio { input type="radio" name="format" value="kubernetes" checked[format != "agent-config"];
                    " Kubernetes manifest " span.muted { "(kubectl apply in the managed cluster)" } }
                label.radio { input type="radio" name="format" value="agent-config" checked[format == "agent-config"];
                    " Agent config " span.muted { "(run " code { "cattery agent" } " outside Kubernetes)" } }
            }
            div.actions {
                button.primary type="submit" { "Add cluster" }
                a.button.ghost href=(ctx.state.link("/ui/clusters")) { "Cancel" }
            }
        }
    }
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not key=value"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        out.insert(k.to_string(), v.trim().to_string());
    }
    Ok(out)
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// `POST /ui/clusters`: registers the cluster and shows its manifest, once.
pub(crate) async fn create(
    ctx: Ctx,
    headers: http::HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = ctx.check_csrf(&headers, &form) {
        return ctx.finish(Err(e)).await;
    }
    let name = field(&form, "name").trim().to_string();
    let labels_text = field(&form, "labels").to_string();
    let format = if field(&form, "format") == "agent-config" {
        "agent-config"
    } else {
        "kubernetes"
    };
    let again = |name_err: Option<&str>, labels_err: Option<&str>, status| {
        let mut p = Page::new(
            "Add cluster",
            Nav::Clusters,
            add_form(&ctx, &name, &labels_text, format, name_err, labels_err),
        );
        p.status = status;
        p
    };
    let labels = match parse_labels(&labels_text) {
        Ok(l) => l,
        Err(e) => {
            let p = again(None, Some(&e), http::StatusCode::BAD_REQUEST);
            return ctx.finish(Ok(p)).await;
        }
    };
    let body = ManagedCluster {
        api_version: API_VERSION.into(),
        kind: "ManagedCluster".into(),
        metadata: ObjectMeta {
            name: name.clone(),
            labels,
            ..Default::default()
        },
        spec: Default::default(),
        status: None,
    };
    let created: Result<ManagedCluster, UiError> = ctx
        .api
        .post(
            &format!("/apis/cattery.dev/v1/managedclusters?manifestFormat={format}"),
            &serde_json::to_value(&body).unwrap_or_default(),
        )
        .await;
    let created = match created {
        Ok(c) => c,
        Err(UiError::Api(s)) if s.code == 400 || s.code == 409 || s.code == 422 => {
            let p = again(
                Some(&s.message),
                None,
                http::StatusCode::from_u16(s.code).unwrap_or(http::StatusCode::BAD_REQUEST),
            );
            return ctx.finish(Ok(p)).await;
        }
        Err(e) => return ctx.finish(Err(e)).await,
    };
    let manifest = created
        .spec
        .installation_manifest
        .clone()
        .unwrap_or_default();
    let file = if format == "agent-config" {
        format!("agent-{name}.yaml")
    } else {
        format!("cattery-{name}.yaml")
    };
    let r = row_status(&created);
    let body = html! {
        div.notice.warn role="note" {
            p { strong { "Shown once." } " This manifest holds cluster " code { (name) } "’s private key; the server does not keep it. Copy or download it now and keep it secret." }
        }
        section.card {
            div.manifest-head {
                h2 { "Installation manifest" }
                div.actions {
                    button type="button" data-copy="manifest" { "Copy" }
                    button type="button" data-download="manifest" data-filename=(file) { "Download" }
                }
            }
            pre #manifest.manifest tabindex="0" aria-label="Installation manifest" { (manifest) }
        }
        section.card {
            h2 { "Next" }
            @if format == "agent-config" {
                p { "Save it as " code { (file) } " (mode 0600) and run the agent where it can reach the cluster's API server:" }
                pre.cmd { "cattery agent --config " (file) " --upstream https://KUBE-APISERVER:6443" }
                p.muted { "The AgentConfig holds the fields of a ManagementClusterConnection (" code { "spec.managementClusterAddr" } ", " code { "spec.tls" } ", " code { "spec.impersonation" } ") plus " code { "spec.credentials" } " (certificate, private key, CA)." }
            } @else {
                p { "Apply it in the managed cluster:" }
                pre.cmd { "kubectl apply -f " (file) }
                p.muted { "To run the agent outside Kubernetes instead, add the cluster with “Agent config”: one file for " code { "cattery agent --config FILE" } "." }
            }
            div #clusters-table data-live=(format!("/ui/clusters/events?names={}", enc(&name))) {
                table.data { tbody { tr data-cluster=(name) {
                    th scope="row" { (name) }
                    td { (status_cell(&r)) }
                    td data-field="remote" { (dash(&r.remote)) }
                } } }
            }
            p { a href=(ctx.state.link("/ui/clusters")) { "Back to the clusters" } }
        }
    };
    let mut p = Page::new(format!("Cluster {name} added"), Nav::Clusters, body);
    p.status = http::StatusCode::CREATED;
    ctx.finish(Ok(p)).await
}

/// `GET /ui/clusters/{name}/remove`: asks for confirmation.
pub(crate) async fn confirm_remove(ctx: Ctx, Path(name): Path<String>) -> Response {
    let body = html! {
        form.card.form-narrow method="post" action=(format!("/ui/clusters/{}/remove", enc(&name))) {
            input type="hidden" name="_csrf" value=(ctx.session.csrf);
            p { "Remove cluster " strong { (name) } "? Its tunnel is closed and its certificate revoked: the agent can no longer connect. Logs already stored are kept until their retention ends." }
            div.actions {
                button.danger type="submit" { "Remove " (name) }
                a.button.ghost href=(ctx.state.link("/ui/clusters")) { "Cancel" }
            }
        }
    };
    ctx.finish(Ok(Page::new(
        format!("Remove {name}?"),
        Nav::Clusters,
        body,
    )))
    .await
}

/// `POST /ui/clusters/{name}/remove`.
pub(crate) async fn remove(
    ctx: Ctx,
    Path(name): Path<String>,
    headers: http::HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = ctx.check_csrf(&headers, &form) {
        return ctx.finish(Err(e)).await;
    }
    match ctx
        .api
        .call(
            http::Method::DELETE,
            &format!("/apis/cattery.dev/v1/managedclusters/{}", enc(&name)),
            None,
        )
        .await
    {
        Ok(_) => {
            let mut st = ctx.state.common();
            if st.cluster.as_deref() == Some(name.as_str()) {
                st.cluster = None;
            }
            Redirect::to(&st.link("/ui/clusters")).into_response()
        }
        Err(e) => ctx.finish(Err(e)).await,
    }
}

/// `GET /ui/clusters/events?names=a,b`: server-sent `cluster` events whenever a listed
/// cluster's status changes (first one for each at once), read from the API as the
/// signed-in person every `live_interval`. Ends when the session does.
pub(crate) async fn events(ctx: Ctx) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ui = ctx.ui.clone();
    let names: Vec<String> = ctx
        .state
        .get("names")
        .unwrap_or("")
        .split(',')
        .filter(|n| !n.is_empty())
        .take(MAX_LIVE)
        .map(str::to_string)
        .collect();
    struct St {
        ui: Arc<Ui>,
        ctx: Ctx,
        names: Vec<String>,
        last: BTreeMap<String, RowStatus>,
        pending: Vec<Event>,
        first: bool,
    }
    let st = St {
        ui,
        ctx,
        names,
        last: BTreeMap::new(),
        pending: vec![],
        first: true,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop() {
                return Some((Ok(ev), st));
            }
            if !st.first {
                tokio::time::sleep(st.ui.config.live_interval).await;
            }
            st.first = false;
            if !st.ui.sessions.alive(&st.ctx.session_id) {
                return None;
            }
            let list = st
                .ctx
                .api
                .get::<List<ManagedCluster>>("/apis/cattery.dev/v1/managedclusters")
                .await;
            let Ok(list) = list else {
                st.pending.push(Event::default().event("error").data("{}"));
                continue;
            };
            for c in list
                .items
                .iter()
                .filter(|c| st.names.is_empty() || st.names.contains(&c.metadata.name))
            {
                let r = row_status(c);
                if st.last.get(&r.name) != Some(&r) {
                    let data = serde_json::to_string(&r).unwrap_or_default();
                    st.pending
                        .push(Event::default().event("cluster").data(data));
                    st.last.insert(r.name.clone(), r);
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_value_lines() {
        let l = parse_labels("env=prod\n region = eu ,team=net").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l["region"], "eu");
        assert!(parse_labels("oops").unwrap_err().contains("oops"));
        assert!(parse_labels("=x").is_err());
        assert!(parse_labels("").unwrap().is_empty());
    }
}
