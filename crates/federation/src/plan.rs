//! Per-cluster states, the actions that get each cluster to its desired objects, and
//! rollout batches.
//!
//! Ownership decides everything that writes: an object is this policy's when its
//! [`OWNER_LABEL`] is the policy's name. Such an object may be applied over or deleted;
//! an absent one may be created (with a create that fails if someone else created it in
//! the meantime); anything else at a desired name is a `Conflict`, and the cluster gets no
//! action at all until it is resolved.

use std::collections::{BTreeMap, BTreeSet};

use cattery_api::federation::{
    ClusterState, ClusterStatus, Counts, FederatedPolicy, FederatedPolicyStatus,
    GENERATION_ANNOTATION, HASH_ANNOTATION, Mode, OWNER_LABEL, ObjectKey, ResourceKind,
    UID_ANNOTATION,
};
use serde_json::Value;

use crate::compare::diff;
use crate::fleet::{Cluster, Observation, RemotePod, Selection};
use crate::render::{Identity, RemoteIndex, RenderError, remote_peers, render};

/// Everything [`plan`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The policy (its `status` is the previous round's result).
    pub policy: &'a FederatedPolicy,
    /// The policy's `metadata.generation` from the store (`ObjectMeta` does not keep it).
    pub generation: i64,
    /// Every managed cluster.
    pub fleet: &'a [Cluster],
    /// What is known of each cluster, by name; a missing entry is "not read yet".
    pub observed: &'a BTreeMap<String, Observation>,
    /// Pods of each cluster, by cluster name, for remote peers.
    pub remote_pods: &'a BTreeMap<String, Vec<RemotePod>>,
    /// The current time (RFC 3339), for `lastTransitionTime`.
    pub now: &'a str,
}

/// A change to make in one cluster, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the object, which was observed absent; use a create (POST), not an apply,
    /// so that if someone else created it meanwhile this fails with 409 and the next
    /// round reports the conflict instead of taking their object over.
    Create(Value),
    /// Server-side apply (field manager `cattery`, `force=true`) of an object observed
    /// to carry this policy's owner label.
    Apply(Value),
    /// Delete an object this policy placed, with the observed uid and resourceVersion as
    /// preconditions so an object recreated meanwhile by someone else survives.
    Delete {
        /// The object.
        key: ObjectKey,
        /// `metadata.uid` as observed.
        uid: Option<String>,
        /// `metadata.resourceVersion` as observed.
        resource_version: Option<String>,
    },
}

impl Action {
    /// The object the action is about.
    pub fn key(&self) -> Option<ObjectKey> {
        match self {
            Action::Create(v) | Action::Apply(v) => ObjectKey::of(v),
            Action::Delete { key, .. } => Some(key.clone()),
        }
    }
}

/// The plan for one cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterPlan {
    /// Whether the placement selects the cluster (false: the policy is being removed from it).
    pub placed: bool,
    /// Rollout batch (0-based), when `spec.rollout` is set and the cluster is placed.
    pub batch: Option<usize>,
    /// The objects the cluster should hold (empty when not rendered: unreachable,
    /// invalid override, not placed).
    pub desired: Vec<Value>,
    /// What to do now.
    pub actions: Vec<Action>,
    /// The cluster's entry for `status.clusters`.
    pub status: ClusterStatus,
}

/// The result of [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// One entry per cluster placed or being cleaned up, by name.
    pub clusters: Vec<ClusterPlan>,
    /// The policy's new `status`.
    pub status: FederatedPolicyStatus,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The placement does not compile (validation should have refused the policy).
    #[error("spec.placement: {0}")]
    Placement(String),
}

/// The name of the FederatedPolicy owning `obj`, if any.
pub fn owner(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(OWNER_LABEL))
        .and_then(Value::as_str)
}

fn hash_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(HASH_ANNOTATION))
        .and_then(Value::as_str)
}

fn generation_of(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(GENERATION_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|g| g.parse().ok())
}

