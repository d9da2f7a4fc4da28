//! Putting restored files in place on a live server: is a target in use, is there room, and the
//! replacement itself, done so that each target is wholly old or wholly new at every instant.
//!
//! For a database the order matters. The old database is first made self-contained (its WAL
//! checkpointed into the main file through SQLite), so removing its `-wal`, `-shm` and
//! `-journal` loses nothing; then the new file, written and fsynced beside the target, is
//! renamed over it and the folder fsynced. A crash before the rename leaves the old database
//! whole; after it, the new one, with no journal of the old one left to be replayed onto it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::owner::{self, Recorded};
use crate::state::nonce;

/// The journal files SQLite may keep beside a database.
pub const JOURNAL_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

pub fn sidecar_path(db: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", db.display()))
}

/// Why `target` looks in use by another process: a process holding it (or its journals) open,
/// or a hot rollback journal. `None` when it looks idle.
pub fn in_use(target: &Path) -> Option<String> {
    let mut watched: Vec<PathBuf> = vec![target.to_path_buf()];
    watched.extend(JOURNAL_SUFFIXES.iter().map(|s| sidecar_path(target, s)));
    let watched: Vec<PathBuf> = watched
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    if let Some(holder) = holders(&watched).into_iter().next() {
        return Some(holder);
    }
    let journal = sidecar_path(target, "-journal");
    if fs::metadata(&journal).is_ok_and(|m| m.len() > 0) {
        return Some(format!(
            "{} is a hot journal: a transaction was interrupted and has not been rolled back",
            journal.display()
        ));
    }
    None
}

/// Processes (other than this one) with any of `paths` open, as "pid N (name)".
fn holders(paths: &[PathBuf]) -> Vec<String> {
    if paths.is_empty() {
        return Vec::new();
    }
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = fs::read_link(fd.path()) {
                if paths.contains(&link) {
                    let name = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                    found.push(format!(
                        "pid {pid} ({}) has {} open",
                        name.trim(),
                        link.display()
                    ));
                    break;
                }
            }
        }
    }
    found
}

/// Bytes free for an unprivileged writer on the filesystem that holds `path` (or would hold it:
/// the nearest existing ancestor is asked).
pub fn free_space(path: &Path) -> Result<u64> {
    let mut probe = path.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            bail!("no existing folder above {}", path.display());
        }
    }
    let st = rustix::fs::statvfs(&probe)
        .with_context(|| format!("checking free space at {}", probe.display()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The filesystem (device) a path is or would be on.
pub fn device_of(path: &Path) -> Result<u64> {
    let mut probe = path.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            bail!("no existing folder above {}", path.display());
        }
    }
    Ok(fs::metadata(&probe)?.dev())
}

/// Needed bytes per filesystem, each with the paths that need them, checked against free space.
pub fn check_space(needs: &[(PathBuf, u64)]) -> Result<()> {
    let mut by_dev: BTreeMap<u64, (u64, PathBuf)> = BTreeMap::new();
    for (path, bytes) in needs {
        let dev = device_of(path)?;
        let entry = by_dev.entry(dev).or_insert((0, path.clone()));
        entry.0 += bytes;
    }
    for (need, path) in by_dev.values() {
        let free = free_space(path)?;
        // Leave a margin: a full filesystem under a live database is its own emergency.
        let want = need + need / 20 + (16 << 20);
        if free < want {
            bail!(
                "not enough free space on the filesystem of {}: the restore needs about {} and {} are free",
                path.display(),
                crate::ui::bytes(want),
                crate::ui::bytes(free)
            );
        }
    }
    Ok(())
}

/// Make the old database at `target` self-contained: everything in its WAL moved into the main
/// file. Returns a note when that was not possible (the old file is damaged, say).
pub fn settle_old_database(target: &Path) -> Option<String> {
    if !target.exists() {
        return None;
    }
    let settle = || -> rusqlite::Result<()> {
        let conn = rusqlite::Connection::open_with_flags(
            target,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if mode.eq_ignore_ascii_case("wal") {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        conn.close().map_err(|(_, e)| e)
    };
    settle()
        .err()
        .map(|e| format!("could not checkpoint the old {}: {e}", target.display()))
}

/// Copy `from` to a temporary file (or folder) beside `target` and fsync it; the caller renames
/// it. Each file and folder staged takes, before it is synced (and so before it can appear at
/// `target`), the owner, group and mode of the live one it replaces (read now, never through a
/// link), or, with none, what the backup recorded for it at `archive_path` (see `owner`).
pub fn stage_beside(
    from: &Path,
    target: &Path,
    archive_path: &str,
    recorded: Option<&Recorded>,
) -> Result<PathBuf> {
    let dir = target.parent().context("a target has a folder")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staged = dir.join(format!(".{name}.litevault-new-{}", nonce()));
    copy_synced(
        from,
        &staged,
        &Counterpart {
            live: target.to_path_buf(),
            archive_path: archive_path.to_string(),
            recorded,
        },
    )?;
    Ok(staged)
}

/// Where the owner and mode of a staged file come from: the live file at `live`, else the
/// backup's record of `archive_path`.
struct Counterpart<'r> {
    live: PathBuf,
    archive_path: String,
    recorded: Option<&'r Recorded>,
}

impl Counterpart<'_> {
    fn attrs(&self, is_dir: bool) -> Option<owner::Attrs> {
        owner::live(&self.live, is_dir).or_else(|| {
            self.recorded
                .and_then(|r| r.get(&self.archive_path, is_dir))
        })
    }

    fn child(&self, name: &std::ffi::OsStr) -> Counterpart<'_> {
        Counterpart {
            live: self.live.join(name),
            archive_path: format!("{}/{}", self.archive_path, name.to_string_lossy()),
            recorded: self.recorded,
        }
    }
}

