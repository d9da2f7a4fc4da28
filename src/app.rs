//! Runs a parsed command line: loads the config, dispatches to the command, renders its report
//! through the UI, and decides the exit code.

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::commands;
use crate::config::{self, Settings};
use crate::exit::{self, Exit};
use crate::runner::Runner;
use crate::ui::{self, Escaped, Mode, Ui};

mod inspect;

pub fn run(cli: Cli) -> Exit {
    let ui = Ui::new(cli.quiet, cli.json);
    let outcome = dispatch(&cli, &ui);
    crate::storage::runtime::shutdown();
    match outcome {
        Ok(code) => code,
        Err(err) => {
            let code = exit::classify(&err);
            if code != Exit::Success {
                ui.fatal(&err, code);
            }
            code
        }
    }
}

fn settings(cli: &Cli) -> Result<Settings> {
    let path = config::locate(
        cli.config.as_deref(),
        std::env::var_os(crate::cli::CONFIG_ENV),
    );
    config::load(&path)
}

fn dispatch(cli: &Cli, ui: &Ui) -> Result<Exit> {
    match &cli.command {
        Command::Completions(args) => {
            // Generated whole, then written: a closed stdout is an error, not a panic.
            let mut script = Vec::new();
            crate::docs::completions(args.shell, &mut script);
            ui.document(&script)?;
            Ok(Exit::Success)
        }
        Command::Man(args) => {
            let written = crate::docs::man_pages(&args.dir)?;
            ui.say_all(&written)?;
            Ok(Exit::Success)
        }
        Command::Backup(args) => {
            let s = settings(cli)?;
            let mut runner = Runner::new(&s, cli.metrics_file.as_deref());
            let progress = ui.progress("backup");
            let report = runner.backup(args, progress.as_ref());
            drop(progress);
            warn_all(ui, &runner.warnings);
            let report = report?;
            render_backup(ui, &report, s.unencrypted_by_choice)?;
            Ok(report.exit())
        }
        Command::List(args) if args.all_hosts => {
            let s = settings(cli)?;
            let report = commands::fleet::run(&s, args)?;
            inspect::render_fleet(ui, &report)?;
            // Only the flag: the config's metrics_file is this host's own, which the fleet
            // view must not replace.
            if let Some(path) = &cli.metrics_file {
                let metrics = crate::journal::Metrics { path: path.clone() };
                metrics
                    .write_hosts(&report.facts())
                    .map_err(|e| e.context("writing the fleet metrics"))?;
            }
            Ok(report.exit())
        }
        Command::Show(args) => {
            let s = settings(cli)?;
            let report = commands::show::run(&s, args)?;
            inspect::render_show(ui, &report)?;
            Ok(report.exit())
        }
        Command::List(args) => {
            let s = settings(cli)?;
            let report = commands::list::run(&s, args)?;
            for p in &report.problems {
                ui.warn(p);
            }
            ui.json(&report.items)?;
            let mut lines = Vec::new();
            if report.items.is_empty() {
                lines.push("no complete backups".to_string());
            } else {
                lines.push(format!(
                    "{:<22} {:<24} {:>10} {:>10}  {:<12} {}",
                    "ID", "CREATED", "DATA", "STORED", "DESTINATION", "FLAGS"
                ));
            }
            for it in &report.items {
                let mut flags = vec![it.kind.clone(), it.compression.clone()];
                flags.push(if it.encrypted {
                    "age".into()
                } else {
                    "unencrypted".into()
                });
                flags.extend(it.tags.iter().cloned());
                if it.signed_by.is_some() {
                    flags.push("signed".into());
                }
                if let Some(why) = &it.untrusted {
                    flags.push("UNTRUSTED".into());
                    ui.warn(&format!(
                        "backup {} on {} is not trusted: {}",
                        Escaped(&it.id),
                        Escaped(&it.destination),
                        Escaped(why)
                    ));
                }
                if let Some(damage) = &it.damage {
                    flags.push("DAMAGED".into());
                    ui.warn(&format!(
                        "backup {} on {} is damaged: {}",
                        Escaped(&it.id),
                        Escaped(&it.destination),
                        Escaped(damage)
                    ));
                }
                if let (None, None, Some(problem)) = (&it.damage, &it.untrusted, &it.problem) {
                    flags.push(it.standing.to_uppercase());
                    ui.warn(&format!(
                        "backup {} on {} is not counted: {problem}",
                        it.id, it.destination
                    ));
                }
                lines.push(format!(
                    "{:<22} {:<24} {:>10} {:>10}  {:<12} {}",
                    Escaped(&it.id),
                    Escaped(&it.created),
                    ui::bytes(it.source_bytes),
                    ui::bytes(it.bytes),
                    Escaped(&it.destination),
                    Escaped(&flags.join(","))
                ));
            }
            ui.say_all(&lines)?;
            Ok(Exit::Success)
        }
        Command::Restore(args) => {
            let s = settings(cli)?;
            let mut runner = Runner::new(&s, cli.metrics_file.as_deref());
            let progress = ui.progress("restore");
            let report = runner.record("restore", |env| {
                commands::restore::run(&s, args, progress.as_ref(), env)
            });
            drop(progress);
            warn_all(ui, &runner.warnings);
            let report = report?;
            render_restore(ui, &report)?;
            Ok(report.exit())
        }
        Command::Verify(args) => {
            let s = settings(cli)?;
            let mut runner = Runner::new(&s, cli.metrics_file.as_deref());
            let progress = ui.progress("verify");
            let report = runner.record("verify", |_| {
                commands::verify::run(&s, args, progress.as_ref())
            });
            drop(progress);
            warn_all(ui, &runner.warnings);
            let report = report?;
            ui.json(&report)?;
            warn_all(ui, &report.notes);
            for r in &report.results {
                if r.ok {
                    ui.say(&format!(
                        "ok {} on {}: every hash matches, {} passed integrity_check",
                        Escaped(&r.id),
                        Escaped(&r.destination),
                        plural(r.databases_checked.len(), "database")
                    ));
                } else if r.cannot_open {
                    // Not a finding about the backup: this host holds none of its keys.
                    ui.error(&format!(
                        "{} on {} {}",
                        Escaped(&r.id),
                        Escaped(&r.destination),
                        Escaped(r.error.as_deref().unwrap_or("cannot be opened"))
                    ));
                } else {
                    ui.error(&format!(
                        "FAILED {} on {}: {}",
                        Escaped(&r.id),
                        Escaped(&r.destination),
                        Escaped(r.error.as_deref().unwrap_or("unknown error"))
                    ));
                }
                for d in &r.drill {
                    ui.say(&format!(
                        "  {} {}: integrity_check {}, {} foreign key violation(s), row counts of {} {}",
                        if d.ok { "ok    " } else { "FAILED" },
                        Escaped(&d.database),
                        Escaped(&d.integrity_check),
                        d.foreign_key_violations,
                        plural(d.tables, "table"),
                        if d.row_count_mismatches.is_empty() {
                            "match the manifest".to_string()
                        } else {
                            format!("differ: {}", Escaped(&d.row_count_mismatches.join(", ")))
                        }
                    ));
                }
            }
            Ok(report.exit())
        }
        Command::Check(args) => {
            let s = settings(cli)?;
            let mut runner = Runner::without_creating(&s, cli.metrics_file.as_deref());
            let report = runner.record("check", |_| commands::check::run(&s, args));
            warn_all(ui, &runner.warnings);
            let report = report?;
            ui.json(&report)?;
            warn_all(ui, &report.warnings);
            let mut lines = vec![format!("ok   config {}", report.config)];
            let probes = std::iter::once(&report.keys)
                .chain(std::iter::once(&report.state_dir))
                .chain(&report.sources)
                .chain(&report.destinations);
            for p in probes {
                if p.ok {
                    lines.push(format!("ok   {}: {}", p.name, Escaped(&p.detail)));
                } else {
                    ui.error(&format!("{}: {}", p.name, Escaped(&p.detail)));
                }
            }
            ui.say_all(&lines)?;
            Ok(report.exit())
        }
        Command::Key(crate::cli::KeyCommand::Generate(args)) => {
            let report = commands::key::generate(args)?;
            ui.json(&report)?;
            ui.result(&report.public);
            ui.remark(&format!(
                "wrote the {} key to {}; {}",
                report.kind,
                report.file.display(),
                if report.kind == "age" {
                    "put the line above in [encryption] recipients, and keep the file where you restore"
                } else {
                    "set [signing] key_file to it, and put the line above in [trust] signers where you restore"
                }
            ));
            Ok(Exit::Success)
        }
        Command::History(args) => {
            let s = settings(cli)?;
            let state = crate::state::StateDir::open(&s.state_dir)?;
            let runs = crate::journal::Journal::open(&state)?.history(args.limit)?;
            ui.json(&runs)?;
            let mut lines = Vec::new();
            if runs.is_empty() {
                lines.push("no recorded runs".to_string());
            } else {
                lines.push(format!(
                    "{:>5}  {:<24}  {:<8} {:<11} {:>7}  {}",
                    "RUN", "STARTED", "COMMAND", "STATUS", "TOOK", "DETAIL"
                ));
            }
            for r in &runs {
                let mut line = format!(
                    "{:>5}  {:<24}  {:<8} {:<11} {:>7}",
                    r.id,
                    r.started,
                    r.command,
                    r.status,
                    r.seconds
                        .map(|x| format!("{x:.1}s"))
                        .unwrap_or_else(|| "-".into())
                );
                if r.dry_run {
                    line.push_str("  dry run");
                }
                if r.attempt > 1 {
                    line.push_str(&format!("  attempt {}", r.attempt));
                }
                if let Some(id) = &r.backup_id {
                    line.push_str(&format!("  {}", Escaped(id)));
                }
                if let Some(b) = r.bytes {
                    line.push_str(&format!("  {}", ui::bytes(b as u64)));
                }
                if let Some(e) = &r.error {
                    line.push_str(&format!("  error: {}", Escaped(e)));
                }
                lines.push(line);
            }
            ui.say_all(&lines)?;
            Ok(Exit::Success)
        }
        Command::Rekey(args) => {
            let s = settings(cli)?;
            let mut runner = Runner::new(&s, cli.metrics_file.as_deref());
            let progress = ui.progress("rekey");
            let report = runner.record("rekey", |_| {
                commands::rekey::run(&s, args, progress.as_ref())
            });
            drop(progress);
            warn_all(ui, &runner.warnings);
            let report = report?;
            ui.json(&report)?;
            warn_all(ui, &report.warnings);
            let mut lines = Vec::new();
            for id in &report.finished {
                lines.push(format!(
                    "finished {} (left half-way by a killed run)",
                    Escaped(id)
                ));
            }
            for o in &report.rekeyed {
                lines.push(format!(
                    "rekeyed {} on {}: {}",
                    Escaped(&o.id),
                    o.destination,
                    Escaped(&o.detail)
                ));
            }
            for o in &report.skipped {
                lines.push(format!(
                    "skipped {} on {}: {}",
                    Escaped(&o.id),
                    o.destination,
                    Escaped(&o.detail)
                ));
            }
            for o in &report.failed {
                ui.error(&format!(
                    "{} on {}: {}",
                    Escaped(&o.id),
                    o.destination,
                    Escaped(&o.detail)
                ));
            }
            lines.push(format!(
                "{} rekeyed, {} skipped, {} failed",
                report.rekeyed.len(),
                report.skipped.len(),
                report.failed.len()
            ));
            ui.say_all(&lines)?;
            Ok(report.exit())
        }
        Command::Copy(args) => {
            let s = settings(cli)?;
            let mut runner = Runner::new(&s, cli.metrics_file.as_deref());
            let progress = ui.progress("copy");
            let report =
                runner.record("copy", |_| commands::copy::run(&s, args, progress.as_ref()));
            drop(progress);
            warn_all(ui, &runner.warnings);
            let report = report?;
            render_copy(ui, &report)?;
            Ok(report.exit())
        }
        Command::Prune(args) => {
            let s = settings(cli)?;
            let mut runner = Runner::new(&s, cli.metrics_file.as_deref());
            let report = runner.record("prune", |_| commands::prune::run(&s, args));
            warn_all(ui, &runner.warnings);
            let report = report?;
            render_prune(ui, &report, &[])?;
            ui.json(&report)?;
            Ok(report.exit())
        }
    }
}

