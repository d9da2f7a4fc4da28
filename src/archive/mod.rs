//! The archive format: what a stored backup is, byte for byte.
//!
//! A stored object is exactly `tar`, then zstd or gzip (or nothing), then age when encryption is
//! on, so that `age -d -i key.txt F | zstd -d | tar -x` recovers it without litevault. The tar
//! holds each source under its name, then `manifest.json` and `BLAKE3SUMS` (in `b3sum --check`
//! format) last, because their hashes are known only once the data has streamed past.

pub mod gather;
pub mod layers;
pub mod manifest;
pub mod reader;
pub mod writer;

pub use manifest::{Manifest, Sidecar};
