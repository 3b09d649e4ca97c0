//! Whether a live object matches a desired one on the fields the policy sets.
//!
//! The comparison is a subset check, the same notion of "ours" server-side apply has: every
//! field of the desired object must be present in the live object with the same value;
//! fields only the live object has (server-set metadata, `status`, defaults such as a
//! port's `protocol: TCP`, fields another manager added) are not ours and are ignored.
//! Lists are compared element by element and must have the same length (a rule someone
//! added to a list we set is a difference). A desired empty value (`{}`, `[]`, `""`,
//! `false`, `0`, `null`) also matches an absent field, since the apiserver drops
//! empty fields when it stores an object.

use serde_json::Value;

/// The path of the first field where `live` differs from `desired` (`spec.ingress[0]`),
/// or `None` when every desired field matches.
pub fn diff(desired: &Value, live: &Value) -> Option<String> {
    diff_at(desired, Some(live), String::new())
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

fn field(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn diff_at(desired: &Value, live: Option<&Value>, path: String) -> Option<String> {
    let Some(live) = live else {
        return (!is_empty(desired)).then_some(path);
    };
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .find_map(|(k, v)| diff_at(v, l.get(k), field(&path, k))),
        (Value::Object(_), Value::Null) if is_empty(desired) => None,
        (Value::Array(d), Value::Array(l)) => {
            if d.len() != l.len() {
                return Some(path);
            }
            d.iter()
                .zip(l)
                .enumerate()
                .find_map(|(i, (d, l))| diff_at(d, Some(l), format!("{path}[{i}]")))
        }
        (Value::Number(d), Value::Number(l)) => (d.as_f64() != l.as_f64()).then_some(path),
        (d, l) => (d != l && !(is_empty(d) && is_empty(l))).then_some(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_semantics() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}], "policyTypes": ["Ingress"]}});
        let live = json!({"metadata": {"name": "a", "uid": "u", "resourceVersion": "7", "labels": {"x": "1", "y": "2"}},
            "spec": {"ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}], "policyTypes": ["Ingress"]}});
        assert_eq!(
            diff(&desired, &live),
            None,
            "server-set fields and defaults are not ours"
        );
        #[rustfmt::skip]
        let cases = [
            (json!({"metadata": {"name": "a", "labels": {"x": "2"}}}), "metadata.labels.x"),
            (json!({"metadata": {"name": "a", "labels": {}}, "spec": {"ingress": [{"ports": [{"port": 81}]}]}}), "spec.ingress[0].ports[0].port"),
            (json!({"metadata": {"name": "a"}, "spec": {"ingress": [{"ports": [{"port": 80}]}, {}]}}), "spec.ingress"),
            (json!({"metadata": {"name": "a"}, "spec": {"egress": [{}]}}), "spec.egress"),
            (json!({"metadata": {"name": "a"}, "spec": {"policyTypes": ["Egress"]}}), "spec.policyTypes[0]"),
        ];
        for (d, want) in cases {
            assert_eq!(diff(&d, &live).as_deref(), Some(want), "{d}");
        }
        assert_eq!(diff(&json!({"a": 1}), &json!({"a": 1.0})), None);
        assert_eq!(diff(&json!({"a": {"b": []}}), &json!({})), None);
        assert_eq!(diff(&json!({"a": "x"}), &json!({})).as_deref(), Some("a"));
    }
}
