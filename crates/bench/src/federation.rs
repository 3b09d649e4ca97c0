//! `cattery-bench federation`: how long a FederatedPolicy takes to reach a fleet (issue 16's
//! benchmark).
//!
//! A real `cattery server` process; one simulated cluster per ManagedCluster, each a
//! [`cattery_sim::SimServer`] of its own (its own objects, HTTPS with its own CA by
//! default), all in this process, each with a real agent (a task of this process, as
//! `idle` runs them) connected over its mTLS tunnel. The fleet grows to each `--clusters`
//! count in turn; at each count:
//!
//! 1. `--policies` times: a FederatedPolicy selecting `fed=on` (every cluster but one
//!    spare) with one Kubernetes NetworkPolicy is created through the API (a `POST`, what
//!    `kubectl apply` sends for a new object); the time is from sending it to the watch
//!    event (`?watch=true` on the collection, open for the whole run) whose `status` shows
//!    every selected cluster `Applied` at the policy's generation. Every simulator is
//!    then asked directly that it holds the object. The policy is deleted and the time
//!    until no simulator holds the object any more is recorded too, so each repetition
//!    starts from the same fleet.
//! 2. `--relabels` times: with one policy in place, the spare cluster is labelled
//!    `fed=on` (a merge patch, what `kubectl label` sends): the time until the policy's
//!    status shows it `Applied`; then `fed=off`: the time until it has left the status
//!    (its object removed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cattery_agent::UpstreamSettings;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::clusters::{Agents, NewCluster, register_all, wait_connected};
use crate::load::{self, HttpsClient};
use crate::report::{machine, num, quantile_ms, today, verdict};
use crate::server_proc::{ServerProc, cpu_seconds, proc_status};
use crate::upstream::UpstreamScheme;

/// Flags of `cattery-bench federation`.
#[derive(clap::Args, Debug)]
pub struct FederationBenchArgs {
    /// Fleet sizes (selected clusters) at which to measure, in growing order.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    pub clusters: Vec<usize>,
    /// FederatedPolicies created (and deleted) one after another at each size.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub policies: u64,
    /// Label changes adding (and then removing) the spare cluster at each size.
    #[arg(long, default_value_t = 5)]
    pub relabels: u64,
    /// Longest wait for any one state (applied, removed).
    #[arg(long, default_value = "120s", value_parser = crate::parse_duration)]
    pub timeout: Duration,
    /// Pause after the fleet grew (connections settle) before measuring.
    #[arg(long, default_value = "3s", value_parser = crate::parse_duration)]
    pub settle: Duration,
    /// How the simulators serve (`https`: each its own CA, as clusters are).
    #[arg(long, value_enum, default_value_t = UpstreamScheme::Https)]
    pub upstream: UpstreamScheme,
    /// Keep the working directory (server data, simulators' TLS files, logs).
    #[arg(long)]
    pub keep_dir: bool,
}

const FP: &str = "/apis/cattery.dev/v1/federatedpolicies";
const MC: &str = "/apis/cattery.dev/v1/managedclusters";
/// Namespace of the placed NetworkPolicies (every simulator seeds it).
const NAMESPACE: &str = "shop";
/// Label selecting clusters.
const LABEL: &str = "fed";
/// The cluster the label changes add and remove.
const SPARE: &str = "spare";
/// Pause between two direct checks of the simulators.
const CHECK_PAUSE: Duration = Duration::from_millis(50);
/// Simulators checked at once.
const CHECK_CONCURRENCY: usize = 32;

/// One simulated cluster of the fleet.
struct Member {
    name: String,
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The simulators, and a client that reaches each of them directly.
struct Fleet {
    dir: PathBuf,
    scheme: UpstreamScheme,
    members: Vec<Member>,
    /// PEM of every simulator's CA (`https`).
    ca_pems: String,
    client: Option<HttpsClient>,
}

impl Fleet {
    fn new(dir: &Path, scheme: UpstreamScheme) -> Fleet {
        Fleet {
            dir: dir.join("sims"),
            scheme,
            members: vec![],
            ca_pems: String::new(),
            client: None,
        }
    }

