use serde_json::{Value, json};

use super::*;
use crate::wire;

/// A valid policy with one object of every kind, an override and remote peers.
fn base() -> Value {
    json!({
        "apiVersion": "cattery.dev/v1",
        "kind": "FederatedPolicy",
        "metadata": {"name": "web", "labels": {"team": "net"}},
        "spec": {
            "placement": {"clusterSelector": {"matchLabels": {"env": "prod"}}, "clusterNames": ["c9"]},
            "mode": "Enforce",
            "rollout": {"batchSize": 2, "maxUnavailable": 1},
            "resources": [
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": {"name": "allow-web", "namespace": "shop"},
                    "spec": {
                        "podSelector": {"matchLabels": {"app": "web"}},
                        "policyTypes": ["Ingress"],
                        "ingress": [{
                            "ports": [{"port": 8080, "protocol": "TCP"}, {"port": "http"}, {"port": 9000, "endPort": 9010}],
                            "from": [
                                {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["lb"]}]}},
                                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}
                            ],
                            "cattery.dev/remotePeers": [{
                                "clusterSelector": {"matchLabels": {"region": "eu"}},
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
                                "podSelector": {"matchLabels": {"app": "cart"}}
                            }]
                        }]
                    }
                },
                {
                    "apiVersion": "projectcalico.org/v3",
                    "kind": "NetworkPolicy",
                    "metadata": {"name": "allow-web", "namespace": "shop"},
                    "spec": {
                        "selector": "app == 'web'",
                        "types": ["Ingress"],
                        "ingress": [{
                            "action": "Allow",
                            "protocol": "TCP",
                            "destination": {"ports": [80, "8000:8080", "http"]},
                            "cattery.dev/remotePeers": [{
                                "clusterNames": ["c2"],
                                "namespaceSelector": {},
                                "podSelector": {}
                            }]
                        }]
                    }
                },
                {
                    "apiVersion": "projectcalico.org/v3",
                    "kind": "GlobalNetworkPolicy",
                    "metadata": {"name": "deny-all"},
                    "spec": {"order": 1000, "selector": "all()", "types": ["Ingress", "Egress"],
                             "egress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}],
                             "ingress": [{"action": "Deny", "protocol": "ICMP", "icmp": {"type": 8}}]}
                },
                {
                    "apiVersion": "projectcalico.org/v3",
                    "kind": "NetworkSet",
                    "metadata": {"name": "partners", "namespace": "shop", "labels": {"role": "partner"}},
                    "spec": {"nets": ["192.0.2.0/24", "2001:db8::1"]}
                },
                {
                    "apiVersion": "projectcalico.org/v3",
                    "kind": "GlobalNetworkSet",
                    "metadata": {"name": "blocked"},
                    "spec": {"nets": ["198.51.100.0/24"]}
                }
            ],
            "overrides": [{
                "clusterNames": ["c1"],
                "resource": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "name": "allow-web"},
                "patch": {"spec": {"ingress": [{"ports": [{"port": 8443}]}]}}
            }]
        }
    })
}

/// Decodes as the hub does (strictly) and validates.
fn check(v: &Value) -> Result<FederatedPolicy, FieldError> {
    validate_value(v)
}

/// Sets the value at a JSON pointer (creating nothing: the parent must exist).
fn set(mut v: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = v.pointer_mut(parent).unwrap_or_else(|| panic!("{parent}"));
    match target {
        Value::Object(m) => {
            m.insert(key.replace("~1", "/"), new);
        }
        Value::Array(a) => {
            let i: usize = key.parse().unwrap();
            if i == a.len() {
                a.push(new);
            } else {
                a[i] = new;
            }
        }
        _ => panic!("{parent} is not a container"),
    }
    v
}

fn remove(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match v.pointer_mut(parent).unwrap() {
        Value::Object(m) => {
            m.remove(&key.replace("~1", "/"));
        }
        Value::Array(a) => {
            a.remove(key.parse().unwrap());
        }
        _ => panic!(),
    }
    v
}

#[test]
fn the_base_policy_is_valid_and_round_trips() {
    let p = check(&base()).unwrap();
    assert_eq!(p.spec.resources.len(), 5);
    assert_eq!(p.spec.mode, super::super::Mode::Enforce);
    let again: FederatedPolicy = wire::from_value(serde_json::to_value(&p).unwrap()).unwrap();
    assert_eq!(again, p);
    // YAML decodes the same.
    let yaml = serde_saphyr::to_string(&base()).unwrap();
    let y: FederatedPolicy = wire::decode(yaml.as_bytes()).unwrap();
    assert_eq!(y, p);
}