fn warn_all(ui: &Ui, warnings: &[String]) {
    for w in warnings {
        ui.warn(w);
    }
}

/// `unencrypted_by_choice`: `[encryption] none = true`, so an unencrypted backup is no news.
fn render_backup(ui: &Ui, r: &commands::backup::Report, unencrypted_by_choice: bool) -> Result<()> {
    ui.json(r)?;
    warn_all(ui, &r.warnings);
    if let Some(why) = &r.skipped_run {
        ui.say(&format!("skipped: {}", Escaped(why)));
        return Ok(());
    }
    for s in &r.skipped {
        ui.warn(&format!("skipped {}", Escaped(s)));
    }
    if r.interrupted {
        let stored: Vec<&str> = r
            .destinations
            .iter()
            .filter(|d| d.ok)
            .map(|d| d.name.as_str())
            .collect();
        ui.error(&if stored.is_empty() {
            "interrupted by a signal; nothing was stored, and nothing half-done is listed".into()
        } else {
            format!(
                "interrupted by a signal; backup {} was stored on {} only",
                Escaped(&r.id),
                stored.join(", ")
            )
        });
    }
    // Said even with --quiet: without [encryption] nobody has said that plain backups are
    // meant. `[encryption] none = true` says so, and silences it.
    if !r.encrypted && !unencrypted_by_choice {
        ui.warn("this backup is NOT encrypted: add an [encryption] table with recipients to encrypt backups, or `none = true` in it to store them unencrypted on purpose (and silence this warning)");
    }
    for d in r.destinations.iter().filter(|d| !d.ok) {
        let error = d.error.as_deref().unwrap_or("failed");
        // Storage errors name their destination already.
        if error.contains(&format!("destination {}", d.name)) {
            ui.error(error);
        } else {
            ui.error(&format!("destination {}: {}", d.name, Escaped(error)));
        }
    }
    let stored: Vec<&str> = r
        .destinations
        .iter()
        .filter(|d| d.ok)
        .map(|d| d.name.as_str())
        .collect();
    if let Some(why) = &r.full_because {
        ui.say(&format!("full backup: {why}"));
    }
    if ui.mode == Mode::Human && !stored.is_empty() {
        let kind = match &r.parent {
            Some(parent) => format!(" (incremental on {})", Escaped(parent)),
            None => String::new(),
        };
        ui.say(&format!(
            "backup {}{kind}: {} ({}), {} -> {} {}{} in {}; stored on {}",
            Escaped(&r.id),
            plural(r.sources, "source"),
            plural(r.files, "file"),
            ui::bytes(r.source_bytes),
            ui::bytes(r.stored_bytes),
            r.compression,
            match (r.encrypted, r.signed) {
                (true, true) => "+age, signed",
                (true, false) => "+age",
                (false, true) => ", unencrypted, signed",
                (false, false) => ", unencrypted",
            },
            ui::secs(std::time::Duration::from_secs_f64(r.seconds)),
            stored.join(", ")
        ));
    }
    if let Some(p) = &r.prune {
        // The prune after a backup lists the same destination: what the backup already warned
        // about (an archive without its sidecar) is said once.
        render_prune(ui, p, &r.warnings)?;
    }
    Ok(())
}

