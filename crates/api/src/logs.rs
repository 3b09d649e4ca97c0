//! Log records: the four log types, the fields people filter on, and validation.
//!
//! Records keep Calico's field names and shapes exactly (see docs/architecture.md, decision
//! 7, and `docs/reference/calico-flow-fields.md`): they are stored as the JSON objects Felix
//! and kube-apiserver write, plus `cluster`, which the management plane sets from the
//! connection a record arrived on (whatever the record said is overwritten).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The four kinds of logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    /// Calico flow logs (`flows.log`).
    Flows,
    /// Calico DNS logs (`dns.log`).
    Dns,
    /// Calico L7 (HTTP) logs (`l7.log`).
    L7,
    /// Kubernetes `audit.k8s.io/v1` Events.
    Audit,
}

impl LogType {
    /// All types, in a stable order.
    pub const ALL: [LogType; 4] = [LogType::Flows, LogType::Dns, LogType::L7, LogType::Audit];

    /// The name used in URLs, RBAC resources and index names.
    pub fn as_str(self) -> &'static str {
        match self {
            LogType::Flows => "flows",
            LogType::Dns => "dns",
            LogType::L7 => "l7",
            LogType::Audit => "audit",
        }
    }

    /// Retention in days when not configured (Calico `LogStorage` defaults).
    pub fn default_retention_days(self) -> u32 {
        match self {
            LogType::Audit => 91,
            _ => 8,
        }
    }

    /// The fields indexed for filtering, sorting and aggregation.
    pub fn fields(self) -> &'static [(&'static str, FieldKind)] {
        use FieldKind::*;
        match self {
            LogType::Flows => &[
                ("start_time", EpochSeconds),
                ("end_time", EpochSeconds),
                ("action", Keyword),
                ("reporter", Keyword),
                ("proto", Keyword),
                ("source_ip", Ip),
                ("source_name", Keyword),
                ("source_name_aggr", Keyword),
                ("source_namespace", Keyword),
                ("source_port", Long),
                ("source_type", Keyword),
                ("source_labels.labels", Keyword),
                ("dest_ip", Ip),
                ("dest_name", Keyword),
                ("dest_name_aggr", Keyword),
                ("dest_namespace", Keyword),
                ("dest_port", Long),
                ("dest_type", Keyword),
                ("dest_labels.labels", Keyword),
                ("dest_service_name", Keyword),
                ("dest_service_namespace", Keyword),
                ("dest_service_port", Keyword),
                ("dest_domains", Keyword),
                ("policies.enforced_policies", Keyword),
                ("policies.pending_policies", Keyword),
                ("bytes_in", Long),
                ("bytes_out", Long),
                ("packets_in", Long),
                ("packets_out", Long),
                ("num_flows", Long),
                ("num_flows_started", Long),
                ("num_flows_completed", Long),
                ("host", Keyword),
                ("process_name", Keyword),
            ],
            LogType::Dns => &[
                ("start_time", Rfc3339),
                ("end_time", Rfc3339),
                ("type", Keyword),
                ("count", Long),
                ("client_ip", Ip),
                ("client_name", Keyword),
                ("client_name_aggr", Keyword),
                ("client_namespace", Keyword),
                ("qname", Keyword),
                ("qtype", Keyword),
                ("qclass", Keyword),
                ("rcode", Keyword),
                ("servers.ip", Ip),
                ("servers.name", Keyword),
                ("latency_count", Long),
                ("latency_mean", Long),
                ("latency_max", Long),
                ("host", Keyword),
            ],
            LogType::L7 => &[
                ("start_time", EpochSeconds),
                ("end_time", EpochSeconds),
                ("duration_mean", Long),
                ("duration_max", Long),
                ("bytes_in", Long),
                ("bytes_out", Long),
                ("count", Long),
                ("src_name_aggr", Keyword),
                ("src_namespace", Keyword),
                ("src_type", Keyword),
                ("dest_name_aggr", Keyword),
                ("dest_namespace", Keyword),
                ("dest_type", Keyword),
                ("dest_service_name", Keyword),
                ("dest_service_namespace", Keyword),
                ("dest_service_port", Long),
                ("method", Keyword),
                ("user_agent", Keyword),
                ("url", Keyword),
                ("response_code", Keyword),
                ("type", Keyword),
                ("protocol", Keyword),
                ("host", Keyword),
            ],
            LogType::Audit => &[
                ("requestReceivedTimestamp", Rfc3339),
                ("stageTimestamp", Rfc3339),
                ("auditID", Keyword),
                ("level", Keyword),
                ("stage", Keyword),
                ("verb", Keyword),
                ("requestURI", Keyword),
                ("user.username", Keyword),
                ("user.groups", Keyword),
                ("impersonatedUser.username", Keyword),
                ("impersonatedUser.groups", Keyword),
                ("sourceIPs", Ip),
                ("userAgent", Keyword),
                ("objectRef.resource", Keyword),
                ("objectRef.namespace", Keyword),
                ("objectRef.name", Keyword),
                ("objectRef.apiGroup", Keyword),
                ("responseStatus.code", Long),
                ("annotations.authorization.k8s.io/decision", Keyword),
                ("annotations.authorization.k8s.io/reason", Keyword),
            ],
        }
    }

    /// The field whose value is the record's time (what time ranges and retention use).
    pub fn time_field(self) -> &'static str {
        match self {
            LogType::Audit => "stageTimestamp",
            _ => "end_time",
        }
    }
}

