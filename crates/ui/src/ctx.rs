//! The per-request context of a signed-in page: the session, an API caller presenting its
//! token, the URL state, and the clusters this person may see.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Redirect, Response};
use cattery_api::{List, MANAGEMENT_CLUSTER_NAME, ManagedCluster};
use maud::Markup;
use tokio::sync::OnceCell;

use crate::Ui;
use crate::api::{Caller, enc};
use crate::error::UiError;
use crate::session::{self, Session};
use crate::url_state::{ALL, UrlState};

/// Most clusters the banner's selector lists; beyond them, typing in its filter asks the
/// server ([`crate::pages::cluster_options`]).
pub(crate) const PICKER_MAX: usize = 100;

/// Which part of the UI a page belongs to (for the navigation's current item).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Clusters,
    Graph,
    Logs(&'static str),
    Policies,
    Access,
    None,
}

/// A rendered page body and how to frame it.
pub(crate) struct Page {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) body: Markup,
    pub(crate) status: http::StatusCode,
    /// Extra scripts (asset names) the page needs.
    pub(crate) scripts: &'static [&'static str],
}

impl Page {
    pub(crate) fn new(title: impl Into<String>, nav: Nav, body: Markup) -> Page {
        Page {
            title: title.into(),
            nav,
            body,
            status: http::StatusCode::OK,
            scripts: &[],
        }
    }
}

/// What is selected in the banner.
#[derive(Clone, Debug)]
pub(crate) enum Selection {
    /// Every cluster this person may read.
    All,
    /// The management plane itself (`cluster`).
    Management,
    /// One managed cluster, as the API reported it.
    Managed(Box<ManagedCluster>),
}

impl Selection {
    /// The `clusters` of a log search.
    pub(crate) fn log_clusters(&self) -> Vec<String> {
        match self {
            Selection::All => vec!["*".into()],
            Selection::Management => vec![MANAGEMENT_CLUSTER_NAME.into()],
            Selection::Managed(c) => vec![c.metadata.name.clone()],
        }
    }

    /// The URL value.
    pub(crate) fn value(&self) -> &str {
        match self {
            Selection::All => ALL,
            Selection::Management => MANAGEMENT_CLUSTER_NAME,
            Selection::Managed(c) => &c.metadata.name,
        }
    }

    /// How to name it in a sentence.
    pub(crate) fn describe(&self) -> String {
        match self {
            Selection::All => "all clusters".into(),
            Selection::Management => "the management plane (cluster)".into(),
            Selection::Managed(c) => format!("cluster {}", c.metadata.name),
        }
    }
}

/// Whether a managed cluster's tunnel is up.
pub(crate) fn is_connected(c: &ManagedCluster) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.connected())
        .is_some_and(|c| c.status == cattery_api::ConditionStatus::True)
}

/// Clusters counted by the API (see [`Ctx::cluster_counts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClusterCounts {
    /// All the clusters this person may list.
    pub(crate) total: u64,
    /// Those whose `ManagedClusterConnected` condition is `True`.
    pub(crate) connected: u64,
}

/// A signed-in request.
pub(crate) struct Ctx {
    pub(crate) ui: Arc<Ui>,
    pub(crate) session_id: String,
    pub(crate) session: Session,
    pub(crate) api: Caller,
    pub(crate) state: UrlState,
    /// Path and query of this request (where to come back after signing in again).
    pub(crate) here: String,
    /// Path of this request.
    pub(crate) path: String,
    clusters: OnceCell<Vec<ManagedCluster>>,
    management: OnceCell<bool>,
}

/// Where to go to sign in and come back to `here`.
pub(crate) fn sign_in_redirect(here: &str) -> Response {
    Redirect::to(&format!("/ui/sign-in?next={}", enc(here))).into_response()
}

impl FromRequestParts<Arc<Ui>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        ui: &Arc<Ui>,
    ) -> Result<Self, Self::Rejection> {
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let found = session::cookie(&parts.headers, session::COOKIE)
            .and_then(|id| ui.sessions.get(&id).map(|s| (id, s)));
        let Some((session_id, session)) = found else {
            return Err(sign_in_redirect(&here));
        };
        let Some(session) =
            crate::refresh::ensure(ui, &session_id, session, &parts.headers, &parts.extensions)
                .await
        else {
            return Err(sign_in_redirect(&here));
        };
        let api = ui.api.caller(
            session.token.clone(),
            &parts.extensions,
            parts.headers.get(http::header::USER_AGENT),
        );
        Ok(Ctx {
            ui: ui.clone(),
            session_id,
            session,
            api,
            state: UrlState::parse(parts.uri.query()),
            here,
            path: parts.uri.path().to_string(),
            clusters: OnceCell::new(),
            management: OnceCell::new(),
        })
    }
}

