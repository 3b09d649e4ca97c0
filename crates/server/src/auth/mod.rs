//! Authentication: who is making a request.
//!
//! Two authenticators: opaque bearer tokens issued by the management plane ([`tokens`]) and
//! OIDC JWTs from a configured issuer ([`oidc`]). Failed attempts are rate-limited per
//! source address ([`ratelimit`]).

pub mod oidc;
pub mod oidc_login;
pub(crate) mod ratelimit;
pub(crate) mod tokens;

use base64::Engine;

pub(crate) use tokens::TokenAuthenticator;
pub use tokens::TokenError;

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User name, as forwarded in `Impersonate-User`.
    pub user: String,
    /// Groups, as forwarded in `Impersonate-Group`.
    pub groups: Vec<String>,
}

/// User name of the token created on first start.
pub const ADMIN_USER: &str = "cattery:admin";
/// Group of that user; installation manifests bind it to `cluster-admin` in each cluster.
pub const ADMIN_GROUP: &str = "cattery:admins";

/// A new random token (prefix `cat_`, so leaked tokens are easy to scan for).
pub fn generate_token() -> String {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    format!(
        "cat_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    )
}

/// A short random hex id.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    hex::encode(buf)
}
