//! Builds an archive: each source streamed into tar, hashed on the way, then compressed and
//! encrypted, with `manifest.json` and `BLAKE3SUMS` appended last.

use std::io::{self, Read, Write};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use super::layers::{Compress, Encrypt, Hashing};
use super::manifest::{
    DatabaseEntry, DirEntry, FileEntry, Manifest, SourceEntry, Stored, MANIFEST_NAME, SUMS_NAME,
};
use crate::config::{Compression, Settings, SourceKind};
use crate::crypto::Sealer;
use crate::incremental::pageindex::{DbPages, PageIndex};
use crate::incremental::wal::wal_path;
use crate::progress::Progress;
use crate::source::files::{self, Skipped};
use crate::source::sqlite::{Checked, Compare, DbInfo, Form, PendingCheck, Snapshot};

type Stack<W> = Compress<Encrypt<Hashing<W>>>;

pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Stack<W>>,
    mtime: u64,
    files: Vec<FileEntry>,
}

/// The mode, owner and group a file had when it was read: recorded in the manifest and set in
/// its tar header, as tar does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What was written: the manifest, the sink handed back, and the stored bytes' size and hash.
pub struct Written<W> {
    pub manifest: Manifest,
    pub sink: W,
    pub bytes: u64,
    pub blake3: String,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(
        sink: W,
        compression: Compression,
        sealer: Option<&Sealer>,
        workers: usize,
        created: SystemTime,
    ) -> Result<Self> {
        let stack = Compress::new(
            Encrypt::new(Hashing::new(sink), sealer)?,
            compression,
            workers,
        )?;
        let mut tar = tar::Builder::new(stack);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(ArchiveWriter {
            tar,
            mtime: crate::retention::unix_secs(created).max(0) as u64,
            files: Vec::new(),
        })
    }

    /// Append one file of exactly `size` bytes read from `data`, hashing it on the way.
    pub fn add<R: Read>(
        &mut self,
        path: &str,
        source: &str,
        size: u64,
        owner: Ownership,
        data: R,
        progress: &dyn Progress,
    ) -> Result<&FileEntry> {
        let (_, hash) = self.append(path, size, owner, data, progress, true)?;
        self.files.push(FileEntry {
            path: path.to_string(),
            source: source.to_string(),
            size,
            blake3: hash.expect("hashed"),
            mode: owner.mode,
            uid: Some(owner.uid),
            gid: Some(owner.gid),
        });
        Ok(self.files.last().expect("just pushed"))
    }

    /// Append a file whose BLAKE3 its producer computes (a database snapshot hashes its pages
    /// as it reads them): the hash is filled in with [`Self::set_hash`] before `finish`.
    fn add_prehashed<R: Read>(
        &mut self,
        path: &str,
        source: &str,
        size: u64,
        owner: Ownership,
        data: R,
        progress: &dyn Progress,
    ) -> Result<usize> {
        self.append(path, size, owner, data, progress, false)?;
        self.files.push(FileEntry {
            path: path.to_string(),
            source: source.to_string(),
            size,
            blake3: String::new(),
            mode: owner.mode,
            uid: Some(owner.uid),
            gid: Some(owner.gid),
        });
        Ok(self.files.len() - 1)
    }

    fn set_hash(&mut self, index: usize, blake3: &str) {
        self.files[index].blake3 = blake3.to_string();
    }

