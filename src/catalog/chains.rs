//! Chains among listed backups: a full backup and the incrementals that build on it.
//!
//! An incremental is only as good as every link under it. So a listing marks an incremental
//! whose parent is missing, damaged or untrusted as a broken chain itself; a restore resolves
//! the whole chain (each link read by name) and names the link that is missing or bad; and
//! retention keeps every link a kept incremental needs. These are facts about a listing, so they
//! live with it; what the next backup builds on is the incremental planner's (`chain`).

use std::collections::HashMap;

use anyhow::Result;

use super::{Backup, Listed};
use crate::exit::integrity;
use crate::storage::Destination;

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
    resolve_in(&Listed::take(dest)?, backup)
}

/// [`resolve`] within one listing of the destination.
pub fn resolve_in(listed: &Listed<'_>, backup: &Backup) -> Result<Vec<Backup>> {
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
        if chain.len() > crate::vocabulary::MAX_CHAIN || !seen.insert(parent.clone()) {
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
