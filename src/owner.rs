//! Owners and modes of restored files and folders.
//!
//! A backup records each file's and folder's owner, group and mode, as tar does. Where a
//! restore puts them back:
//!
//! - **In place**, each file and folder takes the owner, group and mode of the live one it
//!   replaces (read before it is replaced, never through a link); one with no live counterpart
//!   takes what the backup recorded (the owner only when running as root).
//! - **`--to DIR`** keeps the private default (0600 files in 0700 folders, owned by whoever
//!   runs it), unless `--same-owner` (as root) asks for the recorded owners and modes.
//!
//! Everything is set on an opened file descriptor (opened with `O_NOFOLLOW`), before the file
//! is moved into place, so a restored file never shows with the wrong owner, and a link is
//! never followed.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use rustix::fs::{Gid, Mode, OFlags, Uid};

use crate::archive::manifest::Manifest;

/// An owner, group and mode to give a file or folder. `None` leaves the owner (or group) as the
/// file was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: u32,
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The mode bits kept from a backup's record: all of them (setuid, setgid, sticky too) when
/// running as root, which also restores the owner; only the permission bits otherwise, so a
/// file never becomes setuid for an owner it does not have.
fn recorded_mask(root: bool) -> u32 {
    if root {
        0o7777
    } else {
        0o777
    }
}

/// What a backup recorded, by archive path: each file (a database's own record first), and
/// each folder of a `dir` source.
pub struct Recorded {
    files: HashMap<String, Attrs>,
    dirs: HashMap<String, Attrs>,
    root: bool,
}

impl Recorded {
    pub fn new(manifest: &Manifest) -> Recorded {
        let root = is_root();
        let mut files: HashMap<String, Attrs> = manifest
            .files
            .iter()
            .map(|f| {
                (
                    f.path.clone(),
                    Attrs {
                        uid: f.uid,
                        gid: f.gid,
                        mode: f.mode,
                    },
                )
            })
            .collect();
        for db in &manifest.databases {
            if let Some(mode) = db.mode {
                files.insert(
                    db.path.clone(),
                    Attrs {
                        uid: db.uid,
                        gid: db.gid,
                        mode,
                    },
                );
            }
        }
        let dirs = manifest
            .dirs
            .iter()
            .map(|d| {
                (
                    d.path.clone(),
                    Attrs {
                        uid: Some(d.uid),
                        gid: Some(d.gid),
                        mode: d.mode,
                    },
                )
            })
            .collect();
        Recorded { files, dirs, root }
    }

    /// What to give the restored file or folder at archive path `path`: the recorded mode
    /// (masked, see [`recorded_mask`]) and, as root, the recorded owner. `None` when nothing was
    /// recorded (a folder, in a backup from before folders were).
    pub fn get(&self, path: &str, is_dir: bool) -> Option<Attrs> {
        let map = if is_dir { &self.dirs } else { &self.files };
        let a = map.get(path)?;
        Some(Attrs {
            uid: a.uid.filter(|_| self.root),
            gid: a.gid.filter(|_| self.root),
            mode: a.mode & recorded_mask(self.root),
        })
    }
}

/// The owner, group and mode of the live file or folder at `path`, when it is one of the kind
/// asked for (read without following a link: a link, or anything else, is no counterpart).
/// Owner and group are given only when running as root (nobody else can give them away).
pub fn live(path: &Path, is_dir: bool) -> Option<Attrs> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let kind_matches = if is_dir {
        meta.file_type().is_dir()
    } else {
        meta.file_type().is_file()
    };
    if !kind_matches {
        return None;
    }
    let root = is_root();
    Some(Attrs {
        uid: Some(meta.uid()).filter(|_| root),
        gid: Some(meta.gid()).filter(|_| root),
        mode: meta.mode() & 0o7777,
    })
}

/// Give the open file or folder `fd` these attributes: owner first (a chown clears setuid and
/// setgid), then the mode.
pub fn apply_fd<Fd: AsFd>(fd: Fd, attrs: &Attrs) -> std::io::Result<()> {
    if attrs.uid.is_some() || attrs.gid.is_some() {
        let uid = attrs.uid.map(Uid::from_raw);
        let gid = attrs.gid.map(Gid::from_raw);
        rustix::fs::fchown(&fd, uid, gid)?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(attrs.mode))?;
    Ok(())
}

/// Open `path` without following a link (a folder when `is_dir`) and apply `attrs` to it.
pub fn apply_path(path: &Path, is_dir: bool, attrs: &Attrs) -> Result<()> {
    let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if is_dir {
        flags |= OFlags::DIRECTORY;
    }
    let fd = rustix::fs::open(path, flags, Mode::empty())
        .with_context(|| format!("opening {} to set its owner and mode", path.display()))?;
    apply_fd(&fd, attrs).with_context(|| {
        format!(
            "setting the owner and mode of {} ({})",
            path.display(),
            describe(attrs)
        )
    })
}

/// "uid 65534, gid 65534, mode 0640" for messages.
pub fn describe(attrs: &Attrs) -> String {
    let mut parts = Vec::new();
    if let Some(uid) = attrs.uid {
        parts.push(format!("uid {uid}"));
    }
    if let Some(gid) = attrs.gid {
        parts.push(format!("gid {gid}"));
    }
    parts.push(format!("mode {:04o}", attrs.mode));
    parts.join(", ")
}

/// Give every file and folder of the restored tree at `path` (archive path `archive_path`)
/// what the backup recorded for it, deepest first (a folder last, so its own mode never stands
/// in the way). Nothing recorded: left as unpacked. Used by `restore --to DIR --same-owner`,
/// on the private unpack folder, before anything is moved into DIR.
pub fn apply_recorded_tree(path: &Path, archive_path: &str, recorded: &Recorded) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let is_dir = meta.file_type().is_dir();
    if is_dir {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            apply_recorded_tree(&e.path(), &format!("{archive_path}/{name}"), recorded)?;
        }
    } else if !meta.file_type().is_file() {
        return Ok(());
    }
    if let Some(attrs) = recorded.get(archive_path, is_dir) {
        apply_path(path, is_dir, &attrs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_no_live_counterpart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(live(&file, false).is_some());
        assert!(live(&link, false).is_none());
        assert!(live(&file, true).is_none());
        assert!(live(dir.path(), true).is_some());
    }

    #[test]
    fn applying_never_follows_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let attrs = Attrs {
            uid: None,
            gid: None,
            mode: 0o644,
        };
        assert!(apply_path(&link, false, &attrs).is_err());
        let mode = std::fs::metadata(&file).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        apply_path(&file, false, &attrs).unwrap();
        let mode = std::fs::metadata(&file).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o644);
    }
}
