//! `litevault prune`: apply the retention policy on each destination.

mod versions;

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::catalog;
use crate::catalog::{Good, Standing};
use crate::cli::PruneArgs;
use crate::commands::report::{self, CommandReport};
use crate::config::Settings;
use crate::exit::{Exit, Fault};
use crate::journal::Outcome;
use crate::retention;
use crate::state::StateDir;
use crate::storage::requests::Requests;
use crate::storage::Destination;
use crate::ui::{Escaped, Ui};

#[derive(Debug, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub destinations: Vec<DestinationPrune>,
    /// Damaged metadata found on the way: never deleted silently, never counted as a backup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What the backups that were left in place call for: 4 for damage or distrust, 1 for a
    /// clock; 0 when every backup was good.
    #[serde(skip)]
    pub findings: Exit,
    /// The requests this run made, by destination (S3 only: see `storage::requests`); the
    /// runner fills them in.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Requests>,
}

#[derive(Debug, Serialize)]
pub struct DestinationPrune {
    pub name: String,
    pub decisions: Vec<retention::Decision>,
    /// Ids deleted (or, in a dry run, that would be).
    pub deleted: Vec<String>,
    pub failed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leftovers_removed: Vec<String>,
    /// On a bucket that keeps versions: what stays of the deleted backups, and how long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_versions: Option<versions::KeptVersions>,
    /// Backups an object lock retention keeps against the delete: not failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<versions::Locked>,
}

impl Report {
    /// What to do when deletions were refused: pruning needs a credential with delete rights.
    pub fn hint(&self) -> Option<String> {
        let denied = self
            .destinations
            .iter()
            .flat_map(|d| &d.failed)
            .any(|f| crate::storage::link::denied(f));
        denied.then(|| {
            "this host's credential may not delete (the backup role, by design): pruning belongs to the maintenance role, a trusted host whose credential can delete (see Roles in the README)".to_string()
        })
    }

    /// The decisions and deletions in words; `said`: warnings already printed in this run
    /// (by the backup this prune follows), not repeated.
    pub fn say(&self, ui: &Ui, said: &[String]) -> Result<()> {
        let r = self;
        for w in r.warnings.iter().filter(|w| !said.contains(w)) {
            ui.warn(w);
        }
        let mut lines = Vec::new();
        for d in &r.destinations {
            for dec in &d.decisions {
                if dec.keep {
                    lines.push(format!(
                        "keep   {} on {} ({})",
                        Escaped(&dec.id),
                        d.name,
                        Escaped(&dec.reasons.join(", "))
                    ));
                } else {
                    let verb = if r.dry_run { "would delete" } else { "delete" };
                    lines.push(format!(
                        "{verb} {} on {} (no rule keeps it)",
                        Escaped(&dec.id),
                        d.name
                    ));
                }
            }
            for f in &d.failed {
                ui.error(&format!(
                    "destination {}: could not delete {}",
                    d.name,
                    Escaped(f)
                ));
            }
            if let (Some(hint), false) = (r.hint(), d.failed.is_empty()) {
                ui.hint(&hint);
            }
            for l in &d.locked {
                lines.push(format!(
                    "locked {} on {}: locked until {} by the bucket's object lock; it goes once that date has passed{}",
                    Escaped(&l.id),
                    d.name,
                    l.until.as_deref().unwrap_or("a date the bucket did not say"),
                    if l.tried { "" } else { " (not tried: the bucket refuses deletes its retention holds)" }
                ));
            }
            lines.push(format!(
                "{}: {} kept, {} {}",
                d.name,
                d.decisions.iter().filter(|x| x.keep).count(),
                d.deleted.len(),
                if r.dry_run {
                    "would be deleted (dry run)"
                } else {
                    "deleted"
                }
            ));
            if let Some(k) = &d.kept_versions {
                lines.push(format!(
                    "{}: the bucket keeps versions, so the {} deleted backup(s) {} as noncurrent versions, still stored and billed until a lifecycle rule expires them ({}){}",
                    d.name,
                    d.deleted.len(),
                    if r.dry_run { "would stay" } else { "stay" },
                    versions::LIFECYCLE,
                    match &k.locked_until {
                        Some(date) if k.estimated => format!("; locked until about {date} by its object lock (the backup's time plus the default retention)"),
                        Some(date) => format!("; locked until {date} by its object lock"),
                        None => String::new(),
                    }
                ));
            }
        }
        ui.say_all(&lines)?;
        Ok(())
    }
}

