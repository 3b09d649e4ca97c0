//! Sorting and `searchAfter` paging: a top-k collector over fast fields with any number of
//! keys, plus a unique tiebreak (`_seq`, `_stream`) so pages never overlap or leave gaps.
//!
//! Within a segment every key is encoded as an order-preserving `u128` (keyword values as
//! dictionary ordinals, which sort like the strings within that segment), so the hot loop is
//! integer comparisons. The `searchAfter` values are encoded per segment the same way
//! (a keyword not in the segment's dictionary falls between two ordinals). Across segments and
//! daily indices the k best of each are decoded to real values and merged.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use serde_json::Value;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DateTime, DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use crate::LogStoreError;
use crate::request::{SearchRequest, SortOrder, parse_long, parse_time_ms};
use crate::schema::{Kind, SEQ, STREAM, TIME, TypeSchema};

/// How a sort key's fast field is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    I64,
    Date,
    U64,
    Str,
}

/// One resolved sort key.
#[derive(Clone, Debug)]
pub(crate) struct SortKey {
    pub tname: String,
    pub kind: KeyKind,
    pub desc: bool,
}

/// A sort value, comparable across segments and indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GVal {
    Missing,
    Int(i64),
    UInt(u64),
    Str(String),
}

impl GVal {
    /// As it appears in a hit's `sort` array.
    pub fn to_json(&self) -> Value {
        match self {
            GVal::Missing => Value::Null,
            GVal::Int(i) => Value::from(*i),
            GVal::UInt(u) => Value::from(*u),
            GVal::Str(s) => Value::from(s.as_str()),
        }
    }
}

/// The sort keys of a request: the user's (default: time descending) then the tiebreak.
pub(crate) fn plan(ts: &TypeSchema, req: &SearchRequest) -> Result<Vec<SortKey>, LogStoreError> {
    let mut keys = Vec::new();
    for (i, s) in req.sort.iter().enumerate() {
        let spec = ts
            .lookup(&s.field)
            .ok_or_else(|| ts.unknown_field(&format!("sort[{i}].field"), &s.field))?;
        let kind = match spec.kind {
            Kind::Keyword => KeyKind::Str,
            Kind::Long => KeyKind::I64,
            Kind::Time => KeyKind::Date,
            Kind::Ip => {
                return Err(LogStoreError::bad(
                    format!("sort[{i}].field"),
                    format!(
                        "{} is an IP address field; sort on keyword, number or time fields",
                        spec.name
                    ),
                ));
            }
        };
        keys.push(SortKey {
            tname: spec.tname.clone(),
            kind,
            desc: s.order == Some(SortOrder::Desc),
        });
    }
    if keys.is_empty() {
        keys.push(SortKey {
            tname: TIME.into(),
            kind: KeyKind::Date,
            desc: true,
        });
    }
    let desc = keys.last().is_some_and(|k| k.desc);
    keys.push(SortKey {
        tname: SEQ.into(),
        kind: KeyKind::U64,
        desc,
    });
    keys.push(SortKey {
        tname: STREAM.into(),
        kind: KeyKind::Str,
        desc,
    });
    Ok(keys)
}

