//! An in-place restore: put a backup back on the server itself, over databases the
//! server may have had open.
//!
//! The steps, in this order: everything that can be checked without touching the server
//! (the backup's every hash and every database's `integrity_check`, its format and SQLite
//! versions, the sources against the config, the free space); then `before_restore` (stop the
//! server); then refuse if a target is still in use; then the safety backup of what is about to
//! be replaced; then each target replaced whole (see `place`); then each database checked again
//! where it now lives; and `after_restore`, whatever happened once `before_restore` ran.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::Selection;
use super::{choose, selection, unpack_checked, AfterCheck, Choice, Options, Report, Restored};
use crate::catalog::Backup;
use crate::commands::{open_destinations_as_of, opener_for};
use crate::config::{Settings, Source, SourceKind};
use crate::exit::{config as config_error, integrity, Exit, Fault};
use crate::place;
use crate::progress::{Progress, Silent};
use crate::state::StateDir;
use crate::storage::url::Location;

/// The choices of an in-place restore beyond what to restore.
#[derive(Clone, Copy)]
pub(super) struct Choices {
    pub safety_backup: bool,
    pub force: bool,
    pub wait: Option<std::time::Duration>,
}

pub(super) fn run(
    settings: &Settings,
    options: &Options,
    choices: Choices,
    progress: &dyn Progress,
    hook_env: &[(String, String)],
) -> Result<Report> {
    let state = StateDir::open(&settings.state_dir)?;
    let _lock = state.lock(choices.wait)?;
    let names: Vec<String> = options.dest.iter().cloned().collect();
    let dests = open_destinations_as_of(settings, &names, options.as_of)?;
    let Choice {
        dest,
        backup,
        notes: passed_over,
        at,
    } = choose(&dests, options)?;

    // 1. Everything that can be checked before the server is touched.
    let targets = prepare(settings, &backup, &options.only)?;
    for (source, _) in &targets {
        place::clean_staged(&source.path);
    }
    let opener = opener_for(settings, &backup)?;
    let scratch = state.scratch("restore")?;
    let checked = unpack_checked(
        dest,
        &backup,
        opener.as_ref(),
        &scratch.path,
        "integrity_check",
        false,
        progress,
        super::Checks::All,
    )?;
    check_space(settings, &targets, choices.safety_backup)?;

    // 2. Maintenance mode on. From here on, after_restore runs whatever happens.
    let mut env = hook_env.to_vec();
    env.push(("LITEVAULT_BACKUP_ID".into(), backup.id.clone()));
    env.push((
        "LITEVAULT_SOURCES".into(),
        targets
            .iter()
            .map(|(s, _)| s.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
    ));
    if let Some(hook) = &settings.hooks.before_restore {
        if let Err(e) = crate::hooks::run("before_restore", hook, &env, settings.hooks.timeout) {
            let after = after_restore(settings, &env, "failure", None);
            let mut err = e.context("the before_restore hook failed, so nothing was restored");
            if let Some(note) = after {
                err = err.context(note);
            }
            return Err(err);
        }
    }
    let result = crate::interrupt::check()
        .and_then(|()| replace(settings, &state, choices, &backup, &targets, &scratch.path));
    let (status, safety) = match &result {
        Ok(r) => ("success", r.safety_backup.clone()),
        Err(_) => ("failure", None),
    };
    let after = after_restore(settings, &env, status, safety.as_deref());
    let mut report = result?;
    report.id = backup.id.clone();
    report.destination = dest.name.clone();
    report.databases_checked = checked
        .into_iter()
        .filter(|d| {
            Selection::of_sources(targets.iter().map(|(s, _)| s.name.clone()).collect()).covers(d)
        })
        .collect();
    report.bytes = targets.iter().map(|(_, size)| size).sum();
    report.notes.extend(after);
    report.notes.extend(passed_over);
    report.at = at;
    Ok(report)
}

/// Steps 3 to 6: in use, safety backup, replacement, checks after.
fn replace(
    settings: &Settings,
    state: &StateDir,
    choices: Choices,
    backup: &Backup,
    targets: &[(Source, u64)],
    scratch: &Path,
) -> Result<Report> {
    let mut report = Report {
        mode: "in-place".into(),
        check: "integrity_check".into(),
        ..Report::default()
    };
    if !choices.force {
        // A folder's databases are in use as much as a database source is.
        let inside: Vec<Source> = targets
            .iter()
            .filter(|(s, _)| s.kind == SourceKind::Dir)
            .flat_map(|(s, _)| {
                backup
                    .sidecar
                    .manifest
                    .databases
                    .iter()
                    .filter(move |d| d.source == s.name)
                    .map(move |d| found_target(s, &d.path))
            })
            .collect();
        let databases = targets
            .iter()
            .map(|(s, _)| s)
            .filter(|s| s.kind == SourceKind::Sqlite)
            .chain(&inside);
        for source in databases {
            if let Some(why) = place::in_use(&source.path) {
                return Err(anyhow::Error::new(
                    Fault::new(Exit::Failure, format!("database {} ({}) is in use: {why}; nothing was changed", source.name, source.path.display()))
                        .hint("stop the server first (a before_restore hook can do it), or pass --force if you are sure"),
                ));
            }
        }
    }

    if choices.safety_backup {
        report.safety_backup = safety_backup(settings, state, backup, targets, &mut report.notes)?;
    }

    // Stage every new file beside its target first, so the replacements follow one another
    // closely; then make each old database self-contained, drop its journals, and swap.
    let mut staged: Vec<(&Source, PathBuf)> = Vec::new();
    let recorded = crate::owner::Recorded::new(&backup.sidecar.manifest);
    for (source, _) in targets {
        let from = scratch.join(&source.name);
        if !from.exists() {
            report.notes.push(format!(
                "{}: the backup holds no files for it; left as it is",
                source.name
            ));
            continue;
        }
        staged.push((
            source,
            place::stage_beside(&from, &source.path, &source.name, Some(&recorded))?,
        ));
    }
    for (source, new) in &staged {
        crate::interrupt::check()?;
        if source.kind == SourceKind::Sqlite {
            if let Some(note) = place::settle_old_database(&source.path) {
                report.notes.push(note);
            }
            report
                .removed_stale
                .extend(place::remove_journals(&source.path)?);
        }
        place::swap_in(new, &source.path)?;
        report.restored.push(Restored {
            source: source.name.clone(),
            path: source.path.clone(),
        });
    }

    for (source, _) in staged.iter().filter(|(s, _)| s.kind == SourceKind::Sqlite) {
        let check = crate::source::sqlite::check_file(&source.path, "quick_check");
        report.after_checks.push(match check {
            Ok(problems) if problems.is_empty() => AfterCheck {
                source: source.name.clone(),
                ok: true,
                detail: "quick_check ok".into(),
            },
            Ok(problems) => AfterCheck {
                source: source.name.clone(),
                ok: false,
                detail: problems.join("; "),
            },
            Err(e) => AfterCheck {
                source: source.name.clone(),
                ok: false,
                detail: format!("{e:#}"),
            },
        });
    }
    Ok(report)
}

/// The checks on a backup before anything is downloaded: its format restorable here, its
/// sources matched to the config's. Each source to restore with its restored size.
pub(super) fn prepare(
    settings: &Settings,
    backup: &Backup,
    only: &[String],
) -> Result<Vec<(Source, u64)>> {
    check_compatible(backup)?;
    targets(settings, backup, only)
}

/// The format and the databases' geometry are ones this build can restore.
fn check_compatible(backup: &Backup) -> Result<()> {
    for db in &backup.sidecar.manifest.databases {
        let pow2 = db.page_size.is_power_of_two() && (512..=65536).contains(&db.page_size);
        if !pow2 || !db.sqlite_version.starts_with("3.") {
            return Err(integrity(format!(
                "backup {}: database {} has page size {} and SQLite version {:?}, which this litevault cannot restore",
                backup.id, db.source, db.page_size, db.sqlite_version
            ))
            .into());
        }
    }
    Ok(())
}

/// Each source to restore with its size, matched against the config: the backup's sources and
/// the config's must be the same, or `--only` must name a subset of both.
fn targets(settings: &Settings, backup: &Backup, only: &[String]) -> Result<Vec<(Source, u64)>> {
    let in_backup: Vec<&str> = backup
        .sidecar
        .manifest
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let in_config: Vec<&str> = settings.sources.iter().map(|s| s.name.as_str()).collect();
    if only.is_empty() {
        let missing: Vec<&&str> = in_config
            .iter()
            .filter(|n| !in_backup.contains(n))
            .collect();
        let extra: Vec<&&str> = in_backup
            .iter()
            .filter(|n| !in_config.contains(n))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            let mut why = Vec::new();
            if !extra.is_empty() {
                why.push(format!("the config has no source {extra:?}"));
            }
            if !missing.is_empty() {
                why.push(format!("the backup has no source {missing:?}"));
            }
            return Err(anyhow::Error::new(
                config_error(format!(
                    "backup {} does not match the config: {}",
                    backup.id,
                    why.join(", ")
                ))
                .hint("name the sources to restore with --only SOURCE"),
            ));
        }
    }
    let selection = selection(backup, only)?;
    let m = &backup.sidecar.manifest;
    let mut out = Vec::new();
    for item in &selection.items {
        let (name, below) = match item.split_once('/') {
            Some((name, below)) => (name, Some(below)),
            None => (item.as_str(), None),
        };
        let Some(source) = settings.sources.iter().find(|s| s.name == name) else {
            return Err(config_error(format!(
                "the config has no source {name:?}; an in-place restore puts each source at its configured path"
            ))
            .into());
        };
        let Some(entry) = m.sources.iter().find(|s| s.name == name) else {
            return Err(integrity(format!(
                "backup {} holds {item:?} but no source {name:?} for it",
                backup.id
            ))
            .into());
        };
        if entry.kind != source.kind {
            return Err(config_error(format!(
                "source {name:?} is a {:?} in the backup but a {:?} in the config",
                entry.kind, source.kind
            ))
            .into());
        }
        // A source that finds its databases below a folder is restored database by database,
        // each at its place: the folder also holds what is not the source's.
        let found: Vec<&crate::archive::manifest::DatabaseEntry> = m
            .databases
            .iter()
            .filter(|d| d.source == name && d.path != name && selection.covers(&d.path))
            .collect();
        if source.kind == SourceKind::Sqlite && !found.is_empty() {
            for db in found {
                let one = Selection::of_sources(vec![db.path.clone()]);
                out.push((
                    found_target(source, &db.path),
                    super::selected_size(m, &one),
                ));
            }
            continue;
        }
        if below.is_some() {
            return Err(config_error(format!(
                "{item:?} is one file of source {name:?}; an in-place restore puts back whole sources (or single databases of a source with a pattern)"
            ))
            .hint(format!("restore it into a folder with --to DIR --only {item:?} and move it into place, or restore source {name:?} whole"))
            .into());
        }
        // Restored, not stored: an incremental stores only its databases' changed pages.
        let size = super::selected_size(m, &Selection::of_sources(vec![name.to_string()]));
        out.push((source.clone(), size));
    }
    Ok(out)
}

