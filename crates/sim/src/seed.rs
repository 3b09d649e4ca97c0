//! The objects a fresh simulated cluster starts with: a few namespaces, a
//! small shop and payments workload (pods + services with `app` labels), one
//! NetworkPolicy, and the `kubernetes`/`kube-dns` services of a real cluster.
//! `kube-system` is labelled `cattery.dev/sim-cluster: <name>`.

use serde_json::{Value, json};

use crate::objects::Store;
use crate::resources::find;

/// Label on `kube-system` naming the simulated cluster.
pub const SIM_CLUSTER_LABEL: &str = "cattery.dev/sim-cluster";

/// `(namespace, app, pod name, image, port)` of the seeded workloads.
pub const WORKLOADS: &[(&str, &str, &str, &str, u16)] = &[
    (
        "shop",
        "frontend",
        "frontend-6c9f8d7b5-k2x7q",
        "ghcr.io/cattery-demo/frontend:1.4",
        8080,
    ),
    (
        "shop",
        "cart",
        "cart-7d4b9c6f8-m5p2w",
        "ghcr.io/cattery-demo/cart:2.1",
        8080,
    ),
    (
        "shop",
        "checkout",
        "checkout-5f8c7d9b6-r8t4n",
        "ghcr.io/cattery-demo/checkout:1.9",
        8080,
    ),
    (
        "payments",
        "api",
        "api-8b6d5f7c9-h3j6v",
        "ghcr.io/cattery-demo/payments-api:3.0",
        8443,
    ),
    ("payments", "db", "db-0", "postgres:16", 5432),
    (
        "kube-system",
        "kube-dns",
        "coredns-76f75df574-x9z2l",
        "registry.k8s.io/coredns/coredns:v1.11.3",
        53,
    ),
];

fn create(store: &Store, plural: &str, group: &str, ns: Option<&str>, obj: Value) {
    let res = find(group, "v1", plural).expect("seeded types are served");
    store
        .create(res, ns, obj, false)
        .expect("seed objects are valid and unique");
}

/// Fills an empty store.
pub fn seed(store: &Store, cluster: &str) {
    for ns in ["default", "kube-system", "kube-public", "shop", "payments"] {
        let mut labels = json!({});
        if ns == "kube-system" {
            labels[SIM_CLUSTER_LABEL] = json!(cluster);
        }
        create(
            store,
            "namespaces",
            "",
            None,
            json!({"metadata": {"name": ns, "labels": labels}}),
        );
    }
    create(
        store,
        "services",
        "",
        Some("default"),
        json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}),
    );
    for &(ns, app, pod, image, port) in WORKLOADS {
        let labels = if app == "kube-dns" {
            json!({"k8s-app": app})
        } else {
            json!({"app": app})
        };
        create(
            store,
            "pods",
            "",
            Some(ns),
            json!({"metadata": {"name": pod, "labels": labels},
                   "spec": {"containers": [{"name": app, "image": image, "ports": [{"containerPort": port}]}]}}),
        );
        let mut spec = json!({"selector": labels, "ports": [{"port": port, "targetPort": port}]});
        if app == "kube-dns" {
            spec["clusterIP"] = json!("10.96.0.10");
            spec["ports"] = json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]);
        } else if port == 8080 {
            spec["ports"] = json!([{"name": "http", "port": 80, "targetPort": port}]);
        }
        create(
            store,
            "services",
            "",
            Some(ns),
            json!({"metadata": {"name": app, "labels": labels}, "spec": spec}),
        );
    }
    create(
        store,
        "configmaps",
        "",
        Some("shop"),
        json!({"metadata": {"name": "frontend-config", "labels": {"app": "frontend"}},
               "data": {"CART_URL": "http://cart", "CHECKOUT_URL": "http://checkout"}}),
    );
    create(
        store,
        "networkpolicies",
        "networking.k8s.io",
        Some("payments"),
        json!({"metadata": {"name": "db-allow-api"},
               "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                     "ports": [{"protocol": "TCP", "port": 5432}]}]}}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_valid_and_labelled() {
        let store = Store::new("east", "10.244.0.0/16".parse().unwrap());
        seed(&store, "east");
        let ns = store
            .get(find("", "v1", "namespaces").unwrap(), None, "kube-system")
            .unwrap();
        assert_eq!(ns["metadata"]["labels"][SIM_CLUSTER_LABEL], "east");
        let pod = store
            .get(
                find("", "v1", "pods").unwrap(),
                Some("shop"),
                "cart-7d4b9c6f8-m5p2w",
            )
            .unwrap();
        assert_eq!(pod["status"]["phase"], "Running");
        let svc = store
            .get(
                find("", "v1", "services").unwrap(),
                Some("default"),
                "kubernetes",
            )
            .unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    }
}