impl std::fmt::Display for LogType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flows" => Ok(LogType::Flows),
            "dns" => Ok(LogType::Dns),
            "l7" => Ok(LogType::L7),
            "audit" => Ok(LogType::Audit),
            other => Err(format!(
                "unknown log type {other:?}; use flows, dns, l7 or audit"
            )),
        }
    }
}

/// How an indexed field is typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Exact-match string (also each element of an array of strings).
    Keyword,
    /// Integer.
    Long,
    /// IPv4 or IPv6 address (CIDR filters).
    Ip,
    /// Unix seconds (flows, L7).
    EpochSeconds,
    /// RFC 3339 string (DNS, audit).
    Rfc3339,
}

/// Reads a dotted path (`source_labels.labels`) from a record. Keys containing dots
/// (`annotations.authorization.k8s.io/decision`) are found by trying the longest key first.
pub fn get_path<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    let obj = record.as_object()?;
    if let Some(v) = obj.get(path) {
        return Some(v);
    }
    let mut split = path.len();
    while let Some(i) = path[..split].rfind('.') {
        if let Some(v) = obj.get(&path[..i])
            && let Some(found) = get_path(v, &path[i + 1..])
        {
            return Some(found);
        }
        split = i;
    }
    None
}

/// Why a record was rejected (the rest of its batch is still stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a JSON object.
    #[error("record is not a JSON object")]
    NotAnObject,
    /// A required field is missing or null.
    #[error("field {0:?} is required")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field {field:?} must be {expected}, got {got}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        got: String,
    },
    /// A time field is a number, but too large or small to be a time in milliseconds.
    #[error("field {field:?} is {got}, outside the range of Unix times")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// What it is.
        got: String,
    },
}

fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(s) => format!("the string {:?}", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Earliest record time the log store can index, in ms since the epoch (1677-09-21): the
/// store keeps times as nanoseconds in an `i64`.
pub const MIN_TIME_MS: i64 = i64::MIN / 1_000_000;
/// Latest record time the log store can index, in ms since the epoch (2262-04-11).
pub const MAX_TIME_MS: i64 = i64::MAX / 1_000_000;

/// The record's time in milliseconds since the Unix epoch, from its time field; a time
/// outside [`MIN_TIME_MS`]..=[`MAX_TIME_MS`] is refused.
pub fn record_time_ms(log_type: LogType, record: &Value) -> Result<i64, RecordError> {
    let field = log_type.time_field();
    let v = get_path(record, field)
        .filter(|v| !v.is_null())
        .ok_or(RecordError::Missing(field))?;
    let kind = log_type
        .fields()
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, k)| *k)
        .unwrap_or(FieldKind::Rfc3339);
    let out_of_range = || RecordError::OutOfRange {
        field,
        got: v.to_string(),
    };
    let ms = match kind {
        FieldKind::EpochSeconds => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .ok_or_else(|| RecordError::WrongType {
                field,
                expected: "Unix seconds (a number)",
                got: type_name(v),
            })?
            // The seconds come from the record (outside input): a huge value must be refused,
            // not overflow (a panic in the server's ingest, or a wrapped time in release).
            .checked_mul(1000)
            .ok_or_else(out_of_range)?,
        _ => v
            .as_str()
            .and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .ok_or_else(|| RecordError::WrongType {
                field,
                expected: "an RFC 3339 time",
                got: type_name(v),
            })?,
    };
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(out_of_range())
    }
}

/// Checks a record's indexed fields have the JSON types Calico writes (null allowed where
/// Felix writes null), sets `cluster`, and returns the record's time in milliseconds.
pub fn validate(log_type: LogType, record: &mut Value, cluster: &str) -> Result<i64, RecordError> {
    let obj: &mut Map<String, Value> = record.as_object_mut().ok_or(RecordError::NotAnObject)?;
    obj.insert("cluster".into(), Value::String(cluster.to_string()));
    let time = record_time_ms(log_type, record)?;
    for (field, kind) in log_type.fields() {
        let Some(v) = get_path(record, field) else {
            continue;
        };
        let ok = match (kind, v) {
            (_, Value::Null) => true,
            (FieldKind::Long | FieldKind::EpochSeconds, Value::Number(_)) => true,
            // Calico writes some "long" fields as strings in places (e.g. dest_service_port);
            // numeric strings are accepted and indexed as numbers.
            (FieldKind::Long, Value::String(s)) => s.parse::<i64>().is_ok() || s == "-" || s == "*",
            (FieldKind::Keyword, Value::String(_) | Value::Number(_) | Value::Bool(_)) => true,
            (FieldKind::Keyword | FieldKind::Ip, Value::Array(items)) => items
                .iter()
                .all(|i| i.is_string() || i.is_number() || i.is_null()),
            (FieldKind::Ip, Value::String(s)) => s.parse::<std::net::IpAddr>().is_ok() || s == "-",
            (FieldKind::Rfc3339, Value::String(_)) => true,
            _ => false,
        };
        if !ok {
            let expected = match kind {
                FieldKind::Keyword => "a string or an array of strings",
                FieldKind::Long => "a number",
                FieldKind::Ip => "an IP address",
                FieldKind::EpochSeconds => "Unix seconds (a number)",
                FieldKind::Rfc3339 => "an RFC 3339 time",
            };
            return Err(RecordError::WrongType {
                field,
                expected,
                got: type_name(v),
            });
        }
    }
    Ok(time)
}

