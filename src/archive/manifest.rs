//! `manifest.json` (inside the tar) and the sidecar (stored next to the archive, written last).
//!
//! The format version is checked on read: an older litevault refuses what it does not
//! understand instead of restoring it wrongly. The plan, in one place:
//!
//! - **1**: full backups; what this version writes. Fields added since then without a bump,
//!   because a version-1 reader that ignores them still restores correctly: `manifest.state_id`
//!   (which `state_dir` took it), `archive.recipients` (whom it is encrypted to, for `rekey`),
//!   the sidecar's `sequence` (its number on the destination and the backup before it).
//!   The signature is not in the sidecar but beside it (`<id>.json.sig`), over its exact bytes.
//! - **2**: incremental backups. `kind = "incremental"`, `parent` (the backup it builds on) and
//!   `full` (its chain's full backup); each database entry says how it is stored (`stored`):
//!   whole, as a WAL file of changed pages (`<name>-wal`, applied on top of the parent's
//!   database), or not at all when nothing changed; with `blake3` (this snapshot's) and
//!   `parent_blake3` (the database it applies to), checked link by link. A version-1 reader
//!   refuses these, rather than restore a page delta as a database.
//!
//! A backup is written with the lowest version that describes it: a full backup is still
//! version 1 (it gains the optional per-database `blake3`), so an older litevault restores
//! every full backup a newer one takes. Every reader keeps reading version 1.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::vocabulary::{Check, Compression, SourceKind};

/// The newest version this litevault reads (and writes, for incremental backups).
pub const FORMAT_VERSION: u32 = 2;
/// What a full backup is written as.
pub const FULL_VERSION: u32 = 1;
pub const MANIFEST_NAME: &str = "manifest.json";
pub const SUMS_NAME: &str = "BLAKE3SUMS";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub backup_id: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// The config's `name`: this host's namespace in each destination.
    pub host: String,
    /// The machine's own hostname when the backup was taken.
    pub hostname: String,
    pub tool_version: String,
    /// "full" or "incremental" (version 2, with `parent` and `full`).
    pub kind: String,
    /// The backup an incremental applies on top of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The full backup an incremental's chain starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<String>,
    /// Free-form marks, e.g. "pre-restore" for the safety copy taken before an in-place restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The random identity of the `state_dir` that took the backup: two configs writing one
    /// namespace show up as two identities. Absent in backups from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_id: Option<String>,
    pub sources: Vec<SourceEntry>,
    pub files: Vec<FileEntry>,
    pub databases: Vec<DatabaseEntry>,
    /// The folders of `dir` sources (the source's own folder, at its name, and each one below
    /// it) with their owner and mode. Absent in backups from before they were recorded, and
    /// never in the tar: a folder has no bytes to check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceEntry {
    pub name: String,
    pub kind: SourceKind,
    /// Where the source lived on the host that took the backup.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the tar (and under `restore --to DIR`), '/'-separated, relative.
    pub path: String,
    pub source: String,
    pub size: u64,
    pub blake3: String,
    /// The live file's mode when it was backed up (permission bits, with setuid, setgid and
    /// sticky); 0600 for databases in backups from before it was recorded.
    pub mode: u32,
    /// The live file's owner and group (numeric), as in its tar header. Absent in backups from
    /// before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// A folder of a `dir` source, as it was when backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// '/'-separated, relative: the source's name, or a path below it.
    pub path: String,
    pub source: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseEntry {
    pub source: String,
    pub path: String,
    pub page_size: u32,
    pub page_count: u64,
    pub sqlite_version: String,
    pub user_version: i64,
    pub journal_mode: String,
    /// The check the snapshot passed before it was stored.
    pub check: Check,
    /// Rows per table in the snapshot, for restore drills to compare against.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub row_counts: BTreeMap<String, u64>,
    /// BLAKE3 of the database this backup restores (the snapshot, whole). Absent in backups
    /// from before it was recorded, where the file's own entry says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// How an incremental stores it (version 2); absent means whole, at `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Stored>,
    /// The live database file's mode, owner and group when it was backed up (absent in backups
    /// from before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// How an incremental backup holds one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "as", rename_all = "lowercase")]
pub enum Stored {
    /// The whole database at `path` (new since the parent, or its page size changed).
    Whole,
    /// Changed pages as a WAL file at `wal`, applied on the parent's database, whose BLAKE3 is
    /// `parent_blake3`.
    Wal {
        wal: String,
        frames: u64,
        parent_blake3: String,
    },
    /// Nothing changed since the parent: the parent's database, whose BLAKE3 is
    /// `parent_blake3` (and this entry's `blake3`).
    Unchanged { parent_blake3: String },
}

impl DatabaseEntry {
    /// Stored whole in this backup (every database of a full backup is).
    pub fn is_whole(&self) -> bool {
        matches!(self.stored, None | Some(Stored::Whole))
    }

    /// The BLAKE3 the parent's database must have for this entry to apply on it.
    pub fn parent_blake3(&self) -> Option<&str> {
        match &self.stored {
            Some(Stored::Wal { parent_blake3, .. }) | Some(Stored::Unchanged { parent_blake3 }) => {
                Some(parent_blake3)
            }
            _ => None,
        }
    }
}

/// Stored next to the archive as `<id>.json`, and written last: its presence is what makes a
/// backup complete and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub format: String,
    pub format_version: u32,
    pub archive: ArchiveInfo,
    pub manifest: Manifest,
    /// Where this backup stands among this host's backups on the destination that holds it
    /// (absent in backups from before it was recorded). In the sidecar, not the manifest: the
    /// one archive goes to every destination, and each destination counts its own backups, so
    /// a destination that was down during a backup has no gap for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<Sequence>,
}

