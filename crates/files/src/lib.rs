//! Writing keys, tokens, credentials and configs to disk: one implementation for the server,
//! the agent and the CLI.
//!
//! It exists because every hand-written copy got something wrong: files truncated in place
//! (a crash leaves half a key), a mode set after the data was written (readable by others
//! for a moment), a fixed temp name (two writers clobber each other), no directory fsync
//! (the rename can be lost on power failure). [`write_private`] does all of it once:
//!
//! 1. create a new temp file *in the same directory* (so the rename cannot cross file
//!    systems) with `O_EXCL` and the final mode from creation (umask can only remove bits),
//! 2. write and `fsync` it,
//! 3. `rename` it over the target (readers see the old or the new file, never a mix),
//! 4. `fsync` the directory so the rename itself is durable.
//!
//! On any error the temp file is removed. [`create_private_dir`] makes owner-only
//! directories, and [`restrict_umask`] makes everything a process creates itself (SQLite's
//! WAL, tantivy's segment files) owner-only too.
#![forbid(unsafe_code)]

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of private files: owner read/write.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of private directories: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of public files (certificates): readable by everyone, writable by the owner.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Writes `data` to `path` atomically with mode 0600: no moment where another user can read
/// it, and no crash that leaves a half-written file (the old content or the new one).
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic(path, data, PRIVATE_FILE_MODE)
}

/// Writes a public file (a certificate) atomically with mode 0644.
pub fn write_public(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic(path, data, PUBLIC_FILE_MODE)
}

/// Like [`write_private`], but fails with [`io::ErrorKind::AlreadyExists`] instead of
/// replacing an existing `path` (for commands that must not overwrite a user's file). The
/// check is atomic: the finished temp file is hard-linked to `path`, which fails if
/// anything is there.
pub fn write_private_new(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_with(path, data, PRIVATE_FILE_MODE, Place::New)
}

/// Creates `path` and any missing parents with mode 0700, and sets 0700 on `path` itself
/// if it already existed (parents that existed are left alone).
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)?;
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o7777 != PRIVATE_DIR_MODE {
        std::fs::set_permissions(path, Permissions::from_mode(PRIVATE_DIR_MODE))?;
    }
    Ok(())
}

/// Sets the process umask to 0o077 so every file and directory the process creates
/// without an explicit mode (SQLite's `-wal`/`-shm`, tantivy's segment and lock files,
/// anything a library makes) is owner-only. Returns the previous umask.
///
/// Called once at the start of the long-running commands (`cattery server`, `cattery
/// agent`, `cattery demo`), before any thread creates files: the umask is process-wide.
pub fn restrict_umask() -> u32 {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    old.as_raw_mode()
}

/// Makes an existing file owner-only (0600) if it is not already; `Ok` if it does not
/// exist. For files created by other code before [`restrict_umask`] was in force.
pub fn make_private(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Ok(()),
        Ok(m) => {
            let want = if m.is_dir() {
                PRIVATE_DIR_MODE
            } else {
                PRIVATE_FILE_MODE
            };
            if m.permissions().mode() & 0o7777 != want {
                std::fs::set_permissions(path, Permissions::from_mode(want))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`make_private`] on `dir` and everything under it (directories 0700, files 0600), not
/// following symlinks. Bounded by what is there; used once at start on data directories
/// written by earlier versions.
pub fn make_private_tree(dir: &Path) -> io::Result<()> {
    make_private(dir)?;
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            make_private_tree(&entry.path())?;
        } else if ty.is_file() {
            make_private(&entry.path())?;
        }
    }
    Ok(())
}

/// How the finished temp file takes the target's place.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    /// `rename` over whatever is there.
    Replace,
    /// `link`, failing if something is there.
    New,
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, data, mode, Place::Replace)
}

fn write_atomic_with(path: &Path, data: &[u8], mode: u32, place: Place) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let (tmp, mut file) = create_temp(dir, &name.to_string_lossy(), mode)?;
    let result = (|| {
        file.write_all(data)?;
        // The umask may have removed bits of `mode`; a public file must still be public.
        if mode != PRIVATE_FILE_MODE {
            file.set_permissions(Permissions::from_mode(mode))?;
        }
        file.sync_all()?;
        drop(file);
        match place {
            Place::Replace => std::fs::rename(&tmp, path)?,
            Place::New => {
                std::fs::hard_link(&tmp, path)?;
                std::fs::remove_file(&tmp)?;
            }
        }
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates a fresh temp file `.NAME.tmp-PID-N` next to the target, with `mode` from
/// creation. `O_EXCL` makes a stale or foreign file of that name an error, never something
/// written through; a few names are tried.
fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temp file name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn private_files_are_0600_and_leave_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key.pem");
        write_private(&p, b"secret").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(names(d.path()), ["key.pem"]);
    }

    #[test]
    fn replacing_is_atomic_and_makes_an_open_file_keep_its_old_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("token");
        std::fs::write(&p, b"old-old-old").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        let before = std::fs::metadata(&p).unwrap();
        let mut reader = File::open(&p).unwrap();
        write_private(&p, b"new").unwrap();
        // A new inode (renamed over), not the old file truncated in place.
        let after = std::fs::metadata(&p).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(before.ino(), after.ino());
        let mut old = String::new();
        io::Read::read_to_string(&mut reader, &mut old).unwrap();
        assert_eq!(old, "old-old-old");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(names(d.path()), ["token"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cfg");
        std::fs::write(&p, b"old").unwrap();
        // Renaming a file over a non-empty directory fails after the temp file is written.
        let target = d.path().join("adir");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), b"").unwrap();
        assert!(write_private(&target, b"data").is_err());
        assert_eq!(names(d.path()), ["adir", "cfg"]);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
    }

    #[test]
    fn new_files_refuse_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("agent.yaml");
        write_private_new(&p, b"one").unwrap();
        let e = write_private_new(&p, b"two").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(names(d.path()), ["agent.yaml"]);
    }

    #[test]
    fn public_files_are_0644_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.crt");
        write_public(&p, b"cert").unwrap();
        assert_eq!(mode(&p), 0o644);
    }

    #[test]
    fn a_path_naming_no_file_is_refused() {
        assert!(write_private(Path::new("/"), b"x").is_err());
    }

    #[test]
    fn private_dirs_are_0700_even_when_they_existed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b");
        create_private_dir(&p).unwrap();
        assert_eq!(mode(&p), 0o700);
        assert_eq!(mode(&d.path().join("a")), 0o700);
        std::fs::set_permissions(&p, Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&p).unwrap();
        assert_eq!(mode(&p), 0o700);
    }

    #[test]
    fn trees_are_made_private() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("idx");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, Permissions::from_mode(0o755)).unwrap();
        let f = sub.join("seg.store");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        make_private_tree(d.path()).unwrap();
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(d.path()), 0o700);
        make_private_tree(&d.path().join("missing")).unwrap();
    }
}
