//! Reading a snapshot's pages inside its transaction: every page streamed whole, or compared
//! with the parent's page hashes and only the changed ones streamed as a WAL file. Both hash
//! each page as it passes (see `pagehash`), so the file's BLAKE3 and the next page index cost no
//! second read.

use std::sync::mpsc::SyncSender;

use anyhow::{bail, Context, Result};
use rusqlite::Connection;

use super::stream::{DbInfo, Msg, CHUNK};
use crate::incremental::pagehash::{page_cv, supported, Tree};
use crate::incremental::pageindex::{short, DbPages, PageHash};
use crate::incremental::wal::{lock_page, WalWriter};

/// Every page, in order, through `each` (the lock-byte page, which SQLite never stores, as
/// zeros, keeping the file's geometry); checks the count against the transaction's.
fn scan(
    conn: &Connection,
    info: &DbInfo,
    mut each: impl FnMut(u64, &[u8]) -> Result<bool>,
) -> Result<bool> {
    let page_size = info.page_size as usize;
    let mut stmt = conn
        .prepare("SELECT pgno, data FROM sqlite_dbpage('main')")
        .context(
            "this build of SQLite lacks the sqlite_dbpage table litevault snapshots through",
        )?;
    let mut rows = stmt.query([])?;
    let mut next: u64 = 1;
    let zero = vec![0u8; page_size];
    while let Some(row) = rows.next()? {
        let pgno: i64 = row.get(0)?;
        let data = row.get_ref(1)?.as_blob()?;
        if data.len() != page_size {
            bail!("page {pgno} has {} bytes, expected {page_size}", data.len());
        }
        while next < pgno as u64 {
            if !each(next, &zero)? {
                return Ok(false);
            }
            next += 1;
        }
        if !each(next, data)? {
            return Ok(false);
        }
        next += 1;
    }
    if next - 1 != info.page_count {
        bail!(
            "read {} pages, but the database has {}",
            next - 1,
            info.page_count
        );
    }
    Ok(true)
}

/// Hashes pages as they pass: per page (a chaining value, whose 16 first bytes are kept when
/// asked) when the page size allows, the whole file otherwise.
struct Hashes {
    tree: Option<Tree>,
    plain: Option<blake3::Hasher>,
    keep: bool,
    pages: Vec<PageHash>,
}

impl Hashes {
    /// Per page only when the page hashes are wanted: one hash over the whole stream is
    /// faster (BLAKE3 hashes many chunks at once in SIMD lanes, a page gives it only a few).
    fn new(info: &DbInfo, keep: bool) -> Hashes {
        let per_page = keep && supported(info.page_size);
        Hashes {
            tree: per_page.then(Tree::new),
            plain: (!per_page).then(blake3::Hasher::new),
            keep: per_page,
            pages: Vec::new(),
        }
    }

    /// Add page `pgno`; its chaining value when hashed per page.
    fn page(&mut self, pgno: u64, data: &[u8]) -> Option<blake3::hazmat::ChainingValue> {
        match (&mut self.tree, &mut self.plain) {
            (Some(tree), _) => {
                let cv = page_cv(pgno - 1, data);
                tree.push(cv, (pgno == 1).then_some(data));
                if self.keep {
                    self.pages.push(short(&cv));
                }
                Some(cv)
            }
            (None, Some(plain)) => {
                plain.update(data);
                None
            }
            (None, None) => unreachable!("one of the two hashers"),
        }
    }

    fn finish(self) -> (String, Vec<PageHash>) {
        let root = match (self.tree, self.plain) {
            (Some(tree), _) => tree.root(),
            (None, Some(plain)) => plain.finalize(),
            (None, None) => unreachable!("one of the two hashers"),
        };
        (root.to_hex().to_string(), self.pages)
    }
}

/// A small database streams in small chunks: thousands of them pass through a few threads,
/// each of whose allocator arenas keeps its peak (a chunk in hand and two in the channel).
fn chunk_for(info: &DbInfo) -> usize {
    if info.size() < (16 << 20) {
        CHUNK / 4
    } else {
        CHUNK
    }
}

