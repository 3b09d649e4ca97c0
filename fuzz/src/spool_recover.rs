//! The spool's frame-level recovery scan on arbitrary segment bytes: it must never panic,
//! must keep only frames whose magic and CRC check out, and must account for every byte
//! exactly once (intact frame, damaged range or torn tail, in order).

use cattery_agent::spool::scan_segment;

/// Runs one input; panics when an invariant breaks.
pub fn check(data: &[u8]) {
    let scan = scan_segment(data);
    // Every byte in exactly one piece, in order.
    let mut pieces: Vec<(usize, usize, bool)> = scan
        .frames
        .iter()
        .map(|f| (f.offset, f.len, true))
        .chain(scan.damaged.iter().map(|&(o, l)| (o, l, false)))
        .collect();
    pieces.sort_unstable();
    let mut at = 0;
    for &(offset, len, _) in &pieces {
        assert_eq!(offset, at, "gap or overlap at byte {at}: {scan:?}");
        assert!(len > 0, "empty piece at {offset}");
        at = offset + len;
    }
    match scan.torn_tail {
        Some(t) => assert_eq!(t, at, "torn tail does not start after the last piece"),
        None => assert_eq!(at, data.len(), "bytes after the last piece unaccounted for"),
    }
    assert!(at <= data.len());
    // A damaged range is always followed by an intact frame.
    for &(o, l) in &scan.damaged {
        assert!(scan.frames.iter().any(|f| f.offset == o + l));
    }
    for f in &scan.frames {
        let frame = &data[f.offset..f.offset + f.len];
        assert_eq!(&frame[..4], b"CSP1", "frame at {} without magic", f.offset);
        let len = u32::from_le_bytes(frame[4..8].try_into().unwrap()) as usize;
        assert_eq!(len + 12, f.len);
        let crc = u32::from_le_bytes(frame[8..12].try_into().unwrap());
        assert_eq!(
            crc32fast::hash(&frame[12..]),
            crc,
            "frame at {} kept with a bad CRC",
            f.offset
        );
    }
    for w in scan.frames.windows(2) {
        assert!(w[1].frame_no > w[0].frame_no, "frame numbers out of order");
        assert!(w[1].first_seq >= w[0].first_seq + w[0].records as u64);
    }
}
