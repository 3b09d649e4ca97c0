//! Policies: the selected cluster's NetworkPolicies (and Calico's `projectcalico.org`
//! NetworkPolicy / GlobalNetworkPolicy where the cluster serves them), read live through
//! the cluster proxy as the signed-in person (`/clusters/NAME/k8s/...` through the API
//! router, so RBAC and the audit trail apply), with a YAML view and export, and per policy
//! how many flows it allowed and denied in the time range — a terms aggregation over the
//! stored flows' `policies.enforced_policies`, never raw records.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::{Value, json};

use crate::api::enc;
use crate::ctx::{Ctx, Nav, Page, Selection, is_connected};
use crate::error::UiError;
use crate::fmt::count;
use crate::pages::logs::{disconnected_notice, search_body};

/// Distinct policy entries counted per request.
const MAX_ENTRIES: usize = 2000;

/// The kinds of policy shown, as (label, API path under the proxy, group).
const KINDS: &[(&str, &str, &str)] = &[
    (
        "NetworkPolicy",
        "/apis/networking.k8s.io/v1/networkpolicies",
        "networking.k8s.io",
    ),
    (
        "Calico NetworkPolicy",
        "/apis/projectcalico.org/v3/networkpolicies",
        "projectcalico.org",
    ),
    (
        "Calico GlobalNetworkPolicy",
        "/apis/projectcalico.org/v3/globalnetworkpolicies",
        "projectcalico.org",
    ),
];

/// Which policy a Felix `policies` entry names: (kind label, namespace, name).
/// Entries are `<index>|<tier>|<name>|<action>|<rule>`; Kubernetes policies are
/// `<ns>/knp.default.<name>`, Calico's `<ns>/<tier>.<name>` or (global) `<tier>.<name>`,
/// profiles `__PROFILE__.kns.<ns>` (not a policy: the namespace's default).
pub(crate) fn parse_entry(entry: &str) -> Option<((&'static str, String, String), String)> {
    let parts: Vec<&str> = entry.split('|').collect();
    let [_, tier, name, action, ..] = parts[..] else {
        return None;
    };
    let action = action.to_string();
    if tier == "__PROFILE__" || name.contains("staged:") {
        return None;
    }
    let strip_tier = |n: &str| n.strip_prefix(&format!("{tier}.")).unwrap_or(n).to_string();
    Some(match name.split_once('/') {
        Some((ns, rest)) => match rest.strip_prefix("knp.default.") {
            Some(n) => (("NetworkPolicy", ns.to_string(), n.to_string()), action),
            None => (
                ("Calico NetworkPolicy", ns.to_string(), strip_tier(rest)),
                action,
            ),
        },
        None => (
            (
                "Calico GlobalNetworkPolicy",
                String::new(),
                strip_tier(name),
            ),
            action,
        ),
    })
}

/// Allowed / denied / passed flow records per policy.
#[derive(Default, Debug, Clone, Copy, PartialEq)]
pub(crate) struct Hits {
    allow: u64,
    deny: u64,
    pass: u64,
}

type Key = (&'static str, String, String);

/// Hit counts from the terms aggregation's buckets.
fn hits_of(aggs: &Value) -> BTreeMap<Key, Hits> {
    let mut out: BTreeMap<Key, Hits> = BTreeMap::new();
    for b in aggs["p"]["buckets"].as_array().into_iter().flatten() {
        let (Some(entry), Some(n)) = (b["key"].as_str(), b["doc_count"].as_u64()) else {
            continue;
        };
        let Some((key, action)) = parse_entry(entry) else {
            continue;
        };
        let h = out.entry(key).or_default();
        match action.as_str() {
            "allow" => h.allow += n,
            "deny" => h.deny += n,
            _ => h.pass += n,
        }
    }
    out
}

/// `GET /ui/policies`.
pub(crate) async fn page(ctx: Ctx) -> Response {
    let r = render(&ctx).await;
    ctx.finish(r).await
}

/// What reading policies live gave.
enum Live {
    /// Policies per kind, and whether Calico's API is served.
    Read(Vec<(&'static str, Value)>, bool),
    /// A refusal or failure, shown as the reason.
    Failed(UiError),
}

fn proxy_path(cluster: &str, rest: &str) -> String {
    format!("/clusters/{}/k8s{rest}", enc(cluster))
}

async fn read_live(ctx: &Ctx, cluster: &str) -> Live {
    let groups: Value = match ctx.api.get(&proxy_path(cluster, "/apis")).await {
        Ok(v) => v,
        Err(e) => return Live::Failed(e),
    };
    let calico = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|g| g["name"] == "projectcalico.org");
    let mut out = vec![];
    for (kind, path, group) in KINDS {
        if *group == "projectcalico.org" && !calico {
            continue;
        }
        match ctx.api.get::<Value>(&proxy_path(cluster, path)).await {
            Ok(list) => {
                for item in list["items"].as_array().into_iter().flatten() {
                    out.push((*kind, item.clone()));
                }
            }
            Err(e) => return Live::Failed(e),
        }
    }
    out.sort_by(|a, b| {
        (a.0, meta(&a.1, "namespace"), meta(&a.1, "name")).cmp(&(
            b.0,
            meta(&b.1, "namespace"),
            meta(&b.1, "name"),
        ))
    });
    Live::Read(out, calico)
}

fn meta<'a>(v: &'a Value, k: &str) -> &'a str {
    v["metadata"][k].as_str().unwrap_or("")
}

/// The object as it is exported: without server bookkeeping.
fn exported(kind: &str, v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "generation",
            "selfLink",
        ] {
            m.remove(k);
        }
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
            if a.is_empty() {
                m.remove("annotations");
            }
        }
    }
    if v.get("kind").is_none() {
        let (api, k) = match kind {
            "NetworkPolicy" => ("networking.k8s.io/v1", "NetworkPolicy"),
            "Calico NetworkPolicy" => ("projectcalico.org/v3", "NetworkPolicy"),
            _ => ("projectcalico.org/v3", "GlobalNetworkPolicy"),
        };
        v["apiVersion"] = json!(api);
        v["kind"] = json!(k);
    }
    v
}

