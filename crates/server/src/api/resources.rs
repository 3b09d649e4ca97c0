//! Generic handlers for every kind in the descriptor table ([`super::kinds::KINDS`]):
//! list (label and field selectors, `limit`/`continue`), watch, get, create, update (PUT,
//! 409 on a stale resourceVersion), patch (merge, strategic merge treated as merge,
//! JSON patch, server-side apply with field ownership) and delete, over the hub's
//! [`cattery_store::Store`]. Every write records its field manager in
//! `metadata.managedFields` ([`cattery_store::managed_fields`], shared with the simulator).
//!
//! The handlers sit behind the same gate as every route (authentication, RBAC, audit
//! trail). ManagedCluster has effects outside the store, kept in [`super::clusters`]:
//! creating one issues its certificate and manifest, deleting one revokes the certificate
//! and closes the tunnel, and its `status` is the registry's live view, added on every read.
//! Every write is an event of the store, so a label change reaches watchers (`kubectl get
//! -w`, the federation reconciler) without a second notification path.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use cattery_store::http::query::{ListParams, WatchParams, flag};
use cattery_store::http::table::{IncludeObject, table, wants_table};
use cattery_store::managed_fields;
use cattery_store::{Filter, Obj, StoreError};
use serde_json::{Value, json};

use super::extract::Path;
use super::kinds::{Descriptor, HubKind, KINDS};
use super::{ApiError, MAX_RESOURCE_BODY, read_body, respond};
use crate::AppState;

/// The hub's resource store.
pub type HubStore = cattery_store::Store<HubKind>;

