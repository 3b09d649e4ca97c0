//! OpenID Connect: bearer JWTs verified against a configured issuer's keys.
//!
//! People who already have an identity provider (Dex, Keycloak, Okta, Entra ID, Google…)
//! can present the provider's ID token instead of a Cattery token. The token's signature
//! is checked against the issuer's published keys (a JWK set read from a file or fetched
//! over HTTPS), then `iss`, `aud`, `exp` and `nbf`; the configured claims become the
//! [`Identity`] that is impersonated in the clusters, with a prefix so that OIDC names can
//! never collide with Cattery's own users and groups.
//!
//! Keys are loaded once at startup. When a token names a key id (`kid`) that is not in the
//! cached set, the set is reloaded — the issuer probably rotated its keys — but at most
//! once every 30 seconds, so a flood of tokens with made-up key ids cannot
//! turn the server into a load generator against the issuer. Concurrent reloads coalesce.
//!
//! Only asymmetric signatures are accepted: `none` and the HMAC family are refused outright
//! (an HMAC "signature" keyed with a public key is the classic algorithm-confusion attack).
//! Nothing here ever logs or echoes the token itself; claim values that end up in error
//! messages are truncated and escaped.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::ClientConfig;
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;

use super::Identity;

/// Minimum time between two reloads of the issuer's keys triggered by unknown key ids.
const REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Default of [`OidcConfig::jwks_refresh_interval`].
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// Give up fetching a JWK set after this long (connect, TLS, request and body together).
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JWK set accepted (file or HTTP answer).
pub(super) const MAX_JWKS_BYTES: usize = 1 << 20;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;
/// Larger bearer tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Token-supplied text quoted in error messages is cut to this many characters.
const MAX_ECHO_CHARS: usize = 128;

/// Where the issuer's signing keys come from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// A JWK set on disk (air-gapped setups, or keys distributed by configuration management).
    File(PathBuf),
    /// The issuer's `jwks_uri`; must be `https://` except on loopback addresses.
    Url(String),
    /// OpenID Connect discovery: `jwks_uri` from the issuer's
    /// `/.well-known/openid-configuration`, whose `issuer` must equal the configured one.
    Discovery,
}

impl JwksSource {
    fn describe(&self) -> String {
        match self {
            JwksSource::File(path) => format!("JWKS file {}", path.display()),
            JwksSource::Url(url) => format!("JWKS URL {url}"),
            JwksSource::Discovery => "the issuer's discovery document".into(),
        }
    }
}

/// How bearer JWTs from one OpenID Connect issuer are verified and mapped to identities.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// Must be the token's `aud`, or one of them when `aud` is an array.
    pub audience: String,
    /// Where the issuer's public keys come from.
    pub jwks: JwksSource,
    /// CA certificates (PEM) trusted for an `https://` JWKS URL instead of the system roots;
    /// for issuers behind a private CA.
    pub jwks_ca_file: Option<PathBuf>,
    /// Claim holding the user name; default `sub`.
    pub username_claim: String,
    /// Claim holding the groups (a string or an array of strings; missing means no groups);
    /// default `groups`.
    pub groups_claim: String,
    /// Prepended to the user name (default `oidc:`), so OIDC users cannot pose as local ones.
    pub username_prefix: String,
    /// Prepended to every group (default `oidc:`), so OIDC groups cannot pose as local ones
    /// such as `cattery:admins`.
    pub groups_prefix: String,
    /// The keys are also reloaded this often (default [`JWKS_REFRESH_INTERVAL`]), so a key
    /// the issuer withdraws stops being trusted without waiting for an unknown key id.
    pub jwks_refresh_interval: Duration,
    /// Browser sign-in ("Sign in with SSO" in the UI), when the issuer's discovery document
    /// names its authorization and token endpoints; see [`super::oidc_login`].
    pub browser: Option<super::oidc_login::BrowserSignIn>,
}

impl OidcConfig {
    /// A configuration with the default claims (`sub`, `groups`) and prefixes (`oidc:`).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks: JwksSource) -> Self {
        OidcConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks,
            jwks_ca_file: None,
            username_claim: "sub".into(),
            groups_claim: "groups".into(),
            username_prefix: "oidc:".into(),
            groups_prefix: "oidc:".into(),
            jwks_refresh_interval: JWKS_REFRESH_INTERVAL,
            browser: None,
        }
    }
}

/// Why a token was refused or the issuer's keys could not be used.
///
/// Messages are shown to the client in the 401 answer and written to the audit trail, so
/// they say what is wrong without ever including the token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Not a well-formed signed JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token's algorithm is refused (`none`, HMAC, unknown) or does not fit the key.
    #[error("unsupported token signature algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The token names a key id the issuer does not publish (even after reloading the keys).
    #[error("the token was signed with a key the issuer does not publish (kid \"{0}\")")]
    UnknownKey(String),
    /// The signature does not verify with the issuer's key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Signed, but by (or for) another issuer.
    #[error("the token was issued by \"{got}\", not by the configured issuer \"{expected}\"")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss` (truncated).
        got: String,
    },
    /// The token was issued for another client.
    #[error("the token's audience does not include \"{expected}\"")]
    WrongAudience {
        /// The configured audience.
        expected: String,
    },
    /// `exp` is in the past (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet (its nbf is in the future)")]
    NotYetValid,
    /// An ID token from browser sign-in does not carry the nonce of that sign-in (it was
    /// issued for another sign-in, or replayed).
    #[error(
        "the ID token's nonce does not match this sign-in (issued for another sign-in, or replayed)"
    )]
    WrongNonce,
    /// A required claim is missing or has an unusable value.
    #[error("the token has no usable \"{0}\" claim")]
    MissingClaim(String),
    /// Browser sign-in ("Sign in with SSO") is configured but cannot work as configured.
    #[error("browser sign-in: {0}")]
    BrowserSignIn(String),
    /// The issuer's keys could not be loaded, fetched or parsed.
    #[error("issuer keys: {0}")]
    Jwks(String),
}

/// Key types that can verify the accepted algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn supports(self, alg: Algorithm) -> bool {
        use Algorithm as A;
        matches!(
            (self, alg),
            (
                KeyKind::Rsa,
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ) | (KeyKind::P256, A::ES256)
                | (KeyKind::P384, A::ES384)
                | (KeyKind::Ed25519, A::EdDSA)
        )
    }

    /// An algorithm this key can verify, to let the crypto backend check the key at load time.
    fn probe_algorithm(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::P256 => Algorithm::ES256,
            KeyKind::P384 => Algorithm::ES384,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }
}

/// One usable public key of the issuer.
struct IssuerKey {
    kid: Option<String>,
    /// The JWK's `alg`, when it pins one.
    alg: Option<Algorithm>,
    kind: KeyKind,
    key: DecodingKey,
}

impl IssuerKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.supports(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// The cached keys; `generation` increases with every successful reload.
struct KeySet {
    generation: u64,
    keys: Vec<IssuerKey>,
}

/// A parsed and vetted `http(s)://` location (JWKS or discovery document).
#[derive(Clone, Debug)]
pub(super) struct Endpoint {
    url: String,
    uri: http::Uri,
    pub(super) https: bool,
    host: String,
    port: u16,
    /// Path and query (for messages and tests).
    #[cfg_attr(not(test), allow(dead_code))]
    path: String,
}

/// The HTTP client for the issuer's documents: hyper's, over rustls with the configured
/// trust roots.
type IssuerClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The issuer's OpenID Connect discovery document (the fields Cattery uses), so browser
/// sign-in can find the authorization, token and logout endpoints.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct ProviderMetadata {
    /// Equal to the configured issuer (checked).
    pub issuer: String,
    /// Where the signing keys are published.
    pub jwks_uri: String,
    /// Where browsers are sent to sign in.
    pub authorization_endpoint: Option<String>,
    /// Where an authorization code is exchanged for tokens.
    pub token_endpoint: Option<String>,
    /// Where browsers are sent to sign out (RP-initiated logout), if the issuer has one.
    pub end_session_endpoint: Option<String>,
    /// Where a refresh token is revoked at sign-out (RFC 7009), if the issuer has one.
    pub revocation_endpoint: Option<String>,
}

