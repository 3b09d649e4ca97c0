//! Browser sign-in at the OpenID Connect issuer: the authorization code flow with PKCE
//! (S256), `state` and `nonce`, for the UI's "Sign in with SSO".
//!
//! The endpoints come from the issuer's discovery document (so browser sign-in needs
//! [`super::oidc::JwksSource::Discovery`]); the redirect URI is configuration
//! ([`BrowserSignIn::redirect_url`]), never derived from a request's `Host` header. The
//! `oauth2` crate builds the authorization URL and the token request and parses the
//! answer; the request itself goes over the same hyper client (rustls, the configured CA,
//! plain `http://` on loopback only) that fetches the discovery document. The ID token is
//! then verified by [`OidcAuthenticator::verify_id_token`]: exactly as a bearer token
//! (signature, `iss`, `aud`, `exp`, `nbf`) plus the sign-in's `nonce`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};

use super::oidc::{
    FETCH_TIMEOUT, MAX_JWKS_BYTES, OidcAuthenticator, OidcError, chain, echo, issuer_client,
    parse_url,
};

/// The path of the UI's callback; [`BrowserSignIn::redirect_url`] must end with it.
pub const CALLBACK_PATH: &str = "/ui/sign-in/sso/callback";
/// Where the issuer sends the browser back after signing out there (RP-initiated logout):
/// the server's URL (from [`BrowserSignIn::redirect_url`]) followed by this path.
pub const POST_LOGOUT_PATH: &str = "/ui/sign-in";

/// How browser sign-in is configured (`cattery server --oidc-redirect-url ...`).
#[derive(Clone, Debug)]
pub struct BrowserSignIn {
    /// The redirect URI registered at the issuer: the server's public URL followed by
    /// [`CALLBACK_PATH`], e.g. `https://cattery.example.com:9443/ui/sign-in/sso/callback`.
    pub redirect_url: String,
    /// The client secret, for issuers that register Cattery as a confidential client;
    /// `None` for a public client (PKCE only).
    pub client_secret: Option<String>,
    /// Scopes asked for besides `openid` (e.g. `email`, `groups`).
    pub extra_scopes: Vec<String>,
}

/// The token endpoint's answer: OAuth 2.0's plus OpenID Connect's `id_token`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
struct IdTokenFields {
    id_token: Option<String>,
}

impl oauth2::ExtraTokenFields for IdTokenFields {}

type OauthClient = oauth2::Client<
    BasicErrorResponse,
    StandardTokenResponse<IdTokenFields, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

type TokenClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One call to the token endpoint, as `oauth2` awaits it.
type CallFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, CallError>> + Send>,
>;

/// A failed call to the token endpoint.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CallError(String);

/// Browser sign-in at one issuer; implements the UI's [`cattery_ui::SsoProvider`].
pub struct OidcLogin {
    auth: Arc<OidcAuthenticator>,
    oauth: OauthClient,
    http: TokenClient,
    scopes: Vec<String>,
    /// The issuer's `end_session_endpoint` and the `post_logout_redirect_uri`, when it has one.
    logout: Option<(oauth2::url::Url, String)>,
    /// The issuer's `revocation_endpoint` (RFC 7009), when it has one.
    revocation: Option<String>,
    /// The client secret of a confidential client (sent with a revocation as `oauth2` sends
    /// it with a token request: HTTP Basic).
    client_secret: Option<String>,
}

impl std::fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcLogin")
            .field("auth_url", &self.oauth.auth_uri().as_str())
            .field("token_url", &self.oauth.token_uri().as_str())
            .finish_non_exhaustive()
    }
}

fn config_error(e: impl std::fmt::Display) -> OidcError {
    OidcError::BrowserSignIn(e.to_string())
}

