//! Store errors as Kubernetes `Status` objects.

use serde_json::{Value, json};

use crate::StoreError;

/// The `Status` body (kind, code, reason, message, details) for `e`.
pub fn status(e: &StoreError) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": e.to_string(),
        "reason": e.reason(),
        "code": e.code(),
    });
    if let StoreError::NotFound { resource, name } | StoreError::AlreadyExists { resource, name } =
        e
    {
        s["details"] = json!({"name": name, "kind": resource});
    }
    s
}
