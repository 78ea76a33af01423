//! One server per data directory: `serve` holds an exclusive advisory lock (`flock`) on
//! `DIR/ironhub.lock` for as long as it runs. A second server on the same directory refuses to
//! start, naming the process that holds it. The kernel drops the lock when its holder exits,
//! however it exits (`kill -9` included), so a lock left by a dead process is never in the way.
//! Read-only commands (`ironhub info`, the CLI's login) do not take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "ironhub.lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the data directory's lock, or fails at once with a one-line error naming the
    /// process that holds it. Records this process's id and start time in the lock file.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<DataDirLock> {
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another ironhub process".to_owned()
                } else {
                    format!("another ironhub process ({holder})")
                };
                anyhow::bail!(
                    "the data directory {} is in use by {who}; one data directory belongs to one \
                     server: stop that one first, or start this one with another --data-dir",
                    data_dir.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        // Ours now: whatever an earlier holder wrote is stale.
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(
            file,
            "pid {}, started {}",
            std::process::id(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )?;
        file.flush()?;
        Ok(DataDirLock { _file: file, path })
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("--data-dir"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        drop(first);
        let again = DataDirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
