//! `rbac.authorization.k8s.io/v1` endpoints: ClusterRole, ClusterRoleBinding, Role,
//! RoleBinding — list, get, create (POST), create-or-replace (PUT, what `cattery apply`
//! uses) and delete, at the same paths as kube-apiserver.
//!
//! Kubernetes' escalation rules apply: a role can only be written by someone who holds
//! every permission in it (or has `escalate` on that role), and a binding only by someone
//! who holds the referenced role's permissions (or has `bind` on it). Built-in objects
//! are listed with the others but cannot be changed.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use cattery_rbac::{GROUP_RBAC, PolicyRule, Requester, RoleRef, builtin};
use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::Value;

use super::extract::Path;
use super::{ApiError, MAX_RESOURCE_BODY, identity, read_body, respond};
use crate::AppState;
use crate::auth::Identity;
use crate::authz::RbacKind;
use crate::store::RbacRecord;

const API_VERSION: &str = "rbac.authorization.k8s.io/v1";

fn kind_of(plural: &str, namespaced_path: bool) -> Result<RbacKind, ApiError> {
    let k = RbacKind::from_plural(plural).ok_or_else(|| {
        ApiError::new(
            404,
            format!(
                "unknown resource {plural:?} in rbac.authorization.k8s.io/v1; use clusterroles, clusterrolebindings, roles or rolebindings"
            ),
        )
    })?;
    if namespaced_path && !k.namespaced() {
        return Err(ApiError::new(
            404,
            format!("{plural} are cluster-scoped; use /apis/rbac.authorization.k8s.io/v1/{plural}"),
        ));
    }
    Ok(k)
}

/// Every object of `kind` (built-ins first), optionally in one namespace.
fn objects(state: &AppState, kind: RbacKind, ns: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let mut out: Vec<Value> = Vec::new();
    let builtins = builtin::policy();
    match kind {
        RbacKind::ClusterRole => out.extend(
            builtins
                .cluster_roles
                .iter()
                .filter_map(|o| serde_json::to_value(o).ok()),
        ),
        RbacKind::ClusterRoleBinding => out.extend(
            builtins
                .cluster_role_bindings
                .iter()
                .filter_map(|o| serde_json::to_value(o).ok()),
        ),
        _ => {}
    }
    for r in state.store.rbac_objects()? {
        if r.kind == kind.kind() && ns.is_none_or(|ns| ns == r.namespace) {
            match serde_json::from_str(&r.body) {
                Ok(v) => out.push(v),
                Err(e) => tracing::error!(
                    kind = r.kind,
                    name = r.name,
                    "stored object does not decode: {e}"
                ),
            }
        }
    }
    Ok(out)
}

fn list_response(req: &Request, kind: RbacKind, items: Vec<Value>) -> Response {
    super::respond_printed(
        req.headers(),
        http::StatusCode::OK,
        &serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": format!("{}List", kind.kind()),
            "metadata": {},
            "items": items,
        }),
        &[],
    )
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn find(state: &AppState, kind: RbacKind, ns: &str, name: &str) -> Result<Value, ApiError> {
    objects(state, kind, kind.namespaced().then_some(ns))?
        .into_iter()
        .find(|v| name_of(v) == name)
        .ok_or_else(|| {
            let what = if ns.is_empty() {
                format!("{} {name:?}", kind.plural())
            } else {
                format!("{} {ns}/{name:?}", kind.plural())
            };
            ApiError::new(404, format!("{what} not found"))
        })
}

/// `GET /apis/rbac.authorization.k8s.io/v1/{plural}` (roles and rolebindings: all namespaces).
pub async fn list_all(
    State(state): State<Arc<AppState>>,
    Path(plural): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, false)?;
    Ok(list_response(&req, kind, objects(&state, kind, None)?))
}

/// `GET …/namespaces/{ns}/{plural}`.
pub async fn list_namespaced(
    State(state): State<Arc<AppState>>,
    Path((ns, plural)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, true)?;
    Ok(list_response(&req, kind, objects(&state, kind, Some(&ns))?))
}

