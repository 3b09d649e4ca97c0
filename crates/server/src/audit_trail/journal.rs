//! The audit journal: the durable, append-only first home of the management plane's audit
//! events, from which they are indexed into the log store later (see
//! docs/design/0009-audit-journal.md).
//!
//! A directory of segments named by the sequence number of their first line
//! (`00000001764000000000000.ndjson`), each a file of `audit.k8s.io/v1` Events, one JSON
//! object per line — the format of kube-apiserver's `--audit-log-path`. Line *i* of a
//! segment has sequence number `base + i`: the ids under which the events are stored, so
//! indexing a line twice (after a crash between storing and saving progress) stores it once.
//!
//! One writer ([`SegmentWriter`]) appends whole lines (one `write` per batch; an
//! `fdatasync` at least every [`SYNC_EVERY`], at rotation and at shutdown) and then
//! publishes the new length; the reader ([`Journal::read`]) only ever sees published lengths, so it never
//! reads half a line. The indexing progress (a [`Cursor`]) is saved in the file `indexed`
//! after every stored batch; segments wholly behind it are deleted. On open, a line torn by
//! a crash in the middle of a write is cut off.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;

/// A new segment is started once the active one is this large.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Longest time appended lines wait for an `fdatasync`. Once written they survive the
/// process being killed; this bounds what a power loss can take.
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const SUFFIX: &str = ".ndjson";
const PROGRESS: &str = "indexed";

/// Where indexing has got to: line `line` (byte `offset`) of the segment starting at `base`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// First sequence number of the segment.
    pub base: u64,
    /// Byte offset of the next line to index.
    pub offset: u64,
    /// Index of that line in the segment.
    pub line: u64,
}

/// One segment's published extent.
#[derive(Clone, Copy, Debug)]
struct Segment {
    base: u64,
    bytes: u64,
    lines: u64,
}

impl Segment {
    fn end_seq(&self) -> u64 {
        self.base + self.lines
    }
}

struct State {
    /// Oldest first; the last one is the one being appended to (if any).
    segments: VecDeque<Segment>,
    cursor: Cursor,
    /// The reader's open file (segment base, file).
    reading: Option<(u64, File)>,
}

/// The shared view of the journal: segment extents, the indexing cursor, and a wake-up for
/// the indexer.
pub struct Journal {
    dir: PathBuf,
    state: Mutex<State>,
    appended: Condvar,
}

/// Lines read for indexing: `(seq, line)` pairs and the cursor just past them.
pub struct Batch {
    /// The lines (without their newline) and their sequence numbers.
    pub lines: Vec<(u64, Vec<u8>)>,
    /// Where indexing stands once these lines are stored.
    pub end: Cursor,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:023}{SUFFIX}"))
}

fn now_micros() -> u64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).max(0) as u64
}