/// A delete of an observed object.
pub(crate) fn delete_of(key: ObjectKey, obj: &Value) -> Action {
    let meta = |f: &str| {
        obj.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Action::Delete {
        key,
        uid: meta("uid"),
        resource_version: meta("resourceVersion"),
    }
}

/// Orders deletes: policies before sets, so a rule never refers to a set already gone.
pub(crate) fn sort_deletes(actions: &mut [Action]) {
    actions.sort_by_key(|a| {
        a.key().map(|k| {
            (
                matches!(
                    k.kind,
                    ResourceKind::NetworkSet | ResourceKind::GlobalNetworkSet
                ),
                k,
            )
        })
    });
}

/// Computes, for every cluster the policy is placed on or still has objects on, the
/// desired objects, the actions and the state; and the policy's status.
pub fn plan(input: &Input<'_>) -> Result<Plan, PlanError> {
    let policy = input.policy;
    let selection = Selection::new(&policy.spec.placement).map_err(PlanError::Placement)?;
    let prev: BTreeMap<&str, &ClusterStatus> = policy
        .status
        .iter()
        .flat_map(|s| &s.clusters)
        .map(|c| (c.name.as_str(), c))
        .collect();
    let id = Identity {
        name: &policy.metadata.name,
        uid: policy.metadata.uid.as_deref(),
        generation: input.generation,
    };
    let mut fleet: Vec<&Cluster> = input.fleet.iter().collect();
    fleet.sort_by(|a, b| a.name.cmp(&b.name));
    fleet.dedup_by(|a, b| a.name == b.name);

    let remote = RemoteIndex::new(&remote_peers(policy), input.fleet, input.remote_pods);
    let mut placed = Vec::new();
    let mut leaving = Vec::new();
    for c in fleet {
        let prior = prev.get(c.name.as_str()).copied();
        if selection.matches(c) {
            placed.push(place(input, id, c, prior, &remote));
        } else if let Some(p) = leave(input, id, c, prior) {
            leaving.push(p);
        }
    }
    if policy.spec.mode == Mode::Enforce
        && let Some(r) = policy.spec.rollout
    {
        gate(
            &mut placed,
            r.batch_size.max(1) as usize,
            r.max_unavailable as usize,
        );
    }

    let mut clusters: Vec<ClusterPlan> = placed.into_iter().chain(leaving).collect();
    clusters.sort_by(|a, b| a.status.name.cmp(&b.status.name));
    for c in &mut clusters {
        c.status.last_transition_time = match prev.get(c.status.name.as_str()) {
            Some(p) if p.state == c.status.state && !p.last_transition_time.is_empty() => {
                p.last_transition_time.clone()
            }
            _ => input.now.to_string(),
        };
    }
    let statuses: Vec<ClusterStatus> = clusters.iter().map(|c| c.status.clone()).collect();
    Ok(Plan {
        status: FederatedPolicyStatus {
            observed_generation: input.generation,
            counts: Counts::of(&statuses),
            clusters: statuses,
            remote_clusters: Vec::new(),
        },
        clusters,
    })
}

fn outcome(
    name: &str,
    state: ClusterState,
    reason: &str,
    message: impl Into<String>,
    observed_generation: i64,
) -> ClusterStatus {
    ClusterStatus {
        name: name.to_string(),
        state,
        observed_generation,
        reason: reason.into(),
        message: message.into(),
        last_transition_time: String::new(),
    }
}

/// The plan for a cluster the placement selects.
fn place(
    input: &Input<'_>,
    id: Identity<'_>,
    c: &Cluster,
    prev: Option<&ClusterStatus>,
    remote: &Result<RemoteIndex, RenderError>,
) -> ClusterPlan {
    let prev_gen = prev.map_or(0, |p| p.observed_generation);
    let mut out = ClusterPlan {
        placed: true,
        batch: None,
        desired: Vec::new(),
        actions: Vec::new(),
        status: outcome(&c.name, ClusterState::Pending, "", "", prev_gen),
    };
    if !c.connected {
        out.status = outcome(
            &c.name,
            ClusterState::Unreachable,
            "NotConnected",
            "the cluster is not connected; its objects are unknown until it reconnects",
            prev_gen,
        );
        return out;
    }
    let rendered = remote
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|r| render(input.policy, id, c, r));
    let desired = match rendered {
        Ok(d) => d,
        Err(e) => {
            let reason = match e {
                RenderError::InvalidOverride(_) => "InvalidOverride",
                RenderError::Invalid(_) => "InvalidPolicy",
            };
            out.status = outcome(
                &c.name,
                ClusterState::Failed,
                reason,
                e.to_string(),
                prev_gen,
            );
            return out;
        }
    };
    out.desired = desired.iter().map(|(_, v)| v.clone()).collect();
    let obs = input.observed.get(&c.name);
    let Some(objects) = obs.and_then(|o| o.objects.as_ref()) else {
        out.status = outcome(
            &c.name,
            ClusterState::Pending,
            "Observing",
            "waiting for the cluster's objects to be read",
            prev_gen,
        );
        return out;
    };
    let live: BTreeMap<ObjectKey, &Value> = objects
        .iter()
        .filter_map(|o| ObjectKey::of(o).map(|k| (k, o)))
        .collect();
    let seen_gen = live
        .values()
        .filter(|o| owner(o) == Some(id.name))
        .filter_map(|o| generation_of(o))
        .min()
        .unwrap_or(prev_gen);
    match input.policy.spec.mode {
        Mode::Inform => {
            out.status = inform(&c.name, &desired, &live, seen_gen);
        }
        Mode::Enforce => {
            let apply_error = obs.and_then(|o| o.apply_error.as_deref());
            let (status, actions) =
                enforce(&c.name, id, &desired, &live, prev, apply_error, seen_gen);
            out.status = status;
            out.actions = actions;
        }
    }
    out
}

