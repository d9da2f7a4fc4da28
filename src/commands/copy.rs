//! `litevault copy --from A --to B [ID...]`: put on B the backups it lacks, as stored on A.
//!
//! The stored bytes stream from A to B (never the sources again), hashed on the way: a copy
//! whose size or BLAKE3 differs from the sidecar's is aborted, so B never holds a damaged copy.
//! On B each archive is written as a backup writes it (under `tmp/`, then renamed), then the
//! sidecar's signature and the sidecar itself, byte for byte as on A, so a signature stays
//! valid. Parents go before the incrementals built on them, and a backup whose chain is not
//! whole on A is reported, not copied. It holds the lock and cleans B's leftovers first, so a
//! copy killed at any moment leaves nothing listed on B, and the next one finishes the job.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::catalog::{self, Backup};
use crate::cli::CopyArgs;
use crate::config::Settings;
use crate::exit::{integrity, Exit};
use crate::state::StateDir;
use crate::storage::Destination;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// Backups copied, oldest first, with their stored size.
    pub copied: Vec<Copied>,
    /// Backups B already held.
    pub present: Vec<String>,
    /// Backups not copied, and why.
    pub failed: Vec<Failed>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leftovers_removed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Copied {
    pub id: String,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Failed {
    pub id: String,
    pub error: String,
    /// 4 when the backup on A is damaged, untrusted or its chain broken; 3 otherwise.
    pub exit: u8,
}

impl Report {
    /// All copied: 0; damage found on A: 4; other failures: 3.
    pub fn exit(&self) -> Exit {
        if self.failed.iter().any(|f| f.exit == Exit::Integrity.code()) {
            Exit::Integrity
        } else if !self.failed.is_empty() {
            Exit::Partial
        } else {
            Exit::Success
        }
    }
}

pub fn run(settings: &Settings, args: &CopyArgs) -> Result<Report> {
    if args.from == args.to {
        return Err(crate::exit::config(format!(
            "--from and --to both name destination {}",
            args.from
        ))
        .into());
    }
    let state = StateDir::open(&settings.state_dir)?;
    let _lock = state.lock(args.wait)?;
    let mut opened = super::open_destinations(settings, &[args.from.clone(), args.to.clone()])?;
    let to = opened.pop().expect("two destinations");
    let from = opened.pop().expect("two destinations");
    let mut report = Report {
        from: from.name.clone(),
        to: to.name.clone(),
        ..Report::default()
    };
    let cleanup = catalog::clean_leftovers(&to)
        .with_context(|| format!("cleaning leftovers on destination {}", to.name))?;
    report.warnings.extend(cleanup.warnings(&to));
    report.leftovers_removed = cleanup.removed;

    let source = catalog::list(&from)?;
    let target = catalog::list(&to)?;
    report
        .warnings
        .extend(source.problems.iter().map(|p| p.to_string()));
    let on_b: HashSet<&str> = target.backups.iter().map(|b| b.id.as_str()).collect();
    for b in target.backups.iter().filter(|b| b.damage.is_some()) {
        report.warnings.push(format!(
            "backup {} on {} is damaged ({}); copy never overwrites it: delete it there, then copy again",
            b.id,
            to.name,
            b.damage.as_deref().unwrap_or_default()
        ));
    }
    let by_id: HashMap<&str, &Backup> = source.backups.iter().map(|b| (b.id.as_str(), b)).collect();

    // What to copy: the named ids (each with what it builds on), or everything B lacks.
    let wanted: Vec<&Backup> = if args.ids.is_empty() {
        source.backups.iter().collect()
    } else {
        let mut out = Vec::new();
        for id in &args.ids {
            match by_id.get(id.as_str()) {
                Some(b) => out.push(*b),
                None => report.failed.push(Failed {
                    id: id.clone(),
                    error: format!("backup {id} is not on {}", from.name),
                    exit: Exit::Partial.code(),
                }),
            }
        }
        out
    };
    let mut order: Vec<&Backup> = Vec::new();
    let mut seen = HashSet::new();
    for b in wanted {
        // Its chain first: an incremental is only useful on B above its parent.
        let mut chain = vec![b];
        let mut cur = b;
        while let Some(parent) = cur
            .sidecar
            .manifest
            .parent
            .as_deref()
            .filter(|_| cur.sidecar.manifest.is_incremental())
        {
            match by_id.get(parent) {
                Some(p) if chain.len() <= crate::chain::MAX_DEPTH => {
                    chain.push(p);
                    cur = p;
                }
                _ => break,
            }
        }
        for link in chain.into_iter().rev() {
            if seen.insert(link.id.as_str()) {
                order.push(link);
            }
        }
    }
    order.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));

    let mut failed_ids: HashSet<String> = HashSet::new();
    for b in order {
        crate::interrupt::check()?;
        if on_b.contains(b.id.as_str()) {
            report.present.push(b.id.clone());
            continue;
        }
        if let Some(why) = refusal(b) {
            failed_ids.insert(b.id.clone());
            report.failed.push(Failed {
                id: b.id.clone(),
                error: format!("backup {} on {}: {why}; not copied", b.id, from.name),
                exit: Exit::Integrity.code(),
            });
            continue;
        }
        if let Some(parent) = b.sidecar.manifest.parent.as_deref() {
            if failed_ids.contains(parent) {
                failed_ids.insert(b.id.clone());
                report.failed.push(Failed {
                    id: b.id.clone(),
                    error: format!(
                        "backup {} builds on {parent}, which was not copied; not copied",
                        b.id
                    ),
                    exit: Exit::Partial.code(),
                });
                continue;
            }
        }
        match copy_one(&from, &to, b) {
            Ok(bytes) => report.copied.push(Copied {
                id: b.id.clone(),
                bytes,
            }),
            Err(e) => {
                if crate::exit::classify(&e) == Exit::Interrupted {
                    return Err(e);
                }
                failed_ids.insert(b.id.clone());
                let exit = match crate::exit::classify(&e) {
                    Exit::Integrity => Exit::Integrity,
                    _ => Exit::Partial,
                };
                report.failed.push(Failed {
                    id: b.id.clone(),
                    error: format!("{e:#}"),
                    exit: exit.code(),
                });
            }
        }
    }
    Ok(report)
}

