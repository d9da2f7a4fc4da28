//! An upload as an `io::Write`: for streams that arrive as byte slices (rekey's age output,
//! copy's reads), sent in 1 MiB chunks through the one [`Upload`] every write goes through (the
//! backup's fan-out hands `Bytes` to `Upload` itself, without a copy). Nothing is visible under
//! the final name before `commit`, and dropping the writer aborts the upload.

use std::io::{self, Write};

use anyhow::Result;

use super::destination::Upload;

impl<'d> Upload<'d> {
    /// This upload as an `io::Write`.
    pub fn writer(self) -> UploadWriter<'d> {
        UploadWriter::new(self)
    }
}

/// An upload as an `io::Write`, sent in 1 MiB chunks: for streams that arrive as byte slices
/// (rekey's age output, copy's reads). Dropped without [`UploadWriter::commit`], it is aborted.
pub struct UploadWriter<'d> {
    upload: Upload<'d>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl<'d> UploadWriter<'d> {
    fn new(upload: Upload<'d>) -> Self {
        UploadWriter {
            upload,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.upload.write(chunk).map_err(crate::exit::into_io)
    }

    /// Send what is buffered and complete the upload; the bytes stored.
    pub fn commit(mut self) -> Result<u64> {
        self.send()?;
        self.upload.commit()
    }
}

impl Write for UploadWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
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
