//! A run's life around a command: the config it reads, then (for a recorded command) its row
//! in the execution store, its retries, the notification hooks and the metrics file, and at the
//! end its report through `ui` and its exit code. Every command passes through here the same
//! way; `app`'s table only says which of these each one gets.
//!
//! Nothing here may turn a success into a failure: a store that cannot be written, a failing
//! notification hook, a metrics file that cannot be replaced are warnings.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::catalog;
use crate::commands;
use crate::commands::report::{self, Attempts, CommandReport};
use crate::config::{self, Settings};
use crate::exit::{self, Exit};
use crate::journal::{DestinationFacts, Journal, Metrics, Outcome};
use crate::progress::{Progress, Silent};
use crate::ui::Ui;
use crate::verified::{Record, Stored};

/// One invocation of litevault: where its config and metrics file are, and its `ui`.
pub struct Runner<'a> {
    ui: &'a Ui,
    /// `--config`; else `$LITEVAULT_CONFIG`, else the default path.
    config: Option<&'a Path>,
    /// `--metrics-file`.
    metrics_flag: Option<&'a Path>,
}

/// What is recorded of a command's run.
#[derive(Clone, Copy)]
pub struct Recording {
    name: &'static str,
    bar: bool,
    creates_state: bool,
}

impl Recording {
    /// A run recorded as `name`, creating `state_dir` for the store if it is not there yet.
    pub const fn of(name: &'static str) -> Recording {
        Recording {
            name,
            bar: false,
            creates_state: true,
        }
    }

    /// With a progress bar on a terminal, labelled with the command's name.
    pub const fn with_bar(self) -> Recording {
        Recording { bar: true, ..self }
    }

    /// For a command that creates nothing (`check`): without a `state_dir` yet the run is not
    /// recorded, and the command itself reports the missing folder.
    pub const fn if_state_exists(self) -> Recording {
        Recording {
            creates_state: false,
            ..self
        }
    }
}

impl<'a> Runner<'a> {
    pub fn new(ui: &'a Ui, config: Option<&'a Path>, metrics_flag: Option<&'a Path>) -> Runner<'a> {
        Runner {
            ui,
            config,
            metrics_flag,
        }
    }

    /// A command that needs no config (key generation, completions, man pages).
    pub fn bare<R: CommandReport>(&self, f: impl FnOnce() -> Result<R>) -> Result<Exit> {
        self.end(&[], f())
    }

    /// A command that reads the config and is not recorded (list, show, stats, history).
    pub fn reads<R: CommandReport>(&self, f: impl FnOnce(&Settings) -> Result<R>) -> Result<Exit> {
        let settings = self.settings()?;
        self.end(&[], f(&settings))
    }

    /// A recorded command, tried once: `f` gets the config, the progress to report to, and the
    /// run's environment for the hooks it runs.
    pub fn recorded<R, F>(&self, how: Recording, f: F) -> Result<Exit>
    where
        R: CommandReport,
        F: FnMut(&Settings, &dyn Progress, &[(String, String)]) -> Result<R>,
    {
        self.retried(how, Once(f))
    }

    /// A recorded command whose failed attempts may be tried again (`backup --retries`).
    pub fn retried<A: Attempts>(&self, how: Recording, attempts: A) -> Result<Exit> {
        let settings = self.settings()?;
        let mut recorder = Recorder::open(&settings, self.metrics_flag, how.creates_state);
        let progress: Box<dyn Progress> = if how.bar {
            self.ui.progress(how.name)
        } else {
            Box::new(Silent)
        };
        let report = recorder.run(how.name, attempts, progress.as_ref());
        // The bar is cleared before anything is said under it.
        drop(progress);
        self.end(&recorder.warnings, report)
    }

    fn settings(&self) -> Result<Settings> {
        let path = config::locate(self.config, std::env::var_os(crate::cli::CONFIG_ENV));
        config::load(&path)
    }

    /// How every command ends: the runner's warnings, then the report in words (or as the JSON
    /// document) and its exit code; a report about many hosts goes to `--metrics-file` too.
    fn end<R: CommandReport>(&self, warnings: &[String], report: Result<R>) -> Result<Exit> {
        for w in warnings {
            self.ui.warn(w);
        }
        let report = report?;
        report.render(self.ui)?;
        // Only the flag: the config's metrics_file is this host's own, which the fleet view
        // must not replace.
        if let (Some(facts), Some(path)) = (report.host_facts(), self.metrics_flag) {
            let metrics = Metrics {
                path: path.to_path_buf(),
            };
            metrics
                .write_hosts(&facts)
                .map_err(|e| e.context("writing the fleet metrics"))?;
        }
        Ok(report.exit())
    }
}

/// A command tried once: the closure is its one attempt.
struct Once<F>(F);

impl<R, F> Attempts for Once<F>
where
    R: CommandReport,
    F: FnMut(&Settings, &dyn Progress, &[(String, String)]) -> Result<R>,
{
    type Report = R;

    fn attempt(
        &mut self,
        settings: &Settings,
        progress: &dyn Progress,
        env: &[(String, String)],
    ) -> Result<R> {
        (self.0)(settings, progress, env)
    }
}

/// One recorded run: its execution store and metrics file, and the warnings about them for
/// the UI (the runner itself never prints).
struct Recorder<'s> {
    settings: &'s Settings,
    journal: Option<Journal>,
    metrics: Option<Metrics>,
    warnings: Vec<String>,
}

