//! A configured destination: an OpenDAL operator with retries and timeouts, rooted at this
//! host's namespace, and the few operations litevault needs from any backend.
//!
//! Writes never expose a partial object under its final name: where the backend can rename, an
//! object is written under `tmp/` and renamed into place; where it cannot (S3), the backend's own
//! upload is invisible until completed.

use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use opendal::blocking;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};

use super::runtime;
use super::url::Location;
use crate::config;

/// Folder (inside the namespace) for objects that are still being written.
pub const TMP_DIR: &str = "tmp/";

pub struct Destination {
    pub name: String,
    /// The URL without secrets, for messages.
    pub display: String,
    op: blocking::Operator,
    can_rename: bool,
}

/// An object listed in the namespace folder.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: String,
    pub size: u64,
}

impl Destination {
    /// Build the operator for `cfg`, rooted at `<url root>/<namespace>/`.
    pub fn open(cfg: &config::Destination, base: &Path, namespace: &str) -> Result<Destination> {
        let location =
            Location::parse(&cfg.url, base).with_context(|| format!("destination {}", cfg.name))?;
        let display = location.display();
        let _guard = runtime::get().enter();
        let op = match &location {
            Location::File { root } => {
                let root = root.join(namespace);
                let builder = opendal::services::Fs::default().root(&root.to_string_lossy());
                Operator::new(builder)
                    .map_err(storage_error)
                    .with_context(|| {
                        format!(
                            "destination {} ({display}): cannot open {}",
                            cfg.name,
                            root.display()
                        )
                    })?
            }
        };
        // Timeout before retry, so a hung request is retried rather than waited on forever.
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(60))
                    .with_io_timeout(Duration::from_secs(60)),
            )
            .layer(RetryLayer::new().with_max_times(cfg.retries).with_jitter());
        let can_rename = op.info().capability().rename;
        let op = blocking::Operator::new(op)?;
        Ok(Destination {
            name: cfg.name.clone(),
            display,
            op,
            can_rename,
        })
    }

    fn ctx(&self, what: &str, path: &str) -> String {
        format!(
            "destination {} ({}): {what} {path}",
            self.name, self.display
        )
    }

    /// Objects directly in `dir` ("" for the namespace folder itself). A namespace that does not
    /// exist yet is empty, not an error.
    pub fn list(&self, dir: &str) -> Result<Vec<Object>> {
        let entries = match self.op.list(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(storage_error(e)).with_context(|| self.ctx("listing", dir)),
        };
        let mut out = Vec::new();
        for entry in entries {
            if entry.metadata().is_dir() {
                continue;
            }
            let name = entry
                .path()
                .strip_prefix(dir)
                .unwrap_or(entry.path())
                .to_string();
            let size = entry.metadata().content_length();
            out.push(Object { name, size });
        }
        Ok(out)
    }

    /// A small object, whole (sidecars). Refuses objects over `limit` bytes.
    pub fn read_small(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let meta = self
            .op
            .stat(path)
            .map_err(storage_error)
            .with_context(|| self.ctx("reading", path))?;
        if meta.content_length() > limit {
            anyhow::bail!(
                "{}: {} bytes, more than the {limit} expected",
                self.ctx("reading", path),
                meta.content_length()
            );
        }
        let buf = self
            .op
            .read(path)
            .map_err(storage_error)
            .with_context(|| self.ctx("reading", path))?;
        Ok(buf.to_vec())
    }

    /// Stream an object.
    pub fn reader(&self, path: &str) -> Result<impl Read + use<>> {
        let r = self
            .op
            .reader(path)
            .map_err(storage_error)
            .with_context(|| self.ctx("reading", path))?;
        r.into_std_read(..)
            .map_err(storage_error)
            .with_context(|| self.ctx("reading", path))
    }

    pub fn size(&self, path: &str) -> Result<Option<u64>> {
        match self.op.stat(path) {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage_error(e)).with_context(|| self.ctx("checking", path)),
        }
    }

    /// Start writing `path`; nothing is visible under that name until [`Upload::commit`].
    pub fn upload(&self, path: &str) -> Result<Upload<'_>> {
        let staging = if self.can_rename {
            format!("{TMP_DIR}{path}")
        } else {
            path.to_string()
        };
        let writer = self
            .op
            .writer_options(
                &staging,
                opendal::options::WriteOptions {
                    chunk: Some(8 << 20),
                    ..Default::default()
                },
            )
            .map_err(storage_error)
            .with_context(|| self.ctx("writing", path))?;
        Ok(Upload {
            dest: self,
            staging,
            path: path.to_string(),
            writer: Some(writer),
            sent: 0,
        })
    }

    /// Write a small object in one piece, never visible half-written.
    pub fn put(&self, path: &str, body: Vec<u8>) -> Result<()> {
        let mut up = self.upload(path)?;
        up.write(bytes::Bytes::from(body))?;
        up.commit()?;
        Ok(())
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        self.op
            .delete(path)
            .map_err(storage_error)
            .with_context(|| self.ctx("deleting", path))
    }
}

/// An object being written. Dropped without [`Upload::commit`], it is aborted.
pub struct Upload<'d> {
    dest: &'d Destination,
    staging: String,
    path: String,
    writer: Option<blocking::Writer>,
    sent: u64,
}

impl Upload<'_> {
    pub fn write(&mut self, chunk: bytes::Bytes) -> Result<()> {
        let n = chunk.len() as u64;
        let writer = self.writer.as_mut().expect("upload already finished");
        writer
            .write(chunk)
            .map_err(storage_error)
            .with_context(|| self.dest.ctx("writing", &self.path))?;
        self.sent += n;
        Ok(())
    }

    /// Complete the upload, move it to its final name, and confirm the stored size is what was
    /// sent. Returns the stored size.
    pub fn commit(mut self) -> Result<u64> {
        let mut writer = self.writer.take().expect("upload already finished");
        writer
            .close()
            .map_err(storage_error)
            .with_context(|| self.dest.ctx("completing", &self.path))?;
        if self.staging != self.path {
            self.dest
                .op
                .rename(&self.staging, &self.path)
                .map_err(storage_error)
                .with_context(|| self.dest.ctx("renaming into place", &self.path))?;
        }
        let stored = self.dest.size(&self.path)?.unwrap_or(0);
        if stored != self.sent {
            anyhow::bail!(
                "{}: stored {stored} bytes but sent {}; the upload is incomplete",
                self.dest.ctx("confirming", &self.path),
                self.sent
            );
        }
        Ok(stored)
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Not committed: abort what the backend started and remove what may be staged.
            drop(writer);
            let _ = self.dest.op.delete(&self.staging);
        }
    }
}

/// OpenDAL errors carry the request (with our paths, never credentials); say what to do for the
/// kinds a user can act on.
fn storage_error(e: opendal::Error) -> anyhow::Error {
    let hint = match e.kind() {
        ErrorKind::PermissionDenied => Some("check the destination's credentials and permissions"),
        ErrorKind::NotFound => Some("check that the destination exists (folder, bucket or path)"),
        ErrorKind::RateLimited => Some("the backend throttled the request; try again later"),
        _ => None,
    };
    let err = anyhow::Error::new(io::Error::other(e.to_string()));
    match hint {
        Some(h) => err.context(h),
        None => err,
    }
}