/// Verifies bearer JWTs from one OpenID Connect issuer and maps them to identities.
///
/// Cheap to share (`Send + Sync`); the key set is swapped atomically on reload.
pub struct OidcAuthenticator {
    cfg: OidcConfig,
    endpoint: Option<Endpoint>,
    client: Option<IssuerClient>,
    metadata: Option<ProviderMetadata>,
    keys: Arc<ArcSwap<KeySet>>,
    /// When keys were last reloaded because of an unknown `kid`; held while reloading so
    /// concurrent reloads coalesce.
    last_refresh: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

impl fmt::Debug for OidcAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcAuthenticator")
            .field("issuer", &self.cfg.issuer)
            .field("audience", &self.cfg.audience)
            .field("jwks", &self.cfg.jwks)
            .field("keys", &self.keys.load().keys.len())
            .finish_non_exhaustive()
    }
}

/// The parts of the JOSE header that matter here.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

impl OidcAuthenticator {
    /// Loads the keys once (fails startup with a clear message naming the file/URL if they
    /// cannot be loaded or parsed).
    pub async fn new(cfg: OidcConfig) -> Result<OidcAuthenticator, OidcError> {
        let needs_tls = match &cfg.jwks {
            JwksSource::File(_) => false,
            JwksSource::Url(url) => url.starts_with("https:"),
            JwksSource::Discovery => cfg.issuer.starts_with("https:"),
        };
        if cfg.jwks_ca_file.is_some() && !needs_tls {
            tracing::warn!(
                "OIDC: the JWKS CA file is ignored: the keys do not come from an https:// URL"
            );
        }
        let (endpoint, client, metadata) = match &cfg.jwks {
            JwksSource::File(_) => (None, None, None),
            JwksSource::Url(url) => {
                let endpoint =
                    parse_url(url).map_err(|e| OidcError::Jwks(format!("JWKS URL {url}: {e}")))?;
                let client = issuer_client(cfg.jwks_ca_file.as_deref(), endpoint.https)
                    .await
                    .map_err(OidcError::Jwks)?;
                (Some(endpoint), Some(client), None)
            }
            JwksSource::Discovery => {
                let (metadata, endpoint, client) = discover(&cfg).await?;
                (Some(endpoint), Some(client), Some(metadata))
            }
        };
        let keys = load_keys(&cfg.jwks, endpoint.as_ref(), client.as_ref()).await?;
        tracing::info!(
            "OIDC: loaded {} signing key(s) for issuer {} from {}",
            keys.len(),
            cfg.issuer,
            cfg.jwks.describe()
        );
        let auth = OidcAuthenticator {
            cfg,
            endpoint,
            client,
            metadata,
            keys: Arc::new(ArcSwap::from_pointee(KeySet {
                generation: 0,
                keys,
            })),
            last_refresh: Arc::new(tokio::sync::Mutex::new(None)),
        };
        tokio::spawn(refresh_periodically(
            Arc::downgrade(&auth.keys),
            auth.last_refresh.clone(),
            auth.cfg.jwks.clone(),
            auth.endpoint.clone(),
            auth.client.clone(),
            auth.cfg.jwks_refresh_interval,
        ));
        Ok(auth)
    }

    /// The issuer's discovery document, when the keys were found by discovery
    /// ([`JwksSource::Discovery`]).
    pub fn provider_metadata(&self) -> Option<&ProviderMetadata> {
        self.metadata.as_ref()
    }

