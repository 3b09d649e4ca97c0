//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get`
//! asks for (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! Every type gets NAME first and AGE last, with its own
//! [`Column`](crate::resources::Column)s in between, like kube-apiserver's
//! printers. The rendering is `cattery_store::http::table`'s, shared with the hub.
//! A custom resource whose CRD has `additionalPrinterColumns` gets NAME and those
//! columns (no implicit AGE), as kube-apiserver prints custom resources.

use serde_json::{Value, json};

use crate::resources::{PrinterColumn, ResourceType};

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
    if !res.printer_columns.is_empty() {
        return custom_table(res.printer_columns, objects, rv, continue_token, include);
    }
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

/// The cell of a printer column: the value at its path, a `date` as an age.
fn printer_cell(c: &PrinterColumn, obj: &Value) -> Value {
    let Some(v) = c.pointer.and_then(|p| obj.pointer(p)) else {
        return Value::Null;
    };
    match (c.ty, v) {
        ("date", Value::String(t)) => time::OffsetDateTime::parse(
            t,
            &time::format_description::well_known::Rfc3339,
        )
        .map_or(Value::Null, |t| {
            json!(cattery_store::http::table::human_duration(
                (time::OffsetDateTime::now_utc() - t).whole_seconds()
            ))
        }),
        (_, Value::Object(_) | Value::Array(_)) => json!(v.to_string()),
        _ => v.clone(),
    }
}

fn custom_table<'a>(
    columns: &[PrinterColumn],
    objects: impl IntoIterator<Item = &'a Value>,
    rv: Option<&str>,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    let objects: Vec<&Value> = objects.into_iter().collect();
    let mut t = cattery_store::http::table::table(
        &[],
        objects.iter().copied(),
        rv,
        continue_token,
        include,
    );
    // Name, then the printer columns instead of the default Age.
    let mut defs = vec![t["columnDefinitions"][0].clone()];
    defs.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": c.ty, "format": "", "priority": c.priority, "description": ""})
    }));
    t["columnDefinitions"] = Value::Array(defs);
    if let Some(rows) = t["rows"].as_array_mut() {
        for (row, obj) in rows.iter_mut().zip(&objects) {
            let mut cells = vec![row["cells"][0].clone()];
            cells.extend(columns.iter().map(|c| printer_cell(c, obj)));
            row["cells"] = Value::Array(cells);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

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

    #[test]
    fn printer_columns_replace_age() {
        static COLS: &[PrinterColumn] = &[
            PrinterColumn {
                name: "Order",
                ty: "number",
                priority: 0,
                pointer: Some("/spec/order"),
            },
            PrinterColumn {
                name: "Selector",
                ty: "string",
                priority: 1,
                pointer: None,
            },
        ];
        let obj = json!({"metadata": {"name": "p"}, "spec": {"order": 10}});
        let t = custom_table(COLS, [&obj], None, None, IncludeObject::None);
        let names: Vec<_> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, vec!["Name", "Order", "Selector"]);
        assert_eq!(t["rows"][0]["cells"], json!(["p", 10, null]));
    }
}
