//! The agent's disk spool: every log record is written here (and fsynced) before it is
//! shipped, and deleted only after the management plane acknowledged it — "nothing
//! acknowledged is lost" (docs/architecture.md, decision 8). The design follows the idea of
//! Vector's disk buffer v2: append-only, checksummed segment files plus a small ledger.
//!
//! # On-disk format (`DIR/`)
//!
//! - `NNNNNNNNNNNNNNNNNNNN.seg` — segment files, named by the zero-padded frame number of their
//!   first frame, each a sequence of frames:
//!
//!   ```text
//!   frame   = magic u32 ("CSP1") | payload_len u32 | crc32(payload) u32 | payload
//!   payload = frame_no u64 | first_seq u64 | count u32
//!           | has_checkpoint u8 [ source_len u16 | source | state_len u32 | state ]
//!           | count × ( log_type u8 (0 flows, 1 dns, 2 l7, 3 audit) | len u32 | data )
//!   ```
//!
//!   All integers are little-endian. One frame is one [`Spool::append`]: its records and the
//!   source checkpoint are written with one `write` and one `fdatasync`, so after a crash
//!   they are either all there (checksum matches) or the frame is a torn tail.
//!   A segment is closed when the next frame would exceed `segment_bytes`, and at every
//!   open (appends always go to a fresh segment after a restart, so the seqs inside a
//!   segment are contiguous). Records in a segment are therefore found by seq with a sparse
//!   in-memory index (one entry per 64 KiB) built when the segment is written or scanned.
//! - `ledger.json` — stream id, ack cursor, the highest seq and frame number ever handed out,
//!   and every source's latest checkpoint; replaced atomically (tmp + fsync + rename + dir
//!   fsync) on open, on every ack and on quarantine.
//! - `quarantine/` — corrupted segments (`NAME.seg.UNIXTIME`) with a `.reason` file beside.
//! - `lock` — `flock`ed while a spool is open, so two agents cannot share a directory.
//!
//! Log and audit records are as sensitive as keys: the directory and `quarantine/` are 0700,
//! every file is created 0600 (the ledger's temporary file and quarantine reasons included),
//! and a directory left looser (an older agent, a `chmod`) is tightened at every open.
//!
//! # Recovery
//!
//! [`Spool::open`] scans every segment and verifies every frame. An invalid frame with
//! nothing valid after it is a torn tail (the write was interrupted, so the append never
//! returned `Ok`): the segment is truncated there. An invalid frame followed by a valid one
//! is corruption: the segment is moved to `quarantine/`, reported in [`OpenReport`] and
//! logged, and the other segments are shipped as usual. Corruption found later, while
//! reading, is handled the same way. In both cases the seq and frame counters are raised
//! past any number the lost bytes could have held, so a seq is never reused (the
//! management plane deduplicates on `(stream_id, seq)`). Segments whose records are all
//! acknowledged are deleted. A source's checkpoint is the one of its newest valid frame,
//! or the ledger's when that is newer; checkpoints in the valid frames of a quarantined
//! segment still count, so its lines are not read again (they wait in `quarantine/` for a
//! person to look at).
//!
//! All methods do short blocking file I/O under one mutex (an append is one write plus one
//! fsync); async callers with many appends should run them on a blocking thread.

mod format;
mod ledger;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cattery_api::logs::LogType;
use tokio::sync::watch;

use format::{Damage, FRAME_HEADER, FrameError};
use ledger::{Ledger, LedgerCheckpoint};

/// Default bound on the spool's size: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default size at which a segment is closed and a new one started: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Distance between two entries of a segment's in-memory index.
const INDEX_STRIDE: u64 = 64 << 10;
/// The "spool full" warning is repeated at most this often.
const FULL_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// How long [`Spool::open`] waits for another holder of the directory lock to let go.
const LOCK_WAIT: Duration = Duration::from_secs(2);
const QUARANTINE: &str = "quarantine";
/// Mode of the spool directory and `quarantine/`: log and audit records are as sensitive as
/// keys, so only the agent's user may list or read them.
const DIR_MODE: u32 = 0o700;
/// Mode of every file the spool writes (segments, ledger and its temporary file, lock,
/// quarantined segments and their reasons).
pub(crate) const FILE_MODE: u32 = 0o600;
const SEGMENT_EXT: &str = "seg";

