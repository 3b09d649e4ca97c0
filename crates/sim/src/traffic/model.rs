//! The traffic model: who talks to whom in the simulated cluster, and the
//! flow, DNS and L7 records Felix would write for it.
//!
//! A fixed set of [`ROUTES`] describes the seeded shop/payments application
//! (frontend → cart → checkout → payments api → payments db, checkout also
//! reaching the db directly — which the seeded NetworkPolicy denies —, calls
//! to external APIs, internet clients reaching the frontend, and every pod
//! resolving names through kube-dns). Each route names its ends by
//! namespace and label, or by Service, and is resolved against the store at
//! generation time: pods, their IPs and labels, Services, their ports and
//! endpoints, namespace labels and NetworkPolicies are read from a
//! [`Snapshot`]. A route whose pods or Service are gone produces nothing;
//! a new pod matching a route's labels joins in; a NetworkPolicy created
//! through the API decides the next connections (see
//! [`super::policy_eval`]).
//!
//! One *interaction* is one simulated connection (and its DNS lookup):
//!
//! - a DNS lookup (sometimes, as clients cache): a `dns.log` record, plus
//!   the UDP flow to the kube-dns pod reported at both ends; a denied lookup
//!   yields no DNS record and no connection;
//! - the connection: a flow reported by the source pod (`reporter: src`,
//!   decided by the source's egress policies) and, if it left the source,
//!   by the destination pod (`reporter: dst`, decided by ingress policies);
//!   external ends report nothing;
//! - for plain-HTTP routes that were allowed, one `l7.log` record
//!   aggregating a few requests.
//!
//! Aggregation follows Felix's defaults unless `--flow-aggregation none`:
//! allowed flows are aggregated by pod prefix (IPs `null`, names `-`,
//! source port `null`), denied flows by source port (IPs and names kept,
//! source port `null`); DNS logs are aggregated by client name prefix
//! (`client_ip` `null`, `client_name` `-`).
//!
//! What it is not: there are no packets, no conntrack, no NAT, no real
//! timings; byte and packet counts, latencies and response codes are drawn
//! from plausible ranges; Felix's per-interval aggregation is approximated
//! by giving each record the generator's tick as its time window.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde_json::Value;

use super::felix_json::{
    DnsLatency, DnsLog, DnsRrSet, DnsServer, FlowLabels, FlowLog, FlowPolicies, L7Log, rfc3339_nano,
};
use super::policy_eval::{
    Action, Evaluator, Labels, NetworkPolicy, PeerRef, PodRef, Proto, Verdict,
};
use super::rng::Rng;
use crate::objects::{Filter, Store};
use crate::resources::find;
use cattery_store::{FieldSelector, LabelSelector};

/// How flow and DNS records are aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Aggregation {
    /// Felix's defaults: allowed flows by pod prefix, denied flows by source
    /// port, DNS by client name prefix.
    #[default]
    Felix,
    /// Nothing aggregated: every IP, name and port is written.
    None,
}

/// One generated record.
#[derive(Debug, Clone)]
pub enum Record {
    /// A `flows.log` line.
    Flow(Box<FlowLog>),
    /// A `dns.log` line.
    Dns(Box<DnsLog>),
    /// An `l7.log` line.
    L7(Box<L7Log>),
}

/// A pod as the model uses it.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Felix's aggregated name (`frontend-6c9f8d7b5-*`).
    pub aggr: String,
    /// Labels.
    pub labels: Labels,
    /// Pod IP.
    pub ip: IpAddr,
    /// Named container ports.
    pub named_ports: Vec<(String, u16, Proto)>,
}

impl Pod {
    fn as_ref(&self) -> PodRef<'_> {
        PodRef {
            namespace: &self.namespace,
            labels: &self.labels,
            ip: self.ip,
            named_ports: &self.named_ports,
        }
    }
}

/// A Service port.
#[derive(Debug, Clone)]
pub struct ServicePort {
    /// Port name (`-` when unnamed, as Felix writes it).
    pub name: String,
    /// Service port.
    pub port: u16,
    /// Protocol.
    pub proto: Proto,
    /// `targetPort`: a number, or a container port name.
    pub target: Result<u16, String>,
}

/// A Service.
#[derive(Debug, Clone)]
pub struct Service {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Cluster IP.
    pub cluster_ip: Option<String>,
    /// Pod selector (empty = no endpoints).
    pub selector: Labels,
    /// Ports.
    pub ports: Vec<ServicePort>,
}

