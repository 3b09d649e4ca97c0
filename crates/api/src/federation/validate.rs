//! Validation of a FederatedPolicy as a whole: its own fields, every template, every
//! override's result. The first problem found is returned with the path of the field.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::{
    FederatedPolicy, GENERATION_ANNOTATION, HASH_ANNOTATION, KIND, LabelSelector, OWNER_LABEL,
    ObjectKey, Override, Placement, REMOTE_PEER_LABEL, REMOTE_PEERS_FIELD, RemotePeer,
    ResourceKind, UID_ANNOTATION, calico, kubernetes,
};
use crate::names::check_dns1123_subdomain;
use crate::wire::DecodeError;
use crate::{
    API_VERSION, Status, validate_annotations, validate_dns1123_label, validate_label_value,
    validate_labels, validate_qualified_name,
};

/// What is wrong with a FederatedPolicy, and where (`spec.resources[1].spec.ingress[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct FieldError {
    /// Path of the offending field in the FederatedPolicy, empty for the whole object.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl FieldError {
    pub(super) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The 400 `Status` the hub answers with (nothing is stored or placed).
    pub fn status(&self) -> Status {
        Status::failure(400, format!("FederatedPolicy is invalid: {self}"))
    }
}

/// `a.b`, `a[0]`, or `a` when `b` is empty.
pub(super) fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else if a.is_empty() {
        b.to_string()
    } else if b.starts_with('[') {
        format!("{a}{b}")
    } else {
        format!("{a}.{b}")
    }
}

/// A decode error of a part of the policy, with `prefix` (the part's path) in front.
pub(super) fn decode_error(prefix: &str, e: DecodeError) -> FieldError {
    match e {
        DecodeError::UnknownField {
            path,
            field,
            expected,
        } => FieldError::new(
            join(&join(prefix, &path), &field),
            match expected {
                Some(x) => format!("unknown field {field:?} ({x})"),
                None => format!("unknown field {field:?}"),
            },
        ),
        DecodeError::Schema { path, message } => FieldError::new(join(prefix, &path), message),
        other => FieldError::new(prefix, other.to_string()),
    }
}

/// Decodes a part of the policy strictly, naming the path of any problem.
pub(super) fn decode_at<T: serde::de::DeserializeOwned>(
    value: &Value,
    path: &str,
) -> Result<T, FieldError> {
    crate::wire::from_value(value.clone()).map_err(|e| decode_error(path, e))
}

/// Decodes a stored or submitted object strictly (unknown fields are errors naming their
/// path) and [`validate`]s it: the hub's create/update hook for `federatedpolicies`.
pub fn validate_value(value: &Value) -> Result<FederatedPolicy, FieldError> {
    let p: FederatedPolicy = decode_at(value, "")?;
    validate(&p)?;
    Ok(p)
}

