use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader as StdBufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        max_bytes: 1 << 20,
        segment_bytes: 1024,
    }
}

fn open(cfg: &SpoolConfig) -> (Spool, OpenReport) {
    Spool::open(cfg.clone()).expect("open spool")
}

fn rec(i: u64) -> Vec<u8> {
    format!(r#"{{"i":{i}}}"#).into_bytes()
}

/// Appends records `i` for each `i` in `range` as one frame.
fn append(spool: &Spool, range: std::ops::Range<u64>) -> (u64, u64) {
    let data: Vec<Vec<u8>> = range.map(rec).collect();
    let records: Vec<(LogType, &[u8])> = data.iter().map(|d| (LogType::Flows, &d[..])).collect();
    spool.append(&records, None).expect("append")
}

/// Every unacknowledged record, batch after batch (one batch per epoch).
fn read_all(spool: &Spool) -> Vec<SpoolRecord> {
    read_batches(spool)
        .into_iter()
        .flat_map(|b| b.records)
        .collect()
}

/// Every unacknowledged record as the shipper gets them: one batch per epoch.
fn read_batches(spool: &Spool) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for _ in 0..1000 {
        let after = out.last().and_then(|b| b.records.last()).map(|r| r.seq);
        let batch = spool
            .read_batch(after, usize::MAX, usize::MAX)
            .expect("read");
        if batch.records.is_empty() {
            return out;
        }
        out.push(batch);
    }
    panic!("more than 1000 batches");
}

fn seqs(records: &[SpoolRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir).unwrap()
}

#[test]
fn append_read_ack_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, report) = open(&config(tmp.path()));
    assert_eq!(report.recovered_records, 0);
    assert_eq!(append(&spool, 0..3), (1, 3));
    assert_eq!(append(&spool, 3..5), (4, 5));
    assert_eq!(spool.last_seq(), 5);

    let all = read_all(&spool);
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all[4].data, rec(4));
    assert_eq!(all[0].log_type, LogType::Flows);
    // Reading does not consume: the shipper keeps its own cursor until it acks.
    assert_eq!(
        seqs(&spool.read_after(Some(2), 2, usize::MAX).unwrap()),
        [3, 4]
    );
    assert_eq!(
        seqs(&spool.read_after(None, 10, 1).unwrap()),
        [1],
        "at least one record"
    );
    assert_eq!(seqs(&spool.read_after(None, 10, 14).unwrap()), [1, 2]);
    assert!(spool.read_after(Some(5), 10, 100).unwrap().is_empty());

    spool.ack(3).unwrap();
    assert_eq!(seqs(&read_all(&spool)), [4, 5]);
    assert_eq!(
        seqs(&spool.read_after(Some(1), 10, 1000).unwrap()),
        [4, 5],
        "acked never again"
    );
    let stats = spool.stats();
    assert_eq!(
        (stats.pending_records, stats.acked_seq, stats.last_seq),
        (2, 3, 5)
    );
    assert!(matches!(
        spool.ack(6),
        Err(SpoolError::AckBeyondEnd { seq: 6, last: 5 })
    ));
    spool.ack(2).unwrap(); // an old ack is harmless
    assert_eq!(spool.stats().acked_seq, 3);
}

#[test]
fn reopen_keeps_records_stream_and_seqs() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let (spool, _) = open(&cfg);
    let stream = spool.stream_id().to_owned();
    assert_eq!(stream.len(), 32);
    append(&spool, 0..4);
    spool.ack(2).unwrap();
    drop(spool);

    let (spool, report) = open(&cfg);
    // A new epoch: records from now on get a new stream id, the old ones keep theirs.
    assert_ne!(spool.stream_id(), stream);
    assert_eq!(report.recovered_records, 2);
    assert_eq!(seqs(&read_all(&spool)), [3, 4]);
    assert_eq!(append(&spool, 4..5), (5, 5));
    let batches = read_batches(&spool);
    assert_eq!(batches.len(), 2, "cut at the epoch boundary");
    assert_eq!(batches[0].stream_id, stream);
    assert_eq!(seqs(&batches[0].records), [3, 4]);
    assert_eq!(batches[1].stream_id, spool.stream_id());
    assert_eq!(seqs(&batches[1].records), [5]);
    spool.ack(5).unwrap();
    assert!(
        segment_files(tmp.path()).is_empty(),
        "fully acked segments are deleted"
    );
    drop(spool);

    // With every segment gone, the ledger still knows the highest seq.
    let (spool, _) = open(&cfg);
    assert_eq!(spool.last_seq(), 5);
    assert_eq!(append(&spool, 5..6), (6, 6));
}