impl Journal {
    /// Opens (creating, mode 0700) the journal in `dir`: finds its segments, cuts off torn
    /// last lines, reads the saved cursor and deletes segments wholly behind it.
    pub fn open(dir: &Path) -> io::Result<Journal> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(base) = name
                .strip_suffix(SUFFIX)
                .and_then(|b| b.parse::<u64>().ok())
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments = VecDeque::new();
        for base in bases {
            segments.push_back(recover_segment(&segment_path(dir, base), base)?);
        }
        let saved = read_progress(&dir.join(PROGRESS));
        let cursor = match (saved, segments.front()) {
            (Some(c), _) if segments.iter().any(|s| s.base == c.base) => {
                let s = segments.iter().find(|s| s.base == c.base).copied();
                match s {
                    Some(s) if c.offset <= s.bytes && c.line <= s.lines => c,
                    _ => {
                        tracing::warn!(
                            "audit journal: saved progress {c:?} is past the end of its segment; \
                             re-reading the segment (lines already stored are recognised)"
                        );
                        Cursor {
                            base: c.base,
                            ..Cursor::default()
                        }
                    }
                }
            }
            (_, Some(first)) => Cursor {
                base: first.base,
                ..Cursor::default()
            },
            (_, None) => Cursor::default(),
        };
        while segments.front().is_some_and(|s| s.base < cursor.base) {
            if let Some(s) = segments.pop_front() {
                remove_segment(dir, s.base);
            }
        }
        Ok(Journal {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                segments,
                cursor,
                reading: None,
            }),
            appended: Condvar::new(),
        })
    }

    /// Events and bytes journaled but not yet indexed.
    pub fn backlog(&self) -> (u64, u64) {
        let st = lock(&self.state);
        let mut events = 0;
        let mut bytes = 0;
        for s in st.segments.iter().filter(|s| s.base >= st.cursor.base) {
            events += s.lines;
            bytes += s.bytes;
        }
        if st.segments.iter().any(|s| s.base == st.cursor.base) {
            events -= st.cursor.line;
            bytes -= st.cursor.offset;
        }
        (events, bytes)
    }

    /// Waits until something is appended, at most `timeout`.
    pub fn wait_appended(&self, timeout: Duration) {
        let st = lock(&self.state);
        let _ = self.appended.wait_timeout(st, timeout);
    }

    /// Wakes a waiting [`Journal::wait_appended`] (used when stopping).
    pub fn wake(&self) {
        self.appended.notify_all();
    }

    /// Starts the writer. Its first append opens a new segment whose sequence numbers
    /// follow every existing line's (and the clock's microseconds, so they also exceed
    /// what earlier versions stored under the same stream).
    pub fn writer(&self) -> SegmentWriter {
        SegmentWriter {
            file: None,
            synced: std::time::Instant::now(),
            dirty: false,
        }
    }

    /// Reads up to `max_lines` lines (and about `max_bytes`) from the cursor on; `None` when
    /// nothing is waiting. Exhausted segments before the last are skipped (and deleted).
    pub fn read(&self, max_lines: usize, max_bytes: usize) -> io::Result<Option<Batch>> {
        let mut st = lock(&self.state);
        loop {
            let Some(pos) = st.segments.iter().position(|s| s.base == st.cursor.base) else {
                // The cursor's segment is gone or was never written: start at the first one.
                match st.segments.front().copied() {
                    Some(first) if first.base != st.cursor.base => {
                        st.cursor = Cursor {
                            base: first.base,
                            ..Cursor::default()
                        };
                        continue;
                    }
                    _ => return Ok(None),
                }
            };
            let seg = st.segments[pos];
            if st.cursor.offset < seg.bytes {
                break;
            }
            // This segment is read to its end; move on if a later one exists.
            match st.segments.get(pos + 1).copied() {
                Some(next) => {
                    st.cursor = Cursor {
                        base: next.base,
                        ..Cursor::default()
                    };
                }
                None => return Ok(None),
            }
        }
        let cursor = st.cursor;
        let seg = *st
            .segments
            .iter()
            .find(|s| s.base == cursor.base)
            .ok_or_else(|| io::Error::other("audit journal: segment vanished"))?;
        let file = match st.reading.take() {
            Some((base, f)) if base == cursor.base => f,
            _ => File::open(segment_path(&self.dir, cursor.base))?,
        };
        drop(st);
        let want = (seg.bytes - cursor.offset).min(max_bytes as u64) as usize;
        let mut buf = vec![0u8; want];
        file.read_exact_at(&mut buf, cursor.offset)?;
        // Published lengths end at a newline; a `max_bytes` cut may not. A line longer
        // than max_bytes is read whole.
        let mut end = match buf.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => {
                let mut rest = Vec::new();
                let mut f = &file;
                f.seek(SeekFrom::Start(cursor.offset + want as u64))?;
                f.take(seg.bytes - cursor.offset - want as u64)
                    .read_to_end(&mut rest)?;
                buf.extend_from_slice(&rest);
                buf.iter()
                    .position(|&b| b == b'\n')
                    .map_or(buf.len(), |i| i + 1)
            }
        };
        let mut lines = Vec::new();
        let mut start = 0;
        let mut line = cursor.line;
        while start < end {
            let stop = buf[start..end]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(end, |i| start + i);
            lines.push((cursor.base + line, buf[start..stop].to_vec()));
            line += 1;
            start = stop + 1;
            if lines.len() == max_lines {
                end = start.min(end);
                break;
            }
        }
        lock(&self.state).reading = Some((cursor.base, file));
        Ok(Some(Batch {
            lines,
            end: Cursor {
                base: cursor.base,
                offset: cursor.offset + end as u64,
                line,
            },
        }))
    }

    /// Records that everything before `end` is stored: saves the cursor and deletes
    /// segments wholly behind it (never the one being appended to).
    pub fn advance(&self, end: Cursor) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.cursor = end;
        let mut gone = Vec::new();
        while st.segments.len() > 1 {
            let first = st.segments[0];
            let done =
                first.base < end.base || (first.base == end.base && end.offset >= first.bytes);
            if !done {
                break;
            }
            st.segments.pop_front();
            gone.push(first.base);
            if first.base == end.base {
                let next = st.segments[0].base;
                st.cursor = Cursor {
                    base: next,
                    ..Cursor::default()
                };
            }
        }
        if st.reading.as_ref().is_some_and(|(b, _)| gone.contains(b)) {
            st.reading = None;
        }
        let cursor = st.cursor;
        drop(st);
        write_progress(&self.dir.join(PROGRESS), cursor)?;
        for base in gone {
            remove_segment(&self.dir, base);
        }
        Ok(())
    }
}

