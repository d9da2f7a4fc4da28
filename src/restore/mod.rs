//! The restore engine: a backup (and, for an incremental, its chain) downloaded, unpacked into
//! a private folder with every check, and only then put in place: into a folder (`folder`), or
//! back on the server over the live sources (`in_place`). `verify --restore-test` uses the same
//! unpacking (`unpack_checked`).
//!
//! - `unpack`: one backup's archive through every check into a private folder;
//! - `rebuild`: an incremental's chain, oldest link first, into one private folder;
//! - `aftercare`: the workers that sync and check each unpacked file while the next unpacks;
//! - `folder`: `--to DIR`, never overwriting, folders made private as they are created;
//! - `in_place`: the server's own files replaced, after a safety backup and with its hooks;
//! - `plan`: `--dry-run`, what a restore would read, need and check, from sidecars alone.
//!
//! Every restore, and its dry run, chooses its backup through [`choose`], so the two never
//! disagree on which backup is meant or whether it is refused.

mod aftercare;
mod folder;
mod in_place;
pub mod plan;
mod rebuild;
mod unpack;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::catalog::Backup;
use crate::config::Settings;
use crate::progress::Progress;
use crate::storage::Destination;

pub use unpack::{unpack_chain_checked, unpack_checked, Checks};

/// What to restore, from where, and where to.
pub struct Options {
    /// A backup id, or `latest`.
    pub id: String,
    /// The destination to restore from [default: the first that holds the backup].
    pub dest: Option<String>,
    /// Only these sources [default: every source in the backup].
    pub only: Vec<String>,
    pub target: Target,
    /// `--as-of`: the destinations as they were then.
    pub as_of: Option<std::time::SystemTime>,
    /// `--at`: the newest good backup taken at or before this time, instead of `id`.
    pub at: Option<std::time::SystemTime>,
}

pub enum Target {
    /// Into `DIR/<source name>`, never overwriting.
    Folder {
        dir: PathBuf,
        /// `integrity_check` instead of `quick_check` on each database.
        deep: bool,
        /// The owners and modes the backup recorded, instead of private files (root only).
        same_owner: bool,
    },
    /// Back at each source's configured path on this server.
    InPlace {
        /// Back up the current state first, so the restore can be undone.
        safety_backup: bool,
        /// Replace databases even when another process has them open.
        force: bool,
        /// How long to wait for another run's lock.
        wait: Option<Duration>,
    },
}

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
    /// The check was not run again: a trusted key signed the backup, and each database's
    /// snapshot passed it (or `integrity_check`) when it was taken (see `aftercare::implied`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub check_implied: bool,
    /// Each database opened and checked again where it now lives (in-place only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_checks: Vec<AfterCheck>,
    /// `--at`: the time asked for and the backup it chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<At>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What `--at TIME` chose: the newest good backup taken at or before TIME.
#[derive(Debug, Clone, Serialize)]
pub struct At {
    /// TIME, RFC 3339.
    pub time: String,
    /// The backup chosen, and when it was taken.
    pub chose: String,
    pub created: String,
    /// TIME is after now: it means the newest good backup, as `latest` does.
    pub in_future: bool,
}

impl At {
    /// The line that says what was chosen.
    pub fn said(&self) -> String {
        format!(
            "--at {}: chose backup {}, taken at {}, the newest good backup taken at or before it",
            self.time, self.chose, self.created
        )
    }
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

/// Restore as `options` say. `hook_env` is the run's environment for the in-place hooks.
pub fn run(
    settings: &Settings,
    options: &Options,
    progress: &dyn Progress,
    hook_env: &[(String, String)],
) -> Result<Report> {
    match &options.target {
        Target::Folder {
            dir,
            deep,
            same_owner,
        } => folder::run(settings, options, dir, *deep, *same_owner, progress),
        Target::InPlace {
            safety_backup,
            force,
            wait,
        } => in_place::run(
            settings,
            options,
            in_place::Choices {
                safety_backup: *safety_backup,
                force: *force,
                wait: *wait,
            },
            progress,
            hook_env,
        ),
    }
}

/// The backup a restore (or its dry run) means, on `dests`: `--at`'s choice, or the id (or
/// `latest`); with the notes on what was passed over. The one way a restore chooses.
pub(crate) struct Choice<'d> {
    pub dest: &'d Destination,
    pub backup: Backup,
    pub notes: Vec<String>,
    pub at: Option<At>,
}

