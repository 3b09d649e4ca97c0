//! Authorization decision cost with a realistic large policy: 200
//! ClusterRoles (3-5 rules each, mixed resourceNames) and 1,000 bindings
//! (ClusterRoleBindings and RoleBindings) over ~500 users and ~50 groups,
//! plus the built-ins. Target: < 5 µs median per decision.
//!
//! Run: `cargo bench -p cattery-rbac --bench authorize`.

use std::sync::LazyLock;

use cattery_rbac::{
    Authorizer, ClusterRole, ClusterRoleBinding, GROUP_CALICO_LMA, GROUP_CATTERY, GROUP_LOGS,
    GROUP_RBAC, Names, Policy, PolicyRule, Request, Requester, RoleBinding, RoleRef, Subject,
    builtin,
};
use divan::{Bencher, black_box};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn main() {
    divan::main();
}

/// Deterministic pseudo-random numbers (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn rule(verbs: &[&str], group: &str, resources: &[&str], names: Vec<String>) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(strings(resources)),
        resource_names: (!names.is_empty()).then_some(names),
        non_resource_urls: None,
    }
}

fn meta(ns: Option<&str>, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ns.map(str::to_owned),
        ..ObjectMeta::default()
    }
}

fn subject(kind: &str, name: String) -> Subject {
    Subject {
        api_group: Some(GROUP_RBAC.to_owned()),
        kind: kind.to_owned(),
        name,
        namespace: None,
    }
}

fn role_ref(name: String) -> RoleRef {
    RoleRef {
        api_group: Some(GROUP_RBAC.to_owned()),
        kind: "ClusterRole".to_owned(),
        name,
    }
}

/// The large policy; group-3 additionally gets `get widgets.example.dev`
/// through the last binding, so the "allowed via group" case scans the
/// user's and the earlier groups' grants first.
fn large_policy() -> Policy {
    let mut rng = Lcg(42);
    let clusters = |rng: &mut Lcg| -> Vec<String> {
        match rng.next(3) {
            0 => Vec::new(),
            _ => (0..1 + rng.next(4))
                .map(|_| format!("cluster-{}", rng.next(100)))
                .collect(),
        }
    };
    let mut p = Policy::default();
    for i in 0..200 {
        let mut rules = Vec::new();
        for _ in 0..3 + rng.next(3) {
            let names = clusters(&mut rng);
            rules.push(match rng.next(6) {
                0 => rule(
                    &["get", "list", "watch"],
                    GROUP_CATTERY,
                    &["managedclusters"],
                    names,
                ),
                1 => rule(
                    &["get", "create"],
                    GROUP_CATTERY,
                    &["managedclusters/proxy"],
                    names,
                ),
                2 => rule(&["get"], GROUP_LOGS, &["flows", "dns"], names),
                3 => rule(
                    &["get", "list"],
                    GROUP_RBAC,
                    &["roles", "rolebindings"],
                    Vec::new(),
                ),
                4 => rule(
                    &["get"],
                    GROUP_CALICO_LMA,
                    &[&format!("cluster-{}", rng.next(100))],
                    strings(&["l7"]),
                ),
                _ => rule(
                    &["create", "delete"],
                    GROUP_CATTERY,
                    &["tokens"],
                    Vec::new(),
                ),
            });
        }
        p.cluster_roles.push(ClusterRole {
            metadata: meta(None, format!("role-{i}")),
            rules: Some(rules),
            aggregation_rule: None,
        });
    }
    p.cluster_roles.push(ClusterRole {
        metadata: meta(None, "widget-reader".to_owned()),
        rules: Some(vec![rule(
            &["get"],
            "widgets.example.dev",
            &["widgets"],
            Vec::new(),
        )]),
        aggregation_rule: None,
    });
    for i in 0..999 {
        let subjects: Vec<Subject> = (0..1 + rng.next(3))
            .map(|_| {
                if rng.next(10) < 4 {
                    subject("Group", format!("group-{}", rng.next(50)))
                } else {
                    subject("User", format!("user-{}", rng.next(500)))
                }
            })
            .collect();
        let role = format!("role-{}", rng.next(200));
        if i % 5 == 0 {
            p.role_bindings.push(RoleBinding {
                metadata: meta(Some(&format!("ns-{}", rng.next(20))), format!("rb-{i}")),
                role_ref: role_ref(role),
                subjects: Some(subjects),
            });
        } else {
            p.cluster_role_bindings.push(ClusterRoleBinding {
                metadata: meta(None, format!("crb-{i}")),
                role_ref: role_ref(role),
                subjects: Some(subjects),
            });
        }
    }
    p.cluster_role_bindings.push(ClusterRoleBinding {
        metadata: meta(None, "widgets".to_owned()),
        role_ref: role_ref("widget-reader".to_owned()),
        subjects: Some(vec![subject("Group", "group-3".to_owned())]),
    });
    p.extend(builtin::policy());
    p
}

