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
//! - `ledger.json` (version 2) — the epochs still holding unacknowledged records (each a
//!   stream id and its first seq), ack cursor, the highest seq and frame number ever handed
//!   out, and every source's latest checkpoint; replaced atomically (tmp + fsync + rename +
//!   dir fsync) on open, on every ack and on quarantine. Version 1 (one `stream_id`) is read
//!   as one epoch starting at seq 1.
//! - `quarantine/` — damaged byte ranges (`NAME.seg.at-OFFSET.UNIXTIME`), or a segment that
//!   stayed unreadable (`NAME.seg.UNIXTIME`), each with a `.reason` file beside.
//! - `lock` — `flock`ed while a spool is open, so two agents cannot share a directory.
//!
//! Log and audit records are as sensitive as keys: the directory and `quarantine/` are 0700,
//! every file is created 0600 (the ledger's temporary file and quarantine reasons included),
//! and a directory left looser (an older agent, a `chmod`) is tightened at every open.
//!
//! # Epochs
//!
//! Every opening starts an epoch: a fresh random stream id for the seqs handed out from then
//! on. Seqs stay one monotonic sequence (one ack cursor), but [`Spool::read_batch`] never
//! returns records of two epochs together and names the epoch's stream id, which the batch
//! header carries. So a spool directory restored from a backup, whose seqs from its highest
//! on were already used by the spool it was copied from, ships its new records under a
//! stream id the management plane has never seen (docs/design/0006-log-shipping.md).
//!
//! # Recovery
//!
//! [`Spool::open`] scans every segment and verifies every frame. An invalid frame with
//! nothing valid after it is a torn tail (the write was interrupted, so the append never
//! returned `Ok`): the segment is truncated there, and the seq and frame counters are raised
//! past any number the lost bytes could have held, so a seq is never reused (the management
//! plane deduplicates on `(stream_id, seq)`). An invalid frame followed by a valid one is
//! damage: the scan resynchronises on the next magic whose frame checks out and follows the
//! last intact one, the bytes in between go to `quarantine/`, the segment is rewritten with
//! only its intact frames, and the loss (bytes, and frames and records where the intact
//! frames around it tell) is reported in [`OpenReport`], [`SpoolStats`] and the log. Damage
//! found later, while reading, is repaired the same way. Segments whose records are all
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

use format::{FRAME_HEADER, FrameError, FrameView};
use ledger::{Epoch, Ledger, LedgerCheckpoint};

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
/// A segment being rewritten without its damaged bytes (`NAME.seg.tmp`).
const REWRITE_EXT: &str = "seg.tmp";

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

/// Records of one epoch, as [`Spool::read_batch`] hands them to the shipper.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The stream id of the epoch the records belong to (the batch header carries it).
    pub stream_id: String,
    /// The records, in seq order; empty when there is nothing to ship.
    pub records: Vec<SpoolRecord>,
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
    /// Files in `quarantine/` (damaged byte ranges, or whole segments that stayed unreadable),
    /// including ones from earlier runs.
    pub quarantined_segments: u64,
    /// Damaged bytes set aside since the spool was opened.
    pub corrupt_bytes: u64,
    /// Frames lost in them, as far as the intact frames around them tell.
    pub corrupt_frames: u64,
    /// Records lost in them, as far as the intact frames around them tell.
    pub corrupt_records: u64,
    /// Epochs still holding unacknowledged records, the current one included.
    pub epochs: u64,
    /// The last append was refused because the spool was full.
    pub full: bool,
}

/// What [`Spool::open`] found and repaired.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Damaged byte ranges moved aside (the intact frames around them are kept).
    pub quarantined: Vec<Quarantined>,
    /// Segments whose interrupted last write was cut off.
    pub truncated_tails: Vec<TruncatedTail>,
    /// Unacknowledged records found, to be shipped.
    pub recovered_records: u64,
    /// Live segments after recovery.
    pub segments: usize,
}