fn yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# not shown as YAML: {e}\n{v}"))
}

/// `matchLabels` of a selector as `k=v, …` (or the Calico selector string).
fn selects(kind: &str, v: &Value) -> String {
    if kind != "NetworkPolicy" {
        return v["spec"]["selector"]
            .as_str()
            .unwrap_or("all()")
            .to_string();
    }
    let sel = &v["spec"]["podSelector"];
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        parts.push(format!(
            "{} {} {}",
            e["key"].as_str().unwrap_or(""),
            e["operator"].as_str().unwrap_or(""),
            e["values"]
        ));
    }
    if parts.is_empty() {
        "all pods".into()
    } else {
        parts.join(", ")
    }
}

fn types(v: &Value) -> String {
    v["spec"]["policyTypes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "Ingress".into())
}

async fn render(ctx: &Ctx) -> Result<Page, UiError> {
    let sel = ctx.selection().await?;
    let cluster = match &sel {
        Selection::Managed(c) => c.clone(),
        Selection::All => {
            let (clusters, more) = ctx.first_clusters().await?;
            let body = html! {
                div.notice role="status" {
                    p { "Policies belong to one cluster: choose it in the Cluster selector, or here." }
                    @if clusters.is_empty() { p { "You may see no managed clusters." } }
                    ul { @for c in clusters.iter() {
                        li { a href=({ let mut s = ctx.state.common(); s.cluster = Some(c.metadata.name.clone()); s.link("/ui/policies") }) { (c.metadata.name) } }
                    } }
                    @if more { p.muted { "More clusters exist: type a name in the Cluster selector’s filter." } }
                }
            };
            return Ok(Page::new("Policies", Nav::Policies, body));
        }
        Selection::Management => {
            let body = html! { div.notice role="status" { p { "The management plane (cluster) has no network policies: choose a managed cluster." } } };
            return Ok(Page::new("Policies", Nav::Policies, body));
        }
    };
    let name = cluster.metadata.name.clone();
    let state = &ctx.state;
    // Hit counts from stored flows (also while the cluster is disconnected).
    let mut errors = vec![];
    let mut hits: Result<BTreeMap<Key, Hits>, UiError> = Ok(BTreeMap::new());
    match search_body(state, &sel, &[]) {
        Err(e) => errors = e,
        Ok(mut body) => {
            body["size"] = json!(0);
            body["aggs"] = json!({"p": {"terms": {"field": "policies.enforced_policies", "size": MAX_ENTRIES}}});
            hits = ctx
                .api
                .post::<Value>("/apis/logs.cattery.dev/v1/flows/search", &body)
                .await
                .map(|v| hits_of(&v["aggregations"]));
        }
    }
    let live = if is_connected(&cluster) {
        read_live(ctx, &name).await
    } else {
        Live::Failed(UiError::Api(Box::new(cattery_api::Status::failure(
            503,
            format!("cluster {name} is disconnected: its policies cannot be read live"),
        ))))
    };
    let hit_map = hits.as_ref().ok();
    let export_all = format!("/ui/policies/export?cluster={}", enc(&name));
    let listed: Vec<Key> = match &live {
        Live::Read(items, _) => items
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    meta(v, "namespace").to_string(),
                    meta(v, "name").to_string(),
                )
            })
            .collect(),
        Live::Failed(_) => vec![],
    };
    let live_section = match &live {
        Live::Failed(UiError::Api(s)) if s.code == 403 => html! {
            div.notice.error role="alert" {
                p { strong { "You may not read this cluster's policies." } }
                p.reason { (s.message) }
                p { "See " a href="/ui/access" { "Access" } " for what you may do." }
            }
        },
        Live::Failed(UiError::Api(s)) if s.code == 503 || s.code == 502 => html! {
            div.notice.warn role="alert" {
                p { strong { "Cluster " (name) " cannot be reached: policies are not shown." } }
                p.reason { (s.message) }
                p { "Hit counts from stored flows are below." }
            }
        },
        Live::Failed(UiError::SignedOut) => return Err(UiError::SignedOut),
        Live::Failed(e) => html! { div.notice.error role="alert" { p { (e.explain().0) } } },
        Live::Read(items, calico) => html! {
            @if !calico {
                p.muted #calico-note { "This cluster does not serve the projectcalico.org API (no Calico API server): only Kubernetes NetworkPolicies are shown." }
            }
            @if items.is_empty() {
                (super::empty(&format!("Cluster {name} has no network policies.")))
            } @else {
                table.data #policies {
                    caption.sr-only { "Network policies of " (name) }
                    thead { tr {
                        th scope="col" { "Kind" } th scope="col" { "Namespace" } th scope="col" { "Name" }
                        th scope="col" { "Selects" } th scope="col" { "Types" }
                        th.num scope="col" { "Allowed" } th.num scope="col" { "Denied" }
                        th scope="col" { span.sr-only { "YAML" } }
                    } }
                    tbody {
                        @for (kind, item) in items {
                            @let ns = meta(item, "namespace").to_string();
                            @let n = meta(item, "name").to_string();
                            @let key: Key = (*kind, ns.clone(), n.clone());
                            @let h = hit_map.and_then(|m| m.get(&key)).copied().unwrap_or_default();
                            @let y = yaml(&exported(kind, item));
                            tr data-policy={ (kind) "/" (ns) "/" (n) } {
                                td { (kind) } td { (if ns.is_empty() { "–" } else { &ns }) }
                                th scope="row" { (n) }
                                td { code { (selects(kind, item)) } }
                                td { (types(item)) }
                                td.num data-field="allowed" { (count(h.allow)) }
                                td.num data-field="denied" { span class=(if h.deny > 0 { "bad-text" } else { "" }) { (count(h.deny)) } }
                                td {
                                    details {
                                        summary { "YAML" }
                                        pre.record.policy-yaml { (y) }
                                        a.button.small.ghost download={ (n) ".yaml" }
                                            href=({ format!("{export_all}&kind={}&namespace={}&name={}", enc(kind), enc(&ns), enc(&n)) }) { "Download" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    };
    let stale: Vec<(&Key, &Hits)> = match (&live, hit_map) {
        (Live::Read(..), Some(m)) => m.iter().filter(|(k, _)| !listed.contains(k)).collect(),
        (_, Some(m)) => m.iter().collect(),
        _ => vec![],
    };
    let live_ok = matches!(live, Live::Read(..));
    let body = html! {
        (disconnected_notice(&sel))
        (super::filter_bar(state, "/ui/policies", "source_namespace=shop", &errors, &[]))
        div.toolbar {
            p.summary role="status" { "Hit counts: flow records of " (name) " in " (state.range().map(|r| r.1).unwrap_or("Last hour")) " whose enforced policies name the policy (each reporting end counts)." }
            @if live_ok { div.actions { a.button.ghost href=(export_all) download={ (name) "-policies.yaml" } { "Export YAML" } } }
        }
        @if let Err(e) = &hits {
            div.notice.warn role="status" { p { "Hit counts are not shown: " (match e { UiError::Api(s) => s.message.clone(), e => e.explain().0 }) } }
        }
        section.card { (live_section) }
        @if !stale.is_empty() {
            section.card {
                h2 { @if live_ok { "In flows, but not in the cluster now" } @else { "Policies seen in stored flows" } }
                table.data #policy-hits {
                    caption.sr-only { "Policies named by stored flows" }
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "Namespace" } th scope="col" { "Name" } th.num scope="col" { "Allowed" } th.num scope="col" { "Denied" } } }
                    tbody { @for ((kind, ns, n), h) in &stale { tr data-policy={ (kind) "/" (ns) "/" (n) } {
                        td { (kind) } td { (ns) } th scope="row" { (n) }
                        td.num data-field="allowed" { (count(h.allow)) } td.num data-field="denied" { (count(h.deny)) }
                    } } }
                }
            }
        }
    };
    let mut p = Page::new(format!("Policies of {name}"), Nav::Policies, body);
    if !errors.is_empty() {
        p.status = http::StatusCode::BAD_REQUEST;
    }
    Ok(p)
}

/// `GET /ui/policies/export?cluster=NAME[&kind=K&namespace=NS&name=N]`: the cluster's
/// policies (or one) as YAML, read live through the proxy as the signed-in person.
pub(crate) async fn export(ctx: Ctx) -> Response {
    let sel = match ctx.selection().await {
        Ok(Selection::Managed(c)) => c,
        Ok(_) => {
            return (
                http::StatusCode::BAD_REQUEST,
                "choose one managed cluster (cluster=NAME) to export its policies\n",
            )
                .into_response();
        }
        Err(e) => return ctx.finish(Err(e)).await,
    };
    let name = sel.metadata.name.clone();
    let items = match read_live(&ctx, &name).await {
        Live::Read(items, _) => items,
        Live::Failed(e) => return ctx.finish(Err(e)).await,
    };
    let want = (
        ctx.state.get("kind"),
        ctx.state.get("namespace"),
        ctx.state.get("name"),
    );
    let chosen: Vec<String> = items
        .iter()
        .filter(|(k, v)| {
            want.0.is_none_or(|w| w == *k)
                && want.1.is_none_or(|w| w == meta(v, "namespace"))
                && want.2.is_none_or(|w| w == meta(v, "name"))
        })
        .map(|(k, v)| yaml(&exported(k, v)))
        .collect();
    if chosen.is_empty() && want.2.is_some() {
        return ctx
            .finish(Err(UiError::NotFound {
                what: "policy",
                name: format!("{}/{}", want.1.unwrap_or(""), want.2.unwrap_or("")),
                hint: format!("See the policies of {name} on the Policies page."),
            }))
            .await;
    }
    let file = match want.2 {
        Some(n) => format!("{n}.yaml"),
        None => format!("{name}-policies.yaml"),
    };
    (
        [
            (http::header::CONTENT_TYPE, "application/yaml".to_string()),
            (
                http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", file.replace('"', "")),
            ),
        ],
        chosen.join("---\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn felix_entries_name_policies() {
        assert_eq!(
            parse_entry("0|default|payments/knp.default.db-allow-api|deny|-1"),
            Some((
                ("NetworkPolicy", "payments".into(), "db-allow-api".into()),
                "deny".into()
            ))
        );
        assert_eq!(
            parse_entry("1|security|shop/security.no-egress|allow|0")
                .unwrap()
                .0,
            ("Calico NetworkPolicy", "shop".into(), "no-egress".into())
        );
        assert_eq!(
            parse_entry("0|default|default.global-deny|deny|0")
                .unwrap()
                .0,
            (
                "Calico GlobalNetworkPolicy",
                String::new(),
                "global-deny".into()
            )
        );
        assert_eq!(
            parse_entry("0|__PROFILE__|__PROFILE__.kns.shop|allow|0"),
            None
        );
        assert_eq!(parse_entry("garbage"), None);
        let aggs = json!({"p": {"buckets": [
            {"key": "0|default|payments/knp.default.db-allow-api|deny|-1", "doc_count": 4},
            {"key": "0|default|payments/knp.default.db-allow-api|allow|0", "doc_count": 6},
            {"key": "0|__PROFILE__|__PROFILE__.kns.shop|allow|0", "doc_count": 9},
        ]}});
        let h = hits_of(&aggs);
        assert_eq!(h.len(), 1);
        let k: Key = ("NetworkPolicy", "payments".into(), "db-allow-api".into());
        assert_eq!(
            h[&k],
            Hits {
                allow: 6,
                deny: 4,
                pass: 0
            }
        );
    }

    #[test]
    fn export_drops_server_bookkeeping_and_names_the_kind() {
        let v = json!({"metadata": {"name": "p", "namespace": "shop", "resourceVersion": "7",
            "managedFields": [{}], "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"podSelector": {"matchLabels": {"app": "cart"}}}});
        let e = exported("NetworkPolicy", &v);
        assert_eq!(e["kind"], "NetworkPolicy");
        assert_eq!(e["apiVersion"], "networking.k8s.io/v1");
        assert!(e["metadata"].get("managedFields").is_none());
        assert!(e["metadata"].get("annotations").is_none());
        assert_eq!(selects("NetworkPolicy", &e), "app=cart");
        assert!(yaml(&e).contains("name: p"));
    }
}
