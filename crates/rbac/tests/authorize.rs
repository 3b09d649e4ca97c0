//! Decision semantics of the compiled authorizer.

mod common;

use std::collections::BTreeSet;

use cattery_rbac::{Authorizer, GROUP_CATTERY, Names, Policy, Request, Requester};
use common::*;

fn who<'a>(user: &'a str, groups: &'a [String]) -> Requester<'a> {
    Requester { user, groups }
}

fn allowed(az: &Authorizer, w: &Requester, req: Request) -> bool {
    az.authorize(w, &req).allowed
}

fn mc<'a>(verb: &'a str, name: Option<&'a str>) -> Request<'a> {
    res(verb, GROUP_CATTERY, "managedclusters", None, name, None)
}

#[test]
fn deny_by_default() {
    let az = Authorizer::new(&Policy::default());
    let d = az.authorize(&who("bob", &strings(&["dev"])), &mc("get", Some("east")));
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "user \"bob\" (groups [\"dev\"]) may not get managedclusters \"east\" (apiGroup cattery.dev) \
         cluster-wide: no role bound to them grants it"
    );
    let d = az.authorize(
        &who("bob", &[]),
        &res("list", "", "pods", Some("log"), None, Some("ns1")),
    );
    assert_eq!(
        d.reason,
        "user \"bob\" (groups []) may not list pods/log (core apiGroup \"\") in namespace \"ns1\": \
         no role bound to them grants it"
    );
    let d = az.authorize(
        &who("bob", &[]),
        &Request::NonResource {
            verb: "get",
            path: "/version",
        },
    );
    assert!(!d.allowed);
    assert!(
        d.reason.contains("non-resource URL \"/version\""),
        "{}",
        d.reason
    );
}

#[test]
fn user_binding_and_reason() {
    let p = Policy {
        cluster_roles: vec![cr(
            "reader",
            vec![rule(
                &["get", "list"],
                &[GROUP_CATTERY],
                &["managedclusters"],
                &[],
            )],
        )],
        cluster_role_bindings: vec![crb("bob-reads", "reader", vec![user("bob")])],
        ..Default::default()
    };
    let az = Authorizer::new(&p);
    let bob = who("bob", &[]);
    let d = az.authorize(&bob, &mc("get", Some("east")));
    assert_eq!(
        d,
        cattery_rbac::Decision {
            allowed: true,
            reason: "RBAC: allowed by ClusterRoleBinding \"bob-reads\" of ClusterRole \"reader\" to User \"bob\"".into()
        }
    );
    assert!(allowed(&az, &bob, mc("list", None)));
    assert!(!allowed(&az, &bob, mc("delete", Some("east"))));
    assert!(!allowed(&az, &who("alice", &[]), mc("get", Some("east"))));
    // Another group's resource with the same name.
    assert!(!allowed(
        &az,
        &bob,
        res("get", "other.dev", "managedclusters", None, None, None)
    ));
}

#[test]
fn wildcards() {
    let p = Policy {
        cluster_roles: vec![
            cr(
                "all-verbs",
                vec![rule(&["*"], &[GROUP_CATTERY], &["tokens"], &[])],
            ),
            cr(
                "all-groups",
                vec![rule(&["get"], &["*"], &["widgets"], &[])],
            ),
            cr("all-res", vec![rule(&["list"], &["x.dev"], &["*"], &[])]),
        ],
        cluster_role_bindings: vec![
            crb("a", "all-verbs", vec![user("u")]),
            crb("b", "all-groups", vec![user("u")]),
            crb("c", "all-res", vec![user("u")]),
        ],
        ..Default::default()
    };
    let az = Authorizer::new(&p);
    let u = who("u", &[]);
    assert!(allowed(
        &az,
        &u,
        res(
            "deletecollection",
            GROUP_CATTERY,
            "tokens",
            None,
            None,
            None
        )
    ));
    assert!(!allowed(
        &az,
        &u,
        res("delete", GROUP_CATTERY, "managedclusters", None, None, None)
    ));
    assert!(allowed(
        &az,
        &u,
        res("get", "", "widgets", None, Some("w"), None)
    ));
    assert!(allowed(
        &az,
        &u,
        res("get", "y.dev", "widgets", None, None, Some("ns"))
    ));
    assert!(!allowed(
        &az,
        &u,
        res("list", "y.dev", "widgets", None, None, None)
    ));
    assert!(allowed(
        &az,
        &u,
        res("list", "x.dev", "anything", Some("sub"), None, None)
    ));
    assert!(!allowed(
        &az,
        &u,
        res("get", "x.dev", "anything", None, None, None)
    ));
}

