//! Kubernetes `networking.k8s.io/v1` NetworkPolicy evaluation: given the policies of a
//! cluster and its namespaces' labels, is a flow (source, destination, protocol, port)
//! allowed, and which policy (and rule) decided.
//!
//! One evaluator for the whole project: the simulator's traffic generator uses it to
//! decide what its flow logs report as allowed or denied, and the hub's policy preview
//! replays stored flows against a proposed policy with it, so both agree.
//!
//! Recorded flows do not always say everything a verdict may depend on: Felix aggregates
//! allowed flows by pod prefix and writes `null` addresses, and records never carry the
//! destination's named container ports. [`Evaluator::flow_ingress`] and
//! [`Evaluator::flow_egress`] take such partial ends and answer [`Outcome::Unknown`]
//! (naming what was [`Missing`]) exactly when the verdict depends on the missing part:
//! rule matching is three-valued, a rule that surely matches allows, and a flow no rule
//! surely matches but some rule might is unknown, never guessed.
//!
//! Semantics (the Kubernetes API reference for NetworkPolicy, as Calico enforces it):
//!
//! - a policy *selects* a pod when it lives in the pod's namespace and its
//!   `spec.podSelector` matches the pod's labels (`{}` selects every pod);
//! - `spec.policyTypes`, when absent, is `["Ingress"]` plus `"Egress"` if
//!   `spec.egress` is present;
//! - a pod selected by no policy of a direction is *not isolated* in that
//!   direction: everything is allowed (Calico reports this as the namespace
//!   profile, `__PROFILE__.kns.<namespace>`);
//! - a pod selected by at least one policy of a direction is isolated: a
//!   connection is allowed only if some rule of some selecting policy matches
//!   it (rules are a union, order does not matter for the outcome), otherwise
//!   it is denied;
//! - a connection between two pods needs both: the source's egress and the
//!   destination's ingress ([`Evaluator::connection`]); a connection to or from an
//!   address outside the cluster's pods is decided by the pod's side alone;
//! - a rule matches when one of its peers matches (no `from`/`to`, or an
//!   empty list, matches every peer) and one of its ports matches (no
//!   `ports`, or an empty list, matches every port); a peer is a
//!   `podSelector` (pods of the policy's namespace), a `namespaceSelector`
//!   (every pod of the selected namespaces), both (selected pods in the
//!   selected namespaces), or an `ipBlock` (`cidr` minus `except`, applied
//!   to any address, pod or not, as Calico does; Kubernetes leaves ipBlock on
//!   pod IPs to the implementation); a port is a protocol (default TCP) with an
//!   optional number, name (looked up in the destination pod's container ports)
//!   and `endPort` range.
//!
//! Label selectors are `metav1.LabelSelector`: `matchLabels` and
//! `matchExpressions` (`In`, `NotIn`, `Exists`, `DoesNotExist`), all ANDed.
//!
//! Attribution (what Felix puts in `policies`): the first selecting policy
//! in Calico's order (all Kubernetes policies have order 1000 in tier
//! `default`, ties broken by name) with a matching rule, and that rule's
//! index; when nothing matches, the last selecting policy with rule index
//! `-1` (the end-of-tier deny).
//!
//! Calico's own `projectcalico.org/v3` kinds are NOT implemented: no
//! NetworkPolicy/GlobalNetworkPolicy of Calico (so no Calico selector language
//! `app == 'x' && has(y)`, no `order`, no tiers, no `Deny`/`Pass`/`Log` actions, no
//! service-account or HTTP match criteria), no NetworkSet/GlobalNetworkSet, no
//! staged policies and no AdminNetworkPolicy. A caller that must evaluate those has to
//! say it cannot. Policies whose spec does not deserialize are ignored (like a policy
//! Calico failed to render); an unknown selector operator matches nothing (the API
//! server would have refused it).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

/// A layer-4 protocol as NetworkPolicy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// The name Felix writes in `proto` (`tcp`, `udp`, `sctp`).
    pub fn felix_name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// From Felix's `proto` (`tcp`, `udp`, `sctp`, case-insensitive); other protocols
    /// (`icmp`, numbers) have no NetworkPolicy port semantics here.
    pub fn from_felix(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "6" => Some(Proto::Tcp),
            "udp" | "17" => Some(Proto::Udp),
            "sctp" | "132" => Some(Proto::Sctp),
            _ => None,
        }
    }

    fn from_k8s(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

/// `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Exact label matches.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In`/`NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

impl Selector {
    /// Whether `labels` satisfy every requirement (the empty selector matches all).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let have = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => have.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => have.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
    }
}

/// `IntOrString`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i64),
    /// A name (or a number written as a string).
    Str(String),
}

