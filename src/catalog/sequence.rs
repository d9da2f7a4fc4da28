//! Seeing that backups went missing. Each backup's signed sidecar carries its number among its
//! host's backups on the destination and names the backup before it
//! ([`crate::archive::manifest::Sequence`]); `state_dir` remembers, per destination, the
//! highest number seen and when each was last seen. From those two, every command that lists
//! can tell:
//!
//! - **a rollback**: the newest number there is lower than one seen before, so the newest
//!   backups were deleted (or the bucket was put back to an older state);
//! - **a deletion out of turn**: a number is missing that the retention policy would still
//!   keep. A prune by the policy deletes only what the policy lets go, so its deletions are told
//!   apart by the same rule, from signed facts: a missing backup's time comes from the id that
//!   the next backup's signed sidecar names (or from this host's memory of it).
//!
//! Only numbers in sidecars the trusted signers vouch for count: a planted sidecar cannot raise
//! the line (and make every genuine backup look rolled back) or fill a gap. The judgement is
//! pure ([`watch`]); [`Memory`] is the `state_dir` file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{id_time, Backup, Standing};
use crate::archive::manifest::{Previous, Sequence};
use crate::retention::{self, Dated, Policy};
use crate::state::StateDir;

/// How many missing numbers a finding names (it counts them all).
const NAMED: usize = 20;
/// How many numbers `state_dir` remembers per destination: far more than any retention keeps.
const REMEMBERED: usize = 20_000;

