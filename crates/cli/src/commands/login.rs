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
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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

/// Writes a file only its owner can read.
pub fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
