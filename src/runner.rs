//! A run's life around a command: recorded in the execution store, retried when asked,
//! followed by the notification hooks and the metrics file.
//!
//! Nothing here may turn a success into a failure: a store that cannot be written, a failing
//! notification hook, a metrics file that cannot be replaced are warnings.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::catalog;
use crate::cli::BackupArgs;
use crate::commands::report::CommandReport;
use crate::commands::{self, backup};
use crate::config::Settings;
use crate::exit::{self, Exit};
use crate::journal::{DestinationFacts, Journal, Metrics, Outcome};
use crate::progress::Progress;

pub struct Runner<'a> {
    settings: &'a Settings,
    journal: Option<Journal>,
    metrics: Option<Metrics>,
    /// Warnings for the UI (the runner itself never prints).
    pub warnings: Vec<String>,
}

impl<'a> Runner<'a> {
    pub fn new(settings: &'a Settings, metrics_flag: Option<&Path>) -> Runner<'a> {
        Runner::opened(settings, metrics_flag, true)
    }

    /// A runner for `check`, which creates nothing: without a `state_dir` yet, the run is not
    /// recorded (`check` itself reports the missing folder).
    pub fn without_creating(settings: &'a Settings, metrics_flag: Option<&Path>) -> Runner<'a> {
        Runner::opened(settings, metrics_flag, settings.state_dir.is_dir())
    }

    fn opened(settings: &'a Settings, metrics_flag: Option<&Path>, record: bool) -> Runner<'a> {
        let mut warnings = Vec::new();
        let journal = record
            .then(|| {
                crate::state::StateDir::open(&settings.state_dir)
                    .and_then(|s| Journal::open(&s))
                    .map_err(|e| warnings.push(format!("this run is not recorded: {e:#}")))
                    .ok()
            })
            .flatten();
        let metrics = metrics_flag
            .map(Path::to_path_buf)
            .or_else(|| settings.metrics_file.clone())
            .map(|path| Metrics { path });
        Runner {
            settings,
            journal,
            metrics,
            warnings,
        }
    }

    fn base_env(&self, command: &str, run_id: Option<i64>, attempt: u32) -> Vec<(String, String)> {
        let mut env = vec![
            ("LITEVAULT_COMMAND".to_string(), command.to_string()),
            ("LITEVAULT_HOST".to_string(), self.settings.name.clone()),
            (
                "LITEVAULT_CONFIG".to_string(),
                self.settings.config_path.display().to_string(),
            ),
            ("LITEVAULT_ATTEMPT".to_string(), attempt.to_string()),
        ];
        if let Some(id) = run_id {
            env.push(("LITEVAULT_RUN_ID".to_string(), id.to_string()));
        }
        env
    }

    /// Run `f` as one recorded run of `command`, then the notification hooks and metrics.
    pub fn record<R: CommandReport>(
        &mut self,
        command: &str,
        f: impl FnOnce(&[(String, String)]) -> Result<R>,
    ) -> Result<R> {
        let run_id = self.start(command, 1);
        let env = self.base_env(command, run_id, 1);
        let result = f(&env);
        let outcome = outcome_of(&result);
        self.finish(run_id, &outcome);
        self.notify(&env, &outcome);
        self.write_metrics();
        result
    }

    /// `backup` with `--retries`: a failed attempt is retried after a doubling delay, only on
    /// the destinations that failed; each attempt is its own recorded run.
    pub fn backup(&mut self, args: &BackupArgs, progress: &dyn Progress) -> Result<backup::Report> {
        let mut dests = args.dest.clone();
        let mut delay = args.retry_delay;
        let mut stored: Vec<backup::DestinationResult> = Vec::new();
        let mut earlier: Option<backup::Report> = None;
        let mut attempt = 1;
        let (result, env, outcome) = loop {
            let run_id = self.start("backup", attempt);
            let env = self.base_env("backup", run_id, attempt);
            let attempt_args = BackupArgs {
                dest: dests.clone(),
                ..args.clone()
            };
            let result = backup::run(self.settings, &attempt_args, progress, &env);
            let outcome = outcome_of(&result);
            self.finish(run_id, &outcome);
            let code = match &result {
                Ok(r) => r.exit(),
                Err(e) => exit::classify(e),
            };
            let retryable = matches!(code, Exit::Failure | Exit::Partial);
            if !retryable || attempt > args.retries {
                break (result, env, outcome);
            }
            let why = match &result {
                Ok(r) => format!(
                    "{} destination(s) failed",
                    r.destinations.iter().filter(|d| !d.ok).count()
                ),
                Err(e) => format!("{e:#}"),
            };
            if let Ok(report) = result {
                // Keep what is stored; the next attempt goes only where it failed.
                stored.extend(report.destinations.iter().filter(|d| d.ok).cloned());
                dests = report
                    .destinations
                    .iter()
                    .filter(|d| !d.ok)
                    .map(|d| d.name.clone())
                    .collect();
                earlier = Some(report);
            }
            self.warnings.push(format!(
                "attempt {attempt} failed ({why}); retrying in {}",
                crate::ui::duration(delay)
            ));
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until && !crate::interrupt::requested() {
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Err(e) = crate::interrupt::check() {
                let stopped: Result<backup::Report> = Err(e);
                self.notify(&env, &outcome_of(&stopped));
                return stopped;
            }
            delay = delay.saturating_mul(2).min(Duration::from_secs(3600));
            attempt += 1;
        };
        // Earlier attempts' successes belong to the run's final report, even when the last
        // attempt failed as a whole.
        let result = match (result, earlier) {
            (Ok(mut report), _) => {
                let mut all = stored;
                all.extend(report.destinations);
                report.destinations = all;
                Ok(report)
            }
            (Err(e), Some(mut report)) if !stored.is_empty() => {
                let failed = dests
                    .iter()
                    .map(|name| backup::DestinationResult::failed(name, &e));
                report.destinations = stored.into_iter().chain(failed).collect();
                Ok(report)
            }
            (Err(e), _) => Err(e),
        };
        let outcome = match &result {
            Ok(r) => r.outcome(),
            Err(_) => outcome,
        };
        self.notify(&env, &outcome);
        self.write_metrics();
        result
    }

    fn start(&mut self, command: &str, attempt: u32) -> Option<i64> {
        let journal = self.journal.as_ref()?;
        match journal.start(command, attempt) {
            Ok(id) => Some(id),
            Err(e) => {
                self.warnings
                    .push(format!("this run is not recorded: {e:#}"));
                None
            }
        }
    }

    fn finish(&mut self, run_id: Option<i64>, outcome: &Outcome) {
        if let (Some(journal), Some(id)) = (&self.journal, run_id) {
            if let Err(e) = journal.finish(id, outcome, self.settings.history) {
                self.warnings
                    .push(format!("could not record the end of this run: {e:#}"));
            }
        }
    }

    /// `on_success` or `on_failure`, with the run's facts. A skipped run is a success.
    fn notify(&mut self, base: &[(String, String)], outcome: &Outcome) {
        let hooks = &self.settings.hooks;
        let (name, hook) = if outcome.exit_code == 0 {
            ("on_success", &hooks.on_success)
        } else {
            ("on_failure", &hooks.on_failure)
        };
        let Some(hook) = hook else { return };
        let mut env = base.to_vec();
        env.extend(outcome_env(outcome));
        if let Err(e) = crate::hooks::run(name, hook, &env, hooks.timeout) {
            self.warnings
                .push(format!("{e:#} (the run's own result stands)"));
        }
    }

    fn write_metrics(&mut self) {
        let (Some(metrics), Some(journal)) = (&self.metrics, &self.journal) else {
            return;
        };
        let mut facts = Vec::new();
        for cfg in &self.settings.destinations {
            if let crate::storage::url::Location::File { root, create: true } = &cfg.location {
                // Not made yet (the first backup makes it): nothing stored, and a metrics file
                // is no reason to create it.
                if !root.exists() {
                    facts.push(DestinationFacts {
                        name: cfg.name.clone(),
                        backups: 0,
                        newest_age: None,
                    });
                    continue;
                }
            }
            let summary =
                commands::open_destination(self.settings, cfg).and_then(|d| catalog::summary(&d));
            match summary {
                Ok(s) => facts.push(DestinationFacts {
                    name: cfg.name.clone(),
                    backups: s.backups,
                    newest_age: s.newest_age,
                }),
                Err(e) => self.warnings.push(format!(
                    "metrics: cannot list destination {}: {e:#}",
                    cfg.name
                )),
            }
        }
        if let Err(e) = metrics.write(journal, &self.settings.name, &facts) {
            self.warnings
                .push(format!("could not write the metrics file: {e:#}"));
        }
    }
}

fn outcome_of<R: CommandReport>(result: &Result<R>) -> Outcome {
    match result {
        Ok(report) => report.outcome(),
        Err(e) => {
            let code = exit::classify(e);
            Outcome {
                status: code.name().into(),
                exit_code: code.code() as i32,
                error: Some(exit::describe(e)),
                ..Outcome::default()
            }
        }
    }
}

fn outcome_env(o: &Outcome) -> Vec<(String, String)> {
    let mut env = vec![
        ("LITEVAULT_STATUS".to_string(), o.status.clone()),
        ("LITEVAULT_EXIT_CODE".to_string(), o.exit_code.to_string()),
        (
            "LITEVAULT_BACKUP_ID".to_string(),
            o.backup_id.clone().unwrap_or_default(),
        ),
        (
            "LITEVAULT_ERROR".to_string(),
            o.error.clone().unwrap_or_default(),
        ),
        (
            "LITEVAULT_BYTES".to_string(),
            o.bytes.map(|b| b.to_string()).unwrap_or_default(),
        ),
    ];
    if let Some(serde_json::Value::Array(dests)) = &o.destinations {
        let names = |ok: bool| {
            dests
                .iter()
                .filter(|d| d["ok"].as_bool() == Some(ok))
                .filter_map(|d| d["name"].as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        env.push(("LITEVAULT_DESTINATIONS_OK".to_string(), names(true)));
        env.push(("LITEVAULT_DESTINATIONS_FAILED".to_string(), names(false)));
    }
    env
}
