//! One module per command: each reads like the steps of the operation and leaves the details to
//! the stage modules. Commands return reports; the UI turns them into words.

pub mod backup;
pub mod check;
pub mod copy;
pub mod fleet;
pub mod in_place;
pub mod key;
pub mod list;
pub mod prune;
mod rebuild;
pub mod rekey;
pub mod restore;
pub mod show;
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
    open_destination_at(settings, cfg, &settings.name)
}

/// [`open_destination`] at another host's namespace (the fleet view), read with this host's
/// trust and through this host's sidecar cache.
pub fn open_destination_at(
    settings: &Settings,
    cfg: &crate::config::Destination,
    namespace: &str,
) -> Result<Destination> {
    let mut dest = Destination::open(cfg, namespace)?;
    dest.trust = crate::trust::Policy::load(
        &settings.trust.signers,
        settings.trust.allowed_signers_file.as_deref(),
    )?;
    // Without a usable state folder there is no cache, only slower listings.
    dest.cache = crate::state::StateDir::open(&settings.state_dir)
        .ok()
        .and_then(|state| {
            crate::storage::cache::ObjectCache::open(
                state.path.join("cache"),
                &format!("{}\n{namespace}", dest.display),
            )
        });
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
    find_noted(dests, id, true)
}

/// [`find_backup_noted`] for inspection (`show`): a backup named by its id is found even when
/// it is not trusted, for the caller to show and mark.
pub fn find_backup_to_inspect<'d>(
    dests: &'d [Destination],
    id: &str,
) -> Result<(&'d Destination, Backup, Vec<String>)> {
    find_noted(dests, id, false)
}

fn find_noted<'d>(
    dests: &'d [Destination],
    id: &str,
    refuse_untrusted: bool,
) -> Result<(&'d Destination, Backup, Vec<String>)> {
    let mut best: Option<(&Destination, Backup)> = None;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let now = std::time::SystemTime::now();
    for dest in dests {
        if id == "latest" {
            match catalog::latest(dest, now) {
                Ok((found, passed)) => {
                    notes.extend(passed);
                    if let Some(b) = found {
                        if best.as_ref().is_none_or(|(_, cur)| b.created > cur.created) {
                            best = Some((dest, b));
                        }
                    }
                }
                Err(e) => problems.push(format!("{e:#}")),
            }
            continue;
        }
        let listed = match catalog::Listed::take(dest) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        match listed.get(id) {
            Ok(Some(b)) => {
                // Damage is found (and named) by the unpacking itself; trust is decided here.
                if refuse_untrusted && !b.trust.is_good() {
                    return Err(anyhow::Error::new(
                        crate::exit::integrity(format!(
                            "backup {id} on {} is refused: {}",
                            dest.name, b.trust
                        ))
                        .hint("only backups signed by a key in [trust] are restored; if this one is genuine, add its signer's public key to [trust] signers"),
                    ));
                }
                return Ok((dest, b, notes));
            }
            Err(e) => {
                let exit = match crate::exit::classify(&e) {
                    crate::exit::Exit::Integrity => crate::exit::Exit::Integrity,
                    _ => crate::exit::Exit::Failure,
                };
                return Err(anyhow::Error::new(
                    crate::exit::Fault::new(
                        exit,
                        format!("backup {id} on {}: its sidecar cannot be read: {e:#}", dest.name),
                    )
                    .hint("restore another backup (`litevault list`), or this one from another destination"),
                ));
            }
            Ok(None) => {
                if let Some(object) = listed.archive_of(id) {
                    let o = catalog::Orphan {
                        id: id.to_string(),
                        object,
                        destination: dest.name.clone(),
                    };
                    return Err(anyhow::Error::new(
                        crate::exit::integrity(format!("backup {id} is not complete: {o}"))
                            .hint("restore another backup (`litevault list`)"),
                    ));
                }
            }
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
