//! The local state folder: created private (0700), holding the run lock and scratch space.
//!
//! The lock is an advisory `flock` on `state_dir/lock`: the kernel drops it when the process
//! dies, however it dies, so a killed run never blocks the next one.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::exit::{Exit, Fault};

pub struct StateDir {
    pub path: PathBuf,
}

impl StateDir {
    pub fn open(path: &Path) -> Result<StateDir> {
        ensure_private_dir(path).with_context(|| format!("state_dir {}", path.display()))?;
        Ok(StateDir {
            path: path.to_path_buf(),
        })
    }

    /// Take the run lock, waiting up to `wait` for another run to finish.
    pub fn lock(&self, wait: Option<Duration>) -> Result<Lock> {
        let path = self.path.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if deadline.is_some_and(|d| Instant::now() < d) {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    let holder = holder.trim();
                    return Err(anyhow::Error::new(
                        Fault::new(
                            Exit::Locked,
                            format!(
                                "another litevault run holds the lock on {}{}",
                                self.path.display(),
                                if holder.is_empty() {
                                    String::new()
                                } else {
                                    format!(" ({holder})")
                                }
                            ),
                        )
                        .hint("try again later, or pass --wait DURATION to wait for it"),
                    ));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
        }
        file.set_len(0)?;
        let _ = writeln!(
            file,
            "pid {} since {}",
            std::process::id(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        Ok(Lock { _file: file })
    }

    /// A fresh private scratch folder under `state_dir/tmp`, removed when dropped.
    pub fn scratch(&self, label: &str) -> Result<Scratch> {
        let parent = self.path.join("tmp");
        ensure_private_dir(&parent)?;
        let dir = parent.join(format!("{label}-{}-{}", std::process::id(), nonce()));
        ensure_private_dir(&dir)?;
        Ok(Scratch { path: dir })
    }

    /// Scratch folders of runs that no longer exist. Call while holding the lock... or not:
    /// each folder carries its creator's pid, and only folders of dead processes are removed.
    pub fn clean_scratch(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        let Ok(entries) = fs::read_dir(self.path.join("tmp")) else {
            return removed;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if pid != std::process::id()
                    && !Path::new(&format!("/proc/{pid}")).exists()
                    && fs::remove_dir_all(entry.path()).is_ok()
                {
                    removed.push(entry.path());
                }
            }
        }
        removed
    }
}

/// Held while a run mutates state; released when dropped (or when the process dies).
pub struct Lock {
    _file: File,
}

pub struct Scratch {
    pub path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Create `path` (and parents) as 0700; an existing folder is tightened to 0700 if it is ours.
pub fn ensure_private_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let meta = fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (0700)", path.display()))?;
    }
    Ok(())
}

/// A short random-enough token for temporary names.
pub fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let h = blake3::hash(
        format!(
            "{t:?}{}{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .as_bytes(),
    );
    h.to_hex()[..8].to_string()
}
