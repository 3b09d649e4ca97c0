//! The tantivy schema of one log type, the mapping between Calico field names and tantivy
//! field names, and turning a record into a tantivy document.
//!
//! Every daily index of a type has the same schema:
//!
//! | tantivy field | what | options |
//! |---|---|---|
//! | `cluster` | the record's cluster | keyword (raw), indexed, fast |
//! | `_time` | the type's time field (`end_time`, `stageTimestamp`) in ms | date, fast |
//! | `_stream`, `_seq` | the spool stream and sequence number it came from | keyword fast / u64 fast |
//! | one per [`LogType::fields`] entry | keyword, i64, IP address or date | fast (column only) |
//! | `_all` | the words of string values not in a word-searched column (keyword or IP) | text (lower-cased words) |
//! | `_source` | the original JSON record | stored text (zstd docstore); bytes in indices written before 2026-11-25 |
//!
//! Only `cluster` and `_all` have an inverted index: every other filter is answered from the
//! columns (tantivy's fast-field range query; keyword equality and prefix as ranges of
//! dictionary ordinals), which keeps ingest cheap. Free-text words of most keyword values are
//! found through the keyword columns' dictionaries rather than `_all` (see [`crate::text`]).
//!
//! Calico names contain dots and slashes (`annotations.authorization.k8s.io/decision`),
//! which tantivy would read as JSON paths, so each is mapped to a plain name
//! (`annotations_authorization_k8s_io_decision`); users only ever see Calico names.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::OnceLock;

use cattery_api::logs::{FieldKind, LogType};
use serde_json::Value;

use crate::text::scalar_like;
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, IpAddrOptions, NumericOptions,
    Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{DateTime, TantivyDocument};

/// How a field is indexed (the store's view of [`FieldKind`]: both time formats are dates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Exact-match string; arrays give several values.
    Keyword,
    /// 64-bit integer.
    Long,
    /// IPv4 or IPv6 address (IPv4 kept as IPv4-mapped IPv6).
    Ip,
    /// A time, kept as milliseconds since the Unix epoch.
    Time,
}

impl Kind {
    fn from_field_kind(k: FieldKind) -> Kind {
        match k {
            FieldKind::Keyword => Kind::Keyword,
            FieldKind::Long => Kind::Long,
            FieldKind::Ip => Kind::Ip,
            FieldKind::EpochSeconds | FieldKind::Rfc3339 => Kind::Time,
        }
    }

    /// A short human name used in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Keyword => "keyword",
            Kind::Long => "number",
            Kind::Ip => "IP address",
            Kind::Time => "time",
        }
    }
}

/// One user-visible field and where it lives in the index.
#[derive(Clone, Debug)]
pub struct FieldSpec {
    /// The Calico name users write (`source_labels.labels`), or `cluster`.
    pub name: &'static str,
    /// The tantivy field name (`source_labels_labels`).
    pub tname: String,
    /// The tantivy field.
    pub field: Field,
    /// How it is indexed.
    pub kind: Kind,
    /// Whether it has an inverted index (only `cluster` among the user-visible fields; the
    /// others are columns only, and filters on them are answered from the column).
    pub indexed: bool,
    /// Whether free-text words of its string values are searched in the column instead of
    /// being indexed in `_all`: keyword fields (in the column's dictionary), except nearly
    /// unique ones and those left out of free text, and IP fields (addresses spelt as the
    /// column prints them); see [`crate::text`].
    pub words_in_column: bool,
}

/// Name of the tantivy field holding the cluster.
pub const CLUSTER: &str = "cluster";
/// Name of the tantivy field holding the record time (ms).
pub const TIME: &str = "_time";
/// Name of the tantivy field holding the spool stream id.
pub const STREAM: &str = "_stream";
/// Name of the tantivy field holding the spool sequence number.
pub const SEQ: &str = "_seq";
const ALL: &str = "_all";
const SOURCE: &str = "_source";