/// The cluster as the generator sees it at one moment.
pub struct Snapshot {
    /// Running pods with an IP.
    pub pods: Vec<Pod>,
    /// Services by (namespace, name).
    pub services: HashMap<(String, String), Service>,
    /// NetworkPolicy evaluation.
    pub evaluator: Evaluator,
}

fn list(store: &Store, group: &str, plural: &str) -> Vec<std::sync::Arc<Value>> {
    let Some(res) = find(group, "v1", plural) else {
        return Vec::new();
    };
    let filter = Filter {
        res,
        namespace: None,
        labels: LabelSelector::default(),
        fields: FieldSelector::default(),
    };
    store
        .list(&filter, None, None)
        .map(|p| p.items)
        .unwrap_or_default()
}

fn str_map(v: Option<&Value>) -> Labels {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn k8s_proto(v: Option<&Value>) -> Proto {
    match v.and_then(Value::as_str) {
        Some("UDP") => Proto::Udp,
        Some("SCTP") => Proto::Sctp,
        _ => Proto::Tcp,
    }
}

/// Felix's aggregated name of a pod: `generateName` + `*` when set, else
/// the Deployment (`<name>-<hash>-<5 chars>`) or StatefulSet (`<name>-<n>`)
/// prefix + `*`, else the name itself.
pub fn aggregated_name(name: &str, generate_name: Option<&str>) -> String {
    if let Some(g) = generate_name.filter(|g| !g.is_empty()) {
        return format!("{g}*");
    }
    let alnum = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    let parts: Vec<&str> = name.rsplitn(3, '-').collect();
    if let [suffix, hash, base] = parts[..]
        && suffix.len() == 5
        && alnum(suffix)
        && (6..=10).contains(&hash.len())
        && alnum(hash)
    {
        return format!("{base}-{hash}-*");
    }
    if let Some((base, ord)) = name.rsplit_once('-')
        && !base.is_empty()
        && !ord.is_empty()
        && ord.bytes().all(|b| b.is_ascii_digit())
    {
        return format!("{base}-*");
    }
    name.to_string()
}

impl Snapshot {
    /// Reads pods, services, namespaces and NetworkPolicies from the store.
    pub fn from_store(store: &Store) -> Snapshot {
        let pods = list(store, "", "pods")
            .iter()
            .filter_map(|p| {
                let meta = p.get("metadata")?;
                let ip: IpAddr = p.pointer("/status/podIP")?.as_str()?.parse().ok()?;
                if p.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
                    return None;
                }
                let name = meta.get("name")?.as_str()?.to_string();
                let named_ports = p
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("ports")?.as_array())
                    .flatten()
                    .filter_map(|port| {
                        Some((
                            port.get("name")?.as_str()?.to_string(),
                            u16::try_from(port.get("containerPort")?.as_u64()?).ok()?,
                            k8s_proto(port.get("protocol")),
                        ))
                    })
                    .collect();
                Some(Pod {
                    namespace: meta.get("namespace")?.as_str()?.to_string(),
                    aggr: aggregated_name(&name, meta.get("generateName").and_then(Value::as_str)),
                    name,
                    labels: str_map(meta.get("labels")),
                    ip,
                    named_ports,
                })
            })
            .collect();
        let services = list(store, "", "services")
            .iter()
            .filter_map(|s| {
                let meta = s.get("metadata")?;
                let spec = s.get("spec")?;
                let ports = spec
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let port = u16::try_from(p.get("port")?.as_u64()?).ok()?;
                        let target = match p.get("targetPort") {
                            Some(Value::String(s)) => Err(s.clone()),
                            Some(v) => Ok(v
                                .as_u64()
                                .and_then(|n| u16::try_from(n).ok())
                                .unwrap_or(port)),
                            None => Ok(port),
                        };
                        Some(ServicePort {
                            name: p
                                .get("name")
                                .and_then(Value::as_str)
                                .filter(|n| !n.is_empty())
                                .unwrap_or("-")
                                .to_string(),
                            port,
                            proto: k8s_proto(p.get("protocol")),
                            target,
                        })
                    })
                    .collect();
                let svc = Service {
                    namespace: meta.get("namespace")?.as_str()?.to_string(),
                    name: meta.get("name")?.as_str()?.to_string(),
                    cluster_ip: spec
                        .get("clusterIP")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    selector: str_map(spec.get("selector")),
                    ports,
                };
                Some(((svc.namespace.clone(), svc.name.clone()), svc))
            })
            .collect();
        let namespaces: BTreeMap<String, Labels> = list(store, "", "namespaces")
            .iter()
            .filter_map(|n| {
                let meta = n.get("metadata")?;
                Some((
                    meta.get("name")?.as_str()?.to_string(),
                    str_map(meta.get("labels")),
                ))
            })
            .collect();
        let policies = list(store, "networking.k8s.io", "networkpolicies")
            .iter()
            .filter_map(|p| NetworkPolicy::from_object(p))
            .collect();
        Snapshot {
            pods,
            services,
            evaluator: Evaluator::new(policies, namespaces),
        }
    }

    /// The cluster IP a `<service>.<namespace>.svc.cluster.local` name resolves to.
    fn cluster_ip_of(&self, qname: &str) -> Option<String> {
        let rest = qname.strip_suffix(".svc.cluster.local")?;
        let (name, namespace) = rest.split_once('.')?;
        self.services
            .get(&(namespace.to_string(), name.to_string()))?
            .cluster_ip
            .clone()
    }

    fn pods_with(&self, namespace: &str, key: &str, value: &str) -> Vec<&Pod> {
        self.pods
            .iter()
            .filter(|p| {
                p.namespace == namespace && p.labels.get(key).map(String::as_str) == Some(value)
            })
            .collect()
    }

    /// The Service, the port entry, and the endpoints with their target port.
    fn resolve(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        proto: Proto,
    ) -> Option<Resolved<'_>> {
        let svc = self
            .services
            .get(&(namespace.to_string(), name.to_string()))?;
        let sp = svc
            .ports
            .iter()
            .find(|p| p.port == port && p.proto == proto)?;
        if svc.selector.is_empty() {
            return None;
        }
        let endpoints = self
            .pods
            .iter()
            .filter(|p| {
                p.namespace == svc.namespace
                    && svc.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .filter_map(|p| {
                let target = match &sp.target {
                    Ok(n) => *n,
                    Err(name) => {
                        p.named_ports
                            .iter()
                            .find(|(n, _, pr)| n == name && *pr == proto)?
                            .1
                    }
                };
                Some((p, target))
            })
            .collect::<Vec<_>>();
        (!endpoints.is_empty()).then_some((svc, sp, endpoints))
    }
}

