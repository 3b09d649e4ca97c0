//! The resource API: `/api/v1/...` and `/apis/<group>/<version>/...` URLs,
//! the verbs on them, request-body decoding and object validation.
//!
//! URL shapes (as kube-apiserver): `<gv>/<plural>[/<name>[/<sub>]]` for
//! cluster-scoped types and for listing/watching across namespaces,
//! `<gv>/namespaces/<ns>/<plural>[/<name>[/<sub>]]` for namespaced ones, and
//! the legacy `<gv>/watch/...` prefix. The only subresource here is `status`
//! (`exec` has its own route, see [`crate::exec`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

use crate::AppState;
use crate::objects::{Filter, Obj};
use crate::patch::{self, PatchKind};
use crate::resources::{self, ResourceType};
use crate::status::ApiError;
use crate::table::{self, IncludeObject};
use crate::watch_http as watch;
use cattery_store::{FieldSelector, LabelSelector};

/// Largest request body accepted, like kube-apiserver's 3 MiB limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What a resource URL addresses.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) res: &'static ResourceType,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) watch_prefix: bool,
}

/// Parses a resource URL of a type `store` serves (None for anything else).
pub(crate) fn parse_path(store: &crate::objects::Store, path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let watch_prefix = rest.first() == Some(&"watch");
    if watch_prefix {
        rest = &rest[1..];
    }
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && store
            .find_type(group, version, rest[2])
            .is_some_and(|r| r.namespaced);
    let (namespace, rest) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    let res = store.find_type(group, version, plural)?;
    // A namespaced object must be addressed through its namespace.
    if res.namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    if name.as_deref() == Some("") || namespace.as_deref() == Some("") {
        return None;
    }
    Some(Target {
        res,
        namespace,
        name,
        sub,
        watch_prefix,
    })
}

