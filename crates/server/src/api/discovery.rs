//! Discovery and OpenAPI v3 for the hub's own API, so plain kubectl works against it:
//! `/api` (no core group here), `/apis` and `/apis/<group>[/<version>]` (aggregated
//! discovery v2 when the client asks for it, the legacy documents otherwise), and
//! `/openapi/v3` with one document per group version: for every kind of the descriptor
//! table a schema tagged with its group-version-kind (what `kubectl explain` reads) and
//! the PATCH operation declaring `fieldValidation` (what `kubectl apply` looks for).
//! Documents are built by `cattery_store::http::discovery` from [`resources`].

use axum::Json;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use cattery_store::http::discovery::{
    self as d, AGGREGATED_V2, ApiResource, object_path, patch_operation,
};
use serde_json::{Value, json};

use super::ApiError;
use super::extract::Path;
use super::kinds::{HubKind, KINDS};

/// Everything the hub serves, in discovery order.
pub fn resources() -> Vec<ApiResource> {
    let mut rs: Vec<ApiResource> = KINDS
        .iter()
        .map(|k| ApiResource {
            group: k.group,
            version: k.version,
            kind: k.kind_name,
            plural: k.plural,
            singular: k.singular,
            short_names: k.short_names,
            namespaced: k.namespaced,
            verbs: k.verbs,
        })
        .collect();
    rs.push(ApiResource {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        singular: "",
        short_names: &[],
        namespaced: false,
        verbs: &["create"],
    });
    rs.push(ApiResource {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "SelfSubjectReview",
        plural: "selfsubjectreviews",
        singular: "",
        short_names: &[],
        namespaced: false,
        verbs: &["create"],
    });
    rs
}

fn accept(req: &Request) -> Option<&str> {
    req.headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

fn aggregated(doc: Value) -> Response {
    (
        [(http::header::CONTENT_TYPE, AGGREGATED_V2)],
        doc.to_string(),
    )
        .into_response()
}

/// `GET /api`: the hub has no core group.
pub async fn api(req: Request) -> Response {
    if d::wants_aggregated(accept(&req)) {
        return aggregated(d::aggregated(&resources(), true));
    }
    Json(json!({"kind": "APIVersions", "versions": [],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}))
    .into_response()
}

/// `GET /apis`.
pub async fn apis(req: Request) -> Response {
    if d::wants_aggregated(accept(&req)) {
        return aggregated(d::aggregated(&resources(), false));
    }
    Json(d::api_group_list(&resources())).into_response()
}

/// `GET /apis/{group}`.
pub async fn group(Path(group): Path<String>) -> Result<Json<Value>, ApiError> {
    d::api_group(&resources(), &group)
        .map(Json)
        .ok_or_else(|| ApiError::new(404, format!("the server could not find group {group:?}")))
}

/// `GET /apis/{group}/{version}`.
pub async fn group_version(
    Path((group, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    d::resource_list(&resources(), &group, &version)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                404,
                format!("the server could not find group version {group}/{version}"),
            )
        })
}

fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let rev: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", rev.join("."))
}

fn object_meta() -> Value {
    json!({"type": "object", "description": "Standard object metadata: name, labels, annotations; the server sets uid, resourceVersion, generation and creationTimestamp.",
    "properties": {
        "name": {"type": "string", "description": "Name, unique among objects of the kind."},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Labels for selecting objects (kubectl get -l)."},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Free-form annotations (kubectl apply keeps its last-applied configuration here)."},
        "uid": {"type": "string", "description": "Server-assigned unique id."},
        "resourceVersion": {"type": "string", "description": "Version of the object for optimistic concurrency and watch."},
        "generation": {"type": "integer", "format": "int64", "description": "Bumped on every change of the spec."},
        "creationTimestamp": {"type": "string", "format": "date-time", "description": "When the object was created."}
    }})
}

fn envelope(kind: HubKind, description: &str, spec: Value, status: Value) -> Value {
    let k = kind.descriptor();
    json!({
        "type": "object",
        "description": description,
        "x-kubernetes-group-version-kind": [{"group": k.group, "version": k.version, "kind": k.kind_name}],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": object_meta(),
            "spec": spec,
            "status": status,
        }
    })
}

