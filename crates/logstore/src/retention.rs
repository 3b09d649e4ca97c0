//! Retention: how long each log type is kept, and which daily indices are past it.
//!
//! A daily index `<type>-YYYY-MM-DD` holds the records whose time falls on that UTC day. It
//! is deleted whole once its *newest possible* record is older than the retention: when
//! `end of day <= now - retention`. So nothing younger than the retention is ever deleted,
//! and a day is kept at most one day longer than the retention.

use cattery_api::logs::LogType;
use serde::{Deserialize, Serialize};

/// Milliseconds per day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Days to keep each log type. The default is Calico's `LogStorage` default (flows, DNS and
/// L7 8 days, audit 91).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Flow logs.
    pub flows: u32,
    /// DNS logs.
    pub dns: u32,
    /// L7 logs.
    pub l7: u32,
    /// Audit logs.
    pub audit: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            flows: LogType::Flows.default_retention_days(),
            dns: LogType::Dns.default_retention_days(),
            l7: LogType::L7.default_retention_days(),
            audit: LogType::Audit.default_retention_days(),
        }
    }
}

impl Retention {
    /// Days kept for `t`.
    pub fn days(&self, t: LogType) -> u32 {
        match t {
            LogType::Flows => self.flows,
            LogType::Dns => self.dns,
            LogType::L7 => self.l7,
            LogType::Audit => self.audit,
        }
    }

    /// The same retention with `t` kept `days` days.
    pub fn with(mut self, t: LogType, days: u32) -> Self {
        match t {
            LogType::Flows => self.flows = days,
            LogType::Dns => self.dns = days,
            LogType::L7 => self.l7 = days,
            LogType::Audit => self.audit = days,
        }
        self
    }

    /// Whether the index of `t` for `day` (days since the epoch) is past retention at `now_ms`.
    pub(crate) fn is_expired(&self, t: LogType, day: i64, now_ms: i64) -> bool {
        (day + 1) * DAY_MS <= now_ms - i64::from(self.days(t)) * DAY_MS
    }
}

/// The UTC day (days since the epoch) of a time in ms.
pub(crate) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// `flows-2026-11-24`.
pub(crate) fn index_name(t: LogType, day: i64) -> String {
    let date = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(day);
    format!(
        "{}-{:04}-{:02}-{:02}",
        t.as_str(),
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The inverse of [`index_name`]; `None` for anything else in the data directory.
pub(crate) fn parse_index_name(name: &str) -> Option<(LogType, i64)> {
    let (t, date) = name.split_once('-')?;
    let t: LogType = t.parse().ok()?;
    let date = time::Date::parse(
        date,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    let day = (date.midnight().assume_utc().unix_timestamp()).div_euclid(86_400);
    (index_name(t, day) == name).then_some((t, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let day = day_of(1_795_514_400_123); // 2026-11-24T10:00:00.123Z
        assert_eq!(index_name(LogType::Flows, day), "flows-2026-11-24");
        assert_eq!(
            parse_index_name("flows-2026-11-24"),
            Some((LogType::Flows, day))
        );
        assert_eq!(
            parse_index_name("audit-1969-12-31"),
            Some((LogType::Audit, -1))
        );
        assert_eq!(parse_index_name("flows-2026-11-24.tmp"), None);
        assert_eq!(parse_index_name("nope-2026-11-24"), None);
    }

    #[test]
    fn expiry_boundary() {
        let r = Retention::default().with(LogType::Flows, 8);
        let day = 100;
        let end_of_day = (day + 1) * DAY_MS;
        assert!(!r.is_expired(LogType::Flows, day, end_of_day + 8 * DAY_MS - 1));
        assert!(r.is_expired(LogType::Flows, day, end_of_day + 8 * DAY_MS));
        assert!(!r.is_expired(LogType::Audit, day, end_of_day + 8 * DAY_MS));
    }
}