/// Where the spool lives and how large it may grow.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// The spool's directory (created if missing).
    pub dir: PathBuf,
    /// Appends fail with [`SpoolError::Full`] rather than grow the segments beyond this.
    pub max_bytes: u64,
    /// A segment is closed when the next append would grow it beyond this; smaller segments
    /// free disk space sooner after acks, larger ones mean fewer files.
    pub segment_bytes: u64,
}

impl SpoolConfig {
    /// The default limits for a spool in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// One spooled record, as the shipper reads it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Its position in this spool's stream; the server stores `(stream_id, seq)` once.
    pub seq: u64,
    /// Which log it belongs to.
    pub log_type: LogType,
    /// One JSON object, as the source produced it.
    pub data: Vec<u8>,
}

/// A point-in-time view of the spool, for metrics and the status line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Total size of the live segments (quarantined ones not included).
    pub bytes_on_disk: u64,
    /// Records written but not yet acknowledged.
    pub pending_records: u64,
    /// Every seq up to this one is acknowledged.
    pub acked_seq: u64,
    /// The highest seq handed out.
    pub last_seq: u64,
    /// Segments in `quarantine/`, including ones from earlier runs.
    pub quarantined_segments: u64,
    /// The last append was refused because the spool was full.
    pub full: bool,
}

/// What [`Spool::open`] found and repaired.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Corrupted segments moved aside.
    pub quarantined: Vec<Quarantined>,
    /// Segments whose interrupted last write was cut off.
    pub truncated_tails: Vec<TruncatedTail>,
    /// Unacknowledged records found, to be shipped.
    pub recovered_records: u64,
    /// Live segments after recovery.
    pub segments: usize,
}

/// A segment moved to `quarantine/` because a checksum showed it was damaged.
#[derive(Clone, Debug)]
pub struct Quarantined {
    /// Where it is now.
    pub path: PathBuf,
    /// What was wrong, as also written to `PATH.reason`.
    pub reason: String,
}

/// A segment whose last frame was incomplete (an interrupted write) and was cut off.
#[derive(Clone, Debug)]
pub struct TruncatedTail {
    /// The segment.
    pub segment: PathBuf,
    /// Its new length.
    pub offset: u64,
    /// How many bytes were removed.
    pub bytes: u64,
    /// What was wrong with the first removed byte.
    pub reason: String,
}

/// Everything that can go wrong with the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool is at its size bound; the caller must retry later (after acks free space)
    /// rather than drop data.
    #[error(
        "log spool is full ({used} of {max} bytes used); waiting for the management plane to acknowledge"
    )]
    Full {
        /// Bytes in use plus the bytes of the refused append.
        used: u64,
        /// The configured bound.
        max: u64,
    },
    /// One append is larger than the whole spool may ever be (or than a frame may be).
    #[error("an append of {size} bytes can never fit (limit {max} bytes)")]
    TooLarge {
        /// Encoded size of the append.
        size: u64,
        /// The limit it exceeds.
        max: u64,
    },
    /// A file operation failed.
    #[error("log spool I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The ledger exists but cannot be used; a person must look at it (deleting it starts a
    /// new stream, which may store unacknowledged records twice).
    #[error("log spool ledger {path} is unusable: {reason}")]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process has the spool open.
    #[error("log spool {0} is in use by another process")]
    Locked(PathBuf),
    /// An ack for a seq that was never handed out (a bug in the caller).
    #[error("cannot acknowledge seq {seq}: the last seq handed out is {last}")]
    AckBeyondEnd {
        /// The seq acknowledged.
        seq: u64,
        /// The highest seq handed out.
        last: u64,
    },
}

