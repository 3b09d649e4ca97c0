//! Aggregations: the request's Elasticsearch-style JSON, with Calico field names, is checked
//! and rewritten to tantivy field names, then handed to tantivy's aggregation module (which
//! answers in Elasticsearch-shaped JSON). Results contain values, never field names, so only
//! error messages need translating back.

use serde_json::{Map, Value};
use tantivy::aggregation::agg_req::Aggregations;

use crate::LogStoreError;
use crate::schema::{Kind, TypeSchema};

/// Most aggregations one request may hold, nested ones included. Every aggregation costs
/// a collector per segment and an intermediate result per index whatever its result size,
/// so thousands of siblings took gigabytes and seconds of CPU; dashboards need a few dozen.
pub const MAX_AGGREGATIONS: usize = 100;

/// Checks and translates the `aggs` of a request.
pub(crate) fn translate(ts: &TypeSchema, aggs: &Value) -> Result<Aggregations, LogStoreError> {
    let n = count(aggs);
    if n > MAX_AGGREGATIONS {
        return Err(LogStoreError::bad(
            "aggs",
            format!(
                "{n} aggregations (nested ones included) are more than the limit of {MAX_AGGREGATIONS} per request"
            ),
        ));
    }
    let translated = rewrite_level(ts, aggs, "aggs")?;
    serde_json::from_value(translated)
        .map_err(|e| LogStoreError::bad("aggs", user_message(ts, &e.to_string())))
}

/// How many aggregations `aggs` names, nested ones included (bounded by the body size).
fn count(aggs: &Value) -> usize {
    let Some(obj) = aggs.as_object() else {
        return 0;
    };
    obj.values()
        .map(|body| {
            1 + body.as_object().map_or(0, |b| {
                b.iter()
                    .filter(|(k, _)| *k == "aggs" || *k == "aggregations")
                    .map(|(_, v)| count(v))
                    .sum()
            })
        })
        .sum()
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
            } else if kind == "composite" {
                rewrite_composite(ts, params, &at)?
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

/// A composite aggregation names its fields inside `sources: [{NAME: {terms: {field}}}]`.
fn rewrite_composite(ts: &TypeSchema, params: &Value, at: &str) -> Result<Value, LogStoreError> {
    let mut params = params.clone();
    if let Some(sources) = params.get_mut("sources").and_then(Value::as_array_mut) {
        for (i, source) in sources.iter_mut().enumerate() {
            let Some(named) = source.as_object_mut() else {
                continue;
            };
            for (name, by_kind) in named.iter_mut() {
                let Some(by_kind) = by_kind.as_object_mut() else {
                    continue;
                };
                for (kind, body) in by_kind.iter_mut() {
                    let at = format!("{at}.sources[{i}].{name}.{kind}.field");
                    if let Some(field) = body.get_mut("field") {
                        let fname = field
                            .as_str()
                            .ok_or_else(|| LogStoreError::bad(&at, "must be a field name"))?;
                        let spec = ts
                            .lookup(fname)
                            .ok_or_else(|| ts.unknown_field(&at, fname))?;
                        *field = Value::String(spec.tname.clone());
                    }
                }
            }
        }
    }
    Ok(params)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_sources_use_calico_names() {
        let ts = crate::schema_of(crate::LogType::Flows);
        let v = serde_json::json!({"g": {"composite": {"size": 10, "sources": [
            {"l": {"terms": {"field": "source_labels.labels", "missing_bucket": true}}},
            {"p": {"terms": {"field": "dest_port"}}}]}}});
        translate(&ts, &v).unwrap();
        let bad = serde_json::json!({"g": {"composite": {"size": 10, "sources": [
            {"l": {"terms": {"field": "no_such_field"}}}]}}});
        let e = translate(&ts, &bad).unwrap_err().to_string();
        assert!(
            e.contains("aggs.g.composite.sources[0].l.terms.field"),
            "{e}"
        );
    }

    #[test]
    fn nested_aggregations_count_towards_the_limit() {
        let ts = crate::schema_of(crate::LogType::Flows);
        let v = serde_json::json!({
            "a": {"terms": {"field": "action"}, "aggs": {"b": {"sum": {"field": "bytes_in"}}}},
            "c": {"max": {"field": "bytes_in"}}
        });
        assert_eq!(count(&v), 3);
        let many: Map<String, Value> = (0..MAX_AGGREGATIONS + 1)
            .map(|i| {
                (
                    format!("a{i}"),
                    serde_json::json!({"max": {"field": "bytes_in"}}),
                )
            })
            .collect();
        let e = translate(&ts, &Value::Object(many))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than the limit of 100"), "{e}");
        let ok: Map<String, Value> = (0..MAX_AGGREGATIONS)
            .map(|i| {
                (
                    format!("a{i}"),
                    serde_json::json!({"max": {"field": "bytes_in"}}),
                )
            })
            .collect();
        translate(&ts, &Value::Object(ok)).unwrap();
    }
}
