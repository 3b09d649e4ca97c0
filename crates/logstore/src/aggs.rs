//! Aggregations: the request's Elasticsearch-style JSON, with Calico field names, is checked
//! and rewritten to tantivy field names, then handed to tantivy's aggregation module (which
//! answers in Elasticsearch-shaped JSON). Results contain values, never field names, so only
//! error messages need translating back.

use serde_json::{Map, Value};
use tantivy::aggregation::agg_req::Aggregations;

use crate::LogStoreError;
use crate::schema::{Kind, TypeSchema};

/// Checks and translates the `aggs` of a request.
pub(crate) fn translate(ts: &TypeSchema, aggs: &Value) -> Result<Aggregations, LogStoreError> {
    let translated = rewrite_level(ts, aggs, "aggs")?;
    serde_json::from_value(translated)
        .map_err(|e| LogStoreError::bad("aggs", user_message(ts, &e.to_string())))
}

fn rewrite_level(ts: &TypeSchema, aggs: &Value, at: &str) -> Result<Value, LogStoreError> {
    let obj = aggs
        .as_object()
        .ok_or_else(|| LogStoreError::bad(at, "must be an object of named aggregations"))?;
    let mut out = Map::new();
    for (name, body) in obj {
        let at = format!("{at}.{name}");
        let body = body.as_object().ok_or_else(|| {
            LogStoreError::bad(
                &at,
                "must be an object like {\"terms\": {\"field\": \"action\"}}",
            )
        })?;
        let mut new_body = Map::new();
        for (kind, params) in body {
            let at = format!("{at}.{kind}");
            let v = if kind == "aggs" || kind == "aggregations" {
                rewrite_level(ts, params, &at)?
            } else {
                let mut params = params.clone();
                if let Some(field) = params.get_mut("field") {
                    let name = field.as_str().ok_or_else(|| {
                        LogStoreError::bad(format!("{at}.field"), "must be a field name")
                    })?;
                    let spec = ts
                        .lookup(name)
                        .ok_or_else(|| ts.unknown_field(&format!("{at}.field"), name))?;
                    check_kind(kind, spec, &format!("{at}.field"))?;
                    *field = Value::String(spec.tname.clone());
                }
                params
            };
            new_body.insert(kind.clone(), v);
        }
        out.insert(name.clone(), Value::Object(new_body));
    }
    Ok(Value::Object(out))
}

/// Rejects aggregations tantivy would silently answer with nothing (a date histogram of a
/// keyword, the sum of a keyword).
fn check_kind(agg: &str, spec: &crate::schema::FieldSpec, at: &str) -> Result<(), LogStoreError> {
    let ok = match agg {
        "date_histogram" => spec.kind == Kind::Time,
        "histogram" | "sum" | "avg" | "min" | "max" | "stats" | "extended_stats"
        | "percentiles" => {
            matches!(spec.kind, Kind::Long | Kind::Time)
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(LogStoreError::bad(
            at,
            format!(
                "{agg} needs a {} field; {} is a {} field",
                if agg == "date_histogram" {
                    "time"
                } else {
                    "number or time"
                },
                spec.name,
                spec.kind.describe()
            ),
        ))
    }
}

/// Replaces tantivy field names in an engine message by the Calico names users wrote.
pub(crate) fn user_message(ts: &TypeSchema, message: &str) -> String {
    let mut m = message.to_string();
    // Longest names first so `source_name_aggr` is not half-replaced by `source_name`.
    let mut specs: Vec<_> = ts.fields.iter().filter(|f| f.tname != f.name).collect();
    specs.sort_by_key(|f| std::cmp::Reverse(f.tname.len()));
    for f in specs {
        m = m.replace(&format!("\"{}\"", f.tname), &format!("\"{}\"", f.name));
        m = m.replace(&format!("'{}'", f.tname), &format!("'{}'", f.name));
    }
    m
}
