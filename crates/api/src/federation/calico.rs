//! `projectcalico.org/v3` templates (NetworkPolicy, GlobalNetworkPolicy, NetworkSet,
//! GlobalNetworkSet): strict structs of the fields a FederatedPolicy supports, and the
//! checks Calico's validator makes on them (actions, protocols, ports, CIDRs, ICMP).
//!
//! Calico selector expressions (`app == 'web' && has(tier)`) are checked for syntax only
//! ([`super::calico_selector`]).

use serde::Deserialize;
use serde_json::Value;

use super::ResourceKind;
use super::validate::{FieldError, RemoteRules, check_port_name, decode_at};

/// A Calico object: `apiVersion`, `kind`, `metadata` (checked by the caller), `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Object<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    metadata: Value,
    spec: S,
}

/// `NetworkPolicy.spec` / `GlobalNetworkPolicy.spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicySpec {
    #[serde(default)]
    #[allow(dead_code)]
    order: Option<f64>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    service_account_selector: Option<String>,
    #[serde(default)]
    namespace_selector: Option<String>,
    #[serde(default)]
    types: Vec<PolicyType>,
    #[serde(default)]
    ingress: Vec<Rule>,
    #[serde(default)]
    egress: Vec<Rule>,
    #[serde(default)]
    do_not_track: Option<bool>,
    #[serde(default, rename = "preDNAT")]
    pre_dnat: Option<bool>,
    #[serde(default)]
    apply_on_forward: Option<bool>,
}

