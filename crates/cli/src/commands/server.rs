//! `cattery server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use cattery_api::ManagementCluster;

/// Flags of `cattery server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Directory for the CA, certificates, tokens and state database.
    #[arg(long, default_value = "./cattery-data")]
    pub data_dir: PathBuf,
    /// Address of the people-facing HTTPS API.
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub api_addr: SocketAddr,
    /// Address of the agents' mTLS tunnel listener.
    #[arg(long, default_value = "0.0.0.0:9449")]
    pub tunnel_addr: SocketAddr,
    /// HOST:PORT agents dial (ManagementCluster spec.address); derived from --tunnel-addr if unset.
    #[arg(long)]
    pub address: Option<String>,
    /// A ManagementCluster resource (YAML or JSON) giving spec.address.
    #[arg(short = 'f', long = "filename", conflicts_with = "address")]
    pub file: Option<PathBuf>,
    /// PEM certificate for the API listener (default: issued by the built-in CA).
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Days to keep a log type, e.g. --retention flows=8 --retention audit=91 (Calico's defaults).
    #[arg(long = "retention", value_name = "TYPE=DAYS", value_parser = parse_retention)]
    pub retention: Vec<(cattery_api::logs::LogType, u32)>,
    /// A UI session ends after this long without a request (e.g. 30m, 2h).
    #[arg(long, value_parser = super::parse_duration, default_value = "30m")]
    pub ui_session_idle: std::time::Duration,
    #[command(flatten)]
    pub oidc: OidcArgs,
}

/// OIDC flags (named as kube-apiserver's): JWTs from this issuer are accepted as bearer
/// tokens alongside Cattery's own.
#[derive(clap::Args, Debug)]
pub struct OidcArgs {
    /// Issuer URL; must equal the tokens' `iss` exactly. Enables OIDC.
    #[arg(long, requires = "oidc_client_id")]
    pub oidc_issuer_url: Option<String>,
    /// Audience the tokens must carry in `aud` (the client id).
    #[arg(long, requires = "oidc_issuer_url")]
    pub oidc_client_id: Option<String>,
    /// The issuer's signing keys as a JWKS file (default: the `jwks_uri` of the issuer's
    /// `/.well-known/openid-configuration`, whose `issuer` must equal --oidc-issuer-url).
    #[arg(long, conflicts_with = "oidc_jwks_url")]
    pub oidc_jwks_file: Option<PathBuf>,
    /// URL of the issuer's JWKS (HTTPS; refetched when a token names an unknown key).
    #[arg(long)]
    pub oidc_jwks_url: Option<String>,
    /// Extra CA certificate (PEM) for the JWKS URL and the discovery document.
    #[arg(long)]
    pub oidc_ca_file: Option<PathBuf>,
    /// Claim holding the user name.
    #[arg(long, default_value = "sub")]
    pub oidc_username_claim: String,
    /// Claim holding the groups (a string or a list).
    #[arg(long, default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Prefix for user names from OIDC, so they cannot collide with token users ("-" for none).
    #[arg(long, default_value = "oidc:")]
    pub oidc_username_prefix: String,
    /// Prefix for groups from OIDC ("-" for none).
    #[arg(long, default_value = "oidc:")]
    pub oidc_groups_prefix: String,
    /// Offer "Sign in with SSO" in the UI: the redirect URI registered at the issuer, the
    /// server's public URL followed by /ui/sign-in/sso/callback (e.g.
    /// https://cattery.example.com:9443/ui/sign-in/sso/callback). Needs OIDC discovery.
    #[arg(long, requires = "oidc_issuer_url")]
    pub oidc_redirect_url: Option<String>,
    /// File holding the client secret, when the issuer registers Cattery as a confidential
    /// client (default: a public client, PKCE only).
    #[arg(long, requires = "oidc_redirect_url")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// A scope to ask for at browser sign-in besides `openid` (repeatable: email, groups…).
    #[arg(long = "oidc-extra-scope", requires = "oidc_redirect_url")]
    pub oidc_extra_scopes: Vec<String>,
}

