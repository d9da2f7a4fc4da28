//! Restoring an incremental backup: its chain, oldest link first, into one private folder.
//!
//! Each database is written from the newest link that holds it whole (usually the full backup),
//! then each later link's WAL frames are written over it in place, so every database is built
//! once, never replayed through SQLite. Every link is checked as it goes: its stored bytes,
//! each entry's BLAKE3, the WAL's own checksums, and, per database, the hash it must apply on
//! (the previous link's) and the hash it must produce. Those whole-file hashes come from the
//! pages' BLAKE3 chaining values, kept in memory (32 bytes a page) and updated page by page, so
//! a chain costs no re-reading. Files and whole databases of the backup itself come from its own
//! archive; earlier links give only the databases it builds on.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use blake3::hazmat::ChainingValue;

use super::aftercare::{
    check_label, check_rebuilt, Aftercare, RebuiltCheck, StoppedByAftercare, ToAftercare,
};
use crate::archive::manifest::{DatabaseEntry, Stored};
use crate::archive::reader::{extract, Entries, Route};
use crate::catalog::Backup;
use crate::exit::integrity;
use crate::incremental::pagehash::{root_of, supported, PageHasher};
use crate::incremental::wal::{first_page_hash, wal_path, WalApplier};
use crate::storage::Destination;

/// A database rebuilt from links before the last.
struct Rebuilt {
    source: String,
    path: String,
    /// The link that holds it whole.
    base: usize,
    page_size: u32,
    file: Option<File>,
    cvs: Vec<ChainingValue>,
    /// Its BLAKE3 after the links applied so far.
    blake3: Option<String>,
    whole: Option<PageHasher>,
    wal: Option<WalApplier>,
    /// Settled by the last link as soon as its delta was applied, and handed to the aftercare
    /// workers to be checked while the rest of that link unpacks.
    handed: bool,
}

/// Rebuild `chain` (full first, the backup to restore last) into `into`, then check each
/// database with `pragma`. Returns the databases checked, in the backup's order.
#[allow(clippy::too_many_arguments)]
pub fn rebuild(
    dest: &Destination,
    chain: &[Backup],
    opener: Option<&crate::crypto::Opener>,
    into: &Path,
    pragma: &str,
    durable: bool,
    progress: &dyn crate::progress::Progress,
    vouched: bool,
    on_link: &mut dyn FnMut(&Backup),
) -> Result<Vec<String>> {
    let last = chain.len() - 1;
    let target = &chain[last];
    let mut rebuilt = plan(chain)?;
    let names = Names::of(&rebuilt);
    progress.phase(
        &format!(
            "download {} from {} (a chain of {})",
            target.id,
            dest.name,
            chain.len()
        ),
        chain.iter().map(|b| b.sidecar.manifest.total_size()).sum(),
    );
    for (k, link) in chain.iter().enumerate().take(last) {
        let context = || {
            format!(
                "backup {} on {} (link {} of {} in the chain of {})",
                link.id,
                dest.name,
                k + 1,
                chain.len(),
                target.id
            )
        };
        if let crate::catalog::Standing::Damaged(damage) = &link.standing {
            return Err(integrity(format!("{}: damaged: {damage}", context())).into());
        }
        let stored = dest
            .reader_sized(&link.sidecar.archive.object, link.sidecar.archive.bytes)
            .with_context(context)?;
        let mut entries = Links {
            k,
            rebuilt: &mut rebuilt,
            names: &names,
            into,
            last: None,
        };
        extract(stored, &link.sidecar, opener, into, progress, &mut entries)
            .and_then(|()| settle(&mut rebuilt, link, k, into, last))
            .with_context(context)?;
        for r in rebuilt.iter_mut() {
            r.file = None;
        }
        on_link(link);
    }

    // The backup itself: its own files and whole databases through the usual workers, its
    // deltas onto the databases rebuilt so far.
    let databases = &target.sidecar.manifest.databases;
    let stored = dest.reader_sized(&target.sidecar.archive.object, target.sidecar.archive.bytes)?;
    let (extracted, aftercare) = std::thread::scope(|scope| {
        let mut pool = Aftercare::start(scope, pragma, durable);
        let mut entries = Links {
            k: last,
            rebuilt: &mut rebuilt,
            names: &names,
            into,
            last: Some(ToAftercare {
                pool: &mut pool,
                into,
                databases,
                durable,
                vouched,
            }),
        };
        let extracted = extract(
            stored,
            &target.sidecar,
            opener,
            into,
            progress,
            &mut entries,
        );
        if extracted.is_ok() {
            progress.waiting(&check_label(target, dest, pragma));
        }
        (extracted, pool.finish())
    });
    let context = || format!("backup {} on {}", target.id, dest.name);
    match (extracted, aftercare.failure) {
        (Err(e), Some(failure)) if e.is::<StoppedByAftercare>() => {
            return Err(failure).with_context(context)
        }
        (Err(e), _) => return Err(e).with_context(context),
        (Ok(()), Some(failure)) => return Err(failure).with_context(context),
        (Ok(()), None) => {}
    }
    settle(&mut rebuilt, target, last, into, last).with_context(context)?;

    // The rebuilt databases are checked as at rest, like every restored one, side by side.
    let mut verdicts: HashMap<String, Vec<String>> = aftercare
        .verdicts
        .into_iter()
        .map(|(i, problems)| (databases[i].path.clone(), problems))
        .collect();
    // A few at a time: a chain may rebuild thousands of databases, and each check holds a
    // connection (and its page cache) while it runs.
    let by_path: HashMap<&str, &DatabaseEntry> =
        databases.iter().map(|d| (d.path.as_str(), d)).collect();
    let jobs: Vec<RebuiltCheck> = rebuilt
        .iter_mut()
        .filter(|r| r.base < last && !r.handed)
        .map(|r| RebuiltCheck {
            file: r.file.take(),
            // Its final BLAKE3 was just checked against the one the newest link records.
            check: by_path
                .get(r.path.as_str())
                .is_none_or(|d| !super::aftercare::implied(vouched, d.check, pragma)),
            path: r.path.clone(),
        })
        .collect();
    let checked = check_rebuilt(into, jobs, durable, pragma);
    crate::interrupt::check()?;
    for outcome in checked {
        let (source, problems) = outcome.with_context(context)?;
        verdicts.insert(source, problems);
    }
    let mut out = Vec::new();
    for db in databases {
        let problems = verdicts.remove(&db.path).unwrap_or_default();
        if !problems.is_empty() {
            return Err(integrity(format!(
                "backup {} on {}: database {} fails {pragma}: {}",
                target.id,
                dest.name,
                db.path,
                problems.join("; ")
            ))
            .into());
        }
        out.push(db.path.clone());
    }
    Ok(out)
}

