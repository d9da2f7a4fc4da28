//! How backups are named and found in a destination. The destination is the catalogue: there is
//! no index to go stale, a backup exists when its sidecar does.
//!
//! Inside each destination, this host's folder (the config's `name`) holds, per backup,
//! `<id>.tar[.zst|.gz][.age]` (the archive) and `<id>.json` (the sidecar, written last), plus
//! `tmp/` for objects still being written.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::archive::manifest::Sidecar;
use crate::storage::destination::{Destination, Object};
use crate::trust::Verdict;
use load::{load_backup, load_many};
use load::{load_sidecar, parse_sidecar};

pub mod chains;
mod hosts;
mod load;
pub mod sequence;
mod standing;
mod upkeep;

#[cfg(test)]
mod memory_tests;
pub use hosts::{host_summary, hosts, HostSummary};
pub use standing::{Good, Standing, CLOCK_SKEW};
pub use upkeep::{
    check_stored, clean_leftovers, delete, finish_rekeys, mixed_identities, notices,
    rekeyed_object_name, staged_sidecar_name, staged_signature_name, Cleanup, Finished,
};

const SIDECAR_SUFFIX: &str = ".json";
/// The sidecar's SSHSIG, beside it: `<id>.json.sig`, written before the sidecar.
const SIGNATURE_SUFFIX: &str = ".json.sig";
/// An armored SSHSIG is a few hundred bytes.
const SIGNATURE_LIMIT: u64 = 64 << 10;
/// A sidecar is a manifest: kilobytes. Anything far larger is not ours.
const SIDECAR_LIMIT: u64 = 64 << 20;

/// A new backup id: its UTC time to the second, then 4 hex digits so that two backups in one
/// second (or from two configs) do not collide. Ids sort by time.
pub fn new_id(now: SystemTime) -> String {
    let secs = crate::retention::unix_secs(now);
    let (y, m, d) = crate::retention::civil(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        &crate::state::nonce()[..4]
    )
}

/// Ids are what `new_id` makes; anything else in the folder is not a backup of ours.
pub fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 21
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..].iter().all(|c| c.is_ascii_hexdigit())
}

pub fn sidecar_name(id: &str) -> String {
    format!("{id}{SIDECAR_SUFFIX}")
}

pub fn signature_name(id: &str) -> String {
    format!("{id}{SIGNATURE_SUFFIX}")
}

/// A complete backup on one destination.
#[derive(Debug, Clone)]
pub struct Backup {
    pub id: String,
    pub created: SystemTime,
    pub destination: String,
    pub sidecar: Sidecar,
    /// What the trusted signers make of it (`NotRequired` when none is configured): for
    /// showing who signed it. Whether it counts is `standing`'s to say.
    pub trust: Verdict,
    /// The one judgement of it (see [`standing`]): nothing else decides whether it counts.
    pub standing: Standing,
    /// BLAKE3 of its sidecar's stored bytes: what the next backup's `sequence.previous` names.
    pub sidecar_blake3: String,
}

impl Backup {
    pub fn bytes(&self) -> u64 {
        self.sidecar.archive.bytes
    }

    /// Mark a backup whose chain turned out incomplete; a worse standing stays.
    pub fn break_chain(&mut self, why: String) {
        if self.standing.is_good() {
            self.standing = Standing::BrokenChain(why);
        }
    }
}

#[derive(Debug, Default)]
pub struct Listing {
    /// Complete backups (those with a sidecar), newest first.
    pub backups: Vec<Backup>,
    /// Sidecars that cannot be read as ours: never a good backup, always reported.
    pub problems: Vec<Problem>,
    /// Archives without a sidecar: a backup still being completed, a killed run's leftover, or
    /// a backup whose sidecar was lost. Never deleted by litevault: nothing says which it is.
    pub orphans: Vec<Orphan>,
}

impl Listing {
    /// The good backups, newest first.
    pub fn good(&self) -> impl Iterator<Item = Good<'_>> {
        self.backups.iter().filter_map(Backup::good)
    }
}

