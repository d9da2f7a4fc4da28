//! Streaming what a backup reads (see `source::discover`) into an archive: each database as a
//! snapshot, then the plain files and folders.
//!
//! Snapshots run on threads of their own, a bounded number at a time: while one streams its
//! pages into the archive, the next ones have their transactions open, and the ones before are
//! still checking theirs. However many databases a source holds (thousands of tenants), at most
//! `workers` are ahead and `2 × workers` checking (at least 4, never more than 32), so threads,
//! descriptors and memory stay bounded.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use anyhow::{Context, Result};

use super::manifest::{DatabaseEntry, DirEntry, SourceEntry, Stored};
use super::writer::{ArchiveWriter, Ownership};
use crate::config::Settings;
use crate::incremental::pageindex::{DbPages, PageIndex};
use crate::incremental::wal::wal_path;
use crate::progress::Progress;
use crate::source::discover::{DbFile, Inventory};
use crate::source::files::{self, Skipped};
use crate::source::sqlite::{Checked, Compare, DbInfo, Form, PendingCheck, Snapshot};

/// The most snapshots ahead of the stream, and the most checking, whatever `workers` says.
const MAX_OPEN: usize = 32;

/// How databases are taken: whether to keep their page hashes (for the next incremental), and
/// the parent's pages to compare with (an incremental backup).
#[derive(Clone, Copy, Default)]
pub struct Pages<'a> {
    pub keep: bool,
    pub parent: Option<&'a PageIndex>,
}

/// What [`add_sources`] put in the archive.
pub struct Added {
    pub sources: Vec<SourceEntry>,
    pub databases: Vec<DatabaseEntry>,
    /// The folders of `dir` sources, with their owners and modes.
    pub dirs: Vec<DirEntry>,
    pub skipped: Skipped,
    /// Each database's page hashes, when asked for: the next page index.
    pub pages: Vec<DbPages>,
}

/// One snapshot streamed, its check still running.
struct Streamed<'i, 's> {
    db: &'i DbFile<'s>,
    info: DbInfo,
    check: PendingCheck,
    /// The archive entry of a database stored whole, whose hash the snapshot reports.
    entry: Option<usize>,
}

/// Stream everything in `inventory` into `writer`; returns the manifest skeleton (sources,
/// databases, folders) and what was passed over. Every check has passed when this returns.
/// With a parent, each database stores only the pages that differ from the parent's, as a WAL
/// file, or nothing when none do.
pub fn add_sources<W: Write>(
    writer: &mut ArchiveWriter<W>,
    settings: &Settings,
    inventory: Inventory<'_>,
    progress: &dyn Progress,
    pages: Pages<'_>,
) -> Result<Added> {
    let sources: Vec<SourceEntry> = settings
        .sources
        .iter()
        .map(|source| SourceEntry {
            name: source.name.clone(),
            kind: source.kind,
            origin: source.path.display().to_string(),
        })
        .collect();
    let parents: HashMap<&str, &DbPages> = pages
        .parent
        .map(|p| p.databases.iter().map(|d| (d.source.as_str(), d)).collect())
        .unwrap_or_default();
    // One core: each snapshot is checked before the next starts. More: a few ahead, a few
    // checking, never all of them.
    // Each open snapshot holds three descriptors (the database, its -wal and -shm): capped so
    // that a machine with many cores stays far below the default limit of 1,024.
    let workers = settings.workers.clamp(1, MAX_OPEN);
    // Checking a small database takes about as long as streaming it: with only `workers`
    // checking, a source of thousands of small databases left the compressor idle (1,000 x
    // 1 MiB: 15.5 s against 8.5 s for one database of the same size; with 4 checking, 11.5 s).
    let in_flight = if workers == 1 {
        1
    } else {
        (2 * workers).clamp(4, MAX_OPEN)
    };
    let ahead = if workers == 1 { 1 } else { workers };
    let mut pending: VecDeque<Snapshot> = VecDeque::new();
    let mut started = 0;
    let mut checking: VecDeque<Streamed<'_, '_>> = VecDeque::new();
    let mut databases = Vec::with_capacity(inventory.databases.len());
    let mut index = Vec::new();
    let dbs = &inventory.databases;

    for db in dbs {
        // A check that has already failed stops the backup now rather than at the end.
        if let Some(i) = checking.iter_mut().position(|s| s.check.failed_yet()) {
            let failed = checking.remove(i).expect("found above");
            let err = failed
                .check
                .wait()
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("check failed"));
            return Err(err.context(format!("database {}", failed.db.path)));
        }
        while started < dbs.len() && pending.len() < ahead {
            let next = &dbs[started];
            let compare = Compare {
                keep_pages: pages.keep,
                parent: parents
                    .get(next.path.as_str())
                    .map(|d| std::sync::Arc::new((*d).clone())),
            };
            pending.push_back(Snapshot::start(
                &next.path,
                &next.fs_path,
                next.source.check,
                compare,
            ));
            started += 1;
        }
        let mut snap = pending
            .pop_front()
            .expect("a snapshot was started for each database");
        let (info, entry) = stream_one(writer, db, &mut snap, progress)?;
        let check = snap
            .finish()
            .with_context(|| format!("database {}", db.path))?;
        let check = if workers == 1 {
            let checked = check
                .wait()
                .with_context(|| format!("database {}", db.path))?;
            PendingCheck::passed(&db.path, checked)
        } else {
            check
        };
        checking.push_back(Streamed {
            db,
            info,
            check,
            entry,
        });
        while checking.len() > in_flight {
            let done = checking.pop_front().expect("more than none");
            let (entry, pages_of) = settle(writer, done, &parents, pages)?;
            databases.push(entry);
            index.extend(pages_of);
        }
    }
    while let Some(done) = checking.pop_front() {
        let (entry, pages_of) = settle(writer, done, &parents, pages)?;
        databases.push(entry);
        index.extend(pages_of);
    }

    let mut dirs: Vec<DirEntry> = Vec::new();
    for plain in inventory.plain {
        let source = plain.source;
        progress.stage(&source.name);
        dirs.extend(plain.dirs.into_iter().map(|d| DirEntry {
            path: d.archive_path,
            source: source.name.clone(),
            mode: d.mode,
            uid: d.uid,
            gid: d.gid,
        }));
        for item in plain.files {
            let mut open = files::open(&item).with_context(|| format!("source {}", source.name))?;
            let owner = Ownership {
                mode: open.mode,
                uid: open.uid,
                gid: open.gid,
            };
            let size = open.size;
            writer.add(
                &item.archive_path,
                &source.name,
                size,
                owner,
                &mut open,
                progress,
            )?;
            open.confirm_unchanged()
                .with_context(|| format!("source {}", source.name))?;
        }
    }

    // The manifest lists databases in the config's order (and by path within a source),
    // whatever order they were stored in.
    let position: HashMap<&str, usize> = settings
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    databases.sort_by(|a, b| {
        (position.get(a.source.as_str()), &a.path).cmp(&(position.get(b.source.as_str()), &b.path))
    });
    let source_of: HashMap<&str, &str> = databases
        .iter()
        .map(|d| (d.path.as_str(), d.source.as_str()))
        .collect();
    index.sort_by(|a, b| {
        let pa = source_of
            .get(a.source.as_str())
            .and_then(|s| position.get(s));
        let pb = source_of
            .get(b.source.as_str())
            .and_then(|s| position.get(s));
        (pa, &a.source).cmp(&(pb, &b.source))
    });
    Ok(Added {
        sources,
        databases,
        dirs,
        skipped: inventory.skipped,
        pages: index,
    })
}

