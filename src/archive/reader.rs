//! Unpacks an archive into a private folder, trusting nothing in it.
//!
//! Every entry must be a regular file named in the sidecar's manifest, at a plain relative path,
//! of exactly the manifest's size, hashing to the manifest's BLAKE3; the in-tar manifest must
//! equal the sidecar's; the stored bytes must have the sidecar's size and hash; and the age and
//! zstd streams must end with their authentication and checksum intact. Any breach is an
//! integrity fault (exit 4) naming the entry.
//!
//! Stored bytes that differ from the sidecar are reported as such, before any other reading of
//! what went wrong: a flipped byte in the age header looks to age exactly like a wrong key.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{Context, Result};

use super::layers::{drain, open_layers, Hashing};
use super::manifest::{ArchiveInfo, Manifest, Sidecar, MANIFEST_NAME, SUMS_NAME};
use crate::crypto::Opener;
use crate::exit::integrity;
use crate::progress::Progress;
use crate::state::ensure_private_dir;

/// The manifest and sums are small next to the files they list; a huge one is hostile.
const METADATA_LIMIT: u64 = 64 << 20;

/// The room for the manifest and sums of `expected`: they grow with the files they list (a
/// folder of 200,000 files has a manifest of about 40 MiB), so a fixed limit would refuse an
/// honest archive of many files. Per file: its JSON fields, and its path as JSON may escape it.
fn metadata_limit(expected: &Manifest) -> u64 {
    let listed: u64 = expected
        .files
        .iter()
        .map(|f| 512 + 6 * f.path.len() as u64)
        .sum();
    // And each folder recorded (a tree of empty folders has more of them than files).
    let folders: u64 = expected
        .dirs
        .iter()
        .map(|d| 256 + 6 * d.path.len() as u64)
        .sum();
    // And each database's own entry, whose row counts grow with its tables (one stored unchanged
    // has no file at all).
    let databases: u64 = expected
        .databases
        .iter()
        .map(|d| {
            1024 + 6 * d.path.len() as u64
                + d.row_counts
                    .keys()
                    .map(|t| 64 + 6 * t.len() as u64)
                    .sum::<u64>()
        })
        .sum();
    METADATA_LIMIT + listed + folders + databases
}

/// Where an archive entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Into a new file at its path under the unpack folder.
    Write,
    /// To [`Entries::feed`], piece by piece (a database being rebuilt from a chain).
    Feed,
    /// Nowhere: it is still read, hashed and checked.
    Skip,
}

/// What the caller does with each entry, all of which are checked the same way.
pub trait Entries {
    fn route(&mut self, _path: &str) -> Route {
        Route::Write
    }

    /// The next bytes of a fed entry, before its hash is known to match: whatever they go
    /// into must not be trusted until [`Entries::done`] (or the whole extraction) succeeds.
    fn feed(&mut self, path: &str, _bytes: &[u8]) -> Result<()> {
        anyhow::bail!("{path}: nothing takes fed entries")
    }

    /// The entry at `path` (of `size` bytes) has matched its hash. An error stops the
    /// unpacking.
    fn done(&mut self, path: &str, size: u64, route: Route) -> Result<()>;
}

/// Unpack the archive read from `stored` into `into` (an empty private folder), each entry
/// where `entries` routes it. `entries` hears of each file as soon as its hash has matched, so
/// a caller can sync it or check a database on another thread while the next one unpacks.
pub fn extract<R: Read + Send>(
    stored: R,
    sidecar: &Sidecar,
    opener: Option<&Opener>,
    into: &Path,
    progress: &dyn Progress,
    entries: &mut dyn Entries,
) -> Result<()> {
    let info = &sidecar.archive;
    let encrypted = info.encryption != "none";
    // Two stages on two threads: the stored bytes are hashed, decrypted and decompressed on one
    // while this one unpacks, hashes and writes files; a small channel between them keeps
    // memory bounded.
    let (unpacked, decoded) = std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(DECODED_DEPTH);
        let decoder = scope.spawn(move || decode(stored, info, encrypted, opener, tx));
        let unpacked = unpack(
            ChannelReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
            },
            sidecar,
            into,
            progress,
            entries,
        );
        let decoded = decoder
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the decoding thread panicked")));
        (unpacked, decoded)
    });
    // A decoder that could not even start (a wrong key, damaged stored bytes) explains why
    // unpacking saw nothing.
    let (count, got) = match (decoded, unpacked) {
        (Err(e), _) => return Err(e),
        (Ok(_), Err(e)) => return Err(e),
        (Ok(None), Ok(())) => anyhow::bail!("the decoding stopped before the end of the archive"),
        (Ok(Some(done)), Ok(())) => done,
    };
    check_stored(info, count, &got)
}

/// The stored bytes' size and BLAKE3 against the sidecar's.
fn check_stored(info: &ArchiveInfo, count: u64, blake3: &str) -> Result<()> {
    let what = if count != info.bytes {
        format!("it has {count} bytes, the sidecar says {}", info.bytes)
    } else if blake3 != info.blake3 {
        format!(
            "its BLAKE3 {blake3} differs from the sidecar's {}",
            info.blake3
        )
    } else {
        return Ok(());
    };
    Err(anyhow::Error::new(
        integrity(format!(
            "the stored archive {} is damaged: {what}",
            info.object
        ))
        .hint("restore another backup (`litevault list`), or this one from another destination"),
    ))
}

