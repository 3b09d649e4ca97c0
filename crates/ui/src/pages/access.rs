//! Access: who I am, my groups, and what I may do per cluster and log type (each cell a
//! `SelfSubjectAccessReview`, so the answer is the API's own), so a 403 is never a mystery.

use axum::response::Response;
use cattery_api::MANAGEMENT_CLUSTER_NAME;
use maud::html;
use serde_json::Value;

use crate::ctx::{Ctx, Nav, Page};
use crate::error::UiError;

/// Most clusters in the matrix.
const MAX_ROWS: usize = 50;

/// `GET /ui/access`.
pub(crate) async fn page(ctx: Ctx) -> Response {
    let r = render(&ctx).await;
    ctx.finish(r).await
}

async fn render(ctx: &Ctx) -> Result<Page, UiError> {
    let me: Value = ctx
        .api
        .post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            &serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        )
        .await?;
    let info = &me["status"]["userInfo"];
    let groups: Vec<&str> = info["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let by = info["extra"]["cattery.dev/authenticated-by"][0]
        .as_str()
        .unwrap_or("");
    let mut names: Vec<String> = vec![MANAGEMENT_CLUSTER_NAME.into()];
    names.extend(
        ctx.first_clusters()
            .await?
            .0
            .iter()
            .take(MAX_ROWS)
            .map(|c| c.metadata.name.clone()),
    );
    let cols = ["flows", "dns", "l7", "audit"];
    let mut rows = vec![];
    for n in &names {
        let mut cells = vec![];
        for t in cols {
            cells.push(
                ctx.api
                    .can_i("get", "logs.cattery.dev", t, None, Some(n))
                    .await?,
            );
        }
        if n != MANAGEMENT_CLUSTER_NAME {
            cells.push(
                ctx.api
                    .can_i(
                        "get",
                        "cattery.dev",
                        "managedclusters",
                        Some("proxy"),
                        Some(n),
                    )
                    .await?,
            );
            cells.push(
                ctx.api
                    .can_i("delete", "cattery.dev", "managedclusters", None, Some(n))
                    .await?,
            );
        }
        rows.push((n.clone(), cells));
    }
    let global = [
        ("Add clusters", "create", "cattery.dev", "managedclusters"),
        (
            "List all clusters",
            "list",
            "cattery.dev",
            "managedclusters",
        ),
        ("Manage tokens", "create", "cattery.dev", "tokens"),
        (
            "Manage RBAC",
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
        ),
    ];
    let mut global_answers = vec![];
    for (label, verb, group, res) in global {
        global_answers.push((label, ctx.api.can_i(verb, group, res, None, None).await?));
    }
    let cell = |(allowed, reason): &(bool, String)| {
        html! {
            td.(if *allowed { "yes" } else { "no" }) title=(reason) {
                (if *allowed { "✓ yes" } else { "✗ no" })
                span.sr-only { ": " (reason) }
            }
        }
    };
    let body = html! {
        div.grid.two {
            section.card {
                h2 { "Who I am" }
                dl.kv {
                    dt { "User" } dd { strong { (info["username"].as_str().unwrap_or("")) } }
                    dt { "Groups" } dd { @if groups.is_empty() { span.muted { "none" } } @for g in &groups { span.chip { (g) } " " } }
                    dt { "Signed in with" } dd { (by) }
                }
            }
            section.card {
                h2 { "Everywhere" }
                table.data.matrix {
                    caption.sr-only { "Permissions not tied to a cluster" }
                    tbody { @for (label, a) in &global_answers { tr { th scope="row" { (label) } (cell(a)) } } }
                }
            }
        }
        section.card {
            h2 { "Per cluster" }
            p.muted { "Each answer is the API's own decision (a SelfSubjectAccessReview); hover a cell for the rule that decided it." }
            table.data.matrix {
                caption.sr-only { "What I may do per cluster" }
                thead { tr {
                    th scope="col" { "Cluster" }
                    @for t in cols { th scope="col" { "Read " (t) " logs" } }
                    th scope="col" { "Reach its API (proxy)" }
                    th scope="col" { "Remove it" }
                } }
                tbody {
                    @for (n, cells) in &rows {
                        tr {
                            th scope="row" { (n) @if n == MANAGEMENT_CLUSTER_NAME { span.muted { " (management plane)" } } }
                            @for c in cells { (cell(c)) }
                            @if n == MANAGEMENT_CLUSTER_NAME { td.muted { "–" } td.muted { "–" } }
                        }
                    }
                }
            }
        }
    };
    Ok(Page::new("Access", Nav::Access, body))
}
