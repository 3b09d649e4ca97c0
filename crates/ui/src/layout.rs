//! The frame of every page: the banner (brand, navigation, the cluster selector, who is
//! signed in) around the page's own content.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::assets::VERSION;
use crate::ctx::{Ctx, Nav, Page};
use crate::pages::picker;
use crate::url_state::ALL;

/// `<head>` contents shared by every page, the sign-in page included.
pub(crate) fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        // htmx must not add inline styles or evaluate code: the CSP forbids both.
        meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyCacheSize":0}"#;
        title { (title) " · Cattery" }
        link rel="icon" href={ "/ui/assets/favicon.svg?v=" (VERSION) } type="image/svg+xml";
        link rel="stylesheet" href={ "/ui/assets/app.css?v=" (VERSION) };
        script src={ "/ui/assets/htmx-2.0.11.min.js" } defer {}
        script src={ "/ui/assets/app.js?v=" (VERSION) } defer {}
    }
}

fn nav_items(ctx: &Ctx) -> Vec<(String, &'static str, Nav)> {
    let s = &ctx.state;
    let timeline = s.cluster.as_deref() == Some(cattery_api::MANAGEMENT_CLUSTER_NAME);
    vec![
        (s.link("/ui/overview"), "Overview", Nav::Overview),
        (s.link("/ui/clusters"), "Clusters", Nav::Clusters),
        (s.link("/ui/graph"), "Service graph", Nav::Graph),
        (s.link("/ui/logs/flows"), "Flows", Nav::Logs("flows")),
        (s.link("/ui/logs/dns"), "DNS", Nav::Logs("dns")),
        (s.link("/ui/logs/l7"), "L7", Nav::Logs("l7")),
        (
            s.link("/ui/logs/audit"),
            if timeline { "Timeline" } else { "Audit" },
            Nav::Logs("audit"),
        ),
        (s.link("/ui/policies"), "Policies", Nav::Policies),
        (s.link("/ui/access"), "Access", Nav::Access),
    ]
}

/// The cluster selector: a filter box and a `<select>` named "Cluster", in a GET form
/// that keeps the rest of the URL state. Lists at most [`crate::ctx::PICKER_MAX`]
/// clusters; beyond them the filter box searches on the server ([`picker`]).
async fn cluster_picker(ctx: &Ctx) -> Markup {
    let first = ctx.first_clusters().await;
    let management = ctx.sees_management().await;
    let current = match ctx.state.cluster.clone() {
        Some(c) => c,
        None => ctx
            .selection()
            .await
            .map(|s| s.value().to_string())
            .unwrap_or_else(|_| ALL.into()),
    };
    let current_known = match &first {
        Ok((list, more)) => {
            current == ALL
                || current == cattery_api::MANAGEMENT_CLUSTER_NAME
                || list.iter().any(|c| c.metadata.name == current)
                || (*more && ctx.selection().await.is_ok())
        }
        Err(_) => false,
    };
    let s = &ctx.state;
    html! {
        form.picker method="get" action=(ctx.path) {
            @if let Some(r) = &s.range { input type="hidden" name="range" value=(r); }
            @for f in &s.filters { input type="hidden" name="where" value=(f); }
            @if !s.q.is_empty() { input type="hidden" name="q" value=(s.q); }
            label.sr-only for="cluster-filter" { "Filter clusters" }
            input #cluster-filter type="search" placeholder="Filter…" autocomplete="off"
                data-filters="cluster-select" size="8";
            label for="cluster-select" { "Cluster" }
            @match &first {
                Ok((list, more)) => {
                    select #cluster-select name="cluster" data-autosubmit
                        data-search=[more.then_some(picker::SEARCH_PATH)]
                        data-current=[more.then_some(&current)] {
                        (picker::options(&picker::Offer {
                            clusters: list,
                            more: *more,
                            all: list.len() > 1 || *more || management || list.is_empty(),
                            management,
                            current: &current,
                            current_known,
                        }))
                    }
                }
                Err(_) => {
                    select #cluster-select name="cluster" disabled { option { "server unreachable" } }
                }
            }
            button.small type="submit" { "Go" }
        }
    }
}

/// The whole page.
pub(crate) async fn shell(ctx: &Ctx, page: &Page) -> Markup {
    let picker = cluster_picker(ctx).await;
    let csrf_header = format!(r#"{{"X-CSRF-Token": "{}"}}"#, ctx.session.csrf);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head(&page.title))
                @for s in page.scripts {
                    script src={ "/ui/assets/" (s) } defer {}
                }
            }
            body hx-headers=(csrf_header) {
                a.skip href="#main" { "Skip to content" }
                header.banner {
                    a.brand href=(ctx.state.link("/ui/overview")) aria-label="Cattery overview" {
                        img src={ "/ui/assets/favicon.svg?v=" (VERSION) } alt="" width="22" height="22";
                        span { "Cattery" }
                    }
                    nav aria-label="Main" {
                        ul {
                            @for (href, label, key) in nav_items(ctx) {
                                li { a href=(href) aria-current=[(key == page.nav).then_some("page")] { (label) } }
                            }
                        }
                    }
                    div.banner-right {
                        (picker)
                        div.who {
                            span.user title={ "Groups: " (ctx.session.groups.join(", ")) } { (ctx.session.user) }
                            form method="post" action="/ui/sign-out" {
                                input type="hidden" name="_csrf" value=(ctx.session.csrf);
                                button.small.ghost type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (page.title) }
                    (page.body)
                }
                div #live-status.sr-only role="status" aria-live="polite" {}
                (PreEscaped(""))
            }
        }
    }
}