fn render_restore(ui: &Ui, r: &crate::restore::Report) -> Result<()> {
    ui.json(r)?;
    for stale in &r.removed_stale {
        ui.warn(&format!(
            "removed the stale {} so it cannot be replayed onto the restored database",
            Escaped(stale)
        ));
    }
    for note in &r.notes {
        ui.warn(note);
    }
    let place = match &r.to {
        Some(to) => format!("into {}", Escaped(&to.display().to_string())),
        None => "in place".to_string(),
    };
    ui.say(&format!(
        "restored {} from {} {place}: {}, {}, {} passed {}",
        Escaped(&r.id),
        Escaped(&r.destination),
        plural(r.restored.len(), "source"),
        ui::bytes(r.bytes),
        plural(r.databases_checked.len(), "database"),
        r.check
    ));
    for c in &r.after_checks {
        if c.ok {
            ui.say(&format!(
                "  {} checked again in place: {}",
                Escaped(&c.source),
                Escaped(&c.detail)
            ));
        } else {
            ui.error(&format!(
                "{} fails its check after the restore: {}",
                Escaped(&c.source),
                Escaped(&c.detail)
            ));
        }
    }
    if let Some(id) = &r.safety_backup {
        let id = Escaped(id);
        ui.notice(&format!(
            "safety backup of the replaced state: {id} (undo with: litevault restore {id} --in-place --no-safety-backup)"
        ));
    }
    Ok(())
}

fn render_copy(ui: &Ui, r: &commands::copy::Report) -> Result<()> {
    ui.json(r)?;
    warn_all(ui, &r.warnings);
    for f in &r.failed {
        ui.error(&f.error);
    }
    let mut lines: Vec<String> = r
        .leftovers_removed
        .iter()
        .map(|l| format!("removed leftover {} on {}", Escaped(l), r.to))
        .collect();
    lines.extend(r.copied.iter().map(|c| {
        format!(
            "copied {} from {} to {} ({})",
            Escaped(&c.id),
            r.from,
            r.to,
            ui::bytes(c.bytes)
        )
    }));
    lines.push(format!(
        "{} copied, {} already on {}, {} failed",
        r.copied.len(),
        r.present.len(),
        r.to,
        r.failed.len()
    ));
    ui.say_all(&lines)?;
    Ok(())
}

/// `said`: warnings already printed in this run, not repeated.
fn render_prune(ui: &Ui, r: &commands::prune::Report, said: &[String]) -> Result<()> {
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
    }
    ui.say_all(&lines)?;
    Ok(())
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
