//! Backup chains: a full backup and the incrementals that build on it, one link at a time.
//!
//! An incremental is only as good as every link under it. So a listing marks an incremental
//! whose parent is missing, damaged or untrusted as damaged itself; a restore resolves the whole
//! chain (each link read by name) and names the link that is missing or bad; and a backup is
//! incremental only when its parent is whole on every destination it goes to, and says why
//! when it is not.

use std::collections::HashMap;
use std::time::SystemTime;

use anyhow::Result;

use crate::catalog::{self, Backup};
use crate::config::Settings;
use crate::exit::integrity;
use crate::pageindex::PageIndex;
use crate::state::StateDir;
use crate::storage::Destination;

/// No honest chain is longer: `max_chain` is at most this (a longer walk is a loop).
pub const MAX_DEPTH: usize = 10_000;

/// Mark each incremental whose chain is incomplete in `backups` (one destination's listing) as
/// a broken chain, naming the link that breaks it. `orphaned` holds the ids whose archive is
/// stored without a sidecar: a parent that lost only its sidecar is said to be so, since its
/// archive may still be read by hand.
pub fn mark_broken(backups: &mut [Backup], orphaned: &std::collections::HashSet<&str>) {
    let mut order: Vec<usize> = (0..backups.len()).collect();
    order.sort_by(|&a, &b| {
        (backups[a].created, &backups[a].id).cmp(&(backups[b].created, &backups[b].id))
    });
    let all: std::collections::HashSet<String> = backups.iter().map(|b| b.id.clone()).collect();
    // Oldest first, so a break below a link is known when the link is looked at.
    let mut good: HashMap<String, bool> = HashMap::new();
    for i in order {
        let b = &backups[i];
        let broken = match (
            b.sidecar.manifest.is_incremental(),
            &b.sidecar.manifest.parent,
        ) {
            (false, _) => None,
            (true, None) => Some("it is incremental but names no parent".to_string()),
            (true, Some(p)) => match good.get(p) {
                None if all.contains(p) => {
                    Some(format!("it names {p} as its parent, which is not older"))
                }
                None if orphaned.contains(p.as_str()) => Some(format!(
                    "its chain is incomplete: the backup it builds on, {p}, has lost its sidecar (its archive is still stored, and is never deleted by litevault; see \"An archive without its sidecar\" in the README)"
                )),
                None => Some(format!(
                    "its chain is incomplete: the backup it builds on, {p}, is missing"
                )),
                Some(false) => Some(format!(
                    "its chain is broken: the backup it builds on, {p}, is not good"
                )),
                Some(true) => None,
            },
        };
        let ok = broken.is_none() && b.standing.is_good();
        good.insert(b.id.clone(), ok);
        if let Some(why) = broken {
            backups[i].break_chain(why);
        }
    }
}

/// The backups a restore of `backup` needs, its full backup first and `backup` last (just
/// `backup` when it is full). Each link is read from `dest` by name; a missing, damaged or
/// untrusted link is an integrity fault that names it.
pub fn resolve(dest: &Destination, backup: &Backup) -> Result<Vec<Backup>> {
    if !backup.sidecar.manifest.is_incremental() {
        return Ok(vec![backup.clone()]);
    }
    resolve_in(&catalog::Listed::take(dest)?, backup)
}

/// [`resolve`] within one listing of the destination.
pub fn resolve_in(listed: &catalog::Listed<'_>, backup: &Backup) -> Result<Vec<Backup>> {
    let dest = listed.dest();
    let mut chain = vec![backup.clone()];
    let mut seen = std::collections::HashSet::new();
    loop {
        let link = chain.last().expect("never empty");
        let m = &link.sidecar.manifest;
        if !m.is_incremental() {
            break;
        }
        let Some(parent) = m.parent.clone() else {
            return Err(broken(backup, dest, format!("{} names no parent", link.id)));
        };
        if chain.len() > MAX_DEPTH || !seen.insert(parent.clone()) {
            return Err(broken(
                backup,
                dest,
                format!(
                    "{} names {parent} as its parent, which makes a loop",
                    link.id
                ),
            ));
        }
        let full = m.full.clone();
        let Some(found) = listed.get(&parent)? else {
            return Err(broken(
                backup,
                dest,
                format!("backup {parent} (the parent of {}) is missing", link.id),
            ));
        };
        if let Some(standing) = found.refusal() {
            return Err(broken(
                backup,
                dest,
                format!("backup {parent} (a link it needs) is not good: {standing}"),
            ));
        }
        let fm = &found.sidecar.manifest;
        let same_full = if fm.is_incremental() {
            fm.full == full
        } else {
            full.as_deref() == Some(parent.as_str())
        };
        if !same_full {
            return Err(broken(
                backup,
                dest,
                format!(
                    "backup {parent} does not belong to the chain of full backup {}",
                    full.as_deref().unwrap_or("?")
                ),
            ));
        }
        if found.created >= link.created {
            return Err(broken(
                backup,
                dest,
                format!(
                    "{} names {parent} as its parent, which is not older",
                    link.id
                ),
            ));
        }
        chain.push(found);
    }
    chain.reverse();
    Ok(chain)
}

fn broken(backup: &Backup, dest: &Destination, what: String) -> anyhow::Error {
    anyhow::Error::new(
        integrity(format!(
            "backup {} on {} cannot be restored: its chain is broken: {what}",
            backup.id, dest.name
        ))
        .hint("restore an older backup whose chain is whole (`litevault list` marks the others damaged), or this one from another destination"),
    )
}

/// What the next backup will be.
pub enum Plan {
    /// A full backup; `why` says why it is not incremental (none when incrementals are off).
    Full { why: Option<String> },
    /// An incremental on the backup the page index describes.
    Incremental { index: PageIndex },
}

