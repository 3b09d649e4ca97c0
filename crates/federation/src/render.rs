//! What one cluster should hold: the templates with that cluster's overrides applied,
//! remote peers replaced by addresses, and the owner label and annotations added.
//!
//! Remote peers become, for a Kubernetes NetworkPolicy, one `ipBlock` per pod address
//! (`/32` or `/128`) in the rule's `from`/`to`; a rule left with no peer at all is dropped
//! (an empty `from` would allow every source), and `policyTypes` is made explicit so that
//! dropping the last egress rule does not silently stop isolating egress. For Calico, each
//! such rule gets a GlobalNetworkSet holding the addresses, selected from the rule by a
//! [`REMOTE_PEER_LABEL`] selector with `namespaceSelector: global()`; an empty set
//! matches nothing, so an unresolved peer never widens a rule.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use cattery_api::federation::{
    CALICO_V3, FederatedPolicy, FieldError, GENERATION_ANNOTATION, HASH_ANNOTATION, OWNER_LABEL,
    ObjectKey, REMOTE_PEER_LABEL, REMOTE_PEERS_FIELD, RemotePeer, ResourceKind, UID_ANNOTATION,
    override_target, patched, validate_resource,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::fleet::{Cluster, RemotePod, Selection, labels_match, selector};

/// Why a cluster's objects could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The cluster's combination of overrides produced an invalid object.
    #[error("after this cluster's overrides, {0}")]
    InvalidOverride(FieldError),
    /// The policy itself is invalid (it should have been refused when applied).
    #[error("the policy is invalid: {0}")]
    Invalid(String),
}

/// The policy fields the rendered objects record.
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    /// `metadata.name` of the FederatedPolicy.
    pub name: &'a str,
    /// `metadata.uid`, when the store assigned one.
    pub uid: Option<&'a str>,
    /// `metadata.generation`.
    pub generation: i64,
}

/// The objects `cluster` should hold, sets before policies (so a policy never refers to
/// a set not yet there), each with its [`ObjectKey`].
pub fn render(
    policy: &FederatedPolicy,
    id: Identity<'_>,
    cluster: &Cluster,
    remote: &RemoteIndex,
) -> Result<Vec<(ObjectKey, Value)>, RenderError> {
    let spec = &policy.spec;
    let keys: Vec<ObjectKey> = spec
        .resources
        .iter()
        .map(|r| {
            ObjectKey::of(r).ok_or_else(|| {
                RenderError::Invalid("a resource has no kind, name or namespace".into())
            })
        })
        .collect::<Result<_, _>>()?;
    let mut overrides = Vec::new();
    for o in &spec.overrides {
        let target = override_target(o, &keys).map_err(RenderError::Invalid)?;
        if Selection::new(&o.placement())
            .map_err(RenderError::Invalid)?
            .matches(cluster)
        {
            overrides.push((target, o));
        }
    }
    let mut out: Vec<(ObjectKey, Value)> = Vec::new();
    for (i, template) in spec.resources.iter().enumerate() {
        let mut obj = template.clone();
        let mut overridden = false;
        for (_, o) in overrides.iter().filter(|(t, _)| *t == i) {
            obj = patched(&obj, o).map_err(RenderError::Invalid)?;
            overridden = true;
        }
        if overridden {
            validate_resource(&obj, &format!("spec.resources[{i}]"))
                .map_err(RenderError::InvalidOverride)?;
        }
        let key = keys[i].clone();
        let mut sets = Vec::new();
        match key.kind {
            ResourceKind::NetworkPolicy => {
                render_kubernetes(&mut obj, cluster, remote)?;
            }
            ResourceKind::CalicoNetworkPolicy | ResourceKind::GlobalNetworkPolicy => {
                sets = render_calico(&mut obj, &key, id.name, cluster, remote)?;
            }
            ResourceKind::NetworkSet | ResourceKind::GlobalNetworkSet => {}
        }
        for mut s in sets {
            stamp(&mut s, id);
            let k = ObjectKey::of(&s)
                .ok_or_else(|| RenderError::Invalid("rendered set has no key".into()))?;
            out.push((k, s));
        }
        stamp(&mut obj, id);
        out.push((key, obj));
    }
    let mut seen = BTreeSet::new();
    for (k, _) in &out {
        if !seen.insert(k.clone()) {
            return Err(RenderError::Invalid(format!(
                "{k} is both a template and a rendered remote-peer set"
            )));
        }
    }
    out.sort_by_key(|(k, _)| {
        !matches!(
            k.kind,
            ResourceKind::NetworkSet | ResourceKind::GlobalNetworkSet
        )
    });
    Ok(out)
}

