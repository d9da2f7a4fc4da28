//! One archive stream, sent to several destinations at once.
//!
//! The archive is built once; each destination gets its own upload thread fed through a bounded
//! channel of shared chunks, so a slow destination slows the pipeline (backpressure) instead of
//! growing memory, and a failed one is dropped while the others go on.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::{self, ScopedJoinHandle};

use anyhow::{anyhow, Result};
use bytes::{Bytes, BytesMut};

use super::destination::Destination;

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;

enum Msg {
    Data(Bytes),
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
pub type Outcome = Result<u64>;

pub struct FanOut<'scope> {
    buf: BytesMut,
    lanes: Vec<Lane<'scope>>,
}

struct Lane<'scope> {
    tx: Option<SyncSender<Msg>>,
    handle: ScopedJoinHandle<'scope, Outcome>,
}

impl<'scope> FanOut<'scope> {
    /// Start one upload thread per destination, writing `object` on each.
    pub fn start<'env>(
        scope: &'scope thread::Scope<'scope, 'env>,
        dests: &'env [Destination],
        object: &str,
    ) -> Self {
        let lanes = dests
            .iter()
            .map(|dest| {
                let (tx, rx) = sync_channel::<Msg>(DEPTH);
                let object = object.to_string();
                let handle = scope.spawn(move || -> Outcome {
                    let mut upload = dest.upload(&object)?;
                    for msg in rx {
                        // A stop asked for mid-upload: dropping the upload aborts it.
                        crate::interrupt::check()?;
                        match msg {
                            Msg::Data(chunk) => upload.write(chunk)?,
                            Msg::Commit(done) => {
                                let stored = upload.commit()?;
                                if let Some((name, body)) = &done.signature {
                                    dest.put(name, body.clone())?;
                                }
                                dest.put(&done.sidecar_name, done.sidecar.clone())?;
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
                    handle,
                }
            })
            .collect();
        FanOut {
            buf: BytesMut::with_capacity(CHUNK),
            lanes,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        let mut alive = 0;
        for lane in &mut self.lanes {
            if let Some(tx) = &lane.tx {
                if tx.send(Msg::Data(chunk.clone())).is_ok() {
                    alive += 1;
                } else {
                    lane.tx = None; // that upload failed; its thread holds the reason
                }
            }
        }
        if alive == 0 {
            return Err(io::Error::other(EveryLaneFailed));
        }
        Ok(())
    }

    /// Flush the last chunk, commit on every destination, and collect each outcome in order.
    /// With `sidecar = None` (the archive failed), every upload is aborted.
    pub fn finish(mut self, commit: Option<Completion>) -> Vec<Outcome> {
        let flushed = if commit.is_some() {
            self.send()
        } else {
            Ok(())
        };
        let commit = commit.map(Arc::new);
        for lane in &mut self.lanes {
            if let (Some(tx), Some(done), true) = (lane.tx.take(), &commit, flushed.is_ok()) {
                let _ = tx.send(Msg::Commit(done.clone()));
            }
        }
        self.lanes
            .into_iter()
            .map(|lane| {
                lane.handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("upload thread panicked")))
            })
            .collect()
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
