//! The FederatedPolicy reconciler: places each policy's objects on the clusters it
//! selects and writes what each cluster holds into the policy's `status`.
//!
//! The decisions are `cattery-federation`'s pure planner; this module does the I/O
//! around it (see `docs/design/0015-federated-policy.md`, "What the reconciler must do"):
//!
//! - [`watchers`] and [`watch`]: per connected cluster, watches of the owner-labelled
//!   objects of the placeable kinds, and of pods and namespaces where a remote peer
//!   needs them, filling [`cache`];
//! - [`remote_pods`]: which remote pods a peer resolves to;
//! - [`observe`]: reading a cluster's objects directly (names the watches cannot see);
//! - [`execute`]: carry out a cluster's actions (create, server-side apply, delete with
//!   preconditions) as the agent's service identity;
//! - [`record`]: write `status` without touching the spec and audit every change of a
//!   cluster's state.
//!
//! A round is level-triggered: it reads every policy, the fleet and the caches, plans
//! every policy and acts. Rounds run when the hub's store changes (a policy or a
//! ManagedCluster's labels), when a watch changes what is known of a cluster (a tunnel
//! attached or closed, a placed object changed or deleted there, a remote pod started,
//! stopped or relabelled), after a round that acted (to observe the result), and every
//! [`RESYNC`] otherwise; each watch also lists again every [`watch::RELIST`] as a safety
//! net. Clusters are read and written at most [`CONCURRENCY`] at a time, each within
//! [`CLUSTER_TIMEOUT`].

mod cache;
mod execute;
mod observe;
pub(crate) mod preview;
mod record;
mod remote_pods;
mod removal;
mod watch;
mod watchers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cattery_api::federation::{
    FederatedPolicy, FederatedPolicyStatus, ObjectKey, RemoteClusterState, RemoteClusterStatus,
};
use cattery_federation::fleet::Selection;
use cattery_federation::{Action, Cluster, Input, Observation};
use cattery_store::Filter;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::api::kinds::HubKind;
use crate::cluster_client::ClusterClient;
use cache::{Caches, Known, STALE_PODS, Written};
use watchers::Watchers;

pub use removal::{Leaving, Unplaced};

/// What the reconciler shares with the API handlers: the clusters being removed (left
/// out of rounds) and the lock a round holds, so a removal waits for an in-flight round
/// instead of racing its creates.
#[derive(Debug, Default)]
pub struct Handle {
    leaving: std::sync::Mutex<BTreeSet<String>>,
    round: tokio::sync::Mutex<()>,
}

/// Longest time between two rounds when nothing changed (changes in the clusters wake a
/// round through the watches; this is a safety net).
pub const RESYNC: Duration = Duration::from_secs(60);
/// How soon to look again while a policy waits for a remote cluster's first pod list.
const PENDING_RETRY: Duration = Duration::from_millis(500);
/// Most clusters read or written at the same time.
pub const CONCURRENCY: usize = 32;
/// Longest time one cluster's reads or actions of a round may take.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for more changes once one arrived, so a burst is one round.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// A policy as the store holds it, decoded.
struct Stored {
    policy: FederatedPolicy,
    generation: i64,
}

fn load_policies(st: &AppState) -> Vec<Stored> {
    let (objs, _) = st
        .resources
        .snapshot(&Filter::all(HubKind::FederatedPolicy));
    objs.iter()
        .filter_map(|o| {
            let generation = o
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            match serde_json::from_value::<FederatedPolicy>((**o).clone()) {
                Ok(policy) => Some(Stored { policy, generation }),
                Err(e) => {
                    tracing::error!(
                        policy = o["metadata"]["name"].as_str().unwrap_or(""),
                        "a stored FederatedPolicy does not decode: {e}"
                    );
                    None
                }
            }
        })
        .collect()
}

