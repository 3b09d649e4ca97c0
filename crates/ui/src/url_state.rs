//! What a page shows lives in its URL (`?cluster=east&range=1h&where=action=deny`), so a
//! reload or a shared link shows the same thing.

use crate::api::enc;

/// The cluster choice `All clusters`.
pub(crate) const ALL: &str = "all";

/// Time ranges offered, as (URL value, label, milliseconds).
pub(crate) const RANGES: &[(&str, &str, i64)] = &[
    ("15m", "Last 15 minutes", 15 * 60_000),
    ("1h", "Last hour", 3_600_000),
    ("6h", "Last 6 hours", 6 * 3_600_000),
    ("24h", "Last 24 hours", 24 * 3_600_000),
    ("7d", "Last 7 days", 7 * 24 * 3_600_000),
    ("30d", "Last 30 days", 30 * 24 * 3_600_000),
];

/// The state shared by every page, plus the page's own parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct UrlState {
    /// `all`, `cluster` (the management plane) or a managed cluster; None = not chosen.
    pub(crate) cluster: Option<String>,
    /// One of [`RANGES`]; None = the default hour.
    pub(crate) range: Option<String>,
    /// `--where` expressions.
    pub(crate) filters: Vec<String>,
    /// Free text.
    pub(crate) q: String,
    /// Everything else, in order (page-specific: sort, page, after, expand…).
    pub(crate) extra: Vec<(String, String)>,
}

impl UrlState {
    /// Parses a query string.
    pub(crate) fn parse(query: Option<&str>) -> UrlState {
        let mut s = UrlState::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "cluster" if !v.is_empty() => s.cluster = Some(v),
                "range" if !v.is_empty() => s.range = Some(v),
                "where" => {
                    for line in v.lines().map(str::trim).filter(|l| !l.is_empty()) {
                        s.filters.push(line.to_string());
                    }
                }
                "q" => s.q = v.trim().to_string(),
                "cluster" | "range" => {}
                _ => s.extra.push((k.into_owned(), v)),
            }
        }
        s
    }

    /// A page-specific parameter.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The range's URL value, its label and its length in ms, or why it is not valid.
    pub(crate) fn range(&self) -> Result<(&'static str, &'static str, i64), String> {
        let want = self.range.as_deref().unwrap_or("1h");
        RANGES
            .iter()
            .find(|(v, _, _)| *v == want)
            .copied()
            .ok_or_else(|| {
                format!(
                    "range {want:?} is not offered; use one of {}",
                    RANGES.iter().map(|r| r.0).collect::<Vec<_>>().join(", ")
                )
            })
    }

    /// `[from, to)` in epoch ms for the range, ending now.
    pub(crate) fn window_ms(&self) -> (i64, i64) {
        let len = self.range().map(|r| r.2).unwrap_or(3_600_000);
        let now = crate::fmt::now_ms();
        (now - len, now + 1)
    }

    /// The shared state only (cluster, range, filters, text) as a query string.
    pub(crate) fn common_query(&self) -> String {
        let mut parts = vec![];
        if let Some(c) = &self.cluster {
            parts.push(format!("cluster={}", enc(c)));
        }
        if let Some(r) = &self.range {
            parts.push(format!("range={}", enc(r)));
        }
        for f in &self.filters {
            parts.push(format!("where={}", enc(f)));
        }
        if !self.q.is_empty() {
            parts.push(format!("q={}", enc(&self.q)));
        }
        parts.join("&")
    }

    /// Everything, as a query string.
    pub(crate) fn query(&self) -> String {
        let mut q = self.common_query();
        for (k, v) in &self.extra {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(&format!("{}={}", enc(k), enc(v)));
        }
        q
    }

    /// `path?<shared state>`: a link to another page keeping the selection.
    pub(crate) fn link(&self, path: &str) -> String {
        let q = self.common_query();
        if q.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{q}")
        }
    }

    /// This state with page parameter `key` set to `value` (None removes it).
    pub(crate) fn with(&self, key: &str, value: Option<&str>) -> UrlState {
        let mut s = self.clone();
        s.extra.retain(|(k, _)| k != key);
        if let Some(v) = value {
            s.extra.push((key.to_string(), v.to_string()));
        }
        s
    }

    /// This state without page parameters.
    pub(crate) fn common(&self) -> UrlState {
        UrlState {
            extra: vec![],
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_query_string() {
        let s = UrlState::parse(Some(
            "cluster=east&range=6h&where=action%3Ddeny&where=dest_port%3E%3D80&q=db+1&page=2",
        ));
        assert_eq!(s.cluster.as_deref(), Some("east"));
        assert_eq!(s.filters, vec!["action=deny", "dest_port>=80"]);
        assert_eq!(s.q, "db 1");
        assert_eq!(s.get("page"), Some("2"));
        assert_eq!(UrlState::parse(Some(&s.query())), s);
        assert_eq!(s.range().unwrap().0, "6h");
        assert!(
            UrlState::parse(Some("range=2y"))
                .range()
                .unwrap_err()
                .contains("2y")
        );
        let multi = UrlState::parse(Some("where=a%3D1%0Ab%3D2%0A"));
        assert_eq!(multi.filters, vec!["a=1", "b=2"]);
        assert_eq!(s.with("page", None).get("page"), None);
        assert!(
            s.link("/ui/flows")
                .starts_with("/ui/flows?cluster=east&range=6h")
        );
    }
}