/// A backup's place in its host's line of backups on one destination: what lets a reader see
/// that backups were deleted or rolled back, from signed facts alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    /// Counts this host's backups stored on the destination, from 1; never reused, even after
    /// `state_dir` is lost (it continues from the highest the destination holds).
    pub number: u64,
    /// The backup before it on the destination (the one numbered `number - 1`, when it was
    /// numbered): absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub id: String,
    /// Its number: `number - 1` unless the backups after it were deleted before this one was
    /// taken (then the jump itself is the evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// Its `manifest.created`: when a prune let it go is judged at the millisecond, as prune
    /// judged it (its id has only the second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// BLAKE3 of that backup's sidecar, byte for byte, as it was when this one was taken (a
    /// `rekey` since then rewrites it, so a different one is evidence to read, not a finding).
    pub sidecar_blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// Object name of the archive, relative to the sidecar's folder.
    pub object: String,
    /// Size and BLAKE3 of the stored bytes (after compression and encryption).
    pub bytes: u64,
    pub blake3: String,
    pub compression: String,
    pub encryption: String,
    /// The public keys the archive is encrypted to (absent for a passphrase, or in backups from
    /// before they were recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

impl Manifest {
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Every file by its path, for a reader that looks each archive entry up: `file` searches the
    /// list, which is quadratic over an archive of many files.
    pub fn file_index(&self) -> HashMap<&str, &FileEntry> {
        self.files.iter().map(|f| (f.path.as_str(), f)).collect()
    }

    /// `b3sum --check` format: "<hex>  <path>" per line.
    pub fn blake3sums(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            out.push_str(&f.blake3);
            out.push_str("  ");
            out.push_str(&f.path);
            out.push('\n');
        }
        out
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The bytes a restore of this backup writes: its files, and its databases whole (an
    /// incremental stores only their changed pages).
    pub fn restored_size(&self) -> u64 {
        let deltas: std::collections::HashSet<&str> = self
            .databases
            .iter()
            .filter_map(|d| match &d.stored {
                Some(Stored::Wal { wal, .. }) => Some(wal.as_str()),
                _ => None,
            })
            .collect();
        let files: u64 = self
            .files
            .iter()
            .filter(|f| !deltas.contains(f.path.as_str()))
            .map(|f| f.size)
            .sum();
        let rebuilt: u64 = self
            .databases
            .iter()
            .filter(|d| !d.is_whole())
            .map(|d| d.page_size as u64 * d.page_count)
            .sum();
        files + rebuilt
    }

    pub fn is_incremental(&self) -> bool {
        self.kind == "incremental"
    }

    /// The BLAKE3 of database `db` as this backup restores it: recorded with it, or (in backups
    /// from before that) its file's.
    pub fn database_blake3(&self, db: &DatabaseEntry) -> Option<String> {
        db.blake3
            .clone()
            .or_else(|| self.file(&db.path).map(|f| f.blake3.clone()))
    }
}

/// Refuse documents from a future format rather than misread them.
pub fn check_version(format: &str, version: u32, what: &str) -> anyhow::Result<()> {
    if format != "litevault" && format != "litevault-sidecar" {
        return Err(crate::exit::integrity(format!(
            "{what} is not a litevault document (format {format:?})"
        ))
        .into());
    }
    if version > FORMAT_VERSION {
        return Err(anyhow::Error::new(
            crate::exit::integrity(format!(
                "{what} has format version {version}; this litevault understands up to {FORMAT_VERSION}"
            ))
            .hint("restore it with a newer litevault"),
        ));
    }
    Ok(())
}

pub fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::Zstd { .. } => "zstd",
        Compression::Gzip { .. } => "gzip",
        Compression::None => "none",
    }
}

/// The object name's extension says what layers to peel, like a file on disk would.
pub fn archive_extension(compression: &str, encrypted: bool) -> String {
    let mut ext = String::from("tar");
    match compression {
        "zstd" => ext.push_str(".zst"),
        "gzip" => ext.push_str(".gz"),
        _ => {}
    }
    if encrypted {
        ext.push_str(".age");
    }
    ext
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_in_b3sum_check_format() {
        let m = Manifest {
            format: "litevault".into(),
            format_version: FORMAT_VERSION,
            backup_id: "x".into(),
            created: "2026-11-26T09:00:00Z".into(),
            host: "h".into(),
            hostname: "h".into(),
            tool_version: "0".into(),
            kind: "full".into(),
            parent: None,
            full: None,
            tags: vec![],
            state_id: None,
            sources: vec![],
            files: vec![FileEntry {
                path: "etc/a b.conf".into(),
                source: "etc".into(),
                size: 1,
                blake3: "ab".repeat(32),
                mode: 0o600,
                uid: None,
                gid: None,
            }],
            databases: vec![],
            dirs: vec![],
        };
        assert_eq!(
            m.blake3sums(),
            format!("{}  etc/a b.conf\n", "ab".repeat(32))
        );
    }

    #[test]
    fn newer_formats_are_refused() {
        assert!(check_version("litevault", FORMAT_VERSION, "m").is_ok());
        let err = check_version("litevault", FORMAT_VERSION + 1, "m").unwrap_err();
        assert_eq!(crate::exit::classify(&err), crate::exit::Exit::Integrity);
        assert!(check_version("restic", 1, "m").is_err());
    }

    #[test]
    fn extensions_name_the_layers() {
        assert_eq!(archive_extension("zstd", true), "tar.zst.age");
        assert_eq!(archive_extension("gzip", false), "tar.gz");
        assert_eq!(archive_extension("none", false), "tar");
    }
}