fn load_fleet(st: &AppState) -> Vec<Cluster> {
    let (objs, _) = st.resources.snapshot(&Filter::all(HubKind::ManagedCluster));
    let leaving = st
        .federation
        .leaving
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    objs.iter()
        .filter_map(|o| {
            let name = o.pointer("/metadata/name")?.as_str()?.to_string();
            if leaving.contains(&name) {
                return None;
            }
            let labels = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let connected = st.registry.sender(&name).is_ok();
            Some(Cluster {
                name,
                labels,
                connected,
            })
        })
        .collect()
}

/// The reconciler's memory between rounds: each (policy, cluster)'s last apply error.
#[derive(Default)]
struct Memory {
    apply_errors: HashMap<(String, String), String>,
}

/// Runs rounds until `shutdown` is cancelled.
pub async fn run(st: Arc<AppState>, shutdown: CancellationToken) {
    let watchers = Watchers::new();
    tokio::spawn(
        watchers
            .clone()
            .follow(st.registry.clone(), shutdown.clone()),
    );
    let mut store_changes = st.resources.subscribe();
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut memory = Memory::default();
    loop {
        let wait = round(&st, &watchers, &limit, &mut memory).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            r = store_changes.changed() => if r.is_err() { return },
            _ = watchers.caches().changed() => {}
        }
        // Let a burst of changes settle into one round.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(DEBOUNCE) => {}
        }
        store_changes.mark_unchanged();
    }
}

/// Per cluster, the action lists to run in order: each for a policy (`None`: removing
/// objects of deleted policies).
type Work = BTreeMap<String, Vec<(Option<String>, Vec<Action>)>>;

/// What one cluster's reads produced.
type Observed = BTreeMap<String, Result<Vec<Value>, String>>;

/// Each connected cluster's objects for the planner: the owner-labelled ones from the
/// watches' cache, plus whatever is at the names the policies placed there put objects
/// where the cache has none (read directly, so an object someone else created there is
/// seen: it is a conflict). A cluster whose watches have not listed everything yet is
/// left out ("not read yet").
async fn observe_all(
    st: &AppState,
    caches: &Caches,
    fleet: &[Cluster],
    placements: &[(Option<Selection>, Vec<ObjectKey>)],
    limit: &Arc<Semaphore>,
) -> Observed {
    let mut out = BTreeMap::new();
    let mut tasks = JoinSet::new();
    for c in fleet.iter().filter(|c| c.connected) {
        let Some(objects) = caches.objects(&c.name) else {
            continue;
        };
        let have: BTreeSet<ObjectKey> = objects.iter().filter_map(ObjectKey::of).collect();
        let mut missing: Vec<ObjectKey> = placements
            .iter()
            .filter(|(sel, _)| sel.as_ref().is_some_and(|s| s.matches(c)))
            .flat_map(|(_, keys)| keys)
            .filter(|k| !have.contains(k))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            out.insert(c.name.clone(), Ok(objects));
            continue;
        }
        let Ok(client) = ClusterClient::connect(&st.registry, &c.name) else {
            continue;
        };
        let (limit, name) = (limit.clone(), c.name.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let res = tokio::time::timeout(CLUSTER_TIMEOUT, observe::at_names(&client, &missing))
                .await
                .map_err(|_| format!("reading the cluster's objects took over {CLUSTER_TIMEOUT:?}"))
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map(|found| objects.into_iter().chain(found).collect());
            (name, res)
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok((name, res)) = done {
            if let Err(e) = &res {
                tracing::warn!(cluster = name, "federation: {e}");
            }
            out.insert(name, res);
        }
    }
    out
}

/// Runs each cluster's action lists (in order, per cluster), bounded; returns the result
/// per (policy, cluster). The policy is `None` for orphan cleanup.
async fn execute_all(
    st: &AppState,
    caches: &Arc<Caches>,
    work: Work,
    limit: &Arc<Semaphore>,
) -> Vec<(Option<String>, String, Result<(), String>)> {
    let mut tasks = JoinSet::new();
    for (cluster, lists) in work {
        let client = ClusterClient::connect(&st.registry, &cluster);
        let (limit, caches) = (limit.clone(), caches.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let mut out = Vec::new();
            let client = match client {
                Ok(c) => c,
                Err(e) => {
                    for (policy, _) in lists {
                        out.push((policy, cluster.clone(), Err(e.to_string())));
                    }
                    return out;
                }
            };
            let deadline = tokio::time::Instant::now() + CLUSTER_TIMEOUT;
            let mut written = |w: Written| caches.wrote(&cluster, w);
            for (policy, actions) in lists {
                let res = tokio::time::timeout_at(
                    deadline,
                    execute::run(&client, &actions, &mut written),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "the cluster did not answer within {CLUSTER_TIMEOUT:?}"
                    ))
                });
                out.push((policy, cluster.clone(), res));
            }
            out
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.extend(done.unwrap_or_default());
    }
    out
}

