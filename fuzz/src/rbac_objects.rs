//! The RBAC objects the API accepts (`wire::decode` of ClusterRole, Role, ClusterRoleBinding,
//! RoleBinding), then the validation every write goes through.

use cattery_api::wire::decode;
use cattery_rbac::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, validate_cluster_role,
    validate_cluster_role_binding, validate_role, validate_role_binding,
};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;

/// Decodes as `T`; when that works, JSON-encoding and decoding again gives the same value,
/// and validation gives the same verdict for both.
fn round_trip<T, E: Debug>(data: &[u8], validate: fn(&T) -> Result<(), E>)
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let Ok(v) = decode::<T>(data) else {
        return;
    };
    let json = serde_json::to_vec(&v).expect("a decoded RBAC object serialises");
    let again: T = decode(&json).expect("a serialised RBAC object decodes");
    assert_eq!(again, v, "decode(serialise(x)) != x");
    assert_eq!(validate(&v).is_ok(), validate(&again).is_ok());
}

/// Runs one input; panics when an invariant breaks.
pub fn check(data: &[u8]) {
    round_trip::<ClusterRole, _>(data, validate_cluster_role);
    round_trip::<Role, _>(data, validate_role);
    round_trip::<ClusterRoleBinding, _>(data, validate_cluster_role_binding);
    round_trip::<RoleBinding, _>(data, validate_role_binding);
}
