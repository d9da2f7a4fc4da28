//! The level above the namespaces: which hosts keep backups in a destination (one folder each,
//! named by their config's `name`), and how fresh each host's backups are, for the fleet view.
//!
//! Only a good backup counts, by the one judgement every command asks (see
//! [`super::Standing`]): only the sidecar (and, with `[trust]`, its signature) can say whether
//! a backup is damaged, forged or another host's, so every sidecar is read, as `list` reads
//! them: concurrently, and once, since the cache in `state_dir` serves them afterwards.

use std::time::SystemTime;

use anyhow::Result;

use super::{list_at, Backup};
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
}

/// How `dest`, opened at one host's folder, stands; `now` decides what is dated ahead. Every
/// sidecar (and signature) is read and each backup judged as everywhere else (see
/// [`super::Standing`]): a count taken from names alone would count a planted, foreign or
/// damaged backup as good. The sidecar cache makes that a one-time cost.
pub fn host_summary(dest: &Destination, now: SystemTime) -> Result<HostSummary> {
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
    })
}

fn not_counted(id: &str, dest: &str, why: &str) -> String {
    format!("backup {id} on {dest} is not counted: {why}")
}
