//! The JSON lines Felix writes to `flows.log`, `dns.log` and `l7.log`.
//!
//! Each struct serializes its fields in the order the Go type marshals them
//! (serde keeps declaration order), with Felix's types and null conventions
//! (`docs/reference/calico-flow-fields.md`):
//!
//! - flows: `JSONOutput` of `felix/collector/flowlog/json_serializer.go` —
//!   times are Unix seconds, aggregated IPs and ports are `null`, not
//!   applicable strings are `-`, labels are `{"labels": ["k=v", ...]}`,
//!   `policies` has `enforced_policies`, `pending_policies` and
//!   `transit_policies`; `host` is not written (fluentd adds it);
//! - DNS: Linseed's `v1.DNSLog` — times are RFC 3339 with nanoseconds (Go's
//!   `RFC3339Nano`, trailing zeros trimmed), `type` is `log`, `client_labels`
//!   is a map, `servers` are `{name, name_aggr, namespace, ip}`, `rrsets` are
//!   `{name, class, type, rdata}`, latencies are nanoseconds (both the
//!   `latency` object and the flat `latency_*` fields);
//! - L7: `felix/collector/l7log` `L7Log` — Unix-second times, durations and
//!   latency in nanoseconds (`time.Duration`), `src_` prefixes,
//!   `dest_service_port` the port number, `response_code` a string, `url`
//!   the host followed by the path.

use std::collections::BTreeMap;

use serde::Serialize;

/// `source_labels` / `dest_labels`: `{"labels": ["k=v", ...]}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowLabels {
    /// `k=v` strings, sorted.
    pub labels: Vec<String>,
}

impl FlowLabels {
    /// From a label map (`None` for non-pod endpoints, which Felix writes as `null`).
    pub fn from_map(labels: &BTreeMap<String, String>) -> FlowLabels {
        FlowLabels {
            labels: labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        }
    }
}

/// `policies`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowPolicies {
    /// Policies that decided the flow.
    pub enforced_policies: Vec<String>,
    /// Policies including staged ones (the same here: nothing is staged).
    pub pending_policies: Vec<String>,
    /// Policies of transit (forwarded) traffic; always empty here.
    pub transit_policies: Vec<String>,
}

/// One `flows.log` line.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct FlowLog {
    pub start_time: i64,
    pub end_time: i64,
    pub source_ip: Option<String>,
    pub source_name: String,
    pub source_name_aggr: String,
    pub source_namespace: String,
    pub nat_outgoing_ports: Option<Vec<u16>>,
    pub source_port: Option<u16>,
    pub source_type: String,
    pub source_labels: Option<FlowLabels>,
    pub dest_ip: Option<String>,
    pub dest_name: String,
    pub dest_name_aggr: String,
    pub dest_namespace: String,
    pub dest_port: Option<u16>,
    pub dest_type: String,
    pub dest_labels: Option<FlowLabels>,
    pub dest_service_namespace: String,
    pub dest_service_name: String,
    pub dest_service_port: String,
    pub dest_service_port_num: Option<u16>,
    pub dest_domains: Option<Vec<String>>,
    pub proto: String,
    pub action: String,
    pub reporter: String,
    pub policies: Option<FlowPolicies>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub num_flows: u64,
    pub num_flows_started: u64,
    pub num_flows_completed: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub transit_bytes_in: u64,
    pub transit_bytes_out: u64,
    pub transit_packets_in: u64,
    pub transit_packets_out: u64,
    pub http_requests_allowed_in: u64,
    pub http_requests_denied_in: u64,
    pub process_name: String,
    pub num_process_names: u64,
    pub process_id: String,
    pub num_process_ids: u64,
    pub process_args: Vec<String>,
    pub num_process_args: u64,
    pub original_source_ips: Option<Vec<String>>,
    pub num_original_source_ips: u64,
    pub tcp_mean_send_congestion_window: u64,
    pub tcp_min_send_congestion_window: u64,
    pub tcp_mean_smooth_rtt: u64,
    pub tcp_max_smooth_rtt: u64,
    pub tcp_mean_min_rtt: u64,
    pub tcp_max_min_rtt: u64,
    pub tcp_mean_mss: u64,
    pub tcp_min_mss: u64,
    pub tcp_total_retransmissions: u64,
    pub tcp_lost_packets: u64,
    pub tcp_unrecovered_to: u64,
}

/// A DNS server in `servers`.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct DnsServer {
    pub name: String,
    pub name_aggr: String,
    pub namespace: String,
    pub ip: String,
}

/// One resource record set in `rrsets`.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct DnsRrSet {
    pub name: String,
    pub class: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub rdata: Vec<String>,
}

/// `latency`.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct DnsLatency {
    pub count: u64,
    pub mean: u64,
    pub max: u64,
}

/// One `dns.log` line.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct DnsLog {
    pub start_time: String,
    pub end_time: String,
    #[serde(rename = "type")]
    pub log_type: String,
    pub count: u64,
    pub client_name: String,
    pub client_name_aggr: String,
    pub client_namespace: String,
    pub client_ip: Option<String>,
    pub client_labels: BTreeMap<String, String>,
    pub servers: Vec<DnsServer>,
    pub qname: String,
    pub qclass: String,
    pub qtype: String,
    pub rcode: String,
    /// `null` when there are no answers (Go marshals the empty map so).
    pub rrsets: Option<Vec<DnsRrSet>>,
    pub latency: DnsLatency,
    pub latency_count: u64,
    pub latency_mean: u64,
    pub latency_max: u64,
}

/// One `l7.log` line.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct L7Log {
    pub start_time: i64,
    pub end_time: i64,
    pub duration_mean: u64,
    pub duration_max: u64,
    pub latency: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub count: u64,
    pub src_name_aggr: String,
    pub src_namespace: String,
    pub src_type: String,
    pub source_port_num: u16,
    pub dest_name_aggr: String,
    pub dest_namespace: String,
    pub dest_type: String,
    pub dest_port_num: u16,
    pub dest_service_name: String,
    pub dest_service_namespace: String,
    pub dest_service_port_name: String,
    pub dest_service_port: u16,
    pub method: String,
    pub user_agent: String,
    pub url: String,
    pub response_code: String,
    pub route_name: String,
    #[serde(rename = "type")]
    pub log_type: String,
    pub gateway_name: String,
    pub protocol: String,
}

/// Formats Unix nanoseconds as Go's `time.RFC3339Nano` in UTC
/// (`2006-01-02T15:04:05.999999999Z`: fraction trimmed of trailing zeros,
/// omitted when zero).
pub fn rfc3339_nano(unix_nanos: i128) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Serializes a record as one newline-terminated JSON line.
pub fn to_line<T: Serialize>(record: &T) -> String {
    let mut s = serde_json::to_string(record).expect("log records always serialize");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_nano_trims_like_go() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(1_795_514_400_123_456_789),
            "2026-11-24T10:00:00.123456789Z"
        );
        assert_eq!(
            rfc3339_nano(1_795_514_400_120_000_000),
            "2026-11-24T10:00:00.12Z"
        );
    }
}
