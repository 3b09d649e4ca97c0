//! Label and field selectors (`?labelSelector=`, `?fieldSelector=`, `kubectl -l`).
//!
//! No maintained crate parses Kubernetes selector strings (kube-core 5 has selector
//! *types* that print themselves, but no parser), so this is a port of apimachinery's
//! `labels.Parse`: the same lexer (identifiers end at whitespace or one of `=!(),<>`),
//! the same grammar and the same validation:
//!
//! - `k=v`, `k==v`, `k!=v` (absent keys match `!=`), `k in (a,b)`, `k notin (a,b)`
//!   (absent keys match `notin`), `k` (exists), `!k` (does not exist), `k>n`, `k<n`
//!   (integers), requirements joined by commas and all required;
//! - keys are qualified names (`[prefix/]name`, the prefix a DNS subdomain), values are
//!   label values (at most 63 characters, alphanumeric at both ends, `-_.` inside, or
//!   empty); `in ()` is the set `{""}`, as in Kubernetes.
//!
//! Field selectors support `=`, `==` and `!=` on any dotted path of the object (a real
//! apiserver only allows a few fields per type; the store is more permissive), with
//! apimachinery's `\,` `\=` `\\` escapes in values.

use serde_json::Value;

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    NotEquals,
    Equals,
    DoubleEquals,
    Gt,
    Lt,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    fn literal(&self) -> String {
        match self {
            Token::Ident(s) => s.clone(),
            Token::Not => "!".into(),
            Token::NotEquals => "!=".into(),
            Token::Equals => "=".into(),
            Token::DoubleEquals => "==".into(),
            Token::Gt => ">".into(),
            Token::Lt => "<".into(),
            Token::In => "in".into(),
            Token::NotIn => "notin".into(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::Comma => ",".into(),
            Token::End => "".into(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn special(s: &str) -> Option<Token> {
    Some(match s {
        "!" => Token::Not,
        "!=" => Token::NotEquals,
        "=" => Token::Equals,
        "==" => Token::DoubleEquals,
        ">" => Token::Gt,
        "<" => Token::Lt,
        "(" => Token::Open,
        ")" => Token::Close,
        "," => Token::Comma,
        _ => return None,
    })
}

/// apimachinery's selector lexer.
fn lex(s: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            i += 1;
        } else if is_special(c) {
            // Longest run of special characters that is a token.
            let mut best: Option<(Token, usize)> = None;
            let mut j = i;
            while j < chars.len() && is_special(chars[j]) {
                let buf: String = chars[i..=j].iter().collect();
                match special(&buf) {
                    Some(t) => best = Some((t, j + 1)),
                    None if best.is_some() => break,
                    None => {}
                }
                j += 1;
            }
            let (tok, next) = best.ok_or_else(|| {
                let buf: String = chars[i..j].iter().collect();
                format!("error expected: keyword found '{buf}'")
            })?;
            out.push(tok);
            i = next;
        } else {
            let start = i;
            while i < chars.len()
                && !matches!(chars[i], ' ' | '\t' | '\r' | '\n')
                && !is_special(chars[i])
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Ident(word),
            });
        }
    }
    out.push(Token::End);
    Ok(out)
}

