//! `litevault prune`: apply the retention policy on each destination.

use std::time::SystemTime;

use anyhow::Result;
use serde::Serialize;

use crate::catalog;
use crate::cli::PruneArgs;
use crate::config::Settings;
use crate::exit::{Exit, Fault};
use crate::retention::{self, Item};
use crate::state::StateDir;
use crate::storage::Destination;

#[derive(Debug, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub destinations: Vec<DestinationPrune>,
    /// Damaged metadata found on the way: never deleted silently, never counted as a backup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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

    pub fn exit(&self) -> Exit {
        if self.destinations.iter().any(|d| !d.failed.is_empty()) {
            Exit::Partial
        } else {
            Exit::Success
        }
    }
}

pub fn run(settings: &Settings, args: &PruneArgs) -> Result<Report> {
    let state = StateDir::open(&settings.state_dir)?;
    let _lock = state.lock(args.wait)?;
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let dests = super::open_destinations(settings, &names)?;
    apply(settings, &dests, args.dry_run)
}

/// Decide on every destination first, then delete: a policy problem anywhere (no policy, a
/// backup from the future) stops the run before anything is deleted.
pub fn apply(settings: &Settings, dests: &[Destination], dry_run: bool) -> Result<Report> {
    let now = SystemTime::now();
    let mut plans = Vec::new();
    let mut warnings = Vec::new();
    for dest in dests {
        let listing = catalog::list(dest)?;
        warnings.extend(listing.problems.iter().map(|p| {
            format!("{p}; left in place, and not counted as a backup (delete it by hand once you have looked at it)")
        }));
        warnings.extend(listing.orphans.iter().map(|o| o.to_string()));
        warnings.extend(catalog::mixed_identities(&listing.backups));
        // Only good backups take part: an untrusted one must not count as the newest (and so
        // make a genuine one deletable), and is left in place for a person to look at.
        for b in listing.backups.iter().filter(|b| !b.trust.is_good()) {
            warnings.push(format!(
                "backup {} on {} is not trusted ({}); not counted and not deleted",
                b.id, dest.name, b.trust
            ));
        }
        // An incremental whose chain is broken cannot be restored, but it is not prune's to
        // delete quietly: a person should see why the link under it is gone.
        let broken: Vec<&catalog::Backup> =
            listing.backups.iter().filter(|b| b.broken_chain).collect();
        for b in &broken {
            warnings.push(format!(
                "backup {} on {} cannot be restored: {}; left in place (delete it by hand once you have looked at it)",
                b.id,
                dest.name,
                b.damage.as_deref().unwrap_or_default()
            ));
        }
        let items: Vec<Item> = listing
            .backups
            .iter()
            .filter(|b| b.trust.is_good() && !broken.iter().any(|x| x.id == b.id))
            .map(|b| Item {
                id: b.id.clone(),
                created: b.created,
            })
            .collect();
        let policy = settings.policy_for(
            settings
                .destinations
                .iter()
                .find(|d| d.name == dest.name)
                .expect("opened from the config"),
        );
        let decisions = retention::decide(&items, &policy, now).map_err(|refusal| {
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
        let mut decisions = decisions;
        retention::keep_chains(&mut decisions, &crate::chain::parents(&listing.backups));
        plans.push((dest, listing, decisions));
    }

    let mut report = Report {
        dry_run,
        destinations: Vec::new(),
        warnings,
    };
    for (dest, listing, decisions) in plans {
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        // Newest first, so a run cut short never leaves an incremental without its parent.
        for decision in decisions.iter().filter(|d| !d.keep) {
            if dry_run {
                deleted.push(decision.id.clone());
                continue;
            }
            let backup = listing
                .backups
                .iter()
                .find(|b| b.id == decision.id)
                .expect("decided from this listing");
            match catalog::delete(dest, backup) {
                Ok(()) => deleted.push(decision.id.clone()),
                Err(e) => failed.push(format!("{}: {e:#}", decision.id)),
            }
        }
        let leftovers_removed = if dry_run {
            Vec::new()
        } else {
            match catalog::clean_leftovers(dest) {
                Ok(cleanup) => {
                    // Prune is the maintenance role's: a leftover it cannot delete is a failure.
                    failed.extend(cleanup.left.iter().map(|l| format!("leftover {l}")));
                    cleanup.removed
                }
                Err(e) => {
                    failed.push(format!("cleaning leftovers: {e:#}"));
                    Vec::new()
                }
            }
        };
        report.destinations.push(DestinationPrune {
            name: dest.name.clone(),
            decisions,
            deleted,
            failed,
            leftovers_removed,
        });
    }
    Ok(report)
}
