//! How leakrun writes a file a reader relies on — a result, a JUnit report, a baseline — so that
//! no reader ever sees half of one and a crash after the write loses nothing: a temporary file in
//! the same folder, fsync, rename over the old one, fsync of the folder. The file gets the
//! permissions the user's umask gives a new file, as any tool's output would.
//!
//! A run also checks its folder up front ([`check_writable`]), so an unwritable `--out` is an
//! exit 2 before the server starts rather than a lost result after an hour, and takes a lock
//! ([`RunLock`]) per scenario and folder, so two runs of one scenario never write over each
//! other's result and server log.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically and durably (see the module header).
pub fn atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = format!(".{name}.tmp");
    let mut builder = tempfile::Builder::new();
    builder.prefix(".leakrun-").suffix(&suffix);
    #[cfg(unix)]
    {
        // The mode a new file asks for; the kernel applies the umask.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut file = builder.tempfile_in(&dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    sync_dir(&dir)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Creates `dir` if need be and proves a file can be created in it (and removed again).
pub fn check_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = tempfile::Builder::new().prefix(".leakrun-probe-").tempfile_in(dir)?;
    probe.close()
}

/// An exclusive lock on one scenario's outputs in one folder, held while the run lasts.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// Why a [`RunLock`] could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another leakrun holds it.
    #[error(
        "another leakrun is running scenario `{name}` into {dir}; wait for it to finish or give this run another --out folder"
    )]
    Busy {
        /// The scenario.
        name: String,
        /// The folder.
        dir: PathBuf,
    },
    /// The lock file could not be opened.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl RunLock {
    /// Locks `dir/.<name>.lock` without waiting.
    pub fn acquire(dir: &Path, name: &str) -> Result<Self, LockError> {
        let path = dir.join(format!(".{name}.lock"));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this function owns; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let error = std::io::Error::last_os_error();
                return Err(match error.raw_os_error() {
                    Some(libc::EWOULDBLOCK) => LockError::Busy {
                        name: name.to_string(),
                        dir: dir.to_path_buf(),
                    },
                    _ => io(error),
                });
            }
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        atomic(&path, b"first, longer text").unwrap();
        atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("r.json")]);
    }

    #[cfg(unix)]
    #[test]
    fn the_mode_follows_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        atomic(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // SAFETY: reading the umask means setting it; it is put back at once.
        let umask = unsafe {
            let old = libc::umask(0o022);
            libc::umask(old);
            old
        };
        assert_eq!(mode, 0o666 & !(umask as u32));
    }

    #[test]
    fn a_second_lock_on_one_scenario_is_busy_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "s").unwrap();
        assert!(matches!(RunLock::acquire(dir.path(), "s"), Err(LockError::Busy { .. })));
        assert!(RunLock::acquire(dir.path(), "other").is_ok());
        drop(first);
        assert!(RunLock::acquire(dir.path(), "s").is_ok());
    }

    #[test]
    fn an_unwritable_folder_is_found_up_front() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the folder should be: refused even for root.
        let file = dir.path().join("taken");
        std::fs::write(&file, b"").unwrap();
        assert!(check_writable(&file).is_err());
        assert!(check_writable(&file.join("below")).is_err());
        assert!(check_writable(&dir.path().join("new/nested")).is_ok());
    }
}
