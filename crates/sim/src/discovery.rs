//! `/version`, API discovery and the minimal OpenAPI v3 kubectl needs.
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

use axum::Json;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::resources::{RESOURCES, ResourceType, has_status_subresource};
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

/// Group versions served, in discovery order: `("", "v1")` first.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    gvs
}

/// `GET /api`.
pub async fn api_versions() -> Json<Value> {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }))
}

fn api_group(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": group,
        "preferredVersion": versions[0], "versions": versions})
}

/// `GET /apis`.
pub async fn api_groups() -> Json<Value> {
    let mut groups: Vec<&str> = group_versions()
        .iter()
        .map(|(g, _)| *g)
        .filter(|g| !g.is_empty())
        .collect();
    groups.dedup();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1",
        "groups": groups.iter().map(|g| api_group(g)).collect::<Vec<_>>()}))
}

/// `GET /apis/{group}`.
pub async fn api_group_handler(Path(group): Path<String>) -> Response {
    if group_versions().iter().any(|(g, _)| *g == group) {
        Json(api_group(&group)).into_response()
    } else {
        ApiError::NoRoute.into_response()
    }
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if matches!(r.kind, "Pod" | "Service") {
            entry["categories"] = json!(["all"]);
        }
        resources.push(entry);
        if has_status_subresource(r) {
            resources.push(
                json!({"name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if r.kind == "Pod" {
            resources.push(
                json!({"name": "pods/exec", "singularName": "", "namespaced": true,
                "kind": "PodExecOptions", "verbs": ["create", "get"]}),
            );
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `GET /api/{version}`.
pub async fn core_resources(Path(version): Path<String>) -> Response {
    resource_list("", &version).map_or_else(
        || ApiError::NoRoute.into_response(),
        |v| Json(v).into_response(),
    )
}

/// `GET /apis/{group}/{version}`.
pub async fn group_resources(Path((group, version)): Path<(String, String)>) -> Response {
    resource_list(&group, &version).map_or_else(
        || ApiError::NoRoute.into_response(),
        |v| Json(v).into_response(),
    )
}

fn openapi_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn patch_operation(r: &ResourceType) -> Value {
    json!({
        "operationId": format!("patch{}", r.kind),
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ],
        "requestBody": {"content": {
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "object"}},
        }},
        "responses": {"200": {"description": "OK"}},
    })
}

fn openapi_doc(group: &str, version: &str) -> Option<Value> {
    let mut paths = BTreeMap::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let base = r.gv_path();
        let path = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        paths.insert(path, json!({"patch": patch_operation(r)}));
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
pub async fn openapi_v3_index() -> Json<Value> {
    let mut paths = serde_json::Map::new();
    for (g, v) in group_versions() {
        let doc = openapi_doc(g, v).expect("served group version has resources");
        let hash = hex::encode(Sha256::digest(doc.to_string().as_bytes()));
        let key = openapi_key(g, v);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", &hash[..32])}),
        );
    }
    Json(json!({"paths": paths}))
}

/// `GET /openapi/v3/api/{version}` and `/openapi/v3/apis/{group}/{version}`.
pub async fn openapi_v3_doc(Path(rest): Path<String>) -> Response {
    let parts: Vec<&str> = rest.split('/').collect();
    let doc = match parts.as_slice() {
        ["api", v] => openapi_doc("", v),
        ["apis", g, v] => openapi_doc(g, v),
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
        let list = resource_list("", "v1").unwrap();
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
        assert!(resource_list("", "v2").is_none());
    }

    #[test]
    fn openapi_declares_field_validation_for_every_kind() {
        for (g, v) in group_versions() {
            let doc = openapi_doc(g, v).unwrap();
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
