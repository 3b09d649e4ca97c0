//! Formatting of times, sizes and counts for display.

use maud::{Markup, html};

/// Now in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 (UTC, seconds) of epoch ms.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map(cattery_api::rfc3339)
        .unwrap_or_else(|_| ms.to_string())
}

/// A `<time>` element: UTC in the markup and on hover; `app.js` shows it in local time.
pub(crate) fn time_el(rfc3339: &str) -> Markup {
    let shown = rfc3339.replace('T', " ").replace('Z', " UTC");
    html! { time datetime=(rfc3339) title={ "UTC: " (rfc3339) } { (shown) } }
}

/// [`time_el`] of an optional time, `-` when absent.
pub(crate) fn opt_time(t: Option<&str>) -> Markup {
    match t {
        Some(t) if !t.is_empty() => time_el(t),
        _ => html! { span.muted { "–" } },
    }
}

/// `12.3 kB`, `4.5 MB`.
pub(crate) fn bytes(n: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", units[i])
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// `12,345`.
pub(crate) fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(bytes(999.0), "999 B");
        assert_eq!(bytes(12_345.0), "12.3 kB");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
    }
}