/// Parsed query string (repeated keys kept).
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `a=1&b=2`.
    pub fn parse(q: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether boolean `key` is set to true (`1`/`true`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// Handles every resource URL (the router's fallback).
pub async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
    match dispatch(&st, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

async fn dispatch(st: &Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let target = parse_path(&st.store, parts.uri.path()).ok_or(ApiError::NoRoute)?;
    let q = Query::parse(parts.uri.query());
    let dry = dry_run(&q)?;
    match &target.sub {
        None => {}
        Some(s) if s == "status" && resources::has_status_subresource(target.res) => {}
        Some(s) => {
            return Err(ApiError::NotFound {
                kind: format!("{}/{s}", target.res.plural),
                name: target.name.unwrap_or_default(),
            });
        }
    }
    let ns = target.namespace.as_deref();
    let table = table::wants_table(accept(&parts.headers))
        .then(|| IncludeObject::parse(q.get("includeObject")));
    let m = &parts.method;
    match (m, target.name.as_deref()) {
        (&Method::GET, _) if target.watch_prefix || q.flag("watch") => {
            let filter = filter(&target, &q)?;
            watch::serve(st.clone(), filter, &q, table)
        }
        (&Method::GET, None) => list(st, &target, &q, table),
        (&Method::GET, Some(name)) => {
            let obj = st.store.get(target.res, ns, name)?;
            Ok(match table {
                Some(inc) => json_response(
                    StatusCode::OK,
                    &table::table(target.res, [&*obj], None, None, inc),
                ),
                None => json_response(StatusCode::OK, &obj),
            })
        }
        (&Method::POST, None) => {
            let obj = decode(&parts.headers, body).await?;
            let mut obj = validate(target.res, ns, None, obj, true)?;
            let manager = field_manager(&q, &parts.headers);
            cattery_store::managed_fields::record_update(
                None,
                &mut obj,
                &manager,
                &target.res.api_version(),
            );
            Ok(json_response(
                StatusCode::CREATED,
                &*st.store.create(target.res, ns, obj, dry)?,
            ))
        }
        (&Method::PUT, Some(name)) => {
            let obj = decode(&parts.headers, body).await?;
            let mut obj = validate(target.res, ns, Some(name), obj, false)?;
            let status_only = target.sub.is_some();
            let manager = field_manager(&q, &parts.headers);
            let res = target.res;
            Ok(json_response(
                StatusCode::OK,
                &*st.store
                    .modify(res, ns, name, status_only, dry, |current| {
                        cattery_store::managed_fields::record_update(
                            Some(current),
                            &mut obj,
                            &manager,
                            &res.api_version(),
                        );
                        Ok(obj)
                    })?,
            ))
        }
        (&Method::PATCH, Some(name))
            if content_type(&parts.headers) == "application/apply-patch+yaml" =>
        {
            server_side_apply(st, &target, name, &q, dry, &parts.headers, body).await
        }
        (&Method::PATCH, Some(name)) => {
            let kind = patch_kind(&parts.headers)?;
            if kind == PatchKind::Strategic && target.res.custom {
                // As kube-apiserver: custom resources have no patch strategies.
                return Err(ApiError::UnsupportedMediaType(format!(
                    "strategic merge patch is not supported for custom resources ({}); \
                     accepted media types: application/json-patch+json, application/merge-patch+json, \
                     application/apply-patch+yaml",
                    target.res.plural
                )));
            }
            let body = read_body(body, &parts.headers).await?;
            let patch: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("the patch is not valid JSON: {e}")))?;
            let res = target.res;
            let status_only = target.sub.is_some();
            let manager = field_manager(&q, &parts.headers);
            let obj = st
                .store
                .modify(res, ns, name, status_only, dry, |current| {
                    let mut obj = (**current).clone();
                    patch::apply(kind, &mut obj, &patch).map_err(ApiError::BadRequest)?;
                    let mut obj = validate(res, ns, Some(name), obj, false)?;
                    cattery_store::managed_fields::record_update(
                        Some(current),
                        &mut obj,
                        &manager,
                        &res.api_version(),
                    );
                    Ok(obj)
                })?;
            Ok(json_response(StatusCode::OK, &obj))
        }
        (&Method::DELETE, Some(name)) => {
            let opts = read_body(body, &parts.headers).await?;
            let dry = dry || body_dry_run(&opts)?;
            check_preconditions(&*st.store.get(target.res, ns, name)?, &opts)?;
            Ok(json_response(
                StatusCode::OK,
                &*st.store.delete(target.res, ns, name, dry)?,
            ))
        }
        (&Method::DELETE, None) => {
            let opts = read_body(body, &parts.headers).await?;
            let dry = dry || body_dry_run(&opts)?;
            let filter = filter(&target, &q)?;
            let page = st.store.list(&filter, None, None)?;
            let mut deleted = Vec::new();
            for obj in page.items {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                let ns = obj["metadata"]["namespace"].as_str();
                if let Ok(d) = st.store.delete(target.res, ns, name, dry) {
                    deleted.push(d);
                }
            }
            Ok(json_response(
                StatusCode::OK,
                &list_body(target.res, &deleted, st.store.current_rv(), None),
            ))
        }
        _ => Err(ApiError::MethodNotAllowed(format!(
            "{m} is not supported on {}{}",
            target.res.plural,
            if target.name.is_some() {
                " objects"
            } else {
                " collections"
            }
        ))),
    }
}

/// The manager of a write: `fieldManager`, else the client's name from its User-Agent
/// (what kube-apiserver does: `kubectl/v1.32.4 (linux/amd64) ...` is `kubectl`).
fn field_manager(q: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// `dryRun=All` (the only value Kubernetes defines): the write is validated and its result
/// returned, nothing is stored and no watch event is sent.
fn dry_run(q: &Query) -> Result<bool, ApiError> {
    let values = q.all("dryRun");
    if let Some(bad) = values.iter().find(|v| v.as_str() != "All") {
        return Err(ApiError::BadRequest(format!(
            "dryRun: Unsupported value: {bad:?}: supported values: \"All\""
        )));
    }
    Ok(!values.is_empty())
}

/// `dryRun` in a DeleteOptions body (where kubectl puts it for deletes).
fn body_dry_run(opts: &[u8]) -> Result<bool, ApiError> {
    if opts.is_empty() {
        return Ok(false);
    }
    let opts: Value = serde_json::from_slice(opts).map_err(|e| {
        ApiError::BadRequest(format!("the DeleteOptions body is not valid JSON: {e}"))
    })?;
    match opts.get("dryRun") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Array(values)) => {
            if let Some(bad) = values.iter().find(|v| v.as_str() != Some("All")) {
                return Err(ApiError::BadRequest(format!(
                    "dryRun: Unsupported value: {bad}: supported values: \"All\""
                )));
            }
            Ok(!values.is_empty())
        }
        Some(v) => Err(ApiError::BadRequest(format!(
            "dryRun: must be a list of strings, got {v}"
        ))),
    }
}

