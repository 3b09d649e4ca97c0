//! Label and field selectors (`?labelSelector=`, `?fieldSelector=`).
//!
//! Label selectors follow the Kubernetes grammar: `k=v`, `k==v`, `k!=v`,
//! `k in (a,b)`, `k notin (a,b)`, `k` (exists) and `!k` (does not exist),
//! joined by commas. Field selectors support `=`, `==` and `!=` on any dotted
//! path of the object (a real apiserver only allows a few fields per type;
//! the simulator is more permissive).

use serde_json::Value;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(key: &str, rest: &str, negate: bool) -> Result<Req, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected '(value,...)' after '{key}'"))?;
    let values = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    Ok(if negate {
        Req::NotIn(key.to_string(), values)
    } else {
        Req::In(key.to_string(), values)
    })
}

impl LabelSelector {
    /// Parses a selector string; the error names the offending requirement.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(k.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                parse_set(k.trim(), rest, true)?
            } else if let Some((k, rest)) = part.split_once(" in ") {
                parse_set(k.trim(), rest, false)?
            } else if part.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
                return Err(format!("unable to parse requirement: {part:?}"));
            } else {
                Req::Exists(part.into())
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the labels of `obj` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Req::NotIn(k, vs) => get(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector: `path=value` / `path!=value` terms, all required.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `metadata.name=foo,status.phase!=Running`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: {part:?}; expected field=value or field!=value"
                ));
            };
            terms.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether `obj` satisfies every term. Missing fields compare as "".
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let have = match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (have == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "shop", "labels": labels}, "status": {"phase": "Running"}})
    }

    #[test]
    fn equality_and_inequality() {
        let p = pod(json!({"app": "cart", "tier": "web"}));
        assert!(LabelSelector::parse("app=cart").unwrap().matches(&p));
        assert!(
            LabelSelector::parse("app==cart,tier=web")
                .unwrap()
                .matches(&p)
        );
        assert!(
            !LabelSelector::parse("app=cart,tier=db")
                .unwrap()
                .matches(&p)
        );
        assert!(LabelSelector::parse("app!=api").unwrap().matches(&p));
        assert!(!LabelSelector::parse("app!=cart").unwrap().matches(&p));
        assert!(LabelSelector::parse("").unwrap().matches(&p));
    }

    #[test]
    fn set_based() {
        let p = pod(json!({"app": "cart"}));
        assert!(
            LabelSelector::parse("app in (cart, frontend)")
                .unwrap()
                .matches(&p)
        );
        assert!(
            !LabelSelector::parse("app notin (cart,frontend)")
                .unwrap()
                .matches(&p)
        );
        assert!(LabelSelector::parse("app,!tier").unwrap().matches(&p));
        assert!(!LabelSelector::parse("tier").unwrap().matches(&p));
        assert!(
            LabelSelector::parse("tier notin (web)")
                .unwrap()
                .matches(&p)
        );
        assert!(LabelSelector::parse("app in (x),tier").unwrap() != LabelSelector::default());
        assert!(LabelSelector::parse("app in x").is_err());
        assert!(LabelSelector::parse("bad key").is_err());
    }

    #[test]
    fn field_selectors() {
        let p = pod(json!({}));
        assert!(FieldSelector::parse("metadata.name=p").unwrap().matches(&p));
        assert!(
            FieldSelector::parse("metadata.namespace=shop,status.phase=Running")
                .unwrap()
                .matches(&p)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=p")
                .unwrap()
                .matches(&p)
        );
        assert!(FieldSelector::parse("spec.nodeName=").unwrap().matches(&p));
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