impl OidcLogin {
    /// Browser sign-in for `auth`'s issuer, or `None` when it is not configured. Fails
    /// startup clearly when it is configured but the issuer's discovery document lacks the
    /// endpoints, an endpoint is plain `http://` off loopback, or the redirect URL is wrong.
    pub async fn new(auth: Arc<OidcAuthenticator>) -> Result<Option<OidcLogin>, OidcError> {
        let cfg = auth.config().clone();
        let Some(browser) = cfg.browser.clone() else {
            return Ok(None);
        };
        let Some(meta) = auth.provider_metadata() else {
            return Err(config_error(
                "needs the issuer's discovery document (give neither --oidc-jwks-file nor \
                 --oidc-jwks-url)",
            ));
        };
        let (Some(authz), Some(token)) = (&meta.authorization_endpoint, &meta.token_endpoint)
        else {
            return Err(config_error(
                "the issuer's discovery document names no authorization_endpoint or \
                 token_endpoint",
            ));
        };
        parse_url(authz)
            .map_err(|e| config_error(format!("authorization_endpoint {}: {e}", echo(authz))))?;
        let token_endpoint = parse_url(token)
            .map_err(|e| config_error(format!("token_endpoint {}: {e}", echo(token))))?;
        let redirect = &browser.redirect_url;
        if !redirect.ends_with(CALLBACK_PATH)
            || !(redirect.starts_with("https://") || redirect.starts_with("http://"))
        {
            return Err(config_error(format!(
                "the redirect URL {redirect} must be the server's URL followed by \
                 {CALLBACK_PATH}"
            )));
        }
        let mut oauth = oauth2::Client::new(ClientId::new(cfg.audience.clone()))
            .set_auth_uri(AuthUrl::new(authz.clone()).map_err(config_error)?)
            .set_token_uri(TokenUrl::new(token.clone()).map_err(config_error)?)
            .set_redirect_uri(RedirectUrl::new(redirect.clone()).map_err(config_error)?);
        if let Some(secret) = &browser.client_secret {
            oauth = oauth.set_client_secret(ClientSecret::new(secret.clone()));
        }
        let http = issuer_client(cfg.jwks_ca_file.as_deref(), token_endpoint.https)
            .await
            .map_err(config_error)?;
        tracing::info!(
            "OIDC: browser sign-in at {authz}, redirect URI {redirect} (register it at the issuer)"
        );
        let logout = match &meta.end_session_endpoint {
            None => None,
            Some(end) => match parse_url(end)
                .and_then(|_| oauth2::url::Url::parse(end).map_err(|e| e.to_string()))
            {
                Ok(url) => {
                    let back = format!(
                        "{}{POST_LOGOUT_PATH}",
                        redirect.strip_suffix(CALLBACK_PATH).unwrap_or(redirect)
                    );
                    tracing::info!(
                        "OIDC: sign-out also signs out at {end}, which sends the browser back \
                         to {back} (register it at the issuer as a post-logout redirect URI)"
                    );
                    Some((url, back))
                }
                Err(e) => {
                    tracing::warn!(
                        "OIDC: the issuer's end_session_endpoint {} is not used: {e}; \
                         sign-out ends only Cattery's session",
                        echo(end)
                    );
                    None
                }
            },
        };
        let revocation = match &meta.revocation_endpoint {
            None => None,
            Some(end) => match parse_url(end) {
                Ok(_) => {
                    tracing::info!("OIDC: sign-out revokes the session's refresh token at {end}");
                    Some(end.clone())
                }
                Err(e) => {
                    tracing::warn!(
                        "OIDC: the issuer's revocation_endpoint {} is not used: {e}; \
                         refresh tokens are not revoked at sign-out",
                        echo(end)
                    );
                    None
                }
            },
        };
        Ok(Some(OidcLogin {
            auth,
            oauth,
            http,
            scopes: browser.extra_scopes,
            logout,
            revocation,
            client_secret: browser.client_secret.clone(),
        }))
    }

    /// The function `oauth2` sends its token requests with: the issuer client, bounded in
    /// answer size and time.
    fn caller(&self) -> impl Fn(oauth2::HttpRequest) -> CallFuture + use<> {
        self.caller_for("the token endpoint")
    }