    /// Starts a simulator called `name`; returns its agent's upstream settings.
    async fn add(&mut self, name: &str, server_ca: &Path) -> anyhow::Result<UpstreamSettings> {
        let tls_dir = (self.scheme == UpstreamScheme::Https).then(|| self.dir.join(name));
        let sim = cattery_sim::SimServer::bind(&cattery_sim::SimArgs {
            listen: "127.0.0.1:0".parse()?,
            name: name.into(),
            tls_dir: tls_dir.clone(),
            token_file: None,
            pod_cidr: None,
        })
        .await
        .with_context(|| format!("starting simulator {name}"))?;
        if let Some(pem) = &sim.ca_cert_pem {
            self.ca_pems.push_str(pem);
            self.ca_pems.push('\n');
        }
        let url = sim.url.clone();
        let stop = CancellationToken::new();
        let sd = stop.clone();
        let task = tokio::spawn(async move { sim.run(sd).await });
        self.members.push(Member {
            name: name.into(),
            url: url.clone(),
            stop,
            task,
        });
        self.client = None;
        Ok(UpstreamSettings {
            url,
            token_file: None,
            ca_file: Some(tls_dir.map_or_else(|| server_ca.to_path_buf(), |d| d.join("ca.crt"))),
        })
    }

    fn client(&mut self) -> anyhow::Result<HttpsClient> {
        if self.client.is_none() {
            self.client = Some(match self.scheme {
                UpstreamScheme::Https => load::http2_client(&self.ca_pems)?,
                UpstreamScheme::Http => load::http1_client()?,
            });
        }
        Ok(self.client.clone().expect("set above"))
    }

    /// Waits until every simulator named in `names` holds (`want`) or does not hold the
    /// NetworkPolicy `policy`, asking each directly; bounded by `deadline`.
    async fn wait_objects(
        &mut self,
        names: &BTreeSet<String>,
        policy: &str,
        want: bool,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let client = self.client()?;
        let mut left: Vec<(String, String)> = self
            .members
            .iter()
            .filter(|m| names.contains(&m.name))
            .map(|m| {
                (
                    m.name.clone(),
                    format!(
                        "{}/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/{policy}",
                        m.url
                    ),
                )
            })
            .collect();
        anyhow::ensure!(
            left.len() == names.len(),
            "no simulator for some of {names:?}"
        );
        loop {
            let mut still = vec![];
            for chunk in left.chunks(CHECK_CONCURRENCY) {
                let mut set = tokio::task::JoinSet::new();
                for (name, url) in chunk.iter().cloned() {
                    let client = client.clone();
                    set.spawn(async move {
                        let has = holds(&client, &url).await;
                        (name, url, has)
                    });
                }
                while let Some(r) = set.join_next().await {
                    let (name, url, has) = r.context("a check task panicked")?;
                    if has.with_context(|| format!("asking simulator {name}"))? != want {
                        still.push((name, url));
                    }
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} simulator(s) still {} NetworkPolicy {policy}, e.g. {}",
                    still.len(),
                    if want { "lack" } else { "hold" },
                    still[0].0
                );
            }
            left = still;
            tokio::time::sleep(CHECK_PAUSE).await;
        }
    }

    async fn stop(self) {
        for m in &self.members {
            m.stop.cancel();
        }
        for m in self.members {
            let _ = tokio::time::timeout(Duration::from_secs(10), m.task).await;
        }
    }
}

/// Whether the object at `url` exists (200) or not (404).
async fn holds(client: &HttpsClient, url: &str) -> anyhow::Result<bool> {
    let req = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<Bytes>::new())?;
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .with_context(|| format!("GET {url}: no answer within 10 s"))?
        .map_err(|e| anyhow::anyhow!("GET {url}: {}", crate::api::error_chain(&e)))?;
    let status = res.status();
    let _ = res.into_body().collect().await;
    match status {
        http::StatusCode::OK => Ok(true),
        http::StatusCode::NOT_FOUND => Ok(false),
        s => bail!("GET {url}: {s}"),
    }
}

