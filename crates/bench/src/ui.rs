//! `cattery-bench ui`: how long the real `cattery server` takes to render the Manager UI's
//! heaviest pages for a big fleet (issue 15's benchmark).
//!
//! Seeding, in order:
//!
//! 1. `--flows` flow records from the simulator's traffic model of `--flow-clusters`
//!    clusters (the same records, handed over as the server's log puller hands them over,
//!    as `cattery-bench logstore` does; [`crate::logstore::make_batch`]), ingested into the
//!    server's own log store directory (`DATA/logs`, [`EmbeddedStore`] with the server's
//!    options) *before* the server starts, in batches from `--writers` threads, each batch
//!    committed as the server commits them. Pulling 10 M records through agents and tunnels
//!    would measure log shipping, which has its own bench; the store and the records are
//!    the same. They are stamped evenly over the 23 hours before seeding began, so the
//!    pages' "Last 24 hours" covers every one of them.
//! 2. `--clusters` ManagedClusters registered through the API (`POST` with labels `env`
//!    and `region`, as `cattery cluster add` does, each signing its agent's certificate);
//!    the flow clusters are the first of them.
//! 3. `--connected` of them with real agents connected (tasks of this process, one shared
//!    simulator), so the pages show connected and disconnected clusters.
//!
//! Then it signs in through the sign-in form with the admin token (a session cookie, as a
//! browser does) and loads each page `--requests` times one after another (after
//! `--warmup` untimed loads), over HTTP/2 and TLS: the time is from sending the request to
//! the last byte of the answer, which is all server time on loopback (the browser's own
//! drawing is not measured). To say where the time goes it also times the API calls those
//! pages make, alone, with the same bodies (the log store's aggregations and the list of
//! clusters), and reads the server's CPU per page from `/proc`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cattery_logstore::{EmbeddedStore, LogStore, Retention, StoreOptions};
use serde_json::{Value, json};

use crate::api::ApiClient;
use crate::browser::Browser;
use crate::clusters::{Agents, register_all, wait_connected};
use crate::logstore::{Sources, dir_bytes, make_batch};
use crate::report::{machine, num, quantile_ms, today, verdict};
use crate::server_proc::{ServerProc, cpu_seconds, proc_status};
use crate::upstream::{Upstream, UpstreamScheme};

/// Flags of `cattery-bench ui`.
#[derive(clap::Args, Clone, Debug)]
pub struct UiBenchArgs {
    /// ManagedClusters registered through the API.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub clusters: u64,
    /// Flow records ingested into the server's log store before it starts.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub flows: u64,
    /// Clusters the flows come from (the first of the registered ones).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub flow_clusters: u64,
    /// Registered clusters with a real agent connected (the first ones).
    #[arg(long, default_value_t = 100)]
    pub connected: u64,
    /// Timed loads of each page.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Untimed loads of each page first.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Threads ingesting the flows (each batch from one cluster).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub writers: u64,
    /// Flow records per ingest call.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Seed of the simulated clusters' traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How the simulator the connected agents use serves (see `tunnel --upstream`).
    #[arg(long, value_enum, default_value_t = UpstreamScheme::Https)]
    pub upstream: UpstreamScheme,
    /// Keep the working directory (server data, store, logs) instead of deleting it.
    #[arg(long)]
    pub keep_dir: bool,
}

/// The pages' time range: it covers every seeded flow.
const RANGE: &str = "24h";
/// Flows are stamped over this many seconds before seeding began (inside [`RANGE`] for
/// the hour after).
pub(crate) const SPAN_S: u64 = 23 * 3600;
/// Region labels cycle through this many values (the filtered page asks for one).
const REGIONS: u64 = 20;
/// Name of registered cluster `i`.
pub(crate) fn cluster_name(i: u64) -> String {
    format!("c-{i:05}")
}

/// The labels of registered cluster `i`.
fn labels(i: u64) -> BTreeMap<String, String> {
    let env = ["prod", "staging", "dev"][(i % 3) as usize];
    [
        ("env".to_string(), env.to_string()),
        ("region".to_string(), format!("r{:02}", i % REGIONS)),
    ]
    .into()
}

/// One timed page or API call.
struct Timed {
    label: String,
    path: String,
    /// Sorted.
    samples: Vec<Duration>,
    bytes: usize,
    /// Server CPU seconds per load.
    server_cpu: f64,
    /// Whether it is a page with the < 300 ms target.
    target: bool,
}

