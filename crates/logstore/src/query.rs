//! Filters, time range, clusters and free text → one tantivy query; and [`matches`], the same
//! semantics evaluated on a JSON record (for the live tail, which sees records before they are
//! stored). The tests check the two agree on every filter kind.

use std::net::Ipv6Addr;
use std::ops::Bound;
use std::sync::OnceLock;

use cattery_api::logs::{FieldKind, LogType};
use serde_json::Value;
use tantivy::query::doc_predicate_query::DocPredicateQuery;
use tantivy::query::{AllQuery, BooleanQuery, EmptyQuery, Occur, Query, RangeQuery, TermSetQuery};
use tantivy::tokenizer::{TextAnalyzer, TokenizerManager};
use tantivy::{DateTime, Term};

use crate::LogStoreError;
use crate::request::{
    ALL_CLUSTERS, Cond, Filter, RangeBounds, SearchRequest, parse_long, parse_time_ms,
};
use crate::schema::{
    FieldSpec, Kind, TypeSchema, ip_value, keyword_value, long_value, time_value_ms, values_at,
};
use crate::text::WordQuery;

/// One clause of a boolean query.
type Clause = (Occur, Box<dyn Query>);

/// Builds the query for a request (everything but sort, paging and aggregations).
pub(crate) fn build(ts: &TypeSchema, req: &SearchRequest) -> Result<Box<dyn Query>, LogStoreError> {
    let mut clauses: Vec<Clause> = Vec::new();
    if req.clusters.is_empty() {
        clauses.push((Occur::Must, Box::new(EmptyQuery)));
    } else if req.clusters.iter().any(|c| c == ALL_CLUSTERS) {
        // No cluster restriction: the caller may read every cluster. A Must clause keeps
        // the query non-empty (a BooleanQuery with no positive clause matches nothing).
        clauses.push((Occur::Must, Box::new(AllQuery)));
    } else {
        let terms = req
            .clusters
            .iter()
            .map(|c| Term::from_field_text(ts.cluster, c));
        clauses.push((Occur::Must, Box::new(TermSetQuery::new(terms))));
    }
    if let Some(tr) = &req.time_range {
        let (from, to) = tr.resolve()?;
        if from.is_some() || to.is_some() {
            let date = |ms: i64| Term::from_field_date(ts.time, date_ms(ms));
            let lo = from.map_or(Bound::Unbounded, |f| Bound::Included(date(f)));
            let hi = to.map_or(Bound::Unbounded, |t| Bound::Excluded(date(t)));
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
        }
    }
    clauses.extend(filter_clauses(ts, &req.filters)?);
    if let Some(q) = &req.query {
        for word in tokens(q) {
            let word = WordQuery {
                word,
                all: ts.all,
                columns: ts.word_columns.clone(),
                ip_columns: ts.ip_columns.clone(),
            };
            clauses.push((Occur::Must, Box::new(DocPredicateQuery::from(word))));
        }
    }
    Ok(Box::new(BooleanQuery::new(clauses)))
}

/// Checks filters against a log type's fields, with the same errors a search gives
/// (the server uses it for the live tail's filters).
pub fn validate_filters(log_type: LogType, filters: &[Filter]) -> Result<(), LogStoreError> {
    filter_clauses(&crate::schema_of(log_type), filters).map(|_| ())
}

fn filter_clauses(ts: &TypeSchema, filters: &[Filter]) -> Result<Vec<Clause>, LogStoreError> {
    let mut clauses: Vec<Clause> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let at = format!("filters[{i}]");
        let spec = ts
            .lookup(&f.field)
            .ok_or_else(|| ts.unknown_field(&format!("{at}.field"), &f.field))?;
        let cond = f.cond(&at)?;
        let op_at = |op: &str| format!("{at}.{op}");
        match cond {
            Cond::AnyOf(values) => {
                let op = if f.equals.is_some() { "equals" } else { "in" };
                clauses.push((Occur::Must, any_of(spec, &values, &op_at(op))?));
            }
            Cond::Not(v) => {
                clauses.push((
                    Occur::MustNot,
                    any_of(spec, std::slice::from_ref(&v), &op_at("notEquals"))?,
                ));
                // A BooleanQuery of only MustNot clauses matches nothing; the cluster clause is
                // always there, but be explicit.
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            Cond::Prefix(p) => {
                if spec.kind != Kind::Keyword {
                    return Err(wrong_kind(spec, &op_at("prefix"), "prefix", "keyword"));
                }
                // Every string starting with `p` sorts in [p, successor of p); keyword
                // columns are fast fields, so tantivy answers this from the column's dictionary.
                let t = |s: &str| Term::from_field_text(spec.field, s);
                let hi = prefix_successor(&p).map_or(Bound::Unbounded, |s| Bound::Excluded(t(&s)));
                clauses.push((
                    Occur::Must,
                    Box::new(RangeQuery::new(Bound::Included(t(&p)), hi)),
                ));
            }
            Cond::Cidr(lo, hi) => {
                if spec.kind != Kind::Ip {
                    return Err(wrong_kind(spec, &op_at("cidr"), "cidr", "IP address"));
                }
                let t = |ip: Ipv6Addr| Term::from_field_ip_addr(spec.field, ip);
                clauses.push((
                    Occur::Must,
                    Box::new(RangeQuery::new(
                        Bound::Included(t(lo)),
                        Bound::Included(t(hi)),
                    )),
                ));
            }
            Cond::Range(r) => {
                let (lo, hi) = range_bounds(spec, &r, &op_at("range"))?;
                clauses.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
            }
        }
    }
    Ok(clauses)
}

