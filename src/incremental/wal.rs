//! SQLite's WAL file layout, as the page deltas of an incremental backup.
//!
//! An incremental archive stores each changed database as `<name>-wal`: a valid WAL file whose
//! frames are the changed pages in ascending order and whose last frame commits the new page
//! count. Placed beside the previous state of the database, any stock `sqlite3` applies it on
//! `PRAGMA wal_checkpoint(TRUNCATE)` (a smaller count shrinks the file), so a backup chain can
//! be rebuilt without litevault. litevault applies the same frames itself, page by page into the
//! file being rebuilt, checking the WAL's own checksums on the way.
//!
//! Layout (<https://sqlite.org/fileformat2.html#walformat>): a 32-byte header, then per frame a
//! 24-byte header and the page. Every field is big-endian; the magic `0x377f0683` says the
//! checksums read the data as big-endian words too, so the file is the same on every machine.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::Result;
use blake3::hazmat::ChainingValue;

use crate::exit::integrity;
use crate::incremental::pagehash::page_cv;

const MAGIC: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;
pub const HEADER: usize = 32;
pub const FRAME_HEADER: usize = 24;

/// The archive name of a database's page delta: SQLite's own name for a WAL beside it.
pub fn wal_path(db_path: &str) -> String {
    format!("{db_path}-wal")
}

/// The size of a WAL of `frames` pages of `page_size` bytes.
pub fn wal_size(frames: u64, page_size: u32) -> u64 {
    HEADER as u64 + frames * (FRAME_HEADER as u64 + page_size as u64)
}

/// The page SQLite never uses: it holds the lock byte at 1 GiB, and is never written.
pub fn lock_page(page_size: u32) -> u64 {
    (1u64 << 30) / page_size as u64 + 1
}

/// SQLite's WAL checksum: pairs of 32-bit words folded into two running sums.
fn checksum(data: &[u8], mut s: (u32, u32)) -> (u32, u32) {
    debug_assert!(data.len().is_multiple_of(8));
    for pair in data.chunks_exact(8) {
        let a = u32::from_be_bytes(pair[0..4].try_into().expect("4 bytes"));
        let b = u32::from_be_bytes(pair[4..8].try_into().expect("4 bytes"));
        s.0 = s.0.wrapping_add(a).wrapping_add(s.1);
        s.1 = s.1.wrapping_add(b).wrapping_add(s.0);
    }
    s
}

/// Writes a WAL: the header, then each frame with its running checksum.
pub struct WalWriter {
    salt: [u8; 8],
    sums: (u32, u32),
}