/// Enforce mode: what to create, apply and delete, and the resulting state.
fn enforce(
    name: &str,
    id: Identity<'_>,
    desired: &[(ObjectKey, Value)],
    live: &BTreeMap<ObjectKey, &Value>,
    prev: Option<&ClusterStatus>,
    apply_error: Option<&str>,
    seen_gen: i64,
) -> (ClusterStatus, Vec<Action>) {
    let mut actions = Vec::new();
    let (mut conflicts, mut drift, mut created, mut updated) = (vec![], vec![], vec![], 0);
    for (k, d) in desired {
        match live.get(k) {
            None => {
                created.push(k.to_string());
                actions.push(Action::Create(d.clone()));
            }
            Some(l) => match owner(l) {
                Some(o) if o == id.name => {
                    if let Some(path) = diff(d, l) {
                        actions.push(Action::Apply(d.clone()));
                        if hash_of(l).is_some() && hash_of(l) == hash_of(d) {
                            drift.push(format!("{k}: {path} was changed"));
                        } else {
                            updated += 1;
                        }
                    }
                }
                Some(other) => conflicts.push(format!("{k} is owned by FederatedPolicy {other:?}")),
                None => conflicts.push(format!(
                    "{k} exists and was not created by a FederatedPolicy"
                )),
            },
        }
    }
    let wanted: BTreeSet<&ObjectKey> = desired.iter().map(|(k, _)| k).collect();
    let mut deletes: Vec<Action> = live
        .iter()
        .filter(|(k, o)| owner(o) == Some(id.name) && !wanted.contains(k))
        .map(|(k, o)| delete_of(k.clone(), o))
        .collect();
    sort_deletes(&mut deletes);
    let deleted = deletes.len();
    actions.extend(deletes);

    let status = if !conflicts.is_empty() {
        actions.clear();
        outcome(
            name,
            ClusterState::Failed,
            "Conflict",
            format!(
                "{}; nothing is changed on this cluster until that object is removed or renamed",
                conflicts.join("; ")
            ),
            seen_gen,
        )
    } else if actions.is_empty() {
        outcome(
            name,
            ClusterState::Applied,
            "Applied",
            format!("{} objects at generation {}", desired.len(), id.generation),
            id.generation,
        )
    } else if let Some(err) = apply_error {
        outcome(name, ClusterState::Failed, "ApplyFailed", err, seen_gen)
    } else {
        let was_done = prev.is_some_and(|p| {
            matches!(p.state, ClusterState::Applied | ClusterState::Drifted)
                && p.observed_generation == id.generation
        });
        if !drift.is_empty() || (was_done && !created.is_empty()) {
            let mut what = drift;
            if was_done {
                what.extend(created.iter().map(|k| format!("{k} was deleted")));
            }
            outcome(
                name,
                ClusterState::Drifted,
                "Drifted",
                format!("{}; re-applying", what.join("; ")),
                seen_gen,
            )
        } else {
            outcome(
                name,
                ClusterState::Pending,
                "Applying",
                format!(
                    "creating {}, updating {updated}, deleting {deleted} objects for generation {}",
                    created.len(),
                    id.generation
                ),
                seen_gen,
            )
        }
    };
    (status, actions)
}

/// `obj` without the owner label and annotations (what Inform compares).
fn unstamped(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for (field, key) in [
            ("labels", OWNER_LABEL),
            ("annotations", UID_ANNOTATION),
            ("annotations", GENERATION_ANNOTATION),
            ("annotations", HASH_ANNOTATION),
        ] {
            if let Some(m) = meta.get_mut(field).and_then(Value::as_object_mut) {
                m.remove(key);
            }
        }
    }
    v
}

