//! "Can I?" and "who am I?": Kubernetes' `SelfSubjectAccessReview` and
//! `SelfSubjectReview`, at the same paths, so `cattery auth can-i|whoami` (and tools that
//! speak these APIs) ask the management plane exactly what it will decide.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, SelfSubjectReviewStatus, UserInfo};
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReviewStatus};

use super::gate::{AuthenticatedBy, decide};
use super::request_info::{RequestInfo, Target};
use super::{ApiError, MAX_RESOURCE_BODY, identity, read_body, respond};
use crate::AppState;

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
pub async fn access_review(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let who = identity(&req);
    let headers = req.headers().clone();
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    let mut review: SelfSubjectAccessReview = if super::protobuf::is_protobuf(&headers) {
        cattery_api::wire::from_value(super::protobuf::self_subject_access_review(&body)?)?
    } else {
        cattery_api::wire::decode(&body)?
    };
    let spec = &review.spec;
    let authz = state.authz.current();
    let decision = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(r), None) => {
            let verb = r.verb.clone().unwrap_or_default();
            let group = r.group.clone().unwrap_or_default();
            let resource = r.resource.clone().unwrap_or_default();
            if verb.is_empty() || resource.is_empty() {
                return Err(ApiError::with_reason(
                    400,
                    "Invalid",
                    "SelfSubjectAccessReview spec.resourceAttributes: verb and resource are required",
                ));
            }
            let name = r.name.clone().filter(|n| !n.is_empty());
            if group == cattery_rbac::GROUP_LOGS
                && verb == "get"
                && let Some(cluster) = &name
            {
                // Log reads are allowed by either convention; ask the same question the
                // log API asks.
                authz.log_access(
                    &cattery_rbac::Requester {
                        user: &who.user,
                        groups: &who.groups,
                    },
                    &resource,
                    cluster,
                )
            } else {
                decide(
                    &authz,
                    &who,
                    &RequestInfo {
                        verb,
                        target: Target::Resource {
                            api_group: group,
                            resource,
                            subresource: r.subresource.clone().filter(|s| !s.is_empty()),
                            namespace: r.namespace.clone().filter(|s| !s.is_empty()),
                            name,
                        },
                    },
                )
            }
        }
        (None, Some(n)) => decide(
            &authz,
            &who,
            &RequestInfo {
                verb: n.verb.clone().unwrap_or_default(),
                target: Target::NonResource {
                    path: n.path.clone().unwrap_or_default(),
                },
            },
        ),
        _ => {
            return Err(ApiError::with_reason(
                400,
                "Invalid",
                "SelfSubjectAccessReview spec: exactly one of resourceAttributes and nonResourceAttributes is required",
            ));
        }
    };
    review.status = Some(SubjectAccessReviewStatus {
        allowed: decision.allowed,
        denied: Some(!decision.allowed),
        reason: Some(decision.reason),
        evaluation_error: None,
    });
    Ok(respond(&headers, http::StatusCode::CREATED, &review))
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (any body).
pub async fn whoami(req: Request) -> Result<Response, ApiError> {
    let who = identity(&req);
    let by = req
        .extensions()
        .get::<AuthenticatedBy>()
        .map(|b| b.0.clone());
    let extra = by.map(|b| [("cattery.dev/authenticated-by".to_string(), vec![b])].into());
    let review = SelfSubjectReview {
        metadata: Default::default(),
        status: Some(SelfSubjectReviewStatus {
            user_info: Some(UserInfo {
                username: Some(who.user),
                groups: Some(who.groups),
                extra,
                uid: None,
            }),
        }),
    };
    Ok(respond(req.headers(), http::StatusCode::CREATED, &review))
}
