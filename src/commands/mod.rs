//! One module per command: each reads like the steps of the operation and leaves the details to
//! the stage modules. A command's file holds its options (translated once from its clap
//! struct), its run and its report, which renders itself through `ui` and says its exit code
//! and its execution-store row ([`report::CommandReport`]); `app`'s table and the `runner` do the
//! rest the same way for every command.

pub mod backup;
pub mod check;
pub mod copy;
pub mod fleet;
pub mod history;
pub mod key;
pub mod list;
pub mod prune;
pub mod rekey;
pub mod report;
pub mod restore;
pub mod show;
pub mod stats;
pub mod verify;

use anyhow::Result;

use crate::catalog::{self, Backup, Standing};
use crate::config::Settings;
use crate::storage::Destination;

/// Open the destinations a command works on (all, or those named with `--dest`).
/// [`open_destinations`], each seen as it was at `as_of` when given (`--as-of`): read-only,
/// every object the version that was current then.
pub fn open_destinations_as_of(
    settings: &Settings,
    names: &[String],
    as_of: Option<std::time::SystemTime>,
) -> Result<Vec<Destination>> {
    let dests = open_destinations(settings, names)?;
    match as_of {
        None => Ok(dests),
        Some(at) => dests.into_iter().map(|d| d.as_of(at)).collect(),
    }
}

pub fn open_destinations(settings: &Settings, names: &[String]) -> Result<Vec<Destination>> {
    settings
        .select_destinations(names)?
        .into_iter()
        .map(|d| open_destination(settings, d))
        .collect()
}

pub fn open_destination(
    settings: &Settings,
    cfg: &crate::config::DestinationConfig,
) -> Result<Destination> {
    open_destination_at(settings, cfg, &settings.name)
}

/// [`open_destination`] at another host's namespace (the fleet view), read with this host's
/// trust and through this host's sidecar cache.
pub fn open_destination_at(
    settings: &Settings,
    cfg: &crate::config::DestinationConfig,
    namespace: &str,
) -> Result<Destination> {
    let trust = crate::trust::Verifier::load(
        &settings.trust.signers,
        settings.trust.allowed_signers_file.as_deref(),
    )?;
    // Without a usable state folder there is no cache, only slower listings; reading never
    // creates `state_dir` (the first backup does).
    let cache = (settings.state_dir.is_dir())
        .then(|| crate::state::StateDir::open(&settings.state_dir).ok())
        .flatten()
        .and_then(|state| {
            crate::storage::cache::ObjectCache::open(
                state.path.join("cache"),
                &format!("{}\n{namespace}", cfg.location.display()),
            )
        });
    Destination::open(
        cfg,
        namespace,
        crate::storage::destination::Setup { trust, cache },
    )
}

/// Judge a destination's line of numbered backups from its listing (see `catalog::sequence`)
/// and remember it in `state_dir`: the findings, the newest number, and what the next backup
/// there is numbered; with notes when `state_dir` cannot remember. A view of the past
/// (`--as-of`) is judged against nothing and remembered nowhere: it is not the present line.
pub fn watch_line(
    settings: &Settings,
    dest: &Destination,
    backups: &[Backup],
    now: std::time::SystemTime,
) -> (Option<catalog::sequence::Watch>, Vec<String>) {
    use catalog::sequence::{watch, Memory, Seen};
    if dest.seen_at().is_some() {
        return (None, Vec::new());
    }
    let mut notes = Vec::new();
    let policy = settings
        .destinations
        .iter()
        .find(|c| c.name == dest.name)
        .map(|c| settings.policy_for(c))
        .unwrap_or_default();
    // Reading never creates `state_dir`: a host without one judges from the signed facts alone.
    let state = (settings.state_dir.is_dir())
        .then(|| crate::state::StateDir::open(&settings.state_dir))
        .transpose();
    let state = state.unwrap_or_else(|e| {
        notes.push(format!(
            "backups seen on destination {} are not remembered: {e:#}",
            dest.name
        ));
        None
    });
    let memory = state.as_ref().map(Memory::new);
    let ns = dest.namespace.as_deref();
    let seen = match memory.as_ref().map(|m| m.recall(&dest.name, ns)) {
        Some(Ok(seen)) => seen,
        Some(Err(e)) => {
            notes.push(format!("{e:#}"));
            Seen::default()
        }
        None => Seen::default(),
    };
    let line = watch(&dest.name, backups, &seen, &policy, now);
    if let Some(memory) = &memory {
        if line.seen != seen {
            if let Err(e) = memory.remember(&dest.name, ns, &line.seen) {
                notes.push(format!(
                    "backups seen on destination {} are not remembered: {e:#}",
                    dest.name
                ));
            }
        }
    }
    (Some(line), notes)
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
    find_noted(dests, id, None, true)
}