/// Stream one snapshot's pages into the archive: the database whole, or its delta as a WAL
/// file, or nothing when it did not change.
fn stream_one<W: Write>(
    writer: &mut ArchiveWriter<W>,
    db: &DbFile<'_>,
    snap: &mut Snapshot,
    progress: &dyn Progress,
) -> Result<(DbInfo, Option<usize>)> {
    let info = snap
        .ready()
        .with_context(|| format!("database {}", db.path))?;
    progress.stage(&db.path);
    let owner = Ownership {
        mode: info.mode,
        uid: info.uid,
        gid: info.gid,
    };
    let source = &db.source.name;
    let entry = match info.form {
        Form::Whole => Some(
            writer
                .add_prehashed(&db.path, source, info.size(), owner, &mut *snap, progress)
                .with_context(|| format!("database {}", db.path))?,
        ),
        Form::Wal { .. } => {
            writer
                .add(
                    &wal_path(&db.path),
                    source,
                    info.stream_size(),
                    owner,
                    &mut *snap,
                    progress,
                )
                .with_context(|| format!("database {}", db.path))?;
            None
        }
        Form::Unchanged => None,
    };
    Ok((info, entry))
}

/// Wait for one database's check; its manifest entry and (when kept) its pages.
fn settle<W: Write>(
    writer: &mut ArchiveWriter<W>,
    done: Streamed<'_, '_>,
    parents: &HashMap<&str, &DbPages>,
    pages: Pages<'_>,
) -> Result<(DatabaseEntry, Option<DbPages>)> {
    let Streamed {
        db,
        info,
        check,
        entry,
    } = done;
    let checked: Checked = check
        .wait()
        .with_context(|| format!("database {}", db.path))?;
    if let Some(entry) = entry {
        writer.set_hash(entry, &checked.blake3);
    }
    let parent = parents.get(db.path.as_str());
    let stored = pages.parent.map(|_| match (info.form, parent) {
        (Form::Wal { frames }, Some(parent)) => Stored::Wal {
            wal: wal_path(&db.path),
            frames,
            parent_blake3: parent.blake3.clone(),
        },
        (Form::Unchanged, Some(parent)) => Stored::Unchanged {
            parent_blake3: parent.blake3.clone(),
        },
        _ => Stored::Whole,
    });
    let kept = pages.keep.then(|| checked.index_entry(&db.path, &info));
    Ok((
        DatabaseEntry {
            source: db.source.name.clone(),
            path: db.path.clone(),
            page_size: info.page_size,
            page_count: info.page_count,
            sqlite_version: info.sqlite_version,
            user_version: info.user_version,
            journal_mode: info.journal_mode,
            check: checked.check,
            row_counts: checked.row_counts,
            blake3: Some(checked.blake3),
            stored,
            mode: Some(info.mode),
            uid: Some(info.uid),
            gid: Some(info.gid),
        },
        kept,
    ))
}
