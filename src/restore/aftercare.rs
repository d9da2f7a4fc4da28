//! Aftercare of an unpacking: a few workers sync each unpacked file (when the restore must be
//! durable) and check each database soon after it is written, while the next ones unpack, so
//! threads and memory stay bounded however many files a backup holds. Used by a full backup's
//! unpacking and by a chain's rebuild alike.

use std::path::Path;

use anyhow::{Context, Result};

use crate::archive::reader::Route;
use crate::catalog::Backup;
use crate::storage::Destination;

/// What the bar says while the last checks run after an unpacking.
pub(super) fn check_label(backup: &Backup, dest: &Destination, pragma: &str) -> String {
    let n = backup.sidecar.manifest.databases.len();
    format!(
        "check {} from {}: {pragma} of {n} database{}",
        backup.id,
        dest.name,
        if n == 1 { "" } else { "s" }
    )
}

/// Every entry written, and handed to the aftercare workers as soon as it is.
pub(super) struct ToAftercare<'a, 'scope, 'm> {
    pub pool: &'a mut Aftercare<'scope, 'm>,
    pub into: &'a Path,
    pub databases: &'m [crate::archive::manifest::DatabaseEntry],
    pub durable: bool,
    /// A trusted key signed the backup: a database whose snapshot passed the pool's check when
    /// it was taken is not checked again (see [`implied`]).
    pub vouched: bool,
}

/// Whether `pragma` on a restored database is implied, for a backup a trusted key signed, by
/// the check its snapshot passed when it was taken. The restored bytes have that snapshot's
/// BLAKE3 (every entry is checked against the signed manifest before it reaches the workers, and
/// a rebuilt database against the hash its link records), a snapshot is checked in the same read
/// transaction it is read in, and a backup whose check failed is never stored: so the restored
/// file is, byte for byte, a database that passed that check, and running it again tells
/// nothing new. `integrity_check` covers `quick_check`, not the other way round. Without a
/// trusted signature the hashes could have been written by whoever wrote the archive, so the
/// check runs.
pub(super) fn implied(vouched: bool, passed: crate::config::Check, pragma: &str) -> bool {
    vouched && (passed == crate::config::Check::Integrity || pragma == "quick_check")
}

impl<'scope, 'm: 'scope> ToAftercare<'_, 'scope, 'm> {
    /// A database rebuilt from a chain, final and settled (its BLAKE3 the one the backup
    /// records): synced and checked like one restored whole.
    pub(super) fn rebuilt(&mut self, path: &str, index: usize) -> Result<()> {
        let db = &self.databases[index];
        let check = !implied(self.vouched, db.check, self.pool.pragma);
        if !self.durable && !check {
            self.pool.passed(index);
            return Ok(());
        }
        let full = self.into.join(path);
        let size = std::fs::metadata(&full).map(|m| m.len()).unwrap_or(0);
        self.pool.add(Unpacked {
            path: full,
            size,
            db: Some((index, db, check)),
        })
    }
}

impl<'scope, 'm: 'scope> crate::archive::reader::Entries for ToAftercare<'_, 'scope, 'm> {
    fn done(&mut self, path: &str, size: u64, route: Route) -> Result<()> {
        if route != Route::Write {
            return Ok(());
        }
        let db = self.databases.iter().position(|d| d.path == path);
        let vouched = self.vouched;
        let pragma = self.pool.pragma;
        let db = db
            .map(|i| (i, &self.databases[i]))
            .map(|(i, d)| (i, d, !implied(vouched, d.check, pragma)));
        if !self.durable && !db.is_some_and(|(_, _, check)| check) {
            if let Some((i, _, _)) = db {
                // Implied: a verdict without a check, so the database is still reported.
                self.pool.passed(i);
            }
            return Ok(());
        }
        self.pool.add(Unpacked {
            path: self.into.join(path),
            size,
            db,
        })
    }
}

/// Threads that sync and check unpacked files. One thread per file ran out of threads (and
/// memory) at about 32,000 files; a few workers behind a short queue keep both bounded while
/// still overlapping the syncs (mostly waiting on the disk) with the unpacking.
const AFTERCARE_WORKERS: usize = 4;
/// Batches waiting for a worker.
const AFTERCARE_QUEUE: usize = 4;
/// Files travel in batches, so a folder of many small files costs a hand-over per batch rather
/// than per file; a batch goes as soon as it holds this many files or bytes, or a database (whose
/// check should start at once).
const BATCH_FILES: usize = 64;
const BATCH_BYTES: u64 = 8 << 20;

/// One unpacked file and, for a database, its index in the manifest's list. The worker opens it
/// again by path (inside the private unpack folder), so no handle waits in a queue.
pub(super) struct Unpacked<'m> {
    path: std::path::PathBuf,
    size: u64,
    /// A database: its manifest index, its entry, and whether to run the check on it.
    db: Option<(usize, &'m crate::archive::manifest::DatabaseEntry, bool)>,
}

