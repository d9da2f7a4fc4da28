//! Parallel ranged downloads: a large archive on S3 read as consecutive byte ranges over several
//! connections at once, handed on in order as one `Read`.
//!
//! One connection to object storage is often a fraction of the bandwidth there is (per-connection
//! throttling, TCP windows over a long path); restores are read-bound, so a large archive is
//! fetched `concurrency` ranges at a time.
//!
//! OpenDAL's chunked reader (`reader_options` with `concurrent` and `chunk`) does the heavy
//! lifting, and it is used as it is because it already has what matters here: ranges are started
//! in order and handed back in order; at most `concurrent` of them are in flight, each a whole
//! range held in memory; each range is one `read(range)` through the retry and timeout layers, so
//! a failed range is requested again from its start, alone, with the destination's retries and
//! its per-request timeout; and dropping the stream drops the in-flight requests (its tasks are
//! remote handles on the storage runtime). What it lacks is added here: a range that comes back
//! short (or long) is not a success. It is read again alone, and still wrong, it is an error
//! that says the object changed while being read. Every range names the same object: the same
//! version under `--as-of`, else the same ETag (`If-Match`), so an archive replaced mid-restore
//! fails instead of being spliced.

use std::io::{self, Read};

use bytes::Buf;
use opendal::{options, Buffer, Operator};

use super::link::Link;

/// The bytes all ranges in flight may hold together, whatever `concurrency` is. 32 MiB keeps a
/// restore at 16 connections within a few tens of MiB, as a one-stream restore is.
const IN_FLIGHT_BUDGET: u64 = 32 << 20;
/// The smallest range: below about 2 MiB, a request's own latency starts to cost more than the
/// parallelism buys (object stores answer the first byte in tens of milliseconds).
const MIN_RANGE: u64 = 2 << 20;
/// The largest range: one range must arrive within one request's `timeout` (a range is one
/// request), so it stays small enough for slow links.
const MAX_RANGE: u64 = 8 << 20;

/// The size of each range at `concurrency` connections: the budget shared out, within bounds.
pub fn range_size(concurrency: usize) -> u64 {
    (IN_FLIGHT_BUDGET / concurrency.max(1) as u64).clamp(MIN_RANGE, MAX_RANGE)
}

/// Which stored object every range must come from.
pub enum Pin {
    /// A version (`--as-of`): immutable.
    Version(String),
    /// The ETag seen when the read started, when the backend gave one.
    Etag(Option<String>),
}

/// An object of a known size, read in ranges over `concurrency` connections, in order.
pub struct RangedReader {
    link: Link,
    op: Operator,
    path: String,
    pin: Pin,
    size: u64,
    range: u64,
    stream: opendal::BufferStream,
    /// Where the next range starts: everything before it has been fetched.
    next: u64,
    /// What is left of the range being handed on.
    current: Buffer,
}

impl RangedReader {
    /// Start reading `path`, `size` bytes long, `concurrency` ranges at a time. Nothing is
    /// requested until the first read.
    pub fn open(
        link: &Link,
        op: &Operator,
        path: &str,
        pin: Pin,
        size: u64,
        concurrency: usize,
    ) -> anyhow::Result<RangedReader> {
        let range = range_size(concurrency);
        let (version, if_match) = pin_options(&pin);
        let opts = options::ReaderOptions {
            version,
            if_match,
            content_length_hint: Some(size),
            concurrent: concurrency,
            chunk: Some(range as usize),
            ..Default::default()
        };
        let stream = link.call("reading", path, || async {
            op.reader_options(path, opts.clone())
                .await?
                .into_stream(0..size)
                .await
        })?;
        Ok(RangedReader {
            link: link.clone(),
            op: op.clone(),
            path: path.to_string(),
            pin,
            size,
            range,
            stream,
            next: 0,
            current: Buffer::new(),
        })
    }

    /// The next range from the stream, checked; a wrong-sized one is read again alone.
    fn next_range(&mut self) -> anyhow::Result<()> {
        let start = self.next;
        let want = self.range.min(self.size - start);
        let stream = &mut self.stream;
        let got = self.link.call_once("reading", &self.path, async {
            std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut *stream), cx)
            })
            .await
            .transpose()
        })?;
        let mut buf = got.unwrap_or_default();
        // The size is known, so a short range is never the end of the object: it is asked for
        // again by itself, as a failed one is.
        let mut tries = 0;
        while buf.len() as u64 != want && tries <= self.link.retries {
            tries += 1;
            buf = self.read_alone(start, want)?;
        }
        if buf.len() as u64 != want {
            return Err(crate::exit::integrity(format!(
                "{}: bytes {start}..{} came back as {} bytes, not {want}: the object changed while it was read",
                self.link.ctx("reading", &self.path),
                start + want,
                buf.len(),
            ))
            .into());
        }
        self.next = start + want;
        self.current = buf;
        Ok(())
    }

    /// One range by itself, with the same pin, through the usual retries and timeout.
    fn read_alone(&self, start: u64, len: u64) -> anyhow::Result<Buffer> {
        let (version, if_match) = pin_options(&self.pin);
        let opts = options::ReadOptions {
            range: (start..start + len).into(),
            version,
            if_match,
            ..Default::default()
        };
        self.link.call("reading", &self.path, || {
            self.op.read_options(&self.path, opts.clone())
        })
    }
}

fn pin_options(pin: &Pin) -> (Option<String>, Option<String>) {
    match pin {
        Pin::Version(v) => (Some(v.clone()), None),
        Pin::Etag(e) => (None, e.clone()),
    }
}

impl Read for RangedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.current.is_empty() {
            crate::interrupt::check_io()?;
            if self.next == self.size {
                return Ok(0);
            }
            self.next_range().map_err(crate::exit::into_io)?;
        }
        let n = out.len().min(self.current.remaining());
        self.current.copy_to_slice(&mut out[..n]);
        Ok(n)
    }
}
