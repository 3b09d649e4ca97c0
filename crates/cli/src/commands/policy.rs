//! `cattery policy apply|status|preview`: FederatedPolicies, the fleet-wide table of where
//! each one stands, and what one would change in the traffic the clusters had.

use std::path::PathBuf;

use anyhow::Context;
use cattery_api::federation::preview::{DEFAULT_SINCE, FederatedPolicyPreview, PREVIEW_PATH};
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
    /// Show which of each selected cluster's stored flows a FederatedPolicy would deny or
    /// allow that are allowed or denied now. Nothing is stored or placed.
    Preview {
        /// The FederatedPolicy.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// How far back to read the flows (`24h`, `90m`).
        #[arg(long, default_value = DEFAULT_SINCE)]
        since: String,
        /// Output format (`json`/`yaml`: the whole FederatedPolicyPreview).
        #[arg(short, long, default_value = "table")]
        output: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Runs a policy subcommand.
pub async fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Preview {
            file,
            since,
            output,
            connect,
        } => preview(file, since, output, connect).await,
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
            if !status.remote_clusters.is_empty() {
                println!();
                let rows: Vec<Vec<String>> = status
                    .remote_clusters
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            r.state.to_string(),
                            r.last_transition_time.clone(),
                            r.message.clone(),
                        ]
                    })
                    .collect();
                print_table(&["REMOTE CLUSTER", "STATE", "SINCE", "MESSAGE"], &rows);
            }
            Ok(())
        }
    }
}

async fn preview(
    file: PathBuf,
    since: String,
    output: Format,
    connect: ConnectArgs,
) -> anyhow::Result<()> {
    if since.is_empty() || !since.chars().all(|c| c.is_ascii_alphanumeric()) {
        anyhow::bail!("--since {since:?}: give a duration without spaces, like 24h or 90m");
    }
    let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let value =
        cattery_api::wire::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    cattery_api::federation::validate_value(&value)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let client = ApiClient::new(connect.resolve()?)?;
    let body = client
        .call(
            http::Method::POST,
            &format!("{PREVIEW_PATH}?since={since}"),
            Some(serde_json::to_vec(&value)?),
        )
        .await?;
    let p: FederatedPolicyPreview =
        serde_json::from_slice(&body).context("decoding the FederatedPolicyPreview")?;
    if output != Format::Table {
        return print_object(output, &p);
    }
    println!(
        "{}: flows from {} to {}",
        p.metadata.name, p.spec.from, p.spec.to
    );
    let rows: Vec<Vec<String>> = p
        .status
        .clusters
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.state.to_string(),
                c.flows.records.to_string(),
                c.flows.changed.to_string(),
                c.flows.undetermined.to_string(),
                c.not_evaluated.len().to_string(),
                c.message.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "CLUSTER",
            "STATE",
            "RECORDS",
            "CHANGED",
            "UNDETERMINED",
            "NOT-EVALUATED",
            "MESSAGE",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = p
        .status
        .clusters
        .iter()
        .flat_map(|c| {
            c.changes.iter().chain(&c.undetermined).map(|g| {
                vec![
                    c.name.clone(),
                    g.change.to_string(),
                    g.direction.clone(),
                    g.source.to_string(),
                    g.destination.to_string(),
                    match g.port {
                        Some(port) => format!("{port}/{}", g.protocol),
                        None => g.protocol.clone(),
                    },
                    g.records.to_string(),
                    g.flows.to_string(),
                    g.detail.clone(),
                ]
            })
        })
        .collect();
    if !rows.is_empty() {
        println!();
        print_table(
            &[
                "CLUSTER",
                "CHANGE",
                "DIRECTION",
                "SOURCE",
                "DESTINATION",
                "PORT",
                "RECORDS",
                "FLOWS",
                "DETAIL",
            ],
            &rows,
        );
    }
    Ok(())
}