#[test]
fn segments_roll_and_are_deleted_only_when_fully_acked() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = open(&config(tmp.path()));
    for i in 0..100 {
        append(&spool, i * 10..i * 10 + 10);
    }
    let files = segment_files(tmp.path());
    assert!(files.len() > 10, "{} segments", files.len());
    let before = spool.stats().bytes_on_disk;
    spool.ack(505).unwrap();
    let after = segment_files(tmp.path());
    assert!(after.len() < files.len() && after.len() > 1);
    assert!(spool.stats().bytes_on_disk < before);
    assert_eq!(
        read_all(&spool)[0].seq,
        506,
        "a partly acked segment stays, its acked records hidden"
    );
    assert_eq!(spool.stats().pending_records, 495);
    spool.ack(1000).unwrap();
    assert!(segment_files(tmp.path()).is_empty());
    assert_eq!(spool.stats().bytes_on_disk, 0);
    assert_eq!(append(&spool, 0..1), (1001, 1001));
}

#[test]
fn checkpoints_are_atomic_with_records_and_survive_deletion() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let (spool, _) = open(&cfg);
    assert_eq!(spool.checkpoint("a"), None);
    let r = rec(1);
    spool
        .append(&[(LogType::Dns, &r)], Some(("a", b"1")))
        .unwrap();
    spool.append(&[], Some(("b", b"x"))).unwrap();
    assert_eq!(spool.checkpoint("a").as_deref(), Some(&b"1"[..]));
    spool.ack(1).unwrap(); // deletes the segment: the ledger keeps the checkpoints
    assert!(segment_files(tmp.path()).is_empty());
    drop(spool);

    let (spool, _) = open(&cfg);
    assert_eq!(spool.checkpoint("a").as_deref(), Some(&b"1"[..]));
    assert_eq!(spool.checkpoint("b").as_deref(), Some(&b"x"[..]));
    // A checkpoint-only append (every line was malformed) is newer than the ledger's.
    assert_eq!(spool.append(&[], Some(("a", b"2"))).unwrap(), (2, 1));
    drop(spool);
    let (spool, _) = open(&cfg);
    assert_eq!(spool.checkpoint("a").as_deref(), Some(&b"2"[..]));
    assert_eq!(spool.last_seq(), 1);
}

#[test]
fn a_torn_tail_is_cut_and_its_seqs_are_not_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        segment_bytes: 1 << 20,
        ..config(tmp.path())
    };
    let (spool, _) = open(&cfg);
    append(&spool, 0..2);
    append(&spool, 2..4);
    append(&spool, 4..6);
    drop(spool);
    let seg = segment_files(tmp.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    truncate(&seg, len - 3).unwrap();

    let (spool, report) = open(&cfg);
    assert_eq!(report.truncated_tails.len(), 1);
    assert!(report.quarantined.is_empty());
    assert_eq!(seqs(&read_all(&spool)), [1, 2, 3, 4]);
    let (first, _) = append(&spool, 6..7);
    assert!(first > 6, "seq {first} may have been seen by the server");
    drop(spool);

    // Zeros after the last frame (a filesystem that extended the file but lost the data).
    let seg = segment_files(tmp.path()).pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0; 100]).unwrap();
    drop(f);
    let (spool, report) = open(&cfg);
    assert_eq!(report.truncated_tails.len(), 1);
    assert_eq!(read_all(&spool).len(), 5);
}