/// What the workers found: the first error (sync or check), and each database's problems by its
/// manifest index, in manifest order.
pub(super) struct AftercareOutcome {
    pub failure: Option<anyhow::Error>,
    pub verdicts: Vec<(usize, Vec<String>)>,
}

/// Returned to the unpacker once a worker has failed, so it stops instead of unpacking files
/// that can no longer be restored; the worker's own error is the one reported.
#[derive(Debug)]
pub(super) struct StoppedByAftercare;

impl std::fmt::Display for StoppedByAftercare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped: syncing or checking an unpacked file failed")
    }
}

impl std::error::Error for StoppedByAftercare {}

#[derive(Default)]
struct AftercareShared {
    failed: std::sync::atomic::AtomicBool,
    failure: std::sync::Mutex<Option<anyhow::Error>>,
    verdicts: std::sync::Mutex<Vec<(usize, Vec<String>)>>,
}

impl AftercareShared {
    fn fail(&self, err: anyhow::Error) {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(err);
        }
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn has_failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub(super) struct Aftercare<'scope, 'm> {
    queue: std::sync::mpsc::SyncSender<Vec<Unpacked<'m>>>,
    workers: Vec<std::thread::ScopedJoinHandle<'scope, ()>>,
    shared: std::sync::Arc<AftercareShared>,
    batch: Vec<Unpacked<'m>>,
    batch_bytes: u64,
    /// What each database is checked with.
    pub(super) pragma: &'scope str,
}

impl<'scope, 'm: 'scope> Aftercare<'scope, 'm> {
    /// A database whose check is implied (see [`implied`]) passes without being opened.
    pub(super) fn passed(&self, index: usize) {
        self.shared
            .verdicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((index, Vec::new()));
    }

    pub(super) fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        pragma: &'scope str,
        durable: bool,
    ) -> Self {
        let (queue, batches) = std::sync::mpsc::sync_channel::<Vec<Unpacked<'m>>>(AFTERCARE_QUEUE);
        // Only the workers hold the receiver: should they all die, sending fails rather than
        // waiting forever on a full queue.
        let batches = std::sync::Arc::new(std::sync::Mutex::new(batches));
        let shared = std::sync::Arc::new(AftercareShared::default());
        let workers = (0..AFTERCARE_WORKERS)
            .map(|_| {
                let (batches, shared) = (batches.clone(), shared.clone());
                scope.spawn(move || loop {
                    let batch = batches.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(batch) = batch else { break };
                    for file in batch {
                        // After a failure the queue is still emptied, so the unpacker never
                        // blocks on it.
                        if shared.has_failed() {
                            break;
                        }
                        aftercare_one(file, pragma, durable, &shared);
                    }
                })
            })
            .collect();
        Aftercare {
            queue,
            workers,
            shared,
            batch: Vec::with_capacity(BATCH_FILES),
            batch_bytes: 0,
            pragma,
        }
    }

    pub(super) fn add(&mut self, file: Unpacked<'m>) -> Result<()> {
        if self.shared.has_failed() {
            return Err(StoppedByAftercare.into());
        }
        let urgent = file.db.is_some();
        self.batch_bytes += file.size;
        self.batch.push(file);
        if urgent || self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_FILES));
        self.batch_bytes = 0;
        self.queue.send(batch).map_err(|lost| {
            anyhow::anyhow!(
                "every sync and check worker has stopped; {} was neither synced nor checked",
                lost.0[0].path.display()
            )
        })
    }

    /// Send what is left, wait for the workers, and gather what they found.
    pub(super) fn finish(mut self) -> AftercareOutcome {
        if let Err(e) = self.send() {
            self.shared.fail(e);
        }
        drop(self.queue);
        for worker in self.workers {
            if worker.join().is_err() {
                self.shared
                    .fail(anyhow::anyhow!("a sync and check worker panicked"));
            }
        }
        let shared = &self.shared;
        let failure = shared
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut verdicts =
            std::mem::take(&mut *shared.verdicts.lock().unwrap_or_else(|p| p.into_inner()));
        verdicts.sort_by_key(|(index, _)| *index);
        AftercareOutcome { failure, verdicts }
    }
}

fn aftercare_one(file: Unpacked<'_>, pragma: &str, durable: bool, shared: &AftercareShared) {
    use anyhow::Context;
    if durable {
        let synced = std::fs::File::open(&file.path).and_then(|f| f.sync_all());
        if let Err(e) = synced {
            shared.fail(anyhow::Error::new(e).context(format!("syncing {}", file.path.display())));
            return;
        }
    }
    if let Some((index, _, false)) = file.db {
        shared
            .verdicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((index, Vec::new()));
        return;
    }
    if let Some((index, db, true)) = file.db {
        match crate::source::sqlite::check_file(&file.path, pragma)
            .with_context(|| format!("database {} ({})", db.path, file.path.display()))
        {
            Ok(problems) => shared
                .verdicts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((index, problems)),
            Err(e) => shared.fail(e),
        }
    }
}

