//! A configured destination: an OpenDAL operator with retries and timeouts, rooted at this
//! host's namespace, and the few operations litevault needs from any backend.
//!
//! Writes never expose a partial object under its final name: where the backend can rename, an
//! object is written under `tmp/` and renamed into place; where it cannot (S3), the backend's own
//! upload is invisible until completed.

use std::io::{self, Read};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use opendal::{ErrorKind, Operator};

use super::link::Link;
use super::runtime;

/// Folder (inside the namespace) for objects that are still being written.
pub const TMP_DIR: &str = "tmp/";

pub struct Destination {
    pub name: String,
    /// The host folder it is opened at (the config's `name`); `None` at the destination's root.
    pub namespace: Option<String>,
    /// The URL without secrets, for messages.
    pub display: String,
    pub(super) op: Operator,
    pub(super) link: Link,
    pub(super) can_rename: bool,
    pub(super) chunk: Option<usize>,
    pub(super) concurrency: usize,
    /// Sidecars and signatures a listing reads at once (see `small_reads`).
    pub(super) small_read_concurrency: usize,
    /// Archives of at least this many bytes are downloaded in ranges (see `ranged`).
    pub(super) parallel_download_threshold: u64,
    /// Whose signatures make a backup here trusted: read by the catalogue on every listing.
    pub(super) trust: crate::trust::Verifier,
    /// Sidecars and signatures already seen (see `cache`); none without a state folder.
    pub(super) cache: Option<super::cache::ObjectCache>,
    /// `--as-of`: every object as the version that was current then (see `as_of`); read-only.
    pub(super) view: Option<super::as_of::View>,
    /// SFTP only: litevault's own session there (see `sftp_session`).
    pub(super) sftp: Option<super::sftp_session::Side>,
}

use super::object::version_of;
pub use super::object::Object;

pub use super::root::{file_root, Root};

/// What a destination is given besides its operator, once, at construction: whose signatures
/// make a backup trusted, and where sidecars already seen are kept.
#[derive(Default)]
pub struct Setup {
    pub trust: crate::trust::Verifier,
    pub cache: Option<super::cache::ObjectCache>,
}

impl Destination {
    /// This destination as it was at `at`: each object the version that was current then.
    /// Only storage that keeps versions has a past; anything else is an error naming it.
    pub fn as_of(mut self, at: std::time::SystemTime) -> Result<Destination> {
        let loaded = self.call("listing the versions in", "", || {
            super::as_of::View::load(&self.op, at)
        })?;
        let hint = "--as-of reads an S3 bucket with versioning (or object lock) on; without them deleted backups are gone for good (see Ransomware in the README)";
        match loaded {
            Ok(view) => {
                self.view = Some(view);
                Ok(self)
            }
            Err(super::as_of::NoView::Unsupported) => Err(anyhow::Error::new(
                crate::exit::config(format!(
                    "destination {} ({}) keeps no versions, so it has no past to read",
                    self.name, self.display
                ))
                .hint(hint),
            )),
            Err(super::as_of::NoView::NoVersions) => Err(anyhow::Error::new(
                crate::exit::config(format!(
                    "destination {} ({}): its bucket has never kept an older version (versioning is off), so it has no past to read",
                    self.name, self.display
                ))
                .hint(hint),
            )),
        }
    }

    /// The time this destination is seen at, when it is an `--as-of` view.
    pub fn seen_at(&self) -> Option<std::time::SystemTime> {
        self.view.as_ref().map(|v| v.at)
    }

    /// Writes are refused on a view of the past: it is for reading what was there.
    fn writable(&self, path: &str) -> Result<()> {
        match &self.view {
            None => Ok(()),
            Some(_) => Err(anyhow::Error::new(crate::exit::config(format!(
                "destination {} is seen as it was (--as-of): nothing is written to it ({path})",
                self.name
            )))),
        }
    }

    /// Whose signatures make a backup here trusted.
    pub fn trust(&self) -> &crate::trust::Verifier {
        &self.trust
    }

    /// Sidecars and signatures already seen, when there is a state folder to keep them in.
    pub fn cache(&self) -> Option<&super::cache::ObjectCache> {
        self.cache.as_ref()
    }

    /// Trust `signer` too: `rekey` re-signs what this host's own key signed, with or without
    /// `[trust]`.
    pub fn trust_also(&mut self, signer: &crate::trust::Signer) {
        self.trust = self.trust.with_signer(signer);
    }