/// Watch events of FederatedPolicies, each with the moment it arrived.
type Event = (Instant, Value);

/// Follows `?watch=true` on the FederatedPolicy collection until `stop`, resuming from the
/// last resourceVersion seen when the server ends a stream.
async fn watch_policies(
    api: Arc<ApiClient>,
    tx: mpsc::UnboundedSender<Event>,
    stop: CancellationToken,
) {
    let mut rv: Option<String> = None;
    let mut failures = 0u32;
    while !stop.is_cancelled() && failures < 10 {
        let r = async {
            let from = match &rv {
                Some(v) => v.clone(),
                None => {
                    let list: Value = api.get(FP).await?;
                    list["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or("0")
                        .to_string()
                }
            };
            let mut body = api
                .open(&format!("{FP}?watch=true&resourceVersion={from}"))
                .await?;
            let mut buf: Vec<u8> = vec![];
            loop {
                let frame = tokio::select! {
                    f = body.frame() => f,
                    () = stop.cancelled() => return Ok(()),
                };
                let Some(frame) = frame else { return Ok(()) };
                let frame = frame.context("reading the watch")?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                let now = Instant::now();
                buf.extend_from_slice(data);
                while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let ev: Value = serde_json::from_slice(&line).with_context(|| {
                        format!(
                            "a watch line that is not JSON: {}",
                            String::from_utf8_lossy(&line)
                        )
                    })?;
                    if ev["type"] == "ERROR" {
                        rv = None;
                        bail!("the watch ended with {}", ev["object"]);
                    }
                    if let Some(v) = ev["object"]["metadata"]["resourceVersion"].as_str() {
                        rv = Some(v.to_string());
                    }
                    if tx.send((now, ev)).is_err() {
                        return Ok(());
                    }
                }
            }
        }
        .await;
        match r {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!("watching FederatedPolicies: {e:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The watch as the measurements read it.
struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The arrival time of the first event (from now on) whose policy object satisfies
    /// `cond`; an error naming `what` at `deadline`.
    async fn until(
        &mut self,
        what: &str,
        deadline: Instant,
        mut cond: impl FnMut(&str, &Value) -> bool,
    ) -> anyhow::Result<Instant> {
        loop {
            match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
                Ok(Some((t, ev))) => {
                    let kind = ev["type"].as_str().unwrap_or("");
                    if cond(kind, &ev["object"]) {
                        return Ok(t);
                    }
                }
                Ok(None) => bail!("the FederatedPolicy watch stopped while waiting for {what}"),
                Err(_) => bail!("{what}: not seen in time"),
            }
        }
    }
}

/// Whether `obj` is policy `name` with every one of `selected` `Applied` at its generation
/// (and nothing else in its status).
fn all_applied(obj: &Value, name: &str, selected: &BTreeSet<String>) -> bool {
    if obj["metadata"]["name"] != name {
        return false;
    }
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
    let st = &obj["status"];
    if st["observedGeneration"].as_i64() != Some(generation) {
        return false;
    }
    let Some(clusters) = st["clusters"].as_array() else {
        return false;
    };
    clusters.len() == selected.len()
        && clusters.iter().all(|c| {
            c["state"] == "Applied"
                && c["observedGeneration"].as_i64() == Some(generation)
                && c["name"].as_str().is_some_and(|n| selected.contains(n))
        })
}

/// The state of cluster `cluster` in policy object `obj`, if it is in its status.
fn cluster_state<'a>(obj: &'a Value, cluster: &str) -> Option<&'a str> {
    obj["status"]["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == cluster)
        .and_then(|c| c["state"].as_str())
}

/// A FederatedPolicy placing NetworkPolicy `name` on every `fed=on` cluster.
fn policy(name: &str) -> Value {
    json!({
        "apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
        "metadata": {"name": name},
        "spec": {
            "placement": {"clusterSelector": {"matchLabels": {LABEL: "on"}}},
            "resources": [{
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"podSelector": {"matchLabels": {"app": "checkout"}},
                         "policyTypes": ["Ingress"],
                         "ingress": [{"ports": [{"port": 8080}],
                                      "from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]}
            }]
        }
    })
}

/// What one fleet size measured.
struct Point {
    clusters: usize,
    /// Create → every selected cluster Applied (sorted).
    apply: Vec<Duration>,
    /// Delete → gone from every simulator (sorted).
    delete: Vec<Duration>,
    /// Spare labelled on → Applied (sorted).
    label_add: Vec<Duration>,
    /// Spare labelled off → left the status (sorted).
    label_remove: Vec<Duration>,
    /// Time for the grown fleet's agents to connect.
    connect: Duration,
    /// Server CPU seconds over the measurements, and their wall time.
    server_cpu: f64,
    wall: Duration,
    server_rss_kib: u64,
}

/// The measurement's state across sizes.
struct Run<'a> {
    args: &'a FederationBenchArgs,
    api: Arc<ApiClient>,
    fleet: Fleet,
    events: Events,
    /// Clusters labelled `fed=on`.
    selected: BTreeSet<String>,
}

impl Run<'_> {
    async fn create(&self, name: &str) -> anyhow::Result<()> {
        self.api
            .call(
                http::Method::POST,
                FP,
                Some(serde_json::to_vec(&policy(name))?),
            )
            .await
            .with_context(|| format!("creating FederatedPolicy {name}"))?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.api
            .call(http::Method::DELETE, &format!("{FP}/{name}"), None)
            .await
            .with_context(|| format!("deleting FederatedPolicy {name}"))?;
        Ok(())
    }

    async fn label_spare(&self, value: &str) -> anyhow::Result<()> {
        let patch = json!({"metadata": {"labels": {LABEL: value}}});
        self.api
            .call_as(
                http::Method::PATCH,
                &format!("{MC}/{SPARE}"),
                "application/merge-patch+json",
                Some(serde_json::to_vec(&patch)?),
            )
            .await
            .with_context(|| format!("labelling {SPARE} {LABEL}={value}"))?;
        Ok(())
    }

    /// Creates policy `name` and returns the time until every selected cluster is Applied
    /// (checked against the simulators afterwards).
    async fn apply_once(&mut self, name: &str) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let deadline = t0 + self.args.timeout;
        self.create(name).await?;
        let selected = self.selected.clone();
        let t = self
            .events
            .until(
                &format!("{name} Applied on all {} clusters", selected.len()),
                deadline,
                |_, o| all_applied(o, name, &selected),
            )
            .await?;
        self.fleet
            .wait_objects(&selected, name, true, deadline)
            .await
            .with_context(|| format!("{name} is Applied everywhere, but"))?;
        Ok(t - t0)
    }

    /// Deletes policy `name` and returns the time until no simulator holds its object.
    async fn delete_once(&mut self, name: &str, on: &BTreeSet<String>) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let deadline = t0 + self.args.timeout;
        self.delete(name).await?;
        self.fleet.wait_objects(on, name, false, deadline).await?;
        Ok(t0.elapsed())
    }

    async fn measure(&mut self, n: usize, connect: Duration, pid: u32) -> anyhow::Result<Point> {
        let cpu0 = cpu_seconds(Some(pid));
        let started = Instant::now();
        let (mut apply, mut delete) = (vec![], vec![]);
        for i in 0..self.args.policies {
            let name = format!("bench-{n}-{i}");
            apply.push(self.apply_once(&name).await?);
            let on = self.selected.clone();
            delete.push(self.delete_once(&name, &on).await?);
            eprintln!(
                "    {name}: applied after {:.0} ms, removed after {:.0} ms",
                apply.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
                delete.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
            );
        }
        let (mut label_add, mut label_remove) = (vec![], vec![]);
        if self.args.relabels > 0 {
            let name = format!("bench-{n}-label");
            self.apply_once(&name).await?;
            for _ in 0..self.args.relabels {
                let t0 = Instant::now();
                let deadline = t0 + self.args.timeout;
                self.label_spare("on").await?;
                let t = self
                    .events
                    .until(&format!("{SPARE} Applied in {name}"), deadline, |_, o| {
                        o["metadata"]["name"] == name.as_str()
                            && cluster_state(o, SPARE) == Some("Applied")
                    })
                    .await?;
                label_add.push(t - t0);
                let spare: BTreeSet<String> = [SPARE.to_string()].into();
                self.fleet
                    .wait_objects(&spare, &name, true, deadline)
                    .await?;
                let t0 = Instant::now();
                let deadline = t0 + self.args.timeout;
                self.label_spare("off").await?;
                let t = self
                    .events
                    .until(&format!("{SPARE} out of {name}"), deadline, |_, o| {
                        o["metadata"]["name"] == name.as_str() && cluster_state(o, SPARE).is_none()
                    })
                    .await?;
                label_remove.push(t - t0);
                self.fleet
                    .wait_objects(&spare, &name, false, deadline)
                    .await?;
                eprintln!(
                    "    {SPARE} labelled on: Applied after {:.0} ms; off: out after {:.0} ms",
                    label_add.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
                    label_remove.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
                );
            }
            let on = self.selected.clone();
            self.delete_once(&name, &on).await?;
        }
        for v in [&mut apply, &mut delete, &mut label_add, &mut label_remove] {
            v.sort();
        }
        Ok(Point {
            clusters: n,
            apply,
            delete,
            label_add,
            label_remove,
            connect,
            server_cpu: cpu_seconds(Some(pid)) - cpu0,
            wall: started.elapsed(),
            server_rss_kib: proc_status(Some(pid)).map(|s| s.rss_kib).unwrap_or(0),
        })
    }
}