#[test]
fn bad_policies_name_the_field() {
    let r = "/spec/resources";
    let np = "/spec/resources/0/spec";
    let cal = "/spec/resources/1/spec";
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("unknown spec field", set(base(), "/spec/placment", json!({})), "spec.placment", "unknown field"),
        ("unknown template field",
            set(base(), &format!("{np}/ingress/0/ports/0/prot"), json!("TCP")),
            "spec.resources[0].spec.ingress[0].ports[0].prot", "unknown field"),
        ("unknown kind", set(base(), &format!("{r}/2/kind"), json!("Deployment")),
            "spec.resources[2].kind", "cannot be placed"),
        ("crd apiVersion", set(base(), &format!("{r}/4/apiVersion"), json!("crd.projectcalico.org/v1")),
            "spec.resources[4].kind", "supported"),
        ("port out of range", set(base(), &format!("{np}/ingress/0/ports/0/port"), json!(70000)),
            "spec.resources[0].spec.ingress[0].ports[0].port", "between 1 and 65535"),
        ("port zero", set(base(), &format!("{np}/ingress/0/ports/0/port"), json!(0)),
            "spec.resources[0].spec.ingress[0].ports[0].port", "between 1 and 65535"),
        ("numeric string port", set(base(), &format!("{np}/ingress/0/ports/1/port"), json!("80")),
            "spec.resources[0].spec.ingress[0].ports[1].port", "port name"),
        ("bad protocol", set(base(), &format!("{np}/ingress/0/ports/0/protocol"), json!("tcp")),
            "spec.resources[0].spec.ingress[0].ports[0].protocol", "supported values"),
        ("endPort below port", set(base(), &format!("{np}/ingress/0/ports/2/endPort"), json!(8000)),
            "spec.resources[0].spec.ingress[0].ports[2].endPort", "greater than or equal"),
        ("endPort with named port", set(base(), &format!("{np}/ingress/0/ports/1/endPort"), json!(90)),
            "spec.resources[0].spec.ingress[0].ports[1].endPort", "name"),
        ("bad cidr", set(base(), &format!("{np}/ingress/0/from/1/ipBlock/cidr"), json!("10.0.0.0/33")),
            "spec.resources[0].spec.ingress[0].from[1].ipBlock.cidr", "not a valid CIDR"),
        ("except outside cidr", set(base(), &format!("{np}/ingress/0/from/1/ipBlock/except/0"), json!("11.0.0.0/16")),
            "spec.resources[0].spec.ingress[0].from[1].ipBlock.except[0]", "strict subset"),
        ("empty peer", set(base(), &format!("{np}/ingress/0/from/0"), json!({})),
            "spec.resources[0].spec.ingress[0].from[0]", "must specify a peer"),
        ("ipBlock and selector", set(base(), &format!("{np}/ingress/0/from/1/podSelector"), json!({})),
            "spec.resources[0].spec.ingress[0].from[1]", "both ipBlock"),
        ("bad operator", set(base(), &format!("{np}/ingress/0/from/0/podSelector/matchExpressions/0/operator"), json!("Equals")),
            "spec.resources[0].spec.ingress[0].from[0].podSelector.matchExpressions[0].operator", "not a valid selector operator"),
        ("In without values", set(base(), &format!("{np}/ingress/0/from/0/podSelector/matchExpressions/0/values"), json!([])),
            "spec.resources[0].spec.ingress[0].from[0].podSelector.matchExpressions[0].values", "must be specified"),
        ("bad label value", set(base(), &format!("{np}/podSelector/matchLabels/app"), json!("-web")),
            "spec.resources[0].spec.podSelector.matchLabels", "value \"-web\""),
        ("bad policy type", set(base(), &format!("{np}/policyTypes/0"), json!("ingress")),
            "spec.resources[0].spec.policyTypes[0]", "supported values"),
        ("missing namespace", remove(base(), &format!("{r}/0/metadata/namespace")),
            "spec.resources[0].metadata.namespace", "namespaced"),
        ("namespace on a global kind", set(base(), &format!("{r}/2/metadata/namespace"), json!("x")),
            "spec.resources[2].metadata.namespace", "cluster-scoped"),
        ("bad name", set(base(), &format!("{r}/0/metadata/name"), json!("Allow_Web")),
            "spec.resources[0].metadata.name", "DNS-1123"),
        ("bad namespace", set(base(), &format!("{r}/0/metadata/namespace"), json!("Shop")),
            "spec.resources[0].metadata.namespace", "Shop"),
        ("server-set metadata", set(base(), &format!("{r}/0/metadata/resourceVersion"), json!("5")),
            "spec.resources[0].metadata.resourceVersion", "unknown field"),
        ("reserved owner label", set(base(), &format!("{r}/3/metadata/labels/cattery.dev~1federated-policy"), json!("x")),
            "spec.resources[3].metadata.labels", "set by the hub"),
        ("duplicate object", set(base(), &format!("{r}/5"), base()["spec"]["resources"][4].clone()),
            "spec.resources[5]", "already spec.resources[4]"),
        ("calico unknown action", set(base(), &format!("{cal}/ingress/0/action"), json!("Accept")),
            "spec.resources[1].spec.ingress[0].action", "unknown variant"),
        ("calico unknown field", set(base(), &format!("{cal}/ingress/0/destination/portz"), json!([1])),
            "spec.resources[1].spec.ingress[0].destination.portz", "unknown field"),
        ("calico port range", set(base(), &format!("{cal}/ingress/0/destination/ports/1"), json!("9000:80")),
            "spec.resources[1].spec.ingress[0].destination.ports[1]", "range"),
        ("calico ports need a protocol", remove(base(), &format!("{cal}/ingress/0/protocol")),
            "spec.resources[1].spec.ingress[0].destination.ports", "protocol"),
        ("calico source beside remote peers", set(base(), &format!("{cal}/ingress/0/source"), json!({"selector": "app == 'x'"})),
            "spec.resources[1].spec.ingress[0].source.selector", "cattery.dev/remotePeers"),
        ("calico namespaced policy has no namespaceSelector", set(base(), &format!("{cal}/namespaceSelector"), json!("all()")),
            "spec.resources[1].spec.namespaceSelector", "GlobalNetworkPolicy"),
        ("calico icmp needs icmp protocol", set(base(), "/spec/resources/2/spec/ingress/0/protocol", json!("TCP")),
            "spec.resources[2].spec.ingress[0].icmp", "ICMP"),
        ("calico bad net", set(base(), "/spec/resources/3/spec/nets/0", json!("192.0.2.0/40")),
            "spec.resources[3].spec.nets[0]", "not a valid CIDR"),
        ("calico bad selector", set(base(), &format!("{cal}/selector"), json!("app = 'web'")),
            "spec.resources[1].spec.selector", "invalid Calico selector"),
        ("calico bad rule selector", set(base(), "/spec/resources/2/spec/egress/0/destination/selector", json!("k8s-app == kube-dns")),
            "spec.resources[2].spec.egress[0].destination.selector", "quoted string"),
        ("calico empty selector", set(base(), &format!("{cal}/selector"), json!(" ")),
            "spec.resources[1].spec.selector", "must not be empty"),
        ("remote peer without clusters", remove(base(), &format!("{cal}/ingress/0/cattery.dev~1remotePeers/0/clusterNames")),
            "spec.resources[1].spec.ingress[0].cattery.dev/remotePeers[0]", "clusterNames"),
        ("remote peer without podSelector", remove(base(), &format!("{np}/ingress/0/cattery.dev~1remotePeers/0/podSelector")),
            "spec.resources[0].spec.ingress[0].cattery.dev/remotePeers[0]", "podSelector"),
        ("remote peer bad selector", set(base(), &format!("{np}/ingress/0/cattery.dev~1remotePeers/0/clusterSelector/matchLabels/region"), json!("eu west")),
            "spec.resources[0].spec.ingress[0].cattery.dev/remotePeers[0].clusterSelector.matchLabels", "eu west"),
        ("remote peers on a set", set(base(), "/spec/resources/4/spec/ingress", json!([{"cattery.dev/remotePeers": []}])),
            "spec.resources[4].spec.ingress[0].cattery.dev/remotePeers", "has no rules"),
        ("no placement", set(base(), "/spec/placement", json!({})),
            "spec.placement", "clusterSelector"),
        ("bad cluster name", set(base(), "/spec/placement/clusterNames/0", json!("C9")),
            "spec.placement.clusterNames[0]", "C9"),
        ("bad cluster selector", set(base(), "/spec/placement/clusterSelector/matchExpressions", json!([{"key": "env", "operator": "Exists", "values": ["x"]}])),
            "spec.placement.clusterSelector.matchExpressions[0].values", "may not be specified"),
        ("bad mode", set(base(), "/spec/mode", json!("Audit")),
            "spec.mode", "unknown variant"),
        ("zero batch", set(base(), "/spec/rollout/batchSize", json!(0)),
            "spec.rollout.batchSize", "at least 1"),
        ("bad policy name", set(base(), "/metadata/name", json!("web.policy")),
            "metadata.name", "web.policy"),
        ("namespace on the policy", set(base(), "/metadata/namespace", json!("default")),
            "metadata.namespace", "cluster-scoped"),
        ("override without clusters", remove(base(), "/spec/overrides/0/clusterNames"),
            "spec.overrides[0]", "clusterSelector"),
        ("override of a missing resource", set(base(), "/spec/overrides/0/resource/name", json!("nope")),
            "spec.overrides[0].resource", "no object"),
        ("ambiguous override", remove(base(), "/spec/overrides/0/resource/apiVersion"),
            "spec.overrides[0].resource", "2 objects"),
        ("override renames", set(base(), "/spec/overrides/0/patch", json!({"metadata": {"name": "other"}})),
            "spec.overrides[0].patch", "may not change"),
        ("override not an object", set(base(), "/spec/overrides/0/patch", json!([1])),
            "spec.overrides[0].patch", "must be an object"),
        ("override makes it invalid", set(base(), "/spec/overrides/0/patch", json!({"spec": {"ingress": [{"ports": [{"port": 0}]}]}})),
            "spec.overrides[0].patch.spec.ingress[0].ports[0].port", "between 1 and 65535"),
        ("override adds an unknown field", set(base(), "/spec/overrides/0/patch", json!({"spec": {"ingres": []}})),
            "spec.overrides[0].patch.spec.ingres", "unknown field"),
    ];
    let mut failures = Vec::new();
    for (name, doc, path, needle) in cases {
        match check(&doc) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) => {
                if e.path != path || !e.message.contains(needle) {
                    failures.push(format!(
                        "{name}: got {e} (path {:?}); want path {path:?} containing {needle:?}",
                        e.path
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_merge_patch_null_removes_and_the_result_is_what_clusters_get() {
    let p = check(&base()).unwrap();
    let o = Override {
        patch: json!({"spec": {"policyTypes": null, "podSelector": {"matchLabels": {"app": "api"}}}}),
        ..p.spec.overrides[0].clone()
    };
    let out = patched(&p.spec.resources[0], &o).unwrap();
    assert!(out["spec"].get("policyTypes").is_none());
    assert_eq!(out["spec"]["podSelector"]["matchLabels"]["app"], "api");
    assert_eq!(
        out["spec"]["ingress"],
        p.spec.resources[0]["spec"]["ingress"]
    );
}

#[test]
fn status_is_a_400_naming_the_field() {
    let e = check(&set(
        base(),
        "/spec/resources/0/spec/ingress/0/ports/0/port",
        json!(0),
    ))
    .unwrap_err();
    let s = e.status();
    assert_eq!(s.code, 400);
    assert_eq!(s.reason, "BadRequest");
    assert!(
        s.message
            .contains("spec.resources[0].spec.ingress[0].ports[0].port"),
        "{}",
        s.message
    );
}

#[test]
fn inform_and_empty_selector_are_fine() {
    let v = set(base(), "/spec/mode", json!("Inform"));
    let v = set(v, "/spec/placement", json!({"clusterSelector": {}}));
    let p = check(&v).unwrap();
    assert_eq!(p.spec.mode, super::super::Mode::Inform);
}

/// The example in design note 15 decodes and validates, so the note cannot drift from
/// the type.
#[test]
fn the_design_note_example_is_valid() {
    let note = include_str!("../../../../../docs/design/0015-federated-policy.md");
    let yaml = note
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a yaml block in note 15");
    let p: FederatedPolicy = wire::decode(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    validate(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.status.map(|s| s.counts.applied), Some(1));
}