/// The newest good backup taken at or before `at` across `dests` (`restore --at`), chosen as
/// `latest` chooses, with notes on the ones passed over. A time before every backup is a
/// failure that names the oldest.
pub fn find_backup_at(
    dests: &[Destination],
    at: std::time::SystemTime,
) -> Result<(&Destination, Backup, Vec<String>)> {
    find_noted(dests, "latest", Some(at), true)
}

/// [`find_backup_noted`] for inspection (`show`): a backup named by its id is found even when
/// it is not trusted, for the caller to show and mark.
pub fn find_backup_to_inspect<'d>(
    dests: &'d [Destination],
    id: &str,
) -> Result<(&'d Destination, Backup, Vec<String>)> {
    find_noted(dests, id, None, false)
}

/// Up to `limit` names, joined, then how many more: "a, b, c and 12 more".
pub fn name_some(names: &[String], limit: usize) -> String {
    if names.len() <= limit {
        return names.join(", ");
    }
    format!(
        "{} and {} more",
        names[..limit].join(", "),
        names.len() - limit
    )
}

/// A backup named by something that cannot be an id: a usage error, said with the form.
pub fn malformed_id(id: &str) -> anyhow::Error {
    anyhow::Error::new(
        crate::exit::config(format!(
            "{id:?} is not a backup id: ids look like 20261126T031500Z-3fa9 (UTC time, then 4 hex digits)"
        ))
        .hint("name a backup by its whole id as `litevault list` shows it, or say `latest`"),
    )
}

