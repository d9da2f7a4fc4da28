//! One module per command: each reads like the steps of the operation and leaves the details to
//! the stage modules. Commands return reports; the UI turns them into words.

pub mod backup;
pub mod check;
pub mod in_place;
pub mod key;
pub mod list;
pub mod prune;
mod rebuild;
pub mod rekey;
pub mod restore;
mod unpack;
pub mod verify;

pub use unpack::unpack_checked;

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
    let mut dest = Destination::open(cfg, &settings.name)?;
    dest.trust = crate::trust::Policy::load(
        &settings.trust.signers,
        settings.trust.allowed_signers_file.as_deref(),
    )?;
    Ok(dest)
}

/// When the run holding this host's lock started, if one does (without creating `state_dir`).
pub fn lock_holder_since(settings: &Settings) -> Option<std::time::SystemTime> {
    if !settings.state_dir.is_dir() {
        return None;
    }
    crate::state::StateDir::open(&settings.state_dir)
        .ok()?
        .lock_holder_since()
}

/// Find `id` (or `latest`) on the given destinations: the first that holds it, or the newest
/// good backup across them.
pub fn find_backup<'d>(dests: &'d [Destination], id: &str) -> Result<(&'d Destination, Backup)> {
    find_backup_noted(dests, id).map(|(d, b, _)| (d, b))
}

/// [`find_backup`], with notes on what `latest` passed over (damaged or future-dated backups),
/// for the report.
pub fn find_backup_noted<'d>(
    dests: &'d [Destination],
    id: &str,
) -> Result<(&'d Destination, Backup, Vec<String>)> {
    let mut best: Option<(&Destination, Backup)> = None;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let now = std::time::SystemTime::now();
    for dest in dests {
        let listing = match catalog::list(dest) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        if id == "latest" {
            for b in listing.backups {
                if let Some(why) = b.refusal(now) {
                    notes.push(format!(
                        "passed over backup {} on {}: {why}",
                        b.id, dest.name
                    ));
                    continue;
                }
                if best.as_ref().is_none_or(|(_, cur)| b.created > cur.created) {
                    best = Some((dest, b));
                }
                break;
            }
            for p in &listing.problems {
                notes.push(format!("passed over {p}"));
            }
        } else if let Some(b) = listing.backups.into_iter().find(|b| b.id == id) {
            // Damage is found (and named) by the unpacking itself; trust is decided here.
            if !b.trust.is_good() {
                return Err(anyhow::Error::new(
                    crate::exit::integrity(format!(
                        "backup {id} on {} is refused: {}",
                        dest.name, b.trust
                    ))
                    .hint("only backups signed by a key in [trust] are restored; if this one is genuine, add its signer's public key to [trust] signers"),
                ));
            }
            return Ok((dest, b, notes));
        } else if let Some(p) = listing.problems.iter().find(|p| p.id == id) {
            return Err(anyhow::Error::new(
                crate::exit::Fault::new(p.exit, p.to_string())
                    .hint("restore another backup (`litevault list`), or this one from another destination"),
            ));
        } else if let Some(o) = listing.orphans.iter().find(|o| o.id == id) {
            return Err(anyhow::Error::new(
                crate::exit::integrity(format!("backup {id} is not complete: {o}"))
                    .hint("restore another backup (`litevault list`)"),
            ));
        }
    }
    if let Some((dest, b)) = best {
        return Ok((dest, b, notes));
    }
    let names: Vec<&str> = dests.iter().map(|d| d.name.as_str()).collect();
    let what = if id == "latest" {
        "no complete, undamaged backup".to_string()
    } else {
        format!("no complete backup {id}")
    };
    let mut msg = format!("{what} on {}", names.join(", "));
    problems.extend(notes);
    if !problems.is_empty() {
        msg.push_str(&format!(" ({})", problems.join("; ")));
    }
    Err(anyhow::Error::new(
        crate::exit::Fault::new(crate::exit::Exit::Failure, msg)
            .hint("`litevault list` shows the backups there are"),
    ))
}

/// The key to open a backup with, loaded only when the backup is encrypted.
pub fn opener_for(settings: &Settings, backup: &Backup) -> Result<Option<crate::crypto::Opener>> {
    if backup.sidecar.archive.encryption == "none" {
        return Ok(None);
    }
    let enc = settings.encryption.clone().unwrap_or_default();
    crate::crypto::Opener::load(&enc).map(Some)
}