/// Flips one byte in the middle of the payload of the segment's first frame.
fn corrupt(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    bytes[FRAME_HEADER + 12] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupted_frame_is_quarantined_and_every_intact_frame_shipped() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let (spool, _) = open(&cfg);
    for i in 0..30 {
        append(&spool, i * 10..i * 10 + 10);
    }
    drop(spool);
    let files = segment_files(tmp.path());
    assert!(files.len() >= 3);
    corrupt(&files[1]);

    let (spool, report) = open(&cfg);
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    let q = &report.quarantined[0];
    assert!(q.reason.contains("checksum mismatch"), "{}", q.reason);
    assert!(q.path.starts_with(tmp.path().join("quarantine")));
    let reason = fs::read_to_string(format!("{}.reason", q.path.display())).unwrap();
    assert!(reason.contains("checksum"));
    assert_eq!(spool.stats().quarantined_segments, 1);
    // Only the damaged frame (the segment's first: 10 records) is lost.
    assert_eq!(q.lost_frames, Some(1));
    assert_eq!(q.offset, 0);
    let quarantined = fs::read(&q.path).unwrap();
    assert_eq!(quarantined.len() as u64, q.bytes);
    assert_eq!(spool.stats().corrupt_bytes, q.bytes);
    assert_eq!(spool.stats().corrupt_frames, 1);
    let got = seqs(&read_all(&spool));
    assert_eq!(got.len(), 290);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(got.last(), Some(&300));
    drop(spool);
    // Reported once; later opens only count it.
    let (spool, report) = open(&cfg);
    assert!(report.quarantined.is_empty());
    assert_eq!(spool.stats().quarantined_segments, 1);
}

#[test]
fn corruption_found_while_running_is_quarantined_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = open(&config(tmp.path()));
    for i in 0..30 {
        append(&spool, i * 10..i * 10 + 10);
    }
    let first = segment_files(tmp.path())[0].clone();
    corrupt(&first);
    let got = read_all(&spool);
    // The damaged frame's 10 records are lost, the rest of its segment is not.
    assert_eq!(seqs(&got), (11..=300).collect::<Vec<_>>());
    let stats = spool.stats();
    assert_eq!(stats.quarantined_segments, 1);
    assert_eq!(stats.corrupt_records, 10);
    assert!(
        first.exists(),
        "the segment is kept, rewritten without the bad frame"
    );
    drop(spool);
    let (spool, report) = open(&config(tmp.path()));
    assert!(report.quarantined.is_empty(), "{report:?}");
    assert_eq!(read_all(&spool).len(), 290);
}

#[test]
fn a_restored_spool_ships_new_records_under_a_new_stream_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let backup = tmp.path().join("backup");
    let cfg = config(&dir);
    let (spool, _) = open(&cfg);
    append(&spool, 0..5);
    spool.ack(3).unwrap();
    let old_stream = spool.stream_id().to_owned();
    drop(spool);
    copy_dir(&dir, &backup);

    // The original goes on: records 6.. under a later epoch.
    let (spool, _) = open(&cfg);
    append(&spool, 5..10);
    let shipped: Vec<(String, u64)> = read_batches(&spool)
        .into_iter()
        .flat_map(|b| {
            let id = b.stream_id.clone();
            b.records.into_iter().map(move |r| (id.clone(), r.seq))
        })
        .collect();
    spool.ack(10).unwrap();
    drop(spool);

    // Restored: records 4 and 5 are sent again under their old stream id (the server skips
    // them), records written now reuse seqs 6.. but under a stream id never seen before.
    fs::remove_dir_all(&dir).unwrap();
    copy_dir(&backup, &dir);
    let (spool, _) = open(&cfg);
    append(&spool, 10..12);
    let batches = read_batches(&spool);
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].stream_id, old_stream);
    assert_eq!(seqs(&batches[0].records), [4, 5]);
    assert_eq!(seqs(&batches[1].records), [6, 7]);
    for (id, seq) in &shipped {
        assert!(
            !(id == &batches[1].stream_id && (6..=7).contains(seq)),
            "({id}, {seq}) was stored before the restore; the new records would be dropped"
        );
    }
    assert!(shipped.iter().any(|(id, s)| id == &old_stream && *s == 4));
    assert_eq!(spool.stats().epochs, 2);
    // Fully acknowledged epochs are retired from the ledger.
    spool.ack(7).unwrap();
    assert_eq!(spool.stats().epochs, 1);
    let ledger: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("ledger.json")).unwrap()).unwrap();
    assert_eq!(ledger["version"], 2);
    assert_eq!(ledger["epochs"].as_array().unwrap().len(), 1);
    assert_eq!(ledger["epochs"][0]["stream_id"], spool.stream_id());
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else if !path.ends_with("lock") {
            fs::copy(&path, &dest).unwrap();
        }
    }
}