/// Which link holds each of the backup's databases whole, and that every later link has a
/// delta (or an unchanged mark) for it.
fn plan(chain: &[Backup]) -> Result<Vec<Rebuilt>> {
    let last = chain.len() - 1;
    let target = &chain[last];
    let links: Vec<HashMap<&str, &DatabaseEntry>> = chain
        .iter()
        .map(|l| {
            let mut by_path = HashMap::new();
            for d in &l.sidecar.manifest.databases {
                by_path.entry(d.path.as_str()).or_insert(d);
            }
            by_path
        })
        .collect();
    let entry = |k: usize, path: &str| -> Option<&DatabaseEntry> { links[k].get(path).copied() };
    let mut out = Vec::new();
    for db in &target.sidecar.manifest.databases {
        crate::archive::reader::check_path(&db.path)?;
        let Some(base) = (0..=last)
            .rev()
            .find(|&k| entry(k, &db.path).is_some_and(DatabaseEntry::is_whole))
        else {
            return Err(integrity(format!(
                "backup {}: no backup in its chain holds database {} whole",
                target.id, db.path
            ))
            .into());
        };
        if let Some(gap) = (base + 1..=last).find(|&k| entry(k, &db.path).is_none()) {
            return Err(integrity(format!(
                "backup {}: its chain lacks database {} in backup {}",
                target.id, db.path, chain[gap].id
            ))
            .into());
        }
        let page_size = entry(base, &db.path).map(|d| d.page_size).unwrap_or(0);
        if base < last && !supported(page_size) {
            return Err(integrity(format!(
                "backup {}: database {} has {page_size}-byte pages, which are never stored as deltas",
                target.id, db.path
            ))
            .into());
        }
        out.push(Rebuilt {
            source: db.path.clone(),
            path: db.path.clone(),
            base,
            page_size,
            file: None,
            cvs: Vec::new(),
            blake3: None,
            whole: None,
            wal: None,
            handed: false,
        });
    }
    Ok(out)
}

