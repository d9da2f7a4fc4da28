//! Building one backup's archive: every source streamed through the archive layers into the
//! fan-out, and the manifest and sidecar that describe what was built.

use std::time::SystemTime;

use anyhow::Result;

use crate::archive::gather::{add_sources, Pages};
use crate::archive::manifest::{ArchiveInfo, Manifest, Sidecar, FORMAT_VERSION, FULL_VERSION};
use crate::archive::writer::ArchiveWriter;
use crate::config::Settings;
use crate::crypto::Sealer;
use crate::incremental::plan::Plan;
use crate::progress::Progress;
use crate::source::discover::Inventory;
use crate::storage::fanout::FanOut;

/// What names and marks a backup.
pub(super) struct Meta<'a> {
    pub(super) id: &'a str,
    pub(super) created: SystemTime,
    pub(super) object: &'a str,
    pub(super) compression: &'a str,
    pub(super) tags: &'a [String],
    pub(super) state_id: Option<&'a str>,
}

/// Stream every source through the archive layers into the fan-out; returns the sidecar to
/// commit, what was skipped, the bytes read from sources, and (with `[incremental]`) the pages
/// for the next page index.
#[allow(clippy::type_complexity)]
pub(super) fn build(
    settings: &Settings,
    meta: Meta<'_>,
    sealer: Option<&Sealer>,
    plan: &Plan,
    inventory: Inventory<'_>,
    fan: &mut FanOut<'_>,
    progress: &dyn Progress,
) -> Result<(
    Sidecar,
    Vec<String>,
    u64,
    Option<Vec<crate::incremental::pageindex::DbPages>>,
)> {
    let mut writer = ArchiveWriter::new(
        fan,
        settings.compression,
        sealer,
        settings.workers,
        meta.created,
    )?;
    let parent = match plan {
        Plan::Incremental { index } => Some(index),
        Plan::Full { .. } => None,
    };
    let keep = settings.incremental.is_some();
    let added = add_sources(
        &mut writer,
        settings,
        inventory,
        progress,
        Pages { keep, parent },
    )?;
    let version = if parent.is_some() {
        FORMAT_VERSION
    } else {
        FULL_VERSION
    };
    let manifest = Manifest {
        format: "litevault".into(),
        format_version: version,
        backup_id: meta.id.to_string(),
        created: humantime::format_rfc3339_millis(meta.created).to_string(),
        host: settings.name.clone(),
        hostname: hostname(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kind: if parent.is_some() {
            "incremental"
        } else {
            "full"
        }
        .into(),
        parent: parent.map(|p| p.backup_id.clone()),
        full: parent.map(|p| p.full_id.clone()),
        tags: meta.tags.to_vec(),
        state_id: meta.state_id.map(str::to_string),
        sources: added.sources,
        files: Vec::new(),
        databases: added.databases,
        dirs: added.dirs,
    };
    let written = writer.finish(manifest)?;
    let source_bytes = written.manifest.total_size();
    let sidecar = Sidecar {
        format: "litevault-sidecar".into(),
        format_version: version,
        archive: ArchiveInfo {
            object: meta.object.to_string(),
            bytes: written.bytes,
            blake3: written.blake3,
            compression: meta.compression.to_string(),
            encryption: if sealer.is_some() {
                "age".into()
            } else {
                "none".into()
            },
            recipients: sealer.map(|s| s.public.clone()).unwrap_or_default(),
        },
        manifest: written.manifest,
        sequence: None,
    };
    Ok((
        sidecar,
        added.skipped.0,
        source_bytes,
        keep.then_some(added.pages),
    ))
}

/// The sources' size on disk: for the progress bar, and an upper bound of the archive's size
/// (compression only shrinks SQLite pages and config files) for the spool.
pub(super) fn estimate(settings: &Settings) -> u64 {
    fn size(path: &std::path::Path, depth: u32) -> u64 {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(m) if m.is_dir() && depth < 64 => std::fs::read_dir(path)
                .map(|entries| entries.flatten().map(|e| size(&e.path(), depth + 1)).sum())
                .unwrap_or(0),
            _ => 0,
        }
    }
    settings.sources.iter().map(|s| size(&s.path, 0)).sum()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