/// What the seeding took.
struct Seeded {
    flows: u64,
    ingest: Duration,
    store_bytes: u64,
    registered: u64,
    register: Duration,
    connected: u64,
    connect: Duration,
}

/// What to seed a server's log store with (this bench's and `preview`'s).
#[derive(Clone, Debug)]
pub(crate) struct Seeding {
    /// Flow records in all.
    pub flows: u64,
    /// Clusters they come from: registered clusters `0..flow_clusters` ([`cluster_name`]).
    pub flow_clusters: u64,
    /// Seed of the simulated traffic.
    pub seed: u64,
    /// Records per ingest call.
    pub batch: u64,
    /// Ingesting threads.
    pub writers: u64,
}

impl From<&UiBenchArgs> for Seeding {
    fn from(a: &UiBenchArgs) -> Seeding {
        Seeding {
            flows: a.flows,
            flow_clusters: a.flow_clusters,
            seed: a.seed,
            batch: a.batch,
            writers: a.writers,
        }
    }
}

/// Ingests the flows into a store at `dir` (the server's `DATA/logs`), as the server
/// stores what its pullers hand it, stamped evenly over the [`SPAN_S`] seconds after
/// `start_s`.
pub(crate) fn fill_store(args: &Seeding, dir: &Path, start_s: i64) -> anyhow::Result<Duration> {
    let names: Vec<String> = (0..args.flow_clusters).map(cluster_name).collect();
    let sources = Sources::named(names, args.seed, start_s, SPAN_S);
    let store = EmbeddedStore::open_with(dir, Retention::default(), StoreOptions::default())
        .with_context(|| format!("opening a store in {}", dir.display()))?;
    let (flows, batch, writers) = (args.flows, args.batch, args.writers);
    let batches = flows.div_ceil(batch);
    let seqs: Vec<AtomicU64> = (0..args.flow_clusters).map(|_| AtomicU64::new(0)).collect();
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            s.spawn(|| {
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches || failure.lock().is_ok_and(|f| f.is_some()) {
                        break;
                    }
                    let first = b * batch;
                    let n = batch.min(flows - first) as usize;
                    let c = (b % args.flow_clusters) as usize;
                    let seq0 = seqs[c].fetch_add(n as u64, Ordering::Relaxed);
                    let (cluster, stream, recs) =
                        make_batch(&sources, c, n, first, flows, seq0, true);
                    match store.ingest(&cluster, &stream, recs) {
                        Ok(r) if r.stored == n => {}
                        Ok(r) => {
                            let mut f = failure.lock().unwrap_or_else(|e| e.into_inner());
                            f.get_or_insert(format!("{cluster}: stored {} of {n}", r.stored));
                        }
                        Err(e) => {
                            let mut f = failure.lock().unwrap_or_else(|e| e.into_inner());
                            f.get_or_insert(format!("{cluster}: ingest failed: {e}"));
                        }
                    }
                    let d = done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                    let step = (flows / 10).max(1);
                    if d / step != (d - n as u64) / step {
                        eprintln!(
                            "  {d} flows stored, {:.0}/s",
                            d as f64 / started.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
    });
    if let Some(f) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        anyhow::bail!("{f}");
    }
    Ok(started.elapsed())
}

/// Loads `path` `warmup` times untimed, then `n` times timed; `check` vets every answer.
async fn time_page(
    browser: &mut Browser,
    pid: u32,
    label: &str,
    path: &str,
    args: &UiBenchArgs,
    check: &dyn Fn(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<Timed> {
    eprintln!("  {label}: {path}");
    for _ in 0..args.warmup {
        let l = browser.load(path).await?;
        check(&l.body).with_context(|| format!("GET {path}"))?;
    }
    let cpu0 = cpu_seconds(Some(pid));
    let mut samples = Vec::with_capacity(args.requests as usize);
    let mut bytes = 0;
    for _ in 0..args.requests {
        let l = browser.load(path).await?;
        check(&l.body).with_context(|| format!("GET {path}"))?;
        samples.push(l.elapsed);
        bytes = l.body.len();
    }
    let cpu = cpu_seconds(Some(pid)) - cpu0;
    samples.sort();
    eprintln!(
        "    p50 {:.1} ms, p99 {:.1} ms",
        quantile_ms(&samples, 0.5),
        quantile_ms(&samples, 0.99)
    );
    Ok(Timed {
        label: label.into(),
        path: path.into(),
        samples,
        bytes,
        server_cpu: cpu / args.requests as f64,
        target: true,
    })
}

/// Times one API call (`body`: a POST of that JSON) as [`time_page`] does.
async fn time_api(
    api: &ApiClient,
    pid: u32,
    label: &str,
    path: &str,
    body: Option<&Value>,
    args: &UiBenchArgs,
) -> anyhow::Result<Timed> {
    eprintln!("  API alone: {label}");
    let call = || async {
        let t = Instant::now();
        let (method, b) = match body {
            Some(b) => (http::Method::POST, Some(serde_json::to_vec(b)?)),
            None => (http::Method::GET, None),
        };
        let answer = api.call(method, path, b).await?;
        Ok::<_, anyhow::Error>((t.elapsed(), answer.len()))
    };
    for _ in 0..args.warmup {
        call().await?;
    }
    let cpu0 = cpu_seconds(Some(pid));
    let mut samples = vec![];
    let mut bytes = 0;
    for _ in 0..args.requests {
        let (d, n) = call().await?;
        samples.push(d);
        bytes = n;
    }
    let cpu = cpu_seconds(Some(pid)) - cpu0;
    samples.sort();
    eprintln!(
        "    p50 {:.1} ms, p99 {:.1} ms",
        quantile_ms(&samples, 0.5),
        quantile_ms(&samples, 0.99)
    );
    Ok(Timed {
        label: label.into(),
        path: path.into(),
        samples,
        bytes,
        server_cpu: cpu / args.requests as f64,
        target: false,
    })
}

/// Vets one answer of a page.
type Check = Box<dyn Fn(&[u8]) -> anyhow::Result<()>>;

/// Fails unless `body` contains `marker`.
fn contains(marker: String) -> impl Fn(&[u8]) -> anyhow::Result<()> {
    move |body: &[u8]| {
        anyhow::ensure!(
            String::from_utf8_lossy(body).contains(&marker),
            "the page does not say {marker:?}"
        );
        Ok(())
    }
}

/// The log searches the overview and the service graph make, as their code builds them
/// (crates/ui/src/pages/overview.rs and graph.rs; kept in step by hand, so read them when
/// these change): for all clusters, over the last [`RANGE`].
fn page_searches() -> Vec<(&'static str, Value)> {
    let to = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 1;
    page_searches_between(to - 24 * 3_600_000, to)
}

/// [`page_searches`] over `[from, to)` (epoch milliseconds) instead of the last 24 h:
/// `logstore` asks its store and its ClickHouse peer these on its fixed day of records.
pub(crate) fn page_searches_between(from: i64, to: i64) -> Vec<(&'static str, Value)> {
    let interval_s = ((to - from) / 1000 / 48).max(60);
    let leaf = json!({"a": {"terms": {"field": "action", "size": 4}, "aggs": {
        "bi": {"sum": {"field": "bytes_in"}},
        "bo": {"sum": {"field": "bytes_out"}},
        "f": {"sum": {"field": "num_flows"}},
    }}});
    vec![
        (
            "overview: flows over time by action (date histogram × terms)",
            json!({
                "clusters": ["*"], "timeRange": {"from": from, "to": to}, "size": 0,
                "aggs": {"over_time": {
                    "date_histogram": {"field": "end_time", "fixed_interval": format!("{interval_s}s")},
                    "aggs": {"action": {"terms": {"field": "action", "size": 2}}}}}
            }),
        ),
        (
            "overview: top denied pairs (4 nested terms)",
            json!({
                "clusters": ["*"], "timeRange": {"from": from, "to": to},
                "filters": [{"field": "action", "equals": "deny"}], "size": 0,
                "aggs": {"s": {"terms": {"field": "source_namespace", "size": 10},
                    "aggs": {"sa": {"terms": {"field": "source_name_aggr", "size": 10},
                        "aggs": {"d": {"terms": {"field": "dest_namespace", "size": 10},
                            "aggs": {"da": {"terms": {"field": "dest_name_aggr", "size": 10}}}}}}}}}
            }),
        ),
        (
            "graph: cluster × source ns × destination ns × action (sums)",
            json!({
                "clusters": ["*"], "timeRange": {"from": from, "to": to}, "filters": [], "size": 0,
                "aggs": {"c": {"terms": {"field": "cluster", "size": 200}, "aggs":
                    {"s": {"terms": {"field": "source_namespace", "size": 200}, "aggs":
                        {"d": {"terms": {"field": "dest_namespace", "size": 200}, "aggs": leaf}}}}}}
            }),
        ),
    ]
}

/// Runs `cattery-bench ui` and prints its report.
pub async fn run(args: UiBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.flow_clusters <= args.clusters && args.connected <= args.clusters,
        "--flow-clusters ({}) and --connected ({}) must not exceed --clusters ({})",
        args.flow_clusters,
        args.connected,
        args.clusters
    );
    crate::idle::check_open_files(args.connected as usize)?;
    let server_bin = crate::server_proc::cattery_binary()?;
    let dir = crate::work_dir()?;
    eprintln!("working directory: {}", dir.display());
    let result = measure(&args, &dir).await;
    let (seeded, timed, rss_kib, problems, agent_failures) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "the working directory {} is kept for inspection",
                dir.display()
            );
            return Err(e);
        }
    };
    print!(
        "{}",
        render(
            &args,
            &server_bin,
            &seeded,
            &timed,
            rss_kib,
            &problems,
            agent_failures
        )
    );
    if args.keep_dir {
        eprintln!("working directory kept: {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    Ok(())
}

type Measured = (Seeded, Vec<Timed>, u64, Vec<String>, usize);

async fn measure(args: &UiBenchArgs, dir: &Path) -> anyhow::Result<Measured> {
    let name = "ui-server";
    let log_dir = ServerProc::data_dir(dir, name).join("logs");
    let start_s = time::OffsetDateTime::now_utc().unix_timestamp() - SPAN_S as i64;
    eprintln!(
        "ingesting {} flows of {} clusters into {} …",
        args.flows,
        args.flow_clusters,
        log_dir.display()
    );
    let ingest = {
        let (a, d) = (Seeding::from(args), log_dir.clone());
        tokio::task::spawn_blocking(move || fill_store(&a, &d, start_s))
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
        eprintln!("registering {} clusters through the API …", args.clusters);
        let t = Instant::now();
        let clusters = (0..args.clusters)
            .map(|i| (cluster_name(i), labels(i), upstream.clone()))
            .collect();
        let mut settings = register_all(&api, clusters).await?;
        let register = t.elapsed();
        settings.truncate(args.connected as usize);
        eprintln!("connecting {} agents …", settings.len());
        let t = Instant::now();
        agents.start(settings).await;
        wait_connected(
            &api,
            args.connected as usize,
            Duration::from_secs(60) + Duration::from_millis(60 * args.connected),
            || format!("; server log tail:\n{}", server.log_tail(15)),
        )
        .await?;
        let connect = t.elapsed();
        let seeded = Seeded {
            flows: args.flows,
            ingest,
            store_bytes,
            registered: args.clusters,
            register,
            connected: args.connected,
            connect,
        };
        eprintln!("signing in and loading pages …");
        let mut browser = Browser::new(&server.url, &server.ca_pem)?;
        browser.sign_in(&server.token).await?;
        let total = format!("{} clusters", num(args.clusters as f64, 0));
        let flows = args.flows;
        let graph_check = move |body: &[u8]| {
            let v: Value = serde_json::from_slice(body).context("the graph data is not JSON")?;
            let records = v["records"].as_u64().unwrap_or(0);
            anyhow::ensure!(
                records == flows,
                "the graph counted {records} flow records in the range, {flows} were ingested \
                 (did the run take so long that the oldest left the 24-hour range?)"
            );
            anyhow::ensure!(
                v["nodes"].as_array().is_some_and(|n| !n.is_empty()),
                "the graph has no nodes"
            );
            Ok(())
        };
        let region = format!("r{:02}", 7 % REGIONS.min(args.clusters));
        let pages: Vec<(String, String, Check)> = vec![
            (
                "overview, all clusters, last 24 h".into(),
                format!("/ui/overview?cluster=all&range={RANGE}"),
                Box::new(contains("flow records".into())),
            ),
            (
                "clusters, first page (by name)".into(),
                "/ui/clusters?cluster=all".into(),
                Box::new(contains(total.clone())),
            ),
            (
                format!("clusters, filtered (`region={region}`), first page"),
                format!("/ui/clusters?cluster=all&filter=region%3D{region}"),
                Box::new(contains(format!("region={region}"))),
            ),
            (
                "clusters, sorted by status (descending), page 2".into(),
                "/ui/clusters?cluster=all&sort=status&order=desc&page=2".into(),
                Box::new(contains(total.clone())),
            ),
            (
                "service graph, the page".into(),
                format!("/ui/graph?cluster=all&range={RANGE}"),
                Box::new(contains("id=\"graph\"".into())),
            ),
            (
                "service graph, its data (what the page draws)".into(),
                format!("/ui/graph/data?cluster=all&range={RANGE}"),
                Box::new(graph_check),
            ),
        ];
        let mut timed = vec![];
        for (label, path, check) in &pages {
            timed.push(time_page(&mut browser, pid, label, path, args, check.as_ref()).await?);
        }
        timed.push(
            time_api(
                &api,
                pid,
                "list of every ManagedCluster (what every page reads first)",
                "/apis/cattery.dev/v1/managedclusters",
                None,
                args,
            )
            .await?,
        );
        for (label, body) in page_searches() {
            timed.push(
                time_api(
                    &api,
                    pid,
                    label,
                    "/apis/logs.cattery.dev/v1/flows/search",
                    Some(&body),
                    args,
                )
                .await?,
            );
        }
        let rss = proc_status(Some(pid))?.rss_kib;
        Ok::<_, anyhow::Error>((seeded, timed, rss))
    }
    .await;
    let agent_failures = agents.stop().await;
    sim.stop().await;
    let problems = server.problems();
    server.stop();
    let (seeded, timed, rss) = result?;
    Ok((seeded, timed, rss, problems, agent_failures))
}

fn render(
    args: &UiBenchArgs,
    server_bin: &Path,
    s: &Seeded,
    timed: &[Timed],
    rss_kib: u64,
    problems: &[String],
    agent_failures: usize,
) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n## `{}` — {}\n\nMachine: {}. Server: `{}` as a separate process; the browser (HTTP/2 over TLS, signed in through the sign-in form), the agents and their simulator: this process.\n",
        crate::report::command_line(),
        today(),
        machine(),
        server_bin.display(),
    );
    let _ = writeln!(
        o,
        "Seeded: {} flow records of {} clusters (the simulator's traffic model) ingested into the server's log store before it started, {:.1} s ({} flows/s, {} writer(s)); store {} MB on disk ({:.1} bytes per flow). {} ManagedClusters registered through the API in {:.1} s ({:.0}/s); {} with an agent connected ({:.1} s). Server RSS at the end: {} MiB.\n",
        num(s.flows as f64, 0),
        num(args.flow_clusters as f64, 0),
        s.ingest.as_secs_f64(),
        num(s.flows as f64 / s.ingest.as_secs_f64().max(1e-9), 0),
        args.writers,
        num(s.store_bytes as f64 / 1e6, 1),
        s.store_bytes as f64 / s.flows as f64,
        num(s.registered as f64, 0),
        s.register.as_secs_f64(),
        s.registered as f64 / s.register.as_secs_f64().max(1e-9),
        num(s.connected as f64, 0),
        s.connect.as_secs_f64(),
        crate::report::mib(rss_kib),
    );
    let _ = writeln!(
        o,
        "Each row: {} timed loads one after another (after {} untimed), from sending the request to the last byte; server CPU from `/proc` over the timed loads.\n",
        args.requests, args.warmup
    );
    let table = |o: &mut String, rows: &mut dyn Iterator<Item = &Timed>| {
        let _ = writeln!(
            o,
            "| What | path | p50 ms | p90 ms | p99 ms | max ms | answer bytes | server CPU ms per load |\n|---|---|--:|--:|--:|--:|--:|--:|"
        );
        for t in rows {
            let _ = writeln!(
                o,
                "| {} | `{}` | {} | {} | {} | {} | {} | {} |",
                t.label,
                t.path,
                num(quantile_ms(&t.samples, 0.5), 1),
                num(quantile_ms(&t.samples, 0.9), 1),
                num(quantile_ms(&t.samples, 0.99), 1),
                num(quantile_ms(&t.samples, 1.0), 1),
                num(t.bytes as f64, 0),
                num(t.server_cpu * 1e3, 1),
            );
        }
    };
    let _ = writeln!(o, "### Pages (signed-in browser session)\n");
    table(&mut o, &mut timed.iter().filter(|t| t.target));
    let _ = writeln!(
        o,
        "\n### The API calls behind them, alone (admin token, HTTP/1.1)\n"
    );
    table(&mut o, &mut timed.iter().filter(|t| !t.target));
    crate::report::failures(&mut o, agent_failures, problems);
    let _ = writeln!(
        o,
        "\n### Targets (issue 15)\n\n| Target | Measured p50 | |\n|---|--:|---|"
    );
    for t in timed.iter().filter(|t| t.target) {
        let p50 = quantile_ms(&t.samples, 0.5);
        let _ = writeln!(
            o,
            "| {}: p50 < 300 ms ({} clusters, {} flows) | {} ms | {} |",
            t.label,
            num(s.registered as f64, 0),
            num(s.flows as f64, 0),
            num(p50, 1),
            verdict(p50 < 300.0)
        );
    }
    o
}