#[test]
fn subresources() {
    let p = Policy {
        cluster_roles: vec![
            cr(
                "mc",
                vec![rule(&["get"], &[GROUP_CATTERY], &["managedclusters"], &[])],
            ),
            cr(
                "proxy",
                vec![rule(
                    &["get"],
                    &[GROUP_CATTERY],
                    &["managedclusters/proxy"],
                    &[],
                )],
            ),
        ],
        cluster_role_bindings: vec![
            crb("a", "mc", vec![user("viewer")]),
            crb("b", "proxy", vec![user("proxier")]),
        ],
        ..Default::default()
    };
    let az = Authorizer::new(&p);
    let proxy = res(
        "get",
        GROUP_CATTERY,
        "managedclusters",
        Some("proxy"),
        Some("east"),
        None,
    );
    assert!(allowed(&az, &who("viewer", &[]), mc("get", Some("east"))));
    assert!(!allowed(&az, &who("viewer", &[]), proxy));
    assert!(allowed(&az, &who("proxier", &[]), proxy));
    assert!(!allowed(&az, &who("proxier", &[]), mc("get", Some("east"))));
    // An empty subresource is no subresource.
    assert!(allowed(
        &az,
        &who("viewer", &[]),
        res(
            "get",
            GROUP_CATTERY,
            "managedclusters",
            Some(""),
            Some("east"),
            None
        )
    ));
}

#[test]
fn resource_names() {
    let p = Policy {
        cluster_roles: vec![cr(
            "east-only",
            vec![rule(
                &["get", "list", "update"],
                &[GROUP_CATTERY],
                &["managedclusters"],
                &["east", "cluster"],
            )],
        )],
        cluster_role_bindings: vec![crb("a", "east-only", vec![user("u")])],
        ..Default::default()
    };
    let az = Authorizer::new(&p);
    let u = who("u", &[]);
    assert!(allowed(&az, &u, mc("get", Some("east"))));
    assert!(allowed(&az, &u, mc("update", Some("cluster"))));
    assert!(!allowed(&az, &u, mc("get", Some("west"))));
    // A request without a name (list) never matches a rule with resourceNames.
    assert!(!allowed(&az, &u, mc("list", None)));
    assert!(!allowed(&az, &u, mc("get", Some(""))));
    assert_eq!(
        az.allowed_names(&u, "list", GROUP_CATTERY, "managedclusters", None, None),
        Names::Only(BTreeSet::from(["cluster".to_string(), "east".to_string()]))
    );
}

#[test]
fn allowed_names_all_vs_only() {
    let p = Policy {
        cluster_roles: vec![
            cr(
                "some",
                vec![
                    rule(&["get"], &[GROUP_CATTERY], &["managedclusters"], &["east"]),
                    rule(
                        &["get"],
                        &[GROUP_CATTERY],
                        &["managedclusters"],
                        &["west", "east"],
                    ),
                    rule(
                        &["get"],
                        &[GROUP_CATTERY],
                        &["managedclusters/proxy"],
                        &["north"],
                    ),
                    rule(
                        &["delete"],
                        &[GROUP_CATTERY],
                        &["managedclusters"],
                        &["south"],
                    ),
                ],
            ),
            cr(
                "all",
                vec![rule(&["get"], &[GROUP_CATTERY], &["managedclusters"], &[])],
            ),
            cr(
                "ns-reader",
                vec![rule(&["get"], &[""], &["configmaps"], &["cm1"])],
            ),
        ],
        cluster_role_bindings: vec![
            crb("a", "some", vec![user("some")]),
            crb("b", "some", vec![user("both")]),
            crb("c", "all", vec![group("all-readers")]),
        ],
        role_bindings: vec![rb(
            "ns1",
            "r",
            "ClusterRole",
            "ns-reader",
            vec![user("some")],
        )],
        ..Default::default()
    };
    let az = Authorizer::new(&p);
    let set = |v: &[&str]| Names::Only(v.iter().map(|s| s.to_string()).collect());
    let some = who("some", &[]);
    assert_eq!(
        az.allowed_names(&some, "get", GROUP_CATTERY, "managedclusters", None, None),
        set(&["east", "west"])
    );
    assert_eq!(
        az.allowed_names(
            &some,
            "get",
            GROUP_CATTERY,
            "managedclusters",
            Some("proxy"),
            None
        ),
        set(&["north"])
    );
    assert_eq!(
        az.allowed_names(&some, "list", GROUP_CATTERY, "managedclusters", None, None),
        set(&[])
    );
    assert!(
        az.allowed_names(&some, "list", GROUP_CATTERY, "managedclusters", None, None)
            .is_empty()
    );
    let groups = strings(&["all-readers"]);
    let both = who("both", &groups);
    assert_eq!(
        az.allowed_names(&both, "get", GROUP_CATTERY, "managedclusters", None, None),
        Names::All
    );
    assert!(Names::All.contains("anything"));
    // Namespace scoping applies to allowed_names too.
    assert_eq!(
        az.allowed_names(&some, "get", "", "configmaps", None, Some("ns1")),
        set(&["cm1"])
    );
    assert_eq!(
        az.allowed_names(&some, "get", "", "configmaps", None, Some("ns2")),
        set(&[])
    );
    assert_eq!(
        az.allowed_names(&some, "get", "", "configmaps", None, None),
        set(&[])
    );
}

