//! `cattery logs flows|dns|l7|audit`: search, aggregate, export and follow central logs.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use cattery_api::logs::LogType;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::client::{ApiClient, ConnectArgs};

/// Output formats of `cattery logs`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per record with the most useful columns.
    Table,
    /// The search response (or records) as pretty JSON.
    Json,
    /// One JSON record per line.
    Ndjson,
}

/// Flags of `cattery logs`.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// flows, dns, l7 or audit.
    pub log_type: LogType,
    /// Cluster to search (repeat for several).
    #[arg(long = "cluster", conflicts_with = "all_clusters")]
    pub clusters: Vec<String>,
    /// Search every cluster you may read.
    #[arg(long)]
    pub all_clusters: bool,
    /// Start of the time range: a duration ago (15m, 1h, 7d) or an RFC 3339 time.
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// End of the time range (same forms); default now.
    #[arg(long)]
    pub until: Option<String>,
    /// Filters: FIELD=VALUE, FIELD!=VALUE, FIELD=A,B (any of), FIELD=PREFIX*, IPFIELD=CIDR, FIELD>=N, FIELD<N …
    #[arg(long = "where", value_name = "EXPR")]
    pub filters: Vec<String>,
    /// Free text that must appear in the record.
    #[arg(long)]
    pub query: Option<String>,
    /// Print the top values of FIELD instead of records.
    #[arg(long, value_name = "FIELD")]
    pub top: Option<String>,
    /// How many top values.
    #[arg(long, default_value_t = 10)]
    pub top_size: u32,
    /// Most records to print (0 = all, paging through everything).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Keep printing new records as they arrive.
    #[arg(short, long)]
    pub follow: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: LogFormat,
    /// Write records to FILE (with a progress bar on a terminal) instead of stdout.
    #[arg(long)]
    pub output_file: Option<PathBuf>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Parses a time flag (`--since`/`--until`): a duration ago (humantime's forms: `15m`, `1h`,
/// `7d`, `1h 30m`) or an RFC 3339 time, to epoch milliseconds.
fn parse_time(flag: &str, s: &str) -> anyhow::Result<i64> {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        anyhow::anyhow!("{flag} {s:?}: {e}; give a duration ago (15m, 1h, 7d) or an RFC 3339 time")
    })?;
    i64::try_from(d.as_millis())
        .ok()
        .and_then(|ago| now_ms.checked_sub(ago))
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| anyhow::anyhow!("{flag} {s:?}: reaches back before 1970"))
}

/// Turns one `--where` expression into a search filter (the translation is shared with
/// the Manager UI, in `cattery_api::filter_expr`).
pub fn parse_filter(expr: &str) -> anyhow::Result<Value> {
    cattery_api::filter_expr::parse_filter(expr)
        .map_err(|e| anyhow::anyhow!("--where {expr:?}: {e}"))
}

fn s<'a>(r: &'a Value, k: &str) -> &'a str {
    cattery_api::logs::get_path(r, k)
        .and_then(Value::as_str)
        .unwrap_or("-")
}

fn n(r: &Value, k: &str) -> String {
    cattery_api::logs::get_path(r, k)
        .map(|v| v.to_string().trim_matches('"').to_string())
        .unwrap_or_else(|| "-".into())
}

fn when(r: &Value, t: LogType) -> String {
    match cattery_api::logs::record_time_ms(t, r) {
        Ok(ms) => time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
            .map(cattery_api::rfc3339)
            .unwrap_or_default(),
        Err(_) => "-".into(),
    }
}

/// One table line for a record.
pub fn table_line(t: LogType, r: &Value) -> String {
    let c = s(r, "cluster");
    match t {
        LogType::Flows => format!(
            "{}  {c:<12} {:<5} {}/{} -> {}/{}:{} {} in={}B out={}B",
            when(r, t),
            s(r, "action"),
            s(r, "source_namespace"),
            s(r, "source_name_aggr"),
            s(r, "dest_namespace"),
            s(r, "dest_name_aggr"),
            n(r, "dest_port"),
            s(r, "proto"),
            n(r, "bytes_in"),
            n(r, "bytes_out")
        ),
        LogType::Dns => format!(
            "{}  {c:<12} {}/{} {} {} {}",
            when(r, t),
            s(r, "client_namespace"),
            s(r, "client_name_aggr"),
            s(r, "qname"),
            s(r, "qtype"),
            s(r, "rcode")
        ),
        LogType::L7 => format!(
            "{}  {c:<12} {}/{} -> {}/{} {} {} {}",
            when(r, t),
            s(r, "src_namespace"),
            s(r, "src_name_aggr"),
            s(r, "dest_namespace"),
            s(r, "dest_name_aggr"),
            s(r, "method"),
            s(r, "url"),
            n(r, "response_code")
        ),
        LogType::Audit => format!(
            "{}  {c:<12} {} {} {}/{}/{} {}",
            when(r, t),
            s(r, "user.username"),
            s(r, "verb"),
            s(r, "objectRef.namespace"),
            s(r, "objectRef.resource"),
            s(r, "objectRef.name"),
            n(r, "responseStatus.code")
        ),
    }
}