/// Bytes of a segment moved to `quarantine/` because they are not an intact frame.
#[derive(Clone, Debug)]
pub struct Quarantined {
    /// Where the bytes are now.
    pub path: PathBuf,
    /// The segment they were cut from.
    pub segment: PathBuf,
    /// Their offset in the segment.
    pub offset: u64,
    /// How many bytes were set aside.
    pub bytes: u64,
    /// Frames lost with them, when the intact frames around them tell.
    pub lost_frames: Option<u64>,
    /// Records lost with them, when the intact frames around them tell.
    pub lost_records: Option<u64>,
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

/// One intact frame found by [`scan_segment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedFrame {
    /// Offset of its magic in the segment.
    pub offset: usize,
    /// Its length, header included.
    pub len: usize,
    /// Its frame number.
    pub frame_no: u64,
    /// Seq of its first record.
    pub first_seq: u64,
    /// How many records it holds.
    pub records: usize,
}

/// What [`scan_segment`] found in a segment's bytes: every byte is in exactly one frame,
/// damaged range or the torn tail, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentScan {
    /// The intact frames recovery keeps.
    pub frames: Vec<ScannedFrame>,
    /// `(offset, len)` of each damaged range recovery would quarantine.
    pub damaged: Vec<(usize, usize)>,
    /// Offset where an incomplete last write starts, if any.
    pub torn_tail: Option<usize>,
}

/// Runs the spool's recovery scan over a segment's bytes without touching any file: for the
/// fuzz target, and for looking at a suspect or quarantined segment.
pub fn scan_segment(bytes: &[u8]) -> SegmentScan {
    let mut frames = Vec::new();
    let damage = format::scan(bytes, None, |offset, len, v| {
        frames.push(ScannedFrame {
            offset,
            len,
            frame_no: v.frame_no,
            first_seq: v.first_seq,
            records: v.records.len(),
        });
    });
    SegmentScan {
        frames,
        damaged: damage.bad.iter().map(|b| (b.offset, b.len)).collect(),
        torn_tail: damage.torn_tail.map(|t| t.offset),
    }
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
    /// Live segments, oldest first.
    segments: VecDeque<Segment>,
    /// Write handle of the last segment, if appends may continue in it.
    active: Option<File>,
    next_seq: u64,
    next_frame: u64,
    acked: u64,
    checkpoints: HashMap<String, (u64, Vec<u8>)>,
    /// Epochs that may hold unacknowledged records, oldest first; the last is the current one.
    epochs: Vec<Epoch>,
    bytes: u64,
    quarantined: u64,
    corrupt: Loss,
    full: bool,
    last_full_log: Option<Instant>,
}

/// What damage cost since the spool was opened.
#[derive(Clone, Copy, Debug, Default)]
struct Loss {
    bytes: u64,
    frames: u64,
    records: u64,
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