/// `GET …/{plural}/{name}`.
pub async fn get_cluster_scoped(
    State(state): State<Arc<AppState>>,
    Path((plural, name)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, false)?;
    if kind.namespaced() {
        return Err(namespaced_needed(kind));
    }
    let v = find(&state, kind, "", &name)?;
    Ok(super::respond_printed(
        req.headers(),
        http::StatusCode::OK,
        &v,
        &[],
    ))
}

/// `GET …/namespaces/{ns}/{plural}/{name}`.
pub async fn get_namespaced(
    State(state): State<Arc<AppState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, true)?;
    let v = find(&state, kind, &ns, &name)?;
    Ok(super::respond_printed(
        req.headers(),
        http::StatusCode::OK,
        &v,
        &[],
    ))
}

fn namespaced_needed(kind: RbacKind) -> ApiError {
    ApiError::new(
        400,
        format!(
            "{} are namespaced; use /apis/rbac.authorization.k8s.io/v1/namespaces/NAMESPACE/{}",
            kind.plural(),
            kind.plural()
        ),
    )
}

/// `POST …/{plural}`.
pub async fn create_cluster_scoped(
    State(state): State<Arc<AppState>>,
    Path(plural): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, false)?;
    if kind.namespaced() {
        return Err(namespaced_needed(kind));
    }
    write(&state, kind, "", None, req, false).await
}

/// `POST …/namespaces/{ns}/{plural}`.
pub async fn create_namespaced(
    State(state): State<Arc<AppState>>,
    Path((ns, plural)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, true)?;
    write(&state, kind, &ns, None, req, false).await
}

/// `PUT …/{plural}/{name}`: create or replace.
pub async fn replace_cluster_scoped(
    State(state): State<Arc<AppState>>,
    Path((plural, name)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, false)?;
    if kind.namespaced() {
        return Err(namespaced_needed(kind));
    }
    write(&state, kind, "", Some(name), req, true).await
}

/// `PUT …/namespaces/{ns}/{plural}/{name}`: create or replace.
pub async fn replace_namespaced(
    State(state): State<Arc<AppState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, true)?;
    write(&state, kind, &ns, Some(name), req, true).await
}

/// `DELETE …/{plural}/{name}`.
pub async fn delete_cluster_scoped(
    State(state): State<Arc<AppState>>,
    Path((plural, name)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, false)?;
    if kind.namespaced() {
        return Err(namespaced_needed(kind));
    }
    delete(&state, kind, "", &name, req)
}

/// `DELETE …/namespaces/{ns}/{plural}/{name}`.
pub async fn delete_namespaced(
    State(state): State<Arc<AppState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural, true)?;
    delete(&state, kind, &ns, &name, req)
}

fn refuse_builtin(kind: RbacKind, name: &str) -> Result<(), ApiError> {
    if builtin::is_builtin(kind.kind(), name) {
        return Err(ApiError::with_reason(
            409,
            "Conflict",
            format!(
                "{} {name:?} is built in and cannot be changed or deleted; create your own {} instead",
                kind.kind(),
                kind.kind()
            ),
        ));
    }
    Ok(())
}

fn delete(
    state: &AppState,
    kind: RbacKind,
    ns: &str,
    name: &str,
    req: Request,
) -> Result<Response, ApiError> {
    refuse_builtin(kind, name)?;
    let rec = state.authz.delete(state.store.as_ref(), kind, ns, name)?;
    tracing::info!(
        kind = kind.kind(),
        namespace = ns,
        name,
        "RBAC object deleted"
    );
    let v: Value = serde_json::from_str(&rec.body).unwrap_or_default();
    Ok(respond(req.headers(), http::StatusCode::OK, &v))
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::with_reason(400, "Invalid", msg)
}

fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError::with_reason(403, "Forbidden", msg)
}

