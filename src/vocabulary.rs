//! The words every stage shares, kept apart from `config` and `storage` so that the manifest,
//! the sources and the catalog can all use them without importing each other: what kind a
//! source is, how a snapshot is checked, how an archive is compressed, and how long a chain of
//! incremental backups may be.

use serde::Deserialize;

/// What kind of thing a source is, which decides how it is snapshotted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Sqlite,
    File,
    Dir,
}

/// How thoroughly a database snapshot is checked before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Quick,
    Integrity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd { level: i32 },
    Gzip { level: u32 },
    None,
}

/// The longest chain of incremental backups any code follows: a bound on work and on a planted
/// loop of parents, far above any `max_chain` a config may set.
pub const MAX_CHAIN: usize = 10_000;
