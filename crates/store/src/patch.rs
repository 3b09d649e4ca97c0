//! PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902), both from the
//! `json-patch` crate, and an APPROXIMATION of Kubernetes strategic merge patch.
//!
//! The strategic merge approximation is a merge patch that also understands
//! the directives kubectl puts in the patches it computes: lists whose
//! `$setElementOrder/<field>` directive is present are merged by the key the
//! directive names (e.g. containers by `name`) and reordered; `$patch: delete`
//! removes an element or map, `$patch: replace` replaces; and
//! `$deleteFromPrimitiveList/<field>` removes values. Without a directive a
//! list is replaced, as in a merge patch (a real apiserver would know the
//! merge key from the type's schema). `$retainKeys` is ignored.

use serde_json::Value;

/// Which patch format the request body uses (from `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json` (approximated, see module doc)
    Strategic,
    /// `application/json-patch+json`
    Json,
}

/// Applies `patch` to `target` in place; the error says which operation failed.
pub fn apply(kind: PatchKind, target: &mut Value, patch: &Value) -> Result<(), String> {
    match kind {
        PatchKind::Merge => {
            merge_patch(target, patch);
            Ok(())
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err("a strategic merge patch must be a JSON object".into());
            }
            strategic_merge(target, patch);
            Ok(())
        }
        PatchKind::Json => json_patch(target, patch),
    }
}

/// RFC 7386 JSON merge patch (the `json-patch` crate's).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

fn is_delete(v: &Value) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some("delete")
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") || !target.is_object() {
        *target = strip_directives(patch);
        return;
    }
    let t = target.as_object_mut().expect("checked above");
    for (k, pv) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (t.get_mut(field), pv.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() || is_delete(pv) {
            t.remove(k);
            continue;
        }
        let order = p
            .get(&format!("$setElementOrder/{k}"))
            .and_then(Value::as_array);
        match (pv, t.get_mut(k), order) {
            (Value::Array(items), Some(Value::Array(current)), Some(order)) => {
                merge_list(current, items, order);
            }
            (Value::Object(_), Some(existing), _) => strategic_merge(existing, pv),
            _ => {
                t.insert(k.clone(), strip_directives(pv));
            }
        }
    }
    // A `$setElementOrder` for a list the patch did not otherwise touch still reorders it.
    for (k, order) in p {
        if let (Some(field), Value::Array(order)) = (k.strip_prefix("$setElementOrder/"), order)
            && !p.contains_key(field)
            && let Some(Value::Array(current)) = t.get_mut(field)
        {
            merge_list(current, &[], order);
        }
    }
}

/// Merges `items` into `current` by the merge key that `order` reveals
/// (`[{"name": "a"}, ...]`), or as a set of primitives, then reorders.
fn merge_list(current: &mut Vec<Value>, items: &[Value], order: &[Value]) {
    let key = order.iter().find_map(|o| {
        o.as_object()
            .and_then(|m| m.keys().find(|k| !k.starts_with('$')).cloned())
    });
    let same = |a: &Value, b: &Value| match &key {
        Some(k) => a.get(k).is_some() && a.get(k) == b.get(k),
        None => a == b,
    };
    for item in items {
        let pos = current.iter().position(|c| same(c, item));
        match (pos, is_delete(item)) {
            (Some(i), true) => {
                current.remove(i);
            }
            (None, true) => {}
            (Some(i), false) if key.is_some() => strategic_merge(&mut current[i], item),
            (Some(_), false) => {}
            (None, false) => current.push(strip_directives(item)),
        }
    }
    let rank = |v: &Value| order.iter().position(|o| same(v, o)).unwrap_or(usize::MAX);
    current.sort_by_key(rank);
}

/// RFC 6902 JSON patch (the `json-patch` crate's): all operations or none.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), String> {
    if !patch.is_array() {
        return Err("a JSON patch must be an array of operations".into());
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| format!("the JSON patch is not a list of RFC 6902 operations: {e}"))?;
    json_patch::patch(doc, &ops).map_err(|e| format!("json patch {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_lists_by_key_from_directive() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "app", "image": "v1", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "s1"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "image": "v2"}]
        }});
        apply(PatchKind::Strategic, &mut pod, &patch).unwrap();
        assert_eq!(pod["spec"]["containers"][0]["image"], "v2");
        assert_eq!(
            pod["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
        assert_eq!(pod["spec"]["containers"][1]["name"], "sidecar");

        let delete = json!({"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "sidecar", "$patch": "delete"}]
        }});
        apply(PatchKind::Strategic, &mut pod, &delete).unwrap();
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn strategic_primitive_lists_and_map_directives() {
        let mut obj = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "a", "b"],
            "finalizers": ["c"],
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "labels": {"$patch": "replace", "y": "2"}
        }});
        apply(PatchKind::Strategic, &mut obj, &patch).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["c", "a"]));
        assert_eq!(obj["metadata"]["labels"], json!({"y": "2"}));
    }

    #[test]
    fn json_patch_rfc6902() {
        let mut doc = json!({"metadata": {"labels": {"a": "1"}}, "l": [1, 3]});
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "add", "path": "/l/1", "value": 2},
            {"op": "add", "path": "/l/-", "value": 4},
            {"op": "replace", "path": "/metadata/labels/a", "value": "9"},
            {"op": "test", "path": "/l/0", "value": 1},
            {"op": "move", "from": "/l", "path": "/m"}
        ]);
        json_patch(&mut doc, &patch).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"a": "9", "b/c": "2"}}, "m": [1, 2, 3, 4]})
        );
        let err = json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).unwrap_err();
        assert!(err.contains("/nope"), "{err}");
        assert!(
            json_patch(
                &mut doc,
                &json!([{"op": "test", "path": "/m/0", "value": 7}])
            )
            .is_err()
        );
    }

    #[test]
    fn a_failing_json_patch_changes_nothing() {
        let mut doc = json!({"a": 1});
        let err = json_patch(
            &mut doc,
            &json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/zz"}]),
        )
        .unwrap_err();
        assert!(err.contains("/zz"), "{err}");
        assert_eq!(doc, json!({"a": 1}), "all operations or none");
        let err = json_patch(&mut doc, &json!([{"op": "frobnicate", "path": "/a"}])).unwrap_err();
        assert!(err.contains("RFC 6902"), "{err}");
    }
}