    /// Cheap pre-check used to route a bearer token: looks like a JWT (three base64url
    /// segments separated by dots).
    ///
    /// The signature segment may be empty so that unsigned (`alg: none`) tokens are routed
    /// here and refused with a clear message rather than as an unknown Cattery token.
    pub fn looks_like_jwt(token: &str) -> bool {
        let mut parts = 0;
        for part in token.split('.') {
            parts += 1;
            if parts > 3
                || (part.is_empty() && parts < 3)
                || !part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return false;
            }
        }
        parts == 3
    }

    /// Verifies signature (alg from the JWK/header; accept RS256/RS384/RS512,
    /// PS256/PS384/PS512, ES256/ES384, EdDSA; refuse `none` and HS*), iss, aud, exp
    /// (required), nbf (if present), with 30 s leeway on time checks; maps claims to an
    /// Identity.
    pub async fn authenticate(&self, token: &str) -> Result<Identity, OidcError> {
        let claims = self.verified_claims(token).await?;
        self.identity(&claims)
    }

    /// Verifies an ID token from browser sign-in exactly as [`Self::authenticate`] does a
    /// bearer token, and also that its `nonce` is the sign-in's. Returns the identity and
    /// the token's `exp` (seconds since the Unix epoch).
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<(Identity, u64), OidcError> {
        let claims = self.verified_claims(token).await?;
        let identity = self.identity(&claims)?;
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n)
                if n.len() == nonce.len()
                    && bool::from(subtle::ConstantTimeEq::ct_eq(
                        n.as_bytes(),
                        nonce.as_bytes(),
                    )) => {}
            _ => return Err(OidcError::WrongNonce),
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| OidcError::MissingClaim("exp".into()))?;
        Ok((identity, exp))
    }

    /// Verifies an ID token the token endpoint returned for a refresh token: exactly as
    /// [`Self::authenticate`] does a bearer token (OpenID Connect recommends such tokens
    /// carry no `nonce`, so none is checked; the UI checks that it names the same person).
    /// Returns the identity and the token's `exp` (seconds since the Unix epoch).
    pub async fn verify_refreshed_id_token(
        &self,
        token: &str,
    ) -> Result<(Identity, u64), OidcError> {
        let claims = self.verified_claims(token).await?;
        let identity = self.identity(&claims)?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| OidcError::MissingClaim("exp".into()))?;
        Ok((identity, exp))
    }

    /// The configuration this authenticator was built with.
    pub(super) fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// Signature and time checks; the claims of a token that passes them.
    async fn verified_claims(&self, token: &str) -> Result<Map<String, Value>, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Malformed(format!(
                "larger than {} KiB",
                MAX_TOKEN_BYTES / 1024
            )));
        }
        let header = parse_header(token)?;

        let mut set = self.keys.load_full();
        if !knows_key(&set, &header) {
            // Probably a key rotation at the issuer.
            set = self.refresh(set.generation).await;
        }
        let keys = candidates(&set, &header);
        if keys.is_empty() {
            return Err(match &header.kid {
                Some(kid) => OidcError::UnknownKey(echo(kid)),
                None => OidcError::UnsupportedAlgorithm(format!(
                    "{:?}: the issuer publishes no key for it",
                    header.alg
                )),
            });
        }
        let compatible: Vec<&IssuerKey> = keys
            .iter()
            .copied()
            .filter(|k| k.accepts(header.alg))
            .collect();
        if compatible.is_empty() {
            return Err(OidcError::UnsupportedAlgorithm(format!(
                "{:?} does not match the issuer's key \"{}\"",
                header.alg,
                echo(header.kid.as_deref().unwrap_or_default())
            )));
        }

        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Checked below, with errors that say which value was expected.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);

        for key in compatible {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => match map_jwt_error(&e) {
                    // Maybe another key (no kid, or a kid shared by several keys).
                    OidcError::BadSignature => continue,
                    other => return Err(other),
                },
            }
        }
        Err(OidcError::BadSignature)
    }

    /// Checks `iss` and `aud` of verified claims and maps them to an identity.
    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, OidcError> {
        let cfg = &self.cfg;
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == cfg.issuer => {}
            Some(Value::String(iss)) => {
                return Err(OidcError::WrongIssuer {
                    expected: cfg.issuer.clone(),
                    got: echo(iss),
                });
            }
            Some(other) => {
                return Err(OidcError::WrongIssuer {
                    expected: cfg.issuer.clone(),
                    got: echo(&other.to_string()),
                });
            }
            None => return Err(OidcError::MissingClaim("iss".into())),
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == cfg.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&cfg.audience)),
            Some(_) => false,
            None => return Err(OidcError::MissingClaim("aud".into())),
        };
        if !audience_ok {
            return Err(OidcError::WrongAudience {
                expected: cfg.audience.clone(),
            });
        }

        let user = claims
            .get(&cfg.username_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| OidcError::MissingClaim(cfg.username_claim.clone()))?;
        if cfg.username_claim == "email" {
            // An unverified address could be anybody's (same rule as the Kubernetes apiserver).
            match claims.get("email_verified") {
                None | Some(Value::Bool(true)) => {}
                Some(Value::String(v)) if v == "true" => {}
                Some(_) => return Err(OidcError::MissingClaim("email_verified".into())),
            }
        }
        check_printable(&cfg.username_claim, user)?;

        let groups: Vec<&str> = match claims.get(&cfg.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(g)) => vec![g.as_str()],
            Some(Value::Array(items)) => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| OidcError::MissingClaim(cfg.groups_claim.clone()))?,
            Some(_) => return Err(OidcError::MissingClaim(cfg.groups_claim.clone())),
        };
        let mut out = Vec::with_capacity(groups.len());
        for g in groups.into_iter().filter(|g| !g.is_empty()) {
            check_printable(&cfg.groups_claim, g)?;
            out.push(format!("{}{g}", cfg.groups_prefix));
        }

        Ok(Identity {
            user: format!("{}{user}", cfg.username_prefix),
            groups: out,
        })
    }

    /// Reloads the keys unless another task just did, or a reload happened less than
    /// [`REFRESH_MIN_INTERVAL`] ago. Returns the current key set either way.
    async fn refresh(&self, seen_generation: u64) -> Arc<KeySet> {
        let mut last = self.last_refresh.clone().lock_owned().await;
        let current = self.keys.load_full();
        if current.generation != seen_generation {
            // Somebody reloaded while we were waiting for the lock.
            return current;
        }
        if last.is_some_and(|t| t.elapsed() < REFRESH_MIN_INTERVAL) {
            return current;
        }
        *last = Some(Instant::now());

        // A separate task, so that a client hanging up does not abort a reload others wait for.
        let source = self.cfg.jwks.clone();
        let endpoint = self.endpoint.clone();
        let client = self.client.clone();
        let keys = self.keys.clone();
        let task = tokio::spawn(async move {
            let _lock = last;
            match load_keys(&source, endpoint.as_ref(), client.as_ref()).await {
                Ok(new) => {
                    tracing::info!(
                        "OIDC: reloaded {} signing key(s) from {} (a token named an unknown key)",
                        new.len(),
                        source.describe()
                    );
                    let set = Arc::new(KeySet {
                        generation: current.generation + 1,
                        keys: new,
                    });
                    keys.store(set.clone());
                    set
                }
                Err(e) => {
                    tracing::warn!(
                        "OIDC: reloading the issuer's keys failed, keeping the previous ones: {e}"
                    );
                    current
                }
            }
        });
        match task.await {
            Ok(set) => set,
            Err(_) => self.keys.load_full(),
        }
    }
}

/// Reloads the keys every `every` until the authenticator (its key set) is dropped. A
/// failed reload keeps the previous keys and is retried at the next interval.
async fn refresh_periodically(
    keys: std::sync::Weak<ArcSwap<KeySet>>,
    lock: Arc<tokio::sync::Mutex<Option<Instant>>>,
    source: JwksSource,
    endpoint: Option<Endpoint>,
    client: Option<IssuerClient>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let Some(keys) = keys.upgrade() else { return };
        // Not concurrently with a reload for an unknown key id (whose rate limit this
        // leaves alone, so a rotation right after is still picked up at once).
        let _reloading = lock.lock().await;
        match load_keys(&source, endpoint.as_ref(), client.as_ref()).await {
            Ok(new) => {
                let current = keys.load_full();
                let kids = |set: &[IssuerKey]| {
                    let mut v: Vec<Option<String>> = set.iter().map(|k| k.kid.clone()).collect();
                    v.sort();
                    v
                };
                if kids(&current.keys) != kids(&new) {
                    tracing::info!(
                        "OIDC: the issuer's keys changed; now {} signing key(s) from {}",
                        new.len(),
                        source.describe()
                    );
                }
                // Stored even when the key ids are the same: a key may be replaced under
                // its old id.
                keys.store(Arc::new(KeySet {
                    generation: current.generation + 1,
                    keys: new,
                }));
            }
            Err(e) => tracing::warn!(
                "OIDC: the periodic reload of the issuer's keys failed, keeping the previous ones: {e}"
            ),
        }
    }
}

/// Whether the cached set has the token's key: one with its `kid`, or (when it has none)
/// one that fits its algorithm. If not, the issuer has probably rotated its keys.
fn knows_key(set: &KeySet, header: &TokenHeader) -> bool {
    match &header.kid {
        Some(kid) => set
            .keys
            .iter()
            .any(|k| k.kid.as_deref() == Some(kid.as_str())),
        None => set.keys.iter().any(|k| k.accepts(header.alg)),
    }
}

/// Keys that may have signed a token with this header: the keys with its `kid`, else (or
/// when it has none) the keys without a `kid` that fit its algorithm.
fn candidates<'a>(set: &'a KeySet, header: &TokenHeader) -> Vec<&'a IssuerKey> {
    if let Some(kid) = &header.kid {
        let by_kid: Vec<&IssuerKey> = set
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
            .collect();
        if !by_kid.is_empty() {
            return by_kid;
        }
        return set
            .keys
            .iter()
            .filter(|k| k.kid.is_none() && k.accepts(header.alg))
            .collect();
    }
    set.keys.iter().filter(|k| k.accepts(header.alg)).collect()
}

