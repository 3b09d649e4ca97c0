//! Appends JSON lines to `flows.log`, `dns.log` and `l7.log` and rotates
//! them like Felix's file reporter: before a write would take a file past
//! its size limit, `NAME` becomes `NAME.1`, `NAME.1` becomes `NAME.2` and so
//! on, the oldest beyond the kept count is deleted, and a new empty `NAME`
//! is started.
//!
//! Lines are only ever written whole: each batch of complete,
//! newline-terminated lines goes out in one `write_all` on a file opened
//! with `O_APPEND`, so a tailer never sees a line split across a rotation
//! (it may, as with any appender, read a batch while it is being written).
//! A single line longer than the limit still goes into a file of its own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why writing logs failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An I/O operation on a log file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One rotating log file.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
    rotations: u64,
}

impl RotatingFile {
    /// A writer for `path` that keeps at most `keep` rotated files
    /// (`path.1` .. `path.<keep>`) and rotates before exceeding `max_bytes`.
    pub fn new(path: PathBuf, max_bytes: u64, keep: usize) -> Self {
        RotatingFile {
            path,
            max_bytes: max_bytes.max(1),
            keep,
            file: None,
            size: 0,
            rotations: 0,
        }
    }

    /// How many times the file has been rotated.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    fn open(&mut self) -> Result<&mut File, WriteError> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io("opening", &self.path))?;
            self.size = f
                .metadata()
                .map_err(io("reading size of", &self.path))?
                .len();
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("just opened"))
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// Shifts `NAME.i` to `NAME.i+1` (dropping the oldest) and `NAME` to `NAME.1`.
    fn rotate(&mut self) -> Result<(), WriteError> {
        if let Some(f) = self.file.take() {
            f.sync_data().map_err(io("syncing", &self.path))?;
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path).map_err(io("removing", &self.path))?;
        } else {
            let oldest = self.rotated(self.keep);
            if oldest.exists() {
                std::fs::remove_file(&oldest).map_err(io("removing", &oldest))?;
            }
            for i in (1..self.keep).rev() {
                let from = self.rotated(i);
                if from.exists() {
                    let to = self.rotated(i + 1);
                    std::fs::rename(&from, &to).map_err(io("renaming", &from))?;
                }
            }
            let to = self.rotated(1);
            std::fs::rename(&self.path, &to).map_err(io("renaming", &self.path))?;
        }
        self.size = 0;
        self.rotations += 1;
        tracing::debug!(path = %self.path.display(), "rotated log file");
        Ok(())
    }

    /// Appends complete lines (each ending in `\n`), rotating as needed.
    pub fn append(&mut self, lines: &[String]) -> Result<(), WriteError> {
        let mut batch = String::new();
        for line in lines {
            debug_assert!(line.ends_with('\n'));
            self.open()?;
            let pending = (batch.len() + line.len()) as u64;
            if self.size + pending > self.max_bytes && self.size + batch.len() as u64 > 0 {
                self.flush(&mut batch)?;
                self.rotate()?;
                self.open()?;
            }
            batch.push_str(line);
        }
        self.flush(&mut batch)
    }

    fn flush(&mut self, batch: &mut String) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let f = self.open()?;
        f.write_all(batch.as_bytes())
            .map_err(io("writing", &path))?;
        self.size += batch.len() as u64;
        batch.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(prefix: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{{\"{prefix}\":\"{i:04}\"}}\n"))
            .collect()
    }

    #[test]
    fn rotates_keeps_a_few_and_never_splits_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.log");
        // Each line is 13 bytes; 100 bytes hold 7 lines.
        let mut w = RotatingFile::new(path.clone(), 100, 2);
        let all = lines("a", 40);
        for chunk in all.chunks(3) {
            w.append(chunk).unwrap();
        }
        assert!(w.rotations() >= 4);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let current = read(&path);
        let one = read(&dir.path().join("flows.log.1"));
        let two = read(&dir.path().join("flows.log.2"));
        assert!(!dir.path().join("flows.log.3").exists(), "only 2 kept");
        for content in [&current, &one, &two] {
            assert!(content.len() <= 100, "{} bytes", content.len());
            assert!(content.ends_with('\n'));
            for l in content.lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
            }
        }
        // Oldest to newest, the kept files are the tail of what was written, in order.
        let joined = format!("{two}{one}{current}");
        let expected: String = all.concat();
        assert!(expected.ends_with(&joined));
        assert_eq!(joined.len() % 13, 0);
    }

    #[test]
    fn appends_to_an_existing_file_and_handles_oversized_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dns.log");
        std::fs::write(&path, "{\"old\":1}\n").unwrap();
        let mut w = RotatingFile::new(path.clone(), 20, 3);
        let big = format!("{{\"x\":\"{}\"}}\n", "y".repeat(50));
        w.append(std::slice::from_ref(&big)).unwrap();
        w.append(&["{\"z\":1}\n".to_string()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dns.log.2")).unwrap(),
            "{\"old\":1}\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dns.log.1")).unwrap(),
            big
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"z\":1}\n");
    }
}