/// A Service port resolved to endpoints: the Service, the port entry, and
/// each endpoint pod with its target port.
type Resolved<'a> = (&'a Service, &'a ServicePort, Vec<(&'a Pod, u16)>);

/// Who starts a route's connections.
#[derive(Debug)]
pub enum Source {
    /// Pods of a namespace with a label.
    Pods {
        /// Namespace.
        namespace: &'static str,
        /// Label key.
        key: &'static str,
        /// Label value.
        value: &'static str,
    },
    /// Any running pod (except kube-dns itself).
    AnyPod,
    /// Clients on the internet (documentation range 198.51.100.0/24).
    Internet,
}

/// Where a route's connections go.
#[derive(Debug)]
pub enum Dest {
    /// A Service (resolved to one of its endpoints).
    Service {
        /// Namespace.
        namespace: &'static str,
        /// Name.
        name: &'static str,
        /// Service port.
        port: u16,
        /// Protocol.
        proto: Proto,
    },
    /// A host outside the cluster.
    External {
        /// DNS name.
        domain: &'static str,
        /// Addresses it resolves to (documentation range 203.0.113.0/24).
        ips: &'static [&'static str],
        /// Port.
        port: u16,
    },
}

/// What runs over a route's connections.
#[derive(Debug)]
pub enum App {
    /// Plain HTTP: L7 logs are written.
    Http {
        /// `(method, path)` pairs requests are drawn from.
        calls: &'static [(&'static str, &'static str)],
        /// User agents.
        user_agents: &'static [&'static str],
    },
    /// TLS (HTTPS, no L7 visibility).
    Tls,
    /// The PostgreSQL wire protocol.
    Postgres,
    /// Only a DNS lookup, no connection.
    DnsOnly {
        /// The name looked up.
        qname: &'static str,
    },
}

/// One edge of the call graph.
#[derive(Debug)]
pub struct Route {
    /// Relative frequency.
    pub weight: u32,
    /// Client.
    pub source: Source,
    /// Server.
    pub dest: Dest,
    /// Protocol spoken.
    pub app: App,
}

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "curl/8.5.0",
];