/// A backup whose sidecar is there but cannot be read as ours.
#[derive(Debug)]
pub struct Problem {
    pub id: String,
    pub destination: String,
    /// Integrity when the sidecar is damaged; a failure when it could not be fetched.
    pub exit: crate::exit::Exit,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backup {} on {}: {}",
            self.id, self.destination, self.what
        )
    }
}

#[derive(Debug, Clone)]
pub struct Orphan {
    pub id: String,
    pub object: String,
    pub destination: String,
}

impl Orphan {
    /// Older than the oldest backup that a run holding the lock (started at `holder_since`)
    /// could still be completing: then it is a finding, not work in progress.
    pub fn settled(&self, holder_since: Option<SystemTime>) -> bool {
        match (holder_since, id_time(&self.id)) {
            (None, _) => true,
            (Some(since), Some(made)) => made + std::time::Duration::from_secs(2) < since,
            (Some(_), None) => false,
        }
    }
}

impl std::fmt::Display for Orphan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "archive {} on {} has no sidecar: a run killed before it completed the backup, or a backup whose sidecar was lost; it is not counted as a backup, and litevault never deletes it (if it is a killed run's leftover, delete it by hand; to read it without its sidecar, see \"An archive without its sidecar\" in the README)",
            self.object, self.destination
        )
    }
}

pub fn list(dest: &Destination) -> Result<Listing> {
    list_at(dest, SystemTime::now())
}

/// [`list`], judging every backup against one `now`.
pub fn list_at(dest: &Destination, now: SystemTime) -> Result<Listing> {
    let objects = dest.list("")?;
    let by_name: HashMap<&str, &Object> = objects.iter().map(|o| (o.name.as_str(), o)).collect();
    let ids: Vec<&str> = objects
        .iter()
        .filter_map(|o| o.name.strip_suffix(SIDECAR_SUFFIX))
        .filter(|id| is_id(id))
        .collect();
    let listed = |name: &str| Ok(by_name.get(name).map(|o| (*o).clone()));
    let loaded = load_many(dest, &ids, &listed, now);
    let mut listing = Listing::default();
    for (id, loaded) in ids.iter().zip(loaded) {
        match loaded {
            Ok(backup) => listing.backups.push(backup),
            Err(e) => listing.problems.push(Problem {
                id: id.to_string(),
                destination: dest.name.clone(),
                exit: match crate::exit::classify(&e) {
                    crate::exit::Exit::Integrity => crate::exit::Exit::Integrity,
                    _ => crate::exit::Exit::Failure,
                },
                what: format!("its sidecar cannot be read: {e:#}"),
            }),
        }
    }
    listing.orphans = orphans_in(dest, &objects);
    listing
        .backups
        .sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let orphaned: std::collections::HashSet<&str> =
        listing.orphans.iter().map(|o| o.id.as_str()).collect();
    chains::mark_broken(&mut listing.backups, &orphaned);
    Ok(listing)
}

/// Archives in `objects` (one listing of `dest`'s namespace) without a sidecar.
fn orphans_in(dest: &Destination, objects: &[Object]) -> Vec<Orphan> {
    let sidecars: std::collections::HashSet<&str> = objects
        .iter()
        .filter_map(|o| o.name.strip_suffix(SIDECAR_SUFFIX))
        .collect();
    objects
        .iter()
        .filter_map(|obj| {
            let id = archive_id(&obj.name)?;
            (!sidecars.contains(id)).then(|| Orphan {
                id: id.to_string(),
                object: obj.name.clone(),
                destination: dest.name.clone(),
            })
        })
        .collect()
}

/// One listing of a destination's namespace, to load backups from by id: a chain of thirty
/// links costs one listing (and, once seen, no downloads), not a request per link.
pub struct Listed<'d> {
    dest: &'d Destination,
    by_name: HashMap<String, Object>,
    now: SystemTime,
}

