//! Writing a policy's status and auditing every change of a cluster's state.

use std::collections::BTreeMap;

use cattery_api::federation::{ClusterStatus, FederatedPolicyStatus};

use crate::AppState;
use crate::api::kinds::HubKind;
use crate::audit_trail::AuditEvent;

/// The user the audit trail names for the reconciler's records.
pub const CONTROLLER_USER: &str = "system:cattery:federation-controller";

/// Writes `status` as the policy's `status` (the store keeps the spec and does not bump
/// `metadata.generation` for a status-only write) when it differs from the stored one,
/// and audits every cluster whose state changed. Returns whether anything was written.
pub(crate) fn write(
    st: &AppState,
    name: &str,
    previous: Option<&FederatedPolicyStatus>,
    status: &FederatedPolicyStatus,
) -> bool {
    if previous == Some(status) {
        return false;
    }
    let value = match serde_json::to_value(status) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(policy = name, "encoding the status: {e}");
            return false;
        }
    };
    let written = st
        .resources
        .modify(HubKind::FederatedPolicy, None, name, true, |old| {
            let mut obj = (**old).clone();
            obj["status"] = value;
            Ok::<_, cattery_store::StoreError>(obj)
        });
    if let Err(e) = written {
        // Deleted meanwhile (NotFound) is normal; the next round cleans up.
        tracing::debug!(policy = name, "writing the status: {e}");
        return false;
    }
    let before: BTreeMap<&str, &ClusterStatus> = previous
        .iter()
        .flat_map(|s| &s.clusters)
        .map(|c| (c.name.as_str(), c))
        .collect();
    for c in &status.clusters {
        let old = before.get(c.name.as_str());
        if old.is_some_and(|o| o.state == c.state && o.observed_generation == c.observed_generation)
        {
            continue;
        }
        audit(st, name, old.map(|o| o.state.to_string()), c);
    }
    true
}

/// One audit record of cluster `cluster` (the management plane's own stream) for a
/// change of `c`'s state: the query names cluster, state and generation so "which
/// clusters got version N, and when" is a search of `requestURI`.
fn audit(st: &AppState, policy: &str, from: Option<String>, c: &ClusterStatus) {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("cluster", &c.name)
        .append_pair("state", &c.state.to_string())
        .append_pair("generation", &c.observed_generation.to_string())
        .finish();
    st.audit.record(AuditEvent {
        user: Some(CONTROLLER_USER.into()),
        verb: "update".into(),
        request_uri: format!("/apis/cattery.dev/v1/federatedpolicies/{policy}/status?{query}"),
        api_group: Some(cattery_rbac::GROUP_CATTERY.into()),
        resource: Some(cattery_api::federation::PLURAL.into()),
        subresource: Some("status".into()),
        name: Some(policy.into()),
        allowed: true,
        reason: format!(
            "cluster {}: {} -> {} at generation {} ({}: {})",
            c.name,
            from.as_deref().unwrap_or("none"),
            c.state,
            c.observed_generation,
            c.reason,
            c.message
        ),
        code: 200,
        stage: "ResponseComplete",
        ..Default::default()
    });
}
