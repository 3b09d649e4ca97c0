//! CustomResourceDefinitions applied to the simulator with real kubectl: Calico's
//! projectcalico.org/v3 kinds become served types (discovery, Table columns, every verb,
//! label selectors, watch, server-side apply), a bad CRD is refused naming the field, and
//! deleting the CRD (or a namespace) deletes its objects.

mod common;

use common::{Sim, Streaming};
use serde_json::{Value, json};

fn calico_crds() -> String {
    format!(
        "{}/../../tests/fixtures/calico-crds/calico-v3.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

const OBJECTS: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: partners
  labels:
    role: partner
spec:
  nets: [198.51.100.0/24]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: scanners
  labels:
    role: scanner
spec:
  nets: [203.0.113.0/24]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-partners
  namespace: shop
spec:
  order: 100
  selector: app == 'frontend'
  ingress:
  - action: Allow
    source:
      selector: role == 'partner'
";

#[tokio::test]
async fn calico_crds_are_served_like_built_in_kinds() {
    let sim = Sim::start().await;
    // Before: the kinds are unknown.
    let out = sim.kubectl(&["get", "globalnetworksets"]).await;
    assert!(!out.status.success());

    let applied = sim.kubectl_ok(&["apply", "-f", &calico_crds()]).await;
    assert_eq!(
        applied.lines().collect::<Vec<_>>(),
        [
            "customresourcedefinition.apiextensions.k8s.io/networkpolicies.projectcalico.org created",
            "customresourcedefinition.apiextensions.k8s.io/globalnetworkpolicies.projectcalico.org created",
            "customresourcedefinition.apiextensions.k8s.io/networksets.projectcalico.org created",
            "customresourcedefinition.apiextensions.k8s.io/globalnetworksets.projectcalico.org created",
        ],
        "{applied}"
    );
    let crds = sim.kubectl_ok(&["get", "crds", "-o", "name"]).await;
    assert_eq!(crds.lines().count(), 4, "{crds}");
    let established = sim
        .kubectl_ok(&[
            "get",
            "crd",
            "globalnetworksets.projectcalico.org",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ])
        .await;
    assert_eq!(established, "True");

    // Discovery: scope and short names from the CRDs.
    let res = sim
        .kubectl_ok(&[
            "api-resources",
            "--api-group=projectcalico.org",
            "--no-headers",
        ])
        .await;
    let mut rows: Vec<Vec<&str>> = res
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            vec![
                "globalnetworkpolicies",
                "gnp",
                "projectcalico.org/v3",
                "false",
                "GlobalNetworkPolicy"
            ],
            vec![
                "globalnetworksets",
                "gns",
                "projectcalico.org/v3",
                "false",
                "GlobalNetworkSet"
            ],
            vec![
                "networkpolicies",
                "cnp",
                "projectcalico.org/v3",
                "true",
                "NetworkPolicy"
            ],
            vec![
                "networksets",
                "netset",
                "projectcalico.org/v3",
                "true",
                "NetworkSet"
            ],
        ],
        "{res}"
    );

    // Objects: create (client-side apply), list with a label selector, Table columns.
    let path = sim.file("calico.yaml", OBJECTS);
    let out = sim.kubectl_ok(&["apply", "-f", &path]).await;
    assert!(
        out.contains("globalnetworkset.projectcalico.org/partners created")
            && out.contains("networkpolicy.projectcalico.org/allow-partners created"),
        "{out}"
    );
    let sets = sim
        .kubectl_ok(&["get", "gns", "-l", "role=partner", "-o", "name"])
        .await;
    assert_eq!(sets.trim(), "globalnetworkset.projectcalico.org/partners");
    let table = sim
        .kubectl_ok(&["get", "networkpolicies.projectcalico.org", "-n", "shop"])
        .await;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![vec!["NAME", "ORDER"], vec!["allow-partners", "100"]],
        "{table}"
    );
    let wide = sim
        .kubectl_ok(&["get", "cnp", "-n", "shop", "-o", "wide"])
        .await;
    assert!(
        wide.contains("SELECTOR") && wide.contains("app == 'frontend'"),
        "{wide}"
    );
    // The Kubernetes NetworkPolicy kind is still its own type.
    let k8s = sim.kubectl_ok(&["get", "netpol", "-A", "-o", "name"]).await;
    assert_eq!(
        k8s.trim(),
        "networkpolicy.networking.k8s.io/db-allow-api",
        "{k8s}"
    );

    // Update by apply (a merge patch for custom resources), then server-side apply.
    let changed = OBJECTS.replace("order: 100", "order: 200");
    let path = sim.file("calico2.yaml", &changed);
    let out = sim.kubectl_ok(&["apply", "-f", &path]).await;
    assert!(
        out.contains("networkpolicy.projectcalico.org/allow-partners configured"),
        "{out}"
    );
    let order = sim
        .kubectl_ok(&[
            "get",
            "cnp",
            "-n",
            "shop",
            "allow-partners",
            "-o",
            "jsonpath={.spec.order}",
        ])
        .await;
    assert_eq!(order, "200");
    let ssa = sim.file(
        "ssa.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: ssa-set\nspec:\n  nets: [192.0.2.0/24]\n",
    );
    sim.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "cattery",
        "-f",
        &ssa,
    ])
    .await;
    let managers = sim
        .kubectl_ok(&[
            "get",
            "gns",
            "ssa-set",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    assert_eq!(managers, "cattery");

    // Strategic merge patch is refused for custom resources, as kube-apiserver does.
    let out = sim
        .kubectl(&[
            "patch",
            "gns",
            "partners",
            "--type",
            "strategic",
            "-p",
            r#"{"spec":{"nets":["10.0.0.0/8"]}}"#,
        ])
        .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("strategic merge patch is not supported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sim.kubectl_ok(&[
        "patch",
        "gns",
        "partners",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"role":"friend"}}}"#,
    ])
    .await;

    // Watch: a new object and a deletion are seen.
    let mut watch = Streaming::spawn(&sim, &["get", "gns", "-w", "-o", "name"]);
    watch
        .until("the existing set", |l| l.contains("/partners"))
        .await;
    let late = sim.file(
        "late.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: late\nspec: {}\n",
    );
    sim.kubectl_ok(&["create", "-f", &late]).await;
    watch.until("the new set", |l| l.contains("/late")).await;
    watch.child.kill().await.unwrap();

    // Deleting a namespace takes its custom resources with it.
    let (code, _) = sim
        .http_json(
            "GET",
            "/apis/projectcalico.org/v3/namespaces/shop/networkpolicies/allow-partners",
            "",
            "",
        )
        .await;
    assert_eq!(code, 200);
    sim.kubectl_ok(&["delete", "namespace", "shop"]).await;
    let (code, _) = sim
        .http_json("GET", "/apis/projectcalico.org/v3/networkpolicies", "", "")
        .await;
    assert_eq!(code, 200);
    let (_, list) = sim
        .http_json("GET", "/apis/projectcalico.org/v3/networkpolicies", "", "")
        .await;
    assert_eq!(list["items"], json!([]), "{list}");

    // Deleting the CRD deletes its objects and the type.
    sim.kubectl_ok(&["delete", "crd", "globalnetworksets.projectcalico.org"])
        .await;
    let (code, body) = sim
        .http_json(
            "GET",
            "/apis/projectcalico.org/v3/globalnetworksets",
            "",
            "",
        )
        .await;
    assert_eq!(code, 404, "{body}");
    let (_, gv) = sim
        .http_json("GET", "/apis/projectcalico.org/v3", "", "")
        .await;
    let names: Vec<&str> = gv["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(!names.contains(&"globalnetworksets"), "{gv}");
    sim.kubectl_ok(&["apply", "-f", &calico_crds()]).await;
    let sets = sim.kubectl_ok(&["get", "gns", "-o", "name"]).await;
    assert_eq!(sets.trim(), "", "the old objects went with the CRD: {sets}");
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_crds_are_refused_naming_the_field() {
    let sim = Sim::start().await;
    let crd = |name: &str, scope: &str| -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"group": "example.com", "scope": scope,
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        })
    };
    let post = |body: Value| {
        let sim = &sim;
        async move {
            sim.http_json(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                "application/json",
                body.to_string(),
            )
            .await
        }
    };
    let (code, st) = post(crd("widgets.example.org", "Namespaced")).await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(st["reason"], "Invalid");
    assert_eq!(st["details"]["causes"][0]["field"], "metadata.name", "{st}");
    let (code, st) = post(crd("widgets.example.com", "Galaxy")).await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(st["details"]["causes"][0]["field"], "spec.scope", "{st}");
    let mut no_schema = crd("widgets.example.com", "Namespaced");
    no_schema["spec"]["versions"][0]
        .as_object_mut()
        .unwrap()
        .remove("schema");
    let (code, st) = post(no_schema).await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(
        st["details"]["causes"][0]["field"], "spec.versions[0].schema.openAPIV3Schema",
        "{st}"
    );
    // Nothing of the refused ones is served.
    let (code, _) = sim.http("GET", "/apis/example.com/v1", "", "").await;
    assert_eq!(code, 404);

    // A good one; its scope cannot change afterwards, and a dry run serves nothing.
    let (code, _) = sim
        .http_json(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All",
            "application/json",
            crd("widgets.example.com", "Namespaced").to_string(),
        )
        .await;
    assert_eq!(code, 201);
    let (code, _) = sim.http("GET", "/apis/example.com/v1", "", "").await;
    assert_eq!(code, 404, "a dry run serves nothing");
    let (code, st) = post(crd("widgets.example.com", "Namespaced")).await;
    assert_eq!(code, 201, "{st}");
    let (code, st) = sim
        .http_json(
            "PATCH",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
            "application/merge-patch+json",
            r#"{"spec":{"scope":"Cluster"}}"#,
        )
        .await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(st["details"]["causes"][0]["field"], "spec.scope", "{st}");
    let (code, st) = sim
        .http_json(
            "POST",
            "/apis/example.com/v1/namespaces/shop/widgets",
            "application/json",
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w1"}, "anything": {"goes": [1, 2]}})
            .to_string(),
        )
        .await;
    assert_eq!(code, 201, "{st}");
    assert_eq!(st["anything"]["goes"], json!([1, 2]), "stored as sent");
    let (code, st) = sim
        .http_json(
            "POST",
            "/apis/example.com/v1/namespaces/nope/widgets",
            "application/json",
            json!({"metadata": {"name": "w1"}}).to_string(),
        )
        .await;
    assert_eq!(code, 404, "the namespace must exist: {st}");

    // The CRD of a type the simulator serves built in (what `cluster add` applies) is
    // stored, and the built-in type keeps serving.
    let mcc = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "managementclusterconnections.cattery.dev"},
        "spec": {"group": "cattery.dev", "scope": "Cluster",
            "names": {"plural": "managementclusterconnections", "kind": "ManagementClusterConnection"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object"}}}]}
    });
    let (code, st) = post(mcc).await;
    assert_eq!(code, 201, "{st}");
    let (code, _) = sim
        .http(
            "DELETE",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/managementclusterconnections.cattery.dev",
            "",
            "",
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = sim
        .http(
            "GET",
            "/apis/cattery.dev/v1/managementclusterconnections",
            "",
            "",
        )
        .await;
    assert_eq!(code, 200, "still served built in");
    sim.shutdown().await;
}