    /// Seqs it spans (records, plus any lost to damage in the middle).
    fn records(&self) -> u64 {
        (self.last_seq + 1).saturating_sub(self.first_seq)
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

        remove_leftover_rewrites(&dir)?;
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
        let mut corrupt = Loss::default();
        let mut max_seq = ledger.highest_seq.max(ledger.acked_seq);
        let mut max_frame = ledger.highest_frame;
        let mut segments = VecDeque::new();
        for path in files {
            let buf = fs::read(&path).map_err(io_err(&path))?;
            let repair = repair_segment(&dir, &path, &buf, max_seq + 1, false, |frame| {
                let count = frame.records.len() as u64;
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
            })?;
            if let Some(tail) = repair.torn_tail {
                let bytes = (buf.len() - tail.offset) as u64;
                tracing::warn!(
                    segment = %path.display(),
                    offset = tail.offset,
                    bytes,
                    "log spool: cutting off an incomplete write at the end of a segment ({})",
                    tail.reason
                );
                // The lost frame held at most `bytes` records and was numbered below
                // `max_frame + bytes`: skip past both so nothing is reused.
                max_seq += bytes;
                max_frame += bytes;
                report.truncated_tails.push(TruncatedTail {
                    segment: path.clone(),
                    offset: tail.offset as u64,
                    bytes,
                    reason: tail.reason,
                });
            }
            // Damaged ranges are always followed by an intact frame, whose numbers are above
            // any the lost frames held: no counter needs raising for them.
            for q in &repair.bad {
                corrupt.bytes += q.bytes;
                corrupt.frames += q.lost_frames.unwrap_or(0);
                corrupt.records += q.lost_records.unwrap_or(0);
            }
            report.quarantined.extend(repair.bad);
            if repair.seg.len == 0 {
                fs::remove_file(&path).map_err(io_err(&path))?;
            } else {
                segments.push_back(repair.seg);
            }
        }

        let acked = ledger.acked_seq;
        while let Some(seg) = segments.front()
            && seg.last_seq <= acked
        {
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            segments.pop_front();
        }

        // Every opening starts an epoch with a fresh stream id: if this directory was restored
        // from a backup, the seqs from here on may already have been used (under the old
        // epoch's stream id) by the spool the backup was taken from.
        let mut epochs = ledger.epochs;
        let current = Epoch::new(max_seq + 1);
        let stream_id = current.stream_id.clone();
        epochs.push(current);
        retire_epochs(&mut epochs, acked);
        let mut inner = Inner {
            bytes: segments.iter().map(|s| s.len).sum(),
            segments,
            active: None,
            next_seq: max_seq + 1,
            next_frame: max_frame + 1,
            acked,
            checkpoints,
            epochs,
            quarantined: count_quarantined(&qdir)?,
            corrupt,
            full: false,
            last_full_log: None,
        };
        // Durable before any record is written in the new epoch.
        store_ledger(&dir, &inner)?;
        report.recovered_records = inner.segments.iter().map(|s| s.pending(acked)).sum();
        report.segments = inner.segments.len();
        inner.quarantined = inner.quarantined.max(report.quarantined.len() as u64);
        tracing::info!(
            dir = %dir.display(),
            stream = stream_id,
            epochs = inner.epochs.len(),
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

    /// The random stream id of the current epoch, which records appended from now on are
    /// shipped under (a new one at every opening, kept in the ledger); the management plane
    /// stores each `(stream_id, seq)` once. Older records keep their epoch's id: see
    /// [`read_batch`](Self::read_batch).
    pub fn stream_id(&self) -> String {
        let inner = self.lock();
        inner
            .epochs
            .last()
            .expect("the current epoch")
            .stream_id
            .clone()
    }

    /// The management plane refused `stream` because another cluster owns that id (this
    /// directory was copied from another cluster's agent, or restored from one): moves the
    /// segments holding that epoch's unacknowledged records to `quarantine/`, so the agent
    /// stops resending what will never be stored, and retires the epoch; if it was the
    /// current one, appends continue under a fresh stream id. Returns how many records were
    /// set aside, or `None` when no epoch has that id (it was abandoned already). The
    /// segments go first: a crash before the ledger is written only means the (now empty)
    /// epoch is refused and abandoned once more.
    pub fn abandon_stream(&self, stream: &str) -> Result<Option<u64>, SpoolError> {
        let mut inner = self.lock();
        let Some(k) = inner.epochs.iter().position(|e| e.stream_id == stream) else {
            return Ok(None);
        };
        let first = inner.epochs[k].first_seq;
        let last = inner
            .epochs
            .get(k + 1)
            .map_or(inner.next_seq - 1, |next| next.first_seq - 1);
        let acked = inner.acked;
        let reason = format!(
            "log stream {stream} was refused by the management plane: another cluster owns it"
        );
        // An opening starts a new segment, so a segment never holds two epochs' records.
        let mut pending = 0;
        let mut kept = VecDeque::with_capacity(inner.segments.len());
        while let Some(seg) = inner.segments.pop_front() {
            if seg.first_seq >= first && seg.last_seq <= last && seg.last_seq > acked {
                pending += seg.pending(acked);
                inner.bytes -= seg.len;
                inner.quarantined += 1;
                quarantine_whole(&self.dir, &seg, &reason)?;
            } else {
                kept.push_back(seg);
            }
        }
        inner.segments = kept;
        if k + 1 == inner.epochs.len() {
            inner.active = None;
            let next = inner.next_seq;
            inner.epochs.push(Epoch::new(next));
        }
        // Nothing older waits: the acknowledgement cursor moves past the set-aside records.
        if acked + 1 >= first {
            inner.acked = inner.acked.max(last);
        }
        inner.epochs.remove(k);
        let acked = inner.acked;
        retire_epochs(&mut inner.epochs, acked);
        store_ledger(&self.dir, &inner)?;
        tracing::error!(
            dir = %self.dir.display(),
            refused = stream,
            stream = inner.epochs.last().expect("the current epoch").stream_id,
            records = pending,
            "log spool: the management plane refused one of this spool's streams (another \
             cluster owns its id); its records are set aside in quarantine/"
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
    /// record if there is any, so one oversized record cannot stall the shipper. All records
    /// belong to one epoch (a batch is cut where the next epoch starts), whose stream id the
    /// batch carries; with nothing to ship, the batch is empty and names the current epoch.
    pub fn read_batch(
        &self,
        after: Option<u64>,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Batch, SpoolError> {
        let mut inner = self.lock();
        let start = after.unwrap_or(0).max(inner.acked) + 1;
        let mut k = 0;
        while k < inner.epochs.len() {
            let first = inner.epochs[k].first_seq;
            let end = inner
                .epochs
                .get(k + 1)
                .map_or(u64::MAX, |e| e.first_seq.saturating_sub(1));
            let last_epoch = k + 1 == inner.epochs.len();
            if end < start && !last_epoch {
                k += 1;
                continue;
            }
            let records =
                self.read_range(&mut inner, start.max(first), end, max_records, max_bytes)?;
            // An older epoch whose remaining records were all lost to damage has nothing to
            // give: go on with the next one rather than stall.
            if !records.is_empty() || last_epoch {
                return Ok(Batch {
                    stream_id: inner.epochs[k].stream_id.clone(),
                    records,
                });
            }
            k += 1;
        }
        unreachable!("the current epoch is always listed")
    }

    /// [`read_batch`](Self::read_batch) without the stream id (tests and tools).
    pub fn read_after(
        &self,
        after: Option<u64>,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpoolRecord>, SpoolError> {
        Ok(self.read_batch(after, max_records, max_bytes)?.records)
    }

    /// Records with seqs in `start..=end`, within the limits. A segment found damaged is
    /// repaired (its intact frames kept, the rest quarantined) and read again; one that is
    /// still unreadable after that is quarantined whole.
    fn read_range(
        &self,
        inner: &mut Inner,
        start: u64,
        end: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpoolRecord>, SpoolError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut i = 0;
        let mut repaired: Option<PathBuf> = None;
        while i < inner.segments.len() {
            let seg = &inner.segments[i];
            if seg.last_seq < start.max(seg.first_seq) {
                i += 1;
                continue;
            }
            if seg.first_seq > end {
                break;
            }
            let e = match read_segment(
                seg,
                start,
                end,
                &mut out,
                &mut bytes,
                max_records,
                max_bytes,
            ) {
                Ok(true) => break,
                Ok(false) => {
                    i += 1;
                    continue;
                }
                Err(ReadError::Io(e)) => return Err(io_err(&seg.path)(e)),
                Err(ReadError::Frame(e)) => e,
            };
            // Damaged after it was written. Records already collected from it are dropped and
            // read again from the repaired segment, so what is returned stays contiguous.
            let (first, last) = (seg.first_seq, seg.last_seq);
            out.retain(|r| r.seq < first || r.seq > last);
            bytes = out.iter().map(|r| r.data.len()).sum();
            if i + 1 == inner.segments.len() {
                // The append handle would write after bytes that are no longer there.
                inner.active = None;
            }
            let old = inner.segments.remove(i).expect("index in range");
            inner.bytes -= old.len;
            if repaired.as_ref() == Some(&old.path) {
                inner.quarantined += 1;
                let reason = format!("still unreadable after repair: {e}");
                let q = quarantine_whole(&self.dir, &old, &reason)?;
                inner.corrupt.bytes += q.bytes;
                inner.corrupt.records += old.records();
            } else {
                let mut buf = fs::read(&old.path).map_err(io_err(&old.path))?;
                buf.truncate(old.len as usize);
                let repair =
                    repair_segment(&self.dir, &old.path, &buf, old.first_seq, true, |_| {})?;
                inner.quarantined += repair.bad.len() as u64;
                for q in &repair.bad {
                    inner.corrupt.bytes += q.bytes;
                    inner.corrupt.frames += q.lost_frames.unwrap_or(0);
                }
                // Exact here: the segment's record count before the damage is known.
                inner.corrupt.records += old.records().saturating_sub(repair.seg.records());
                if repair.seg.len == 0 {
                    fs::remove_file(&old.path).map_err(io_err(&old.path))?;
                } else {
                    inner.bytes += repair.seg.len;
                    inner.segments.insert(i, repair.seg);
                    repaired = Some(old.path);
                }
            }
            store_ledger(&self.dir, inner)?;
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
        retire_epochs(&mut inner.epochs, seq);
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
            corrupt_bytes: inner.corrupt.bytes,
            corrupt_frames: inner.corrupt.frames,
            corrupt_records: inner.corrupt.records,
            epochs: inner.epochs.len() as u64,
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
    end: u64,
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
            if seq > end {
                return Ok(true);
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

/// Drops the epochs that can hold no unacknowledged record: older ones whose every seq is
/// acknowledged, and empty ones (an opening that wrote nothing). The current one stays.
fn retire_epochs(epochs: &mut Vec<Epoch>, acked: u64) {
    let mut k = 0;
    while k + 1 < epochs.len() {
        let next = epochs[k + 1].first_seq;
        let empty = next <= epochs[k].first_seq;
        let done = next <= acked.saturating_add(1) && k == 0;
        if empty || done {
            epochs.remove(k);
        } else {
            k += 1;
        }
    }
}

fn store_ledger(dir: &Path, inner: &Inner) -> Result<(), SpoolError> {
    let mut ledger = Ledger::new();
    ledger.epochs = inner.epochs.clone();
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

/// What [`repair_segment`] found and did.
struct Repair {
    /// The segment as it is now, holding only intact frames.
    seg: Segment,
    /// The damaged ranges set aside.
    bad: Vec<Quarantined>,
    /// The incomplete last write that was cut off (only when tails are not damage).
    torn_tail: Option<format::TornTail>,
}

/// Scans `buf` (the bytes of the segment at `path`), calling `on_frame` for every intact
/// frame; moves every damaged range to `quarantine/` and rewrites the segment with only its
/// intact frames (or just cuts a torn tail). `tail_is_damage` is for segments whose every
/// append had succeeded (found damaged while reading): their invalid tail is quarantined too.
fn repair_segment(
    dir: &Path,
    path: &Path,
    buf: &[u8],
    next_seq: u64,
    tail_is_damage: bool,
    mut on_frame: impl FnMut(&FrameView<'_>),
) -> Result<Repair, SpoolError> {
    let first_frame = path
        .file_stem()
        .and_then(|s| s.to_str()?.parse::<u64>().ok());
    let mut frames = Vec::new();
    let mut damage = format::scan(buf, first_frame, |off, len, view| {
        frames.push((off, len, view.first_seq, view.records.len() as u64));
        on_frame(view);
    });
    if tail_is_damage && let Some(tail) = damage.torn_tail.take() {
        damage.bad.push(format::BadRange {
            offset: tail.offset,
            len: buf.len() - tail.offset,
            reason: tail.reason,
            frames: None,
            records: None,
        });
    }
    let mut seg = Segment::new(path.to_owned(), next_seq);
    let mut len = 0;
    for &(_, n, first_seq, count) in &frames {
        seg.note_frame(len, n as u64, first_seq, count);
        len += n as u64;
    }
    let mut bad = Vec::with_capacity(damage.bad.len());
    for range in &damage.bad {
        bad.push(quarantine_range(dir, path, buf, range)?);
    }
    if !bad.is_empty() {
        // The bad bytes are safe in quarantine/ first; then the segment is replaced
        // atomically, so a crash leaves either the old bytes (repaired again) or the new.
        let tmp = path.with_extension(REWRITE_EXT);
        let mut intact = Vec::with_capacity(len as usize);
        for &(off, n, ..) in &frames {
            intact.extend_from_slice(&buf[off..off + n]);
        }
        write_private(&tmp, &intact)?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(dir)?;
    } else if let Some(tail) = &damage.torn_tail {
        truncate(path, tail.offset as u64)?;
    }
    Ok(Repair {
        seg,
        bad,
        torn_tail: damage.torn_tail,
    })
}

/// Removes segment rewrites a crash left half done (the segment itself is still whole).
fn remove_leftover_rewrites(dir: &Path) -> Result<(), SpoolError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == "tmp")
            && path
                .file_stem()
                .is_some_and(|s| Path::new(s).extension().is_some_and(|e| e == SEGMENT_EXT))
        {
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// A free name `quarantine/STEM.UNIXTIME[.N]`.
fn quarantine_name(dir: &Path, stem: &str) -> PathBuf {
    let qdir = dir.join(QUARANTINE);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut dest = qdir.join(format!("{stem}.{now}"));
    let mut n = 1;
    while dest.exists() {
        dest = qdir.join(format!("{stem}.{now}.{n}"));
        n += 1;
    }
    dest
}

/// Writes the damaged `range` of segment `path` (bytes `buf`) to
/// `quarantine/NAME.at-OFFSET.UNIXTIME` with a `.reason` file, and logs what was lost.
fn quarantine_range(
    dir: &Path,
    path: &Path,
    buf: &[u8],
    range: &format::BadRange,
) -> Result<Quarantined, SpoolError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let dest = quarantine_name(dir, &format!("{name}.at-{}", range.offset));
    write_private(&dest, &buf[range.offset..range.offset + range.len])?;
    let q = Quarantined {
        path: dest,
        segment: path.to_owned(),
        offset: range.offset as u64,
        bytes: range.len as u64,
        lost_frames: range.frames,
        lost_records: range.records,
        reason: range.reason.clone(),
    };
    let count =
        |n: Option<u64>| n.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string());
    let reason = format!(
        "{} bytes at offset {} of {} are not an intact frame ({}); {} frames and {} records lost; \
         the intact frames around them are kept",
        q.bytes,
        q.offset,
        path.display(),
        q.reason,
        count(q.lost_frames),
        count(q.lost_records),
    );
    write_private(&reason_path(&q.path), format!("{reason}\n").as_bytes())?;
    sync_dir(&dir.join(QUARANTINE))?;
    tracing::error!(
        segment = %path.display(),
        offset = q.offset,
        bytes = q.bytes,
        lost_frames = q.lost_frames,
        lost_records = q.lost_records,
        moved_to = %q.path.display(),
        "log spool: damaged bytes set aside ({})",
        q.reason
    );
    Ok(q)
}

fn reason_path(quarantined: &Path) -> PathBuf {
    PathBuf::from(format!("{}.reason", quarantined.display()))
}

/// Moves a segment that stays unreadable to `quarantine/` whole, with a `.reason` file.
fn quarantine_whole(dir: &Path, seg: &Segment, reason: &str) -> Result<Quarantined, SpoolError> {
    let name = seg.path.file_name().unwrap_or_default().to_string_lossy();
    let dest = quarantine_name(dir, &name);
    fs::rename(&seg.path, &dest).map_err(io_err(&dest))?;
    write_private(&reason_path(&dest), format!("{reason}\n").as_bytes())?;
    sync_dir(&dir.join(QUARANTINE))?;
    sync_dir(dir)?;
    tracing::error!(
        segment = %seg.path.display(),
        moved_to = %dest.display(),
        lost_records = seg.records(),
        "log spool segment set aside ({reason}); the rest is shipped"
    );
    Ok(Quarantined {
        path: dest,
        segment: seg.path.clone(),
        offset: 0,
        bytes: seg.len,
        lost_frames: None,
        lost_records: Some(seg.records()),
        reason: reason.to_owned(),
    })
}
