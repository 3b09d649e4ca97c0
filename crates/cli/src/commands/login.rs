//! `cattery login`: verify and save the management plane's address, token and CA.

use std::path::PathBuf;

use anyhow::Context;

use crate::client::{ApiClient, ConnectArgs, SavedLogin, config_path};

/// Flags of `cattery login`.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Where to save (default: $CATTERY_CONFIG or ~/.config/cattery/config.json).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Checks the credentials against the server, then saves them with mode 0600.
pub async fn run(args: LoginArgs) -> anyhow::Result<()> {
    let target = args.connect.resolve()?;
    let client = ApiClient::new(target.clone())?;
    let review = client
        .call(
            http::Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(
                br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.to_vec(),
            ),
        )
        .await
        .context("checking the login")?;
    let review: serde_json::Value =
        serde_json::from_slice(&review).context("checking the login")?;
    let user = review
        .pointer("/status/userInfo/username")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?")
        .to_string();
    let path = args.config.unwrap_or_else(config_path);
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        cattery_files::create_private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let saved = SavedLogin {
        server: target.server.clone(),
        token: target.token.clone(),
        certificate_authority: target.ca_pem.clone(),
    };
    write_private(&path, &serde_json::to_vec_pretty(&saved)?)?;
    eprintln!(
        "logged in to {} as {user:?}; saved to {}",
        target.server,
        path.display()
    );
    Ok(())
}

/// Writes a file only its owner can read, atomically ([`cattery_files::write_private`]).
pub fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    cattery_files::write_private(path, data).with_context(|| format!("writing {}", path.display()))
}
