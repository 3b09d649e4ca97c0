//! Service graph ("Flow Visualizations"): namespaces as nodes, expanding to workloads
//! (`*_name_aggr`), edges per action weighted by bytes or flows, denied traffic in red,
//! clusters as compound nodes under `All clusters`.
//!
//! Built only from the log store's terms aggregations (never raw records): one query at
//! namespace level, and for expanded namespaces one query for their outgoing and one for
//! their incoming traffic at workload level. Large graphs collapse: beyond
//! [`MAX_NAMESPACES`] namespaces per cluster the smallest merge into an "other" node, and
//! an expanded namespace draws at most [`MAX_WORKLOADS`] workloads (the rest merge too).
//! The page itself holds no data: `assets/graph.js` fetches `/ui/graph/data` (JSON) and
//! the tables below the graph from `/ui/graph/tables` (HTML), so no inline script is
//! needed under the strict CSP.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::response::{IntoResponse, Response};
use cattery_api::logs::LogType;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::ctx::{Ctx, Nav, Page, Selection};
use crate::error::UiError;
use crate::fmt::count;
use crate::pages::logs::{disconnected_notice, search_body, table};
use crate::url_state::UrlState;

/// Namespaces drawn per cluster before the smallest merge into "other".
pub(crate) const MAX_NAMESPACES: usize = 30;
/// Workloads drawn per expanded namespace before the smallest merge into "other".
pub(crate) const MAX_WORKLOADS: usize = 40;
/// Terms buckets asked for per level (bounds the aggregation's cost).
const TERMS_SIZE: usize = 200;
/// Records per table below the graph.
const TABLE_SIZE: usize = 20;
/// Name of the merged node.
const OTHER: &str = "(other)";

/// `GET /ui/graph`.
pub(crate) async fn page(ctx: Ctx) -> Response {
    let r = render(&ctx).await;
    ctx.finish(r).await
}

async fn render(ctx: &Ctx) -> Result<Page, UiError> {
    let sel = ctx.selection().await?;
    let state = &ctx.state;
    let weight = weight(state);
    let mut keep = vec![("weight", weight.to_string())];
    for e in expanded(state) {
        keep.push(("expand", e));
    }
    let errors = match search_body(state, &sel, &[]) {
        Ok(_) => vec![],
        Err(e) => e,
    };
    let common = state.common_query();
    let body = html! {
        (disconnected_notice(&sel))
        (super::filter_bar(state, "/ui/graph", "action=deny\nsource_namespace=shop", &errors, &keep))
        div.toolbar {
            p.summary #graph-summary role="status" aria-live="polite" { "Loading the graph…" }
            div.actions {
                fieldset.switch {
                    legend { "Edge weight" }
                    label { input type="radio" name="graph-weight" value="bytes" checked[weight == "bytes"]; " Bytes" }
                    label { input type="radio" name="graph-weight" value="flows" checked[weight == "flows"]; " Flows" }
                }
                button.ghost #graph-refresh type="button" { "Refresh" }
                div.legend {
                    span { span.sw.allowed {} "allowed" }
                    span { span.sw.denied {} "denied" }
                }
            }
        }
        @if errors.is_empty() {
            // cytoscape injects a <style> element (refused by the CSP) unless an element
            // with this id exists; its one rule is in app.css instead.
            span id="__________cytoscape_stylesheet" hidden {}
            div.graph-wrap {
                div #graph role="img" aria-label={ "Service graph of " (sel.describe()) ": namespaces and the traffic between them; the edge list below describes it as text" }
                    data-data-url={ "/ui/graph/data?" (common) }
                    data-tables-url={ "/ui/graph/tables?" (common) }
                    data-flows-url=(state.link("/ui/logs/flows"))
                    data-weight=(weight)
                    data-expand=(expanded(state).join(","))
                    data-state="loading" {}
                aside #graph-panel.card aria-label="Selection details" hidden {
                    div.manifest-head {
                        h2 #graph-panel-title { "Selection" }
                        button.small.ghost #graph-panel-close type="button" { "Close" }
                    }
                    dl #graph-panel-body {}
                    div.actions #graph-panel-actions {}
                }
            }
            details.card #graph-edges-box {
                summary { "Edges as a table" }
                table.data {
                    caption.sr-only { "Edges of the service graph" }
                    thead { tr {
                        th scope="col" { "Source" } th scope="col" { "Destination" } th scope="col" { "Action" }
                        th scope="col" { "Flows" } th scope="col" { "Bytes" } th scope="col" { "Records" }
                        th scope="col" { span.sr-only { "Select" } }
                    } }
                    tbody #graph-edges {}
                }
            }
            section #graph-tables aria-live="polite" {
                (super::empty("Loading flows…"))
            }
        }
    };
    let mut p = Page::new(
        format!("Service graph of {}", sel.describe()),
        Nav::Graph,
        body,
    );
    p.scripts = &[
        "cytoscape-3.35.0.min.js",
        "dagre-0.8.5.min.js",
        "cytoscape-dagre-2.5.0.js",
        "graph.js",
    ];
    if !errors.is_empty() {
        p.status = http::StatusCode::BAD_REQUEST;
    }
    Ok(p)
}

