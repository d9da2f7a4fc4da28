//! `verify --sample`: a rotating share of each destination's backups per run, chosen from the
//! verification record (`crate::verified`): never verified (or last found damaged) first, then
//! those verified longest ago, so successive runs cover everything.
//!
//! In depth, an incremental is proven by rebuilding its chain, which vouches for each link on
//! the way; the bytes read count every link read. A host without the identity checks what it
//! can: each chosen archive's stored size and BLAKE3 against its signed sidecar, and says that
//! the content was not decrypted.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use anyhow::Result;
use serde::Serialize;

use super::{BackupResult, Options, Report};
use crate::catalog::{self, Backup, Standing};
use crate::cli::Sample;
use crate::config::Settings;
use crate::exit::Exit;
use crate::progress::Progress;
use crate::state::StateDir;
use crate::storage::Destination;
use crate::ui::{self, plural, Escaped};
use crate::verified::{self, Depth, Record, Stored};

/// What one destination's sample read, and where its coverage stands after it.
#[derive(Debug, Serialize)]
pub struct Sampled {
    pub destination: String,
    /// `content` (decrypted and checked), or `stored` (the stored bytes only: no identity).
    pub depth: &'static str,
    pub backups: usize,
    pub stored_bytes: u64,
    pub budget_bytes: u64,
    /// The stored bytes this run read on this destination: every archive read, each time (a
    /// rebuild that fails may stop before its end, and is counted whole).
    pub read_bytes: u64,
    /// The backups this run verified (chosen, and the links their rebuilds went through).
    pub verified: Vec<String>,
    /// The share of the stored bytes whose latest verification passed, after this run.
    pub verified_fraction: f64,
    /// Stored backups not verified yet (or last found damaged), after this run.
    pub unverified: usize,
    pub oldest_unverified_seconds: u64,
}

impl Sampled {
    /// The summary in words.
    pub fn line(&self) -> String {
        format!(
            "sampled {}: {} of {} read ({} of {} stored; budget {}), {}; {:.1}% of the stored bytes verified, {}",
            Escaped(&self.destination),
            plural(self.verified.len(), "backup"),
            self.backups,
            ui::bytes(self.read_bytes),
            ui::bytes(self.stored_bytes),
            ui::bytes(self.budget_bytes),
            if self.depth == Depth::Stored.as_str() {
                "stored bytes only"
            } else {
                "decrypted and checked"
            },
            self.verified_fraction * 100.0,
            if self.unverified == 0 {
                "none unverified".to_string()
            } else {
                format!(
                    "{} unverified, the oldest made {} ago",
                    self.unverified,
                    ui::duration(std::time::Duration::from_secs(self.oldest_unverified_seconds))
                )
            }
        )
    }

    /// Its entry in the run's record, which `history` shows.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({"name": self.destination, "sample": self})
    }
}

/// Whether this host can decrypt: without an identity or a passphrase it cannot, and a sample
/// checks the stored bytes of encrypted backups only.
fn keyless(settings: &Settings) -> bool {
    settings
        .encryption
        .as_ref()
        .is_none_or(|e| e.identity_file.is_none() && e.passphrase_file.is_none())
}

