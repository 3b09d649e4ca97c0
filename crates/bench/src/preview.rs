//! `cattery-bench preview`: how long `POST /apis/cattery.dev/v1/federatedpolicies/preview`
//! takes for a policy placed on a fleet whose log store holds 24 hours of its flows
//! (issue 16's "preview time over 24 h of flows of 100 clusters").
//!
//! Seeding is the `ui` bench's ([`crate::ui::fill_store`]): `--flows` flow records of the
//! simulator's traffic model for `--clusters` clusters, stamped over the 23 hours before
//! seeding began, ingested into the server's log store before it starts. Then the clusters
//! are registered through the API, every one labelled `env=prod`, and every one gets a
//! real agent (tasks of this process, one shared simulator) connected over its mTLS
//! tunnel, because a preview reads each selected cluster's NetworkPolicies and namespaces
//! live through its tunnel.
//!
//! The previewed policy isolates the shop's `cart` pods for ingress (one Kubernetes
//! NetworkPolicy) and selects `env=prod`, so every cluster; it is posted `--requests` times
//! one after another (after `--warmup` untimed) with `?since=24h`, and every answer is
//! checked: every cluster `Evaluated`, together counting every seeded record, and some
//! flows changed. The time is from sending the request to the last byte of the answer
//! (HTTP/1.1 over TLS, admin token); server CPU per request is read from `/proc`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::clusters::{Agents, register_all, wait_connected};
use crate::logstore::dir_bytes;
use crate::report::{machine, num, quantile_ms, today};
use crate::server_proc::{ServerProc, cpu_seconds, proc_status};
use crate::ui::{SPAN_S, Seeding, cluster_name, fill_store};
use crate::upstream::{Upstream, UpstreamScheme};

/// Flags of `cattery-bench preview`.
#[derive(clap::Args, Clone, Debug)]
pub struct PreviewBenchArgs {
    /// Clusters registered, connected and selected by the policy; the flows are theirs.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub clusters: u64,
    /// Flow records ingested into the server's log store before it starts (24 hours'
    /// worth, spread over the clusters).
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub flows: u64,
    /// Timed previews.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Untimed previews first.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Threads ingesting the flows.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub writers: u64,
    /// Flow records per ingest call.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Seed of the simulated clusters' traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How the simulator the agents use serves (see `tunnel --upstream`).
    #[arg(long, value_enum, default_value_t = UpstreamScheme::Https)]
    pub upstream: UpstreamScheme,
    /// Keep the working directory (server data, store, logs) instead of deleting it.
    #[arg(long)]
    pub keep_dir: bool,
}

const PREVIEW: &str = "/apis/cattery.dev/v1/federatedpolicies/preview?since=24h";

/// The previewed policy: every `env=prod` cluster's shop `cart` pods isolated for ingress.
fn policy() -> Value {
    json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": "bench-cart-closed"},
        "spec": {
            "placement": {"clusterSelector": {"matchLabels": {"env": "prod"}}},
            "resources": [{
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "cart-closed", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "cart"}},
                         "policyTypes": ["Ingress"]}
            }]
        }
    })
}

/// What one answer says, summed over its clusters.
#[derive(Debug, Default, PartialEq)]
struct Answer {
    clusters: usize,
    records: u64,
    changed: u64,
    bytes: usize,
}

/// Checks an answer: every one of `clusters` evaluated, `flows` records in all.
fn check(body: &[u8], clusters: u64, flows: u64) -> anyhow::Result<Answer> {
    let v: Value = serde_json::from_slice(body).context("the preview is not JSON")?;
    let list = v["status"]["clusters"]
        .as_array()
        .with_context(|| format!("no status.clusters in the preview: {v}"))?;
    anyhow::ensure!(
        list.len() as u64 == clusters,
        "the preview covers {} clusters, {clusters} were selected",
        list.len()
    );
    let mut a = Answer {
        clusters: list.len(),
        bytes: body.len(),
        ..Default::default()
    };
    for c in list {
        anyhow::ensure!(
            c["state"] == "Evaluated",
            "cluster {} is {} ({})",
            c["name"],
            c["state"],
            c["message"]
        );
        a.records += c["flows"]["records"].as_u64().unwrap_or(0);
        a.changed += c["flows"]["changed"].as_u64().unwrap_or(0);
    }
    anyhow::ensure!(
        a.records == flows,
        "the preview counted {} flow records, {flows} were ingested (did the run take so \
         long that the oldest left the 24-hour window?)",
        a.records
    );
    anyhow::ensure!(a.changed > 0, "the policy changed no flow's verdict");
    Ok(a)
}

