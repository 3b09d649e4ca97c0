//! Taking a cluster's federated objects off it when its ManagedCluster is removed
//! (issue 16 item 5: managed → standalone), and saying so when that is not possible.

use cattery_api::federation::{Mode, ObjectKey};
use cattery_api::{Condition, ConditionStatus};
use cattery_federation::orphans;
use std::collections::BTreeSet;

use super::record::CONTROLLER_USER;
use super::{CLUSTER_TIMEOUT, execute, load_policies, observe};
use crate::AppState;
use crate::audit_trail::AuditEvent;
use crate::cluster_client::ClusterClient;

/// The condition a removal adds to the ManagedCluster it answers with: whether the
/// federated objects came off the cluster, and if not, which may still be there.
pub const CONDITION: &str = "FederatedObjectsRemoved";

/// What [`Leaving::unplace`] did.
#[derive(Debug)]
pub enum Unplaced {
    /// Every object a FederatedPolicy had placed there was deleted (how many).
    Removed(usize),
    /// They could not be removed (the cluster is not connected, or it failed); the
    /// objects stay in the cluster, carrying their owner label.
    NotRemoved {
        /// Why not (the cluster's or the tunnel's error).
        why: String,
        /// `policy: Kind namespace/name` of every object the Enforce policies that
        /// listed the cluster in their status may have placed there.
        left: Vec<String>,
    },
}

impl Unplaced {
    /// The [`CONDITION`] the removal answers with.
    pub fn condition(&self) -> Condition {
        let (status, reason, message) = match self {
            Unplaced::Removed(n) => (
                ConditionStatus::True,
                "Removed",
                format!("{n} federated object(s) removed from the cluster"),
            ),
            Unplaced::NotRemoved { why, left } if left.is_empty() => (
                ConditionStatus::False,
                "NotRemoved",
                format!(
                    "the cluster could not be cleaned ({why}); no FederatedPolicy had placed \
                     anything there that the hub knows of"
                ),
            ),
            Unplaced::NotRemoved { why, left } => (
                ConditionStatus::False,
                "NotRemoved",
                format!(
                    "the federated objects were not removed from the cluster ({why}); it may \
                     still hold {}; they carry the label {} and must be deleted there by hand",
                    left.join(", "),
                    cattery_api::federation::OWNER_LABEL
                ),
            ),
        };
        Condition {
            type_: CONDITION.into(),
            status,
            last_transition_time: cattery_api::now_rfc3339(),
            reason: reason.into(),
            message,
        }
    }
}

/// A cluster being removed: left out of the reconciler's rounds until dropped.
pub struct Leaving<'a> {
    st: &'a AppState,
    name: String,
}

impl<'a> Leaving<'a> {
    /// Marks `name` as leaving and waits for a round in flight to finish, so no round
    /// places anything on it afterwards.
    pub async fn start(st: &'a AppState, name: &str) -> Leaving<'a> {
        st.federation
            .leaving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        drop(st.federation.round.lock().await);
        Leaving {
            st,
            name: name.to_string(),
        }
    }

    /// Deletes every object of the placeable kinds carrying an owner label (and nothing
    /// else) from the cluster, while its tunnel is still up. When that fails, the outcome
    /// names what may be left behind, and an audit record of cluster `cluster` says it.
    pub async fn unplace(&self) -> Unplaced {
        let outcome = match self.try_unplace().await {
            Ok(n) => Unplaced::Removed(n),
            Err(why) => Unplaced::NotRemoved {
                why,
                left: self.placed(),
            },
        };
        self.audit(&outcome);
        outcome
    }

    async fn try_unplace(&self) -> Result<usize, String> {
        let client =
            ClusterClient::connect(&self.st.registry, &self.name).map_err(|e| e.to_string())?;
        let work = async {
            let objects = observe::objects(&client, &[])
                .await
                .map_err(|e| e.to_string())?;
            let actions = orphans(&BTreeSet::new(), &objects);
            execute::run(&client, &actions, &mut |_| {}).await?;
            Ok::<_, String>(actions.len())
        };
        tokio::time::timeout(CLUSTER_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the cluster did not answer within {CLUSTER_TIMEOUT:?}"
                ))
            })
    }

    /// What the hub knows may be in the cluster: the resources of every Enforce policy
    /// whose status lists it (an override changes an object's content, never its name).
    fn placed(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in load_policies(self.st) {
            let listed = p
                .policy
                .status
                .as_ref()
                .is_some_and(|s| s.clusters.iter().any(|c| c.name == self.name));
            if !listed || p.policy.spec.mode == Mode::Inform {
                continue;
            }
            for key in p.policy.spec.resources.iter().filter_map(ObjectKey::of) {
                out.push(format!("{}: {key}", p.policy.metadata.name));
            }
        }
        out
    }

    /// The removal's outcome for the cluster, as an audit record of cluster `cluster`
    /// (the management plane's own stream), so it outlives the DELETE's answer.
    fn audit(&self, outcome: &Unplaced) {
        let c = outcome.condition();
        self.st.audit.record(AuditEvent {
            user: Some(CONTROLLER_USER.into()),
            verb: "delete".into(),
            request_uri: format!(
                "/apis/cattery.dev/v1/managedclusters/{}?{}={}",
                self.name, CONDITION, c.reason
            ),
            api_group: Some(cattery_rbac::GROUP_CATTERY.into()),
            resource: Some("managedclusters".into()),
            name: Some(self.name.clone()),
            allowed: true,
            reason: format!("cluster {}: {}", self.name, c.message),
            code: 200,
            stage: "ResponseComplete",
            ..Default::default()
        });
    }
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.st
            .federation
            .leaving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_says_what_was_removed_or_may_be_left() {
        let c = Unplaced::Removed(2).condition();
        assert_eq!(
            (c.type_.as_str(), c.status),
            (CONDITION, ConditionStatus::True)
        );
        assert_eq!(c.reason, "Removed");
        assert_eq!(c.message, "2 federated object(s) removed from the cluster");

        let left = Unplaced::NotRemoved {
            why: "cluster \"c2\" is not connected".into(),
            left: vec!["web: networking.k8s.io/v1 NetworkPolicy shop/allow-web".into()],
        };
        let c = left.condition();
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, "NotRemoved")
        );
        assert!(
            c.message.contains("(cluster \"c2\" is not connected)"),
            "{}",
            c.message
        );
        assert!(
            c.message
                .contains("may still hold web: networking.k8s.io/v1 NetworkPolicy shop/allow-web"),
            "{}",
            c.message
        );
        assert!(
            c.message.contains(cattery_api::federation::OWNER_LABEL),
            "{}",
            c.message
        );

        let none = Unplaced::NotRemoved {
            why: "timeout".into(),
            left: vec![],
        };
        let c = none.condition();
        assert_eq!(c.status, ConditionStatus::False);
        assert!(
            c.message.contains("no FederatedPolicy had placed anything"),
            "{}",
            c.message
        );
    }
}
