//! `litevault restore`: the command's options translated into the restore engine's
//! (`crate::restore`), which does the work; the engine's report, said to a person. With
//! `--dry-run`, the engine's plan instead (`crate::restore::plan`), said the same way.

use anyhow::Result;
use serde_json::json;

use crate::cli::RestoreArgs;
use crate::commands::report::{self, CommandReport};
use crate::config::Settings;
use crate::exit::Exit;
use crate::journal::Outcome;
use crate::progress::Progress;
use crate::restore::plan::Plan;
use crate::restore::{Options, Report, Target};
use crate::ui::{self, plural, Escaped, Ui};

impl From<&RestoreArgs> for Options {
    fn from(args: &RestoreArgs) -> Self {
        let target = match &args.to {
            Some(dir) => Target::Folder {
                dir: dir.clone(),
                deep: args.deep,
                same_owner: args.same_owner,
            },
            None => Target::InPlace {
                safety_backup: !args.no_safety_backup,
                force: args.force,
                wait: args.wait,
            },
        };
        Options {
            id: args.id.clone(),
            dest: args.dest.clone(),
            only: args.only.clone(),
            target,
            as_of: args.as_of,
            at: args.at,
        }
    }
}

pub fn run(
    settings: &Settings,
    options: &Options,
    progress: &dyn Progress,
    hook_env: &[(String, String)],
) -> Result<Report> {
    crate::restore::run(settings, options, progress, hook_env)
}

/// `--dry-run`: what the restore would do, from sidecars alone; nothing recorded, no hook.
pub fn plan(settings: &Settings, options: &Options) -> Result<Plan> {
    crate::restore::plan::plan(settings, options)
}

impl CommandReport for Report {
    /// A database that fails its check once in place: 4.
    fn exit(&self) -> Exit {
        Exit::worst(self.after_checks.iter().map(|c| {
            if c.ok {
                Exit::Success
            } else {
                Exit::Integrity
            }
        }))
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            bytes: Some(self.bytes),
            backup_id: Some(self.id.clone()),
            destinations: Some(json!([{"name": self.destination, "ok": true}])),
            ..report::outcome(self.exit())
        }
    }

    fn render(&self, ui: &Ui) -> Result<()> {
        let r = self;
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
        if let Some(at) = &r.at {
            ui.remark(&Escaped(&at.said()).to_string());
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
            if r.check_implied {
                format!(
                    "{} (as signed: each is byte for byte a snapshot that passed it when backed up)",
                    r.check
                )
            } else {
                r.check.clone()
            }
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
}

impl CommandReport for Plan {
    fn render(&self, ui: &Ui) -> Result<()> {
        let p = self;
        ui.json(p)?;
        for note in &p.notes {
            ui.warn(note);
        }
        if let Some(at) = &p.at {
            ui.remark(&Escaped(&at.said()).to_string());
        }
        let place = match &p.to {
            Some(to) => format!("into {}", Escaped(&to.display().to_string())),
            None => "in place".to_string(),
        };
        let mut lines = vec![format!(
            "plan (dry run, nothing downloaded or changed): restore {} from {} {place}: {}",
            Escaped(&p.id),
            Escaped(&p.destination),
            plural(p.sources.len(), "source"),
        )];
        let first = if p.chain.len() > 1 {
            ", full first"
        } else {
            ""
        };
        lines.push(format!(
            "  reads {}{first}:",
            plural(p.chain.len(), "backup")
        ));
        for (i, l) in p.chain.iter().enumerate() {
            lines.push(format!(
                "    {}. {} {:<11} {:>10} stored, on {}, taken {}",
                i + 1,
                Escaped(&l.id),
                Escaped(&l.kind),
                ui::bytes(l.stored_bytes),
                Escaped(&l.destination),
                Escaped(&l.created)
            ));
        }
        lines.push(format!(
            "  download: {} ({} bytes) from {}",
            ui::bytes(p.download.bytes),
            p.download.bytes,
            Escaped(&p.download.destination)
        ));
        lines.push(format!(
            "  space: {} restored",
            ui::bytes(p.space.restored_bytes)
        ));
        for n in &p.space.needs {
            lines.push(format!(
                "    {} at {}: {}",
                ui::bytes(n.bytes),
                Escaped(&n.path.display().to_string()),
                Escaped(&n.why)
            ));
        }
        lines.push("  checks:".into());
        for c in &p.checks {
            lines.push(format!("    {}", Escaped(c)));
        }
        lines.push(match (&p.estimate.seconds, &p.estimate.measured) {
            (Some(secs), Some(m)) => format!(
                "  estimate: about {} (an estimate, from {} measured on this host at {}/s)",
                ui::duration(std::time::Duration::from_secs_f64(secs.max(0.0))),
                plural(m.runs as usize, "restore or verify run"),
                ui::bytes(m.bytes_per_second() as u64)
            ),
            _ => format!(
                "  {}",
                Escaped(p.estimate.none.as_deref().unwrap_or("no estimate"))
            ),
        });
        ui.say_all(&lines)?;
        Ok(())
    }
}
