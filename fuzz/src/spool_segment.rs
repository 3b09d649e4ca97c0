//! Spool segments as the agent finds them on disk after a crash or damage: the fuzzed bytes go
//! into a segment file of a real spool directory, which is then opened and read through the
//! spool's public API (so this target does not depend on the frame format).

use std::fs;
use std::path::{Path, PathBuf};

use cattery_agent::spool::{Spool, SpoolConfig};
use cattery_api::logs::LogType;

const RECORDS: [&[u8]; 3] = [br#"{"a":1}"#, br#"{"b":"two"}"#, br#"{"c":[3]}"#];

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read spool dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

fn temp_dir() -> tempfile::TempDir {
    // A RAM file system when there is one: every append is fsynced.
    tempfile::Builder::new()
        .prefix("spool-fuzz")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir")
}

/// Runs one input; panics when an invariant breaks. The first byte picks how the bytes reach
/// the spool: 0 replace the segment, 1 append them to it (an interrupted write), 2 a second,
/// later segment, 3 overwrite the segment from offset `data[1]` on.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tmp = temp_dir();
    let dir = tmp.path().join("spool");
    {
        let (spool, _) = Spool::open(SpoolConfig::new(&dir)).expect("open a new spool");
        let recs: Vec<(LogType, &[u8])> = RECORDS.iter().map(|r| (LogType::Flows, *r)).collect();
        spool.append(&recs, None).expect("append");
    }
    let segs = segments(&dir);
    let seg = segs.last().expect("a segment after an append").clone();
    match mode % 4 {
        0 => fs::write(&seg, rest).expect("write segment"),
        1 => {
            let mut bytes = fs::read(&seg).expect("read segment");
            bytes.extend_from_slice(rest);
            fs::write(&seg, bytes).expect("write segment");
        }
        2 => {
            let name = seg
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("segment name");
            let next: u64 = name.parse::<u64>().map_or(99, |n| n + 1000);
            fs::write(dir.join(format!("{next:020}.seg")), rest).expect("write segment");
        }
        _ => {
            let Some((&at, rest)) = rest.split_first() else {
                return;
            };
            let mut bytes = fs::read(&seg).expect("read segment");
            let at = usize::from(at).min(bytes.len());
            let end = (at + rest.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&rest[..end - at]);
            fs::write(&seg, bytes).expect("write segment");
        }
    }

    let Ok((spool, _report)) = Spool::open(SpoolConfig::new(&dir)) else {
        return;
    };
    let read = spool
        .read_after(None, 10_000, 1 << 24)
        .expect("read the spool");
    assert!(
        read.windows(2).all(|w| w[0].seq < w[1].seq),
        "records not in seq order: {:?}",
        read.iter().map(|r| r.seq).collect::<Vec<_>>()
    );
    if mode % 4 == 1 || mode % 4 == 2 {
        // Bytes after (or beside) intact frames never cost the records before them.
        for (i, want) in RECORDS.iter().enumerate() {
            let seq = i as u64 + 1;
            let got = read.iter().find(|r| r.seq == seq);
            assert_eq!(
                got.map(|r| r.data.as_slice()),
                Some(*want),
                "record {seq} lost or changed"
            );
        }
    }
    // The recovered spool keeps working: a new record gets a higher seq and reads back.
    let last = read.last().map_or(0, |r| r.seq);
    let seq = spool
        .append(&[(LogType::Dns, br#"{"new":true}"#.as_slice())], None)
        .expect("append after recovery");
    let (_, seq) = seq;
    assert!(seq > last, "seq {seq} handed out again (last read {last})");
    let again = spool
        .read_after(Some(last), 10, 1 << 20)
        .expect("read again");
    assert!(
        again
            .iter()
            .any(|r| r.seq == seq && r.data == br#"{"new":true}"#)
    );
    spool.ack(seq).expect("ack");
    drop(spool);
    Spool::open(SpoolConfig::new(&dir)).expect("a spool that recovered once opens again");
}