/// Parses `searchAfter` against the sort keys.
pub(crate) fn parse_after(keys: &[SortKey], values: &[Value]) -> Result<Vec<GVal>, LogStoreError> {
    if values.len() != keys.len() {
        return Err(LogStoreError::bad(
            "searchAfter",
            format!(
                "needs {} values (the `sort` of the previous page's last hit: the sort fields plus the _seq/_stream tiebreak), got {}",
                keys.len(),
                values.len()
            ),
        ));
    }
    keys.iter()
        .zip(values)
        .enumerate()
        .map(|(i, (k, v))| {
            let at = format!("searchAfter[{i}]");
            if v.is_null() {
                return Ok(GVal::Missing);
            }
            Ok(match k.kind {
                KeyKind::I64 => GVal::Int(parse_long(v, &at)?),
                KeyKind::Date => GVal::Int(parse_time_ms(v, &at)?),
                KeyKind::U64 => GVal::UInt(
                    v.as_u64()
                        .ok_or_else(|| LogStoreError::bad(&at, "must be a non-negative integer"))?,
                ),
                KeyKind::Str => GVal::Str(match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
            })
        })
        .collect()
}

/// Compares two key tuples in sort order; missing values sort last in either direction.
pub(crate) fn cmp_keys(keys: &[SortKey], a: &[GVal], b: &[GVal]) -> Ordering {
    for (k, (x, y)) in keys.iter().zip(a.iter().zip(b)) {
        let o = match (x, y) {
            (GVal::Missing, GVal::Missing) => Ordering::Equal,
            (GVal::Missing, _) => Ordering::Greater,
            (_, GVal::Missing) => Ordering::Less,
            (GVal::Int(x), GVal::Int(y)) => {
                if k.desc {
                    y.cmp(x)
                } else {
                    x.cmp(y)
                }
            }
            (GVal::UInt(x), GVal::UInt(y)) => {
                if k.desc {
                    y.cmp(x)
                } else {
                    x.cmp(y)
                }
            }
            (GVal::Str(x), GVal::Str(y)) => {
                if k.desc {
                    y.cmp(x)
                } else {
                    x.cmp(y)
                }
            }
            // Mixed kinds cannot happen (one kind per key).
            _ => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// The `k` first documents (in sort order) strictly after `after`, from one searcher.
pub(crate) struct TopCollector {
    pub keys: Arc<Vec<SortKey>>,
    pub after: Option<Arc<Vec<GVal>>>,
    pub k: usize,
}

/// A candidate hit: its sort values and where it is.
pub(crate) type Candidate = (Vec<GVal>, DocAddress);

impl Collector for TopCollector {
    type Fruit = Vec<Candidate>;
    type Child = TopSegment;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<TopSegment> {
        let ff = reader.fast_fields();
        let mut cols = Vec::with_capacity(self.keys.len());
        for k in self.keys.iter() {
            cols.push(match k.kind {
                KeyKind::I64 => ff
                    .column_opt::<i64>(&k.tname)?
                    .map_or(SegCol::Absent, SegCol::I64),
                KeyKind::Date => ff
                    .column_opt::<DateTime>(&k.tname)?
                    .map_or(SegCol::Absent, SegCol::Date),
                KeyKind::U64 => ff
                    .column_opt::<u64>(&k.tname)?
                    .map_or(SegCol::Absent, SegCol::U64),
                KeyKind::Str => ff.str(&k.tname)?.map_or(SegCol::Absent, SegCol::Str),
            });
        }
        let desc: Vec<bool> = self.keys.iter().map(|k| k.desc).collect();
        let after = match &self.after {
            None => None,
            Some(a) => {
                let mut enc = Vec::with_capacity(a.len());
                for ((v, col), d) in a.iter().zip(&cols).zip(&desc) {
                    enc.push(encode(encode_after(v, col)?, *d));
                }
                Some(enc)
            }
        };
        Ok(TopSegment {
            segment_ord,
            cols,
            desc,
            after,
            k: self.k,
            heap: BinaryHeap::new(),
            buf: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<Candidate>>) -> tantivy::Result<Vec<Candidate>> {
        Ok(merge(
            &self.keys,
            fruits.into_iter().flatten().collect(),
            self.k,
        ))
    }
}

/// Sorts candidates and keeps the first `k`.
pub(crate) fn merge<T>(
    keys: &[SortKey],
    mut all: Vec<(Vec<GVal>, T)>,
    k: usize,
) -> Vec<(Vec<GVal>, T)> {
    all.sort_by(|a, b| cmp_keys(keys, &a.0, &b.0));
    all.truncate(k);
    all
}

/// A sort key's column in one segment.
pub(crate) enum SegCol {
    Absent,
    I64(Column<i64>),
    Date(Column<DateTime>),
    U64(Column<u64>),
    Str(StrColumn),
}

const MISSING: u128 = 1 << 100;

/// Direction and missing-last applied to a raw order-preserving value.
fn encode(raw: Option<u128>, desc: bool) -> u128 {
    match raw {
        None => MISSING,
        Some(r) if desc => (1u128 << 80) - r,
        Some(r) => r,
    }
}

fn i64_raw(v: i64) -> u128 {
    ((v as u64) ^ (1 << 63)) as u128
}

fn encode_after(v: &GVal, col: &SegCol) -> tantivy::Result<Option<u128>> {
    Ok(match (v, col) {
        (GVal::Missing, _) => None,
        (GVal::Int(i), _) => Some(i64_raw(*i)),
        (GVal::UInt(u), _) => Some(*u as u128),
        (GVal::Str(s), SegCol::Str(c)) => {
            use tantivy::columnar::TermOrdHit;
            Some(match c.dictionary().term_ord_or_next(s.as_bytes())? {
                TermOrdHit::Exact(o) => 2 * o as u128 + 1,
                TermOrdHit::Next(o) if o == u64::MAX => 2 * c.num_terms() as u128,
                TermOrdHit::Next(o) => 2 * o as u128,
            })
        }
        // The segment has no value for this key at all: every document is "missing", and
        // a present value sorts before them; any number below MISSING works.
        (GVal::Str(_), _) => Some(0),
    })
}

/// Per-segment part of [`TopCollector`].
pub(crate) struct TopSegment {
    segment_ord: SegmentOrdinal,
    cols: Vec<SegCol>,
    desc: Vec<bool>,
    after: Option<Vec<u128>>,
    k: usize,
    heap: BinaryHeap<(Vec<u128>, DocId)>,
    buf: Vec<u128>,
}

impl TopSegment {
    fn raw(&self, i: usize, doc: DocId) -> Option<u128> {
        match &self.cols[i] {
            SegCol::Absent => None,
            SegCol::I64(c) => c.first(doc).map(i64_raw),
            SegCol::Date(c) => c.first(doc).map(|d| i64_raw(d.into_timestamp_millis())),
            SegCol::U64(c) => c.first(doc).map(|u| u as u128),
            SegCol::Str(c) => self.str_ord(c, i, doc).map(|o| 2 * o as u128 + 1),
        }
    }

    /// The ordinal a multi-valued keyword sorts by: the smallest ascending, the largest
    /// descending (Elasticsearch's default `mode`).
    fn str_ord(&self, c: &StrColumn, i: usize, doc: DocId) -> Option<u64> {
        let ords = c.term_ords(doc);
        if self.desc[i] { ords.max() } else { ords.min() }
    }

    fn value(&self, i: usize, doc: DocId) -> GVal {
        match &self.cols[i] {
            SegCol::Absent => GVal::Missing,
            SegCol::I64(c) => c.first(doc).map_or(GVal::Missing, GVal::Int),
            SegCol::Date(c) => c
                .first(doc)
                .map_or(GVal::Missing, |d| GVal::Int(d.into_timestamp_millis())),
            SegCol::U64(c) => c.first(doc).map_or(GVal::Missing, GVal::UInt),
            SegCol::Str(c) => match self.str_ord(c, i, doc) {
                None => GVal::Missing,
                Some(o) => {
                    let mut s = String::new();
                    match c.ord_to_str(o, &mut s) {
                        Ok(true) => GVal::Str(s),
                        _ => GVal::Missing,
                    }
                }
            },
        }
    }
}

impl SegmentCollector for TopSegment {
    type Fruit = Vec<Candidate>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if self.k == 0 {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for i in 0..self.cols.len() {
            buf.push(encode(self.raw(i, doc), self.desc[i]));
        }
        let qualifies = self.after.as_ref().is_none_or(|a| buf > *a)
            && (self.heap.len() < self.k
                || self.heap.peek().is_some_and(|(worst, _)| buf < *worst));
        if qualifies {
            let spare = if self.heap.len() >= self.k {
                self.heap.pop().map(|(v, _)| v)
            } else {
                None
            };
            self.heap.push((buf, doc));
            self.buf = spare.unwrap_or_default();
        } else {
            self.buf = buf;
        }
    }

    fn harvest(self) -> Vec<Candidate> {
        let mut out = Vec::with_capacity(self.heap.len());
        for (_, doc) in self.heap.iter() {
            let vals = (0..self.cols.len()).map(|i| self.value(i, *doc)).collect();
            out.push((vals, DocAddress::new(self.segment_ord, *doc)));
        }
        out
    }
}
