//! Server-side apply's field ownership (`metadata.managedFields`), simplified; shared by
//! the simulator and the hub so both answer `kubectl apply --server-side` alike.
//!
//! What kube-apiserver does, and what [`apply`] and [`record_update`] do the same way:
//! - every field an apply sets is owned by its `fieldManager` (an entry of
//!   `metadata.managedFields` with `operation: Apply` and the owned fields in
//!   `fieldsType: FieldsV1`: nested `{"f:<key>": {...}}` maps, leaves `{}`);
//! - applying a field that another manager owns with a different value is a 409
//!   `Conflict` naming the manager and the field, unless `force=true`, which takes the
//!   field over;
//! - a field the manager applied before and no longer applies is removed, unless
//!   another manager owns it too;
//! - writes that are not applies (create, update, patch with a `fieldManager`, which
//!   kubectl always sends) record the fields they changed as owned by that manager with
//!   `operation: Update`, taking them from the others without a conflict.
//!
//! Simplifications: lists are atomic (owned and replaced as a whole; kube-apiserver
//! merges `containers`, `ports` and other lists with a merge key element by element),
//! and the owned set is the set of leaves the configuration mentions (no `.` entries,
//! no `k:`/`v:` list keys).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::StoreError;

/// A field path: keys from the object's root.
type Path = Vec<String>;

/// Top-level and metadata fields that are not tracked (identity and server-owned).
fn untracked(path: &[String]) -> bool {
    match path {
        [k] => matches!(k.as_str(), "apiVersion" | "kind" | "status"),
        [m, k] if m == "metadata" => matches!(
            k.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

/// The leaf paths `obj` sets (objects are descended into; anything else is a leaf).
fn leaves(obj: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    if !untracked(path) {
                        walk(child, path, out);
                    }
                    path.pop();
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(obj, &mut Vec::new(), &mut out);
    out
}

fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut node = &mut root;
        for k in p {
            node = node
                .entry(format!("f:{k}"))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let children: Vec<_> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, c)| k.strip_prefix("f:").map(|k| (k, c)))
            .collect();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, c) in children {
            path.push(k.to_string());
            walk(c, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// One `managedFields` entry, parsed.
struct Entry {
    manager: String,
    operation: String,
    raw: Value,
    fields: BTreeSet<Path>,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or("").to_string(),
            operation: e["operation"].as_str().unwrap_or("").to_string(),
            fields: from_fields_v1(&e["fieldsV1"]),
            raw: e.clone(),
        })
        .collect()
}

fn store_entries(obj: &mut Value, list: Vec<Entry>, api_version: &str) {
    let now = crate::now_rfc3339();
    let out: Vec<Value> = list
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut raw = e.raw;
            if raw.get("fieldsV1") != Some(&to_fields_v1(&e.fields)) || raw.get("time").is_none() {
                raw = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": api_version,
                    "time": now,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": to_fields_v1(&e.fields),
                });
            }
            raw
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if out.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(out));
        }
    }
}

/// Removes the field at `path`, then parents left empty that nobody owns.
fn remove_path(obj: &mut Value, path: &[String], owned: &BTreeSet<Path>) {
    for depth in (1..=path.len()).rev() {
        let (parent, key) = (&path[..depth - 1], &path[depth - 1]);
        let Some(Value::Object(m)) = parent.iter().try_fold(&mut *obj, |v, k| v.get_mut(k)) else {
            return;
        };
        let empty_child = m
            .get(key)
            .is_none_or(|c| c.as_object().is_some_and(Map::is_empty));
        if depth == path.len() || (empty_child && !owned.contains(&path[..depth].to_vec())) {
            m.remove(key);
        } else {
            return;
        }
        if !m.is_empty() {
            return;
        }
    }
}