impl<'d> Listed<'d> {
    pub fn take(dest: &'d Destination) -> Result<Listed<'d>> {
        let by_name = dest
            .list("")?
            .into_iter()
            .map(|o| (o.name.clone(), o))
            .collect();
        Ok(Listed {
            dest,
            by_name,
            now: SystemTime::now(),
        })
    }

    pub fn dest(&self) -> &'d Destination {
        self.dest
    }

    /// Backup `id` as judged on its own (its chain not yet looked at: [`Self::get_whole`]):
    /// `None` when it has no sidecar here.
    pub fn get(&self, id: &str) -> Result<Option<Backup>> {
        if !is_id(id) || !self.by_name.contains_key(&sidecar_name(id)) {
            return Ok(None);
        }
        load_backup(
            self.dest,
            id,
            &|name| Ok(self.by_name.get(name).cloned()),
            self.now,
        )
        .map(Some)
    }

    /// Backup `id` fully judged: an incremental whose chain is incomplete is `BrokenChain`.
    pub fn get_whole(&self, id: &str) -> Result<Option<Backup>> {
        let Some(mut b) = self.get(id)? else {
            return Ok(None);
        };
        if b.standing.is_good() && b.sidecar.manifest.is_incremental() {
            if let Err(e) = chains::resolve_in(self, &b) {
                b.break_chain(format!("{e:#}"));
            }
        }
        Ok(Some(b))
    }

    /// The time every backup of this listing is judged against.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The archive object of backup `id`, sidecar or not.
    pub fn archive_of(&self, id: &str) -> Option<String> {
        self.by_name
            .keys()
            .find(|n| archive_id(n) == Some(id))
            .cloned()
    }

    /// Whether the listing holds an object of this name (a signature beside its sidecar).
    pub fn holds(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The oldest backup with a sidecar here, whatever its standing, and when it was taken:
    /// among ids of the same second, the sidecars tell.
    pub fn oldest(&self) -> Option<(String, SystemTime)> {
        let ids = self.ids();
        let first = id_time(ids.last()?);
        ids.iter()
            .rev()
            .take_while(|id| id_time(id) == first)
            .map(|id| match self.get(id) {
                Ok(Some(b)) => (id.to_string(), b.created),
                _ => (id.to_string(), first.unwrap_or(UNIX_EPOCH)),
            })
            .min_by_key(|(_, t)| *t)
    }

    /// Ids with a sidecar, newest first (ids sort by time to the second).
    fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .by_name
            .keys()
            .filter_map(|n| n.strip_suffix(SIDECAR_SUFFIX))
            .filter(|id| is_id(id))
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }
}

/// The newest backup on `dest` that may be restored (not damaged, trusted, not dated ahead of
/// `now`, its chain whole), reading sidecars newest first and stopping at the first good one:
/// `latest` costs one listing and a sidecar or two, however many backups there are. Also what
/// was passed over, and why.
pub fn latest(dest: &Destination) -> Result<(Option<Backup>, Vec<Passed>)> {
    Ok(latest_in(&Listed::take(dest)?))
}

/// A backup `latest` passed over, and why.
#[derive(Debug, Clone)]
pub struct Passed {
    pub id: String,
    pub destination: String,
    pub why: String,
    /// Its standing; `None` when its sidecar could not be fetched at all.
    pub standing: Option<Standing>,
}

impl std::fmt::Display for Passed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "passed over backup {} on {}: {}",
            self.id, self.destination, self.why
        )
    }
}

/// [`latest`] within one listing; what it passed over is every backup newer than the one it
/// found (all of them when it found none).
pub fn latest_in(listed: &Listed<'_>) -> (Option<Backup>, Vec<Passed>) {
    latest_at(listed, None)
}