/// Adds the owner label, the uid and generation annotations, and the hash of the result.
fn stamp(obj: &mut Value, id: Identity<'_>) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        l.insert(OWNER_LABEL.into(), id.name.into());
    }
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = annotations.as_object_mut() {
        if let Some(uid) = id.uid {
            a.insert(UID_ANNOTATION.into(), uid.into());
        }
        a.insert(
            GENERATION_ANNOTATION.into(),
            id.generation.to_string().into(),
        );
    }
    let hash = hex::encode(&Sha256::digest(obj.to_string().as_bytes())[..16]);
    if let Some(a) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.insert(HASH_ANNOTATION.into(), hash.into());
    }
}

/// The remote pods, indexed once per plan: for each remote peer, the addresses it
/// selects in each cluster it names. Rendering a cluster then only unions sets instead of
/// matching every pod of the fleet again.
#[derive(Clone, Debug, Default)]
pub struct RemoteIndex {
    peers: Vec<(RemotePeer, BTreeMap<String, BTreeSet<IpAddr>>)>,
}

impl RemoteIndex {
    /// Indexes `peers` (usually [`remote_peers`] of the policy) over the fleet's pods.
    pub fn new(
        peers: &[RemotePeer],
        fleet: &[Cluster],
        remote_pods: &BTreeMap<String, Vec<RemotePod>>,
    ) -> Result<RemoteIndex, RenderError> {
        let peers = peers
            .iter()
            .map(|p| Ok((p.clone(), select(p, fleet, remote_pods)?)))
            .collect::<Result<_, RenderError>>()?;
        Ok(RemoteIndex { peers })
    }

    /// The addresses of the pods `peers` select, in clusters other than `target`. A peer
    /// not indexed is an error (the index is built from every peer the policy has).
    pub fn addresses(
        &self,
        peers: &[RemotePeer],
        target: &str,
    ) -> Result<BTreeSet<IpAddr>, RenderError> {
        let mut out = BTreeSet::new();
        for p in peers {
            let (_, by_cluster) = self.peers.iter().find(|(q, _)| q == p).ok_or_else(|| {
                RenderError::Invalid(format!("{REMOTE_PEERS_FIELD}: a peer was not indexed"))
            })?;
            for (c, ips) in by_cluster {
                if c != target {
                    out.extend(ips.iter().copied());
                }
            }
        }
        Ok(out)
    }
}

/// The addresses one peer selects, per cluster.
fn select(
    p: &RemotePeer,
    fleet: &[Cluster],
    remote_pods: &BTreeMap<String, Vec<RemotePod>>,
) -> Result<BTreeMap<String, BTreeSet<IpAddr>>, RenderError> {
    let clusters = Selection::new(&p.placement()).map_err(RenderError::Invalid)?;
    let ns = selector(&p.namespace_selector).map_err(RenderError::Invalid)?;
    let pods = selector(&p.pod_selector).map_err(RenderError::Invalid)?;
    let mut out = BTreeMap::new();
    for c in fleet.iter().filter(|c| clusters.matches(c)) {
        let ips: BTreeSet<IpAddr> = remote_pods
            .get(&c.name)
            .into_iter()
            .flatten()
            .filter(|pod| {
                labels_match(&ns, &pod.namespace_labels) && labels_match(&pods, &pod.labels)
            })
            .flat_map(|pod| pod.ips.iter().copied())
            .collect();
        if !ips.is_empty() {
            out.insert(c.name.clone(), ips);
        }
    }
    Ok(out)
}

/// Takes the remote peers out of `rule`, if it has any.
fn take_peers(rule: &mut Value) -> Result<Option<Vec<RemotePeer>>, RenderError> {
    let Some(raw) = rule
        .as_object_mut()
        .and_then(|r| r.remove(REMOTE_PEERS_FIELD))
    else {
        return Ok(None);
    };
    serde_json::from_value(raw)
        .map(Some)
        .map_err(|e| RenderError::Invalid(format!("{REMOTE_PEERS_FIELD}: {e}")))
}

