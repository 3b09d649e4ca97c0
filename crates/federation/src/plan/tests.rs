use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use cattery_api::federation::{ClusterState, FederatedPolicy, OWNER_LABEL, ObjectKey, validate};
use serde_json::{Value, json};

use super::*;
use crate::cleanup::{deletion, orphans};
use crate::fleet::{Cluster, Observation, RemotePod};

const NOW: &str = "2026-12-07T10:00:00Z";

fn netpol(name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"ports": [{"port": port}], "from": [{"podSelector": {"matchLabels": {"app": "lb"}}}]}]
        }
    })
}

/// A valid policy `web`: the given resources on clusters labelled env=prod.
fn policy_with(resources: Vec<Value>, extra: Value) -> FederatedPolicy {
    let mut v = json!({
        "apiVersion": "cattery.dev/v1",
        "kind": "FederatedPolicy",
        "metadata": {"name": "web", "uid": "uid-1"},
        "spec": {"placement": {"clusterSelector": {"matchLabels": {"env": "prod"}}}, "resources": resources}
    });
    json_patch::merge(&mut v, &extra);
    let p: FederatedPolicy = cattery_api::wire::from_value(v).unwrap();
    validate(&p).unwrap_or_else(|e| panic!("test policy invalid: {e}"));
    p
}

fn policy() -> FederatedPolicy {
    policy_with(vec![netpol("allow-web", 8080)], json!({}))
}

fn cluster(name: &str, labels: &[(&str, &str)], connected: bool) -> Cluster {
    Cluster {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        connected,
    }
}

/// A fake fleet of clusters that carries out actions the way an apiserver would.
#[derive(Clone, Default)]
struct World {
    objects: BTreeMap<String, BTreeMap<ObjectKey, Value>>,
    errors: BTreeMap<String, String>,
    refuse: BTreeSet<String>,
    uid: u64,
}

impl World {
    fn put(&mut self, cluster: &str, mut obj: Value) {
        self.uid += 1;
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("uid".into(), format!("obj-{}", self.uid).into());
        meta.insert("resourceVersion".into(), self.uid.to_string().into());
        // What an apiserver adds: a status and a defaulted protocol.
        if let Some(rules) = obj
            .pointer_mut("/spec/ingress")
            .and_then(Value::as_array_mut)
        {
            for r in rules {
                for p in r
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    p.as_object_mut()
                        .unwrap()
                        .entry("protocol")
                        .or_insert("TCP".into());
                }
            }
        }
        obj.as_object_mut()
            .unwrap()
            .insert("status".into(), json!({}));
        let key = ObjectKey::of(&obj).unwrap();
        self.objects
            .entry(cluster.into())
            .or_default()
            .insert(key, obj);
    }

    fn observe(&self, fleet: &[Cluster]) -> BTreeMap<String, Observation> {
        fleet
            .iter()
            .filter(|c| c.connected)
            .map(|c| {
                let objects = self
                    .objects
                    .get(&c.name)
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default();
                (
                    c.name.clone(),
                    Observation {
                        objects: Some(objects),
                        apply_error: self.errors.get(&c.name).cloned(),
                    },
                )
            })
            .collect()
    }

    /// Carries out one cluster's actions; the first failure stops and is remembered.
    fn carry_out(&mut self, cluster: &str, actions: &[Action]) {
        self.errors.remove(cluster);
        for a in actions {
            if self.refuse.contains(cluster) {
                self.errors.insert(
                    cluster.into(),
                    "admission webhook \"deny.example.com\" denied the request".into(),
                );
                return;
            }
            let objs = self.objects.entry(cluster.into()).or_default();
            match a {
                Action::Create(v) => {
                    let k = ObjectKey::of(v).unwrap();
                    if objs.contains_key(&k) {
                        self.errors
                            .insert(cluster.into(), format!("{k} already exists"));
                        return;
                    }
                    self.put(cluster, v.clone());
                }
                Action::Apply(v) => {
                    let k = ObjectKey::of(v).unwrap();
                    assert_eq!(
                        objs.get(&k).and_then(|o| owner(o)),
                        Some("web"),
                        "apply of {k} not owned"
                    );
                    self.put(cluster, v.clone());
                }
                Action::Delete { key, uid, .. } => {
                    let live = objs.get(key).expect("delete of an absent object");
                    assert_eq!(
                        live["metadata"]["uid"].as_str(),
                        uid.as_deref(),
                        "uid precondition"
                    );
                    objs.remove(key);
                }
            }
        }
    }
}

/// One reconcile round: plan against the world, carry the actions out, store the status.
fn round(
    p: &mut FederatedPolicy,
    generation: i64,
    fleet: &[Cluster],
    world: &mut World,
    pods: &BTreeMap<String, Vec<RemotePod>>,
) -> Plan {
    let observed = world.observe(fleet);
    let plan = plan(&Input {
        policy: p,
        generation,
        fleet,
        observed: &observed,
        remote_pods: pods,
        now: NOW,
    })
    .unwrap();
    for c in &plan.clusters {
        world.carry_out(&c.status.name, &c.actions);
    }
    p.status = Some(plan.status.clone());
    plan
}

