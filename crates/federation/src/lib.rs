//! The FederatedPolicy planner: given a policy, the fleet and what each cluster holds, it
//! says what each cluster should hold, what to create, apply or delete there, and each
//! cluster's state for `status`.
//!
//! Everything here is a pure function of its inputs: no I/O, no clock (the caller passes
//! `now`), no async. The hub's reconciler watches FederatedPolicies, ManagedClusters and
//! the clusters' objects, calls [`plan`] whenever one of them changes, carries out the
//! [`Action`]s through the tunnel and writes [`Plan::status`]. See
//! `docs/design/0015-federated-policy.md`.
//!
//! - [`fleet`]: the inputs (clusters, observations, remote pods) and placement matching;
//! - [`render`]: a cluster's desired objects (overrides, remote peers, owner metadata);
//! - [`compare`]: whether a live object matches a desired one on the fields we set;
//! - [`plan`](mod@plan): states, actions and rollout batches;
//! - [`cleanup`]: what to delete when a policy goes away or is unknown.
#![forbid(unsafe_code)]

pub mod cleanup;
pub mod compare;
pub mod fleet;
pub mod plan;
pub mod render;

pub use cleanup::{deletion, orphans};
pub use fleet::{Cluster, Observation, RemotePod};
pub use plan::{Action, ClusterPlan, Input, Plan, PlanError, plan};
pub use render::remote_peers;
