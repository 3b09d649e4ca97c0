//! Table-driven tests from the examples of the Kubernetes documentation's
//! "Network Policies" page (concepts/services-networking/network-policies), each
//! policy as written there, each row a connection and the outcome the page states.

use std::collections::BTreeMap;
use std::net::IpAddr;

use cattery_netpol::{Evaluator, Labels, NetworkPolicy, PeerRef, PodRef, Proto};
use serde_json::{Value, json};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Namespaces of the examples, with the label the API server adds.
fn namespaces() -> BTreeMap<String, Labels> {
    [
        ("default", vec![]),
        ("myproject", vec![("project", "myproject")]),
        ("alice-ns", vec![("user", "alice")]),
        ("other", vec![]),
    ]
    .into_iter()
    .map(|(name, mut l)| {
        l.push(("kubernetes.io/metadata.name", name));
        (name.to_string(), labels(&l))
    })
    .collect()
}

fn policies(docs: &[Value]) -> Vec<NetworkPolicy> {
    docs.iter()
        .map(|d| NetworkPolicy::from_object(d).expect("example parses"))
        .collect()
}

/// One end of a connection: a pod (namespace, labels, ip) or an outside address.
#[derive(Clone)]
enum End {
    Pod(&'static str, Labels, &'static str),
    Ip(&'static str),
}

fn pod(ns: &'static str, l: &[(&str, &str)], ip: &'static str) -> End {
    End::Pod(ns, labels(l), ip)
}

/// Named container ports every example pod has.
fn named_ports() -> Vec<(String, u16, Proto)> {
    vec![("redis".to_string(), 6379, Proto::Tcp)]
}

fn peer<'a>(e: &'a End, ports: &'a [(String, u16, Proto)]) -> PeerRef<'a> {
    match e {
        End::Pod(ns, l, ip) => PeerRef::Pod(PodRef {
            namespace: ns,
            labels: l,
            ip: ip.parse().unwrap(),
            named_ports: ports,
        }),
        End::Ip(ip) => PeerRef::External(ip.parse::<IpAddr>().unwrap()),
    }
}

struct Case {
    what: &'static str,
    src: End,
    dst: End,
    proto: Proto,
    port: u16,
    allowed: bool,
}

fn run(policy_docs: &[Value], cases: &[Case]) {
    let ev = Evaluator::new(policies(policy_docs), namespaces());
    let ports = named_ports();
    for c in cases {
        let verdict = ev.connection(peer(&c.src, &ports), peer(&c.dst, &ports), c.proto, c.port);
        assert_eq!(verdict.allowed(), c.allowed, "{}: {verdict:?}", c.what);
        assert_eq!(verdict.denied_by().is_none(), c.allowed, "{}", c.what);
    }
}

fn np(name: &str, ns: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

const DB: &[(&str, &str)] = &[("role", "db")];

#[test]
fn the_test_network_policy_example() {
    let p = np(
        "test-network-policy",
        "default",
        json!({
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                    {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                    {"podSelector": {"matchLabels": {"role": "frontend"}}}
                ],
                "ports": [{"protocol": "TCP", "port": 6379}]
            }],
            "egress": [{
                "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 5978}]
            }]
        }),
    );
    let db = pod("default", DB, "10.1.0.5");
    let cases = [
        Case {
            what: "frontend in default -> db:6379",
            src: pod("default", &[("role", "frontend")], "10.1.0.6"),
            dst: db.clone(),
            proto: Proto::Tcp,
            port: 6379,
            allowed: true,
        },
        Case {
            what: "frontend -> db on another port",
            src: pod("default", &[("role", "frontend")], "10.1.0.6"),
            dst: db.clone(),
            proto: Proto::Tcp,
            port: 80,
            allowed: false,
        },
        Case {
            what: "frontend -> db:6379 over UDP",
            src: pod("default", &[("role", "frontend")], "10.1.0.6"),
            dst: db.clone(),
            proto: Proto::Udp,
            port: 6379,
            allowed: false,
        },
        Case {
            what: "any pod in a project=myproject namespace",
            src: pod("myproject", &[("app", "x")], "10.1.1.1"),
            dst: db.clone(),
            proto: Proto::Tcp,
            port: 6379,
            allowed: true,
        },
        Case {
            what: "frontend label in another namespace is not selected",
            src: pod("other", &[("role", "frontend")], "10.1.2.1"),
            dst: db.clone(),
            proto: Proto::Tcp,
            port: 6379,
            allowed: false,
        },
        Case {
            what: "address in the ipBlock",
            src: End::Ip("172.17.0.9"),
            dst: db.clone(),
            proto: Proto::Tcp,
            port: 6379,
            allowed: true,
        },
        Case {
            what: "address in the except",
            src: End::Ip("172.17.1.9"),
            dst: db.clone(),
            proto: Proto::Tcp,
            port: 6379,
            allowed: false,
        },
        Case {
            what: "db egress to 10.0.0.0/24:5978",
            src: db.clone(),
            dst: End::Ip("10.0.0.7"),
            proto: Proto::Tcp,
            port: 5978,
            allowed: true,
        },
        Case {
            what: "db egress elsewhere is denied",
            src: db.clone(),
            dst: End::Ip("10.0.1.7"),
            proto: Proto::Tcp,
            port: 5978,
            allowed: false,
        },
        Case {
            what: "a pod the policy does not select is not isolated",
            src: End::Ip("8.8.8.8"),
            dst: pod("default", &[("role", "web")], "10.1.0.9"),
            proto: Proto::Tcp,
            port: 80,
            allowed: true,
        },
        Case {
            what: "frontend -> db needs db's ingress and frontend's egress (not isolated)",
            src: pod("default", &[("role", "frontend")], "10.1.0.6"),
            dst: db.clone(),
            proto: Proto::Tcp,
            port: 6379,
            allowed: true,
        },
        Case {
            what: "db -> frontend: db's egress denies it",
            src: db.clone(),
            dst: pod("default", &[("role", "frontend")], "10.1.0.6"),
            proto: Proto::Tcp,
            port: 5978,
            allowed: false,
        },
    ];
    run(&[p], &cases);
}

