//! `/version`, API discovery and the minimal OpenAPI v3 kubectl needs. The documents are
//! built by `cattery_store::http::discovery` (shared with the hub); this module adds the
//! simulator's subresources (`/status`, `pods/exec`) and categories. The types are the
//! store's: the built-in ones and those of the CustomResourceDefinitions applied
//! ([`crate::crd`]), so a CRD appears here as soon as it is stored.
//!
//! Discovery is the legacy (unaggregated) form: `/api`, `/api/v1`, `/apis`,
//! `/apis/<group>`, `/apis/<group>/<version>`; clients that ask for the
//! aggregated `apidiscovery.k8s.io` form get plain JSON and fall back, as
//! they do against older apiservers.
//!
//! OpenAPI: `/openapi/v2` is 404. `/openapi/v3` serves, per group version,
//! only the PATCH operations, each tagged with its group-version-kind and
//! declaring the `fieldValidation` query parameter. That is what kubectl's
//! `apply`/`create` look for to decide that the server validates fields
//! itself; without it kubectl falls back to client-side validation, which
//! needs the full `/openapi/v2` schema and fails. The simulator accepts
//! `fieldValidation` but does not check unknown fields (it has no schemas).

use std::collections::BTreeMap;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use cattery_store::http::discovery::{self as d, ApiResource};
use serde_json::{Value, json};

use crate::AppState;
use crate::objects::Store;
use crate::resources::{ResourceType, has_status_subresource};
use crate::status::ApiError;

/// The Kubernetes version the simulator claims to be.
pub const GIT_VERSION: &str = "v1.32.0-sim";

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `GET /version`.
pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }))
}

/// The served types as `cattery_store::http::discovery` describes them.
fn api_resources(types: &[&'static ResourceType]) -> Vec<ApiResource> {
    types
        .iter()
        .map(|r| ApiResource {
            group: r.group,
            version: r.version,
            kind: r.kind,
            plural: r.plural,
            singular: r.singular,
            short_names: r.short_names,
            namespaced: r.namespaced,
            verbs: VERBS,
        })
        .collect()
}

/// Group versions served, in discovery order: `("", "v1")` first.
#[cfg(test)]
fn group_versions(store: &Store) -> Vec<(&'static str, &'static str)> {
    d::group_versions(&api_resources(&store.types()))
}

/// `GET /api`.
pub async fn api_versions() -> Json<Value> {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }))
}

/// `GET /apis`.
pub async fn api_groups(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(d::api_group_list(&api_resources(&st.store.types())))
}

/// `GET /apis/{group}`.
pub async fn api_group_handler(
    State(st): State<Arc<AppState>>,
    Path(group): Path<String>,
) -> Response {
    match d::api_group(&api_resources(&st.store.types()), &group) {
        Some(g) => Json(g).into_response(),
        None => ApiError::NoRoute.into_response(),
    }
}

fn resource_list(store: &Store, group: &str, version: &str) -> Option<Value> {
    let types = store.types();
    let mut list = d::resource_list(&api_resources(&types), group, version)?;
    let mut resources = Vec::new();
    for mut entry in list["resources"].as_array().cloned().unwrap_or_default() {
        let r = types
            .iter()
            .find(|r| r.group == group && r.version == version && entry["name"] == r.plural)
            .expect("listed from the served types");
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        if has_status_subresource(r) {
            resources.push(
                json!({"name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if !r.custom && r.kind == "Pod" {
            resources.push(
                json!({"name": "pods/exec", "singularName": "", "namespaced": true,
                "kind": "PodExecOptions", "verbs": ["create", "get"]}),
            );
        }
    }
    list["resources"] = Value::Array(resources);
    Some(list)
}

/// `GET /api/{version}`.
pub async fn core_resources(
    State(st): State<Arc<AppState>>,
    Path(version): Path<String>,
) -> Response {
    resource_list(&st.store, "", &version).map_or_else(
        || ApiError::NoRoute.into_response(),
        |v| Json(v).into_response(),
    )
}

/// `GET /apis/{group}/{version}`.
pub async fn group_resources(
    State(st): State<Arc<AppState>>,
    Path((group, version)): Path<(String, String)>,
) -> Response {
    resource_list(&st.store, &group, &version).map_or_else(
        || ApiError::NoRoute.into_response(),
        |v| Json(v).into_response(),
    )
}

fn openapi_doc(types: &[&'static ResourceType], group: &str, version: &str) -> Option<Value> {
    let mut paths = BTreeMap::new();
    for ar in api_resources(types)
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
    {
        paths.insert(
            d::object_path(&ar),
            json!({"patch": d::patch_operation(&ar)}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (cattery-sim: PATCH operations only)", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// `GET /openapi/v3`: the index of group-version documents.
pub async fn openapi_v3_index(State(st): State<Arc<AppState>>) -> Json<Value> {
    let types = st.store.types();
    Json(d::openapi_index(&api_resources(&types), |g, v| {
        openapi_doc(&types, g, v)
    }))
}

/// `GET /openapi/v3/api/{version}` and `/openapi/v3/apis/{group}/{version}`.
pub async fn openapi_v3_doc(State(st): State<Arc<AppState>>, Path(rest): Path<String>) -> Response {
    let types = st.store.types();
    let parts: Vec<&str> = rest.split('/').collect();
    let doc = match parts.as_slice() {
        ["api", v] => openapi_doc(&types, "", v),
        ["apis", g, v] => openapi_doc(&types, g, v),
        _ => None,
    };
    doc.map_or_else(
        || ApiError::NoRoute.into_response(),
        |d| Json(d).into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_discovery_lists_pods_with_short_names_and_exec() {
        let store = Store::new("t", "10.244.0.0/16".parse().unwrap());
        let list = resource_list(&store, "", "v1").unwrap();
        let pods = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["namespaced"], true);
        assert!(
            list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/exec")
        );
        let ns = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "namespaces")
            .unwrap();
        assert_eq!(ns["namespaced"], false);
        assert!(resource_list(&store, "", "v2").is_none());
    }

    #[test]
    fn openapi_declares_field_validation_for_every_kind() {
        let store = Store::new("t", "10.244.0.0/16".parse().unwrap());
        for (g, v) in group_versions(&store) {
            let doc = openapi_doc(&store.types(), g, v).unwrap();
            for (_, item) in doc["paths"].as_object().unwrap() {
                let params = item["patch"]["parameters"].as_array().unwrap();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
                );
            }
        }
    }
}
