//! The table of resource types the simulator serves built in.
//!
//! Everything else (routing, discovery, OpenAPI, server-side Table printing,
//! the store) is generic over [`ResourceType`]s: the built-in ones are [`RESOURCES`], and
//! the CustomResourceDefinitions applied to a simulator add their own at run time
//! ([`crate::crd`]), so adding a built-in type is one entry.

use serde_json::{Value, json};

/// One column of the server-side `Table` (what `kubectl get` prints), besides
/// the NAME and AGE columns every type gets.
#[derive(Debug)]
pub struct Column {
    /// Header as kubectl prints it (upper-cased by kubectl).
    pub name: &'static str,
    /// OpenAPI type of the cell: `string` or `integer`.
    pub ty: &'static str,
    /// 0 = always shown, 1 = only with `-o wide`.
    pub priority: u8,
    /// Computes the cell from the stored object.
    pub cell: fn(&Value) -> Value,
}

/// A Kubernetes resource type the simulator serves.
#[derive(Debug)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Plural resource name used in URLs.
    pub plural: &'static str,
    /// Singular name (discovery `singularName`).
    pub singular: &'static str,
    /// Object `kind`.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for kubectl (`po`, `svc`, ...).
    pub short_names: &'static [&'static str],
    /// Extra `kubectl get` columns.
    pub columns: &'static [Column],
    /// Extra `kubectl get` columns of a custom resource (its CRD's
    /// `additionalPrinterColumns`), computed from a JSONPath instead of a function.
    pub printer_columns: &'static [PrinterColumn],
    /// Discovery categories (`kubectl get all` is category `all`).
    pub categories: &'static [&'static str],
    /// Whether `status` is a subresource (and server-owned in ordinary writes).
    pub status_subresource: bool,
    /// Whether the type is served for a CustomResourceDefinition (JSON only, no
    /// strategic merge patch), not built in.
    pub custom: bool,
}

/// A `kubectl get` column of a custom resource: a CRD's `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Header.
    pub name: &'static str,
    /// OpenAPI type of the cell (`string`, `integer`, `number`, `boolean`, `date`).
    pub ty: &'static str,
    /// 0 = always shown, 1 and more = only with `-o wide`.
    pub priority: u8,
    /// Where the cell's value is, as a JSON pointer converted from the column's
    /// `jsonPath` (`.spec.order` is `/spec/order`); None when the path uses what the
    /// simulator does not evaluate (filters, wildcards), so the cell stays empty.
    pub pointer: Option<&'static str>,
}

impl ResourceType {
    /// `apiVersion` as written in objects: `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// URL prefix of the group version: `/api/v1` or `/apis/group/version`.
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

/// Types are compared by identity: each is one entry of [`RESOURCES`].
impl PartialEq for ResourceType {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for ResourceType {}

/// The store knows the simulator's types through this table.
impl cattery_store::Kind for &'static ResourceType {
    fn group(&self) -> &'static str {
        self.group
    }
    fn version(&self) -> &'static str {
        self.version
    }
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn plural(&self) -> &'static str {
        self.plural
    }
    fn namespaced(&self) -> bool {
        self.namespaced
    }
    fn has_status_subresource(&self) -> bool {
        self.status_subresource
    }
    fn api_version(&self) -> String {
        ResourceType::api_version(self)
    }
}