impl Ctx {
    /// The managed clusters this person may list (the API filters them by RBAC); empty
    /// when they may list none. Reads the whole fleet: only for pages that show or count
    /// all of it (the clusters table, the overview's counts), never for the banner.
    pub(crate) async fn clusters(&self) -> Result<&Vec<ManagedCluster>, UiError> {
        self.clusters
            .get_or_try_init(|| async {
                match self
                    .api
                    .get::<List<ManagedCluster>>("/apis/cattery.dev/v1/managedclusters")
                    .await
                {
                    Ok(l) => Ok(l.items),
                    Err(UiError::Api(s)) if s.code == 403 => Ok(vec![]),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// The first [`PICKER_MAX`] clusters by name this person may list, and whether there
    /// are more: what the banner's selector offers before anyone types a filter. A page
    /// costs the same at 10 clusters and at 10,000 (the whole list is only read when the
    /// page itself has already read it).
    pub(crate) async fn first_clusters(&self) -> Result<(Vec<ManagedCluster>, bool), UiError> {
        if let Some(all) = self.clusters.get() {
            let more = all.len() > PICKER_MAX;
            return Ok((all.iter().take(PICKER_MAX).cloned().collect(), more));
        }
        let path = format!("/apis/cattery.dev/v1/managedclusters?limit={PICKER_MAX}");
        match self.api.get::<List<ManagedCluster>>(&path).await {
            Ok(l) => {
                let more = l.metadata.continue_token.is_some();
                Ok((l.items, more))
            }
            Err(UiError::Api(s)) if s.code == 403 => Ok((vec![], false)),
            Err(e) => Err(e),
        }
    }

    /// How many clusters this person may list and how many of those are connected, with
    /// the first `first` of them by name: what the overview shows, counted by the API
    /// (`remainingItemCount`, `fieldSelector=status.connected=true`) instead of reading
    /// every cluster.
    pub(crate) async fn cluster_counts(
        &self,
        first: usize,
    ) -> Result<(Vec<ManagedCluster>, ClusterCounts), UiError> {
        let base = "/apis/cattery.dev/v1/managedclusters";
        let listed = |path: String| async move {
            match self.api.get::<List<ManagedCluster>>(&path).await {
                Ok(l) => {
                    let n = l.items.len() as u64 + l.metadata.remaining_item_count.unwrap_or(0);
                    Ok((l.items, n))
                }
                Err(UiError::Api(s)) if s.code == 403 => Ok((vec![], 0)),
                Err(e) => Err(e),
            }
        };
        let (page, up) = tokio::try_join!(
            listed(format!("{base}?limit={}", first.max(1))),
            listed(format!(
                "{base}?limit=1&fieldSelector=status.connected%3Dtrue"
            )),
        )?;
        let (mut items, total) = page;
        items.truncate(first);
        Ok((
            items,
            ClusterCounts {
                total,
                connected: up.1,
            },
        ))
    }

    /// Whether this person may read the management plane's own audit trail (so `cluster`
    /// is offered in the selector).
    pub(crate) async fn sees_management(&self) -> bool {
        *self
            .management
            .get_or_init(|| async {
                self.api
                    .can_i(
                        "get",
                        "logs.cattery.dev",
                        "audit",
                        None,
                        Some(MANAGEMENT_CLUSTER_NAME),
                    )
                    .await
                    .map(|(allowed, _)| allowed)
                    .unwrap_or(false)
            })
            .await
    }

    /// The selection in the URL, checked: an unknown cluster is a "no such cluster" page, a
    /// cluster this person may not see is the API's 403.
    pub(crate) async fn selection(&self) -> Result<Selection, UiError> {
        let want = match self.state.cluster.as_deref() {
            Some(w) => w.to_string(),
            None => self.default_selection().await?,
        };
        match want.as_str() {
            ALL => Ok(Selection::All),
            MANAGEMENT_CLUSTER_NAME => Ok(Selection::Management),
            name => {
                if let Some(c) = self
                    .clusters
                    .get()
                    .and_then(|all| all.iter().find(|c| c.metadata.name == name))
                {
                    return Ok(Selection::Managed(Box::new(c.clone())));
                }
                match self
                    .api
                    .get::<ManagedCluster>(&format!(
                        "/apis/cattery.dev/v1/managedclusters/{}",
                        enc(name)
                    ))
                    .await
                {
                    Ok(c) => Ok(Selection::Managed(Box::new(c))),
                    Err(UiError::Api(s)) if s.code == 404 => Err(UiError::NotFound {
                        what: "cluster",
                        name: name.to_string(),
                        hint: "Choose a cluster in the Cluster selector at the top right, or add it on the Clusters page.".into(),
                    }),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// `all`, unless this person sees exactly one cluster and nothing else.
    async fn default_selection(&self) -> Result<String, UiError> {
        let (clusters, more) = self.first_clusters().await?;
        if clusters.len() == 1 && !more && !self.sees_management().await {
            return Ok(clusters[0].metadata.name.clone());
        }
        Ok(ALL.into())
    }

    /// Checks the CSRF token of a state-changing request (form field `_csrf` or the
    /// `X-CSRF-Token` header), in constant time.
    pub(crate) fn check_csrf(
        &self,
        headers: &http::HeaderMap,
        form: &[(String, String)],
    ) -> Result<(), UiError> {
        let given = form
            .iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v.clone())
            .or_else(|| {
                headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        if session::same_secret(&given, &self.session.csrf) {
            Ok(())
        } else {
            Err(UiError::Csrf)
        }
    }

    /// Frames a page (or explains its failure) with the banner and navigation.
    pub(crate) async fn finish(&self, page: Result<Page, UiError>) -> Response {
        let page = match page {
            Ok(p) => p,
            Err(UiError::SignedOut) => {
                self.ui.sessions.remove(&self.session_id);
                return sign_in_redirect(&self.here);
            }
            Err(e) => {
                let (title, body) = e.explain();
                Page {
                    title,
                    nav: Nav::None,
                    body,
                    status: e.status(),
                    scripts: &[],
                }
            }
        };
        let markup = crate::layout::shell(self, &page).await;
        (page.status, markup).into_response()
    }
}
