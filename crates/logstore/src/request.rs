//! The search request and response as they travel over HTTP
//! (`POST /apis/logs.cattery.dev/v1/{type}/search`), and the checks that turn a request
//! into conditions the engine can run. Every error names the offending part of the request.

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::LogStoreError;
use crate::schema::{ip_to_v6, parse_rfc3339_ms};

/// Largest page a search may ask for.
pub const MAX_SIZE: usize = 10_000;
/// Page size when the request gives none.
pub const DEFAULT_SIZE: usize = 100;

/// In `clusters`, "every cluster, including removed ones whose logs are kept". Never a
/// valid cluster name (cluster names are DNS-1123 labels).
pub const ALL_CLUSTERS: &str = "*";

/// A search over one log type: which clusters and times, which records, in what order,
/// how many, and what to count. Deserialised from the request body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SearchRequest {
    /// The clusters to search. The server applies RBAC before the store sees the request;
    /// the store searches exactly these (none → no hits), or every cluster when the list
    /// holds [`ALL_CLUSTERS`] (only for callers allowed to read all of them).
    #[serde(default)]
    pub clusters: Vec<String>,
    /// Only records whose time is in `[from, to)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// Conditions every returned record meets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// Free text: every word must appear somewhere in the record's values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Sort order; default: the type's time field descending. A stable tiebreak
    /// (`_seq`, `_stream`) is always appended so paging never skips or repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sort: Vec<SortField>,
    /// Page size, 0..=10000 (default 100). 0 returns only totals and aggregations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// The `sort` values of the last hit of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_after: Option<Vec<Value>>,
    /// Elasticsearch-style aggregations (terms, date_histogram, sum, avg, max, min, stats,
    /// cardinality, …) over Calico field names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggs: Option<Value>,
}

impl SearchRequest {
    /// Parses a request body; errors name the offending field (`filters[1].range.gte`).
    pub fn from_json(body: &[u8]) -> Result<SearchRequest, LogStoreError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.inner().to_string();
            let message = match inner.find(" at line ") {
                Some(i) => inner[..i].to_string(),
                None => inner,
            };
            let mut field = if path == "." { String::new() } else { path };
            if let Some(rest) = message.strip_prefix("unknown field `")
                && let Some(end) = rest.find('`').filter(|end| !field.ends_with(&rest[..*end]))
            {
                {
                    field = if field.is_empty() {
                        rest[..end].to_string()
                    } else {
                        format!("{field}.{}", &rest[..end])
                    };
                }
            }
            if field.is_empty() {
                field = "body".into();
            }
            LogStoreError::bad(field, message)
        })
    }

    /// The page size, checked.
    pub fn checked_size(&self) -> Result<usize, LogStoreError> {
        match self.size {
            None => Ok(DEFAULT_SIZE),
            Some(n) if n <= MAX_SIZE => Ok(n),
            Some(n) => Err(LogStoreError::bad(
                "size",
                format!("{n} is more than the maximum {MAX_SIZE}"),
            )),
        }
    }
}

/// A time window; each end is an RFC 3339 string or epoch milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    /// Inclusive start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// Exclusive end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

impl TimeRange {
    /// The window in ms, checked.
    pub fn resolve(&self) -> Result<(Option<i64>, Option<i64>), LogStoreError> {
        let from = self
            .from
            .as_ref()
            .map(|v| parse_time_ms(v, "timeRange.from"))
            .transpose()?;
        let to = self
            .to
            .as_ref()
            .map(|v| parse_time_ms(v, "timeRange.to"))
            .transpose()?;
        Ok((from, to))
    }
}

/// One condition on one field. Exactly one of the operators is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Filter {
    /// A Calico field name of the log type (`source_namespace`, `policies.enforced_policies`) or `cluster`.
    pub field: String,
    /// The field has this value (for arrays: one of the elements does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The field does not have this value (records without the field match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    /// The field has one of these values.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub in_: Option<Vec<Value>>,
    /// A keyword field starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// An IP field is in this network (`10.0.0.0/8`, `fd00::/8`; a bare address = /32 or /128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// A number or time field is in this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeBounds>,
}