/// Runs `cattery logs`.
pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(args.connect.resolve()?)?;
    anyhow::ensure!(
        args.all_clusters || !args.clusters.is_empty(),
        "choose clusters with --cluster NAME (repeatable) or --all-clusters"
    );
    let clusters: Vec<String> = if args.all_clusters {
        vec!["*".into()]
    } else {
        args.clusters.clone()
    };
    let filters = args
        .filters
        .iter()
        .map(|f| parse_filter(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut time_range = json!({"from": parse_time("--since", &args.since)?});
    if let Some(u) = &args.until {
        time_range["to"] = json!(parse_time("--until", u)?);
    }
    let path = format!("/apis/logs.cattery.dev/v1/{}/search", args.log_type);
    let mut req = json!({"clusters": clusters, "timeRange": time_range, "filters": filters});
    if let Some(q) = &args.query {
        req["query"] = json!(q);
    }

    if let Some(field) = &args.top {
        req["size"] = json!(0);
        req["aggs"] = json!({"top": {"terms": {"field": field, "size": args.top_size}}});
        let res: Value = serde_json::from_slice(
            &client
                .call(http::Method::POST, &path, Some(serde_json::to_vec(&req)?))
                .await?,
        )?;
        if args.output != LogFormat::Table {
            println!(
                "{}",
                serde_json::to_string_pretty(&res["aggregations"]["top"])?
            );
            return Ok(());
        }
        let rows: Vec<Vec<String>> = res["aggregations"]["top"]["buckets"]
            .as_array()
            .map(|b| {
                b.iter()
                    .map(|b| {
                        vec![
                            b["key"].to_string().trim_matches('"').to_string(),
                            b["doc_count"].to_string(),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        crate::output::print_table(&[field.to_uppercase().as_str(), "COUNT"], &rows);
        return Ok(());
    }

    let mut out: Box<dyn Write> = match &args.output_file {
        Some(f) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(f).with_context(|| format!("creating {}", f.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = (args.output_file.is_some() && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} records {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut printed = 0usize;
    let mut all = Vec::new();
    let mut search_after: Option<Value> = None;
    loop {
        let want = if args.limit == 0 {
            1000
        } else {
            (args.limit - printed).min(1000)
        };
        if want == 0 {
            break;
        }
        req["size"] = json!(want);
        if let Some(sa) = &search_after {
            req["searchAfter"] = sa.clone();
        }
        let res: Value = serde_json::from_slice(
            &client
                .call(http::Method::POST, &path, Some(serde_json::to_vec(&req)?))
                .await?,
        )?;
        if let Some(b) = &bar {
            b.set_length(
                res["hits"]["total"]["value"]
                    .as_u64()
                    .unwrap_or(0)
                    .max(printed as u64),
            );
        }
        let hits = res["hits"]["hits"].as_array().cloned().unwrap_or_default();
        for h in &hits {
            let r = &h["_source"];
            match args.output {
                LogFormat::Table => writeln!(out, "{}", table_line(args.log_type, r))?,
                LogFormat::Ndjson => writeln!(out, "{r}")?,
                LogFormat::Json => all.push(r.clone()),
            }
        }
        printed += hits.len();
        if let Some(b) = &bar {
            b.set_position(printed as u64);
        }
        match hits.last() {
            Some(last) if hits.len() == want => search_after = Some(last["sort"].clone()),
            _ => break,
        }
    }
    if args.output == LogFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
    }
    out.flush()?;
    if let Some(b) = bar {
        b.finish();
    }
    if !args.follow {
        return Ok(());
    }
    follow(&client, &args, &clusters).await
}

async fn follow(client: &ApiClient, args: &LogsArgs, clusters: &[String]) -> anyhow::Result<()> {
    let mut path = format!(
        "/apis/logs.cattery.dev/v1/{}/tail?clusters={}",
        args.log_type,
        clusters.join(",")
    );
    for f in &args.filters {
        anyhow::ensure!(
            !f.contains("!=") && !f.contains('<') && !f.contains('>'),
            "--follow supports only FIELD=VALUE filters (got {f:?})"
        );
        path.push_str(&format!("&filter={}", super::cluster::encode(f)));
    }
    if let Some(q) = &args.query {
        path.push_str(&format!("&q={}", super::cluster::encode(q)));
    }
    let mut body = client.stream(&path).await?.into_body();
    let mut buf = Vec::new();
    let stdout = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the live tail was interrupted")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let mut kind = "message";
            let mut payload = String::new();
            for line in text.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = if k.trim() == "lagged" {
                        "lagged"
                    } else {
                        "message"
                    };
                } else if let Some(d) = line.strip_prefix("data:") {
                    payload.push_str(d.trim_start());
                }
            }
            if payload.is_empty() {
                continue;
            }
            if kind == "lagged" {
                eprintln!("warning: the live tail fell behind and skipped records: {payload}");
                continue;
            }
            let r: Value = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
            let mut out = stdout.lock();
            match args.output {
                LogFormat::Table => writeln!(out, "{}", table_line(args.log_type, &r))?,
                _ => writeln!(out, "{r}")?,
            }
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_errors_name_the_expression() {
        let e = parse_filter("bytes_in>=lots").unwrap_err().to_string();
        assert!(e.contains("--where \"bytes_in>=lots\""), "{e}");
        assert_eq!(
            parse_filter("action=deny").unwrap(),
            json!({"field":"action","equals":"deny"})
        );
    }

    #[test]
    fn times() {
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let t = parse_time("--since", "1h").unwrap();
        assert!((now - t - 3_600_000).abs() < 5_000);
        assert!((now - parse_time("--since", "2d").unwrap() - 172_800_000).abs() < 5_000);
        assert_eq!(
            parse_time("--since", "2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000
        );
        let e = parse_time("--until", "soon").unwrap_err().to_string();
        assert!(e.contains("--until"), "{e}");
        // Used to overflow `n * 86_400` (a panic in debug builds).
        let e = parse_time("--since", "99999999999999999d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--since"), "{e}");
        let t = parse_time("--since", "1h 30m").unwrap();
        assert!((now - t - 5_400_000).abs() < 5_000);
    }
}
