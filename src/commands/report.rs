//! What every command hands back: a report that says itself through `ui` (as text, or as the
//! run's one JSON document), the exit code it calls for, and (for a recorded run) its row in the
//! execution store. The runner wraps any command in the same recording, hooks, retries and
//! metrics through these traits, so a new command implements them in its own file.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use crate::config::Settings;
use crate::exit::Exit;
use crate::journal::{HostFacts, Outcome};
use crate::progress::Progress;
use crate::storage::requests::Requests;
use crate::ui::Ui;

pub trait CommandReport {
    /// The report for a person or, with `--json`, as the run's one document. Only `ui` prints.
    fn render(&self, ui: &Ui) -> Result<()>;

    /// The exit code the report calls for, folded with [`Exit::worst`] where it has several
    /// findings.
    fn exit(&self) -> Exit {
        Exit::Success
    }

    /// What the execution store and the notification hooks are told of a recorded run.
    fn outcome(&self) -> Outcome {
        outcome(self.exit())
    }

    /// Per-host facts for `--metrics-file`, from a report about many hosts (the fleet view):
    /// written after the report, in place of this host's own metrics.
    fn host_facts(&self) -> Option<Vec<HostFacts>> {
        None
    }

    /// The requests the run made, by destination, for a report that shows them: the runner
    /// hands each attempt's to its report, the same counts the execution store keeps.
    fn set_requests(&mut self, _requests: BTreeMap<String, Requests>) {}
}

/// An outcome that says only how the run ended; reports fill in the rest.
pub fn outcome(exit: Exit) -> Outcome {
    Outcome {
        status: exit.name().into(),
        exit_code: exit.code() as i32,
        ..Outcome::default()
    }
}

/// The failures of a run, one line for the store: `None` when there are none.
pub fn errors(lines: Vec<String>) -> Option<String> {
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// The attempts of one recorded run. The runner records each, and tries again after a failed
/// one (exit 1 or 3) as often as [`Attempts::retries`] says; most commands are tried once
/// (the runner makes that from a closure), `backup --retries` more.
pub trait Attempts: Sized {
    type Report: CommandReport;

    /// One attempt; `env` is the run's environment for the hooks it runs.
    fn attempt(
        &mut self,
        settings: &Settings,
        progress: &dyn Progress,
        env: &[(String, String)],
    ) -> Result<Self::Report>;

    /// How many more attempts a failed one gets, and the wait before the first of them
    /// (doubled before each next one).
    fn retries(&self) -> (u32, Duration) {
        (0, Duration::ZERO)
    }

    /// A failed attempt that will be tried again: keep what it did, and aim the next one at
    /// the rest. Says why it failed, for the warning.
    fn again(&mut self, failed: Self::Report) -> String {
        format!("exit {}", failed.exit().code())
    }

    /// The run's report: the last attempt's, with what the earlier ones did.
    fn last(self, last: Result<Self::Report>) -> Result<Self::Report> {
        last
    }
}