/// One database of a source that finds its databases: restored as if it were a source of its
/// own, named by its path in the backup, at its place below the source's folder.
fn found_target(source: &Source, path: &str) -> Source {
    let below = path
        .strip_prefix(&source.name)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(path);
    Source {
        name: path.to_string(),
        path: source.path.join(below),
        kind: SourceKind::Sqlite,
        check: source.check,
        discover: None,
        as_bytes: Vec::new(),
    }
}

/// Room for each staged copy beside its target and, where a file:// destination shares a
/// filesystem, for the safety backup (at most the current sources' size). The scratch copy in
/// `state_dir` is already made: unpacking would have failed for want of room.
pub(super) fn check_space(
    settings: &Settings,
    targets: &[(Source, u64)],
    safety: bool,
) -> Result<()> {
    place::check_space(&space_needs(settings, targets, safety)).map_err(|e| {
        anyhow::Error::new(
            Fault::new(Exit::Failure, format!("{e:#}; nothing was changed"))
                .hint("free some space, or restore fewer sources with --only"),
        )
    })
}

/// What [`check_space`] checks: each target's restored size beside it and, with a safety
/// backup, the current sources' size on each file:// destination.
pub(super) fn space_needs(
    settings: &Settings,
    targets: &[(Source, u64)],
    safety: bool,
) -> Vec<(PathBuf, u64)> {
    let mut needs: Vec<(PathBuf, u64)> = targets
        .iter()
        .map(|(s, size)| (s.path.clone(), *size))
        .collect();
    if safety {
        let current: u64 = targets.iter().map(|(s, _)| disk_size(&s.path)).sum();
        for d in &settings.destinations {
            if let Location::File { root, .. } = &d.location {
                needs.push((root.clone(), current));
            }
        }
    }
    needs
}

