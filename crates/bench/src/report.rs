//! What every report shares: the machine it ran on, the command that produced it, and
//! number formatting.

use std::path::Path;
use std::time::Duration;

/// The CPU model from `/proc/cpuinfo`.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// `N × CPU model (nproc = N), load average L`: the line that says where numbers come from.
pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!(
        "{cores} × {} (`nproc` = {cores}), load average {loadavg} at the end, loopback only",
        cpu_model()
    )
}

/// The command line as typed (shell-quoted where needed), for the report.
pub(crate) fn command_line() -> String {
    let mut args = std::env::args();
    let exe = args.next().map_or_else(
        || "cattery-bench".to_string(),
        |a| {
            Path::new(&a)
                .file_name()
                .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
        },
    );
    std::iter::once(exe)
        .chain(args.map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Today's date (UTC).
pub(crate) fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// `2 GiB`, `8 MiB` or `N bytes`.
pub(crate) fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// Formats with thousands separators and `decimals` fraction digits; `–` for NaN.
pub(crate) fn num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(a, b)| (a, b));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// KiB as MiB with one decimal.
pub(crate) fn mib(kib: u64) -> String {
    num(kib as f64 / 1024.0, 1)
}

/// A target's verdict.
pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// `5 s` or `300 ms`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Quantile `q` (0..=1, nearest rank) of sorted durations, in milliseconds; NaN if empty.
pub(crate) fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Appends what went wrong around a run (agents that stopped with an error, the server's
/// WARN/ERROR lines) to a report, so a number measured next to failures says so.
pub(crate) fn failures(o: &mut String, agent_failures: usize, server_problems: &[String]) {
    use std::fmt::Write as _;
    if agent_failures > 0 {
        let _ = writeln!(o, "\n{agent_failures} agent(s) stopped with an error.");
    }
    if let Some(first) = server_problems.first() {
        let _ = writeln!(
            o,
            "\nServer log: {} WARN/ERROR line(s), e.g. `{}`",
            server_problems.len(),
            first.trim()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(1234567.891, 1), "1,234,567.9");
        assert_eq!(num(-1234.0, 0), "-1,234");
        assert_eq!(num(12.0, 0), "12");
        assert_eq!(num(f64::NAN, 0), "–");
    }

    #[test]
    fn quantiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&v, 0.5), 51.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert_eq!(quantile_ms(&v, 1.0), 100.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(2 << 30), "2 GiB");
        assert_eq!(human_bytes(8 << 20), "8 MiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