/// The clusters of `fleet` whose pods the policy's remote peers need.
fn remote_clusters(policy: &FederatedPolicy, fleet: &[Cluster]) -> BTreeSet<String> {
    let selections: Vec<Selection> = cattery_federation::remote_peers(policy)
        .iter()
        .filter_map(|p| Selection::new(&p.placement()).ok())
        .collect();
    fleet
        .iter()
        .filter(|c| selections.iter().any(|s| s.matches(c)))
        .map(|c| c.name.clone())
        .collect()
}

/// The policy's `status.remoteClusters`: each cluster its remote peers select (`needs`)
/// and whether the hub sees its pods. A disconnected one is `Unreachable` with what its
/// rules are rendered from, so a rule kept from pods last seen never looks current. The
/// transition time is kept from `previous` while the state stays.
fn remote_status(
    needs: &BTreeSet<String>,
    fleet: &[Cluster],
    caches: &Caches,
    previous: Option<&FederatedPolicyStatus>,
    now: &str,
    pods_now: tokio::time::Instant,
) -> Vec<RemoteClusterStatus> {
    let stale = humantime::format_duration(STALE_PODS);
    needs
        .iter()
        .map(|name| {
            let connected = fleet.iter().any(|c| &c.name == name && c.connected);
            let (state, message, since) = if connected {
                (
                    RemoteClusterState::Connected,
                    "its pods are watched: the rules naming it follow them".to_string(),
                    None,
                )
            } else {
                match caches.seen(name, pods_now) {
                    Known::LastSeen { since, stale: false } => (
                        RemoteClusterState::Unreachable,
                        format!(
                            "not connected since {since}: the rules naming it keep its pods as last seen, for at most {stale} after that"
                        ),
                        Some(since),
                    ),
                    Known::LastSeen { since, stale: true } => (
                        RemoteClusterState::Unreachable,
                        format!(
                            "not connected since {since}: its pods last seen were dropped {stale} after that, and the rules naming it match nothing until it reconnects"
                        ),
                        Some(since),
                    ),
                    Known::Never | Known::Watched => (
                        RemoteClusterState::Unreachable,
                        "not connected, and its pods were not listed since the hub started: the rules naming it match nothing until it connects".to_string(),
                        None,
                    ),
                }
            };
            let last_transition_time = previous
                .into_iter()
                .flat_map(|s| &s.remote_clusters)
                .find(|r| &r.name == name && r.state == state)
                .map(|r| r.last_transition_time.clone())
                .or(since)
                .unwrap_or_else(|| now.to_string());
            RemoteClusterStatus {
                name: name.clone(),
                state,
                message,
                last_transition_time,
            }
        })
        .collect()
}

