//! Frame encoding and decoding (the layout is described in the parent module's doc).

use cattery_api::logs::LogType;

/// `"CSP1"`: marks the start of every frame, and is what recovery resynchronises on.
pub(super) const MAGIC: u32 = u32::from_le_bytes(*b"CSP1");
/// Magic, payload length and CRC-32 of the payload.
pub(super) const FRAME_HEADER: usize = 12;
/// Frame number, first seq, record count, checkpoint flag.
const PAYLOAD_FIXED: usize = 8 + 8 + 4 + 1;
/// Log type and length of one record.
const RECORD_HEADER: usize = 1 + 4;

/// A decoded frame, borrowing from the payload it was decoded from.
pub(super) struct FrameView<'a> {
    /// Position of the frame among every frame ever written to this spool.
    pub frame_no: u64,
    /// Seq of the first record (or of the next record, when the frame holds none).
    pub first_seq: u64,
    /// The source checkpoint written together with the records.
    pub checkpoint: Option<(&'a str, &'a [u8])>,
    /// The records, in seq order.
    pub records: Vec<(LogType, &'a [u8])>,
}

/// Why bytes are not a valid frame.
#[derive(Debug)]
pub(super) enum FrameError {
    /// The frame extends past the end of the data (a torn write, or a corrupted length).
    Incomplete,
    /// Anything else, with a reason for the operator.
    Invalid(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Incomplete => f.write_str("frame extends past the end of the file"),
            FrameError::Invalid(reason) => f.write_str(reason),
        }
    }
}

fn type_code(t: LogType) -> u8 {
    match t {
        LogType::Flows => 0,
        LogType::Dns => 1,
        LogType::L7 => 2,
        LogType::Audit => 3,
    }
}

fn type_from_code(c: u8) -> Option<LogType> {
    LogType::ALL.get(usize::from(c)).copied()
}

/// The encoded size of a frame holding `records` and `checkpoint`.
pub(super) fn frame_len(records: &[(LogType, &[u8])], checkpoint: Option<(&str, &[u8])>) -> usize {
    FRAME_HEADER
        + PAYLOAD_FIXED
        + checkpoint.map_or(0, |(s, st)| 2 + s.len() + 4 + st.len())
        + records
            .iter()
            .map(|(_, d)| RECORD_HEADER + d.len())
            .sum::<usize>()
}

/// Encodes one frame. Lengths must fit their fields (the caller checks them).
pub(super) fn encode(
    frame_no: u64,
    first_seq: u64,
    records: &[(LogType, &[u8])],
    checkpoint: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame_len(records, checkpoint));
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.extend_from_slice(&frame_no.to_le_bytes());
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    match checkpoint {
        None => out.push(0),
        Some((source, state)) => {
            out.push(1);
            out.extend_from_slice(&(source.len() as u16).to_le_bytes());
            out.extend_from_slice(source.as_bytes());
            out.extend_from_slice(&(state.len() as u32).to_le_bytes());
            out.extend_from_slice(state);
        }
    }
    for (t, data) in records {
        out.push(type_code(*t));
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    let payload_len = (out.len() - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&out[FRAME_HEADER..]);
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&payload_len.to_le_bytes());
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a frame header; returns (payload length, expected CRC).
pub(super) fn parse_header(h: &[u8; FRAME_HEADER]) -> Result<(usize, u32), FrameError> {
    let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if magic != MAGIC {
        return Err(FrameError::Invalid(format!("bad magic {magic:#010x}")));
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    Ok((len, crc))
}

/// Verifies the checksum of a payload and decodes it.
pub(super) fn decode_payload(payload: &[u8], crc: u32) -> Result<FrameView<'_>, FrameError> {
    let actual = crc32fast::hash(payload);
    if actual != crc {
        return Err(FrameError::Invalid(format!(
            "checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
        )));
    }
    let bad = |what: &str| FrameError::Invalid(format!("checksum ok but {what}"));
    let mut r = Reader(payload);
    let frame_no = r.u64().ok_or_else(|| bad("payload too short"))?;
    let first_seq = r.u64().ok_or_else(|| bad("payload too short"))?;
    let count = r.u32().ok_or_else(|| bad("payload too short"))? as usize;
    let checkpoint = match r.take(1).ok_or_else(|| bad("payload too short"))?[0] {
        0 => None,
        1 => {
            let n = r.u16().ok_or_else(|| bad("checkpoint truncated"))? as usize;
            let source = r.take(n).ok_or_else(|| bad("checkpoint truncated"))?;
            let source =
                std::str::from_utf8(source).map_err(|_| bad("checkpoint source is not UTF-8"))?;
            let n = r.u32().ok_or_else(|| bad("checkpoint truncated"))? as usize;
            Some((
                source,
                r.take(n).ok_or_else(|| bad("checkpoint truncated"))?,
            ))
        }
        _ => return Err(bad("unknown checkpoint flag")),
    };
    if count > r.0.len() / RECORD_HEADER {
        return Err(bad("record count exceeds payload"));
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let t = r.take(1).ok_or_else(|| bad("record truncated"))?[0];
        let t = type_from_code(t).ok_or_else(|| bad("unknown log type code"))?;
        let n = r.u32().ok_or_else(|| bad("record truncated"))? as usize;
        records.push((t, r.take(n).ok_or_else(|| bad("record truncated"))?));
    }
    if !r.0.is_empty() {
        return Err(bad("trailing bytes after the last record"));
    }
    Ok(FrameView {
        frame_no,
        first_seq,
        checkpoint,
        records,
    })
}

