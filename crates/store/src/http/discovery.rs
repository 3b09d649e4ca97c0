//! API discovery documents (`/api`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`,
//! the aggregated `apidiscovery.k8s.io/v2` form) and the OpenAPI v3 index, built from a
//! list of [`ApiResource`]s. The caller serves them and adds what is special to it
//! (subresources, categories, schemas).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Every verb of a fully served resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One resource type as discovery shows it.
#[derive(Debug, Clone, Copy)]
pub struct ApiResource {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Version within the group.
    pub version: &'static str,
    /// Object `kind`.
    pub kind: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Short names (`kubectl get po`).
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs served.
    pub verbs: &'static [&'static str],
}

/// `group/version`, or `version` for the core group.
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Group versions served, in the order of `rs`.
pub fn group_versions(rs: &[ApiResource]) -> Vec<(&'static str, &'static str)> {
    let mut gvs: Vec<(&'static str, &'static str)> = Vec::new();
    for r in rs {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    gvs
}

/// The `APIGroup` of `group`, if any resource is in it.
pub fn api_group(rs: &[ApiResource], group: &str) -> Option<Value> {
    let versions: Vec<Value> = group_versions(rs)
        .iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": group_version(g, v), "version": v}))
        .collect();
    let preferred = versions.first()?.clone();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group,
        "preferredVersion": preferred, "versions": versions}),
    )
}

/// `GET /apis` (`APIGroupList`, without the core group).
pub fn api_group_list(rs: &[ApiResource]) -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in group_versions(rs) {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1",
        "groups": groups.iter().filter_map(|g| api_group(rs, g)).collect::<Vec<_>>()})
}

/// `GET /apis/<group>/<version>` (`APIResourceList`), if that group version is served.
pub fn resource_list(rs: &[ApiResource], group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = rs
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            let mut e = json!({"name": r.plural, "singularName": r.singular,
                "namespaced": r.namespaced, "kind": r.kind, "verbs": r.verbs});
            if !r.short_names.is_empty() {
                e["shortNames"] = json!(r.short_names);
            }
            e
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": group_version(group, version), "resources": resources}))
}

/// The media type of an aggregated discovery answer.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the `Accept` header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|m| {
            let p: Vec<&str> = m.split(';').map(str::trim).collect();
            p.contains(&"g=apidiscovery.k8s.io")
                && p.contains(&"v=v2")
                && p.contains(&"as=APIGroupDiscoveryList")
        })
    })
}

/// The aggregated discovery document (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`)
/// of the resources of `groups` (the core group alone for `/api`, the others for `/apis`).
pub fn aggregated(rs: &[ApiResource], core: bool) -> Value {
    let mut items = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (g, _) in group_versions(rs) {
        if g.is_empty() != core || seen.contains(&g) {
            continue;
        }
        seen.push(g);
        let versions: Vec<Value> = group_versions(rs)
            .iter()
            .filter(|(gg, _)| *gg == g)
            .map(|(_, v)| {
                let resources: Vec<Value> = rs
                    .iter()
                    .filter(|r| r.group == g && r.version == *v)
                    .map(|r| {
                        let mut e = json!({
                            "resource": r.plural,
                            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": r.singular,
                            "verbs": r.verbs,
                        });
                        if !r.short_names.is_empty() {
                            e["shortNames"] = json!(r.short_names);
                        }
                        e
                    })
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(json!({"metadata": {"name": g}, "versions": versions}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {}, "items": items})
}

/// The key of a group version in the OpenAPI v3 index (`api/v1`, `apis/<g>/<v>`).
pub fn openapi_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`: every served group version's document URL, with a content hash
/// (clients cache by it). `doc` builds the document of a group version.
pub fn openapi_index(rs: &[ApiResource], doc: impl Fn(&str, &str) -> Option<Value>) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in group_versions(rs) {
        let Some(d) = doc(g, v) else { continue };
        let hash = hex::encode(Sha256::digest(d.to_string().as_bytes()));
        let key = openapi_key(g, v);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", &hash[..32])}),
        );
    }
    json!({"paths": paths})
}

/// The PATCH operation of `r` in an OpenAPI document: tagged with its group-version-kind
/// and declaring `fieldValidation`, which is what kubectl looks for to leave field
/// validation to the server.
pub fn patch_operation(r: &ApiResource) -> Value {
    json!({
        "operationId": format!("patch{}", r.kind),
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
        ],
        "requestBody": {"content": {
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }},
        "responses": {"200": {"description": "OK"}},
    })
}

/// The object path of `r` (`/apis/g/v/plural/{name}`, namespaced with `{namespace}`).
pub fn object_path(r: &ApiResource) -> String {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
    } else {
        format!("{base}/{}/{{name}}", r.plural)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: &[ApiResource] = &[
        ApiResource {
            group: "",
            version: "v1",
            kind: "Pod",
            plural: "pods",
            singular: "pod",
            short_names: &["po"],
            namespaced: true,
            verbs: ALL_VERBS,
        },
        ApiResource {
            group: "cattery.dev",
            version: "v1",
            kind: "ManagedCluster",
            plural: "managedclusters",
            singular: "managedcluster",
            short_names: &[],
            namespaced: false,
            verbs: ALL_VERBS,
        },
    ];

    #[test]
    fn documents_list_what_is_served() {
        let groups = api_group_list(RS);
        assert_eq!(groups["groups"][0]["name"], "cattery.dev");
        assert_eq!(groups["groups"].as_array().unwrap().len(), 1);
        let l = resource_list(RS, "", "v1").unwrap();
        assert_eq!(l["resources"][0]["shortNames"], json!(["po"]));
        assert!(resource_list(RS, "x", "v1").is_none());
        let agg = aggregated(RS, false);
        assert_eq!(
            agg["items"][0]["versions"][0]["resources"][0]["scope"],
            "Cluster"
        );
        assert_eq!(aggregated(RS, true)["items"][0]["metadata"]["name"], "");
        assert!(wants_aggregated(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        )));
        assert!(!wants_aggregated(Some("application/json")));
        assert_eq!(
            object_path(&RS[0]),
            "/api/v1/namespaces/{namespace}/pods/{name}"
        );
    }
}
