//! `litevault backup`: snapshot every source, build the archive once, store it on each
//! destination, and only then make it visible with its sidecar.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use crate::archive::manifest::{archive_extension, compression_name, Sequence};
use crate::catalog;
use crate::cli::BackupArgs;
use crate::commands::report::Attempts;
use crate::config::Settings;
use crate::crypto::Sealer;
use crate::incremental::pageindex::PageIndex;
use crate::incremental::plan::Plan;
use crate::progress::Progress;
use crate::source::discover::Inventory;
use crate::state::StateDir;
use crate::storage::fanout::{Completion, FanOut};
use crate::storage::Destination;
use crate::trust::Signer;

mod build;
mod found;
mod report;
use build::{build, estimate, Meta};
pub use report::{DestinationResult, Report};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Store only on these destinations [all when empty].
    pub dest: Vec<String>,
    /// Wait this long for another run's lock.
    pub wait: Option<Duration>,
    /// Do nothing when every selected destination has a backup younger than this.
    pub if_older_than: Option<Duration>,
    /// Full even when `[incremental]` would allow an incremental backup.
    pub full: bool,
}

/// A backup run with `--retries`: each next attempt goes only to the destinations that failed,
/// and the run's report holds what every attempt stored.
pub struct Retrying {
    options: Options,
    retries: u32,
    delay: Duration,
    /// Destinations that earlier attempts stored the backup on.
    stored: Vec<DestinationResult>,
    /// The last failed attempt's report, for a run whose last attempt fails as a whole.
    earlier: Option<Report>,
}

impl From<&BackupArgs> for Retrying {
    fn from(args: &BackupArgs) -> Self {
        Retrying {
            options: Options {
                dest: args.dest.clone(),
                wait: args.wait,
                if_older_than: args.if_older_than,
                full: args.full,
            },
            retries: args.retries,
            delay: args.retry_delay,
            stored: Vec::new(),
            earlier: None,
        }
    }
}

impl Attempts for Retrying {
    type Report = Report;

    fn attempt(
        &mut self,
        settings: &Settings,
        progress: &dyn Progress,
        env: &[(String, String)],
    ) -> Result<Report> {
        run(settings, &self.options, progress, env)
    }

    fn retries(&self) -> (u32, Duration) {
        (self.retries, self.delay)
    }

    fn again(&mut self, failed: Report) -> String {
        let (ok, not): (Vec<_>, Vec<_>) = failed.destinations.iter().partition(|d| d.ok);
        let why = format!("{} destination(s) failed", not.len());
        // Keep what is stored; the next attempt goes only where it failed.
        self.stored.extend(ok.into_iter().cloned());
        self.options.dest = not.iter().map(|d| d.name.clone()).collect();
        self.earlier = Some(failed);
        why
    }

    /// Earlier attempts' successes belong to the run's report, even when the last attempt
    /// failed as a whole.
    fn last(self, last: Result<Report>) -> Result<Report> {
        match (last, self.earlier) {
            (Ok(mut report), _) => {
                let mut all = self.stored;
                all.extend(report.destinations);
                report.destinations = all;
                Ok(report)
            }
            (Err(e), Some(mut report)) if !self.stored.is_empty() => {
                let failed = self
                    .options
                    .dest
                    .iter()
                    .map(|name| DestinationResult::failed(name, &e));
                report.destinations = self.stored.into_iter().chain(failed).collect();
                Ok(report)
            }
            (Err(e), _) => Err(e),
        }
    }
}

/// Take one backup: lock, open and preflight the destinations, skip if recent enough, run the
/// `before_backup` hook, store, run `after_backup`, prune if configured.
pub fn run(
    settings: &Settings,
    args: &Options,
    progress: &dyn Progress,
    hook_env: &[(String, String)],
) -> Result<Report> {
    let state = StateDir::open(&settings.state_dir)?;
    let _lock = state.lock(args.wait)?;
    run_locked(settings, &state, args, progress, Some(hook_env), &[])
}

