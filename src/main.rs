//! The litevault binary: parse, run, map the outcome to an exit code. Nothing else.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Everything litevault creates (archives on file:// destinations, scratch files, state,
    // restored files) is private: 0600 files in 0700 folders.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    litevault::interrupt::install();
    let cli = match litevault::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return ExitCode::from(litevault::ui::Ui::command_line(err)),
    };
    ExitCode::from(litevault::app::run(cli).code())
}