fn wrong_kind(spec: &FieldSpec, at: &str, op: &str, needs: &str) -> LogStoreError {
    LogStoreError::bad(
        at,
        format!(
            "{op} needs a {needs} field; {} is a {} field",
            spec.name,
            spec.kind.describe()
        ),
    )
}

fn any_of(spec: &FieldSpec, values: &[Value], at: &str) -> Result<Box<dyn Query>, LogStoreError> {
    let field = spec.field;
    Ok(match spec.kind {
        Kind::Keyword if spec.indexed => {
            Box::new(TermSetQuery::new(values.iter().filter_map(|v| {
                keyword_value(v).map(|s| Term::from_field_text(field, &s))
            })))
        }
        // A keyword column without an inverted index: each value is a one-point range of the
        // column's dictionary ordinals.
        Kind::Keyword => {
            let mut should: Vec<Clause> = values
                .iter()
                .filter_map(|v| keyword_value(v).map(|s| Term::from_field_text(field, &s)))
                .map(|t| -> Clause {
                    (
                        Occur::Should,
                        Box::new(RangeQuery::new(
                            Bound::Included(t.clone()),
                            Bound::Included(t),
                        )),
                    )
                })
                .collect();
            if should.len() == 1 {
                should
                    .pop()
                    .map_or_else(|| Box::new(EmptyQuery) as Box<dyn Query>, |(_, q)| q)
            } else {
                Box::new(BooleanQuery::new(should))
            }
        }
        // Numbers and addresses are columnar only, and dates are indexed at second
        // precision; the fast-field range path is exact, so equality is a one-point range.
        Kind::Long | Kind::Ip | Kind::Time => {
            let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for v in values {
                let t = match spec.kind {
                    Kind::Long => Term::from_field_i64(field, parse_long(v, at)?),
                    Kind::Ip => Term::from_field_ip_addr(
                        field,
                        ip_value(v).ok_or_else(|| {
                            LogStoreError::bad(at, format!("{v} is not an IP address"))
                        })?,
                    ),
                    _ => Term::from_field_date(field, date_ms(parse_time_ms(v, at)?)),
                };
                should.push((
                    Occur::Should,
                    Box::new(RangeQuery::new(
                        Bound::Included(t.clone()),
                        Bound::Included(t),
                    )),
                ));
            }
            Box::new(BooleanQuery::new(should))
        }
    })
}

fn range_bounds(
    spec: &FieldSpec,
    r: &RangeBounds,
    at: &str,
) -> Result<(Bound<Term>, Bound<Term>), LogStoreError> {
    if r.gt.is_some() && r.gte.is_some() {
        return Err(LogStoreError::bad(at, "give gt or gte, not both"));
    }
    if r.lt.is_some() && r.lte.is_some() {
        return Err(LogStoreError::bad(at, "give lt or lte, not both"));
    }
    let term = |v: &Value, op: &str| -> Result<Term, LogStoreError> {
        let at = format!("{at}.{op}");
        match spec.kind {
            Kind::Long => Ok(Term::from_field_i64(spec.field, parse_long(v, &at)?)),
            Kind::Time => Ok(Term::from_field_date(
                spec.field,
                date_ms(parse_time_ms(v, &at)?),
            )),
            _ => Err(wrong_kind(spec, &at, "range", "number or time")),
        }
    };
    let lo = match (&r.gt, &r.gte) {
        (Some(v), _) => Bound::Excluded(term(v, "gt")?),
        (_, Some(v)) => Bound::Included(term(v, "gte")?),
        _ => Bound::Unbounded,
    };
    let hi = match (&r.lt, &r.lte) {
        (Some(v), _) => Bound::Excluded(term(v, "lt")?),
        (_, Some(v)) => Bound::Included(term(v, "lte")?),
        _ => Bound::Unbounded,
    };
    Ok((lo, hi))
}