/// `NetworkPolicyPort`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPort {
    /// `TCP` (default), `UDP` or `SCTP`.
    pub protocol: Option<String>,
    /// Port number or named container port; absent = every port.
    pub port: Option<IntOrString>,
    /// Last port of a range starting at `port`.
    pub end_port: Option<i64>,
}

/// `IPBlock`.
#[derive(Debug, Clone, Deserialize)]
pub struct IpBlock {
    /// CIDR allowed.
    pub cidr: String,
    /// CIDRs carved out of `cidr`.
    #[serde(default)]
    pub except: Vec<String>,
}

/// `NetworkPolicyPeer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPeer {
    /// Pods (of the policy's namespace, or of `namespaceSelector`'s).
    pub pod_selector: Option<Selector>,
    /// Namespaces.
    pub namespace_selector: Option<Selector>,
    /// Addresses.
    pub ip_block: Option<IpBlock>,
}

/// An ingress or egress rule (`from` for ingress, `to` for egress).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Ingress peers.
    pub from: Option<Vec<PolicyPeer>>,
    /// Egress peers.
    pub to: Option<Vec<PolicyPeer>>,
    /// Ports.
    pub ports: Option<Vec<PolicyPort>>,
}

/// `NetworkPolicySpec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Pods the policy applies to.
    #[serde(default)]
    pub pod_selector: Selector,
    /// Ingress rules.
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules.
    pub egress: Option<Vec<Rule>>,
    /// `Ingress` and/or `Egress`.
    pub policy_types: Option<Vec<String>>,
}

/// A NetworkPolicy as the evaluator sees it.
#[derive(Debug, Clone)]
pub struct NetworkPolicy {
    /// Namespace of the policy.
    pub namespace: String,
    /// Name of the policy.
    pub name: String,
    /// Its spec.
    pub spec: PolicySpec,
}

impl NetworkPolicy {
    /// Reads a stored object; `None` (the policy is ignored) if the spec does
    /// not have NetworkPolicy's shape.
    pub fn from_object(obj: &Value) -> Option<NetworkPolicy> {
        let meta = obj.get("metadata")?;
        let spec = match obj.get("spec") {
            None | Some(Value::Null) => PolicySpec::default(),
            Some(s) => match PolicySpec::deserialize(s) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::debug!(error = %e, "ignoring a NetworkPolicy whose spec does not parse");
                    return None;
                }
            },
        };
        Some(NetworkPolicy {
            namespace: meta.get("namespace")?.as_str()?.to_string(),
            name: meta.get("name")?.as_str()?.to_string(),
            spec,
        })
    }

    fn has_type(&self, dir: Direction) -> bool {
        match &self.spec.policy_types {
            Some(types) => types.iter().any(|t| t == dir.k8s_name()),
            None => match dir {
                Direction::Ingress => true,
                Direction::Egress => self.spec.egress.is_some(),
            },
        }
    }
}

/// Which way a policy is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Traffic arriving at the selected pod.
    Ingress,
    /// Traffic leaving the selected pod.
    Egress,
}

impl Direction {
    fn k8s_name(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

/// A pod, for evaluation.
#[derive(Debug, Clone, Copy)]
pub struct PodRef<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Labels.
    pub labels: &'a Labels,
    /// Pod IP.
    pub ip: IpAddr,
    /// Named container ports: `(name, port, protocol)`.
    pub named_ports: &'a [(String, u16, Proto)],
}

/// The other end of a connection.
#[derive(Debug, Clone, Copy)]
pub enum PeerRef<'a> {
    /// A pod in the cluster.
    Pod(PodRef<'a>),
    /// An address outside the cluster's pods.
    External(IpAddr),
}

/// Allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

impl Action {
    /// Felix's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

/// What decided a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    /// No policy selects the pod: the namespace profile allows.
    Profile {
        /// The pod's namespace.
        namespace: String,
    },
    /// A Kubernetes NetworkPolicy.
    Policy {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Matching rule index, or -1 for the end-of-tier deny.
        rule: i64,
    },
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed or denied.
    pub action: Action,
    /// Who decided.
    pub decider: Decider,
}

impl Verdict {
    /// The Felix `policies` entry: `<index>|<tier>|<name>|<action>|<rule index>`
    /// (Kubernetes policies are `<ns>/knp.default.<name>` in tier `default`;
    /// profiles are `__PROFILE__.kns.<ns>` in tier `__PROFILE__`).
    pub fn felix_policy(&self, index: usize) -> String {
        match &self.decider {
            Decider::Profile { namespace } => {
                format!(
                    "{index}|__PROFILE__|__PROFILE__.kns.{namespace}|{}|0",
                    self.action.as_str()
                )
            }
            Decider::Policy {
                namespace,
                name,
                rule,
            } => format!(
                "{index}|default|{namespace}/knp.default.{name}|{}|{rule}",
                self.action.as_str()
            ),
        }
    }
}

/// The two halves of a connection's verdict ([`Evaluator::connection`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The source pod's egress verdict (None when the source is not a pod).
    pub egress: Option<Verdict>,
    /// The destination pod's ingress verdict (None when the destination is not a pod).
    pub ingress: Option<Verdict>,
}

