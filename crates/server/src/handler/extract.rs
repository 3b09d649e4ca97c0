//! Extractors whose every rejection is a Kubernetes `Status`.
//!
//! axum's own `Path` and `Query` reject with plain text (`Failed to deserialize query
//! string: …`), which kubectl and client libraries cannot read; these wrappers answer the
//! same cases with an [`ApiError`] naming the parameter. API handlers use them instead of
//! axum's (bodies go through [`super::read_body`] and [`cattery_api::wire::decode`]; an
//! unknown route and a wrong method are answered by the router's fallbacks in
//! [`crate::api::router`]).

use axum::extract::FromRequestParts;
use axum::response::IntoResponse;
use cattery_api::wire::{DecodeError, path_error};
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Path parameters (`{name}` segments), rejected as a 400 `Status`.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => {
                let code = e.status().as_u16();
                let text = e.body_text();
                // Don't log a path that could not be decoded: only say what is wrong.
                let message = if code == 400 {
                    format!("path {:?}: {text}", parts.uri.path())
                } else {
                    tracing::error!("path parameters: {text}");
                    format!("path parameters: {text}")
                };
                Err(ApiError::new(code, message))
            }
        }
    }
}

/// The query string decoded into `T` (strictly: an unknown parameter is refused by types
/// with `deny_unknown_fields`), rejected as a 400 `Status` naming the parameter. Handlers
/// that take a body call [`parse_query`] after reading it instead: answering before the
/// body is read resets an HTTP/2 stream, and clients then report that, not the 400.
// No route takes a typed query without a body yet; list and watch handlers will.
#[allow(dead_code)]
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Decodes a query string into `T`, with errors that name the parameter.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let message = match path_error(&e) {
            DecodeError::UnknownField {
                field, expected, ..
            } => match expected {
                Some(x) => format!("unknown query parameter {field:?} ({x})"),
                None => format!("unknown query parameter {field:?}"),
            },
            DecodeError::Schema { path, message } if !path.is_empty() => {
                format!("query parameter {path:?}: {message}")
            }
            other => format!("query string: {other}"),
        };
        ApiError::with_reason(400, "BadRequest", message)
    })
}

/// The answer to a request whose path is routed but whose method is not (axum adds the
/// `Allow` header).
pub async fn method_not_allowed(req: axum::extract::Request) -> axum::response::Response {
    ApiError::with_reason(
        405,
        "MethodNotAllowed",
        format!(
            "method {} is not allowed on {} (the Allow header lists the ones that are)",
            req.method(),
            req.uri().path()
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Q {
        #[serde(default)]
        manifest_format: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    }

    async fn handler(Path(name): Path<String>, Query(q): Query<Q>) -> String {
        format!(
            "{name} {} {}",
            q.manifest_format.unwrap_or_default(),
            q.limit.unwrap_or_default()
        )
    }

    fn app() -> Router {
        Router::new()
            .route("/things/{name}", get(handler))
            .method_not_allowed_fallback(method_not_allowed)
    }

    async fn call(method: &str, uri: &str) -> (u16, Option<String>, String) {
        let res = app()
            .oneshot(
                http::Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let code = res.status().as_u16();
        let allow = res
            .headers()
            .get(http::header::ALLOW)
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (code, allow, String::from_utf8_lossy(&body).into_owned())
    }

    fn status(body: &str) -> cattery_api::Status {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a Status ({e}): {body}"))
    }

    #[tokio::test]
    async fn good_requests_pass() {
        let (code, _, body) = call("GET", "/things/a?manifestFormat=x&limit=3").await;
        assert_eq!((code, body.as_str()), (200, "a x 3"));
    }

    #[tokio::test]
    async fn every_rejection_is_a_status_naming_the_problem() {
        let (code, _, body) = call("GET", "/things/a?manifestFromat=x").await;
        let s = status(&body);
        assert_eq!((code, s.code, s.reason.as_str()), (400, 400, "BadRequest"));
        assert!(
            s.message
                .starts_with(r#"unknown query parameter "manifestFromat""#),
            "{}",
            s.message
        );
        let (code, _, body) = call("GET", "/things/a?limit=many").await;
        let s = status(&body);
        assert_eq!(code, 400);
        assert!(
            s.message.starts_with(r#"query parameter "limit": "#),
            "{}",
            s.message
        );
        let (code, _, body) = call("GET", "/things/%FF").await;
        let s = status(&body);
        assert_eq!(code, 400);
        assert!(s.message.contains("UTF-8"), "{}", s.message);
        let (code, allow, body) = call("DELETE", "/things/a").await;
        let s = status(&body);
        assert_eq!((code, s.reason.as_str()), (405, "MethodNotAllowed"));
        assert!(allow.is_some_and(|a| a.contains("GET")));
        assert!(s.message.contains("DELETE"), "{}", s.message);
    }
}
