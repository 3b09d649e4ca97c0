//! Generic handlers for every kind in the descriptor table ([`super::kinds::KINDS`]):
//! list (label and field selectors, `limit`/`continue`), watch, get, create, update (PUT,
//! 409 on a stale resourceVersion), patch (merge, strategic merge, JSON patch, server-side
//! apply with field ownership) and delete, over the hub's [`cattery_store::Store`], at
//! cluster-scoped or namespaced paths as the descriptor says. Every write records its
//! field manager in `metadata.managedFields` ([`cattery_store::managed_fields`], shared
//! with the simulator) and passes the kind's admission hook (RBAC's escalation rules).
//! Built-in objects are merged into lists and gets and refused on every write.
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
use cattery_store::http::table::{IncludeObject, table_with, wants_table};
use cattery_store::managed_fields;
use cattery_store::{Filter, Obj, StoreError};
use serde_json::{Value, json};

use super::extract::Path;
use super::kinds::{Descriptor, HubKind, KINDS};
use super::{ApiError, MAX_RESOURCE_BODY, identity, read_body, respond};
use crate::AppState;
use crate::auth::Identity;

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

/// Adds the routes of every kind in [`KINDS`]: cluster-scoped kinds at
/// `/apis/G/V/PLURAL[/NAME]`, namespaced ones at `/apis/G/V/namespaces/NS/PLURAL[/NAME]`
/// plus the all-namespaces list `/apis/G/V/PLURAL`. Kinds without `update` (tokens) get no
/// PUT or PATCH, and no generic POST (their create is their own).
pub fn routes(mut router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    type St = State<Arc<AppState>>;
    for d in KINDS {
        let collection = d.collection_path();
        if d.namespaced {
            router = router.route(
                &collection,
                get(move |st: St, req: Request| list(d, st, None, req)),
            );
            let in_ns = d.namespaced_collection_path();
            let mut c =
                get(move |st: St, Path(ns): Path<String>, req: Request| list(d, st, Some(ns), req));
            let mut item = get(
                move |st: St, Path((ns, name)): Path<(String, String)>, req: Request| {
                    get_one(d, st, Some(ns), name, req)
                },
            )
            .delete(
                move |st: St, Path((ns, name)): Path<(String, String)>, req: Request| {
                    delete(d, st, Some(ns), name, req)
                },
            );
            if d.writable() {
                c = c.post(move |st: St, Path(ns): Path<String>, req: Request| {
                    create(d, st, Some(ns), req)
                });
                item = item
                    .put(
                        move |st: St, Path((ns, name)): Path<(String, String)>, req: Request| {
                            update(d, st, Some(ns), name, req)
                        },
                    )
                    .patch(
                        move |st: St, Path((ns, name)): Path<(String, String)>, req: Request| {
                            patch(d, st, Some(ns), name, req)
                        },
                    );
            }
            router = router
                .route(&in_ns, c)
                .route(&format!("{in_ns}/{{name}}"), item);
        } else {
            let mut c = get(move |st: St, req: Request| list(d, st, None, req));
            let mut item = get(move |st: St, Path(name): Path<String>, req: Request| {
                get_one(d, st, None, name, req)
            })
            .delete(move |st: St, Path(name): Path<String>, req: Request| {
                delete(d, st, None, name, req)
            });
            if d.writable() {
                c = c.post(move |st: St, req: Request| create(d, st, None, req));
                item = item
                    .put(move |st: St, Path(name): Path<String>, req: Request| {
                        update(d, st, None, name, req)
                    })
                    .patch(move |st: St, Path(name): Path<String>, req: Request| {
                        patch(d, st, None, name, req)
                    });
            }
            router = router
                .route(&collection, c)
                .route(&format!("{collection}/{{name}}"), item);
        }
    }
    router
}

/// The object as clients see it: the stored one plus, for clusters, the live status; a
/// token without its hash.
pub(crate) fn view(st: &AppState, d: &Descriptor, obj: &Obj) -> Value {
    let mut v = (**obj).clone();
    match d.kind {
        HubKind::ManagedCluster => super::clusters::add_status(st, &mut v),
        HubKind::Token => super::tokens::view(st, &mut v),
        _ => {}
    }
    v
}

fn render_table<'a>(
    d: &Descriptor,
    objects: impl IntoIterator<Item = &'a Value>,
    rv: Option<&str>,
    continue_token: Option<&str>,
    inc: IncludeObject,
) -> Value {
    table_with(d.columns, objects, rv, continue_token, inc, d.age_column)
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
        let t = render_table(d, [obj], None, None, inc);
        return respond(headers, code, &t);
    }
    respond(headers, code, obj)
}

fn accept(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

fn requester(who: &Identity) -> cattery_rbac::Requester<'_> {
    cattery_rbac::Requester {
        user: &who.user,
        groups: &who.groups,
    }
}