/// Runs `cattery-bench federation` and prints its report.
pub async fn run(args: FederationBenchArgs) -> anyhow::Result<()> {
    let mut sizes: Vec<usize> = args.clusters.iter().copied().filter(|&n| n > 0).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let max = *sizes
        .last()
        .context("--clusters must name at least one count above 0")?;
    // Per cluster this process holds a simulator's listener, the agent's tunnel and its
    // connection to the simulator (both ends), and the direct checks' connection.
    crate::idle::check_open_files(2 * (max + 1))?;
    let server_bin = crate::server_proc::cattery_binary()?;
    let dir = crate::work_dir()?;
    eprintln!("working directory: {}", dir.display());
    let result = measure(&args, &dir, &sizes).await;
    let (points, problems, agent_failures) = match result {
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
        render(&args, &server_bin, &points, &problems, agent_failures)
    );
    if args.keep_dir {
        eprintln!("working directory kept: {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    Ok(())
}

async fn measure(
    args: &FederationBenchArgs,
    dir: &Path,
    sizes: &[usize],
) -> anyhow::Result<(Vec<Point>, Vec<String>, usize)> {
    let mut server = ServerProc::start(dir, "federation-server").await?;
    let pid = server.pid();
    let api = Arc::new(server.api_client()?);
    let stop = CancellationToken::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let watch = tokio::spawn(watch_policies(api.clone(), tx, stop.clone()));
    let mut run = Run {
        args,
        api: api.clone(),
        fleet: Fleet::new(dir, args.upstream),
        events: Events { rx },
        selected: BTreeSet::new(),
    };
    let mut agents = Agents::new();
    let result = async {
        let mut points = vec![];
        let mut have = 0usize;
        for &n in sizes {
            let mut new: Vec<NewCluster> = vec![];
            if have == 0 {
                let up = run.fleet.add(SPARE, &server.ca_file).await?;
                new.push((SPARE.into(), [(LABEL.into(), "off".into())].into(), up));
            }
            eprintln!(
                "fleet of {n}: starting {} simulators and registering them …",
                n - have
            );
            for i in have..n {
                let name = format!("fed-{i:05}");
                let up = run.fleet.add(&name, &server.ca_file).await?;
                new.push((
                    name.clone(),
                    BTreeMap::from([(LABEL.into(), "on".into())]),
                    up,
                ));
                run.selected.insert(name);
            }
            let settings = register_all(&api, new).await?;
            eprintln!("fleet of {n}: connecting {} agents …", settings.len());
            let t = Instant::now();
            agents.start(settings).await;
            wait_connected(
                &api,
                n + 1,
                Duration::from_secs(60) + Duration::from_millis(60 * n as u64),
                || format!("; server log tail:\n{}", server.log_tail(15)),
            )
            .await?;
            let connect = t.elapsed();
            have = n;
            tokio::time::sleep(args.settle).await;
            eprintln!("fleet of {n}: measuring …");
            points.push(run.measure(n, connect, pid).await?);
        }
        Ok::<_, anyhow::Error>(points)
    }
    .await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), watch).await;
    let agent_failures = agents.stop().await;
    run.fleet.stop().await;
    let problems = server.problems();
    server.stop();
    Ok((result?, problems, agent_failures))
}