/// The simulated application's call graph.
pub static ROUTES: &[Route] = &[
    Route {
        weight: 12,
        source: Source::Internet,
        dest: Dest::Service {
            namespace: "shop",
            name: "frontend",
            port: 80,
            proto: Proto::Tcp,
        },
        app: App::Http {
            calls: &[
                ("GET", "/"),
                ("GET", "/products"),
                ("GET", "/products/42"),
                ("GET", "/static/app.js"),
                ("POST", "/cart"),
            ],
            user_agents: BROWSERS,
        },
    },
    Route {
        weight: 30,
        source: Source::Pods {
            namespace: "shop",
            key: "app",
            value: "frontend",
        },
        dest: Dest::Service {
            namespace: "shop",
            name: "cart",
            port: 80,
            proto: Proto::Tcp,
        },
        app: App::Http {
            calls: &[
                ("GET", "/api/cart"),
                ("POST", "/api/cart/items"),
                ("DELETE", "/api/cart/items/7"),
            ],
            user_agents: &["node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"],
        },
    },
    Route {
        weight: 20,
        source: Source::Pods {
            namespace: "shop",
            key: "app",
            value: "cart",
        },
        dest: Dest::Service {
            namespace: "shop",
            name: "checkout",
            port: 80,
            proto: Proto::Tcp,
        },
        app: App::Http {
            calls: &[("POST", "/api/checkout"), ("GET", "/api/checkout/status")],
            user_agents: &["Go-http-client/1.1"],
        },
    },
    Route {
        weight: 15,
        source: Source::Pods {
            namespace: "shop",
            key: "app",
            value: "checkout",
        },
        dest: Dest::Service {
            namespace: "payments",
            name: "api",
            port: 8443,
            proto: Proto::Tcp,
        },
        app: App::Tls,
    },
    Route {
        weight: 15,
        source: Source::Pods {
            namespace: "payments",
            key: "app",
            value: "api",
        },
        dest: Dest::Service {
            namespace: "payments",
            name: "db",
            port: 5432,
            proto: Proto::Tcp,
        },
        app: App::Postgres,
    },
    // Violates the seeded payments/db-allow-api policy: denied from the start.
    Route {
        weight: 6,
        source: Source::Pods {
            namespace: "shop",
            key: "app",
            value: "checkout",
        },
        dest: Dest::Service {
            namespace: "payments",
            name: "db",
            port: 5432,
            proto: Proto::Tcp,
        },
        app: App::Postgres,
    },
    Route {
        weight: 6,
        source: Source::Pods {
            namespace: "payments",
            key: "app",
            value: "api",
        },
        dest: Dest::External {
            domain: "api.stripe.com",
            ips: &["203.0.113.10", "203.0.113.11"],
            port: 443,
        },
        app: App::Tls,
    },
    Route {
        weight: 4,
        source: Source::Pods {
            namespace: "shop",
            key: "app",
            value: "frontend",
        },
        dest: Dest::External {
            domain: "fonts.googleapis.com",
            ips: &["203.0.113.40"],
            port: 443,
        },
        app: App::Tls,
    },
    Route {
        weight: 4,
        source: Source::AnyPod,
        dest: Dest::Service {
            namespace: "kube-system",
            name: "kube-dns",
            port: 53,
            proto: Proto::Udp,
        },
        app: App::DnsOnly {
            qname: "kubernetes.default.svc.cluster.local",
        },
    },
];

/// The time window records are stamped with.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Start, Unix nanoseconds.
    pub start_ns: i128,
    /// End, Unix nanoseconds.
    pub end_ns: i128,
}

impl Window {
    fn start_s(&self) -> i64 {
        (self.start_ns / 1_000_000_000) as i64
    }
    fn end_s(&self) -> i64 {
        (self.end_ns / 1_000_000_000) as i64
    }
}

/// An end of a connection.
#[derive(Clone, Copy)]
enum End<'a> {
    Pod(&'a Pod),
    Net(IpAddr),
}

impl<'a> End<'a> {
    fn peer(&self) -> PeerRef<'a> {
        match self {
            End::Pod(p) => PeerRef::Pod(p.as_ref()),
            End::Net(ip) => PeerRef::External(*ip),
        }
    }
    fn ip(&self) -> IpAddr {
        match self {
            End::Pod(p) => p.ip,
            End::Net(ip) => *ip,
        }
    }
    fn name(&self) -> &str {
        match self {
            End::Pod(p) => &p.name,
            End::Net(_) => "-",
        }
    }
    fn aggr(&self) -> &str {
        match self {
            End::Pod(p) => &p.aggr,
            End::Net(ip) if is_private(*ip) => "pvt",
            End::Net(_) => "pub",
        }
    }
    fn namespace(&self) -> &str {
        match self {
            End::Pod(p) => &p.namespace,
            End::Net(_) => "-",
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            End::Pod(_) => "wep",
            End::Net(_) => "net",
        }
    }
    fn labels(&self) -> Option<FlowLabels> {
        match self {
            End::Pod(p) => Some(FlowLabels::from_map(&p.labels)),
            End::Net(_) => None,
        }
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_private() || v.is_loopback() || v.is_link_local(),
        IpAddr::V6(v) => (v.segments()[0] & 0xfe00) == 0xfc00 || v.is_loopback(),
    }
}

