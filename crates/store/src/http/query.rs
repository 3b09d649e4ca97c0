//! List and watch query parameters, as kube-apiserver reads them.

use std::time::Duration;

use crate::{FieldSelector, LabelSelector, WatchStart};

/// A query parameter that does not parse; the message names the parameter and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// The selection and paging of a list (`?labelSelector=&fieldSelector=&limit=&continue=`).
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0 or absent: everything).
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
}

impl ListParams {
    /// Reads the parameters through `get` (the caller's query map).
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, QueryError> {
        let labels = LabelSelector::parse(get("labelSelector").unwrap_or(""))
            .map_err(|e| QueryError(format!("labelSelector: {e}")))?;
        let fields = FieldSelector::parse(get("fieldSelector").unwrap_or(""))
            .map_err(|e| QueryError(format!("fieldSelector: {e}")))?;
        let limit = match get("limit") {
            Some(l) if !l.is_empty() => Some(l.parse::<usize>().map_err(|_| {
                QueryError(format!(
                    "limit: invalid value {l:?}: must be a non-negative integer"
                ))
            })?),
            _ => None,
        };
        let continue_token = get("continue").filter(|c| !c.is_empty()).map(Into::into);
        Ok(ListParams {
            labels,
            fields,
            limit,
            continue_token,
        })
    }
}

/// Where a watch starts, how long it lasts and whether it gets bookmarks.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// From `resourceVersion` and `sendInitialEvents`.
    pub start: WatchStart,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
}

/// Whether a boolean query flag is set (`true` or `1`).
pub fn flag(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "1"))
}

impl WatchParams {
    /// Reads the parameters through `get`: `resourceVersion` unset or `"0"` starts with the
    /// current objects (synthetic ADDED), `N` with every event after N;
    /// `sendInitialEvents=true` adds a BOOKMARK annotated `k8s.io/initial-events-end`.
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, QueryError> {
        let start = match get("resourceVersion").unwrap_or("") {
            _ if flag(get("sendInitialEvents")) => WatchStart::Snapshot {
                initial_events_end: true,
            },
            "" | "0" => WatchStart::Snapshot {
                initial_events_end: false,
            },
            rv => WatchStart::After(rv.parse().map_err(|_| {
                QueryError(format!(
                    "resourceVersion: invalid value {rv:?}: must be a number"
                ))
            })?),
        };
        let timeout = match get("timeoutSeconds") {
            Some(t) if !t.is_empty() => Some(Duration::from_secs(t.parse().map_err(|_| {
                QueryError(format!(
                    "timeoutSeconds: invalid value {t:?}: must be a non-negative integer"
                ))
            })?)),
            _ => None,
        };
        Ok(WatchParams {
            start,
            timeout,
            bookmarks: flag(get("allowWatchBookmarks")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
    }

    #[test]
    fn parses_and_names_bad_parameters() {
        let p = ListParams::parse(q(&[("labelSelector", "env=prod"), ("limit", "2")])).unwrap();
        assert_eq!(p.limit, Some(2));
        assert!(!p.labels.is_empty());
        let e = ListParams::parse(q(&[("limit", "-1")])).unwrap_err();
        assert!(e.0.starts_with("limit: invalid value \"-1\""), "{e}");
        let e = ListParams::parse(q(&[("labelSelector", "a in (")])).unwrap_err();
        assert!(e.0.starts_with("labelSelector: "), "{e}");
        let w = WatchParams::parse(q(&[("resourceVersion", "7"), ("allowWatchBookmarks", "1")]))
            .unwrap();
        assert!(matches!(w.start, WatchStart::After(7)));
        assert!(w.bookmarks);
        let e = WatchParams::parse(q(&[("resourceVersion", "x")])).unwrap_err();
        assert!(
            e.0.starts_with("resourceVersion: invalid value \"x\""),
            "{e}"
        );
    }
}