/// The schema of one log type plus the name mapping.
#[derive(Debug)]
pub struct TypeSchema {
    /// Which log type.
    pub log_type: LogType,
    /// The tantivy schema every daily index of this type uses.
    pub schema: Schema,
    /// User-visible fields: `cluster` first, then [`LogType::fields`] in order.
    pub fields: Vec<FieldSpec>,
    /// `cluster`.
    pub cluster: Field,
    /// `_time`.
    pub time: Field,
    /// `_stream`.
    pub stream: Field,
    /// `_seq`.
    pub seq: Field,
    /// `_all` (free text).
    pub all: Field,
    /// `_source` (original JSON).
    pub source: Field,
    /// Tantivy names of the keyword fields whose words are searched in their column
    /// ([`FieldSpec::words_in_column`]).
    pub word_columns: std::sync::Arc<[String]>,
    /// Tantivy names of the IP address fields (their words are searched in their column).
    pub ip_columns: std::sync::Arc<[String]>,
    /// The fields a document takes from the record (all but `cluster` and the time field):
    /// (Calico name, index in `fields`), sorted by name for [`TypeSchema::field_values`].
    by_name: Vec<(&'static str, usize)>,
}

/// Maps a Calico field name to a tantivy-safe one.
fn tantivy_name(log_type: LogType, name: &str) -> String {
    if name == log_type.time_field() {
        return TIME.to_string();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An indexed keyword column: `cluster`, which every search filters on with a set of up to
/// hundreds of names (a posting list per cluster answers that fastest).
fn indexed_keyword_options() -> TextOptions {
    TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        )
        .set_fast("raw")
}

/// A keyword column without an inverted index: equality, `in` and prefix filters become
/// ranges of the column's dictionary ordinals (tantivy's fast-field range query), which
/// avoids a posting-list insertion per value at ingest.
fn keyword_options() -> TextOptions {
    TextOptions::default().set_fast("raw")
}

impl TypeSchema {
    /// Builds the schema of `log_type`.
    pub fn new(log_type: LogType) -> TypeSchema {
        let mut b = Schema::builder();
        let cluster = b.add_text_field(CLUSTER, indexed_keyword_options());
        // Times are columns only: tantivy answers range queries on fast fields from the
        // column (even when an inverted index exists), so indexing them would be unused.
        let date_opts = || {
            DateOptions::default()
                .set_fast()
                .set_precision(DateTimePrecision::Milliseconds)
        };
        let time = b.add_date_field(TIME, date_opts());
        let stream = b.add_text_field(STREAM, keyword_options());
        let seq = b.add_u64_field(SEQ, NumericOptions::default().set_fast());
        let mut fields = vec![FieldSpec {
            name: "cluster",
            tname: CLUSTER.into(),
            field: cluster,
            kind: Kind::Keyword,
            indexed: true,
            words_in_column: true,
        }];
        for (name, fk) in log_type.fields() {
            let kind = Kind::from_field_kind(*fk);
            let tname = tantivy_name(log_type, name);
            let field = if tname == TIME {
                time
            } else {
                match kind {
                    Kind::Keyword => b.add_text_field(&tname, keyword_options()),
                    // Numbers and addresses are columnar only (fast fields): tantivy answers
                    // term and range queries on them from the column, and skipping their
                    // inverted index makes ingest cheaper.
                    Kind::Long => b.add_i64_field(&tname, NumericOptions::default().set_fast()),
                    Kind::Ip => b.add_ip_addr_field(&tname, IpAddrOptions::default().set_fast()),
                    Kind::Time => b.add_date_field(&tname, date_opts()),
                }
            };
            let words_in_column = match kind {
                Kind::Keyword => !words_stay_in_all(log_type, name) && !excluded_from_text(name),
                Kind::Ip => true,
                Kind::Long | Kind::Time => false,
            };
            fields.push(FieldSpec {
                name,
                tname,
                field,
                kind,
                indexed: false,
                words_in_column,
            });
        }
        let all = b.add_text_field(
            ALL,
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("default")
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(false),
            ),
        );
        // Stored text, not bytes: tantivy writes (and reads) a stored bytes value one byte at
        // a time, a text value with one copy. Indices written before keep a bytes `_source`
        // ([`source_is_text`]).
        let source = b.add_text_field(SOURCE, TextOptions::default().set_stored());
        let word_columns = fields
            .iter()
            .filter(|f| f.words_in_column && f.kind == Kind::Keyword)
            .map(|f| f.tname.clone())
            .collect();
        let ip_columns = fields
            .iter()
            .filter(|f| f.words_in_column && f.kind == Kind::Ip)
            .map(|f| f.tname.clone())
            .collect();
        let mut by_name: Vec<(&'static str, usize)> = fields
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, f)| f.field != time)
            .map(|(i, f)| (f.name, i))
            .collect();
        by_name.sort_unstable();
        assert!(by_name.len() <= 128, "field_values keeps a 128-bit set");
        TypeSchema {
            log_type,
            schema: b.build(),
            fields,
            cluster,
            time,
            stream,
            seq,
            all,
            source,
            word_columns,
            ip_columns,
            by_name,
        }
    }

