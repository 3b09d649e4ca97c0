//! Which pods of a remote cluster a remote peer may resolve to, and their addresses.
//!
//! A pod counts only while it is `Running`, has an address, is not being deleted and does
//! not use the node's network. Every other pod is left out, which narrows a rule and
//! never widens it: a `Pending` pod is not serving yet, a finished (`Succeeded`/`Failed`)
//! or terminating pod's address is about to be given to another pod, and a
//! `hostNetwork` pod's address is its node's, shared by everything on that node.
//! A pod is joined with its namespace's labels (for `namespaceSelector`); a pod whose
//! namespace is not known is left out too (a `NotIn` selector would otherwise match it
//! on missing labels).

use std::collections::BTreeMap;
use std::net::IpAddr;

use cattery_federation::RemotePod;
use serde_json::Value;

/// What is kept of a pod that may be a remote peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodEntry {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its addresses (`status.podIPs`, else `status.podIP`).
    pub ips: Vec<IpAddr>,
}

/// `metadata.labels` of an object.
pub(crate) fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `(namespace, name)` of a namespaced object.
pub(crate) fn pod_key(pod: &Value) -> Option<(String, String)> {
    let meta = pod.get("metadata")?;
    Some((
        meta.get("namespace")?.as_str()?.to_string(),
        meta.get("name")?.as_str()?.to_string(),
    ))
}

/// The pod as a possible peer, or `None` when it is not one now (see the module doc).
pub(crate) fn pod_entry(pod: &Value) -> Option<PodEntry> {
    if pod.pointer("/metadata/deletionTimestamp").is_some()
        || pod.pointer("/spec/hostNetwork") == Some(&Value::Bool(true))
        || pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running")
    {
        return None;
    }
    let mut ips: Vec<IpAddr> = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("ip")?.as_str()?.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = pod
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    {
        ips.push(ip);
    }
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return None;
    }
    Some(PodEntry {
        labels: labels(pod),
        ips,
    })
}

/// The planner's pods of one cluster: every kept pod whose namespace is known, with that
/// namespace's labels.
pub(crate) fn join(
    pods: &BTreeMap<(String, String), PodEntry>,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<RemotePod> {
    pods.iter()
        .filter_map(|((ns, _), p)| {
            Some(RemotePod {
                namespace: ns.clone(),
                namespace_labels: namespaces.get(ns)?.clone(),
                labels: p.labels.clone(),
                ips: p.ips.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, ips: &[&str]) -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "client"}},
            "spec": {},
            "status": {"phase": phase,
                       "podIP": ips.first(),
                       "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()},
        })
    }

    #[test]
    fn only_running_pods_with_an_address_are_peers() {
        let p = pod_entry(&pod("Running", &["10.1.0.2", "fd00::2"])).unwrap();
        assert_eq!(
            p.ips,
            vec![
                "10.1.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
        assert_eq!(p.labels["app"], "client");
        for phase in ["Pending", "Succeeded", "Failed", "Unknown"] {
            assert_eq!(pod_entry(&pod(phase, &["10.1.0.2"])), None, "{phase}");
        }
        assert_eq!(pod_entry(&pod("Running", &[])), None, "no address yet");
        let mut terminating = pod("Running", &["10.1.0.2"]);
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(pod_entry(&terminating), None);
        let mut host = pod("Running", &["10.0.0.10"]);
        host["spec"]["hostNetwork"] = json!(true);
        assert_eq!(pod_entry(&host), None);
        // Only `podIP` (older clusters).
        let mut old = pod("Running", &[]);
        old["status"]["podIP"] = json!("10.1.0.9");
        assert_eq!(
            pod_entry(&old).unwrap().ips,
            vec!["10.1.0.9".parse::<IpAddr>().unwrap()]
        );
        // A garbage address is not an address.
        assert_eq!(pod_entry(&pod("Running", &["10.1.0.300"])), None);
    }

    #[test]
    fn a_pod_of_an_unknown_namespace_is_left_out() {
        let entry = pod_entry(&pod("Running", &["10.1.0.2"])).unwrap();
        let mut pods = BTreeMap::new();
        pods.insert(("shop".to_string(), "p".to_string()), entry.clone());
        pods.insert(("gone".to_string(), "q".to_string()), entry);
        let mut namespaces = BTreeMap::new();
        namespaces.insert(
            "shop".to_string(),
            BTreeMap::from([("team".to_string(), "a".to_string())]),
        );
        let joined = join(&pods, &namespaces);
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0].namespace, "shop");
        assert_eq!(joined[0].namespace_labels["team"], "a");
    }
}