    fn append<R: Read>(
        &mut self,
        path: &str,
        size: u64,
        owner: Ownership,
        data: R,
        progress: &dyn Progress,
        hash: bool,
    ) -> Result<(u64, Option<String>)> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(owner.mode);
        header.set_mtime(self.mtime);
        header.set_uid(owner.uid as u64);
        header.set_gid(owner.gid as u64);
        let mut reader = Exact {
            inner: Hashing::maybe(data, hash),
            left: size,
            progress,
        };
        self.tar
            .append_data(&mut header, path, &mut reader)
            .with_context(|| format!("writing {path} into the archive"))?;
        if reader.left != 0 {
            bail!("{path}: the source ended {} bytes early", reader.left);
        }
        let (_, n, hash) = reader.inner.finish_maybe();
        debug_assert_eq!(n, size);
        Ok((n, hash))
    }

    /// Append the manifest and sums, then close every layer in order.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<Written<W>> {
        manifest.files = std::mem::take(&mut self.files);
        if let Some(f) = manifest.files.iter().find(|f| f.blake3.is_empty()) {
            bail!("{}: its hash never arrived", f.path);
        }
        let json = serde_json::to_vec_pretty(&manifest)?;
        let sums = manifest.blake3sums();
        for (name, body) in [(MANIFEST_NAME, &json[..]), (SUMS_NAME, sums.as_bytes())] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o600);
            header.set_mtime(self.mtime);
            self.tar.append_data(&mut header, name, body)?;
        }
        let stack = self.tar.into_inner().context("finishing the tar stream")?;
        let hashing = stack
            .finish()
            .context("finishing compression")?
            .finish()
            .context("finishing encryption")?;
        let (sink, bytes, blake3) = hashing.finish();
        Ok(Written {
            manifest,
            sink,
            bytes,
            blake3,
        })
    }
}

/// Yields exactly `left` bytes of the inner reader, so a file that grows while it is read cannot
/// overrun its tar header.
struct Exact<'p, R> {
    inner: Hashing<R>,
    left: u64,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        crate::interrupt::check_io()?;
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "source ended early",
            ));
        }
        self.left -= n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

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
struct Streamed<'s> {
    source: &'s crate::config::Source,
    info: DbInfo,
    check: PendingCheck,
    /// The archive entry of a database stored whole, whose hash the snapshot reports.
    entry: Option<usize>,
}

