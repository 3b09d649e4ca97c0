//! Validation of object names, label keys and values, and annotation keys, by Kubernetes'
//! rules (`k8s.io/apimachinery/pkg/util/validation`), so that what the hub stores would also
//! be accepted by a kube-apiserver and by label selectors.

use std::collections::BTreeMap;

/// Why a name is not a valid DNS-1123 label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error(
        "name must not be empty (a DNS-1123 label: lowercase letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)"
    )]
    Empty,
    /// The name is longer than 63 characters.
    #[error("name {0:?} is {1} characters long; a DNS-1123 label has at most 63")]
    TooLong(String, usize),
    /// The name has a character outside `[a-z0-9-]`.
    #[error(
        "name {0:?} contains {1:?}; a DNS-1123 label may contain only lowercase letters, digits and '-'"
    )]
    BadChar(String, char),
    /// The name starts or ends with '-'.
    #[error("name {0:?} must start and end with a lowercase letter or digit (DNS-1123 label)")]
    BadEdge(String),
}

/// Checks that `name` is a DNS-1123 label (RFC 1123), the rule Kubernetes applies to
/// namespace names; cluster names follow it because they appear in URLs, certificate
/// common names and Kubernetes object names.
pub fn validate_dns1123_label(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 63 {
        return Err(NameError::TooLong(shorten(name), name.chars().count()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::BadChar(name.to_string(), c));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::BadEdge(name.to_string()));
    }
    Ok(())
}