/// Fixes up metadata and checks name and namespace against the URL.
fn prepare_meta(
    meta: &mut ObjectMeta,
    kind: RbacKind,
    ns: &str,
    path_name: Option<&str>,
    existing: Option<&Value>,
) -> Result<String, ApiError> {
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(invalid(format!(
            "{} metadata.name: must not be empty",
            kind.kind()
        )));
    }
    if let Some(p) = path_name
        && p != name
    {
        return Err(invalid(format!(
            "{} metadata.name {name:?} does not match the name in the URL {p:?}",
            kind.kind()
        )));
    }
    if kind.namespaced() {
        match meta.namespace.as_deref() {
            None | Some("") => meta.namespace = Some(ns.to_string()),
            Some(n) if n != ns => {
                return Err(invalid(format!(
                    "{} metadata.namespace {n:?} does not match the namespace in the URL {ns:?}",
                    kind.kind()
                )));
            }
            _ => {}
        }
    } else if meta.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
        return Err(invalid(format!(
            "{} metadata.namespace: {} is cluster-scoped; remove the namespace",
            kind.kind(),
            kind.kind()
        )));
    } else {
        meta.namespace = None;
    }
    let old = |f: &str| {
        existing
            .and_then(|v| v.pointer(f))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    meta.uid = Some(old("/metadata/uid").unwrap_or_else(|| crate::auth::random_id(16)));
    meta.creation_timestamp = Some(match old("/metadata/creationTimestamp") {
        Some(t) => serde_json::from_value(Value::String(t))
            .map_err(|e| ApiError::new(500, format!("stored creationTimestamp: {e}")))?,
        None => Time(
            k8s_openapi::jiff::Timestamp::from_second(
                time::OffsetDateTime::now_utc().unix_timestamp(),
            )
            .map_err(|e| ApiError::new(500, format!("clock: {e}")))?,
        ),
    });
    meta.resource_version = None;
    meta.managed_fields = None;
    Ok(name)
}

/// The rules the role `role_ref` grants, if it exists (for the bind check).
fn referenced_rules(
    state: &AppState,
    role_ref: &RoleRef,
    ns: &str,
) -> Result<Option<Vec<PolicyRule>>, ApiError> {
    Ok(state.authz.role_rules(&role_ref.kind, ns, &role_ref.name))
}

fn may(state: &AppState, who: &Identity, verb: &str, plural: &str, name: &str, ns: &str) -> bool {
    state
        .authz
        .current()
        .authorize(
            &Requester {
                user: &who.user,
                groups: &who.groups,
            },
            &cattery_rbac::Request::Resource {
                verb,
                api_group: GROUP_RBAC,
                resource: plural,
                subresource: None,
                name: Some(name),
                namespace: (!ns.is_empty()).then_some(ns),
            },
        )
        .allowed
}

/// Kubernetes' escalation check for writing a role with `rules`.
fn check_role_escalation(
    state: &AppState,
    who: &Identity,
    kind: RbacKind,
    name: &str,
    ns: &str,
    rules: &[PolicyRule],
) -> Result<(), ApiError> {
    if may(state, who, "escalate", kind.plural(), name, ns) {
        return Ok(());
    }
    state
        .authz
        .current()
        .check_escalation(
            &Requester {
                user: &who.user,
                groups: &who.groups,
            },
            rules,
            (!ns.is_empty()).then_some(ns),
        )
        .map_err(|missing| {
            forbidden(format!(
                "{} {name:?} would grant permissions you do not have ({missing}); ask someone who has them, or for `escalate` on {}",
                kind.kind(),
                kind.plural()
            ))
        })
}

/// Kubernetes' bind check for writing a binding to `role_ref`.
fn check_bind(
    state: &AppState,
    who: &Identity,
    kind: RbacKind,
    name: &str,
    ns: &str,
    role_ref: &RoleRef,
) -> Result<(), ApiError> {
    let ref_plural = if role_ref.kind == "Role" {
        "roles"
    } else {
        "clusterroles"
    };
    let ref_ns = if role_ref.kind == "Role" { ns } else { "" };
    if may(state, who, "bind", ref_plural, &role_ref.name, ref_ns) {
        return Ok(());
    }
    let rules = referenced_rules(state, role_ref, ns)?.ok_or_else(|| {
        ApiError::new(
            404,
            format!(
                "{} {name:?} roleRef: {} {:?} not found (create it first)",
                kind.kind(),
                role_ref.kind,
                role_ref.name
            ),
        )
    })?;
    state
        .authz
        .current()
        .check_escalation(
            &Requester {
                user: &who.user,
                groups: &who.groups,
            },
            &rules,
            (!ns.is_empty()).then_some(ns),
        )
        .map_err(|missing| {
            forbidden(format!(
                "{} {name:?} would grant {} {:?}, which has permissions you do not have ({missing}); ask for `bind` on it",
                kind.kind(),
                role_ref.kind,
                role_ref.name
            ))
        })
}

