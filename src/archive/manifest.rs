//! `manifest.json` (inside the tar) and the sidecar (stored next to the archive, written last).
//!
//! The format version is checked on read: an older litevault refuses what it does not
//! understand instead of restoring it wrongly. The plan, in one place:
//!
//! - **1**: full backups; what this version writes. Fields added since then without a bump,
//!   because a version-1 reader that ignores them still restores correctly: `manifest.state_id`
//!   (which `state_dir` took it), `archive.recipients` (whom it is encrypted to, for `rekey`).
//!   The signature is not in the sidecar but beside it (`<id>.json.sig`), over its exact bytes.
//! - **2**, reserved for incremental backups: `kind = "incremental"`, `parent`, the chain's full
//!   backup, and per database a WAL file of changed pages with the before and after hashes. A
//!   version-1 reader must refuse those, never restore a page delta as a database; every reader
//!   keeps reading version 1.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::config::{Check, Compression, SourceKind};

pub const FORMAT_VERSION: u32 = 1;
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
    /// "full" today; "incremental" (with `parent`) is reserved for a later format version.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
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
    pub mode: u32,
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
}

/// Stored next to the archive as `<id>.json`, and written last: its presence is what makes a
/// backup complete and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub format: String,
    pub format_version: u32,
    pub archive: ArchiveInfo,
    pub manifest: Manifest,
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
            tags: vec![],
            state_id: None,
            sources: vec![],
            files: vec![FileEntry {
                path: "etc/a b.conf".into(),
                source: "etc".into(),
                size: 1,
                blake3: "ab".repeat(32),
                mode: 0o600,
            }],
            databases: vec![],
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
