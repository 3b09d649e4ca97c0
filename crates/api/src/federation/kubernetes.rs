//! `networking.k8s.io/v1 NetworkPolicy` templates: decoded strictly as k8s-openapi's type,
//! then checked as kube-apiserver's `ValidateNetworkPolicy` does for selectors, policy
//! types, ports and peers (names, namespaces, labels are checked by the caller).

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::validate::{FieldError, check_port_name, decode_at, parse_cidr};
use super::{LabelSelector, LabelSelectorRequirement, validate_selector};

/// Our [`LabelSelector`] of a k8s-openapi one.
pub(super) fn selector(s: &meta::LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: s
            .match_expressions
            .iter()
            .flatten()
            .map(|r| LabelSelectorRequirement {
                key: r.key.clone(),
                operator: r.operator.clone(),
                values: r.values.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// Checks a NetworkPolicy template (without remote peers) at `path`.
pub(super) fn validate(obj: &Value, path: &str) -> Result<(), FieldError> {
    let np: NetworkPolicy = decode_at(obj, path)?;
    let Some(spec) = np.spec else {
        return Ok(());
    };
    let sp = format!("{path}.spec");
    if let Some(s) = &spec.pod_selector {
        validate_selector(&selector(s), &format!("{sp}.podSelector"))?;
    }
    let mut seen = Vec::new();
    for (i, t) in spec.policy_types.iter().flatten().enumerate() {
        let at = format!("{sp}.policyTypes[{i}]");
        if t != "Ingress" && t != "Egress" {
            return Err(FieldError::new(
                at,
                format!("unsupported value {t:?}: supported values: \"Ingress\", \"Egress\""),
            ));
        }
        if seen.contains(&t) {
            return Err(FieldError::new(at, format!("duplicate value {t:?}")));
        }
        seen.push(t);
    }
    for (i, r) in spec.ingress.iter().flatten().enumerate() {
        let at = format!("{sp}.ingress[{i}]");
        for (k, p) in r.ports.iter().flatten().enumerate() {
            port(p, &format!("{at}.ports[{k}]"))?;
        }
        for (k, p) in r.from.iter().flatten().enumerate() {
            peer(p, &format!("{at}.from[{k}]"))?;
        }
    }
    for (i, r) in spec.egress.iter().flatten().enumerate() {
        let at = format!("{sp}.egress[{i}]");
        for (k, p) in r.ports.iter().flatten().enumerate() {
            port(p, &format!("{at}.ports[{k}]"))?;
        }
        for (k, p) in r.to.iter().flatten().enumerate() {
            peer(p, &format!("{at}.to[{k}]"))?;
        }
    }
    Ok(())
}

fn port(p: &NetworkPolicyPort, path: &str) -> Result<(), FieldError> {
    if let Some(proto) = &p.protocol
        && !matches!(proto.as_str(), "TCP" | "UDP" | "SCTP")
    {
        return Err(FieldError::new(
            format!("{path}.protocol"),
            format!("unsupported value {proto:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""),
        ));
    }
    let number = match &p.port {
        None => None,
        Some(IntOrString::Int(n)) => {
            if !(1..=65535).contains(n) {
                return Err(FieldError::new(
                    format!("{path}.port"),
                    format!("{n} must be between 1 and 65535, inclusive"),
                ));
            }
            Some(*n)
        }
        Some(IntOrString::String(s)) => {
            check_port_name(s).map_err(|e| FieldError::new(format!("{path}.port"), e))?;
            None
        }
    };
    if let Some(end) = p.end_port {
        let at = format!("{path}.endPort");
        match (number, &p.port) {
            (_, None) => return Err(FieldError::new(at, "may not be set without port")),
            (None, Some(_)) => {
                return Err(FieldError::new(at, "may not be set when port is a name"));
            }
            (Some(start), _) if end < start => {
                return Err(FieldError::new(
                    at,
                    format!("{end} must be greater than or equal to port ({start})"),
                ));
            }
            _ if end > 65535 => {
                return Err(FieldError::new(
                    at,
                    format!("{end} must be between 1 and 65535, inclusive"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn peer(p: &NetworkPolicyPeer, path: &str) -> Result<(), FieldError> {
    let selects = p.pod_selector.is_some() || p.namespace_selector.is_some();
    match (&p.ip_block, selects) {
        (None, false) => {
            return Err(FieldError::new(
                path,
                "must specify a peer (ipBlock, podSelector and/or namespaceSelector)",
            ));
        }
        (Some(_), true) => {
            return Err(FieldError::new(
                path,
                "may not specify both ipBlock and another peer",
            ));
        }
        _ => {}
    }
    if let Some(s) = &p.pod_selector {
        validate_selector(&selector(s), &format!("{path}.podSelector"))?;
    }
    if let Some(s) = &p.namespace_selector {
        validate_selector(&selector(s), &format!("{path}.namespaceSelector"))?;
    }
    if let Some(b) = &p.ip_block {
        let cidr = parse_cidr(&b.cidr, &format!("{path}.ipBlock.cidr"))?;
        for (i, e) in b.except.iter().flatten().enumerate() {
            let at = format!("{path}.ipBlock.except[{i}]");
            let ex = parse_cidr(e, &at)?;
            if !(cidr.contains(&ex) && ex.prefix_len() > cidr.prefix_len()) {
                return Err(FieldError::new(
                    at,
                    format!("{e:?} must be a strict subset of cidr {:?}", b.cidr),
                ));
            }
        }
    }
    Ok(())
}
