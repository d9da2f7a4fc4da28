//! `litevault restore ID --to DIR`: unpack into a private folder beside DIR, check everything,
//! and only then move each source into DIR. `--in-place` is its own flow (`in_place`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::catalog::Backup;
use crate::cli::RestoreArgs;
use crate::config::Settings;
use crate::exit::Fault;
use crate::progress::Progress;
use crate::state::{ensure_private_dir, nonce};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub id: String,
    pub destination: String,
    /// "to" or "in-place".
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<PathBuf>,
    pub restored: Vec<Restored>,
    pub databases_checked: Vec<String>,
    pub check: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_stale: Vec<String>,
    /// The backup of the state that was replaced (in-place only): restore it to undo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_backup: Option<String>,
    /// Each database opened and checked again where it now lives (in-place only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_checks: Vec<AfterCheck>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Restored {
    pub source: String,
    pub path: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct AfterCheck {
    pub source: String,
    pub ok: bool,
    pub detail: String,
}

impl Report {
    pub fn exit(&self) -> crate::exit::Exit {
        if self.after_checks.iter().all(|c| c.ok) {
            crate::exit::Exit::Success
        } else {
            crate::exit::Exit::Integrity
        }
    }
}

pub fn run(
    settings: &Settings,
    args: &RestoreArgs,
    progress: &dyn Progress,
    hook_env: &[(String, String)],
) -> Result<Report> {
    match &args.to {
        Some(to) => to_dir(settings, args, to, progress),
        None => super::in_place::run(settings, args, progress, hook_env),
    }
}

/// The sources to restore: all in the backup, or those named with `--only` (each must be in it).
pub fn selected_sources(backup: &Backup, only: &[String]) -> Result<Vec<String>> {
    let names: Vec<String> = backup
        .sidecar
        .manifest
        .sources
        .iter()
        .map(|s| s.name.clone())
        .collect();
    if only.is_empty() {
        return Ok(names);
    }
    for name in only {
        if !names.contains(name) {
            return Err(crate::exit::config(format!(
                "backup {} has no source {name:?} (it has: {})",
                backup.id,
                names.join(", ")
            ))
            .into());
        }
    }
    Ok(names.into_iter().filter(|n| only.contains(n)).collect())
}

fn to_dir(
    settings: &Settings,
    args: &RestoreArgs,
    to: &Path,
    progress: &dyn Progress,
) -> Result<Report> {
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let dests = super::open_destinations(settings, &names)?;
    let (dest, backup) = super::find_backup(&dests, &args.id)?;
    let to = std::path::absolute(to).with_context(|| format!("--to {}", to.display()))?;
    let sources = selected_sources(&backup, &args.only)?;

    // Refuse before any download: restore never overwrites.
    for name in &sources {
        let target = to.join(name);
        if fs::symlink_metadata(&target).is_ok() {
            return Err(anyhow::Error::new(
                crate::exit::config(format!(
                    "{} already exists; restore never overwrites",
                    target.display()
                ))
                .hint("restore into an empty folder, or move the existing files away first"),
            ));
        }
    }
    let opener = super::opener_for(settings, &backup)?;

    // The private folder sits beside DIR so the final moves are renames on one filesystem.
    let parent = to
        .parent()
        .ok_or_else(|| Fault::new(crate::exit::Exit::Usage, "--to cannot be /"))?;
    ensure_private_dir(parent).ok();
    let dir_name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let scratch = Scratch(parent.join(format!(".{dir_name}.litevault-restore-{}", nonce())));
    ensure_private_dir(&scratch.0)?;

    let pragma = if args.deep {
        "integrity_check"
    } else {
        "quick_check"
    };
    let checked = super::unpack_checked(
        dest,
        &backup,
        opener.as_ref(),
        &scratch.0,
        pragma,
        true,
        progress,
    )?;

    ensure_private_dir(&to)?;
    let mut removed_stale = Vec::new();
    let mut restored = Vec::new();
    for name in &sources {
        let from = scratch.0.join(name);
        let target = to.join(name);
        if !from.exists() {
            // A dir source with no files has nothing to restore.
            continue;
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

    Ok(Report {
        id: backup.id.clone(),
        destination: dest.name.clone(),
        mode: "to".into(),
        to: Some(to),
        restored,
        databases_checked: checked
            .into_iter()
            .filter(|d| sources.contains(d))
            .collect(),
        check: pragma.to_string(),
        bytes: backup.sidecar.manifest.total_size(),
        removed_stale,
        ..Report::default()
    })
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// The private unpack folder, removed whatever happens.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
