//! A configured destination: an OpenDAL operator with retries and timeouts, rooted at this
//! host's namespace, and the few operations litevault needs from any backend.
//!
//! Writes never expose a partial object under its final name: where the backend can rename, an
//! object is written under `tmp/` and renamed into place; where it cannot (S3), the backend's own
//! upload is invisible until completed.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result};
use opendal::blocking;
use opendal::layers::{RetryLayer, ThrottleLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};

use super::runtime;
use super::url::{Location, Sse};
use crate::config;
use crate::exit::{Exit, Fault};

/// Folder (inside the namespace) for objects that are still being written.
pub const TMP_DIR: &str = "tmp/";

pub struct Destination {
    pub name: String,
    /// The URL without secrets, for messages.
    pub display: String,
    location: Location,
    op: blocking::Operator,
    can_rename: bool,
    chunk: Option<usize>,
    concurrency: usize,
}

/// An object listed in the namespace folder.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: String,
    pub size: u64,
}

impl Destination {
    /// Build the operator for `cfg`, rooted at this host's folder (`namespace`) in it.
    pub fn open(cfg: &config::Destination, namespace: &str) -> Result<Destination> {
        let display = cfg.location.display();
        let fail = |e: opendal::Error| {
            let hint = error_hint(&e, &cfg.location);
            anyhow::Error::new(storage_fault(e, hint))
                .context(format!("destination {} ({display}): cannot open", cfg.name))
        };
        let handle = runtime::handle();
        let _guard = handle.enter();
        opendal::install_default();
        let (op, chunk) = match &cfg.location {
            Location::File { root } => {
                let root = root.join(namespace);
                let builder = opendal::services::Fs::default().root(&root.to_string_lossy());
                (Operator::new(builder).map_err(fail)?, None)
            }
            Location::S3(s3) => {
                let builder = s3_builder(s3, namespace)
                    .with_context(|| format!("destination {}", cfg.name))?;
                // Multipart parts of 8 MiB: S3's minimum is 5 MiB, and memory stays bounded.
                (Operator::new(builder).map_err(fail)?, Some(8 << 20))
            }
            Location::Sftp(sftp) => {
                let builder = opendal::services::Sftp::default()
                    .endpoint(&format!("ssh://{}:{}", sftp.host, sftp.port))
                    .user(&sftp.user)
                    .key(&sftp.key.to_string_lossy())
                    .root(&format!("{}/{namespace}", sftp.path))
                    .known_hosts_strategy(if sftp.accept_new_host_key {
                        "add"
                    } else {
                        "strict"
                    });
                (Operator::new(builder).map_err(fail)?, None)
            }
            Location::Other { scheme, options } => {
                opendal::init_default_registry();
                let mut options = options.clone();
                let root = options.remove("root").unwrap_or_default();
                options.insert(
                    "root".into(),
                    format!("{}/{namespace}", root.trim_end_matches('/')),
                );
                (Operator::via_iter(scheme, options).map_err(fail)?, None)
            }
        };
        // Timeout before retry, so a hung request is retried rather than waited on forever.
        let mut op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(cfg.timeout)
                    .with_io_timeout(cfg.timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(cfg.retries)
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(10))
                    .with_factor(2.0)
                    .with_jitter(),
            );
        if let Some(rate) = cfg.bandwidth_limit {
            let rate = rate.min(u32::MAX as u64) as u32;
            // The burst must hold the largest single write (a multipart part, a pipeline chunk).
            let burst = rate.max(chunk.unwrap_or(0) as u32).max(4 << 20);
            op = op.layer(ThrottleLayer::new(rate, burst));
        }
        let can_rename = op.info().capability().rename;
        let op = blocking::Operator::new(op)?;
        Ok(Destination {
            name: cfg.name.clone(),
            display,
            location: cfg.location.clone(),
            op,
            can_rename,
            chunk,
            concurrency: cfg.concurrency,
        })
    }

    fn err(&self, e: opendal::Error) -> anyhow::Error {
        let hint = error_hint(&e, &self.location);
        anyhow::Error::new(storage_fault(e, hint))
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
            Err(e) => return Err(self.err(e)).with_context(|| self.ctx("listing", dir)),
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
            .map_err(|e| self.err(e))
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
            .map_err(|e| self.err(e))
            .with_context(|| self.ctx("reading", path))?;
        Ok(buf.to_vec())
    }

    /// Stream an object.
    pub fn reader(&self, path: &str) -> Result<impl Read + use<>> {
        let r = self
            .op
            .reader(path)
            .map_err(|e| self.err(e))
            .with_context(|| self.ctx("reading", path))?;
        r.into_std_read(..)
            .map_err(|e| self.err(e))
            .with_context(|| self.ctx("reading", path))
    }

    pub fn size(&self, path: &str) -> Result<Option<u64>> {
        match self.op.stat(path) {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(e)).with_context(|| self.ctx("checking", path)),
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
                    chunk: self.chunk,
                    concurrent: self.concurrency,
                    ..Default::default()
                },
            )
            .map_err(|e| self.err(e))
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
            .map_err(|e| self.err(e))
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
            .map_err(|e| self.dest.err(e))
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
            .map_err(|e| self.dest.err(e))
            .with_context(|| self.dest.ctx("completing", &self.path))?;
        if self.staging != self.path {
            self.dest
                .op
                .rename(&self.staging, &self.path)
                .map_err(|e| self.dest.err(e))
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

/// OpenDAL errors carry the request (with our paths, never credentials); they become a failure
/// with a hint for the kinds a user can act on.
fn storage_fault(e: opendal::Error, hint: Option<String>) -> Fault {
    let mut fault = Fault::new(Exit::Failure, flatten(&e));
    if let Some(h) = hint {
        fault = fault.hint(h);
    }
    fault
}

/// The error and its sources on one line (OpenDAL's Display keeps the cause separate).
fn flatten(e: &opendal::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

fn error_hint(e: &opendal::Error, location: &Location) -> Option<String> {
    let hint = match (e.kind(), location) {
        (ErrorKind::PermissionDenied, Location::S3(_)) => {
            "check the S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or credentials_file) and the bucket policy"
                .to_string()
        }
        (ErrorKind::PermissionDenied, _) => "check the destination's permissions (owner and mode of the folder, or the login)".into(),
        (ErrorKind::NotFound, Location::S3(s3)) => format!("check that the bucket {:?} exists in that region and endpoint", s3.bucket),
        (ErrorKind::NotFound, _) => "check that the destination's folder exists".into(),
        (ErrorKind::RateLimited, _) => "the backend throttled the requests; try again later or set bandwidth_limit".into(),
        (ErrorKind::ConfigInvalid, _) => "check the destination's settings in the config".into(),
        (_, Location::Sftp(s)) => format!(
            "check that {host}:{port} is reachable, that its host key is in known_hosts (seed it with `ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts`, \
             or set host_key_check = \"accept-new\"), and that the key is authorized for {user}",
            host = s.host,
            port = s.port,
            user = s.user
        ),
        (ErrorKind::Unexpected, Location::S3(s3)) => format!(
            "the S3 endpoint {} did not answer; check that it is up and reachable",
            s3.endpoint.as_deref().unwrap_or("(AWS)")
        ),
        _ if e.is_temporary() => "a temporary error persisted through every retry; try again later".into(),
        _ => return None,
    };
    Some(hint)
}

/// An S3 builder that reads no stray configuration: credentials come only from the standard
/// environment variables or the configured credentials file, and instance metadata is asked
/// only when the config says so.
fn s3_builder(s3: &crate::storage::url::S3, namespace: &str) -> Result<opendal::services::S3> {
    let prefix = if s3.prefix.is_empty() {
        namespace.to_string()
    } else {
        format!("{}/{namespace}", s3.prefix)
    };
    let mut b = opendal::services::S3::default()
        .bucket(&s3.bucket)
        .root(&format!("/{prefix}"))
        .region(s3.region.as_deref().unwrap_or("us-east-1"))
        .disable_config_load();
    if let Some(e) = &s3.endpoint {
        b = b.endpoint(e);
    }
    if s3.virtual_host_style {
        b = b.enable_virtual_host_style();
    }
    if !s3.use_instance_metadata {
        b = b.disable_ec2_metadata();
    }
    let creds = super::credentials::load(s3)?;
    if let Some(c) = creds {
        b = b
            .access_key_id(&c.access_key_id)
            .secret_access_key(&c.secret_access_key);
        if let Some(t) = &c.session_token {
            b = b.session_token(t);
        }
    } else if !s3.use_instance_metadata {
        return Err(anyhow::Error::new(
            crate::exit::config("no S3 credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set and no credentials_file is configured")
                .hint("export the two variables (cron: in the crontab or a systemd EnvironmentFile), or set credentials_file; set use_instance_metadata = true to use the EC2 instance role"),
        ));
    }
    b = match &s3.sse {
        Sse::None => b,
        Sse::S3 => b.server_side_encryption_with_s3_key(),
        Sse::Kms(None) => b.server_side_encryption_with_aws_managed_kms_key(),
        Sse::Kms(Some(id)) => b.server_side_encryption_with_customer_managed_kms_key(id),
        Sse::Customer(file) => {
            crate::crypto::refuse_loose_permissions(file, "sse_c_key_file")?;
            let key = std::fs::read(file)
                .with_context(|| format!("reading sse_c_key_file {}", file.display()))?;
            if key.len() != 32 {
                return Err(crate::exit::config(format!(
                    "sse_c_key_file {} must hold exactly 32 bytes (an AES-256 key), not {}",
                    file.display(),
                    key.len()
                ))
                .into());
            }
            b.server_side_encryption_with_customer_key("AES256", &key)
        }
    };
    Ok(b)
}