/// Stream every configured source into `writer`; returns the manifest skeleton (sources and
/// databases) and what was passed over. Database snapshots run on threads of their own, all
/// started at once (one at a time with `workers = 1`): each streams its pages when its turn
/// comes and then checks them while the next streams. Every check has passed when this returns.
/// With a parent, each database stores only the pages that differ from the parent's, as a WAL
/// file, or nothing when none do.
pub fn add_sources<W: Write>(
    writer: &mut ArchiveWriter<W>,
    settings: &Settings,
    progress: &dyn Progress,
    pages: Pages<'_>,
) -> Result<Added> {
    let mut skipped = Skipped::default();
    // Databases go first, the largest first: a restore checks each database as soon as it is
    // unpacked, so the longest check then overlaps the unpacking of the rest instead of being
    // the tail of the run. Files and folders (small) follow, in the config's order.
    let mut db_sources: Vec<_> = settings
        .sources
        .iter()
        .filter(|s| s.kind == SourceKind::Sqlite)
        .collect();
    db_sources.sort_by_key(|s| {
        std::cmp::Reverse(std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0))
    });
    let order: Vec<&crate::config::Source> = db_sources
        .iter()
        .copied()
        .chain(
            settings
                .sources
                .iter()
                .filter(|s| s.kind != SourceKind::Sqlite),
        )
        .collect();
    let sources: Vec<SourceEntry> = settings
        .sources
        .iter()
        .map(|source| SourceEntry {
            name: source.name.clone(),
            kind: source.kind,
            origin: source.path.display().to_string(),
        })
        .collect();
    let mut pending: std::collections::VecDeque<Snapshot> = Default::default();
    let mut started = 0;
    let ahead = if settings.workers == 1 {
        1
    } else {
        db_sources.len().max(1)
    };
    let mut checking: Vec<Streamed<'_>> = Vec::new();
    let mut dirs: Vec<DirEntry> = Vec::new();

    for source in order {
        // A check that has already failed stops the backup now rather than at the end.
        if let Some(index) = checking.iter_mut().position(|s| s.check.failed_yet()) {
            let failed = checking.swap_remove(index);
            let err = failed
                .check
                .wait()
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("check failed"));
            return Err(err.context(format!("database {}", failed.source.name)));
        }
        match source.kind {
            SourceKind::Sqlite => {
                while started < db_sources.len() && pending.len() < ahead {
                    let s = db_sources[started];
                    let compare = Compare {
                        keep_pages: pages.keep,
                        parent: pages
                            .parent
                            .and_then(|p| p.database(&s.name))
                            .map(|d| std::sync::Arc::new(d.clone())),
                    };
                    pending.push_back(Snapshot::start(&s.name, &s.path, s.check, compare));
                    started += 1;
                }
                let mut snap = pending
                    .pop_front()
                    .expect("a snapshot was started for each database");
                let info = snap
                    .ready()
                    .with_context(|| format!("database {}", source.name))?;
                progress.stage(&source.name);
                let owner = Ownership {
                    mode: info.mode,
                    uid: info.uid,
                    gid: info.gid,
                };
                let entry = match info.form {
                    Form::Whole => Some(
                        writer
                            .add_prehashed(
                                &source.name,
                                &source.name,
                                info.size(),
                                owner,
                                &mut snap,
                                progress,
                            )
                            .with_context(|| format!("database {}", source.name))?,
                    ),
                    Form::Wal { .. } => {
                        writer
                            .add(
                                &wal_path(&source.name),
                                &source.name,
                                info.stream_size(),
                                owner,
                                &mut snap,
                                progress,
                            )
                            .with_context(|| format!("database {}", source.name))?;
                        None
                    }
                    Form::Unchanged => None,
                };
                let check = snap
                    .finish()
                    .with_context(|| format!("database {}", source.name))?;
                let check = if settings.workers == 1 {
                    // One core: the check runs before the next snapshot starts.
                    let checked = check
                        .wait()
                        .with_context(|| format!("database {}", source.name))?;
                    PendingCheck::passed(&source.name, checked)
                } else {
                    check
                };
                checking.push(Streamed {
                    source,
                    info,
                    check,
                    entry,
                });
            }
            SourceKind::File | SourceKind::Dir => {
                progress.stage(&source.name);
                let (items, folders) = files::collect(
                    &source.name,
                    &source.path,
                    source.kind == SourceKind::Dir,
                    &mut skipped,
                )?;
                dirs.extend(folders.into_iter().map(|d| DirEntry {
                    path: d.archive_path,
                    source: source.name.clone(),
                    mode: d.mode,
                    uid: d.uid,
                    gid: d.gid,
                }));
                for item in items {
                    let mut open =
                        files::open(&item).with_context(|| format!("source {}", source.name))?;
                    let size = open.size;
                    let owner = Ownership {
                        mode: open.mode,
                        uid: open.uid,
                        gid: open.gid,
                    };
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
        }
    }

    let mut databases = Vec::new();
    let mut index = Vec::new();
    for Streamed {
        source,
        info,
        check,
        entry,
    } in checking
    {
        let checked: Checked = check
            .wait()
            .with_context(|| format!("database {}", source.name))?;
        if let Some(entry) = entry {
            writer.set_hash(entry, &checked.blake3);
        }
        let parent = pages.parent.and_then(|p| p.database(&source.name));
        let stored = pages.parent.map(|_| match (info.form, parent) {
            (Form::Wal { frames }, Some(parent)) => Stored::Wal {
                wal: wal_path(&source.name),
                frames,
                parent_blake3: parent.blake3.clone(),
            },
            (Form::Unchanged, Some(parent)) => Stored::Unchanged {
                parent_blake3: parent.blake3.clone(),
            },
            _ => Stored::Whole,
        });
        if pages.keep {
            index.push(checked.index_entry(&source.name, &info));
        }
        databases.push(DatabaseEntry {
            source: source.name.clone(),
            path: source.name.clone(),
            page_size: info.page_size,
            page_count: info.page_count,
            sqlite_version: info.sqlite_version,
            user_version: info.user_version,
            journal_mode: info.journal_mode,
            check: source.check,
            row_counts: checked.row_counts,
            blake3: Some(checked.blake3),
            stored,
            mode: Some(info.mode),
            uid: Some(info.uid),
            gid: Some(info.gid),
        });
    }
    // The manifest lists databases in the config's order, whatever order they were stored in.
    let position = |name: &str| settings.sources.iter().position(|s| s.name == name);
    databases.sort_by_key(|d| position(&d.source));
    index.sort_by_key(|d| position(&d.source));
    Ok(Added {
        sources,
        databases,
        dirs,
        skipped,
        pages: index,
    })
}