/// [`latest_in`] among the backups taken at or before `at` (`restore --at`; `None`: all).
/// Newer ones are not candidates, so they are neither read nor named as passed over.
pub fn latest_at(listed: &Listed<'_>, at: Option<SystemTime>) -> (Option<Backup>, Vec<Passed>) {
    let dest = listed.dest();
    let mut best: Option<Backup> = None;
    let mut passed = Vec::new();
    let mut pass = |id: &str, why: String, standing: Option<Standing>| {
        passed.push(Passed {
            id: id.to_string(),
            destination: dest.name.clone(),
            why,
            standing,
        })
    };
    for id in listed.ids() {
        // An id is its backup's time to the second, never later than its `created`: one from
        // a later second than `at` was taken after it.
        if at.is_some_and(|at| id_time(id).is_some_and(|t| t > at)) {
            continue;
        }
        // One from an earlier second than the best so far cannot be newer.
        if let Some(b) = &best {
            if id_time(id) < id_time(&b.id) {
                break;
            }
        }
        let b = match listed.get_whole(id) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                let standing = match crate::exit::classify(&e) {
                    crate::exit::Exit::Integrity => Some(Standing::Damaged(format!("{e:#}"))),
                    _ => None,
                };
                pass(id, format!("its sidecar cannot be read: {e:#}"), standing);
                continue;
            }
        };
        if at.is_some_and(|at| b.created > at) {
            continue;
        }
        if let Some(standing) = b.refusal() {
            pass(&b.id, standing.to_string(), Some(standing.clone()));
            continue;
        }
        if best.as_ref().is_none_or(|cur| b.created > cur.created) {
            best = Some(b);
        }
    }
    (best, passed)
}

/// The id of an archive object: archives are `<id>.tar...`, or `<id>.r<8 hex>.tar...` once re-encrypted by `rekey` (a new
/// name, so the old archive stays whole until the new sidecar points elsewhere).
fn archive_id(name: &str) -> Option<&str> {
    let (id, ext) = name.split_once('.')?;
    let ext = match ext.split_once('.') {
        Some((generation, rest))
            if generation.len() == 9
                && generation.starts_with('r')
                && generation[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            rest
        }
        _ => ext,
    };
    (is_id(id) && ext.starts_with("tar")).then_some(id)
}

/// How many good backups a destination holds and how old the newest is. A damaged backup, or
/// one dated further in the future than clocks drift, is never counted: it must not make
/// `--if-older-than` skip a run or the metrics look fresh.
pub struct Summary {
    pub backups: u64,
    pub newest_age: Option<std::time::Duration>,
    /// Why some backups were not counted.
    pub ignored: Vec<String>,
}

pub fn summary(dest: &Destination) -> Result<Summary> {
    let now = SystemTime::now();
    Ok(summarize(&list_at(dest, now)?, &dest.name, now))
}

/// [`summary`] of a listing taken at `now`.
pub fn summarize(listing: &Listing, destination: &str, now: SystemTime) -> Summary {
    let dest_name = destination;
    let mut ignored: Vec<String> = listing.problems.iter().map(|p| p.to_string()).collect();
    let mut good = Vec::new();
    for b in &listing.backups {
        match b.refusal() {
            Some(why) => ignored.push(format!(
                "backup {} on {dest_name} is not counted: {why}",
                b.id
            )),
            None => good.push(b.created),
        }
    }
    let newest = good.iter().max().copied();
    Summary {
        backups: good.len() as u64,
        newest_age: newest.map(|t| now.duration_since(t).unwrap_or_default()),
        ignored,
    }
}

/// The time an id was made, to the second.
pub fn id_time(id: &str) -> Option<SystemTime> {
    let n = |r: std::ops::Range<usize>| id.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    let days = days_from_civil(y, m, d);
    let secs = days * 86400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64))
}

/// Inverse of `retention::civil`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_sort_by_time_and_are_recognised() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_690_778); // 2026-11-26T10:59:38Z
        let id = new_id(t);
        assert!(id.starts_with("20261126T105938Z-"), "{id}");
        assert!(is_id(&id));
        assert_eq!(id_time(&id), Some(t));
        let later = new_id(t + Duration::from_secs(1));
        assert!(later > id);
        for bad in [
            "",
            "20261126T105938Z",
            "20261126T105938Z-zzzz",
            "../x",
            "20261126X105938Z-abcd",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }
}
