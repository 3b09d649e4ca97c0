//! The four `rbac.authorization.k8s.io/v1` kinds (ClusterRole, ClusterRoleBinding, Role,
//! RoleBinding) as descriptors of the generic resource handlers: their validation, Table
//! columns (kubectl's), built-in objects and the admission hook that keeps Kubernetes'
//! escalation rules.
//!
//! A role can only be written by someone who holds every permission in it (or has
//! `escalate` on that role), and a binding only by someone who holds the referenced
//! role's permissions (or has `bind` on it); a binding's `roleRef` cannot change. The
//! hook runs on create, update, patch and server-side apply, on the object about to be
//! stored. Built-in objects (from [`cattery_rbac::builtin`]) are listed with the others
//! and refused on every write by the generic handlers.

use cattery_rbac::{GROUP_RBAC, PolicyRule, Requester, RoleRef, builtin};
use cattery_store::http::table::Column;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::ApiError;
use super::kinds::{Descriptor, HubKind, STORE_VERBS, str_at};
use crate::AppState;
use crate::auth::Identity;

const API_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// kubectl's CREATED AT: the creation time as written (RFC 3339).
fn created_at(o: &Value) -> Value {
    str_at(o, "/metadata/creationTimestamp")
}

const ROLE_COLUMNS: &[Column] = &[Column {
    name: "Created At",
    ty: "string",
    priority: 0,
    cell: created_at,
}];

/// The names of subjects of `kind` (service accounts as `namespace/name`), joined as
/// kubectl prints them.
fn subjects(o: &Value, kind: &str) -> Value {
    let names: Vec<String> = o
        .get("subjects")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter(|s| s["kind"] == kind)
                .map(|s| {
                    let name = s["name"].as_str().unwrap_or("");
                    match s["namespace"].as_str() {
                        Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                        _ => name.to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    json!(names.join(", "))
}

fn role_ref(o: &Value) -> Value {
    json!(format!(
        "{}/{}",
        o.pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or(""),
        o.pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    ))
}

/// kubectl's: ROLE, AGE and, with `-o wide`, USERS, GROUPS, SERVICEACCOUNTS.
const BINDING_COLUMNS: &[Column] = &[
    Column {
        name: "Role",
        ty: "string",
        priority: 0,
        cell: role_ref,
    },
    Column {
        name: "Users",
        ty: "string",
        priority: 1,
        cell: |o| subjects(o, "User"),
    },
    Column {
        name: "Groups",
        ty: "string",
        priority: 1,
        cell: |o| subjects(o, "Group"),
    },
    Column {
        name: "ServiceAccounts",
        ty: "string",
        priority: 1,
        cell: |o| subjects(o, "ServiceAccount"),
    },
];

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::with_reason(400, "Invalid", msg)
}

fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError::with_reason(403, "Forbidden", msg)
}

/// Decodes `obj` as `T` (unknown fields refused, naming them) and runs `validate`.
fn decode_checked<T: DeserializeOwned>(
    kind: &str,
    obj: &Value,
    validate: fn(&T) -> Result<(), cattery_rbac::ValidationError>,
) -> Result<T, ApiError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let k = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    cattery_api::wire::check_type(api_version, k, &[API_VERSION], kind)?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut input = obj.clone();
    // Server-set metadata the k8s-openapi types know but a client need not send back.
    if let Some(m) = input
        .pointer_mut("/metadata")
        .and_then(Value::as_object_mut)
    {
        m.remove("managedFields");
    }
    let o: T = cattery_api::wire::from_value(input)
        .map_err(|e| invalid(format!("{kind} {name:?}: {e}")))?;
    validate(&o).map_err(|e| invalid(e.to_string()))?;
    Ok(o)
}

fn validate_cluster_role(obj: &Value) -> Result<(), ApiError> {
    decode_checked("ClusterRole", obj, cattery_rbac::validate_cluster_role).map(drop)
}

fn validate_role(obj: &Value) -> Result<(), ApiError> {
    decode_checked("Role", obj, cattery_rbac::validate_role).map(drop)
}

fn validate_cluster_role_binding(obj: &Value) -> Result<(), ApiError> {
    decode_checked(
        "ClusterRoleBinding",
        obj,
        cattery_rbac::validate_cluster_role_binding,
    )
    .map(drop)
}