/// Stream every page; `None` when the reader went away.
pub(super) fn stream_whole(
    conn: &Connection,
    info: &DbInfo,
    keep: bool,
    tx: &SyncSender<Msg>,
) -> Result<Option<(String, Vec<PageHash>)>> {
    let page_size = info.page_size as usize;
    let mut hashes = Hashes::new(info, keep);
    let chunk_size = chunk_for(info);
    let mut chunk = Vec::with_capacity(chunk_size + page_size);
    let whole = scan(conn, info, |pgno, data| {
        hashes.page(pgno, data);
        chunk.extend_from_slice(data);
        if chunk.len() >= chunk_size {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_size + page_size));
            return Ok(tx.send(Msg::Pages(full)).is_ok());
        }
        Ok(true)
    })?;
    if !whole || (!chunk.is_empty() && tx.send(Msg::Pages(chunk)).is_err()) {
        return Ok(None);
    }
    Ok(Some(hashes.finish()))
}

/// Read every page once, comparing each with the parent's: the snapshot's hash, its page
/// hashes, and the pages that differ (never the lock-byte page), in ascending order.
pub(super) fn compare_pages(
    conn: &Connection,
    info: &DbInfo,
    parent: &DbPages,
) -> Result<(String, Vec<PageHash>, Vec<u32>)> {
    let mut hashes = Hashes::new(info, true);
    let mut changed = Vec::new();
    let lock = lock_page(info.page_size);
    scan(conn, info, |pgno, data| {
        let cv = hashes.page(pgno, data).expect("a supported page size");
        let before = parent.hashes.get(pgno as usize - 1);
        if pgno != lock && before != Some(&short(&cv)) {
            changed.push(pgno as u32);
        }
        Ok(true)
    })?;
    let (blake3, pages) = hashes.finish();
    Ok((blake3, pages, changed))
}

/// Stream the WAL of the changed pages, each read again (in the same transaction, so the same
/// state) by its number. False when the reader went away.
pub(super) fn stream_wal(
    conn: &Connection,
    info: &DbInfo,
    frames: &[u32],
    label: &str,
    tx: &SyncSender<Msg>,
) -> Result<bool> {
    let page_size = info.page_size as usize;
    let salt: [u8; 8] =
        blake3::hash(format!("{label} {:?}", std::time::SystemTime::now()).as_bytes()).as_bytes()
            [..8]
            .try_into()
            .expect("8 bytes");
    let chunk_size = chunk_for(info);
    let mut chunk = Vec::with_capacity(chunk_size + page_size + 64);
    let mut wal = WalWriter::start(info.page_size, salt, &mut chunk);
    let mut stmt = conn.prepare("SELECT data FROM sqlite_dbpage('main') WHERE pgno = ?1")?;
    let zero = vec![0u8; page_size];
    let last = frames.len() - 1;
    for (n, &pgno) in frames.iter().enumerate() {
        let commit = if n == last { info.page_count as u32 } else { 0 };
        let mut rows = stmt.query([pgno])?;
        match rows.next()? {
            Some(row) => {
                let data = row.get_ref(0)?.as_blob()?;
                if data.len() != page_size {
                    bail!("page {pgno} has {} bytes, expected {page_size}", data.len());
                }
                wal.frame(pgno, commit, data, &mut chunk);
            }
            // A page SQLite does not return reads as zeros, as in the whole snapshot.
            None => wal.frame(pgno, commit, &zero, &mut chunk),
        }
        if chunk.len() >= chunk_size {
            let full =
                std::mem::replace(&mut chunk, Vec::with_capacity(chunk_size + page_size + 64));
            if tx.send(Msg::Pages(full)).is_err() {
                return Ok(false);
            }
        }
    }
    Ok(chunk.is_empty() || tx.send(Msg::Pages(chunk)).is_ok())
}