pub(super) fn run(
    settings: &Settings,
    state: &StateDir,
    dests: &[Destination],
    args: &Options,
    progress: &dyn Progress,
) -> Result<Report> {
    let sample = args.sample.expect("only called with --sample");
    let record = Record::open(state)?;
    let holder = state.lock_holder_since();
    let keyless = keyless(settings);
    let mut results = Vec::new();
    let mut notes = Vec::new();
    let mut samples = Vec::new();
    let mut restored = 0;
    for dest in dests {
        let now = SystemTime::now();
        let (targets, findings, more) = super::survey(settings, dest, holder, now)?;
        results.extend(findings);
        notes.extend(more);
        let stored_only = |b: &Backup| keyless && b.sidecar.archive.encryption != "none";
        let stored: Vec<Stored> = targets
            .iter()
            .map(|(_, b)| Stored::of(b, !stored_only(b)))
            .collect();
        let total: u64 = stored.iter().map(|s| s.bytes).sum();
        let budget = match sample {
            Sample::Percent(p) => (total as f64 * p / 100.0).round() as u64,
            Sample::Bytes(n) => n,
        };
        let by_id: HashMap<&str, &Backup> =
            targets.iter().map(|(_, b)| (b.id.as_str(), b)).collect();
        let mut noted: Vec<(String, Depth, bool)> = Vec::new();
        let mut read = 0;
        for pick in verified::choose(&stored, &record.seen(&dest.name)?, budget) {
            crate::interrupt::check()?;
            let target = by_id[pick.target.as_str()];
            let mut out = Vec::new();
            if stored_only(target) {
                let (r, n) = check_stored(dest, target)?;
                read += n;
                out.push(r);
            } else if pick.links.len() == 1 {
                read += target.bytes();
                let (r, n) = super::verify_one(settings, state, dest, target, false, progress)?;
                restored += n;
                out.push(r);
            } else {
                let mut covered = HashMap::new();
                read += pick.bytes;
                super::verify_chain(settings, state, dest, target, progress, &mut covered)?;
                let failure = match covered.get(&(dest.name.clone(), target.id.clone())) {
                    Some(_) => {
                        restored += target.sidecar.manifest.restored_size();
                        None
                    }
                    // Again link by link, which names the damaged one exactly.
                    None => {
                        read += pick.bytes;
                        Some(super::verify_one(settings, state, dest, target, false, progress)?.0)
                    }
                };
                for id in &pick.links {
                    out.push(match covered.remove(&(dest.name.clone(), id.clone())) {
                        Some(done) => done,
                        None => {
                            let f = failure.as_ref().expect("a link not covered: a failure");
                            BackupResult {
                                cannot_open: f.cannot_open,
                                ..BackupResult::failed(
                                    id,
                                    dest,
                                    f.exit,
                                    f.error.clone().unwrap_or_default(),
                                )
                            }
                        }
                    });
                }
            }
            for r in out {
                let depth = if r.stored_only {
                    Depth::Stored
                } else {
                    Depth::Content
                };
                noted.push((r.id.clone(), depth, r.ok));
                results.push(r);
            }
        }
        let ids: HashSet<&str> = stored.iter().map(|s| s.id.as_str()).collect();
        record.note(&dest.name, &noted, &ids, now)?;
        let coverage = verified::coverage(&stored, &record.seen(&dest.name)?, now);
        samples.push(Sampled {
            destination: dest.name.clone(),
            depth: if noted.iter().any(|(_, d, _)| *d == Depth::Stored) {
                Depth::Stored.as_str()
            } else {
                Depth::Content.as_str()
            },
            backups: stored.len(),
            stored_bytes: total,
            budget_bytes: budget,
            read_bytes: read,
            verified: noted.into_iter().map(|(id, _, _)| id).collect(),
            verified_fraction: coverage.fraction,
            unverified: coverage.unverified,
            oldest_unverified_seconds: coverage.oldest_unverified.as_secs(),
        });
    }
    Ok(Report {
        results,
        notes,
        bytes: restored,
        samples,
        // Filled in by the runner, as for every recorded run.
        requests: Default::default(),
    })
}

/// The stored bytes of `backup` against its signed sidecar: all a host without the identity
/// can prove. A backup the listing already judged damaged, or whose chain is broken, is not
/// restorable whatever its bytes are, so it fails without a read. With the bytes read.
fn check_stored(dest: &Destination, backup: &Backup) -> Result<(BackupResult, u64)> {
    let failed = |exit, error| BackupResult {
        stored_only: true,
        ..BackupResult::failed(&backup.id, dest, exit, error)
    };
    if let s @ (Standing::Damaged(_) | Standing::BrokenChain(_)) = &backup.standing {
        return Ok((
            failed(
                s.exit(),
                format!("backup {} on {}: {s}", backup.id, dest.name),
            ),
            0,
        ));
    }
    let a = &backup.sidecar.archive;
    Ok((
        match catalog::check_stored(dest, &a.object, a.bytes, &a.blake3) {
            Ok(()) => BackupResult {
                ok: true,
                error: None,
                exit: Exit::Success,
                ..failed(Exit::Success, String::new())
            },
            Err(e) if crate::exit::classify(&e) == Exit::Interrupted => return Err(e),
            Err(e) => failed(crate::exit::classify(&e), crate::exit::describe(&e)),
        },
        a.bytes,
    ))
}
