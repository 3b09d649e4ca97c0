//! The banner's cluster selector: which options it offers, and the search behind its
//! filter box once the fleet is larger than the selector lists.
//!
//! A page lists at most [`PICKER_MAX`] clusters in the selector (the first by name), so
//! every page costs the same at 10 clusters and at 10,000. When there are more, the
//! selector carries `data-search`, and `app.js` sends what is typed in the filter box to
//! `GET /ui/cluster-options?q=&current=`, which answers the matching options (at most
//! [`PICKER_MAX`] again) as an HTML fragment to replace the selector's own.

use axum::response::{IntoResponse, Response};
use cattery_api::{MANAGEMENT_CLUSTER_NAME, ManagedCluster};
use maud::{Markup, html};

use crate::ctx::{Ctx, PICKER_MAX, is_connected};
use crate::url_state::ALL;

/// The URL the filter box asks when the selector does not list every cluster.
pub(crate) const SEARCH_PATH: &str = "/ui/cluster-options";

/// What the selector lists.
pub(crate) struct Offer<'a> {
    /// Clusters to list, by name (at most [`PICKER_MAX`]).
    pub(crate) clusters: &'a [ManagedCluster],
    /// Whether more clusters match than are listed.
    pub(crate) more: bool,
    /// Whether `All clusters` is offered.
    pub(crate) all: bool,
    /// Whether the management plane (`cluster`) is offered.
    pub(crate) management: bool,
    /// The selected value (kept as an option even when not among `clusters`).
    pub(crate) current: &'a str,
    /// Whether `current` is known to exist (false: shown as "not available").
    pub(crate) current_known: bool,
}

/// The `<option>`s of the selector.
pub(crate) fn options(o: &Offer) -> Markup {
    let listed = |name: &str| o.clusters.iter().any(|c| c.metadata.name == name);
    html! {
        @if o.all {
            option value=(ALL) selected[o.current == ALL] { "All clusters" }
        }
        @if o.management {
            option value=(MANAGEMENT_CLUSTER_NAME) selected[o.current == MANAGEMENT_CLUSTER_NAME] { "cluster (management plane)" }
        }
        @if o.current != ALL && o.current != MANAGEMENT_CLUSTER_NAME && !listed(o.current) {
            option value=(o.current) selected {
                (o.current) @if !o.current_known { " (not available)" }
            }
        }
        @for c in o.clusters {
            @let up = is_connected(c);
            option value=(c.metadata.name) selected[o.current == c.metadata.name]
                data-connected=(up) {
                (if up { "● " } else { "○ " }) (c.metadata.name)
                (if up { " (connected)" } else { " (disconnected)" })
            }
        }
        @if o.more {
            option disabled value="" { "… more clusters: type in the filter to find them" }
        }
    }
}

/// `GET /ui/cluster-options?q=TEXT&current=NAME`: the selector's options for clusters
/// whose name contains `TEXT` (case-insensitive), at most [`PICKER_MAX`], read through
/// the API as the signed-in person like every page.
pub(crate) async fn search(ctx: Ctx) -> Response {
    let q = ctx.state.q.trim().to_ascii_lowercase();
    let current = ctx.state.get("current").unwrap_or(ALL).to_string();
    let management = ctx.sees_management().await;
    let markup = match ctx.clusters().await {
        Ok(all) => {
            let mut hits = all
                .iter()
                .filter(|c| c.metadata.name.to_ascii_lowercase().contains(&q));
            let shown: Vec<ManagedCluster> = hits.by_ref().take(PICKER_MAX).cloned().collect();
            let more = hits.next().is_some();
            let hit = |name: &str| q.is_empty() || name.contains(&q);
            options(&Offer {
                clusters: &shown,
                more,
                all: hit("all clusters"),
                management: management && hit("cluster (management plane)"),
                current: &current,
                current_known: true,
            })
        }
        Err(_) => html! { option disabled value="" { "server unreachable" } },
    };
    (
        [
            (http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        markup,
    )
        .into_response()
}
