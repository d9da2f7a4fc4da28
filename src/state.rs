//! The local state folder: created private (0700), holding the run lock, the execution store,
//! this folder's identity and scratch space.
//!
//! litevault runs as root, so `state_dir` is treated like ssh treats `~/.ssh` (StrictModes): a
//! folder owned by someone else, or writable by group or others, is refused rather than
//! silently chmodded, and nothing in it is opened through a symlink. Only its owner could have
//! planted anything in a folder that passes.
//!
//! The lock is an advisory `flock` on `state_dir/lock`: the kernel drops it when the process
//! dies, however it dies, so a killed run never blocks the next one.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use crate::exit::{Exit, Fault};

/// `O_NOFOLLOW`: a planted symlink makes the open fail instead of reaching its target.
const NOFOLLOW: i32 = 0o400000;
/// The file that names this state folder: a random id recorded in every backup it takes, so two
/// configs writing one namespace are noticed.
const ID_FILE: &str = "id";

pub struct StateDir {
    pub path: PathBuf,
}

impl StateDir {
    pub fn open(path: &Path) -> Result<StateDir> {
        let made =
            create_private_dir(path).with_context(|| format!("state_dir {}", path.display()))?;
        if !made {
            check_private(path, "state_dir")?;
        }
        Ok(StateDir {
            path: path.to_path_buf(),
        })
    }

    /// Take the run lock, waiting up to `wait` for another run to finish. The wait can be cut
    /// short by a signal.
    pub fn lock(&self, wait: Option<Duration>) -> Result<Lock> {
        let path = self.path.join("lock");
        let mut file = open_private(&path, true)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    crate::interrupt::check()?;
                    if deadline.is_some_and(|d| Instant::now() < d) {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
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
            humantime::format_rfc3339_seconds(SystemTime::now())
        );
        Ok(Lock { _file: file })
    }

    /// When the run holding the lock started, if one does: backups it is writing are not
    /// leftovers yet. `None` when nobody holds the lock.
    pub fn lock_holder_since(&self) -> Option<SystemTime> {
        let path = self.path.join("lock");
        let mut file = open_private(&path, false).ok()?;
        match file.try_lock() {
            Ok(()) => None,
            Err(_) => {
                let mut text = String::new();
                file.read_to_string(&mut text).ok()?;
                let since = text.split(" since ").nth(1)?.trim();
                // A holder whose time cannot be read: assume it started just now.
                Some(humantime::parse_rfc3339(since).unwrap_or_else(|_| SystemTime::now()))
            }
        }
    }

