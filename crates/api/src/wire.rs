//! Decoding request bodies and files as JSON or YAML with errors that name the problem.
//!
//! Every object is decoded strictly: a field the type does not have is an error naming it
//! and where it is (`unknown field "resourceName" in rules[0]`), never silently dropped. A
//! dropped field can change meaning — a rule whose misspelt `resourceNames` vanished grants
//! every object — so this holds for types we do not own (`k8s-openapi`'s RBAC objects,
//! which ignore unknown fields) as much as for ours (`deny_unknown_fields`).

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A body or file that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// JSON syntax error (the message gives the position).
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// YAML syntax error (the message gives the position).
    #[error("invalid YAML: {0}")]
    Yaml(String),
    /// A field the object does not have.
    #[error("unknown field {field:?}{}{}", in_path(.path), hint(.expected))]
    UnknownField {
        /// Where the field is, e.g. `rules[0]`; empty at the top level.
        path: String,
        /// The field's name as written.
        field: String,
        /// What would have been accepted there, when known (`expected one of …`).
        expected: Option<String>,
    },
    /// A value of the wrong type, a missing required field and the like.
    #[error("{}{message}", at_path(.path))]
    Schema {
        /// Where the problem is, e.g. `spec.groups[1]`; empty at the top level.
        path: String,
        /// What is wrong there.
        message: String,
    },
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

fn in_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" in {path}")
    }
}

fn at_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

fn hint(expected: &Option<String>) -> String {
    expected
        .as_deref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default()
}

/// Parses `bytes` as JSON when it looks like JSON (first non-blank byte `{` or `[`),
/// otherwise as YAML. YAML is a superset of JSON, but serde_json gives sharper errors.
pub fn parse(bytes: &[u8]) -> Result<Value, DecodeError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'[')) {
        Ok(serde_json::from_slice(bytes)?)
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| DecodeError::Yaml(format!("body is not UTF-8: {e}")))?;
        serde_saphyr::from_str(text).map_err(|e| DecodeError::Yaml(e.to_string()))
    }
}

/// Decodes a JSON or YAML document (see [`parse`]) strictly into `T` (see [`from_value`]).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    from_value(parse(bytes)?)
}

/// Converts a parsed document into `T`, refusing every field `T` does not have (also
/// where `T` itself would ignore it) and naming the path of any error.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    let mut unknown: Option<(String, String)> = None;
    let mut note = |p: serde_ignored::Path<'_>| {
        if unknown.is_none() {
            unknown = Some(split_ignored(&p));
        }
    };
    let res: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut note));
    let out = res.map_err(|e| path_error(&e))?;
    match unknown {
        Some((path, field)) => Err(DecodeError::UnknownField {
            path,
            field,
            expected: None,
        }),
        None => Ok(out),
    }
}

/// `(path of the enclosing object, field name)` of an ignored field.
fn split_ignored(p: &serde_ignored::Path<'_>) -> (String, String) {
    fn render(p: &serde_ignored::Path<'_>, out: &mut String) {
        use serde_ignored::Path;
        match p {
            Path::Root => {}
            Path::Seq { parent, index } => {
                render(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            Path::Map { parent, key } => {
                render(parent, out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => render(parent, out),
        }
    }
    let mut path = String::new();
    match p {
        serde_ignored::Path::Map { parent, key } => {
            render(parent, &mut path);
            (path, key.clone())
        }
        other => {
            render(other, &mut path);
            (path, String::new())
        }
    }
}

/// Renders a path the way the messages write it: `rules[0].verbs`.
fn render_path<'a>(segments: impl Iterator<Item = &'a serde_path_to_error::Segment>) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&other.to_string());
            }
        }
    }
    out
}

/// Turns a serde error with its path into a [`DecodeError`]; serde's own unknown-field
/// error (from `deny_unknown_fields`) becomes [`DecodeError::UnknownField`], so both kinds
/// of type report a stray field the same way. Public for decoders of other formats (query
/// strings).
pub fn path_error<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> DecodeError {
    let path = e.path();
    let message = e.inner().to_string();
    let segments: Vec<&serde_path_to_error::Segment> = path.iter().collect();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, after)) = rest.split_once('`')
        && let Some(serde_path_to_error::Segment::Map { key }) = segments.last()
        && key == field
    {
        let expected = after.strip_prefix(", ").map(str::to_string);
        return DecodeError::UnknownField {
            path: render_path(segments[..segments.len() - 1].iter().copied()),
            field: field.to_string(),
            expected,
        };
    }
    DecodeError::Schema {
        path: render_path(segments.iter().copied()),
        message,
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

    /// A type that, like k8s-openapi's, ignores fields it does not know.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Lenient {
        rules: Vec<Rule>,
        meta: Option<std::collections::BTreeMap<String, String>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    #[serde(rename_all = "camelCase")]
    struct Rule {
        verbs: Vec<String>,
        resource_names: Option<Vec<String>>,
    }

    #[test]
    fn fields_a_lenient_type_would_drop_are_refused_with_their_path() {
        let e = decode::<Lenient>(b"rules:\n- verbs: [get]\n- verbs: [get]\n  resourceName: [a]\n")
            .unwrap_err();
        assert_eq!(e.to_string(), r#"unknown field "resourceName" in rules[1]"#);
        let e = decode::<Lenient>(br#"{"rules":[],"extra":1}"#).unwrap_err();
        assert_eq!(e.to_string(), r#"unknown field "extra""#);
        assert!(
            decode::<Lenient>(br#"{"rules":[{"verbs":["get"],"resourceNames":["a"]}]}"#).is_ok()
        );
    }

    #[test]
    fn strict_types_name_the_path_too() {
        let e = decode::<ManagedCluster>(
            br#"{"apiVersion":"cattery.dev/v1","kind":"ManagedCluster","metadata":{"name":"a","nmae":"x"}}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(r#"unknown field "nmae" in metadata (expected one of"#),
            "{e}"
        );
        let e = decode::<Lenient>(br#"{"rules":[{"verbs":"get"}]}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("rules[0].verbs: invalid type"),
            "{e}"
        );
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