impl Connection {
    /// Whether the connection is allowed: every evaluated side allows it.
    pub fn allowed(&self) -> bool {
        [&self.egress, &self.ingress]
            .into_iter()
            .flatten()
            .all(|v| v.action == Action::Allow)
    }

    /// The verdict that denied it (egress first, as the packet meets it first).
    pub fn denied_by(&self) -> Option<&Verdict> {
        [&self.egress, &self.ingress]
            .into_iter()
            .flatten()
            .find(|v| v.action == Action::Deny)
    }
}

/// Policies and namespace labels at one moment.
#[derive(Debug, Default)]
pub struct Evaluator {
    /// Sorted by (namespace, name): Calico's order for Kubernetes policies.
    policies: Vec<NetworkPolicy>,
    namespaces: BTreeMap<String, Labels>,
}

/// Whether `ip` is inside `cidr` (`a.b.c.d/n` or IPv6; a bare address is a /32 or /128).
/// An unparsable CIDR contains nothing.
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let cidr = cidr.trim();
    match cidr.parse::<ipnet::IpNet>() {
        Ok(net) => net.contains(&ip),
        Err(_) => cidr.parse::<IpAddr>() == Ok(ip),
    }
}

impl Evaluator {
    /// An evaluator over `policies` with the given namespace labels.
    pub fn new(mut policies: Vec<NetworkPolicy>, namespaces: BTreeMap<String, Labels>) -> Self {
        policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Evaluator {
            policies,
            namespaces,
        }
    }

    /// Decides traffic arriving at pod `dst` from `src` on `proto`/`port`.
    pub fn ingress(&self, dst: PodRef<'_>, src: PeerRef<'_>, proto: Proto, port: u16) -> Verdict {
        self.evaluate(Direction::Ingress, dst, src, dst.named_ports, proto, port)
    }

    /// Decides traffic leaving pod `src` for `dst` on `proto`/`port`; named
    /// ports are resolved against `dst_ports` (the destination pod's).
    pub fn egress(
        &self,
        src: PodRef<'_>,
        dst: PeerRef<'_>,
        dst_ports: &[(String, u16, Proto)],
        proto: Proto,
        port: u16,
    ) -> Verdict {
        self.evaluate(Direction::Egress, src, dst, dst_ports, proto, port)
    }

    /// Decides a connection from `src` to `dst`: the source pod's egress and the
    /// destination pod's ingress must both allow it (for an external end only the pod's
    /// side is evaluated). `dst_ports` are the destination pod's named container ports.
    pub fn connection(
        &self,
        src: PeerRef<'_>,
        dst: PeerRef<'_>,
        proto: Proto,
        port: u16,
    ) -> Connection {
        let dst_ports = match dst {
            PeerRef::Pod(p) => p.named_ports,
            PeerRef::External(_) => &[],
        };
        let egress = match src {
            PeerRef::Pod(s) => Some(self.egress(s, dst, dst_ports, proto, port)),
            PeerRef::External(_) => None,
        };
        let ingress = match dst {
            PeerRef::Pod(d) => Some(self.ingress(d, src, proto, port)),
            PeerRef::External(_) => None,
        };
        Connection { egress, ingress }
    }

    fn evaluate(
        &self,
        dir: Direction,
        subject: PodRef<'_>,
        peer: PeerRef<'_>,
        named_ports: &[(String, u16, Proto)],
        proto: Proto,
        port: u16,
    ) -> Verdict {
        let peer = match peer {
            PeerRef::Pod(p) => Peer {
                pod: Some((p.namespace, p.labels)),
                ip: Some(p.ip),
            },
            PeerRef::External(ip) => Peer {
                pod: None,
                ip: Some(ip),
            },
        };
        let subject = Subject {
            namespace: subject.namespace,
            labels: subject.labels,
        };
        match self.decide(dir, subject, peer, Some(named_ports), proto, port) {
            Outcome::Decided(v) => v,
            // Every input is known, so nothing can be unknown; fail closed regardless.
            Outcome::Unknown { policy, .. } => Verdict {
                action: Action::Deny,
                decider: Decider::Policy {
                    namespace: policy.0,
                    name: policy.1,
                    rule: -1,
                },
            },
        }
    }