fn filter(target: &Target, q: &Query) -> Result<Filter, ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("labelSelector: {e}")))?;
    let mut fields = q.get("fieldSelector").unwrap_or("").to_string();
    if let Some(name) = &target.name {
        // Watching one object (`/watch/.../<name>`) is a watch on its name.
        fields = format!("{fields},metadata.name={name}");
    }
    let fields = FieldSelector::parse(&fields)
        .map_err(|e| ApiError::BadRequest(format!("fieldSelector: {e}")))?;
    Ok(Filter {
        res: target.res,
        namespace: target.namespace.clone(),
        labels,
        fields,
    })
}

fn list_body(res: &ResourceType, items: &[Obj], rv: u64, continue_token: Option<&str>) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": meta,
        "items": items.iter().map(|o| &**o).collect::<Vec<_>>(),
    })
}

fn list(
    st: &AppState,
    target: &Target,
    q: &Query,
    table: Option<IncludeObject>,
) -> Result<Response, ApiError> {
    let filter = filter(target, q)?;
    let limit = match q.get("limit") {
        Some(l) if !l.is_empty() => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::BadRequest(format!("limit: invalid value {l:?}")))?,
        ),
        _ => None,
    };
    let page = st
        .store
        .list(&filter, limit, q.get("continue").filter(|c| !c.is_empty()))?;
    let rv = page.rv.to_string();
    let body = match table {
        Some(inc) => table::table(
            target.res,
            page.items.iter().map(|o| &**o),
            Some(&rv),
            page.continue_token.as_deref(),
            inc,
        ),
        None => list_body(
            target.res,
            &page.items,
            page.rv,
            page.continue_token.as_deref(),
        ),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Server-side apply (`PATCH` with `application/apply-patch+yaml`): the applied
/// configuration is created when the object does not exist, and otherwise merged into it
/// with field ownership, conflicts between managers and `force` (see [`cattery_store::managed_fields`]).
async fn server_side_apply(
    st: &AppState,
    target: &Target,
    name: &str,
    q: &Query,
    dry: bool,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if q.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::BadRequest(
            "PATCH with apply requires a non-empty fieldManager query parameter".into(),
        ));
    }
    let bytes = read_body(body, headers).await?;
    let applied: Value = serde_json::from_slice(&bytes).or_else(|_| {
        serde_saphyr::from_slice(&bytes).map_err(|e| {
            ApiError::BadRequest(format!("the apply body is not valid YAML or JSON: {e}"))
        })
    })?;
    for field in ["apiVersion", "kind"] {
        if applied
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::BadRequest(format!(
                "{field} must be set in the body of an apply request"
            )));
        }
    }
    let (res, ns) = (target.res, target.namespace.as_deref());
    let status_only = target.sub.is_some();
    let applied = validate(res, ns, Some(name), applied, false)?;
    let manager = q.get("fieldManager").unwrap_or_default();
    let force = q.flag("force");
    let api_version = res.api_version();
    // A create racing with ours turns into an update on the second pass.
    for _ in 0..2 {
        let updated = st.store.modify(res, ns, name, status_only, dry, |current| {
            let obj = cattery_store::managed_fields::apply(
                Some(current),
                &applied,
                manager,
                force,
                &api_version,
            )?;
            validate(res, ns, Some(name), obj, false)
        });
        match updated {
            Ok(obj) => return Ok(json_response(StatusCode::OK, &obj)),
            Err(ApiError::NotFound { kind, .. }) if kind == res.plural && !status_only => {
                let obj = cattery_store::managed_fields::apply(
                    None,
                    &applied,
                    manager,
                    force,
                    &api_version,
                )?;
                let obj = validate(res, ns, Some(name), obj, true)?;
                match st.store.create(res, ns, obj, dry) {
                    Ok(obj) => return Ok(json_response(StatusCode::CREATED, &obj)),
                    Err(ApiError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict(format!(
        "{} \"{name}\" was created and deleted concurrently with this apply; try again",
        res.plural
    )))
}

fn check_preconditions(current: &Value, opts: &[u8]) -> Result<(), ApiError> {
    if opts.is_empty() {
        return Ok(());
    }
    let opts: Value = serde_json::from_slice(opts).map_err(|e| {
        ApiError::BadRequest(format!("the DeleteOptions body is not valid JSON: {e}"))
    })?;
    for field in ["uid", "resourceVersion"] {
        if let Some(want) = opts
            .pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
        {
            let have = current["metadata"][field].as_str().unwrap_or("");
            if want != have {
                return Err(ApiError::Conflict(format!(
                    "Precondition failed: {field} in precondition: {want}, {field} in object meta: {have}"
                )));
            }
        }
    }
    Ok(())
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn patch_kind(headers: &HeaderMap) -> Result<PatchKind, ApiError> {
    match content_type(headers).as_str() {
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/apply-patch+cbor" => Err(ApiError::UnsupportedMediaType(
            "server-side apply in CBOR is not supported by the simulator; send application/apply-patch+yaml"
                .into(),
        )),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format ({other:?}); accepted media types: \
             application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
        ))),
    }
}

