//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`).
//!
//! kubectl 1.32's typed clients (`kubectl create namespace|configmap|service ...`) send
//! protobuf for built-in kinds and do not fall back to JSON on a 415, so an API server
//! that kubectl is meant to write to must read it (every kube-apiserver does, for every
//! built-in type; only custom resources are JSON-only). Responses stay JSON: client-go
//! sends `Accept: application/vnd.kubernetes.protobuf,application/json` and decodes by
//! the response's `Content-Type`.
//!
//! The wire format is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message
//! whose `raw` field holds the object's own message; the messages are the prost types of
//! the `k8s-pb` crate (generated from Kubernetes' `generated.proto`). Converting them to
//! the JSON the store keeps is written out per kind here, destructuring every struct
//! without `..` so that a field this module does not convert is a compile error, not a
//! silently dropped value. Fields the simulator has no use for in a request body
//! (`managedFields`) are rejected with a 415 naming the field when set; `status` is
//! ignored (server-owned; kube-apiserver resets it on create too).
//!
//! Kinds: Namespace, ConfigMap and Service, the built-in kinds the simulator serves that
//! kubectl's typed clients create. Pods and NetworkPolicies in protobuf are refused with
//! a 415 that names the kind (kubectl sends those as JSON: `run`, `apply`, `create -f`).

use std::collections::BTreeMap;

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// The media type client-go sends protobuf bodies with.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// Decodes a protobuf request body into the JSON object the store keeps.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::BadRequest(format!("the protobuf request body {m}"));
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("does not start with the Kubernetes magic number \"k8s\\0\"".into()))?;
    let Unknown {
        type_meta,
        raw,
        content_encoding,
        content_type,
    } = Unknown::decode(rest).map_err(|e| bad(format!("is not a runtime.Unknown: {e}")))?;
    if content_encoding.as_deref().is_some_and(|e| !e.is_empty()) {
        return Err(unsupported(format!(
            "protobuf bodies with contentEncoding {content_encoding:?} are not supported"
        )));
    }
    if content_type.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported(format!(
            "protobuf bodies wrapping {content_type:?} are not supported"
        )));
    }
    let TypeMeta { api_version, kind } = type_meta.unwrap_or_default();
    let api_version = api_version.unwrap_or_default();
    let kind = kind.unwrap_or_default();
    let raw = raw.unwrap_or_default();
    let wrong = |e: prost::DecodeError| bad(format!("is not a valid {api_version} {kind}: {e}"));
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(core::Namespace::decode(&*raw).map_err(wrong)?)?,
        ("v1", "ConfigMap") => config_map(core::ConfigMap::decode(&*raw).map_err(wrong)?)?,
        ("v1", "Service") => service(core::Service::decode(&*raw).map_err(wrong)?)?,
        _ => {
            return Err(unsupported(format!(
                "the simulator reads protobuf bodies for v1 Namespace, ConfigMap and Service only, \
                 not {api_version} {kind}; send application/json"
            )));
        }
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

fn unsupported(m: String) -> ApiError {
    ApiError::UnsupportedMediaType(m)
}

/// Inserts `v` under `k` when it is set. Go's protobuf encoder writes every non-pointer
/// field, zero or not, while its JSON encoder omits the zero ones (`omitempty`); empty
/// strings and zero numbers are therefore left out, as they would be in JSON.
fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    match v {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::Number(n)) if n.as_i64() == Some(0) => {}
        Some(v) => {
            m.insert(k.into(), v);
        }
    }
}

fn strings(v: Vec<String>) -> Option<Value> {
    (!v.is_empty()).then(|| json!(v))
}

fn string_map(m: BTreeMap<String, String>) -> Option<Value> {
    (!m.is_empty()).then(|| json!(m))
}

fn time(t: Option<meta::Time>) -> Option<Value> {
    let meta::Time { seconds, nanos: _ } = t?;
    let seconds = seconds.filter(|s| *s != 0)?;
    let ts = time::OffsetDateTime::from_unix_timestamp(seconds).ok()?;
    ts.format(&time::format_description::well_known::Rfc3339)
        .ok()
        .map(Value::String)
}

fn int_or_string(v: IntOrString) -> Value {
    let IntOrString {
        r#type,
        int_val,
        str_val,
    } = v;
    if r#type == Some(1) {
        json!(str_val.unwrap_or_default())
    } else {
        json!(int_val.unwrap_or(0))
    }
}