/// A backup by a run that already holds the lock (an in-place restore's safety backup): the
/// backup hooks run only with `hook_env`; `tags` mark the manifest.
pub fn run_locked(
    settings: &Settings,
    state: &StateDir,
    args: &Options,
    progress: &dyn Progress,
    hook_env: Option<&[(String, String)]>,
    tags: &[String],
) -> Result<Report> {
    let started = Instant::now();
    state.clean_scratch();

    // A destination that cannot be opened or listed (no such bucket, no permission, server
    // down) is a failed destination, found now, before the sources are read.
    let mut dests = Vec::new();
    let mut failed = Vec::new();
    let mut first_error = None;
    let mut cleanup_warnings = Vec::new();
    for cfg in settings.select_destinations(&args.dest)? {
        let opened = super::open_destination(settings, cfg).and_then(|d| {
            let cleanup = catalog::clean_leftovers(&d)?;
            cleanup_warnings.extend(cleanup.warnings(&d));
            Ok(d)
        });
        match opened {
            Ok(d) => dests.push(d),
            Err(e) => {
                failed.push(DestinationResult::failed(&cfg.name, &e));
                first_error.get_or_insert(name_destination(e, &cfg.name));
            }
        }
    }
    if let (true, Some(e)) = (dests.is_empty(), first_error) {
        // Nothing to store on: the (first) reason is the run's error, with its exit code.
        return Err(e);
    }

    let mut warnings = cleanup_warnings;
    if let Some(max_age) = args.if_older_than {
        if failed.is_empty() {
            if let Some(reason) = recent_everywhere(&dests, max_age, &mut warnings)? {
                return Ok(Report {
                    skipped_run: Some(reason),
                    seconds: started.elapsed().as_secs_f64(),
                    warnings,
                    ..Report::default()
                });
            }
        }
    }

    let sealer = settings.encryption.as_ref().map(Sealer::load).transpose()?;
    let signer = settings
        .signing
        .as_ref()
        .map(|s| Signer::load(&s.key_file))
        .transpose()?;
    if let (Some(hook), Some(hook_env)) = (&settings.hooks.before_backup, hook_env) {
        crate::hooks::run("before_backup", hook, hook_env, settings.hooks.timeout)
            .context("the before_backup hook failed, so nothing was backed up")?;
    }
    // Telling neighbours apart must not cost a backup: without an identity (a full state
    // folder) the backup is taken unmarked, and said to be.
    let state_id = match state.identity() {
        Ok(id) => Some(id),
        Err(e) => {
            warnings.push(format!(
                "this backup is not marked with the state folder's identity: {e:#}"
            ));
            None
        }
    };
    let keys = Keys {
        sealer: sealer.as_ref(),
        signer: signer.as_ref(),
    };
    let lines = watch_lines(settings, &dests, &mut warnings);
    let sequences: Vec<Option<Sequence>> = lines
        .iter()
        .map(|l| l.as_ref().map(|l| l.next.clone()))
        .collect();
    // What the sources hold is found after before_backup (which may prepare them), and a
    // source that cannot be read is this run's failure, which after_backup is told of.
    let mut found = None;
    let stored = crate::source::discover::take(settings).and_then(|mut inventory| {
        warnings.append(&mut inventory.warnings);
        let now_found = inventory.found();
        warnings.extend(found::gone(state, &now_found));
        found = Some(now_found);
        let plan = crate::incremental::plan::plan(
            settings,
            state,
            &dests,
            &inventory.databases,
            args.full,
            SystemTime::now(),
        );
        store(
            settings,
            state,
            &dests,
            keys,
            &plan,
            inventory,
            progress,
            tags,
            state_id.as_deref(),
            &sequences,
        )
    });
    if let (Some(hook), Some(hook_env)) = (&settings.hooks.after_backup, hook_env) {
        let mut env = hook_env.to_vec();
        env.push((
            "LITEVAULT_STATUS".into(),
            if stored.is_ok() { "stored" } else { "failure" }.into(),
        ));
        if let Err(e) = crate::hooks::run("after_backup", hook, &env, settings.hooks.timeout) {
            warnings.push(format!("{e:#}"));
        }
    }
    let mut report = stored?;
    if let Some(found) = &found {
        found::remember(state, found, &mut warnings);
    }
    remember_stored(state, &dests, lines, &report, &mut warnings);
    // After the pipeline, not before: reading sidecars leaves OpenDAL's read buffers allocated,
    // and the backup's peak memory should not carry them (+11 MiB measured).
    let now = SystemTime::now();
    for dest in &dests {
        warnings.extend(catalog::notices(dest, state_id.as_deref(), now));
    }
    warnings.append(&mut report.warnings);
    report.warnings = warnings;
    report.destinations.extend(failed);

    if !report.interrupted
        && settings.prune_after_backup
        && report.destinations.iter().any(|d| d.ok)
    {
        let ok: Vec<&str> = report
            .destinations
            .iter()
            .filter(|d| d.ok)
            .map(|d| d.name.as_str())
            .collect();
        let stored_on: Vec<Destination> = dests
            .into_iter()
            .filter(|d| ok.contains(&d.name.as_str()))
            .collect();
        report.prune = Some(
            super::prune::apply(settings, &stored_on, false).context("pruning after the backup")?,
        );
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Each destination's line of numbered backups before this one (see `catalog::sequence`): its
/// findings are warnings, and it numbers this backup there. A destination that cannot be
/// listed gets an unnumbered backup (its store will most likely fail anyway).
fn watch_lines(
    settings: &Settings,
    dests: &[Destination],
    warnings: &mut Vec<String>,
) -> Vec<Option<catalog::sequence::Watch>> {
    let now = SystemTime::now();
    dests
        .iter()
        .map(|dest| {
            let listing = match catalog::list_at(dest, now) {
                Ok(listing) => listing,
                Err(e) => {
                    warnings.push(format!(
                        "this backup is not numbered on destination {}: it cannot be listed: {e:#}",
                        dest.name
                    ));
                    return None;
                }
            };
            let (line, notes) = super::watch_line(settings, dest, &listing.backups, now);
            warnings.extend(notes);
            if let Some(line) = &line {
                warnings.extend(line.findings.iter().map(ToString::to_string));
            }
            line
        })
        .collect()
}

/// Remember the number this backup took on each destination that stored it, so the next run
/// (and a listing in between) knows the line went that far.
fn remember_stored(
    state: &StateDir,
    dests: &[Destination],
    lines: Vec<Option<catalog::sequence::Watch>>,
    report: &Report,
    warnings: &mut Vec<String>,
) {
    let memory = catalog::sequence::Memory::new(state);
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .ok()
        .map(|t| t.to_string());
    for (dest, line) in dests.iter().zip(lines) {
        let Some(mut line) = line else { continue };
        let stored = report
            .destinations
            .iter()
            .any(|d| d.ok && d.name == dest.name);
        if !stored {
            continue;
        }
        let number = line.next.number;
        line.seen.high = line.seen.high.max(number);
        line.seen.backups.insert(
            number,
            catalog::sequence::SeenBackup {
                id: report.id.clone(),
                created: Some(report.created.clone()),
                last_seen: now.clone(),
            },
        );
        if let Err(e) = memory.remember(&dest.name, dest.namespace.as_deref(), &line.seen) {
            warnings.push(format!(
                "backups seen on destination {} are not remembered: {e:#}",
                dest.name
            ));
        }
    }
}

/// An error that names its destination once: storage errors already do.
fn name_destination(err: anyhow::Error, name: &str) -> anyhow::Error {
    if format!("{err:#}").contains(&format!("destination {name}")) {
        err
    } else {
        err.context(format!("destination {name}"))
    }
}

/// `Some(why)` when every destination holds a backup younger than `max_age`.
fn recent_everywhere(
    dests: &[Destination],
    max_age: Duration,
    warnings: &mut Vec<String>,
) -> Result<Option<String>> {
    let mut oldest_newest = Duration::ZERO;
    for dest in dests {
        let summary = catalog::summary(dest)?;
        warnings.extend(summary.ignored);
        match summary.newest_age {
            Some(age) if age < max_age => oldest_newest = oldest_newest.max(age),
            _ => return Ok(None),
        }
    }
    let age = crate::ui::duration(oldest_newest);
    let every = if dests.len() == 1 {
        "the newest backup on the destination"
    } else {
        "the newest backup on every destination"
    };
    Ok(Some(format!(
        "{every} is at most {age} old (--if-older-than {})",
        crate::ui::duration(max_age)
    )))
}

/// The keys a backup is made with: whom it is encrypted to, and who signs it.
#[derive(Clone, Copy)]
struct Keys<'k> {
    sealer: Option<&'k Sealer>,
    signer: Option<&'k Signer>,
}

/// Build the archive once and store it on every destination; then move the page index forward
/// to it (never before it is stored).
#[allow(clippy::too_many_arguments)]
fn store(
    settings: &Settings,
    state: &StateDir,
    dests: &[Destination],
    keys: Keys<'_>,
    plan: &Plan,
    inventory: Inventory<'_>,
    progress: &dyn Progress,
    tags: &[String],
    state_id: Option<&str>,
    sequences: &[Option<Sequence>],
) -> Result<Report> {
    let created = SystemTime::now();
    let id = catalog::new_id(created);
    let compression = compression_name(settings.compression).to_string();
    let sealer = keys.sealer;
    let object = format!("{id}.{}", archive_extension(&compression, sealer.is_some()));
    let size = estimate(settings);
    progress.set_total(size);
    let (_spool_dir, spool, spool_warning) = crate::storage::spool::open(state, size);

    let mut signing_error = None;
    let (outcomes, built) = std::thread::scope(|scope| {
        let mut fan = FanOut::start(scope, dests, &object, spool);
        let built = build(
            settings,
            Meta {
                id: &id,
                created,
                object: &object,
                compression: &compression,
                tags,
                state_id,
            },
            sealer,
            plan,
            inventory,
            &mut fan,
            progress,
        );
        // Each destination's sidecar carries its own place in the line there; the signature
        // covers each one's exact bytes, and so (through the archive's size and BLAKE3 in it)
        // every stored byte.
        let commits = built.as_ref().map_err(|_| ()).and_then(|b| {
            sequences
                .iter()
                .map(|sequence| {
                    let mut sidecar = b.0.clone();
                    sidecar.sequence = sequence.clone();
                    let body =
                        serde_json::to_vec_pretty(&sidecar).expect("a sidecar always serialises");
                    let signature = keys
                        .signer
                        .map(|s| s.sign(&body).map(|sig| (catalog::signature_name(&id), sig)))
                        .transpose();
                    signature.map(|signature| Completion {
                        sidecar_name: catalog::sidecar_name(&id),
                        sidecar: body,
                        signature,
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map_err(|e| signing_error = Some(e))
        });
        let (uploaded, spilled) = fan.finish(commits.ok());
        (uploaded, (built, spilled))
    });
    let (built, spooled_bytes) = built;
    let built = match signing_error {
        Some(e) => Err(e),
        None => built,
    };
    let (sidecar, skipped, source_bytes, pages) = match built {
        Ok(b) => b,
        Err(e) => {
            crate::interrupt::check()?;
            if !crate::storage::fanout::every_lane_failed(&e) {
                // A source's own failure: the uploads were only aborted because of it.
                return Err(e);
            }
            // Every upload failed: their reasons are the story. The pipeline only noticed,
            // in whichever database it was reading, which did nothing wrong.
            let mut failures = dests
                .iter()
                .zip(outcomes)
                .filter_map(|(d, o)| o.err().map(|err| name_destination(err, &d.name)));
            let Some(first) = failures.next() else {
                return Err(e);
            };
            let others: Vec<String> = failures.map(|f| format!("{f:#}")).collect();
            return Err(if others.is_empty() {
                first.context("nothing was stored")
            } else {
                first.context(format!(
                    "nothing was stored; every destination failed (also: {})",
                    others.join("; ")
                ))
            });
        }
    };
    let destinations: Vec<DestinationResult> = dests
        .iter()
        .zip(outcomes)
        .map(|(dest, outcome)| match outcome {
            Ok(bytes) => DestinationResult {
                name: dest.name.clone(),
                ok: true,
                bytes: Some(bytes),
                error: None,
            },
            Err(e) => DestinationResult::failed(&dest.name, &e),
        })
        .collect();
    // An empty database is either new or was truncated by accident: either way, someone
    // should know before this backup is the one they restore.
    let mut warnings: Vec<String> = spool_warning
        .into_iter()
        .chain(sidecar
        .manifest
        .databases
        .iter()
        .filter(|d| d.page_count == 0)
        .map(|d| {
            format!(
                "database {} is empty (0 bytes): stored as it is; if the server should have data there, it is new or was truncated",
                d.path
            )
        }))
        .collect();
    if let (Some(pages), true) = (pages, destinations.iter().any(|d| d.ok)) {
        // Stored somewhere: the next backup builds on this one. A destination that missed it
        // makes the next run a full backup (the parent is not whole everywhere).
        let (full_id, full_created, depth) = match plan {
            Plan::Incremental { index } => {
                (index.full_id.clone(), index.full_created, index.depth + 1)
            }
            Plan::Full { .. } => (id.clone(), created, 0),
        };
        let next = PageIndex {
            backup_id: id.clone(),
            full_id,
            full_created,
            depth,
            databases: pages,
        };
        if let Err(e) = next.save(state) {
            warnings.push(format!(
                "the page index was not updated, so the next backup builds on an older one (or is full): {e:#}"
            ));
        }
    }
    let (kind, parent, full_because) = match plan {
        Plan::Incremental { index } => ("incremental", Some(index.backup_id.clone()), None),
        Plan::Full { why } => ("full", None, why.clone()),
    };
    Ok(Report {
        warnings,
        kind: kind.into(),
        parent,
        full_because,
        // A signal that came while the uploads were completing: what was stored stays listed
        // (and reported), the rest was aborted, and the run is an interruption.
        interrupted: crate::interrupt::requested(),
        id,
        created: sidecar.manifest.created.clone(),
        sources: sidecar.manifest.sources.len(),
        files: sidecar.manifest.files.len(),
        databases: sidecar.manifest.databases.len(),
        source_bytes,
        stored_bytes: sidecar.archive.bytes,
        spooled_bytes,
        compression,
        encrypted: sealer.is_some(),
        signed: keys.signer.is_some(),
        destinations,
        skipped,
        unencrypted_by_choice: settings.unencrypted_by_choice,
        ..Report::default()
    })
}