/// `at`: only backups taken at or before it are candidates for `latest`.
fn find_noted<'d>(
    dests: &'d [Destination],
    id: &str,
    at: Option<std::time::SystemTime>,
    refuse_untrusted: bool,
) -> Result<(&'d Destination, Backup, Vec<String>)> {
    if id != "latest" && !catalog::is_id(id) {
        return Err(malformed_id(id));
    }
    let mut best: Option<(&Destination, Backup)> = None;
    let mut problems = Vec::new();
    let mut passed: Vec<catalog::Passed> = Vec::new();
    // The oldest backup seen anywhere, to name when `at` is before all of them.
    let mut oldest: Option<(String, std::time::SystemTime)> = None;
    for dest in dests {
        if id == "latest" {
            let found = catalog::Listed::take(dest).map(|listed| {
                let (found, over) = catalog::latest_at(&listed, at);
                // Read only when nothing here is at or before `at`.
                if let (Some(_), None, true) = (at, &found, over.is_empty()) {
                    if let Some((o, t)) = listed.oldest() {
                        if oldest.as_ref().is_none_or(|(_, cur)| t < *cur) {
                            oldest = Some((o, t));
                        }
                    }
                }
                (found, over)
            });
            match found {
                Ok((found, over)) => {
                    passed.extend(over);
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
                let mut notes = Vec::new();
                match &b.standing {
                    // Damage is found (and named) by the unpacking itself.
                    Standing::Good | Standing::Damaged(_) | Standing::BrokenChain(_) => {}
                    Standing::Untrusted(_) if !refuse_untrusted => {}
                    s @ Standing::Untrusted(_) => {
                        return Err(anyhow::Error::new(
                            crate::exit::Fault::new(
                                s.exit(),
                                format!("backup {id} on {} is refused: {s}", dest.name),
                            )
                            .hint(s.hint()),
                        ));
                    }
                    // Named by its id, a foreign or future-dated backup is what was asked for;
                    // it is never chosen otherwise.
                    s @ (Standing::Foreign { .. } | Standing::FutureDated(_)) => {
                        notes.push(format!(
                            "backup {id} on {}: {s}; used because it was named by its id",
                            dest.name
                        ))
                    }
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
    let notes: Vec<String> = passed.iter().map(|p| p.to_string()).collect();
    if let Some((dest, b)) = best {
        return Ok((dest, b, notes));
    }
    let names: Vec<&str> = dests.iter().map(|d| d.name.as_str()).collect();
    // Every destination had only newer backups (or none): TIME is before the first.
    if let (Some(at), Some(oldest), true) = (at, &oldest, passed.is_empty()) {
        return Err(before_the_first(at, oldest, &names, &problems));
    }
    let (what, exit, hint) = if id == "latest" {
        none_good(&passed)
    } else {
        (
            format!("no complete backup {id}"),
            crate::exit::Exit::Failure,
            "`litevault list` shows the backups there are",
        )
    };
    let mut msg = format!("{what} on {}", names.join(", "));
    problems.extend(notes);
    if !problems.is_empty() {
        msg.push_str(&format!(" ({})", problems.join("; ")));
    }
    Err(anyhow::Error::new(
        crate::exit::Fault::new(exit, msg).hint(hint),
    ))
}

/// `--at` a time before every backup there is: exit 1, as for "no backup", naming the oldest.
fn before_the_first(
    at: std::time::SystemTime,
    (oldest, taken): &(String, std::time::SystemTime),
    names: &[&str],
    problems: &[String],
) -> anyhow::Error {
    let taken = humantime::format_rfc3339_millis(*taken);
    let mut msg = format!(
        "no backup taken at or before {} on {}: the oldest, {oldest}, was taken at {taken}",
        humantime::format_rfc3339_seconds(at),
        names.join(", ")
    );
    if !problems.is_empty() {
        msg.push_str(&format!(" ({})", problems.join("; ")));
    }
    anyhow::Error::new(
        crate::exit::Fault::new(crate::exit::Exit::Failure, msg).hint(format!(
            "name a time at or after {taken}, or see `litevault list`"
        )),
    )
}

/// The headline, exit and hint when `latest` found nothing good: the reason is named ("no
/// trusted backup"), and backups passed over for damage or distrust make it an integrity
/// finding (exit 4), not a plain failure.
fn none_good(passed: &[catalog::Passed]) -> (String, crate::exit::Exit, &'static str) {
    use crate::exit::Exit;
    let standings: Vec<&Standing> = passed.iter().filter_map(|p| p.standing.as_ref()).collect();
    if standings.is_empty() {
        let what = if passed.is_empty() {
            "no backup"
        } else {
            "no readable backup"
        };
        return (
            what.to_string(),
            Exit::Failure,
            "`litevault list` shows the backups there are",
        );
    }
    let all = |label: &str| standings.iter().all(|s| s.label() == label);
    let what = if all("untrusted") {
        "no trusted backup".to_string()
    } else if all("broken-chain") {
        "no restorable backup: every chain is broken".to_string()
    } else if all("damaged") {
        "no undamaged backup".to_string()
    } else if all("foreign") {
        "no backup made by this host".to_string()
    } else if all("future-dated") {
        "no backup dated before now".to_string()
    } else {
        let mut labels: Vec<&str> = standings.iter().map(|s| s.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        format!("no good backup ({} passed over)", labels.join(", "))
    };
    let worst = standings
        .iter()
        .map(|s| s.exit())
        .find(|e| *e == Exit::Integrity)
        .unwrap_or(Exit::Failure);
    (what, worst, standings[0].hint())
}

/// The key to open a backup with, loaded only when the backup is encrypted.
pub fn opener_for(settings: &Settings, backup: &Backup) -> Result<Option<crate::crypto::Opener>> {
    if backup.sidecar.archive.encryption == "none" {
        return Ok(None);
    }
    let enc = settings.encryption.clone().unwrap_or_default();
    crate::crypto::Opener::load(&enc).map(Some)
}