fn host_cidr(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

fn render_kubernetes(
    obj: &mut Value,
    cluster: &Cluster,
    remote: &RemoteIndex,
) -> Result<(), RenderError> {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let has_egress = spec
        .get("egress")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    let mut had_remote = false;
    for (dir, peer_field) in [("ingress", "from"), ("egress", "to")] {
        let Some(rules) = spec.get_mut(dir).and_then(Value::as_array_mut) else {
            continue;
        };
        let mut kept = Vec::with_capacity(rules.len());
        for mut rule in std::mem::take(rules) {
            let Some(peers) = take_peers(&mut rule)? else {
                kept.push(rule);
                continue;
            };
            had_remote = true;
            let ips = remote.addresses(&peers, &cluster.name)?;
            let Some(r) = rule.as_object_mut() else {
                continue;
            };
            let list = r
                .entry(peer_field)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut list: Vec<Value> = list;
            list.extend(
                ips.iter()
                    .map(|ip| json!({"ipBlock": {"cidr": host_cidr(ip)}})),
            );
            if list.is_empty() {
                // No plain peer and no remote pod: the rule matches nothing; an empty
                // `from`/`to` would match everything, so the rule goes.
                continue;
            }
            r.insert(peer_field.into(), Value::Array(list));
            kept.push(rule);
        }
        *rules = kept;
    }
    if had_remote && !spec.contains_key("policyTypes") {
        let mut types = vec![json!("Ingress")];
        if has_egress {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
    Ok(())
}

/// The id of a Calico rule's remote-peer set: stable for the policy, object, direction
/// and rule index; short enough for a label value.
fn set_id(policy: &str, key: &ObjectKey, dir: &str, index: usize) -> String {
    let mut h = Sha256::new();
    h.update(format!("{policy}\0{key}\0{dir}\0{index}"));
    hex::encode(&h.finalize()[..8])
}

fn render_calico(
    obj: &mut Value,
    key: &ObjectKey,
    policy: &str,
    cluster: &Cluster,
    remote: &RemoteIndex,
) -> Result<Vec<Value>, RenderError> {
    let mut sets = Vec::new();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(sets);
    };
    for (dir, side) in [("ingress", "source"), ("egress", "destination")] {
        let Some(rules) = spec.get_mut(dir).and_then(Value::as_array_mut) else {
            continue;
        };
        for (i, rule) in rules.iter_mut().enumerate() {
            let Some(peers) = take_peers(rule)? else {
                continue;
            };
            let ips = remote.addresses(&peers, &cluster.name)?;
            let id = set_id(policy, key, dir, i);
            let name = format!("cattery-{policy}-{id}");
            sets.push(json!({
                "apiVersion": CALICO_V3,
                "kind": "GlobalNetworkSet",
                "metadata": {"name": name, "labels": {REMOTE_PEER_LABEL: id}},
                "spec": {"nets": ips.iter().map(host_cidr).collect::<Vec<_>>()},
            }));
            let Some(r) = rule.as_object_mut() else {
                continue;
            };
            let entity = r.entry(side).or_insert_with(|| Value::Object(Map::new()));
            if let Some(e) = entity.as_object_mut() {
                e.insert(
                    "selector".into(),
                    format!("{REMOTE_PEER_LABEL} == '{id}'").into(),
                );
                e.insert("namespaceSelector".into(), "global()".into());
            }
        }
    }
    Ok(sets)
}

/// Every remote peer in the policy's templates and in their overridden forms: what the
/// hub must watch (pods and namespaces of the clusters these select) to render them.
pub fn remote_peers(policy: &FederatedPolicy) -> Vec<RemotePeer> {
    let keys: Vec<Option<ObjectKey>> = policy.spec.resources.iter().map(ObjectKey::of).collect();
    let keys: Vec<ObjectKey> = keys.into_iter().flatten().collect();
    let mut objects: Vec<Value> = policy.spec.resources.clone();
    for o in &policy.spec.overrides {
        if let Ok(i) = override_target(o, &keys)
            && let Some(t) = policy.spec.resources.get(i)
            && let Ok(p) = patched(t, o)
        {
            objects.push(p);
        }
    }
    let mut out: Vec<RemotePeer> = Vec::new();
    for obj in &objects {
        for dir in ["ingress", "egress"] {
            let rules = obj
                .get("spec")
                .and_then(|s| s.get(dir))
                .and_then(Value::as_array);
            for rule in rules.into_iter().flatten() {
                let Some(raw) = rule.get(REMOTE_PEERS_FIELD) else {
                    continue;
                };
                let peers: Vec<RemotePeer> =
                    serde_json::from_value(raw.clone()).unwrap_or_default();
                for p in peers {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
        }
    }
    out
}