/// Bytes and packets of one flow record, from the client's point of view.
#[derive(Debug, Clone, Copy, Default)]
struct Volume {
    client_bytes: u64,
    client_packets: u64,
    server_bytes: u64,
    server_packets: u64,
    flows: u64,
}

fn packets(bytes: u64, per_packet: u64, overhead: u64) -> u64 {
    bytes.div_ceil(per_packet) + overhead
}

/// The service a connection was addressed to, if any.
struct Svc<'a> {
    svc: &'a Service,
    port: &'a ServicePort,
}

/// Everything that describes one connection.
struct Conn<'a> {
    src: End<'a>,
    dst: End<'a>,
    svc: Option<Svc<'a>>,
    domains: Option<Vec<String>>,
    proto: Proto,
    sport: u16,
    dport: u16,
}

/// Generates interactions from a [`Snapshot`].
pub struct Model {
    /// Aggregation of flow and DNS records.
    pub aggregation: Aggregation,
}

impl Model {
    /// One interaction: the records Felix would write for it, in order
    /// (possibly none, when the chosen route cannot be resolved now).
    pub fn interaction(&self, snap: &Snapshot, rng: &mut Rng, w: Window) -> Vec<Record> {
        let weights: Vec<u32> = ROUTES.iter().map(|r| r.weight).collect();
        let Some(route) = rng.weighted(&weights).map(|i| &ROUTES[i]) else {
            return Vec::new();
        };
        let src = match &route.source {
            Source::Internet => End::Net(IpAddr::from([198, 51, 100, rng.range(1, 254) as u8])),
            Source::Pods {
                namespace,
                key,
                value,
            } => match rng.pick(&snap.pods_with(namespace, key, value)) {
                Some(p) => End::Pod(p),
                None => return Vec::new(),
            },
            Source::AnyPod => {
                let pods: Vec<&Pod> = snap
                    .pods
                    .iter()
                    .filter(|p| p.labels.get("k8s-app").map(String::as_str) != Some("kube-dns"))
                    .collect();
                match rng.pick(&pods) {
                    Some(p) => End::Pod(p),
                    None => return Vec::new(),
                }
            }
        };
        let mut out = Vec::new();
        let (conn, qname, answer) = match &route.dest {
            Dest::Service {
                namespace,
                name,
                port,
                proto,
            } => {
                let Some((svc, sp, endpoints)) = snap.resolve(namespace, name, *port, *proto)
                else {
                    return Vec::new();
                };
                let (pod, target) = *rng.pick(&endpoints).expect("resolve returns endpoints");
                let qname = format!("{name}.{namespace}.svc.cluster.local");
                let answer = svc.cluster_ip.clone().unwrap_or_else(|| pod.ip.to_string());
                let conn = Conn {
                    src,
                    dst: End::Pod(pod),
                    svc: Some(Svc { svc, port: sp }),
                    domains: None,
                    proto: *proto,
                    sport: rng.range(32768, 60999) as u16,
                    dport: target,
                };
                (conn, qname, answer)
            }
            Dest::External { domain, ips, port } => {
                let ip: IpAddr = rng
                    .pick(ips)
                    .and_then(|s| s.parse().ok())
                    .expect("route addresses parse");
                let conn = Conn {
                    src,
                    dst: End::Net(ip),
                    svc: None,
                    domains: Some(vec![domain.to_string()]),
                    proto: Proto::Tcp,
                    sport: rng.range(32768, 60999) as u16,
                    dport: *port,
                };
                (conn, domain.to_string(), ip.to_string())
            }
        };
        if let App::DnsOnly { qname } = &route.app {
            // The connection *is* the lookup.
            if let End::Pod(client) = conn.src {
                let answer = snap
                    .cluster_ip_of(qname)
                    .unwrap_or_else(|| "10.96.0.1".into());
                self.lookup(snap, rng, w, client, qname, &answer, &mut out);
            }
            return out;
        }
        // Clients cache answers: look the name up on some connections only.
        if let End::Pod(client) = conn.src
            && rng.chance(0.35)
            && !self.lookup(snap, rng, w, client, &qname, &answer, &mut out)
        {
            return out;
        }
        let volume = match &route.app {
            App::Http { .. } => {
                let reqs = rng.range(1, 12);
                let up = rng.range(350, 1400) * reqs;
                let down = rng.range(600, 24_000) * reqs;
                Volume {
                    client_bytes: up,
                    client_packets: packets(up, 1400, 3),
                    server_bytes: down,
                    server_packets: packets(down, 1400, 2),
                    flows: rng.range(1, 3),
                }
            }
            App::Tls => {
                let up = rng.range(1_500, 8_000);
                let down = rng.range(4_000, 60_000);
                Volume {
                    client_bytes: up,
                    client_packets: packets(up, 1400, 6),
                    server_bytes: down,
                    server_packets: packets(down, 1400, 5),
                    flows: rng.range(1, 2),
                }
            }
            App::Postgres | App::DnsOnly { .. } => {
                let up = rng.range(400, 6_000);
                let down = rng.range(800, 120_000);
                Volume {
                    client_bytes: up,
                    client_packets: packets(up, 1400, 3),
                    server_bytes: down,
                    server_packets: packets(down, 1400, 3),
                    flows: rng.range(1, 4),
                }
            }
        };
        let allowed = self.connection(snap, rng, w, &conn, volume, &mut out);
        if allowed && let App::Http { calls, user_agents } = &route.app {
            out.push(self.l7(rng, w, &conn, calls, user_agents));
        }
        out
    }

