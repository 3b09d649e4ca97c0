//! Tails one JSON-lines log file (Calico's `flows.log`, `dns.log`, `l7.log`) into the spool.
//!
//! Only complete lines are read (a partial last line waits for its newline); a line that is
//! not a JSON object is skipped with a warning naming the file, byte offset and (when known)
//! line number, and counted. The file's position is stored as a spool checkpoint in the same
//! durable append as the lines read up to it, so after a crash or restart nothing is read
//! twice and nothing is skipped. The position names the file by device and inode plus a
//! CRC-32 of its first bytes (up to 512), which tells a different file reusing an inode, or
//! a file truncated and refilled, from the one that was being read.
//!
//! Handled: the file not existing yet; rotation by rename (as Felix and logrotate do: the old
//! file is finished through the open handle — after one more poll, in case the writer still
//! holds it — then the new file is read from offset 0); rotation while the agent was down
//! (the old file is looked up by inode in the same directory); truncation (`copytruncate`:
//! the file shrinks below the offset, or its first bytes change → start again at 0); several
//! rotations between two looks (the rotated files written after the finished one —
//! `flows.log.1`, `flows.log-DATE`, … — are read oldest first before the new file).
//! Not handled: lines written between logrotate's copy and truncate (copytruncate loses
//! them by design), and a truncated file refilled past the old offset with identical first
//! bytes (indistinguishable from growth).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use cattery_api::logs::LogType;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::spool::{Spool, SpoolError};

/// Default time between two looks at an idle file.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Default bound on the lines of one append.
pub const DEFAULT_MAX_LINES: usize = 5_000;
/// Default bound on the bytes read for one append; also the longest line accepted.
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;
/// How many leading bytes identify a file.
const HEAD_BYTES: u64 = 512;
/// Rejected lines logged one by one per append; the rest are summarised.
const WARN_LINES: usize = 5;

/// Tails one file into the spool until shut down.
pub struct FileSource {
    path: PathBuf,
    log_type: LogType,
    spool: Arc<Spool>,
    poll_interval: Duration,
    max_lines: usize,
    max_bytes: usize,
    counters: Arc<FileSourceCounters>,
    metrics: Option<Arc<Metrics>>,
}

/// What a [`FileSource`] did, for metrics; shared, so it can be read while the source runs.
#[derive(Debug, Default)]
pub struct FileSourceCounters {
    shipped: AtomicU64,
    rejected: AtomicU64,
}

impl FileSourceCounters {
    /// Lines written to the spool.
    pub fn lines_shipped(&self) -> u64 {
        self.shipped.load(Ordering::Relaxed)
    }

    /// Lines skipped because they were not JSON objects (or longer than the read limit).
    pub fn lines_rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

impl FileSource {
    /// A source for the JSON-lines file at `path`, whose lines are `log_type` records.
    pub fn new(path: impl Into<PathBuf>, log_type: LogType, spool: Arc<Spool>) -> Self {
        FileSource {
            path: path.into(),
            log_type,
            spool,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_lines: DEFAULT_MAX_LINES,
            max_bytes: DEFAULT_MAX_BYTES,
            counters: Arc::default(),
            metrics: None,
        }
    }

