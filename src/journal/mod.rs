//! The execution store: every run (backup, restore, verify, prune, check) recorded in SQLite at
//! `state_dir/executions.db`, with the requests it made to each destination; the Prometheus
//! metrics file derived from it is `metrics`.
//!
//! A run is inserted as `running` with its pid and the pid's start time; a run that died without
//! finishing (kill -9, power loss) is found by the next run, whose pid check shows the process
//! gone, and marked `interrupted`, never left `running` forever. Writes are transactions; the
//! store is trimmed to the configured number of runs and days on every run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::storage::requests::Requests;

mod metrics;
pub use metrics::{DestinationFacts, HostFacts, Metrics};

pub const FILE_NAME: &str = "executions.db";

pub struct Journal {
    conn: Connection,
}

/// One recorded run, as `history` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub command: String,
    pub attempt: i64,
    pub started: String,
    pub ended: Option<String>,
    pub seconds: Option<f64>,
    pub status: String,
    pub exit_code: Option<i64>,
    pub bytes: Option<i64>,
    pub backup_id: Option<String>,
    pub destinations: Option<serde_json::Value>,
    pub error: Option<String>,
    /// A `prune --dry-run`: nothing was deleted; what would have been is under each
    /// destination's `would_delete`.
    pub dry_run: bool,
    /// The requests this run made, by destination (S3 only: see `storage::requests`).
    pub requests: Option<BTreeMap<String, Requests>>,
}

/// What a finished run reports into the store.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub status: String,
    pub exit_code: i32,
    pub bytes: Option<u64>,
    pub backup_id: Option<String>,
    pub destinations: Option<serde_json::Value>,
    pub error: Option<String>,
    pub dry_run: bool,
    /// Filled by the runner, the same for every command.
    pub requests: BTreeMap<String, Requests>,
}

/// Measured restoring: `bytes` restored in `seconds` over `runs` runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Speed {
    pub runs: u64,
    pub bytes: u64,
    pub seconds: f64,
}

impl Speed {
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.seconds
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub runs: u32,
    pub days: u32,
}

impl Journal {
    pub fn open(state: &crate::state::StateDir) -> Result<Journal> {
        let path = state.file_path(FILE_NAME)?;
        let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = Connection::open_with_flags(&path, flags)
            .with_context(|| format!("opening the execution store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS runs(
                 id INTEGER PRIMARY KEY,
                 command TEXT NOT NULL,
                 attempt INTEGER NOT NULL DEFAULT 1,
                 started_ms INTEGER NOT NULL,
                 ended_ms INTEGER,
                 status TEXT NOT NULL,
                 exit_code INTEGER,
                 bytes INTEGER,
                 backup_id TEXT,
                 destinations TEXT,
                 error TEXT,
                 pid INTEGER NOT NULL,
                 pid_start TEXT
             );
             CREATE INDEX IF NOT EXISTS runs_command ON runs(command, id);
             CREATE TABLE IF NOT EXISTS request_totals(
                 destination TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 n INTEGER NOT NULL,
                 PRIMARY KEY(destination, kind)
             );",
        )
        .with_context(|| format!("preparing the execution store {}", path.display()))?;
        // Stores made before dry runs were told apart get the column (0: a real run).
        let has_dry_run: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'dry_run'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if !has_dry_run {
            conn.execute_batch("ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0")
                .with_context(|| format!("updating the execution store {}", path.display()))?;
        }
        // Stores made before requests were counted get the column (NULL: not counted).
        let has_requests: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'requests'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if !has_requests {
            conn.execute_batch("ALTER TABLE runs ADD COLUMN requests TEXT")
                .with_context(|| format!("updating the execution store {}", path.display()))?;
        }
        let journal = Journal { conn };
        journal.mark_interrupted()?;
        Ok(journal)
    }