/// Merges `applied` into `obj`: maps key by key, anything else replaced.
fn merge(obj: &mut Value, applied: &Value) {
    match (obj, applied) {
        (Value::Object(o), Value::Object(a)) => {
            for (k, v) in a {
                match o.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        o.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (o, a) => *o = a.clone(),
    }
}

/// Computes the object after `manager` applies `applied` to `current` (None: the object
/// does not exist yet). A conflict with another manager is a [`StoreError::Conflict`]
/// (409) naming the manager and the field, unless `force` takes the field over.
/// `api_version` is recorded in the manager's entry.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
) -> Result<Value, StoreError> {
    let mut obj = current.cloned().unwrap_or_else(|| json!({}));
    let mut list = entries(&obj);
    let new_fields = leaves(applied);
    let mut conflicts = Vec::new();
    for e in list.iter_mut().filter(|e| e.manager != manager) {
        let taken: Vec<Path> = e
            .fields
            .intersection(&new_fields)
            .filter(|p| get(&obj, p) != get(applied, p))
            .cloned()
            .collect();
        for p in taken {
            if force {
                e.fields.remove(&p);
            } else {
                conflicts.push(format!("conflict with {:?}: {}", e.manager, dotted(&p)));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(StoreError::Conflict(format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            conflicts.join(", ")
        )));
    }
    let previous: BTreeSet<Path> = list
        .iter()
        .filter(|e| e.manager == manager && e.operation == "Apply")
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let others: BTreeSet<Path> = list
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for p in previous.difference(&new_fields) {
        if !others.contains(p) {
            remove_path(&mut obj, p, &others);
        }
    }
    let mut to_merge = applied.clone();
    if let Some(meta) = to_merge.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    merge(&mut obj, &to_merge);
    match list
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Apply")
    {
        Some(e) => e.fields = new_fields,
        None => list.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            raw: Value::Null,
            fields: new_fields,
        }),
    }
    store_entries(&mut obj, list, api_version);
    Ok(obj)
}

/// Records a non-apply write by `manager`: the leaves that differ between `old` and
/// `new` become the manager's (`operation: Update`), taken from every other manager.
/// `new` is changed in place; its incoming `managedFields` are replaced by the stored
/// ones (clients send them back unchanged or not at all).
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str) {
    let empty = json!({});
    let old = old.unwrap_or(&empty);
    let mut list = entries(old);
    let before = leaves(old);
    let after = leaves(new);
    let changed: BTreeSet<Path> = after
        .iter()
        .filter(|p| get(old, p) != get(new, p))
        .cloned()
        .collect();
    let gone: BTreeSet<Path> = before.difference(&after).cloned().collect();
    for e in list.iter_mut() {
        e.fields.retain(|p| !gone.contains(p));
        if e.manager != manager || e.operation != "Update" {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match list
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update")
        {
            Some(e) => e.fields.extend(changed),
            None => list.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                raw: Value::Null,
                fields: changed,
            }),
        }
    }
    store_entries(new, list, api_version);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        entries(obj)
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    #[test]
    fn ownership_conflicts_force_and_removal() {
        let a = apply(None, &cm(json!({"x": "1", "y": "1"})), "alice", false, "v1").unwrap();
        assert_eq!(
            a["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {"f:x": {}, "f:y": {}}})
        );
        // Bob applies the same value: shared ownership, no conflict.
        let b = apply(Some(&a), &cm(json!({"x": "1"})), "bob", false, "v1").unwrap();
        // Bob applies a different value of alice's field: conflict.
        let e = apply(Some(&b), &cm(json!({"y": "2"})), "bob", false, "v1").unwrap_err();
        assert_eq!(e.code(), 409);
        assert!(e.to_string().contains("\"alice\": .data.y"), "{e}");
        // Forced: bob takes y over.
        let f = apply(
            Some(&b),
            &cm(json!({"x": "1", "y": "2"})),
            "bob",
            true,
            "v1",
        )
        .unwrap();
        assert_eq!(f["data"], json!({"x": "1", "y": "2"}));
        // Alice stops applying x and y: x is still bob's, y is bob's now; both stay.
        let g = apply(Some(&f), &cm(json!({"z": "3"})), "alice", false, "v1").unwrap();
        assert_eq!(g["data"], json!({"x": "1", "y": "2", "z": "3"}));
        // Bob stops applying y: nobody else owns it, it goes.
        let h = apply(Some(&g), &cm(json!({"x": "1"})), "bob", false, "v1").unwrap();
        assert_eq!(h["data"], json!({"x": "1", "z": "3"}));
        assert_eq!(
            managers(&h),
            [
                ("alice".into(), "Apply".into()),
                ("bob".into(), "Apply".into())
            ]
        );
    }

    #[test]
    fn updates_take_fields_without_conflict() {
        let a = apply(None, &cm(json!({"x": "1"})), "alice", false, "v1").unwrap();
        let mut edited = a.clone();
        edited["data"]["x"] = json!("9");
        record_update(Some(&a), &mut edited, "kubectl-edit", "v1");
        assert_eq!(
            managers(&edited),
            [("kubectl-edit".to_string(), "Update".to_string())],
            "alice's only field was taken"
        );
        // Alice re-applies her value: now a conflict with the editor.
        let e = apply(Some(&edited), &cm(json!({"x": "1"})), "alice", false, "v1").unwrap_err();
        assert!(e.to_string().contains("kubectl-edit"), "{e}");
    }
}