impl CommandReport for Report {
    fn set_requests(&mut self, requests: BTreeMap<String, Requests>) {
        self.requests = requests;
    }

    fn exit(&self) -> Exit {
        let failed = self
            .destinations
            .iter()
            .filter(|d| !d.failed.is_empty())
            .map(|_| Exit::Partial);
        Exit::worst(failed.chain([self.findings]))
    }

    fn outcome(&self) -> Outcome {
        let failed = self
            .destinations
            .iter()
            .flat_map(|d| d.failed.clone())
            .collect();
        // A dry run deletes nothing: what it would delete is not `deleted`.
        let key = if self.dry_run {
            "would_delete"
        } else {
            "deleted"
        };
        Outcome {
            destinations: Some(json!(self
                .destinations
                .iter()
                .map(|d| json!({"name": d.name, "ok": d.failed.is_empty(), key: d.deleted}))
                .collect::<Vec<_>>())),
            error: report::errors(failed),
            dry_run: self.dry_run,
            ..report::outcome(self.exit())
        }
    }

    /// The text first, then (with --json) the document.
    fn render(&self, ui: &Ui) -> Result<()> {
        self.say(ui, &[])?;
        ui.json(self)?;
        Ok(())
    }
}

/// What `prune` prunes, from its flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this destination [all].
    pub dest: Option<String>,
    /// Decide and say, delete nothing.
    pub dry_run: bool,
    /// Wait this long for another run's lock.
    pub wait: Option<std::time::Duration>,
}

impl From<&PruneArgs> for Options {
    fn from(args: &PruneArgs) -> Self {
        Options {
            dest: args.dest.clone(),
            dry_run: args.dry_run,
            wait: args.wait,
        }
    }
}

pub fn run(settings: &Settings, args: &Options) -> Result<Report> {
    let state = StateDir::open(&settings.state_dir)?;
    let _lock = state.lock(args.wait)?;
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let dests = super::open_destinations(settings, &names)?;
    apply(settings, &dests, args.dry_run)
}

