//! `litevault backup`: snapshot every source, build the archive once, store it on each
//! destination, and only then make it visible with its sidecar.

use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::archive::manifest::{
    archive_extension, compression_name, ArchiveInfo, Manifest, Sidecar, FORMAT_VERSION,
};
use crate::archive::writer::{add_sources, ArchiveWriter};
use crate::catalog;
use crate::cli::BackupArgs;
use crate::config::Settings;
use crate::crypto::Sealer;
use crate::exit::Exit;
use crate::progress::Progress;
use crate::state::StateDir;
use crate::storage::fanout::FanOut;
use crate::storage::Destination;

#[derive(Debug, Serialize)]
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
    pub compression: String,
    pub encrypted: bool,
    pub seconds: f64,
    pub destinations: Vec<DestinationResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<crate::commands::prune::Report>,
}

#[derive(Debug, Serialize)]
pub struct DestinationResult {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// All stored: 0; some: 3 (partial); none: 1.
    pub fn exit(&self) -> Exit {
        let ok = self.destinations.iter().filter(|d| d.ok).count();
        if ok == self.destinations.len() {
            match &self.prune {
                Some(p) => p.exit(),
                None => Exit::Success,
            }
        } else if ok == 0 {
            Exit::Failure
        } else {
            Exit::Partial
        }
    }
}