    /// A DNS lookup by `client` through kube-dns: the flows and, if it got
    /// through, the DNS record. Returns whether it got through.
    #[allow(clippy::too_many_arguments)]
    fn lookup(
        &self,
        snap: &Snapshot,
        rng: &mut Rng,
        w: Window,
        client: &Pod,
        qname: &str,
        answer: &str,
        out: &mut Vec<Record>,
    ) -> bool {
        let Some((svc, sp, endpoints)) = snap.resolve("kube-system", "kube-dns", 53, Proto::Udp)
        else {
            return false;
        };
        let (server, target) = *rng.pick(&endpoints).expect("resolve returns endpoints");
        let conn = Conn {
            src: End::Pod(client),
            dst: End::Pod(server),
            svc: Some(Svc { svc, port: sp }),
            domains: None,
            proto: Proto::Udp,
            sport: rng.range(32768, 60999) as u16,
            dport: target,
        };
        // With ndots:5, a name outside the cluster is first tried with the
        // search domains: one NXDOMAIN, then the real answer.
        let search_miss = !qname.ends_with(".cluster.local") && rng.chance(0.5);
        let queries = 1 + u64::from(search_miss);
        let req = rng.range(60, 90) * queries;
        let resp = rng.range(110, 260) * queries;
        let volume = Volume {
            client_bytes: req,
            client_packets: queries,
            server_bytes: resp,
            server_packets: queries,
            flows: 1,
        };
        if !self.connection(snap, rng, w, &conn, volume, out) {
            return false;
        }
        let felix = self.aggregation == Aggregation::Felix;
        let mut dns = |q: String, rcode: &str, rrsets: Vec<DnsRrSet>, rng: &mut Rng| {
            let count = rng.range(1, 4);
            let mean = rng.range(150_000, 4_000_000);
            let max = mean + rng.range(0, 2_000_000);
            let end = w.end_ns - i128::from(rng.range(0, 999_999_999));
            let span = u64::try_from((end - w.start_ns) / 2).unwrap_or(0);
            let start = w.start_ns + i128::from(rng.range(0, span));
            out.push(Record::Dns(Box::new(DnsLog {
                start_time: rfc3339_nano(start),
                end_time: rfc3339_nano(end),
                log_type: "log".into(),
                count,
                client_name: if felix {
                    "-".into()
                } else {
                    client.name.clone()
                },
                client_name_aggr: client.aggr.clone(),
                client_namespace: client.namespace.clone(),
                client_ip: (!felix).then(|| client.ip.to_string()),
                client_labels: client.labels.clone(),
                servers: vec![DnsServer {
                    name: server.name.clone(),
                    name_aggr: server.aggr.clone(),
                    namespace: server.namespace.clone(),
                    ip: server.ip.to_string(),
                }],
                qname: q,
                qclass: "IN".into(),
                qtype: "A".into(),
                rcode: rcode.into(),
                rrsets: (!rrsets.is_empty()).then_some(rrsets),
                latency: DnsLatency { count, mean, max },
                latency_count: count,
                latency_mean: mean,
                latency_max: max,
            })));
        };
        if search_miss {
            let miss = format!("{qname}.{}.svc.cluster.local", client.namespace);
            dns(miss, "NXDomain", Vec::new(), rng);
        }
        let rrsets = vec![DnsRrSet {
            name: qname.to_string(),
            class: "IN".into(),
            rtype: "A".into(),
            rdata: vec![answer.to_string()],
        }];
        dns(qname.to_string(), "NoError", rrsets, rng);
        true
    }