/// Chunks of decoded (tar) bytes in flight between the two stages.
const DECODED_DEPTH: usize = 4;
const DECODED_CHUNK: usize = 256 << 10;

/// The first stage: hash the stored bytes, peel age and the compression, and send the tar bytes
/// on. Returns the stored size and BLAKE3 once the stream has ended whole (age's last chunk
/// authenticated, zstd's checksum matched), or `None` when the other stage stopped listening or
/// was sent the error.
///
/// When a layer cannot be opened or read, the rest of the stored bytes are still read and
/// hashed: if they differ from the sidecar, the archive is damaged, whatever age or zstd made of
/// it; only intact bytes let the layer's own error (a wrong key) stand.
fn decode<R: Read>(
    stored: R,
    info: &ArchiveInfo,
    encrypted: bool,
    opener: Option<&Opener>,
    tx: SyncSender<io::Result<Vec<u8>>>,
) -> Result<Option<(u64, String)>> {
    let mut tap = Hashing::new(stored);
    let failure = match open_layers(&mut tap, &info.compression, encrypted, opener) {
        Err(e) => Some(Failure::Open(e)),
        Ok(mut plain) => match pump(&mut plain, &tx) {
            Pumped::Ended => None,
            Pumped::Unheard => return Ok(None),
            Pumped::Failed(e) if is_interrupt(&e) => {
                // A stop that was asked for, not damage: no point reading on.
                let _ = tx.send(Err(e));
                return Ok(None);
            }
            Pumped::Failed(e) => Some(Failure::Read(e)),
        },
    };
    // Also on success: bytes after age's last chunk would be outside every check but this one.
    let rest = read_to_end(&mut tap);
    let (_, count, hash) = tap.finish();
    match rest {
        Err(e) if failure.is_none() || is_interrupt(&e) => {
            return Err(anyhow::Error::new(e).context("reading the stored archive"));
        }
        // The stored bytes cannot be read to their end: the layer's error is all there is to say.
        Err(_) => {}
        Ok(()) if failure.is_some() => check_stored(info, count, &hash)?,
        Ok(()) => {}
    }
    let Some(failure) = failure else {
        return Ok(Some((count, hash)));
    };
    match failure {
        Failure::Open(e) => Err(e),
        Failure::Read(e) => {
            // Sent on, so the unpacking reports it with the entry it was reading.
            let _ = tx.send(Err(e));
            Ok(None)
        }
    }
}

enum Failure {
    Open(anyhow::Error),
    Read(io::Error),
}

fn is_interrupt(e: &io::Error) -> bool {
    crate::exit::fault_in(e).is_some_and(|f| f.exit == crate::exit::Exit::Interrupted)
}

/// How sending the decoded bytes on ended.
enum Pumped {
    /// The decoded stream ended whole.
    Ended,
    /// The other stage stopped listening; it reports why.
    Unheard,
    Failed(io::Error),
}

fn pump(plain: &mut dyn Read, tx: &SyncSender<io::Result<Vec<u8>>>) -> Pumped {
    loop {
        let mut buf = vec![0u8; DECODED_CHUNK];
        let mut filled = 0;
        while filled < buf.len() {
            match plain.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Pumped::Failed(e),
            }
        }
        if filled == 0 {
            return Pumped::Ended;
        }
        buf.truncate(filled);
        if tx.send(Ok(buf)).is_err() {
            return Pumped::Unheard;
        }
    }
}