/// The smallest string greater than every string that starts with `p` (UTF-8 byte order is
/// code point order): `p` with its last incrementable character incremented and what follows
/// dropped. `None` when there is none (`p` is empty or all U+10FFFF).
fn prefix_successor(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn analyzer() -> TextAnalyzer {
    static A: OnceLock<TextAnalyzer> = OnceLock::new();
    A.get_or_init(|| {
        TokenizerManager::default()
            .get("default")
            .expect("tantivy has a default tokenizer")
    })
    .clone()
}

/// The words of a text as the `_all` field indexes them (lower-cased alphanumeric runs).
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// Whether `record` passes every filter and contains every word of `text`, with the same
/// semantics as a search: arrays match if an element does, `notEquals` matches records
/// without the field, IPs compare as addresses, times compare as instants. Invalid filters
/// match nothing (check them first with [`validate_filters`]).
pub fn matches(filters: &[Filter], text: Option<&str>, record: &Value) -> bool {
    let mut leaves = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let Ok(cond) = f.cond(&format!("filters[{i}]")) else {
            return false;
        };
        leaves.clear();
        values_at(record, &f.field, &mut leaves);
        let time = is_time_field(&f.field);
        let ok = match &cond {
            Cond::AnyOf(targets) => leaves
                .iter()
                .any(|v| targets.iter().any(|t| value_equals(v, t, time))),
            Cond::Not(t) => !leaves.iter().any(|v| value_equals(v, t, time)),
            Cond::Prefix(p) => leaves
                .iter()
                .any(|v| keyword_value(v).is_some_and(|s| s.starts_with(p.as_str()))),
            Cond::Cidr(lo, hi) => leaves
                .iter()
                .any(|v| ip_value(v).is_some_and(|ip| ip >= *lo && ip <= *hi)),
            Cond::Range(r) => leaves.iter().any(|v| in_range(v, r, time)),
        };
        if !ok {
            return false;
        }
    }
    if let Some(text) = text {
        let wanted = tokens(text);
        if !wanted.is_empty() {
            let mut all = String::new();
            crate::schema::all_text(record, &mut all);
            let have: std::collections::HashSet<String> = tokens(&all).into_iter().collect();
            return wanted.iter().all(|w| have.contains(w));
        }
    }
    true
}

fn is_time_field(name: &str) -> bool {
    LogType::ALL.iter().any(|t| {
        t.fields()
            .iter()
            .any(|(f, k)| *f == name && matches!(k, FieldKind::EpochSeconds | FieldKind::Rfc3339))
    })
}

fn value_equals(v: &Value, target: &Value, time: bool) -> bool {
    if time {
        return match (time_value_ms(v), parse_time_ms(target, "")) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        };
    }
    if v.is_number() {
        return matches!((long_value(v), long_value(target)), (Some(a), Some(b)) if a == b);
    }
    if let (Some(a), Some(b)) = (ip_value(v), ip_value(target)) {
        return a == b;
    }
    matches!((keyword_value(v), keyword_value(target)), (Some(a), Some(b)) if a == b)
}

fn in_range(v: &Value, r: &RangeBounds, time: bool) -> bool {
    let num = |x: &Value| {
        if time {
            parse_time_ms(x, "").ok()
        } else {
            long_value(x)
        }
    };
    let Some(x) = (if time {
        time_value_ms(v)
    } else {
        long_value(v)
    }) else {
        return false;
    };
    let check = |b: &Option<Value>, f: fn(i64, i64) -> bool| match b {
        None => true,
        Some(b) => num(b).is_some_and(|b| f(x, b)),
    };
    check(&r.gt, |x, b| x > b)
        && check(&r.gte, |x, b| x >= b)
        && check(&r.lt, |x, b| x < b)
        && check(&r.lte, |x, b| x <= b)
}

/// A tantivy date from milliseconds, clamped to what its nanosecond timestamp can hold
/// (years 1677–2262): a bound beyond that (`"from": "8885-11-24T00:00:00Z"`, found by the
/// `search_request` fuzz target) overflowed, a panic in debug builds and a wrong range in
/// release. No stored record lies outside, so the clamped bound selects the same records.
fn date_ms(ms: i64) -> DateTime {
    const LIMIT: i64 = i64::MAX / 1_000_000;
    DateTime::from_timestamp_millis(ms.clamp(-LIMIT, LIMIT))
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_successor_bounds_every_extension() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        for (p, s) in [("svc-", "svc-3"), ("a", "a\u{10FFFF}x"), ("é", "éz")] {
            let succ = prefix_successor(p).unwrap();
            assert!(p <= s && s < succ.as_str(), "{p} {s} {succ}");
        }
        assert!("svd" >= prefix_successor("svc").unwrap().as_str());
    }
}