    /// The values of every field a document takes from `record`, as (index in `fields`,
    /// scalar) pairs: for each field exactly what [`values_at`] gives, in the same order, but
    /// found in one ordered pass over the record's keys (a JSON object's keys are sorted)
    /// instead of a map lookup per field. Dotted names that are not a key of their own
    /// (`source_labels.labels` nested) are then looked up with [`values_at`].
    pub fn field_values<'a>(&self, record: &'a Value, out: &mut Vec<(usize, &'a Value)>) {
        let Value::Object(obj) = record else {
            return;
        };
        let mut leaves = Vec::with_capacity(8);
        let mut found = 0u128;
        let mut j = 0;
        let mut prev: Option<&str> = None;
        for (k, v) in obj {
            let k = k.as_str();
            if prev.is_some_and(|p| p >= k) {
                // Not sorted (serde_json built with `preserve_order`): a lookup per field.
                out.clear();
                return self.field_values_by_lookup(record, out);
            }
            prev = Some(k);
            while self.by_name.get(j).is_some_and(|(name, _)| *name < k) {
                j += 1;
            }
            if let Some((name, i)) = self.by_name.get(j)
                && *name == k
            {
                found |= 1 << j;
                push_leaves(v, &mut leaves);
                out.extend(leaves.drain(..).map(|l| (*i, l)));
                j += 1;
            }
        }
        for (j, (name, i)) in self.by_name.iter().enumerate() {
            if found & (1 << j) == 0 && name.contains('.') {
                values_at(record, name, &mut leaves);
                out.extend(leaves.drain(..).map(|l| (*i, l)));
            }
        }
    }

    fn field_values_by_lookup<'a>(&self, record: &'a Value, out: &mut Vec<(usize, &'a Value)>) {
        let mut leaves = Vec::with_capacity(8);
        for (name, i) in &self.by_name {
            values_at(record, name, &mut leaves);
            out.extend(leaves.drain(..).map(|l| (*i, l)));
        }
    }

