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
use std::io::{Read, Write};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::catalog::{self, Backup};
use crate::cli::CopyArgs;
use crate::commands::report::{self, CommandReport};
use crate::config::Settings;
use crate::exit::{integrity, Exit};
use crate::journal::Outcome;
use crate::state::StateDir;
use crate::storage::Destination;
use crate::ui::{self, Escaped, Ui};

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

impl CommandReport for Report {
    /// All copied: 0; damage found on A: 4; other failures: 3.
    fn exit(&self) -> Exit {
        Exit::worst(self.failed.iter().map(|f| {
            if f.exit == Exit::Integrity.code() {
                Exit::Integrity
            } else {
                Exit::Partial
            }
        }))
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            bytes: Some(self.copied.iter().map(|c| c.bytes).sum()),
            destinations: Some(json!({
                "from": self.from,
                "to": self.to,
                "copied": self.copied.iter().map(|c| &c.id).collect::<Vec<_>>(),
            })),
            error: report::errors(self.failed.iter().map(|f| f.error.clone()).collect()),
            ..report::outcome(self.exit())
        }
    }

    fn render(&self, ui: &Ui) -> Result<()> {
        let r = self;
        ui.json(r)?;
        for w in &r.warnings {
            ui.warn(w);
        }
        for f in &r.failed {
            ui.error(&f.error);
        }
        let mut lines: Vec<String> = r
            .leftovers_removed
            .iter()
            .map(|l| format!("removed leftover {} on {}", Escaped(l), r.to))
            .collect();
        lines.extend(r.copied.iter().map(|c| {
            format!(
                "copied {} from {} to {} ({})",
                Escaped(&c.id),
                r.from,
                r.to,
                ui::bytes(c.bytes)
            )
        }));
        lines.push(format!(
            "{} copied, {} already on {}, {} failed",
            r.copied.len(),
            r.present.len(),
            r.to,
            r.failed.len()
        ));
        ui.say_all(&lines)?;
        Ok(())
    }
}

/// What `copy` copies, from its flags.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: String,
    pub to: String,
    /// These backups, with what they build on [every backup `to` lacks when empty].
    pub ids: Vec<String>,
    /// Wait this long for another run's lock.
    pub wait: Option<std::time::Duration>,
    /// `--as-of`: the destinations as they were then.
    pub as_of: Option<std::time::SystemTime>,
}

impl From<&CopyArgs> for Options {
    fn from(args: &CopyArgs) -> Self {
        Options {
            from: args.from.clone(),
            to: args.to.clone(),
            ids: args.ids.clone(),
            wait: args.wait,
            as_of: args.as_of,
        }
    }
}