/// Decodes the frame starting at `buf[off..]`; returns it with its total length.
pub(super) fn frame_at(buf: &[u8], off: usize) -> Result<(FrameView<'_>, usize), FrameError> {
    let rest = &buf[off..];
    let Some(header) = rest.first_chunk::<FRAME_HEADER>() else {
        return Err(FrameError::Incomplete);
    };
    let (len, crc) = parse_header(header)?;
    let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Err(FrameError::Incomplete);
    };
    Ok((decode_payload(payload, crc)?, FRAME_HEADER + len))
}

/// A run of bytes between two intact frames (or before the first one) that is not a valid
/// frame: the data was damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BadRange {
    /// Offset of the first bad byte.
    pub offset: usize,
    /// Number of bad bytes (up to the next intact frame).
    pub len: usize,
    /// Why the frame at `offset` failed.
    pub reason: String,
    /// Frames lost, when knowable: from the frame numbers around the range (or the segment's
    /// first frame number, for a range at its start).
    pub frames: Option<u64>,
    /// Records lost, when knowable: seqs within a segment are contiguous, so an intact frame
    /// on each side tells exactly how many are missing.
    pub records: Option<u64>,
}

/// An invalid frame at `offset` with no intact frame after it: an interrupted write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TornTail {
    /// Where the segment is cut.
    pub offset: usize,
    /// Why the frame at `offset` failed.
    pub reason: String,
}

/// What [`scan`] found besides the intact frames.
#[derive(Debug, Default)]
pub(super) struct Damage {
    /// Damaged ranges followed by intact frames, in order.
    pub bad: Vec<BadRange>,
    /// The incomplete last write, if any.
    pub torn_tail: Option<TornTail>,
}

/// The frame at `off`, if it is intact and follows the previous intact frame (a higher frame
/// number, and no seq below the previous frame's last): a resync must not accept a frame that
/// happens to sit inside a record's data, nor an old frame copied into the wrong place.
fn plausible_frame_at(
    buf: &[u8],
    off: usize,
    prev: Option<(u64, u64)>,
) -> Result<(FrameView<'_>, usize), FrameError> {
    let (view, len) = frame_at(buf, off)?;
    if let Some((prev_frame, next_seq)) = prev {
        if view.frame_no <= prev_frame {
            return Err(FrameError::Invalid(format!(
                "frame number {} does not follow frame {prev_frame}",
                view.frame_no
            )));
        }
        if view.first_seq < next_seq {
            return Err(FrameError::Invalid(format!(
                "first seq {} is below the previous frame's next seq {next_seq}",
                view.first_seq
            )));
        }
    }
    Ok((view, len))
}

/// Walks a segment's bytes, calling `f(offset, len, frame)` for every intact frame. On an
/// invalid frame it resynchronises: it scans forward for the next magic whose frame checks
/// out (and follows the last intact one), reports the bytes in between as a [`BadRange`], and
/// goes on from there; with no intact frame after it, the rest is a [`TornTail`].
/// `first_frame` is the segment's first frame number (from its name), if known.
pub(super) fn scan(
    buf: &[u8],
    first_frame: Option<u64>,
    mut f: impl FnMut(usize, usize, &FrameView<'_>),
) -> Damage {
    let magic = MAGIC.to_le_bytes();
    let mut damage = Damage::default();
    // (frame number, next seq) of the last intact frame.
    let mut prev: Option<(u64, u64)> = None;
    let mut off = 0;
    while off < buf.len() {
        let e = match plausible_frame_at(buf, off, prev) {
            Ok((view, len)) => {
                f(off, len, &view);
                prev = Some((view.frame_no, view.first_seq + view.records.len() as u64));
                off += len;
                continue;
            }
            Err(e) => e,
        };
        let reason = e.to_string();
        let next = (off + 1..buf.len().saturating_sub(FRAME_HEADER - 1))
            .filter(|&i| buf[i..i + 4] == magic)
            .find_map(|i| {
                plausible_frame_at(buf, i, prev)
                    .ok()
                    .map(|(v, _)| (i, v.frame_no, v.first_seq))
            });
        let Some((next, next_frame, next_seq)) = next else {
            damage.torn_tail = Some(TornTail {
                offset: off,
                reason,
            });
            break;
        };
        let (frames, records) = match prev {
            Some((prev_frame, prev_next_seq)) => (
                Some(next_frame - prev_frame - 1),
                Some(next_seq - prev_next_seq),
            ),
            None => (first_frame.and_then(|f0| next_frame.checked_sub(f0)), None),
        };
        damage.bad.push(BadRange {
            offset: off,
            len: next - off,
            reason,
            frames,
            records,
        });
        off = next;
    }
    damage
}

/// A little-endian cursor over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
}