fn state_of(plan: &Plan, name: &str) -> (ClusterState, String) {
    let c = plan
        .status
        .clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{name} not in status"));
    (c.state, c.reason.clone())
}

fn no_pods() -> BTreeMap<String, Vec<RemotePod>> {
    BTreeMap::new()
}

#[test]
fn a_prod_cluster_gets_the_policy_and_becomes_applied() {
    let mut p = policy();
    let fleet = [
        cluster("c1", &[("env", "prod")], true),
        cluster("c2", &[("env", "dev")], true),
    ];
    let mut world = World::default();
    let first = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert_eq!(
        state_of(&first, "c1"),
        (ClusterState::Pending, "Applying".into())
    );
    assert_eq!(first.status.clusters.len(), 1, "c2 is not placed");
    let c1 = &first.clusters[0];
    assert!(matches!(c1.actions.as_slice(), [Action::Create(_)]));
    let obj = &c1.desired[0];
    assert_eq!(obj["metadata"]["labels"][OWNER_LABEL], "web");
    assert_eq!(
        obj["metadata"]["annotations"]["cattery.dev/federated-policy-generation"],
        "1"
    );
    assert_eq!(
        obj["metadata"]["annotations"]["cattery.dev/federated-policy-uid"],
        "uid-1"
    );

    let second = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert_eq!(
        state_of(&second, "c1"),
        (ClusterState::Applied, "Applied".into())
    );
    assert!(
        second.clusters.iter().all(|c| c.actions.is_empty()),
        "defaults added by the apiserver are not drift"
    );
    assert_eq!(second.status.counts.applied, 1);
    assert_eq!(second.status.counts.total, 1);
    assert_eq!(second.status.observed_generation, 1);
    assert_eq!(second.status.clusters[0].observed_generation, 1);
    assert!(world.objects.get("c2").is_none_or(|o| o.is_empty()));
}

/// name, connected, observed objects, apply error, previous status → state, reason,
/// action kinds (`C`reate, `A`pply, `D`elete).
type Case<'a> = (
    &'a str,
    bool,
    Option<Vec<Value>>,
    Option<&'a str>,
    Option<ClusterStatus>,
    ClusterState,
    &'a str,
    &'a str,
);