/// Decide on every destination first, then delete: a policy problem anywhere (no policy, a
/// clock that is off) stops the run before anything is deleted.
///
/// The rules are computed over good backups only. Anything else (damaged, untrusted, foreign,
/// future-dated, a broken chain, an unreadable sidecar, an archive without one) neither counts
/// toward a rule nor is deleted by one: it is kept, with what it builds on, and reported, and
/// the run exits non-zero so a person looks at it.
pub fn apply(settings: &Settings, dests: &[Destination], dry_run: bool) -> Result<Report> {
    let now = SystemTime::now();
    let mut plans = Vec::new();
    let mut warnings = Vec::new();
    let mut findings = Exit::Success;
    let mut worst = |exit: Exit| findings = Exit::worst([findings, exit]);
    for dest in dests {
        let mut listing = catalog::list_at(dest, now)?;
        for p in &listing.problems {
            warnings.push(format!(
                "{p}; left in place, and not counted as a backup (delete it by hand once you have looked at it)"
            ));
            worst(p.exit);
        }
        for o in &listing.orphans {
            warnings.push(o.to_string());
            worst(Exit::Integrity);
        }
        warnings.extend(catalog::mixed_identities(&listing.backups));
        let policy = settings.policy_for(
            settings
                .destinations
                .iter()
                .find(|d| d.name == dest.name)
                .expect("opened from the config"),
        );
        // Deletions lean on the newest good backup: it is read first, and when it is not what
        // its sidecar says, it is damaged and the rules are computed again without it.
        let decisions = loop {
            let decisions = decide(dest, &listing, &policy, now)?;
            let Some(newest) = listing.good().next().map(|g| g.id.clone()) else {
                break decisions;
            };
            if decisions.iter().all(|d| d.keep) {
                break decisions;
            }
            match read_back(dest, &listing, &newest).with_context(|| {
                format!(
                    "destination {}: reading the newest backup {newest} before deleting anything",
                    dest.name
                )
            })? {
                None => break decisions,
                Some((bad, why)) => damage(&mut listing, &bad, why),
            }
        };
        for b in listing.backups.iter().filter(|b| !b.standing.is_good()) {
            warnings.push(format!(
                "backup {} on {} is not counted and not deleted: {}; left in place for a person to look at",
                b.id, dest.name, b.standing
            ));
            worst(b.standing.exit());
        }
        if listing.good().next().is_none()
            && !(listing.backups.is_empty() && listing.problems.is_empty())
        {
            warnings.push(format!(
                "destination {}: no good backup, so nothing is deleted there",
                dest.name
            ));
            worst(Exit::Integrity);
        }
        plans.push((dest, listing, decisions));
    }

    let mut report = Report {
        requests: BTreeMap::new(),
        dry_run,
        destinations: Vec::new(),
        warnings,
        findings,
    };
    for (dest, listing, decisions) in plans {
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        let mut locked = Vec::new();
        let mut watch = decisions
            .iter()
            .any(|d| !d.keep)
            .then(|| versions::Watch::new(dest))
            .flatten();
        // Newest first, so a run cut short never leaves an incremental without its parent.
        for decision in decisions.iter().filter(|d| !d.keep) {
            let backup = listing
                .backups
                .iter()
                .find(|b| b.id == decision.id)
                .expect("decided from this listing");
            // Positive evidence, once more at the point of no return: only a good backup is
            // ever deleted by a rule.
            let Some(good) = backup.good() else {
                continue;
            };
            if dry_run {
                deleted.push(decision.id.clone());
                continue;
            }
            let until = match watch.as_mut().map(|w| w.before(&good)) {
                Some(versions::Step::Skip(held)) => {
                    locked.push(held);
                    continue;
                }
                Some(versions::Step::Delete { until }) => until,
                None => None,
            };
            match catalog::delete(dest, good) {
                Ok(()) => {
                    deleted.push(decision.id.clone());
                    if let Some(w) = watch.as_mut() {
                        w.deleted(until);
                    }
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    match watch.as_mut().and_then(|w| w.refused(&good, until, &error)) {
                        Some(held) => locked.push(held),
                        None => failed.push(format!("{}: {error}", decision.id)),
                    }
                }
            }
        }
        let mut leftovers_removed = Vec::new();
        if !dry_run {
            match catalog::clean_leftovers(dest) {
                Ok(cleanup) => {
                    // Prune is the maintenance role's: a leftover it cannot delete is a failure.
                    failed.extend(cleanup.left.iter().map(|l| format!("leftover {l}")));
                    report.warnings.extend(cleanup.untouched_warnings(dest));
                    leftovers_removed = cleanup.removed;
                }
                Err(e) => failed.push(format!("cleaning leftovers: {e:#}")),
            }
        }
        let deleted_count = deleted.len();
        report.destinations.push(DestinationPrune {
            name: dest.name.clone(),
            decisions,
            deleted,
            failed,
            leftovers_removed,
            kept_versions: watch.and_then(|w| w.kept(deleted_count)),
            locked,
        });
    }
    Ok(report)
}