/// One round; returns how long to wait for the next one at most (short after acting,
/// to observe the result).
async fn round(
    st: &Arc<AppState>,
    watchers: &Watchers,
    limit: &Arc<Semaphore>,
    memory: &mut Memory,
) -> Duration {
    let _round = st.federation.round.lock().await;
    let policies = load_policies(st);
    let fleet = load_fleet(st);
    let caches = watchers.caches();

    // Remote peers: watch exactly the pods some policy needs.
    let needs: Vec<BTreeSet<String>> = policies
        .iter()
        .map(|p| remote_clusters(&p.policy, &fleet))
        .collect();
    let wanted: BTreeSet<String> = needs.iter().flatten().cloned().collect();
    watchers.want_pods(&wanted);
    let pods_now = tokio::time::Instant::now();
    let remote = caches.remote(&wanted, pods_now);

    let placements: Vec<(Option<Selection>, Vec<ObjectKey>)> = policies
        .iter()
        .map(|p| {
            (
                Selection::new(&p.policy.spec.placement).ok(),
                p.policy
                    .spec
                    .resources
                    .iter()
                    .filter_map(ObjectKey::of)
                    .collect(),
            )
        })
        .collect();
    let observed = observe_all(st, caches, &fleet, &placements, limit).await;
    let mut work = Work::new();

    // Objects of policies deleted (now or while the cluster was away). The known names
    // are read after the clusters' objects, from the store itself (never a cache).
    let known: BTreeSet<String> = load_policies(st)
        .into_iter()
        .map(|p| p.policy.metadata.name)
        .collect();
    for (cluster, objs) in &observed {
        if let Ok(objs) = objs {
            let actions = cattery_federation::orphans(&known, objs);
            if !actions.is_empty() {
                tracing::info!(
                    cluster,
                    "federation: removing {} objects of deleted policies",
                    actions.len()
                );
                work.entry(cluster.clone())
                    .or_default()
                    .push((None, actions));
            }
        }
    }

    let now = cattery_store::now_rfc3339();
    let mut statuses = Vec::new();
    let mut waiting = false;
    for (p, needs) in policies.iter().zip(&needs) {
        let name = &p.policy.metadata.name;
        if let Some(c) = needs.iter().find(|c| remote.pending.contains(*c)) {
            // Rendering now would drop that cluster's pods from the rules until its first
            // list arrives: wait for it (at most `cache::SYNC_GRACE`).
            tracing::debug!(
                policy = name,
                cluster = c,
                "federation: waiting for remote pods"
            );
            waiting = true;
            continue;
        }
        let obs: BTreeMap<String, Observation> = fleet
            .iter()
            .map(|c| {
                let objects = observed.get(&c.name).and_then(|r| r.as_ref().ok()).cloned();
                let apply_error = memory
                    .apply_errors
                    .get(&(name.clone(), c.name.clone()))
                    .cloned();
                (
                    c.name.clone(),
                    Observation {
                        objects,
                        apply_error,
                    },
                )
            })
            .collect();
        let plan = match cattery_federation::plan(&Input {
            policy: &p.policy,
            generation: p.generation,
            fleet: &fleet,
            observed: &obs,
            remote_pods: &remote.pods,
            now: &now,
        }) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(policy = name, "federation: no plan: {e}");
                continue;
            }
        };
        for c in plan.clusters {
            if c.actions.is_empty() {
                memory
                    .apply_errors
                    .remove(&(name.clone(), c.status.name.clone()));
            } else {
                work.entry(c.status.name.clone())
                    .or_default()
                    .push((Some(name.clone()), c.actions));
            }
        }
        let mut status = plan.status;
        status.remote_clusters = remote_status(
            needs,
            &fleet,
            caches,
            p.policy.status.as_ref(),
            &now,
            pods_now,
        );
        statuses.push((name.clone(), p.policy.status.clone(), status));
    }

    // The status says what was planned (`Pending` while actions are in flight); the next
    // round, run right after, observes their result.
    for (name, previous, status) in &statuses {
        record::write(st, name, previous.as_ref(), status);
    }
    let acted = !work.is_empty();
    for (policy, cluster, res) in execute_all(st, caches, work, limit).await {
        let Some(policy) = policy else {
            if let Err(e) = res {
                tracing::warn!(cluster, "federation: removing orphaned objects: {e}");
            }
            continue;
        };
        match res {
            Ok(()) => {
                memory.apply_errors.remove(&(policy, cluster));
            }
            Err(e) => {
                tracing::info!(policy, cluster, "federation: {e}");
                memory.apply_errors.insert((policy, cluster), e);
            }
        }
    }
    // Forget errors of policies that no longer exist.
    memory.apply_errors.retain(|(p, _), _| known.contains(p));
    if acted {
        DEBOUNCE
    } else if waiting {
        PENDING_RETRY
    } else {
        RESYNC
    }
}
