//! The execution store: every run (backup, restore, verify, prune, check) recorded in SQLite at
//! `state_dir/executions.db`, and the Prometheus metrics file derived from it.
//!
//! A run is inserted as `running` with its pid and the pid's start time; a run that died without
//! finishing (kill -9, power loss) is found by the next run, whose pid check shows the process
//! gone, and marked `interrupted`, never left `running` forever. Writes are transactions; the
//! store is trimmed to the configured number of runs and days on every run.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

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
             CREATE INDEX IF NOT EXISTS runs_command ON runs(command, id);",
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
            "UPDATE runs SET ended_ms = ?2, status = ?3, exit_code = ?4, bytes = ?5, backup_id = ?6, destinations = ?7, error = ?8, dry_run = ?9 WHERE id = ?1",
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
            ],
        )?;
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
            "SELECT id, command, attempt, started_ms, ended_ms, status, exit_code, bytes, backup_id, destinations, error, dry_run
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

/// The metrics file for node_exporter's textfile collector, replaced atomically.
pub struct Metrics {
    pub path: PathBuf,
}

/// Facts about one destination for the metrics file.
pub struct DestinationFacts {
    pub name: String,
    pub backups: u64,
    pub newest_age: Option<Duration>,
    /// The newest signed sequence number there, and how many numbered backups are missing
    /// (rolled back or deleted out of turn); `None` when not judged.
    pub sequence: Option<u64>,
    pub missing: Option<u64>,
    /// The share of the stored bytes verified, and the age of the oldest backup not verified
    /// yet (zero: none); `None` when not known.
    pub verified: Option<(f64, Duration)>,
}

/// One host's backups on one destination, as the fleet view (`list --all-hosts`) counts them.
pub struct HostFacts {
    pub host: String,
    pub destination: String,
    pub backups: u64,
    pub newest_age: Option<Duration>,
}

impl Metrics {
    /// The fleet view's file: per host and destination, the good backups and the newest one's
    /// age (left out when there is none, so `litevault_host_backups == 0` is the alert).
    pub fn write_hosts(&self, hosts: &[HostFacts]) -> Result<()> {
        let mut out = String::new();
        let labels = |h: &HostFacts| {
            format!(
                "host=\"{}\",destination=\"{}\"",
                escape(&h.host),
                escape(&h.destination)
            )
        };
        out.push_str(
            "# HELP litevault_host_newest_backup_age_seconds Age of each host's newest good backup, by destination.\n\
             # TYPE litevault_host_newest_backup_age_seconds gauge\n",
        );
        for h in hosts {
            if let Some(age) = h.newest_age {
                out.push_str(&format!(
                    "litevault_host_newest_backup_age_seconds{{{}}} {}\n",
                    labels(h),
                    age.as_secs()
                ));
            }
        }
        out.push_str(
            "# HELP litevault_host_backups Good backups of each host, by destination.\n\
             # TYPE litevault_host_backups gauge\n",
        );
        for h in hosts {
            out.push_str(&format!(
                "litevault_host_backups{{{}}} {}\n",
                labels(h),
                h.backups
            ));
        }
        self.replace(&out)
    }

