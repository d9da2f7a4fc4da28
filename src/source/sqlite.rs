//! A consistent snapshot of a live SQLite database, streamed page by page.
//!
//! Method: open the database through SQLite itself, begin a read transaction, read every page of
//! it through the `sqlite_dbpage` virtual table, then run the configured check (`quick_check` or
//! `integrity_check`) in that same transaction. A read transaction sees one committed
//! state however much a writer commits meanwhile (in WAL mode the writer goes on; in rollback
//! mode it waits for our shared lock), so the pages form the database as it was at one instant,
//! including changes still in the WAL. Unlike copying the file, this never tears; unlike the
//! backup API into a temporary file, each page is read once and goes straight into the archive,
//! and what was checked is exactly what is stored.
//!
//! The pages are read on a thread of their own and handed over in chunks through a bounded
//! channel, so reading the database overlaps hashing and compression and memory stays bounded.
//! Streaming first and checking after lets compression start at once and the check of one
//! database run while the next one streams; the archive is committed only after every check has
//! passed, so a database that fails its check is never stored.
//!
//! For an incremental backup the snapshot first reads every page once to compare it with the
//! parent's page hashes (nothing streams yet: the size of the delta is not known), then reads
//! the changed pages again by number, still in the same transaction, and streams them as a WAL
//! file. The second read comes from SQLite's and the kernel's caches and is a fraction of the
//! first.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};

use super::pages::{compare_pages, stream_wal, stream_whole};
use super::stream::Msg;
pub use super::stream::{Checked, DbInfo, Form};
use crate::config::Check;
use crate::exit::integrity;
use crate::incremental::pagehash::supported;
use crate::incremental::pageindex::DbPages;

/// The channel holds a few chunks.
const CHANNEL_DEPTH: usize = 2;

/// Below this size a database's snapshot keeps a small page cache (`SMALL_CACHE_KIB`).
const SMALL_DATABASE: u64 = 16 << 20;
/// SQLite's `cache_size` in KiB when negative.
const SMALL_CACHE_KIB: i64 = -256;

/// How long to wait for a writer's lock before giving up on a database.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to take a snapshot: whether to keep page hashes for the next backup, and the parent's
/// pages to compare with (for an incremental).
#[derive(Clone, Default)]
pub struct Compare {
    pub keep_pages: bool,
    pub parent: Option<Arc<DbPages>>,
}

/// A snapshot being taken on its own thread. Read it like a file of `ready()?.size()` bytes.
pub struct Snapshot {
    label: String,
    rx: Receiver<Msg>,
    thread: Option<JoinHandle<()>>,
    info: Option<DbInfo>,
    chunk: Vec<u8>,
    pos: usize,
    streamed: bool,
}

/// A snapshot whose pages are all read, still checking them in its transaction.
pub struct PendingCheck {
    label: String,
    rx: Receiver<Msg>,
    thread: Option<JoinHandle<()>>,
    outcome: Option<Result<Checked>>,
}

impl Snapshot {
    /// Start the snapshot: it opens the database and begins a read transaction, then streams
    /// pages as they are read.
    pub fn start(label: &str, path: &Path, check: Check, compare: Compare) -> Snapshot {
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let path = path.to_path_buf();
        let thread_label = label.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("snapshot {label}"))
            .spawn(move || {
                if let Err(e) = produce(&path, check, compare, &thread_label, &tx) {
                    let _ = tx.send(Msg::Failed(e.context(format!(
                        "snapshot of database {thread_label} ({})",
                        path.display()
                    ))));
                }
            })
            .expect("spawning a snapshot thread");
        Snapshot {
            label: label.to_string(),
            rx,
            thread: Some(thread),
            info: None,
            chunk: Vec::new(),
            pos: 0,
            streamed: false,
        }
    }

    /// Wait until the transaction is open; its geometry tells the size of the stream.
    pub fn ready(&mut self) -> Result<DbInfo> {
        if let Some(info) = &self.info {
            return Ok(info.clone());
        }
        match self.rx.recv() {
            Ok(Msg::Ready(info)) => {
                self.info = Some(info.clone());
                Ok(info)
            }
            Ok(Msg::Failed(e)) => Err(e),
            Ok(_) => bail!("snapshot of {}: protocol error", self.label),
            Err(_) => bail!("snapshot of {}: the snapshot thread stopped", self.label),
        }
    }

    /// After the last byte: the stream held exactly the pages announced. The check of those
    /// same pages goes on in the background; the archive must not be committed before
    /// [`PendingCheck::wait`] has said it passed.
    pub fn finish(mut self) -> Result<PendingCheck> {
        let mut probe = [0u8; 1];
        if self.read(&mut probe)? != 0 || !self.streamed {
            bail!(
                "snapshot of {} produced more pages than it announced",
                self.label
            );
        }
        let (_, rx) = sync_channel(0);
        Ok(PendingCheck {
            label: std::mem::take(&mut self.label),
            rx: std::mem::replace(&mut self.rx, rx),
            thread: self.thread.take(),
            outcome: None,
        })
    }
}

