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

/// The bytes all ranges in flight may hold together, whatever `concurrency` is. OpenDAL and the
/// HTTP client hold about as much again while a range is handed over, so 16 MiB keeps a restore
/// at 16 connections within 64 MiB of memory (32 MiB measured 77 MiB: BENCHMARKS.md).
const IN_FLIGHT_BUDGET: u64 = 16 << 20;
/// The smallest range: below about 1 MiB, a request's own latency starts to cost more than the
/// parallelism buys (object stores answer the first byte in tens of milliseconds).
const MIN_RANGE: u64 = 1 << 20;
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
            let next = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut *stream), cx)
            })
            .await;
            match next {
                Some(Err(e)) if past_the_end(&e) => Ok(Some(Buffer::new())),
                other => other.transpose(),
            }
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
        self.link.call("reading", &self.path, || async {
            match self.op.read_options(&self.path, opts.clone()).await {
                Err(e) if past_the_end(&e) => Ok(Buffer::new()),
                other => other,
            }
        })
    }
}

/// A range past the object's end (S3's 416) is a range that came back short: the object is not
/// the size it was when the read started.
fn past_the_end(e: &opendal::Error) -> bool {
    e.kind() == opendal::ErrorKind::RangeNotSatisfied
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::url::Location;

    #[test]
    fn ranges_share_the_budget_within_bounds() {
        assert_eq!(range_size(1), 8 << 20);
        assert_eq!(range_size(4), 4 << 20);
        assert_eq!(range_size(8), 2 << 20);
        assert_eq!(range_size(16), 1 << 20);
        assert_eq!(range_size(64), 1 << 20);
    }

    fn memory_with(body: &[u8]) -> (Link, Operator) {
        let handle = crate::storage::runtime::handle();
        let _guard = handle.enter();
        let op = Operator::new(opendal::services::Memory::default()).unwrap();
        handle.block_on(op.write("a.tar", body.to_vec())).unwrap();
        let link = Link {
            name: "mem".into(),
            display: "memory".into(),
            location: Location::Other {
                scheme: "memory".into(),
                options: Default::default(),
            },
            timeout: std::time::Duration::from_secs(10),
            retries: 1,
            health: Default::default(),
        };
        (link, op)
    }

    fn body(len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(b"ranged")
            .finalize_xof()
            .fill(&mut out);
        out
    }

    #[test]
    fn ranges_come_back_in_order_and_whole() {
        // 2 MiB ranges at 16: five of them, the last one short by design.
        let data = body((9 << 20) + 12345);
        let (link, op) = memory_with(&data);
        let mut r = RangedReader::open(&link, &op, "a.tar", Pin::Etag(None), data.len() as u64, 16)
            .unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert!(got == data);
    }

    #[test]
    fn a_range_shorter_than_asked_is_an_error_not_the_end() {
        // The object is shorter than the size the caller knows: its last range comes back short,
        // is read again alone, and fails rather than ending the stream early.
        let data = body(5 << 20);
        let (link, op) = memory_with(&data);
        let mut r = RangedReader::open(&link, &op, "a.tar", Pin::Etag(None), 6 << 20, 16).unwrap();
        let mut got = Vec::new();
        let e = r.read_to_end(&mut got).unwrap_err();
        assert!(e.to_string().contains("changed while it was read"), "{e}");
    }
}
