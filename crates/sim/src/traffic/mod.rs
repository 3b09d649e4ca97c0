//! Simulated Calico traffic logs: every `--log-interval` the generator
//! builds a [`model::Snapshot`] of the store, draws interactions from the
//! [`model`] (deciding allow/deny with [`policy_eval`]), serializes them as
//! Felix does ([`felix_json`]) and appends them to `flows.log`, `dns.log`
//! and `l7.log` in `--logs-dir` ([`writer`], with rotation).
//!
//! Rate: `--log-rate` records per second across the three types, spent per
//! tick (the records of an interaction that do not fit in a tick's budget
//! go out in the next tick, so the rate holds). With `--log-limit N`,
//! generation stops after exactly N records in total (all three types
//! together; the last interaction may be cut short, e.g. a `src` flow
//! without its `dst` twin); `/_sim/logstats` says how many of each were
//! written and `finished` turns true. With `--log-seed`, the same store
//! contents give the same sequence of records (times aside).

pub mod felix_json;
pub mod model;
/// The NetworkPolicy evaluator, its own crate so the hub's policy preview uses the same one.
pub use cattery_netpol as policy_eval;
pub mod rng;
pub mod writer;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use self::model::{Aggregation, Model, Record, Snapshot, Window};
use self::rng::Rng;
use self::writer::RotatingFile;

/// How the generator is configured (from [`crate::LogArgs`]).
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// Directory of `flows.log`, `dns.log`, `l7.log`.
    pub dir: PathBuf,
    /// Records per second across types.
    pub rate: f64,
    /// Time between generation ticks.
    pub interval: Duration,
    /// RNG seed.
    pub seed: u64,
    /// Stop after this many records in total.
    pub limit: Option<u64>,
    /// Rotate a file before it would exceed this size.
    pub max_bytes: u64,
    /// Rotated files kept per log.
    pub max_files: usize,
    /// Flow and DNS aggregation.
    pub aggregation: Aggregation,
}

/// Counters for `/_sim/logstats`: records written, per type.
#[derive(Debug, Default)]
pub struct TrafficStats {
    /// Flow records with `action: allow`.
    pub flows_allow: AtomicU64,
    /// Flow records with `action: deny`.
    pub flows_deny: AtomicU64,
    /// DNS records.
    pub dns: AtomicU64,
    /// L7 records.
    pub l7: AtomicU64,
    /// Records lost to write errors.
    pub write_errors: AtomicU64,
    /// Rotations, all files together.
    pub rotations: AtomicU64,
    /// Set when `--log-limit` has been reached.
    pub finished: AtomicBool,
}

impl TrafficStats {
    /// JSON for `/_sim/logstats`.
    pub fn to_json(&self, config: Option<&TrafficConfig>) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let (allow, deny) = (get(&self.flows_allow), get(&self.flows_deny));
        let (dns, l7) = (get(&self.dns), get(&self.l7));
        json!({
            "enabled": config.is_some(),
            "seed": config.map(|c| c.seed),
            "limit": config.and_then(|c| c.limit),
            "finished": self.finished.load(Ordering::SeqCst),
            "total": allow + deny + dns + l7,
            "flows": {"total": allow + deny, "allow": allow, "deny": deny},
            "dns": dns,
            "l7": l7,
            "writeErrors": get(&self.write_errors),
            "rotations": get(&self.rotations),
        })
    }
}

struct Files {
    flows: RotatingFile,
    dns: RotatingFile,
    l7: RotatingFile,
}

impl Files {
    fn rotations(&self) -> u64 {
        self.flows.rotations() + self.dns.rotations() + self.l7.rotations()
    }

    /// Writes one tick's records and counts what was written.
    fn write(&mut self, records: Vec<Record>, stats: &TrafficStats) {
        let (mut flows, mut dns, mut l7) = (Vec::new(), Vec::new(), Vec::new());
        let (mut allow, mut deny) = (0, 0);
        for r in &records {
            match r {
                Record::Flow(f) => {
                    if f.action == "deny" {
                        deny += 1;
                    } else {
                        allow += 1;
                    }
                    flows.push(felix_json::to_line(f));
                }
                Record::Dns(d) => dns.push(felix_json::to_line(d)),
                Record::L7(l) => l7.push(felix_json::to_line(l)),
            }
        }
        let before = self.rotations();
        let count = |res: Result<(), writer::WriteError>,
                     n: u64,
                     counters: &[(&AtomicU64, u64)]| match res {
            Ok(()) => {
                for (c, k) in counters {
                    c.fetch_add(*k, Ordering::SeqCst);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, records = n, "writing simulated logs failed");
                stats.write_errors.fetch_add(n, Ordering::SeqCst);
            }
        };
        if !flows.is_empty() {
            let n = flows.len() as u64;
            count(
                self.flows.append(&flows),
                n,
                &[(&stats.flows_allow, allow), (&stats.flows_deny, deny)],
            );
        }
        if !dns.is_empty() {
            let n = dns.len() as u64;
            count(self.dns.append(&dns), n, &[(&stats.dns, n)]);
        }
        if !l7.is_empty() {
            let n = l7.len() as u64;
            count(self.l7.append(&l7), n, &[(&stats.l7, n)]);
        }
        stats
            .rotations
            .fetch_add(self.rotations() - before, Ordering::SeqCst);
    }
}

fn now_ns() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos()
}

/// The records the generator writes, for a cluster as the simulator seeds it at start-up,
/// without serving it or writing files. For the log-store benchmark (`cattery-bench
/// logstore`), which must index what the simulator really produces rather than records of
/// its own invention.
pub struct SeededTraffic {
    snapshot: Snapshot,
    model: Model,
    rng: Rng,
}