async fn read_body(body: Body, headers: &HeaderMap) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::TooLarge(MAX_BODY));
    }
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::TooLarge(MAX_BODY))
}

/// Reads a JSON or YAML object body.
async fn decode(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    let bytes = read_body(body, headers).await?;
    decode_bytes(&ct, &bytes)
}

fn decode_bytes(ct: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    match ct {
        "" | "application/json" | "*/*" => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_saphyr::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid YAML: {e}"))),
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(bytes),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format ({other:?}); accepted media types: \
             application/json, application/yaml, application/vnd.kubernetes.protobuf"
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks a DNS-1123 label (namespaces, services) or subdomain (the rest).
fn name_error(name: &str, label: bool) -> Option<String> {
    let (max, what) = if label {
        (63, "RFC 1123 label")
    } else {
        (253, "RFC 1123 subdomain")
    };
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label && c == '.'));
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let parts_ok = label
        || name
            .split('.')
            .all(|p| ends_ok(p.chars().next()) && ends_ok(p.chars().last()));
    if name.len() > max {
        return Some(format!(
            "Invalid value: {name:?}: must be no more than {max} characters"
        ));
    }
    if !ok_chars || !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) || !parts_ok {
        return Some(format!(
            "Invalid value: {name:?}: a lowercase {what} must consist of lower case alphanumeric characters, \
             '-'{} and must start and end with an alphanumeric character",
            if label { "" } else { " or '.'" }
        ));
    }
    None
}

