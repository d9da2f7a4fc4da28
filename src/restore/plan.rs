//! `restore --dry-run`: the plan of a restore, made from the listing and the sidecars alone. No
//! archive is downloaded, nothing is created or locked, no hook runs. It owns what the plan
//! says: the backup (chosen and refused exactly as the restore would, through the same
//! checks), every link it reads, the bytes downloaded and from where, the room needed, the
//! checks that will run, and an estimate of the time from this host's measured restores.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{choose, selected_size, selection, At, Choice, Options, Selection, Target};
use crate::catalog::Backup;
use crate::commands::{open_destinations_as_of, opener_for};
use crate::config::Settings;
use crate::journal::{Journal, Speed};

/// What a restore would do; its command renders it.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// Always true: a plan, nothing done.
    pub dry_run: bool,
    pub id: String,
    pub destination: String,
    /// "to" or "in-place".
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<PathBuf>,
    pub sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<At>,
    /// Every backup read, the full backup first and the one restored last.
    pub chain: Vec<Link>,
    pub download: Download,
    pub space: Space,
    pub checks: Vec<String>,
    pub estimate: Estimate,
    /// What was passed over, and other remarks, as the restore would say them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Link {
    pub id: String,
    /// "full" or "incremental".
    pub kind: String,
    pub created: String,
    /// The archive's stored size (compressed and encrypted), as its sidecar records it.
    pub stored_bytes: u64,
    pub destination: String,
}

#[derive(Debug, Serialize)]
pub struct Download {
    /// The sum of the links' stored bytes.
    pub bytes: u64,
    pub archives: usize,
    pub destination: String,
}

#[derive(Debug, Serialize)]
pub struct Space {
    /// What the restore writes: the selected sources whole.
    pub restored_bytes: u64,
    /// Where room is needed, and why.
    pub needs: Vec<Need>,
}

#[derive(Debug, Serialize)]
pub struct Need {
    pub path: PathBuf,
    pub bytes: u64,
    pub why: String,
}

/// An estimate of the time, never a promise: the restored bytes over this host's measured
/// speed.
#[derive(Debug, Serialize)]
pub struct Estimate {
    /// Always "estimate".
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<Speed>,
    /// Why there is no estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub none: Option<String>,
}

/// How many of the latest measured runs the estimate averages over.
const MEASURED_RUNS: u32 = 20;

/// The plan of the restore `options` describe; refused where the restore would refuse,
/// before its first download.
pub fn plan(settings: &Settings, options: &Options) -> Result<Plan> {
    if let Target::Folder { same_owner, .. } = &options.target {
        super::folder::check_same_owner(*same_owner)?;
    }
    let names: Vec<String> = options.dest.iter().cloned().collect();
    let dests = open_destinations_as_of(settings, &names, options.as_of)?;
    let Choice {
        dest,
        backup,
        notes,
        at,
    } = choose(&dests, options)?;
    let manifest = &backup.sidecar.manifest;
    let mut in_place = None;
    let (mode, to, sources, needs) = match &options.target {
        Target::Folder { dir, .. } => {
            let sources = selection(&backup, &options.only)?;
            let to = super::folder::check_to(dir, &sources.items)?;
            let need = Need {
                path: to.clone(),
                bytes: selected_size(manifest, &sources),
                why: "unpacked beside it, then moved in".into(),
            };
            ("to", Some(to), sources, vec![need])
        }
        Target::InPlace { safety_backup, .. } => {
            let targets = super::in_place::prepare(settings, &backup, &options.only)?;
            let sources =
                Selection::of_sources(targets.iter().map(|(s, _)| s.name.clone()).collect());
            let mut needs = vec![Need {
                path: settings.state_dir.clone(),
                bytes: selected_size(manifest, &sources),
                why: "unpacked and checked there first".into(),
            }];
            let beside = super::in_place::space_needs(settings, &targets, *safety_backup);
            for (i, (path, bytes)) in beside.into_iter().enumerate() {
                let why = match targets.get(i) {
                    Some((source, _)) => format!("room beside {}, then swapped in", source.name),
                    None => "the safety backup of the current state".into(),
                };
                needs.push(Need { path, bytes, why });
            }
            in_place = Some((targets, *safety_backup));
            ("in-place", None, sources, needs)
        }
    };
    opener_for(settings, &backup)?;
    let chain = super::unpack::chain_for(dest, &backup)?;
    // Where the restore checks the room it needs, once the unpacking is done.
    if let Some((targets, safety_backup)) = &in_place {
        super::in_place::check_space(settings, targets, *safety_backup)?;
    }
    let restored_bytes = selected_size(manifest, &sources);
    Ok(Plan {
        dry_run: true,
        id: backup.id.clone(),
        destination: dest.name.clone(),
        mode: mode.into(),
        to,
        checks: checks(&backup, &chain, &sources, &options.target),
        download: Download {
            bytes: chain.iter().map(|l| l.sidecar.archive.bytes).sum(),
            archives: chain.len(),
            destination: dest.name.clone(),
        },
        chain: chain.iter().map(link).collect(),
        sources: sources.items,
        at,
        space: Space {
            restored_bytes,
            needs,
        },
        estimate: estimate(settings, restored_bytes),
        notes,
    })
}

