//! Runs a parsed command line: loads the config, dispatches to the command, renders its report
//! through the UI, and decides the exit code.

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::commands::{self, report::CommandReport};
use crate::config::{self, Settings};
use crate::exit::{self, Exit};
use crate::runner::Runner;
use crate::ui::{self, Escaped, Ui};

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
            report.render(ui)?;
            Ok(report.exit())
        }
        Command::List(args) if args.all_hosts => {
            let s = settings(cli)?;
            let report = commands::fleet::run(&s, args)?;
            report.render(ui)?;
            // Only the flag: the config's metrics_file is this host's own, which the fleet
            // view must not replace.
            if let Some(path) = &cli.metrics_file {
                let metrics = crate::journal::Metrics { path: path.clone() };
                metrics
                    .write_hosts(&report.host_facts().unwrap_or_default())
                    .map_err(|e| e.context("writing the fleet metrics"))?;
            }
            Ok(report.exit())
        }
        Command::Show(args) => {
            let s = settings(cli)?;
            let report = commands::show::run(&s, args)?;
            report.render(ui)?;
            Ok(report.exit())
        }
        Command::List(args) => {
            let s = settings(cli)?;
            let report = commands::list::run(&s, args)?;
            report.render(ui)?;
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
            report.render(ui)?;
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
            report.render(ui)?;
            Ok(report.exit())
        }
        Command::Check(args) => {
            let s = settings(cli)?;
            let mut runner = Runner::without_creating(&s, cli.metrics_file.as_deref());
            let report = runner.record("check", |_| commands::check::run(&s, args));
            warn_all(ui, &runner.warnings);
            let report = report?;
            report.render(ui)?;
            Ok(report.exit())
        }
        Command::Key(crate::cli::KeyCommand::Generate(args)) => {
            let report = commands::key::generate(args)?;
            report.render(ui)?;
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
            report.render(ui)?;
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
            report.render(ui)?;
            Ok(report.exit())
        }
        Command::Prune(args) => {
            let s = settings(cli)?;
            let mut runner = Runner::new(&s, cli.metrics_file.as_deref());
            let report = runner.record("prune", |_| commands::prune::run(&s, args));
            warn_all(ui, &runner.warnings);
            let report = report?;
            report.render(ui)?;
            Ok(report.exit())
        }
    }
}

fn warn_all(ui: &Ui, warnings: &[String]) {
    for w in warnings {
        ui.warn(w);
    }
}