    /// Counts the lines read and rejected in the agent's `records_read`/`records_rejected`
    /// metrics too (the pipeline passes its metrics; tests may not).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Changes how often an idle file is looked at (tests use a short one).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Changes the bounds of one append: lines, and bytes (also the longest line accepted).
    pub fn with_chunk_limits(mut self, max_lines: usize, max_bytes: usize) -> Self {
        self.max_lines = max_lines.max(1);
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// The key this source's position is stored under in the spool.
    pub fn source_id(&self) -> String {
        format!("file:{}:{}", self.log_type, self.path.display())
    }

    /// Lines shipped and rejected, readable while the source runs.
    pub fn counters(&self) -> Arc<FileSourceCounters> {
        self.counters.clone()
    }

    /// Tails the file until `shutdown` is cancelled. Problems (an unreadable file, a full or
    /// failing spool) are logged once and retried every poll interval; they never end it.
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = self.poll_interval;
        tracing::info!(path = %self.path.display(), log_type = %self.log_type, "tailing log file");
        let mut tailer = Tailer {
            source_id: self.source_id(),
            path: self.path,
            log_type: self.log_type,
            spool: self.spool,
            max_lines: self.max_lines,
            max_bytes: self.max_bytes,
            counters: self.counters,
            metrics: self.metrics,
            cur: None,
            rotation_seen: false,
            finished: Vec::new(),
            full: false,
            last_error: None,
        };
        while !shutdown.is_cancelled() {
            let task = tokio::task::spawn_blocking(move || {
                let r = tailer.step();
                (tailer, r)
            });
            let result;
            (tailer, result) = match task.await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!("file source task failed: {e}");
                    return;
                }
            };
            match result {
                Ok(Step::Progress) => {
                    tailer.last_error = None;
                    continue;
                }
                Ok(Step::Idle) => tailer.last_error = None,
                Ok(Step::Full) => {}
                Err(e) => {
                    let msg = format!("{e:#}");
                    if tailer.last_error.as_ref() != Some(&msg) {
                        tracing::warn!(path = %tailer.path.display(), "tailing log file: {msg}; retrying");
                        tailer.last_error = Some(msg);
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// Where in which file a source is; stored (as JSON) as its spool checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    dev: u64,
    ino: u64,
    /// Bytes consumed: everything before is in the spool (or was rejected).
    offset: u64,
    /// How many leading bytes `head_crc` covers (grows up to [`HEAD_BYTES`]).
    head_len: u64,
    head_crc: u32,
    /// Inside a line longer than the read limit, which is being discarded.
    skipping: bool,
}

/// What one step achieved; decides whether the next comes at once or after a poll interval.
enum Step {
    Progress,
    Idle,
    Full,
}

/// The file being read.
struct Tailed {
    file: File,
    /// Where it was found (differs from the configured path for a rotated file).
    name: PathBuf,
    pos: Position,
    /// Line number of the next line, when we have read the file from its start.
    line_no: Option<u64>,
}

impl Tailed {
    fn from_start(file: File, meta: &fs::Metadata, name: PathBuf) -> Tailed {
        Tailed {
            file,
            name,
            pos: Position {
                dev: meta.dev(),
                ino: meta.ino(),
                offset: 0,
                head_len: 0,
                head_crc: 0,
                skipping: false,
            },
            line_no: Some(1),
        }
    }
}

/// The blocking half of a [`FileSource`], moved to a blocking thread for each step.
struct Tailer {
    path: PathBuf,
    log_type: LogType,
    source_id: String,
    spool: Arc<Spool>,
    max_lines: usize,
    max_bytes: usize,
    counters: Arc<FileSourceCounters>,
    metrics: Option<Arc<Metrics>>,
    cur: Option<Tailed>,
    /// The path named a different file at the last idle step (give the writer one poll).
    rotation_seen: bool,
    /// Files (device, inode) finished since the file at the path was last opened, so a
    /// chain of rotations never reads one twice.
    finished: Vec<(u64, u64)>,
    full: bool,
    last_error: Option<String>,
}

/// A line that was skipped, reported once its append is durable.
struct Rejected {
    offset: u64,
    line_no: Option<u64>,
    reason: String,
}

impl Tailer {
    /// Reads and spools one chunk if there is one; otherwise looks for rotation.
    fn step(&mut self) -> anyhow::Result<Step> {
        if self.cur.is_none() {
            self.cur = self.resume()?;
        }
        let Some(cur) = self.cur.as_mut() else {
            return Ok(Step::Idle);
        };
        let len = cur.file.metadata().context("stat")?.len();
        if len < cur.pos.offset || !head_matches(&cur.file, &cur.pos)? {
            tracing::warn!(
                path = %cur.name.display(),
                offset = cur.pos.offset,
                "log file was truncated or rewritten in place; reading it again from the start"
            );
            cur.pos = Position {
                offset: 0,
                head_len: 0,
                head_crc: 0,
                skipping: false,
                ..cur.pos
            };
            cur.line_no = Some(1);
        }
        if len > cur.pos.offset
            && let Some(step) = self.ship_chunk(len, false)?
        {
            return Ok(step);
        }

        let cur = self.cur.as_mut().expect("checked above");
        let at_path = match fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context("stat"),
        };
        let Some(meta) = at_path.filter(|m| (m.dev(), m.ino()) != (cur.pos.dev, cur.pos.ino))
        else {
            self.rotation_seen = false;
            return Ok(Step::Idle);
        };
        if !self.rotation_seen {
            // The writer may still be finishing a line in the old file.
            self.rotation_seen = true;
            return Ok(Step::Idle);
        }
        if len > cur.pos.offset
            && let Some(step) = self.ship_chunk(len, true)?
        {
            return Ok(step);
        }
        // Rotated more than once since the last look: files rotated after the one just
        // finished come first, oldest first.
        let cur = self.cur.as_ref().expect("checked above");
        let finished = cur.file.metadata().context("stat")?;
        self.finished.push((cur.pos.dev, cur.pos.ino));
        if let Some((file, found, name)) =
            find_rotated_after(&self.path, &finished, &meta, &self.finished)?
        {
            let new = Tailed::from_start(file, &found, name);
            let old = self.cur.replace(new).expect("checked above");
            self.rotation_seen = false;
            tracing::info!(
                path = %self.path.display(),
                previous = %old.name.display(),
                next = %self.cur.as_ref().expect("just set").name.display(),
                "log file was rotated more than once; reading a rotated file written after the \
                 previous one"
            );
            return Ok(Step::Progress);
        }
        let file = File::open(&self.path).context("open")?;
        let new = Tailed::from_start(file, &meta, self.path.clone());
        let old = self.cur.replace(new).expect("checked above");
        self.rotation_seen = false;
        self.finished.clear();
        tracing::info!(
            path = %self.path.display(),
            previous = %old.name.display(),
            "log file was rotated; finished the previous file, reading the new one"
        );
        Ok(Step::Progress)
    }

    /// Finds where to start after a (re)start: the checkpointed file if it is still at the
    /// path or was rotated next to it, else the file at the path from its start.
    fn resume(&self) -> anyhow::Result<Option<Tailed>> {
        let at_path = match File::open(&self.path) {
            Ok(f) => {
                let m = f.metadata().context("stat")?;
                Some((f, m))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context("open"),
        };
        let saved = self.spool.checkpoint(&self.source_id);
        let pos = match saved.as_deref().map(serde_json::from_slice::<Position>) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                tracing::warn!(path = %self.path.display(), "ignoring an unreadable checkpoint: {e}");
                None
            }
        };
        if let Some(pos) = pos {
            if let Some((f, m)) = &at_path
                && (m.dev(), m.ino()) == (pos.dev, pos.ino)
                && m.len() >= pos.offset
                && head_matches(f, &pos)?
            {
                let (file, _) = at_path.expect("matched above");
                return Ok(Some(Tailed {
                    file,
                    name: self.path.clone(),
                    pos,
                    line_no: (pos.offset == 0).then_some(1),
                }));
            }
            if let Some((file, name)) = find_rotated(&self.path, &pos)? {
                tracing::info!(
                    path = %self.path.display(),
                    rotated_to = %name.display(),
                    offset = pos.offset,
                    "finishing a log file that was rotated while the agent was down"
                );
                return Ok(Some(Tailed {
                    file,
                    name,
                    pos,
                    line_no: None,
                }));
            }
            if pos.offset > 0 {
                tracing::warn!(
                    path = %self.path.display(),
                    offset = pos.offset,
                    "the log file being read before the restart is gone or was rewritten; \
                     reading the current file from the start"
                );
            }
        }
        Ok(at_path.map(|(f, m)| Tailed::from_start(f, &m, self.path.clone())))
    }

    /// Reads up to the chunk limits from the current offset and spools the complete lines
    /// with the new position. With `eof_ends_line`, a last line without newline counts too
    /// (the file was rotated away; nothing more will be written to it). `None`: nothing
    /// complete to read.
    fn ship_chunk(&mut self, len: u64, eof_ends_line: bool) -> anyhow::Result<Option<Step>> {
        let cur = self.cur.as_mut().expect("called with a current file");
        let start = cur.pos.offset;
        let want = (len - start).min(self.max_bytes as u64) as usize;
        let mut buf = vec![0u8; want];
        let got = read_at(&cur.file, &mut buf, start).context("read")?;
        buf.truncate(got);
        let at_eof = start + got as u64 >= len;

        let mut pos = cur.pos;
        let mut line_no = cur.line_no;
        let mut consumed = 0;
        let mut records: Vec<(LogType, &[u8])> = Vec::new();
        let mut rejected: Vec<Rejected> = Vec::new();
        if pos.skipping {
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    consumed = i + 1;
                    pos.skipping = false;
                    line_no = line_no.map(|n| n + 1);
                }
                None => consumed = buf.len(),
            }
        }
        while records.len() < self.max_lines && consumed < buf.len() {
            let rest = &buf[consumed..];
            let (line, used) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], i + 1),
                None if eof_ends_line && at_eof => (rest, rest.len()),
                None if consumed == 0 && buf.len() == self.max_bytes => {
                    rejected.push(Rejected {
                        offset: start,
                        line_no,
                        reason: format!("line longer than {} bytes", self.max_bytes),
                    });
                    consumed = buf.len();
                    pos.skipping = true;
                    break;
                }
                None => break,
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.iter().all(u8::is_ascii_whitespace) {
                match check_object(line) {
                    Ok(()) => records.push((self.log_type, line)),
                    Err(reason) => rejected.push(Rejected {
                        offset: start + consumed as u64,
                        line_no,
                        reason,
                    }),
                }
            }
            consumed += used;
            line_no = line_no.map(|n| n + 1);
        }
        if consumed == 0 {
            return Ok(None);
        }

        pos.offset = start + consumed as u64;
        if pos.head_len < HEAD_BYTES && pos.offset > pos.head_len {
            pos.head_len = pos.offset.min(HEAD_BYTES);
            pos.head_crc = head_crc(&cur.file, pos.head_len)?.unwrap_or(0);
        }
        let checkpoint = serde_json::to_vec(&pos).expect("a position always serialises");
        match self
            .spool
            .append(&records, Some((&self.source_id, &checkpoint)))
        {
            Ok(_) => {}
            Err(SpoolError::Full { used, max }) => {
                if !self.full {
                    tracing::warn!(
                        path = %cur.name.display(),
                        used,
                        max,
                        "log spool is full; pausing this file until there is room"
                    );
                    self.full = true;
                }
                return Ok(Some(Step::Full));
            }
            Err(e) => return Err(e).context("spooling"),
        }
        if self.full {
            self.full = false;
            tracing::info!(path = %cur.name.display(), "log spool has room again; resuming this file");
        }
        for r in rejected.iter().take(WARN_LINES) {
            tracing::warn!(
                path = %cur.name.display(),
                offset = r.offset,
                line = r.line_no,
                "skipping a malformed line: {}",
                r.reason
            );
        }
        if rejected.len() > WARN_LINES {
            tracing::warn!(
                path = %cur.name.display(),
                "skipped {} more malformed lines before offset {}",
                rejected.len() - WARN_LINES,
                pos.offset
            );
        }
        self.counters
            .shipped
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.counters
            .rejected
            .fetch_add(rejected.len() as u64, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.read(self.log_type, records.len() as u64);
            m.rejected_n(self.log_type, rejected.len() as u64);
        }
        cur.pos = pos;
        cur.line_no = line_no;
        Ok(Some(Step::Progress))
    }
}

