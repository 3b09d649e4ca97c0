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
const VERSION: u32 = 1;

/// `DIR/ledger.json`, replaced atomically (write to a temporary file, fsync, rename, fsync the
/// directory), so a crash leaves either the old or the new ledger, never a mix.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Ledger {
    /// Format version, for a later migration.
    pub version: u32,
    /// The stream id the server deduplicates on, with the seq.
    pub stream_id: String,
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

/// A source checkpoint and the frame number it was written in (newer frames win).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct LedgerCheckpoint {
    /// Frame number of the append that stored it.
    pub frame: u64,
    /// The source's opaque state, hex-encoded.
    pub state: String,
}

impl Ledger {
    /// A fresh ledger with a new random stream id.
    pub fn new() -> Ledger {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the operating system's random number generator failed");
        Ledger {
            version: VERSION,
            stream_id: hex::encode(id),
            acked_seq: 0,
            highest_seq: 0,
            highest_frame: 0,
            checkpoints: BTreeMap::new(),
        }
    }

    /// Reads the ledger of `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Ledger>, SpoolError> {
        let path = dir.join(LEDGER);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let ledger: Ledger = serde_json::from_slice(&bytes).map_err(|e| SpoolError::Ledger {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if ledger.version != VERSION {
            return Err(SpoolError::Ledger {
                path,
                reason: format!("unsupported version {}", ledger.version),
            });
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