/// Reads the JOSE header without trusting it; refuses `none`, HMAC and unknown algorithms.
fn parse_header(token: &str) -> Result<TokenHeader, OidcError> {
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        5 => {
            return Err(OidcError::Malformed(
                "encrypted tokens (JWE) are not supported".into(),
            ));
        }
        _ => {
            return Err(OidcError::Malformed(
                "not a JWT (expected three dot-separated parts)".into(),
            ));
        }
    }
    let raw = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| OidcError::Malformed("the header is not base64url".into()))?;
    let header: Map<String, Value> = serde_json::from_slice(&raw)
        .map_err(|_| OidcError::Malformed("the header is not a JSON object".into()))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| OidcError::Malformed("the header has no \"alg\"".into()))?;
    let alg = match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "none" => {
            return Err(OidcError::UnsupportedAlgorithm(
                "\"none\" (unsigned tokens are refused)".into(),
            ));
        }
        other if other.starts_with("HS") => {
            return Err(OidcError::UnsupportedAlgorithm(format!(
                "\"{}\" (shared-secret signatures are refused)",
                echo(other)
            )));
        }
        other => {
            return Err(OidcError::UnsupportedAlgorithm(format!(
                "\"{}\"",
                echo(other)
            )));
        }
    };
    if header.contains_key("crit") {
        return Err(OidcError::Malformed(
            "critical header extensions (\"crit\") are not supported".into(),
        ));
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => {
            return Err(OidcError::Malformed(
                "the header's \"kid\" is not a string".into(),
            ));
        }
    };
    Ok(TokenHeader { alg, kid })
}

fn map_jwt_error(e: &jsonwebtoken::errors::Error) -> OidcError {
    match e.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => OidcError::BadSignature,
        ErrorKind::ExpiredSignature => OidcError::Expired,
        ErrorKind::ImmatureSignature => OidcError::NotYetValid,
        ErrorKind::MissingRequiredClaim(c) => OidcError::MissingClaim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => {
            OidcError::Malformed(format!("the \"{c}\" claim is not a number"))
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => OidcError::UnsupportedAlgorithm(e.to_string()),
        ErrorKind::Base64(_) => OidcError::Malformed("a part is not base64url".into()),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            OidcError::Malformed("the claims are not a JSON object".into())
        }
        ErrorKind::InvalidToken => OidcError::Malformed("not a JWT".into()),
        _ => OidcError::Malformed(e.to_string()),
    }
}

/// Refuses names that could not be forwarded as `Impersonate-*` header values.
fn check_printable(claim: &str, value: &str) -> Result<(), OidcError> {
    if value.chars().any(char::is_control) {
        return Err(OidcError::Malformed(format!(
            "the \"{claim}\" claim contains control characters"
        )));
    }
    Ok(())
}

/// Token-supplied text made safe to quote in a message: truncated and escaped.
pub(super) fn echo(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_ECHO_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().nth(MAX_ECHO_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Loads, parses and vets the key set; errors name the source.
async fn load_keys(
    source: &JwksSource,
    endpoint: Option<&Endpoint>,
    client: Option<&IssuerClient>,
) -> Result<Vec<IssuerKey>, OidcError> {
    let bytes = match (source, endpoint) {
        (JwksSource::File(path), _) => read_limited(path)
            .await
            .map_err(|e| OidcError::Jwks(format!("reading JWKS file {}: {e}", path.display())))?,
        (JwksSource::Url(_) | JwksSource::Discovery, Some(endpoint)) => {
            let client = client.ok_or_else(|| OidcError::Jwks("no HTTP client".into()))?;
            fetch(client, endpoint)
                .await
                .map_err(|e| OidcError::Jwks(format!("fetching JWKS from {}: {e}", endpoint.url)))?
        }
        (JwksSource::Url(_) | JwksSource::Discovery, None) => {
            return Err(OidcError::Jwks(format!(
                "{}: not parsed",
                source.describe()
            )));
        }
    };
    parse_jwks(&bytes).map_err(|e| OidcError::Jwks(format!("{}: {e}", source.describe())))
}

async fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    if buf.len() > MAX_JWKS_BYTES {
        return Err(format!("larger than {} KiB", MAX_JWKS_BYTES / 1024));
    }
    Ok(buf)
}

/// Parses a JWK set, keeping the keys that can verify an accepted algorithm. Other keys
/// (encryption keys, symmetric keys, unsupported curves) are skipped; none left is an error.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<IssuerKey>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let raw_keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWK set (no \"keys\" array)")?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in raw_keys.iter().enumerate() {
        match parse_jwk(raw) {
            Ok(key) => keys.push(key),
            Err(why) => {
                let kid = raw.get("kid").and_then(Value::as_str).unwrap_or("");
                let why = format!("key #{i} (kid \"{}\"): {why}", echo(kid));
                tracing::debug!("OIDC: ignoring {why}");
                skipped.push(why);
            }
        }
    }
    if keys.is_empty() {
        return Err(if skipped.is_empty() {
            "the JWK set is empty".into()
        } else {
            format!("no usable signing key; {}", skipped.join("; "))
        });
    }
    Ok(keys)
}

fn parse_jwk(raw: &Value) -> Result<IssuerKey, String> {
    let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| format!("unparsable: {e}"))?;
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err("not a signing key".into());
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(ka) => match Algorithm::try_from(ka) {
            Ok(a @ (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) => {
                return Err(format!("algorithm {a:?} is refused"));
            }
            Ok(a) => Some(a),
            Err(_) => return Err(format!("algorithm {ka} is not supported")),
        },
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = b64(&p.n, "n")?;
            let e = b64(&p.e, "e")?;
            let bits = bit_length(&n);
            if bits < 2048 {
                return Err(format!(
                    "RSA key of {bits} bits is too weak (2048 at least)"
                ));
            }
            if bits > 4096 {
                return Err(format!(
                    "RSA keys of more than 4096 bits are not supported ({bits})"
                ));
            }
            if e.is_empty() || e.len() > 8 {
                return Err("RSA exponent out of range".into());
            }
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (kind, len) = match p.curve {
                EllipticCurve::P256 => (KeyKind::P256, 32),
                EllipticCurve::P384 => (KeyKind::P384, 48),
                ref other => return Err(format!("curve {other:?} is not supported")),
            };
            if b64(&p.x, "x")?.len() != len || b64(&p.y, "y")?.len() != len {
                return Err("EC coordinates have the wrong length".into());
            }
            kind
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(format!("curve {:?} is not supported", p.curve));
            }
            if b64(&p.x, "x")?.len() != 32 {
                return Err("Ed25519 public key has the wrong length".into());
            }
            KeyKind::Ed25519
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are refused".into()),
        _ => return Err("unsupported key type".into()),
    };
    if let Some(a) = alg
        && !kind.supports(a)
    {
        return Err(format!("algorithm {a:?} does not fit a {kind:?} key"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable: {e}"))?;
    // Let the crypto backend parse the key now (e.g. that the point is on the curve), so a
    // broken key is reported at load time rather than as a bad signature on every request.
    jsonwebtoken::crypto::verify("AA", b"", &key, alg.unwrap_or(kind.probe_algorithm()))
        .map_err(|e| format!("invalid key: {e}"))?;
    Ok(IssuerKey {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        key,
    })
}

fn b64(value: &str, field: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| format!("\"{field}\" is not base64url"))
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|&b| b != 0) {
        None => 0,
        Some(i) => (big_endian.len() - i) * 8 - big_endian[i].leading_zeros() as usize,
    }
}