    /// One request to the backend, once the destination's folder is known to be there.
    fn call<T, F, Fut>(&self, what: &str, path: &str, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = opendal::Result<T>>,
    {
        self.ready()?;
        self.link.call(what, path, f)
    }

    /// Before the first request: OpenDAL's SFTP service creates the destination's folder on
    /// connect, so it is looked at first, as [`file_root`] does for `file://`.
    fn ready(&self) -> Result<()> {
        match &self.sftp {
            Some(side) => side.ready(&self.link),
            None => Ok(()),
        }
    }

    /// SFTP: the destination's folder and this host's namespace in it, looked at without
    /// creating anything (for `check`, which must not make them); `None` for other backends. A
    /// missing folder is an error unless `create = true`, as for `file://`.
    pub fn sftp_lookout(&self) -> Result<Option<super::sftp_session::Lookout>> {
        self.sftp
            .as_ref()
            .map(|side| side.lookout(&self.link))
            .transpose()
    }

    /// SFTP: remove this host's namespace folder and its `tmp/` if they are empty (made by
    /// `check`'s probe, as OpenDAL makes them on connect).
    pub fn sftp_remove_empty_namespace(&self) {
        if let Some(side) = &self.sftp {
            side.remove_empty_namespace(&self.link);
        }
    }

    /// SFTP: create `path` empty and private (0600, in 0700 folders) before OpenDAL writes it.
    fn make_private(&self, path: &str) -> Result<()> {
        match &self.sftp {
            Some(side) => side.make_private(&self.link, path),
            None => Ok(()),
        }
    }

    /// Objects directly in `dir` ("" for the namespace folder itself). A namespace that does not
    /// exist yet is empty, not an error.
    pub fn list(&self, dir: &str) -> Result<Vec<Object>> {
        if let Some(view) = &self.view {
            return Ok(view.list(dir));
        }
        let listed = self.call("listing", dir, || async {
            match self.op.list(dir).await {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                other => other,
            }
        })?;
        let mut out = Vec::new();
        for entry in listed {
            if entry.metadata().is_dir() {
                continue;
            }
            let name = entry
                .path()
                .strip_prefix(dir)
                .unwrap_or(entry.path())
                .to_string();
            let size = entry.metadata().content_length();
            let version = version_of(entry.metadata());
            out.push(Object {
                name,
                size,
                version,
            });
        }
        Ok(out)
    }

    /// Folders directly in `dir` ("" for the root), by name without the trailing '/'.
    pub fn folders(&self, dir: &str) -> Result<Vec<String>> {
        if let Some(view) = &self.view {
            return Ok(view.folders(dir));
        }
        let listed = self.call("listing", dir, || async {
            match self.op.list(dir).await {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                other => other,
            }
        })?;
        Ok(listed
            .into_iter()
            .filter(|entry| entry.metadata().is_dir())
            .filter_map(|entry| {
                let name = entry.path().strip_prefix(dir).unwrap_or(entry.path());
                let name = name.trim_matches('/');
                // Some backends list the folder itself among its entries.
                (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
            })
            .collect())
    }

    /// A small object, whole (sidecars). Refuses objects over `limit` bytes.
    pub fn read_small(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        if let Some(view) = &self.view {
            let Some(v) = view.get(path) else {
                anyhow::bail!("{}: it did not exist then", self.link.ctx("reading", path));
            };
            return self.read_within(path, v.size, limit);
        }
        let meta = self.call("reading", path, || self.op.stat(path))?;
        self.read_within(path, meta.content_length(), limit)
    }

    /// The version of `path` to read: the one current at the view's time, or the present.
    fn version(&self, path: &str) -> Option<&str> {
        self.view
            .as_ref()
            .and_then(|v| v.get(path))
            .map(|v| v.id.as_str())
    }

    fn read_within(&self, path: &str, size: u64, limit: u64) -> Result<Vec<u8>> {
        self.refuse_oversized(path, size, limit)?;
        let buf = self.call("reading", path, || async {
            match self.version(path) {
                Some(v) => self.op.read_with(path).version(v).await,
                None => self.op.read(path).await,
            }
        })?;
        self.refuse_overlong(path, buf.len() as u64, limit)?;
        Ok(buf.to_vec())
    }

    /// A small object as listed (or stat'ed), in one request: from the cache when the entry
    /// still matches the listing, else read and kept there.
    pub fn read_listed(&self, obj: &Object, limit: u64) -> Result<Vec<u8>> {
        if let Some(body) = self.cache.as_ref().and_then(|c| c.get(obj)) {
            return Ok(body);
        }
        let body = self.read_within(&obj.name, obj.size, limit)?;
        if let Some(cache) = &self.cache {
            cache.put(obj, &body);
        }
        Ok(body)
    }

    /// What the destination says about one object, as a listing would: `None` when it is not
    /// there.
    pub fn stat(&self, path: &str) -> Result<Option<Object>> {
        if let Some(view) = &self.view {
            return Ok(view.get(path).map(|v| Object {
                name: path.to_string(),
                size: v.size,
                version: Some(v.id.clone()),
            }));
        }
        self.call("checking", path, || async {
            match self.op.stat(path).await {
                Ok(meta) => Ok(Some(Object {
                    name: path.to_string(),
                    size: meta.content_length(),
                    version: version_of(&meta),
                })),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// Requests this destination may have in flight at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Stream an object; each read can be stopped by a signal.
    pub fn reader(&self, path: &str) -> Result<impl Read + Send + use<>> {
        let version = self.version(path);
        let stream = self.call("reading", path, || async {
            let reader = match version {
                Some(v) => self.op.reader_with(path).version(v).await?,
                None => self.op.reader(path).await?,
            };
            reader.into_bytes_stream(..).await
        })?;
        Ok(ObjectReader {
            link: self.link.clone(),
            path: path.to_string(),
            stream,
            chunk: Bytes::new(),
        })
    }

    /// Stream an archive whose size the caller knows (its sidecar's): on S3, one of at least
    /// `parallel_download_threshold` bytes comes as ranged reads over `concurrency` connections
    /// (see `ranged`); anything else as [`Self::reader`]. SFTP stays one stream: OpenDAL's SFTP
    /// service carries every request over one SSH connection, so ranges would add no connection.
    pub fn reader_sized(&self, path: &str, size: u64) -> Result<Box<dyn Read + Send>> {
        let parallel = matches!(self.link.location, super::url::Location::S3(_))
            && self.concurrency > 1
            && size >= self.parallel_download_threshold.max(1);
        if !parallel {
            return Ok(Box::new(self.reader(path)?));
        }
        let pin = match self.version(path) {
            Some(v) => super::ranged::Pin::Version(v.to_string()),
            None => {
                self.ready()?;
                let meta = self.call("reading", path, || self.op.stat(path))?;
                if meta.content_length() != size {
                    // Not the object the sidecar describes: one stream, so that the usual checks
                    // judge it and say so as they always do.
                    return Ok(Box::new(self.reader(path)?));
                }
                super::ranged::Pin::Etag(meta.etag().map(str::to_string))
            }
        };
        self.ready()?;
        Ok(Box::new(super::ranged::RangedReader::open(
            &self.link,
            &self.op,
            path,
            pin,
            size,
            self.concurrency,
        )?))
    }

    pub fn size(&self, path: &str) -> Result<Option<u64>> {
        if let Some(view) = &self.view {
            return Ok(view.get(path).map(|v| v.size));
        }
        self.call("checking", path, || async {
            match self.op.stat(path).await {
                Ok(meta) => Ok(Some(meta.content_length())),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// Start writing `path`, replacing what may be there (re-keying rewrites a sidecar);
    /// nothing is visible under that name until [`Upload::commit`].
    pub fn upload(&self, path: &str) -> Result<Upload<'_>> {
        self.start_upload(path, false)
    }

    /// Start writing `path`, which must not exist: a stored backup object is never overwritten.
    /// The commit claims the name only if it is still free (S3: a conditional write,
    /// `If-None-Match: *`, where the service supports it).
    pub fn upload_new(&self, path: &str) -> Result<Upload<'_>> {
        self.start_upload(path, true)
    }

    fn start_upload(&self, path: &str, claim: bool) -> Result<Upload<'_>> {
        self.writable(path)?;
        // A name of its own under tmp/: two runs (or a run and a killed one's leftover) never
        // write into the same staged object.
        let staging = if self.can_rename {
            // A name under tmp/ already (rekey's staged sidecar) is staged beside itself, not
            // in a tmp/tmp/ folder that would stay behind, empty, after the rename.
            let name = path.strip_prefix(TMP_DIR).unwrap_or(path);
            format!("{TMP_DIR}{name}.{}", crate::state::nonce())
        } else {
            path.to_string()
        };
        // Before make_private, whose folders would make a missing destination folder too.
        self.ready()?;
        if claim {
            self.refuse_existing(path)?;
        }
        self.make_private(&staging)?;
        let conditional =
            claim && !self.can_rename && self.op.info().capability().write_with_if_not_exists;
        let options = || opendal::options::WriteOptions {
            chunk: self.chunk,
            concurrent: self.concurrency,
            if_not_exists: conditional,
            ..Default::default()
        };
        let writer = self.call("writing", path, || {
            self.op.writer_options(&staging, options())
        })?;
        Ok(Upload {
            dest: self,
            staging,
            path: path.to_string(),
            writer: Some(writer),
            sent: 0,
            claim,
        })
    }

    fn refuse_existing(&self, path: &str) -> Result<()> {
        if self.size(path)?.is_some() {
            return Err(anyhow::Error::new(
                crate::exit::Fault::new(
                    crate::exit::Exit::Failure,
                    format!(
                        "{}: it already exists; litevault never overwrites a stored object",
                        self.link.ctx("writing", path)
                    ),
                )
                .hint("another run or host wrote this name: check `litevault list` and the config's `name`"),
            ));
        }
        Ok(())
    }

    /// Write a small object in one piece, never visible half-written, replacing what may be
    /// there.
    pub fn put(&self, path: &str, body: Vec<u8>) -> Result<()> {
        let mut up = self.upload(path)?;
        up.write(Bytes::from(body))?;
        up.commit()?;
        Ok(())
    }

    /// [`Self::put`] for a name that must not exist yet.
    pub fn put_new(&self, path: &str, body: Vec<u8>) -> Result<()> {
        let mut up = self.upload_new(path)?;
        up.write(Bytes::from(body))?;
        up.commit()?;
        Ok(())
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        self.writable(path)?;
        self.call("deleting", path, || self.op.delete(path))
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        if let Some(session) = self.sftp.as_mut().and_then(|side| side.take_session()) {
            // Ends this session's ssh master; bounded, since the server may be gone.
            runtime::handle().block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(3), session.close()).await;
            });
        }
    }
}

/// A stored object as a `Read`, one streamed request, each chunk awaited interruptibly.
struct ObjectReader {
    link: Link,
    path: String,
    stream: opendal::FuturesBytesStream,
    chunk: Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            let stream = &mut self.stream;
            let next = self.link.call_once("reading", &self.path, async {
                let item = std::future::poll_fn(|cx| {
                    futures_core::Stream::poll_next(std::pin::Pin::new(&mut *stream), cx)
                })
                .await;
                match item {
                    None => Ok(None),
                    Some(Ok(b)) => Ok(Some(b)),
                    Some(Err(e)) => {
                        Err(opendal::Error::new(ErrorKind::Unexpected, e.to_string())
                            .set_temporary())
                    }
                }
            });
            match next {
                Ok(Some(b)) => self.chunk = b,
                Ok(None) => return Ok(0),
                Err(e) => return Err(crate::exit::into_io(e)),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// An object being written. Dropped without [`Upload::commit`], it is aborted.
pub struct Upload<'d> {
    dest: &'d Destination,
    staging: String,
    path: String,
    writer: Option<opendal::Writer>,
    sent: u64,
    /// The final name must still be free when the upload completes.
    claim: bool,
}

impl Upload<'_> {
    pub fn write(&mut self, chunk: Bytes) -> Result<()> {
        let n = chunk.len() as u64;
        let writer = self.writer.as_mut().expect("upload already finished");
        // OpenDAL retries a part itself; a write into a stream is made once.
        self.dest
            .link
            .call_once("writing", &self.path, writer.write(chunk))?;
        self.sent += n;
        Ok(())
    }

    /// Complete the upload, move it to its final name, and confirm the stored size is what was
    /// sent. Returns the stored size.
    pub fn commit(mut self) -> Result<u64> {
        let mut writer = self.writer.take().expect("upload already finished");
        let closed = self
            .dest
            .link
            .call_once("completing", &self.path, writer.close());
        if let Err(e) = closed {
            self.writer = Some(writer);
            return Err(e);
        }
        if self.staging != self.path {
            if self.claim {
                // Renames replace; so the name is checked again just before (the lock keeps this
                // host's own runs apart).
                self.dest.refuse_existing(&self.path)?;
            }
            let (from, to) = (&self.staging, &self.path);
            self.dest
                .link
                .call("renaming into place", to, || self.dest.op.rename(from, to))?;
        }
        let stored = self.dest.size(&self.path)?.unwrap_or(0);
        if stored != self.sent {
            anyhow::bail!(
                "{}: stored {stored} bytes but sent {}; the upload is incomplete",
                self.dest.link.ctx("confirming", &self.path),
                self.sent
            );
        }
        Ok(stored)
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        // Not committed: abort what the backend started (S3: AbortMultipartUpload, so no parts
        // are left behind) and remove what may be staged. Bounded, and quick after a signal: the
        // run must still end within seconds.
        let limit = if crate::interrupt::requested() {
            Duration::from_secs(3)
        } else {
            self.dest.link.timeout
        };
        let op = &self.dest.op;
        let staging = self.staging.clone();
        let can_rename = self.dest.can_rename;
        runtime::handle().block_on(async {
            let _ = tokio::time::timeout(limit, async {
                let _ = writer.abort().await;
                if can_rename {
                    let _ = op.delete(&staging).await;
                }
            })
            .await;
        });
    }
}
