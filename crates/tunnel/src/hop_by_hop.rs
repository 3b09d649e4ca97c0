//! Headers that describe one HTTP connection and must not be forwarded by a proxy.
//!
//! The management plane's proxy and the agent both forward requests between connections
//! (client → server → tunnel → agent → the cluster's API server), so both drop the same
//! list: RFC 9110 §7.6.1's connection-specific fields, the legacy ones every proxy drops
//! (`Keep-Alive`, `Proxy-Connection`), and every header the `Connection` field names. HTTP/2
//! forbids most of them outright (RFC 9113 §8.2.2), so forwarding one onto the tunnel would
//! fail the stream.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Connection-specific headers (RFC 9110 §7.6.1, RFC 9113 §8.2.2, RFC 9112 §7.4 and
/// RFC 7230 appendix A.1.2 for the legacy ones), never forwarded.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers, first those the `Connection` field names, then
/// [`HOP_BY_HOP`].
pub fn strip(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn listed_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.append(
            "connection",
            HeaderValue::from_static("keep-alive, X-Private"),
        );
        h.append("connection", HeaderValue::from_static("x-other"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("example"));
        strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-keep"]);
    }
}
