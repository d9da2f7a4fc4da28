//! What `litevault backup` reports: the backup and each destination's result, with the prune
//! after it; its words, its exit code and its row in the execution store.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use crate::commands::report::{self, CommandReport};
use crate::exit::Exit;
use crate::journal::Outcome;
use crate::storage::requests::Requests;
use crate::ui::{self, plural, Escaped, Mode, Ui};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub id: String,
    pub created: String,
    pub sources: usize,
    pub files: usize,
    pub databases: usize,
    /// Bytes of data read from the sources (the archive's content).
    pub source_bytes: u64,
    /// Bytes stored (after compression and encryption).
    pub stored_bytes: u64,
    /// Bytes written to the spool in `state_dir` because a destination fell behind (0 when
    /// every destination kept up: each byte was then written once).
    pub spooled_bytes: u64,
    /// "full" or "incremental".
    pub kind: String,
    /// The backup an incremental builds on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Why a backup that could have been incremental ([incremental] is on) is full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_because: Option<String>,
    pub compression: String,
    pub encrypted: bool,
    /// The sidecar carries an SSHSIG by this host's signing key.
    pub signed: bool,
    pub seconds: f64,
    pub destinations: Vec<DestinationResult>,
    /// Why nothing was done (`--if-older-than` found recent backups everywhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_run: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<crate::commands::prune::Report>,
    /// A signal stopped the run; destinations marked ok had stored the backup before it came.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// `[encryption] none = true`: an unencrypted backup is meant, and no news.
    #[serde(skip)]
    pub unencrypted_by_choice: bool,
    /// The requests this run made, by destination (S3 only: see `storage::requests`); the
    /// runner fills them in.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Requests>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationResult {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DestinationResult {
    pub fn failed(name: &str, err: &anyhow::Error) -> Self {
        DestinationResult {
            name: name.to_string(),
            ok: false,
            bytes: None,
            error: Some(crate::exit::describe(err)),
        }
    }
}

impl CommandReport for Report {
    fn set_requests(&mut self, requests: BTreeMap<String, Requests>) {
        self.requests = requests;
    }

    /// All stored: 0; some: 3 (partial); none: 1; a signal: 130.
    fn exit(&self) -> Exit {
        let ok = self.destinations.iter().filter(|d| d.ok).count();
        let storing = match ok {
            n if n == self.destinations.len() => Exit::Success,
            0 => Exit::Failure,
            _ => Exit::Partial,
        };
        // The prune's findings count only once the backup is stored everywhere: a partial run
        // stays 3, which is what `--retries` retries.
        let prune = (storing == Exit::Success)
            .then(|| self.prune.as_ref().map(|p| p.exit()))
            .flatten();
        let interrupted = self.interrupted.then_some(Exit::Interrupted);
        Exit::worst([Some(storing), prune, interrupted].into_iter().flatten())
    }

    fn outcome(&self) -> Outcome {
        if self.skipped_run.is_some() {
            return Outcome {
                status: "skipped".into(),
                exit_code: 0,
                ..Outcome::default()
            };
        }
        let stored = self.destinations.iter().any(|d| d.ok);
        let errors = self
            .destinations
            .iter()
            .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.name)))
            .collect();
        Outcome {
            // An id only for a backup that exists somewhere.
            bytes: stored.then_some(self.stored_bytes),
            backup_id: stored.then(|| self.id.clone()),
            destinations: Some(json!(self.destinations)),
            error: report::errors(errors),
            ..report::outcome(self.exit())
        }
    }

    fn render(&self, ui: &Ui) -> Result<()> {
        let r = self;
        ui.json(r)?;
        for w in &r.warnings {
            ui.warn(w);
        }
        if let Some(why) = &r.skipped_run {
            ui.say(&format!("skipped: {}", Escaped(why)));
            return Ok(());
        }
        for s in &r.skipped {
            ui.warn(&format!("skipped {}", Escaped(s)));
        }
        if r.interrupted {
            let stored: Vec<&str> = r
                .destinations
                .iter()
                .filter(|d| d.ok)
                .map(|d| d.name.as_str())
                .collect();
            ui.error(&if stored.is_empty() {
                "interrupted by a signal; nothing was stored, and nothing half-done is listed"
                    .into()
            } else {
                format!(
                    "interrupted by a signal; backup {} was stored on {} only",
                    Escaped(&r.id),
                    stored.join(", ")
                )
            });
        }
        // Said even with --quiet: without [encryption] nobody has said that plain backups are
        // meant. `[encryption] none = true` says so, and silences it.
        if !r.encrypted && !r.unencrypted_by_choice {
            ui.warn("this backup is NOT encrypted: add an [encryption] table with recipients to encrypt backups, or `none = true` in it to store them unencrypted on purpose (and silence this warning)");
        }
        for d in r.destinations.iter().filter(|d| !d.ok) {
            let error = d.error.as_deref().unwrap_or("failed");
            // Storage errors name their destination already.
            if error.contains(&format!("destination {}", d.name)) {
                ui.error(error);
            } else {
                ui.error(&format!("destination {}: {}", d.name, Escaped(error)));
            }
        }
        let stored: Vec<&str> = r
            .destinations
            .iter()
            .filter(|d| d.ok)
            .map(|d| d.name.as_str())
            .collect();
        if let Some(why) = &r.full_because {
            ui.say(&format!("full backup: {why}"));
        }
        if ui.mode == Mode::Human && !stored.is_empty() {
            let kind = match &r.parent {
                Some(parent) => format!(" (incremental on {})", Escaped(parent)),
                None => String::new(),
            };
            ui.say(&format!(
                "backup {}{kind}: {} ({}), {} -> {} {}{} in {}; stored on {}",
                Escaped(&r.id),
                plural(r.sources, "source"),
                plural(r.files, "file"),
                ui::bytes(r.source_bytes),
                ui::bytes(r.stored_bytes),
                r.compression,
                match (r.encrypted, r.signed) {
                    (true, true) => "+age, signed",
                    (true, false) => "+age",
                    (false, true) => ", unencrypted, signed",
                    (false, false) => ", unencrypted",
                },
                ui::secs(std::time::Duration::from_secs_f64(r.seconds)),
                stored.join(", ")
            ));
        }
        if let Some(p) = &r.prune {
            // The prune after a backup lists the same destination: what the backup already
            // warned about (an archive without its sidecar) is said once.
            p.say(ui, &r.warnings)?;
        }
        Ok(())
    }
}
