//! Validation of object names.

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
}
