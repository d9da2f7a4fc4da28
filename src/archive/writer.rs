//! Builds an archive: each source streamed into tar, hashed on the way, then compressed and
//! encrypted, with `manifest.json` and `BLAKE3SUMS` appended last.

use std::io::{self, Read, Write};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use super::layers::{Compress, Encrypt, Hashing};
use super::manifest::{DatabaseEntry, FileEntry, Manifest, SourceEntry, MANIFEST_NAME, SUMS_NAME};
use crate::config::{Compression, Settings, SourceKind};
use crate::crypto::Sealer;
use crate::progress::Progress;
use crate::source::files::{self, Skipped};
use crate::source::sqlite::Snapshot;

type Stack<W> = Compress<Encrypt<Hashing<W>>>;

pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Stack<W>>,
    mtime: u64,
    files: Vec<FileEntry>,
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
        mode: u32,
        data: R,
        progress: &dyn Progress,
    ) -> Result<&FileEntry> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        let mut reader = Exact {
            inner: Hashing::new(data),
            left: size,
            progress,
        };
        self.tar
            .append_data(&mut header, path, &mut reader)
            .with_context(|| format!("writing {path} into the archive"))?;
        if reader.left != 0 {
            bail!("{path}: the source ended {} bytes early", reader.left);
        }
        let (_, n, hash) = reader.inner.finish();
        debug_assert_eq!(n, size);
        self.files.push(FileEntry {
            path: path.to_string(),
            source: source.to_string(),
            size,
            blake3: hash,
            mode,
        });
        Ok(self.files.last().expect("just pushed"))
    }

    /// Append the manifest and sums, then close every layer in order.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<Written<W>> {
        manifest.files = std::mem::take(&mut self.files);
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

/// Stream every configured source into `writer`; returns the manifest skeleton (sources and
/// databases) and what was passed over. Database snapshots run ahead on their own threads, up to
/// `settings.workers` at a time, so one database is checked while another streams.
pub fn add_sources<W: Write>(
    writer: &mut ArchiveWriter<W>,
    settings: &Settings,
    progress: &dyn Progress,
) -> Result<(Vec<SourceEntry>, Vec<DatabaseEntry>, Skipped)> {
    let mut skipped = Skipped::default();
    let mut sources = Vec::new();
    let mut databases = Vec::new();

    // Every snapshot starts at once, in config order: each checks its database while earlier ones
    // stream, so the checks are off the critical path; each holds at most a small channel.
    let db_sources: Vec<_> = settings
        .sources
        .iter()
        .filter(|s| s.kind == SourceKind::Sqlite)
        .collect();
    let mut pending: std::collections::VecDeque<Snapshot> = Default::default();
    let mut started = 0;
    // `workers = 1` asks for one core: then one snapshot at a time.
    let ahead = if settings.workers == 1 {
        1
    } else {
        db_sources.len().max(1)
    };

    for source in &settings.sources {
        sources.push(SourceEntry {
            name: source.name.clone(),
            kind: source.kind,
            origin: source.path.display().to_string(),
        });
        match source.kind {
            SourceKind::Sqlite => {
                while started < db_sources.len() && pending.len() < ahead {
                    let s = db_sources[started];
                    pending.push_back(Snapshot::start(&s.name, &s.path, s.check));
                    started += 1;
                }
                let mut snap = pending
                    .pop_front()
                    .expect("a snapshot was started for each database");
                let info = snap.ready()?;
                progress.stage(&source.name);
                writer
                    .add(
                        &source.name,
                        &source.name,
                        info.size(),
                        0o600,
                        &mut snap,
                        progress,
                    )
                    .with_context(|| format!("database {}", source.name))?;
                snap.finish()
                    .with_context(|| format!("database {}", source.name))?;
                databases.push(DatabaseEntry {
                    source: source.name.clone(),
                    path: source.name.clone(),
                    page_size: info.page_size,
                    page_count: info.page_count,
                    sqlite_version: info.sqlite_version,
                    user_version: info.user_version,
                    journal_mode: info.journal_mode,
                    check: source.check,
                    row_counts: info.row_counts,
                });
            }
            SourceKind::File | SourceKind::Dir => {
                progress.stage(&source.name);
                let items = files::collect(
                    &source.name,
                    &source.path,
                    source.kind == SourceKind::Dir,
                    &mut skipped,
                )?;
                for item in items {
                    let mut open =
                        files::open(&item).with_context(|| format!("source {}", source.name))?;
                    let (size, mode) = (open.size, open.mode);
                    writer.add(
                        &item.archive_path,
                        &source.name,
                        size,
                        mode,
                        &mut open,
                        progress,
                    )?;
                    open.confirm_unchanged()
                        .with_context(|| format!("source {}", source.name))?;
                }
            }
        }
    }
    Ok((sources, databases, skipped))
}
