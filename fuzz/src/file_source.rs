//! Log files as the agent's file source reads them: the fuzzed bytes are a log file, tailed by
//! a real `FileSource` into a real spool; every line that is one JSON object is spooled
//! byte for byte, every other non-blank line is counted as rejected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cattery_agent::sources::files::FileSource;
use cattery_agent::spool::{Spool, SpoolConfig};
use cattery_api::logs::LogType;
use tokio_util::sync::CancellationToken;

/// The lines the source should spool, as it splits them (LF, optional CR before it).
fn expected(data: &[u8]) -> (Vec<&[u8]>, u64) {
    let (mut good, mut bad) = (Vec::new(), 0);
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let object = line.trim_ascii_start().first() == Some(&b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok();
        if object { good.push(line) } else { bad += 1 }
    }
    (good, bad)
}

/// Runs one input; panics when an invariant breaks.
pub fn check(data: &[u8]) {
    // A line-terminated file: the source waits for the end of an unterminated last line.
    let mut file = data.to_vec();
    if !file.ends_with(b"\n") {
        file.push(b'\n');
    }
    let (good, bad) = expected(&file);
    let tmp = tempfile::Builder::new()
        .prefix("source-fuzz")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir");
    let path = tmp.path().join("flows.log");
    std::fs::write(&path, &file).expect("write log file");
    let (spool, _) = Spool::open(SpoolConfig::new(tmp.path().join("spool"))).expect("spool");
    let spool = Arc::new(spool);
    let source = FileSource::new(&path, LogType::Flows, spool.clone())
        .with_poll_interval(Duration::from_millis(1));
    let counters = source.counters();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stop = CancellationToken::new();
        let task = tokio::spawn(source.run(stop.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters.lines_shipped() + counters.lines_rejected() < good.len() as u64 + bad
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.cancel();
        task.await.expect("source task");
    });
    assert_eq!(counters.lines_rejected(), bad, "rejected lines");
    assert_eq!(counters.lines_shipped(), good.len() as u64, "shipped lines");
    let read = spool
        .read_after(None, usize::MAX, usize::MAX)
        .expect("read spool");
    let got: Vec<&[u8]> = read.iter().map(|r| r.data.as_slice()).collect();
    assert_eq!(
        got, good,
        "spooled records differ from the file's object lines"
    );
}