    /// [`Self::caller`] for any of the issuer's endpoints (`what` names it in errors).
    fn caller_for(&self, what: &'static str) -> impl Fn(oauth2::HttpRequest) -> CallFuture + use<> {
        let client = self.http.clone();
        // Each call owns a handle on the client (a borrowed one makes the future's `Send`
        // depend on a lifetime the compiler cannot name).
        move |req: oauth2::HttpRequest| -> CallFuture {
            let http = client.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
                let answer = async {
                    let res = http
                        .request(req)
                        .await
                        .map_err(|e| CallError(format!("{what}: {}", chain(&e))))?;
                    let (parts, body) = res.into_parts();
                    let body = Limited::new(body, MAX_JWKS_BYTES)
                        .collect()
                        .await
                        .map_err(|e| CallError(format!("reading the answer of {what}: {e}")))?
                        .to_bytes();
                    Ok::<_, CallError>(http::Response::from_parts(parts, body.to_vec()))
                };
                tokio::time::timeout(FETCH_TIMEOUT, answer)
                    .await
                    .map_err(|_| {
                        CallError(format!(
                            "{what} gave no complete answer within {} s",
                            FETCH_TIMEOUT.as_secs()
                        ))
                    })?
            })
        }
    }

    async fn redeem(
        &self,
        pending: &cattery_ui::SsoPending,
        code: &str,
    ) -> Result<cattery_ui::SsoLogin, String> {
        let call = self.caller();
        let answer = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&call)
            .await
            .map_err(|e| token_error("the authorization code", e))?;
        let id_token = answer.extra_fields().id_token.clone().ok_or(
            "the token endpoint's answer has no id_token (is `openid` a scope of this client?)",
        )?;
        let (identity, exp) = self
            .auth
            .verify_id_token(&id_token, &pending.nonce)
            .await
            .map_err(|e| format!("the ID token was refused: {e}"))?;
        tracing::info!(
            user = identity.user,
            refresh_token = answer.refresh_token().is_some(),
            "OIDC: browser sign-in"
        );
        Ok(cattery_ui::SsoLogin {
            id_token,
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(exp),
            refresh_token: answer.refresh_token().map(|t| t.secret().clone()),
        })
    }

    async fn renew(&self, refresh_token: &str) -> Result<cattery_ui::SsoLogin, String> {
        let call = self.caller();
        let answer = self
            .oauth
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_string()))
            .request_async(&call)
            .await
            .map_err(|e| token_error("the refresh token", e))?;
        let id_token = answer
            .extra_fields()
            .id_token
            .clone()
            .ok_or("the token endpoint's answer to a refresh has no id_token")?;
        let (identity, exp) = self
            .auth
            .verify_refreshed_id_token(&id_token)
            .await
            .map_err(|e| format!("the refreshed ID token was refused: {e}"))?;
        tracing::info!(user = identity.user, "OIDC: refreshed a browser sign-in");
        Ok(cattery_ui::SsoLogin {
            id_token,
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(exp),
            refresh_token: answer.refresh_token().map(|t| t.secret().clone()),
        })
    }
}

impl OidcLogin {
    /// RFC 7009: `POST token=…&token_type_hint=refresh_token` to the revocation endpoint,
    /// with the client authenticated as for a token request (HTTP Basic with a client
    /// secret, `client_id` in the form for a public client). By hand rather than with
    /// `oauth2`'s `revoke_token`, which refuses plain `http://` even on loopback (where
    /// every other issuer endpoint is allowed it).
    async fn revoke_refresh_token(&self, refresh_token: &str) -> Result<bool, String> {
        let Some(url) = &self.revocation else {
            return Ok(false);
        };
        let req = revocation_request(
            url,
            self.oauth.client_id().as_str(),
            self.client_secret.as_deref(),
            refresh_token,
        )?;
        let res = (self.caller_for("the revocation endpoint"))(req)
            .await
            .map_err(|e| e.to_string())?;
        if res.status().is_success() {
            return Ok(true);
        }
        let detail = serde_json::from_slice::<serde_json::Value>(res.body())
            .ok()
            .and_then(|v| {
                let error = v["error"].as_str()?.to_string();
                Some(match v["error_description"].as_str() {
                    Some(d) => format!(" ({}: {})", echo(&error), echo(d)),
                    None => format!(" ({})", echo(&error)),
                })
            })
            .unwrap_or_default();
        Err(format!(
            "the revocation endpoint answered {}{detail}",
            res.status()
        ))
    }
}

/// The RFC 7009 request revoking `refresh_token` at `url`, the client authenticated as
/// `oauth2` does for a token request: HTTP Basic (both parts form-encoded, RFC 6749 2.3.1)
/// with a secret, `client_id` in the form without one.
fn revocation_request(
    url: &str,
    client_id: &str,
    secret: Option<&str>,
    refresh_token: &str,
) -> Result<oauth2::HttpRequest, String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", refresh_token)
        .append_pair("token_type_hint", "refresh_token");
    if secret.is_none() {
        form.append_pair("client_id", client_id);
    }
    let mut req = http::Request::post(url)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json");
    if let Some(secret) = secret {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", enc(client_id), enc(secret)),
        );
        req = req.header(http::header::AUTHORIZATION, format!("Basic {basic}"));
    }
    req.body(form.finish().into_bytes())
        .map_err(|e| format!("building the revocation request: {e}"))
}