fn object_meta(m: Option<meta::ObjectMeta>) -> Result<Value, ApiError> {
    let meta::ObjectMeta {
        name,
        generate_name,
        namespace,
        self_link,
        uid,
        resource_version,
        generation,
        creation_timestamp,
        deletion_timestamp,
        deletion_grace_period_seconds,
        labels,
        annotations,
        owner_references,
        finalizers,
        managed_fields,
    } = m.unwrap_or_default();
    if !managed_fields.is_empty() {
        return Err(unsupported(
            "metadata.managedFields in a protobuf body is not supported".into(),
        ));
    }
    let mut out = Map::new();
    put(&mut out, "name", name.map(Value::String));
    put(&mut out, "generateName", generate_name.map(Value::String));
    put(&mut out, "namespace", namespace.map(Value::String));
    put(&mut out, "selfLink", self_link.map(Value::String));
    put(&mut out, "uid", uid.map(Value::String));
    put(
        &mut out,
        "resourceVersion",
        resource_version.map(Value::String),
    );
    put(&mut out, "generation", generation.map(|g| json!(g)));
    put(&mut out, "creationTimestamp", time(creation_timestamp));
    put(&mut out, "deletionTimestamp", time(deletion_timestamp));
    put(
        &mut out,
        "deletionGracePeriodSeconds",
        deletion_grace_period_seconds.map(|g| json!(g)),
    );
    put(&mut out, "labels", string_map(labels));
    put(&mut out, "annotations", string_map(annotations));
    let owners: Vec<Value> = owner_references
        .into_iter()
        .map(|r| {
            let meta::OwnerReference {
                api_version,
                kind,
                name,
                uid,
                controller,
                block_owner_deletion,
            } = r;
            let mut o = Map::new();
            put(&mut o, "apiVersion", api_version.map(Value::String));
            put(&mut o, "kind", kind.map(Value::String));
            put(&mut o, "name", name.map(Value::String));
            put(&mut o, "uid", uid.map(Value::String));
            put(&mut o, "controller", controller.map(Value::Bool));
            put(
                &mut o,
                "blockOwnerDeletion",
                block_owner_deletion.map(Value::Bool),
            );
            Value::Object(o)
        })
        .collect();
    put(
        &mut out,
        "ownerReferences",
        (!owners.is_empty()).then(|| json!(owners)),
    );
    put(&mut out, "finalizers", strings(finalizers));
    Ok(Value::Object(out))
}

fn namespace(n: core::Namespace) -> Result<Value, ApiError> {
    let core::Namespace {
        metadata,
        spec,
        status,
    } = n;
    // Status is server-owned: reset on create, as kube-apiserver's strategies do.
    let _ = status;
    let mut out = json!({"metadata": object_meta(metadata)?});
    if let Some(core::NamespaceSpec { finalizers }) = spec {
        out["spec"] = json!({});
        put(
            out["spec"].as_object_mut().expect("object"),
            "finalizers",
            strings(finalizers),
        );
    }
    Ok(out)
}

fn config_map(c: core::ConfigMap) -> Result<Value, ApiError> {
    let core::ConfigMap {
        metadata,
        immutable,
        data,
        binary_data,
    } = c;
    let mut out = Map::new();
    out.insert("metadata".into(), object_meta(metadata)?);
    put(&mut out, "immutable", immutable.map(Value::Bool));
    put(&mut out, "data", string_map(data));
    let binary: BTreeMap<String, String> = binary_data
        .into_iter()
        .map(|(k, v)| (k, base64_encode(&v)))
        .collect();
    put(&mut out, "binaryData", string_map(binary));
    Ok(Value::Object(out))
}

fn service(s: core::Service) -> Result<Value, ApiError> {
    let core::Service {
        metadata,
        spec,
        status,
    } = s;
    let _ = status;
    let mut out = Map::new();
    out.insert("metadata".into(), object_meta(metadata)?);
    if let Some(spec) = spec {
        out.insert("spec".into(), service_spec(spec));
    }
    Ok(Value::Object(out))
}