/// The JSON text of a record after [`validate`], built from the text it arrived as: `text`
/// (a JSON object without a `cluster` member) with `"cluster":"<cluster>"` added before the
/// closing brace, so it parses to the validated record. `None` if `text` is not an object's
/// text. The caller checks that the record had no `cluster` (validate would have replaced it).
pub fn text_with_cluster(text: &[u8], cluster: &str) -> Option<Vec<u8>> {
    let text = text.trim_ascii();
    let body = text.strip_prefix(b"{")?.strip_suffix(b"}")?;
    let mut out = Vec::with_capacity(text.len() + cluster.len() + 16);
    out.push(b'{');
    out.extend_from_slice(body);
    if !body.trim_ascii().is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(b"\"cluster\":");
    serde_json::to_writer(&mut out, cluster).ok()?;
    out.push(b'}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_with_cluster_parses_to_the_validated_record() {
        for text in [
            r#"{"end_time": 1597166383, "action": "allow", "labels": {"a": "}"}}"#,
            "  {}\n",
            "{ }",
            r#"{"end_time":1597166383,"x":[1,{"y":null}]}"#,
        ] {
            let mut record: Value = serde_json::from_str(text).unwrap();
            if validate(LogType::Flows, &mut record, "east\"1").is_err() {
                record["cluster"] = json!("east\"1");
            }
            let out = text_with_cluster(text.as_bytes(), "east\"1").unwrap();
            assert_eq!(
                serde_json::from_slice::<Value>(&out).unwrap(),
                record,
                "{text}"
            );
        }
        assert_eq!(text_with_cluster(b"[1]", "e"), None);
        assert_eq!(text_with_cluster(b"", "e"), None);
    }

    #[test]
    fn validates_and_stamps_cluster() {
        let mut r = json!({"start_time": 1597166083, "end_time": 1597166383, "action": "allow", "source_ip": null,
            "source_labels": {"labels": ["app=a"]}, "cluster": "forged", "dest_port": 80});
        assert_eq!(
            validate(LogType::Flows, &mut r, "east").unwrap(),
            1597166383000
        );
        assert_eq!(r["cluster"], "east");
        let mut bad = json!({"end_time": "yesterday"});
        assert!(matches!(
            validate(LogType::Flows, &mut bad, "e"),
            Err(RecordError::WrongType {
                field: "end_time",
                ..
            })
        ));
        let mut bad = json!({"end_time": 1, "dest_port": {"x": 1}});
        let e = validate(LogType::Flows, &mut bad, "e")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dest_port"), "{e}");
        assert_eq!(
            validate(LogType::Flows, &mut json!([1]), "e"),
            Err(RecordError::NotAnObject)
        );
        assert_eq!(
            validate(LogType::Flows, &mut json!({}), "e"),
            Err(RecordError::Missing("end_time"))
        );
        let mut dns = json!({"end_time": "2026-11-24T10:00:00.123456789Z", "qname": "a.b"});
        assert_eq!(
            validate(LogType::Dns, &mut dns, "e").unwrap(),
            1795514400123
        );
    }

    /// A time in seconds from a record is multiplied to milliseconds: a huge one is refused
    /// naming the field (it overflowed: a panic in the server's ingest task, which then
    /// retried the same batch forever).
    #[test]
    fn a_time_too_large_for_milliseconds_is_refused_naming_the_field() {
        for huge in [
            json!(i64::MAX),
            json!(i64::MIN),
            json!(1e300),
            json!(9_300_000_000_000_000i64),
        ] {
            let mut r = json!({"end_time": huge});
            let e = validate(LogType::Flows, &mut r, "e").unwrap_err();
            assert!(
                matches!(
                    &e,
                    RecordError::OutOfRange {
                        field: "end_time",
                        ..
                    }
                ),
                "{huge}: {e:?}"
            );
            assert!(e.to_string().contains("end_time"), "{e}");
        }
        // The latest time the store can index is accepted.
        let max = MAX_TIME_MS / 1000;
        let mut r = json!({"end_time": max});
        assert_eq!(validate(LogType::Flows, &mut r, "e").unwrap(), max * 1000);
        // An RFC 3339 time the store cannot index is refused too.
        let mut dns = json!({"end_time": "9999-01-01T00:00:00Z", "qname": "a.b"});
        assert!(matches!(
            validate(LogType::Dns, &mut dns, "e"),
            Err(RecordError::OutOfRange {
                field: "end_time",
                ..
            })
        ));
    }

    #[test]
    fn dotted_paths_find_nested_and_dotted_keys() {
        let r = json!({"annotations": {"authorization.k8s.io/decision": "allow"}, "user": {"username": "bob"}});
        assert_eq!(
            get_path(&r, "annotations.authorization.k8s.io/decision"),
            Some(&json!("allow"))
        );
        assert_eq!(get_path(&r, "user.username"), Some(&json!("bob")));
        assert_eq!(get_path(&r, "user.nope"), None);
    }
}
