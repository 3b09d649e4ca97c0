//! Keeps an SSO session's ID token fresh: ahead of its expiry, the issuer's refresh token
//! is redeemed for a new ID token, which becomes the session's bearer token once the API
//! says it names the same person. Without a refresh token, or when refreshing keeps
//! failing, the session ends when its ID token expires.

use std::time::{Instant, SystemTime};

use crate::Ui;
use crate::session::Session;

/// The session to serve this request with: `session` itself, or with a refreshed ID token
/// when it was due; `None` when the session has ended (its ID token expired and could not
/// be renewed, or the renewed one names someone else).
pub(crate) async fn ensure(
    ui: &Ui,
    id: &str,
    session: Session,
    headers: &http::HeaderMap,
    ext: &http::Extensions,
) -> Option<Session> {
    let due = session
        .sso
        .as_ref()
        .is_some_and(|t| t.refresh_token.is_some() && Instant::now() >= t.refresh_at);
    let Some(provider) = ui.config.sso.clone().filter(|_| due) else {
        return Some(session);
    };
    let lock = session.sso.as_ref()?.lock.clone();
    let _guard = lock.lock().await;
    // Another request of this session may have refreshed while this one waited.
    let session = ui.sessions.get(id)?;
    let sso = session.sso.clone()?;
    let Some(refresh_token) = sso
        .refresh_token
        .clone()
        .filter(|_| Instant::now() >= sso.refresh_at)
    else {
        return Some(session);
    };
    match provider.refresh(&refresh_token).await {
        Ok(login) => match crate::pages::signin::who(ui, &login.id_token, headers, ext).await {
            Ok((user, _)) if user == session.user => {
                let left = login
                    .expires_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                ui.sessions.refreshed(
                    id,
                    login.id_token.into(),
                    Instant::now() + left,
                    login.refresh_token.map(Into::into),
                );
                tracing::info!(user, "UI: refreshed the SSO session's ID token");
                return ui.sessions.get(id);
            }
            Ok((other, _)) => {
                tracing::warn!(
                    user = session.user,
                    other,
                    "UI: the refreshed ID token names someone else; session ended"
                );
                ui.sessions.remove(id);
                return None;
            }
            Err((message, _)) => {
                tracing::warn!(
                    user = session.user,
                    "UI: the refreshed ID token was not accepted: {message}"
                );
                ui.sessions.refresh_failed(id);
            }
        },
        Err(e) => {
            tracing::warn!(
                user = session.user,
                "UI: refreshing the SSO session failed: {e}"
            );
            ui.sessions.refresh_failed(id);
        }
    }
    if Instant::now() < sso.expires {
        Some(session)
    } else {
        ui.sessions.remove(id);
        None
    }
}

/// At sign-out: revokes the ended session's refresh token at the issuer (RFC 7009) when it
/// has one and the issuer advertises a `revocation_endpoint`, so that the token, which
/// outlives Cattery's session, cannot be redeemed afterwards. A failure is logged and does
/// not keep the person signed in: the session is already deleted on the server.
pub(crate) async fn revoke_at_sign_out(ui: &Ui, session: &Session) {
    let Some(refresh_token) = session.sso.as_ref().and_then(|t| t.refresh_token.clone()) else {
        return;
    };
    let Some(provider) = ui.config.sso.clone() else {
        return;
    };
    match provider.revoke(&refresh_token).await {
        Ok(true) => tracing::info!(
            user = session.user,
            "UI: revoked the SSO session's refresh token at the issuer"
        ),
        Ok(false) => tracing::info!(
            user = session.user,
            "UI: the issuer has no revocation endpoint; the refresh token is not revoked"
        ),
        Err(e) => tracing::warn!(
            user = session.user,
            "UI: revoking the SSO session's refresh token failed: {e}"
        ),
    }
}
