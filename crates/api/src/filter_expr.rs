//! The `--where` filter language of `cattery logs` (`action=deny`, `bytes_in>=100`,
//! `source_ip=10.0.0.0/8` …), translated to the log search API's `filters` objects.
//!
//! It lives here, not in the CLI, because the Manager UI offers the same filters and must
//! mean exactly the same thing by them.

use serde_json::{Value, json};

/// Why a filter expression could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FilterExprError {
    /// What is wrong, naming the offending part of the expression.
    pub message: String,
}

fn err(message: impl Into<String>) -> FilterExprError {
    FilterExprError {
        message: message.into(),
    }
}

/// Turns one expression into a search filter: `FIELD=VALUE`, `FIELD!=VALUE`,
/// `FIELD=A,B` (any of), `FIELD=PREFIX*`, `IPFIELD=CIDR`, `FIELD>=N`, `FIELD>N`, `FIELD<=N`,
/// `FIELD<N`.
pub fn parse_filter(expr: &str) -> Result<Value, FilterExprError> {
    for (op, key) in [(">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt")] {
        if let Some((f, v)) = expr.split_once(op)
            && !f.contains('=')
        {
            let n: f64 = v
                .trim()
                .parse()
                .map_err(|_| err(format!("{v:?} is not a number")))?;
            return Ok(json!({"field": f.trim(), "range": {key: n}}));
        }
    }
    if let Some((f, v)) = expr.split_once("!=") {
        return Ok(json!({"field": f.trim(), "notEquals": v}));
    }
    let (f, v) = expr
        .split_once('=')
        .ok_or_else(|| err("use FIELD=VALUE, FIELD!=VALUE, FIELD>=N …"))?;
    let f = f.trim();
    if f.is_empty() {
        return Err(err("empty field name"));
    }
    Ok(if v.contains(',') {
        json!({"field": f, "in": v.split(',').collect::<Vec<_>>()})
    } else if let Some(p) = v.strip_suffix('*') {
        json!({"field": f, "prefix": p})
    } else if v.contains('/')
        && v.split('/')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok())
    {
        json!({"field": f, "cidr": v})
    } else {
        json!({"field": f, "equals": v})
    })
}

/// Whether the expression is a plain `FIELD=VALUE` equality, the only kind the live tail
/// endpoint accepts (as `filter=FIELD=VALUE`).
pub fn is_plain_equality(expr: &str) -> bool {
    parse_filter(expr).is_ok_and(|v| v.get("equals").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_expressions() {
        assert_eq!(
            parse_filter("action=deny").unwrap(),
            json!({"field":"action","equals":"deny"})
        );
        assert_eq!(
            parse_filter("action!=deny").unwrap(),
            json!({"field":"action","notEquals":"deny"})
        );
        assert_eq!(
            parse_filter("source_namespace=a,b").unwrap(),
            json!({"field":"source_namespace","in":["a","b"]})
        );
        assert_eq!(
            parse_filter("dest_name=web-*").unwrap(),
            json!({"field":"dest_name","prefix":"web-"})
        );
        assert_eq!(
            parse_filter("source_ip=10.0.0.0/8").unwrap(),
            json!({"field":"source_ip","cidr":"10.0.0.0/8"})
        );
        assert_eq!(
            parse_filter("bytes_in>=100").unwrap(),
            json!({"field":"bytes_in","range":{"gte":100.0}})
        );
        assert!(parse_filter("nonsense").is_err());
        assert!(
            parse_filter("bytes_in>=lots")
                .unwrap_err()
                .message
                .contains("\"lots\" is not a number")
        );
        assert!(is_plain_equality("action=deny"));
        assert!(!is_plain_equality("action!=deny"));
        assert!(!is_plain_equality("a=b*"));
    }
}