    /// The store in `state_dir`, opened only to read (`restore --dry-run`): nothing is
    /// created, upgraded or marked; `None` when there is no store yet.
    pub fn open_to_read(state_dir: &Path) -> Result<Option<Journal>> {
        let path = state_dir.join(FILE_NAME);
        // A planted link is refused by NOFOLLOW below.
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .with_context(|| format!("opening the execution store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(Some(Journal { conn }))
    }

    /// How fast this host has restored: bytes restored per second over the last `limit`
    /// successful runs of `commands` that recorded their bytes (restore, and verify, which
    /// unpacks and checks as a restore does).
    pub fn speed(&self, commands: &[&str], limit: u32) -> Result<Option<Speed>> {
        let marks = vec!["?"; commands.len()].join(", ");
        let sql = format!(
            "SELECT count(*), sum(bytes), sum(ended_ms - started_ms) FROM (
                 SELECT bytes, started_ms, ended_ms FROM runs
                 WHERE command IN ({marks}) AND status = 'success' AND bytes > 0
                   AND ended_ms > started_ms
                 ORDER BY id DESC LIMIT {limit})"
        );
        let (runs, bytes, ms): (i64, Option<i64>, Option<i64>) =
            self.conn
                .query_row(&sql, rusqlite::params_from_iter(commands.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
        Ok(match (runs, bytes, ms) {
            (runs, Some(bytes), Some(ms)) if runs > 0 && bytes > 0 && ms > 0 => Some(Speed {
                runs: runs as u64,
                bytes: bytes as u64,
                seconds: ms as f64 / 1000.0,
            }),
            _ => None,
        })
    }

    /// Runs still `running` whose process is gone (or is another process with the same pid).
    fn mark_interrupted(&self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, pid, pid_start FROM runs WHERE status = 'running'")?;
        let stale: Vec<i64> = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?
            .filter_map(|row| row.ok())
            .filter(|(_, pid, start)| process_start(*pid as u32) != *start || start.is_none())
            .map(|(id, _, _)| id)
            .collect();
        let tx = self.conn.unchecked_transaction()?;
        for id in stale {
            tx.execute(
                "UPDATE runs SET status = 'interrupted', error = coalesce(error, 'the run ended without finishing (killed, or the machine stopped)') WHERE id = ?1",
                [id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn start(&self, command: &str, attempt: u32) -> Result<i64> {
        let pid = std::process::id();
        self.conn.execute(
            "INSERT INTO runs(command, attempt, started_ms, status, pid, pid_start) VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
            params![command, attempt, now_ms(), pid, process_start(pid)],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish(&self, id: i64, outcome: &Outcome, keep: Keep) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "UPDATE runs SET ended_ms = ?2, status = ?3, exit_code = ?4, bytes = ?5, backup_id = ?6, destinations = ?7, error = ?8, dry_run = ?9, requests = ?10 WHERE id = ?1",
            params![
                id,
                now_ms(),
                outcome.status,
                outcome.exit_code,
                outcome.bytes.map(|b| b as i64),
                outcome.backup_id,
                outcome.destinations.as_ref().map(|d| d.to_string()),
                outcome.error,
                outcome.dry_run,
                (!outcome.requests.is_empty())
                    .then(|| serde_json::to_string(&outcome.requests))
                    .transpose()?,
            ],
        )?;
        add_totals(&tx, &outcome.requests)?;
        let cutoff = now_ms() - i64::from(keep.days) * 86_400_000;
        tx.execute(
            "DELETE FROM runs WHERE status != 'running' AND (started_ms < ?1 OR id <= (SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?2))",
            params![cutoff, keep.runs],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The newest runs first.
    pub fn history(&self, limit: u32) -> Result<Vec<Run>> {
        self.runs("ORDER BY id DESC LIMIT ?1", i64::from(limit))
    }

    fn runs(&self, tail: &str, param: i64) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT id, command, attempt, started_ms, ended_ms, status, exit_code, bytes, backup_id, destinations, error, dry_run, requests
             FROM runs {tail}"
        ))?;
        let rows = stmt.query_map([param], |r| {
            let started: i64 = r.get(3)?;
            let ended: Option<i64> = r.get(4)?;
            Ok(Run {
                id: r.get(0)?,
                command: r.get(1)?,
                attempt: r.get(2)?,
                started: rfc3339(started),
                ended: ended.map(rfc3339),
                seconds: ended.map(|e| (e - started) as f64 / 1000.0),
                status: r.get(5)?,
                exit_code: r.get(6)?,
                bytes: r.get(7)?,
                backup_id: r.get(8)?,
                destinations: r
                    .get::<_, Option<String>>(9)?
                    .and_then(|d| serde_json::from_str(&d).ok()),
                error: r.get(10)?,
                dry_run: r.get(11)?,
                requests: r
                    .get::<_, Option<String>>(12)?
                    .and_then(|d| serde_json::from_str(&d).ok()),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The last finished run of `command`, and the last successful one: real runs only (a dry
    /// run changed nothing, so it is not the last prune).
    pub fn last(&self, command: &str) -> Result<(Option<Run>, Option<Run>)> {
        let pick = |cond: &str| -> Result<Option<i64>> {
            Ok(self
                .conn
                .query_row(
                    &format!("SELECT id FROM runs WHERE command = ?1 AND dry_run = 0 AND {cond} ORDER BY id DESC LIMIT 1"),
                    [command],
                    |r| r.get(0),
                )
                .optional()?)
        };
        let by_id = |id: Option<i64>| -> Result<Option<Run>> {
            let Some(id) = id else { return Ok(None) };
            Ok(self.runs("WHERE id = ?1", id)?.into_iter().next())
        };
        Ok((
            by_id(pick("status NOT IN ('running')")?)?,
            by_id(pick("status IN ('success', 'skipped')")?)?,
        ))
    }
}

impl Journal {
    /// Requests made outside any recorded run's row (the metrics file's own listings): they
    /// count toward the totals all the same.
    pub fn add_requests(&self, requests: &BTreeMap<String, Requests>) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        add_totals(&tx, requests)?;
        tx.commit()?;
        Ok(())
    }

    /// Every request recorded since the store was made, by destination: the metrics'
    /// counters, which never go down (runs are trimmed, these totals are not).
    pub fn request_totals(&self) -> Result<BTreeMap<String, Requests>> {
        let mut stmt = self
            .conn
            .prepare("SELECT destination, kind, n FROM request_totals")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut totals: BTreeMap<String, Requests> = BTreeMap::new();
        for row in rows {
            let (dest, kind, n) = row?;
            let t = totals.entry(dest).or_default();
            let n = n.max(0) as u64;
            match kind.as_str() {
                "list" => t.list = n,
                "head" => t.head = n,
                "get" => t.get = n,
                "put" => t.put = n,
                "part" => t.part = n,
                "delete" => t.delete = n,
                "other" => t.other = n,
                "bytes_in" => t.bytes_in = n,
                "bytes_out" => t.bytes_out = n,
                _ => {}
            }
        }
        Ok(totals)
    }
}

fn add_totals(tx: &rusqlite::Transaction, requests: &BTreeMap<String, Requests>) -> Result<()> {
    for (dest, r) in requests {
        let bytes = [("bytes_in", r.bytes_in), ("bytes_out", r.bytes_out)];
        for (kind, n) in r.by_kind().into_iter().chain(bytes) {
            tx.execute(
                "INSERT INTO request_totals(destination, kind, n) VALUES (?1, ?2, ?3)
                 ON CONFLICT(destination, kind) DO UPDATE SET n = n + excluded.n",
                params![dest, kind, n as i64],
            )?;
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rfc3339(ms: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The start time of a process (field 22 of /proc/PID/stat), which tells a live run apart from
/// an unrelated process that reuses its pid.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it follow the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_recorded_trimmed_and_stale_ones_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::StateDir::open(&dir.path().join("state")).unwrap();
        let j = Journal::open(&state).unwrap();
        let keep = Keep { runs: 3, days: 365 };
        for i in 0..5 {
            let id = j.start("backup", 1).unwrap();
            let outcome = Outcome {
                status: "success".into(),
                exit_code: 0,
                bytes: Some(i),
                ..Outcome::default()
            };
            j.finish(id, &outcome, keep).unwrap();
        }
        let runs = j.history(100).unwrap();
        assert_eq!(runs.len(), 3, "trimmed to the last 3");
        assert_eq!(runs[0].bytes, Some(4));
        // A run left `running` by a process that no longer exists.
        j.conn
            .execute("INSERT INTO runs(command, started_ms, status, pid, pid_start) VALUES ('backup', 0, 'running', 999999999, 'x')", [])
            .unwrap();
        let j = Journal::open(&state).unwrap();
        let runs = j.history(100).unwrap();
        assert_eq!(runs[0].status, "interrupted");
        // This process's own running row is left alone.
        let id = j.start("verify", 1).unwrap();
        let j2 = Journal::open(&state).unwrap();
        assert_eq!(j2.history(1).unwrap()[0].status, "running");
        assert_eq!(j2.history(1).unwrap()[0].id, id);
    }

    #[test]
    fn a_runs_requests_are_kept_with_it_and_added_to_totals_that_outlive_trimming() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::StateDir::open(&dir.path().join("state")).unwrap();
        let j = Journal::open(&state).unwrap();
        let keep = Keep { runs: 1, days: 365 };
        let made = |get, bytes_in| {
            let r = Requests {
                list: 1,
                get,
                bytes_in,
                ..Requests::default()
            };
            BTreeMap::from([("s3".to_string(), r)])
        };
        for get in [3, 4] {
            let id = j.start("list", 1).unwrap();
            let outcome = Outcome {
                status: "success".into(),
                requests: made(get, 100),
                ..Outcome::default()
            };
            j.finish(id, &outcome, keep).unwrap();
        }
        let runs = j.history(10).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].requests, Some(made(4, 100)));
        j.add_requests(&made(1, 5)).unwrap();
        let totals = j.request_totals().unwrap();
        assert_eq!(
            (totals["s3"].list, totals["s3"].get, totals["s3"].bytes_in),
            (3, 8, 205)
        );
        // A run that made no request (a folder destination) records none.
        let id = j.start("check", 1).unwrap();
        j.finish(id, &Outcome::default(), keep).unwrap();
        assert_eq!(j.history(1).unwrap()[0].requests, None);
    }
}