fn link(b: &Backup) -> Link {
    Link {
        id: b.id.clone(),
        kind: b.sidecar.manifest.kind.clone(),
        created: humantime::format_rfc3339_seconds(b.created).to_string(),
        stored_bytes: b.sidecar.archive.bytes,
        destination: b.destination.clone(),
    }
}

/// The checks the restore runs, in the order it runs them.
fn checks(backup: &Backup, chain: &[Backup], sources: &Selection, target: &Target) -> Vec<String> {
    let databases = backup
        .sidecar
        .manifest
        .databases
        .iter()
        .filter(|d| sources.covers(&d.path))
        .count();
    let archives = if chain.len() == 1 {
        "the archive".to_string()
    } else {
        format!("each of the {} archives", chain.len())
    };
    let mut out = vec![format!(
        "BLAKE3 of the stored bytes of {archives}, against its sidecar"
    )];
    if chain.iter().any(|l| l.sidecar.archive.encryption != "none") {
        out.push("age decryption with this host's identity".into());
    }
    out.push("BLAKE3 of each entry; entries that would land outside the folder refused".into());
    if chain.len() > 1 {
        let links = match chain.len() - 1 {
            1 => "the incremental link".to_string(),
            n => format!("each of the {n} incremental links"),
        };
        out.push(format!(
            "{links} applied only onto the database it was taken from (BLAKE3 before), giving the database it recorded (BLAKE3 after)"
        ));
    }
    let pragma = match target {
        Target::Folder { deep: true, .. } | Target::InPlace { .. } => "integrity_check",
        Target::Folder { deep: false, .. } => "quick_check",
    };
    if databases > 0 {
        out.push(format!("{pragma} of every database ({databases})"));
    }
    if let Target::InPlace { .. } = target {
        if databases > 0 {
            out.push("quick_check of each database again where it lands".into());
        }
    }
    out
}

/// The restored bytes over this host's measured speed; none without a measure. Read from the
/// execution store without creating or changing it.
fn estimate(settings: &Settings, restored: u64) -> Estimate {
    let measured = if settings.state_dir.is_dir() {
        Journal::open_to_read(&settings.state_dir)
            .and_then(|j| match j {
                Some(j) => j.speed(&["restore", "verify"], MEASURED_RUNS),
                None => Ok(None),
            })
            .map_err(|e| format!("no estimate: the execution store cannot be read: {e:#}"))
    } else {
        Ok(None)
    };
    let none = |why: String| Estimate {
        kind: "estimate",
        seconds: None,
        measured: None,
        none: Some(why),
    };
    match measured {
        Ok(Some(speed)) => Estimate {
            kind: "estimate",
            seconds: Some(restored as f64 / speed.bytes_per_second()),
            measured: Some(speed),
            none: None,
        },
        Ok(None) => none("no estimate: no restore or verify has been measured on this host".into()),
        Err(why) => none(why),
    }
}
