//! Sign-in with a token, and sign-out.
//!
//! The token is checked by asking the API who it belongs to (`SelfSubjectReview`), through
//! the same door as everything else: a wrong token counts against the address's
//! failed-authentication budget and lands in the audit trail. The sign-in form is itself
//! protected against cross-site posting by a random value in a short-lived cookie that
//! must match the form's hidden field.
//!
//! "Sign in with SSO" (offered when the server supplies an [`crate::SsoProvider`]) runs the
//! OpenID Connect authorization code flow with PKCE, `state` and `nonce`: `GET
//! /ui/sign-in/sso` remembers the attempt ([`crate::sso`]) and sends the browser to the
//! issuer; `GET /ui/sign-in/sso/callback` checks `state`, has the provider redeem the code
//! and verify the ID token, asks the API who the ID token belongs to (the same door as a
//! token sign-in), and starts a session that ends when the ID token expires.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::Ui;
use crate::ctx::Ctx;
use crate::error::UiError;
use crate::session::{self, SIGNIN_COOKIE, random_hex, same_secret, set_cookie};
use crate::sso;

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

fn page(
    ui: &Ui,
    next: &str,
    nonce: &str,
    error: Option<&str>,
    status: http::StatusCode,
) -> Response {
    let sso = ui.config.sso.is_some();
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
                        @if sso {
                            p.muted.or { "or" }
                            a.button.sso href={ "/ui/sign-in/sso?next=" (crate::api::enc(next)) } { "Sign in with SSO" }
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
    page(&ui, &next, &random_hex(), None, http::StatusCode::OK)
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
            &ui,
            &next,
            &random_hex(),
            Some("This sign-in form has expired or was not sent by this page; try again."),
            http::StatusCode::FORBIDDEN,
        );
    }
    let token = f.token.trim();
    if token.is_empty() {
        return page(
            &ui,
            &next,
            &random_hex(),
            Some("Enter a token."),
            http::StatusCode::BAD_REQUEST,
        );
    }
    let (user, groups) = match who(&ui, token, &headers, &ext).await {
        Ok(w) => w,
        Err((message, status)) => {
            return page(&ui, &next, &random_hex(), Some(&message), status);
        }
    };
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

/// Who `token` belongs to, asked of the API (`SelfSubjectReview`) through its door: user
/// name and groups, or the message and status of the sign-in page explaining the refusal.
pub(crate) async fn who(
    ui: &Ui,
    token: &str,
    headers: &http::HeaderMap,
    ext: &http::Extensions,
) -> Result<(String, Vec<String>), (String, http::StatusCode)> {
    let caller = ui
        .api
        .caller(token.into(), ext, headers.get(http::header::USER_AGENT));
    let review: Result<serde_json::Value, UiError> = caller
        .post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            &serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        )
        .await;
    let review = match review {
        Ok(r) => r,
        Err(UiError::SignedOut) => {
            return Err((
                "The token was not accepted (unknown, revoked or expired).".into(),
                http::StatusCode::UNAUTHORIZED,
            ));
        }
        Err(UiError::Api(s)) => {
            return Err((
                s.message.clone(),
                http::StatusCode::from_u16(s.code).unwrap_or(http::StatusCode::BAD_REQUEST),
            ));
        }
        Err(e) => return Err((e.explain().0, http::StatusCode::BAD_GATEWAY)),
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
    Ok((user, groups))
}

/// The sign-in page with an SSO failure, clearing the pending sign-in's cookie.
fn sso_failed(ui: &Ui, next: &str, message: &str, status: http::StatusCode) -> Response {
    let mut res = page(ui, next, &random_hex(), Some(message), status);
    if let Ok(v) = sso::pending_cookie(None).parse() {
        res.headers_mut().append(http::header::SET_COOKIE, v);
    }
    res
}

/// `GET /ui/sign-in/sso`: remembers a new attempt (bound to this browser by a cookie) and
/// sends the browser to the issuer.
pub(crate) async fn sso_start(State(ui): State<Arc<Ui>>, Query(q): Query<Next>) -> Response {
    let next = safe_next(q.next.as_deref());
    let Some(provider) = ui.config.sso.clone() else {
        return page(
            &ui,
            &next,
            &random_hex(),
            Some("Sign-in with SSO is not configured on this server; use a token."),
            http::StatusCode::NOT_FOUND,
        );
    };
    let start = provider.start();
    let id = ui.pending.insert(start.pending, next);
    let mut res = Redirect::to(&start.url).into_response();
    if let Ok(v) = sso::pending_cookie(Some(&id)).parse() {
        res.headers_mut().append(http::header::SET_COOKIE, v);
    }
    res
}

/// What the issuer sends the browser back with.
#[derive(Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Issuer-supplied text shown on the page: printable, at most 200 characters.
fn issuer_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
}

