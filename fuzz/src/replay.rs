//! Replays the stored inputs of one fuzz target (`fuzz/seeds/<target>/` and
//! `fuzz/regressions/<target>/`) through its check, so `cargo test` of the crate that owns the
//! decoder re-runs every input that once crashed it. Compiled into those crates' tests.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Runs `check` on every stored input of `target` (the `fuzz/` directory is `fuzz_dir`) and
/// panics naming each input that failed. Returns how many inputs ran.
pub fn replay(fuzz_dir: &Path, target: &str, check: fn(&[u8])) -> usize {
    let mut ran = 0;
    let mut failed = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = fuzz_dir.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.expect("dir entry").path()).collect();
        paths.sort();
        for path in paths.into_iter().filter(|p| p.is_file()) {
            let data = std::fs::read(&path).expect("read a stored fuzz input");
            ran += 1;
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "fuzz inputs that fail: {failed:#?}");
    ran
}
