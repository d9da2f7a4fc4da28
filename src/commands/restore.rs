//! `litevault restore ID --to DIR`: unpack into a private folder beside DIR, check everything,
//! and only then move each source into DIR.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::RestoreArgs;
use crate::config::Settings;
use crate::exit::Fault;
use crate::progress::Progress;
use crate::state::{ensure_private_dir, nonce};

#[derive(Debug, Serialize)]
pub struct Report {
    pub id: String,
    pub destination: String,
    pub to: PathBuf,
    pub restored: Vec<String>,
    pub databases_checked: Vec<String>,
    pub check: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_stale: Vec<String>,
}

pub fn run(settings: &Settings, args: &RestoreArgs, progress: &dyn Progress) -> Result<Report> {
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let dests = super::open_destinations(settings, &names)?;
    let (dest, backup) = super::find_backup(&dests, &args.id)?;
    let to =
        std::path::absolute(&args.to).with_context(|| format!("--to {}", args.to.display()))?;

    // Refuse before any download: restore never overwrites.
    let sources: Vec<String> = backup
        .sidecar
        .manifest
        .sources
        .iter()
        .map(|s| s.name.clone())
        .collect();
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
    let checked =
        super::unpack_checked(dest, &backup, opener.as_ref(), &scratch.0, pragma, progress)?;

    ensure_private_dir(&to)?;
    let mut removed_stale = Vec::new();
    for name in &sources {
        let from = scratch.0.join(name);
        let target = to.join(name);
        if !from.exists() {
            // A dir source with no files has nothing to restore.
            continue;
        }
        // A leftover journal next to the target would be replayed onto the restored database.
        for suffix in ["-wal", "-shm", "-journal"] {
            let stale = PathBuf::from(format!("{}{suffix}", target.display()));
            if fs::symlink_metadata(&stale).is_ok() {
                fs::remove_file(&stale)
                    .with_context(|| format!("removing stale {}", stale.display()))?;
                removed_stale.push(stale.display().to_string());
            }
        }
        fs::rename(&from, &target)
            .with_context(|| format!("moving {} into place", target.display()))?;
    }
    sync_dir(&to)?;

    Ok(Report {
        id: backup.id.clone(),
        destination: dest.name.clone(),
        to,
        restored: sources,
        databases_checked: checked,
        check: pragma.to_string(),
        bytes: backup.sidecar.manifest.total_size(),
        removed_stale,
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
