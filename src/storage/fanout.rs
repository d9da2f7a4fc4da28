//! One archive stream, sent to several destinations at once.
//!
//! The archive is built once; each destination gets its own upload thread, and a failed one is
//! dropped while the others go on.
//!
//! With a spool (the default), the pipeline never waits for a destination: each chunk goes to
//! each upload in memory while that upload has taken all but [`IN_MEMORY`] bytes of what was
//! sent to it, and otherwise to a file in `state_dir/tmp` (once, whichever uploads need it),
//! which that upload reads back at its own pace. So the snapshots' read transactions last as
//! long as reading, checking, compressing and encrypting take on this host, and no longer. A
//! slow destination then costs the server's writers nothing (a rollback-journal database's
//! writers would otherwise wait on our shared lock for the whole upload, and a WAL database
//! could not checkpoint past it); it only makes the upload finish after the snapshots have
//! closed. A destination that keeps up (a local disk) costs no spool write at all: each byte is
//! written once. Memory stays [`IN_MEMORY`] per upload; disk at most the archive's size, only
//! for what some upload fell behind on, removed when the run ends.
//!
//! Without a spool (no room for it in `state_dir`), chunks go through a bounded channel
//! straight to the uploads, and a slow destination slows the pipeline (backpressure).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{self, ScopedJoinHandle};

use anyhow::{anyhow, Result};
use bytes::{Bytes, BytesMut};

use super::destination::Destination;

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;
/// With a spool: how far (in bytes sent but not yet taken) an upload may fall behind in memory
/// before the next chunks go to it through the spool file instead.
pub const IN_MEMORY: usize = 8 * CHUNK;

enum Msg {
    Data(Bytes),
    /// `len` bytes at `offset` of the spool file.
    Spooled {
        offset: u64,
        len: usize,
    },
    /// The archive is complete: commit it, then store the signature, then the sidecar.
    Commit(Arc<Completion>),
}

/// What makes a stored archive a listed backup, written after it in this order: the sidecar's
/// signature (when the host signs), then the sidecar itself.
pub struct Completion {
    pub sidecar_name: String,
    pub sidecar: Vec<u8>,
    pub signature: Option<(String, Vec<u8>)>,
}

/// What the pipeline sees when no upload is left: the uploads' own errors say why.
#[derive(Debug)]
struct EveryLaneFailed;

impl std::fmt::Display for EveryLaneFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("every destination failed")
    }
}

impl std::error::Error for EveryLaneFailed {}

/// True when `err` stopped the pipeline only because every upload had failed.
pub fn every_lane_failed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<EveryLaneFailed>()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<EveryLaneFailed>())
    })
}

/// The outcome on one destination: the stored archive size, or why it failed.
pub type Uploaded = Result<u64>;

pub struct FanOut<'scope> {
    buf: BytesMut,
    lanes: Vec<Lane<'scope>>,
    spool: Option<Arc<File>>,
    /// Bytes of the archive sent so far: the next chunk's offset (in the spool, when it goes
    /// there).
    sent: u64,
    /// Bytes written to the spool, because an upload fell behind.
    spilled: u64,
}

/// With a spool a lane's channel needs no bound: what it holds in memory is bounded by
/// [`IN_MEMORY`], the rest are offsets into the spool. Without one, the bound is the
/// backpressure.
enum LaneTx {
    Bounded(SyncSender<Msg>),
    Spooled(Sender<Msg>),
}

impl LaneTx {
    fn send(&self, msg: Msg) -> bool {
        match self {
            LaneTx::Bounded(tx) => tx.send(msg).is_ok(),
            LaneTx::Spooled(tx) => tx.send(msg).is_ok(),
        }
    }
}

struct Lane<'scope> {
    tx: Option<LaneTx>,
    /// Bytes sent to this upload in memory that it has not yet taken.
    behind: Arc<AtomicUsize>,
    handle: ScopedJoinHandle<'scope, Uploaded>,
}

