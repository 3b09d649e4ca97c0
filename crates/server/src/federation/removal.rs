//! Taking a cluster's federated objects off it when its ManagedCluster is removed
//! (issue 16 item 5: managed → standalone).

use cattery_federation::orphans;
use std::collections::BTreeSet;

use super::{CLUSTER_TIMEOUT, execute, observe};
use crate::AppState;
use crate::cluster_client::ClusterClient;

/// What [`Leaving::unplace`] did.
#[derive(Debug)]
pub enum Unplaced {
    /// Every object a FederatedPolicy had placed there was deleted (how many).
    Removed(usize),
    /// They could not be removed (the cluster is not connected, or it failed); the
    /// objects stay in the cluster, carrying their owner label.
    NotRemoved(String),
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
    /// else) from the cluster, while its tunnel is still up.
    pub async fn unplace(&self) -> Unplaced {
        let client = match ClusterClient::connect(&self.st.registry, &self.name) {
            Ok(c) => c,
            Err(e) => return Unplaced::NotRemoved(e.to_string()),
        };
        let work = async {
            let objects = observe::objects(&client, &[])
                .await
                .map_err(|e| e.to_string())?;
            let actions = orphans(&BTreeSet::new(), &objects);
            execute::run(&client, &actions, &mut |_| {}).await?;
            Ok::<_, String>(actions.len())
        };
        match tokio::time::timeout(CLUSTER_TIMEOUT, work).await {
            Ok(Ok(n)) => Unplaced::Removed(n),
            Ok(Err(e)) => Unplaced::NotRemoved(e),
            Err(_) => Unplaced::NotRemoved(format!(
                "the cluster did not answer within {CLUSTER_TIMEOUT:?}"
            )),
        }
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