/// Checks a whole FederatedPolicy: its type and name, placement, rollout, every template
/// (as the cluster's apiserver would, as far as this module knows the kind), duplicates,
/// and every override's result. `status` is not checked (the hub writes it).
pub fn validate(policy: &FederatedPolicy) -> Result<(), FieldError> {
    if policy.kind != KIND {
        return Err(FieldError::new(
            "kind",
            format!("expected {KIND:?}, got {:?}", policy.kind),
        ));
    }
    if policy.api_version != API_VERSION {
        return Err(FieldError::new(
            "apiVersion",
            format!("expected {API_VERSION:?}, got {:?}", policy.api_version),
        ));
    }
    validate_dns1123_label(&policy.metadata.name)
        .map_err(|e| FieldError::new("metadata.name", e.to_string()))?;
    if let Some(f) = policy.metadata.unsupported().next() {
        return Err(FieldError::new(
            format!("metadata.{f}"),
            if f == "namespace" {
                "not supported: a FederatedPolicy is cluster-scoped"
            } else {
                "not supported on a FederatedPolicy"
            },
        ));
    }
    validate_labels(&policy.metadata.labels)
        .map_err(|e| FieldError::new("metadata.labels", e.to_string()))?;
    validate_annotations(&policy.metadata.annotations)
        .map_err(|e| FieldError::new("metadata.annotations", e.to_string()))?;

    let spec = &policy.spec;
    if spec.placement.is_unset() {
        return Err(FieldError::new(
            "spec.placement",
            "set clusterSelector and/or clusterNames (clusterSelector: {} selects every cluster)",
        ));
    }
    validate_placement(&spec.placement, "spec.placement")?;
    if let Some(r) = &spec.rollout
        && r.batch_size == 0
    {
        return Err(FieldError::new(
            "spec.rollout.batchSize",
            "must be at least 1",
        ));
    }

    let mut keys: BTreeMap<ObjectKey, usize> = BTreeMap::new();
    let mut ordered = Vec::with_capacity(spec.resources.len());
    for (i, r) in spec.resources.iter().enumerate() {
        let path = format!("spec.resources[{i}]");
        let key = validate_resource(r, &path)?;
        if let Some(first) = keys.insert(key.clone(), i) {
            return Err(FieldError::new(
                path,
                format!("{key} is already spec.resources[{first}]; each object may appear once"),
            ));
        }
        ordered.push(key);
    }

    for (j, o) in spec.overrides.iter().enumerate() {
        let path = format!("spec.overrides[{j}]");
        if o.cluster_selector.is_none() && o.cluster_names.is_empty() {
            return Err(FieldError::new(
                path,
                "set clusterSelector and/or clusterNames (the clusters the patch applies to)",
            ));
        }
        validate_placement(&o.placement(), &path)?;
        let i = override_target(o, &ordered)
            .map_err(|m| FieldError::new(join(&path, "resource"), m))?;
        let patched =
            patched(&spec.resources[i], o).map_err(|m| FieldError::new(join(&path, "patch"), m))?;
        validate_resource(&patched, &join(&path, "patch"))?;
    }
    Ok(())
}

/// The index into `keys` (the keys of `spec.resources`, in order) of the one resource
/// `o.resource` names; the error says why there is not exactly one.
pub fn override_target(o: &Override, keys: &[ObjectKey]) -> Result<usize, String> {
    let hits: Vec<usize> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.matches(&o.resource))
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [i] => Ok(*i),
        [] => Err(format!(
            "no object in spec.resources is {} {}{}",
            o.resource.kind,
            o.resource
                .namespace
                .as_deref()
                .map(|ns| format!("{ns}/"))
                .unwrap_or_default(),
            o.resource.name
        )),
        _ => Err(format!(
            "{} objects in spec.resources match {} {:?}; add apiVersion and/or namespace",
            hits.len(),
            o.resource.kind,
            o.resource.name
        )),
    }
}

/// `template` with the override's merge patch (RFC 7386) applied; refused when the patch
/// is not an object or changes the object's apiVersion, kind, name or namespace.
pub fn patched(template: &Value, o: &Override) -> Result<Value, String> {
    if !o.patch.is_object() {
        return Err("must be an object (a JSON merge patch, RFC 7386)".into());
    }
    let mut out = template.clone();
    json_patch::merge(&mut out, &o.patch);
    let identity = |v: &Value| {
        (
            v.get("apiVersion").cloned(),
            v.get("kind").cloned(),
            v.pointer("/metadata/name").cloned(),
            v.pointer("/metadata/namespace").cloned(),
        )
    };
    if identity(&out) != identity(template) {
        return Err(
            "may not change apiVersion, kind, metadata.name or metadata.namespace (add another resource instead)"
                .into(),
        );
    }
    Ok(out)
}