#[test]
fn default_policies() {
    let web = || pod("default", &[("app", "web")], "10.1.0.2");
    let client = || pod("default", &[("app", "client")], "10.1.0.3");
    let deny_ingress = np(
        "default-deny-ingress",
        "default",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    run(
        std::slice::from_ref(&deny_ingress),
        &[
            Case {
                what: "default-deny-ingress denies ingress",
                src: client(),
                dst: web(),
                proto: Proto::Tcp,
                port: 80,
                allowed: false,
            },
            Case {
                what: "default-deny-ingress leaves egress to the outside",
                src: web(),
                dst: End::Ip("1.1.1.1"),
                proto: Proto::Tcp,
                port: 443,
                allowed: true,
            },
            Case {
                what: "other namespaces are not isolated",
                src: client(),
                dst: pod("other", &[], "10.1.9.9"),
                proto: Proto::Tcp,
                port: 80,
                allowed: true,
            },
        ],
    );
    let allow_all_ingress = np(
        "allow-all-ingress",
        "default",
        json!({"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}),
    );
    run(
        &[deny_ingress, allow_all_ingress],
        &[Case {
            what: "allow-all-ingress wins over default deny (union)",
            src: client(),
            dst: web(),
            proto: Proto::Tcp,
            port: 80,
            allowed: true,
        }],
    );
    let deny_egress = np(
        "default-deny-egress",
        "default",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    );
    run(
        std::slice::from_ref(&deny_egress),
        &[
            Case {
                what: "default-deny-egress denies egress",
                src: web(),
                dst: End::Ip("1.1.1.1"),
                proto: Proto::Tcp,
                port: 443,
                allowed: false,
            },
            Case {
                what: "between two pods of the namespace too",
                src: client(),
                dst: web(),
                proto: Proto::Tcp,
                port: 80,
                allowed: false,
            },
            Case {
                what: "ingress from outside still allowed",
                src: End::Ip("1.1.1.1"),
                dst: web(),
                proto: Proto::Tcp,
                port: 80,
                allowed: true,
            },
        ],
    );
    let allow_all_egress = np(
        "allow-all-egress",
        "default",
        json!({"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}),
    );
    run(
        &[deny_egress, allow_all_egress],
        &[Case {
            what: "allow-all-egress",
            src: web(),
            dst: End::Ip("1.1.1.1"),
            proto: Proto::Udp,
            port: 53,
            allowed: true,
        }],
    );
    let deny_all = np(
        "default-deny-all",
        "default",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    );
    run(
        &[deny_all],
        &[
            Case {
                what: "default-deny-all: ingress",
                src: End::Ip("1.1.1.1"),
                dst: web(),
                proto: Proto::Tcp,
                port: 80,
                allowed: false,
            },
            Case {
                what: "default-deny-all: egress",
                src: web(),
                dst: End::Ip("1.1.1.1"),
                proto: Proto::Tcp,
                port: 80,
                allowed: false,
            },
        ],
    );
    // policyTypes absent: Ingress, plus Egress because spec.egress is present.
    let implicit = np(
        "implicit",
        "default",
        json!({"podSelector": {}, "egress": []}),
    );
    run(
        &[implicit],
        &[
            Case {
                what: "implicit policyTypes isolate both ways",
                src: web(),
                dst: End::Ip("1.1.1.1"),
                proto: Proto::Tcp,
                port: 80,
                allowed: false,
            },
            Case {
                what: "implicit policyTypes isolate ingress",
                src: End::Ip("1.1.1.1"),
                dst: web(),
                proto: Proto::Tcp,
                port: 80,
                allowed: false,
            },
        ],
    );
}

#[test]
fn port_ranges_with_end_port() {
    let p = np(
        "multi-port-egress",
        "default",
        json!({
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}]
            }]
        }),
    );
    let db = || pod("default", DB, "10.1.0.5");
    let to = |port| Case {
        what: "endPort range",
        src: db(),
        dst: End::Ip("10.0.0.1"),
        proto: Proto::Tcp,
        port,
        allowed: (32000..=32768).contains(&port),
    };
    run(
        &[p],
        &[to(31999), to(32000), to(32500), to(32768), to(32769)],
    );
}

#[test]
fn and_versus_or_of_namespace_and_pod_selectors() {
    // One element: pods labelled role=client IN namespaces labelled user=alice.
    let and = np(
        "and",
        "default",
        json!({
            "podSelector": {"matchLabels": {"role": "db"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"user": "alice"}},
                                   "podSelector": {"matchLabels": {"role": "client"}}}]}]
        }),
    );
    // Two elements: pods labelled role=client in the policy's namespace, OR any pod
    // in namespaces labelled user=alice.
    let or = np(
        "or",
        "default",
        json!({
            "podSelector": {"matchLabels": {"role": "db"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"user": "alice"}}},
                                  {"podSelector": {"matchLabels": {"role": "client"}}}]}]
        }),
    );
    let db = || pod("default", DB, "10.1.0.5");
    let alice_client = || pod("alice-ns", &[("role", "client")], "10.1.3.1");
    let alice_other = || pod("alice-ns", &[("role", "x")], "10.1.3.2");
    let local_client = || pod("default", &[("role", "client")], "10.1.0.7");
    run(
        &[and],
        &[
            Case {
                what: "and: client in alice's namespace",
                src: alice_client(),
                dst: db(),
                proto: Proto::Tcp,
                port: 5432,
                allowed: true,
            },
            Case {
                what: "and: other pod in alice's namespace",
                src: alice_other(),
                dst: db(),
                proto: Proto::Tcp,
                port: 5432,
                allowed: false,
            },
            Case {
                what: "and: client in the policy's namespace",
                src: local_client(),
                dst: db(),
                proto: Proto::Tcp,
                port: 5432,
                allowed: false,
            },
        ],
    );
    run(
        &[or],
        &[
            Case {
                what: "or: client in alice's namespace",
                src: alice_client(),
                dst: db(),
                proto: Proto::Tcp,
                port: 5432,
                allowed: true,
            },
            Case {
                what: "or: other pod in alice's namespace",
                src: alice_other(),
                dst: db(),
                proto: Proto::Tcp,
                port: 5432,
                allowed: true,
            },
            Case {
                what: "or: client in the policy's namespace",
                src: local_client(),
                dst: db(),
                proto: Proto::Tcp,
                port: 5432,
                allowed: true,
            },
            Case {
                what: "or: client elsewhere",
                src: pod("other", &[("role", "client")], "10.1.2.2"),
                dst: db(),
                proto: Proto::Tcp,
                port: 5432,
                allowed: false,
            },
        ],
    );
}

#[test]
fn namespace_by_name_and_named_ports() {
    // Targeting a namespace by its name (the kubernetes.io/metadata.name label), and a
    // named port resolved against the destination pod's container ports.
    let p = np(
        "by-name",
        "default",
        json!({
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["myproject"]}]}}],
                "ports": [{"port": "redis"}]
            }]
        }),
    );
    let db = || pod("default", DB, "10.1.0.5");
    run(
        &[p],
        &[
            Case {
                what: "myproject -> redis (6379)",
                src: pod("myproject", &[], "10.1.1.1"),
                dst: db(),
                proto: Proto::Tcp,
                port: 6379,
                allowed: true,
            },
            Case {
                what: "myproject -> another port",
                src: pod("myproject", &[], "10.1.1.1"),
                dst: db(),
                proto: Proto::Tcp,
                port: 6380,
                allowed: false,
            },
            Case {
                what: "other namespace -> redis",
                src: pod("other", &[], "10.1.2.1"),
                dst: db(),
                proto: Proto::Tcp,
                port: 6379,
                allowed: false,
            },
        ],
    );
}