/// Query parameters as sent, in order.
pub(crate) struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    pub(crate) fn of(req: &Request) -> Self {
        QueryPairs(
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// Refuses a parameter outside `allowed` (a misspelt one would be silently ignored).
    /// `timeout` (the client's request timeout) is accepted everywhere, as kube-apiserver does.
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<&Self, ApiError> {
        match self
            .0
            .iter()
            .find(|(k, _)| k != "timeout" && !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(ApiError::with_reason(
                400,
                "BadRequest",
                format!(
                    "unknown query parameter {k:?}; expected one of {}",
                    allowed.join(", ")
                ),
            )),
            None => Ok(self),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

const WRITE_PARAMS: &[&str] = &[
    "fieldManager",
    "fieldValidation",
    "dryRun",
    "pretty",
    "includeObject",
];
const CREATE_CLUSTER_PARAMS: &[&str] = &[
    "fieldManager",
    "fieldValidation",
    "dryRun",
    "pretty",
    "includeObject",
    "manifestFormat",
];
const PATCH_PARAMS: &[&str] = &[
    "fieldManager",
    "fieldValidation",
    "dryRun",
    "force",
    "pretty",
    "includeObject",
];
const DELETE_PARAMS: &[&str] = &[
    "gracePeriodSeconds",
    "propagationPolicy",
    "orphanDependents",
    "dryRun",
    "pretty",
    "includeObject",
];

/// The writer's field manager: `fieldManager`, else the User-Agent's product (`kubectl`),
/// as kube-apiserver names it.
fn field_manager(q: &QueryPairs, headers: &http::HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn bad_query(e: cattery_store::http::query::QueryError) -> ApiError {
    ApiError::with_reason(400, "BadRequest", e.0)
}

fn start_watch(
    st: &AppState,
    f: Filter<HubKind>,
    start: cattery_store::WatchStart,
) -> cattery_store::Watcher<'_, HubKind> {
    st.resources.watch(f, start)
}

/// Adds the routes of every kind in [`KINDS`].
pub fn routes(mut router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    for d in KINDS {
        let collection = d.collection_path();
        router = router
            .route(
                &collection,
                get(move |st: State<Arc<AppState>>, req: Request| list(d, st, req))
                    .post(move |st: State<Arc<AppState>>, req: Request| create(d, st, req)),
            )
            .route(
                &format!("{collection}/{{name}}"),
                get(
                    move |st: State<Arc<AppState>>, p: Path<String>, req: Request| {
                        get_one(d, st, p, req)
                    },
                )
                .put(
                    move |st: State<Arc<AppState>>, p: Path<String>, req: Request| {
                        update(d, st, p, req)
                    },
                )
                .patch(
                    move |st: State<Arc<AppState>>, p: Path<String>, req: Request| {
                        patch(d, st, p, req)
                    },
                )
                .delete(
                    move |st: State<Arc<AppState>>, p: Path<String>, req: Request| {
                        delete(d, st, p, req)
                    },
                ),
            );
    }
    router
}

/// The object as clients see it: the stored one plus, for clusters, the live status.
pub(crate) fn view(st: &AppState, d: &Descriptor, obj: &Obj) -> Value {
    let mut v = (**obj).clone();
    if d.kind == HubKind::ManagedCluster {
        super::clusters::add_status(st, &mut v);
    }
    v
}

/// Answers one object as JSON, YAML or a one-row Table.
fn answer(
    d: &Descriptor,
    headers: &http::HeaderMap,
    q: &QueryPairs,
    code: http::StatusCode,
    obj: &Value,
) -> Response {
    if wants_table(accept(headers)) {
        let inc = IncludeObject::parse(q.get("includeObject"));
        let t = table(d.columns, [obj], None, None, inc);
        return respond(headers, code, &t);
    }
    respond(headers, code, obj)
}

fn accept(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

async fn list(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    // Reads ignore parameters they do not know, as kube-apiserver's do (and as this hub's
    // always did); writes refuse them.
    let q = QueryPairs::of(&req);
    let p = ListParams::parse(|k| q.get(k)).map_err(bad_query)?;
    let mut fields = p.fields.clone();
    // A cluster's status is not stored: `status.connected` is matched against the live one.
    let live_fields = match d.kind {
        HubKind::ManagedCluster => fields.split_off(CONNECTED_FIELD),
        _ => Default::default(),
    };
    if let Some(f) = fields
        .paths()
        .find(|f| !["metadata.name", "metadata.namespace"].contains(f))
    {
        let also = if d.kind == HubKind::ManagedCluster {
            format!(", {CONNECTED_FIELD}")
        } else {
            String::new()
        };
        return Err(ApiError::with_reason(
            400,
            "BadRequest",
            format!(
                "field label not supported: {f} (fieldSelector for {} takes metadata.name, \
                 metadata.namespace{also})",
                d.plural
            ),
        ));
    }
    let filter = Filter {
        res: d.kind,
        namespace: None,
        labels: p.labels.clone(),
        fields,
    };
    let headers = req.headers();
    let table_inc =
        wants_table(accept(headers)).then(|| IncludeObject::parse(q.get("includeObject")));
    if flag(q.get("watch")) {
        if !live_fields.is_empty() {
            return Err(ApiError::with_reason(
                400,
                "BadRequest",
                format!(
                    "fieldSelector {CONNECTED_FIELD} is for lists only: connecting and \
                     disconnecting are not watch events"
                ),
            ));
        }
        let w = WatchParams::parse(|k| q.get(k)).map_err(bad_query)?;
        let st2 = st.clone();
        let render = Box::new(move |_, obj: &Obj| {
            let v = view(&st2, d, obj);
            match table_inc {
                Some(inc) => table(d.columns, [&v], None, None, inc),
                None => v,
            }
        });
        let stop = st.shutdown.clone();
        let body = cattery_store::http::watch::stream(
            st.clone(),
            start_watch,
            filter,
            &w,
            render,
            cattery_store::http::status::status,
            async move { stop.cancelled().await },
        );
        return Ok(Response::builder()
            .status(http::StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CACHE_CONTROL, "no-cache, private")
            .body(Body::from_stream(body))
            .expect("valid response"));
    }
    // The gate let a list through when some names may be listed; keep only those.
    let who = super::identity(&req);
    let names = st.authz.current().allowed_names(
        &cattery_rbac::Requester {
            user: &who.user,
            groups: &who.groups,
        },
        "list",
        d.group,
        d.plural,
        None,
        None,
    );
    let page = st
        .resources
        .list_where(&filter, p.limit, p.continue_token.as_deref(), |o| {
            let name = o["metadata"]["name"].as_str().unwrap_or("");
            names.contains(name)
                && (live_fields.is_empty() || live_fields.matches(&connected_field(&st, name)))
        })?;
    let rv = page.rv.to_string();
    if let Some(inc) = table_inc {
        let items: Vec<Value> = page.items.iter().map(|o| view(&st, d, o)).collect();
        let t = table(
            d.columns,
            items.iter(),
            Some(&rv),
            page.continue_token.as_deref(),
            inc,
        );
        return Ok(respond(headers, http::StatusCode::OK, &t));
    }
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
        meta["remainingItemCount"] = json!(page.remaining);
    }
    let list = ListBody {
        api_version: d.api_version(),
        kind: format!("{}List", d.kind_name),
        metadata: meta,
        items: page
            .items
            .iter()
            .map(|o| Listed {
                status: (d.kind == HubKind::ManagedCluster)
                    .then(|| super::clusters::live_status(&st, o))
                    .flatten(),
                obj: o,
            })
            .collect(),
    };
    Ok(respond(headers, http::StatusCode::OK, &list))
}

/// The field selector on a cluster's live connection: `true` when its
/// `ManagedClusterConnected` condition is `True`, `false` otherwise (disconnected, never
/// connected, or unknown), so `status.connected!=true` lists every cluster to look at.
const CONNECTED_FIELD: &str = "status.connected";

/// What [`CONNECTED_FIELD`] is matched against for the cluster `name`.
fn connected_field(st: &AppState, name: &str) -> Value {
    let up = st
        .registry
        .status(name)
        .as_ref()
        .and_then(|s| s.connected())
        .is_some_and(|c| c.status == cattery_api::ConditionStatus::True);
    json!({"status": {"connected": up.to_string()}})
}

/// A list answer, serialized straight from the stored objects (a list of 10,000 clusters
/// is 6 MB; copying every object into a new `Value` first cost more than encoding it).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBody<'a> {
    api_version: String,
    kind: String,
    metadata: Value,
    items: Vec<Listed<'a>>,
}

/// One listed object: the stored one, borrowed, with the cluster's live status in place
/// of any stored `status` (what [`view`] gives, without the copy).
struct Listed<'a> {
    obj: &'a Obj,
    status: Option<cattery_api::ManagedClusterStatus>,
}

impl serde::Serialize for Listed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match (&self.status, self.obj.as_object()) {
            (Some(status), Some(fields)) => {
                let mut map = s.serialize_map(None)?;
                for (k, v) in fields.iter().filter(|(k, _)| *k != "status") {
                    map.serialize_entry(k, v)?;
                }
                map.serialize_entry("status", status)?;
                map.end()
            }
            _ => (**self.obj).serialize(s),
        }
    }
}