/// Every type the simulator serves. Order is the order of discovery.
pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        columns: &[Column {
            name: "Status",
            ty: "string",
            priority: 0,
            cell: ns_status,
        }],
        printer_columns: &[],
        categories: &[],
        status_subresource: true,
        custom: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        columns: &[
            Column {
                name: "Ready",
                ty: "string",
                priority: 0,
                cell: pod_ready,
            },
            Column {
                name: "Status",
                ty: "string",
                priority: 0,
                cell: pod_status,
            },
            Column {
                name: "Restarts",
                ty: "string",
                priority: 0,
                cell: pod_restarts,
            },
            Column {
                name: "IP",
                ty: "string",
                priority: 1,
                cell: pod_ip,
            },
            Column {
                name: "Node",
                ty: "string",
                priority: 1,
                cell: pod_node,
            },
        ],
        printer_columns: &[],
        categories: &["all"],
        status_subresource: true,
        custom: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        columns: &[
            Column {
                name: "Type",
                ty: "string",
                priority: 0,
                cell: svc_type,
            },
            Column {
                name: "Cluster-IP",
                ty: "string",
                priority: 0,
                cell: svc_cluster_ip,
            },
            Column {
                name: "External-IP",
                ty: "string",
                priority: 0,
                cell: none_cell,
            },
            Column {
                name: "Port(s)",
                ty: "string",
                priority: 0,
                cell: svc_ports,
            },
            Column {
                name: "Selector",
                ty: "string",
                priority: 1,
                cell: svc_selector,
            },
        ],
        printer_columns: &[],
        categories: &["all"],
        status_subresource: true,
        custom: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        columns: &[Column {
            name: "Data",
            ty: "integer",
            priority: 0,
            cell: cm_data,
        }],
        printer_columns: &[],
        categories: &[],
        status_subresource: false,
        custom: false,
    },
    ResourceType {
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        singular: "networkpolicy",
        kind: "NetworkPolicy",
        namespaced: true,
        short_names: &["netpol"],
        columns: &[Column {
            name: "Pod-Selector",
            ty: "string",
            priority: 0,
            cell: netpol_selector,
        }],
        printer_columns: &[],
        categories: &[],
        status_subresource: false,
        custom: false,
    },
    ResourceType {
        group: "cattery.dev",
        version: "v1",
        plural: "managementclusterconnections",
        singular: "managementclusterconnection",
        kind: "ManagementClusterConnection",
        namespaced: false,
        short_names: &[],
        columns: &[],
        printer_columns: &[],
        categories: &[],
        status_subresource: true,
        custom: false,
    },
    ResourceType {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        namespaced: false,
        short_names: &["crd", "crds"],
        columns: &[],
        printer_columns: &[],
        categories: &["api-extensions"],
        status_subresource: true,
        custom: false,
    },
];

/// Finds a type by group, version and plural (or singular/short name, for
/// error messages that echo what kubectl resolved).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Whether the type has a `/status` subresource (and a server-owned status).
pub fn has_status_subresource(res: &ResourceType) -> bool {
    res.status_subresource
}

/// The `namespaces` type (namespaced objects must live in one).
pub fn namespaces() -> &'static ResourceType {
    &RESOURCES[0]
}

/// The `customresourcedefinitions` type (its objects add served types, [`crate::crd`]).
pub fn crds() -> &'static ResourceType {
    RESOURCES
        .last()
        .filter(|r| r.kind == "CustomResourceDefinition")
        .expect("the CRD type is the last built-in type")
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn none_cell(_: &Value) -> Value {
    json!("<none>")
}

fn ns_status(v: &Value) -> Value {
    json!(str_at(v, "/status/phase"))
}

fn pod_ready(v: &Value) -> Value {
    let statuses = v
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    let total = v
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses.map_or(0, |s| {
        s.iter()
            .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
            .count()
    });
    json!(format!("{ready}/{total}"))
}

fn pod_status(v: &Value) -> Value {
    if v.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    json!(str_at(v, "/status/phase"))
}

fn pod_restarts(_: &Value) -> Value {
    json!("0")
}

fn pod_ip(v: &Value) -> Value {
    let ip = str_at(v, "/status/podIP");
    json!(if ip.is_empty() { "<none>" } else { ip })
}

fn pod_node(v: &Value) -> Value {
    let node = str_at(v, "/spec/nodeName");
    json!(if node.is_empty() { "<none>" } else { node })
}

fn svc_type(v: &Value) -> Value {
    json!(str_at(v, "/spec/type"))
}

fn svc_cluster_ip(v: &Value) -> Value {
    json!(str_at(v, "/spec/clusterIP"))
}

fn svc_ports(v: &Value) -> Value {
    let ports: Vec<String> = v
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p.get("port").map(Value::to_string).unwrap_or_default();
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            format!("{port}/{proto}")
        })
        .collect();
    json!(if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    })
}

fn selector_string(map: Option<&Value>) -> String {
    let pairs: Vec<String> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

fn svc_selector(v: &Value) -> Value {
    json!(selector_string(v.pointer("/spec/selector")))
}

fn netpol_selector(v: &Value) -> Value {
    json!(selector_string(v.pointer("/spec/podSelector/matchLabels")))
}

fn cm_data(v: &Value) -> Value {
    let n = ["data", "binaryData"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_object))
        .map(|m| m.len())
        .sum::<usize>();
    json!(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(find("", "v1", "pods").unwrap().kind, "Pod");
        assert_eq!(
            find("networking.k8s.io", "v1", "networkpolicies")
                .unwrap()
                .api_version(),
            "networking.k8s.io/v1"
        );
        assert!(find("", "v1", "deployments").is_none());
        assert_eq!(
            find("cattery.dev", "v1", "managementclusterconnections")
                .unwrap()
                .gv_path(),
            "/apis/cattery.dev/v1"
        );
    }

    #[test]
    fn service_ports_cell() {
        let svc = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(svc_ports(&svc), json!("80/TCP,53/UDP"));
    }
}