fn service_spec(s: core::ServiceSpec) -> Value {
    let core::ServiceSpec {
        ports,
        selector,
        cluster_ip,
        cluster_ips,
        r#type,
        external_ips,
        session_affinity,
        load_balancer_ip,
        load_balancer_source_ranges,
        external_name,
        external_traffic_policy,
        health_check_node_port,
        publish_not_ready_addresses,
        session_affinity_config,
        ip_families,
        ip_family_policy,
        allocate_load_balancer_node_ports,
        load_balancer_class,
        internal_traffic_policy,
        traffic_distribution,
    } = s;
    let s = |v: Option<String>| v.map(Value::String);
    let mut out = Map::new();
    let ports: Vec<Value> = ports
        .into_iter()
        .map(|p| {
            let core::ServicePort {
                name,
                protocol,
                app_protocol,
                port,
                target_port,
                node_port,
            } = p;
            let mut o = Map::new();
            put(&mut o, "name", s(name));
            put(&mut o, "protocol", s(protocol));
            put(&mut o, "appProtocol", s(app_protocol));
            put(&mut o, "port", port.map(|p| json!(p)));
            put(&mut o, "targetPort", target_port.map(int_or_string));
            put(&mut o, "nodePort", node_port.map(|p| json!(p)));
            Value::Object(o)
        })
        .collect();
    put(&mut out, "ports", (!ports.is_empty()).then(|| json!(ports)));
    put(&mut out, "selector", string_map(selector));
    put(&mut out, "clusterIP", s(cluster_ip));
    put(&mut out, "clusterIPs", strings(cluster_ips));
    put(&mut out, "type", s(r#type));
    put(&mut out, "externalIPs", strings(external_ips));
    put(&mut out, "sessionAffinity", s(session_affinity));
    put(&mut out, "loadBalancerIP", s(load_balancer_ip));
    put(
        &mut out,
        "loadBalancerSourceRanges",
        strings(load_balancer_source_ranges),
    );
    put(&mut out, "externalName", s(external_name));
    put(
        &mut out,
        "externalTrafficPolicy",
        s(external_traffic_policy),
    );
    put(
        &mut out,
        "healthCheckNodePort",
        health_check_node_port.map(|p| json!(p)),
    );
    put(
        &mut out,
        "publishNotReadyAddresses",
        publish_not_ready_addresses.map(Value::Bool),
    );
    if let Some(core::SessionAffinityConfig { client_ip }) = session_affinity_config {
        let timeout = client_ip.and_then(|c| {
            let core::ClientIpConfig { timeout_seconds } = c;
            timeout_seconds
        });
        let cfg = match timeout {
            Some(t) => json!({"clientIP": {"timeoutSeconds": t}}),
            None => json!({}),
        };
        out.insert("sessionAffinityConfig".into(), cfg);
    }
    put(&mut out, "ipFamilies", strings(ip_families));
    put(&mut out, "ipFamilyPolicy", s(ip_family_policy));
    put(
        &mut out,
        "allocateLoadBalancerNodePorts",
        allocate_load_balancer_node_ports.map(Value::Bool),
    );
    put(&mut out, "loadBalancerClass", s(load_balancer_class));
    put(
        &mut out,
        "internalTrafficPolicy",
        s(internal_traffic_policy),
    );
    put(&mut out, "trafficDistribution", s(traffic_distribution));
    Value::Object(out)
}

/// Standard base64 (what JSON `binaryData` holds).
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        }
        .encode(&mut out)
        .unwrap();
        out
    }

    fn meta_named(name: &str) -> Option<meta::ObjectMeta> {
        Some(meta::ObjectMeta {
            name: Some(name.into()),
            labels: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        })
    }

    #[test]
    fn namespace_configmap_and_service_decode_to_json() {
        let ns = core::Namespace {
            metadata: meta_named("x"),
            spec: Some(core::NamespaceSpec::default()),
            status: Some(core::NamespaceStatus::default()),
        };
        let v = decode(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "spec": {},
                   "metadata": {"name": "x", "labels": {"a": "b"}}})
        );

        let cm = core::ConfigMap {
            metadata: meta_named("c"),
            immutable: None,
            data: [("k".to_string(), "v".to_string())].into(),
            binary_data: [("b".to_string(), vec![0u8, 255])].into(),
        };
        let v = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(v["data"], json!({"k": "v"}));
        assert_eq!(v["binaryData"], json!({"b": "AP8="}));

        let svc = core::Service {
            metadata: meta_named("s"),
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    name: Some("http".into()),
                    port: Some(80),
                    target_port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("web".into()),
                    }),
                    ..Default::default()
                }],
                r#type: Some("ClusterIP".into()),
                selector: [("app".to_string(), "s".to_string())].into(),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
        assert_eq!(
            v["spec"],
            json!({"ports": [{"name": "http", "port": 80, "targetPort": "web"}],
                   "type": "ClusterIP", "selector": {"app": "s"}})
        );
    }

    #[test]
    fn bad_bodies_name_what_is_wrong() {
        let e = decode(b"{\"kind\": \"Namespace\"}").unwrap_err();
        assert_eq!(e.code(), 400);
        assert!(e.to_string().contains("magic"), "{e}");
        let e = decode(&envelope("v1", "Pod", vec![])).unwrap_err();
        assert_eq!(e.code(), 415);
        assert!(e.to_string().contains("v1 Pod"), "{e}");
        let e = decode(&envelope("v1", "Namespace", vec![0xff, 0xff])).unwrap_err();
        assert_eq!(e.code(), 400);
        assert!(e.to_string().contains("v1 Namespace"), "{e}");
        let with_status = core::Namespace {
            metadata: meta_named("x"),
            spec: None,
            status: Some(core::NamespaceStatus {
                phase: Some("Active".into()),
                conditions: vec![],
            }),
        };
        let v = decode(&envelope("v1", "Namespace", with_status.encode_to_vec())).unwrap();
        assert!(v.get("status").is_none(), "status is server-owned: {v}");
    }
}
