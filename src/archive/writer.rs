//! Builds an archive: each source streamed into tar, hashed on the way, then compressed and
//! encrypted, with `manifest.json` and `BLAKE3SUMS` appended last.

use std::io::{self, Read, Write};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use super::layers::{Compress, Encrypt, Hashing};
use super::manifest::{FileEntry, Manifest, MANIFEST_NAME, SUMS_NAME};
use crate::config::Compression;
use crate::crypto::Sealer;
use crate::progress::Progress;

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
    pub(super) fn add_prehashed<R: Read>(
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

    pub(super) fn set_hash(&mut self, index: usize, blake3: &str) {
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
