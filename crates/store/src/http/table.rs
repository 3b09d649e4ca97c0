//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! Every type gets NAME first and AGE last, with its own [`Column`]s in between, like
//! kube-apiserver's printers; priority 1 columns are shown by `kubectl get -o wide` only.

use serde_json::{Value, json};

/// One printed column of a type.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Header as kubectl prints it (upper-cased by kubectl).
    pub name: &'static str,
    /// OpenAPI type of the cell: `string` or `integer`.
    pub ty: &'static str,
    /// 0 = always shown, 1 = only with `-o wide`.
    pub priority: u8,
    /// Computes the cell from the object.
    pub cell: fn(&Value) -> Value,
}

/// Whether the `Accept` header asks for a Table.
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|m| {
            let params: Vec<&str> = m.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
    })
}

/// What each row's `object` holds (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// Only `metadata` as a `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter (unknown values fall back to the default).
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Kubernetes' `duration.HumanDuration` (what the AGE column shows).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        return if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        return if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    let (y, d) = (h / 24 / 365, (h / 24) % 365);
    if h < 24 * 365 * 8 && d != 0 {
        return format!("{y}y{d}d");
    }
    format!("{y}y")
}

/// The AGE cell of `obj` (from `metadata.creationTimestamp`).
pub fn age(obj: &Value) -> String {
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
    match created {
        Some(c) => human_duration((time::OffsetDateTime::now_utc() - c).whole_seconds()),
        None => "<unknown>".into(),
    }
}

fn column_definitions(columns: &[Column], with_age: bool) -> Value {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace."}),
    ];
    cols.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": c.ty, "format": "", "priority": c.priority, "description": ""})
    }));
    if with_age {
        cols.push(json!({"name": "Age", "type": "string", "format": "", "priority": 0,
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}));
    }
    Value::Array(cols)
}

fn row(columns: &[Column], obj: &Value, include: IncludeObject, with_age: bool) -> Value {
    let mut cells = vec![obj.pointer("/metadata/name").cloned().unwrap_or(json!(""))];
    cells.extend(columns.iter().map(|c| (c.cell)(obj)));
    if with_age {
        cells.push(json!(age(obj)));
    }
    let mut row = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => row["object"] = obj.clone(),
        IncludeObject::Metadata => {
            row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"]});
        }
    }
    row
}

/// A Table of `objects` (a list response, or one watch event's object).
pub fn table<'a>(
    columns: &[Column],
    objects: impl IntoIterator<Item = &'a Value>,
    rv: Option<&str>,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    table_with(columns, objects, rv, continue_token, include, true)
}

/// [`table`] with or without the trailing AGE column: some kinds print their creation time
/// as a column of their own instead (kubectl's `get clusterroles` shows NAME, CREATED AT).
pub fn table_with<'a>(
    columns: &[Column],
    objects: impl IntoIterator<Item = &'a Value>,
    rv: Option<&str>,
    continue_token: Option<&str>,
    include: IncludeObject,
    with_age: bool,
) -> Value {
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(columns, with_age),
        "rows": objects.into_iter().map(|o| row(columns, o, include, with_age)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubernetes() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (3 * 86400 + 3600, "3d1h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn table_has_name_columns_age_and_wide_priority() {
        let cols = [Column {
            name: "Env",
            ty: "string",
            priority: 1,
            cell: |o| {
                o.pointer("/metadata/labels/env")
                    .cloned()
                    .unwrap_or(json!(""))
            },
        }];
        let obj = json!({"metadata": {"name": "c1", "labels": {"env": "prod"}}});
        let t = table(&cols, [&obj], Some("7"), None, IncludeObject::Metadata);
        assert_eq!(t["columnDefinitions"][1]["name"], "Env");
        assert_eq!(t["columnDefinitions"][1]["priority"], 1);
        assert_eq!(t["columnDefinitions"][2]["name"], "Age");
        assert_eq!(t["rows"][0]["cells"], json!(["c1", "prod", "<unknown>"]));
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json")));
    }
}