/// What `state_dir` remembers of one destination's line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The highest number ever seen there.
    pub high: u64,
    /// Numbers seen there (or found missing and not yet explained), with their backup's id and
    /// when each was last seen present.
    #[serde(default)]
    pub backups: BTreeMap<u64, SeenBackup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenBackup {
    pub id: String,
    /// Its `manifest.created` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// RFC 3339; absent for one only ever known from the next backup's sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// One number that is not on the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub sequence: u64,
    /// Its backup's id, when a signed sidecar or this host's memory names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When this host last saw it there (RFC 3339), if it ever did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "kebab-case")]
pub enum Finding {
    /// The newest number there is lower than the highest seen before.
    RolledBack {
        destination: String,
        newest: Option<u64>,
        highest_seen: u64,
        /// How many numbers are missing (`missing` names the first [`NAMED`]).
        count: u64,
        missing: Vec<Missing>,
    },
    /// Numbers below the newest are missing that the retention policy would still keep.
    OutOfTurn {
        destination: String,
        count: u64,
        missing: Vec<Missing>,
    },
}

impl Finding {
    pub fn count(&self) -> u64 {
        match self {
            Finding::RolledBack { count, .. } | Finding::OutOfTurn { count, .. } => *count,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |missing: &[Missing], count: u64| {
            let mut parts: Vec<String> = missing
                .iter()
                .map(|m| {
                    let mut s = format!("#{}", m.sequence);
                    if let Some(id) = &m.id {
                        s.push_str(&format!(" {id}"));
                    }
                    match &m.last_seen {
                        Some(t) => s.push_str(&format!(" (last seen {t})")),
                        None => s.push_str(" (never seen by this host)"),
                    }
                    s
                })
                .collect();
            if count > missing.len() as u64 {
                parts.push(format!("and {} more", count - missing.len() as u64));
            }
            parts.join(", ")
        };
        let advice = "if nobody meant to delete them, the bucket may have been attacked: see \"When the bucket was attacked\" in the README (`list --as-of` shows what was there before)";
        match self {
            Finding::RolledBack {
                destination,
                newest,
                highest_seen,
                count,
                missing,
            } => {
                let newest = match newest {
                    Some(n) => format!("is #{n}"),
                    None => "is gone".to_string(),
                };
                write!(
                    f,
                    "destination {destination}: the newest backup there {newest}, but #{highest_seen} was seen before: the newest backups were deleted or rolled back; missing: {}; {advice}",
                    names(missing, *count)
                )
            }
            Finding::OutOfTurn {
                destination,
                count,
                missing,
            } => write!(
                f,
                "destination {destination}: {count} backup(s) are missing that the retention policy would still keep, so they were deleted out of turn: {}; {advice}",
                names(missing, *count)
            ),
        }
    }
}

/// One destination's line as a listing found it.
#[derive(Debug, Clone)]
pub struct Watch {
    pub destination: String,
    /// The newest signed number there.
    pub newest: Option<u64>,
    pub findings: Vec<Finding>,
    /// What the next backup stored there is numbered, and the backup it follows.
    pub next: Sequence,
    /// What `state_dir` remembers from now on.
    pub seen: Seen,
}

impl Watch {
    /// Missing backups, all findings together (the `litevault_backups_missing` metric).
    pub fn missing(&self) -> u64 {
        self.findings.iter().map(Finding::count).sum()
    }
}

/// Whether a backup's number counts: its sidecar is one the trusted signers vouch for (or
/// trust is off) and it sits in its own host's folder.
fn counts(b: &Backup) -> Option<u64> {
    let vouched = b.trust.is_good()
        && !matches!(
            b.standing,
            Standing::Untrusted(_) | Standing::Foreign { .. }
        );
    vouched
        .then_some(b.sidecar.sequence.as_ref().map(|s| s.number))
        .flatten()
}

/// A backup as the policy would have seen it: only its id and time matter to the rules.
struct Past {
    id: String,
    created: SystemTime,
}

impl Dated for Past {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> SystemTime {
        self.created
    }
}

/// Judge one destination's line: `backups` is its listing, `seen` what this host remembers of
/// it, `policy` the retention this host applies there.
pub fn watch(
    destination: &str,
    backups: &[Backup],
    seen: &Seen,
    policy: &Policy,
    now: SystemTime,
) -> Watch {
    let now_text = rfc3339(now);
    let mut present: BTreeMap<u64, &Backup> = BTreeMap::new();
    for b in backups {
        if let Some(n) = counts(b) {
            present.entry(n).or_insert(b);
        }
    }
    let newest = present.keys().next_back().copied();
    let high = seen.high.max(newest.unwrap_or(0));

    // Every number whose backup is known: remembered, present, or named by its successor.
    let mut known: BTreeMap<u64, String> = seen
        .backups
        .iter()
        .map(|(n, s)| (*n, s.id.clone()))
        .collect();
    // When each known backup was taken, as precisely as anything says.
    let mut times: HashMap<String, SystemTime> = seen
        .backups
        .values()
        .filter_map(|s| Some((s.id.clone(), parse_time(s.created.as_deref()?)?)))
        .collect();
    for (n, b) in &present {
        known.insert(*n, b.id.clone());
        times.insert(b.id.clone(), b.created);
        if let Some(prev) = b
            .sidecar
            .sequence
            .as_ref()
            .and_then(|s| s.previous.as_ref())
        {
            if let Some(p) = prev.number.filter(|p| p < n) {
                known.entry(p).or_insert_with(|| prev.id.clone());
                if let Some(t) = prev.created.as_deref().and_then(parse_time) {
                    times.entry(prev.id.clone()).or_insert(t);
                }
            }
        }
    }
    let missing = |n: u64| Missing {
        sequence: n,
        id: known.get(&n).cloned(),
        last_seen: seen.backups.get(&n).and_then(|s| s.last_seen.clone()),
    };

    let mut findings = Vec::new();
    let mut unexplained: BTreeSet<u64> = BTreeSet::new();
    let floor = newest.unwrap_or(0);
    if high > floor {
        let count = high - floor;
        let named: Vec<Missing> = (floor + 1..=high).take(NAMED).map(missing).collect();
        unexplained.extend((floor + 1..=high).take(REMEMBERED));
        findings.push(Finding::RolledBack {
            destination: destination.to_string(),
            newest,
            highest_seen: high,
            count,
            missing: named,
        });
    }

    // Below the newest: runs of missing numbers, between present ones or remembered below the
    // oldest present one.
    // Each run: its numbers (at most REMEMBERED of them) and how many it has.
    let mut runs: Vec<(Vec<u64>, u64)> = Vec::new();
    let lowest_present = present.keys().next().copied();
    if let Some(lowest) = lowest_present {
        let mut below: Vec<u64> = seen
            .backups
            .keys()
            .copied()
            .filter(|n| *n < lowest)
            .collect();
        below.sort_unstable();
        for n in below {
            match runs.last_mut() {
                Some((run, count)) if run.last() == Some(&(n - 1)) => {
                    run.push(n);
                    *count += 1;
                }
                _ => runs.push((vec![n], 1)),
            }
        }
        let numbers: Vec<u64> = present.keys().copied().collect();
        for pair in numbers.windows(2) {
            let gap = pair[0] + 1..pair[1];
            if !gap.is_empty() {
                let count = gap.end - gap.start;
                runs.push((gap.take(REMEMBERED).collect(), count));
            }
        }
    }
    let kept = kept_by_policy(&present, &runs, &known, &times, policy, now);
    let mut out_of_turn = Vec::new();
    let mut count = 0u64;
    for (run, run_count) in &runs {
        if !run.iter().any(|n| known.contains_key(n)) {
            // Nothing names any of them: nothing can explain them either.
            count += run_count;
            unexplained.extend(run.iter().copied());
            out_of_turn.extend(run.iter().copied().map(missing).take(NAMED));
            continue;
        }
        // Each known one the policy would keep is missing out of turn; an unknown one beside
        // known ones that the policy let go went the same way as they did.
        for n in run {
            if known.get(n).is_some_and(|id| kept(id)) {
                count += 1;
                unexplained.insert(*n);
                out_of_turn.push(missing(*n));
            }
        }
    }
    out_of_turn.truncate(NAMED);
    if count > 0 {
        findings.push(Finding::OutOfTurn {
            destination: destination.to_string(),
            count,
            missing: out_of_turn,
        });
    }

    // Remember what is there now, and what is missing without an explanation (to name it
    // with its last sighting next time); forget what the policy let go.
    let mut remembered: BTreeMap<u64, SeenBackup> = BTreeMap::new();
    for (n, b) in &present {
        remembered.insert(
            *n,
            SeenBackup {
                id: b.id.clone(),
                created: Some(b.sidecar.manifest.created.clone()),
                last_seen: Some(now_text.clone()),
            },
        );
    }
    for n in &unexplained {
        if let Some(id) = known.get(n) {
            remembered.entry(*n).or_insert_with(|| SeenBackup {
                id: id.clone(),
                created: times
                    .get(id)
                    .map(|t| humantime::format_rfc3339_millis(*t).to_string()),
                last_seen: seen.backups.get(n).and_then(|s| s.last_seen.clone()),
            });
        }
    }
    while remembered.len() > REMEMBERED {
        remembered.pop_first();
    }

    let previous = present
        .values()
        .next_back()
        .copied()
        .or_else(|| {
            // Nothing numbered yet: the line starts after the newest backup there.
            backups
                .iter()
                .filter(|b| b.trust.is_good() && b.standing.is_good())
                .max_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)))
        })
        .map(|b| Previous {
            id: b.id.clone(),
            number: b.sidecar.sequence.as_ref().map(|s| s.number),
            created: Some(b.sidecar.manifest.created.clone()),
            sidecar_blake3: b.sidecar_blake3.clone(),
        });
    Watch {
        destination: destination.to_string(),
        newest,
        findings,
        next: Sequence {
            number: high + 1,
            previous,
        },
        seen: Seen {
            high,
            backups: remembered,
        },
    }
}