impl<'scope> FanOut<'scope> {
    /// Start one upload thread per destination, writing `object` on each; with `spool` (an
    /// empty file of its own), through it.
    pub fn start<'env>(
        scope: &'scope thread::Scope<'scope, 'env>,
        dests: &'env [Destination],
        object: &str,
        spool: Option<File>,
    ) -> Self {
        let spool = spool.map(Arc::new);
        let lanes = dests
            .iter()
            .map(|dest| {
                let (tx, rx) = match &spool {
                    Some(_) => {
                        let (tx, rx) = channel::<Msg>();
                        (LaneTx::Spooled(tx), rx)
                    }
                    None => {
                        let (tx, rx) = sync_channel::<Msg>(DEPTH);
                        (LaneTx::Bounded(tx), rx)
                    }
                };
                let object = object.to_string();
                let spool = spool.clone();
                let behind = Arc::new(AtomicUsize::new(0));
                let taken = behind.clone();
                let handle = scope.spawn(move || -> Uploaded {
                    let mut upload = dest.upload_new(&object)?;
                    for msg in rx {
                        // A stop asked for mid-upload: dropping the upload aborts it.
                        crate::interrupt::check()?;
                        match msg {
                            Msg::Data(chunk) => {
                                let len = chunk.len();
                                upload.write(chunk)?;
                                taken.fetch_sub(len, Ordering::AcqRel);
                            }
                            Msg::Spooled { offset, len } => {
                                let mut chunk = BytesMut::zeroed(len);
                                spool
                                    .as_ref()
                                    .expect("spooled chunks come with a spool")
                                    .read_exact_at(&mut chunk, offset)
                                    .map_err(|e| {
                                        anyhow::Error::new(e)
                                            .context("reading the spooled archive in state_dir")
                                    })?;
                                upload.write(chunk.freeze())?;
                            }
                            Msg::Commit(done) => {
                                let stored = upload.commit()?;
                                if let Some((name, body)) = &done.signature {
                                    dest.put_new(name, body.clone())?;
                                }
                                dest.put_new(&done.sidecar_name, done.sidecar.clone())?;
                                return Ok(stored);
                            }
                        }
                    }
                    // The sender went away without a commit: the backup failed; dropping the
                    // upload aborts it.
                    Err(anyhow!("backup aborted before the archive was complete"))
                });
                Lane {
                    tx: Some(tx),
                    behind,
                    handle,
                }
            })
            .collect();
        FanOut {
            buf: BytesMut::with_capacity(CHUNK),
            lanes,
            spool,
            sent: 0,
            spilled: 0,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        let offset = self.sent;
        self.sent += chunk.len() as u64;
        let mut in_spool = false;
        let mut alive = 0;
        for lane in &mut self.lanes {
            let Some(tx) = &lane.tx else { continue };
            let msg = match &self.spool {
                None => Msg::Data(chunk.clone()),
                Some(_) if lane.behind.load(Ordering::Acquire) + chunk.len() <= IN_MEMORY => {
                    lane.behind.fetch_add(chunk.len(), Ordering::AcqRel);
                    Msg::Data(chunk.clone())
                }
                Some(spool) => {
                    // This upload fell behind: it reads this chunk back from the file, written
                    // once however many uploads need it.
                    if !in_spool {
                        spool.write_all_at(&chunk, offset).map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!("spooling the archive to state_dir/tmp: {e}"),
                            )
                        })?;
                        self.spilled += chunk.len() as u64;
                        in_spool = true;
                    }
                    Msg::Spooled {
                        offset,
                        len: chunk.len(),
                    }
                }
            };
            if tx.send(msg) {
                alive += 1;
            } else {
                lane.tx = None; // that upload failed; its thread holds the reason
            }
        }
        if alive == 0 {
            return Err(io::Error::other(EveryLaneFailed));
        }
        Ok(())
    }

    /// Flush the last chunk, commit on every destination (each with its own sidecar, in the
    /// destinations' order), and collect each outcome in order. With `commits = None` (the
    /// archive failed), every upload is aborted.
    /// Also the bytes that went through the spool (0 when every upload kept up).
    pub fn finish(mut self, commits: Option<Vec<Completion>>) -> (Vec<Uploaded>, u64) {
        let flushed = if commits.is_some() {
            self.send()
        } else {
            Ok(())
        };
        let mut commits = commits.into_iter().flatten().map(Arc::new);
        for lane in &mut self.lanes {
            let done = commits.next();
            if let (Some(tx), Some(done), true) = (lane.tx.take(), done, flushed.is_ok()) {
                tx.send(Msg::Commit(done));
            }
        }
        let uploaded = self
            .lanes
            .into_iter()
            .map(|lane| {
                lane.handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("upload thread panicked")))
            })
            .collect();
        (uploaded, self.spilled)
    }
}

impl Write for FanOut<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