fn render(
    args: &FederationBenchArgs,
    server_bin: &Path,
    points: &[Point],
    problems: &[String],
    agent_failures: usize,
) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n## `{}` — {}\n\nMachine: {}. Server: `{}` as a separate process; every simulated cluster ({}) and its agent, and the client: this process.\n",
        crate::report::command_line(),
        today(),
        machine(),
        server_bin.display(),
        match args.upstream {
            UpstreamScheme::Https => "HTTPS, its own CA",
            UpstreamScheme::Http => "plain HTTP",
        }
    );
    let _ = writeln!(
        o,
        "Per size: {} policies created one after another (each deleted before the next), and {} label changes of one spare cluster. Times from sending the request to the watch event showing the state; removal times from the request until no simulator holds the object (checked directly every {} ms). With fewer than 100 samples p99 is the largest.\n",
        args.policies,
        args.relabels,
        CHECK_PAUSE.as_millis()
    );
    let _ = writeln!(
        o,
        "| Selected clusters | create → all Applied p50 / p99 ms | delete → removed everywhere p50 / p99 ms | label on → Applied p50 / p99 ms | label off → out p50 / p99 ms | agents connected after s | server CPU while measuring, cores | server RSS MiB |\n|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    let pair = |v: &[Duration]| {
        format!(
            "{} / {}",
            num(quantile_ms(v, 0.5), 0),
            num(quantile_ms(v, 0.99), 0)
        )
    };
    for p in points {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            num(p.clusters as f64, 0),
            pair(&p.apply),
            pair(&p.delete),
            pair(&p.label_add),
            pair(&p.label_remove),
            num(p.connect.as_secs_f64(), 1),
            num(p.server_cpu / p.wall.as_secs_f64().max(1e-9), 2),
            crate::report::mib(p.server_rss_kib),
        );
    }
    crate::report::failures(&mut o, agent_failures, problems);
    let _ = writeln!(
        o,
        "\n### Targets (issue 16)\n\n| Target | Measured | |\n|---|--:|---|"
    );
    if !points.iter().any(|p| p.clusters >= 1000) {
        let _ = writeln!(
            o,
            "| create → Applied p99 < 2 s at 1,000 clusters | not measured (no size ≥ 1,000) | |"
        );
    }
    for p in points.iter().filter(|p| p.clusters >= 1000) {
        let p99 = quantile_ms(&p.apply, 0.99);
        let _ = writeln!(
            o,
            "| create → Applied p99 < 2 s at {} clusters | {} ms | {} |",
            num(p.clusters as f64, 0),
            num(p99, 0),
            verdict(p99 < 2000.0)
        );
    }
    o
}
