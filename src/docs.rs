//! Shell completions and man pages, generated from the clap definitions so they cannot drift.
//! The committed copies under completions/ and man/ are checked against these by a test.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, Shell};
use crate::commands::report::CommandReport;
use crate::ui::Ui;

/// A completion script, generated whole and then written: a closed stdout is an error, not a
/// panic.
pub struct Script(pub Vec<u8>);

impl Script {
    pub fn of(shell: Shell) -> Script {
        let mut script = Vec::new();
        completions(shell, &mut script);
        Script(script)
    }
}

impl CommandReport for Script {
    /// For a program, not a person: as it is, in every mode.
    fn render(&self, ui: &Ui) -> Result<()> {
        ui.document(&self.0)?;
        Ok(())
    }
}

/// The man pages written.
pub struct ManPages(pub Vec<String>);

impl CommandReport for ManPages {
    fn render(&self, ui: &Ui) -> Result<()> {
        ui.say_all(&self.0)?;
        Ok(())
    }
}

pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "litevault", out);
}

/// Writes `litevault.1` and `litevault-<command>.1` for each command.
pub fn man_pages(dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    let mut written = Vec::new();
    let mut render = |cmd: clap::Command, name: String| -> Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
        Ok(())
    };
    render(cmd.clone(), "litevault".into())?;
    for sub in cmd.get_subcommands() {
        let name = format!("litevault-{}", sub.get_name());
        render(sub.clone().name(name.clone()), name)?;
    }
    Ok(written)
}