pub fn run(settings: &Settings, args: &BackupArgs, progress: &dyn Progress) -> Result<Report> {
    let started = Instant::now();
    let state = StateDir::open(&settings.state_dir)?;
    let _lock = state.lock(args.wait)?;
    state.clean_scratch();

    // A destination that cannot even be opened is a failed destination, not a failed run.
    let mut dests = Vec::new();
    let mut unopened = Vec::new();
    let mut first_error = None;
    for cfg in settings.select_destinations(&args.dest)? {
        match super::open_destination(settings, cfg) {
            Ok(d) => dests.push(d),
            Err(e) => {
                unopened.push(DestinationResult {
                    name: cfg.name.clone(),
                    ok: false,
                    bytes: None,
                    error: Some(crate::exit::describe(&e)),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    if dests.is_empty() {
        if let Some(e) = first_error {
            // Nothing to store on: the (first) reason is the run's error, with its exit code.
            return Err(e.context(format!("destination {}", unopened[0].name)));
        }
    }
    let sealer = settings.encryption.as_ref().map(Sealer::load).transpose()?;
    let warnings = Vec::new();
    // Cleaning up is also the preflight: a destination that cannot even be listed (no such
    // bucket, no permission, server down) is failed now, before the sources are read.
    let (dests, unlisted): (Vec<_>, Vec<_>) = dests
        .into_iter()
        .map(|dest| {
            let cleaned = catalog::clean_leftovers(&dest);
            (dest, cleaned)
        })
        .partition(|(_, cleaned)| cleaned.is_ok());
    let dests: Vec<Destination> = dests.into_iter().map(|(d, _)| d).collect();
    for (dest, cleaned) in unlisted {
        let e = cleaned.expect_err("partitioned on errors");
        unopened.push(DestinationResult {
            name: dest.name.clone(),
            ok: false,
            bytes: None,
            error: Some(crate::exit::describe(&e)),
        });
        first_error.get_or_insert(e);
    }
    if let (true, Some(e)) = (dests.is_empty(), first_error) {
        return Err(e);
    }

    let created = SystemTime::now();
    let id = catalog::new_id(created);
    let compression = compression_name(settings.compression).to_string();
    let object = format!("{id}.{}", archive_extension(&compression, sealer.is_some()));
    progress.set_total(estimate(settings));

    let (outcomes, built) = std::thread::scope(|scope| {
        let mut fan = FanOut::start(scope, &dests, &object);
        let built = build(
            settings,
            &id,
            created,
            sealer.as_ref(),
            &mut fan,
            progress,
            &object,
            &compression,
        );
        let commit = built.as_ref().ok().map(|(sidecar, _, _)| {
            (
                catalog::sidecar_name(&id),
                serde_json::to_vec_pretty(sidecar).expect("a sidecar always serialises"),
            )
        });
        (fan.finish(commit), built)
    });
    let (sidecar, skipped, source_bytes) = match built {
        Ok(b) => b,
        Err(e) => {
            // When every upload failed, their reasons are the story; the pipeline only noticed.
            let why: Vec<String> = dests
                .iter()
                .zip(&outcomes)
                .filter_map(|(d, o)| o.as_ref().err().map(|e| format!("{}: {e:#}", d.name)))
                .filter(|m| !m.contains("aborted before the archive was complete"))
                .collect();
            return Err(if why.is_empty() {
                e
            } else {
                e.context(why.join("; "))
            });
        }
    };

    let mut destinations: Vec<DestinationResult> = dests
        .iter()
        .zip(outcomes)
        .map(|(dest, outcome)| match outcome {
            Ok(bytes) => DestinationResult {
                name: dest.name.clone(),
                ok: true,
                bytes: Some(bytes),
                error: None,
            },
            Err(e) => DestinationResult {
                name: dest.name.clone(),
                ok: false,
                bytes: None,
                error: Some(crate::exit::describe(&e)),
            },
        })
        .collect();
    destinations.extend(unopened);

    let mut report = Report {
        id: id.clone(),
        created: sidecar.manifest.created.clone(),
        sources: sidecar.manifest.sources.len(),
        files: sidecar.manifest.files.len(),
        databases: sidecar.manifest.databases.len(),
        source_bytes,
        stored_bytes: sidecar.archive.bytes,
        compression,
        encrypted: sealer.is_some(),
        seconds: 0.0,
        destinations,
        skipped,
        warnings,
        prune: None,
    };

    if settings.prune_after_backup && report.destinations.iter().any(|d| d.ok) {
        let stored: Vec<String> = report
            .destinations
            .iter()
            .filter(|d| d.ok)
            .map(|d| d.name.clone())
            .collect();
        let opened: Vec<_> = dests
            .into_iter()
            .filter(|d| stored.contains(&d.name))
            .collect();
        report.prune = Some(
            super::prune::apply(settings, &opened, false).context("pruning after the backup")?,
        );
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Stream every source through the archive layers into the fan-out; returns the sidecar to
/// commit, what was skipped, and the bytes read from sources.
#[allow(clippy::too_many_arguments)]
fn build(
    settings: &Settings,
    id: &str,
    created: SystemTime,
    sealer: Option<&Sealer>,
    fan: &mut FanOut<'_>,
    progress: &dyn Progress,
    object: &str,
    compression: &str,
) -> Result<(Sidecar, Vec<String>, u64)> {
    let mut writer =
        ArchiveWriter::new(fan, settings.compression, sealer, settings.workers, created)?;
    let (sources, databases, skipped) = add_sources(&mut writer, settings, progress)?;
    let manifest = Manifest {
        format: "litevault".into(),
        format_version: FORMAT_VERSION,
        backup_id: id.to_string(),
        created: humantime::format_rfc3339_millis(created).to_string(),
        host: settings.name.clone(),
        hostname: hostname(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "full".into(),
        parent: None,
        tags: Vec::new(),
        sources,
        files: Vec::new(),
        databases,
    };
    let written = writer.finish(manifest)?;
    let source_bytes = written.manifest.total_size();
    let sidecar = Sidecar {
        format: "litevault-sidecar".into(),
        format_version: FORMAT_VERSION,
        archive: ArchiveInfo {
            object: object.to_string(),
            bytes: written.bytes,
            blake3: written.blake3,
            compression: compression.to_string(),
            encryption: if sealer.is_some() {
                "age".into()
            } else {
                "none".into()
            },
        },
        manifest: written.manifest,
    };
    Ok((sidecar, skipped.0, source_bytes))
}

/// The sources' size on disk, for the progress bar only.
fn estimate(settings: &Settings) -> u64 {
    settings
        .sources
        .iter()
        .map(|s| {
            std::fs::metadata(&s.path)
                .map(|m| if m.is_file() { m.len() } else { 0 })
                .unwrap_or(0)
        })
        .sum()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
