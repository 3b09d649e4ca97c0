//! The ledger: the little state that must outlive the segments it describes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{SpoolError, io_err};

const LEDGER: &str = "ledger.json";
const LEDGER_TMP: &str = "ledger.json.tmp";
/// Version 2 lists epochs; version 1 had one `stream_id` for the spool's whole life.
const VERSION: u32 = 2;

/// `DIR/ledger.json`, replaced atomically (write to a temporary file, fsync, rename, fsync the
/// directory), so a crash leaves either the old or the new ledger, never a mix.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Ledger {
    /// Format version: 2 is written, 1 is still read.
    pub version: u32,
    /// Version 1 only: the one stream id of the spool (read as an epoch starting at seq 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// The epochs that may still hold unacknowledged records, oldest first; the last is the
    /// newest (the one of the latest opening).
    #[serde(default)]
    pub epochs: Vec<Epoch>,
    /// Every record with a seq up to this one is acknowledged.
    pub acked_seq: u64,
    /// A seq at least as high as any ever handed out, so seqs stay monotonic when the
    /// segments holding the highest ones are deleted or quarantined.
    pub highest_seq: u64,
    /// The same for frame numbers (segment names and checkpoint ordering).
    pub highest_frame: u64,
    /// Every source's latest checkpoint when the ledger was written, so deleting the segment
    /// that held one does not lose it.
    #[serde(default)]
    pub checkpoints: BTreeMap<String, LedgerCheckpoint>,
}

/// The records a spool wrote between two openings: they are shipped under one stream id.
/// Every opening starts a new epoch, so records written after a spool directory was restored
/// from a backup never reuse a `(stream id, seq)` the server already stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Epoch {
    /// The random id the server deduplicates this epoch's seqs under.
    pub stream_id: String,
    /// The epoch's first seq; it ends where the next epoch starts.
    pub first_seq: u64,
}

impl Epoch {
    /// A new epoch with a fresh random stream id, starting at `first_seq`.
    pub fn new(first_seq: u64) -> Epoch {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the operating system's random number generator failed");
        Epoch {
            stream_id: hex::encode(id),
            first_seq,
        }
    }
}

/// A source checkpoint and the frame number it was written in (newer frames win).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct LedgerCheckpoint {
    /// Frame number of the append that stored it.
    pub frame: u64,
    /// The source's opaque state, hex-encoded.
    pub state: String,
}

impl Ledger {
    /// A ledger of a spool that never wrote anything, with one fresh epoch.
    pub fn new() -> Ledger {
        Ledger {
            version: VERSION,
            stream_id: None,
            epochs: vec![Epoch::new(1)],
            acked_seq: 0,
            highest_seq: 0,
            highest_frame: 0,
            checkpoints: BTreeMap::new(),
        }
    }

    /// Reads the ledger of `dir`, if there is one; a version 1 ledger comes back as version 2
    /// with its stream id as the one epoch.
    pub fn load(dir: &Path) -> Result<Option<Ledger>, SpoolError> {
        let path = dir.join(LEDGER);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let unusable = |reason: String| SpoolError::Ledger {
            path: path.clone(),
            reason,
        };
        let mut ledger: Ledger =
            serde_json::from_slice(&bytes).map_err(|e| unusable(e.to_string()))?;
        match ledger.version {
            1 => {
                let stream_id = ledger
                    .stream_id
                    .take()
                    .ok_or_else(|| unusable("version 1 ledger without stream_id".into()))?;
                ledger.epochs = vec![Epoch {
                    stream_id,
                    first_seq: 1,
                }];
                ledger.version = VERSION;
            }
            VERSION => {
                ledger.stream_id = None;
                if ledger.epochs.is_empty() {
                    return Err(unusable("no epochs".into()));
                }
                if let Some(w) = ledger
                    .epochs
                    .windows(2)
                    .find(|w| w[1].first_seq < w[0].first_seq)
                {
                    return Err(unusable(format!(
                        "epoch {} starts at seq {}, before the epoch {} it follows (seq {})",
                        w[1].stream_id, w[1].first_seq, w[0].stream_id, w[0].first_seq
                    )));
                }
            }
            v => return Err(unusable(format!("unsupported version {v}"))),
        }
        Ok(Some(ledger))
    }

    /// Replaces the ledger of `dir` atomically and durably.
    pub fn store(&self, dir: &Path) -> Result<(), SpoolError> {
        let tmp = dir.join(LEDGER_TMP);
        let bytes = serde_json::to_vec_pretty(self).expect("a ledger always serialises");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(super::FILE_MODE)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        let path = dir.join(LEDGER);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        super::sync_dir(dir)
    }
}