    /// Decides the ingress half of a recorded flow at pod `dst`: like [`Evaluator::ingress`],
    /// but any part of the flow the record does not carry (an address Felix aggregated
    /// away, the destination's named ports) may be unknown, and when the verdict depends on
    /// it the answer is [`Outcome::Unknown`] rather than a guess.
    pub fn flow_ingress(
        &self,
        dst: FlowPod<'_>,
        src: FlowEnd<'_>,
        proto: Proto,
        port: u16,
    ) -> Outcome {
        self.decide(
            Direction::Ingress,
            Subject {
                namespace: dst.namespace,
                labels: dst.labels,
            },
            src.peer(),
            dst.named_ports,
            proto,
            port,
        )
    }

    /// Decides the egress half of a recorded flow from pod `src` (see
    /// [`Evaluator::flow_ingress`]); named ports are looked up in `dst_ports`, the
    /// destination pod's container ports when known.
    pub fn flow_egress(
        &self,
        src: FlowPod<'_>,
        dst: FlowEnd<'_>,
        dst_ports: Option<&[(String, u16, Proto)]>,
        proto: Proto,
        port: u16,
    ) -> Outcome {
        self.decide(
            Direction::Egress,
            Subject {
                namespace: src.namespace,
                labels: src.labels,
            },
            dst.peer(),
            dst_ports,
            proto,
            port,
        )
    }

    /// Whether any policy has an `ipBlock` peer (so addresses matter to some verdict).
    pub fn uses_ip_blocks(&self) -> bool {
        self.policies.iter().any(|p| {
            let rules = p.spec.ingress.iter().chain(p.spec.egress.iter()).flatten();
            rules
                .flat_map(|r| r.from.iter().chain(r.to.iter()).flatten())
                .any(|peer| peer.ip_block.is_some())
        })
    }

    /// The policies evaluated, in Calico's order.
    pub fn policies(&self) -> &[NetworkPolicy] {
        &self.policies
    }

    /// The core: three-valued rule matching (a rule may be undecidable when the input
    /// lacks an address or the named ports), allow on the first rule that surely
    /// matches, unknown when none surely matches but one might.
    fn decide(
        &self,
        dir: Direction,
        subject: Subject<'_>,
        peer: Peer<'_>,
        named_ports: Option<&[(String, u16, Proto)]>,
        proto: Proto,
        port: u16,
    ) -> Outcome {
        let selecting = self.policies.iter().filter(|p| {
            p.namespace == subject.namespace
                && p.has_type(dir)
                && p.spec.pod_selector.matches(subject.labels)
        });
        let mut last = None;
        let mut unknown: Option<(Missing, &NetworkPolicy)> = None;
        for p in selecting {
            let rules = match dir {
                Direction::Ingress => p.spec.ingress.as_deref(),
                Direction::Egress => p.spec.egress.as_deref(),
            }
            .unwrap_or_default();
            for (i, rule) in rules.iter().enumerate() {
                let peers = match dir {
                    Direction::Ingress => rule.from.as_deref(),
                    Direction::Egress => rule.to.as_deref(),
                }
                .unwrap_or_default();
                let peer_ok = if peers.is_empty() {
                    Ok(true)
                } else {
                    any(peers
                        .iter()
                        .map(|pp| self.peer_matches(pp, &p.namespace, &peer)))
                };
                let ports = rule.ports.as_deref().unwrap_or_default();
                let port_ok = if ports.is_empty() {
                    Ok(true)
                } else {
                    any(ports
                        .iter()
                        .map(|pp| port_matches(pp, named_ports, proto, port)))
                };
                match both(peer_ok, port_ok) {
                    Ok(true) => {
                        return Outcome::Decided(Verdict {
                            action: Action::Allow,
                            decider: Decider::Policy {
                                namespace: p.namespace.clone(),
                                name: p.name.clone(),
                                rule: i as i64,
                            },
                        });
                    }
                    Ok(false) => {}
                    Err(m) => {
                        unknown.get_or_insert((m, p));
                    }
                }
            }
            last = Some(p);
        }
        if let Some((missing, p)) = unknown {
            return Outcome::Unknown {
                missing,
                policy: (p.namespace.clone(), p.name.clone()),
            };
        }
        match last {
            None => Outcome::Decided(Verdict {
                action: Action::Allow,
                decider: Decider::Profile {
                    namespace: subject.namespace.to_string(),
                },
            }),
            Some(p) => Outcome::Decided(Verdict {
                action: Action::Deny,
                decider: Decider::Policy {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    rule: -1,
                },
            }),
        }
    }

    fn peer_matches(&self, peer: &PolicyPeer, policy_ns: &str, other: &Peer<'_>) -> Tri {
        if let Some(block) = &peer.ip_block {
            let ip = other.ip.ok_or(Missing::PeerAddress)?;
            return Ok(cidr_contains(&block.cidr, ip)
                && !block.except.iter().any(|e| cidr_contains(e, ip)));
        }
        let Some((pod_ns, pod_labels)) = other.pod else {
            // Pod and namespace selectors only ever select pods.
            return Ok(false);
        };
        let ns_ok = match &peer.namespace_selector {
            None => pod_ns == policy_ns,
            Some(sel) => {
                let empty = Labels::new();
                sel.matches(self.namespaces.get(pod_ns).unwrap_or(&empty))
            }
        };
        let pod_ok = match &peer.pod_selector {
            None => peer.namespace_selector.is_some(),
            Some(sel) => sel.matches(pod_labels),
        };
        Ok(ns_ok && pod_ok)
    }
}