#[test]
fn a_version_1_ledger_opens_as_one_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let (spool, _) = open(&cfg);
    append(&spool, 0..4);
    spool.ack(1).unwrap();
    drop(spool);
    let v1 = serde_json::json!({
        "version": 1,
        "stream_id": "00112233445566778899aabbccddeeff",
        "acked_seq": 1,
        "highest_seq": 4,
        "highest_frame": 1,
        "checkpoints": {}
    });
    fs::write(tmp.path().join("ledger.json"), v1.to_string()).unwrap();
    let (spool, _) = open(&cfg);
    let batches = read_batches(&spool);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].stream_id, "00112233445566778899aabbccddeeff");
    assert_eq!(seqs(&batches[0].records), [2, 3, 4]);
    assert_ne!(spool.stream_id(), "00112233445566778899aabbccddeeff");
    let ledger = fs::read_to_string(tmp.path().join("ledger.json")).unwrap();
    assert!(ledger.contains("\"version\": 2"), "{ledger}");
}

/// Seeded random damage (flipped bytes, zeroed runs, garbage inserted) of segments with known
/// contents: what is read back is exactly the records of the frames left intact, and the loss
/// reported is exactly the rest.
#[test]
fn random_corruption_costs_exactly_the_damaged_frames() {
    use proptest::test_runner::{RngAlgorithm, TestRng};
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[13; 32]);
    for round in 0..40 {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            segment_bytes: 4096,
            ..config(tmp.path())
        };
        let (spool, _) = open(&cfg);
        let mut frames = Vec::new();
        for i in 0..60u64 {
            let n = rng.random_range(1..6u64);
            frames.push(append(&spool, i * 10..i * 10 + n));
        }
        drop(spool);
        let files = segment_files(tmp.path());
        // Frame boundaries of every segment, from the format itself.
        let mut layout = Vec::new();
        for f in &files {
            let buf = fs::read(f).unwrap();
            let mut spans = Vec::new();
            let d = format::scan(&buf, None, |off, len, v| {
                spans.push((off, len, v.first_seq, v.records.len() as u64))
            });
            assert!(d.bad.is_empty() && d.torn_tail.is_none());
            layout.push((f.clone(), buf, spans));
        }
        let mut lost = std::collections::BTreeSet::new();
        let mut damaged_bytes = 0u64;
        let hits = rng.random_range(1..5);
        for _ in 0..hits {
            let (path, buf, spans) = &mut layout[rng.random_range(0..files.len())];
            // Never the last frame of a segment: that one would be a torn tail.
            if spans.len() < 2 {
                continue;
            }
            let k = rng.random_range(0..spans.len() - 1);
            let (off, len, first, count) = spans[k];
            if lost.contains(&first) {
                continue;
            }
            match rng.random_range(0..3) {
                0 => buf[off + rng.random_range(0..len)] ^= 1 << rng.random_range(0..8),
                1 => {
                    let at = off + rng.random_range(0..len);
                    let end = (at + rng.random_range(1..8)).min(off + len);
                    buf[at..end].fill(0);
                    if buf[off..off + len] == fs::read(&*path).unwrap()[off..off + len] {
                        continue;
                    }
                }
                _ => {
                    // Garbage in place of the whole frame, magic included.
                    let junk: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
                    buf[off..off + len].copy_from_slice(&junk);
                }
            }
            fs::write(&*path, &*buf).unwrap();
            lost.extend(first..first + count);
            damaged_bytes += len as u64;
        }
        let (spool, report) = open(&cfg);
        let want: Vec<u64> = frames
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .filter(|s| !lost.contains(s))
            .collect();
        assert_eq!(seqs(&read_all(&spool)), want, "round {round}");
        let stats = spool.stats();
        assert_eq!(
            stats.corrupt_bytes, damaged_bytes,
            "round {round}: {report:?}"
        );
        let known: u64 = report
            .quarantined
            .iter()
            .filter_map(|q| q.lost_records)
            .sum();
        assert!(known <= lost.len() as u64);
        assert_eq!(stats.corrupt_records, known);
        assert!(report.truncated_tails.is_empty(), "round {round}");
    }
}