/// Checks a placement's cluster names and selector.
pub(super) fn validate_placement(p: &Placement, path: &str) -> Result<(), FieldError> {
    for (i, n) in p.cluster_names.iter().enumerate() {
        validate_dns1123_label(n)
            .map_err(|e| FieldError::new(format!("{path}.clusterNames[{i}]"), e.to_string()))?;
    }
    if let Some(s) = &p.cluster_selector {
        validate_selector(s, &join(path, "clusterSelector"))?;
    }
    Ok(())
}

/// Checks a LabelSelector as the apiserver does (`ValidateLabelSelector`): qualified-name
/// keys, label values, operators `In`/`NotIn` (with values) and `Exists`/`DoesNotExist`
/// (without).
pub fn validate_selector(s: &LabelSelector, path: &str) -> Result<(), FieldError> {
    for (k, v) in &s.match_labels {
        validate_qualified_name(k)
            .map_err(|e| FieldError::new(join(path, "matchLabels"), format!("key {k:?}: {e}")))?;
        validate_label_value(v).map_err(|e| {
            FieldError::new(
                join(path, "matchLabels"),
                format!("value {v:?} of {k:?}: {e}"),
            )
        })?;
    }
    for (i, r) in s.match_expressions.iter().enumerate() {
        let at = format!("{}[{i}]", join(path, "matchExpressions"));
        validate_qualified_name(&r.key)
            .map_err(|e| FieldError::new(join(&at, "key"), format!("{:?}: {e}", r.key)))?;
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => {
                return Err(FieldError::new(
                    join(&at, "values"),
                    format!("must be specified when operator is {}", r.operator),
                ));
            }
            "Exists" | "DoesNotExist" if !r.values.is_empty() => {
                return Err(FieldError::new(
                    join(&at, "values"),
                    format!("may not be specified when operator is {}", r.operator),
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(FieldError::new(
                    join(&at, "operator"),
                    format!(
                        "{other:?} is not a valid selector operator (In, NotIn, Exists, DoesNotExist)"
                    ),
                ));
            }
        }
        for (k, v) in r.values.iter().enumerate() {
            validate_label_value(v)
                .map_err(|e| FieldError::new(format!("{at}.values[{k}]"), format!("{v:?}: {e}")))?;
        }
    }
    Ok(())
}

/// The part of `metadata` a template may carry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Which rules of a template have remote peers: `(ingress?, rule index)`.
pub(super) type RemoteRules = BTreeSet<(bool, usize)>;

/// Checks one object to be placed (a template, or a template after overrides) and
/// returns its key. `path` is where the object is in the FederatedPolicy; errors name the
/// field below it.
pub fn validate_resource(obj: &Value, path: &str) -> Result<ObjectKey, FieldError> {
    let Some(map) = obj.as_object() else {
        return Err(FieldError::new(path, "must be an object"));
    };
    let text = |f: &str| map.get(f).and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
        return Err(FieldError::new(path, "apiVersion and kind are required"));
    };
    let Some(rk) = ResourceKind::of(api_version, kind) else {
        let list = ResourceKind::ALL
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(FieldError::new(
            join(path, "kind"),
            format!(
                "{api_version} {kind} cannot be placed by a FederatedPolicy; supported: {list}"
            ),
        ));
    };
    let meta_path = join(path, "metadata");
    let meta: TemplateMeta = decode_at(map.get("metadata").unwrap_or(&Value::Null), &meta_path)?;
    check_dns1123_subdomain(&meta.name)
        .map_err(|e| FieldError::new(join(&meta_path, "name"), format!("{:?} {e}", meta.name)))?;
    match (&meta.namespace, rk.namespaced()) {
        (None, true) => {
            return Err(FieldError::new(
                join(&meta_path, "namespace"),
                format!("required: {rk} is namespaced"),
            ));
        }
        (Some(ns), true) => validate_dns1123_label(ns)
            .map_err(|e| FieldError::new(join(&meta_path, "namespace"), e.to_string()))?,
        (Some(_), false) => {
            return Err(FieldError::new(
                join(&meta_path, "namespace"),
                format!("{rk} is cluster-scoped; remove the namespace"),
            ));
        }
        (None, false) => {}
    }
    validate_labels(&meta.labels)
        .map_err(|e| FieldError::new(join(&meta_path, "labels"), e.to_string()))?;
    validate_annotations(&meta.annotations)
        .map_err(|e| FieldError::new(join(&meta_path, "annotations"), e.to_string()))?;
    for k in [OWNER_LABEL, REMOTE_PEER_LABEL] {
        if meta.labels.contains_key(k) {
            return Err(FieldError::new(
                join(&meta_path, "labels"),
                format!("{k:?} is set by the hub and may not be in a template"),
            ));
        }
    }
    for k in [UID_ANNOTATION, GENERATION_ANNOTATION, HASH_ANNOTATION] {
        if meta.annotations.contains_key(k) {
            return Err(FieldError::new(
                join(&meta_path, "annotations"),
                format!("{k:?} is set by the hub and may not be in a template"),
            ));
        }
    }

    let mut stripped = obj.clone();
    let remote = strip_remote_peers(&mut stripped, rk, path)?;
    match rk {
        ResourceKind::NetworkPolicy => kubernetes::validate(&stripped, path)?,
        _ => calico::validate(rk, &stripped, path, &remote)?,
    }
    ObjectKey::of(obj)
        .ok_or_else(|| FieldError::new(path, "apiVersion, kind and metadata are required"))
}