/// Maps an I/O error to [`SpoolError::Io`] naming `path`.
fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Makes renames, creations and deletions in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// A durable, bounded, checksummed queue of log records between the sources and the shipper.
/// Share it with `Arc`; all methods take `&self`.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    inner: Mutex<Inner>,
    last_seq_tx: watch::Sender<u64>,
    /// Holds the directory's `flock` for as long as the spool is open.
    _lock: File,
}

struct Inner {
    /// The stream id records are shipped under (replaced by [`Spool::abandon_stream`]).
    stream_id: String,
    /// Live segments, oldest first.
    segments: VecDeque<Segment>,
    /// Write handle of the last segment, if appends may continue in it.
    active: Option<File>,
    next_seq: u64,
    next_frame: u64,
    acked: u64,
    checkpoints: HashMap<String, (u64, Vec<u8>)>,
    bytes: u64,
    quarantined: u64,
    full: bool,
    last_full_log: Option<Instant>,
}

/// One segment file and what is known about its contents.
struct Segment {
    path: PathBuf,
    /// Bytes of valid frames (reads never go further).
    len: u64,
    /// Seq of its first record, or of the next record while it holds none.
    first_seq: u64,
    /// Seq of its last record; `first_seq - 1` while it holds none.
    last_seq: u64,
    /// Sparse `(first_seq of a frame, offset of the frame)`, in order.
    index: Vec<(u64, u64)>,
}

impl Segment {
    fn new(path: PathBuf, next_seq: u64) -> Segment {
        Segment {
            path,
            len: 0,
            first_seq: next_seq,
            last_seq: next_seq - 1,
            index: Vec::new(),
        }
    }

    fn note_frame(&mut self, offset: u64, len: u64, first_seq: u64, count: u64) {
        if self
            .index
            .last()
            .is_none_or(|&(_, o)| offset - o >= INDEX_STRIDE)
        {
            self.index.push((first_seq, offset));
        }
        if count > 0 {
            if self.last_seq < self.first_seq {
                self.first_seq = first_seq;
            }
            self.last_seq = first_seq + count - 1;
        }
        self.len = offset + len;
    }