fn disk_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_size(&e.path())).sum())
        .unwrap_or(0)
}

/// A normal backup of what is about to be replaced, tagged `pre-restore`. Sources that do not
/// exist on disk have nothing to save.
fn safety_backup(
    settings: &Settings,
    state: &StateDir,
    backup: &Backup,
    targets: &[(Source, u64)],
    notes: &mut Vec<String>,
) -> Result<Option<String>> {
    let mut subset = settings.clone();
    // One database of a source that finds its own is saved with that source's others: the
    // safety backup is an ordinary backup of whole configured sources.
    subset.sources = Vec::new();
    for (s, _) in targets {
        let configured = match s.name.split_once('/') {
            Some((name, _)) => settings.sources.iter().find(|c| c.name == name),
            None => Some(s),
        };
        if let Some(c) = configured.filter(|c| c.path.exists()) {
            if !subset.sources.iter().any(|have| have.name == c.name) {
                subset.sources.push(c.clone());
            }
        }
    }
    subset.prune_after_backup = false;
    // Whole, and without moving the page index: a copy of some sources is no parent for the
    // next regular backup, which builds on the last one as before.
    subset.incremental = None;
    if subset.sources.is_empty() {
        notes.push("no safety backup: none of the sources exists on this host".into());
        return Ok(None);
    }
    let args = crate::commands::backup::Options {
        full: true,
        ..Default::default()
    };
    let tags = vec![
        "pre-restore".to_string(),
        format!("restoring:{}", backup.id),
    ];
    let report = crate::commands::backup::run_locked(&subset, state, &args, &Silent, None, &tags).map_err(|e| {
        anyhow::Error::new(
            Fault::new(Exit::Failure, format!("the safety backup of the current state failed, so nothing was changed: {e:#}"))
                .hint("fix the cause, or pass --no-safety-backup to restore without one (the current state is then lost)"),
        )
    })?;
    let failed: Vec<String> = report
        .destinations
        .iter()
        .filter(|d| !d.ok)
        .map(|d| format!("{}: {}", d.name, d.error.as_deref().unwrap_or("failed")))
        .collect();
    if report.destinations.iter().all(|d| !d.ok) {
        return Err(Fault::new(
            Exit::Failure,
            format!(
                "the safety backup could not be stored anywhere, so nothing was changed: {}",
                failed.join("; ")
            ),
        )
        .into());
    }
    if !failed.is_empty() {
        notes.push(format!(
            "the safety backup {} is missing on: {}",
            report.id,
            failed.join("; ")
        ));
    }
    Ok(Some(report.id))
}

/// Run `after_restore`; its outcome is reported as a note, never as the restore's result.
fn after_restore(
    settings: &Settings,
    env: &[(String, String)],
    status: &str,
    safety: Option<&str>,
) -> Option<String> {
    let hook = settings.hooks.after_restore.as_ref()?;
    let mut env = env.to_vec();
    env.push(("LITEVAULT_STATUS".into(), status.into()));
    env.push((
        "LITEVAULT_SAFETY_BACKUP_ID".into(),
        safety.unwrap_or_default().into(),
    ));
    Some(
        match crate::hooks::run("after_restore", hook, &env, settings.hooks.timeout) {
            Ok(()) => "the after_restore hook succeeded".into(),
            Err(e) => format!("{e:#}"),
        },
    )
}