/// Whether the token may be read as an identifier where values are expected
/// (`in`/`notin` are keywords only in operator position).
fn as_value(t: &Token) -> Option<String> {
    match t {
        Token::Ident(s) => Some(s.clone()),
        Token::In | Token::NotIn => Some(t.literal()),
        _ => None,
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut tok = self.next();
        let negated = tok == Token::Not;
        if negated {
            tok = self.next();
        }
        let key = as_value(&tok)
            .ok_or_else(|| format!("found '{}', expected: identifier", tok.literal()))?;
        validate_key(&key)?;
        if negated {
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
                values: vec![],
            });
        }
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(Requirement {
                key,
                op: Op::Exists,
                values: vec![],
            });
        }
        let (op, values) = match self.next() {
            Token::In => (Op::In, self.set()?),
            Token::NotIn => (Op::NotIn, self.set()?),
            Token::Equals | Token::DoubleEquals => (Op::In, vec![self.exact()?]),
            Token::NotEquals => (Op::NotIn, vec![self.exact()?]),
            Token::Gt => (Op::Gt, vec![self.exact()?]),
            Token::Lt => (Op::Lt, vec![self.exact()?]),
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                ));
            }
        };
        for v in &values {
            validate_value(v)?;
        }
        if matches!(op, Op::Gt | Op::Lt) && values[0].parse::<i64>().is_err() {
            return Err(format!(
                "for 'Gt', 'Lt' operators, the value must be an integer, got {:?}",
                values[0]
            ));
        }
        Ok(Requirement { key, op, values })
    }

    fn exact(&mut self) -> Result<String, String> {
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(String::new());
        }
        let t = self.next();
        as_value(&t).ok_or_else(|| format!("found '{}', expected: identifier", t.literal()))
    }

    fn set(&mut self) -> Result<Vec<String>, String> {
        let t = self.next();
        if t != Token::Open {
            return Err(format!("found '{}', expected: '('", t.literal()));
        }
        let mut values: Vec<String> = Vec::new();
        let push = |values: &mut Vec<String>, v: String| {
            if !values.contains(&v) {
                values.push(v);
            }
        };
        if *self.peek() == Token::Close {
            self.next();
            return Ok(vec![String::new()]);
        }
        loop {
            let t = self.next();
            if let Some(v) = as_value(&t) {
                push(&mut values, v);
                match self.peek() {
                    Token::Comma => continue,
                    Token::Close => {
                        self.next();
                        return Ok(values);
                    }
                    other => {
                        return Err(format!("found '{}', expected: ',' or ')'", other.literal()));
                    }
                }
            } else if t == Token::Comma {
                if values.is_empty() {
                    push(&mut values, String::new());
                }
                match self.peek() {
                    Token::Close => {
                        self.next();
                        push(&mut values, String::new());
                        return Ok(values);
                    }
                    Token::Comma => {
                        self.next();
                        push(&mut values, String::new());
                    }
                    _ => {}
                }
            } else {
                return Err(format!(
                    "found '{}', expected: ',', or identifier",
                    t.literal()
                ));
            }
        }
    }
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn name_part_error(s: &str) -> Option<String> {
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let ok = s.chars().next().is_some_and(is_alnum)
        && s.chars().last().is_some_and(is_alnum)
        && s.chars()
            .all(|c| is_alnum(c) || matches!(c, '-' | '_' | '.'));
    (!ok).then(|| {
        "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into()
    })
}

fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let dns_ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            });
        if !dns_ok {
            return Err(format!(
                "invalid label key {key:?}: prefix part must be a lowercase RFC 1123 subdomain"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!(
            "invalid label key {key:?}: name part must be non-empty"
        ));
    }
    match name_part_error(name) {
        Some(e) => Err(format!("invalid label key {key:?}: name part {e}")),
        None => Ok(()),
    }
}

fn validate_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    match name_part_error(v) {
        Some(e) => Err(format!("invalid label value {v:?}: {e}")),
        None => Ok(()),
    }
}