/// Removes [`REMOTE_PEERS_FIELD`] from every rule of `obj` after checking it, so the rest
/// can be checked as the cluster's API would; returns which rules had it.
fn strip_remote_peers(
    obj: &mut Value,
    kind: ResourceKind,
    path: &str,
) -> Result<RemoteRules, FieldError> {
    let mut out = RemoteRules::new();
    for (dir, ingress) in [("ingress", true), ("egress", false)] {
        let Some(rules) = obj
            .get_mut("spec")
            .and_then(|s| s.get_mut(dir))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for (i, rule) in rules.iter_mut().enumerate() {
            let Some(peers) = rule
                .as_object_mut()
                .and_then(|r| r.remove(REMOTE_PEERS_FIELD))
            else {
                continue;
            };
            let at = format!("{path}.spec.{dir}[{i}].{REMOTE_PEERS_FIELD}");
            if !kind.has_rules() {
                return Err(FieldError::new(at, format!("{kind} has no rules")));
            }
            let peers: Vec<RemotePeer> = decode_at(&peers, &at)?;
            if peers.is_empty() {
                return Err(FieldError::new(
                    at,
                    "must list at least one peer (or be removed)",
                ));
            }
            for (k, p) in peers.iter().enumerate() {
                let pp = format!("{at}[{k}]");
                if p.placement().is_unset() {
                    return Err(FieldError::new(
                        pp,
                        "set clusterNames and/or clusterSelector (the clusters whose pods are peers)",
                    ));
                }
                validate_placement(&p.placement(), &pp)?;
                validate_selector(&p.namespace_selector, &join(&pp, "namespaceSelector"))?;
                validate_selector(&p.pod_selector, &join(&pp, "podSelector"))?;
            }
            out.insert((ingress, i));
        }
    }
    Ok(out)
}

/// An IANA service name as a named port (`IsValidPortName`): 1-15 lower-case letters,
/// digits and '-', at least one letter, no '-' at either end or twice in a row.
pub(super) fn check_port_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is neither a port number nor a port name (an IANA service name: 1-15 lower-case letters, digits and '-', with at least one letter)"
        ))
    }
}

/// Parses a CIDR (`10.0.0.0/8`, `fd00::/64`).
pub(super) fn parse_cidr(s: &str, path: &str) -> Result<ipnet::IpNet, FieldError> {
    s.parse::<ipnet::IpNet>()
        .map_err(|e| FieldError::new(path, format!("{s:?} is not a valid CIDR: {e}")))
}

#[cfg(test)]
mod tests;