impl Filter {
    /// `field` equals `value` (what `cattery logs --where field=value` sends).
    pub fn equals(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter {
            field: field.into(),
            equals: Some(value.into()),
            ..Filter::default()
        }
    }
}

/// Bounds of a `range` filter; numbers, or for time fields RFC 3339 strings or epoch ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeBounds {
    /// Greater than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<Value>,
    /// Greater than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<Value>,
    /// Less than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<Value>,
    /// Less than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<Value>,
}

/// One sort key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortField {
    /// A keyword, number or time field, or `cluster`.
    pub field: String,
    /// `asc` (default) or `desc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<SortOrder>,
}

/// Sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// The answer, shaped like an Elasticsearch search response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Milliseconds the search took.
    pub took: u64,
    /// Always false (searches are not cut short).
    pub timed_out: bool,
    /// The matching records.
    pub hits: Hits,
    /// Aggregation results, keyed by the request's aggregation names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregations: Option<Value>,
}

/// `hits` of a [`SearchResponse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hits {
    /// How many records match (all pages).
    pub total: Total,
    /// This page.
    pub hits: Vec<Hit>,
}

/// `hits.total` of a [`SearchResponse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Total {
    /// The count.
    pub value: u64,
    /// Always `eq` (counts are exact).
    pub relation: String,
}

/// One record in a [`SearchResponse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The daily index it is in (`flows-2026-11-24`).
    #[serde(rename = "_index")]
    pub index: String,
    /// `stream:seq`, unique.
    #[serde(rename = "_id")]
    pub id: String,
    /// The record as stored (with `cluster`).
    #[serde(rename = "_source")]
    pub source: Value,
    /// Its sort values; pass the last hit's as `searchAfter` for the next page.
    pub sort: Vec<Value>,
}

/// A filter reduced to what it tests, independent of how the field is indexed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cond {
    /// One of these values.
    AnyOf(Vec<Value>),
    /// Not this value.
    Not(Value),
    /// Keyword prefix.
    Prefix(String),
    /// IP in `[lo, hi]`.
    Cidr(Ipv6Addr, Ipv6Addr),
    /// Range bounds (raw values; converted per field kind).
    Range(RangeBounds),
}