impl<'s> Recorder<'s> {
    fn open(settings: &'s Settings, metrics_flag: Option<&Path>, creates_state: bool) -> Self {
        let mut warnings = Vec::new();
        let record = creates_state || settings.state_dir.is_dir();
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
        Recorder {
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

    /// Run `command`: each attempt is its own recorded run; a failed one (exit 1 or 3) is tried
    /// again, as often as the command asks, after a delay doubled each time; then the
    /// notification hooks and the metrics, once, with the run's final report.
    fn run<A: Attempts>(
        &mut self,
        command: &str,
        mut attempts: A,
        progress: &dyn Progress,
    ) -> Result<A::Report> {
        let (retries, mut delay) = attempts.retries();
        let mut attempt = 1;
        let (result, env, outcome) = loop {
            let run_id = self.start(command, attempt);
            let env = self.base_env(command, run_id, attempt);
            let mut result = attempts.attempt(self.settings, progress, &env);
            let requests = crate::storage::requests::take();
            if let Ok(report) = &mut result {
                report.set_requests(requests.clone());
            }
            let outcome = Outcome {
                requests,
                ..outcome_of(&result)
            };
            self.finish(run_id, &outcome);
            let code = match &result {
                Ok(r) => r.exit(),
                Err(e) => exit::classify(e),
            };
            let retryable = matches!(code, Exit::Failure | Exit::Partial);
            if !retryable || attempt > retries {
                break (result, env, outcome);
            }
            let why = match result {
                Ok(report) => attempts.again(report),
                Err(e) => format!("{e:#}"),
            };
            self.warnings.push(format!(
                "attempt {attempt} failed ({why}); retrying in {}",
                crate::ui::duration(delay)
            ));
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until && !crate::interrupt::requested() {
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Err(e) = crate::interrupt::check() {
                let stopped: Result<A::Report> = Err(e);
                self.notify(&env, &outcome_of(&stopped));
                return stopped;
            }
            delay = delay.saturating_mul(2).min(Duration::from_secs(3600));
            attempt += 1;
        };
        let result = attempts.last(result);
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
        // The journal is open, so the state folder is there.
        let record = crate::state::StateDir::open(&self.settings.state_dir)
            .and_then(|s| Record::open(&s))
            .map_err(|e| {
                self.warnings
                    .push(format!("metrics: no verification record: {e:#}"))
            })
            .ok();
        for cfg in &self.settings.destinations {
            if let crate::storage::url::Location::File { root, create: true } = &cfg.location {
                // Not made yet (the first backup makes it): nothing stored, and a metrics file
                // is no reason to create it.
                if !root.exists() {
                    facts.push(DestinationFacts {
                        name: cfg.name.clone(),
                        backups: 0,
                        newest_age: None,
                        sequence: None,
                        missing: None,
                        verified: None,
                    });
                    continue;
                }
            }
            let now = std::time::SystemTime::now();
            let looked = commands::open_destination(self.settings, cfg).and_then(|d| {
                let listing = catalog::list_at(&d, now)?;
                let (line, notes) = commands::watch_line(self.settings, &d, &listing.backups, now);
                let stored: Vec<Stored> = listing
                    .backups
                    .iter()
                    .map(|b| Stored::of(b, false))
                    .collect();
                let verified = record
                    .as_ref()
                    .and_then(|r| r.seen(&d.name).ok())
                    .map(|seen| crate::verified::coverage(&stored, &seen, now))
                    .map(|c| (c.fraction, c.oldest_unverified));
                Ok((
                    catalog::summarize(&listing, &d.name, now),
                    line,
                    notes,
                    verified,
                ))
            });
            match looked {
                Ok((s, line, notes, verified)) => {
                    self.warnings.extend(notes);
                    facts.push(DestinationFacts {
                        name: cfg.name.clone(),
                        backups: s.backups,
                        newest_age: s.newest_age,
                        sequence: line.as_ref().and_then(|l| l.newest),
                        missing: line.as_ref().map(|l| l.missing()),
                        verified,
                    })
                }
                Err(e) => self.warnings.push(format!(
                    "metrics: cannot list destination {}: {e:#}",
                    cfg.name
                )),
            }
        }
        // The listings just made for the metrics are requests too, of no run's row.
        if let Err(e) = journal.add_requests(&crate::storage::requests::take()) {
            self.warnings
                .push(format!("could not record this run's last requests: {e:#}"));
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
        Err(e) => Outcome {
            error: Some(exit::describe(e)),
            ..report::outcome(exit::classify(e))
        },
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
