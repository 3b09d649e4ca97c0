//! Log access under the Cattery (`logs.cattery.dev`) and Calico
//! (`lma.tigera.io`) conventions.

mod common;

use std::collections::BTreeSet;

use cattery_rbac::{
    Authorizer, ClusterRoleBinding, GROUP_CALICO_LMA, GROUP_LOGS, Names, Policy, PolicyRule,
    Requester, RoleBinding,
};
use common::*;

const CLUSTERS: [&str; 3] = ["east", "west", "cluster"];
const TYPES: [&str; 4] = ["flows", "dns", "l7", "audit"];
const USERS: [&str; 7] = ["alice", "bob", "carol", "dave", "erin", "frank", "gina"];

fn logs(resources: &[&str], clusters: &[&str]) -> PolicyRule {
    rule(&["get"], &[GROUP_LOGS], resources, clusters)
}

fn lma(clusters: &[&str], types: &[&str]) -> PolicyRule {
    rule(&["get"], &[GROUP_CALICO_LMA], clusters, types)
}

/// Per user, the rules in one convention; carol is bound through group
/// `netops`, gina through a RoleBinding (which cannot grant logs).
fn policy(roles: Vec<(&str, Vec<PolicyRule>)>) -> Policy {
    let mut p = Policy::default();
    for (u, rules) in roles {
        let name = format!("{u}-logs");
        p.cluster_roles.push(cr(&name, rules));
        match u {
            "carol" => p
                .cluster_role_bindings
                .push(crb(&name, &name, vec![group("netops")])),
            "gina" => p
                .role_bindings
                .push(rb("ns1", &name, "ClusterRole", &name, vec![user(u)])),
            _ => p
                .cluster_role_bindings
                .push(crb(&name, &name, vec![user(u)])),
        }
    }
    p
}

fn cattery_policy() -> Policy {
    policy(vec![
        (
            "alice",
            vec![logs(&["flows", "dns"], &["east"]), logs(&["audit"], &[])],
        ),
        (
            "bob",
            vec![logs(&["flows", "dns", "l7", "audit"], &["west", "cluster"])],
        ),
        (
            "carol",
            vec![
                logs(&["flows", "dns", "l7"], &[]),
                logs(&["audit"], &["cluster"]),
            ],
        ),
        (
            "dave",
            vec![
                logs(&["l7"], &["cluster"]),
                rule(&["list", "watch"], &[GROUP_LOGS], &["flows"], &[]),
            ],
        ),
        ("erin", vec![logs(&["*"], &[])]),
        ("gina", vec![logs(&["*"], &[])]),
    ])
}

fn calico_policy() -> Policy {
    policy(vec![
        (
            "alice",
            vec![lma(&["east"], &["flows", "dns"]), lma(&["*"], &["audit*"])],
        ),
        ("bob", vec![lma(&["west", "cluster"], &[])]),
        (
            "carol",
            vec![
                lma(&["*"], &["flows", "dns", "l7"]),
                lma(&["cluster"], &["audit"]),
            ],
        ),
        (
            "dave",
            vec![
                lma(&["cluster"], &["l7"]),
                // Narrower Calico audit names never grant our audit type.
                lma(&["east", "west"], &["audit_kube", "audit_ee"]),
                rule(&["list", "watch"], &[GROUP_CALICO_LMA], &["*"], &[]),
            ],
        ),
        ("erin", vec![lma(&["*"], &[])]),
        ("gina", vec![lma(&["*"], &[])]),
    ])
}

/// The expected answers, written out independently of either policy:
/// `type@cluster` entries a user may read.
fn expected(user: &str) -> Vec<&'static str> {
    match user {
        "alice" => vec![
            "flows@east",
            "dns@east",
            "audit@east",
            "audit@west",
            "audit@cluster",
        ],
        "bob" => vec![
            "flows@west",
            "dns@west",
            "l7@west",
            "audit@west",
            "flows@cluster",
            "dns@cluster",
            "l7@cluster",
            "audit@cluster",
        ],
        "carol" => vec![
            "flows@east",
            "dns@east",
            "l7@east",
            "flows@west",
            "dns@west",
            "l7@west",
            "flows@cluster",
            "dns@cluster",
            "l7@cluster",
            "audit@cluster",
        ],
        "dave" => vec!["l7@cluster"],
        "erin" => vec![
            "flows@east",
            "dns@east",
            "l7@east",
            "audit@east",
            "flows@west",
            "dns@west",
            "l7@west",
            "audit@west",
            "flows@cluster",
            "dns@cluster",
            "l7@cluster",
            "audit@cluster",
        ],
        "frank" | "gina" => vec![],
        other => panic!("no expectation for {other}"),
    }
}

/// Expected `log_clusters`, also written out: None = All.
fn expected_clusters(user: &str, log_type: &str) -> Option<&'static [&'static str]> {
    match (user, log_type) {
        ("alice", "flows" | "dns") => Some(&["east"]),
        ("alice", "audit") => None,
        ("bob", _) => Some(&["west", "cluster"]),
        ("carol", "audit") => Some(&["cluster"]),
        ("carol", _) => None,
        ("dave", "l7") => Some(&["cluster"]),
        ("erin", _) => None,
        _ => Some(&[]),
    }
}

fn groups_of(user: &str) -> Vec<String> {
    if user == "carol" {
        strings(&["netops"])
    } else {
        vec![]
    }
}