impl Filter {
    /// The single operator of this filter; `at` is the filter's path (`filters[3]`).
    pub(crate) fn cond(&self, at: &str) -> Result<Cond, LogStoreError> {
        let mut conds = Vec::new();
        if let Some(v) = &self.equals {
            conds.push(Cond::AnyOf(vec![scalar(v, &format!("{at}.equals"))?]));
        }
        if let Some(v) = &self.not_equals {
            conds.push(Cond::Not(scalar(v, &format!("{at}.notEquals"))?));
        }
        if let Some(vs) = &self.in_ {
            let vals = vs
                .iter()
                .enumerate()
                .map(|(i, v)| scalar(v, &format!("{at}.in[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            conds.push(Cond::AnyOf(vals));
        }
        if let Some(p) = &self.prefix {
            conds.push(Cond::Prefix(p.clone()));
        }
        if let Some(c) = &self.cidr {
            let (lo, hi) =
                parse_cidr(c).map_err(|m| LogStoreError::bad(format!("{at}.cidr"), m))?;
            conds.push(Cond::Cidr(lo, hi));
        }
        if let Some(r) = &self.range {
            if r.gt.is_none() && r.gte.is_none() && r.lt.is_none() && r.lte.is_none() {
                return Err(LogStoreError::bad(
                    format!("{at}.range"),
                    "give at least one of gt, gte, lt, lte",
                ));
            }
            conds.push(Cond::Range(r.clone()));
        }
        match conds.len() {
            1 => Ok(conds.pop().unwrap_or(Cond::AnyOf(vec![]))),
            0 => Err(LogStoreError::bad(
                at,
                "give one of equals, notEquals, in, prefix, cidr, range",
            )),
            _ => Err(LogStoreError::bad(
                at,
                "give only one of equals, notEquals, in, prefix, cidr, range per filter",
            )),
        }
    }
}

fn scalar(v: &Value, at: &str) -> Result<Value, LogStoreError> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(v.clone()),
        _ => Err(LogStoreError::bad(
            at,
            "must be a string, number or boolean",
        )),
    }
}

/// Parses `a.b.c.d/n` or `x::/n` (or a bare address) into the first and last address,
/// both as IPv6 (IPv4 mapped, as stored).
pub(crate) fn parse_cidr(s: &str) -> Result<(Ipv6Addr, Ipv6Addr), String> {
    let s = s.trim();
    let net = match s.parse::<ipnet::IpNet>() {
        Ok(net) => net,
        Err(_) if s.contains('/') => {
            return Err(format!(
                "{s:?} is not a CIDR (like 10.0.0.0/8 or fd00::/8; the prefix length is at most 32 for IPv4, 128 for IPv6)"
            ));
        }
        Err(_) => ipnet::IpNet::from(
            s.parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not a CIDR (like 10.0.0.0/8 or fd00::/8)"))?,
        ),
    };
    Ok((ip_to_v6(net.network()), ip_to_v6(net.broadcast())))
}

/// A time given as epoch ms (number) or RFC 3339 (string).
pub(crate) fn parse_time_ms(v: &Value, at: &str) -> Result<i64, LogStoreError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| LogStoreError::bad(at, "must be epoch milliseconds or an RFC 3339 time")),
        Value::String(s) => parse_rfc3339_ms(s).ok_or_else(|| {
            LogStoreError::bad(at, format!("{s:?} is not an RFC 3339 time (like 2026-11-24T10:00:00Z) or epoch milliseconds"))
        }),
        _ => Err(LogStoreError::bad(at, "must be epoch milliseconds or an RFC 3339 time")),
    }
}

/// An integer given as a number or a numeric string.
pub(crate) fn parse_long(v: &Value, at: &str) -> Result<i64, LogStoreError> {
    crate::schema::long_value(v)
        .ok_or_else(|| LogStoreError::bad(at, format!("{v} is not an integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = SearchRequest::from_json(br#"{"filters":[{"field":"a","equalz":1}]}"#).unwrap_err();
        assert!(
            matches!(&e, LogStoreError::BadRequest { field, .. } if field == "filters[0].equalz"),
            "{e}"
        );
        let e = SearchRequest::from_json(br#"{"size":"x"}"#).unwrap_err();
        assert!(
            matches!(&e, LogStoreError::BadRequest { field, .. } if field == "size"),
            "{e}"
        );
        let e = SearchRequest::from_json(br#"{"timeRange":{"form":1}}"#).unwrap_err();
        assert!(
            matches!(&e, LogStoreError::BadRequest { field, .. } if field == "timeRange.form"),
            "{e}"
        );
        let r = SearchRequest::from_json(br#"{"clusters":["a"],"size":5,"searchAfter":[1,"x"]}"#)
            .unwrap();
        assert_eq!(r.size, Some(5));
    }

    #[test]
    fn cidrs() {
        let (lo, hi) = parse_cidr("10.1.0.0/16").unwrap();
        assert_eq!(
            lo,
            "10.1.0.0"
                .parse::<std::net::Ipv4Addr>()
                .unwrap()
                .to_ipv6_mapped()
        );
        assert_eq!(
            hi,
            "10.1.255.255"
                .parse::<std::net::Ipv4Addr>()
                .unwrap()
                .to_ipv6_mapped()
        );
        let (lo, hi) = parse_cidr("fd00::/8").unwrap();
        assert_eq!(lo, "fd00::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            hi,
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        assert_eq!(parse_cidr("::/0").unwrap().1, Ipv6Addr::from(u128::MAX));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nope").is_err());
    }
}