impl PendingCheck {
    /// A check already known to have passed.
    pub fn passed(label: &str, counts: Checked) -> PendingCheck {
        let (_, rx) = sync_channel(0);
        PendingCheck {
            label: label.to_string(),
            rx,
            thread: None,
            outcome: Some(Ok(counts)),
        }
    }

    /// A failure already known, without waiting: lets a backup stop early on a corrupt source.
    pub fn failed_yet(&mut self) -> bool {
        if self.outcome.is_none() {
            match self.rx.try_recv() {
                Ok(Msg::Checked(counts)) => self.outcome = Some(Ok(counts)),
                Ok(Msg::Failed(e)) => self.outcome = Some(Err(e)),
                Ok(_) => {
                    self.outcome = Some(Err(anyhow::anyhow!(
                        "snapshot of {}: protocol error",
                        self.label
                    )))
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.outcome = Some(Err(anyhow::anyhow!(
                        "snapshot of {}: the snapshot thread stopped",
                        self.label
                    )))
                }
            }
        }
        matches!(self.outcome, Some(Err(_)))
    }

    /// Wait for the check; the row counts, hash and page hashes on success.
    pub fn wait(mut self) -> Result<Checked> {
        let outcome = match self.outcome.take() {
            Some(o) => o,
            None => match self.rx.recv() {
                Ok(Msg::Checked(counts)) => Ok(counts),
                Ok(Msg::Failed(e)) => Err(e),
                Ok(_) => Err(anyhow::anyhow!(
                    "snapshot of {}: protocol error",
                    self.label
                )),
                Err(_) => Err(anyhow::anyhow!(
                    "snapshot of {}: the snapshot thread stopped",
                    self.label
                )),
            },
        };
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("snapshot thread of {} panicked", self.label))?;
        }
        outcome
    }
}

impl Read for Snapshot {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.chunk.len() {
                let n = buf.len().min(self.chunk.len() - self.pos);
                buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.streamed {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Pages(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Msg::Streamed) => self.streamed = true,
                Ok(Msg::Failed(e)) => return Err(io::Error::other(format!("{e:#}"))),
                Ok(_) | Err(_) => {
                    return Err(io::Error::other(format!(
                        "snapshot of {} stopped early",
                        self.label
                    )))
                }
            }
        }
    }
}

/// Dropping either end stops the thread: its next send fails, so it rolls back and exits.
fn stop(rx: &mut Receiver<Msg>, thread: &mut Option<JoinHandle<()>>) {
    let (_, closed) = sync_channel(0);
    drop(std::mem::replace(rx, closed));
    if let Some(t) = thread.take() {
        let _ = t.join();
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        stop(&mut self.rx, &mut self.thread);
    }
}

impl Drop for PendingCheck {
    fn drop(&mut self) {
        stop(&mut self.rx, &mut self.thread);
    }
}

