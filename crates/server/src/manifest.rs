//! Installation manifests: everything a cluster needs to connect, returned once by
//! `cluster add` (like Calico's `spec.installationManifest`).

use cattery_api::agent_protocol::{SERVICE_ACCOUNT_NAME, SERVICE_ACCOUNT_NAMESPACE};
use cattery_api::{
    API_VERSION, AgentConfig, AgentConfigSpec, AgentCredentials, ConnectionTls, Impersonation,
    ManagementClusterConnection, ManagementClusterConnectionSpec, ObjectMeta,
};
use serde_json::{Value, json};

use crate::auth::ADMIN_GROUP;

/// Namespace the agent runs in.
pub const NAMESPACE: &str = "cattery-system";
/// Container image of the agent.
pub const AGENT_IMAGE: &str = concat!("ghcr.io/cattery-dev/cattery:v", env!("CARGO_PKG_VERSION"));

/// The two shapes a manifest can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    /// Kubernetes objects (multi-document YAML) to `kubectl apply`.
    Kubernetes,
    /// One `AgentConfig` YAML file for `cattery agent --config`.
    AgentConfig,
}

impl std::str::FromStr for ManifestFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "kubernetes" => Ok(ManifestFormat::Kubernetes),
            "agent-config" => Ok(ManifestFormat::AgentConfig),
            other => Err(format!(
                "unknown manifest format {other:?}; use kubernetes or agent-config"
            )),
        }
    }
}

/// What goes into a manifest.
pub struct ManifestInput<'a> {
    /// Cluster name.
    pub cluster: &'a str,
    /// `host:port` agents dial.
    pub management_cluster_addr: &'a str,
    /// The cluster's client certificate (PEM).
    pub cert_pem: &'a str,
    /// Its private key (PEM).
    pub key_pem: &'a str,
    /// The management plane's CA (PEM).
    pub ca_pem: &'a str,
}

/// Renders the manifest in `format`.
pub fn render(format: ManifestFormat, input: &ManifestInput<'_>) -> String {
    let connection = ManagementClusterConnectionSpec {
        management_cluster_addr: input.management_cluster_addr.to_string(),
        tls: ConnectionTls::default(),
        impersonation: Impersonation::default(),
    };
    match format {
        ManifestFormat::AgentConfig => {
            let cfg = AgentConfig {
                api_version: API_VERSION.into(),
                kind: "AgentConfig".into(),
                metadata: ObjectMeta {
                    name: input.cluster.into(),
                    ..Default::default()
                },
                spec: AgentConfigSpec {
                    management_cluster_addr: connection.management_cluster_addr,
                    tls: connection.tls,
                    impersonation: connection.impersonation,
                    credentials: AgentCredentials {
                        certificate: input.cert_pem.into(),
                        private_key: input.key_pem.into(),
                        ca_certificate: input.ca_pem.into(),
                    },
                },
            };
            format!(
                "# Cattery agent configuration for cluster {:?}. Contains a private key: keep it secret (mode 0600).\n# Run: cattery agent --config THIS_FILE [--upstream https://kube-apiserver:6443 ...]\n{}",
                input.cluster,
                to_yaml(&serde_json::to_value(&cfg).expect("serializable"))
            )
        }
        ManifestFormat::Kubernetes => {
            let docs = kubernetes_objects(input, &connection);
            let mut out = format!(
                "# Cattery installation manifest for cluster {:?}. Contains a private key: keep it secret.\n# Apply in the managed cluster: kubectl apply -f THIS_FILE\n",
                input.cluster
            );
            for d in docs {
                out.push_str("---\n");
                out.push_str(&to_yaml(&d));
            }
            out
        }
    }
}

fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).expect("JSON values always serialize to YAML")
}