#[test]
fn group_subjects_and_implicit_authenticated() {
    let p = Policy {
        cluster_roles: vec![
            cr(
                "mc-reader",
                vec![rule(&["get"], &[GROUP_CATTERY], &["managedclusters"], &[])],
            ),
            cr(
                "token-maker",
                vec![rule(&["create"], &[GROUP_CATTERY], &["tokens"], &[])],
            ),
        ],
        cluster_role_bindings: vec![
            crb("devs", "mc-reader", vec![group("dev")]),
            crb(
                "everyone",
                "token-maker",
                vec![group("system:authenticated")],
            ),
        ],
        ..Default::default()
    };
    let az = Authorizer::new(&p);
    let dev = strings(&["ops", "dev"]);
    let d = az.authorize(&who("bob", &dev), &mc("get", Some("east")));
    assert!(d.allowed);
    assert!(d.reason.ends_with("to Group \"dev\""), "{}", d.reason);
    assert!(!allowed(
        &az,
        &who("bob", &strings(&["ops"])),
        mc("get", Some("east"))
    ));
    // Everyone is in system:authenticated, listed or not.
    let tok = res("create", GROUP_CATTERY, "tokens", None, None, None);
    assert!(allowed(&az, &who("bob", &[]), tok));
    assert!(allowed(
        &az,
        &who("bob", &strings(&["system:authenticated"])),
        tok
    ));
    // A user named like a group is not in the group.
    assert!(!allowed(&az, &who("dev", &[]), mc("get", Some("east"))));
}

#[test]
fn service_account_subjects() {
    let p = Policy {
        cluster_roles: vec![cr(
            "mc-reader",
            vec![rule(&["get"], &[GROUP_CATTERY], &["managedclusters"], &[])],
        )],
        cluster_role_bindings: vec![crb(
            "agents",
            "mc-reader",
            vec![sa(Some("cattery-system"), "agent")],
        )],
        role_bindings: vec![rb(
            "team-a",
            "sa-default-ns",
            "ClusterRole",
            "mc-reader",
            vec![sa(None, "bot")],
        )],
        ..Default::default()
    };
    let az = Authorizer::new(&p);
    let d = az.authorize(
        &who("system:serviceaccount:cattery-system:agent", &[]),
        &mc("get", Some("east")),
    );
    assert!(d.allowed);
    assert!(
        d.reason
            .ends_with("to ServiceAccount \"agent/cattery-system\""),
        "{}",
        d.reason
    );
    assert!(!allowed(
        &az,
        &who("system:serviceaccount:other:agent", &[]),
        mc("get", Some("east"))
    ));
    assert!(!allowed(&az, &who("agent", &[]), mc("get", Some("east"))));
    // RoleBinding SA subject without namespace = the binding's namespace.
    let bot = who("system:serviceaccount:team-a:bot", &[]);
    let in_ns = res(
        "get",
        GROUP_CATTERY,
        "managedclusters",
        None,
        Some("east"),
        Some("team-a"),
    );
    let d = az.authorize(&bot, &in_ns);
    assert!(d.allowed);
    assert_eq!(
        d.reason,
        "RBAC: allowed by RoleBinding \"team-a/sa-default-ns\" of ClusterRole \"mc-reader\" to \
         ServiceAccount \"bot/team-a\""
    );
    assert!(!allowed(&az, &bot, mc("get", Some("east"))));
}