pub fn run(
    settings: &Settings,
    args: &Options,
    progress: &dyn crate::progress::Progress,
) -> Result<Report> {
    if args.from == args.to {
        return Err(crate::exit::config(format!(
            "--from and --to both name destination {}",
            args.from
        ))
        .into());
    }
    let state = StateDir::open(&settings.state_dir)?;
    let _lock = state.lock(args.wait)?;
    // Only the source is seen as it was (--as-of); what is copied is written to `to` now.
    let mut opened = super::open_destinations(settings, &[args.from.clone(), args.to.clone()])?;
    let to = opened.pop().expect("two destinations");
    let from = opened.pop().expect("two destinations");
    let from = match args.as_of {
        Some(at) => from.as_of(at)?,
        None => from,
    };
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
    let on_b: HashMap<&str, &Backup> = target.backups.iter().map(|b| (b.id.as_str(), b)).collect();
    let orphans_on_b: HashSet<&str> = target.orphans.iter().map(|o| o.object.as_str()).collect();
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
                Some(p) if chain.len() <= crate::vocabulary::MAX_CHAIN => {
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
        if let Some(why) = b.refusal() {
            failed_ids.insert(b.id.clone());
            report.failed.push(Failed {
                id: b.id.clone(),
                error: format!("backup {} on {}: {why}; not copied", b.id, from.name),
                exit: why.exit().code(),
            });
            continue;
        }
        // What B holds under the same name is compared, never trusted on its name and never
        // overwritten.
        if let Some(there) = on_b.get(b.id.as_str()) {
            match same_on_b(&to, there, b) {
                Ok(()) => report.present.push(b.id.clone()),
                Err(e) => {
                    failed_ids.insert(b.id.clone());
                    report.failed.push(Failed {
                        id: b.id.clone(),
                        error: format!("{e:#}"),
                        exit: crate::exit::classify(&e).code(),
                    });
                }
            }
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
        let copied = if orphans_on_b.contains(b.sidecar.archive.object.as_str()) {
            complete_on_b(&from, &to, b)
        } else {
            copy_one(&from, &to, b, progress)
        };
        match copied {
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

/// Whether backup `there` on B is the same backup as `b` on A: the same archive (name, size,
/// BLAKE3) in the sidecars, and B's stored archive read whole to match. A difference is damage
/// on B: named, exit 4, never overwritten.
fn same_on_b(to: &Destination, there: &Backup, b: &Backup) -> Result<()> {
    let info = &b.sidecar.archive;
    let mismatch = |what: String| -> anyhow::Error {
        anyhow::Error::new(
            integrity(format!(
                "backup {} on {}: {what}; copy never overwrites it",
                b.id, to.name
            ))
            .hint("look at it, delete it there by hand if it is not to be kept, then copy again"),
        )
    };
    let theirs = &there.sidecar.archive;
    if theirs.object != info.object || theirs.bytes != info.bytes || theirs.blake3 != info.blake3 {
        return Err(mismatch(format!(
            "its sidecar describes another archive ({}, {} bytes) than the source's ({}, {} bytes)",
            theirs.object, theirs.bytes, info.object, info.bytes
        )));
    }
    if let Some(why) = there.refusal() {
        return Err(mismatch(format!("it is there, but {why}")));
    }
    catalog::check_stored(to, &info.object, info.bytes, &info.blake3).map_err(|e| {
        mismatch(format!(
            "its stored archive differs from the source's: {e:#}"
        ))
    })
}

/// B holds the archive of `b` without its sidecar (a copy killed between the two): complete
/// it when the stored bytes are exactly the source's; otherwise it is damage, left alone.
fn complete_on_b(from: &Destination, to: &Destination, b: &Backup) -> Result<u64> {
    let info = &b.sidecar.archive;
    catalog::check_stored(to, &info.object, info.bytes, &info.blake3).map_err(|e| {
        anyhow::Error::new(
            integrity(format!(
                "backup {}: {} already holds an archive {} that is not the source's ({e:#}); copy never overwrites it",
                b.id, to.name, info.object
            ))
            .hint("look at it, delete it there by hand if it is not to be kept, then copy again"),
        )
    })?;
    let meta = read_metadata(from, b)?;
    write_metadata(to, b, meta)?;
    Ok(info.bytes)
}

/// Stream one backup's archive from A to B, checking its size and BLAKE3 against the sidecar
/// before it is committed; then its signature and sidecar, exactly as on A.
fn copy_one(
    from: &Destination,
    to: &Destination,
    b: &Backup,
    progress: &dyn crate::progress::Progress,
) -> Result<u64> {
    let info = &b.sidecar.archive;
    progress.phase(
        &format!("copy {} from {} to {}", b.id, from.name, to.name),
        info.bytes,
    );
    let mut reader = from
        .reader_sized(&info.object, info.bytes)
        .with_context(|| format!("backup {} on {}", b.id, from.name))?;
    let mut upload = to.upload_new(&info.object)?.writer();
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
        upload
            .write_all(&buf[..n])
            .with_context(|| format!("copying backup {} to {}", b.id, to.name))?;
        progress.advance(n as u64);
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
    let meta = read_metadata(from, b)?;
    let stored = upload.commit()?;
    write_metadata(to, b, meta)?;
    Ok(stored)
}

/// A backup's sidecar and signature as stored on A now, checked again: they must still
/// describe what was listed and judged (the same archive and contents), and still be vouched
/// for where `[trust]` is configured. What B gets is exactly what was checked.
fn read_metadata(from: &Destination, b: &Backup) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let sidecar = from.read_small(&catalog::sidecar_name(&b.id), 64 << 20)?;
    let sig = from
        .size(&catalog::signature_name(&b.id))?
        .map(|_| from.read_small(&catalog::signature_name(&b.id), 64 << 10))
        .transpose()?;
    let now: crate::archive::Sidecar = serde_json::from_slice(&sidecar).map_err(|e| {
        integrity(format!(
            "sidecar of {} on {} is not valid: {e}",
            b.id, from.name
        ))
    })?;
    if now.archive != b.sidecar.archive
        || serde_json::to_value(&now.manifest).ok()
            != serde_json::to_value(&b.sidecar.manifest).ok()
    {
        anyhow::bail!(
            "backup {} changed on {} while it was copied (re-keyed?); run copy again",
            b.id,
            from.name
        );
    }
    if from.trust().is_configured()
        && !from
            .trust()
            .judge(&sidecar, sig.as_deref(), b.created)
            .is_good()
    {
        anyhow::bail!(
            "backup {} on {}: its signature changed while it was copied; run copy again",
            b.id,
            from.name
        );
    }
    Ok((sidecar, sig))
}

/// The signature, then the sidecar, byte for byte as checked on A, once the archive is whole
/// on B.
fn write_metadata(to: &Destination, b: &Backup, meta: (Vec<u8>, Option<Vec<u8>>)) -> Result<()> {
    let (sidecar, sig) = meta;
    if let Some(sig) = sig {
        to.put_new(&catalog::signature_name(&b.id), sig)?;
    }
    to.put_new(&catalog::sidecar_name(&b.id), sidecar)?;
    Ok(())
}
