//! What every command hands back: a report that says itself through `ui` (as text, or as the
//! run's one JSON document), the exit code it calls for, and (for a recorded run) its row in the
//! execution store. The runner wraps any command in the same recording, hooks, retries and
//! metrics through this trait, so a new command only implements it in its own file.

use anyhow::Result;

use crate::exit::Exit;
use crate::journal::{HostFacts, Outcome};
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