impl OidcArgs {
    /// The OIDC configuration, if enabled.
    pub fn config(&self) -> anyhow::Result<Option<cattery_server::auth::oidc::OidcConfig>> {
        use cattery_server::auth::oidc::{JwksSource, OidcConfig};
        let (Some(issuer), Some(audience)) = (&self.oidc_issuer_url, &self.oidc_client_id) else {
            return Ok(None);
        };
        let jwks = match (&self.oidc_jwks_file, &self.oidc_jwks_url) {
            (Some(f), None) => JwksSource::File(f.clone()),
            (None, Some(u)) => JwksSource::Url(u.clone()),
            (None, None) => JwksSource::Discovery,
            (Some(_), Some(_)) => anyhow::bail!(
                "give the issuer's keys once: --oidc-jwks-file FILE or --oidc-jwks-url URL \
                 (or neither, to find them by OIDC discovery)"
            ),
        };
        let prefix = |p: &str| {
            if p == "-" {
                String::new()
            } else {
                p.to_string()
            }
        };
        let mut cfg = OidcConfig::new(issuer.clone(), audience.clone(), jwks);
        cfg.jwks_ca_file = self.oidc_ca_file.clone();
        cfg.username_claim = self.oidc_username_claim.clone();
        cfg.groups_claim = self.oidc_groups_claim.clone();
        cfg.username_prefix = prefix(&self.oidc_username_prefix);
        cfg.groups_prefix = prefix(&self.oidc_groups_prefix);
        if let Some(redirect_url) = &self.oidc_redirect_url {
            let client_secret = match &self.oidc_client_secret_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| {
                            format!("reading --oidc-client-secret-file {}", f.display())
                        })?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            cfg.browser = Some(cattery_server::auth::oidc_login::BrowserSignIn {
                redirect_url: redirect_url.clone(),
                client_secret,
                extra_scopes: self.oidc_extra_scopes.clone(),
            });
        }
        Ok(Some(cfg))
    }
}

fn parse_retention(s: &str) -> Result<(cattery_api::logs::LogType, u32), String> {
    let (t, d) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: use TYPE=DAYS, e.g. flows=8"))?;
    let days: u32 = d
        .parse()
        .map_err(|_| format!("{s:?}: {d:?} is not a whole number of days"))?;
    if days == 0 {
        return Err(format!("{s:?}: retention must be at least 1 day"));
    }
    Ok((t.parse()?, days))
}

/// The retention settings from flags.
pub fn retention(flags: &[(cattery_api::logs::LogType, u32)]) -> cattery_logstore::Retention {
    flags
        .iter()
        .fold(cattery_logstore::Retention::default(), |r, (t, d)| {
            r.with(*t, *d)
        })
}

/// Reads `spec.address` from a ManagementCluster file.
pub fn address_from_file(path: &std::path::Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mc: ManagementCluster =
        cattery_api::wire::decode(&bytes).with_context(|| path.display().to_string())?;
    cattery_api::wire::check_type(
        &mc.api_version,
        &mc.kind,
        &[cattery_api::API_VERSION, "operator.tigera.io/v1"],
        "ManagementCluster",
    )
    .with_context(|| path.display().to_string())?;
    cattery_tunnel::dial::split_host_port(&mc.spec.address)
        .with_context(|| format!("{}: spec.address", path.display()))?;
    Ok(mc.spec.address)
}

/// Runs the management plane until Ctrl-C.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let address = match &args.file {
        Some(f) => Some(address_from_file(f)?),
        None => args.address.clone(),
    };
    let shutdown = super::shutdown_on_signal();
    let server = cattery_server::start(
        cattery_server::ServerConfig {
            data_dir: args.data_dir.clone(),
            api_addr: args.api_addr,
            tunnel_addr: args.tunnel_addr,
            address,
            api_tls: args.tls_cert_file.clone().zip(args.tls_key_file.clone()),
            retention: retention(&args.retention),
            oidc: args.oidc.config()?,
            ui_session_idle: Some(args.ui_session_idle),
            access_control: Default::default(),
        },
        shutdown,
    )
    .await?;
    eprintln!("Cattery management plane");
    eprintln!("  API:     https://{}", server.api_addr);
    eprintln!(
        "  tunnels: {} (agents dial {})",
        server.tunnel_addr, server.address
    );
    eprintln!("  CA:      {}", server.ca_file.display());
    if let Some(token) = &server.admin_token {
        eprintln!(
            "  admin token (shown once; also in {}):",
            args.data_dir.join("admin.token").display()
        );
        println!("{token}");
    }
    server.wait().await;
    Ok(())
}