pub(crate) fn choose<'d>(dests: &'d [Destination], options: &Options) -> Result<Choice<'d>> {
    let Some(time) = options.at else {
        let (dest, backup, notes) = crate::commands::find_backup_noted(dests, &options.id)?;
        return Ok(Choice {
            dest,
            backup,
            notes,
            at: None,
        });
    };
    let (dest, backup, mut notes) = crate::commands::find_backup_at(dests, time)?;
    let in_future = time > std::time::SystemTime::now();
    let at = At {
        time: humantime::format_rfc3339_seconds(time).to_string(),
        chose: backup.id.clone(),
        created: humantime::format_rfc3339_seconds(backup.created).to_string(),
        in_future,
    };
    if in_future {
        notes.push(format!(
            "--at {} is in the future: that means the newest good backup, as `latest` does",
            at.time
        ));
    }
    Ok(Choice {
        dest,
        backup,
        notes,
        at: Some(at),
    })
}

/// What a restore puts in place: whole sources, or single databases and files by their path in
/// the backup (`--only NAME`, `--only tenants/a.db`, `--only 'tenants/*.db'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Paths in the backup, none below another: a source's name, or a path below it.
    pub items: Vec<String>,
}

impl Selection {
    /// Whether the file or database at `path` in the backup is restored.
    pub fn covers(&self, path: &str) -> bool {
        self.items.iter().any(|i| {
            path == i
                || path
                    .strip_prefix(i.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Whether it restores each source it touches whole.
    pub fn whole_sources(&self) -> bool {
        self.items.iter().all(|i| !i.contains('/'))
    }

    pub fn of_sources(names: Vec<String>) -> Selection {
        Selection { items: names }
    }
}

/// What `--only` selects: everything in the backup when empty; otherwise each name must be a
/// source, or a database or file in the backup, or a pattern matching at least one of them.
pub fn selection(backup: &Backup, only: &[String]) -> Result<Selection> {
    let m = &backup.sidecar.manifest;
    let names: Vec<String> = m.sources.iter().map(|s| s.name.clone()).collect();
    if only.is_empty() {
        return Ok(Selection::of_sources(names));
    }
    let deltas: std::collections::HashSet<&str> = m
        .databases
        .iter()
        .filter_map(|d| match &d.stored {
            Some(crate::archive::manifest::Stored::Wal { wal, .. }) => Some(wal.as_str()),
            _ => None,
        })
        .collect();
    let paths: Vec<&str> = m
        .databases
        .iter()
        .map(|d| d.path.as_str())
        .chain(m.files.iter().map(|f| f.path.as_str()))
        .filter(|p| !deltas.contains(p))
        .collect();
    let mut items: Vec<String> = Vec::new();
    for wanted in only {
        let before = items.len();
        if names.contains(wanted) || paths.contains(&wanted.as_str()) {
            items.push(wanted.clone());
        } else if wanted.contains(['*', '?', '[']) {
            if let Ok(pattern) = glob::Pattern::new(wanted) {
                let hit = |p: &str| pattern.matches_with(p, crate::config::MATCH);
                items.extend(names.iter().filter(|n| hit(n)).cloned());
                items.extend(paths.iter().filter(|p| hit(p)).map(|p| p.to_string()));
            }
        }
        if items.len() == before {
            return Err(crate::exit::config(format!(
                "backup {} has no source {wanted:?}, nor a database or file by that path",
                backup.id
            ))
            .hint(format!(
                "--only takes a source name as the backup stores it: one of {}; or the path of a database or file below one (NAME/app.db), or a pattern such as 'NAME/*.db' (`litevault show {}` lists them)",
                names.join(", "),
                backup.id
            ))
            .into());
        }
    }
    items.sort();
    items.dedup();
    let all = Selection {
        items: items.clone(),
    };
    // A path below another selected item is restored with it.
    items.retain(|i| {
        !all.items.iter().any(|o| {
            o != i
                && i.strip_prefix(o.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    });
    Ok(Selection { items })
}

/// The bytes that restoring `selection` writes: the whole backup's restored size, counted over
/// what is selected only (`--only`).
pub(crate) fn selected_size(
    manifest: &crate::archive::manifest::Manifest,
    selection: &Selection,
) -> u64 {
    let mut only = manifest.clone();
    only.databases.retain(|d| selection.covers(&d.path));
    let deltas: std::collections::HashSet<String> = only
        .databases
        .iter()
        .filter_map(|d| match &d.stored {
            Some(crate::archive::manifest::Stored::Wal { wal, .. }) => Some(wal.clone()),
            _ => None,
        })
        .collect();
    only.files
        .retain(|f| selection.covers(&f.path) || deltas.contains(&f.path));
    only.restored_size()
}