/// What the management plane's controllers may do in a managed cluster. They act as the
/// ServiceAccount `cattery-system/cattery-controller` (the agent impersonates it for
/// them), so this ClusterRole is the limit; a cluster admin narrows it by editing the role.
///
/// Exactly what FederatedPolicy placement needs: the five placeable kinds (list and watch
/// to observe, create for an absent object, patch for server-side apply, delete for
/// removal; never update, which would replace fields other managers own), and read-only
/// pods and namespaces for remote peers.
pub fn controller_rules() -> Value {
    let write = json!(["get", "list", "watch", "create", "patch", "delete"]);
    json!([
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": write},
        {"apiGroups": ["projectcalico.org"],
         "resources": ["networkpolicies", "globalnetworkpolicies", "networksets",
                       "globalnetworksets"],
         "verbs": write},
        {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}
    ])
}

/// The Kubernetes objects of the manifest, in apply order.
pub fn kubernetes_objects(
    input: &ManifestInput<'_>,
    connection: &ManagementClusterConnectionSpec,
) -> Vec<Value> {
    let labels =
        json!({"app.kubernetes.io/name": "cattery-agent", "app.kubernetes.io/part-of": "cattery"});
    let mcc = ManagementClusterConnection {
        api_version: API_VERSION.into(),
        kind: "ManagementClusterConnection".into(),
        metadata: ObjectMeta {
            name: "default".into(),
            ..Default::default()
        },
        spec: connection.clone(),
    };
    let resource_names = |list: &[String]| -> Value {
        if list.iter().any(|x| x == "*") {
            Value::Null
        } else {
            json!(list)
        }
    };
    let imp = &connection.impersonation;
    let mut impersonate_rules = vec![];
    for (resource, list) in [
        ("users", &imp.users),
        ("groups", &imp.groups),
        ("serviceaccounts", &imp.service_accounts),
    ] {
        if list.is_empty() {
            continue;
        }
        let mut rule =
            json!({"apiGroups": [""], "resources": [resource], "verbs": ["impersonate"]});
        if let Value::Array(names) = resource_names(list) {
            rule["resourceNames"] = Value::Array(names);
        }
        impersonate_rules.push(rule);
    }
    let mut rules = impersonate_rules;
    rules.push(json!({"apiGroups": ["cattery.dev"], "resources": ["managementclusterconnections"], "verbs": ["get", "list", "watch"]}));
    rules.push(json!({"nonResourceURLs": ["/version"], "verbs": ["get"]}));

    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}}),
        crd(),
        serde_json::to_value(&mcc).expect("serializable"),
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "cattery-agent-tls", "namespace": NAMESPACE, "labels": labels},
            "stringData": {"tls.crt": input.cert_pem, "tls.key": input.key_pem, "ca.crt": input.ca_pem}
        }),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "cattery-agent", "namespace": NAMESPACE, "labels": labels}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT_NAME, "namespace": SERVICE_ACCOUNT_NAMESPACE, "labels": labels,
            "annotations": {"cattery.dev/description": "The identity of the management plane's controllers (the agent impersonates it for their requests). Its ClusterRole cattery-controller limits what they can do here."}}}),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "cattery-agent", "labels": labels},
            "rules": rules
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "cattery-agent", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cattery-agent"},
            "subjects": [{"kind": "ServiceAccount", "name": "cattery-agent", "namespace": NAMESPACE}]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": SERVICE_ACCOUNT_NAME, "labels": labels},
            "rules": controller_rules()
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": SERVICE_ACCOUNT_NAME, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SERVICE_ACCOUNT_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT_NAME, "namespace": SERVICE_ACCOUNT_NAMESPACE}]
        }),
        // The agent may impersonate the controllers' ServiceAccount (and only it, through
        // this Role, when spec.impersonation narrows the ClusterRole's impersonation).
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "cattery-agent-impersonate-controller", "namespace": SERVICE_ACCOUNT_NAMESPACE, "labels": labels},
            "rules": [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"], "resourceNames": [SERVICE_ACCOUNT_NAME]}]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "cattery-agent-impersonate-controller", "namespace": SERVICE_ACCOUNT_NAMESPACE, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cattery-agent-impersonate-controller"},
            "subjects": [{"kind": "ServiceAccount", "name": "cattery-agent", "namespace": NAMESPACE}]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "cattery-admins", "labels": labels,
                "annotations": {"cattery.dev/description": "Management-plane administrators (group cattery:admins) are cluster-admin here. Delete this binding to manage their access with your own RBAC."}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": ADMIN_GROUP}]
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "cattery-agent", "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 1,
                // Never two agents at once: they would share one certificate.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": "cattery-agent"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "cattery-agent",
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "agent",
                            "image": AGENT_IMAGE,
                            "args": ["agent", "--connection", "default", "--credentials-dir", "/etc/cattery/tls",
                                     "--spool-dir", "/var/lib/cattery-agent/spool",
                                     "--audit-webhook-addr", "0.0.0.0:9447", "--audit-webhook-dir", "/var/lib/cattery-agent/audit-webhook",
                                     "--metrics-addr", "0.0.0.0:9448"],
                            "ports": [{"name": "audit-webhook", "containerPort": 9447}, {"name": "metrics", "containerPort": 9448}],
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                            "volumeMounts": [{"name": "tls", "mountPath": "/etc/cattery/tls", "readOnly": true},
                                             {"name": "spool", "mountPath": "/var/lib/cattery-agent"}]
                        }],
                        // The spool survives container restarts; use a PersistentVolumeClaim instead
                        // to survive the pod being rescheduled.
                        "volumes": [{"name": "tls", "secret": {"secretName": "cattery-agent-tls", "defaultMode": 0o400}},
                                    {"name": "spool", "emptyDir": {"sizeLimit": "2Gi"}}]
                    }
                }
            }
        }),
    ]
}

