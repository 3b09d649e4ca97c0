//! Validation of RBAC objects before storage.

mod common;

use cattery_rbac::{
    AggregationRule, GROUP_CATTERY, validate_cluster_role, validate_cluster_role_binding,
    validate_role, validate_role_binding,
};
use common::*;

fn cr_err(r: cattery_rbac::ClusterRole) -> String {
    validate_cluster_role(&r).unwrap_err().to_string()
}

#[test]
fn valid_objects_pass() {
    validate_cluster_role(&cr(
        "system:cattery.viewer-2",
        vec![
            rule(&["get"], &[""], &["pods", "pods/log"], &[]),
            rule(&["*"], &["*"], &["*"], &[]),
            url_rule(&["get"], &["/version", "/apis/*", "*"]),
        ],
    ))
    .unwrap();
    validate_role(&role(
        "ns-1",
        "r",
        vec![rule(
            &["get"],
            &[GROUP_CATTERY],
            &["managedclusters"],
            &["east"],
        )],
    ))
    .unwrap();
    validate_cluster_role_binding(&crb(
        "b",
        "r",
        vec![
            user("bob@example.com"),
            group("Dev Team"),
            sa(Some("ns"), "x"),
        ],
    ))
    .unwrap();
    validate_role_binding(&rb("ns", "b", "Role", "r", vec![sa(None, "x")])).unwrap();
    validate_role_binding(&rb("ns", "b", "ClusterRole", "r", vec![])).unwrap();
}

#[test]
fn rule_errors_name_the_field() {
    let ok = rule(&["get"], &[""], &["pods"], &[]);
    assert_eq!(
        cr_err(cr(
            "x",
            vec![ok.clone(), ok.clone(), rule(&[], &[""], &["pods"], &[])]
        )),
        "ClusterRole \"x\" rules[2].verbs: must not be empty"
    );
    assert_eq!(
        cr_err(cr("x", vec![rule(&["get", ""], &[""], &["pods"], &[])])),
        "ClusterRole \"x\" rules[0].verbs[1]: must not be empty"
    );
    assert_eq!(
        cr_err(cr("x", vec![rule(&["get"], &[], &["pods"], &[])])),
        "ClusterRole \"x\" rules[0].apiGroups: required for resource rules (use [\"\"] for the core group, [\"*\"] for all)"
    );
    assert_eq!(
        cr_err(cr("x", vec![rule(&["get"], &[""], &[], &[])])),
        "ClusterRole \"x\" rules[0].resources: must not be empty (or set nonResourceURLs instead)"
    );
    let mut both = rule(&["get"], &[""], &["pods"], &[]);
    both.non_resource_urls = Some(strings(&["/version"]));
    assert!(
        cr_err(cr("x", vec![both]))
            .starts_with("ClusterRole \"x\" rules[0].nonResourceURLs: a rule applies to either")
    );
    assert!(
        cr_err(cr("x", vec![url_rule(&["get"], &["/ok", "version"])]))
            .starts_with("ClusterRole \"x\" rules[0].nonResourceURLs[1]: \"version\" must be")
    );
    assert!(cr_err(cr("x", vec![url_rule(&["get"], &["/a*b"])])).contains("nonResourceURLs[0]"));
    assert_eq!(
        cr_err(cr("x", vec![rule(&["get"], &[""], &["pods"], &["a", ""])])),
        "ClusterRole \"x\" rules[0].resourceNames[1]: must not be empty"
    );
    let e = validate_role(&role("ns", "r", vec![url_rule(&["get"], &["/version"])])).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Role \"ns/r\" rules[0].nonResourceURLs: not allowed in a Role"),
        "{e}"
    );
    assert_eq!(e.kind, "Role");
    assert_eq!(e.field, "rules[0].nonResourceURLs");
}

#[test]
fn aggregation_rule_is_rejected() {
    let mut r = cr("agg", vec![]);
    r.aggregation_rule = Some(AggregationRule::default());
    assert_eq!(
        cr_err(r),
        "ClusterRole \"agg\" aggregationRule: aggregationRule is not supported; list the rules explicitly"
    );
}