fn produce(
    path: &Path,
    check: Check,
    compare: Compare,
    label: &str,
    tx: &SyncSender<Msg>,
) -> Result<()> {
    let (conn, mut info) = open_snapshot(path, label)?;
    // A delta needs pages of the same size on both sides, a parent with pages to apply to
    // (SQLite drops a WAL beside an empty file) and at least one page to commit.
    let parent = compare.parent.filter(|p| {
        supported(info.page_size)
            && p.page_size == info.page_size
            && p.page_count > 0
            && p.hashes.len() as u64 == p.page_count
            && info.page_count > 0
    });
    let keep = compare.keep_pages || parent.is_some();
    // A database whose every byte equals the parent's (its whole BLAKE3 included) has already
    // passed this check, or a stronger one, with these row counts: the parent's backup records
    // both, and the plan made sure this index says what that backup says.
    let mut implied: Option<crate::incremental::pageindex::Passed> = None;
    let (blake3, pages) = match parent {
        None => {
            if tx.send(Msg::Ready(info.clone())).is_err() {
                return Ok(());
            }
            match stream_whole(&conn, &info, keep, tx)? {
                Some(done) => done,
                None => return Ok(()),
            }
        }
        Some(parent) => {
            let (blake3, pages, changed) = compare_pages(&conn, &info, &parent)?;
            let mut frames = changed;
            if frames.is_empty() && info.page_count != parent.page_count {
                // Only a shrink: the commit frame still has to say the new page count.
                frames.push(1);
            }
            if frames.is_empty() && blake3 == parent.blake3 {
                implied = parent
                    .passed
                    .clone()
                    .filter(|p| p.check == Check::Integrity || check == Check::Quick);
            }
            info.form = if frames.is_empty() {
                Form::Unchanged
            } else {
                Form::Wal {
                    frames: frames.len() as u64,
                }
            };
            if tx.send(Msg::Ready(info.clone())).is_err() {
                return Ok(());
            }
            if !frames.is_empty() && !stream_wal(&conn, &info, &frames, label, tx)? {
                return Ok(());
            }
            (blake3, pages)
        }
    };
    if tx.send(Msg::Streamed).is_err() {
        return Ok(());
    }

    // The pages just sent are checked in the same transaction, so what is checked is exactly
    // what is stored; the archive is committed only once every check has passed.
    let (row_counts, check) = match implied {
        Some(passed) => (passed.row_counts, passed.check),
        None => (
            interruptible(&conn, || {
                run_check(&conn, check)?;
                row_counts(&conn)
            })?,
            check,
        ),
    };
    conn.execute_batch("COMMIT")?;
    let _ = tx.send(Msg::Checked(Checked {
        row_counts,
        check,
        blake3,
        pages: if compare.keep_pages {
            pages
        } else {
            Vec::new()
        },
    }));
    Ok(())
}

/// Open the database as a backup does and begin its read transaction: the first read fixes the
/// snapshot that everything after it on `conn` sees. Nothing is written.
fn open_snapshot(path: &Path, label: &str) -> Result<(Connection, DbInfo)> {
    // Opened for reading first: an unreadable file is said to be one (with who cannot read it),
    // not taken by SQLite's "unable to open" (code 14) for a missing -shm.
    let meta = std::fs::File::open(path)
        .and_then(|f| f.metadata())
        .map_err(|e| super::access_error(label, path, e))?;
    if !meta.is_file() {
        bail!("not a regular file");
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .context("cannot open the database")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // A backup only reads. Left alone, SQLite would checkpoint the WAL into the database when
    // this (if last) connection closes: a burst of writes on the live server, and time.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    conn.execute_batch("BEGIN DEFERRED")
        .map_err(|e| explain_open(e, path))?;
    // The first read fixes the transaction's snapshot; everything below sees that one state.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(|e| match e.sqlite_error().map(|f| f.extended_code) {
            Some(READONLY_DIRECTORY) | Some(rusqlite::ffi::SQLITE_CANTOPEN) => {
                explain_open(e, path)
            }
            _ => corrupt_or(e, "cannot read the schema"),
        })?;
    if meta.len() < SMALL_DATABASE {
        // A source of thousands of small databases has a few open at a time, each on a thread
        // whose allocator arena keeps its peak: SQLite's default 2 MiB page cache each would add
        // up. Its check reads the pages again from the kernel's cache instead. (Set once the
        // schema is read: the pragma reads it, and an open that fails is explained above.)
        conn.pragma_update(None, "cache_size", SMALL_CACHE_KIB)?;
    }

    let info = DbInfo {
        page_size: conn.query_row("PRAGMA page_size", [], |r| r.get(0))?,
        page_count: conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))? as u64,
        sqlite_version: conn.query_row("SELECT sqlite_version()", [], |r| r.get(0))?,
        user_version: conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
        journal_mode: conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        form: Form::Whole,
    };
    Ok((conn, info))
}