/// Routes one link's entries: a database this link holds whole (and later links change) is
/// fed into a new file and hashed page by page; a later link's WAL is applied onto it; the
/// last link's own files go to the workers. The rest is only checked.
struct Links<'r, 'a, 'scope, 'm> {
    k: usize,
    rebuilt: &'r mut [Rebuilt],
    names: &'r Names,
    into: &'r Path,
    last: Option<ToAftercare<'a, 'scope, 'm>>,
}

/// Each rebuilt database by its path and by its delta's path: every piece of every entry is
/// routed by name, and a source may hold thousands of databases.
struct Names {
    by_path: HashMap<String, usize>,
    by_wal: HashMap<String, usize>,
}

impl Names {
    fn of(rebuilt: &[Rebuilt]) -> Names {
        let mut names = Names {
            by_path: HashMap::with_capacity(rebuilt.len()),
            by_wal: HashMap::with_capacity(rebuilt.len()),
        };
        for (i, r) in rebuilt.iter().enumerate() {
            names.by_path.entry(r.path.clone()).or_insert(i);
            names.by_wal.entry(wal_path(&r.path)).or_insert(i);
        }
        names
    }
}

impl Links<'_, '_, '_, '_> {
    fn find(&mut self, path: &str) -> Option<(usize, bool)> {
        let k = self.k;
        let rebuilt = &self.rebuilt;
        self.names
            .by_wal
            .get(path)
            .filter(|&&i| rebuilt[i].base < k)
            .map(|&i| (i, true))
            .or_else(|| {
                self.names
                    .by_path
                    .get(path)
                    .filter(|&&i| rebuilt[i].base == k && self.last.is_none())
                    .map(|&i| (i, false))
            })
    }
}