/// A database a chain rebuilt, to sync and check as at rest: its file if still open (closed
/// between links otherwise), its path in the backup, and whether its check is not implied.
pub(super) struct RebuiltCheck {
    pub file: Option<std::fs::File>,
    pub path: String,
    pub check: bool,
}

/// Sync (when `durable`) and check each of `jobs` under `into`, a few at a time: a chain may
/// rebuild thousands of databases, and each check holds a connection and its page cache while
/// it runs. Each database's path with its problems (none: it passed). Stops early, with what
/// it has, when a signal asks; the caller checks for that.
pub(super) fn check_rebuilt(
    into: &Path,
    jobs: Vec<RebuiltCheck>,
    durable: bool,
    pragma: &str,
) -> Vec<Result<(String, Vec<String>)>> {
    let jobs: Vec<std::sync::Mutex<Option<RebuiltCheck>>> = jobs
        .into_iter()
        .map(|j| std::sync::Mutex::new(Some(j)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
        .min(jobs.len().max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        let Some(job) = job.lock().unwrap_or_else(|p| p.into_inner()).take() else {
                            continue;
                        };
                        done.push(check_one_rebuilt(into, job, durable, pragma));
                        if crate::interrupt::requested() {
                            break;
                        }
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec![Err(anyhow::anyhow!("a database check panicked"))])
            })
            .collect()
    })
}

fn check_one_rebuilt(
    into: &Path,
    job: RebuiltCheck,
    durable: bool,
    pragma: &str,
) -> Result<(String, Vec<String>)> {
    let path = into.join(&job.path);
    if durable {
        // Syncing any descriptor of the file syncs what was written through the others.
        let file = match job.file {
            Some(f) => f,
            None => {
                std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?
            }
        };
        file.sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
    }
    if !job.check {
        return Ok((job.path, Vec::new()));
    }
    let problems = crate::source::sqlite::check_file(&path, pragma)
        .with_context(|| format!("database {} ({})", job.path, path.display()))?;
    Ok((job.path, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(path: &str) -> crate::archive::manifest::DatabaseEntry {
        crate::archive::manifest::DatabaseEntry {
            source: path.into(),
            path: path.into(),
            page_size: 4096,
            page_count: 1,
            sqlite_version: "3".into(),
            user_version: 0,
            journal_mode: "wal".into(),
            check: crate::config::Check::Quick,
            row_counts: Default::default(),
            blake3: None,
            stored: None,
            mode: None,
            uid: None,
            gid: None,
        }
    }

    /// Many more files than workers and queue slots go through, every database is checked (a
    /// damaged one gets its problems), and a check that cannot run at all is the failure,
    /// naming its file.
    #[test]
    fn aftercare_sees_every_file_and_reports_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.db");
        rusqlite::Connection::open(&good)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        let bad = dir.path().join("bad.db");
        std::fs::write(&bad, vec![7u8; 8192]).unwrap();
        let gone = dir.path().join("gone/gone.db");
        let dbs = [database("good.db"), database("bad.db"), database("gone.db")];
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, "x").unwrap();

        let file = |path: &Path, db: Option<usize>| Unpacked {
            path: path.to_path_buf(),
            size: 1,
            db: db.map(|i| (i, &dbs[i], true)),
        };
        let outcome = std::thread::scope(|scope| {
            let mut pool = Aftercare::start(scope, "quick_check", true);
            for _ in 0..(BATCH_FILES * (AFTERCARE_QUEUE + AFTERCARE_WORKERS) * 4) {
                pool.add(file(&plain, None)).unwrap();
            }
            pool.add(file(&bad, Some(1))).unwrap();
            pool.add(file(&good, Some(0))).unwrap();
            pool.finish()
        });
        assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
        let indexes: Vec<usize> = outcome.verdicts.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [0, 1], "verdicts in manifest order");
        assert!(outcome.verdicts[0].1.is_empty(), "{:?}", outcome.verdicts);
        assert!(!outcome.verdicts[1].1.is_empty(), "{:?}", outcome.verdicts);

        // A check that cannot open its database, and a sync that cannot open its file.
        for (durable, named) in [(false, "database gone.db"), (true, "syncing")] {
            let outcome = std::thread::scope(|scope| {
                let mut pool = Aftercare::start(scope, "quick_check", durable);
                let _ = pool.add(file(&gone, Some(2)));
                for _ in 0..1000 {
                    if pool.add(file(&plain, None)).is_err() {
                        break;
                    }
                }
                pool.finish()
            });
            let failure = format!("{:#}", outcome.failure.expect("the missing file's failure"));
            assert!(failure.contains(named), "{failure}");
            assert!(failure.contains("gone/gone.db"), "{failure}");
        }
    }
}
