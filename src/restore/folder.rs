//! `restore ID --to DIR`: unpack into a private folder beside DIR, check everything, and only
//! then move each source into DIR, never overwriting.
//!
//! Folders that already exist (DIR, its parent, which may be a shared one like /tmp) keep their
//! mode and owner: only folders this restore creates are made private, and they are made so
//! when created, never by a chmod.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{choose, selected_size, selection, unpack_checked, Choice, Options, Report, Restored};
use crate::commands::{name_some, open_destinations_as_of, opener_for};
use crate::config::Settings;
use crate::exit::Fault;
use crate::progress::Progress;
use crate::state::nonce;

pub(super) fn run(
    settings: &Settings,
    options: &Options,
    to: &Path,
    deep: bool,
    same_owner: bool,
    progress: &dyn Progress,
) -> Result<Report> {
    check_same_owner(same_owner)?;
    let names: Vec<String> = options.dest.iter().cloned().collect();
    let dests = open_destinations_as_of(settings, &names, options.as_of)?;
    let Choice {
        dest,
        backup,
        notes: passed_over,
        at,
    } = choose(&dests, options)?;
    let selection = selection(&backup, &options.only)?;
    let items = &selection.items;
    let to = check_to(to, items)?;
    let opener = opener_for(settings, &backup)?;

    // The private folder sits beside DIR so the final moves are renames on one filesystem.
    let parent = to
        .parent()
        .ok_or_else(|| Fault::new(crate::exit::Exit::Usage, "--to cannot be /"))?;
    let mut created = Created::default();
    created.dir_all(parent)?;
    let mut notes = passed_over;
    notes.extend(clean_leftovers(parent));
    let dir_name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let scratch = UnpackFolder::create(parent.join(format!(
        ".{dir_name}{SCRATCH_MARK}{}-{}",
        std::process::id(),
        nonce()
    )))?;

    let pragma = if deep {
        "integrity_check"
    } else {
        "quick_check"
    };
    let checked = unpack_checked(
        dest,
        &backup,
        opener.as_ref(),
        &scratch.0,
        pragma,
        true,
        progress,
        super::Checks::UnlessSigned,
    )
    .map_err(|e| {
        if !crate::exit::local_trouble(&e) {
            return e;
        }
        anyhow::Error::new(
            Fault::new(crate::exit::Exit::Failure, format!("{e:#}")).hint(format!(
                "the filesystem holding {} is full (or read-only): free space there, or restore into a folder on another filesystem; nothing was restored",
                to.display()
            )),
        )
    })?;

    if same_owner {
        // In the private unpack folder, before anything is moved into DIR: only what this
        // restore wrote is changed.
        let recorded = crate::owner::Recorded::new(&backup.sidecar.manifest);
        for name in items {
            let from = scratch.0.join(name);
            if fs::symlink_metadata(&from).is_ok() {
                crate::owner::apply_recorded_tree(&from, name, &recorded)?;
            }
        }
    }
    let made_to = created.dir(&to)?;
    let mut removed_stale = Vec::new();
    let mut restored = Vec::new();
    for name in items {
        let from = scratch.0.join(name);
        let target = to.join(name);
        if !from.exists() {
            // A dir source with no files has nothing to restore.
            continue;
        }
        if let Some(folder) = target.parent().filter(|p| *p != to) {
            // One database or file of a source (`--only NAME/path`): its folders are made.
            created.dir_all(folder)?;
        }
        // A leftover journal next to the target would be replayed onto the restored database.
        removed_stale.extend(crate::place::remove_journals(&target)?);
        fs::rename(&from, &target)
            .with_context(|| format!("moving {} into place", target.display()))?;
        restored.push(Restored {
            source: name.clone(),
            path: target,
        });
    }
    sync_dir(&to)?;
    if made_to {
        sync_dir(parent)?;
    }
    created.keep();

    Ok(Report {
        id: backup.id.clone(),
        destination: dest.name.clone(),
        mode: "to".into(),
        to: Some(to),
        restored,
        databases_checked: checked
            .into_iter()
            .filter(|d| selection.covers(d))
            .collect(),
        check: pragma.to_string(),
        check_implied: matches!(backup.trust, crate::trust::Verdict::Trusted(_))
            && backup
                .sidecar
                .manifest
                .databases
                .iter()
                .all(|d| super::aftercare::implied(true, d.check, pragma)),
        bytes: selected_size(&backup.sidecar.manifest, &selection),
        removed_stale,
        notes,
        at,
        ..Report::default()
    })
}

/// `--same-owner` is root's alone.
pub(super) fn check_same_owner(same_owner: bool) -> Result<()> {
    if same_owner && !crate::owner::is_root() {
        return Err(anyhow::Error::new(
            crate::exit::config(
                "--same-owner gives restored files their recorded owners, which only root can do",
            )
            .hint("run the restore as root, or leave out --same-owner to get private files owned by you"),
        ));
    }
    Ok(())
}