/// Longest name part of a label key or annotation key, and longest label value.
const MAX_LABEL: usize = 63;
/// Longest prefix (a DNS-1123 subdomain) of a label or annotation key.
const MAX_PREFIX: usize = 253;
/// Largest total size of an object's annotations (keys plus values), as in Kubernetes.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Why a label or annotation was refused; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The key is not a qualified name.
    #[error("{what} key {key:?}: {why}")]
    Key {
        /// `label` or `annotation`.
        what: &'static str,
        /// The key as given.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// The label value is not a valid label value.
    #[error("label {key:?}: value {value:?} {why}")]
    Value {
        /// The label's key.
        key: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// The annotations are larger than [`MAX_ANNOTATIONS_BYTES`] in total.
    #[error("annotations are {0} bytes in total; at most {MAX_ANNOTATIONS_BYTES} are allowed")]
    AnnotationsTooLarge(usize),
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters: the name part of a
/// key, and a non-empty label value.
fn check_label_name(s: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if s.len() > MAX_LABEL {
        return Err(format!(
            "is {} characters long; at most {MAX_LABEL} are allowed",
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|c| !(alnum(*c) || "-_.".contains(*c))) {
        return Err(format!(
            "contains {c:?}; only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    if !s.starts_with(alnum) || !s.ends_with(alnum) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub(crate) fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > MAX_PREFIX {
        return Err(format!(
            "is {} characters long; at most {MAX_PREFIX} are allowed",
            s.len()
        ));
    }
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    if !s.split('.').all(part_ok) {
        return Err(
            "must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', each \
             dot-separated part starting and ending with a letter or digit)"
                .into(),
        );
    }
    Ok(())
}

/// Checks a label or annotation key: an optional DNS-1123 subdomain prefix and `/`, then a
/// name of at most 63 characters (`[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`).
pub fn validate_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err("the prefix before '/' must not be empty".into());
        }
        check_dns1123_subdomain(p).map_err(|e| format!("prefix {p:?} {e}"))?;
    }
    if name.is_empty() {
        return Err("the name part must not be empty".into());
    }
    check_label_name(name).map_err(|e| match prefix {
        Some(_) => format!("name part {name:?} {e}"),
        None => e,
    })
}

/// Checks a label value: empty, or at most 63 characters of
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_label_name(value)
}

/// Checks every key and value of an object's labels.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), LabelError> {
    for (k, v) in labels {
        validate_qualified_name(k).map_err(|why| LabelError::Key {
            what: "label",
            key: k.clone(),
            why,
        })?;
        validate_label_value(v).map_err(|why| LabelError::Value {
            key: k.clone(),
            value: v.clone(),
            why,
        })?;
    }
    Ok(())
}

/// Checks every key of an object's annotations and their total size (values are free text).
pub fn validate_annotations(annotations: &BTreeMap<String, String>) -> Result<(), LabelError> {
    let mut total = 0usize;
    for (k, v) in annotations {
        validate_qualified_name(k).map_err(|why| LabelError::Key {
            what: "annotation",
            key: k.clone(),
            why,
        })?;
        total += k.len() + v.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        return Err(LabelError::AnnotationsTooLarge(total));
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_labels() {
        for n in ["a", "prod-eu-1", "0abc", &"a".repeat(63)] {
            assert_eq!(validate_dns1123_label(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn rejects_non_labels_with_reason() {
        assert_eq!(validate_dns1123_label(""), Err(NameError::Empty));
        assert!(matches!(
            validate_dns1123_label(&"a".repeat(64)),
            Err(NameError::TooLong(_, 64))
        ));
        assert!(matches!(
            validate_dns1123_label("Prod"),
            Err(NameError::BadChar(_, 'P'))
        ));
        assert!(matches!(
            validate_dns1123_label("a.b"),
            Err(NameError::BadChar(_, '.'))
        ));
        assert!(matches!(
            validate_dns1123_label("a/b"),
            Err(NameError::BadChar(_, '/'))
        ));
        assert!(matches!(
            validate_dns1123_label("-a"),
            Err(NameError::BadEdge(_))
        ));
        assert!(matches!(
            validate_dns1123_label("a-"),
            Err(NameError::BadEdge(_))
        ));
        let msg = validate_dns1123_label("UPPER").unwrap_err().to_string();
        assert!(msg.contains("DNS-1123"), "{msg}");
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        for k in [
            "env",
            "app.kubernetes.io/name",
            "cattery.dev/builtin",
            "A_b.c-9",
            &"a".repeat(63),
            &format!("{}/x", "a".repeat(253)),
        ] {
            assert_eq!(validate_qualified_name(k), Ok(()), "{k}");
        }
        for k in [
            "",
            "/x",
            "a/",
            "a/b/c",
            "-a",
            "a-",
            "a b",
            "Example.com/x",
            "exa_mple.com/x",
            "..com/x",
            &"a".repeat(64),
            &format!("{}/x", "a".repeat(254)),
        ] {
            assert!(validate_qualified_name(k).is_err(), "{k:?}");
        }
        for v in ["", "prod", "v1.2_3-x", &"a".repeat(63)] {
            assert_eq!(validate_label_value(v), Ok(()), "{v}");
        }
        for v in ["-prod", "prod.", "a b", "x/y", &"a".repeat(64), "é"] {
            assert!(validate_label_value(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn label_errors_name_the_label() {
        let labels = BTreeMap::from([("env".to_string(), "bad value".to_string())]);
        let e = validate_labels(&labels).unwrap_err().to_string();
        assert!(
            e.starts_with(r#"label "env": value "bad value" contains ' '"#),
            "{e}"
        );
        let labels = BTreeMap::from([("Bad Key".to_string(), String::new())]);
        let e = validate_labels(&labels).unwrap_err().to_string();
        assert!(e.starts_with(r#"label key "Bad Key": contains ' '"#), "{e}");
        let ann = BTreeMap::from([("x/y/z".to_string(), "any text at all".to_string())]);
        let e = validate_annotations(&ann).unwrap_err().to_string();
        assert!(e.starts_with(r#"annotation key "x/y/z""#), "{e}");
        let ann = BTreeMap::from([("note".to_string(), "any text: at all".to_string())]);
        assert_eq!(validate_annotations(&ann), Ok(()));
        let big = BTreeMap::from([("k".to_string(), "x".repeat(MAX_ANNOTATIONS_BYTES))]);
        assert!(matches!(
            validate_annotations(&big),
            Err(LabelError::AnnotationsTooLarge(_))
        ));
    }
}
