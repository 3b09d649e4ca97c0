//! Privilege-escalation prevention.

mod common;

use cattery_rbac::{Authorizer, GROUP_CATTERY, Policy, Requester};
use common::*;

fn policy() -> Policy {
    Policy {
        cluster_roles: vec![
            cr(
                "get-mc",
                vec![rule(&["get"], &[GROUP_CATTERY], &["managedclusters"], &[])],
            ),
            cr(
                "god",
                vec![rule(&["*"], &["*"], &["*"], &[]), url_rule(&["*"], &["*"])],
            ),
            cr(
                "east",
                vec![rule(
                    &["get", "update"],
                    &[GROUP_CATTERY],
                    &["managedclusters"],
                    &["east"],
                )],
            ),
            cr(
                "version",
                vec![url_rule(&["get"], &["/version", "/apis/*"])],
            ),
            cr(
                "cm",
                vec![rule(&["get", "list"], &[""], &["configmaps"], &[])],
            ),
            cr(
                "scale",
                vec![rule(&["update"], &["apps"], &["*/scale"], &[])],
            ),
        ],
        cluster_role_bindings: vec![
            crb("a", "get-mc", vec![user("limited")]),
            crb("b", "god", vec![group("admins")]),
            crb("c", "east", vec![user("east-admin")]),
            crb("d", "version", vec![user("limited")]),
            crb("e", "scale", vec![user("scaler")]),
        ],
        role_bindings: vec![rb("ns1", "f", "ClusterRole", "cm", vec![user("limited")])],
        ..Default::default()
    }
}

#[test]
fn holder_of_get_cannot_grant_star() {
    let az = Authorizer::new(&policy());
    let limited = Requester {
        user: "limited",
        groups: &[],
    };
    let err = az
        .check_escalation(&limited, &[rule(&["*"], &["*"], &["*"], &[])], None)
        .unwrap_err();
    assert_eq!(
        err,
        "user \"limited\" (groups []) may not grant permissions they do not hold cluster-wide: \
         * * (apiGroup *)"
    );
    // Not even "*" verbs on the one resource they can read.
    assert!(
        az.check_escalation(
            &limited,
            &[rule(&["*"], &[GROUP_CATTERY], &["managedclusters"], &[])],
            None
        )
        .is_err()
    );
    // Exactly what they hold is fine, also restricted to names.
    az.check_escalation(
        &limited,
        &[rule(&["get"], &[GROUP_CATTERY], &["managedclusters"], &[])],
        None,
    )
    .unwrap();
    az.check_escalation(
        &limited,
        &[rule(
            &["get"],
            &[GROUP_CATTERY],
            &["managedclusters"],
            &["x", "y"],
        )],
        None,
    )
    .unwrap();
    // ... but not the proxy subresource.
    assert!(
        az.check_escalation(
            &limited,
            &[rule(
                &["get"],
                &[GROUP_CATTERY],
                &["managedclusters/proxy"],
                &[]
            )],
            None
        )
        .is_err()
    );
}

#[test]
fn holder_of_star_can_grant_anything() {
    let az = Authorizer::new(&policy());
    let groups = strings(&["admins"]);
    let admin = Requester {
        user: "root",
        groups: &groups,
    };
    let rules = [
        rule(&["*"], &["*"], &["*"], &[]),
        rule(
            &["get", "escalate"],
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
            &["x"],
        ),
        rule(&["update"], &["apps"], &["*/scale"], &[]),
        url_rule(&["*"], &["*"]),
    ];
    az.check_escalation(&admin, &rules, None).unwrap();
    az.check_escalation(&admin, &rules, Some("ns1")).unwrap();
}

#[test]
fn resource_names_and_wildcard_subresources() {
    let az = Authorizer::new(&policy());
    let ea = Requester {
        user: "east-admin",
        groups: &[],
    };
    az.check_escalation(
        &ea,
        &[rule(
            &["update"],
            &[GROUP_CATTERY],
            &["managedclusters"],
            &["east"],
        )],
        None,
    )
    .unwrap();
    let err = az
        .check_escalation(
            &ea,
            &[rule(
                &["get", "update"],
                &[GROUP_CATTERY],
                &["managedclusters"],
                &["east", "west"],
            )],
            None,
        )
        .unwrap_err();
    assert!(err.ends_with(": get managedclusters \"west\" (apiGroup cattery.dev), update managedclusters \"west\" (apiGroup cattery.dev)"), "{err}");
    // No resourceNames = every name, which they do not hold.
    assert!(
        az.check_escalation(
            &ea,
            &[rule(&["get"], &[GROUP_CATTERY], &["managedclusters"], &[])],
            None
        )
        .is_err()
    );

    let scaler = Requester {
        user: "scaler",
        groups: &[],
    };
    az.check_escalation(
        &scaler,
        &[rule(
            &["update"],
            &["apps"],
            &["deployments/scale", "*/scale"],
            &[],
        )],
        None,
    )
    .unwrap();
    assert!(
        az.check_escalation(
            &scaler,
            &[rule(&["update"], &["apps"], &["deployments"], &[])],
            None
        )
        .is_err()
    );
}

#[test]
fn non_resource_urls_and_namespaces() {
    let az = Authorizer::new(&policy());
    let limited = Requester {
        user: "limited",
        groups: &[],
    };
    az.check_escalation(
        &limited,
        &[url_rule(
            &["get"],
            &["/version", "/apis/cattery.dev", "/apis/*"],
        )],
        None,
    )
    .unwrap();
    let err = az
        .check_escalation(&limited, &[url_rule(&["get"], &["/metrics", "*"])], None)
        .unwrap_err();
    assert!(
        err.ends_with(": get non-resource URL \"/metrics\", get non-resource URL \"*\""),
        "{err}"
    );
    // configmaps are held only in ns1.
    let cm = [rule(&["get"], &[""], &["configmaps"], &[])];
    az.check_escalation(&limited, &cm, Some("ns1")).unwrap();
    let err = az.check_escalation(&limited, &cm, Some("ns2")).unwrap_err();
    assert!(
        err.contains("do not hold in namespace \"ns2\": get configmaps (core apiGroup \"\")"),
        "{err}"
    );
    assert!(az.check_escalation(&limited, &cm, None).is_err());
    // Cluster-wide grants count inside namespaces too.
    az.check_escalation(
        &limited,
        &[rule(&["get"], &[GROUP_CATTERY], &["managedclusters"], &[])],
        Some("ns2"),
    )
    .unwrap();
}

#[test]
fn error_lists_first_few() {
    let az = Authorizer::new(&Policy::default());
    let nobody = Requester {
        user: "nobody",
        groups: &[],
    };
    let err = az
        .check_escalation(
            &nobody,
            &[rule(
                &["get", "list", "watch", "create"],
                &["a", "b"],
                &["x"],
                &[],
            )],
            None,
        )
        .unwrap_err();
    assert!(err.ends_with("get x (apiGroup a), get x (apiGroup b), list x (apiGroup a), list x (apiGroup b), watch x (apiGroup a) and 3 more"), "{err}");
    az.check_escalation(&nobody, &[], None).unwrap();
}
