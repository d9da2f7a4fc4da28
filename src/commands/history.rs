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

/// What a `verify --sample` run read, one line per destination under the run's line.
fn sampled(run: &Run) -> Vec<String> {
    let Some(serde_json::Value::Array(dests)) = &run.destinations else {
        return Vec::new();
    };
    dests
        .iter()
        .filter_map(|d| {
            let s = d.get("sample")?;
            let ids: Vec<&str> = s["verified"]
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            Some(format!(
                "{:>7}sampled {}: {} read of {}{}: {}",
                "",
                Escaped(s["destination"].as_str().unwrap_or("?")),
                ui::bytes(s["read_bytes"].as_u64().unwrap_or(0)),
                ui::bytes(s["stored_bytes"].as_u64().unwrap_or(0)),
                if s["depth"] == "stored" {
                    ", stored bytes only (not decrypted)"
                } else {
                    ""
                },
                if ids.is_empty() {
                    "nothing".to_string()
                } else {
                    Escaped(&ids.join(", ")).to_string()
                }
            ))
        })
        .collect()
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
            lines.extend(sampled(r));
        }
        ui.say_all(&lines)?;
        Ok(())
    }
}
