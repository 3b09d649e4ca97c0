//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get`
//! asks for (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! Every type gets NAME first and AGE last, with its own
//! [`Column`](crate::resources::Column)s in between, like kube-apiserver's
//! printers. The rendering is `cattery_store::http::table`'s, shared with the hub.

use serde_json::Value;

use crate::resources::ResourceType;

pub use cattery_store::http::table::{IncludeObject, wants_table};

/// A Table of `objects` (a list response, or one watch event's object), rendered by
/// `cattery_store::http::table` from the type's columns.
pub fn table<'a>(
    res: &ResourceType,
    objects: impl IntoIterator<Item = &'a Value>,
    rv: Option<&str>,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    let columns: Vec<cattery_store::http::table::Column> = res
        .columns
        .iter()
        .map(|c| cattery_store::http::table::Column {
            name: c.name,
            ty: c.ty,
            priority: c.priority,
            cell: c.cell,
        })
        .collect();
    cattery_store::http::table::table(&columns, objects, rv, continue_token, include)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    #[test]
    fn pod_table_has_kubectl_columns() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.2", "containerStatuses": [{"ready": true}]}});
        let t = table(pods, [&pod], Some("7"), None, IncludeObject::Metadata);
        let names: Vec<_> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(
            names,
            vec!["Name", "Ready", "Status", "Restarts", "IP", "Node", "Age"]
        );
        assert_eq!(t["rows"][0]["cells"][0], "web");
        assert_eq!(t["rows"][0]["cells"][1], "1/1");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "shop");
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json")));
    }
}
