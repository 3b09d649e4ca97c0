//! The few requests the management plane sends to the agent itself (not to the cluster's
//! Kubernetes API) over the tunnel.
//!
//! They are told apart by the URI authority: proxied requests use [`KUBE_AUTHORITY`], control
//! requests [`AGENT_AUTHORITY`], and the management plane's own controllers
//! [`SERVICE_AUTHORITY`]. The authority is set by the management plane, so a user's proxied
//! request can never reach a control endpoint nor act as the controllers' identity.

use serde::{Deserialize, Serialize};

/// Authority of requests meant for the agent.
pub const AGENT_AUTHORITY: &str = "agent.cattery";
/// Authority of requests to forward to the cluster's Kubernetes API.
pub const KUBE_AUTHORITY: &str = "kube.cattery";
/// Authority of the management plane's own requests to the cluster's Kubernetes API
/// (its controllers): the agent forwards them impersonating [`SERVICE_IDENTITY`] instead of
/// a user. The proxy always sets [`KUBE_AUTHORITY`] on users' requests, so this is a marker
/// no user request can carry.
pub const SERVICE_AUTHORITY: &str = "controller.cattery";
/// Namespace of the controllers' ServiceAccount in a managed cluster.
pub const SERVICE_ACCOUNT_NAMESPACE: &str = "cattery-system";
/// Name of the controllers' ServiceAccount in a managed cluster.
pub const SERVICE_ACCOUNT_NAME: &str = "cattery-controller";
/// The Kubernetes user the agent impersonates for [`SERVICE_AUTHORITY`] requests; the
/// managed cluster's RBAC on this ServiceAccount limits what the controllers can do.
pub const SERVICE_IDENTITY: &str = "system:serviceaccount:cattery-system:cattery-controller";
/// `GET`: returns [`AgentInfo`].
pub const PATH_INFO: &str = "/info";
/// `GET`: liveness probe used to detect a second agent with the same certificate.
pub const PATH_PING: &str = "/ping";
/// `POST` (text body): the management plane tells the agent why it refuses this tunnel
/// before closing it, so the agent can log the reason.
pub const PATH_REFUSED: &str = "/refused";
/// Header carrying the original HTTP/1.1 method of an upgrade sent as extended CONNECT.
pub const HEADER_UPGRADE_METHOD: &str = "x-cattery-upgrade-method";

/// What the agent reports about itself and its cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    /// The agent's version.
    pub agent_version: String,
    /// `gitVersion` from the cluster's `/version`, when reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// Why the Kubernetes version is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_error: Option<String>,
}

/// `GET ?after=SEQ&maxRecords=N&maxBytes=B&waitMs=MS`: the next batch of spooled log
/// records. `after` acknowledges every record up to SEQ (the management plane sends it only
/// once those records are durable in its store); the agent may then delete them. Without
/// `after`, the agent starts at its own acknowledgement cursor. 204 when nothing arrived
/// within `waitMs` (long poll).
pub const PATH_LOGS_NEXT: &str = "/logs/next";
/// Response header: the agent spool's stream id (exactly-once key with the seq).
pub const HEADER_LOG_STREAM: &str = "x-cattery-log-stream";
/// Response header: seq of the first record in the batch.
pub const HEADER_FIRST_SEQ: &str = "x-cattery-first-seq";
/// Response header: seq of the last record in the batch.
pub const HEADER_LAST_SEQ: &str = "x-cattery-last-seq";

/// One line of a log batch (NDJSON, gzip-compressed on the wire).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Position in the agent's spool.
    pub seq: u64,
    /// Log type.
    #[serde(rename = "type")]
    pub log_type: crate::logs::LogType,
    /// The record as the source wrote it.
    pub record: serde_json::Value,
}

/// [`LogLine`] with nothing else in it (for [`LogLine::parse`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExactLogLine {
    seq: u64,
    #[serde(rename = "type")]
    log_type: crate::logs::LogType,
    record: serde_json::Value,
}

impl LogLine {
    /// Parses one line of a batch, and also returns the record's own JSON text when the line
    /// is exactly as the agent writes it (`{"seq":N,"type":"T","record":…}`, no other member,
    /// no whitespace before the record), so the record need not be serialised again to be
    /// stored. Other valid lines parse as well, without the text.
    pub fn parse(line: &[u8]) -> Result<(LogLine, Option<&[u8]>), serde_json::Error> {
        let Ok(exact) = serde_json::from_slice::<ExactLogLine>(line) else {
            return serde_json::from_slice::<LogLine>(line).map(|l| (l, None));
        };
        let prefix = format!(
            "{{\"seq\":{},\"type\":\"{}\",\"record\":",
            exact.seq,
            exact.log_type.as_str()
        );
        // The object has exactly these three members (no duplicates, no others) and starts
        // with them in this order, so what follows `"record":` is the record, then
        // whitespace and the closing brace.
        let text = line
            .strip_prefix(prefix.as_bytes())
            .map(|rest| rest.trim_ascii_end())
            .and_then(|rest| rest.strip_suffix(b"}"))
            .map(<[u8]>::trim_ascii);
        let line = LogLine {
            seq: exact.seq,
            log_type: exact.log_type,
            record: exact.record,
        };
        Ok((line, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogType;

    #[test]
    fn log_lines_as_the_agent_writes_them_give_the_records_text() {
        let record = r#"{"end_time":1,"labels":{"a":"}"},"s":"\"record\":"}"#;
        let line = format!(r#"{{"seq":42,"type":"dns","record":{record}}}"#);
        let (parsed, text) = LogLine::parse(line.as_bytes()).unwrap();
        assert_eq!((parsed.seq, parsed.log_type), (42, LogType::Dns));
        assert_eq!(text, Some(record.as_bytes()));
        assert_eq!(
            parsed.record,
            serde_json::from_str::<serde_json::Value>(record).unwrap()
        );

        let spaced = format!("{{\"seq\":42,\"type\":\"dns\",\"record\":{record} }}\r");
        assert_eq!(
            LogLine::parse(spaced.as_bytes()).unwrap().1,
            Some(record.as_bytes())
        );

        // Anything else parses, but without the text.
        for other in [
            format!(r#"{{"seq":42,"type":"dns","record":{record},"extra":1}}"#),
            format!(r#"{{"type":"dns","seq":42,"record":{record}}}"#),
            format!(r#"{{ "seq":42,"type":"dns","record":{record}}}"#),
            format!(r#"{{"seq":42,"type":"dns","rec\u006frd":{record}}}"#),
        ] {
            let (parsed, text) = LogLine::parse(other.as_bytes()).unwrap();
            assert_eq!(parsed.seq, 42, "{other}");
            assert_eq!(text, None, "{other}");
        }
        assert!(LogLine::parse(br#"{"seq":1,"type":"dns","record":{},"record":{}}"#).is_err());
        assert!(LogLine::parse(b"{\"seq\":1}").is_err());
    }
}
