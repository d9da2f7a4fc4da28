//! The stream adapters the archive is built from: counting-and-hashing, compression and
//! encryption, each a `Write` (backup) or `Read` (restore) wrapped around the next.
//!
//! `finish` on each layer flushes its trailer and hands back the inner writer, so the caller
//! unwinds them in order and never leaves a truncated zstd frame or age stream behind.

use std::io::{self, Read, Write};

use crate::config::Compression;
use crate::crypto::{Opener, Sealer};

/// Counts and BLAKE3-hashes everything that passes through (or only counts, for bytes whose
/// producer hashes them already).
pub struct Hashing<T> {
    inner: T,
    hasher: Option<blake3::Hasher>,
    count: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Hashing::maybe(inner, true)
    }

    pub fn maybe(inner: T, hash: bool) -> Self {
        Hashing {
            inner,
            hasher: hash.then(blake3::Hasher::new),
            count: 0,
        }
    }

    /// The inner stream, the count, and the hash when there is one.
    pub fn finish_maybe(self) -> (T, u64, Option<String>) {
        (
            self.inner,
            self.count,
            self.hasher.map(|h| h.finalize().to_hex().to_string()),
        )
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn finish(self) -> (T, u64, String) {
        let (inner, count, hash) = self.finish_maybe();
        (inner, count, hash.unwrap_or_default())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

pub enum Encrypt<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Encrypt<W> {
    pub fn new(out: W, sealer: Option<&Sealer>) -> io::Result<Self> {
        Ok(match sealer {
            None => Encrypt::Plain(out),
            Some(s) => Encrypt::Age(s.wrap(out)?),
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encrypt::Plain(w) => Ok(w),
            Encrypt::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Encrypt<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encrypt::Plain(w) => w.write(buf),
            Encrypt::Age(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encrypt::Plain(w) => w.flush(),
            Encrypt::Age(w) => w.flush(),
        }
    }
}

pub enum Compress<W: Write> {
    Plain(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> Compress<W> {
    pub fn new(out: W, compression: Compression, workers: usize) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Compress::Plain(out),
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                if workers > 1 {
                    // zstd's own worker threads compress in parallel while this thread feeds them.
                    // Small jobs keep their buffers (input and output per worker) to a few MiB.
                    enc.multithread(workers as u32)?;
                    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                }
                enc.include_checksum(true)?;
                Compress::Zstd(enc)
            }
            Compression::Gzip { level } => Compress::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(level),
            )),
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Compress::Plain(w) => Ok(w),
            Compress::Zstd(w) => w.finish(),
            Compress::Gzip(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Compress<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compress::Plain(w) => w.write(buf),
            Compress::Zstd(w) => w.write(buf),
            Compress::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compress::Plain(w) => w.flush(),
            Compress::Zstd(w) => w.flush(),
            Compress::Gzip(w) => w.flush(),
        }
    }
}

/// Bytes per zstd multithreaded job.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// zstd frames may ask the decoder for a window of up to 2^31 bytes; litevault writes levels
/// 1-19, whose windows are at most 2^23, so anything larger is refused rather than allocated.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The restore side: peel age, then the compression, from a stream of stored bytes.
pub fn open_layers<'a, R: Read + 'a>(
    stored: R,
    compression: &str,
    encrypted: bool,
    opener: Option<&Opener>,
) -> anyhow::Result<Box<dyn Read + 'a>> {
    let plain: Box<dyn Read + 'a> = if encrypted {
        let opener =
            opener.ok_or_else(|| anyhow::anyhow!("encrypted backup but no identity loaded"))?;
        Box::new(opener.open(stored)?)
    } else {
        Box::new(stored)
    };
    Ok(match compression {
        "zstd" => {
            let mut dec = zstd::stream::read::Decoder::new(plain)?;
            dec.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(dec)
        }
        "gzip" => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(plain))),
        "none" => plain,
        other => {
            return Err(
                crate::exit::integrity(format!("unknown compression {other:?} in sidecar")).into(),
            )
        }
    })
}

/// Reads until EOF and discards, so that trailing checksums (zstd's, age's last chunk) are
/// verified even when the tar reader stops at its end-of-archive marker.
pub fn drain<R: Read>(mut r: R) -> io::Result<u64> {
    io::copy(&mut r, &mut io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_round_trips_and_hashing_counts() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [
            Compression::None,
            Compression::Zstd { level: 3 },
            Compression::Gzip { level: 6 },
        ] {
            let mut w = Compress::new(Hashing::new(Vec::new()), c, 2).unwrap();
            w.write_all(&data).unwrap();
            let (stored, n, hash) = w.finish().unwrap().finish();
            assert_eq!(n as usize, stored.len());
            assert_eq!(hash, blake3::hash(&stored).to_hex().to_string());
            let name = crate::archive::manifest::compression_name(c);
            let mut back = Vec::new();
            open_layers(&stored[..], name, false, None)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{name}");
        }
    }
}
