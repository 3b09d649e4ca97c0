//! In-process calls to the API router as the signed-in person: the only way the UI reads
//! or changes anything, so the API's door (authentication, RBAC, audit) decides every one.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use cattery_api::Status;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use crate::ForwardExtensions;
use crate::error::UiError;

/// Largest API response the UI reads into memory.
const MAX_RESPONSE: usize = 256 << 20;

/// The API router and how to forward connection details to it.
#[derive(Clone)]
pub(crate) struct Api {
    router: Router,
    forward: ForwardExtensions,
}

impl Api {
    pub(crate) fn new(router: Router, forward: ForwardExtensions) -> Self {
        Api { router, forward }
    }

    /// A caller presenting `token`, with the browser request's forwarded details.
    pub(crate) fn caller(
        &self,
        token: Arc<str>,
        from: &http::Extensions,
        user_agent: Option<&http::HeaderValue>,
    ) -> Caller {
        let mut ext = http::Extensions::new();
        (self.forward)(from, &mut ext);
        Caller {
            api: self.clone(),
            token,
            ext,
            user_agent: user_agent.cloned(),
        }
    }
}

/// Makes API requests as one person.
#[derive(Clone)]
pub(crate) struct Caller {
    api: Api,
    token: Arc<str>,
    ext: http::Extensions,
    user_agent: Option<http::HeaderValue>,
}

impl Caller {
    /// Sends a request and returns the API's response as is (used for streams).
    pub(crate) async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<Body>, UiError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let ua = match &self.user_agent {
            Some(ua) => format!("cattery-ui ({})", ua.to_str().unwrap_or("")),
            None => "cattery-ui".to_string(),
        };
        req = req.header(
            http::header::USER_AGENT,
            http::HeaderValue::from_str(&ua)
                .unwrap_or(http::HeaderValue::from_static("cattery-ui")),
        );
        let mut req = req
            .body(Body::from(body.unwrap_or_default()))
            .map_err(|e| UiError::Unreachable(format!("building an API request: {e}")))?;
        req.extensions_mut().extend(self.ext.clone());
        let res = self
            .api
            .router
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| UiError::Unreachable(format!("the API failed: {e}")))?;
        Ok(res)
    }

    /// Sends a request; a non-2xx answer becomes the error the API gave.
    pub(crate) async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Bytes, UiError> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let res = self.send(method, path, body).await?;
        let status = res.status();
        let bytes = http_body_util::Limited::new(res.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| UiError::Unreachable(format!("reading the API's answer: {e}")))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(api_error(status, &bytes))
    }

    /// [`Caller::call`] and decode the JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, UiError> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| UiError::Unreachable(format!("decoding the API's answer to {path}: {e}")))
    }

    /// `GET` JSON.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, UiError> {
        self.json(http::Method::GET, path, None).await
    }

    /// `POST` JSON, decode JSON.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, UiError> {
        self.json(http::Method::POST, path, Some(body)).await
    }

    /// Asks the API whether this person may do something (a `SelfSubjectAccessReview`).
    pub(crate) async fn can_i(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: Option<&str>,
        name: Option<&str>,
    ) -> Result<(bool, String), UiError> {
        let mut attrs = serde_json::json!({"verb": verb, "group": group, "resource": resource});
        if let Some(s) = subresource {
            attrs["subresource"] = s.into();
        }
        if let Some(n) = name {
            attrs["name"] = n.into();
        }
        let v: serde_json::Value = self
            .post(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                &serde_json::json!({
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": attrs},
                }),
            )
            .await?;
        Ok((
            v.pointer("/status/allowed")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            v.pointer("/status/reason")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_string(),
        ))
    }
}

/// The error an API answer stands for (its `Status` body when it has one).
pub(crate) fn api_error(status: http::StatusCode, body: &[u8]) -> UiError {
    if status == http::StatusCode::UNAUTHORIZED {
        return UiError::SignedOut;
    }
    let parsed: Option<Status> = serde_json::from_slice(body).ok();
    UiError::Api(Box::new(parsed.unwrap_or_else(|| {
        Status::failure(
            status.as_u16(),
            String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
        )
    })))
}

/// Percent-encodes one URL path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