/// `bytes` (default) or `flows`.
fn weight(state: &UrlState) -> &'static str {
    match state.get("weight") {
        Some("flows") => "flows",
        _ => "bytes",
    }
}

/// Expanded namespaces as `CLUSTER/NAMESPACE`, sorted, from repeated or comma-separated
/// `expand` parameters.
fn expanded(state: &UrlState) -> Vec<String> {
    let set: BTreeSet<String> = state
        .extra
        .iter()
        .filter(|(k, _)| k == "expand")
        .flat_map(|(_, v)| v.split(',').map(str::trim).map(str::to_string))
        .filter(|v| v.contains('/'))
        .collect();
    set.into_iter().collect()
}

/// Traffic totals of a node or an edge.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Totals {
    records: u64,
    flows: u64,
    bytes: u64,
    denied: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.records += o.records;
        self.flows += o.flows;
        self.bytes += o.bytes;
        self.denied += o.denied;
    }
}

/// One aggregated row: (cluster, src ns, src workload, dst ns, dst workload, action).
#[derive(Clone, Debug, PartialEq)]
struct Row {
    cluster: String,
    sn: String,
    sa: Option<String>,
    dn: String,
    da: Option<String>,
    action: String,
    t: Totals,
}

fn buckets(v: &Value) -> &[Value] {
    v["buckets"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn key(b: &Value) -> String {
    match &b["key"] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn num(v: &Value) -> u64 {
    v["value"].as_f64().unwrap_or(0.0).max(0.0) as u64
}

/// The leaf aggregations: per reporter and destination type (so each connection is
/// counted once, [`crate::flow_count`]) and action, sums of bytes and flows.
fn leaf() -> Value {
    crate::flow_count::split(
        json!({"a": {"terms": {"field": "action", "size": 4}, "aggs": {
            "bi": {"sum": {"field": "bytes_in"}},
            "bo": {"sum": {"field": "bytes_out"}},
            "f": {"sum": {"field": "num_flows"}},
        }}}),
    )
}

/// Nests `levels` (name, field) as terms aggregations around [`leaf`].
fn nest(levels: &[(&str, &str)]) -> Value {
    let mut inner = leaf();
    for (name, field) in levels.iter().rev() {
        inner = json!({*name: {"terms": {"field": field, "size": TERMS_SIZE}, "aggs": inner}});
    }
    inner
}

/// Walks the nested answer of [`nest`] into rows, one per path and action, counting only
/// the records that stand for their connection ([`crate::flow_count`]).
fn rows(aggs: &Value, levels: &[&str]) -> Vec<Row> {
    type Key = (Vec<String>, String);
    fn walk(v: &Value, levels: &[&str], path: &mut Vec<String>, out: &mut BTreeMap<Key, Totals>) {
        match levels.split_first() {
            Some((name, rest)) => {
                for b in buckets(&v[*name]) {
                    path.push(key(b));
                    walk(b, rest, path, out);
                    path.pop();
                }
            }
            None => crate::flow_count::leaves(v, "a", |action, a| {
                let records = a["doc_count"].as_u64().unwrap_or(0);
                let t = Totals {
                    records,
                    flows: num(&a["f"]),
                    bytes: num(&a["bi"]) + num(&a["bo"]),
                    denied: if action == "deny" { records } else { 0 },
                };
                out.entry((path.clone(), action.to_string()))
                    .or_default()
                    .add(&t);
            }),
        }
    }
    let mut merged = BTreeMap::new();
    walk(aggs, levels, &mut vec![], &mut merged);
    merged
        .into_iter()
        .filter(|((p, _), _)| p.len() == 3 || p.len() == 5)
        .map(|((p, action), t)| {
            let (cluster, sn, sa, dn, da) = if p.len() == 5 {
                (&p[0], &p[1], Some(p[2].clone()), &p[3], Some(p[4].clone()))
            } else {
                (&p[0], &p[1], None, &p[2], None)
            };
            Row {
                cluster: cluster.clone(),
                sn: sn.clone(),
                sa,
                dn: dn.clone(),
                da,
                action,
                t,
            }
        })
        .collect()
}

/// A node of the drawn graph.
#[derive(Clone, Debug)]
struct Node {
    kind: &'static str,
    label: String,
    parent: Option<String>,
    cluster: String,
    /// Namespaces this node stands for (several for a merged node).
    namespaces: Vec<String>,
    workload: Option<String>,
    expanded: bool,
    t: Totals,
}

/// The graph: nodes and edges keyed by id (so output is sorted, hence laid out the same
/// way every time).
#[derive(Default, Debug)]
struct Graph {
    nodes: BTreeMap<String, Node>,
    edges: BTreeMap<(String, String, String), Totals>,
    notes: Vec<String>,
}

fn ns_id(cluster: &str, ns: &str) -> String {
    format!("n:{cluster}/{ns}")
}

fn wl_id(cluster: &str, ns: &str, wl: &str) -> String {
    format!("w:{cluster}/{ns}/{wl}")
}

fn ns_label(ns: &str) -> String {
    if ns == "-" {
        "(outside the cluster)".into()
    } else {
        ns.to_string()
    }
}

/// Builds the graph from the namespace-level rows and the workload-level rows of the
/// expanded namespaces (`out_rows`: their outgoing traffic, `in_rows`: their incoming).
fn build(
    ns_rows: &[Row],
    out_rows: &[Row],
    in_rows: &[Row],
    expand: &BTreeSet<(String, String)>,
    all: bool,
) -> Graph {
    let mut g = Graph::default();
    let is_exp = |c: &str, ns: &str| expand.contains(&(c.to_string(), ns.to_string()));
    // Which namespaces are drawn, per cluster: the biggest MAX_NAMESPACES and every
    // expanded one; the rest merge into "other".
    let mut per_ns: BTreeMap<(String, String), Totals> = BTreeMap::new();
    for r in ns_rows {
        per_ns
            .entry((r.cluster.clone(), r.sn.clone()))
            .or_default()
            .add(&r.t);
        if r.dn != r.sn {
            per_ns
                .entry((r.cluster.clone(), r.dn.clone()))
                .or_default()
                .add(&r.t);
        }
    }
    let mut by_cluster: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for ((c, ns), t) in &per_ns {
        by_cluster.entry(c).or_default().push((ns, t.records));
    }
    let mut merged: BTreeMap<(String, String), ()> = BTreeMap::new();
    for (c, mut list) in by_cluster {
        if list.len() <= MAX_NAMESPACES {
            continue;
        }
        list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut n = 0;
        for (ns, _) in list.iter().skip(MAX_NAMESPACES) {
            if !is_exp(c, ns) {
                merged.insert((c.to_string(), ns.to_string()), ());
                n += 1;
            }
        }
        g.notes.push(format!(
            "{c}: {n} smaller namespaces are merged into “{OTHER}”"
        ));
    }
    // Workloads of expanded namespaces: the biggest MAX_WORKLOADS each.
    let mut per_wl: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    for r in out_rows {
        if let Some(sa) = &r.sa {
            *per_wl
                .entry((r.cluster.clone(), r.sn.clone()))
                .or_default()
                .entry(sa.clone())
                .or_default() += r.t.records;
        }
    }
    for r in in_rows.iter().chain(out_rows) {
        if let Some(da) = &r.da
            && is_exp(&r.cluster, &r.dn)
        {
            *per_wl
                .entry((r.cluster.clone(), r.dn.clone()))
                .or_default()
                .entry(da.clone())
                .or_default() += r.t.records;
        }
    }
    let mut kept_wl: BTreeSet<(String, String, String)> = BTreeSet::new();
    for ((c, ns), wls) in &per_wl {
        let mut list: Vec<_> = wls.iter().collect();
        list.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if list.len() > MAX_WORKLOADS {
            g.notes.push(format!(
                "{c}/{ns}: {} smaller workloads are merged into “{OTHER}”",
                list.len() - MAX_WORKLOADS
            ));
        }
        for (w, _) in list.into_iter().take(MAX_WORKLOADS) {
            kept_wl.insert((c.clone(), ns.clone(), w.clone()));
        }
    }
    let ns_node = |g: &mut Graph, c: &str, ns: &str| -> String {
        if merged.contains_key(&(c.to_string(), ns.to_string())) {
            let id = format!("o:{c}");
            let n = g.nodes.entry(id.clone()).or_insert_with(|| Node {
                kind: "other",
                label: format!("{OTHER} namespaces"),
                parent: all.then(|| format!("c:{c}")),
                cluster: c.to_string(),
                namespaces: vec![],
                workload: None,
                expanded: false,
                t: Totals::default(),
            });
            if !n.namespaces.iter().any(|x| x == ns) {
                n.namespaces.push(ns.to_string());
            }
            return id;
        }
        let id = ns_id(c, ns);
        let exp = is_exp(c, ns);
        g.nodes.entry(id.clone()).or_insert_with(|| Node {
            kind: "namespace",
            label: ns_label(ns),
            parent: all.then(|| format!("c:{c}")),
            cluster: c.to_string(),
            namespaces: vec![ns.to_string()],
            workload: None,
            expanded: exp,
            t: Totals::default(),
        });
        id
    };
    let wl_node = |g: &mut Graph, c: &str, ns: &str, wl: &str| -> String {
        let parent = ns_node(g, c, ns);
        let keep = kept_wl.contains(&(c.to_string(), ns.to_string(), wl.to_string()));
        let (id, label, workload) = if keep {
            (wl_id(c, ns, wl), wl.to_string(), Some(wl.to_string()))
        } else {
            (
                format!("w:{c}/{ns}/{OTHER}"),
                format!("{OTHER} workloads"),
                None,
            )
        };
        g.nodes.entry(id.clone()).or_insert_with(|| Node {
            kind: if keep { "workload" } else { "other" },
            label,
            parent: Some(parent),
            cluster: c.to_string(),
            namespaces: vec![ns.to_string()],
            workload,
            expanded: false,
            t: Totals::default(),
        });
        id
    };
    let add_edge = |g: &mut Graph, s: String, d: String, action: &str, t: &Totals| {
        g.edges
            .entry((s.clone(), d.clone(), action.to_string()))
            .or_default()
            .add(t);
        if let Some(n) = g.nodes.get_mut(&s) {
            n.t.add(t);
        }
        if d != s
            && let Some(n) = g.nodes.get_mut(&d)
        {
            n.t.add(t);
        }
    };
    for r in ns_rows {
        if is_exp(&r.cluster, &r.sn) || is_exp(&r.cluster, &r.dn) {
            continue;
        }
        let s = ns_node(&mut g, &r.cluster, &r.sn);
        let d = ns_node(&mut g, &r.cluster, &r.dn);
        add_edge(&mut g, s, d, &r.action, &r.t);
    }
    for r in out_rows {
        let (Some(sa), Some(da)) = (&r.sa, &r.da) else {
            continue;
        };
        if !is_exp(&r.cluster, &r.sn) {
            continue;
        }
        let s = wl_node(&mut g, &r.cluster, &r.sn, sa);
        let d = if is_exp(&r.cluster, &r.dn) {
            wl_node(&mut g, &r.cluster, &r.dn, da)
        } else {
            ns_node(&mut g, &r.cluster, &r.dn)
        };
        add_edge(&mut g, s, d, &r.action, &r.t);
    }
    for r in in_rows {
        let Some(da) = &r.da else { continue };
        if is_exp(&r.cluster, &r.sn) || !is_exp(&r.cluster, &r.dn) {
            continue; // counted with the source's outgoing traffic
        }
        let s = ns_node(&mut g, &r.cluster, &r.sn);
        let d = wl_node(&mut g, &r.cluster, &r.dn, da);
        add_edge(&mut g, s, d, &r.action, &r.t);
    }
    // Expanded namespaces are compound nodes: their totals are their workloads'.
    let sums: Vec<(String, Totals)> = g
        .nodes
        .iter()
        .filter(|(_, n)| n.kind != "namespace" || !n.expanded)
        .filter_map(|(_, n)| n.parent.clone().map(|p| (p, n.t)))
        .collect();
    for (p, t) in sums {
        if let Some(n) = g.nodes.get_mut(&p)
            && n.expanded
        {
            n.t.add(&t);
        }
    }
    if all {
        let clusters: BTreeSet<String> = g.nodes.values().map(|n| n.cluster.clone()).collect();
        for c in clusters {
            g.nodes.insert(
                format!("c:{c}"),
                Node {
                    kind: "cluster",
                    label: c.clone(),
                    parent: None,
                    cluster: c,
                    namespaces: vec![],
                    workload: None,
                    expanded: false,
                    t: Totals::default(),
                },
            );
        }
    }
    g
}

fn totals_json(t: &Totals) -> Value {
    json!({"records": t.records, "flows": t.flows, "bytes": t.bytes, "denied": t.denied})
}

impl Graph {
    fn to_json(&self) -> Value {
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|(id, n)| {
                json!({
                    "id": id, "kind": n.kind, "label": n.label, "parent": n.parent,
                    "cluster": n.cluster, "namespaces": n.namespaces, "workload": n.workload,
                    "expanded": n.expanded, "totals": totals_json(&n.t),
                })
            })
            .collect();
        let edges: Vec<Value> = self
            .edges
            .iter()
            .map(|((s, d, a), t)| {
                json!({
                    "id": format!("e:{s}>{d}:{a}"), "source": s, "target": d, "action": a,
                    "totals": totals_json(t),
                })
            })
            .collect();
        json!({"nodes": nodes, "edges": edges, "notes": self.notes})
    }
}

/// `GET /ui/graph/data`: the graph as JSON (for `graph.js`); errors as a JSON
/// `{"error": ...}` with the page's status.
pub(crate) async fn data(ctx: Ctx) -> Response {
    match graph_data(&ctx).await {
        Ok(v) => Json(v).into_response(),
        Err(UiError::SignedOut) => {
            ctx.ui.sessions.remove(&ctx.session_id);
            (
                http::StatusCode::UNAUTHORIZED,
                Json(json!({"error": "Your session has ended: sign in again.", "signIn": true})),
            )
                .into_response()
        }
        Err(e) => {
            let message = match &e {
                UiError::Api(s) => s.message.clone(),
                UiError::Unreachable(m) => m.clone(),
                other => other.explain().0,
            };
            (e.status(), Json(json!({"error": message}))).into_response()
        }
    }
}

async fn graph_data(ctx: &Ctx) -> Result<Value, UiError> {
    let sel = ctx.selection().await?;
    let all = matches!(sel, Selection::All);
    let state = &ctx.state;
    let base = search_body(state, &sel, &[])
        .map_err(|e| UiError::Api(Box::new(cattery_api::Status::failure(400, e.join("; ")))))?;
    let expand: BTreeSet<(String, String)> = expanded(state)
        .into_iter()
        .filter_map(|e| {
            let (c, ns) = e.split_once('/')?;
            Some((c.to_string(), ns.to_string()))
        })
        .collect();
    let search = |mut body: Value, aggs: Value| {
        body["size"] = json!(0);
        body["aggs"] = aggs;
        async move {
            ctx.api
                .post::<Value>("/apis/logs.cattery.dev/v1/flows/search", &body)
                .await
        }
    };
    let ns_levels = [
        ("c", "cluster"),
        ("s", "source_namespace"),
        ("d", "dest_namespace"),
    ];
    let wl_levels = [
        ("c", "cluster"),
        ("s", "source_namespace"),
        ("sa", "source_name_aggr"),
        ("d", "dest_namespace"),
        ("da", "dest_name_aggr"),
    ];
    let ns_answer = search(base.clone(), nest(&ns_levels)).await?;
    let total = ns_answer["hits"]["total"]["value"].as_u64().unwrap_or(0);
    let ns_rows = rows(&ns_answer["aggregations"], &["c", "s", "d"]);
    let (mut out_rows, mut in_rows) = (vec![], vec![]);
    if !expand.is_empty() {
        let names: Vec<&str> = expand
            .iter()
            .map(|(_, ns)| ns.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let wl = ["c", "s", "sa", "d", "da"];
        for (field, into) in [
            ("source_namespace", &mut out_rows),
            ("dest_namespace", &mut in_rows),
        ] {
            let mut body = base.clone();
            if let Some(f) = body["filters"].as_array_mut() {
                f.push(json!({"field": field, "in": names}));
            }
            let v = search(body, nest(&wl_levels)).await?;
            *into = rows(&v["aggregations"], &wl);
        }
    }
    let g = build(&ns_rows, &out_rows, &in_rows, &expand, all);
    let mut v = g.to_json();
    v["records"] = json!(total);
    v["scope"] = json!(sel.describe());
    v["all"] = json!(all);
    Ok(v)
}

/// One end of an edge, or a node: its namespaces and maybe its workload.
type End = (Vec<String>, Option<String>);

/// What the tables below the graph are narrowed to (from `graph.js`'s query).
#[derive(Debug, Default, PartialEq)]
struct Focus {
    cluster: Option<String>,
    /// A node: traffic from or to it.
    node: Option<End>,
    /// An edge: traffic from one end to the other with one action.
    edge: Option<(End, End, String)>,
}

fn list(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

impl Focus {
    fn parse(state: &UrlState) -> Focus {
        let wl = |k: &str| state.get(k).filter(|v| !v.is_empty()).map(str::to_string);
        let mut f = Focus {
            cluster: wl("focus_cluster"),
            ..Focus::default()
        };
        match state.get("focus") {
            Some("node") => f.node = Some((list(state.get("ns")), wl("wl"))),
            Some("edge") => {
                f.edge = Some((
                    (list(state.get("src_ns")), wl("src_wl")),
                    (list(state.get("dst_ns")), wl("dst_wl")),
                    wl("action").unwrap_or_default(),
                ))
            }
            _ => {}
        }
        f
    }
}

fn end_filters(ns_field: &str, wl_field: &str, end: &End) -> Vec<Value> {
    let mut out = vec![];
    match end.0.len() {
        0 => {}
        1 => out.push(json!({"field": ns_field, "equals": end.0[0]})),
        _ => out.push(json!({"field": ns_field, "in": end.0})),
    }
    if let Some(w) = &end.1 {
        out.push(json!({"field": wl_field, "equals": w}));
    }
    out
}

/// Field names of the two ends per log type (DNS has only a client end).
fn end_fields(t: LogType) -> [(&'static str, &'static str); 2] {
    match t {
        LogType::L7 => [
            ("src_namespace", "src_name_aggr"),
            ("dest_namespace", "dest_name_aggr"),
        ],
        LogType::Dns => [
            ("client_namespace", "client_name_aggr"),
            ("client_namespace", "client_name_aggr"),
        ],
        _ => [
            ("source_namespace", "source_name_aggr"),
            ("dest_namespace", "dest_name_aggr"),
        ],
    }
}

/// The tables to show: (heading, log type, extra filters).
fn sections(f: &Focus) -> Vec<(String, LogType, Vec<Value>)> {
    let mut out = vec![];
    if let Some((s, d, action)) = &f.edge {
        for t in [LogType::Flows, LogType::L7] {
            let [sf, df] = end_fields(t);
            let mut filters = end_filters(sf.0, sf.1, s);
            filters.extend(end_filters(df.0, df.1, d));
            if t == LogType::Flows && !action.is_empty() {
                filters.push(json!({"field": "action", "equals": action}));
            }
            let what = match t {
                LogType::Flows => format!("Flows of this edge ({action})"),
                _ => "L7 (HTTP) of this edge".into(),
            };
            out.push((what, t, filters));
        }
        let [cf, _] = end_fields(LogType::Dns);
        out.push((
            "DNS lookups by the source".into(),
            LogType::Dns,
            end_filters(cf.0, cf.1, s),
        ));
    } else if let Some(n) = &f.node {
        for t in [LogType::Flows, LogType::L7] {
            let [sf, df] = end_fields(t);
            let name = if t == LogType::Flows {
                "Flows"
            } else {
                "L7 (HTTP)"
            };
            out.push((format!("{name} from it"), t, end_filters(sf.0, sf.1, n)));
            out.push((format!("{name} to it"), t, end_filters(df.0, df.1, n)));
        }
        let [cf, _] = end_fields(LogType::Dns);
        out.push((
            "DNS lookups by it".into(),
            LogType::Dns,
            end_filters(cf.0, cf.1, n),
        ));
    } else {
        out.push(("Latest flows".into(), LogType::Flows, vec![]));
        out.push(("Latest DNS lookups".into(), LogType::Dns, vec![]));
        out.push(("Latest L7 (HTTP)".into(), LogType::L7, vec![]));
    }
    out
}

/// `GET /ui/graph/tables`: the flow, DNS and L7 tables below the graph, narrowed to the
/// selected node or edge (an HTML fragment; `graph.js` swaps it in).
pub(crate) async fn tables(ctx: Ctx) -> Response {
    let sel = match ctx.selection().await {
        Ok(s) => s,
        Err(e) => return fragment_error(&e),
    };
    let focus = Focus::parse(&ctx.state);
    let mut parts: Vec<Markup> = vec![];
    for (heading, t, extra) in sections(&focus) {
        // The graph's filters apply to flows only; other types get only the focus.
        let state = if t == LogType::Flows {
            ctx.state.common()
        } else {
            UrlState {
                filters: vec![],
                q: String::new(),
                ..ctx.state.common()
            }
        };
        let mut body = match search_body(&state, &sel, &extra) {
            Ok(b) => b,
            Err(e) => {
                parts.push(html! { p.field-error role="alert" { (e.join("; ")) } });
                continue;
            }
        };
        if let Some(c) = &focus.cluster {
            body["clusters"] = json!([c]);
        }
        body["size"] = json!(TABLE_SIZE);
        let res = ctx
            .api
            .post::<Value>(&format!("/apis/logs.cattery.dev/v1/{t}/search"), &body)
            .await;
        let where_lines: Vec<String> = extra.iter().filter_map(filter_line).collect();
        let mut link = state.clone();
        link.filters.extend(where_lines);
        if let Some(c) = &focus.cluster {
            link.cluster = Some(c.clone());
        }
        parts.push(html! {
            section.card.graph-table data-type=(t.as_str()) {
                div.manifest-head {
                    h2 { (heading) }
                    a href=(link.link(&format!("/ui/logs/{t}"))) { "Open in " (t.as_str()) " →" }
                }
                @match &res {
                    Ok(v) => {
                        @let hits = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
                        @let total = v["hits"]["total"]["value"].as_u64().unwrap_or(0);
                        @if hits.is_empty() {
                            (super::empty("No records in this range."))
                        } @else {
                            p.muted { "Latest " (hits.len()) " of " (count(total)) " records" }
                            (table(t, &hits, &heading, &format!("graph-{}", t.as_str())))
                        }
                    }
                    Err(UiError::Api(s)) if s.code == 403 => {
                        div.notice.warn role="status" { p { "Not shown: " (s.message) } }
                    }
                    Err(e) => {
                        div.notice.error role="alert" { p { (e.explain().0) } }
                    }
                }
            }
        });
    }
    html! { @for p in parts { (p) } }.into_response()
}

/// A search filter as a `--where` line (for the "Open in" links).
fn filter_line(f: &Value) -> Option<String> {
    let field = f["field"].as_str()?;
    if let Some(v) = f["equals"].as_str() {
        return Some(format!("{field}={v}"));
    }
    let vals: Vec<&str> = f["in"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    Some(format!("{field}={}", vals.join(",")))
}

fn fragment_error(e: &UiError) -> Response {
    let (title, body) = e.explain();
    (e.status(), html! { section.card { h2 { (title) } (body) } }).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        c: &str,
        sn: &str,
        sa: Option<&str>,
        dn: &str,
        da: Option<&str>,
        a: &str,
        n: u64,
    ) -> Row {
        Row {
            cluster: c.into(),
            sn: sn.into(),
            sa: sa.map(Into::into),
            dn: dn.into(),
            da: da.map(Into::into),
            action: a.into(),
            t: Totals {
                records: n,
                flows: n,
                bytes: n * 100,
                denied: if a == "deny" { n } else { 0 },
            },
        }
    }

    #[test]
    fn rows_walk_nested_terms_and_count_each_connection_once() {
        let leaf = |rp: &str, dt: &str, a: &str, n: u64| {
            json!({"key": rp, "dt": {"buckets": [{"key": dt, "a": {"buckets": [
                {"key": a, "doc_count": n, "bi": {"value": 10.0 * n as f64}, "bo": {"value": 5.0 * n as f64}, "f": {"value": n as f64}}]}}]}})
        };
        // shop -> payments: 4 allowed connections seen at both ends, 3 denied at the
        // destination (allowed out by the source), 1 denied at the source.
        let v = json!({"c": {"buckets": [{"key": "east", "s": {"buckets": [{"key": "shop",
        "d": {"buckets": [{"key": "payments", "rp": {"buckets": [
            {"key": "src", "dt": {"buckets": [
                {"key": "wep", "a": {"buckets": [
                    {"key": "allow", "doc_count": 7, "bi": {"value": 70.0}, "bo": {"value": 35.0}, "f": {"value": 7.0}},
                    {"key": "deny", "doc_count": 1, "bi": {"value": 0.0}, "bo": {"value": 60.0}, "f": {"value": 1.0}}]}}]}},
            {"key": "dst", "dt": {"buckets": [
                {"key": "wep", "a": {"buckets": [
                    {"key": "allow", "doc_count": 4, "bi": {"value": 40.0}, "bo": {"value": 20.0}, "f": {"value": 4.0}},
                    {"key": "deny", "doc_count": 3, "bi": {"value": 180.0}, "bo": {"value": 0.0}, "f": {"value": 3.0}}]}}]}},
        ]}}]}}]}}]}});
        let r = rows(&v, &["c", "s", "d"]);
        let base = row("east", "shop", None, "payments", None, "allow", 0);
        assert_eq!(
            r,
            vec![
                Row {
                    t: Totals {
                        records: 4,
                        flows: 4,
                        bytes: 60,
                        denied: 0
                    },
                    ..base.clone()
                },
                Row {
                    action: "deny".into(),
                    t: Totals {
                        records: 4,
                        flows: 4,
                        bytes: 240,
                        denied: 4
                    },
                    ..base
                },
            ],
            "the source's allowed records of pod-to-pod traffic are not counted again"
        );
        // Traffic to the internet is reported by the source only, and counts.
        let v = json!({"c": {"buckets": [{"key": "east", "s": {"buckets": [{"key": "shop",
            "d": {"buckets": [{"key": "-", "rp": {"buckets": [leaf("src", "net", "allow", 2)]}}]}}]}}]}});
        assert_eq!(rows(&v, &["c", "s", "d"])[0].t.records, 2);
    }

    #[test]
    fn expanding_draws_workloads_and_keeps_the_rest_at_namespace_level() {
        let ns = vec![
            row("east", "shop", None, "payments", None, "allow", 10),
            row("east", "shop", None, "payments", None, "deny", 2),
            row("east", "shop", None, "shop", None, "allow", 7),
        ];
        let out = vec![
            row(
                "east",
                "shop",
                Some("checkout-*"),
                "payments",
                Some("db-*"),
                "deny",
                2,
            ),
            row(
                "east",
                "shop",
                Some("checkout-*"),
                "payments",
                Some("api-*"),
                "allow",
                10,
            ),
            row(
                "east",
                "shop",
                Some("frontend-*"),
                "shop",
                Some("cart-*"),
                "allow",
                7,
            ),
        ];
        let expand: BTreeSet<_> = [("east".to_string(), "shop".to_string())].into();
        let g = build(&ns, &out, &[], &expand, false);
        let ids: Vec<&str> = g.nodes.keys().map(String::as_str).collect();
        assert_eq!(
            ids,
            [
                "n:east/payments",
                "n:east/shop",
                "w:east/shop/cart-*",
                "w:east/shop/checkout-*",
                "w:east/shop/frontend-*"
            ]
        );
        let deny = &g.edges[&(
            "w:east/shop/checkout-*".into(),
            "n:east/payments".into(),
            "deny".into(),
        )];
        assert_eq!(deny.denied, 2);
        assert_eq!(
            g.nodes["n:east/shop"].t.records,
            19 + 7,
            "compound totals are its workloads'"
        );
        // Both expanded: the deny edge joins two workloads, counted once.
        let both: BTreeSet<_> = [
            ("east".to_string(), "shop".to_string()),
            ("east".to_string(), "payments".to_string()),
        ]
        .into();
        let inr = vec![row(
            "east",
            "shop",
            Some("checkout-*"),
            "payments",
            Some("db-*"),
            "deny",
            2,
        )];
        let g = build(&ns, &out, &inr, &both, true);
        let e = &g.edges[&(
            "w:east/shop/checkout-*".into(),
            "w:east/payments/db-*".into(),
            "deny".into(),
        )];
        assert_eq!(e.records, 2);
        assert!(
            g.nodes.contains_key("c:east"),
            "all clusters: cluster compound nodes"
        );
        assert_eq!(g.nodes["n:east/shop"].parent.as_deref(), Some("c:east"));
    }

    #[test]
    fn many_namespaces_collapse_into_other() {
        let ns: Vec<Row> = (0..MAX_NAMESPACES + 5)
            .map(|i| {
                row(
                    "east",
                    &format!("ns{i:02}"),
                    None,
                    "db",
                    None,
                    "allow",
                    100 - i as u64,
                )
            })
            .collect();
        let g = build(&ns, &[], &[], &BTreeSet::new(), false);
        let other = &g.nodes["o:east"];
        assert_eq!(
            other.namespaces.len(),
            6,
            "the 6 smallest merge (db is the biggest)"
        );
        assert!(g.nodes.len() <= MAX_NAMESPACES + 1);
        assert_eq!(g.notes.len(), 1);
        let sum: u64 = g.edges.values().map(|t| t.records).sum();
        assert_eq!(
            sum,
            ns.iter().map(|r| r.t.records).sum::<u64>(),
            "no traffic lost"
        );
    }

    #[test]
    fn focus_becomes_filters() {
        let st = UrlState::parse(Some(
            "focus=edge&focus_cluster=east&src_ns=shop&src_wl=checkout-*&dst_ns=payments&dst_wl=db-*&action=deny",
        ));
        let f = Focus::parse(&st);
        assert_eq!(f.cluster.as_deref(), Some("east"));
        let s = sections(&f);
        assert_eq!(s[0].1, LogType::Flows);
        assert!(
            s[0].2
                .contains(&json!({"field": "action", "equals": "deny"}))
        );
        assert!(
            s[0].2
                .contains(&json!({"field": "dest_name_aggr", "equals": "db-*"}))
        );
        assert_eq!(
            filter_line(&s[0].2[0]).as_deref(),
            Some("source_namespace=shop")
        );
        let st = UrlState::parse(Some("focus=node&ns=a,b"));
        let s = sections(&Focus::parse(&st));
        assert_eq!(
            s[0].2,
            vec![json!({"field": "source_namespace", "in": ["a", "b"]})]
        );
    }
}