impl SeededTraffic {
    /// The traffic of a freshly seeded cluster named `cluster`, reproducible from `seed`.
    pub fn new(cluster: &str, seed: u64, aggregation: Aggregation) -> SeededTraffic {
        let store = crate::objects::Store::new(cluster, crate::default_pod_cidr(cluster));
        crate::seed::seed(&store, cluster);
        SeededTraffic {
            snapshot: Snapshot::from_store(&store),
            model: Model { aggregation },
            rng: Rng::new(seed),
        }
    }

    /// The records of one interaction stamped with `window` (none when the route drawn
    /// does not resolve), as [`Model::interaction`] gives them to the file writer.
    pub fn interaction(&mut self, window: Window) -> Vec<Record> {
        self.model
            .interaction(&self.snapshot, &mut self.rng, window)
    }
}

/// Checks the configuration and creates the directory.
pub fn prepare(config: &TrafficConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.rate.is_finite() && config.rate >= 0.0,
        "--log-rate must be a non-negative number"
    );
    anyhow::ensure!(
        config.interval >= Duration::from_millis(10),
        "--log-interval must be at least 10ms"
    );
    std::fs::create_dir_all(&config.dir)
        .map_err(|e| anyhow::anyhow!("creating --logs-dir {}: {e}", config.dir.display()))?;
    Ok(())
}

/// Runs the generator until `shutdown` (or until `--log-limit` is reached).
pub(crate) async fn run(
    config: TrafficConfig,
    state: Arc<crate::AppState>,
    stats: Arc<TrafficStats>,
    shutdown: CancellationToken,
) {
    if config.rate <= 0.0 || config.limit == Some(0) {
        stats
            .finished
            .store(config.limit == Some(0), Ordering::SeqCst);
        return;
    }
    tracing::info!(dir = %config.dir.display(), rate = config.rate, seed = config.seed,
        "writing simulated Calico flow, DNS and L7 logs");
    let mut files = Some(Files {
        flows: RotatingFile::new(
            config.dir.join("flows.log"),
            config.max_bytes,
            config.max_files,
        ),
        dns: RotatingFile::new(
            config.dir.join("dns.log"),
            config.max_bytes,
            config.max_files,
        ),
        l7: RotatingFile::new(
            config.dir.join("l7.log"),
            config.max_bytes,
            config.max_files,
        ),
    });
    let model = Model {
        aggregation: config.aggregation,
    };
    let mut rng = Rng::new(config.seed);
    let per_tick = config.rate * config.interval.as_secs_f64();
    let mut budget = 0.0f64;
    let mut emitted = 0u64;
    let mut pending: VecDeque<Record> = VecDeque::new();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let window_ns = config.interval.as_nanos().max(1_000_000_000) as i128;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        budget = (budget + per_tick).min(per_tick.max(1.0) * 2.0);
        let end = now_ns();
        let window = Window {
            start_ns: end - window_ns,
            end_ns: end,
        };
        let mut snapshot = None;
        let mut out = Vec::new();
        let mut idle = 0;
        while budget >= 1.0 && config.limit.is_none_or(|l| emitted < l) {
            if pending.is_empty() {
                let snap = snapshot.get_or_insert_with(|| Snapshot::from_store(&state.store));
                pending.extend(model.interaction(snap, &mut rng, window));
                if pending.is_empty() {
                    // Routes whose ends are gone produce nothing; give up on
                    // this tick if nothing resolves at all.
                    idle += 1;
                    if idle > 50 {
                        break;
                    }
                    continue;
                }
            }
            out.push(pending.pop_front().expect("not empty"));
            budget -= 1.0;
            emitted += 1;
        }
        if !out.is_empty() {
            let mut f = files.take().expect("files are returned after each write");
            let st = stats.clone();
            match tokio::task::spawn_blocking(move || {
                f.write(out, &st);
                f
            })
            .await
            {
                Ok(f) => files = Some(f),
                Err(e) => {
                    tracing::error!(error = %e, "log writer task failed; stopping log generation");
                    return;
                }
            }
        }
        if config.limit.is_some_and(|l| emitted >= l) {
            stats.finished.store(true, Ordering::SeqCst);
            tracing::info!(
                records = emitted,
                "--log-limit reached; log generation stopped"
            );
            return;
        }
    }
}

#[cfg(test)]
mod seeded_traffic_tests {
    use super::*;

    fn flows(seed: u64, interactions: usize) -> Vec<String> {
        let mut t = SeededTraffic::new("east", seed, Aggregation::Felix);
        let w = Window {
            start_ns: 1_795_478_400_000_000_000,
            end_ns: 1_795_478_401_000_000_000,
        };
        (0..interactions)
            .flat_map(|_| t.interaction(w))
            .filter_map(|r| match r {
                Record::Flow(f) => Some(felix_json::to_line(&*f)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_seeded_cluster_yields_the_same_flows_for_the_same_seed() {
        let a = flows(7, 200);
        assert!(a.len() > 50, "only {} flows from 200 interactions", a.len());
        assert_eq!(a, flows(7, 200));
        assert_ne!(a, flows(8, 200));
        // Both verdicts occur: the seeded NetworkPolicy denies checkout → payments db.
        assert!(a.iter().any(|l| l.contains(r#""action":"deny""#)));
        assert!(a.iter().any(|l| l.contains(r#""action":"allow""#)));
    }
}