/// Validates a JWKS URL: https, or http on a loopback address only.
pub(super) fn parse_url(url: &str) -> Result<Endpoint, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a valid URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("the URL must start with https://".into()),
    };
    let authority = uri.authority().ok_or("the URL has no host")?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !https && !is_loopback(&host) {
        return Err(
            "refusing plain http:// to a non-loopback host: the keys that authenticate \
                    users must be fetched over https:// (http:// is only allowed for \
                    127.0.0.1, ::1 and localhost)"
                .into(),
        );
    }
    Ok(Endpoint {
        url: url.to_string(),
        https,
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        host,
        uri: uri.clone(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into()),
    })
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// TLS 1.3 client configuration trusting `ca_file` if given, else the system roots.
async fn tls_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    use cattery_tunnel::tls::{ServerRoots, provider, root_store};
    let roots = match ca_file {
        Some(path) => {
            let pem = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("reading JWKS CA file {}: {e}", path.display()))?;
            let what = format!("JWKS CA file {}", path.display());
            ServerRoots::Ca(cattery_tunnel::pem::certs(&what, &pem).map_err(|e| e.to_string())?)
        }
        None => ServerRoots::System,
    };
    let store = root_store(&roots).map_err(|e| format!("trust roots for the JWKS URL: {e}"))?;
    // ALPN (http/1.1) is set by hyper-rustls.
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// hyper's client for the issuer: HTTPS only (verified against `ca_file` or the system
/// roots) when `https`, else plain HTTP (allowed on loopback only, see [`parse_url`]).
/// Connections are not kept: fetches are rare.
pub(super) async fn issuer_client<B>(
    ca_file: Option<&Path>,
    https: bool,
) -> Result<Client<HttpsConnector<HttpConnector>, B>, String>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = if https {
        tls_config(ca_file).await?
    } else {
        // Never used for plain http://; no trust roots needed.
        ClientConfig::builder_with_provider(cattery_tunnel::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let connector = if https {
        builder.https_only().enable_http1().wrap_connector(http)
    } else {
        builder.https_or_http().enable_http1().wrap_connector(http)
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector))
}

/// An error and its sources, for messages.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// One GET of `endpoint`, within [`FETCH_TIMEOUT`] (connect, TLS, request and body
/// together) and at most [`MAX_JWKS_BYTES`].
async fn fetch(client: &IssuerClient, endpoint: &Endpoint) -> Result<Vec<u8>, String> {
    tokio::time::timeout(FETCH_TIMEOUT, get(client, endpoint))
        .await
        .map_err(|_| format!("no complete answer within {} s", FETCH_TIMEOUT.as_secs()))?
}

async fn get(client: &IssuerClient, endpoint: &Endpoint) -> Result<Vec<u8>, String> {
    let request = http::Request::get(endpoint.uri.clone())
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "cattery")
        .body(Empty::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let response = client.request(request).await.map_err(|e| {
        if e.is_connect() {
            format!(
                "connecting (TCP and TLS) to {}:{}: {}",
                endpoint.host,
                endpoint.port,
                chain(&e)
            )
        } else {
            format!("request failed: {}", chain(&e))
        }
    })?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("HTTP status {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("the answer is larger than {} KiB", MAX_JWKS_BYTES / 1024)
            } else {
                format!("reading the answer: {e}")
            }
        })?;
    Ok(body.to_bytes().to_vec())
}