    pub fn write(
        &self,
        journal: &Journal,
        host: &str,
        destinations: &[DestinationFacts],
    ) -> Result<()> {
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, samples: Vec<(String, f64)>| {
            if samples.is_empty() {
                return;
            }
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for (labels, v) in samples {
                out.push_str(&format!("{name}{{host=\"{host}\"{labels}}} {v}\n"));
            }
        };
        let mut last_run = Vec::new();
        let mut last_status = Vec::new();
        let mut last_duration = Vec::new();
        let mut last_success = Vec::new();
        let mut last_bytes = Vec::new();
        for command in ["backup", "prune", "verify", "restore", "check"] {
            let (last, success) = journal.last(command)?;
            let label = format!(",command=\"{command}\"");
            if let Some(run) = &last {
                last_run.push((label.clone(), secs_of(&run.started)));
                last_status.push((label.clone(), run.exit_code.unwrap_or(1) as f64));
                if let Some(s) = run.seconds {
                    last_duration.push((label.clone(), s));
                }
            }
            if let Some(run) = &success {
                last_success.push((
                    label.clone(),
                    secs_of(run.ended.as_deref().unwrap_or(&run.started)),
                ));
                if let (Some(b), "backup") = (run.bytes, command) {
                    last_bytes.push((String::new(), b as f64));
                }
            }
        }
        metric(
            "litevault_last_run_timestamp_seconds",
            "Start of the last run, by command.",
            last_run,
        );
        metric(
            "litevault_last_run_exit_code",
            "Exit code of the last run (0 is success), by command.",
            last_status,
        );
        metric(
            "litevault_last_run_duration_seconds",
            "Duration of the last run, by command.",
            last_duration,
        );
        metric(
            "litevault_last_success_timestamp_seconds",
            "End of the last successful run, by command.",
            last_success,
        );
        metric(
            "litevault_last_backup_stored_bytes",
            "Bytes stored by the last successful backup (per destination).",
            last_bytes,
        );
        let per_dest = |value: &dyn Fn(&DestinationFacts) -> Option<f64>| -> Vec<(String, f64)> {
            destinations
                .iter()
                .filter_map(|d| Some((format!(",destination=\"{}\"", d.name), value(d)?)))
                .collect()
        };
        for (name, help, samples) in [
            (
                "litevault_backups",
                "Complete backups on each destination.",
                per_dest(&|d| Some(d.backups as f64)),
            ),
            (
                "litevault_newest_backup_age_seconds",
                "Age of the newest complete backup on each destination.",
                per_dest(&|d| d.newest_age.map(|a| a.as_secs_f64().round())),
            ),
            (
                "litevault_backup_sequence",
                "The newest signed sequence number on each destination: a decrease means backups were deleted or rolled back.",
                per_dest(&|d| d.sequence.map(|n| n as f64)),
            ),
            (
                "litevault_backups_missing",
                "Numbered backups missing from each destination that nobody should have deleted (rolled back, or deleted out of turn).",
                per_dest(&|d| d.missing.map(|n| n as f64)),
            ),
            (
                "litevault_verified_fraction",
                "Share of the stored bytes on each destination whose backup's latest verification passed (verify, verify --sample).",
                per_dest(&|d| d.verified.map(|(share, _)| share)),
            ),
            (
                "litevault_oldest_unverified_seconds",
                "Age of the oldest backup on each destination not verified yet, or whose latest verification failed (0: none).",
                per_dest(&|d| d.verified.map(|(_, age)| age.as_secs() as f64)),
            ),
        ] {
            metric(name, help, samples);
        }
        self.replace(&out)
    }

    /// Replace the file with `out` at once: node_exporter never reads half of it.
    fn replace(&self, out: &str) -> Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            self.path
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        // The metrics folder is often shared with node_exporter: create the file fresh, never
        // through a link someone planted under its name.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(0o400000) // O_NOFOLLOW
                .mode(0o644)
                .open(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?
        };
        std::io::Write::write_all(&mut file, out.as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(file);
        // node_exporter runs as another user: the metrics hold no secret, so they are world-readable.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing the metrics file {}", self.path.display()))?;
        Ok(())
    }
}

/// A Prometheus label value, quoted safely.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn secs_of(rfc: &str) -> f64 {
    humantime::parse_rfc3339(rfc)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_metrics_name_each_host_and_leave_out_an_age_that_does_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics {
            path: dir.path().join("fleet.prom"),
        };
        let host = |host: &str, backups, age: Option<u64>| HostFacts {
            host: host.into(),
            destination: "s3".into(),
            backups,
            newest_age: age.map(Duration::from_secs),
        };
        metrics
            .write_hosts(&[host("web-1", 3, Some(90)), host("we\"b", 0, None)])
            .unwrap();
        let text = std::fs::read_to_string(&metrics.path).unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "litevault_host_newest_backup_age_seconds{host=\"web-1\",destination=\"s3\"} 90",
                "litevault_host_backups{host=\"web-1\",destination=\"s3\"} 3",
                "litevault_host_backups{host=\"we\\\"b\",destination=\"s3\"} 0",
            ]
        );
        assert!(
            text.contains("# TYPE litevault_host_backups gauge\n"),
            "{text}"
        );
    }

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
}