/// A failed token request as a sentence (`what`: what was presented).
fn token_error(what: &str, e: RequestTokenError<CallError, BasicErrorResponse>) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let detail = r
                .error_description()
                .map(|d| format!(": {}", echo(d)))
                .unwrap_or_default();
            format!(
                "the identity provider refused {what} ({}){detail}",
                echo(r.error().as_ref())
            )
        }
        RequestTokenError::Request(e) => e.to_string(),
        RequestTokenError::Parse(e, _) => {
            format!("the token endpoint's answer is not a token response: {e}")
        }
        RequestTokenError::Other(e) => format!("the token endpoint: {}", echo(&e)),
    }
}

/// `end` with the RP-initiated logout parameters.
fn logout_url(end: &oauth2::url::Url, back: &str, client_id: &str, id_token_hint: &str) -> String {
    let mut url = end.clone();
    url.query_pairs_mut()
        .append_pair("id_token_hint", id_token_hint)
        .append_pair("client_id", client_id)
        .append_pair("post_logout_redirect_uri", back);
    url.to_string()
}

impl cattery_ui::SsoProvider for OidcLogin {
    fn start(&self) -> cattery_ui::SsoStart {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = super::random_id(32);
        let mut request = self
            .oauth
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("openid".into()))
            .add_extra_param("nonce", nonce.clone())
            .set_pkce_challenge(challenge);
        for s in &self.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state) = request.url();
        cattery_ui::SsoStart {
            url: url.to_string(),
            pending: cattery_ui::SsoPending {
                state: state.secret().clone(),
                nonce,
                pkce_verifier: verifier.secret().clone(),
            },
        }
    }

    fn finish<'a>(
        &'a self,
        pending: &'a cattery_ui::SsoPending,
        code: &'a str,
    ) -> cattery_ui::SsoFuture<'a> {
        Box::pin(self.redeem(pending, code))
    }

    fn refresh<'a>(&'a self, refresh_token: &'a str) -> cattery_ui::SsoFuture<'a> {
        Box::pin(self.renew(refresh_token))
    }

    fn revoke<'a>(&'a self, refresh_token: &'a str) -> cattery_ui::SsoRevokeFuture<'a> {
        Box::pin(self.revoke_refresh_token(refresh_token))
    }

    fn logout_url(&self, id_token_hint: &str) -> Option<String> {
        let (end, back) = self.logout.as_ref()?;
        Some(logout_url(
            end,
            back,
            self.oauth.client_id().as_str(),
            id_token_hint,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_names_the_refresh_token_and_authenticates_the_client() {
        let form = |r: &oauth2::HttpRequest| -> std::collections::HashMap<String, String> {
            form_urlencoded::parse(r.body()).into_owned().collect()
        };
        // A public client: client_id in the form, no Authorization.
        let r =
            revocation_request("https://idp.example/revoke", "cattery-ui", None, "r&t=1").unwrap();
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.uri(), "https://idp.example/revoke");
        assert_eq!(
            r.headers()[http::header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert!(r.headers().get(http::header::AUTHORIZATION).is_none());
        let f = form(&r);
        assert_eq!(f["token"], "r&t=1");
        assert_eq!(f["token_type_hint"], "refresh_token");
        assert_eq!(f["client_id"], "cattery-ui");
        // A confidential client: HTTP Basic of the form-encoded id and secret, not in the form.
        let r = revocation_request(
            "https://idp.example/revoke",
            "cattery ui",
            Some("s:é"),
            "rt",
        )
        .unwrap();
        let basic = r.headers()[http::header::AUTHORIZATION].to_str().unwrap();
        let decoded = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            basic.strip_prefix("Basic ").unwrap(),
        )
        .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "cattery+ui:s%3A%C3%A9");
        assert!(!form(&r).contains_key("client_id"));
    }

    #[test]
    fn rp_initiated_logout_names_the_token_the_client_and_the_way_back() {
        let end = oauth2::url::Url::parse("https://idp.example/logout?tenant=a").unwrap();
        let u = oauth2::url::Url::parse(&logout_url(
            &end,
            "https://cattery.example:9443/ui/sign-in",
            "cattery-ui",
            "h.p.s",
        ))
        .unwrap();
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(u.path(), "/logout");
        assert_eq!(q["tenant"], "a", "the endpoint's own query is kept");
        assert_eq!(q["id_token_hint"], "h.p.s");
        assert_eq!(q["client_id"], "cattery-ui");
        assert_eq!(
            q["post_logout_redirect_uri"],
            "https://cattery.example:9443/ui/sign-in"
        );
    }
}