/// A pod end of a recorded flow: its namespace and labels (flow logs carry both), and its
/// named container ports when the caller knows them.
#[derive(Debug, Clone, Copy)]
pub struct FlowPod<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Labels.
    pub labels: &'a Labels,
    /// Address, when the record has it (Felix writes `null` for aggregated flows).
    pub ip: Option<IpAddr>,
    /// Named container ports `(name, port, protocol)`; `None` when unknown.
    pub named_ports: Option<&'a [(String, u16, Proto)]>,
}

/// The other end of a recorded flow.
#[derive(Debug, Clone, Copy)]
pub enum FlowEnd<'a> {
    /// A pod of the cluster.
    Pod(FlowPod<'a>),
    /// Anything that is not a pod of the cluster (a network, a host, a network set),
    /// with its address when the record has it.
    External(Option<IpAddr>),
}

impl FlowEnd<'_> {
    fn peer(&self) -> Peer<'_> {
        match self {
            FlowEnd::Pod(p) => Peer {
                pod: Some((p.namespace, p.labels)),
                ip: p.ip,
            },
            FlowEnd::External(ip) => Peer { pod: None, ip: *ip },
        }
    }
}

/// What an input lacked that a verdict depended on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// The other end's address (an `ipBlock` peer had to be tested against it).
    PeerAddress,
    /// The destination pod's named container port of this name.
    NamedPort(String),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::PeerAddress => f.write_str(
                "an ipBlock peer must be tested against the other end's address, which the flow record does not carry (aggregated)",
            ),
            Missing::NamedPort(n) => write!(
                f,
                "a rule names the port {n:?}, and the destination pod's container ports are not known"
            ),
        }
    }
}

/// A verdict, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Decided.
    Decided(Verdict),
    /// The verdict depends on something the input did not say.
    Unknown {
        /// What was missing.
        missing: Missing,
        /// The policy (namespace, name) with the undecidable rule.
        policy: (String, String),
    },
}

impl Outcome {
    /// The action, when decided.
    pub fn action(&self) -> Option<Action> {
        match self {
            Outcome::Decided(v) => Some(v.action),
            Outcome::Unknown { .. } => None,
        }
    }
}

/// The subject of an evaluation: the pod whose policies are evaluated.
#[derive(Clone, Copy)]
struct Subject<'a> {
    namespace: &'a str,
    labels: &'a Labels,
}

/// The other end, as far as it is known.
#[derive(Clone, Copy)]
struct Peer<'a> {
    /// Namespace and labels when it is a pod of the cluster.
    pod: Option<(&'a str, &'a Labels)>,
    ip: Option<IpAddr>,
}

/// Three-valued truth: `Err` = cannot tell, and why.
type Tri = Result<bool, Missing>;

/// True if any is true; otherwise unknown if any is unknown; otherwise false.
fn any(items: impl Iterator<Item = Tri>) -> Tri {
    let mut unknown = None;
    for t in items {
        match t {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(m) => {
                unknown.get_or_insert(m);
            }
        }
    }
    unknown.map_or(Ok(false), Err)
}

/// False if either is false; otherwise unknown if either is unknown; otherwise true.
fn both(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Ok(false), _) | (_, Ok(false)) => Ok(false),
        (Err(m), _) | (_, Err(m)) => Err(m),
        (Ok(true), Ok(true)) => Ok(true),
    }
}