#[test]
fn matrix_both_conventions_agree_with_expectations() {
    let cattery = Authorizer::new(&cattery_policy());
    let calico = Authorizer::new(&calico_policy());
    let mut checked = 0;
    for u in USERS {
        let groups = groups_of(u);
        let who = Requester {
            user: u,
            groups: &groups,
        };
        let want = expected(u);
        for c in CLUSTERS {
            for t in TYPES {
                let expect = want.contains(&format!("{t}@{c}").as_str());
                for (conv, az) in [("cattery", &cattery), ("calico", &calico)] {
                    let d = az.log_access(&who, t, c);
                    assert_eq!(d.allowed, expect, "{conv}: {u} {t}@{c}: {}", d.reason);
                    // log_clusters agrees with log_access.
                    assert_eq!(
                        az.log_clusters(&who, t).contains(c),
                        expect,
                        "{conv}: {u} {t}@{c}"
                    );
                    checked += 1;
                }
            }
        }
        for t in TYPES {
            let want = match expected_clusters(u, t) {
                None => Names::All,
                Some(cs) => Names::Only(cs.iter().map(|s| s.to_string()).collect()),
            };
            assert_eq!(cattery.log_clusters(&who, t), want, "cattery {u} {t}");
            assert_eq!(calico.log_clusters(&who, t), want, "calico {u} {t}");
        }
    }
    assert_eq!(checked, USERS.len() * CLUSTERS.len() * TYPES.len() * 2);
}

#[test]
fn both_conventions_together_union() {
    let mut p = Policy::default();
    p.cluster_roles
        .push(cr("a", vec![logs(&["flows"], &["east"])]));
    p.cluster_roles
        .push(cr("b", vec![lma(&["west"], &["flows"])]));
    p.cluster_role_bindings.push(crb("a", "a", vec![user("u")]));
    p.cluster_role_bindings.push(crb("b", "b", vec![user("u")]));
    let az = Authorizer::new(&p);
    let u = Requester {
        user: "u",
        groups: &[],
    };
    let d = az.log_access(&u, "flows", "east");
    assert_eq!(
        d.reason,
        "RBAC: allowed by ClusterRoleBinding \"a\" of ClusterRole \"a\" to User \"u\""
    );
    let d = az.log_access(&u, "flows", "west");
    assert_eq!(
        d.reason,
        "RBAC: allowed by ClusterRoleBinding \"b\" of ClusterRole \"b\" to User \"u\""
    );
    assert!(!az.log_access(&u, "flows", "cluster").allowed);
    assert!(!az.log_access(&u, "dns", "east").allowed);
    assert_eq!(
        az.log_clusters(&u, "flows"),
        Names::Only(BTreeSet::from(["east".to_string(), "west".to_string()]))
    );
}

#[test]
fn deny_reason_names_both_conventions() {
    let az = Authorizer::new(&Policy::default());
    let groups = strings(&["dev"]);
    let bob = Requester {
        user: "bob",
        groups: &groups,
    };
    assert_eq!(
        az.log_access(&bob, "flows", "east").reason,
        "user \"bob\" (groups [\"dev\"]) may not read flows logs of cluster \"east\": no role bound to \
         them grants verb get on flows (apiGroup logs.cattery.dev) for resourceName \"east\", nor on \
         east (apiGroup lma.tigera.io) for resourceName \"flows\""
    );
    assert!(
        az.log_access(&bob, "audit", "east")
            .reason
            .ends_with("for resourceName \"audit*\" or \"audit\""),
    );
    // Unknown log types have no Calico equivalent: a Calico grant of every
    // type on every cluster does not extend to them.
    let mut p = Policy::default();
    p.cluster_roles.push(cr("c", vec![lma(&["*"], &[])]));
    p.cluster_role_bindings
        .push(crb("c", "c", vec![user("bob")]));
    let az = Authorizer::new(&p);
    let d = az.log_access(&bob, "bgp", "east");
    assert!(!d.allowed);
    assert!(
        d.reason.contains("has no lma.tigera.io equivalent"),
        "{}",
        d.reason
    );
    assert_eq!(az.log_clusters(&bob, "bgp"), Names::Only(BTreeSet::new()));
    assert!(az.log_access(&bob, "flows", "east").allowed);
}

#[test]
fn calico_wildcard_group_rule_counts() {
    // A rule for every apiGroup naming a cluster as resource is a Calico grant.
    let mut p = Policy::default();
    p.cluster_roles
        .push(cr("w", vec![rule(&["get"], &["*"], &["east"], &["dns"])]));
    p.cluster_role_bindings.push(crb("w", "w", vec![user("u")]));
    let az = Authorizer::new(&p);
    let u = Requester {
        user: "u",
        groups: &[],
    };
    assert!(az.log_access(&u, "dns", "east").allowed);
    assert!(!az.log_access(&u, "flows", "east").allowed);
    assert_eq!(
        az.log_clusters(&u, "dns"),
        Names::Only(BTreeSet::from(["east".to_string()]))
    );
}

#[test]
fn role_bindings_never_grant_logs() {
    let p = Policy {
        cluster_roles: vec![cr("all", vec![logs(&["*"], &[]), lma(&["*"], &[])])],
        role_bindings: vec![RoleBinding {
            ..rb("ns1", "x", "ClusterRole", "all", vec![user("u")])
        }],
        cluster_role_bindings: Vec::<ClusterRoleBinding>::new(),
        ..Default::default()
    };
    let az = Authorizer::new(&p);
    let u = Requester {
        user: "u",
        groups: &[],
    };
    assert!(!az.log_access(&u, "flows", "east").allowed);
    assert!(az.log_clusters(&u, "flows").is_empty());
}
