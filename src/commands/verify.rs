//! `litevault verify`: prove that backups are intact and restorable, by restoring them into a
//! private scratch folder, checking every hash and running `integrity_check` on each database.

use anyhow::Result;
use serde::Serialize;

use crate::catalog::{self, Backup};
use crate::cli::VerifyArgs;
use crate::config::Settings;
use crate::exit::Exit;
use crate::progress::Progress;
use crate::state::StateDir;
use crate::storage::Destination;

#[derive(Debug, Serialize)]
pub struct Report {
    pub results: Vec<Result1>,
}

#[derive(Debug, Serialize)]
pub struct Result1 {
    pub id: String,
    pub destination: String,
    pub ok: bool,
    pub databases_checked: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub exit: Exit,
}

impl Report {
    /// The worst outcome decides: integrity beats other failures.
    pub fn exit(&self) -> Exit {
        let failed: Vec<Exit> = self
            .results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| r.exit)
            .collect();
        if failed.is_empty() {
            Exit::Success
        } else if failed.contains(&Exit::Integrity) {
            Exit::Integrity
        } else {
            failed[0]
        }
    }
}

pub fn run(settings: &Settings, args: &VerifyArgs, progress: &dyn Progress) -> Result<Report> {
    let state = StateDir::open(&settings.state_dir)?;
    state.clean_scratch();
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let dests = super::open_destinations(settings, &names)?;

    let mut targets: Vec<(&Destination, Backup)> = Vec::new();
    if args.all {
        for dest in &dests {
            for b in catalog::list(dest)?.backups {
                targets.push((dest, b));
            }
        }
    } else {
        let id = args.id.as_deref().unwrap_or("latest");
        // A named backup is verified wherever it is stored, not just on the first destination.
        for dest in &dests {
            match super::find_backup(std::slice::from_ref(dest), id) {
                Ok((d, b)) => targets.push((d, b)),
                Err(e) if dests.len() == 1 => return Err(e),
                Err(_) => {}
            }
        }
        if targets.is_empty() {
            super::find_backup(&dests, id)?;
        }
    }

    let mut results = Vec::new();
    for (dest, backup) in targets {
        progress.stage(&backup.id);
        let outcome = (|| {
            let opener = super::opener_for(settings, &backup)?;
            let scratch = state.scratch("verify")?;
            super::unpack_checked(
                dest,
                &backup,
                opener.as_ref(),
                &scratch.path,
                "integrity_check",
                progress,
            )
        })();
        results.push(match outcome {
            Ok(checked) => Result1 {
                id: backup.id.clone(),
                destination: dest.name.clone(),
                ok: true,
                databases_checked: checked,
                error: None,
                exit: Exit::Success,
            },
            Err(e) => Result1 {
                id: backup.id.clone(),
                destination: dest.name.clone(),
                ok: false,
                databases_checked: Vec::new(),
                exit: crate::exit::classify(&e),
                error: Some(crate::exit::describe(&e)),
            },
        });
    }
    Ok(Report { results })
}
