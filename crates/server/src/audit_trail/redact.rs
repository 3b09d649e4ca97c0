//! Secrets in query strings are not written to the audit trail.
//!
//! Clients put credentials in URLs more often than they should (`?access_token=…` for
//! WebSockets that cannot set headers, OAuth `code`/`state` on redirects). The audit
//! trail keeps every request's `requestURI` for months and shows it to everyone allowed
//! to read audit logs, so the values of these parameters (names compared ignoring
//! ASCII case, after percent-decoding) are replaced by `REDACTED`; the parameter name
//! stays so the event still says a credential was sent:
//!
//! `access_token`, `token`, `id_token`, `refresh_token`, `password`, `passwd`, `secret`,
//! `client_secret`, `api_key`, `apikey`, `key`, `code`, `signature`, `sig`, `auth`,
//! `authorization`, `bearer`, `credential`, `credentials`, `session`, `jwt`,
//! `x-amz-signature`, `x-amz-credential`, `x-amz-security-token`.
//!
//! Everything else (paths, `labelSelector`, `watch`, …) is kept byte for byte.

/// The query parameters whose values are redacted (lowercase).
pub const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "id_token",
    "refresh_token",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "key",
    "code",
    "signature",
    "sig",
    "auth",
    "authorization",
    "bearer",
    "credential",
    "credentials",
    "session",
    "jwt",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// What a redacted value becomes.
pub const REDACTED: &str = "REDACTED";

/// `uri` (path and query) with the values of [`SECRET_PARAMS`] replaced by [`REDACTED`].
pub fn redact_uri(uri: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.into();
    };
    let mut changed = false;
    let parts: Vec<std::borrow::Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded: String = form_urlencoded::parse(name.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            if !value.is_empty() && is_secret(&decoded) {
                changed = true;
                format!("{name}={REDACTED}").into()
            } else {
                pair.into()
            }
        })
        .collect();
    if !changed {
        return uri.into();
    }
    format!("{path}?{}", parts.join("&")).into()
}

fn is_secret(name: &str) -> bool {
    SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_redacted_and_names_kept() {
        assert_eq!(
            redact_uri("/clusters/a/k8s/api/v1/pods?watch=1&access_token=abc.def&limit=5"),
            "/clusters/a/k8s/api/v1/pods?watch=1&access_token=REDACTED&limit=5"
        );
        assert_eq!(
            redact_uri("/x?Token=s3cret&PASSWORD=p&client%5Fsecret=c&code=xyz&id_token=j"),
            "/x?Token=REDACTED&PASSWORD=REDACTED&client%5Fsecret=REDACTED&code=REDACTED&id_token=REDACTED"
        );
    }

    #[test]
    fn other_uris_are_kept_as_they_are() {
        for u in [
            "/apis/cattery.dev/v1/managedclusters",
            "/api/v1/pods?labelSelector=app%3Dweb&tokenizer=x&watch=true",
            "/x?token=",
            "/x?token",
            "/x?",
        ] {
            assert_eq!(redact_uri(u), u);
        }
    }
}
