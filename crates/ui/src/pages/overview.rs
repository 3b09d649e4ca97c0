//! Overview of the selection: clusters connected and disconnected, flows and denied flows
//! over the time range (an SVG chart drawn here), the top denied source → destination
//! pairs, and when each cluster's logs last arrived. All from the API's aggregations, each
//! connection counted once although both of its ends report it ([`crate::flow_count`]).

use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::ctx::{ClusterCounts, Ctx, Nav, Page, Selection, is_connected};
use crate::error::UiError;
use crate::fmt::{count, opt_time, rfc3339_ms};

/// How many clusters the "Last logs received" card lists (the first by name).
const LAST_LOGS_ROWS: usize = 20;

/// `GET /ui/overview`.
pub(crate) async fn page(ctx: Ctx) -> Response {
    let r = render(&ctx).await;
    ctx.finish(r).await
}

fn buckets(v: &Value) -> Vec<Value> {
    v["buckets"].as_array().cloned().unwrap_or_default()
}

async fn render(ctx: &Ctx) -> Result<Page, UiError> {
    let sel = ctx.selection().await?;
    let (clusters, counts) = match &sel {
        Selection::Managed(c) => {
            let up = u64::from(is_connected(c));
            (
                vec![(**c).clone()],
                ClusterCounts {
                    total: 1,
                    connected: up,
                },
            )
        }
        _ => ctx.cluster_counts(LAST_LOGS_ROWS).await?,
    };
    let up = counts.connected;
    let (from, to) = ctx.state.window_ms();
    let interval_s = ((to - from) / 1000 / 48).max(60);
    let body = json!({
        "clusters": sel.log_clusters(),
        "timeRange": {"from": from, "to": to},
        "size": 0,
        "aggs": {
            "over_time": {
                "date_histogram": {"field": "end_time", "fixed_interval": format!("{interval_s}s")},
                "aggs": crate::flow_count::split(json!({"action": {"terms": {"field": "action", "size": 4}}}))
            }
        }
    });
    let flows = ctx
        .api
        .post::<Value>("/apis/logs.cattery.dev/v1/flows/search", &body);
    // Denied records need no deduplication: a connection has at most one (crate::flow_count).
    let denied_body = json!({
        "clusters": sel.log_clusters(),
        "timeRange": {"from": from, "to": to},
        "filters": [{"field": "action", "equals": "deny"}],
        "size": 0,
        "aggs": {"s": {"terms": {"field": "source_namespace", "size": 10},
            "aggs": {"sa": {"terms": {"field": "source_name_aggr", "size": 10},
                "aggs": {"d": {"terms": {"field": "dest_namespace", "size": 10},
                    "aggs": {"da": {"terms": {"field": "dest_name_aggr", "size": 10}}}}}}}}},
    });
    let denied_pairs = ctx
        .api
        .post::<Value>("/apis/logs.cattery.dev/v1/flows/search", &denied_body);
    // The two aggregations run side by side (each is a pass over the window's records).
    let (flows, denied_pairs): (Result<Value, UiError>, Result<Value, UiError>) =
        tokio::join!(flows, denied_pairs);
    let flows_section: Markup = match &flows {
        Ok(v) => {
            let stored = v["hits"]["total"]["value"].as_u64().unwrap_or(0);
            // Each connection once, although both ends report it (crate::flow_count).
            let series: Vec<(i64, u64, u64)> = buckets(&v["aggregations"]["over_time"])
                .iter()
                .map(|b| {
                    let (mut all, mut denied) = (0, 0);
                    crate::flow_count::leaves(b, "action", |action, a| {
                        let n = a["doc_count"].as_u64().unwrap_or(0);
                        all += n;
                        if action == "deny" {
                            denied += n;
                        }
                    });
                    (b["key"].as_f64().unwrap_or(0.0) as i64, all, denied)
                })
                .collect();
            let total: u64 = series.iter().map(|s| s.1).sum();
            let denied: u64 = series.iter().map(|s| s.2).sum();
            html! {
                div.grid.four {
                    div.card { p.stat #stat-flows { (count(total)) } p.stat-label { "flows" }
                        p.muted title="Both ends of a connection between two workloads report it; it is counted once, at the end that decided it." {
                            span #stat-stored { (count(stored)) } " records stored" } }
                    div.card { p.stat.bad-text #stat-denied { (count(denied)) } p.stat-label { "denied flows" } }
                    div.card { p.stat.ok-text #stat-up { (up) } p.stat-label { "clusters connected" } }
                    div.card { p.stat.bad-text #stat-down { (counts.total - up) } p.stat-label { "clusters disconnected" } }
                }
                section.card {
                    div.manifest-head {
                        h2 { "Flows and denied flows" }
                        div.legend { span { span.sw.flows {} "all flows" } span { span.sw.denied {} "denied" } }
                    }
                    @if stored == 0 { (super::empty("No flows in this range.")) } @else { (chart(&series, from, to)) }
                }
            }
        }
        Err(UiError::Api(s)) if s.code == 403 => html! {
            div.notice.warn role="status" { p { "Flows are not shown: " (s.message) } }
        },
        Err(e) => return Err(UiError::Unreachable(e.explain().0)),
    };
    let mut pairs: Vec<(String, String, u64)> = vec![];
    if let Ok(v) = &denied_pairs {
        for s in buckets(&v["aggregations"]["s"]) {
            for sa in buckets(&s["sa"]) {
                for d in buckets(&sa["d"]) {
                    for da in buckets(&d["da"]) {
                        pairs.push((
                            format!(
                                "{}/{}",
                                s["key"].as_str().unwrap_or("-"),
                                sa["key"].as_str().unwrap_or("-")
                            ),
                            format!(
                                "{}/{}",
                                d["key"].as_str().unwrap_or("-"),
                                da["key"].as_str().unwrap_or("-")
                            ),
                            da["doc_count"].as_u64().unwrap_or(0),
                        ));
                    }
                }
            }
        }
    }
    pairs.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    pairs.truncate(10);
    let link_state = ctx.state.common();
    let body = html! {
        (flows_section)
        div.grid.two {
            section.card {
                h2 { "Top denied source → destination" }
                @if pairs.is_empty() { (super::empty("No denied flows in this range.")) } @else {
                    table.data {
                        caption.sr-only { "Top denied pairs" }
                        thead { tr { th scope="col" { "Source" } th scope="col" { "Destination" } th scope="col" { "Denied records" } } }
                        tbody { @for (s, d, n) in &pairs { tr {
                            td { (s) } td { (d) }
                            td { a href=({
                                let mut st = link_state.clone();
                                let (sn, sa) = s.split_once('/').unwrap_or((s, "-"));
                                let (dn, da) = d.split_once('/').unwrap_or((d, "-"));
                                st.filters = vec!["action=deny".into(), format!("source_namespace={sn}"), format!("source_name_aggr={sa}"), format!("dest_namespace={dn}"), format!("dest_name_aggr={da}")];
                                st.link("/ui/logs/flows")
                            }) { (count(*n)) } }
                        } } }
                    }
                }
            }
            section.card {
                h2 { "Last logs received" }
                @if clusters.is_empty() { (super::empty("No managed clusters.")) } @else {
                    table.data {
                        caption.sr-only { "Last logs per cluster" }
                        thead { tr { th scope="col" { "Cluster" } th scope="col" { "Status" } th scope="col" { "Last logs" } } }
                        tbody { @for c in &clusters { tr {
                            th scope="row" { (c.metadata.name) }
                            td { @if is_connected(c) { span.badge.ok { "Connected" } } @else { span.badge.bad { "Disconnected" } } }
                            td { (opt_time(c.status.as_ref().and_then(|s| s.last_logs_received.as_deref()))) }
                        } } }
                    }
                }
            }
        }
    };
    Ok(Page::new(
        format!("Overview of {}", sel.describe()),
        Nav::Overview,
        body,
    ))
}

/// A line chart of (time ms, all, denied) as inline SVG (presentation attributes and
/// classes only: the CSP allows no inline style).
fn chart(series: &[(i64, u64, u64)], from: i64, to: i64) -> Markup {
    let (w, h, left, bottom) = (900.0, 200.0, 48.0, 22.0);
    let max = series.iter().map(|s| s.1).max().unwrap_or(1).max(1) as f64;
    let x = |t: i64| left + (t - from) as f64 / (to - from).max(1) as f64 * (w - left - 8.0);
    let y = |n: u64| (h - bottom) - n as f64 / max * (h - bottom - 10.0);
    let line = |pick: fn(&(i64, u64, u64)) -> u64| {
        series
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.0), y(pick(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let all = line(|s| s.1);
    let denied = line(|s| s.2);
    let area = format!(
        "{:.1},{:.1} {all} {:.1},{:.1}",
        x(series.first().map(|s| s.0).unwrap_or(from)),
        h - bottom,
        x(series.last().map(|s| s.0).unwrap_or(to)),
        h - bottom
    );
    let ticks = [from, from + (to - from) / 2, to];
    html! {
        svg.chart viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="Flow records and denied flow records over the time range" preserveAspectRatio="none" {
            @for i in 0..=4 {
                @let yy = (h - bottom) - i as f64 / 4.0 * (h - bottom - 10.0);
                line.grid-line x1=(left) x2=(w - 8.0) y1=(yy) y2=(yy) {}
                text x=(left - 6.0) y=(yy + 4.0) text-anchor="end" { (count((max * i as f64 / 4.0) as u64)) }
            }
            line.axis x1=(left) x2=(w - 8.0) y1=(h - bottom) y2=(h - bottom) {}
            polygon.flows-area points=(area) {}
            polyline.flows points=(all) {}
            polyline.denied points=(denied) {}
            @for (i, t) in ticks.iter().enumerate() {
                text x=(x(*t)) y=(h - 6.0) text-anchor=(["start", "middle", "end"][i]) { (rfc3339_ms(*t).replace('T', " ").replace('Z', " UTC")) }
            }
        }
    }
}
