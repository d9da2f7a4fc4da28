//! Runs a parsed command line: the table of commands. Each row says what the runner puts
//! around the command (the config, the execution store, a progress bar) and translates its
//! flags into the command's options; the runner does the rest the same way for all of them,
//! and each command's report renders itself.

use anyhow::Result;

use crate::cli::{Cli, Command, KeyCommand};
use crate::commands::{
    backup, check, copy, fleet, history, key, list, prune, rekey, restore, show, stats, verify,
};
use crate::docs;
use crate::exit::{self, Exit};
use crate::runner::{Recording, Runner};
use crate::ui::Ui;

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

fn dispatch(cli: &Cli, ui: &Ui) -> Result<Exit> {
    let run = Runner::new(ui, cli.config.as_deref(), cli.metrics_file.as_deref());
    let bar = |name| Recording::of(name).with_bar();
    match &cli.command {
        Command::Backup(a) => run.retried(bar("backup"), backup::Retrying::from(a)),
        Command::List(a) if a.all_hosts => run.reads(|s| fleet::run(s, &a.into())),
        Command::List(a) => run.reads(|s| list::run(s, &a.into())),
        Command::Show(a) => run.reads(|s| show::run(s, &a.into())),
        Command::History(a) => run.reads(|s| history::run(s, &a.into())),
        Command::Stats(a) => run.reads(|s| stats::run(s, &a.into())),
        // A plan changes nothing: not recorded, no hooks, no state_dir made.
        Command::Restore(a) if a.dry_run => run.reads(|s| restore::plan(s, &a.into())),
        Command::Restore(a) => run.recorded(bar("restore"), |s, p, env| {
            restore::run(s, &a.into(), p, env)
        }),
        Command::Verify(a) => run.recorded(bar("verify"), |s, p, _| verify::run(s, &a.into(), p)),
        Command::Rekey(a) => run.recorded(bar("rekey"), |s, p, _| rekey::run(s, &a.into(), p)),
        Command::Copy(a) => run.recorded(bar("copy"), |s, p, _| copy::run(s, &a.into(), p)),
        Command::Prune(a) => {
            run.recorded(Recording::of("prune"), |s, _, _| prune::run(s, &a.into()))
        }
        Command::Check(a) => run.recorded(Recording::of("check").if_state_exists(), |s, _, _| {
            check::run(s, &a.into())
        }),
        Command::Key(KeyCommand::Generate(a)) => run.bare(|| key::generate(&a.into())),
        Command::Completions(a) => run.bare(|| Ok(docs::Script::of(a.shell))),
        Command::Man(a) => run.bare(|| docs::man_pages(&a.dir).map(docs::ManPages)),
    }
}