/// Whether `line` is one JSON object (validated without building it).
fn check_object(line: &[u8]) -> Result<(), String> {
    if line.trim_ascii_start().first() != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(line)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// CRC-32 of the first `len` bytes, or `None` if the file is shorter.
fn head_crc(file: &File, len: u64) -> anyhow::Result<Option<u32>> {
    let mut buf = vec![0u8; len as usize];
    let got = read_at(file, &mut buf, 0).context("read")?;
    Ok((got == buf.len()).then(|| crc32fast::hash(&buf)))
}

/// Whether `file` still starts with the bytes `pos` was computed from.
fn head_matches(file: &File, pos: &Position) -> anyhow::Result<bool> {
    if pos.head_len == 0 {
        return Ok(true);
    }
    Ok(head_crc(file, pos.head_len)? == Some(pos.head_crc))
}

/// Suffixes of rotated files that were compressed: not JSON lines, never read.
const COMPRESSED: [&str; 4] = [".gz", ".bz2", ".xz", ".zst"];

/// The oldest file rotated away from `path` after `finished` was: a sibling named
/// `<name>.…`, `<name>-…` or `<name>_…` (`flows.log.1`, `flows.log-20261125`), not
/// compressed, last written no earlier than `finished`, and neither `current` (the file at
/// the path now) nor one in `done`. Found when the file was rotated twice between two
/// looks: the middle file is read before the current one.
fn find_rotated_after(
    path: &Path,
    finished: &fs::Metadata,
    current: &fs::Metadata,
    done: &[(u64, u64)],
) -> anyhow::Result<Option<(File, fs::Metadata, PathBuf)>> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(None);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("list directory"),
    };
    let since = finished.modified().ok();
    // Oldest first: by last write, then — file systems stamp times at a coarse tick, so
    // quick rotations tie — by the number the name ends with, highest first (logrotate's
    // `.1` is the newest).
    let age_key = |mtime: std::time::SystemTime, rest: &str| {
        let digits = rest.len() - rest.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let number = rest[rest.len() - digits..].parse::<u64>().unwrap_or(0);
        (mtime, std::cmp::Reverse(number))
    };
    type Key = (std::time::SystemTime, std::cmp::Reverse<u64>);
    let mut best: Option<(Key, PathBuf, fs::Metadata)> = None;
    for entry in entries {
        let entry = entry.context("list directory")?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        if !rest.starts_with(['.', '-', '_']) || COMPRESSED.iter().any(|c| rest.ends_with(c)) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let id = (meta.dev(), meta.ino());
        if !meta.is_file()
            || id == (current.dev(), current.ino())
            || id == (finished.dev(), finished.ino())
            || done.contains(&id)
        {
            continue;
        }
        let Ok(mtime) = meta.modified() else { continue };
        if since.is_some_and(|s| mtime < s) {
            continue;
        }
        let key = age_key(mtime, rest);
        if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
            best = Some((key, entry.path(), meta));
        }
    }
    let Some((_, path, meta)) = best else {
        return Ok(None);
    };
    match File::open(&path) {
        Ok(file) => Ok(Some((file, meta, path))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("open {}", path.display())),
    }
}

/// The file `pos` was reading, if it was renamed within the directory of `path`.
fn find_rotated(path: &Path, pos: &Position) -> anyhow::Result<Option<(File, PathBuf)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("list directory"),
    };
    for entry in entries {
        let entry = entry.context("list directory")?;
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || (meta.dev(), meta.ino()) != (pos.dev, pos.ino) {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if meta.len() >= pos.offset && head_matches(&file, pos)? {
            return Ok(Some((file, entry.path())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