/// Table: one observed situation of cluster c1 → its state, reason and action kinds.
#[test]
fn states_per_situation() {
    let p = policy();
    let desired = {
        let fleet = [cluster("c1", &[("env", "prod")], true)];
        let observed = BTreeMap::from([(
            "c1".to_string(),
            Observation {
                objects: Some(vec![]),
                apply_error: None,
            },
        )]);
        plan(&Input {
            policy: &p,
            generation: 2,
            fleet: &fleet,
            observed: &observed,
            remote_pods: &no_pods(),
            now: NOW,
        })
        .unwrap()
        .clusters[0]
            .desired[0]
            .clone()
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = desired.clone();
        f(&mut v);
        v
    };
    let applied_prev = ClusterStatus {
        name: "c1".into(),
        state: ClusterState::Applied,
        observed_generation: 2,
        reason: "Applied".into(),
        message: String::new(),
        last_transition_time: "2026-12-01T00:00:00Z".into(),
    };
    let stale = with(&|v| v["metadata"]["name"] = "old".into());
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("absent → create", true, Some(vec![]), None, None, ClusterState::Pending, "Applying", "C"),
        ("matches", true, Some(vec![desired.clone()]), None, None, ClusterState::Applied, "Applied", ""),
        ("changed at this generation → drift",
            true, Some(vec![with(&|v| v["spec"]["ingress"][0]["ports"][0]["port"] = 9.into())]), None, None,
            ClusterState::Drifted, "Drifted", "A"),
        ("rendered differently before (older generation) → update",
            true, Some(vec![with(&|v| { v["metadata"]["annotations"]["cattery.dev/federated-policy-generation"] = "1".into(); v["metadata"]["annotations"]["cattery.dev/federated-policy-hash"] = "0ld".into(); v["spec"]["ingress"][0]["ports"][0]["port"] = 9.into(); })]), None, None,
            ClusterState::Pending, "Applying", "A"),
        ("deleted after it was applied → drift",
            true, Some(vec![]), None, Some(applied_prev.clone()), ClusterState::Drifted, "Drifted", "C"),
        ("unowned object at the name → conflict",
            true, Some(vec![netpol("allow-web", 8080)]), None, None, ClusterState::Failed, "Conflict", ""),
        ("another policy's object → conflict",
            true, Some(vec![with(&|v| v["metadata"]["labels"][OWNER_LABEL] = "other".into())]), None, None,
            ClusterState::Failed, "Conflict", ""),
        ("conflict stops every action on the cluster",
            true, Some(vec![netpol("allow-web", 8080), stale.clone()]), None, None, ClusterState::Failed, "Conflict", ""),
        ("owned object no longer desired → delete",
            true, Some(vec![desired.clone(), stale.clone()]), None, None, ClusterState::Pending, "Applying", "D"),
        ("not connected", false, None, None, Some(applied_prev.clone()), ClusterState::Unreachable, "NotConnected", ""),
        ("not read yet", true, None, None, None, ClusterState::Pending, "Observing", ""),
        ("apply failed → the cluster's message, retried",
            true, Some(vec![]), Some("admission webhook denied"), None, ClusterState::Failed, "ApplyFailed", "C"),
        ("apply error but now in place → applied",
            true, Some(vec![desired.clone()]), Some("old error"), None, ClusterState::Applied, "Applied", ""),
    ];
    let mut failures = Vec::new();
    for (name, connected, objects, err, prev, want_state, want_reason, want_actions) in cases {
        let mut p = p.clone();
        p.status = prev.map(|c| FederatedPolicyStatus {
            observed_generation: 2,
            clusters: vec![c],
            ..Default::default()
        });
        let fleet = [cluster("c1", &[("env", "prod")], connected)];
        let observed = BTreeMap::from([(
            "c1".to_string(),
            Observation {
                objects,
                apply_error: err.map(str::to_string),
            },
        )]);
        let got = plan(&Input {
            policy: &p,
            generation: 2,
            fleet: &fleet,
            observed: &observed,
            remote_pods: &no_pods(),
            now: NOW,
        })
        .unwrap();
        let c = &got.clusters[0];
        let kinds: String = c
            .actions
            .iter()
            .map(|a| match a {
                Action::Create(_) => 'C',
                Action::Apply(_) => 'A',
                Action::Delete { .. } => 'D',
            })
            .collect();
        if c.status.state != want_state || c.status.reason != want_reason || kinds != want_actions {
            failures.push(format!(
                "{name}: got {} {} [{kinds}] {:?}",
                c.status.state, c.status.reason, c.status.message
            ));
        }
        if want_reason == "ApplyFailed" && c.status.message != "admission webhook denied" {
            failures.push(format!("{name}: message {:?}", c.status.message));
        }
        if want_reason == "Conflict" && !c.status.message.contains("NetworkPolicy shop/allow-web") {
            failures.push(format!("{name}: message {:?}", c.status.message));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_deleted_object_is_repaired_and_reported() {
    let mut p = policy();
    let fleet = [cluster("c1", &[("env", "prod")], true)];
    let mut world = World::default();
    round(&mut p, 1, &fleet, &mut world, &no_pods());
    round(&mut p, 1, &fleet, &mut world, &no_pods());
    world.objects.get_mut("c1").unwrap().clear();
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    let (state, _) = state_of(&plan, "c1");
    assert_eq!(state, ClusterState::Drifted);
    assert!(
        plan.status.clusters[0].message.contains("was deleted"),
        "{}",
        plan.status.clusters[0].message
    );
    assert_eq!(plan.status.clusters[0].last_transition_time, NOW);
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert_eq!(state_of(&plan, "c1").0, ClusterState::Applied);
}

#[test]
fn inform_reports_and_never_acts() {
    let mut p = policy_with(
        vec![netpol("allow-web", 8080)],
        json!({"spec": {"mode": "Inform"}}),
    );
    let fleet = [
        cluster("c1", &[("env", "prod")], true),
        cluster("c2", &[("env", "prod")], true),
    ];
    let mut world = World::default();
    world.put("c2", netpol("allow-web", 8080)); // created by someone else, matching
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert!(plan.clusters.iter().all(|c| c.actions.is_empty()));
    assert_eq!(
        state_of(&plan, "c1"),
        (ClusterState::NonCompliant, "NonCompliant".into())
    );
    assert!(plan.status.clusters[0].message.contains("missing"));
    assert_eq!(
        state_of(&plan, "c2"),
        (ClusterState::Applied, "Compliant".into())
    );
    world.put("c2", netpol("allow-web", 9090));
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert_eq!(state_of(&plan, "c2").0, ClusterState::NonCompliant);
    assert!(
        plan.status.clusters[1]
            .message
            .contains("spec.ingress[0].ports[0].port"),
        "{}",
        plan.status.clusters[1].message
    );
    assert_eq!(plan.status.counts.non_compliant, 2);
}

#[test]
fn relabelling_adds_and_removes_a_cluster() {
    let mut p = policy();
    let mut fleet = vec![
        cluster("c1", &[("env", "prod")], true),
        cluster("c2", &[], true),
    ];
    let mut world = World::default();
    world.put("c2", netpol("unrelated", 1)); // never touched
    for _ in 0..2 {
        round(&mut p, 1, &fleet, &mut world, &no_pods());
    }
    assert_eq!(world.objects["c1"].len(), 1);
    fleet[1].labels.insert("env".into(), "prod".into());
    fleet[0].labels.clear();
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert_eq!(
        state_of(&plan, "c1"),
        (ClusterState::Pending, "Removing".into())
    );
    assert!(matches!(
        plan.clusters[0].actions.as_slice(),
        [Action::Delete { .. }]
    ));
    assert!(!plan.clusters[0].placed);
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert_eq!(
        plan.status.clusters.len(),
        1,
        "c1 is gone from status once clean: {:?}",
        plan.status.clusters
    );
    assert_eq!(state_of(&plan, "c2").0, ClusterState::Applied);
    assert!(world.objects["c1"].is_empty());
    assert_eq!(world.objects["c2"].len(), 2, "the unrelated object stays");
}

#[test]
fn a_cluster_that_leaves_while_disconnected_is_cleaned_when_it_returns() {
    let mut p = policy();
    let mut fleet = vec![cluster("c1", &[("env", "prod")], true)];
    let mut world = World::default();
    round(&mut p, 1, &fleet, &mut world, &no_pods());
    round(&mut p, 1, &fleet, &mut world, &no_pods());
    fleet[0].connected = false;
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert_eq!(
        state_of(&plan, "c1"),
        (ClusterState::Unreachable, "NotConnected".into())
    );
    fleet[0].labels.clear();
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert_eq!(
        state_of(&plan, "c1"),
        (ClusterState::Unreachable, "Removing".into())
    );
    fleet[0].connected = true;
    round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert!(world.objects["c1"].is_empty());
}

#[test]
fn an_override_changes_one_cluster_only() {
    let mut p = policy_with(
        vec![netpol("allow-web", 8080)],
        json!({"spec": {"overrides": [{"clusterNames": ["c2"], "resource": {"kind": "NetworkPolicy", "name": "allow-web"},
            "patch": {"spec": {"ingress": [{"ports": [{"port": 8443}]}]}}}]}}),
    );
    let fleet = [
        cluster("c1", &[("env", "prod")], true),
        cluster("c2", &[("env", "prod")], true),
    ];
    let mut world = World::default();
    round(&mut p, 1, &fleet, &mut world, &no_pods());
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    assert_eq!(plan.status.counts.applied, 2);
    let port = |c: &str| {
        world.objects[c].values().next().unwrap()["spec"]["ingress"][0]["ports"][0]["port"].clone()
    };
    assert_eq!(port("c1"), 8080);
    assert_eq!(port("c2"), 8443);
}

#[test]
fn overrides_that_are_invalid_together_fail_that_cluster_only() {
    // Each annotation alone fits; both together exceed the 256 KiB annotation limit, which
    // only the cluster selected by both overrides sees.
    let big = "x".repeat(140 * 1024);
    let p = policy_with(
        vec![netpol("allow-web", 8080)],
        json!({"spec": {"overrides": [
            {"clusterNames": ["c2"], "resource": {"kind": "NetworkPolicy", "name": "allow-web"},
             "patch": {"metadata": {"annotations": {"note/a": big}}}},
            {"clusterSelector": {"matchLabels": {"zone": "a"}}, "resource": {"kind": "NetworkPolicy", "name": "allow-web"},
             "patch": {"metadata": {"annotations": {"note/b": big}}}}]}}),
    );
    let fleet = [
        cluster("c1", &[("env", "prod"), ("zone", "a")], true),
        cluster("c2", &[("env", "prod"), ("zone", "a")], true),
        cluster("c3", &[("env", "prod")], true),
    ];
    let observed: BTreeMap<String, Observation> = fleet
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                Observation {
                    objects: Some(vec![]),
                    apply_error: None,
                },
            )
        })
        .collect();
    let got = plan(&Input {
        policy: &p,
        generation: 1,
        fleet: &fleet,
        observed: &observed,
        remote_pods: &no_pods(),
        now: NOW,
    })
    .unwrap();
    assert_eq!(
        state_of(&got, "c2"),
        (ClusterState::Failed, "InvalidOverride".into())
    );
    let msg = &got.status.clusters[1].message;
    assert!(
        msg.contains("spec.resources[0].metadata.annotations"),
        "{msg}"
    );
    assert!(got.clusters[1].actions.is_empty());
    assert_eq!(state_of(&got, "c1").0, ClusterState::Pending);
    assert_eq!(state_of(&got, "c3").0, ClusterState::Pending);
    assert_eq!(
        got.clusters[0].desired[0]["metadata"]["annotations"]["note/b"]
            .as_str()
            .map(str::len),
        Some(big.len())
    );
    assert!(
        got.clusters[2].desired[0]["metadata"]["annotations"]
            .get("note/b")
            .is_none()
    );
}