#[test]
fn role_binding_namespace_scoping() {
    let p = Policy {
        cluster_roles: vec![cr(
            "cm-editor",
            vec![rule(&["get", "update"], &[""], &["configmaps"], &[])],
        )],
        roles: vec![
            role(
                "ns1",
                "secret-reader",
                vec![rule(&["get"], &[""], &["secrets"], &[])],
            ),
            role(
                "ns2",
                "secret-reader",
                vec![rule(&["get", "list"], &[""], &["secrets"], &[])],
            ),
        ],
        role_bindings: vec![
            rb("ns1", "edit", "ClusterRole", "cm-editor", vec![user("u")]),
            rb("ns1", "read", "Role", "secret-reader", vec![user("u")]),
        ],
        ..Default::default()
    };
    let az = Authorizer::new(&p);
    let u = who("u", &[]);
    // RoleBinding → ClusterRole grants only inside its namespace.
    assert!(allowed(
        &az,
        &u,
        res("update", "", "configmaps", None, Some("c"), Some("ns1"))
    ));
    assert!(!allowed(
        &az,
        &u,
        res("update", "", "configmaps", None, Some("c"), Some("ns2"))
    ));
    assert!(!allowed(
        &az,
        &u,
        res("update", "", "configmaps", None, Some("c"), None)
    ));
    // RoleBinding → Role uses the Role of the binding's namespace.
    let d = az.authorize(&u, &res("get", "", "secrets", None, Some("s"), Some("ns1")));
    assert!(d.allowed);
    assert_eq!(
        d.reason,
        "RBAC: allowed by RoleBinding \"ns1/read\" of Role \"secret-reader\" to User \"u\""
    );
    assert!(!allowed(
        &az,
        &u,
        res("list", "", "secrets", None, None, Some("ns1"))
    ));
    assert!(!allowed(
        &az,
        &u,
        res("get", "", "secrets", None, Some("s"), Some("ns2"))
    ));
}

#[test]
fn missing_role_ref_grants_nothing() {
    let p = Policy {
        cluster_roles: vec![cr("exists", vec![rule(&["*"], &["*"], &["*"], &[])])],
        roles: vec![role(
            "ns2",
            "only-in-ns2",
            vec![rule(&["*"], &["*"], &["*"], &[])],
        )],
        cluster_role_bindings: vec![
            crb("dangling", "does-not-exist", vec![user("u")]),
            // A ClusterRoleBinding to a Role is invalid and grants nothing.
            cattery_rbac::ClusterRoleBinding {
                role_ref: role_ref("Role", "exists"),
                ..crb("wrong-kind", "exists", vec![user("u")])
            },
        ],
        role_bindings: vec![
            rb("ns1", "dangling", "Role", "nope", vec![user("u")]),
            // The Role exists, but in another namespace.
            rb("ns1", "other-ns", "Role", "only-in-ns2", vec![user("u")]),
        ],
    };
    let az = Authorizer::new(&p);
    let u = who("u", &[]);
    assert!(!allowed(&az, &u, mc("get", Some("east"))));
    assert!(!allowed(
        &az,
        &u,
        res("get", "", "pods", None, None, Some("ns1"))
    ));
    assert!(!allowed(
        &az,
        &u,
        res("get", "", "pods", None, None, Some("ns2"))
    ));
}

#[test]
fn non_resource_urls() {
    let p = Policy {
        cluster_roles: vec![
            cr("apis", vec![url_rule(&["get"], &["/apis/*", "/version"])]),
            cr("cluster-urls", vec![url_rule(&["*"], &["/metrics"])]),
        ],
        roles: vec![role("ns1", "bad", vec![url_rule(&["*"], &["*"])])],
        cluster_role_bindings: vec![crb("a", "apis", vec![user("u")])],
        role_bindings: vec![
            rb("ns1", "b", "Role", "bad", vec![user("u")]),
            rb("ns1", "c", "ClusterRole", "cluster-urls", vec![user("u")]),
        ],
    };
    let az = Authorizer::new(&p);
    let u = who("u", &[]);
    let url = |verb: &'static str, path: &'static str| Request::NonResource { verb, path };
    assert!(allowed(&az, &u, url("get", "/apis/cattery.dev/v1")));
    assert!(allowed(&az, &u, url("get", "/apis/")));
    assert!(!allowed(&az, &u, url("get", "/apis")));
    assert!(allowed(&az, &u, url("get", "/version")));
    assert!(!allowed(&az, &u, url("get", "/version/extra")));
    assert!(!allowed(&az, &u, url("post", "/apis/x")));
    // Neither a Role's nonResourceURLs nor a RoleBinding grant URLs.
    assert!(!allowed(&az, &u, url("get", "/healthz")));
    assert!(!allowed(&az, &u, url("get", "/metrics")));
}

#[test]
fn authorizer_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Authorizer>();
    let az = Authorizer::new(&Policy::default());
    assert!(format!("{az:?}").contains("Authorizer"));
}