/// The schema of a kind, as `kubectl explain` shows it.
fn schema(kind: HubKind) -> Value {
    match kind {
        HubKind::ManagedCluster => envelope(
            kind,
            "A Kubernetes cluster registered with the management plane; its agent connects out through a tunnel.",
            json!({"type": "object", "description": "Set by the server when the cluster is registered.",
            "properties": {
                "installationManifest": {"type": "string", "description": "The agent's installation manifest, returned once by the create call; never stored."},
                "certificateFingerprint": {"type": "string", "description": "Hex SHA-256 of the agent's current client certificate."},
                "certificateExpires": {"type": "string", "format": "date-time", "description": "Expiry of that certificate."}
            }}),
            json!({"type": "object", "description": "The tunnel as the management plane sees it now.",
            "properties": {
                "conditions": {"type": "array", "items": {"type": "object"}, "description": "ManagedClusterConnected: whether the agent's tunnel is up, and why not."},
                "connectedSince": {"type": "string", "format": "date-time", "description": "When the current tunnel was established."},
                "remoteAddress": {"type": "string", "description": "The agent's source address."},
                "agentVersion": {"type": "string", "description": "Version the agent reported."},
                "kubernetesVersion": {"type": "string", "description": "Kubernetes version the agent reported."},
                "lastLogsReceived": {"type": "string", "format": "date-time", "description": "When logs from the cluster were last stored."}
            }}),
        ),
        HubKind::FederatedPolicy => envelope(
            kind,
            "A network policy written once and placed on every cluster its placement selects, with each cluster's state in status.",
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "description": "placement, resources, overrides, mode (Enforce or Inform) and rollout."}),
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "description": "Per-cluster state and counts."}),
        ),
        HubKind::Token => envelope(
            kind,
            "A bearer token for the management plane; its secret is returned once, by the create call, and only its hash is stored.",
            json!({"type": "object", "description": "Who the token authenticates as.",
            "properties": {
                "user": {"type": "string", "description": "User name."},
                "groups": {"type": "array", "items": {"type": "string"}, "description": "Groups of that user."},
                "expirationSeconds": {"type": "integer", "description": "Lifetime on creation; omitted = no expiry."},
                "description": {"type": "string", "description": "What the token is for."}
            }}),
            json!({"type": "object", "description": "Set by the server.",
            "properties": {
                "token": {"type": "string", "description": "The secret, only in the create call's answer."},
                "expirationTimestamp": {"type": "string", "format": "date-time"},
                "revocationTimestamp": {"type": "string", "format": "date-time"},
                "lastUsedTimestamp": {"type": "string", "format": "date-time"}
            }}),
        ),
        HubKind::ClusterRole | HubKind::Role => rbac_schema(
            kind,
            "A set of permissions (Kubernetes RBAC).",
            json!({"rules": {"type": "array", "items": {"type": "object",
                "x-kubernetes-preserve-unknown-fields": true},
                "description": "PolicyRules: apiGroups, resources, resourceNames, verbs, nonResourceURLs. Atomic: replaced whole by a patch or apply."}}),
        ),
        HubKind::ClusterRoleBinding | HubKind::RoleBinding => rbac_schema(
            kind,
            "Grants the permissions of a role to subjects (Kubernetes RBAC).",
            json!({
                "roleRef": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                    "description": "The role granted: apiGroup, kind (ClusterRole or Role), name. Cannot change."},
                "subjects": {"type": "array", "items": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true},
                    "description": "Users, groups and service accounts. Atomic: replaced whole by a patch or apply."}
            }),
        ),
    }
}

/// An RBAC kind's schema: no spec or status, its fields at the top level.
fn rbac_schema(kind: HubKind, description: &str, fields: Value) -> Value {
    let mut s = envelope(kind, description, json!({}), json!({}));
    let props = s["properties"]
        .as_object_mut()
        .expect("envelope has properties");
    props.remove("spec");
    props.remove("status");
    if let Some(f) = fields.as_object() {
        props.extend(f.clone());
    }
    s
}

/// The OpenAPI v3 document of one group version.
fn openapi_doc(group: &str, version: &str) -> Option<Value> {
    let rs = resources();
    if !rs.iter().any(|r| r.group == group && r.version == version) {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    // Every writable kind declares its PATCH operation with `fieldValidation`: kubectl
    // looks for it to leave validation to the server (otherwise it wants /openapi/v2).
    for r in rs
        .iter()
        .filter(|r| r.group == group && r.version == version && r.verbs.contains(&"update"))
    {
        paths.insert(object_path(r), json!({"patch": patch_operation(r)}));
    }
    for k in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        schemas.insert(schema_name(k.group, k.version, k.kind_name), schema(k.kind));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Cattery management plane", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `GET /openapi/v3`.
pub async fn openapi_index() -> Json<Value> {
    Json(d::openapi_index(&resources(), openapi_doc))
}

/// `GET /openapi/v3/apis/{group}/{version}`.
pub async fn openapi_v3_doc(Path(rest): Path<String>) -> Result<Json<Value>, ApiError> {
    let parts: Vec<&str> = rest.split('/').collect();
    let doc = match parts.as_slice() {
        ["apis", g, v] => openapi_doc(g, v),
        _ => None,
    };
    doc.map(Json)
        .ok_or_else(|| ApiError::new(404, format!("no OpenAPI document at /openapi/v3/{rest}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_tagged_schema_and_a_patch_operation() {
        for k in KINDS {
            let doc = openapi_doc(k.group, k.version).unwrap();
            let s = &doc["components"]["schemas"][schema_name(k.group, k.version, k.kind_name)];
            assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], k.kind_name);
            let path = if k.namespaced {
                format!("{}/{{name}}", k.namespaced_collection_path())
            } else {
                format!("{}/{{name}}", k.collection_path())
            };
            let patchable = doc["paths"][&path]["patch"].is_object()
                || doc["paths"].as_object().unwrap().iter().any(|(p, v)| {
                    p.ends_with(&format!("/{}/{{name}}", k.plural)) && v["patch"].is_object()
                });
            assert_eq!(patchable, k.writable(), "{path}");
        }
        assert_eq!(
            schema_name("cattery.dev", "v1", "ManagedCluster"),
            "dev.cattery.v1.ManagedCluster"
        );
        assert!(openapi_doc("nothing", "v1").is_none());
    }
}