async fn get_one(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    let obj = st.resources.get(d.kind, None, &name)?;
    let v = view(&st, d, &obj);
    Ok(answer(d, req.headers(), &q, http::StatusCode::OK, &v))
}

/// Refuses `dryRun`: nothing here can evaluate a write without making it yet, and
/// making it would surprise the caller.
fn refuse_dry_run(q: &QueryPairs) -> Result<(), ApiError> {
    match q.get("dryRun") {
        Some(v) if !v.is_empty() => Err(ApiError::with_reason(
            400,
            "BadRequest",
            format!("dryRun={v:?} is not supported by the hub's resources"),
        )),
        _ => Ok(()),
    }
}

/// Parses a request body (JSON or YAML) into an object.
fn parse_object(d: &Descriptor, body: &[u8]) -> Result<Value, ApiError> {
    let v = cattery_api::wire::parse(body)?;
    if !v.is_object() {
        return Err(ApiError::with_reason(
            400,
            "BadRequest",
            format!("the body must be a {} object", d.kind_name),
        ));
    }
    Ok(v)
}

/// Creates `obj` (already parsed, its `managedFields` already computed): validates it,
/// then stores it (ManagedCluster: issues its certificate first).
async fn create_object(
    d: &'static Descriptor,
    st: &Arc<AppState>,
    q: &QueryPairs,
    mut obj: Value,
) -> Result<Value, ApiError> {
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    (d.validate)(&obj)?;
    if d.kind == HubKind::ManagedCluster {
        return super::clusters::create(st, q, obj);
    }
    let stored = st.resources.create(d.kind, None, obj)?;
    Ok(view(st, d, &stored))
}