async fn list(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    ns: Option<String>,
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
        namespace: ns.clone(),
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
                Some(inc) => render_table(d, [&v], None, None, inc),
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
    let who = identity(&req);
    let names = st.authz.current().allowed_names(
        &requester(&who),
        "list",
        d.group,
        d.plural,
        None,
        ns.as_deref(),
    );
    let may_see = |o: &Value| names.contains(o["metadata"]["name"].as_str().unwrap_or(""));
    let page = st
        .resources
        .list_where(&filter, p.limit, p.continue_token.as_deref(), |o| {
            may_see(o)
                && (live_fields.is_empty()
                    || live_fields.matches(&connected_field(&st, meta_name(o))))
        })?;
    // Built-ins come first, on the first page (they are few and never change).
    let mut objects: Vec<Obj> = Vec::new();
    if p.continue_token.is_none() {
        objects.extend(
            (d.builtins)()
                .into_iter()
                .filter(|b| filter.matches(d.kind, b) && may_see(b))
                .map(Arc::new),
        );
    }
    objects.extend(page.items);
    if d.kind == HubKind::Token {
        objects = objects.iter().map(|o| Arc::new(view(&st, d, o))).collect();
    }
    let rv = page.rv.to_string();
    if let Some(inc) = table_inc {
        let items: Vec<Value> = objects.iter().map(|o| view(&st, d, o)).collect();
        let t = render_table(
            d,
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
        items: objects
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

fn meta_name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

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
    ns: Option<String>,
    name: String,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    let v = match st.resources.get(d.kind, ns.as_deref(), &name) {
        Ok(obj) => view(&st, d, &obj),
        Err(e @ StoreError::NotFound { .. }) => d.builtin(&name).ok_or(e)?,
        Err(e) => return Err(e.into()),
    };
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

/// Refuses any write of a built-in object.
fn refuse_builtin(d: &Descriptor, name: &str) -> Result<(), ApiError> {
    if d.builtin(name).is_some() {
        return Err(ApiError::with_reason(
            409,
            "Conflict",
            format!(
                "{} {name:?} is built in and cannot be changed or deleted; create your own {} instead",
                d.kind_name, d.kind_name
            ),
        ));
    }
    Ok(())
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

/// Puts a namespaced object into the namespace of its URL (a different one is a 400).
fn place(d: &Descriptor, ns: Option<&str>, obj: &mut Value) -> Result<(), ApiError> {
    let Some(ns) = ns else {
        return Ok(());
    };
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        None | Some("") => {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("namespace".into(), json!(ns));
            }
            Ok(())
        }
        Some(n) if n != ns => Err(ApiError::with_reason(
            400,
            "BadRequest",
            format!(
                "{} metadata.namespace: {n:?} does not match the namespace in the URL {ns:?}",
                d.kind_name
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn admit(
    d: &Descriptor,
    st: &AppState,
    who: &Identity,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    match d.admit {
        Some(check) => check(st, who, old, new),
        None => Ok(()),
    }
}

fn name_in_body(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Creates `obj` (already parsed, its `managedFields` already computed): validates it,
/// runs the kind's admission, then stores it (ManagedCluster: issues its certificate
/// first).
async fn create_object(
    d: &'static Descriptor,
    st: &Arc<AppState>,
    q: &QueryPairs,
    who: &Identity,
    ns: Option<&str>,
    mut obj: Value,
) -> Result<Value, ApiError> {
    refuse_builtin(d, name_in_body(&obj))?;
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    place(d, ns, &mut obj)?;
    (d.validate)(&obj)?;
    admit(d, st, who, None, &obj)?;
    if d.kind == HubKind::ManagedCluster {
        return super::clusters::create(st, q, obj);
    }
    let stored = st.resources.create(d.kind, ns, obj)?;
    Ok(view(st, d, &stored))
}

async fn create(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    ns: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    let who = identity(&req);
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
    let created = create_object(d, &st, &q, &who, ns.as_deref(), obj).await?;
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

/// Writes a new version of an existing object: `compute` gives it from the stored one
/// (validated, server-owned fields kept), the kind's admission runs on it outside the
/// store's lock (it reads the policy, which reads the store), and it is stored only if
/// the object did not change meanwhile. When the client pinned no resourceVersion, a
/// concurrent change is retried on the new version rather than answered 409.
fn write_existing(
    d: &'static Descriptor,
    st: &AppState,
    who: &Identity,
    ns: Option<&str>,
    name: &str,
    pinned: bool,
    compute: impl Fn(&Obj) -> Result<Value, ApiError>,
) -> Result<Obj, ApiError> {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let old = st.resources.get(d.kind, ns, name)?;
        let mut obj = compute(&old)?;
        admit(d, st, who, Some(&old), &obj)?;
        if !pinned && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert(
                "resourceVersion".into(),
                old["metadata"]["resourceVersion"].clone(),
            );
        }
        match st
            .resources
            .modify(d.kind, ns, name, false, |_: &Obj| Ok::<_, ApiError>(obj))
        {
            Err(e) if !pinned && attempt < ATTEMPTS && e.0.code == 409 => continue,
            r => return r,
        }
    }
    unreachable!("the last attempt returns")
}

fn pinned_rv(obj: &Value) -> bool {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
}

async fn update(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    ns: Option<String>,
    name: String,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    let who = identity(&req);
    let headers = req.headers().clone();
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    q.only(WRITE_PARAMS)?;
    refuse_dry_run(&q)?;
    refuse_builtin(d, &name)?;
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
    place(d, ns.as_deref(), &mut obj)?;
    let ns = ns.as_deref();
    if d.create_on_update
        && matches!(
            st.resources.get(d.kind, ns, &name),
            Err(StoreError::NotFound { .. })
        )
    {
        managed_fields::record_update(None, &mut obj, &manager, &d.api_version());
        let created = create_object(d, &st, &q, &who, ns, obj).await?;
        return Ok(answer(d, &headers, &q, http::StatusCode::CREATED, &created));
    }
    let stored = write_existing(d, &st, &who, ns, &name, pinned_rv(&obj), |old| {
        let mut obj = obj.clone();
        // Validate what the client wrote (an unknown spec field is a 400 even where the
        // server then keeps its own spec).
        (d.validate)(&obj)?;
        keep_server_owned(d, old, &mut obj);
        managed_fields::record_update(Some(old), &mut obj, &manager, &d.api_version());
        Ok(obj)
    })?;
    let v = view(&st, d, &stored);
    Ok(answer(d, &headers, &q, http::StatusCode::OK, &v))
}

/// A PATCH body's format, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchKind {
    /// RFC 7386.
    Merge,
    /// `strategic-merge-patch+json` (what kubectl's client-side apply sends for the RBAC
    /// kinds): a merge patch that honours kubectl's `$patch`/`$setElementOrder`
    /// directives. None of the hub's kinds has a list with a merge key (Kubernetes gives
    /// `rules` and `subjects` none), so lists are replaced whole, as kube-apiserver does.
    Strategic,
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
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
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
    let bad = |code, e: String| ApiError::with_reason(code, "BadRequest", e);
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
        PatchKind::Merge | PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(bad(400, "a merge patch must be a JSON object".into()));
            }
            let k = if kind == PatchKind::Merge {
                cattery_store::patch::PatchKind::Merge
            } else {
                cattery_store::patch::PatchKind::Strategic
            };
            cattery_store::patch::apply(k, &mut target, patch).map_err(|e| bad(400, e))?;
        }
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| bad(400, format!("invalid JSON patch: {e}")))?;
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
    ns: Option<String>,
    name: String,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    let who = identity(&req);
    let headers = req.headers().clone();
    let kind = patch_kind(&headers);
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    let kind = kind?;
    q.only(PATCH_PARAMS)?;
    refuse_dry_run(&q)?;
    refuse_builtin(d, &name)?;
    let ns = ns.as_deref();
    let mut patch = match kind {
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
        place(d, ns, &mut patch)?;
        match st.resources.get(d.kind, ns, &name) {
            Err(StoreError::NotFound { .. }) => {
                let obj = managed_fields::apply(None, &patch, &manager, force, &d.api_version())?;
                let created = create_object(d, &st, &q, &who, ns, obj).await?;
                return Ok(answer(d, &headers, &q, http::StatusCode::CREATED, &created));
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    let pinned = kind != PatchKind::Json && pinned_rv(&patch);
    let stored = write_existing(d, &st, &who, ns, &name, pinned, |old| {
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
        Ok(obj)
    })?;
    let v = view(&st, d, &stored);
    Ok(answer(d, &headers, &q, http::StatusCode::OK, &v))
}

async fn delete(
    d: &'static Descriptor,
    State(st): State<Arc<AppState>>,
    ns: Option<String>,
    name: String,
    req: Request,
) -> Result<Response, ApiError> {
    let q = QueryPairs::of(&req);
    q.only(DELETE_PARAMS)?;
    refuse_dry_run(&q)?;
    refuse_builtin(d, &name)?;
    let last = match d.kind {
        HubKind::ManagedCluster => {
            // Federated objects come off the cluster while its tunnel is still up.
            // What could not be taken off is reported in the answer (a condition), the
            // audit trail and the log, never only logged.
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
            if let (Some(list), Ok(c)) =
                (conditions.as_array_mut(), serde_json::to_value(&condition))
            {
                list.push(c);
            }
            last
        }
        HubKind::Token => super::tokens::revoke(&st, &name)?,
        _ => {
            let last = st.resources.delete(d.kind, ns.as_deref(), &name)?;
            if d.kind.is_rbac() {
                tracing::info!(
                    kind = d.kind_name,
                    namespace = ns.as_deref().unwrap_or(""),
                    name,
                    "RBAC object deleted"
                );
            }
            view(&st, d, &last)
        }
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