impl LabelSelector {
    /// Parses a selector string; the error names the offending token or requirement.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Parser {
            tokens: lex(s)?,
            pos: 0,
        };
        let mut reqs = Vec::new();
        loop {
            match p.peek() {
                Token::End => return Ok(LabelSelector(reqs)),
                t if as_value(t).is_some() || *t == Token::Not => {
                    reqs.push(p.requirement()?);
                    match p.next() {
                        Token::End => return Ok(LabelSelector(reqs)),
                        Token::Comma => {
                            let t = p.peek();
                            if as_value(t).is_none() && *t != Token::Not {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ));
                            }
                        }
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            ));
                        }
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    ));
                }
            }
        }
    }

    /// A selector from the structured form of a Kubernetes `LabelSelector`
    /// (`metav1.LabelSelectorAsSelector`): every `matchLabels` pair and every
    /// `matchExpressions` entry `(key, operator, values)` must hold, with operators `In`,
    /// `NotIn` (non-empty values), `Exists` and `DoesNotExist` (no values). Keys and values
    /// are validated as [`LabelSelector::parse`] validates them.
    pub fn from_parts<'a>(
        match_labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        match_expressions: impl IntoIterator<Item = (&'a str, &'a str, &'a [String])>,
    ) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for (key, value) in match_labels {
            validate_key(key)?;
            validate_value(value)?;
            reqs.push(Requirement {
                key: key.to_string(),
                op: Op::In,
                values: vec![value.to_string()],
            });
        }
        for (key, operator, values) in match_expressions {
            validate_key(key)?;
            let op = match operator {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            match (op, values.is_empty()) {
                (Op::In | Op::NotIn, true) => {
                    return Err(format!(
                        "values must be given for operator {operator} on {key:?}"
                    ));
                }
                (Op::Exists | Op::DoesNotExist, false) => {
                    return Err(format!(
                        "values may not be given for operator {operator} on {key:?}"
                    ));
                }
                _ => {}
            }
            for v in values {
                validate_value(v)?;
            }
            reqs.push(Requirement {
                key: key.to_string(),
                op,
                values: values.to_vec(),
            });
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the selector is empty (selects everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the labels of `obj` (`metadata.labels`) satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.matches_labels(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    /// Whether a label set, given as a lookup function, satisfies every requirement.
    pub fn matches_labels<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| {
            let have = get(&r.key);
            match r.op {
                Op::In => have.is_some_and(|l| r.values.iter().any(|v| v == l)),
                Op::NotIn => have.is_none_or(|l| r.values.iter().all(|v| v != l)),
                Op::Exists => have.is_some(),
                Op::DoesNotExist => have.is_none(),
                Op::Gt | Op::Lt => {
                    let (Some(have), Ok(want)) = (
                        have.and_then(|h| h.parse::<i64>().ok()),
                        r.values[0].parse::<i64>(),
                    ) else {
                        return false;
                    };
                    if r.op == Op::Gt {
                        have > want
                    } else {
                        have < want
                    }
                }
            }
        })
    }
}

/// A parsed field selector: `path=value` / `path!=value` terms, all required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Splits on unescaped `sep`, keeping escapes.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let (mut parts, mut cur, mut escaped) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if escaped {
        cur.push('\\');
    }
    parts.push(cur);
    parts
}