/// The CustomResourceDefinition of `ManagementClusterConnection`.
pub fn crd() -> Value {
    let names = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "managementclusterconnections.cattery.dev"},
        "spec": {
            "group": "cattery.dev",
            "scope": "Cluster",
            "names": {"plural": "managementclusterconnections", "singular": "managementclusterconnection",
                      "kind": "ManagementClusterConnection", "listKind": "ManagementClusterConnectionList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["managementClusterAddr"], "properties": {
                        "managementClusterAddr": {"type": "string"},
                        "tls": {"type": "object", "properties": {"ca": {"type": "string", "enum": ["Tigera", "Public"]}}},
                        "impersonation": {"type": "object", "properties": {"users": names, "groups": names, "serviceAccounts": names}}
                    }}
                }}}
            }]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller's ClusterRole covers every kind a FederatedPolicy can place with
    /// exactly the verbs placement uses, and nothing else writable.
    #[test]
    fn controller_rules_are_exactly_what_placement_needs() {
        use cattery_api::federation::ResourceKind;
        let rules: Vec<ClusterRoleRule> = serde_json::from_value(controller_rules()).unwrap();
        let grants = |group: &str, plural: &str| -> Vec<String> {
            rules
                .iter()
                .filter(|r| r.api_groups.iter().any(|g| g == group))
                .filter(|r| r.resources.iter().any(|p| p == plural))
                .flat_map(|r| r.verbs.clone())
                .collect()
        };
        let write = ["get", "list", "watch", "create", "patch", "delete"];
        let mut placeable = BTreeSetOf::new();
        for k in ResourceKind::ALL {
            let group = k.api_version().split('/').next().unwrap();
            assert_eq!(grants(group, k.plural()), write, "{k}");
            placeable.insert((group.to_string(), k.plural().to_string()));
        }
        for r in &rules {
            for g in &r.api_groups {
                for p in &r.resources {
                    let writes = r
                        .verbs
                        .iter()
                        .any(|v| !["get", "list", "watch"].contains(&v.as_str()));
                    assert!(
                        !writes || placeable.contains(&(g.clone(), p.clone())),
                        "{g}/{p} is writable but nothing places it"
                    );
                    assert!(!r.verbs.iter().any(|v| v == "update" || v == "*"), "{r:?}");
                }
            }
        }
    }

    type BTreeSetOf = std::collections::BTreeSet<(String, String)>;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ClusterRoleRule {
        api_groups: Vec<String>,
        resources: Vec<String>,
        verbs: Vec<String>,
    }
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    fn input() -> ManifestInput<'static> {
        ManifestInput {
            cluster: "prod-1",
            management_cluster_addr: "mgmt.example.com:9449",
            cert_pem: "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",
            key_pem: "-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n",
            ca_pem: "-----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----\n",
        }
    }

    #[test]
    fn kubernetes_manifest_is_valid_kubernetes() {
        let text = render(ManifestFormat::Kubernetes, &input());
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "CustomResourceDefinition",
                "ManagementClusterConnection",
                "Secret",
                "ServiceAccount",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "ClusterRoleBinding",
                "Deployment"
            ]
        );
        for d in &docs {
            let v = d.clone();
            match d["kind"].as_str().unwrap() {
                "Namespace" => drop(serde_json::from_value::<Namespace>(v).unwrap()),
                "CustomResourceDefinition" => {
                    drop(serde_json::from_value::<CustomResourceDefinition>(v).unwrap())
                }
                "ManagementClusterConnection" => {
                    let m: ManagementClusterConnection = serde_json::from_value(v).unwrap();
                    assert_eq!(m.spec.management_cluster_addr, "mgmt.example.com:9449");
                }
                "Secret" => {
                    let s: Secret = serde_json::from_value(v).unwrap();
                    let data = s.string_data.unwrap();
                    assert!(data["tls.key"].contains("BBB") && data["ca.crt"].contains("CCC"));
                }
                "ServiceAccount" => drop(serde_json::from_value::<ServiceAccount>(v).unwrap()),
                "ClusterRole" if d["metadata"]["name"] == SERVICE_ACCOUNT_NAME => {
                    let r: ClusterRole = serde_json::from_value(v).unwrap();
                    let rules = r.rules.unwrap();
                    let allows = |group: &str, resource: &str, verb: &str| {
                        rules.iter().any(|r| {
                            r.api_groups
                                .as_ref()
                                .is_some_and(|g| g.iter().any(|g| g == group))
                                && r.resources
                                    .as_ref()
                                    .is_some_and(|x| x.iter().any(|x| x == resource))
                                && r.verbs.iter().any(|v| v == verb)
                        })
                    };
                    assert!(allows("networking.k8s.io", "networkpolicies", "patch"));
                    assert!(allows(
                        "projectcalico.org",
                        "globalnetworkpolicies",
                        "delete"
                    ));
                    assert!(allows("", "namespaces", "watch"));
                    assert!(!allows("", "pods", "delete"), "read-only on pods");
                    assert!(!allows("", "secrets", "get"));
                    assert!(
                        !rules
                            .iter()
                            .any(|r| r.verbs.iter().any(|v| v == "impersonate" || v == "*"))
                    );
                }
                "ClusterRole" => {
                    let r: ClusterRole = serde_json::from_value(v).unwrap();
                    assert!(
                        r.rules
                            .unwrap()
                            .iter()
                            .any(|r| r.verbs.contains(&"impersonate".to_string()))
                    );
                }
                "Role" => {
                    let r: Role = serde_json::from_value(v).unwrap();
                    let rule = &r.rules.unwrap()[0];
                    assert_eq!(rule.verbs, ["impersonate"]);
                    assert_eq!(
                        rule.resource_names.as_deref(),
                        Some(&[SERVICE_ACCOUNT_NAME.to_string()][..])
                    );
                }
                "RoleBinding" => drop(serde_json::from_value::<RoleBinding>(v).unwrap()),
                "ClusterRoleBinding" => {
                    drop(serde_json::from_value::<ClusterRoleBinding>(v).unwrap())
                }
                "Deployment" => {
                    let d: Deployment = serde_json::from_value(v).unwrap();
                    let spec = d.spec;
                    assert_eq!(spec.replicas, Some(1));
                    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
                }
                k => panic!("unexpected kind {k}"),
            }
        }
    }

    #[test]
    fn agent_config_roundtrips() {
        let text = render(ManifestFormat::AgentConfig, &input());
        let cfg: AgentConfig = cattery_api::wire::decode(text.as_bytes()).unwrap();
        assert_eq!(cfg.metadata.name, "prod-1");
        assert!(cfg.spec.credentials.private_key.contains("BBB"));
    }
}
