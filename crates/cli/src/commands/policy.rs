//! `cattery policy apply|status`: FederatedPolicies, and the fleet-wide table of where
//! each one stands.

use std::path::PathBuf;

use anyhow::Context;
use cattery_api::federation::{FederatedPolicy, PLURAL};

use crate::client::{ApiClient, ApiFailure, ConnectArgs};
use crate::output::{Format, print_object, print_table};

fn base() -> String {
    format!("/apis/cattery.dev/v1/{PLURAL}")
}

/// Policy subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Create or replace a FederatedPolicy from a YAML or JSON file. It is validated here
    /// first (the hub validates it again), so a bad template names its field before
    /// anything is sent.
    Apply {
        /// The FederatedPolicy.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show each cluster's state of a FederatedPolicy.
    Status {
        /// Policy name.
        name: String,
        /// Output format (`json`/`yaml`: the policy's `status`).
        #[arg(short, long, default_value = "table")]
        output: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Runs a policy subcommand.
pub async fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Apply { file, connect } => {
            let text =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let value = cattery_api::wire::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let policy = cattery_api::federation::validate_value(&value)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let name = policy.metadata.name.clone();
            let client = ApiClient::new(connect.resolve()?)?;
            let path = format!("{}/{name}", base());
            let existing: Option<serde_json::Value> = match client.get(&path).await {
                Ok(v) => Some(v),
                Err(e)
                    if e.downcast_ref::<ApiFailure>()
                        .is_some_and(|f| f.0.code == 404) =>
                {
                    None
                }
                Err(e) => return Err(e),
            };
            let mut body = value;
            if let Some(m) = body.as_object_mut() {
                m.remove("status");
            }
            match existing {
                None => {
                    client
                        .call(
                            http::Method::POST,
                            &base(),
                            Some(serde_json::to_vec(&body)?),
                        )
                        .await?;
                    println!("federatedpolicy/{name} created");
                }
                Some(old) => {
                    body["metadata"]["resourceVersion"] =
                        old["metadata"]["resourceVersion"].clone();
                    client
                        .call(http::Method::PUT, &path, Some(serde_json::to_vec(&body)?))
                        .await?;
                    println!("federatedpolicy/{name} configured");
                }
            }
            Ok(())
        }
        PolicyCommand::Status {
            name,
            output,
            connect,
        } => {
            let client = ApiClient::new(connect.resolve()?)?;
            let p: FederatedPolicy = client.get(&format!("{}/{name}", base())).await?;
            let status = p.status.unwrap_or_default();
            if output != Format::Table {
                return print_object(output, &status);
            }
            let c = &status.counts;
            println!(
                "{name}: generation {}, {} clusters: {} applied, {} pending, {} failed, {} drifted, {} unreachable, {} non-compliant",
                status.observed_generation,
                c.total,
                c.applied,
                c.pending,
                c.failed,
                c.drifted,
                c.unreachable,
                c.non_compliant
            );
            let rows: Vec<Vec<String>> = status
                .clusters
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.state.to_string(),
                        c.observed_generation.to_string(),
                        c.reason.clone(),
                        c.last_transition_time.clone(),
                        c.message.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "CLUSTER",
                    "STATE",
                    "GENERATION",
                    "REASON",
                    "SINCE",
                    "MESSAGE",
                ],
                &rows,
            );
            Ok(())
        }
    }
}