/// What `check` learns of a database: opened and read exactly as a backup opens it (so a WAL
/// database whose `-shm` cannot be made fails here as it would there), the transaction rolled
/// back, nothing written, no check run.
pub fn probe(path: &Path, label: &str) -> Result<DbInfo> {
    let (conn, info) = open_snapshot(path, label)?;
    conn.execute_batch("ROLLBACK")?;
    Ok(info)
}

/// Rows in each ordinary table (SQLite's own and virtual tables aside).
pub fn row_counts(conn: &Connection) -> Result<BTreeMap<String, u64>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND sql NOT LIKE 'CREATE VIRTUAL%'",
    )?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut counts = BTreeMap::new();
    for name in names {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))?;
        counts.insert(name, n as u64);
    }
    Ok(counts)
}

fn run_check(conn: &Connection, check: Check) -> Result<()> {
    let pragma = match check {
        Check::Quick => "quick_check",
        Check::Integrity => "integrity_check",
    };
    let problems = check_problems(conn, pragma)?;
    if !problems.is_empty() {
        return Err(integrity(format!("{pragma} failed: {}", problems.join("; "))).into());
    }
    Ok(())
}

/// Run `PRAGMA quick_check`/`integrity_check`; an empty list means "ok". A database too damaged
/// to run the check at all is reported as a problem too.
pub fn check_problems(conn: &Connection, pragma: &str) -> Result<Vec<String>> {
    let sql = format!("PRAGMA {pragma}(20)");
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    };
    match run() {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(Vec::new()),
        Ok(lines) => Ok(lines),
        Err(e) if is_corruption(&e) => Ok(vec![e.to_string()]),
        Err(e) => Err(e.into()),
    }
}

/// SQLITE_READONLY_DIRECTORY: SQLite cannot create a file it needs beside the database.
const READONLY_DIRECTORY: i32 = 1544;

/// A WAL database needs its `-shm` (and maybe `-wal`) beside it, even to be read: SQLite's own
/// "Error code 1544" says nothing a person can act on.
fn explain_open(e: rusqlite::Error, path: &Path) -> anyhow::Error {
    let code = e.sqlite_error().map(|f| f.extended_code);
    if !matches!(
        code,
        Some(READONLY_DIRECTORY) | Some(rusqlite::ffi::SQLITE_CANTOPEN)
    ) {
        return anyhow::Error::new(e).context("cannot read the database");
    }
    let folder = path
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| ".".into());
    anyhow::Error::new(
        crate::exit::Fault::new(
            crate::exit::Exit::Failure,
            format!(
                "cannot read the database: SQLite needs to create {}-shm beside it (a WAL-mode database), but the folder {folder} is not writable for this user ({e})",
                path.display()
            ),
        )
        .hint(format!(
            "run litevault as the database's owner, or give its group write access to {folder} (chmod g+w) and run litevault in that group"
        )),
    )
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt) | Some(rusqlite::ErrorCode::NotADatabase)
    )
}

fn corrupt_or(e: rusqlite::Error, what: &str) -> anyhow::Error {
    if is_corruption(&e) {
        anyhow::Error::new(integrity(format!("{what}: {e}")))
    } else {
        anyhow::Error::new(e).context(what.to_string())
    }
}

/// Check a database file at rest (after restore): `quick_check` or `integrity_check`.
///
/// Opened read-write (never written) because a WAL-mode file cannot always be opened read-only
/// without its `-shm`; the caller runs this only on files in its own private folder.
pub fn check_file(path: &Path, pragma: &str) -> Result<Vec<String>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", path.display()))?;
    interruptible(&conn, || check_problems(&conn, pragma))
}

/// Run `f` on `conn` so that a signal stops it within a tick: an `integrity_check` of a big
/// database runs for many seconds inside SQLite, where no check of ours can reach it.
fn interruptible<T>(conn: &Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let handle = conn.get_interrupt_handle();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if crate::interrupt::requested() {
                    handle.interrupt();
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let result = f();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        if crate::interrupt::requested() {
            crate::interrupt::check()?;
        }
        result
    })
}