async fn create(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    let headers = req.headers().clone();
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    q.only(if d.kind == HubKind::ManagedCluster {
        CREATE_CLUSTER_PARAMS
    } else {
        WRITE_PARAMS
    })?;
    refuse_dry_run(&q)?;
    let mut obj = parse_object(d, &body)?;
    managed_fields::record_update(
        None,
        &mut obj,
        &field_manager(&q, &headers),
        &d.api_version(),
    );
    let created = create_object(d, &st, &q, obj).await?;
    Ok(answer(d, &headers, &q, http::StatusCode::CREATED, &created))
}

/// What the server owns in an object and a client cannot change by a write: the status
/// (the registry's, for clusters) and, for clusters, the spec (certificate facts).
fn keep_server_owned(d: &Descriptor, old: &Value, new: &mut Value) {
    if let Some(m) = new.as_object_mut() {
        m.remove("status");
        if d.kind == HubKind::ManagedCluster {
            match old.get("spec") {
                Some(s) => m.insert("spec".into(), s.clone()),
                None => m.remove("spec"),
            };
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            // A server-set field a client may echo back. `managedFields` are computed by
            // `managed_fields` from the stored ones, whatever the client sent.
            meta.remove("selfLink");
        }
    }
}

async fn update(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    let headers = req.headers().clone();
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    q.only(WRITE_PARAMS)?;
    refuse_dry_run(&q)?;
    let mut obj = parse_object(d, &body)?;
    let manager = field_manager(&q, &headers);
    let sent = obj.pointer("/metadata/name").and_then(Value::as_str);
    if sent != Some(name.as_str()) {
        return Err(ApiError::with_reason(
            400,
            "BadRequest",
            format!(
                "{} metadata.name: {:?} does not match the name in the URL {name:?}",
                d.kind_name,
                sent.unwrap_or("")
            ),
        ));
    }
    let stored = st
        .resources
        .modify(d.kind, None, &name, false, |old: &Obj| {
            // Validate what the client wrote (an unknown spec field is a 400 even where the
            // server then keeps its own spec).
            (d.validate)(&obj)?;
            keep_server_owned(d, old, &mut obj);
            managed_fields::record_update(Some(old), &mut obj, &manager, &d.api_version());
            Ok::<_, ApiError>(obj)
        })?;
    let v = view(&st, d, &stored);
    Ok(answer(d, &headers, &q, http::StatusCode::OK, &v))
}

/// A PATCH body's format, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchKind {
    /// RFC 7386; also `strategic-merge-patch+json`: these kinds have no lists with merge
    /// keys, so a strategic merge patch means what a merge patch means.
    Merge,
    /// RFC 6902.
    Json,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

fn patch_kind(headers: &http::HeaderMap) -> Result<PatchKind, ApiError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    match media {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(PatchKind::Merge)
        }
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
        _ => Err(ApiError::with_reason(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of a PATCH must be application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json or application/apply-patch+yaml, not {ct:?}"
            ),
        )),
    }
}

/// The object after `patch`; a server-side apply by `manager` also updates
/// `managedFields` (a 409 on a conflict unless `force`).
fn patched(
    d: &Descriptor,
    kind: PatchKind,
    old: &Value,
    patch: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let mut target = old.clone();
    match kind {
        PatchKind::Apply => {
            return Ok(managed_fields::apply(
                Some(old),
                patch,
                manager,
                force,
                &d.api_version(),
            )?);
        }
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::with_reason(
                    400,
                    "BadRequest",
                    "a merge patch must be a JSON object",
                ));
            }
            json_patch::merge(&mut target, patch);
        }
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                ApiError::with_reason(400, "BadRequest", format!("invalid JSON patch: {e}"))
            })?;
            json_patch::patch(&mut target, &p).map_err(|e| {
                ApiError::with_reason(422, "Invalid", format!("applying the JSON patch: {e}"))
            })?;
        }
    }
    Ok(target)
}