fn unescape(s: &str) -> Result<String, String> {
    let (mut out, mut chars) = (String::new(), s.chars());
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence \\{e} in {s:?}")),
                None => return Err(format!("unterminated escape sequence in {s:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses `metadata.name=foo,status.phase!=Running`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in split_unescaped(s, ',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
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
            terms.push((path.trim().to_string(), equal, unescape(value.trim())?));
        }
        Ok(FieldSelector(terms))
    }

    /// Adds a `path=value` term.
    pub fn and_equals(mut self, path: &str, value: &str) -> Self {
        self.0.push((path.to_string(), true, value.to_string()));
        self
    }

    /// The field paths the terms name, so a server can refuse the ones it cannot select
    /// on (as kube-apiserver answers "field label not supported").
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(p, _, _)| p.as_str())
    }

    /// Removes the terms on `path` and returns them as a selector of their own: for a
    /// field that is not in the stored object (a server fills it in when answering), so it
    /// is matched against what the server fills in instead.
    pub fn split_off(&mut self, path: &str) -> FieldSelector {
        let (on, rest) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(p, _, _)| p == path);
        self.0 = rest;
        FieldSelector(on)
    }

    /// Whether the selector has no terms (selects everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn equality_and_inequality() {
        let p = pod(json!({"app": "cart", "tier": "web"}));
        assert!(sel("app=cart").matches(&p));
        assert!(sel("app==cart,tier=web").matches(&p));
        assert!(sel(" app = cart , tier == web ").matches(&p));
        assert!(!sel("app=cart,tier=db").matches(&p));
        assert!(sel("app!=api").matches(&p));
        assert!(!sel("app!=cart").matches(&p));
        assert!(sel("missing!=x").matches(&p), "absent keys match !=");
        assert!(sel("").matches(&p));
        assert!(sel("").is_empty());
        assert!(!sel("app=").matches(&p), "empty value is a value");
        assert!(sel("other=").matches(&pod(json!({"other": ""}))));
    }

    #[test]
    fn set_based() {
        let p = pod(json!({"app": "cart"}));
        assert!(sel("app in (cart, frontend)").matches(&p));
        assert!(sel("app in(cart)").matches(&p));
        assert!(!sel("app notin (cart,frontend)").matches(&p));
        assert!(sel("app,!tier").matches(&p));
        assert!(!sel("tier").matches(&p));
        assert!(
            sel("tier notin (web)").matches(&p),
            "absent keys match notin"
        );
        assert!(
            sel("in in (x)").matches(&pod(json!({"in": "x"}))),
            "keywords are keys where keys are expected"
        );
        assert!(
            sel("x in ()").matches(&pod(json!({"x": ""}))),
            "() is the set {{\"\"}}"
        );
        assert!(sel("example.com/role in (a,,b)").matches(&pod(json!({"example.com/role": ""}))));
    }

    #[test]
    fn numeric_comparisons() {
        let p = pod(json!({"replicas": "3", "name": "x"}));
        assert!(sel("replicas>2").matches(&p));
        assert!(!sel("replicas<3").matches(&p));
        assert!(
            !sel("name>1").matches(&p),
            "non-integer labels never compare"
        );
        assert!(LabelSelector::parse("replicas>two").is_err());
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let err = |s: &str| LabelSelector::parse(s).unwrap_err();
        assert!(
            err("app in x").contains("expected: '('"),
            "{}",
            err("app in x")
        );
        assert!(
            err("bad key").contains("expected: in, notin"),
            "{}",
            err("bad key")
        );
        assert!(err("app=a,").contains("identifier after ','"));
        assert!(err("!app=x").contains("',' or 'end of string'"));
        assert!(err("app in (a b)").contains("',' or ')'"));
        assert!(err("=x").contains("expected: !, identifier"));
        assert!(err("-app=x").contains("invalid label key"));
        assert!(err("Example.com/app=x").contains("prefix"));
        assert!(err("app=-x").contains("invalid label value"));
        assert!(err(&format!("app={}", "a".repeat(64))).contains("63"));
        assert!(err("app=<=").contains("identifier"));
    }

    #[test]
    fn structured_selectors_match_like_their_string_form() {
        let p = pod(json!({"app": "cart", "tier": "web"}));
        let vals = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (web, cart_lb) = (vals(&["web"]), vals(&["cart", "lb"]));
        let s =
            LabelSelector::from_parts([("app", "cart")], [("tier", "In", web.as_slice())]).unwrap();
        assert_eq!(s, sel("app=cart,tier in (web)"));
        assert!(s.matches(&p));
        let s = LabelSelector::from_parts([], [("app", "NotIn", cart_lb.as_slice())]).unwrap();
        assert!(!s.matches(&p));
        let s = LabelSelector::from_parts([], [("zone", "DoesNotExist", &[][..])]).unwrap();
        assert!(s.matches(&p));
        assert!(LabelSelector::from_parts([], []).unwrap().is_empty());
        let err = |r: Result<LabelSelector, String>| r.unwrap_err();
        assert!(err(LabelSelector::from_parts([], [("a", "Equals", &[][..])])).contains("Equals"));
        assert!(err(LabelSelector::from_parts([], [("a", "In", &[][..])])).contains("values"));
        assert!(
            err(LabelSelector::from_parts(
                [],
                [("a", "Exists", web.as_slice())]
            ))
            .contains("values")
        );
        assert!(err(LabelSelector::from_parts([("-a", "x")], [])).contains("invalid label key"));
        assert!(err(LabelSelector::from_parts([("a", "x y")], [])).contains("invalid label value"));
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
        let odd = json!({"metadata": {"name": "a,b=c"}});
        assert!(
            FieldSelector::parse(r"metadata.name=a\,b\=c")
                .unwrap()
                .matches(&odd)
        );
        assert!(FieldSelector::parse(r"metadata.name=a\x").is_err());
        assert!(
            FieldSelector::default()
                .and_equals("metadata.name", "p")
                .matches(&p)
        );
        let mut both = FieldSelector::parse("metadata.name=p,status.connected!=true").unwrap();
        let live = both.split_off("status.connected");
        assert_eq!(both.paths().collect::<Vec<_>>(), vec!["metadata.name"]);
        assert_eq!(live.paths().collect::<Vec<_>>(), vec!["status.connected"]);
        assert!(live.matches(&json!({"status": {"connected": "false"}})));
        assert!(!live.matches(&json!({"status": {"connected": "true"}})));
        assert!(both.split_off("spec.x").is_empty());
    }
}