fn validate_role_binding(obj: &Value) -> Result<(), ApiError> {
    decode_checked("RoleBinding", obj, cattery_rbac::validate_role_binding).map(drop)
}

fn to_values<T: serde::Serialize>(objects: Vec<T>) -> Vec<Value> {
    objects
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .map(|mut v| {
            v["apiVersion"] = json!(API_VERSION);
            v
        })
        .collect()
}

fn builtin_cluster_roles() -> Vec<Value> {
    let mut v = to_values(builtin::cluster_roles());
    for o in &mut v {
        o["kind"] = json!("ClusterRole");
    }
    v
}

fn builtin_cluster_role_bindings() -> Vec<Value> {
    let mut v = to_values(builtin::policy().cluster_role_bindings);
    for o in &mut v {
        o["kind"] = json!("ClusterRoleBinding");
    }
    v
}

fn meta_str<'a>(o: &'a Value, field: &str) -> &'a str {
    o.pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn requester(who: &Identity) -> Requester<'_> {
    Requester {
        user: &who.user,
        groups: &who.groups,
    }
}

/// Whether `who` may `verb` the RBAC object `plural`/`name` (in `ns`, "" = cluster-wide).
fn may(state: &AppState, who: &Identity, verb: &str, plural: &str, name: &str, ns: &str) -> bool {
    state
        .authz
        .current()
        .authorize(
            &requester(who),
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

/// Kubernetes' escalation check for writing a role: `escalate` on it, or every rule held.
fn admit_role(
    state: &AppState,
    who: &Identity,
    _old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let kind = new["kind"].as_str().unwrap_or("Role");
    let plural = if kind == "Role" {
        "roles"
    } else {
        "clusterroles"
    };
    let (name, ns) = (meta_str(new, "name"), meta_str(new, "namespace"));
    if may(state, who, "escalate", plural, name, ns) {
        return Ok(());
    }
    let rules: Vec<PolicyRule> = serde_json::from_value(new["rules"].clone()).unwrap_or_default();
    state
        .authz
        .current()
        .check_escalation(&requester(who), &rules, (!ns.is_empty()).then_some(ns))
        .map_err(|missing| {
            forbidden(format!(
                "{kind} {name:?} would grant permissions you do not have ({missing}); ask someone who has them, or for `escalate` on {plural}"
            ))
        })
}

/// Kubernetes' bind check for writing a binding: `bind` on the referenced role, or every
/// permission it grants held; and `roleRef` never changes.
fn admit_binding(
    state: &AppState,
    who: &Identity,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let kind = new["kind"].as_str().unwrap_or("RoleBinding");
    let (name, ns) = (meta_str(new, "name"), meta_str(new, "namespace"));
    if let Some(old) = old
        && old.get("roleRef") != new.get("roleRef")
    {
        return Err(ApiError::with_reason(
            422,
            "Invalid",
            format!(
                "{kind} {name:?} roleRef: Invalid value: cannot change roleRef (delete the binding and create a new one)"
            ),
        ));
    }
    let role_ref: RoleRef = serde_json::from_value(new["roleRef"].clone())
        .map_err(|e| invalid(format!("{kind} {name:?} roleRef: {e}")))?;
    let (ref_plural, ref_ns) = if role_ref.kind == "Role" {
        ("roles", ns)
    } else {
        ("clusterroles", "")
    };
    if may(state, who, "bind", ref_plural, &role_ref.name, ref_ns) {
        return Ok(());
    }
    let rules = role_rules(state, &role_ref.kind, ns, &role_ref.name).ok_or_else(|| {
        ApiError::new(
            404,
            format!(
                "{kind} {name:?} roleRef: {} {:?} not found (create it first)",
                role_ref.kind, role_ref.name
            ),
        )
    })?;
    state
        .authz
        .current()
        .check_escalation(&requester(who), &rules, (!ns.is_empty()).then_some(ns))
        .map_err(|missing| {
            forbidden(format!(
                "{kind} {name:?} would grant {} {:?}, which has permissions you do not have ({missing}); ask for `bind` on {ref_plural} {:?}",
                role_ref.kind, role_ref.name, role_ref.name
            ))
        })
}

/// The rules of the role a binding's `roleRef` points at (`ClusterRole`, or `Role` in
/// `namespace`), if it exists; built-ins first, as in the compiled policy.
fn role_rules(
    state: &AppState,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<Vec<PolicyRule>> {
    let (k, ns) = match kind {
        "ClusterRole" => (HubKind::ClusterRole, None),
        "Role" => (HubKind::Role, Some(namespace)),
        _ => return None,
    };
    let obj = match k.descriptor().builtin(name) {
        Some(b) => b,
        None => (*state.resources.get(k, ns, name).ok()?).clone(),
    };
    Some(serde_json::from_value(obj["rules"].clone()).unwrap_or_default())
}

/// `ClusterRole`.
pub(crate) const CLUSTER_ROLE: Descriptor = Descriptor {
    kind: HubKind::ClusterRole,
    group: GROUP_RBAC,
    version: "v1",
    kind_name: "ClusterRole",
    plural: "clusterroles",
    singular: "clusterrole",
    short_names: &[],
    namespaced: false,
    validate: validate_cluster_role,
    columns: ROLE_COLUMNS,
    age_column: false,
    admit: Some(admit_role),
    builtins: builtin_cluster_roles,
    create_on_update: true,
    verbs: STORE_VERBS,
};

/// `ClusterRoleBinding`.
pub(crate) const CLUSTER_ROLE_BINDING: Descriptor = Descriptor {
    kind: HubKind::ClusterRoleBinding,
    group: GROUP_RBAC,
    version: "v1",
    kind_name: "ClusterRoleBinding",
    plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    short_names: &[],
    namespaced: false,
    validate: validate_cluster_role_binding,
    columns: BINDING_COLUMNS,
    age_column: true,
    admit: Some(admit_binding),
    builtins: builtin_cluster_role_bindings,
    create_on_update: true,
    verbs: STORE_VERBS,
};

/// `Role` (namespaced).
pub(crate) const ROLE: Descriptor = Descriptor {
    kind: HubKind::Role,
    group: GROUP_RBAC,
    version: "v1",
    kind_name: "Role",
    plural: "roles",
    singular: "role",
    short_names: &[],
    namespaced: true,
    validate: validate_role,
    columns: ROLE_COLUMNS,
    age_column: false,
    admit: Some(admit_role),
    builtins: super::kinds::no_builtins,
    create_on_update: true,
    verbs: STORE_VERBS,
};

/// `RoleBinding` (namespaced).
pub(crate) const ROLE_BINDING: Descriptor = Descriptor {
    kind: HubKind::RoleBinding,
    group: GROUP_RBAC,
    version: "v1",
    kind_name: "RoleBinding",
    plural: "rolebindings",
    singular: "rolebinding",
    short_names: &[],
    namespaced: true,
    validate: validate_role_binding,
    columns: BINDING_COLUMNS,
    age_column: true,
    admit: Some(admit_binding),
    builtins: super::kinds::no_builtins,
    create_on_update: true,
    verbs: STORE_VERBS,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_fields_and_columns_match_kubectl() {
        let ok = json!({"apiVersion": API_VERSION, "kind": "ClusterRoleBinding",
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": GROUP_RBAC, "kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "g"},
                {"kind": "ServiceAccount", "name": "sa", "namespace": "ci"}]});
        validate_cluster_role_binding(&ok).unwrap();
        let mut bad = ok.clone();
        bad["roleRef"]["colour"] = json!("red");
        let e = validate_cluster_role_binding(&bad).unwrap_err();
        assert_eq!(e.0.code, 400);
        assert!(e.0.message.contains("colour"), "{}", e.0.message);
        assert_eq!(role_ref(&ok), json!("ClusterRole/r"));
        assert_eq!(subjects(&ok, "User"), json!("alice"));
        assert_eq!(subjects(&ok, "ServiceAccount"), json!("ci/sa"));
        let builtins = builtin_cluster_roles();
        assert!(builtins.iter().all(|b| b["kind"] == "ClusterRole"));
        validate_cluster_role(&builtins[0]).unwrap();
        assert!(CLUSTER_ROLE.builtin(builtin::ADMIN).is_some());
    }
}
