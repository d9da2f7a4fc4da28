//! `litevault history`: the runs recorded in the execution store, newest first.

use anyhow::Result;

use crate::cli::HistoryArgs;
use crate::commands::report::CommandReport;
use crate::config::Settings;
use crate::journal::{Journal, Run};
use crate::state::StateDir;
use crate::ui::{self, Escaped, Ui};

/// How many runs `history` shows, from its flags.
#[derive(Debug, Clone)]
pub struct Options {
    pub limit: u32,
}

impl From<&HistoryArgs> for Options {
    fn from(args: &HistoryArgs) -> Self {
        Options { limit: args.limit }
    }
}

pub struct Report {
    pub runs: Vec<Run>,
}

pub fn run(settings: &Settings, args: &Options) -> Result<Report> {
    let state = StateDir::open(&settings.state_dir)?;
    let runs = Journal::open(&state)?.history(args.limit)?;
    Ok(Report { runs })
}

impl CommandReport for Report {
    fn render(&self, ui: &Ui) -> Result<()> {
        let runs = &self.runs;
        ui.json(runs)?;
        let mut lines = Vec::new();
        if runs.is_empty() {
            lines.push("no recorded runs".to_string());
        } else {
            lines.push(format!(
                "{:>5}  {:<24}  {:<8} {:<11} {:>7}  {}",
                "RUN", "STARTED", "COMMAND", "STATUS", "TOOK", "DETAIL"
            ));
        }
        for r in runs {
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
        Ok(())
    }
}