async fn patch(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    let headers = req.headers().clone();
    let kind = patch_kind(&headers);
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    let kind = kind?;
    q.only(PATCH_PARAMS)?;
    refuse_dry_run(&q)?;
    let patch = match kind {
        PatchKind::Apply => parse_object(d, &body)?,
        _ => serde_json::from_slice::<Value>(&body).map_err(|e| {
            ApiError::with_reason(400, "BadRequest", format!("the patch is not JSON: {e}"))
        })?,
    };
    let manager = field_manager(&q, &headers);
    let force = flag(q.get("force"));
    if kind == PatchKind::Apply {
        if q.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::with_reason(
                400,
                "BadRequest",
                "fieldManager: Required value: is required for apply patch",
            ));
        }
        let sent = patch.pointer("/metadata/name").and_then(Value::as_str);
        if sent != Some(name.as_str()) {
            return Err(ApiError::with_reason(
                400,
                "BadRequest",
                format!(
                    "{} metadata.name: {:?} does not match the name in the URL {name:?}",
                    d.kind_name,
                    sent.unwrap_or("")
                ),
            ));
        }
        match st.resources.get(d.kind, None, &name) {
            Err(StoreError::NotFound { .. }) => {
                let obj = managed_fields::apply(None, &patch, &manager, force, &d.api_version())?;
                let created = create_object(d, &st, &q, obj).await?;
                return Ok(answer(d, &headers, &q, http::StatusCode::CREATED, &created));
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    let stored = st
        .resources
        .modify(d.kind, None, &name, false, |old: &Obj| {
            let mut obj = patched(d, kind, old, &patch, &manager, force)?;
            if obj.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
                return Err(ApiError::with_reason(
                    400,
                    "BadRequest",
                    format!(
                        "{} metadata.name: a patch cannot rename an object",
                        d.kind_name
                    ),
                ));
            }
            // Validate what the client wrote (an unknown spec field is a 400 even where the
            // server then keeps its own spec).
            (d.validate)(&obj)?;
            keep_server_owned(d, old, &mut obj);
            if kind != PatchKind::Apply {
                managed_fields::record_update(Some(old), &mut obj, &manager, &d.api_version());
            }
            Ok::<_, ApiError>(obj)
        })?;
    let v = view(&st, d, &stored);
    Ok(answer(d, &headers, &q, http::StatusCode::OK, &v))
}

async fn delete(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    q.only(DELETE_PARAMS)?;
    refuse_dry_run(&q)?;
    let last = if d.kind == HubKind::ManagedCluster {
        // Federated objects come off the cluster while its tunnel is still up.
        // What could not be taken off is reported in the answer (a condition), the audit
        // trail and the log, never only logged.
        let leaving = crate::federation::Leaving::start(&st, &name).await;
        let unplaced = leaving.unplace().await;
        let condition = unplaced.condition();
        match &unplaced {
            crate::federation::Unplaced::Removed(n) => {
                tracing::info!(cluster = name, "removed {n} federated objects")
            }
            crate::federation::Unplaced::NotRemoved { .. } => {
                tracing::warn!(cluster = name, "{}", condition.message)
            }
        }
        let mut last = super::clusters::delete(&st, &name)?;
        if !last["status"].is_object() {
            last["status"] = serde_json::json!({});
        }
        let conditions = &mut last["status"]["conditions"];
        if !conditions.is_array() {
            *conditions = serde_json::json!([]);
        }
        if let (Some(list), Ok(c)) = (conditions.as_array_mut(), serde_json::to_value(&condition)) {
            list.push(c);
        }
        last
    } else {
        let last = st.resources.delete(d.kind, None, &name)?;
        view(&st, d, &last)
    };
    Ok(answer(d, req.headers(), &q, http::StatusCode::OK, &last))
}

/// Opens the hub's resource store in `state.db` (same file as the registry's tables, its
/// own tables `resources` and `resource_versions`).
pub fn open_store(path: &std::path::Path) -> Result<HubStore, StoreError> {
    let backend = cattery_store::backend::Sqlite::open(path)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    HubStore::open(Box::new(backend), cattery_store::HISTORY_LIMIT)
}