    /// This state folder's identity, made once (random) and kept in `state_dir/id`.
    pub fn identity(&self) -> Result<String> {
        let path = self.path.join(ID_FILE);
        match open_private(&path, false) {
            Ok(mut f) => {
                let mut text = String::new();
                f.read_to_string(&mut text)
                    .with_context(|| format!("reading {}", path.display()))?;
                let id = text.trim();
                if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(id.to_string());
                }
                Err(anyhow::Error::new(
                    Fault::new(
                        Exit::Failure,
                        format!("{} is not a litevault state identity", path.display()),
                    )
                    .hint("remove the file; litevault makes a new identity"),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = random_hex(16)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(NOFOLLOW)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                writeln!(f, "{id}").with_context(|| format!("writing {}", path.display()))?;
                f.sync_all()?;
                Ok(id)
            }
            Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
        }
    }

    /// A fresh private scratch folder under `state_dir/tmp`, removed when dropped.
    pub fn scratch(&self, label: &str) -> Result<Scratch> {
        let parent = self.path.join("tmp");
        if !create_private_dir(&parent)? {
            check_private(&parent, "state_dir/tmp")?;
        }
        let dir = parent.join(format!("{label}-{}-{}", std::process::id(), nonce()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
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
                // remove_dir_all never follows a symlink it meets.
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

    /// The whole content of the private file `name`, or `None` when there is none. A symlink or
    /// hard link planted there is refused, never followed.
    pub fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path.join(name);
        match open_private_read(&path) {
            Ok(mut f) => {
                let mut body = Vec::new();
                f.read_to_end(&mut body)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(Some(body))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
        }
    }

    /// Replace the private file `name` with `body` atomically: written and synced under a new
    /// name, then renamed over it, so a crash leaves the old file or the new one, never a mix.
    pub fn replace_file(&self, name: &str, body: &[u8]) -> Result<()> {
        let path = self.path.join(name);
        let staged = self
            .path
            .join(format!(".{name}.{}-{}", std::process::id(), nonce()));
        let written = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(NOFOLLOW)
                .open(&staged)?;
            f.write_all(body)?;
            f.sync_all()?;
            fs::rename(&staged, &path)?;
            File::open(&self.path)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&staged);
            return Err(anyhow::Error::new(e).context(format!("writing {}", path.display())));
        }
        Ok(())
    }

    /// Remove the file `name`, if there is one.
    pub fn remove_file(&self, name: &str) -> Result<()> {
        let path = self.path.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// A file in the state folder, for a store that opens it by path (SQLite): refused when it,
    /// or a companion SQLite creates beside it, is a symlink.
    pub fn file_path(&self, name: &str) -> Result<PathBuf> {
        let path = self.path.join(name);
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(meta) = fs::symlink_metadata(&p) {
                if !meta.file_type().is_file() {
                    return Err(refused(
                        &p,
                        "is not a regular file (a symlink or something else was put there)",
                    ));
                }
            }
        }
        Ok(path)
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

/// Create `path` as 0700 if it is missing (its missing parents too, also 0700). True when this
/// call made it; an existing folder is left exactly as it is.
pub fn create_private_dir(path: &Path) -> Result<bool> {
    if fs::symlink_metadata(path).is_ok() {
        return Ok(false);
    }
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Create `path` (and parents) as 0700 where missing, for folders inside litevault's own private
/// scratch space. An existing folder is never chmodded.
pub fn ensure_private_dir(path: &Path) -> Result<()> {
    create_private_dir(path).map(|_| ())
}

/// Like ssh's StrictModes: a folder of ours, that no one else can write into.
fn check_private(path: &Path, what: &str) -> Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
    if !meta.is_dir() {
        return Err(refused(path, "is not a folder"));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refused(
            path,
            &format!(
                "is owned by uid {}, not by the user running litevault (uid {me})",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refused(
            path,
            &format!(
                "is writable by {} (mode {:04o}), so someone else could plant files in it",
                if meta.mode() & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

fn refused(path: &Path, why: &str) -> anyhow::Error {
    anyhow::Error::new(
        Fault::new(
            Exit::Failure,
            format!("refusing the state folder: {} {why}", path.display()),
        )
        .hint(format!(
            "litevault keeps its lock and records there as root: make it a folder owned by this user with mode 0700 (chown, then chmod 700 {}), or point state_dir at a new folder",
            path.display()
        )),
    )
}

/// Open (and with `create`, create) a private regular file without following a symlink.
fn open_private(path: &Path, create: bool) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(create)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(40) {
                // ELOOP: what O_NOFOLLOW answers for a symlink.
                std::io::Error::other(format!(
                    "{} is a symlink; refusing to follow it (remove it)",
                    path.display()
                ))
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() > 1 {
        return Err(std::io::Error::other(format!(
            "{} is not a plain file of its own (a hard link or something else was put there); remove it",
            path.display()
        )));
    }
    Ok(file)
}

/// Open a private regular file for reading without following a symlink.
fn open_private_read(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() > 1 {
        return Err(std::io::Error::other(format!(
            "{} is not a plain file of its own (a symlink, hard link or something else was put there); remove it",
            path.display()
        )));
    }
    Ok(file)
}

/// `n` random bytes as hex, from the kernel.
fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
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
