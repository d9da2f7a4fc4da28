//! What a database snapshot's page stream carries between the thread that reads the pages
//! (`sqlite`, `pages`) and the archive that takes them: the database's facts, the form of the
//! stream, what its check found, and the messages on the channel.

use std::collections::BTreeMap;

use crate::incremental::pageindex::{DbPages, PageHash, Passed};
use crate::incremental::wal::wal_size;
use crate::vocabulary::Check;

/// Pages are handed over in chunks of about this size.
pub(super) const CHUNK: usize = 256 << 10;

#[derive(Debug, Clone)]
pub struct DbInfo {
    pub page_size: u32,
    pub page_count: u64,
    pub sqlite_version: String,
    pub user_version: i64,
    pub journal_mode: String,
    /// The database file's mode (permission bits), owner and group.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// What the stream holds.
    pub form: Form,
}

/// What a snapshot streams: the whole database, or (compared with its parent's pages) a WAL
/// file of the pages that changed, or nothing when none did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Whole,
    Wal { frames: u64 },
    Unchanged,
}

impl DbInfo {
    pub fn size(&self) -> u64 {
        self.page_size as u64 * self.page_count
    }

    /// The bytes the stream will carry.
    pub fn stream_size(&self) -> u64 {
        match self.form {
            Form::Whole => self.size(),
            Form::Wal { frames } => wal_size(frames, self.page_size),
            Form::Unchanged => 0,
        }
    }
}

/// What the snapshot's transaction found once its pages were read and checked.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Rows per table.
    pub row_counts: BTreeMap<String, u64>,
    /// The whole snapshot's BLAKE3 (hex), equal to the file's.
    pub blake3: String,
    /// Each page's short hash, for the next backup's comparison (when asked for, and the page
    /// size allows it).
    pub pages: Vec<PageHash>,
    /// The check these bytes passed: the one configured, or a stronger one that the parent's
    /// identical bytes passed.
    pub check: Check,
}

impl Checked {
    pub fn index_entry(&self, path: &str, info: &DbInfo) -> DbPages {
        DbPages {
            source: path.to_string(),
            page_size: info.page_size,
            page_count: info.page_count,
            blake3: self.blake3.clone(),
            hashes: self.pages.clone(),
            passed: Some(Passed {
                check: self.check,
                row_counts: self.row_counts.clone(),
            }),
        }
    }
}

pub(super) enum Msg {
    Ready(DbInfo),
    Pages(Vec<u8>),
    /// Every page has been sent; the check runs now.
    Streamed,
    /// The check passed (with the row counts of the same transaction); the transaction is closed.
    Checked(Checked),
    Failed(anyhow::Error),
}
