//! Decoding request bodies and files as JSON or YAML with errors that name the problem.

use serde::de::DeserializeOwned;

/// A body or file that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// JSON syntax or schema error (the message names the field and position).
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// YAML syntax or schema error (the message names the field and position).
    #[error("invalid YAML: {0}")]
    Yaml(String),
    /// The object's `kind` is not the one expected here.
    #[error("expected kind {expected:?}, got {got:?}")]
    WrongKind {
        /// Kind required at this endpoint.
        expected: String,
        /// Kind found in the document.
        got: String,
    },
    /// The object's `apiVersion` is not accepted here.
    #[error("apiVersion {got:?} is not supported for kind {kind}; use {expected:?}")]
    WrongApiVersion {
        /// Kind being decoded.
        kind: String,
        /// Required apiVersion.
        expected: String,
        /// apiVersion found.
        got: String,
    },
}

/// Decodes `bytes` as JSON when it looks like JSON (first non-blank byte `{` or `[`),
/// otherwise as YAML. YAML is a superset of JSON, but serde_json gives sharper errors.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'[')) {
        Ok(serde_json::from_slice(bytes)?)
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| DecodeError::Yaml(format!("body is not UTF-8: {e}")))?;
        serde_saphyr::from_str(text).map_err(|e| DecodeError::Yaml(e.to_string()))
    }
}

/// Checks `apiVersion` and `kind` of a decoded object.
pub fn check_type(
    api_version: &str,
    kind: &str,
    want_api_versions: &[&str],
    want_kind: &str,
) -> Result<(), DecodeError> {
    if kind != want_kind {
        return Err(DecodeError::WrongKind {
            expected: want_kind.into(),
            got: kind.into(),
        });
    }
    if !want_api_versions.contains(&api_version) {
        return Err(DecodeError::WrongApiVersion {
            kind: kind.into(),
            expected: want_api_versions[0].into(),
            got: api_version.into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManagedCluster;

    #[test]
    fn unknown_field_is_named() {
        let e = decode::<ManagedCluster>(
            br#"{"apiVersion":"cattery.dev/v1","kind":"ManagedCluster","metadata":{"name":"a","nmae":"x"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nmae"), "{e}");
        let e = decode::<ManagedCluster>(
            b"apiVersion: cattery.dev/v1\nkind: ManagedCluster\nmetadata:\n  name: a\nspek: {}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("spek"), "{e}");
    }

    #[test]
    fn yaml_and_json_agree() {
        let a: ManagedCluster = decode(
            br#"{"apiVersion":"cattery.dev/v1","kind":"ManagedCluster","metadata":{"name":"a","labels":{"env":"prod"}}}"#,
        )
        .unwrap();
        let b: ManagedCluster = decode(
            b"apiVersion: cattery.dev/v1\nkind: ManagedCluster\nmetadata:\n  name: a\n  labels:\n    env: prod\n",
        )
        .unwrap();
        assert_eq!(a, b);
    }
}