#[derive(Deserialize, PartialEq, Eq, Clone, Copy, Debug)]
enum PolicyType {
    Ingress,
    Egress,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    #[allow(dead_code)]
    action: RuleAction,
    #[serde(default)]
    protocol: Option<Protocol>,
    #[serde(default)]
    not_protocol: Option<Protocol>,
    #[serde(default)]
    ip_version: Option<u8>,
    #[serde(default, rename = "icmp")]
    icmp: Option<Icmp>,
    #[serde(default, rename = "notICMP")]
    not_icmp: Option<Icmp>,
    #[serde(default)]
    source: Option<EntityRule>,
    #[serde(default)]
    destination: Option<EntityRule>,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<RuleMetadata>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleMetadata {
    #[serde(default)]
    #[allow(dead_code)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
enum RuleAction {
    Allow,
    Deny,
    Log,
    Pass,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Protocol {
    Number(u64),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Icmp {
    #[serde(default, rename = "type")]
    type_: Option<u64>,
    #[serde(default)]
    code: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EntityRule {
    #[serde(default)]
    nets: Vec<String>,
    #[serde(default)]
    not_nets: Vec<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    not_selector: Option<String>,
    #[serde(default)]
    namespace_selector: Option<String>,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    not_ports: Vec<Port>,
    #[serde(default)]
    service_accounts: Option<ServiceAccounts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceAccounts {
    #[serde(default)]
    #[allow(dead_code)]
    names: Vec<String>,
    #[serde(default)]
    selector: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Port {
    Number(u64),
    Text(String),
}

/// `NetworkSet.spec` / `GlobalNetworkSet.spec`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSpec {
    #[serde(default)]
    nets: Vec<String>,
}

/// Checks a Calico template (without remote peers) at `path`; `remote` lists the rules
/// that had remote peers, whose peer side the hub fills in.
pub(super) fn validate(
    kind: ResourceKind,
    obj: &Value,
    path: &str,
    remote: &RemoteRules,
) -> Result<(), FieldError> {
    let sp = format!("{path}.spec");
    match kind {
        ResourceKind::NetworkSet | ResourceKind::GlobalNetworkSet => {
            let o: Object<SetSpec> = decode_at(obj, path)?;
            for (i, n) in o.spec.nets.iter().enumerate() {
                net(n, &format!("{sp}.nets[{i}]"), None)?;
            }
            Ok(())
        }
        ResourceKind::CalicoNetworkPolicy | ResourceKind::GlobalNetworkPolicy => {
            let o: Object<PolicySpec> = decode_at(obj, path)?;
            policy(kind, &o.spec, &sp, remote)
        }
        ResourceKind::NetworkPolicy => super::kubernetes::validate(obj, path),
    }
}

fn policy(
    kind: ResourceKind,
    s: &PolicySpec,
    sp: &str,
    remote: &RemoteRules,
) -> Result<(), FieldError> {
    if kind == ResourceKind::CalicoNetworkPolicy {
        for (set, field) in [
            (s.namespace_selector.is_some(), "namespaceSelector"),
            (s.do_not_track.is_some(), "doNotTrack"),
            (s.pre_dnat.is_some(), "preDNAT"),
            (s.apply_on_forward.is_some(), "applyOnForward"),
        ] {
            if set {
                return Err(FieldError::new(
                    format!("{sp}.{field}"),
                    "only a GlobalNetworkPolicy has this field",
                ));
            }
        }
    }
    for (f, v) in [
        ("selector", &s.selector),
        ("serviceAccountSelector", &s.service_account_selector),
        ("namespaceSelector", &s.namespace_selector),
    ] {
        calico_selector(v, &format!("{sp}.{f}"))?;
    }
    if let Some(t) = &s.tier {
        crate::validate_dns1123_label(t)
            .map_err(|e| FieldError::new(format!("{sp}.tier"), e.to_string()))?;
    }
    for (i, t) in s.types.iter().enumerate() {
        if s.types[..i].contains(t) {
            return Err(FieldError::new(
                format!("{sp}.types[{i}]"),
                format!("duplicate value {t:?}"),
            ));
        }
    }
    for (dir, rules, ingress) in [("ingress", &s.ingress, true), ("egress", &s.egress, false)] {
        for (i, r) in rules.iter().enumerate() {
            rule(
                r,
                &format!("{sp}.{dir}[{i}]"),
                remote.contains(&(ingress, i)).then_some(if ingress {
                    "source"
                } else {
                    "destination"
                }),
            )?;
        }
    }
    Ok(())
}

/// A Calico selector's syntax ([`super::calico_selector`]); an empty one is refused too,
/// since an empty string means "no selector" to Calico and is a mistake in a template.
fn calico_selector(v: &Option<String>, path: &str) -> Result<(), FieldError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(FieldError::new(
            path,
            "must not be empty (omit the field, or use all() to select everything)",
        )),
        Some(s) => super::calico_selector::check(s).map_err(|e| FieldError::new(path, e)),
        None => Ok(()),
    }
}

fn rule(r: &Rule, path: &str, remote_side: Option<&str>) -> Result<(), FieldError> {
    let proto = |p: &Option<Protocol>, f: &str| -> Result<Option<String>, FieldError> {
        match p {
            None => Ok(None),
            Some(Protocol::Number(n)) if (1..=255).contains(n) => Ok(Some(n.to_string())),
            Some(Protocol::Number(n)) => Err(FieldError::new(
                format!("{path}.{f}"),
                format!("{n} must be between 1 and 255"),
            )),
            Some(Protocol::Name(s))
                if matches!(
                    s.as_str(),
                    "TCP" | "UDP" | "ICMP" | "ICMPv6" | "SCTP" | "UDPLite"
                ) =>
            {
                Ok(Some(s.clone()))
            }
            Some(Protocol::Name(s)) => Err(FieldError::new(
                format!("{path}.{f}"),
                format!(
                    "unsupported protocol {s:?}: TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255"
                ),
            )),
        }
    };
    let protocol = proto(&r.protocol, "protocol")?;
    proto(&r.not_protocol, "notProtocol")?;
    let family = match r.ip_version {
        None => None,
        Some(v @ (4 | 6)) => Some(v),
        Some(v) => {
            return Err(FieldError::new(
                format!("{path}.ipVersion"),
                format!("{v} must be 4 or 6"),
            ));
        }
    };
    for (icmp, f) in [(&r.icmp, "icmp"), (&r.not_icmp, "notICMP")] {
        let Some(icmp) = icmp else { continue };
        if !matches!(protocol.as_deref(), Some("ICMP" | "ICMPv6" | "1" | "58")) {
            return Err(FieldError::new(
                format!("{path}.{f}"),
                "requires protocol ICMP or ICMPv6",
            ));
        }
        if icmp.type_.is_some_and(|t| t > 254) {
            return Err(FieldError::new(
                format!("{path}.{f}.type"),
                "must be between 0 and 254",
            ));
        }
        if icmp.code.is_some() && icmp.type_.is_none() {
            return Err(FieldError::new(
                format!("{path}.{f}.code"),
                "may only be set together with type",
            ));
        }
        if icmp.code.is_some_and(|c| c > 255) {
            return Err(FieldError::new(
                format!("{path}.{f}.code"),
                "must be between 0 and 255",
            ));
        }
    }
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        let at = format!("{path}.{side}");
        let Some(e) = e else { continue };
        if remote_side == Some(side) {
            for (set, f) in [
                (!e.nets.is_empty(), "nets"),
                (e.selector.is_some(), "selector"),
                (e.namespace_selector.is_some(), "namespaceSelector"),
                (e.service_accounts.is_some(), "serviceAccounts"),
            ] {
                if set {
                    return Err(FieldError::new(
                        format!("{at}.{f}"),
                        format!(
                            "may not be set in a rule with {} (the hub sets the {side}'s selector)",
                            super::REMOTE_PEERS_FIELD
                        ),
                    ));
                }
            }
        }
        for (i, n) in e.nets.iter().enumerate() {
            net(n, &format!("{at}.nets[{i}]"), family)?;
        }
        for (i, n) in e.not_nets.iter().enumerate() {
            net(n, &format!("{at}.notNets[{i}]"), family)?;
        }
        for (f, v) in [
            ("selector", &e.selector),
            ("notSelector", &e.not_selector),
            ("namespaceSelector", &e.namespace_selector),
        ] {
            calico_selector(v, &format!("{at}.{f}"))?;
        }
        if let Some(sa) = &e.service_accounts {
            calico_selector(&sa.selector, &format!("{at}.serviceAccounts.selector"))?;
        }
        for (f, ports) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
            if ports.is_empty() {
                continue;
            }
            if !matches!(
                protocol.as_deref(),
                Some("TCP" | "UDP" | "SCTP" | "UDPLite" | "6" | "17" | "132" | "136")
            ) {
                return Err(FieldError::new(
                    format!("{at}.{f}"),
                    "ports need protocol TCP, UDP, SCTP or UDPLite in the rule",
                ));
            }
            for (i, p) in ports.iter().enumerate() {
                port(p, &format!("{at}.{f}[{i}]"))?;
            }
        }
    }
    Ok(())
}

/// A Calico port: a number, `min:max`, or a named port.
fn port(p: &Port, path: &str) -> Result<(), FieldError> {
    let num = |s: &str| -> Result<u16, FieldError> {
        s.parse::<u16>()
            .map_err(|_| FieldError::new(path, format!("{s:?} is not a port number (0-65535)")))
    };
    match p {
        Port::Number(n) if *n <= 65535 => Ok(()),
        Port::Number(n) => Err(FieldError::new(
            path,
            format!("{n} must be between 0 and 65535"),
        )),
        Port::Text(s) => match s.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(FieldError::new(
                        path,
                        format!("range {s:?}: the first port must not be greater than the second"),
                    ));
                }
                Ok(())
            }
            None if s.parse::<u16>().is_ok() => Ok(()),
            None => check_port_name(s).map_err(|e| FieldError::new(path, e)),
        },
    }
}

/// A Calico net: a CIDR or a single address, of `family` when the rule has `ipVersion`.
fn net(s: &str, path: &str, family: Option<u8>) -> Result<(), FieldError> {
    let net = match s.parse::<ipnet::IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<std::net::IpAddr>() {
            Ok(a) => ipnet::IpNet::from(a),
            Err(_) => {
                return Err(FieldError::new(
                    path,
                    format!("{s:?} is not a valid CIDR or IP address"),
                ));
            }
        },
    };
    let v = if net.addr().is_ipv4() { 4 } else { 6 };
    if family.is_some_and(|f| f != v) {
        return Err(FieldError::new(
            path,
            format!(
                "{s:?} is IPv{v} but the rule's ipVersion is {}",
                family.unwrap_or(v)
            ),
        ));
    }
    Ok(())
}