/// The policy over the good backups of `listing`, then [`whole_plan`].
fn decide(
    dest: &Destination,
    listing: &catalog::Listing,
    policy: &retention::Policy,
    now: SystemTime,
) -> Result<Vec<retention::Decision>> {
    let good: Vec<Good<'_>> = listing.good().collect();
    let decided = retention::decide(&good, policy, now).map_err(|refusal| {
        let hint = match refusal {
            retention::Refusal::NoPolicy => {
                "set keep_last, keep_within, keep_daily, ... under [retention] in the config"
            }
            retention::Refusal::FromTheFuture { .. } => {
                "fix the clock (check NTP), then run prune again; nothing was deleted"
            }
        };
        let exit = match refusal {
            retention::Refusal::NoPolicy => Exit::Usage,
            retention::Refusal::FromTheFuture { .. } => Exit::Failure,
        };
        anyhow::Error::new(
            Fault::new(exit, format!("destination {}: {refusal}", dest.name)).hint(hint),
        )
    })?;
    Ok(whole_plan(listing, decided))
}

/// Read backup `id`'s stored archive, and every link under it, whole: each must be the size
/// and BLAKE3 its sidecar says. The positive evidence that what prune keeps can be restored;
/// `Some((link, why))` names the first that is not.
fn read_back(
    dest: &Destination,
    listing: &catalog::Listing,
    id: &str,
) -> Result<Option<(String, String)>> {
    let mut next = Some(id.to_string());
    let mut links = 0;
    while let Some(id) = next.take() {
        let b = listing
            .backups
            .iter()
            .find(|b| b.id == id)
            .expect("a good backup's chain is in its listing");
        let a = &b.sidecar.archive;
        if let Err(e) = catalog::check_stored(dest, &a.object, a.bytes, &a.blake3) {
            if crate::exit::classify(&e) != Exit::Integrity {
                return Err(e);
            }
            return Ok(Some((b.id.clone(), format!("{e:#}"))));
        }
        links += 1;
        if b.sidecar.manifest.is_incremental() && links <= crate::vocabulary::MAX_CHAIN {
            next = b.sidecar.manifest.parent.clone();
        }
    }
    Ok(None)
}

/// Mark what reading found: the link whose archive is not what its sidecar says is damaged, and
/// everything built on it a broken chain.
fn damage(listing: &mut catalog::Listing, bad: &str, why: String) {
    let bad = listing
        .backups
        .iter()
        .position(|b| b.id == bad)
        .expect("read from this listing");
    listing.backups[bad].standing = Standing::Damaged(why);
    let orphaned: std::collections::HashSet<&str> =
        listing.orphans.iter().map(|o| o.id.as_str()).collect();
    crate::catalog::chains::mark_broken(&mut listing.backups, &orphaned);
}

/// Every backup of the listing, newest first, with what happens to it: a good one as the
/// policy decided, anything else kept ("left in place"), and whatever a kept backup builds on
/// kept too.
fn whole_plan(
    listing: &catalog::Listing,
    decided: Vec<retention::Decision>,
) -> Vec<retention::Decision> {
    let mut decided: std::collections::HashMap<String, retention::Decision> =
        decided.into_iter().map(|d| (d.id.clone(), d)).collect();
    let mut decisions: Vec<retention::Decision> = listing
        .backups
        .iter()
        .map(|b| {
            decided
                .remove(&b.id)
                .unwrap_or_else(|| retention::Decision {
                    id: b.id.clone(),
                    keep: true,
                    reasons: vec![format!("left in place: {}", b.standing.label())],
                })
        })
        .collect();
    retention::keep_chains(
        &mut decisions,
        &crate::catalog::chains::needs(&listing.backups),
    );
    // A sidecar that cannot be read may belong to an incremental built on any older backup:
    // nothing says which, so nothing older is deleted until a person has looked at it.
    if let Some(unreadable) = listing
        .problems
        .iter()
        .filter_map(|p| catalog::id_time(&p.id).map(|t| (t, &p.id)))
        .max()
    {
        for (d, b) in decisions.iter_mut().zip(&listing.backups) {
            // Ids carry their time to the second: anything made within that second may be older.
            if !d.keep && b.created < unreadable.0 + std::time::Duration::from_secs(1) {
                d.keep = true;
                d.reasons.push(format!(
                    "the sidecar of {} cannot be read, and it may build on this",
                    unreadable.1
                ));
            }
        }
    }
    decisions
}