#[test]
fn rollout_goes_batch_by_batch_and_stops_on_failure() {
    let mut p = policy_with(
        vec![netpol("allow-web", 8080)],
        json!({"spec": {"rollout": {"batchSize": 2}}}),
    );
    let fleet: Vec<Cluster> = (1..=5)
        .map(|i| cluster(&format!("c{i}"), &[("env", "prod")], true))
        .collect();
    let mut world = World::default();
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    let with_actions: Vec<&str> = plan
        .clusters
        .iter()
        .filter(|c| !c.actions.is_empty())
        .map(|c| c.status.name.as_str())
        .collect();
    assert_eq!(with_actions, ["c1", "c2"]);
    assert_eq!(
        state_of(&plan, "c3"),
        (ClusterState::Pending, "RolloutWaiting".into())
    );
    assert_eq!(plan.clusters[4].batch, Some(2));
    let plan = round(&mut p, 1, &fleet, &mut world, &no_pods());
    let with_actions: Vec<&str> = plan
        .clusters
        .iter()
        .filter(|c| !c.actions.is_empty())
        .map(|c| c.status.name.as_str())
        .collect();
    assert_eq!(with_actions, ["c3", "c4"]);
    for _ in 0..3 {
        round(&mut p, 1, &fleet, &mut world, &no_pods());
    }
    assert_eq!(p.status.as_ref().unwrap().counts.applied, 5);

    // Generation 2: c2 refuses; batch 1 fails; nothing after it changes.
    p.spec.resources[0] = netpol("allow-web", 9090);
    world.refuse.insert("c2".into());
    for _ in 0..3 {
        round(&mut p, 2, &fleet, &mut world, &no_pods());
    }
    let plan = round(&mut p, 2, &fleet, &mut world, &no_pods());
    assert_eq!(state_of(&plan, "c1").0, ClusterState::Applied);
    assert_eq!(
        state_of(&plan, "c2"),
        (ClusterState::Failed, "ApplyFailed".into())
    );
    assert!(
        plan.status.clusters[1]
            .message
            .contains("denied the request")
    );
    assert_eq!(
        state_of(&plan, "c3"),
        (ClusterState::Pending, "RolloutHalted".into())
    );
    assert!(plan.clusters[2..].iter().all(|c| c.actions.is_empty()));
    assert_eq!(
        world.objects["c5"].values().next().unwrap()["metadata"]["annotations"]["cattery.dev/federated-policy-generation"],
        "1"
    );

    // With maxUnavailable 1 the failure is tolerated and the rest proceed.
    p.spec.rollout = Some(cattery_api::federation::Rollout {
        batch_size: 2,
        max_unavailable: 1,
    });
    for _ in 0..4 {
        round(&mut p, 2, &fleet, &mut world, &no_pods());
    }
    let s = p.status.as_ref().unwrap();
    assert_eq!(
        (s.counts.applied, s.counts.failed),
        (4, 1),
        "{:?}",
        s.clusters
    );
}