/// The single appender of a [`Journal`].
pub struct SegmentWriter {
    /// The active segment: file, its base, published bytes and lines.
    file: Option<(File, Segment)>,
    /// When the active segment was last made durable.
    synced: std::time::Instant,
    /// Whether lines were written since then.
    dirty: bool,
}

impl SegmentWriter {
    /// Appends `lines` whole lines (`buf` ends with a newline) and publishes them to the
    /// reader (durable once [`SegmentWriter::sync_if_due`] or [`SegmentWriter::sync`] has
    /// run). On failure nothing of
    /// `buf` is published, the segment is cut back to its last published length, and the
    /// next append starts a new segment.
    pub fn append(&mut self, journal: &Journal, buf: &[u8], lines: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if self
            .file
            .as_ref()
            .is_none_or(|(_, s)| s.bytes >= SEGMENT_BYTES)
        {
            self.sync()?;
            self.file = Some(self.create(journal)?);
        }
        let Some((file, seg)) = self.file.as_mut() else {
            return Err(io::Error::other("audit journal: no open segment"));
        };
        let written = file.write_all(buf);
        self.dirty = true;
        if let Err(e) = written {
            let _ = file.set_len(seg.bytes);
            self.file = None;
            return Err(e);
        }
        seg.bytes += buf.len() as u64;
        seg.lines += lines;
        let published = *seg;
        let mut st = lock(&journal.state);
        if let Some(s) = st.segments.iter_mut().find(|s| s.base == published.base) {
            *s = published;
        }
        drop(st);
        journal.appended.notify_all();
        Ok(())
    }

    /// Makes everything appended so far durable (called at rotation and shutdown).
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some((file, _)) = &self.file
            && self.dirty
        {
            file.sync_data()?;
        }
        self.dirty = false;
        self.synced = std::time::Instant::now();
        Ok(())
    }

    /// [`SegmentWriter::sync`] if something was appended and the last sync is
    /// [`SYNC_EVERY`] old.
    pub fn sync_if_due(&mut self) -> io::Result<()> {
        if self.dirty && self.synced.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    fn create(&self, journal: &Journal) -> io::Result<(File, Segment)> {
        let mut st = lock(&journal.state);
        let after = st.segments.back().map_or(0, Segment::end_seq);
        let base = now_micros().max(after).max(st.cursor.base + st.cursor.line);
        let path = segment_path(&journal.dir, base);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        File::open(&journal.dir)?.sync_all()?;
        let seg = Segment {
            base,
            bytes: 0,
            lines: 0,
        };
        st.segments.push_back(seg);
        Ok((file, seg))
    }
}

/// Counts the lines of a segment, cutting off a torn (newline-less) end.
fn recover_segment(path: &Path, base: u64) -> io::Result<Segment> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let whole = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < data.len() {
        tracing::warn!(
            "audit journal: {} ends with {} bytes of an unfinished line (a crash while \
             writing); cutting them off",
            path.display(),
            data.len() - whole
        );
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(whole as u64)?;
    }
    let lines = data[..whole].iter().filter(|&&b| b == b'\n').count() as u64;
    Ok(Segment {
        base,
        bytes: whole as u64,
        lines,
    })
}