    /// The user-visible field called `name` (Calico name or `cluster`).
    pub fn lookup(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The valid field names, for error messages.
    pub fn valid_names(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// An error for an unknown field, listing the valid ones.
    pub fn unknown_field(&self, at: &str, name: &str) -> crate::LogStoreError {
        crate::LogStoreError::bad(
            at,
            format!(
                "unknown field {name:?} for {} logs; valid fields: {}",
                self.log_type,
                self.valid_names()
            ),
        )
    }

    /// Builds the document for one record; `source` is the record's JSON text if the caller
    /// has it (else `record` is serialised for `_source`). `source_as_text`: whether the
    /// index's `_source` is a text field (else bytes, in indices of earlier versions).
    #[allow(clippy::too_many_arguments)]
    pub fn document(
        &self,
        cluster: &str,
        stream: &str,
        seq: u64,
        time_ms: i64,
        record: &Value,
        source: Option<&[u8]>,
        source_as_text: bool,
    ) -> TantivyDocument {
        // Sized for a typical flow record (its stored JSON, keywords and free text), so the
        // document's buffer is not regrown while it is filled.
        let mut doc = TantivyDocument::with_capacity(3072);
        doc.add_text(self.cluster, cluster);
        doc.add_date(self.time, date_ms(time_ms));
        doc.add_text(self.stream, stream);
        doc.add_u64(self.seq, seq);
        // String values whose words are found through their keyword column, so not in `_all`.
        let mut in_columns: Vec<&Value> = Vec::with_capacity(32);
        if let Some(v @ Value::String(s)) = record.get(CLUSTER)
            && s == cluster
            && !scalar_like(s)
        {
            in_columns.push(v);
        }
        let mut values = Vec::with_capacity(64);
        self.field_values(record, &mut values);
        let mut ip_text = String::with_capacity(48);
        for (i, v) in values {
            let spec = &self.fields[i];
            if spec.kind == Kind::Ip {
                // An address written the way the column prints it back has its words found
                // there; any other spelling keeps them in `_all`.
                let Some(s) = v.as_str() else { continue };
                let as_printed = match s.parse::<IpAddr>() {
                    // Rust reads only the dotted form it prints (no leading zeros, four
                    // octets, nothing around), so every IPv4 address read is spelt that way.
                    Ok(IpAddr::V4(a)) => {
                        doc.add_ip_addr(spec.field, a.to_ipv6_mapped());
                        true
                    }
                    Ok(IpAddr::V6(a)) => {
                        doc.add_ip_addr(spec.field, a);
                        ip_text.clear();
                        crate::text::write_ip(a, &mut ip_text);
                        ip_text == s
                    }
                    Err(_) => false,
                };
                if as_printed {
                    in_columns.push(v);
                }
                continue;
            }
            add_value(&mut doc, spec, v);
            if spec.words_in_column && v.as_str().is_some_and(|s| !scalar_like(s)) {
                in_columns.push(v);
            }
        }
        let mut text = String::with_capacity(1024);
        text_except(record, &in_columns, &mut text);
        doc.add_text(self.all, &text);
        // The caller's text if it is UTF-8 (JSON text always is), else the record serialised.
        let given = source.and_then(|s| std::str::from_utf8(s).ok());
        match given {
            Some(source) => {
                debug_assert_eq!(
                    serde_json::from_str::<Value>(source).ok().as_ref(),
                    Some(record),
                    "the source text given for a record does not parse to it"
                );
                add_source(&mut doc, self.source, source, source_as_text);
            }
            None => {
                // Serialising a `Value` cannot fail. The text buffer is reused for it.
                let mut buf = text.into_bytes();
                buf.clear();
                let _ = serde_json::to_writer(&mut buf, record);
                let source = String::from_utf8(buf).unwrap_or_default();
                add_source(&mut doc, self.source, &source, source_as_text);
            }
        }
        doc
    }
}

fn add_source(doc: &mut TantivyDocument, field: Field, source: &str, as_text: bool) {
    if as_text {
        doc.add_text(field, source);
    } else {
        doc.add_bytes(field, source.as_bytes());
    }
}

/// Whether the index with schema `schema` keeps `_source` as text (this version) rather than
/// bytes (indices written before); `None` if it has no stored `_source` of either type.
pub fn source_is_text(schema: &Schema) -> Option<bool> {
    let entry = schema.get_field_entry(schema.get_field(SOURCE).ok()?);
    if !entry.is_stored() {
        return None;
    }
    match entry.field_type().value_type() {
        tantivy::schema::Type::Str => Some(true),
        tantivy::schema::Type::Bytes => Some(false),
        _ => None,
    }
}

/// Adds one value of a field to a document (skipped if it is not of the field's kind).
fn add_value(doc: &mut TantivyDocument, spec: &FieldSpec, v: &Value) {
    match spec.kind {
        Kind::Keyword => {
            if let Some(s) = keyword_value(v) {
                doc.add_text(spec.field, s);
            }
        }
        Kind::Long => {
            if let Some(n) = long_value(v) {
                doc.add_i64(spec.field, n);
            }
        }
        Kind::Ip => {
            if let Some(ip) = ip_value(v) {
                doc.add_ip_addr(spec.field, ip);
            }
        }
        Kind::Time => {
            if let Some(ms) = time_value_ms(v) {
                doc.add_date(spec.field, date_ms(ms));
            }
        }
    }
}

/// Collects the scalar values at a dotted Calico path. Unlike [`cattery_api::logs::get_path`],
/// arrays are traversed (as Elasticsearch flattens them): `servers.ip` on
/// `{"servers":[{"ip":"a"},{"ip":"b"}]}` gives `a` and `b`, and an array leaf gives each
/// element. Keys containing dots are found by trying the longest key first. Nulls are skipped.
pub fn values_at<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => {
            for i in items {
                values_at(i, path, out);
            }
        }
        Value::Object(obj) => {
            if let Some(x) = obj.get(path) {
                push_leaves(x, out);
                return;
            }
            let mut split = path.len();
            while let Some(i) = path[..split].rfind('.') {
                if let Some(x) = obj.get(&path[..i]) {
                    let before = out.len();
                    values_at(x, &path[i + 1..], out);
                    if out.len() > before {
                        return;
                    }
                }
                split = i;
            }
        }
        _ => {}
    }
}

