//! Carrying out a cluster's planned actions through its tunnel.

use cattery_federation::Action;

use super::cache::Written;
use super::observe::dynamic;
use crate::cluster_client::{ClientError, ClusterClient};

/// Runs `actions` in order and stops at the first error, whose message (the cluster's own
/// words when it answered) is returned for the next round's `Observation::apply_error`.
/// A delete of an object already gone counts as done. Each object written (as the
/// cluster stored it) or deleted is reported to `written` as soon as it is done.
pub(crate) async fn run(
    client: &ClusterClient,
    actions: &[Action],
    written: &mut (dyn FnMut(Written) + Send),
) -> Result<(), String> {
    for a in actions {
        let res = match a {
            Action::Create(obj) => match kind_of(obj) {
                Some(k) => client
                    .create_value(&k, obj)
                    .await
                    .map(|o| written(Written::Stored(typed(&k, o)))),
                None => return Err(format!("cannot create an object of unknown kind: {obj}")),
            },
            Action::Apply(obj) => match kind_of(obj) {
                Some(k) => client
                    .apply_value(&k, obj, true)
                    .await
                    .map(|o| written(Written::Stored(typed(&k, o)))),
                None => return Err(format!("cannot apply an object of unknown kind: {obj}")),
            },
            Action::Delete {
                key,
                uid,
                resource_version,
            } => match client
                .delete_value(
                    &dynamic(key.kind),
                    key.namespace.as_deref(),
                    &key.name,
                    uid.as_deref(),
                    resource_version.as_deref(),
                )
                .await
            {
                Err(e) if e.code() == Some(404) => {
                    written(Written::Deleted(key.clone()));
                    Ok(())
                }
                Ok(()) => {
                    written(Written::Deleted(key.clone()));
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        res.map_err(|e| message(a, &e))?;
    }
    Ok(())
}

/// `obj` with `k`'s apiVersion and kind (an answer may leave them out).
fn typed(k: &crate::cluster_client::DynamicKind, mut obj: serde_json::Value) -> serde_json::Value {
    obj["apiVersion"] = k.api_version.into();
    obj["kind"] = k.kind.into();
    obj
}

fn kind_of(obj: &serde_json::Value) -> Option<crate::cluster_client::DynamicKind> {
    cattery_api::federation::ResourceKind::of_object(obj).map(dynamic)
}

/// What a status message says about a failed action: which object, and the cluster's
/// answer verbatim.
fn message(a: &Action, e: &ClientError) -> String {
    let what = match a {
        Action::Create(_) => "creating",
        Action::Apply(_) => "applying",
        Action::Delete { .. } => "deleting",
    };
    let object = a.key().map(|k| k.to_string()).unwrap_or_default();
    match e {
        ClientError::Status {
            code,
            reason,
            message,
            ..
        } => format!("{what} {object}: the cluster answered {code} {reason}: {message}"),
        other => format!("{what} {object}: {other}"),
    }
}
