//! Sign-in with a token, and sign-out.
//!
//! The token is checked by asking the API who it belongs to (`SelfSubjectReview`), through
//! the same door as everything else: a wrong token counts against the address's
//! failed-authentication budget and lands in the audit trail. The sign-in form is itself
//! protected against cross-site posting by a random value in a short-lived cookie that
//! must match the form's hidden field.
//
// TODO(oidc): "Sign in with SSO" (authorization code + PKCE against the `--oidc-issuer`)
// belongs here once the server exposes its OIDC discovery; see the design note.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::Ui;
use crate::ctx::Ctx;
use crate::error::UiError;
use crate::session::{self, SIGNIN_COOKIE, random_hex, same_secret, set_cookie};

/// Query of the sign-in page.
#[derive(Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// Only a path on this site may be returned to (no open redirects).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with("/ui/sign-") =>
        {
            n.to_string()
        }
        _ => "/ui/overview".into(),
    }
}

fn page(next: &str, nonce: &str, error: Option<&str>, status: http::StatusCode) -> Response {
    let body: Markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { (crate::layout::head("Sign in")) }
            body.signin {
                main #main {
                    div.card.signin-card {
                        div.brand-big {
                            img src="/ui/assets/favicon.svg" alt="" width="40" height="40";
                            span { "Cattery" }
                        }
                        h1 { "Sign in" }
                        p.muted { "Use a Cattery token (" code { "cattery token create" } ") or the admin token from the server's data directory." }
                        form method="post" action="/ui/sign-in" {
                            input type="hidden" name="_signin" value=(nonce);
                            input type="hidden" name="next" value=(next);
                            div.field {
                                label for="token" { "Token" }
                                input #token type="password" name="token" autocomplete="current-password"
                                    required autofocus aria-invalid=[error.is_some().then_some("true")]
                                    aria-describedby=[error.is_some().then_some("token-error")];
                                @if let Some(e) = error { p #token-error.field-error role="alert" { (e) } }
                            }
                            button.primary type="submit" { "Sign in" }
                        }
                    }
                }
            }
        }
    };
    let mut res = (status, body).into_response();
    if let Ok(v) = set_cookie(SIGNIN_COOKIE, nonce, Some(Duration::from_secs(3600))).parse() {
        res.headers_mut().append(http::header::SET_COOKIE, v);
    }
    res
}

/// `GET /ui/sign-in`.
pub(crate) async fn form(
    State(ui): State<Arc<Ui>>,
    headers: http::HeaderMap,
    Query(q): Query<Next>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    let signed_in =
        session::cookie(&headers, session::COOKIE).is_some_and(|id| ui.sessions.get(&id).is_some());
    if signed_in {
        return Redirect::to(&next).into_response();
    }
    page(&next, &random_hex(), None, http::StatusCode::OK)
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(crate) struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    _signin: String,
}

/// `POST /ui/sign-in`.
pub(crate) async fn submit(
    State(ui): State<Arc<Ui>>,
    headers: http::HeaderMap,
    ext: http::Extensions,
    Form(f): Form<SignIn>,
) -> Response {
    let next = safe_next(Some(&f.next));
    let expected = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &f._signin) {
        return page(
            &next,
            &random_hex(),
            Some("This sign-in form has expired or was not sent by this page; try again."),
            http::StatusCode::FORBIDDEN,
        );
    }
    let token = f.token.trim();
    if token.is_empty() {
        return page(
            &next,
            &random_hex(),
            Some("Enter a token."),
            http::StatusCode::BAD_REQUEST,
        );
    }
    let caller = ui
        .api
        .caller(token.into(), &ext, headers.get(http::header::USER_AGENT));
    let review: Result<serde_json::Value, UiError> = caller
        .post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            &serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        )
        .await;
    let review = match review {
        Ok(r) => r,
        Err(UiError::SignedOut) => {
            return page(
                &next,
                &random_hex(),
                Some("The token was not accepted (unknown, revoked or expired)."),
                http::StatusCode::UNAUTHORIZED,
            );
        }
        Err(UiError::Api(s)) => {
            return page(
                &next,
                &random_hex(),
                Some(&s.message),
                http::StatusCode::from_u16(s.code).unwrap_or(http::StatusCode::BAD_REQUEST),
            );
        }
        Err(e) => {
            return page(
                &next,
                &random_hex(),
                Some(&e.explain().0),
                http::StatusCode::BAD_GATEWAY,
            );
        }
    };
    let info = &review["status"]["userInfo"];
    let user = info["username"].as_str().unwrap_or("").to_string();
    let groups = info["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let id = ui.sessions.create(token.into(), user.clone(), groups);
    tracing::info!(user, "signed in to the UI");
    let mut res = Redirect::to(&next).into_response();
    let h = res.headers_mut();
    if let Ok(v) = set_cookie(session::COOKIE, &id, Some(ui.config.session_absolute)).parse() {
        h.append(http::header::SET_COOKIE, v);
    }
    if let Ok(v) = set_cookie(SIGNIN_COOKIE, "", None).parse() {
        h.append(http::header::SET_COOKIE, v);
    }
    res
}

/// `POST /ui/sign-out`: ends the session on the server and clears the cookie.
pub(crate) async fn sign_out(
    ctx: Ctx,
    headers: http::HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = ctx.check_csrf(&headers, &form) {
        return ctx.finish(Err(e)).await;
    }
    ctx.ui.sessions.remove(&ctx.session_id);
    let mut res = Redirect::to("/ui/sign-in").into_response();
    if let Ok(v) = set_cookie(session::COOKIE, "", None).parse() {
        res.headers_mut().append(http::header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_next(Some("/ui/flows?x=1")), "/ui/flows?x=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "/ui/sign-in",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/overview", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/overview");
    }
}