#[test]
fn a_full_spool_refuses_appends_until_acks_free_space() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        max_bytes: 4096,
        segment_bytes: 1024,
        ..config(tmp.path())
    };
    let (spool, _) = open(&cfg);
    let mut appended = 0;
    let err = loop {
        match spool.append(&[(LogType::L7, &rec(appended))], None) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
    };
    let SpoolError::Full { used, max } = err else {
        panic!("{err}")
    };
    assert!(used > max && max == 4096);
    let stats = spool.stats();
    assert!(stats.full && stats.bytes_on_disk <= 4096);
    assert_eq!(stats.pending_records, appended);
    assert!(matches!(
        spool.append(&[(LogType::L7, &[b'x'; 5000][..])], None),
        Err(SpoolError::TooLarge { .. })
    ));
    // Nothing was dropped, and acks make room.
    assert_eq!(read_all(&spool).len() as u64, appended);
    spool.ack(spool.last_seq()).unwrap();
    assert!(spool.append(&[(LogType::L7, &rec(0))], None).is_ok());
    assert!(!spool.stats().full);
}

#[test]
fn one_process_per_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (_spool, _) = open(&config(tmp.path()));
    assert!(matches!(
        Spool::open(config(tmp.path())),
        Err(SpoolError::Locked(_))
    ));
}

#[tokio::test]
async fn subscribers_see_new_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = open(&config(tmp.path()));
    let spool = Arc::new(spool);
    let mut rx = spool.subscribe();
    let writer = spool.clone();
    tokio::task::spawn_blocking(move || append(&writer, 0..3));
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|&s| s == 3))
        .await
        .expect("notified")
        .unwrap();
}

const CHILD_ENV: &str = "CATTERY_SPOOL_KILL_CHILD_DIR";

/// Not a test of its own: the body of the process [`survives_kill_9`] kills. It appends
/// forever and prints `first last n` after each append returned `Ok`.
#[test]
#[ignore = "run by survives_kill_9"]
fn kill_child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (spool, _) = open(&config(Path::new(&dir)));
    for n in 0u64.. {
        let data: Vec<Vec<u8>> = (0..n % 4).map(|i| rec(n * 10 + i)).collect();
        let records: Vec<(LogType, &[u8])> =
            data.iter().map(|d| (LogType::Flows, &d[..])).collect();
        let (first, last) = spool
            .append(&records, Some(("child", n.to_string().as_bytes())))
            .unwrap();
        println!("{first} {last} {n}");
    }
}