/// Validates a request object against the URL it was sent to and returns
/// it normalized (apiVersion/kind filled in, metadata an object).
pub(crate) fn validate(
    res: &'static ResourceType,
    ns: Option<&str>,
    url_name: Option<&str>,
    mut obj: Value,
    creating: bool,
) -> Result<Value, ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    let Value::Object(map) = &mut obj else {
        return bad(format!(
            "the request body must be a JSON object, got {}",
            type_name(&obj)
        ));
    };
    match map.get("apiVersion") {
        None => {}
        Some(Value::String(v)) if *v == res.api_version() => {}
        Some(v) => {
            return bad(format!(
                "apiVersion: the API version in the data ({}) does not match the expected API version ({}) of {}",
                v.as_str().unwrap_or("<not a string>"),
                res.api_version(),
                res.plural
            ));
        }
    }
    match map.get("kind") {
        None => {}
        Some(Value::String(k)) if k == res.kind => {}
        Some(k) => {
            return bad(format!(
                "kind: the kind in the data ({}) does not match the kind served at this URL ({}, for {})",
                k.as_str().unwrap_or("<not a string>"),
                res.kind,
                res.plural
            ));
        }
    }
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    let Value::Object(meta) = meta else {
        return bad(format!(
            "metadata: must be an object, got {}",
            type_name(meta)
        ));
    };
    for field in ["name", "namespace", "generateName", "resourceVersion"] {
        if let Some(v) = meta.get(field).filter(|v| !v.is_string() && !v.is_null()) {
            return bad(format!(
                "metadata.{field}: must be a string, got {}",
                type_name(v)
            ));
        }
    }
    for field in ["labels", "annotations"] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string()) {
                    return bad(format!(
                        "metadata.{field}.{k}: must be a string, got {}",
                        type_name(v)
                    ));
                }
            }
            Some(v) => {
                return bad(format!(
                    "metadata.{field}: must be an object, got {}",
                    type_name(v)
                ));
            }
        }
    }
    let body_ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    if res.namespaced && !body_ns.is_empty() && Some(body_ns) != ns {
        return bad(format!(
            "metadata.namespace: the namespace of the provided object ({body_ns}) does not match the \
             namespace sent on the request ({})",
            ns.unwrap_or("<none>")
        ));
    }
    if res.namespaced && ns.is_none() {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} must be created in a namespace: POST to {}/namespaces/<namespace>/{}",
            res.plural,
            res.gv_path(),
            res.plural
        )));
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let invalid = |field: &str, detail: String| {
        Err(ApiError::Invalid {
            kind: res.kind.into(),
            name: name.clone(),
            field: field.into(),
            detail,
        })
    };
    if let Some(url_name) = url_name {
        if name.is_empty() {
            meta.insert("name".into(), json!(url_name));
        } else if name != url_name {
            return bad(format!(
                "metadata.name: the name of the object ({name}) does not match the name on the URL ({url_name})"
            ));
        }
    } else if name.is_empty() {
        if !creating
            || meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            return invalid(
                "metadata.name",
                "Required value: name or generateName is required".into(),
            );
        }
    } else if let Some(e) = name_error(
        &name,
        !res.custom && matches!(res.kind, "Namespace" | "Service"),
    ) {
        return invalid("metadata.name", e);
    }
    if !res.custom && res.kind == "Pod" {
        let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
        match containers {
            Some(cs) if !cs.is_empty() => {
                for (i, c) in cs.iter().enumerate() {
                    for f in ["name", "image"] {
                        if c.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
                            return invalid(
                                &format!("spec.containers[{i}].{f}"),
                                "Required value".into(),
                            );
                        }
                    }
                }
            }
            _ => {
                return invalid(
                    "spec.containers",
                    "Required value: a pod needs at least one container".into(),
                );
            }
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let store = crate::objects::Store::new("t", "10.244.0.0/16".parse().unwrap());
        let parse_path = |p: &str| parse_path(&store, p);
        let t = parse_path("/api/v1/namespaces/shop/pods/web").unwrap();
        assert_eq!(
            (t.res.plural, t.namespace.as_deref(), t.name.as_deref()),
            ("pods", Some("shop"), Some("web"))
        );
        let t = parse_path("/api/v1/namespaces/shop").unwrap();
        assert_eq!(
            (t.res.plural, t.namespace, t.name.as_deref()),
            ("namespaces", None, Some("shop"))
        );
        let t = parse_path("/api/v1/namespaces/shop/status").unwrap();
        assert_eq!(
            (t.res.plural, t.sub.as_deref()),
            ("namespaces", Some("status"))
        );
        let t = parse_path("/api/v1/pods").unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = parse_path("/api/v1/watch/namespaces/shop/pods").unwrap();
        assert!(t.watch_prefix);
        let t = parse_path("/apis/networking.k8s.io/v1/namespaces/a/networkpolicies").unwrap();
        assert_eq!(t.res.kind, "NetworkPolicy");
        assert!(
            parse_path("/api/v1/pods/web").is_none(),
            "namespaced object without namespace"
        );
        assert!(parse_path("/api/v1/deployments").is_none());
        assert!(parse_path("/apis/cattery.dev/v1/managementclusterconnections/x").is_some());
    }

    #[test]
    fn validation_names_the_field() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let ok = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let v = validate(pods, Some("shop"), None, ok.clone(), true).unwrap();
        assert_eq!(v["metadata"]["name"], "web");

        let err = |obj: Value| {
            validate(pods, Some("shop"), None, obj, true)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(json!({"metadata": {"name": "web", "labels": {"app": 1}}}))
                .contains("metadata.labels.app")
        );
        assert!(err(json!({"kind": "Service", "metadata": {"name": "x"}})).contains("kind"));
        assert!(
            err(json!({"metadata": {"name": "Web_1"}, "spec": ok["spec"]})).contains("RFC 1123")
        );
        assert!(err(json!({"metadata": {"name": "web"}})).contains("spec.containers"));
        assert!(
            err(json!({"metadata": {"name": "w", "namespace": "other"}})).contains("namespace")
        );
        assert!(err(json!([])).contains("must be a JSON object"));
        let e = validate(pods, Some("shop"), None, json!({"metadata": {}}), true).unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.to_status()["details"]["causes"][0]["field"],
            "metadata.name"
        );
    }

    #[test]
    fn names() {
        assert!(name_error("web-1", true).is_none());
        assert!(name_error("a.b", false).is_none());
        assert!(name_error("a.b", true).is_some());
        assert!(name_error("-a", false).is_some());
        assert!(name_error(&"a".repeat(64), true).is_some());
    }

    #[test]
    fn yaml_and_json_bodies() {
        let v = decode_bytes("application/yaml", b"metadata:\n  name: x\n").unwrap();
        assert_eq!(v["metadata"]["name"], "x");
        let e = decode_bytes("application/json", b"{\"metadata\": ").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert_eq!(
            decode_bytes("application/cbor", b"").unwrap_err().code(),
            415
        );
    }
}