fn copy_synced(from: &Path, to: &Path, counterpart: &Counterpart<'_>) -> Result<()> {
    if from.is_dir() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(to)
            .with_context(|| format!("creating {}", to.display()))?;
        let mut entries: Vec<_> = fs::read_dir(from)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            copy_synced(&e.path(), &to.join(&name), &counterpart.child(&name))?;
        }
        // The folder's own owner and mode last, once nothing more is created in it.
        let folder = rustix::fs::open(
            to,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .with_context(|| format!("opening {}", to.display()))?;
        if let Some(attrs) = counterpart.attrs(true) {
            owner::apply_fd(&folder, &attrs).with_context(|| set_failed(to, &attrs))?;
        }
        rustix::fs::fsync(&folder).with_context(|| format!("syncing {}", to.display()))?;
        return Ok(());
    }
    let mut src = File::open(from).with_context(|| format!("reading {}", from.display()))?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    io::copy(&mut src, &mut dst).with_context(|| format!("writing {}", to.display()))?;
    if let Some(attrs) = counterpart.attrs(false) {
        owner::apply_fd(&dst, &attrs).with_context(|| set_failed(to, &attrs))?;
    }
    dst.sync_all()?;
    Ok(())
}

fn set_failed(path: &Path, attrs: &owner::Attrs) -> String {
    format!(
        "setting the owner and mode of {} ({})",
        path.display(),
        owner::describe(attrs)
    )
}

/// Replace `target` by the staged file or folder in one step, then sync the folder. A folder is
/// swapped atomically (`RENAME_EXCHANGE`) and the old tree removed after.
pub fn swap_in(staged: &Path, target: &Path) -> Result<()> {
    let dir = target.parent().context("a target has a folder")?;
    if staged.is_dir() && target.exists() {
        let cwd = rustix::fs::CWD;
        rustix::fs::renameat_with(cwd, staged, cwd, target, rustix::fs::RenameFlags::EXCHANGE)
            .with_context(|| format!("swapping {} into place", target.display()))?;
        // `staged` now holds the old tree.
        fs::remove_dir_all(staged)
            .with_context(|| format!("removing the old {}", target.display()))?;
    } else {
        fs::rename(staged, target)
            .with_context(|| format!("moving {} into place", target.display()))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Remove the journals beside `target` (after `settle_old_database`). Returns what was removed.
pub fn remove_journals(target: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for suffix in JOURNAL_SUFFIXES {
        let p = sidecar_path(target, suffix);
        if fs::symlink_metadata(&p).is_ok() {
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            removed.push(p.display().to_string());
        }
    }
    Ok(removed)
}

/// Leftover staged files of a killed restore beside `target`.
pub fn clean_staged(target: &Path) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let prefix = format!(".{}.litevault-new-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let p = e.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_held_open_by_another_process_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.db");
        fs::write(&f, b"x").unwrap();
        assert!(in_use(&f).is_none());
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3<{}; exec sleep 5", f.display()))
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut seen = None;
        while seen.is_none() && std::time::Instant::now() < deadline {
            seen = in_use(&f);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(seen.unwrap().contains("has"), "the holder was not found");
        fs::write(sidecar_path(&f, "-journal"), b"hot").unwrap();
        assert!(in_use(&f).unwrap().contains("hot journal"));
    }

    #[test]
    fn folders_are_swapped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("etc");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("old.conf"), "old").unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("tls")).unwrap();
        fs::write(src.join("tls/new.pem"), "new").unwrap();
        let staged = stage_beside(&src, &target, "etc", None).unwrap();
        swap_in(&staged, &target).unwrap();
        assert!(!target.join("old.conf").exists());
        assert_eq!(
            fs::read_to_string(target.join("tls/new.pem")).unwrap(),
            "new"
        );
        assert!(!staged.exists());
    }

    #[test]
    fn space_is_checked_per_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_space(&[(dir.path().join("a"), 1)]).is_ok());
        let err = check_space(&[(dir.path().join("a"), u64::MAX / 4)]).unwrap_err();
        assert!(format!("{err}").contains("not enough free space"), "{err}");
    }
}