fn pod(ns: &str, app: &str, ips: &[&str]) -> RemotePod {
    RemotePod {
        namespace: ns.into(),
        namespace_labels: BTreeMap::from([("kubernetes.io/metadata.name".into(), ns.into())]),
        labels: BTreeMap::from([("app".into(), app.into())]),
        ips: ips.iter().map(|s| s.parse::<IpAddr>().unwrap()).collect(),
    }
}

/// A rendered object without what the hub adds, so template validation applies to it.
fn as_template(obj: &Value) -> Value {
    let mut v = unstamped(obj);
    if let Some(l) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove("cattery.dev/remote-peer");
    }
    v
}

fn remote_peers() -> Value {
    json!([{"clusterSelector": {"matchLabels": {"region": "eu"}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
            "podSelector": {"matchLabels": {"app": "cart"}}}])
}

#[test]
fn remote_peers_become_host_ip_blocks() {
    let mut np = netpol("allow-cart", 8080);
    np["spec"]["ingress"][0]["cattery.dev/remotePeers"] = remote_peers();
    np["spec"]["egress"] = json!([{"cattery.dev/remotePeers": remote_peers()}]);
    let p = policy_with(vec![np], json!({}));
    let fleet = [
        cluster("c1", &[("env", "prod"), ("region", "eu")], true),
        cluster("c2", &[("region", "eu")], false),
        cluster("c3", &[("region", "us")], true),
    ];
    let pods = BTreeMap::from([
        ("c1".to_string(), vec![pod("shop", "cart", &["10.1.0.9"])]), // the target itself: not a remote peer
        (
            "c2".to_string(),
            vec![
                pod("shop", "cart", &["10.2.0.7", "fd00::7"]),
                pod("shop", "web", &["10.2.0.8"]),
                pod("other", "cart", &["10.2.0.9"]),
                pod("shop", "cart", &["10.2.0.5"]),
            ],
        ),
        ("c3".to_string(), vec![pod("shop", "cart", &["10.3.0.1"])]), // not eu
    ]);
    let observed = BTreeMap::from([(
        "c1".to_string(),
        Observation {
            objects: Some(vec![]),
            apply_error: None,
        },
    )]);
    let got = plan(&Input {
        policy: &p,
        generation: 1,
        fleet: &fleet,
        observed: &observed,
        remote_pods: &pods,
        now: NOW,
    })
    .unwrap();
    let obj = &got.clusters[0].desired[0];
    assert_eq!(
        obj["spec"]["ingress"][0]["from"],
        json!([{"podSelector": {"matchLabels": {"app": "lb"}}},
               {"ipBlock": {"cidr": "10.2.0.5/32"}}, {"ipBlock": {"cidr": "10.2.0.7/32"}}, {"ipBlock": {"cidr": "fd00::7/128"}}])
    );
    assert_eq!(obj["spec"]["egress"][0]["to"].as_array().unwrap().len(), 3);
    assert!(obj.to_string().find("remotePeers").is_none(), "{obj}");
    assert_eq!(
        crate::render::remote_peers(&p).len(),
        1,
        "the same peer in two rules is one watch"
    );
    assert_eq!(obj["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    cattery_api::federation::validate_resource(&as_template(obj), "rendered").unwrap();

    // No remote pod: the egress rule (no plain peer) goes, the ingress rule keeps its
    // plain peer, and Egress stays isolated.
    let got = plan(&Input {
        policy: &p,
        generation: 1,
        fleet: &fleet,
        observed: &observed,
        remote_pods: &no_pods(),
        now: NOW,
    })
    .unwrap();
    let obj = &got.clusters[0].desired[0];
    assert_eq!(obj["spec"]["egress"], json!([]));
    assert_eq!(
        obj["spec"]["ingress"][0]["from"],
        json!([{"podSelector": {"matchLabels": {"app": "lb"}}}])
    );
    assert_eq!(obj["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
}

#[test]
fn a_remote_peer_follows_pods_and_a_manual_edit_is_drift() {
    let mut np = netpol("allow-cart", 8080);
    np["spec"]["ingress"][0]["cattery.dev/remotePeers"] = remote_peers();
    let mut p = policy_with(vec![np], json!({}));
    let fleet = [
        cluster("c1", &[("env", "prod")], true),
        cluster("c2", &[("region", "eu")], true),
    ];
    let mut world = World::default();
    let mut pods = BTreeMap::new();
    let from =
        |w: &World| w.objects["c1"].values().next().unwrap()["spec"]["ingress"][0]["from"].clone();
    round(&mut p, 1, &fleet, &mut world, &pods);
    assert_eq!(
        state_of(&round(&mut p, 1, &fleet, &mut world, &pods), "c1").0,
        ClusterState::Applied
    );
    assert_eq!(
        from(&world).as_array().unwrap().len(),
        1,
        "no remote pod yet"
    );

    // A pod starts in c2: an update at the same generation, not drift.
    pods.insert("c2".to_string(), vec![pod("shop", "cart", &["10.2.0.7"])]);
    let plan = round(&mut p, 1, &fleet, &mut world, &pods);
    assert_eq!(
        state_of(&plan, "c1"),
        (ClusterState::Pending, "Applying".into())
    );
    assert_eq!(from(&world)[1], json!({"ipBlock": {"cidr": "10.2.0.7/32"}}));
    assert_eq!(
        state_of(&round(&mut p, 1, &fleet, &mut world, &pods), "c1").0,
        ClusterState::Applied
    );

    // Relabelled away: its address goes.
    pods.get_mut("c2").unwrap()[0]
        .labels
        .insert("app".into(), "other".into());
    round(&mut p, 1, &fleet, &mut world, &pods);
    assert_eq!(from(&world).as_array().unwrap().len(), 1);

    // Someone edits the object in the cluster: drift, repaired.
    let obj = world
        .objects
        .get_mut("c1")
        .unwrap()
        .values_mut()
        .next()
        .unwrap();
    obj["spec"]["ingress"][0]["ports"][0]["port"] = 1.into();
    let plan = round(&mut p, 1, &fleet, &mut world, &pods);
    assert_eq!(
        state_of(&plan, "c1"),
        (ClusterState::Drifted, "Drifted".into())
    );
    assert!(
        plan.status.clusters[0]
            .message
            .contains("spec.ingress[0].ports[0].port"),
        "{}",
        plan.status.clusters[0].message
    );
    assert_eq!(
        state_of(&round(&mut p, 1, &fleet, &mut world, &pods), "c1").0,
        ClusterState::Applied
    );
}

#[test]
fn calico_remote_peers_become_a_global_network_set() {
    let gnp = json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "allow-cart"},
        "spec": {"selector": "app == 'web'", "ingress": [{"action": "Allow", "protocol": "TCP",
            "destination": {"ports": [8080]}, "cattery.dev/remotePeers": remote_peers()}]}});
    let p = policy_with(vec![gnp], json!({}));
    let fleet = [
        cluster("c1", &[("env", "prod")], true),
        cluster("c2", &[("region", "eu")], true),
    ];
    let pods = BTreeMap::from([("c2".to_string(), vec![pod("shop", "cart", &["10.2.0.7"])])]);
    let observed = BTreeMap::from([(
        "c1".to_string(),
        Observation {
            objects: Some(vec![]),
            apply_error: None,
        },
    )]);
    let got = plan(&Input {
        policy: &p,
        generation: 1,
        fleet: &fleet,
        observed: &observed,
        remote_pods: &pods,
        now: NOW,
    })
    .unwrap();
    let c1 = &got.clusters[0];
    assert_eq!(c1.desired.len(), 2);
    let (set, pol) = (&c1.desired[0], &c1.desired[1]);
    assert_eq!(set["kind"], "GlobalNetworkSet", "sets come first");
    assert_eq!(set["spec"]["nets"], json!(["10.2.0.7/32"]));
    assert_eq!(set["metadata"]["labels"][OWNER_LABEL], "web");
    let id = set["metadata"]["labels"]["cattery.dev/remote-peer"]
        .as_str()
        .unwrap();
    assert_eq!(
        pol["spec"]["ingress"][0]["source"],
        json!({"selector": format!("cattery.dev/remote-peer == '{id}'"), "namespaceSelector": "global()"})
    );
    for o in &c1.desired {
        cattery_api::federation::validate_resource(&as_template(o), "rendered")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        matches!(c1.actions.as_slice(), [Action::Create(a), Action::Create(_)] if a["kind"] == "GlobalNetworkSet")
    );
}

#[test]
fn deleting_the_policy_deletes_exactly_its_objects() {
    let mut world = World::default();
    let mut ours = netpol("a", 1);
    ours["metadata"]["labels"] = json!({OWNER_LABEL: "web"});
    let mut other = netpol("b", 1);
    other["metadata"]["labels"] = json!({OWNER_LABEL: "other"});
    let mut set = json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet", "metadata": {"name": "s", "labels": {OWNER_LABEL: "web"}}, "spec": {}});
    world.put("c1", ours);
    world.put("c1", other);
    world.put("c1", netpol("c", 1));
    world.put("c1", std::mem::take(&mut set));
    let objects: Vec<Value> = world.objects["c1"].values().cloned().collect();
    let d = deletion("web", &objects);
    let names: Vec<String> = d.iter().map(|a| a.key().unwrap().name).collect();
    assert_eq!(names, ["a", "s"], "policies first, then sets");
    assert!(matches!(
        &d[0],
        Action::Delete {
            uid: Some(_),
            resource_version: Some(_),
            ..
        }
    ));
    let o = orphans(&BTreeSet::from(["web".to_string()]), &objects);
    assert_eq!(
        o.iter().map(|a| a.key().unwrap().name).collect::<Vec<_>>(),
        ["b"]
    );
    assert!(deletion("nobody", &objects).is_empty());
}

/// Random fleets, labels, connections, foreign objects and policy changes: the planner
/// never creates over, applies to or deletes an object the policy does not own, never
/// changes a foreign object, and converges once the fleet is still.
#[test]
fn random_fleets_never_touch_foreign_objects() {
    let names = ["allow-web", "deny-all", "x", "y"];
    for seed in 0..300u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = rng.usize(1..6);
        let envs = ["prod", "dev", ""];
        let mut fleet: Vec<Cluster> = (0..n)
            .map(|i| {
                let env = envs[rng.usize(..3)];
                let labels: &[(&str, &str)] = if env.is_empty() { &[] } else { &[("env", env)] };
                cluster(&format!("c{i}"), labels, rng.bool())
            })
            .collect();
        let mut world = World::default();
        for c in &fleet {
            for _ in 0..rng.usize(..3) {
                let mut o = netpol(names[rng.usize(..names.len())], 80);
                match rng.u8(..3) {
                    0 => {}
                    1 => o["metadata"]["labels"] = json!({OWNER_LABEL: "other"}),
                    _ => o["metadata"]["labels"] = json!({OWNER_LABEL: "web"}), // stale, ours
                }
                world.put(&c.name, o);
            }
        }
        let pick = |rng: &mut fastrand::Rng| -> Vec<Value> {
            let k = rng.usize(1..3);
            names[..k]
                .iter()
                .map(|n| netpol(n, rng.u16(1..4)))
                .collect()
        };
        let rollout = if rng.bool() {
            json!({"batchSize": rng.u32(1..3), "maxUnavailable": rng.u32(..2)})
        } else {
            Value::Null
        };
        let mode = if rng.u8(..4) == 0 {
            "Inform"
        } else {
            "Enforce"
        };
        let mut p = policy_with(
            pick(&mut rng),
            json!({"spec": {"rollout": rollout, "mode": mode}}),
        );
        let foreign = |w: &World| -> Vec<(String, Value)> {
            w.objects
                .iter()
                .flat_map(|(c, m)| {
                    m.values()
                        .filter(|o| owner(o) != Some("web"))
                        .map(move |o| (c.clone(), o.clone()))
                })
                .collect()
        };
        let before = foreign(&world);
        let all_before = world.objects.clone();
        let mut generation = 1;
        for _ in 0..8 {
            match rng.u8(..4) {
                0 => {
                    let c = rng.usize(..n);
                    fleet[c].connected = !fleet[c].connected;
                }
                1 => {
                    let c = rng.usize(..n);
                    let env = envs[rng.usize(..3)];
                    fleet[c].labels = if env.is_empty() {
                        BTreeMap::new()
                    } else {
                        BTreeMap::from([("env".into(), env.into())])
                    };
                }
                2 => {
                    p.spec.resources = pick(&mut rng);
                    generation += 1;
                }
                _ => {}
            }
            let observed = world.observe(&fleet);
            let plan = plan(&Input {
                policy: &p,
                generation,
                fleet: &fleet,
                observed: &observed,
                remote_pods: &no_pods(),
                now: NOW,
            })
            .unwrap();
            for c in &plan.clusters {
                let live = world
                    .objects
                    .get(&c.status.name)
                    .cloned()
                    .unwrap_or_default();
                for a in &c.actions {
                    let k = a.key().unwrap();
                    match a {
                        Action::Create(_) => {
                            assert!(!live.contains_key(&k), "seed {seed}: create over {k}")
                        }
                        _ => assert_eq!(
                            live.get(&k).and_then(|o| owner(o)),
                            Some("web"),
                            "seed {seed}: {a:?}"
                        ),
                    }
                }
                if !c.actions.is_empty() {
                    assert!(
                        fleet.iter().any(|f| f.name == c.status.name && f.connected),
                        "seed {seed}: action on a disconnected cluster"
                    );
                }
            }
            for c in &plan.clusters {
                world.carry_out(&c.status.name, &c.actions);
            }
            p.status = Some(plan.status);
            assert_eq!(
                foreign(&world),
                before,
                "seed {seed}: a foreign object changed"
            );
            if mode == "Inform" {
                assert_eq!(world.objects, all_before, "seed {seed}: Inform wrote");
            }
        }
        // Still fleet, everyone connected: converges.
        for c in &mut fleet {
            c.connected = true;
        }
        let mut last = None;
        for _ in 0..12 {
            let plan = round(&mut p, generation, &fleet, &mut world, &no_pods());
            let idle = plan.clusters.iter().all(|c| c.actions.is_empty());
            last = Some(plan);
            if idle {
                break;
            }
        }
        let plan = last.unwrap();
        assert!(
            plan.clusters.iter().all(|c| c.actions.is_empty()),
            "seed {seed}: no convergence: {:?}",
            plan.status
        );
        let selection = crate::fleet::Selection::new(&p.spec.placement).unwrap();
        for c in &fleet {
            let s = plan.status.clusters.iter().find(|s| s.name == c.name);
            if !selection.matches(c) {
                if mode == "Enforce" {
                    assert!(s.is_none(), "seed {seed}: {} still listed", c.name);
                    assert!(
                        world
                            .objects
                            .get(&c.name)
                            .is_none_or(|m| m.values().all(|o| owner(o) != Some("web"))),
                        "seed {seed}"
                    );
                }
                continue;
            }
            let s = s.unwrap();
            let ok = match mode {
                "Inform" => matches!(s.state, ClusterState::Applied | ClusterState::NonCompliant),
                _ => {
                    s.state == ClusterState::Applied
                        || s.reason == "Conflict"
                        || s.reason == "RolloutHalted"
                }
            };
            assert!(
                ok,
                "seed {seed}: {} is {} {} {}",
                c.name, s.state, s.reason, s.message
            );
        }
    }
}

/// Every JSON pointer of `v`'s containers and leaves.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        _ => {}
    }
}