impl WalWriter {
    /// The header for pages of `page_size` bytes; `salt` ties the frames to it.
    pub fn start(page_size: u32, salt: [u8; 8], out: &mut Vec<u8>) -> WalWriter {
        let mut header = [0u8; HEADER];
        header[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        header[4..8].copy_from_slice(&VERSION.to_be_bytes());
        header[8..12].copy_from_slice(&page_size.to_be_bytes());
        // 12..16: checkpoint sequence 0.
        header[16..24].copy_from_slice(&salt);
        let sums = checksum(&header[..24], (0, 0));
        header[24..28].copy_from_slice(&sums.0.to_be_bytes());
        header[28..32].copy_from_slice(&sums.1.to_be_bytes());
        out.extend_from_slice(&header);
        WalWriter { salt, sums }
    }

    /// Append one frame; `commit` is the database's page count on the last frame, 0 before it.
    pub fn frame(&mut self, pgno: u32, commit: u32, page: &[u8], out: &mut Vec<u8>) {
        let mut head = [0u8; FRAME_HEADER];
        head[0..4].copy_from_slice(&pgno.to_be_bytes());
        head[4..8].copy_from_slice(&commit.to_be_bytes());
        head[8..16].copy_from_slice(&self.salt);
        self.sums = checksum(page, checksum(&head[..8], self.sums));
        head[16..20].copy_from_slice(&self.sums.0.to_be_bytes());
        head[20..24].copy_from_slice(&self.sums.1.to_be_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(page);
    }
}

/// Applies a WAL, fed in pieces as it streams out of the archive, to the database file being
/// rebuilt, and keeps that file's page chaining values current. Refuses anything a valid delta
/// of ours is not: a bad checksum, pages out of order, the lock-byte page, frames after the
/// commit.
pub struct WalApplier {
    name: String,
    page_size: u32,
    buf: Vec<u8>,
    need: usize,
    started: bool,
    salt: [u8; 8],
    sums: (u32, u32),
    last: u32,
    commit: Option<u32>,
    frames: u64,
}

impl WalApplier {
    pub fn new(name: &str, page_size: u32) -> Self {
        WalApplier {
            name: name.to_string(),
            page_size,
            buf: Vec::with_capacity(FRAME_HEADER + page_size as usize),
            need: HEADER,
            started: false,
            salt: [0; 8],
            sums: (0, 0),
            last: 0,
            commit: None,
            frames: 0,
        }
    }

    /// Apply the next bytes of the WAL to `file`, whose pages have the chaining values `cvs`.
    pub fn update(
        &mut self,
        file: &File,
        cvs: &mut Vec<ChainingValue>,
        mut data: &[u8],
    ) -> Result<()> {
        while !data.is_empty() {
            let take = (self.need - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.need {
                let unit = std::mem::take(&mut self.buf);
                if self.started {
                    self.frame(file, cvs, &unit)?;
                } else {
                    self.header(&unit)?;
                }
                self.buf = unit;
                self.buf.clear();
            }
        }
        Ok(())
    }

    fn bad(&self, what: String) -> anyhow::Error {
        integrity(format!("the page delta {}: {what}", self.name)).into()
    }

    fn header(&mut self, h: &[u8]) -> Result<()> {
        let word = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        if word(0) != MAGIC || word(4) != VERSION {
            return Err(self.bad("it is not a WAL file litevault wrote".into()));
        }
        if word(8) != self.page_size {
            return Err(self.bad(format!(
                "its pages are {} bytes, the database's {}",
                word(8),
                self.page_size
            )));
        }
        let sums = checksum(&h[..24], (0, 0));
        if (word(24), word(28)) != sums {
            return Err(self.bad("its header checksum is wrong".into()));
        }
        self.salt.copy_from_slice(&h[16..24]);
        self.sums = sums;
        self.started = true;
        self.need = FRAME_HEADER + self.page_size as usize;
        Ok(())
    }

    fn frame(&mut self, file: &File, cvs: &mut Vec<ChainingValue>, f: &[u8]) -> Result<()> {
        let word = |i: usize| u32::from_be_bytes(f[i..i + 4].try_into().expect("4 bytes"));
        let (pgno, commit) = (word(0), word(4));
        if self.commit.is_some() {
            return Err(self.bad("it has frames after its commit frame".into()));
        }
        if f[8..16] != self.salt {
            return Err(self.bad(format!("frame {} has another WAL's salt", self.frames + 1)));
        }
        let (head, page) = f.split_at(FRAME_HEADER);
        self.sums = checksum(page, checksum(&head[..8], self.sums));
        if (word(16), word(20)) != self.sums {
            return Err(self.bad(format!("frame {} fails its checksum", self.frames + 1)));
        }
        if pgno <= self.last {
            return Err(self.bad(format!(
                "page {pgno} follows page {}: pages must ascend",
                self.last
            )));
        }
        if pgno as u64 == lock_page(self.page_size) {
            return Err(self.bad(format!("it writes page {pgno}, SQLite's lock-byte page")));
        }
        let index = pgno as usize - 1;
        let offset = index as u64 * self.page_size as u64;
        file.write_all_at(page, offset)
            .map_err(|e| anyhow::Error::new(e).context(format!("writing {}", self.name)))?;
        fill_to(cvs, index, self.page_size);
        cvs[index] = page_cv(index as u64, page);
        self.last = pgno;
        self.frames += 1;
        if commit != 0 {
            self.commit = Some(commit);
        }
        Ok(())
    }

    /// After the last byte: the file is cut (or grown) to the committed page count. Returns
    /// the frames applied and the new page count.
    pub fn finish(self, file: &File, cvs: &mut Vec<ChainingValue>) -> Result<(u64, u64)> {
        if !self.buf.is_empty() || !self.started {
            return Err(self.bad("it ends inside a frame".into()));
        }
        let Some(commit) = self.commit else {
            return Err(self.bad("it has no commit frame".into()));
        };
        if commit < self.last {
            return Err(self.bad(format!(
                "it commits {commit} pages but writes page {}",
                self.last
            )));
        }
        let pages = commit as u64;
        if pages > 0 {
            fill_to(cvs, pages as usize - 1, self.page_size);
        }
        cvs.truncate(pages as usize);
        file.set_len(pages * self.page_size as u64)
            .map_err(|e| anyhow::Error::new(e).context(format!("resizing {}", self.name)))?;
        Ok((self.frames, pages))
    }
}

/// Pages that no frame wrote past the old end are holes, which read as zeros.
fn fill_to(cvs: &mut Vec<ChainingValue>, index: usize, page_size: u32) {
    if cvs.len() > index {
        return;
    }
    let zero = vec![0u8; page_size as usize];
    while cvs.len() <= index {
        let i = cvs.len() as u64;
        cvs.push(page_cv(i, &zero));
    }
}

/// The hash of a file's first page: the whole hash of a database of a single page, whose root
/// is a plain hash rather than a merge of chaining values.
pub fn first_page_hash(file: &File, page_size: u32) -> Result<blake3::Hash> {
    let mut page = vec![0u8; page_size as usize];
    file.read_exact_at(&mut page, 0)?;
    Ok(blake3::hash(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a database at rest, page by page.
    fn pages(path: &std::path::Path, page_size: usize) -> Vec<Vec<u8>> {
        std::fs::read(path)
            .unwrap()
            .chunks(page_size)
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// A delta of changed pages, applied by SQLite itself (a checkpoint), turns the old file
    /// into the new one exactly: growing and shrinking alike. Applied by litevault, the same.
    #[test]
    fn sqlite_applies_our_wal_and_so_do_we() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.db");
        let conn = rusqlite::Connection::open(&live).unwrap();
        conn.execute_batch(
            "PRAGMA page_size=4096; PRAGMA journal_mode=DELETE; CREATE TABLE t(x);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000)
             INSERT INTO t SELECT randomblob(300) FROM n;",
        )
        .unwrap();
        for step in [
            "UPDATE t SET x = randomblob(300) WHERE rowid % 17 = 0; INSERT INTO t SELECT randomblob(900) FROM t LIMIT 300;",
            "DELETE FROM t WHERE rowid % 2 = 0; VACUUM;",
        ] {
            let before = pages(&live, 4096);
            conn.execute_batch(step).unwrap();
            let after = pages(&live, 4096);
            let mut wal = Vec::new();
            let mut w = WalWriter::start(4096, *b"saltsalt", &mut wal);
            let changed: Vec<usize> = (0..after.len())
                .filter(|&i| before.get(i) != Some(&after[i]))
                .collect();
            for (n, &i) in changed.iter().enumerate() {
                let commit = if n + 1 == changed.len() { after.len() as u32 } else { 0 };
                w.frame(i as u32 + 1, commit, &after[i], &mut wal);
            }
            assert_eq!(wal.len() as u64, wal_size(changed.len() as u64, 4096));

            // SQLite's own checkpoint.
            let copy = dir.path().join("copy.db");
            std::fs::write(&copy, before.concat()).unwrap();
            std::fs::write(dir.path().join("copy.db-wal"), &wal).unwrap();
            let c = rusqlite::Connection::open(&copy).unwrap();
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
            drop(c);
            assert_eq!(std::fs::read(&copy).unwrap(), after.concat(), "{step}");
            std::fs::remove_file(&copy).unwrap();
            let _ = std::fs::remove_file(dir.path().join("copy.db-wal"));

            // Ours, fed in odd pieces, with the page values kept current.
            let mine = dir.path().join("mine.db");
            std::fs::write(&mine, before.concat()).unwrap();
            let file = std::fs::OpenOptions::new().write(true).open(&mine).unwrap();
            let mut cvs: Vec<_> = before
                .iter()
                .enumerate()
                .map(|(i, p)| page_cv(i as u64, p))
                .collect();
            let mut a = WalApplier::new("t", 4096);
            for piece in wal.chunks(777) {
                a.update(&file, &mut cvs, piece).unwrap();
            }
            let (frames, count) = a.finish(&file, &mut cvs).unwrap();
            assert_eq!((frames, count), (changed.len() as u64, after.len() as u64));
            assert_eq!(std::fs::read(&mine).unwrap(), after.concat());
            let root = crate::incremental::pagehash::root_of(&cvs, || unreachable!());
            assert_eq!(root, blake3::hash(&after.concat()));
            std::fs::remove_file(&mine).unwrap();
        }
    }

    #[test]
    fn damaged_or_disordered_frames_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let page = vec![5u8; 1024];
        let mut wal = Vec::new();
        let mut w = WalWriter::start(1024, [1; 8], &mut wal);
        w.frame(3, 0, &page, &mut wal);
        w.frame(2, 3, &page, &mut wal);
        let file = File::create(dir.path().join("f")).unwrap();
        let mut cvs = Vec::new();
        let err = WalApplier::new("t", 1024)
            .update(&file, &mut cvs, &wal)
            .unwrap_err();
        assert!(format!("{err:#}").contains("must ascend"), "{err:#}");

        let mut wal = Vec::new();
        let mut w = WalWriter::start(1024, [1; 8], &mut wal);
        w.frame(1, 1, &page, &mut wal);
        wal[HEADER + FRAME_HEADER + 10] ^= 1;
        let mut cvs = Vec::new();
        let err = WalApplier::new("t", 1024)
            .update(&file, &mut cvs, &wal)
            .unwrap_err();
        assert!(format!("{err:#}").contains("checksum"), "{err:#}");
        assert_eq!(crate::exit::classify(&err), crate::exit::Exit::Integrity);
        assert_eq!(lock_page(4096), 262_145);
    }
}
