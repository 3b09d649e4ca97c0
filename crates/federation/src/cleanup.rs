//! What to delete when a policy is deleted, or when objects name a policy that no longer
//! exists (deleted while the cluster was unreachable).
//!
//! The delete set is exactly the objects carrying the owner label with the policy's name;
//! nothing else is ever deleted.

use std::collections::BTreeSet;

use cattery_api::federation::ObjectKey;
use serde_json::Value;

use crate::plan::{Action, delete_of, owner, sort_deletes};

/// The deletes that remove a deleted policy `name` from one cluster whose relevant
/// objects (at least those labelled with any owner) are `objects`.
pub fn deletion(name: &str, objects: &[Value]) -> Vec<Action> {
    select(objects, |o| o == name)
}

/// The deletes of objects whose owner label names a policy not in `known` (policies that
/// were deleted while the cluster was unreachable). `known` must be the complete list of
/// FederatedPolicies from the store, read after the cluster's objects; a partial list
/// (a cache still filling at startup) would delete live policies' objects.
pub fn orphans(known: &BTreeSet<String>, objects: &[Value]) -> Vec<Action> {
    select(objects, |o| !known.contains(o))
}

fn select(objects: &[Value], pick: impl Fn(&str) -> bool) -> Vec<Action> {
    let mut out: Vec<Action> = objects
        .iter()
        .filter(|o| owner(o).is_some_and(&pick))
        .filter_map(|o| ObjectKey::of(o).map(|k| delete_of(k, o)))
        .collect();
    sort_deletes(&mut out);
    out
}
