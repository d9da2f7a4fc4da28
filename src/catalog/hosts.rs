//! The level above the namespaces: which hosts keep backups in a destination (one folder each,
//! named by their config's `name`), and how fresh each host's backups are, for the fleet view.
//!
//! It must stay fast with hundreds of hosts of hundreds of backups, so a sidecar is read only
//! where the listing cannot answer. An id carries its time and the listing carries sizes; what
//! the listing cannot tell is whether a backup is good. So:
//!
//! - the newest good backup is found as `latest` finds it, reading sidecars newest first until
//!   one passes every test (archive size, trust, date, chain), and what it passed over is not
//!   counted;
//! - without `[trust]`, an older backup counts when the listing holds its sidecar and its
//!   archive and its id is not dated ahead (an archive of the wrong size, or a broken chain,
//!   below the newest good backup is found by that host's own `list` and `verify`);
//! - with `[trust]`, only a signature checked against the sidecar's exact bytes makes a backup
//!   count, so every sidecar and signature is read, as `list` reads them: once, since the cache
//!   in `state_dir` serves them afterwards.

use std::collections::HashSet;
use std::time::SystemTime;

use anyhow::Result;

use super::{archive_id, id_time, latest_in, list_at, Backup, Listed, CLOCK_SKEW};
use crate::storage::destination::Destination;

/// The host namespaces in a destination opened at its root ([`Destination::open_root`]):
/// every folder whose name a config's `name` could be, sorted.
pub fn hosts(root: &Destination) -> Result<Vec<String>> {
    let mut names: Vec<String> = root
        .folders("")?
        .into_iter()
        .filter(|n| crate::config::is_safe_name(n))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// One host's backups on one destination, as the fleet view counts them.
#[derive(Debug)]
pub struct HostSummary {
    /// Good backups: complete, undamaged, trusted where `[trust]` is configured, not dated ahead.
    pub backups: u64,
    /// The newest good backup (what `restore latest` there would take, given this host's trust).
    pub newest: Option<Backup>,
    /// Backups not counted, and why.
    pub ignored: Vec<String>,
    /// Every sidecar was read (with `[trust]`), not only the newest ones.
    pub read_every_sidecar: bool,
}

/// How `dest`, opened at one host's folder, stands; `now` decides what is dated ahead. A
/// backup another host made is foreign there, as everywhere (see [`super::Standing`]).
pub fn host_summary(dest: &Destination, now: SystemTime) -> Result<HostSummary> {
    if dest.trust.is_configured() {
        return trusted_summary(dest, now);
    }
    let listed = Listed::take(dest)?;
    let (newest, passed) = latest_in(&listed);
    let refused: HashSet<&str> = passed.iter().map(|p| p.id.as_str()).collect();
    let archives: HashSet<&str> = listed
        .by_name
        .keys()
        .filter_map(|n| archive_id(n))
        .collect();
    let mut ignored: Vec<String> = passed
        .iter()
        .map(|p| not_counted(&p.id, &dest.name, &p.why))
        .collect();
    let mut backups = 0;
    for id in listed.ids() {
        if refused.contains(id) {
            continue;
        }
        if !archives.contains(id) {
            ignored.push(not_counted(id, &dest.name, "its archive is missing"));
        } else if id_time(id).is_some_and(|t| t > now + CLOCK_SKEW) {
            ignored.push(not_counted(
                id,
                &dest.name,
                "it is dated ahead of this host's clock (check both clocks)",
            ));
        } else {
            backups += 1;
        }
    }
    Ok(HostSummary {
        backups,
        newest,
        ignored,
        read_every_sidecar: false,
    })
}

fn trusted_summary(dest: &Destination, now: SystemTime) -> Result<HostSummary> {
    let listing = list_at(dest, now)?;
    let mut ignored: Vec<String> = listing.problems.iter().map(|p| p.to_string()).collect();
    let mut backups = 0;
    let mut newest: Option<Backup> = None;
    // Newest first: the first good one is the newest.
    for b in listing.backups {
        match b.refusal() {
            Some(why) => ignored.push(not_counted(&b.id, &dest.name, &why.to_string())),
            None => {
                backups += 1;
                if newest.is_none() {
                    newest = Some(b);
                }
            }
        }
    }
    Ok(HostSummary {
        backups,
        newest,
        ignored,
        read_every_sidecar: true,
    })
}

fn not_counted(id: &str, dest: &str, why: &str) -> String {
    format!("backup {id} on {dest} is not counted: {why}")
}