fn push_leaves<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Null | Value::Object(_) => {}
        Value::Array(items) => {
            for i in items {
                push_leaves(i, out);
            }
        }
        scalar => out.push(scalar),
    }
}

/// A scalar as a keyword (numbers and booleans as their JSON text).
pub fn keyword_value(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Borrowed(if *b {
            "true"
        } else {
            "false"
        })),
        _ => None,
    }
}

/// A scalar as an integer: numbers (fractions truncated) and numeric strings; `-`/`*` are none.
pub fn long_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A scalar as an IP address (IPv4 as IPv4-mapped IPv6, as tantivy stores it).
pub fn ip_value(v: &Value) -> Option<Ipv6Addr> {
    v.as_str()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .map(ip_to_v6)
}

/// IPv4 → IPv4-mapped IPv6; IPv6 unchanged.
pub fn ip_to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// A record's time value in ms: JSON numbers are Unix seconds (Felix's flow and L7 logs),
/// strings are RFC 3339 (DNS logs, audit events). The JSON type decides, so one rule serves
/// every log type.
pub fn time_value_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(|s| s.saturating_mul(1000))
            .or_else(|| n.as_f64().map(|f| (f * 1000.0) as i64)),
        Value::String(s) => parse_rfc3339_ms(s),
        _ => None,
    }
}

/// Parses an RFC 3339 time to ms since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Appends every string value of `v` (not the keys, not numbers or booleans: those are
/// searched with filters) to `out`, space separated: the text the free-text `query` searches.
///
/// Top-level time fields and the audit event id are left out: each value is unique, so as
/// words they only grow the term dictionary (building and merging it was the largest single
/// cost of indexing an audit event), and they are searched by time range or `auditID=`
/// filter instead.
pub fn all_text(v: &Value, out: &mut String) {
    match v {
        Value::Object(obj) => obj
            .iter()
            .filter(|(k, _)| !excluded_from_text(k))
            .for_each(|(_, v)| push_text(v, out)),
        other => push_text(other, out),
    }
}

/// Like [`all_text`], but leaving out the string values in `skip` (compared by address: the
/// values of `record` that went into a word-searched keyword column).
fn text_except(v: &Value, skip: &[&Value], out: &mut String) {
    match v {
        Value::Object(obj) => obj
            .iter()
            .filter(|(k, _)| !excluded_from_text(k))
            .for_each(|(_, v)| push_text_except(v, skip, out)),
        other => push_text_except(other, skip, out),
    }
}

fn push_text_except(v: &Value, skip: &[&Value], out: &mut String) {
    match v {
        Value::String(s) => {
            if !skip.iter().any(|x| std::ptr::eq(*x, v)) {
                out.push_str(s);
                out.push(' ');
            }
        }
        Value::Number(_) | Value::Bool(_) | Value::Null => {}
        Value::Array(items) => items.iter().for_each(|i| push_text_except(i, skip, out)),
        Value::Object(obj) => obj.values().for_each(|i| push_text_except(i, skip, out)),
    }
}

/// Keyword fields whose words stay in `_all` although they have a column: values that are
/// nearly unique per record (pod names, domains, URLs, user agents), whose dictionaries are
/// about as large as the number of records, so scanning them for every free-text word would
/// cost more at query time than the postings cost at ingest.
fn words_stay_in_all(log_type: LogType, name: &str) -> bool {
    match log_type {
        LogType::Flows => matches!(name, "source_name" | "dest_name" | "dest_domains"),
        LogType::Dns => matches!(name, "client_name" | "qname" | "servers.name"),
        LogType::L7 => matches!(name, "url" | "user_agent"),
        LogType::Audit => matches!(
            name,
            "requestURI"
                | "userAgent"
                | "objectRef.name"
                | "annotations.authorization.k8s.io/reason"
        ),
    }
}