/// Decide whether this backup can be incremental: `[incremental]` is on, `--full` was not
/// given, the page index in `state_dir` is readable, the chain is within `max_chain` and its
/// full backup within `full_every`, no database changed its page size, and the parent (with
/// every link under it) is whole on every destination this run stores to. Any miss makes it a
/// full backup for every destination, with the reason.
pub fn plan(
    settings: &Settings,
    state: &StateDir,
    dests: &[Destination],
    force_full: bool,
    now: SystemTime,
) -> Plan {
    let full = |why: String| Plan::Full { why: Some(why) };
    let Some(inc) = &settings.incremental else {
        return Plan::Full { why: None };
    };
    if force_full {
        return full("--full was given".into());
    }
    let index = match PageIndex::load(state) {
        Ok(Some(index)) => index,
        Ok(None) => {
            return full(format!(
                "there is no page index in {} (the first backup with [incremental], or the index was lost), so there is no parent to compare with",
                state.path.join(crate::pageindex::FILE).display()
            ))
        }
        Err(e) => return full(format!("{e:#}")),
    };
    if index.depth as u64 >= inc.max_chain as u64 {
        return full(format!(
            "the chain on full backup {} already has {} incremental(s) (max_chain = {})",
            index.full_id, index.depth, inc.max_chain
        ));
    }
    let age = now.duration_since(index.full_created).unwrap_or_default();
    if age >= inc.full_every {
        return full(format!(
            "the chain's full backup {} is {} old (full_every = {})",
            index.full_id,
            crate::ui::duration(age),
            crate::ui::duration(inc.full_every)
        ));
    }
    for source in settings
        .sources
        .iter()
        .filter(|s| s.kind == crate::config::SourceKind::Sqlite)
    {
        if let (Some(was), Some(now)) =
            (index.database(&source.name), header_page_size(&source.path))
        {
            if was.page_size != now {
                return full(format!(
                    "database {} changed its page size ({} to {now} bytes)",
                    source.name, was.page_size
                ));
            }
        }
    }
    for dest in dests {
        if let Some(why) = parent_problem(dest, &index, now) {
            return full(why);
        }
    }
    Plan::Incremental { index }
}

/// Why the backup `index` describes cannot be the parent on `dest`, if it cannot.
fn parent_problem(dest: &Destination, index: &PageIndex, now: SystemTime) -> Option<String> {
    let id = &index.backup_id;
    let listed = match catalog::Listed::take(dest) {
        Ok(l) => l,
        Err(e) => return Some(format!("destination {} cannot be listed: {e:#}", dest.name)),
    };
    let parent = match listed.get(id) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Some(format!(
                "the parent {id} is not on destination {} (it missed that run, or was pruned)",
                dest.name
            ))
        }
        Err(e) => {
            return Some(format!(
                "the parent {id} cannot be read on destination {}: {e:#}",
                dest.name
            ))
        }
    };
    let Some(parent) = parent.good() else {
        return Some(format!(
            "the parent {id} on destination {} cannot be built on: {}",
            dest.name, parent.standing
        ));
    };
    // A clock that stepped back would make a child older than its parent: a chain that can
    // never be restored.
    if parent.created >= now {
        return Some(format!(
            "the parent {id} on destination {} is dated {} ahead of this host's clock (it is not older than now: did the clock step back?)",
            dest.name,
            crate::ui::duration(parent.created.duration_since(now).unwrap_or_default())
        ));
    }
    // The index must describe exactly this backup's databases.
    let m = &parent.sidecar.manifest;
    for db in &index.databases {
        let stored = m
            .databases
            .iter()
            .find(|d| d.source == db.source)
            .and_then(|d| m.database_blake3(d));
        if stored.as_deref() != Some(db.blake3.as_str()) {
            return Some(format!(
                "the page index does not match backup {id} on destination {} (database {}), so it cannot be compared with",
                dest.name, db.source
            ));
        }
    }
    if let Err(e) = resolve_in(&listed, parent.backup()) {
        return Some(format!("{e:#}"));
    }
    None
}

/// The page size a database file's header declares (bytes 16-17; 1 means 65536), read without
/// opening it through SQLite. `None` when it cannot be read: the snapshot will say why.
fn header_page_size(path: &std::path::Path) -> Option<u32> {
    use std::io::Read;
    let mut header = [0u8; 18];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    match u16::from_be_bytes([header[16], header[17]]) {
        1 => Some(65536),
        n => Some(n as u32),
    }
}

/// What each incremental needs kept to stay restorable, for retention: its parent and every
/// older backup of its chain (same full backup). The whole chain, not just the parent: a link
/// whose sidecar was lost is not listed, and the links under it must stay for its archive to
/// be read by hand.
pub fn needs(backups: &[Backup]) -> HashMap<String, Vec<String>> {
    let mut chains: HashMap<&str, Vec<&Backup>> = HashMap::new();
    for b in backups {
        let m = &b.sidecar.manifest;
        let full = if m.is_incremental() {
            m.full.as_deref()
        } else {
            Some(b.id.as_str())
        };
        if let Some(full) = full {
            chains.entry(full).or_default().push(b);
        }
    }
    let mut out = HashMap::new();
    for b in backups {
        let m = &b.sidecar.manifest;
        if !m.is_incremental() {
            continue;
        }
        // The parent first: retention names it "parent of", the rest "chain of".
        let mut need: Vec<String> = m.parent.iter().cloned().collect();
        for l in m
            .full
            .as_deref()
            .and_then(|f| chains.get(f))
            .into_iter()
            .flatten()
        {
            if l.created < b.created && l.id != b.id && !need.contains(&l.id) {
                need.push(l.id.clone());
            }
        }
        out.insert(b.id.clone(), need);
    }
    out
}