/// Why a backup on A must not be copied: damage, no trust, a broken chain.
fn refusal(b: &Backup) -> Option<String> {
    if let Some(damage) = &b.damage {
        return Some(format!("it is damaged ({damage})"));
    }
    if !b.trust.is_good() {
        return Some(format!("it is not trusted ({})", b.trust));
    }
    None
}

/// Stream one backup's archive from A to B, checking its size and BLAKE3 against the sidecar
/// before it is committed; then its signature and sidecar, exactly as on A.
fn copy_one(from: &Destination, to: &Destination, b: &Backup) -> Result<u64> {
    let info = &b.sidecar.archive;
    let mut reader = from
        .reader(&info.object)
        .with_context(|| format!("backup {} on {}", b.id, from.name))?;
    let mut upload = to.upload_new(&info.object)?;
    let mut hasher = blake3::Hasher::new();
    let mut count: u64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        crate::interrupt::check()?;
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading backup {} on {}", b.id, from.name))?;
        if n == 0 {
            break;
        }
        count += n as u64;
        if count > info.bytes {
            break;
        }
        hasher.update(&buf[..n]);
        upload.write(Bytes::copy_from_slice(&buf[..n]))?;
    }
    let got = hasher.finalize().to_hex().to_string();
    if count != info.bytes || got != info.blake3 {
        // Dropping the upload aborts it: nothing of it is left on B.
        return Err(anyhow::Error::new(
            integrity(format!(
                "backup {} on {} is damaged: its stored archive {} does not match its sidecar ({})",
                b.id,
                from.name,
                info.object,
                if count != info.bytes {
                    format!("{count} bytes or more, the sidecar says {}", info.bytes)
                } else {
                    format!("BLAKE3 {got}, the sidecar says {}", info.blake3)
                }
            ))
            .hint("not copied; copy it from another destination that holds it whole"),
        ));
    }
    // The sidecar as it is now must describe the archive just copied (a rekey on A meanwhile
    // would point it elsewhere): checked before anything is committed on B.
    let sidecar = from.read_small(&catalog::sidecar_name(&b.id), 64 << 20)?;
    let now: crate::archive::Sidecar = serde_json::from_slice(&sidecar).map_err(|e| {
        integrity(format!(
            "sidecar of {} on {} is not valid: {e}",
            b.id, from.name
        ))
    })?;
    if now.archive != *info {
        anyhow::bail!(
            "backup {} changed on {} while it was copied (re-keyed?); run copy again",
            b.id,
            from.name
        );
    }
    let stored = upload.commit()?;
    if let Some(sig) = from
        .size(&catalog::signature_name(&b.id))?
        .map(|_| from.read_small(&catalog::signature_name(&b.id), 64 << 10))
        .transpose()?
    {
        to.put_new(&catalog::signature_name(&b.id), sig)?;
    }
    to.put_new(&catalog::sidecar_name(&b.id), sidecar)?;
    Ok(stored)
}