/// Whether the top-level field `key` is kept out of the free text (see [`all_text`]).
fn excluded_from_text(key: &str) -> bool {
    static EXCLUDED: OnceLock<Vec<&'static str>> = OnceLock::new();
    EXCLUDED
        .get_or_init(|| {
            let mut keys: Vec<&'static str> = LogType::ALL
                .iter()
                .flat_map(|t| t.fields().iter())
                .filter(|(_, k)| matches!(k, FieldKind::EpochSeconds | FieldKind::Rfc3339))
                .map(|(name, _)| *name)
                .collect();
            keys.push("auditID");
            keys
        })
        .contains(&key)
}

fn push_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Number(_) | Value::Bool(_) | Value::Null => {}
        Value::Array(items) => items.iter().for_each(|i| push_text(i, out)),
        Value::Object(obj) => obj.values().for_each(|i| push_text(i, out)),
    }
}

/// A tantivy date from epoch milliseconds, clamped to what it can hold (nanoseconds in an
/// `i64`, [`cattery_api::logs::MIN_TIME_MS`]..=[`cattery_api::logs::MAX_TIME_MS`]): times
/// come from records and search bodies, and `from_timestamp_millis` overflows beyond that.
pub(crate) fn date_ms(ms: i64) -> DateTime {
    use cattery_api::logs::{MAX_TIME_MS, MIN_TIME_MS};
    DateTime::from_timestamp_millis(ms.clamp(MIN_TIME_MS, MAX_TIME_MS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn free_text_leaves_out_times_and_audit_ids_but_keeps_nested_strings() {
        let mut text = String::new();
        all_text(
            &json!({"auditID": "5f0c-11", "stageTimestamp": "2026-11-25T01:02:03.456Z",
                "verb": "get", "user": {"username": "alice", "groups": ["dev"]},
                "responseStatus": {"code": 200}, "start_time": "2026-11-25T01:00:00Z"}),
            &mut text,
        );
        let mut words: Vec<&str> = text.split_whitespace().collect();
        words.sort();
        assert_eq!(words, ["alice", "dev", "get"]);
    }

    #[test]
    fn tantivy_names_are_unique_and_plain() {
        for t in LogType::ALL {
            let s = TypeSchema::new(t);
            let mut names: Vec<_> = s.fields.iter().map(|f| f.tname.clone()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), s.fields.len(), "{t}");
            assert!(
                names
                    .iter()
                    .all(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            );
            assert_eq!(s.lookup(t.time_field()).unwrap().tname, TIME);
        }
    }

    #[test]
    fn documents_hold_the_values_at_each_fields_path() {
        use tantivy::schema::Value as _;
        let ts = TypeSchema::new(LogType::Flows);
        let record = json!({"end_time": 1_795_478_400, "start_time": 1_795_478_100,
            "action": "allow", "source_port": "443", "dest_port": 53.7, "proto": null,
            "source_labels": {"labels": ["a=b", "c=d"]}, "dest_labels.labels": ["x=y"],
            "policies": {"enforced_policies": ["p1", "p2"], "pending_policies": []},
            "source_ip": "10.0.0.1", "dest_ip": "nope", "host": 7, "cluster": "forged"});
        let doc = ts.document("east", "s", 1, 1_795_478_400_000, &record, None, true);
        for spec in &ts.fields[1..] {
            if spec.field == ts.time {
                continue;
            }
            let mut leaves = Vec::new();
            values_at(&record, spec.name, &mut leaves);
            let want: Vec<String> = leaves
                .iter()
                .filter_map(|v| match spec.kind {
                    Kind::Keyword => keyword_value(v).map(|s| s.into_owned()),
                    Kind::Long => long_value(v).map(|n| n.to_string()),
                    Kind::Ip => ip_value(v).map(|ip| ip.to_string()),
                    Kind::Time => time_value_ms(v).map(|ms| ms.to_string()),
                })
                .collect();
            let got: Vec<String> = doc
                .get_all(spec.field)
                .map(|v| match spec.kind {
                    Kind::Keyword => v.as_str().unwrap_or_default().to_string(),
                    Kind::Long => v.as_i64().unwrap_or_default().to_string(),
                    Kind::Ip => v.as_ip_addr().map(|ip| ip.to_string()).unwrap_or_default(),
                    Kind::Time => v
                        .as_datetime()
                        .map(|d| d.into_timestamp_millis().to_string())
                        .unwrap_or_default(),
                })
                .collect();
            assert_eq!(got, want, "{}", spec.name);
        }
        let cluster: Vec<_> = doc.get_all(ts.cluster).filter_map(|v| v.as_str()).collect();
        assert_eq!(cluster, ["east"]);
    }

    #[test]
    fn ipv4_addresses_are_read_only_in_the_form_they_print() {
        for s in ["10.0.0.1", "0.0.0.0", "255.255.255.255", "192.168.1.20"] {
            let ip: IpAddr = s.parse().unwrap();
            let mut printed = String::new();
            crate::text::write_ip(ip_to_v6(ip), &mut printed);
            assert_eq!(printed, s);
        }
        for s in [
            "010.1.1.1",
            "1.2.3",
            "1.2.3.04",
            " 1.2.3.4",
            "1.2.3.4 ",
            "+1.2.3.4",
            "1.2.3.256",
        ] {
            assert!(s.parse::<IpAddr>().is_err(), "{s}");
        }
    }

    #[test]
    fn field_values_give_what_values_at_gives_for_every_field() {
        let records = [
            (
                LogType::Flows,
                json!({"end_time": 1, "action": "allow", "source_labels.labels": ["x"],
                    "source_labels": {"labels": ["y"]}, "dest_labels.labels": null,
                    "dest_labels": {"labels": ["z"]}, "policies": {"enforced_policies": ["p"]},
                    "policies.pending_policies": "q", "host": ["a", {"b": 1}, null, 2],
                    "zzz": 1, "aaa": "b", "dest_ip": "10.0.0.1"}),
            ),
            (
                LogType::Dns,
                json!({"end_time": "2026-11-24T00:00:00Z", "servers": [{"ip": "10.0.0.1",
                    "name": "a"}, {"ip": "fd00::1"}, {"name": "c"}], "qname": "x.y",
                    "servers.ip": null}),
            ),
            (
                LogType::Audit,
                json!({"stageTimestamp": "2026-11-24T00:00:00Z", "annotations":
                    {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "r"},
                    "user": {"username": "alice", "groups": ["dev", "ops"]},
                    "objectRef": {"resource": "pods", "name": "p"}, "verb": "get"}),
            ),
            (LogType::L7, json!(["not", "an", "object"])),
        ];
        for (t, record) in &records {
            let ts = TypeSchema::new(*t);
            let mut got = Vec::new();
            ts.field_values(record, &mut got);
            let mut by_lookup = Vec::new();
            ts.field_values_by_lookup(record, &mut by_lookup);
            for (i, spec) in ts.fields.iter().enumerate().skip(1) {
                if spec.field == ts.time {
                    continue;
                }
                let mut want = Vec::new();
                values_at(record, spec.name, &mut want);
                for pairs in [&got, &by_lookup] {
                    let have: Vec<&Value> = pairs
                        .iter()
                        .filter(|(j, _)| *j == i)
                        .map(|(_, v)| *v)
                        .collect();
                    assert_eq!(have.len(), want.len(), "{t} {}", spec.name);
                    assert!(
                        have.iter().zip(&want).all(|(a, b)| std::ptr::eq(*a, *b)),
                        "{t} {}",
                        spec.name
                    );
                }
            }
        }
    }

    #[test]
    fn values_traverse_arrays_and_dotted_keys() {
        let r = json!({"servers": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}, {"ip": null}],
            "annotations": {"authorization.k8s.io/decision": "allow"},
            "source_labels": {"labels": ["a=b", "c=d"]}, "x": null});
        let mut out = Vec::new();
        values_at(&r, "servers.ip", &mut out);
        assert_eq!(out, vec![&json!("10.0.0.1"), &json!("fd00::1")]);
        out.clear();
        values_at(&r, "annotations.authorization.k8s.io/decision", &mut out);
        assert_eq!(out, vec![&json!("allow")]);
        out.clear();
        values_at(&r, "source_labels.labels", &mut out);
        assert_eq!(out.len(), 2);
        out.clear();
        values_at(&r, "x", &mut out);
        assert!(out.is_empty());
    }
}