/// Inform mode: whether the cluster's objects match, whoever created them.
fn inform(
    name: &str,
    desired: &[(ObjectKey, Value)],
    live: &BTreeMap<ObjectKey, &Value>,
    seen_gen: i64,
) -> ClusterStatus {
    let mut problems = Vec::new();
    for (k, d) in desired {
        match live.get(k) {
            None => problems.push(format!("{k} is missing")),
            Some(l) => {
                if let Some(path) = diff(&unstamped(d), l) {
                    problems.push(format!("{k}: {path} differs"));
                }
            }
        }
    }
    if problems.is_empty() {
        outcome(
            name,
            ClusterState::Applied,
            "Compliant",
            format!(
                "the cluster's {} objects match (Inform: nothing is applied)",
                desired.len()
            ),
            seen_gen,
        )
    } else {
        outcome(
            name,
            ClusterState::NonCompliant,
            "NonCompliant",
            format!("{} (Inform: nothing is applied)", problems.join("; ")),
            seen_gen,
        )
    }
}

/// The plan for a cluster the placement no longer selects: delete what the policy placed
/// there (Enforce only; Inform writes nothing). `None` once nothing is left to do or know.
fn leave(
    input: &Input<'_>,
    id: Identity<'_>,
    c: &Cluster,
    prev: Option<&ClusterStatus>,
) -> Option<ClusterPlan> {
    if input.policy.spec.mode == Mode::Inform {
        return None;
    }
    let prev_gen = prev.map_or(0, |p| p.observed_generation);
    let mk = |state, message: &str, actions| ClusterPlan {
        placed: false,
        batch: None,
        desired: Vec::new(),
        actions,
        status: outcome(&c.name, state, "Removing", message, prev_gen),
    };
    let objects = input.observed.get(&c.name).and_then(|o| o.objects.as_ref());
    if !c.connected {
        return prev.map(|_| {
            mk(
                ClusterState::Unreachable,
                "the cluster left the placement while not connected; its objects are removed when it reconnects",
                Vec::new(),
            )
        });
    }
    let Some(objects) = objects else {
        return prev.map(|_| {
            mk(
                ClusterState::Pending,
                "the cluster left the placement; waiting for its objects to be read",
                Vec::new(),
            )
        });
    };
    let mut deletes: Vec<Action> = objects
        .iter()
        .filter(|o| owner(o) == Some(id.name))
        .filter_map(|o| ObjectKey::of(o).map(|k| delete_of(k, o)))
        .collect();
    if deletes.is_empty() {
        return None;
    }
    sort_deletes(&mut deletes);
    let message = format!(
        "the cluster left the placement; deleting {} objects",
        deletes.len()
    );
    Some(mk(ClusterState::Pending, &message, deletes))
}

/// Rollout: clusters in name order, `size` per batch; a batch gets its actions only when
/// every earlier batch is done, and the rollout stops at a batch with more than
/// `max_unavailable` clusters Failed or Unreachable.
fn gate(placed: &mut [ClusterPlan], size: usize, max_unavailable: usize) {
    let mut hold: Option<(&'static str, String)> = None;
    for (b, batch) in placed.chunks_mut(size).enumerate() {
        for p in batch.iter_mut() {
            p.batch = Some(b);
        }
        if let Some((reason, message)) = &hold {
            for p in batch.iter_mut().filter(|p| !p.actions.is_empty()) {
                p.actions.clear();
                if p.status.state == ClusterState::Pending {
                    p.status.reason = reason.to_string();
                    p.status.message = message.clone();
                } else {
                    p.status.message = format!("{}; held: {message}", p.status.message);
                }
            }
            continue;
        }
        let bad = batch
            .iter()
            .filter(|p| {
                matches!(
                    p.status.state,
                    ClusterState::Failed | ClusterState::Unreachable
                )
            })
            .count();
        let open = batch
            .iter()
            .filter(|p| {
                !matches!(
                    p.status.state,
                    ClusterState::Applied | ClusterState::Failed | ClusterState::Unreachable
                )
            })
            .count();
        if bad > max_unavailable {
            hold = Some((
                "RolloutHalted",
                format!(
                    "rollout stopped: {bad} clusters of batch {} are Failed or Unreachable (maxUnavailable {max_unavailable})",
                    b + 1
                ),
            ));
        } else if open > 0 {
            hold = Some((
                "RolloutWaiting",
                format!("waiting for batch {} to be Applied", b + 1),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