    fn pending(&self, acked: u64) -> u64 {
        if self.last_seq < self.first_seq {
            return 0;
        }
        self.last_seq.saturating_sub(acked.max(self.first_seq - 1))
    }
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`, recovering from whatever a crash left.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, OpenReport), SpoolError> {
        let dir = cfg.dir;
        let qdir = dir.join(QUARANTINE);
        fs::create_dir_all(&qdir).map_err(io_err(&qdir))?;
        tighten(&dir)?;
        tighten(&qdir)?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // A previous agent may still be exiting (and a forked child holds inherited
        // descriptors until it execs): wait a little before giving up.
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir)),
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
            }
        }

        let files = list_segments(&dir)?;
        let ledger = match Ledger::load(&dir)? {
            Some(l) => l,
            None => {
                if !files.is_empty() {
                    tracing::error!(
                        dir = %dir.display(),
                        "log spool has segments but no ledger; starting a new stream, so records \
                         shipped but not acknowledged before may be stored twice"
                    );
                }
                Ledger::new()
            }
        };
        let mut checkpoints = HashMap::new();
        for (source, c) in &ledger.checkpoints {
            let state = hex::decode(&c.state).map_err(|e| SpoolError::Ledger {
                path: dir.join("ledger.json"),
                reason: format!("checkpoint of {source}: {e}"),
            })?;
            checkpoints.insert(source.clone(), (c.frame, state));
        }

        let mut report = OpenReport::default();
        let mut quarantined = 0;
        let mut max_seq = ledger.highest_seq.max(ledger.acked_seq);
        let mut max_frame = ledger.highest_frame;
        let mut segments = VecDeque::new();
        for path in files {
            let buf = fs::read(&path).map_err(io_err(&path))?;
            let mut seg = Segment::new(path.clone(), max_seq + 1);
            let damage = format::scan(&buf, |off, len, frame| {
                let count = frame.records.len() as u64;
                seg.note_frame(off as u64, len as u64, frame.first_seq, count);
                if count > 0 {
                    max_seq = max_seq.max(frame.first_seq + count - 1);
                }
                max_frame = max_frame.max(frame.frame_no);
                if let Some((source, state)) = frame.checkpoint
                    && checkpoints
                        .get(source)
                        .is_none_or(|&(f, _)| frame.frame_no > f)
                {
                    checkpoints.insert(source.to_owned(), (frame.frame_no, state.to_vec()));
                }
            });
            match damage {
                None => {}
                Some(Damage::TornTail { offset, reason }) => {
                    let bytes = (buf.len() - offset) as u64;
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        bytes,
                        "log spool: cutting off an incomplete write at the end of a segment ({reason})"
                    );
                    truncate(&path, offset as u64)?;
                    // The lost frame held at most `bytes` records and was numbered below
                    // `max_frame + bytes`: skip past both so nothing is reused.
                    max_seq += bytes;
                    max_frame += bytes;
                    report.truncated_tails.push(TruncatedTail {
                        segment: path.clone(),
                        offset: offset as u64,
                        bytes,
                        reason,
                    });
                }
                Some(Damage::Corrupt { reason, .. }) => {
                    max_seq += buf.len() as u64;
                    max_frame += buf.len() as u64;
                    report.quarantined.push(quarantine(&dir, &path, &reason)?);
                    quarantined += 1;
                    continue;
                }
            }
            if seg.len == 0 {
                fs::remove_file(&path).map_err(io_err(&path))?;
            } else {
                segments.push_back(seg);
            }
        }

        let acked = ledger.acked_seq;
        while let Some(seg) = segments.front()
            && seg.last_seq <= acked
        {
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            segments.pop_front();
        }

        let mut inner = Inner {
            stream_id: ledger.stream_id.clone(),
            bytes: segments.iter().map(|s| s.len).sum(),
            segments,
            active: None,
            next_seq: max_seq + 1,
            next_frame: max_frame + 1,
            acked,
            checkpoints,
            quarantined: count_quarantined(&qdir)?,
            full: false,
            last_full_log: None,
        };
        store_ledger(&dir, &inner)?;
        report.recovered_records = inner.segments.iter().map(|s| s.pending(acked)).sum();
        report.segments = inner.segments.len();
        inner.quarantined = inner.quarantined.max(quarantined);
        tracing::info!(
            dir = %dir.display(),
            stream = ledger.stream_id,
            pending = report.recovered_records,
            segments = report.segments,
            acked_seq = acked,
            last_seq = max_seq,
            "log spool opened"
        );
        let spool = Spool {
            dir,
            max_bytes: cfg.max_bytes,
            segment_bytes: cfg.segment_bytes,
            inner: Mutex::new(inner),
            last_seq_tx: watch::Sender::new(max_seq),
            _lock: lock,
        };
        Ok((spool, report))
    }

    /// The random id of this spool's record stream, created once and kept in the ledger; the
    /// management plane stores each `(stream_id, seq)` once.
    pub fn stream_id(&self) -> String {
        self.lock().stream_id.clone()
    }

    /// The management plane refused `stream` because another cluster owns that id (this
    /// directory was copied from another cluster's agent, or restored from one): moves the
    /// segments holding its unacknowledged records to `quarantine/` and continues under a
    /// fresh stream id, so the agent stops resending what will never be stored. Returns how
    /// many records were set aside, or `None` when `stream` is not the current stream (it was
    /// abandoned already). The segments go first: a crash before the ledger is written only
    /// means the (now empty) stream is refused and abandoned once more.
    pub fn abandon_stream(&self, stream: &str) -> Result<Option<u64>, SpoolError> {
        let mut inner = self.lock();
        if inner.stream_id != stream {
            return Ok(None);
        }
        let pending = inner.segments.iter().map(|s| s.pending(inner.acked)).sum();
        let reason = format!(
            "log stream {stream} was refused by the management plane: another cluster owns it"
        );
        inner.active = None;
        while let Some(seg) = inner.segments.pop_front() {
            inner.bytes -= seg.len;
            inner.quarantined += 1;
            quarantine(&self.dir, &seg.path, &reason)?;
        }
        inner.acked = inner.next_seq - 1;
        inner.stream_id = Ledger::new().stream_id;
        store_ledger(&self.dir, &inner)?;
        tracing::error!(
            dir = %self.dir.display(),
            refused = stream,
            stream = inner.stream_id,
            records = pending,
            "log spool: the management plane refused this spool's stream (another cluster owns \
             its id); its records are set aside in quarantine/ and new records get a fresh stream id"
        );
        Ok(Some(pending))
    }

    /// Appends `records` and (optionally) a source's checkpoint as one frame and fsyncs it.
    /// On `Ok` all of them are durable; on `Err` none is visible. Returns the first and last
    /// seq assigned (monotonic, never reused); with no records, `(last_seq + 1, last_seq)`.
    pub fn append(
        &self,
        records: &[(LogType, &[u8])],
        checkpoint: Option<(&str, &[u8])>,
    ) -> Result<(u64, u64), SpoolError> {
        let size = format::frame_len(records, checkpoint) as u64;
        let frame_limit = u64::from(u32::MAX).min(self.max_bytes);
        if size > frame_limit
            || checkpoint.is_some_and(|(s, st)| {
                s.len() > usize::from(u16::MAX) || st.len() > u32::MAX as usize
            })
        {
            return Err(SpoolError::TooLarge {
                size,
                max: frame_limit,
            });
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.bytes + size > self.max_bytes {
            let used = inner.bytes + size;
            if !inner.full
                && inner
                    .last_full_log
                    .is_none_or(|t| t.elapsed() >= FULL_LOG_INTERVAL)
            {
                tracing::warn!(
                    dir = %self.dir.display(),
                    used,
                    max = self.max_bytes,
                    pending = inner.segments.iter().map(|s| s.pending(inner.acked)).sum::<u64>(),
                    "log spool is full; sources are paused until the management plane acknowledges records"
                );
                inner.last_full_log = Some(Instant::now());
            }
            inner.full = true;
            return Err(SpoolError::Full {
                used,
                max: self.max_bytes,
            });
        }

        let first_seq = inner.next_seq;
        let frame_no = inner.next_frame;
        let needs_new = match (&inner.active, inner.segments.back()) {
            (Some(_), Some(seg)) => seg.len > 0 && seg.len + size > self.segment_bytes,
            _ => true,
        };
        if needs_new {
            let path = self.dir.join(format!("{frame_no:020}.{SEGMENT_EXT}"));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .mode(FILE_MODE)
                .open(&path)
                .map_err(io_err(&path))?;
            sync_dir(&self.dir)?;
            inner.segments.push_back(Segment::new(path, first_seq));
            inner.active = Some(file);
        }
        let seg = inner
            .segments
            .back_mut()
            .expect("a segment was just ensured");
        let file = inner.active.as_mut().expect("a segment was just ensured");
        let bytes = format::encode(frame_no, first_seq, records, checkpoint);
        if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
            // Cut off whatever part was written and continue in a fresh segment; if even the
            // cut fails, recovery treats the leftover as a torn tail.
            let _ = file.set_len(seg.len);
            inner.active = None;
            return Err(io_err(&seg.path)(e));
        }
        let count = records.len() as u64;
        seg.note_frame(seg.len, size, first_seq, count);
        inner.bytes += size;
        inner.next_seq += count;
        inner.next_frame += 1;
        if let Some((source, state)) = checkpoint {
            inner
                .checkpoints
                .insert(source.to_owned(), (frame_no, state.to_vec()));
        }
        if inner.full {
            inner.full = false;
            tracing::info!(dir = %self.dir.display(), "log spool has room again; sources resume");
        }
        let last = inner.next_seq - 1;
        self.last_seq_tx.send_replace(last);
        Ok((first_seq, last))
    }

    /// The last durable checkpoint `source` stored with [`append`](Self::append).
    pub fn checkpoint(&self, source: &str) -> Option<Vec<u8>> {
        self.lock().checkpoints.get(source).map(|(_, s)| s.clone())
    }

    /// Records with a seq above `after` (or above the ack cursor when `None`; never acked
    /// ones), oldest first, at most `max_records` and `max_bytes` of data — but at least one
    /// record if there is any, so one oversized record cannot stall the shipper.
    pub fn read_after(
        &self,
        after: Option<u64>,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpoolRecord>, SpoolError> {
        let mut inner = self.lock();
        let start = after.unwrap_or(0).max(inner.acked) + 1;
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut i = 0;
        while i < inner.segments.len() {
            let seg = &inner.segments[i];
            if seg.last_seq < start.max(seg.first_seq) {
                i += 1;
                continue;
            }
            match read_segment(seg, start, &mut out, &mut bytes, max_records, max_bytes) {
                Ok(true) => break,
                Ok(false) => i += 1,
                Err(ReadError::Io(e)) => return Err(io_err(&seg.path)(e)),
                Err(ReadError::Frame(e)) => {
                    // Damaged after it was written: set it aside and ship the rest. Records
                    // already collected from it are dropped with it, so what is returned
                    // stays contiguous within the segment.
                    let seg = inner.segments.remove(i).expect("index in range");
                    out.retain(|r| r.seq < seg.first_seq || r.seq > seg.last_seq);
                    if i == inner.segments.len() {
                        inner.active = None;
                    }
                    inner.bytes -= seg.len;
                    inner.quarantined += 1;
                    quarantine(&self.dir, &seg.path, &format!("while reading: {e}"))?;
                    store_ledger(&self.dir, &inner)?;
                }
            }
        }
        Ok(out)
    }

    /// Everything up to `seq` is durable on the management plane: persists the ack cursor and
    /// deletes the segments whose records are all acknowledged.
    pub fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        let last = inner.next_seq - 1;
        if seq > last {
            return Err(SpoolError::AckBeyondEnd { seq, last });
        }
        if seq <= inner.acked {
            return Ok(());
        }
        inner.acked = seq;
        // The ledger first: it carries the checkpoints of the segments about to be deleted.
        store_ledger(&self.dir, &inner)?;
        while let Some(seg) = inner.segments.front()
            && seg.last_seq <= seq
        {
            let seg = inner.segments.pop_front().expect("front exists");
            if inner.segments.is_empty() {
                inner.active = None;
            }
            inner.bytes -= seg.len;
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        }
        Ok(())
    }

    /// The highest seq handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Notifies of each new [`last_seq`](Self::last_seq), so a shipper can wait for records
    /// instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last_seq_tx.subscribe()
    }

    /// Sizes and cursors, for metrics and status.
    pub fn stats(&self) -> SpoolStats {
        let inner = self.lock();
        SpoolStats {
            bytes_on_disk: inner.bytes,
            pending_records: inner.segments.iter().map(|s| s.pending(inner.acked)).sum(),
            acked_seq: inner.acked,
            last_seq: inner.next_seq - 1,
            quarantined_segments: inner.quarantined,
            full: inner.full,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the in-memory state consistent enough: every
        // mutation happens after its file operation succeeded.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("stream_id", &self.stream_id())
            .field("stats", &self.stats())
            .finish()
    }
}

enum ReadError {
    Io(io::Error),
    Frame(FrameError),
}

/// Appends the records of `seg` with seq >= `start` to `out` within the limits; returns
/// whether a limit was reached.
fn read_segment(
    seg: &Segment,
    start: u64,
    out: &mut Vec<SpoolRecord>,
    bytes: &mut usize,
    max_records: usize,
    max_bytes: usize,
) -> Result<bool, ReadError> {
    let i = seg.index.partition_point(|&(s, _)| s <= start);
    let mut pos = seg.index[i.saturating_sub(1)].1;
    let mut file = File::open(&seg.path).map_err(ReadError::Io)?;
    file.seek(SeekFrom::Start(pos)).map_err(ReadError::Io)?;
    let mut file = BufReader::with_capacity(64 << 10, file);
    let mut payload = Vec::new();
    while pos < seg.len {
        let mut header = [0u8; FRAME_HEADER];
        file.read_exact(&mut header).map_err(ReadError::Io)?;
        let (len, crc) = format::parse_header(&header).map_err(ReadError::Frame)?;
        if pos + (FRAME_HEADER + len) as u64 > seg.len {
            return Err(ReadError::Frame(FrameError::Incomplete));
        }
        payload.resize(len, 0);
        file.read_exact(&mut payload).map_err(ReadError::Io)?;
        let frame = format::decode_payload(&payload, crc).map_err(ReadError::Frame)?;
        for (seq, (log_type, data)) in (frame.first_seq..).zip(&frame.records) {
            if seq < start {
                continue;
            }
            if !out.is_empty() && (out.len() >= max_records || *bytes + data.len() > max_bytes) {
                return Ok(true);
            }
            *bytes += data.len();
            out.push(SpoolRecord {
                seq,
                log_type: *log_type,
                data: data.to_vec(),
            });
        }
        pos += (FRAME_HEADER + len) as u64;
    }
    Ok(false)
}

fn store_ledger(dir: &Path, inner: &Inner) -> Result<(), SpoolError> {
    let mut ledger = Ledger::new();
    ledger.stream_id = inner.stream_id.clone();
    ledger.acked_seq = inner.acked;
    ledger.highest_seq = inner.next_seq - 1;
    ledger.highest_frame = inner.next_frame - 1;
    ledger.checkpoints = inner
        .checkpoints
        .iter()
        .map(|(source, (frame, state))| {
            let state = hex::encode(state);
            (
                source.clone(),
                LedgerCheckpoint {
                    frame: *frame,
                    state,
                },
            )
        })
        .collect();
    ledger.store(dir)
}

/// Sets `dir` to [`DIR_MODE`] and every file directly in it to [`FILE_MODE`] (a spool
/// created by an older agent had 0755/0644), so a later `chmod` cannot leave records readable.
fn tighten(dir: &Path) -> Result<(), SpoolError> {
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err(dir))?;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(io_err(&path))?;
        if meta.is_file() && meta.permissions().mode() & 0o777 != FILE_MODE {
            fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE))
                .map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Creates (or replaces) `path` with `bytes`, mode [`FILE_MODE`] from the start.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

/// The segment files of `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let id = path
            .extension()
            .filter(|e| *e == SEGMENT_EXT)
            .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok());
        if let Some(id) = id {
            found.push((id, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

fn count_quarantined(qdir: &Path) -> Result<u64, SpoolError> {
    let mut n = 0;
    for entry in fs::read_dir(qdir).map_err(io_err(qdir))? {
        let path = entry.map_err(io_err(qdir))?.path();
        if path.extension().is_none_or(|e| e != "reason") {
            n += 1;
        }
    }
    Ok(n)
}

fn truncate(path: &Path, len: u64) -> Result<(), SpoolError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(len)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

/// Moves a damaged segment to `quarantine/` with a `.reason` file and logs it.
fn quarantine(dir: &Path, path: &Path, reason: &str) -> Result<Quarantined, SpoolError> {
    let qdir = dir.join(QUARANTINE);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut dest = qdir.join(format!("{name}.{now}"));
    let mut n = 1;
    while dest.exists() {
        dest = qdir.join(format!("{name}.{now}.{n}"));
        n += 1;
    }
    fs::rename(path, &dest).map_err(io_err(&dest))?;
    let reason_path = PathBuf::from(format!("{}.reason", dest.display()));
    write_private(&reason_path, format!("{reason}\n").as_bytes())?;
    sync_dir(&qdir)?;
    sync_dir(dir)?;
    tracing::error!(
        segment = %path.display(),
        moved_to = %dest.display(),
        "log spool segment is corrupted ({reason}); its records are set aside and the rest is shipped"
    );
    Ok(Quarantined {
        path: dest,
        reason: reason.to_owned(),
    })
}