/// OpenID Connect discovery: fetches `ISSUER/.well-known/openid-configuration`, checks that
/// its `issuer` is the configured one exactly (OpenID Connect Discovery 1.0 §4.3, so a
/// document served for another issuer is never trusted), and vets its `jwks_uri`.
async fn discover(
    cfg: &OidcConfig,
) -> Result<(ProviderMetadata, Endpoint, IssuerClient), OidcError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        cfg.issuer.trim_end_matches('/')
    );
    let fail = |e: String| OidcError::Jwks(format!("OIDC discovery from {url}: {e}"));
    let endpoint = parse_url(&url).map_err(fail)?;
    let client = issuer_client(cfg.jwks_ca_file.as_deref(), endpoint.https)
        .await
        .map_err(fail)?;
    let bytes = fetch(&client, &endpoint).await.map_err(fail)?;
    let metadata: ProviderMetadata = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("not a discovery document: {e}")))?;
    if metadata.issuer != cfg.issuer {
        return Err(fail(format!(
            "the document is for issuer \"{}\", not for the configured issuer \"{}\" \
             (they must be equal exactly, as the tokens' iss will be)",
            echo(&metadata.issuer),
            cfg.issuer
        )));
    }
    let jwks = parse_url(&metadata.jwks_uri)
        .map_err(|e| fail(format!("jwks_uri {}: {e}", echo(&metadata.jwks_uri))))?;
    let client = if jwks.https == endpoint.https {
        client
    } else {
        issuer_client(cfg.jwks_ca_file.as_deref(), jwks.https)
            .await
            .map_err(fail)?
    };
    Ok((metadata, jwks, client))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper_util::rt::TokioIo;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const ISS: &str = "https://issuer.example";
    const AUD: &str = "cattery";

    struct TestKey {
        kid: String,
        alg: Algorithm,
        encoding: EncodingKey,
        jwk: Value,
    }

    fn b64u(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ec_key(kid: &str) -> TestKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        assert_eq!(raw.len(), 65);
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": b64u(&raw[1..33]), "y": b64u(&raw[33..]),
            }),
        }
    }

    fn ed_key(kid: &str) -> TestKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).unwrap(),
            // No "alg": the algorithm comes from the key type.
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(kp.public_key_raw())}),
        }
    }

    fn jwks(keys: &[&TestKey]) -> String {
        json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
    }

    fn write_jwks(path: &Path, keys: &[&TestKey]) {
        std::fs::write(path, jwks(keys)).unwrap();
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims() -> Value {
        json!({
            "iss": ISS, "aud": AUD, "sub": "alice", "email": "alice@example.com",
            "iat": now(), "exp": now() + 300, "groups": ["dev", "ops"],
        })
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    fn sign_as(key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(key.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    fn sign(key: &TestKey, claims: &Value) -> String {
        sign_as(key, Some(&key.kid), claims)
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        auth: OidcAuthenticator,
    }

    async fn fixture(keys: &[&TestKey], tweak: impl FnOnce(&mut OidcConfig)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        write_jwks(&path, keys);
        let mut cfg = OidcConfig::new(ISS, AUD, JwksSource::File(path.clone()));
        tweak(&mut cfg);
        let auth = OidcAuthenticator::new(cfg).await.unwrap();
        Fixture {
            _dir: dir,
            path,
            auth,
        }
    }

    #[tokio::test]
    async fn id_tokens_from_browser_sign_in_must_carry_its_nonce() {
        let ec = ec_key("ec-1");
        let f = fixture(&[&ec], |_| {}).await;
        let c = with(claims(), "nonce", json!("n-123"));
        let (id, exp) = f
            .auth
            .verify_id_token(&sign(&ec, &c), "n-123")
            .await
            .unwrap();
        assert_eq!(id.user, "oidc:alice");
        assert_eq!(Some(exp), c["exp"].as_u64());
        for (token, nonce) in [
            (sign(&ec, &c), "n-124"),
            (sign(&ec, &c), "n-12"),
            (sign(&ec, &claims()), "n-123"),
        ] {
            assert!(
                matches!(
                    f.auth.verify_id_token(&token, nonce).await,
                    Err(OidcError::WrongNonce)
                ),
                "nonce {nonce}"
            );
        }
        // Everything a bearer token must pass still applies.
        let expired = with(c.clone(), "exp", json!(now() - 3600));
        assert!(matches!(
            f.auth.verify_id_token(&sign(&ec, &expired), "n-123").await,
            Err(OidcError::Expired)
        ));
        let other_aud = with(c, "aud", json!("someone-else"));
        assert!(matches!(
            f.auth
                .verify_id_token(&sign(&ec, &other_aud), "n-123")
                .await,
            Err(OidcError::WrongAudience { .. })
        ));
    }

    #[tokio::test]
    async fn browser_sign_in_needs_discovery() {
        let ec = ec_key("ec-1");
        let browser = super::super::oidc_login::BrowserSignIn {
            redirect_url: "https://cattery.example/ui/sign-in/sso/callback".into(),
            client_secret: None,
            extra_scopes: vec![],
        };
        let f = fixture(&[&ec], |c| c.browser = Some(browser)).await;
        let err = super::super::oidc_login::OidcLogin::new(Arc::new(f.auth))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OidcError::BrowserSignIn(m) if m.contains("discovery")),
            "{err}"
        );
        let f = fixture(&[&ec], |_| {}).await;
        assert!(
            super::super::oidc_login::OidcLogin::new(Arc::new(f.auth))
                .await
                .unwrap()
                .is_none(),
            "off unless configured"
        );
    }

    #[tokio::test]
    async fn valid_tokens_map_to_prefixed_identities() {
        let ec = ec_key("ec-1");
        let ed = ed_key("ed-1");
        let f = fixture(&[&ec, &ed], |_| {}).await;

        let id = f.auth.authenticate(&sign(&ec, &claims())).await.unwrap();
        assert_eq!(
            id,
            Identity {
                user: "oidc:alice".into(),
                groups: vec!["oidc:dev".into(), "oidc:ops".into()],
            }
        );

        // EdDSA, groups as a single string, audience as an array.
        let c = with(claims(), "groups", json!("admins"));
        let c = with(c, "aud", json!(["other", AUD]));
        let id = f.auth.authenticate(&sign(&ed, &c)).await.unwrap();
        assert_eq!(id.user, "oidc:alice");
        assert_eq!(id.groups, vec!["oidc:admins".to_string()]);

        // No groups claim at all.
        let c = without(claims(), "groups");
        let id = f.auth.authenticate(&sign(&ec, &c)).await.unwrap();
        assert!(id.groups.is_empty());

        // Within the 30 s leeway.
        let c = with(claims(), "exp", json!(now() - 10));
        let c = with(c, "nbf", json!(now() + 10));
        assert!(f.auth.authenticate(&sign(&ec, &c)).await.is_ok());
    }

    #[tokio::test]
    async fn token_without_kid_uses_the_compatible_keys() {
        let ec = ec_key("ec-1");
        let ed = ed_key("ed-1");
        let f = fixture(&[&ec, &ed], |_| {}).await;
        let id = f
            .auth
            .authenticate(&sign_as(&ed, None, &claims()))
            .await
            .unwrap();
        assert_eq!(id.user, "oidc:alice");
        let id = f
            .auth
            .authenticate(&sign_as(&ec, None, &claims()))
            .await
            .unwrap();
        assert_eq!(id.user, "oidc:alice");

        // Two EC keys: both are tried.
        let ec2 = ec_key("ec-2");
        let f = fixture(&[&ec, &ec2], |_| {}).await;
        assert!(
            f.auth
                .authenticate(&sign_as(&ec2, None, &claims()))
                .await
                .is_ok()
        );
        let stranger = ec_key("x");
        assert!(matches!(
            f.auth
                .authenticate(&sign_as(&stranger, None, &claims()))
                .await,
            Err(OidcError::BadSignature)
        ));
    }

    #[tokio::test]
    async fn signature_by_another_key_with_the_same_kid_is_refused() {
        let ec = ec_key("ec-1");
        let f = fixture(&[&ec], |_| {}).await;
        let impostor = ec_key("ec-1");
        let err = f
            .auth
            .authenticate(&sign(&impostor, &claims()))
            .await
            .unwrap_err();
        assert!(matches!(err, OidcError::BadSignature), "{err}");

        // A tampered payload under a genuine signature.
        let token = sign(&ec, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64u(with(claims(), "sub", json!("root")).to_string().as_bytes());
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert!(matches!(
            f.auth.authenticate(&tampered).await,
            Err(OidcError::BadSignature)
        ));
    }

    #[tokio::test]
    async fn claim_checks() {
        let ec = ec_key("ec-1");
        let f = fixture(&[&ec], |_| {}).await;
        let check = |c: Value| {
            let token = sign(&ec, &c);
            let auth = &f.auth;
            async move { auth.authenticate(&token).await.unwrap_err() }
        };

        match check(with(claims(), "iss", json!("https://evil.example"))).await {
            OidcError::WrongIssuer { expected, got } => {
                assert_eq!(expected, ISS);
                assert_eq!(got, "https://evil.example");
            }
            other => panic!("{other}"),
        }
        // A prefix or suffix of the issuer is not the issuer.
        assert!(matches!(
            check(with(claims(), "iss", json!(format!("{ISS}/")))).await,
            OidcError::WrongIssuer { .. }
        ));
        assert!(matches!(
            check(with(claims(), "iss", json!([ISS]))).await,
            OidcError::WrongIssuer { .. }
        ));
        assert!(matches!(
            check(with(claims(), "aud", json!("someone-else"))).await,
            OidcError::WrongAudience { expected } if expected == AUD
        ));
        assert!(matches!(
            check(with(claims(), "aud", json!(["a", "b"]))).await,
            OidcError::WrongAudience { .. }
        ));
        assert!(matches!(
            check(without(claims(), "aud")).await,
            OidcError::MissingClaim(c) if c == "aud"
        ));
        assert!(matches!(
            check(with(claims(), "exp", json!(now() - 300))).await,
            OidcError::Expired
        ));
        assert!(matches!(
            check(without(claims(), "exp")).await,
            OidcError::MissingClaim(c) if c == "exp"
        ));
        assert!(matches!(
            check(with(claims(), "nbf", json!(now() + 300))).await,
            OidcError::NotYetValid
        ));
        assert!(matches!(
            check(without(claims(), "sub")).await,
            OidcError::MissingClaim(c) if c == "sub"
        ));
        assert!(matches!(
            check(with(claims(), "sub", json!(""))).await,
            OidcError::MissingClaim(c) if c == "sub"
        ));
        assert!(matches!(
            check(with(claims(), "sub", json!(42))).await,
            OidcError::MissingClaim(c) if c == "sub"
        ));
        assert!(matches!(
            check(with(claims(), "groups", json!(["ok", 1]))).await,
            OidcError::MissingClaim(c) if c == "groups"
        ));
        assert!(matches!(
            check(with(
                claims(),
                "sub",
                json!("alice\r\nImpersonate-User: root")
            ))
            .await,
            OidcError::Malformed(_)
        ));
    }

    #[tokio::test]
    async fn custom_username_claim_and_empty_prefix() {
        let ec = ec_key("ec-1");
        let f = fixture(&[&ec], |cfg| {
            cfg.username_claim = "email".into();
            cfg.username_prefix = String::new();
            cfg.groups_claim = "roles".into();
            cfg.groups_prefix = "idp/".into();
        })
        .await;
        let c = with(claims(), "roles", json!(["viewer"]));
        let id = f.auth.authenticate(&sign(&ec, &c)).await.unwrap();
        assert_eq!(
            id,
            Identity {
                user: "alice@example.com".into(),
                groups: vec!["idp/viewer".into()],
            }
        );
        let c = with(claims(), "email_verified", json!(true));
        assert!(f.auth.authenticate(&sign(&ec, &c)).await.is_ok());
        let c = with(claims(), "email_verified", json!(false));
        assert!(matches!(
            f.auth.authenticate(&sign(&ec, &c)).await,
            Err(OidcError::MissingClaim(c)) if c == "email_verified"
        ));
        let c = without(claims(), "email");
        assert!(matches!(
            f.auth.authenticate(&sign(&ec, &c)).await,
            Err(OidcError::MissingClaim(c)) if c == "email"
        ));
    }

    fn unsigned(alg: &str, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        format!(
            "{}.{}.",
            b64u(header.to_string().as_bytes()),
            b64u(claims.to_string().as_bytes())
        )
    }

    #[tokio::test]
    async fn none_and_hmac_are_refused() {
        let ec = ec_key("ec-1");
        let f = fixture(&[&ec], |_| {}).await;

        let token = unsigned("none", "ec-1", &claims());
        assert!(OidcAuthenticator::looks_like_jwt(&token));
        let err = f.auth.authenticate(&token).await.unwrap_err();
        assert!(matches!(err, OidcError::UnsupportedAlgorithm(_)), "{err}");

        // HS256 keyed with the issuer's public key: the algorithm-confusion attack.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ec-1".into());
        let secret = ec.jwk.to_string();
        let token = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let err = f.auth.authenticate(&token).await.unwrap_err();
        assert!(matches!(err, OidcError::UnsupportedAlgorithm(_)), "{err}");
        assert!(!err.to_string().contains(&token));

        // A header that names an algorithm the key does not fit.
        let ed = ed_key("ec-1");
        let err = f
            .auth
            .authenticate(&sign(&ed, &claims()))
            .await
            .unwrap_err();
        assert!(matches!(err, OidcError::UnsupportedAlgorithm(_)), "{err}");
    }

    #[tokio::test]
    async fn malformed_tokens() {
        let ec = ec_key("ec-1");
        let f = fixture(&[&ec], |_| {}).await;
        for token in ["", "abc", "a.b", "a.b.c.d", "!!.b.c", "e30.e30.e30"] {
            assert!(
                matches!(
                    f.auth.authenticate(token).await,
                    Err(OidcError::Malformed(_))
                ),
                "{token}"
            );
        }
        assert!(matches!(
            f.auth.authenticate("a.b.c.d.e").await,
            Err(OidcError::Malformed(m)) if m.contains("JWE")
        ));
    }

    /// The server shares one authenticator between tasks and awaits it inside handlers.
    #[allow(dead_code)]
    fn authenticator_is_send_sync_and_its_future_is_send(auth: &OidcAuthenticator) {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        send_sync(auth);
        send(&auth.authenticate(""));
    }

    #[test]
    fn looks_like_jwt() {
        assert!(OidcAuthenticator::looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(OidcAuthenticator::looks_like_jwt("eyJh.eyJz.a-_Z09"));
        assert!(OidcAuthenticator::looks_like_jwt("eyJh.eyJz."));
        assert!(!OidcAuthenticator::looks_like_jwt(
            "cat_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
        ));
        assert!(!OidcAuthenticator::looks_like_jwt("a.b"));
        assert!(!OidcAuthenticator::looks_like_jwt("a.b.c.d"));
        assert!(!OidcAuthenticator::looks_like_jwt(".b.c"));
        assert!(!OidcAuthenticator::looks_like_jwt("a..c"));
        assert!(!OidcAuthenticator::looks_like_jwt("a=.b.c"));
        assert!(!OidcAuthenticator::looks_like_jwt("a+/.b.c"));
        assert!(!OidcAuthenticator::looks_like_jwt(""));
    }

    #[tokio::test]
    async fn unknown_kid_reloads_the_keys_at_most_every_30_seconds() {
        let k1 = ec_key("k1");
        let k2 = ed_key("k2");
        let k3 = ec_key("k3");
        let f = fixture(&[&k1], |_| {}).await;

        // Rotation: the issuer now publishes k2.
        write_jwks(&f.path, &[&k1, &k2]);
        let id = f.auth.authenticate(&sign(&k2, &claims())).await.unwrap();
        assert_eq!(id.user, "oidc:alice");

        // Another rotation right after: not picked up before 30 s have passed.
        write_jwks(&f.path, &[&k1, &k2, &k3]);
        let err = f
            .auth
            .authenticate(&sign(&k3, &claims()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OidcError::UnknownKey(kid) if kid == "k3"),
            "{err}"
        );
        // The already-known keys still work.
        assert!(f.auth.authenticate(&sign(&k1, &claims())).await.is_ok());
    }

    #[tokio::test]
    async fn withdrawn_keys_stop_working_after_the_periodic_reload() {
        let k1 = ec_key("k1");
        let k2 = ec_key("k2");
        let f = fixture(&[&k1, &k2], |c| {
            c.jwks_refresh_interval = Duration::from_millis(100);
        })
        .await;
        assert!(f.auth.authenticate(&sign(&k1, &claims())).await.is_ok());
        // The issuer withdraws k1 (compromised, say) and keeps k2.
        write_jwks(&f.path, &[&k2]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match f.auth.authenticate(&sign(&k1, &claims())).await {
                Err(OidcError::UnknownKey(kid)) => {
                    assert_eq!(kid, "k1");
                    break;
                }
                Ok(_) => {
                    assert!(Instant::now() < deadline, "k1 still accepted after 20 s");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert!(f.auth.authenticate(&sign(&k2, &claims())).await.is_ok());
    }

    #[tokio::test]
    async fn keys_without_kid() {
        let mut anon = ec_key("");
        anon.jwk.as_object_mut().unwrap().remove("kid");
        let f = fixture(&[&anon], |_| {}).await;
        // A token naming a kid is still matched against keys that have none (after a
        // reload attempt, in case the issuer rotated)...
        assert!(
            f.auth
                .authenticate(&sign_as(&anon, Some("k"), &claims()))
                .await
                .is_ok()
        );
        // ...but a rotation to a key with that kid is picked up.
        let f = fixture(&[&anon], |_| {}).await;
        let k2 = ec_key("k2");
        write_jwks(&f.path, &[&anon, &k2]);
        assert!(f.auth.authenticate(&sign(&k2, &claims())).await.is_ok());
    }

    #[tokio::test]
    async fn failed_reload_keeps_the_previous_keys() {
        let k1 = ec_key("k1");
        let f = fixture(&[&k1], |_| {}).await;
        std::fs::write(&f.path, "not json").unwrap();
        let k2 = ec_key("k2");
        assert!(matches!(
            f.auth.authenticate(&sign(&k2, &claims())).await,
            Err(OidcError::UnknownKey(_))
        ));
        assert!(f.auth.authenticate(&sign(&k1, &claims())).await.is_ok());
    }

    #[tokio::test]
    async fn startup_fails_clearly_on_bad_key_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let start = |path: &Path| {
            OidcAuthenticator::new(OidcConfig::new(ISS, AUD, JwksSource::File(path.into())))
        };

        let err = start(&dir.path().join("missing.json")).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::Jwks(m) if m.contains("missing.json")),
            "{err}"
        );

        std::fs::write(&path, "{").unwrap();
        let err = start(&path).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::Jwks(m) if m.contains("jwks.json")),
            "{err}"
        );

        // Only unusable keys: a symmetric key and an encryption key.
        let ec = ec_key("enc");
        let mut enc = ec.jwk.clone();
        enc["use"] = json!("enc");
        let doc = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, enc]});
        std::fs::write(&path, doc.to_string()).unwrap();
        let err = start(&path).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::Jwks(m) if m.contains("no usable signing key")),
            "{err}"
        );

        // A point that is not on the curve.
        let mut bad = ec_key("bad").jwk;
        bad["y"] = json!(b64u(&[7u8; 32]));
        std::fs::write(&path, json!({"keys": [bad]}).to_string()).unwrap();
        let err = start(&path).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::Jwks(m) if m.contains("invalid key")),
            "{err}"
        );

        // Unusable keys next to a good one are skipped.
        let good = ed_key("good");
        let doc = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "weird"}, good.jwk]});
        std::fs::write(&path, doc.to_string()).unwrap();
        let auth = start(&path).await.unwrap();
        assert!(auth.authenticate(&sign(&good, &claims())).await.is_ok());
    }

    #[tokio::test]
    async fn plain_http_is_refused_except_on_loopback() {
        for url in [
            "http://issuer.example/keys",
            "http://10.0.0.1/keys",
            "ftp://issuer.example/keys",
            "issuer.example/keys",
        ] {
            let cfg = OidcConfig::new(ISS, AUD, JwksSource::Url(url.into()));
            let err = OidcAuthenticator::new(cfg).await.unwrap_err();
            assert!(
                matches!(&err, OidcError::Jwks(m) if m.contains(url)),
                "{err}"
            );
        }
        assert!(parse_url("http://127.0.0.1:8080/keys").is_ok());
        assert!(parse_url("http://[::1]:8080/keys").is_ok());
        assert!(parse_url("http://localhost/keys").is_ok());
        let e = parse_url("https://issuer.example/keys").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("issuer.example", 443, "/keys")
        );
    }

    /// A tiny JWKS server on 127.0.0.1 that counts requests; TLS when `tls` is given.
    struct JwksServer {
        url: String,
        /// `http://127.0.0.1:PORT` (or `https://localhost:PORT`), with no trailing slash.
        base: String,
        body: Arc<Mutex<String>>,
        /// Served at `/.well-known/openid-configuration`.
        discovery: Arc<Mutex<String>>,
        hits: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for JwksServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve_jwks(body: String, tls: Option<Arc<rustls::ServerConfig>>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let base = format!("{scheme}://{host}:{port}");
        let url = format!("{base}/.well-known/jwks.json");
        let discovery = Arc::new(Mutex::new(String::new()));
        let (b, h, d) = (body.clone(), hits.clone(), discovery.clone());
        let task = tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (b, h, d, tls) = (b.clone(), h.clone(), d.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (b, h, d) = (b.clone(), h.clone(), d.clone());
                            async move {
                                assert_eq!(req.headers()[http::header::ACCEPT], "application/json");
                                let body =
                                    if req.uri().path() == "/.well-known/openid-configuration" {
                                        d.lock().unwrap().clone()
                                    } else {
                                        assert_eq!(req.uri().path(), "/.well-known/jwks.json");
                                        h.fetch_add(1, Ordering::SeqCst);
                                        b.lock().unwrap().clone()
                                    };
                                Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                                    Bytes::from(body),
                                )))
                            }
                        },
                    );
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(cfg) => {
                            let Ok(stream) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                            else {
                                return;
                            };
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        JwksServer {
            url,
            base,
            body,
            discovery,
            hits,
            task,
        }
    }

    #[tokio::test]
    async fn discovery_finds_the_keys_and_refuses_another_issuer() {
        let k1 = ec_key("k1");
        let server = serve_jwks(jwks(&[&k1]), None).await;
        let doc = |issuer: &str| {
            json!({
                "issuer": issuer,
                "jwks_uri": server.url,
                "authorization_endpoint": format!("{}/auth", server.base),
                "token_endpoint": format!("{}/token", server.base),
                "end_session_endpoint": format!("{}/logout", server.base),
            })
            .to_string()
        };
        *server.discovery.lock().unwrap() = doc(&server.base);
        let auth = OidcAuthenticator::new(OidcConfig::new(
            server.base.clone(),
            AUD,
            JwksSource::Discovery,
        ))
        .await
        .unwrap();
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
        let meta = auth.provider_metadata().unwrap();
        assert_eq!(meta.jwks_uri, server.url);
        assert_eq!(meta.token_endpoint, Some(format!("{}/token", server.base)));
        assert_eq!(
            meta.end_session_endpoint,
            Some(format!("{}/logout", server.base))
        );
        let c = with(claims(), "iss", json!(server.base));
        assert_eq!(
            auth.authenticate(&sign(&k1, &c)).await.unwrap().user,
            "oidc:alice"
        );

        // A trailing slash is another issuer: `iss` is compared exactly.
        *server.discovery.lock().unwrap() = doc(&format!("{}/", server.base));
        let err = OidcAuthenticator::new(OidcConfig::new(
            server.base.clone(),
            AUD,
            JwksSource::Discovery,
        ))
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("openid-configuration")
                && msg.contains("not for the configured issuer")
                && msg.contains(&format!("\"{}/\"", server.base)),
            "{msg}"
        );
        // Not a discovery document.
        *server.discovery.lock().unwrap() = "{}".into();
        let err = OidcAuthenticator::new(OidcConfig::new(
            server.base.clone(),
            AUD,
            JwksSource::Discovery,
        ))
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("not a discovery document"),
            "{err}"
        );
        // Only the first start fetched keys.
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn jwks_over_http_on_loopback() {
        let k1 = ec_key("k1");
        let server = serve_jwks(jwks(&[&k1]), None).await;
        let auth = OidcAuthenticator::new(OidcConfig::new(
            ISS,
            AUD,
            JwksSource::Url(server.url.clone()),
        ))
        .await
        .unwrap();
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
        let id = auth.authenticate(&sign(&k1, &claims())).await.unwrap();
        assert_eq!(id.user, "oidc:alice");
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);

        // Rotation, with a burst of concurrent tokens naming unknown keys: one fetch only.
        let k2 = ed_key("k2");
        *server.body.lock().unwrap() = jwks(&[&k1, &k2]);
        let auth = Arc::new(auth);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let auth = auth.clone();
            let token = if i == 0 {
                sign(&k2, &claims())
            } else {
                sign_as(&k2, Some(&format!("random-{i}")), &claims())
            };
            tasks.push(tokio::spawn(async move { auth.authenticate(&token).await }));
        }
        let mut accepted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => accepted += 1,
                Err(OidcError::UnknownKey(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(accepted, 1);
        assert_eq!(server.hits.load(Ordering::SeqCst), 2);
        assert!(auth.authenticate(&sign(&k2, &claims())).await.is_ok());
        assert_eq!(server.hits.load(Ordering::SeqCst), 2);
        // Later unknown kids within 30 s do not reach the issuer.
        for i in 0..5 {
            let token = sign_as(&k2, Some(&format!("later-{i}")), &claims());
            assert!(matches!(
                auth.authenticate(&token).await,
                Err(OidcError::UnknownKey(_))
            ));
        }
        assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn jwks_over_https_with_a_private_ca() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let server_cfg = cattery_tunnel::tls::https_server_config(
            vec![cert.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        )
        .unwrap();
        let k1 = ed_key("k1");
        let server = serve_jwks(jwks(&[&k1]), Some(Arc::new(server_cfg))).await;

        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let mut cfg = OidcConfig::new(ISS, AUD, JwksSource::Url(server.url.clone()));
        cfg.jwks_ca_file = Some(ca);
        let auth = OidcAuthenticator::new(cfg).await.unwrap();
        assert!(auth.authenticate(&sign(&k1, &claims())).await.is_ok());

        // Another CA: the server is not trusted.
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let other_ca = dir.path().join("other.pem");
        std::fs::write(&other_ca, other.cert.pem()).unwrap();
        let mut cfg = OidcConfig::new(ISS, AUD, JwksSource::Url(server.url.clone()));
        cfg.jwks_ca_file = Some(other_ca);
        let err = OidcAuthenticator::new(cfg).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::Jwks(m) if m.contains("TLS")),
            "{err}"
        );
    }
}