fn decode_object(body: &[u8], kind: RbacKind) -> Result<Value, ApiError> {
    let v: Value = cattery_api::wire::decode(body)?;
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let k = v.get("kind").and_then(Value::as_str).unwrap_or("");
    cattery_api::wire::check_type(api_version, k, &[API_VERSION], kind.kind())?;
    Ok(v)
}

/// Where an object is being written: its kind, namespace, the name in the URL (PUT) and
/// the object it replaces.
type Target<'a> = (RbacKind, &'a str, Option<&'a str>, Option<&'a Value>);

/// Decodes one RBAC object, fills in its server-owned metadata, validates it and runs the
/// caller's permission check (`escalate` for roles, `bind` for bindings); returns its name
/// and the JSON to store.
fn admit<T>(
    v: Value,
    (kind, ns, path_name, existing): Target<'_>,
    validate: fn(&T) -> Result<(), cattery_rbac::ValidationError>,
    check: impl FnOnce(&T, &str) -> Result<(), ApiError>,
) -> Result<(String, Value), ApiError>
where
    T: serde::de::DeserializeOwned + serde::Serialize + Metadata<Ty = ObjectMeta>,
{
    let claimed = name_of(&v).to_string();
    let mut o: T = cattery_api::wire::from_value(v)
        .map_err(|e| invalid(format!("{} {claimed:?}: {e}", kind.kind())))?;
    let name = prepare_meta(o.metadata_mut(), kind, ns, path_name, existing)?;
    validate(&o).map_err(|e| invalid(e.to_string()))?;
    check(&o, &name)?;
    let stored =
        serde_json::to_value(&o).map_err(|e| ApiError::new(500, format!("encoding: {e}")))?;
    Ok((name, stored))
}

async fn write(
    state: &AppState,
    kind: RbacKind,
    ns: &str,
    path_name: Option<String>,
    req: Request,
    replace: bool,
) -> Result<Response, ApiError> {
    let who = identity(&req);
    let headers = req.headers().clone();
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    let v = decode_object(&body, kind)?;
    let claimed = name_of(&v).to_string();
    refuse_builtin(kind, path_name.as_deref().unwrap_or(&claimed))?;
    let existing = if replace {
        find(state, kind, ns, path_name.as_deref().unwrap_or(&claimed)).ok()
    } else {
        None
    };
    let meta = (kind, ns, path_name.as_deref(), existing.as_ref());
    let (name, stored) = match kind {
        RbacKind::ClusterRole => admit(v, meta, cattery_rbac::validate_cluster_role, |o, name| {
            check_role_escalation(
                state,
                &who,
                kind,
                name,
                ns,
                o.rules.as_deref().unwrap_or(&[]),
            )
        })?,
        RbacKind::Role => admit(v, meta, cattery_rbac::validate_role, |o, name| {
            check_role_escalation(
                state,
                &who,
                kind,
                name,
                ns,
                o.rules.as_deref().unwrap_or(&[]),
            )
        })?,
        RbacKind::ClusterRoleBinding => admit(
            v,
            meta,
            cattery_rbac::validate_cluster_role_binding,
            |o, name| check_bind(state, &who, kind, name, ns, &o.role_ref),
        )?,
        RbacKind::RoleBinding => admit(v, meta, cattery_rbac::validate_role_binding, |o, name| {
            check_bind(state, &who, kind, name, ns, &o.role_ref)
        })?,
    };
    let record = RbacRecord {
        kind: kind.kind().into(),
        namespace: ns.into(),
        name: name.clone(),
        body: stored.to_string(),
    };
    let created = state.authz.put(state.store.as_ref(), &record, replace)?;
    tracing::info!(
        kind = kind.kind(),
        namespace = ns,
        name,
        user = who.user,
        created,
        "RBAC object written"
    );
    let code = if created {
        http::StatusCode::CREATED
    } else {
        http::StatusCode::OK
    };
    Ok(respond(&headers, code, &stored))
}
