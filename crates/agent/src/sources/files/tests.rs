use std::io::Write;
use std::time::Instant;

use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::*;
use crate::spool::{SpoolConfig, SpoolRecord};

const POLL: Duration = Duration::from_millis(10);

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
    counters: Arc<FileSourceCounters>,
}

impl Running {
    async fn stop(self) -> Arc<FileSourceCounters> {
        self.stop.cancel();
        self.task.await.unwrap();
        self.counters
    }
}

fn start(source: FileSource) -> Running {
    let stop = CancellationToken::new();
    let counters = source.counters();
    let task = tokio::spawn(source.with_poll_interval(POLL).run(stop.clone()));
    Running {
        stop,
        task,
        counters,
    }
}

fn open_spool(dir: &Path) -> Arc<Spool> {
    open_spool_with(SpoolConfig::new(dir))
}

fn open_spool_with(cfg: SpoolConfig) -> Arc<Spool> {
    Arc::new(Spool::open(cfg).unwrap().0)
}

fn line(i: u64) -> String {
    format!("{{\"i\":{i},\"action\":\"allow\"}}\n")
}

fn write(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn lines(range: std::ops::Range<u64>) -> String {
    range.map(line).collect()
}

fn ids(records: &[SpoolRecord]) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
            v["i"].as_u64().unwrap()
        })
        .collect()
}

/// Waits (bounded) until the spool holds `n` unacknowledged records; returns them.
async fn wait_for(spool: &Spool, n: usize) -> Vec<SpoolRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // One batch per spool epoch (a restart starts one): read on until there is no more.
        let mut got: Vec<SpoolRecord> = Vec::new();
        for _ in 0..100 {
            let after = got.last().map(|r| r.seq);
            let batch = spool.read_after(after, usize::MAX, usize::MAX).unwrap();
            if batch.is_empty() {
                break;
            }
            got.extend(batch);
        }
        if got.len() >= n || Instant::now() > deadline {
            assert_eq!(got.len(), n, "records in the spool: {:?}", ids(&got));
            return got;
        }
        tokio::time::sleep(POLL).await;
    }
}

struct Setup {
    tmp: TempDir,
    log: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("flows.log");
    Setup { tmp, log }
}

impl Setup {
    fn spool_dir(&self) -> PathBuf {
        self.tmp.path().join("spool")
    }
}

#[tokio::test]
async fn ships_complete_json_lines_and_skips_malformed_ones() {
    let s = setup();
    let spool = open_spool(&s.spool_dir());
    write(&s.log, &lines(0..3));
    write(&s.log, "not json\n[1,2]\n\n{\"broken\": \n");
    write(&s.log, &line(3));
    write(&s.log, "{\"i\":4,");
    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    let got = wait_for(&spool, 4).await;
    assert_eq!(ids(&got), [0, 1, 2, 3]);
    assert!(got.iter().all(|r| r.log_type == LogType::Flows));
    // The partial line waits for its newline.
    write(&s.log, "\"action\":\"deny\"}\n");
    let got = wait_for(&spool, 5).await;
    assert_eq!(ids(&got), [0, 1, 2, 3, 4]);
    let counters = run.stop().await;
    assert_eq!(counters.lines_shipped(), 5);
    assert_eq!(counters.lines_rejected(), 3);
}

#[tokio::test]
async fn waits_for_the_file_to_appear() {
    let s = setup();
    let spool = open_spool(&s.spool_dir());
    let run = start(FileSource::new(&s.log, LogType::Dns, spool.clone()));
    tokio::time::sleep(POLL * 5).await;
    write(&s.log, &lines(0..3));
    assert_eq!(ids(&wait_for(&spool, 3).await), [0, 1, 2]);
    assert_eq!(wait_for(&spool, 3).await[0].log_type, LogType::Dns);
    run.stop().await;
}

#[tokio::test]
async fn follows_rotation_finishing_the_old_file_first() {
    let s = setup();
    let spool = open_spool(&s.spool_dir());
    let mut writer = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&s.log)
        .unwrap();
    writer.write_all(lines(0..10).as_bytes()).unwrap();
    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    wait_for(&spool, 10).await;
    // As Felix does: rename, finish writing through the old handle, then a new file.
    fs::rename(&s.log, s.tmp.path().join("flows.log.1")).unwrap();
    writer.write_all(lines(10..12).as_bytes()).unwrap();
    drop(writer);
    write(&s.log, &lines(12..20));
    let got = wait_for(&spool, 20).await;
    assert_eq!(ids(&got), (0..20).collect::<Vec<_>>());
    // And once more.
    fs::rename(&s.log, s.tmp.path().join("flows.log.1")).unwrap();
    write(&s.log, &lines(20..25));
    let got = wait_for(&spool, 25).await;
    assert_eq!(ids(&got), (0..25).collect::<Vec<_>>());
    run.stop().await;
}

/// Two rotations between two looks (here: while the agent was down): the middle file is
/// read between the old one and the new one, and older rotated or compressed files are not.
#[tokio::test]
async fn two_rotations_between_looks_lose_nothing() {
    let s = setup();
    let spool = open_spool(&s.spool_dir());
    let dir = s.tmp.path();
    // Rotated and compressed long before: must not be read.
    write(&dir.join("flows.log.3"), &lines(900..905));
    write(&dir.join("flows.log.4.gz"), "compressed, not json\n");
    std::thread::sleep(Duration::from_millis(20)); // older mtimes than what follows
    write(&s.log, &lines(0..10));
    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    wait_for(&spool, 10).await;
    run.stop().await;

    // While the agent is down: rotate, finish, new file; rotate both again; a third file.
    fs::rename(&s.log, dir.join("flows.log.1")).unwrap();
    write(&dir.join("flows.log.1"), &lines(10..12));
    write(&s.log, &lines(12..15));
    fs::rename(dir.join("flows.log.1"), dir.join("flows.log.2")).unwrap();
    fs::rename(&s.log, dir.join("flows.log.1")).unwrap();
    write(&s.log, &lines(15..20));

    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    let got = wait_for(&spool, 20).await;
    assert_eq!(ids(&got), (0..20).collect::<Vec<_>>());
    // Nothing more arrives (no older rotated file, no second reading).
    write(&s.log, &lines(20..21));
    let got = wait_for(&spool, 21).await;
    assert_eq!(ids(&got), (0..21).collect::<Vec<_>>());
    let counters = run.stop().await;
    assert_eq!(counters.lines_rejected(), 0);
}