impl<'scope, 'm: 'scope> Entries for Links<'_, '_, 'scope, 'm> {
    fn route(&mut self, path: &str) -> Route {
        match (self.find(path), &self.last) {
            (Some(_), _) => Route::Feed,
            (None, Some(_)) => Route::Write,
            (None, None) => Route::Skip,
        }
    }

    fn feed(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let (i, is_wal) = self
            .find(path)
            .context("an entry that was not routed here")?;
        let into = self.into;
        let r = &mut self.rebuilt[i];
        if is_wal {
            if r.blake3.is_none() {
                anyhow::bail!("a page delta for a database that was never written");
            }
            open_again(r, into)?;
            let file = r.file.as_ref().expect("just opened");
            let wal = r
                .wal
                .get_or_insert_with(|| WalApplier::new(path, r.page_size));
            return wal.update(file, &mut r.cvs, bytes);
        }
        if r.file.is_none() {
            start_whole(r, into)?;
        }
        let file = r.file.as_mut().expect("just made");
        file.write_all(bytes)
            .with_context(|| format!("writing {}", into.join(&r.path).display()))?;
        r.whole.as_mut().expect("made with the file").update(bytes);
        Ok(())
    }

    fn done(&mut self, path: &str, size: u64, route: Route) -> Result<()> {
        match (&mut self.last, route) {
            (Some(last), Route::Write) => last.done(path, size, route),
            // The last link's delta of a database: once applied, that database is final, so it
            // is settled now and checked while the rest of the archive unpacks, as a database
            // restored whole is (instead of after the whole archive, one after the other).
            (Some(_), Route::Feed) => {
                let Some((i, true)) = self.find(path) else {
                    return Ok(());
                };
                let last = self.last.as_mut().expect("matched above");
                let r = &mut self.rebuilt[i];
                let Some((index, db)) = last
                    .databases
                    .iter()
                    .enumerate()
                    .find(|(_, d)| d.path == r.path && d.blake3.is_some())
                else {
                    return Ok(()); // settled with the rest of the link
                };
                settle_one(r, db, db.blake3.clone(), self.k, self.into, self.k)?;
                r.handed = true;
                r.file = None;
                last.rebuilt(&r.path, index)
            }
            // An earlier link's entry, written or applied: its file is closed until the next
            // link needs it, so a chain of thousands of databases holds a few descriptors.
            (None, Route::Feed) => {
                if let Some((i, _)) = self.find(path) {
                    self.rebuilt[i].file = None;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Open the file a database is being rebuilt in again, when it was closed after an earlier
/// link (it is in the restore's private folder, made by this run).
fn open_again(r: &mut Rebuilt, into: &Path) -> Result<()> {
    if r.file.is_none() {
        let target = into.join(&r.path);
        r.file = Some(
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(NOFOLLOW)
                .open(&target)
                .with_context(|| format!("opening {} again", target.display()))?,
        );
    }
    Ok(())
}

/// `O_NOFOLLOW`.
const NOFOLLOW: i32 = 0o400000;

/// Create the file a database is rebuilt in, from the link that holds it whole.
fn start_whole(r: &mut Rebuilt, into: &Path) -> Result<()> {
    let target = into.join(&r.path);
    if let Some(parent) = target.parent() {
        crate::state::ensure_private_dir(parent)?;
    }
    r.file = Some(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .with_context(|| format!("creating {}", target.display()))?,
    );
    r.whole = Some(PageHasher::new(r.page_size, true));
    Ok(())
}

/// After link `k` has been read whole: each database it wrote or changed has the hash the link
/// records, and each change applied on the hash the link expected.
fn settle(
    rebuilt: &mut [Rebuilt],
    link: &Backup,
    k: usize,
    into: &Path,
    last: usize,
) -> Result<()> {
    let m = &link.sidecar.manifest;
    let by_path: HashMap<&str, &DatabaseEntry> =
        m.databases.iter().map(|d| (d.path.as_str(), d)).collect();
    for r in rebuilt.iter_mut().filter(|r| r.base <= k && !r.handed) {
        let Some(&db) = by_path.get(r.path.as_str()) else {
            continue;
        };
        settle_one(r, db, m.database_blake3(db), k, into, last)?;
    }
    Ok(())
}

/// [`settle`] for one database.
fn settle_one(
    r: &mut Rebuilt,
    db: &DatabaseEntry,
    want: Option<String>,
    k: usize,
    into: &Path,
    last: usize,
) -> Result<()> {
    {
        if r.base == k {
            if k == last {
                // Held whole by the last link: written and checked as any restored file.
                return Ok(());
            }
            if r.whole.is_none() {
                // An empty database: no bytes came, but it is still a file to build on.
                start_whole(r, into)?;
            }
            let (root, cvs) = r
                .whole
                .take()
                .and_then(PageHasher::finish)
                .with_context(|| format!("database {} is not whole pages", r.source))?;
            r.cvs = cvs;
            r.blake3 = Some(root.to_hex().to_string());
        } else {
            let (expected_parent, frames) = match &db.stored {
                Some(Stored::Wal {
                    wal,
                    frames,
                    parent_blake3,
                }) => {
                    if *wal != wal_path(&db.path) {
                        return Err(integrity(format!(
                            "database {}: its page delta is named {wal:?}",
                            r.source
                        ))
                        .into());
                    }
                    (parent_blake3, Some(*frames))
                }
                Some(Stored::Unchanged { parent_blake3 }) => (parent_blake3, None),
                _ => {
                    return Err(integrity(format!(
                        "database {} is stored whole here, after the link it was rebuilt from",
                        r.source
                    ))
                    .into())
                }
            };
            if r.blake3.as_deref() != Some(expected_parent.as_str()) {
                return Err(integrity(format!(
                    "database {} applies on a database with BLAKE3 {expected_parent}, but the chain so far gives {}",
                    r.source,
                    r.blake3.as_deref().unwrap_or("nothing")
                ))
                .into());
            }
            if let Some(frames) = frames {
                open_again(r, into)?;
                let file = r.file.as_ref().expect("just opened");
                let Some(wal) = r.wal.take() else {
                    return Err(integrity(format!(
                        "database {}: its page delta is not in the archive",
                        r.source
                    ))
                    .into());
                };
                let (applied, pages) = wal.finish(file, &mut r.cvs)?;
                if applied != frames || pages != db.page_count {
                    return Err(integrity(format!(
                        "database {}: its page delta holds {applied} pages and commits {pages}, the manifest says {frames} and {}",
                        r.source, db.page_count
                    ))
                    .into());
                }
                let root = root_of(&r.cvs, || {
                    first_page_hash(file, r.page_size).unwrap_or_else(|_| blake3::hash(b"?"))
                });
                r.blake3 = Some(root.to_hex().to_string());
            }
        }
        if r.blake3 != want {
            return Err(integrity(format!(
                "database {} rebuilt to BLAKE3 {}, the backup records {}",
                r.source,
                r.blake3.as_deref().unwrap_or("nothing"),
                want.as_deref().unwrap_or("nothing")
            ))
            .into());
        }
    }
    Ok(())
}
