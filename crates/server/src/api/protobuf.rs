//! The one protobuf body the hub must read: client-go (so `kubectl auth can-i`) sends
//! built-in kinds as `application/vnd.kubernetes.protobuf`, and a
//! `SelfSubjectAccessReview` is a built-in kind. The envelope (`k8s\0` + `runtime.Unknown`)
//! and the review's fields are declared with `prost` (field numbers from
//! `k8s.io/api/authorization/v1/generated.proto`); fields not declared are skipped, as
//! protobuf allows. The result is the JSON form, so one decoder checks both encodings.

use prost::Message;
use serde_json::{Value, json};

use super::ApiError;

/// The media type client-go uses for protobuf.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct Review {
    #[prost(message, optional, tag = "2")]
    spec: Option<Spec>,
}

#[derive(Clone, PartialEq, Message)]
struct Spec {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributes>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceAttributes {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
    #[prost(string, optional, tag = "3")]
    group: Option<String>,
    #[prost(string, optional, tag = "4")]
    version: Option<String>,
    #[prost(string, optional, tag = "5")]
    resource: Option<String>,
    #[prost(string, optional, tag = "6")]
    subresource: Option<String>,
    #[prost(string, optional, tag = "7")]
    name: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct NonResourceAttributes {
    #[prost(string, optional, tag = "1")]
    path: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
}

fn bad(msg: impl std::fmt::Display) -> ApiError {
    ApiError::with_reason(400, "BadRequest", format!("protobuf body: {msg}"))
}

/// Whether a request's `Content-Type` is Kubernetes protobuf.
pub fn is_protobuf(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.split(';').next().unwrap_or("").trim() == PROTOBUF)
}

/// A protobuf `SelfSubjectAccessReview` as its JSON form.
pub fn self_subject_access_review(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s\\0 prefix"))?;
    let env = Unknown::decode(rest).map_err(bad)?;
    let tm = env.type_meta.unwrap_or_default();
    let review = Review::decode(env.raw.unwrap_or_default().as_slice()).map_err(bad)?;
    let spec = review.spec.unwrap_or_default();
    let mut s = json!({});
    if let Some(r) = spec.resource_attributes {
        s["resourceAttributes"] = json!({"namespace": r.namespace, "verb": r.verb, "group": r.group,
            "version": r.version, "resource": r.resource, "subresource": r.subresource, "name": r.name});
    }
    if let Some(n) = spec.non_resource_attributes {
        s["nonResourceAttributes"] = json!({"path": n.path, "verb": n.verb});
    }
    Ok(json!({
        "apiVersion": tm.api_version.unwrap_or_default(),
        "kind": tm.kind.unwrap_or_default(),
        "spec": s,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_client_go_sends() {
        let review = Review {
            spec: Some(Spec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("create".into()),
                    group: Some("cattery.dev".into()),
                    resource: Some("managedclusters".into()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
        };
        let env = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("authorization.k8s.io/v1".into()),
                kind: Some("SelfSubjectAccessReview".into()),
            }),
            raw: Some(review.encode_to_vec()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(env.encode_to_vec());
        let v = self_subject_access_review(&body).unwrap();
        assert_eq!(v["kind"], "SelfSubjectAccessReview");
        assert_eq!(
            v["spec"]["resourceAttributes"]["resource"],
            "managedclusters"
        );
        assert!(self_subject_access_review(b"{}").is_err());
    }
}