/// Random mutations of a policy with every feature: validation never panics, and a policy
/// it accepts renders, for every cluster, objects that are valid templates themselves
/// (or the cluster is `Failed`/`InvalidOverride`): the planner never sends what the
/// validator would refuse.
#[test]
fn accepted_policies_render_valid_objects() {
    let mut np = netpol("allow-cart", 8080);
    np["spec"]["ingress"][0]["cattery.dev/remotePeers"] = remote_peers();
    np["spec"]["egress"] = json!([{"cattery.dev/remotePeers": remote_peers(), "ports": [{"port": 53, "protocol": "UDP"}]}]);
    let gnp = json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "allow-cart"},
        "spec": {"selector": "app == 'web'", "ingress": [{"action": "Allow", "protocol": "TCP",
            "destination": {"ports": [8080]}, "cattery.dev/remotePeers": remote_peers()}]}});
    let base = serde_json::to_value(policy_with(
        vec![np, gnp],
        json!({"spec": {"overrides": [{"clusterSelector": {"matchLabels": {"zone": "a"}},
            "resource": {"kind": "GlobalNetworkPolicy", "name": "allow-cart"},
            "patch": {"spec": {"order": 10}}}]}}),
    ))
    .unwrap();
    let mut all = Vec::new();
    pointers(&base, String::new(), &mut all);
    let values = [
        json!(0),
        json!(-1),
        json!(70000),
        json!(""),
        json!("x y"),
        json!([]),
        json!({}),
        Value::Null,
        json!(true),
        json!("10.0.0.0/33"),
        json!("In"),
        json!("a"),
        json!([{}]),
        json!({"matchLabels": {"a": "b"}}),
        json!("Egress"),
    ];
    let fleet = [
        cluster("c1", &[("env", "prod"), ("zone", "a")], true),
        cluster("c2", &[("env", "prod"), ("region", "eu")], true),
        cluster("c3", &[("region", "eu")], true),
    ];
    let pods = BTreeMap::from([
        (
            "c2".to_string(),
            vec![pod("shop", "cart", &["10.2.0.7", "fd00::2"])],
        ),
        ("c3".to_string(), vec![pod("shop", "cart", &["10.3.0.7"])]),
    ]);
    let observed: BTreeMap<String, Observation> = fleet
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                Observation {
                    objects: Some(vec![]),
                    apply_error: None,
                },
            )
        })
        .collect();
    let mut accepted = 0;
    for seed in 0..3000u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut v = base.clone();
        for _ in 0..rng.usize(1..3) {
            let p = &all[rng.usize(..all.len())];
            if let Some(slot) = v.pointer_mut(p) {
                *slot = values[rng.usize(..values.len())].clone();
            }
        }
        let Ok(p) = cattery_api::federation::validate_value(&v) else {
            continue;
        };
        accepted += 1;
        let got = plan(&Input {
            policy: &p,
            generation: 1,
            fleet: &fleet,
            observed: &observed,
            remote_pods: &pods,
            now: NOW,
        })
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for c in &got.clusters {
            if c.status.reason == "InvalidOverride" {
                continue;
            }
            assert_ne!(
                c.status.reason, "InvalidPolicy",
                "seed {seed}: {}",
                c.status.message
            );
            for o in &c.desired {
                cattery_api::federation::validate_resource(&as_template(o), "rendered")
                    .unwrap_or_else(|e| {
                        panic!(
                            "seed {seed}: {} renders an invalid object: {e}\n{o}",
                            c.status.name
                        )
                    });
            }
        }
    }
    assert!(
        accepted > 100,
        "only {accepted} mutated policies were valid; the test would prove little"
    );
}