/// Read and discard the rest of the stored bytes (so the tap hashes them), stopping when a stop
/// is asked for.
fn read_to_end<R: Read>(r: &mut R) -> io::Result<()> {
    let mut buf = vec![0u8; DECODED_CHUNK];
    loop {
        crate::interrupt::check_io()?;
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The second stage's view of the first: a `Read` over the channel.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The decoder finished (or failed; its error is reported instead).
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The second stage: unpack the tar stream with every check on each entry.
fn unpack<P: Read>(
    plain: P,
    sidecar: &Sidecar,
    into: &Path,
    progress: &dyn Progress,
    entries: &mut dyn Entries,
) -> Result<()> {
    let mut archive = tar::Archive::new(plain);
    let expected = &sidecar.manifest;
    let wanted = expected.file_index();
    let limit = metadata_limit(expected);
    let mut seen: HashSet<&str> = HashSet::new();
    // Folders made so far: a tree of many files in few folders needs one mkdir per folder, not
    // one per file.
    let mut made: HashSet<PathBuf> = HashSet::new();
    let mut inner_manifest: Option<Manifest> = None;
    let mut sums: Option<String> = None;

    let mut buf = vec![0u8; 256 * 1024];
    let items = archive.entries().map_err(damaged)?;
    for entry in items {
        let mut entry = entry.map_err(damaged)?;
        let path_bytes = entry.path_bytes().into_owned();
        let path = String::from_utf8(path_bytes)
            .map_err(|_| integrity("archive entry with a name that is not UTF-8"))?;
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            return Err(integrity(format!(
                "archive entry {path:?} is a {kind:?}, not a regular file; refusing it"
            ))
            .into());
        }
        let size = entry.size();
        if path == MANIFEST_NAME || path == SUMS_NAME {
            if size > limit {
                return Err(integrity(format!(
                    "{path} in the archive is {size} bytes; refusing it"
                ))
                .into());
            }
            let mut body = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut body).map_err(damaged)?;
            if path == MANIFEST_NAME {
                let parsed: Manifest = serde_json::from_slice(&body).map_err(|e| {
                    integrity(format!("manifest.json in the archive is not valid: {e}"))
                })?;
                inner_manifest = Some(parsed);
            } else {
                sums = Some(String::from_utf8_lossy(&body).into_owned());
            }
            continue;
        }
        check_path(&path)?;
        let Some(&want) = wanted.get(path.as_str()) else {
            return Err(integrity(format!(
                "archive entry {path:?} is not in the manifest; refusing it"
            ))
            .into());
        };
        if !seen.insert(want.path.as_str()) {
            return Err(integrity(format!("archive entry {path:?} appears twice")).into());
        }
        if size != want.size {
            return Err(integrity(format!(
                "archive entry {path:?} is {size} bytes, the manifest says {}; refusing it",
                want.size
            ))
            .into());
        }
        let route = entries.route(&path);
        let target = into.join(&path);
        let mut out = match route {
            Route::Write => {
                if let Some(parent) = target.parent() {
                    if !made.contains(parent) {
                        ensure_private_dir(parent)?;
                        made.insert(parent.to_path_buf());
                    }
                }
                Some(
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&target)
                        .with_context(|| format!("creating {}", target.display()))?,
                )
            }
            Route::Feed | Route::Skip => None,
        };
        let mut hasher = blake3::Hasher::new();
        let mut left = size;
        while left > 0 {
            crate::interrupt::check_io()?;
            let want = buf.len().min(left as usize);
            let n = entry.read(&mut buf[..want]).map_err(damaged)?;
            if n == 0 {
                return Err(integrity(format!("archive entry {path:?} is truncated")).into());
            }
            hasher.update(&buf[..n]);
            match (&mut out, route) {
                (Some(out), _) => out
                    .write_all(&buf[..n])
                    .with_context(|| format!("writing {}", target.display()))?,
                (None, Route::Feed) => entries.feed(&path, &buf[..n])?,
                _ => {}
            }
            left -= n as u64;
            progress.advance(n as u64);
        }
        let got = hasher.finalize().to_hex().to_string();
        if got != want.blake3 {
            return Err(integrity(format!(
                "{path}: BLAKE3 {got} does not match the manifest's {}",
                want.blake3
            ))
            .into());
        }
        drop(out);
        entries.done(&path, size, route)?;
    }

    // Read to the very end, so zstd's checksum and age's final authenticated chunk are checked
    // and the stored bytes are hashed whole.
    let plain = archive.into_inner();
    drain(plain).map_err(damaged)?;

    match inner_manifest {
        None => return Err(integrity("the archive holds no manifest.json").into()),
        Some(m) if &m != expected => {
            return Err(integrity(
                "manifest.json in the archive differs from the sidecar's manifest",
            )
            .into())
        }
        Some(_) => {}
    }
    if sums.as_deref() != Some(expected.blake3sums().as_str()) {
        return Err(
            integrity("BLAKE3SUMS in the archive is missing or differs from the manifest").into(),
        );
    }
    if let Some(missing) = expected
        .files
        .iter()
        .find(|f| !seen.contains(f.path.as_str()))
    {
        return Err(integrity(format!(
            "{} is in the manifest but not in the archive",
            missing.path
        ))
        .into());
    }
    Ok(())
}

/// A relative path of plain names: no root, no `..`, no `.`, nothing empty.
pub(crate) fn check_path(path: &str) -> Result<()> {
    let p = Path::new(path);
    let plain = !path.is_empty()
        && !path.contains('\\')
        && !path.ends_with('/')
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if !plain {
        return Err(integrity(format!(
            "archive entry {path:?} has an unsafe path; refusing it"
        ))
        .into());
    }
    Ok(())
}

/// Errors from inside the layered stream (a bad age tag, a zstd checksum, a truncated tar) mean
/// damaged data, so they are integrity faults.
fn damaged(e: io::Error) -> anyhow::Error {
    if let Some(fault) = crate::exit::fault_in(&e) {
        // Not damage: a stop that was asked for.
        return anyhow::Error::new(crate::exit::Fault::new(fault.exit, fault.message.clone()));
    }
    anyhow::Error::new(integrity(format!(
        "the archive is damaged or truncated: {e}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "a//b",
            "./a",
            "a/.",
            "",
            "a\\..\\b",
            "a/",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        for good in ["auth.db", "etc/tls/server.pem", "a b/c"] {
            assert!(check_path(good).is_ok(), "{good:?}");
        }
    }
}