#[test]
fn survives_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "spool::tests::kill_child_appender",
            "--nocapture",
        ])
        .env(CHILD_ENV, tmp.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = StdBufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<(u64, u64, u64)> = Vec::new();
    while acked.len() < 300 {
        let line = lines.next().expect("child output").unwrap();
        let v: Vec<u64> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
        if let [first, last, n] = v[..] {
            acked.push((first, last, n));
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.wait().unwrap();
    for line in lines {
        let v: Vec<u64> = line
            .unwrap()
            .split(' ')
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [first, last, n] = v[..] {
            acked.push((first, last, n));
        }
    }

    let (spool, _) = open(&config(tmp.path()));
    let got: BTreeMap<u64, Vec<u8>> = read_all(&spool)
        .into_iter()
        .map(|r| (r.seq, r.data))
        .collect();
    for &(first, last, n) in &acked {
        for (i, seq) in (first..=last).enumerate() {
            assert_eq!(
                got.get(&seq),
                Some(&rec(n * 10 + i as u64)),
                "seq {seq} of append {n}"
            );
        }
    }
    let (_, last_acked, n_acked) = *acked.last().unwrap();
    let ck: u64 = String::from_utf8(spool.checkpoint("child").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!(ck >= n_acked);
    assert!(spool.last_seq() >= last_acked);
    let (first, _) = append(&spool, 0..1);
    assert!(first > *got.keys().last().unwrap());
}

// ---- model-based test ----

#[derive(Clone, Debug)]
enum Op {
    Append {
        sizes: Vec<usize>,
        checkpoint: Option<u8>,
    },
    Read {
        after: Option<u64>,
        max_records: usize,
        max_bytes: usize,
    },
    Ack {
        pick: usize,
    },
    Reopen,
    /// Kill the process and lose part of the last append's frame, as if its fsync had not
    /// completed (only when the previous mutating op was a successful append).
    CrashTruncate {
        cut: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (proptest::collection::vec(0usize..150, 0..5), proptest::option::of(0u8..3))
            .prop_map(|(sizes, checkpoint)| Op::Append { sizes, checkpoint }),
        3 => (proptest::option::of(0u64..60), 1usize..8, 1usize..400)
            .prop_map(|(after, max_records, max_bytes)| Op::Read { after, max_records, max_bytes }),
        2 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(|cut| Op::CrashTruncate { cut }),
    ]
}

struct LastAppend {
    path: PathBuf,
    pre_len: u64,
    post_len: u64,
    seqs: Vec<u64>,
    checkpoint: Option<(String, Option<Vec<u8>>)>,
    floor: u64,
}

#[derive(Default)]
struct Model {
    /// Seq → (epoch, data); the epoch is the number of the opening that wrote the record.
    records: BTreeMap<u64, (usize, Vec<u8>)>,
    /// Stream id of each opening.
    streams: Vec<String>,
    acked: u64,
    /// New seqs must be above this.
    floor: u64,
    checkpoints: HashMap<String, Vec<u8>>,
    counter: u64,
}

impl Model {
    fn read(
        &self,
        after: Option<u64>,
        max_records: usize,
        max_bytes: usize,
    ) -> (String, Vec<(u64, Vec<u8>)>) {
        let start = after.unwrap_or(0).max(self.acked) + 1;
        let (mut out, mut bytes) = (Vec::new(), 0);
        let mut epoch = None;
        for (&seq, (e, data)) in self.records.range(start..) {
            // A batch never spans two epochs.
            if *epoch.get_or_insert(*e) != *e {
                break;
            }
            if !out.is_empty() && (out.len() >= max_records || bytes + data.len() > max_bytes) {
                break;
            }
            bytes += data.len();
            out.push((seq, data.clone()));
        }
        let epoch = epoch.unwrap_or(self.streams.len() - 1);
        (self.streams[epoch].clone(), out)
    }
}

fn check(spool: &Spool, model: &Model) {
    let stats = spool.stats();
    assert_eq!(stats.pending_records, model.records.len() as u64);
    assert_eq!(stats.acked_seq, model.acked);
    assert!(stats.last_seq >= model.floor);
    let mut after = None;
    for batch in read_batches(spool) {
        let want = model.read(after, usize::MAX, usize::MAX);
        let got: Vec<(u64, Vec<u8>)> = batch.records.into_iter().map(|r| (r.seq, r.data)).collect();
        after = got.last().map(|r| r.0);
        assert_eq!((batch.stream_id, got), want);
    }
    assert!(model.read(after, usize::MAX, usize::MAX).1.is_empty());
    for s in ["s0", "s1", "s2"] {
        assert_eq!(
            spool.checkpoint(s),
            model.checkpoints.get(s).cloned(),
            "checkpoint {s}"
        );
    }
}

fn sizes(dir: &Path) -> HashMap<PathBuf, u64> {
    segment_files(dir)
        .into_iter()
        .map(|p| {
            let len = fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect()
}

fn run_model(ops: Vec<Op>) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        dir: tmp.path().to_owned(),
        max_bytes: 6000,
        segment_bytes: 700,
    };
    let mut spool = Some(open(&cfg).0);
    let mut model = Model::default();
    model
        .streams
        .push(spool.as_ref().unwrap().stream_id().to_owned());
    let mut last_append: Option<LastAppend> = None;
    for op in ops {
        let s = spool.as_ref().unwrap();
        match op {
            Op::Append {
                sizes: lens,
                checkpoint,
            } => {
                let data: Vec<Vec<u8>> = lens
                    .iter()
                    .map(|&len| {
                        model.counter += 1;
                        format!(r#"{{"n":{},"pad":"{}"}}"#, model.counter, "x".repeat(len))
                            .into_bytes()
                    })
                    .collect();
                let records: Vec<(LogType, &[u8])> =
                    data.iter().map(|d| (LogType::Flows, &d[..])).collect();
                let ck =
                    checkpoint.map(|c| (format!("s{c}"), model.counter.to_string().into_bytes()));
                let before = sizes(tmp.path());
                match s.append(
                    &records,
                    ck.as_ref().map(|(k, v)| (k.as_str(), v.as_slice())),
                ) {
                    Err(SpoolError::Full { .. }) => last_append = None,
                    Err(e) => panic!("{e}"),
                    Ok((first, last)) => {
                        assert_eq!(last + 1 - first, data.len() as u64);
                        assert!(
                            first > model.floor,
                            "seq {first} reused (floor {})",
                            model.floor
                        );
                        let path = segment_files(tmp.path()).pop().unwrap();
                        let post_len = fs::metadata(&path).unwrap().len();
                        let pre_len = before.get(&path).copied().unwrap_or(0);
                        let prev = ck
                            .as_ref()
                            .map(|(k, _)| (k.clone(), model.checkpoints.get(k).cloned()));
                        last_append = Some(LastAppend {
                            path,
                            pre_len,
                            post_len,
                            seqs: (first..=last).collect(),
                            checkpoint: prev,
                            floor: model.floor,
                        });
                        model.floor = model.floor.max(last);
                        let epoch = model.streams.len() - 1;
                        model
                            .records
                            .extend((first..=last).zip(data.into_iter().map(|d| (epoch, d))));
                        if let Some((k, v)) = ck {
                            model.checkpoints.insert(k, v);
                        }
                    }
                }
            }
            Op::Read {
                after,
                max_records,
                max_bytes,
            } => {
                let batch = s.read_batch(after, max_records, max_bytes).unwrap();
                let got: Vec<(u64, Vec<u8>)> =
                    batch.records.into_iter().map(|r| (r.seq, r.data)).collect();
                assert_eq!(
                    (batch.stream_id, got),
                    model.read(after, max_records, max_bytes)
                );
            }
            Op::Ack { pick } => {
                last_append = None;
                let keys: Vec<u64> = model.records.keys().copied().collect();
                if !keys.is_empty() {
                    let seq = keys[pick % keys.len()];
                    s.ack(seq).unwrap();
                    model.acked = seq;
                    model.records = model.records.split_off(&(seq + 1));
                }
            }
            Op::Reopen => {
                last_append = None;
                drop(spool.take());
                spool = Some(open(&cfg).0);
                model
                    .streams
                    .push(spool.as_ref().unwrap().stream_id().to_owned());
            }
            Op::CrashTruncate { cut } => {
                drop(spool.take());
                if let Some(la) = last_append.take() {
                    let frame = la.post_len - la.pre_len;
                    truncate(&la.path, la.pre_len + cut % frame).unwrap();
                    for seq in la.seqs {
                        model.records.remove(&seq);
                    }
                    if let Some((k, prev)) = la.checkpoint {
                        match prev {
                            Some(v) => model.checkpoints.insert(k, v),
                            None => model.checkpoints.remove(&k),
                        };
                    }
                    model.floor = la.floor.max(model.acked);
                }
                let (s, report) = open(&cfg);
                assert!(report.quarantined.is_empty());
                model.streams.push(s.stream_id().to_owned());
                spool = Some(s);
            }
        }
        check(spool.as_ref().unwrap(), &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn behaves_like_a_queue_with_a_cursor(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(ops);
    }
}

/// A rough number for the docs: `cargo test -p cattery-agent --release --lib -- --ignored
/// --nocapture spool::tests::throughput`.
#[test]
#[ignore = "measurement, not a test"]
fn throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = open(&SpoolConfig::new(tmp.path()));
    let record = br#"{"start_time":1700000000,"end_time":1700000300,"action":"allow","source_ip":"10.0.1.2","source_name":"-","source_name_aggr":"frontend-7d9f8b-*","source_namespace":"shop","dest_ip":"10.0.2.3","dest_name_aggr":"backend-5c6d7-*","dest_namespace":"shop","dest_port":8080,"proto":"tcp","reporter":"src","bytes_in":1234,"bytes_out":5678,"packets_in":12,"packets_out":14,"num_flows":1}"#;
    let batch: Vec<(LogType, &[u8])> = (0..1000).map(|_| (LogType::Flows, &record[..])).collect();
    let appends = 200;
    let t = Instant::now();
    for _ in 0..appends {
        spool.append(&batch, None).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let n = (appends * batch.len()) as f64;
    let mb = spool.stats().bytes_on_disk as f64 / 1e6;
    println!(
        "append: {:.0} records/s, {:.0} MB/s ({} appends of 1000, fsync each)",
        n / secs,
        mb / secs,
        appends
    );
    let t = Instant::now();
    let mut after = 0;
    let mut read = 0;
    loop {
        let got = spool.read_after(Some(after), 5000, 4 << 20).unwrap();
        let Some(last) = got.last() else { break };
        after = last.seq;
        read += got.len();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(read as f64, n);
    println!("read: {:.0} records/s, {:.0} MB/s", n / secs, mb / secs);
    let t = Instant::now();
    for _ in 0..2000 {
        spool.append(&batch[..1], None).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "single-record appends: {:.0}/s (fsync latency bound)",
        2000.0 / secs
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir` (recursively) with its mode, and every directory's mode.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = vec![(dir.to_owned(), mode(dir))];
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(modes(&path));
        } else {
            out.push((path.clone(), mode(&path)));
        }
    }
    out
}

#[test]
fn the_spool_is_private_to_the_agent_user() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let cfg = config(&dir);
    let (spool, _) = open(&cfg);
    for i in 0..30 {
        append(&spool, i * 10..i * 10 + 10);
    }
    spool.ack(5).unwrap();
    drop(spool);
    // A corrupted segment goes to quarantine/ with a reason file.
    corrupt(&segment_files(&dir)[1]);
    let (spool, report) = open(&cfg);
    assert!(!report.quarantined.is_empty());
    drop(spool);
    let all = modes(&dir);
    assert!(all.iter().any(|(p, _)| p.ends_with("ledger.json")));
    assert!(all.iter().any(|(p, _)| p.ends_with("quarantine")));
    assert!(
        all.iter()
            .any(|(p, _)| p.to_string_lossy().ends_with(".reason"))
    );
    for (path, m) in &all {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{} has mode {m:o}", path.display());
    }

    // A spool left readable by an older agent (or a careless chmod) is tightened on open,
    // the ledger's temporary file included.
    use std::os::unix::fs::PermissionsExt;
    let loose = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    fs::write(dir.join("ledger.json.tmp"), b"{}").unwrap();
    for (path, _) in modes(&dir) {
        loose(&path, if path.is_dir() { 0o755 } else { 0o644 });
    }
    let (spool, _) = open(&cfg);
    append(&spool, 0..1);
    spool.ack(6).unwrap();
    drop(spool);
    for (path, m) in modes(&dir) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{} has mode {m:o} after reopening", path.display());
    }
}