static POLICY: LazyLock<Policy> = LazyLock::new(large_policy);
static AZ: LazyLock<Authorizer> = LazyLock::new(|| Authorizer::new(&POLICY));
static GROUPS: LazyLock<Vec<String>> =
    LazyLock::new(|| strings(&["group-11", "group-27", "group-3"]));

fn who() -> Requester<'static> {
    Requester {
        user: "user-7",
        groups: &GROUPS,
    }
}

/// (a) Allowed through a group binding (the requester's last group).
#[divan::bench]
fn allowed_via_group(b: Bencher) {
    let (az, who) = (&*AZ, who());
    let req = Request::Resource {
        verb: "get",
        api_group: "widgets.example.dev",
        resource: "widgets",
        subresource: None,
        name: Some("w1"),
        namespace: None,
    };
    assert!(az.authorize(&who, &req).allowed);
    b.bench_local(|| az.authorize(black_box(&who), black_box(&req)));
}

/// (b) Denied: scans every grant of the user and their groups.
#[divan::bench]
fn denied(b: Bencher) {
    let (az, who) = (&*AZ, who());
    let req = Request::Resource {
        verb: "delete",
        api_group: GROUP_CATTERY,
        resource: "managedclusters",
        subresource: Some("proxy"),
        name: Some("cluster-1"),
        namespace: Some("ns-1"),
    };
    assert!(!az.authorize(&who, &req).allowed);
    b.bench_local(|| az.authorize(black_box(&who), black_box(&req)));
}

/// (c) Log access: denied (worst case, both conventions scanned) and
/// allowed through the built-in admin binding.
#[divan::bench]
fn log_access_denied(b: Bencher) {
    let (az, who) = (&*AZ, who());
    assert!(!az.log_access(&who, "audit", "cluster-5").allowed);
    b.bench_local(|| az.log_access(black_box(&who), black_box("audit"), black_box("cluster-5")));
}

/// (c) Log access allowed.
#[divan::bench]
fn log_access_allowed(b: Bencher) {
    let az = &*AZ;
    let groups = strings(&["group-11", builtin::ADMINS_GROUP]);
    let who = Requester {
        user: "user-7",
        groups: &groups,
    };
    assert!(az.log_access(&who, "flows", "cluster-5").allowed);
    b.bench_local(|| az.log_access(black_box(&who), black_box("flows"), black_box("cluster-5")));
}

/// (d) Names of clusters the user may get: `All` (stops at the first
/// unrestricted rule) and a restricted set (scans every grant and collects
/// names) for the proxy subresource.
#[divan::bench(args = ["managedclusters", "managedclusters/proxy"])]
fn allowed_names(b: Bencher, resource: &str) {
    let az = &*AZ;
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (resource, None),
    };
    // The first user for whom the answer is what we want (the restricted
    // case without groups: the benchmark groups grant the proxy to all).
    let restricted = sub.is_some();
    let groups: &[String] = if restricted { &[] } else { &GROUPS };
    let users: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
    let user = users
        .iter()
        .find(|u| {
            let who = Requester { user: u, groups };
            match az.allowed_names(&who, "get", GROUP_CATTERY, resource, sub, None) {
                Names::All => !restricted,
                Names::Only(names) => restricted && !names.is_empty(),
            }
        })
        .expect("some user fits");
    let who = Requester { user, groups };
    b.bench_local(|| {
        az.allowed_names(
            black_box(&who),
            "get",
            GROUP_CATTERY,
            black_box(resource),
            black_box(sub),
            None,
        )
    });
}

/// (e) Compiling the whole policy.
#[divan::bench]
fn new(b: Bencher) {
    let p = &*POLICY;
    b.bench_local(|| Authorizer::new(black_box(p)));
}