    /// The flow records of one connection; returns whether it was allowed end to end.
    fn connection(
        &self,
        snap: &Snapshot,
        rng: &mut Rng,
        w: Window,
        c: &Conn<'_>,
        v: Volume,
        out: &mut Vec<Record>,
    ) -> bool {
        let dst_ports: &[(String, u16, Proto)] = match c.dst {
            End::Pod(p) => &p.named_ports,
            End::Net(_) => &[],
        };
        let egress = match c.src {
            End::Pod(p) => {
                Some(
                    snap.evaluator
                        .egress(p.as_ref(), c.dst.peer(), dst_ports, c.proto, c.dport),
                )
            }
            End::Net(_) => None,
        };
        let left = egress.as_ref().is_none_or(|e| e.action == Action::Allow);
        let ingress = match (c.dst, left) {
            (End::Pod(p), true) => {
                Some(
                    snap.evaluator
                        .ingress(p.as_ref(), c.src.peer(), c.proto, c.dport),
                )
            }
            _ => None,
        };
        let arrived_ok = ingress.as_ref().is_none_or(|i| i.action == Action::Allow);
        let ok = left && arrived_ok;
        // A blocked TCP client retries its SYN; a blocked UDP one sends once.
        let attempts = if c.proto == Proto::Tcp {
            rng.range(2, 4)
        } else {
            1
        };
        let blocked = Volume {
            client_bytes: attempts * 60,
            client_packets: attempts,
            server_bytes: 0,
            server_packets: 0,
            flows: v.flows,
        };
        let seen = if ok { v } else { blocked };
        if let Some(verdict) = egress {
            out.push(self.flow(w, c, &verdict, "src", seen));
        }
        if let Some(verdict) = ingress {
            out.push(self.flow(w, c, &verdict, "dst", seen));
        }
        ok
    }