/// The same while the agent runs: whether or not it sees the middle state, every line is
/// read once, in order.
#[tokio::test]
async fn quick_successive_rotations_while_running_lose_nothing() {
    let s = setup();
    let spool = open_spool(&s.spool_dir());
    let dir = s.tmp.path();
    write(&s.log, &lines(0..5));
    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    wait_for(&spool, 5).await;
    let mut next = 5;
    for round in 0..5 {
        // Shift like logrotate: .k → .k+1, oldest first, then the file → .1.
        for k in (1..=round).rev() {
            fs::rename(
                dir.join(format!("flows.log.{k}")),
                dir.join(format!("flows.log.{}", k + 1)),
            )
            .unwrap();
        }
        fs::rename(&s.log, dir.join("flows.log.1")).unwrap();
        write(&s.log, &lines(next..next + 3));
        next += 3;
    }
    let got = wait_for(&spool, next as usize).await;
    assert_eq!(ids(&got), (0..next).collect::<Vec<_>>());
    run.stop().await;
}

#[tokio::test]
async fn restarts_from_the_beginning_after_copytruncate() {
    let s = setup();
    let spool = open_spool(&s.spool_dir());
    write(&s.log, &lines(0..10));
    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    wait_for(&spool, 10).await;
    fs::OpenOptions::new()
        .write(true)
        .open(&s.log)
        .unwrap()
        .set_len(0)
        .unwrap();
    write(&s.log, &lines(10..13));
    let got = wait_for(&spool, 13).await;
    assert_eq!(ids(&got), (0..13).collect::<Vec<_>>());
    run.stop().await;

    // Truncated and refilled beyond the old offset while the agent was down: the first
    // bytes differ, so it is a new file.
    fs::OpenOptions::new()
        .write(true)
        .open(&s.log)
        .unwrap()
        .set_len(0)
        .unwrap();
    write(&s.log, &lines(100..110));
    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    let got = wait_for(&spool, 23).await;
    assert_eq!(ids(&got[13..]), (100..110).collect::<Vec<_>>());
    run.stop().await;
}

#[tokio::test]
async fn a_restart_neither_rereads_nor_skips() {
    let s = setup();
    let spool = open_spool(&s.spool_dir());
    write(&s.log, &lines(0..10));
    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    wait_for(&spool, 10).await;
    run.stop().await;
    drop(spool);

    write(&s.log, &lines(10..20));
    let spool = open_spool(&s.spool_dir());
    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    let got = wait_for(&spool, 20).await;
    assert_eq!(ids(&got), (0..20).collect::<Vec<_>>());
    assert_eq!(run.stop().await.lines_shipped(), 10);

    // Rotated while the agent was down: the unread rest of the old file is found by its
    // inode next to the path and finished before the new file is read.
    drop(spool);
    write(&s.log, &lines(20..25));
    fs::rename(&s.log, s.tmp.path().join("flows.log.1")).unwrap();
    write(&s.log, &lines(25..30));
    let spool = open_spool(&s.spool_dir());
    let run = start(FileSource::new(&s.log, LogType::Flows, spool.clone()));
    let got = wait_for(&spool, 30).await;
    assert_eq!(ids(&got), (0..30).collect::<Vec<_>>());
    run.stop().await;
}

#[tokio::test]
async fn a_full_spool_pauses_the_file_without_losing_lines() {
    let s = setup();
    let spool = open_spool_with(SpoolConfig {
        max_bytes: 2048,
        segment_bytes: 512,
        ..SpoolConfig::new(s.spool_dir())
    });
    write(&s.log, &lines(0..200));
    let source = FileSource::new(&s.log, LogType::Flows, spool.clone()).with_chunk_limits(8, 4096);
    let run = start(source);
    // A shipper: read, then acknowledge what was read.
    let mut shipped = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while shipped.len() < 200 && Instant::now() < deadline {
        let batch = spool.read_after(None, 16, usize::MAX).unwrap();
        if let Some(last) = batch.last() {
            spool.ack(last.seq).unwrap();
        } else {
            tokio::time::sleep(POLL).await;
        }
        shipped.extend(ids(&batch));
    }
    assert_eq!(shipped, (0..200).collect::<Vec<_>>());
    assert!(spool.stats().bytes_on_disk <= 2048);
    run.stop().await;
}

#[tokio::test]
async fn an_overlong_line_is_rejected_alone() {
    let s = setup();
    let spool = open_spool(&s.spool_dir());
    write(&s.log, &line(0));
    write(
        &s.log,
        &format!("{{\"i\":1,\"pad\":\"{}\"}}\n", "x".repeat(300)),
    );
    write(&s.log, &lines(2..10));
    let source = FileSource::new(&s.log, LogType::L7, spool.clone()).with_chunk_limits(3, 100);
    let run = start(source);
    let got = wait_for(&spool, 9).await;
    assert_eq!(ids(&got), [0, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(run.stop().await.lines_rejected(), 1);
}