fn read_progress(path: &Path) -> Option<Cursor> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(base)), Some(Ok(offset)), Some(Ok(line))) => Some(Cursor { base, offset, line }),
        _ => {
            tracing::warn!(
                "audit journal: {} is unreadable; indexing restarts at the oldest segment \
                 (lines already stored are recognised)",
                path.display()
            );
            None
        }
    }
}

/// Saved with write + rename, without fsync: a lost update only means lines are read again,
/// and the store recognises them by sequence number.
fn write_progress(path: &Path, c: Cursor) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?
        .write_all(format!("{} {} {}\n", c.base, c.offset, c.line).as_bytes())?;
    std::fs::rename(&tmp, path)
}

fn remove_segment(dir: &Path, base: u64) {
    let path = segment_path(dir, base);
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(
            "audit journal: could not delete indexed segment {}: {e}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(j: &Journal, w: &mut SegmentWriter, lines: &[&str]) {
        let mut buf = Vec::new();
        for l in lines {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        w.append(j, &buf, lines.len() as u64).unwrap();
    }

    fn texts(b: &Batch) -> Vec<String> {
        b.lines
            .iter()
            .map(|(_, l)| String::from_utf8(l.clone()).unwrap())
            .collect()
    }

    #[test]
    fn lines_are_read_in_order_with_consecutive_seqs_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.read(10, 1 << 20).unwrap().is_none());
        let mut w = j.writer();
        append(&j, &mut w, &["a", "b", "c"]);
        assert_eq!(j.backlog().0, 3);
        let b = j.read(2, 1 << 20).unwrap().unwrap();
        assert_eq!(texts(&b), ["a", "b"]);
        assert_eq!(b.lines[1].0, b.lines[0].0 + 1);
        let first_seq = b.lines[0].0;
        j.advance(b.end).unwrap();
        assert_eq!(j.backlog().0, 1);
        drop((j, w));

        // Reopened: "c" is still waiting, and new lines get higher seqs in a new segment.
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.backlog().0, 1);
        let mut w = j.writer();
        append(&j, &mut w, &["d"]);
        let b = j.read(10, 1 << 20).unwrap().unwrap();
        assert_eq!(texts(&b), ["c"]);
        assert_eq!(b.lines[0].0, first_seq + 2);
        j.advance(b.end).unwrap();
        let b = j.read(10, 1 << 20).unwrap().unwrap();
        assert_eq!(texts(&b), ["d"]);
        assert!(b.lines[0].0 > first_seq + 2);
        j.advance(b.end).unwrap();
        assert_eq!(j.backlog(), (0, 0));
        // The first segment is wholly indexed and no longer active: deleted.
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("ndjson".as_ref()))
            .count();
        assert_eq!(segments, 1);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut w = j.writer();
        append(&j, &mut w, &["{\"a\":1}", "{\"b\":2}"]);
        drop((j, w));
        let seg = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension() == Some("ndjson".as_ref()))
            .unwrap();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"c\":").unwrap();
        drop(f);
        let j = Journal::open(dir.path()).unwrap();
        let b = j.read(10, 1 << 20).unwrap().unwrap();
        assert_eq!(texts(&b), ["{\"a\":1}", "{\"b\":2}"]);
        assert!(std::fs::read(&seg).unwrap().ends_with(b"}\n"));
    }

    #[test]
    fn reads_are_bounded_by_bytes_but_never_split_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut w = j.writer();
        let long = "x".repeat(100);
        append(&j, &mut w, &["short", &long, "tail"]);
        let b = j.read(10, 8).unwrap().unwrap();
        assert_eq!(texts(&b), ["short"]);
        j.advance(b.end).unwrap();
        let b = j.read(10, 8).unwrap().unwrap();
        assert_eq!(texts(&b), [long.as_str()]);
        j.advance(b.end).unwrap();
        let b = j.read(10, 8).unwrap().unwrap();
        assert_eq!(texts(&b), ["tail"]);
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        let j = Journal::open(&jdir).unwrap();
        let mut w = j.writer();
        append(&j, &mut w, &["a"]);
        let b = j.read(10, 1 << 20).unwrap().unwrap();
        j.advance(b.end).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&jdir), 0o700);
        for e in std::fs::read_dir(&jdir).unwrap() {
            assert_eq!(mode(&e.unwrap().path()), 0o600);
        }
    }
}