    fn flow(
        &self,
        w: Window,
        c: &Conn<'_>,
        verdict: &Verdict,
        reporter: &str,
        v: Volume,
    ) -> Record {
        let allowed = verdict.action == Action::Allow;
        // Felix's defaults: allowed flows aggregated by pod prefix, denied by source port.
        let (keep_ips, keep_sport) = match self.aggregation {
            Aggregation::None => (true, true),
            Aggregation::Felix => (!allowed, false),
        };
        let name = |e: &End<'_>| {
            if keep_ips {
                e.name().to_string()
            } else {
                "-".to_string()
            }
        };
        let (bytes_in, packets_in, bytes_out, packets_out) = if reporter == "src" {
            (
                v.server_bytes,
                v.server_packets,
                v.client_bytes,
                v.client_packets,
            )
        } else {
            (
                v.client_bytes,
                v.client_packets,
                v.server_bytes,
                v.server_packets,
            )
        };
        let entry = verdict.felix_policy(0);
        Record::Flow(Box::new(FlowLog {
            start_time: w.start_s(),
            end_time: w.end_s(),
            source_ip: keep_ips.then(|| c.src.ip().to_string()),
            source_name: name(&c.src),
            source_name_aggr: c.src.aggr().to_string(),
            source_namespace: c.src.namespace().to_string(),
            nat_outgoing_ports: None,
            source_port: keep_sport.then_some(c.sport),
            source_type: c.src.kind().to_string(),
            source_labels: c.src.labels(),
            dest_ip: keep_ips.then(|| c.dst.ip().to_string()),
            dest_name: name(&c.dst),
            dest_name_aggr: c.dst.aggr().to_string(),
            dest_namespace: c.dst.namespace().to_string(),
            dest_port: Some(c.dport),
            dest_type: c.dst.kind().to_string(),
            dest_labels: c.dst.labels(),
            dest_service_namespace: c
                .svc
                .as_ref()
                .map_or("-".into(), |s| s.svc.namespace.clone()),
            dest_service_name: c.svc.as_ref().map_or("-".into(), |s| s.svc.name.clone()),
            dest_service_port: c.svc.as_ref().map_or("-".into(), |s| s.port.name.clone()),
            dest_service_port_num: c.svc.as_ref().map(|s| s.port.port),
            dest_domains: c.domains.clone(),
            proto: c.proto.felix_name().to_string(),
            action: verdict.action.as_str().to_string(),
            reporter: reporter.to_string(),
            policies: Some(FlowPolicies {
                enforced_policies: vec![entry.clone()],
                pending_policies: vec![entry],
                transit_policies: Vec::new(),
            }),
            bytes_in,
            bytes_out,
            num_flows: v.flows,
            num_flows_started: v.flows,
            num_flows_completed: v.flows,
            packets_in,
            packets_out,
            transit_bytes_in: 0,
            transit_bytes_out: 0,
            transit_packets_in: 0,
            transit_packets_out: 0,
            http_requests_allowed_in: 0,
            http_requests_denied_in: 0,
            process_name: "-".into(),
            num_process_names: 0,
            process_id: "-".into(),
            num_process_ids: 0,
            process_args: vec!["-".into()],
            num_process_args: 0,
            original_source_ips: None,
            num_original_source_ips: 0,
            tcp_mean_send_congestion_window: 0,
            tcp_min_send_congestion_window: 0,
            tcp_mean_smooth_rtt: 0,
            tcp_max_smooth_rtt: 0,
            tcp_mean_min_rtt: 0,
            tcp_max_min_rtt: 0,
            tcp_mean_mss: 0,
            tcp_min_mss: 0,
            tcp_total_retransmissions: 0,
            tcp_lost_packets: 0,
            tcp_unrecovered_to: 0,
        }))
    }

    fn l7(
        &self,
        rng: &mut Rng,
        w: Window,
        c: &Conn<'_>,
        calls: &[(&str, &str)],
        user_agents: &[&str],
    ) -> Record {
        let (method, path) = *rng.pick(calls).expect("routes have calls");
        let count = rng.range(1, 20);
        let roll = rng.range(0, 99);
        let code = match (roll, method) {
            (0..=2, _) => "404",
            (3..=4, _) => "500",
            (5, _) => "503",
            (_, "POST") => "201",
            (_, "DELETE") => "204",
            _ => "200",
        };
        let mean_ms = rng.range(2, 120);
        let max_ms = mean_ms + rng.range(0, 300);
        let host = match (&c.svc, c.src) {
            (Some(s), End::Pod(p)) if p.namespace == s.svc.namespace => s.svc.name.clone(),
            (Some(s), End::Pod(_)) => format!("{}.{}", s.svc.name, s.svc.namespace),
            _ => "shop.example.com".to_string(),
        };
        let (src_aggr, src_ns, src_type) = (c.src.aggr(), c.src.namespace(), c.src.kind());
        let (svc_name, svc_ns, port_name, port) = match &c.svc {
            Some(s) => (
                s.svc.name.clone(),
                s.svc.namespace.clone(),
                s.port.name.clone(),
                s.port.port,
            ),
            None => ("-".into(), "-".into(), "-".into(), 0),
        };
        Record::L7(Box::new(L7Log {
            start_time: w.start_s(),
            end_time: w.end_s(),
            duration_mean: mean_ms * 1_000_000,
            duration_max: max_ms * 1_000_000,
            latency: rng.range(1, mean_ms) * 1_000_000,
            bytes_in: rng.range(120, 1_400) * count,
            bytes_out: rng.range(300, 24_000) * count,
            count,
            src_name_aggr: src_aggr.to_string(),
            src_namespace: src_ns.to_string(),
            src_type: src_type.to_string(),
            source_port_num: 0,
            dest_name_aggr: c.dst.aggr().to_string(),
            dest_namespace: c.dst.namespace().to_string(),
            dest_type: c.dst.kind().to_string(),
            dest_port_num: c.dport,
            dest_service_name: svc_name,
            dest_service_namespace: svc_ns,
            dest_service_port_name: port_name,
            dest_service_port: port,
            method: method.to_string(),
            user_agent: rng.pick(user_agents).copied().unwrap_or("-").to_string(),
            url: format!("{host}{path}"),
            response_code: code.to_string(),
            route_name: "-".into(),
            log_type: "http/1.1".into(),
            gateway_name: "-".into(),
            protocol: "http".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_names_like_felix() {
        assert_eq!(
            aggregated_name("frontend-6c9f8d7b5-k2x7q", None),
            "frontend-6c9f8d7b5-*"
        );
        assert_eq!(aggregated_name("db-0", None), "db-*");
        assert_eq!(aggregated_name("web-abcde", Some("web-")), "web-*");
        assert_eq!(aggregated_name("standalone", None), "standalone");
        assert_eq!(aggregated_name("my-pod", None), "my-pod");
    }
}
