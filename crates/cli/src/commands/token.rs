//! `cattery token create|list|revoke`.

use std::time::Duration;

use cattery_api::{API_VERSION, List, Token, TokenSpec};

use crate::client::{ApiClient, ConnectArgs};
use crate::output::{Format, print_object, print_table};

const BASE: &str = "/apis/cattery.dev/v1/tokens";

/// Token subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bearer token; the token is printed once, on stdout.
    Create {
        /// User the token authenticates as.
        #[arg(
            long,
            required_unless_present = "service_account",
            conflicts_with = "service_account"
        )]
        user: Option<String>,
        /// Service account [NAMESPACE/]NAME (namespace defaults to "cattery"); the user is
        /// system:serviceaccount:NAMESPACE:NAME with Kubernetes' service-account groups.
        #[arg(long)]
        service_account: Option<String>,
        /// A group of that user (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Lifetime, e.g. 30m, 24h, 7d (default: no expiry).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// What the token is for.
        #[arg(long)]
        description: Option<String>,
        /// Print the whole Token object instead of only the token.
        #[arg(short, long)]
        output: Option<Format>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List tokens (ids, users, expiry, last use, revocation; never the secrets).
    List {
        /// Output format.
        #[arg(short, long, default_value = "table")]
        output: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Revoke a token by id; it is refused from the next request on.
    Revoke {
        /// Token id (from `cattery token list`).
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Parses `--ttl` (`90s`, `30m`, `24h`, `7d`, `1w 2d`: humantime's forms), positive and at
/// most [`MAX_EXPIRATION_SECONDS`](cattery_api::token::MAX_EXPIRATION_SECONDS).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("--ttl {s:?}: {e}; use e.g. 30m, 24h or 7d"))?;
    if d.is_zero() {
        return Err(format!("--ttl {s:?}: the lifetime must be positive"));
    }
    if d.as_secs() > cattery_api::token::MAX_EXPIRATION_SECONDS {
        return Err(format!(
            "--ttl {s:?}: at most {}d (ten years)",
            cattery_api::token::MAX_EXPIRATION_SECONDS / 86_400
        ));
    }
    if d.subsec_nanos() != 0 {
        return Err(format!("--ttl {s:?}: give whole seconds"));
    }
    Ok(d)
}

fn service_account(sa: &str) -> anyhow::Result<(String, Vec<String>)> {
    let (ns, name) = sa.split_once('/').unwrap_or(("cattery", sa));
    anyhow::ensure!(
        !ns.is_empty() && !name.is_empty() && !name.contains(['/', ':']) && !ns.contains(':'),
        "--service-account {sa:?}: use NAME or NAMESPACE/NAME"
    );
    Ok((
        cattery_api::token::service_account_user(ns, name),
        cattery_api::token::service_account_groups(ns),
    ))
}

fn or_dash(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

/// Runs a token subcommand.
pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            user,
            service_account: sa,
            groups,
            ttl,
            description,
            output,
            connect,
        } => {
            let client = ApiClient::new(connect.resolve()?)?;
            let (user, mut all_groups) = match (user, sa) {
                (Some(u), _) => (u, vec![]),
                (None, Some(sa)) => service_account(&sa)?,
                (None, None) => anyhow::bail!("give --user NAME or --service-account NAME"),
            };
            all_groups.extend(groups);
            let body = Token {
                api_version: API_VERSION.into(),
                kind: "Token".into(),
                spec: TokenSpec {
                    user,
                    groups: all_groups,
                    expiration_seconds: ttl.map(|d| d.as_secs()),
                    description,
                },
                ..Default::default()
            };
            let bytes = client
                .call(http::Method::POST, BASE, Some(serde_json::to_vec(&body)?))
                .await?;
            let token: Token = serde_json::from_slice(&bytes)?;
            match output {
                Some(f) if f != Format::Table => print_object(f, &token)?,
                _ => {
                    eprintln!(
                        "token {} for user {:?}{} (shown once):",
                        token.metadata.name,
                        token.spec.user,
                        token
                            .status
                            .expiration_timestamp
                            .as_deref()
                            .map(|t| format!(", expires {t}"))
                            .unwrap_or_default()
                    );
                    println!("{}", token.status.token.unwrap_or_default());
                }
            }
        }
        TokenCommand::List { output, connect } => {
            let client = ApiClient::new(connect.resolve()?)?;
            let list: List<Token> = client.get(BASE).await?;
            if output != Format::Table {
                return print_object(output, &list);
            }
            let rows: Vec<Vec<String>> = list
                .items
                .iter()
                .map(|t| {
                    vec![
                        t.metadata.name.clone(),
                        t.spec.user.clone(),
                        if t.spec.groups.is_empty() {
                            "-".into()
                        } else {
                            t.spec.groups.join(",")
                        },
                        or_dash(&t.metadata.creation_timestamp),
                        or_dash(&t.status.expiration_timestamp),
                        or_dash(&t.status.last_used_timestamp),
                        or_dash(&t.status.revocation_timestamp),
                        or_dash(&t.spec.description),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "USER",
                    "GROUPS",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                    "REVOKED",
                    "DESCRIPTION",
                ],
                &rows,
            );
        }
        TokenCommand::Revoke { id, connect } => {
            anyhow::ensure!(
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "token id {id:?}: ids are letters and digits (see `cattery token list`)"
            );
            let client = ApiClient::new(connect.resolve()?)?;
            let bytes = client
                .call(http::Method::DELETE, &format!("{BASE}/{id}"), None)
                .await?;
            let t: Token = serde_json::from_slice(&bytes)?;
            eprintln!(
                "token {} of {:?} revoked at {}",
                t.metadata.name,
                t.spec.user,
                or_dash(&t.status.revocation_timestamp)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_ttl("1w"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_ttl("24").is_err());
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("1x").is_err());
        assert!(parse_ttl("1500ms").is_err());
        // Used to overflow `n * 86_400` (a panic in debug builds, a wrong lifetime in release).
        let e = parse_ttl("99999999999999999d").unwrap_err();
        assert!(e.contains("--ttl"), "{e}");
        let e = parse_ttl("3651d").unwrap_err();
        assert!(e.contains("at most 3650d"), "{e}");
        assert!(parse_ttl("3650d").is_ok());
    }
}