/// Whether the policy would still keep the backup with this id, judged over the good backups
/// present and the missing ones whose time is known. Without a policy nothing is ever pruned,
/// so everything is kept; a backup a present one builds on is kept as prune keeps it.
fn kept_by_policy<'a>(
    present: &BTreeMap<u64, &Backup>,
    runs: &[(Vec<u64>, u64)],
    known: &'a BTreeMap<u64, String>,
    times: &HashMap<String, SystemTime>,
    policy: &Policy,
    now: SystemTime,
) -> impl Fn(&str) -> bool + 'a {
    let needed: HashSet<String> = present
        .values()
        .flat_map(|b| {
            let m = &b.sidecar.manifest;
            m.parent.iter().chain(m.full.iter()).cloned()
        })
        .collect();
    let mut items: Vec<Past> = present
        .values()
        .filter(|b| b.standing.is_good())
        .map(|b| Past {
            id: b.id.clone(),
            created: b.created,
        })
        .collect();
    for n in runs.iter().flat_map(|(run, _)| run) {
        if let Some(id) = known.get(n) {
            if let Some(created) = times.get(id).copied().or_else(|| id_time(id)) {
                items.push(Past {
                    id: id.clone(),
                    created,
                });
            }
        }
    }
    // No policy, or one that refuses to decide (a clock): nothing could have been pruned.
    let kept: Option<HashSet<String>> = retention::decide(&items, policy, now)
        .ok()
        .map(|d| d.into_iter().filter(|d| d.keep).map(|d| d.id).collect());
    move |id: &str| needed.contains(id) || kept.as_ref().is_none_or(|k| k.contains(id))
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default()
}

/// `state_dir/sequences.json`: each destination's [`Seen`], by destination name and host.
pub struct Memory<'s> {
    state: &'s StateDir,
}

const FILE: &str = "sequences.json";

impl<'s> Memory<'s> {
    pub fn new(state: &'s StateDir) -> Memory<'s> {
        Memory { state }
    }

    fn key(destination: &str, namespace: Option<&str>) -> String {
        format!("{destination}/{}", namespace.unwrap_or(""))
    }

    fn read_all(&self) -> Result<BTreeMap<String, Seen>> {
        match self.state.read_file(FILE)? {
            None => Ok(BTreeMap::new()),
            Some(body) => serde_json::from_slice(&body).with_context(|| {
                format!(
                    "{} is not valid (it was damaged or edited); it is started again, and what it remembered is lost",
                    self.state.path.join(FILE).display()
                )
            }),
        }
    }

    /// What this host remembers of a destination; nothing for one it never listed.
    pub fn recall(&self, destination: &str, namespace: Option<&str>) -> Result<Seen> {
        Ok(self
            .read_all()?
            .remove(&Self::key(destination, namespace))
            .unwrap_or_default())
    }

    /// Remember `seen` for a destination. Read again just before: another run may have
    /// remembered another destination meanwhile.
    pub fn remember(&self, destination: &str, namespace: Option<&str>, seen: &Seen) -> Result<()> {
        let mut all = self.read_all().unwrap_or_default();
        let key = Self::key(destination, namespace);
        let mut seen = seen.clone();
        if let Some(other) = all.get(&key) {
            seen.high = seen.high.max(other.high);
        }
        all.insert(key, seen);
        let body = serde_json::to_vec_pretty(&all).expect("the memory always serialises");
        self.state.replace_file(FILE, &body)
    }
}