/// `--to` made absolute, refused before any download when it is not a folder or already holds
/// one of `sources`: restore never overwrites.
pub(super) fn check_to(to: &Path, sources: &[String]) -> Result<PathBuf> {
    let to = std::path::absolute(to).with_context(|| format!("--to {}", to.display()))?;
    if to.parent().is_none() {
        return Err(Fault::new(crate::exit::Exit::Usage, "--to cannot be /").into());
    }
    if let Ok(meta) = fs::metadata(&to) {
        if !meta.is_dir() {
            return Err(anyhow::Error::new(
                crate::exit::config(format!("--to {} is not a folder", to.display()))
                    .hint("name a folder to restore into (it is created when missing)"),
            ));
        }
    }
    let clashes: Vec<String> = sources
        .iter()
        .map(|name| to.join(name))
        .filter(|target| fs::symlink_metadata(target).is_ok())
        .map(|target| target.display().to_string())
        .collect();
    if !clashes.is_empty() {
        return Err(anyhow::Error::new(
            crate::exit::config(format!(
                "{} already {}; restore never overwrites",
                name_some(&clashes, 10),
                if clashes.len() == 1 {
                    "exists"
                } else {
                    "exist"
                }
            ))
            .hint("restore into an empty folder, or move the existing files away first"),
        ));
    }
    Ok(to)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Names the private unpack folder `.<DIR>.litevault-restore-<pid>-<nonce>`: the pid tells a
/// later restore whether the one that made it is still running.
const SCRATCH_MARK: &str = ".litevault-restore-";

/// The private unpack folder, removed whatever happens (short of the process dying: then the
/// next restore into the same parent removes it, see `clean_leftovers`).
struct UnpackFolder(PathBuf);

impl UnpackFolder {
    /// Made private at creation, and only if the name is free: a folder of the same name is
    /// never adopted (nor removed afterwards).
    fn create(path: PathBuf) -> Result<UnpackFolder> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| cannot_create(&path, e))?;
        Ok(UnpackFolder(path))
    }
}

impl Drop for UnpackFolder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cannot_create(path: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::Error::new(
        Fault::new(
            crate::exit::Exit::Failure,
            format!("cannot create {}: {e}", path.display()),
        )
        .hint("restore --to a folder in a place this user can write to (the restore unpacks beside it)"),
    )
}

/// Remove the unpack folders in `parent` left by restores that died (killed, out of memory)
/// before they could remove their own: those whose pid is no longer running, and that this
/// user owns. Returns a note for each folder removed or that could not be.
fn clean_leftovers(parent: &Path) -> Vec<String> {
    let mut notes = Vec::new();
    let Ok(entries) = fs::read_dir(parent) else {
        return notes;
    };
    let me = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = leftover_pid(&name) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Not following a link, and never another user's folder.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        notes.push(match fs::remove_dir_all(entry.path()) {
            Ok(()) => format!(
                "removed {}, left by a restore (pid {pid}) that did not finish",
                entry.path().display()
            ),
            Err(e) => format!(
                "cannot remove {}, left by a restore (pid {pid}) that did not finish: {e}; remove it by hand",
                entry.path().display()
            ),
        });
    }
    notes
}

/// The pid in a name made by `to_dir` for its unpack folder, if `name` is one.
fn leftover_pid(name: &str) -> Option<u32> {
    let (dir, tail) = name.rsplit_once(SCRATCH_MARK)?;
    let (pid, nonce) = tail.split_once('-')?;
    let ours =
        dir.starts_with('.') && nonce.len() == 8 && nonce.bytes().all(|b| b.is_ascii_hexdigit());
    ours.then(|| pid.parse().ok()).flatten()
}

/// The folders this restore created, outermost first. Each is made 0700 as it is created (a
/// folder that existed is left exactly as it was); if the restore fails they are removed again
/// when still empty, so a failed restore leaves nothing behind.
#[derive(Default)]
struct Created {
    dirs: Vec<PathBuf>,
    kept: bool,
}

impl Created {
    /// Create `path` and whichever of its ancestors are missing.
    fn dir_all(&mut self, path: &Path) -> Result<()> {
        let missing: Vec<&Path> = path
            .ancestors()
            .take_while(|a| fs::symlink_metadata(a).is_err())
            .collect();
        for dir in missing.into_iter().rev() {
            self.dir(dir)?;
        }
        Ok(())
    }

    /// Create `path` if it is missing; true when this call created it.
    fn dir(&mut self, path: &Path) -> Result<bool> {
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {
                self.dirs.push(path.to_path_buf());
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
            Err(e) => Err(cannot_create(path, e)),
        }
    }

    fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if !self.kept {
            for dir in self.dirs.iter().rev() {
                // Only when empty: anything else put there since is not ours to remove.
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unpack_folder_names_carry_a_pid() {
        assert_eq!(
            leftover_pid(".out.litevault-restore-4242-0123abcd"),
            Some(4242)
        );
        assert_eq!(
            leftover_pid(".a.litevault-restore-b.litevault-restore-7-deadbeef"),
            Some(7)
        );
        for other in [
            "out.litevault-restore-4242-0123abcd",
            ".out.litevault-restore-0123abcd",
            ".out.litevault-restore-x-0123abcd",
            ".out.litevault-restore-4242-0123abc",
            ".out.litevault-restore-4242-0123abcz",
            ".out",
        ] {
            assert_eq!(leftover_pid(other), None, "{other}");
        }
    }
}