#[test]
fn names_and_namespaces() {
    assert_eq!(
        cr_err(cr("", vec![])),
        "ClusterRole \"\" metadata.name: must not be empty"
    );
    assert!(
        cr_err(cr("Upper", vec![]))
            .starts_with("ClusterRole \"Upper\" metadata.name: \"Upper\" must consist")
    );
    assert!(cr_err(cr("-x", vec![])).contains("metadata.name"));
    assert!(cr_err(cr("x:", vec![])).contains("metadata.name"));
    assert!(cr_err(cr("a/b", vec![])).contains("metadata.name"));
    assert!(cr_err(cr(&"a".repeat(254), vec![])).contains("at most 253"));
    validate_cluster_role(&cr(&"a".repeat(253), vec![])).unwrap();
    let mut r = cr("x", vec![]);
    r.metadata.namespace = Some("ns".into());
    assert_eq!(
        cr_err(r),
        "ClusterRole \"ns/x\" metadata.namespace: must not be set on a cluster-scoped ClusterRole"
    );

    let mut r = role("ns", "r", vec![]);
    r.metadata.namespace = None;
    assert_eq!(
        validate_role(&r).unwrap_err().to_string(),
        "Role \"r\" metadata.namespace: required"
    );
    let e = validate_role(&role("Bad.NS", "r", vec![])).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "Role \"Bad.NS/r\" metadata.namespace: \"Bad.NS\" must be a DNS-1123 label"
        ),
        "{e}"
    );
    let mut b = rb("ns", "b", "Role", "r", vec![]);
    b.metadata.namespace = Some(String::new());
    assert!(
        validate_role_binding(&b)
            .unwrap_err()
            .to_string()
            .ends_with("metadata.namespace: required")
    );
}

#[test]
fn binding_errors_name_the_field() {
    let crb_err = |b| validate_cluster_role_binding(&b).unwrap_err().to_string();
    let mut b = crb("b", "r", vec![]);
    b.role_ref.api_group = Some("example.com".into());
    assert_eq!(
        crb_err(b),
        "ClusterRoleBinding \"b\" roleRef.apiGroup: must be \"rbac.authorization.k8s.io\""
    );
    let mut b = crb("b", "r", vec![]);
    b.role_ref.api_group = None;
    assert!(crb_err(b).contains("roleRef.apiGroup"));
    let mut b = crb("b", "r", vec![]);
    b.role_ref.kind = "Role".into();
    assert_eq!(
        crb_err(b),
        "ClusterRoleBinding \"b\" roleRef.kind: must be \"ClusterRole\""
    );
    assert_eq!(
        crb_err(crb("b", "", vec![])),
        "ClusterRoleBinding \"b\" roleRef.name: must not be empty"
    );
    assert_eq!(
        crb_err(crb("b", "r", vec![user("u"), sa(None, "x")])),
        "ClusterRoleBinding \"b\" subjects[1].namespace: required for a ServiceAccount in a ClusterRoleBinding"
    );
    assert_eq!(
        crb_err(crb("b", "r", vec![user("")])),
        "ClusterRoleBinding \"b\" subjects[0].name: must not be empty"
    );
    let mut s = user("u");
    s.kind = "Robot".into();
    assert_eq!(
        crb_err(crb("b", "r", vec![s])),
        "ClusterRoleBinding \"b\" subjects[0].kind: \"Robot\" is not one of \"User\", \"Group\", \"ServiceAccount\""
    );
    let mut s = group("g");
    s.api_group = Some("example.com".into());
    assert_eq!(
        crb_err(crb("b", "r", vec![s])),
        "ClusterRoleBinding \"b\" subjects[0].apiGroup: must be \"rbac.authorization.k8s.io\""
    );
    let mut s = sa(Some("ns"), "x");
    s.api_group = Some("rbac.authorization.k8s.io".into());
    assert!(
        crb_err(crb("b", "r", vec![s]))
            .contains("subjects[0].apiGroup: must be \"\" for a ServiceAccount")
    );

    let rb_err = |b| validate_role_binding(&b).unwrap_err().to_string();
    assert_eq!(
        rb_err(rb("ns", "b", "Secret", "r", vec![])),
        "RoleBinding \"ns/b\" roleRef.kind: must be \"ClusterRole\" or \"Role\""
    );
    assert!(
        rb_err(rb("ns", "b", "Role", "r", vec![sa(Some("BAD"), "x")]))
            .contains("subjects[0].namespace")
    );
}

#[test]
fn labels_and_annotation_keys_follow_kubernetes() {
    let mut r = cr("r", vec![]);
    r.metadata.labels = Some([("team".to_string(), "net ops".to_string())].into());
    assert!(
        cr_err(r.clone())
            .starts_with("ClusterRole \"r\" metadata.labels: label \"team\": value \"net ops\""),
        "{}",
        cr_err(r)
    );
    let mut r = cr("r", vec![]);
    r.metadata.annotations = Some([("bad key".to_string(), "free text".to_string())].into());
    assert!(
        cr_err(r).starts_with("ClusterRole \"r\" metadata.annotations: annotation key \"bad key\"")
    );
    let mut r = cr("r", vec![]);
    r.metadata.labels = Some([("app.kubernetes.io/name".to_string(), "x".to_string())].into());
    r.metadata.annotations = Some([("note".to_string(), "any: text".to_string())].into());
    validate_cluster_role(&r).unwrap();
}
