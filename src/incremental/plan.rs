//! The incremental planner: what the next backup builds on. A backup is incremental only when
//! its parent is good and whole on every destination it goes to, and says why when it is not.
//! (How a listing's chains are judged and resolved is the catalog's: `catalog::chains`.)

use std::time::SystemTime;

use crate::catalog::{self, chains::resolve_in};
use crate::config::Settings;
use crate::incremental::pageindex::PageIndex;
use crate::source::discover::DbFile;
use crate::state::StateDir;
use crate::storage::Destination;

/// What the next backup will be.
pub enum Plan {
    /// A full backup; `why` says why it is not incremental (none when incrementals are off).
    Full { why: Option<String> },
    /// An incremental on the backup the page index describes.
    Incremental { index: PageIndex },
}

/// Decide whether this backup can be incremental: `[incremental]` is on, `--full` was not
/// given, the page index in `state_dir` is readable, the chain is within `max_chain` and
/// `max_chain_size` and its full backup within `full_every`, no database changed its page size, and the parent (with
/// every link under it) is whole on every destination this run stores to. Any miss makes it a
/// full backup for every destination, with the reason.
pub fn plan(
    settings: &Settings,
    state: &StateDir,
    dests: &[Destination],
    databases: &[DbFile<'_>],
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
                state.path.join(crate::incremental::pageindex::FILE).display()
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
    for db in databases {
        if let (Some(was), Some(now)) = (index.database(&db.path), header_page_size(&db.fs_path)) {
            if was.page_size != now {
                return full(format!(
                    "database {} changed its page size ({} to {now} bytes)",
                    db.path, was.page_size
                ));
            }
        }
    }
    for dest in dests {
        if let Some(why) = parent_problem(dest, &index, now, inc.max_chain_size) {
            return full(why);
        }
    }
    Plan::Incremental { index }
}

/// Why the backup `index` describes cannot be the parent on `dest`, if it cannot.
fn parent_problem(
    dest: &Destination,
    index: &PageIndex,
    now: SystemTime,
    max_chain_size: u32,
) -> Option<String> {
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
        let entry = m.databases.iter().find(|d| d.path == db.source);
        let stored = entry.and_then(|d| m.database_blake3(d));
        // What the index says the database passed is what the backup says, or nothing.
        let passed_differs = match (&db.passed, entry) {
            (Some(p), Some(d)) => p.check != d.check || p.row_counts != d.row_counts,
            _ => false,
        };
        if stored.as_deref() != Some(db.blake3.as_str()) || passed_differs {
            return Some(format!(
                "the page index does not match backup {id} on destination {} (database {}), so it cannot be compared with",
                dest.name, db.source
            ));
        }
    }
    match resolve_in(&listed, parent.backup()) {
        Ok(links) => chain_too_big(&links, max_chain_size),
        Err(e) => Some(format!("{e:#}")),
    }
}

/// A chain whose incrementals store less than this is never cut for its size: reading it
/// costs well under a second, and a small database's archive is mostly fixed overhead, which
/// would make every share look large.
const CHAIN_SIZE_FLOOR: u64 = 32 << 20;

/// Why one more link would make the chain store more than `percent` of its full backup, if
/// it would. A restore reads every link whole, so the chain's bytes are what restoring its
/// newest backup costs beyond a full one. The next link is taken to be as large as the last.
fn chain_too_big(links: &[catalog::Backup], percent: u32) -> Option<String> {
    let (full, incrementals) = links.split_first()?;
    let sizes: Vec<u64> = incrementals.iter().map(|b| b.bytes()).collect();
    let stored = over_budget(full.bytes(), &sizes, percent)?;
    Some(format!(
        "the chain's {} incremental(s) on full backup {} store {} ({}% of its {}), and one more would pass max_chain_size = {percent}% (a restore reads the whole chain)",
        sizes.len(),
        full.id,
        crate::ui::bytes(stored),
        stored.saturating_mul(100) / full.bytes().max(1),
        crate::ui::bytes(full.bytes()),
    ))
}

/// The incrementals' stored bytes, when one more link as large as the last would take them
/// past `percent` of the full backup's `full` bytes (and past the floor).
fn over_budget(full: u64, incrementals: &[u64], percent: u32) -> Option<u64> {
    let last = *incrementals.last()?;
    let stored: u64 = incrementals.iter().sum();
    let budget = (full.saturating_mul(percent as u64) / 100).max(CHAIN_SIZE_FLOOR);
    (stored.saturating_add(last) > budget).then_some(stored)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_cut_before_its_links_pass_the_share_of_the_full_backup() {
        const MB: u64 = 1 << 20;
        // 575 MB full, 80 MB links (the scale 1 bench): at 50%, a third link would pass 287 MB.
        assert_eq!(over_budget(575 * MB, &[80 * MB], 50), None);
        assert_eq!(over_budget(575 * MB, &[80 * MB, 80 * MB], 50), None);
        assert_eq!(
            over_budget(575 * MB, &[80 * MB, 80 * MB, 80 * MB], 50),
            Some(240 * MB)
        );
        // No link yet: nothing to judge the next one by.
        assert_eq!(over_budget(575 * MB, &[], 50), None);
        // Small databases: the floor, never the share, so archives' fixed overhead cuts nothing.
        assert_eq!(over_budget(10_000, &[9_000; 20], 50), None);
        assert!(over_budget(10 * MB, &[20 * MB, 20 * MB], 50).is_some());
    }
}