/// What was measured.
struct Measured {
    ingest: Duration,
    store_bytes: u64,
    connect: Duration,
    samples: Vec<Duration>,
    answer: Answer,
    server_cpu: f64,
    rss_kib: u64,
    problems: Vec<String>,
    agent_failures: usize,
}

/// Runs `cattery-bench preview` and prints its report.
pub async fn run(args: PreviewBenchArgs) -> anyhow::Result<()> {
    crate::idle::check_open_files(args.clusters as usize)?;
    let server_bin = crate::server_proc::cattery_binary()?;
    let dir = crate::work_dir()?;
    eprintln!("working directory: {}", dir.display());
    let m = match measure(&args, &dir).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "the working directory {} is kept for inspection",
                dir.display()
            );
            return Err(e);
        }
    };
    print!("{}", render(&args, &server_bin, &m));
    if args.keep_dir {
        eprintln!("working directory kept: {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    Ok(())
}

async fn measure(args: &PreviewBenchArgs, dir: &Path) -> anyhow::Result<Measured> {
    let name = "preview-server";
    let log_dir = ServerProc::data_dir(dir, name).join("logs");
    let start_s = time::OffsetDateTime::now_utc().unix_timestamp() - SPAN_S as i64;
    eprintln!(
        "ingesting {} flows of {} clusters into {} …",
        args.flows,
        args.clusters,
        log_dir.display()
    );
    let seeding = Seeding {
        flows: args.flows,
        flow_clusters: args.clusters,
        seed: args.seed,
        batch: args.batch,
        writers: args.writers,
    };
    let ingest = {
        let d = log_dir.clone();
        tokio::task::spawn_blocking(move || fill_store(&seeding, &d, start_s))
            .await
            .context("the ingest threads panicked")??
    };
    let store_bytes = dir_bytes(&log_dir);
    eprintln!("starting the management plane on that data directory …");
    let mut server = ServerProc::start(dir, name).await?;
    let pid = server.pid();
    let api = std::sync::Arc::new(server.api_client()?);
    let sim = Upstream::start(dir, args.upstream).await?;
    let upstream = sim.agent_settings(&server.ca_file);
    let mut agents = Agents::new();
    let result = async {
        eprintln!(
            "registering and connecting {} clusters (env=prod) …",
            args.clusters
        );
        let t = Instant::now();
        let clusters = (0..args.clusters)
            .map(|i| {
                let labels = [("env".to_string(), "prod".to_string())].into();
                (cluster_name(i), labels, upstream.clone())
            })
            .collect();
        let settings = register_all(&api, clusters).await?;
        agents.start(settings).await;
        wait_connected(
            &api,
            args.clusters as usize,
            Duration::from_secs(60) + Duration::from_millis(60 * args.clusters),
            || format!("; server log tail:\n{}", server.log_tail(15)),
        )
        .await?;
        let connect = t.elapsed();
        let body = serde_json::to_vec(&policy())?;
        let call = || async {
            let t = Instant::now();
            let answer = api
                .call(http::Method::POST, PREVIEW, Some(body.clone()))
                .await?;
            let took = t.elapsed();
            let a = check(&answer, args.clusters, args.flows)?;
            Ok::<_, anyhow::Error>((took, a))
        };
        eprintln!(
            "previewing ({} untimed, {} timed) …",
            args.warmup, args.requests
        );
        for _ in 0..args.warmup {
            call().await?;
        }
        let cpu0 = cpu_seconds(Some(pid));
        let mut samples = Vec::with_capacity(args.requests as usize);
        let mut answer = Answer::default();
        for _ in 0..args.requests {
            let (d, a) = call().await?;
            samples.push(d);
            answer = a;
        }
        let server_cpu = (cpu_seconds(Some(pid)) - cpu0) / args.requests as f64;
        samples.sort();
        eprintln!(
            "  p50 {:.1} ms, p99 {:.1} ms",
            quantile_ms(&samples, 0.5),
            quantile_ms(&samples, 0.99)
        );
        let rss_kib = proc_status(Some(pid))?.rss_kib;
        Ok::<_, anyhow::Error>((connect, samples, answer, server_cpu, rss_kib))
    }
    .await;
    let agent_failures = agents.stop().await;
    sim.stop().await;
    let problems = server.problems();
    server.stop();
    let (connect, samples, answer, server_cpu, rss_kib) = result?;
    Ok(Measured {
        ingest,
        store_bytes,
        connect,
        samples,
        answer,
        server_cpu,
        rss_kib,
        problems,
        agent_failures,
    })
}

fn render(args: &PreviewBenchArgs, server_bin: &Path, m: &Measured) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n## `{}` — {}\n\nMachine: {}. Server: `{}` as a separate process; the client (HTTP/1.1 over TLS, admin token), the agents and their simulator: this process.\n",
        crate::report::command_line(),
        today(),
        machine(),
        server_bin.display(),
    );
    let _ = writeln!(
        o,
        "Seeded: {} flow records of {} clusters (the simulator's traffic model) over the 23 hours before the run, ingested into the server's log store before it started ({:.1} s; store {} MB on disk). {} clusters registered with `env=prod` and connected with real agents in {:.1} s. Server RSS at the end: {} MiB.\n",
        num(args.flows as f64, 0),
        num(args.clusters as f64, 0),
        m.ingest.as_secs_f64(),
        num(m.store_bytes as f64 / 1e6, 1),
        num(args.clusters as f64, 0),
        m.connect.as_secs_f64(),
        crate::report::mib(m.rss_kib),
    );
    let _ = writeln!(
        o,
        "{} timed previews one after another (after {} untimed) of one NetworkPolicy placed on every cluster, `?since=24h`; each answer checked (every cluster `Evaluated`, every record counted).\n",
        args.requests, args.warmup
    );
    let _ = writeln!(
        o,
        "| What | clusters | flow records | changed records | p50 ms | p90 ms | p99 ms | max ms | answer bytes | server CPU ms per preview |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    let s = &m.samples;
    let _ = writeln!(
        o,
        "| preview, 24 h | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        num(m.answer.clusters as f64, 0),
        num(m.answer.records as f64, 0),
        num(m.answer.changed as f64, 0),
        num(quantile_ms(s, 0.5), 1),
        num(quantile_ms(s, 0.9), 1),
        num(quantile_ms(s, 0.99), 1),
        num(quantile_ms(s, 1.0), 1),
        num(m.answer.bytes as f64, 0),
        num(m.server_cpu * 1e3, 1),
    );
    crate::report::failures(&mut o, m.agent_failures, &m.problems);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(states: &[(&str, u64, u64)]) -> Vec<u8> {
        let clusters: Vec<Value> = states
            .iter()
            .map(|(state, records, changed)| {
                json!({"name": "c", "state": state, "message": "",
                       "flows": {"records": records, "changed": changed}})
            })
            .collect();
        json!({"status": {"clusters": clusters}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn an_answer_must_cover_every_cluster_and_record() {
        let ok = answer(&[("Evaluated", 10, 1), ("Evaluated", 5, 0)]);
        let a = check(&ok, 2, 15).unwrap();
        assert_eq!((a.clusters, a.records, a.changed), (2, 15, 1));
        let err = |b: &[u8], c, f| check(b, c, f).unwrap_err().to_string();
        assert!(err(&ok, 3, 15).contains("covers 2 clusters, 3 were selected"));
        assert!(err(&ok, 2, 16).contains("counted 15 flow records, 16 were ingested"));
        let down = answer(&[("Evaluated", 10, 1), ("Unreachable", 0, 0)]);
        assert!(err(&down, 2, 10).contains("is \"Unreachable\""));
        let same = answer(&[("Evaluated", 10, 0)]);
        assert!(err(&same, 1, 10).contains("changed no flow"));
    }
}
