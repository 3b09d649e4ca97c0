//! What can go wrong behind a page, and the clear state each one is shown as.

use cattery_api::Status;
use maud::{Markup, html};

/// A failure while building a page.
#[derive(Debug)]
pub(crate) enum UiError {
    /// The API refused or failed the request; its `Status` says why (a 403's message names
    /// the missing permission).
    Api(Box<Status>),
    /// The API no longer accepts the session's token (revoked, expired): sign in again.
    SignedOut,
    /// The API could not be asked or answered nonsense.
    Unreachable(String),
    /// A cluster, log type or page named in the URL does not exist.
    NotFound {
        /// What kind of thing (`cluster`, `log type`, `page`).
        what: &'static str,
        /// The name given.
        name: String,
        /// What to do instead.
        hint: String,
    },
    /// A request without a valid CSRF token.
    Csrf,
}

impl UiError {
    /// The HTTP status the page is answered with.
    pub(crate) fn status(&self) -> http::StatusCode {
        match self {
            UiError::Api(s) => {
                http::StatusCode::from_u16(s.code).unwrap_or(http::StatusCode::BAD_GATEWAY)
            }
            UiError::SignedOut => http::StatusCode::UNAUTHORIZED,
            UiError::Unreachable(_) => http::StatusCode::BAD_GATEWAY,
            UiError::NotFound { .. } => http::StatusCode::NOT_FOUND,
            UiError::Csrf => http::StatusCode::FORBIDDEN,
        }
    }

    /// Title and body of the page that explains the failure.
    pub(crate) fn explain(&self) -> (String, Markup) {
        match self {
            UiError::Api(s) if s.code == 403 => (
                "Permission needed".into(),
                html! {
                    div.notice.error role="alert" {
                        p { strong { "You do not have permission to see this." } }
                        p.reason { (s.message) }
                        p { "Ask an administrator for a role granting it, or see "
                            a href="/ui/access" { "Access" } " for what you may do." }
                    }
                },
            ),
            UiError::Api(s) if s.code == 503 => (
                "Cluster unavailable".into(),
                html! {
                    div.notice.warn role="alert" {
                        p { strong { "The cluster cannot be reached right now." } }
                        p.reason { (s.message) }
                        p { "Live data comes through the cluster's agent; stored logs are still searchable." }
                    }
                },
            ),
            UiError::Api(s) => (
                format!("{} ({})", s.reason, s.code),
                html! {
                    div.notice.error role="alert" {
                        p { strong { "The API refused the request." } }
                        p.reason { (s.message) }
                    }
                },
            ),
            UiError::SignedOut => (
                "Signed out".into(),
                html! { div.notice role="alert" { p { "Your session has ended. " a href="/ui/sign-in" { "Sign in again" } "." } } },
            ),
            UiError::Unreachable(m) => (
                "Server unreachable".into(),
                html! {
                    div.notice.error role="alert" {
                        p { strong { "The management plane did not answer." } }
                        p.reason { (m) }
                        p { "Retry in a moment." }
                    }
                },
            ),
            UiError::NotFound { what, name, hint } => (
                format!("Unknown {what}"),
                html! {
                    div.notice.error role="alert" {
                        p { strong { "There is no " (what) " " code { (name) } "." } }
                        p { (hint) }
                    }
                },
            ),
            UiError::Csrf => (
                "Request refused".into(),
                html! {
                    div.notice.error role="alert" {
                        p { strong { "This form was not sent by this page (missing or wrong CSRF token)." } }
                        p { "Reload the page and try again." }
                    }
                },
            ),
        }
    }
}
