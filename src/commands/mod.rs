//! One module per command: each reads like the steps of the operation and leaves the details to
//! the stage modules. Commands return reports; the UI turns them into words.

pub mod backup;
pub mod check;
pub mod in_place;
pub mod list;
pub mod prune;
pub mod restore;
pub mod verify;

use std::path::Path;

use anyhow::Result;

use crate::catalog::{self, Backup};
use crate::config::Settings;
use crate::storage::Destination;

/// Open the destinations a command works on (all, or those named with `--dest`).
pub fn open_destinations(settings: &Settings, names: &[String]) -> Result<Vec<Destination>> {
    settings
        .select_destinations(names)?
        .into_iter()
        .map(|d| open_destination(settings, d))
        .collect()
}

pub fn open_destination(
    settings: &Settings,
    cfg: &crate::config::Destination,
) -> Result<Destination> {
    Destination::open(cfg, &settings.name)
}

/// Find `id` (or `latest`) on the given destinations: the first that holds it, or the newest
/// backup across them.
pub fn find_backup<'d>(dests: &'d [Destination], id: &str) -> Result<(&'d Destination, Backup)> {
    let mut best: Option<(&Destination, Backup)> = None;
    let mut problems = Vec::new();
    for dest in dests {
        let listing = match catalog::list(dest) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        if id == "latest" {
            if let Some(b) = listing.backups.into_iter().next() {
                if best.as_ref().is_none_or(|(_, cur)| b.created > cur.created) {
                    best = Some((dest, b));
                }
            }
        } else if let Some(b) = listing.backups.into_iter().find(|b| b.id == id) {
            return Ok((dest, b));
        }
    }
    best.ok_or_else(|| {
        let names: Vec<&str> = dests.iter().map(|d| d.name.as_str()).collect();
        let what = if id == "latest" {
            "no complete backup".to_string()
        } else {
            format!("no complete backup {id}")
        };
        let mut msg = format!("{what} on {}", names.join(", "));
        if !problems.is_empty() {
            msg.push_str(&format!(" ({})", problems.join("; ")));
        }
        anyhow::Error::new(
            crate::exit::Fault::new(crate::exit::Exit::Failure, msg)
                .hint("`litevault list` shows the backups there are"),
        )
    })
}

/// Download `backup`, unpack it into `into` (an empty private folder) with every check, then run
/// `pragma` (quick_check or integrity_check) on each database. Returns the databases checked.
pub fn unpack_checked(
    dest: &Destination,
    backup: &Backup,
    opener: Option<&crate::crypto::Opener>,
    into: &Path,
    pragma: &str,
    durable: bool,
    progress: &dyn crate::progress::Progress,
) -> Result<Vec<String>> {
    use anyhow::Context;
    if let Some(damage) = &backup.damage {
        return Err(anyhow::Error::new(
            crate::exit::integrity(format!(
                "backup {} on {} is damaged: {damage}",
                backup.id, dest.name
            ))
            .hint("restore an older backup (`litevault list`), or one from another destination"),
        ));
    }
    let stored = dest.reader(&backup.sidecar.archive.object)?;
    progress.set_total(backup.sidecar.manifest.total_size());
    let databases = &backup.sidecar.manifest.databases;
    // Each file is synced (when `durable`) and each database checked on a thread of its own as
    // soon as it is unpacked, while the next one unpacks; the results are read once the whole
    // archive has proved intact.
    let (extracted, synced, checks) = std::thread::scope(|scope| {
        let mut syncs = Vec::new();
        let mut checks = Vec::new();
        let mut on_file = |path: &str| {
            let file = into.join(path);
            let db = databases.iter().find(|d| d.path == path);
            if !durable && db.is_none() {
                return;
            }
            let handle = scope.spawn(move || -> Result<Vec<String>> {
                if durable {
                    std::fs::File::open(&file)
                        .and_then(|f| f.sync_all())
                        .with_context(|| format!("syncing {}", file.display()))?;
                }
                match db {
                    Some(_) => crate::source::sqlite::check_file(&file, pragma),
                    None => Ok(Vec::new()),
                }
            });
            match db {
                Some(db) => checks.push((db, handle)),
                None => syncs.push(handle),
            }
        };
        let extracted = crate::archive::reader::extract(
            stored,
            &backup.sidecar,
            opener,
            into,
            progress,
            &mut on_file,
        );
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<Vec<String>>>| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a check thread panicked")))
        };
        let synced: Result<Vec<_>> = syncs.into_iter().map(join).collect();
        let checks: Vec<_> = checks.into_iter().map(|(db, h)| (db, join(h))).collect();
        (extracted, synced, checks)
    });
    extracted.with_context(|| format!("backup {} on {}", backup.id, dest.name))?;
    synced?;
    let mut checked = Vec::new();
    for (db, result) in checks {
        let problems =
            result.with_context(|| format!("backup {}: database {}", backup.id, db.source))?;
        if !problems.is_empty() {
            return Err(crate::exit::integrity(format!(
                "backup {} on {}: database {} fails {pragma}: {}",
                backup.id,
                dest.name,
                db.source,
                problems.join("; ")
            ))
            .into());
        }
        checked.push(db.source.clone());
    }
    Ok(checked)
}

/// The key to open a backup with, loaded only when the backup is encrypted.
pub fn opener_for(settings: &Settings, backup: &Backup) -> Result<Option<crate::crypto::Opener>> {
    if backup.sidecar.archive.encryption == "none" {
        return Ok(None);
    }
    let enc = settings.encryption.clone().unwrap_or_default();
    crate::crypto::Opener::load(&enc).map(Some)
}