/// `GET /ui/sign-in/sso/callback`: the issuer's answer. Checks that it belongs to this
/// browser's pending attempt (`state`), redeems the code, and starts the session.
pub(crate) async fn sso_callback(
    State(ui): State<Arc<Ui>>,
    headers: http::HeaderMap,
    ext: http::Extensions,
    Query(cb): Query<Callback>,
) -> Response {
    let default_next = safe_next(None);
    let Some(provider) = ui.config.sso.clone() else {
        return sso_failed(
            &ui,
            &default_next,
            "Sign-in with SSO is not configured on this server; use a token.",
            http::StatusCode::NOT_FOUND,
        );
    };
    let taken = session::cookie(&headers, sso::PENDING_COOKIE).and_then(|id| ui.pending.take(&id));
    let Some((pending, next)) = taken else {
        return sso_failed(
            &ui,
            &default_next,
            "No SSO sign-in is waiting in this browser: it was already completed, took longer \
             than 10 minutes, or was started in another browser. Sign in again.",
            http::StatusCode::BAD_REQUEST,
        );
    };
    if !cb
        .state
        .as_deref()
        .is_some_and(|s| same_secret(s, &pending.state))
    {
        return sso_failed(
            &ui,
            &next,
            "The identity provider's answer does not belong to this browser's sign-in (its \
             state does not match). Sign in again.",
            http::StatusCode::BAD_REQUEST,
        );
    }
    if let Some(error) = &cb.error {
        let detail = cb
            .error_description
            .as_deref()
            .map(|d| format!(": {}", issuer_text(d)))
            .unwrap_or_default();
        return sso_failed(
            &ui,
            &next,
            &format!(
                "The identity provider refused the sign-in ({}){detail}.",
                issuer_text(error)
            ),
            http::StatusCode::UNAUTHORIZED,
        );
    }
    let Some(code) = cb.code.as_deref().filter(|c| !c.is_empty()) else {
        return sso_failed(
            &ui,
            &next,
            "The identity provider sent the browser back without an authorization code.",
            http::StatusCode::BAD_REQUEST,
        );
    };
    let login = match provider.finish(&pending, code).await {
        Ok(l) => l,
        Err(e) => {
            return sso_failed(
                &ui,
                &next,
                &format!("Sign-in with SSO failed: {e}"),
                http::StatusCode::UNAUTHORIZED,
            );
        }
    };
    let (user, groups) = match who(&ui, &login.id_token, &headers, &ext).await {
        Ok(w) => w,
        Err((message, status)) => return sso_failed(&ui, &next, &message, status),
    };
    let remaining = login
        .expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    if remaining.is_zero() {
        return sso_failed(
            &ui,
            &next,
            "The identity provider issued an ID token that has already expired.",
            http::StatusCode::UNAUTHORIZED,
        );
    }
    let renewable = login.refresh_token.is_some();
    let id = ui.sessions.create_sso(
        login.id_token.into(),
        user.clone(),
        groups,
        Instant::now() + remaining,
        login.refresh_token.map(Into::into),
    );
    tracing::info!(user, renewable, "signed in to the UI with SSO");
    // Not a redirect: the browser arrived here from the issuer (a cross-site navigation),
    // and browsers withhold `SameSite=Strict` cookies on every hop of such a redirect
    // chain. A page of our own that moves on by itself makes the next request same-site.
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta http-equiv="refresh" content={ "0;url=" (next) };
                (crate::layout::head("Signed in"))
            }
            body.signin {
                main #main {
                    div.card.signin-card {
                        h1 { "Signed in" }
                        p { "Signed in as " strong { (user) } ". " a href=(next) { "Continue" } }
                    }
                }
            }
        }
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    // Without a refresh token the session cannot outlive its ID token; neither can the cookie.
    let age = if renewable {
        ui.config.session_absolute
    } else {
        remaining.min(ui.config.session_absolute)
    };
    if let Ok(v) = set_cookie(session::COOKIE, &id, Some(age)).parse() {
        h.append(http::header::SET_COOKIE, v);
    }
    if let Ok(v) = sso::pending_cookie(None).parse() {
        h.append(http::header::SET_COOKIE, v);
    }
    res
}

/// `POST /ui/sign-out`: ends the session on the server and clears the cookie. A session
/// signed in with SSO has its refresh token revoked at the issuer when it advertises a
/// `revocation_endpoint` (RFC 7009), and is then ended at the issuer too when it advertises
/// an `end_session_endpoint` (RP-initiated logout), which sends the browser back to the
/// sign-in page.
pub(crate) async fn sign_out(
    ctx: Ctx,
    headers: http::HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = ctx.check_csrf(&headers, &form) {
        return ctx.finish(Err(e)).await;
    }
    ctx.ui.sessions.remove(&ctx.session_id);
    tracing::info!(user = ctx.session.user, "signed out of the UI");
    crate::refresh::revoke_at_sign_out(&ctx.ui, &ctx.session).await;
    let at_issuer = ctx
        .session
        .sso
        .as_ref()
        .and(ctx.ui.config.sso.as_ref())
        .and_then(|p| p.logout_url(&ctx.session.token));
    let mut res = match at_issuer {
        // A page, not a redirect: the Content-Security-Policy's `form-action 'self'` also
        // covers the redirects that follow a form's submission, so a 303 to the issuer
        // would be blocked. The page moves on by itself (no script).
        Some(url) => html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta http-equiv="refresh" content={ "0;url=" (url) };
                    (crate::layout::head("Signed out"))
                }
                body.signin {
                    main #main {
                        div.card.signin-card {
                            h1 { "Signed out" }
                            p { "Signed out of Cattery. " a #issuer-logout href=(url) { "Sign out at the identity provider too" } "." }
                        }
                    }
                }
            }
        }
        .into_response(),
        None => Redirect::to("/ui/sign-in").into_response(),
    };
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