fn port_matches(
    p: &PolicyPort,
    named_ports: Option<&[(String, u16, Proto)]>,
    proto: Proto,
    port: u16,
) -> Tri {
    if Proto::from_k8s(p.protocol.as_deref()) != Some(proto) {
        return Ok(false);
    }
    Ok(match &p.port {
        None => true,
        Some(IntOrString::Int(n)) => {
            let end = p.end_port.unwrap_or(*n);
            (*n..=end).contains(&i64::from(port))
        }
        Some(IntOrString::Str(s)) => match s.parse::<i64>() {
            Ok(n) => n == i64::from(port),
            Err(_) => named_ports
                .ok_or_else(|| Missing::NamedPort(s.clone()))?
                .iter()
                .any(|(name, n, pr)| name == s && *n == port && *pr == proto),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
        NetworkPolicy::from_object(
            &json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}),
        )
        .unwrap()
    }

    fn namespaces() -> BTreeMap<String, Labels> {
        [
            ("payments", labels(&[("team", "pay")])),
            ("shop", labels(&[("team", "shop")])),
            ("ops", labels(&[("team", "ops"), ("monitoring", "true")])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    struct Pods {
        api: Labels,
        db: Labels,
        web: Labels,
        ports: Vec<(String, u16, Proto)>,
    }

    fn pods() -> Pods {
        Pods {
            api: labels(&[("app", "api")]),
            db: labels(&[("app", "db"), ("tier", "data")]),
            web: labels(&[("app", "web")]),
            ports: vec![("postgres".to_string(), 5432, Proto::Tcp)],
        }
    }

    fn pod<'a>(
        ns: &'a str,
        l: &'a Labels,
        ip: &str,
        ports: &'a [(String, u16, Proto)],
    ) -> PodRef<'a> {
        PodRef {
            namespace: ns,
            labels: l,
            ip: ip.parse().unwrap(),
            named_ports: ports,
        }
    }

    fn seeded() -> NetworkPolicy {
        policy(
            "payments",
            "db-allow-api",
            json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                "ports": [{"protocol": "TCP", "port": 5432}]}]}),
        )
    }

    #[test]
    fn unselected_pods_are_allowed_by_the_profile() {
        let p = pods();
        let ev = Evaluator::new(vec![seeded()], namespaces());
        let api = pod("payments", &p.api, "10.0.0.1", &[]);
        let web = pod("shop", &p.web, "10.0.0.3", &[]);
        let v = ev.ingress(api, PeerRef::Pod(web), Proto::Tcp, 8443);
        assert_eq!(v.action, Action::Allow);
        assert_eq!(
            v.felix_policy(0),
            "0|__PROFILE__|__PROFILE__.kns.payments|allow|0"
        );
        // Egress is not isolated by an Ingress-only policy.
        let db = pod("payments", &p.db, "10.0.0.2", &p.ports);
        let v = ev.egress(db, PeerRef::Pod(web), &[], Proto::Tcp, 80);
        assert_eq!(v.action, Action::Allow);
    }

    #[test]
    fn selected_pods_allow_matching_rules_and_deny_the_rest() {
        let p = pods();
        let ev = Evaluator::new(vec![seeded()], namespaces());
        let db = pod("payments", &p.db, "10.0.0.2", &p.ports);
        let api = pod("payments", &p.api, "10.0.0.1", &[]);
        let v = ev.ingress(db, PeerRef::Pod(api), Proto::Tcp, 5432);
        assert_eq!(v.action, Action::Allow);
        assert_eq!(
            v.felix_policy(0),
            "0|default|payments/knp.default.db-allow-api|allow|0"
        );
        // Wrong port, wrong protocol, wrong pod, pod of the same labels in another namespace.
        assert_eq!(
            ev.ingress(db, PeerRef::Pod(api), Proto::Tcp, 5433).action,
            Action::Deny
        );
        assert_eq!(
            ev.ingress(db, PeerRef::Pod(api), Proto::Udp, 5432).action,
            Action::Deny
        );
        let web = pod("shop", &p.web, "10.0.0.3", &[]);
        let v = ev.ingress(db, PeerRef::Pod(web), Proto::Tcp, 5432);
        assert_eq!(
            v.felix_policy(0),
            "0|default|payments/knp.default.db-allow-api|deny|-1"
        );
        let foreign_api = pod("shop", &p.api, "10.0.0.4", &[]);
        assert_eq!(
            ev.ingress(db, PeerRef::Pod(foreign_api), Proto::Tcp, 5432)
                .action,
            Action::Deny
        );
        let outside = PeerRef::External("203.0.113.9".parse().unwrap());
        assert_eq!(
            ev.ingress(db, outside, Proto::Tcp, 5432).action,
            Action::Deny
        );
    }

    #[test]
    fn namespace_selectors_alone_and_combined() {
        let p = pods();
        let only_ns = policy(
            "payments",
            "from-shop",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}]}]}),
        );
        let ev = Evaluator::new(vec![only_ns], namespaces());
        let db = pod("payments", &p.db, "10.0.0.2", &p.ports);
        let web = pod("shop", &p.web, "10.0.0.3", &[]);
        let api = pod("payments", &p.api, "10.0.0.1", &[]);
        assert_eq!(
            ev.ingress(db, PeerRef::Pod(web), Proto::Tcp, 1).action,
            Action::Allow
        );
        assert_eq!(
            ev.ingress(db, PeerRef::Pod(api), Proto::Tcp, 1).action,
            Action::Deny,
            "its own namespace is not labelled team=shop"
        );

        let both = policy(
            "payments",
            "monitoring-web",
            json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["data"]}]},
                   "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "monitoring", "operator": "Exists"}]},
                                          "podSelector": {"matchLabels": {"app": "web"}}}]}]}),
        );
        let ev = Evaluator::new(vec![both], namespaces());
        let ops_web = pod("ops", &p.web, "10.0.0.5", &[]);
        let ops_api = pod("ops", &p.api, "10.0.0.6", &[]);
        assert_eq!(
            ev.ingress(db, PeerRef::Pod(ops_web), Proto::Tcp, 1).action,
            Action::Allow
        );
        assert_eq!(
            ev.ingress(db, PeerRef::Pod(ops_api), Proto::Tcp, 1).action,
            Action::Deny
        );
        assert_eq!(
            ev.ingress(db, PeerRef::Pod(web), Proto::Tcp, 1).action,
            Action::Deny
        );
        // The api pod has no tier label: not selected, so not isolated.
        assert_eq!(
            ev.ingress(api, PeerRef::Pod(web), Proto::Tcp, 1).action,
            Action::Allow
        );
    }

    #[test]
    fn ports_named_ranges_and_protocols() {
        let p = pods();
        let pol = policy(
            "payments",
            "ports",
            json!({"podSelector": {"matchLabels": {"app": "db"}},
                   "ingress": [{"ports": [{"port": "postgres"}, {"protocol": "UDP", "port": 9000, "endPort": 9010}]}]}),
        );
        let ev = Evaluator::new(vec![pol], namespaces());
        let db = pod("payments", &p.db, "10.0.0.2", &p.ports);
        let web = PeerRef::Pod(pod("shop", &p.web, "10.0.0.3", &[]));
        assert_eq!(ev.ingress(db, web, Proto::Tcp, 5432).action, Action::Allow);
        assert_eq!(ev.ingress(db, web, Proto::Udp, 9005).action, Action::Allow);
        let v = ev.ingress(db, web, Proto::Udp, 9005);
        assert_eq!(
            v.decider,
            Decider::Policy {
                namespace: "payments".into(),
                name: "ports".into(),
                rule: 0
            }
        );
        assert_eq!(ev.ingress(db, web, Proto::Udp, 9011).action, Action::Deny);
        assert_eq!(ev.ingress(db, web, Proto::Tcp, 9005).action, Action::Deny);
    }

    #[test]
    fn ip_blocks_with_exceptions_and_egress() {
        let p = pods();
        let pol = policy(
            "shop",
            "egress-out",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}],
                               "ports": [{"port": 443}]}]}),
        );
        let ev = Evaluator::new(vec![pol], namespaces());
        let web = pod("shop", &p.web, "10.0.0.3", &[]);
        let out = |ip: &str| PeerRef::External(ip.parse().unwrap());
        assert_eq!(
            ev.egress(web, out("203.0.113.7"), &[], Proto::Tcp, 443)
                .action,
            Action::Allow
        );
        assert_eq!(
            ev.egress(web, out("203.0.113.200"), &[], Proto::Tcp, 443)
                .action,
            Action::Deny
        );
        assert_eq!(
            ev.egress(web, out("198.51.100.1"), &[], Proto::Tcp, 443)
                .action,
            Action::Deny
        );
        // Ingress to web is not isolated by an Egress-only policy.
        assert_eq!(
            ev.ingress(web, out("198.51.100.1"), Proto::Tcp, 80).action,
            Action::Allow
        );
        assert!(cidr_contains("10.0.0.0/8", "10.1.2.3".parse().unwrap()));
        assert!(cidr_contains("0.0.0.0/0", "1.2.3.4".parse().unwrap()));
        assert!(cidr_contains("fd00::/8", "fd12::1".parse().unwrap()));
        assert!(!cidr_contains("fd00::/8", "10.0.0.1".parse().unwrap()));
        assert!(!cidr_contains("garbage", "10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn empty_rules_and_union_of_policies() {
        let p = pods();
        let deny_all = policy("payments", "a-deny-all", json!({"podSelector": {}}));
        let allow_all = policy(
            "payments",
            "b-allow-all",
            json!({"podSelector": {}, "ingress": [{}]}),
        );
        let db = pod("payments", &p.db, "10.0.0.2", &p.ports);
        let web = PeerRef::Pod(pod("shop", &p.web, "10.0.0.3", &[]));
        let ev = Evaluator::new(vec![deny_all.clone()], namespaces());
        let v = ev.ingress(db, web, Proto::Tcp, 1);
        assert_eq!(
            v.felix_policy(0),
            "0|default|payments/knp.default.a-deny-all|deny|-1"
        );
        let ev = Evaluator::new(vec![allow_all, deny_all], namespaces());
        let v = ev.ingress(db, web, Proto::Tcp, 1);
        assert_eq!(
            v.felix_policy(0),
            "0|default|payments/knp.default.b-allow-all|allow|0"
        );
        // A spec with the wrong shape is ignored.
        assert!(
            NetworkPolicy::from_object(
                &json!({"metadata": {"namespace": "a", "name": "b"}, "spec": {"podSelector": 5}})
            )
            .is_none()
        );
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ev(specs: &[(&str, &str, Value)]) -> Evaluator {
        let policies = specs
            .iter()
            .map(|(ns, name, spec)| {
                NetworkPolicy::from_object(
                    &json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}),
                )
                .unwrap()
            })
            .collect();
        let ns = [("shop".to_string(), labels(&[("team", "shop")]))]
            .into_iter()
            .collect();
        Evaluator::new(policies, ns)
    }

    #[test]
    fn a_missing_address_matters_only_when_an_ip_block_decides() {
        let cart = labels(&[("app", "cart")]);
        let front = labels(&[("app", "frontend")]);
        let dst = FlowPod {
            namespace: "shop",
            labels: &cart,
            ip: None,
            named_ports: None,
        };
        let src = FlowEnd::Pod(FlowPod {
            namespace: "shop",
            labels: &front,
            ip: None,
            named_ports: None,
        });
        // A pod selector decides without addresses.
        let e = ev(&[(
            "shop",
            "cart",
            json!({"podSelector": {"matchLabels": {"app": "cart"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]}),
        )]);
        assert_eq!(
            e.flow_ingress(dst, src, Proto::Tcp, 80).action(),
            Some(Action::Allow)
        );
        assert!(!e.uses_ip_blocks());
        // An ipBlock cannot be decided without the address...
        let e = ev(&[(
            "shop",
            "cart",
            json!({"podSelector": {"matchLabels": {"app": "cart"}},
                   "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
        )]);
        assert!(e.uses_ip_blocks());
        let out = e.flow_ingress(dst, src, Proto::Tcp, 80);
        assert_eq!(
            out,
            Outcome::Unknown {
                missing: Missing::PeerAddress,
                policy: ("shop".into(), "cart".into())
            }
        );
        // ...unless the port already rules it out, or the address is there.
        let e2 = ev(&[(
            "shop",
            "cart",
            json!({"podSelector": {"matchLabels": {"app": "cart"}},
                   "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 443}]}]}),
        )]);
        assert_eq!(
            e2.flow_ingress(dst, src, Proto::Tcp, 80).action(),
            Some(Action::Deny)
        );
        let with_ip = FlowEnd::External(Some("10.1.2.3".parse().unwrap()));
        assert_eq!(
            e.flow_ingress(dst, with_ip, Proto::Tcp, 80).action(),
            Some(Action::Allow)
        );
        let outside = FlowEnd::External(Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            e.flow_ingress(dst, outside, Proto::Tcp, 80).action(),
            Some(Action::Deny)
        );
        // A rule that surely matches wins over an undecidable one.
        let e3 = ev(&[(
            "shop",
            "cart",
            json!({"podSelector": {}, "ingress": [
                {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}]}]}),
        )]);
        assert_eq!(
            e3.flow_ingress(dst, src, Proto::Tcp, 80).action(),
            Some(Action::Allow)
        );
    }

    #[test]
    fn named_ports_are_unknown_without_the_pods_ports() {
        let db = labels(&[("app", "db")]);
        let api = labels(&[("app", "api")]);
        let e = ev(&[(
            "shop",
            "db",
            json!({"podSelector": {"matchLabels": {"app": "db"}},
                   "ingress": [{"ports": [{"port": "postgres"}]}]}),
        )]);
        let src = FlowEnd::Pod(FlowPod {
            namespace: "shop",
            labels: &api,
            ip: None,
            named_ports: None,
        });
        let mut dst = FlowPod {
            namespace: "shop",
            labels: &db,
            ip: None,
            named_ports: None,
        };
        assert!(matches!(
            e.flow_ingress(dst, src, Proto::Tcp, 5432),
            Outcome::Unknown {
                missing: Missing::NamedPort(_),
                ..
            }
        ));
        // UDP never matches a TCP port, named or not.
        assert_eq!(
            e.flow_ingress(dst, src, Proto::Udp, 5432).action(),
            Some(Action::Deny)
        );
        let ports = [("postgres".to_string(), 5432, Proto::Tcp)];
        dst.named_ports = Some(&ports);
        assert_eq!(
            e.flow_ingress(dst, src, Proto::Tcp, 5432).action(),
            Some(Action::Allow)
        );
        assert_eq!(
            e.flow_ingress(dst, src, Proto::Tcp, 5433).action(),
            Some(Action::Deny)
        );
        // Egress of an unselected pod: the profile allows.
        let out = e.flow_egress(dst, src, None, Proto::Tcp, 1);
        assert_eq!(out.action(), Some(Action::Allow));
        assert_eq!(Proto::from_felix("TCP"), Some(Proto::Tcp));
        assert_eq!(Proto::from_felix("icmp"), None);
    }
}
