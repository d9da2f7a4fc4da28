//! The verification record: when each backup on each destination was last verified, how deeply
//! and with what result, kept in the execution store (`state_dir/executions.db`, table
//! `verified`) beside the runs. From it `verify --sample` chooses what to read next ([`choose`])
//! and the metrics say how much of what is stored has been proven ([`coverage`]).
//!
//! One row per destination and backup: the latest verification only. A failed one is kept as
//! failed, so a damaged backup never counts as verified, and it is chosen again first.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

/// How deeply a backup was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Read, decrypted, every file's hash and every database checked; an incremental's chain
    /// rebuilt up to it.
    Content,
    /// Only the stored bytes' size and BLAKE3 against the signed sidecar: a host without the
    /// identity cannot decrypt.
    Stored,
}

impl Depth {
    pub fn as_str(self) -> &'static str {
        match self {
            Depth::Content => "content",
            Depth::Stored => "stored",
        }
    }

    fn parse(s: &str) -> Depth {
        if s == "stored" {
            Depth::Stored
        } else {
            Depth::Content
        }
    }
}

/// The latest verification of one backup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    pub at: SystemTime,
    pub depth: Depth,
    pub ok: bool,
}

pub struct Record {
    conn: Connection,
}

impl Record {
    /// The record in the store at `state_dir`, its table created if it is not there yet.
    pub fn open(state: &crate::state::StateDir) -> Result<Record> {
        let path = state.file_path(crate::journal::FILE_NAME)?;
        Record::open_path(&path)
    }

    fn open_path(path: &Path) -> Result<Record> {
        let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("opening the execution store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS verified(
                 destination TEXT NOT NULL,
                 backup_id TEXT NOT NULL,
                 verified_ms INTEGER NOT NULL,
                 depth TEXT NOT NULL,
                 ok INTEGER NOT NULL,
                 PRIMARY KEY(destination, backup_id)
             );",
        )
        .with_context(|| format!("preparing the verification record in {}", path.display()))?;
        Ok(Record { conn })
    }

    /// The latest verification of each backup on `destination`, by id.
    pub fn seen(&self, destination: &str) -> Result<HashMap<String, Seen>> {
        let mut stmt = self.conn.prepare(
            "SELECT backup_id, verified_ms, depth, ok FROM verified WHERE destination = ?1",
        )?;
        let rows = stmt.query_map([destination], |r| {
            let ms: i64 = r.get(1)?;
            Ok((
                r.get::<_, String>(0)?,
                Seen {
                    at: SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
                    depth: Depth::parse(&r.get::<_, String>(2)?),
                    ok: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remember the verifications of one run on `destination`, and forget backups that are no
    /// longer stored there (pruned), so the record does not grow without end.
    pub fn note(
        &self,
        destination: &str,
        verified: &[(String, Depth, bool)],
        stored: &HashSet<&str>,
        at: SystemTime,
    ) -> Result<()> {
        let ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let tx = self.conn.unchecked_transaction()?;
        for (id, depth, ok) in verified {
            tx.execute(
                "INSERT OR REPLACE INTO verified(destination, backup_id, verified_ms, depth, ok) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![destination, id, ms, depth.as_str(), ok],
            )?;
        }
        let known: Vec<String> = {
            let mut stmt = tx.prepare("SELECT backup_id FROM verified WHERE destination = ?1")?;
            let ids = stmt.query_map([destination], |r| r.get(0))?;
            ids.collect::<rusqlite::Result<_>>()?
        };
        for gone in known.iter().filter(|id| !stored.contains(id.as_str())) {
            tx.execute(
                "DELETE FROM verified WHERE destination = ?1 AND backup_id = ?2",
                params![destination, gone],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// A stored backup, as the choice and the coverage see it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub created: SystemTime,
    /// Its stored archive's size.
    pub bytes: u64,
    /// The backup it builds on, when verifying it means rebuilding its chain (an incremental
    /// verified in depth); `None` for a full backup, and for a check of the stored bytes only.
    pub parent: Option<String>,
}

impl Stored {
    /// `backup` as stored; `chained` when verifying it means rebuilding its chain.
    pub fn of(backup: &crate::catalog::Backup, chained: bool) -> Stored {
        Stored {
            id: backup.id.clone(),
            created: backup.created,
            bytes: backup.bytes(),
            parent: chained
                .then(|| backup.sidecar.manifest.parent.clone())
                .flatten(),
        }
    }
}

/// One rebuild (or one read) that a sampled run does: `links` from the full backup up to
/// `target` (just `target` when it stands alone), and the stored bytes that reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub target: String,
    pub links: Vec<String>,
    pub bytes: u64,
}

/// What to verify in this run, within `budget` stored bytes.
///
/// The order: never verified (and last found damaged) first, newest first, since a new backup
/// is the one nothing has vouched for yet and a damaged one must keep being reported; then
/// those verified longest ago. An incremental cannot be proven without rebuilding its chain, so
/// its cost is every link up to it, and that rebuild vouches for each of those links too (so
/// an ancestor of a pick is not picked again, and a descendant extends the pick for the extra
/// links only). Candidates are taken in order while they fit (the one that crosses the budget
/// too, when that ends nearer to it); the first one that does not fit ends the choice, except
/// that a run always takes at least one, so nothing is starved by its size and every run makes
/// progress.
pub fn choose(stored: &[Stored], seen: &HashMap<String, Seen>, budget: u64) -> Vec<Pick> {
    let by_id: HashMap<&str, &Stored> = stored.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut order: Vec<&Stored> = stored.iter().collect();
    // (fresh?, when verified, newest created first among the never verified)
    order.sort_by_key(|s| match seen.get(&s.id).filter(|v| v.ok) {
        None => (0, SystemTime::UNIX_EPOCH, std::cmp::Reverse(s.created)),
        Some(v) => (1, v.at, std::cmp::Reverse(s.created)),
    });
    fn chain_of<'s>(s: &'s Stored, by_id: &HashMap<&str, &'s Stored>) -> Vec<&'s Stored> {
        let mut chain = vec![s];
        let mut guard = HashSet::new();
        while let Some(parent) = chain.last().and_then(|l| l.parent.as_deref()) {
            // A missing parent or a loop: the rebuild will fail and say why; cost what is known.
            match by_id.get(parent) {
                Some(p) if guard.insert(parent) => chain.push(p),
                _ => break,
            }
        }
        chain.reverse();
        chain
    }
    let mut picks: Vec<Pick> = Vec::new();
    let mut spent = 0u64;
    for s in order {
        if picks.iter().any(|p| p.links.contains(&s.id)) {
            continue;
        }
        let chain = chain_of(s, &by_id);
        // A planned rebuild of an ancestor goes on to this one, reading only the links between.
        let extends = picks
            .iter()
            .position(|p| chain.iter().any(|l| l.id == p.target));
        let (cost, links): (u64, Vec<String>) = match extends {
            Some(i) => {
                let from = chain
                    .iter()
                    .position(|l| l.id == picks[i].target)
                    .expect("found above");
                let more = &chain[from + 1..];
                (
                    more.iter().map(|l| l.bytes).sum(),
                    more.iter().map(|l| l.id.clone()).collect(),
                )
            }
            None => (
                chain.iter().map(|l| l.bytes).sum(),
                chain.iter().map(|l| l.id.clone()).collect(),
            ),
        };
        // Over the budget only when that ends nearer to it than stopping short: over many runs
        // the reads average the budget instead of falling short of it by half a backup.
        if !picks.is_empty() && spent + cost > budget && 2 * spent + cost >= 2 * budget {
            break;
        }
        spent += cost;
        match extends {
            Some(i) => {
                let p = &mut picks[i];
                p.links.extend(links);
                p.target = s.id.clone();
                p.bytes += cost;
            }
            None => picks.push(Pick {
                target: s.id.clone(),
                links,
                bytes: cost,
            }),
        }
    }
    picks
}

/// How much of a destination's stored bytes has been proven.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coverage {
    /// The share (0 to 1) of the stored bytes whose backup's latest verification passed; 1 when
    /// nothing is stored.
    pub fraction: f64,
    /// The age of the oldest stored backup not verified yet (or last found damaged); zero when
    /// every one has been.
    pub oldest_unverified: Duration,
    /// How many stored backups are not verified yet (or were last found damaged).
    pub unverified: usize,
}

/// The coverage of what is stored now. Every stored backup is inside the retention window (prune
/// removes the rest), and each verification of it came after it was made, so "verified within
/// the retention window" is "verified while stored", as counted here.
pub fn coverage(stored: &[Stored], seen: &HashMap<String, Seen>, now: SystemTime) -> Coverage {
    let total: u64 = stored.iter().map(|s| s.bytes).sum();
    let good = |s: &&Stored| seen.get(&s.id).is_some_and(|v| v.ok);
    let verified: u64 = stored.iter().filter(good).map(|s| s.bytes).sum();
    let oldest_unverified = stored
        .iter()
        .filter(|s| !good(s))
        .map(|s| now.duration_since(s.created).unwrap_or_default())
        .max()
        .unwrap_or_default();
    Coverage {
        unverified: stored.iter().filter(|s| !good(s)).count(),
        fraction: if total == 0 {
            1.0
        } else {
            verified as f64 / total as f64
        },
        oldest_unverified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn full(id: &str, at: u64, bytes: u64) -> Stored {
        Stored {
            id: id.into(),
            created: t(at),
            bytes,
            parent: None,
        }
    }

    fn inc(id: &str, at: u64, bytes: u64, parent: &str) -> Stored {
        Stored {
            parent: Some(parent.into()),
            ..full(id, at, bytes)
        }
    }

    fn seen_at(at: u64, ok: bool) -> Seen {
        Seen {
            at: t(at),
            depth: Depth::Content,
            ok,
        }
    }

    fn targets(picks: &[Pick]) -> Vec<&str> {
        picks.iter().map(|p| p.target.as_str()).collect()
    }

    #[test]
    fn new_backups_come_first_then_the_least_recently_verified_within_the_budget() {
        let stored = [
            full("a", 1, 10),
            full("b", 2, 10),
            full("c", 3, 10),
            full("d", 4, 10),
        ];
        let seen = HashMap::from([
            ("a".to_string(), seen_at(50, true)),
            ("b".to_string(), seen_at(40, true)),
            ("c".to_string(), seen_at(60, true)),
        ]);
        assert_eq!(targets(&choose(&stored, &seen, 20)), ["d", "b"]);
        assert_eq!(targets(&choose(&stored, &seen, 24)), ["d", "b"]);
        // a would end 4 over 26, nearer than 6 short.
        assert_eq!(targets(&choose(&stored, &seen, 26)), ["d", "b", "a"]);
        assert_eq!(targets(&choose(&stored, &seen, 40)), ["d", "b", "a", "c"]);
        // A damaged one is chosen again first, as if never verified.
        let mut damaged = seen.clone();
        damaged.insert("c".into(), seen_at(70, false));
        assert_eq!(targets(&choose(&stored, &damaged, 20)), ["d", "c"]);
    }

    #[test]
    fn a_run_always_takes_one_even_over_the_budget_and_stops_at_the_first_that_does_not_fit() {
        let stored = [full("big", 1, 1000), full("small", 2, 1)];
        let seen = HashMap::from([
            ("big".to_string(), seen_at(10, true)),
            ("small".to_string(), seen_at(20, true)),
        ]);
        let picks = choose(&stored, &seen, 5);
        assert_eq!(targets(&picks), ["big"]);
        assert_eq!(picks[0].bytes, 1000);
    }

    #[test]
    fn an_incremental_costs_its_chain_and_vouches_for_every_link_of_it() {
        let stored = [
            full("f", 1, 100),
            inc("i1", 2, 10, "f"),
            inc("i2", 3, 10, "i1"),
            full("g", 4, 100),
        ];
        let seen = HashMap::from([
            ("f".to_string(), seen_at(10, true)),
            ("g".to_string(), seen_at(5, true)),
        ]);
        // i2 (newest never verified) rebuilds f, i1, i2; i1 is under it, not read again.
        let picks = choose(&stored, &seen, 1000);
        assert_eq!(
            picks[0],
            Pick {
                target: "i2".into(),
                links: vec!["f".into(), "i1".into(), "i2".into()],
                bytes: 120
            }
        );
        assert_eq!(targets(&picks), ["i2", "g"]);
        // A rebuild of i1 already planned goes on to i2 for i2's bytes only.
        let seen = HashMap::from([("i2".to_string(), seen_at(1, true))]);
        let stored2 = [
            full("f", 1, 100),
            inc("i1", 5, 10, "f"),
            inc("i2", 3, 10, "i1"),
        ];
        let picks = choose(&stored2, &seen, 1000);
        assert_eq!(picks.len(), 1, "{picks:?}");
        assert_eq!(picks[0].target, "i2");
        assert_eq!(picks[0].links, ["f", "i1", "i2"]);
        assert_eq!(picks[0].bytes, 120);
    }

    #[test]
    fn repeated_runs_reach_every_backup() {
        let mut stored = vec![full("f0", 0, 10)];
        for k in 1..20 {
            stored.push(if k % 5 == 0 {
                full(&format!("f{k}"), k, 10)
            } else {
                inc(&format!("f{k}"), k, 2, &format!("f{}", k - 1))
            });
        }
        let mut seen = HashMap::new();
        for run in 0..40u64 {
            for p in choose(&stored, &seen, 15) {
                for l in p.links {
                    seen.insert(l, seen_at(100 + run, true));
                }
            }
        }
        assert_eq!(seen.len(), 20);
        let c = coverage(&stored, &seen, t(500));
        assert_eq!(c.fraction, 1.0);
        assert_eq!(c.oldest_unverified, Duration::ZERO);
        assert_eq!(c.unverified, 0);
    }

    #[test]
    fn coverage_counts_bytes_of_backups_whose_latest_verification_passed() {
        let stored = [full("a", 0, 30), full("b", 10, 60), full("c", 20, 10)];
        let seen = HashMap::from([
            ("a".to_string(), seen_at(50, true)),
            ("b".to_string(), seen_at(50, false)),
        ]);
        let c = coverage(&stored, &seen, t(100));
        assert!((c.fraction - 0.3).abs() < 1e-9, "{c:?}");
        // b (damaged, made at 10) is older than c (never verified, made at 20).
        assert_eq!(c.oldest_unverified, Duration::from_secs(90));
        assert_eq!(c.unverified, 2);
        assert_eq!(coverage(&[], &seen, t(0)).fraction, 1.0);
    }

    #[test]
    fn the_record_keeps_the_latest_verification_and_forgets_pruned_backups() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::StateDir::open(&dir.path().join("state")).unwrap();
        let r = Record::open(&state).unwrap();
        let stored = HashSet::from(["a", "b"]);
        r.note(
            "s3",
            &[
                ("a".into(), Depth::Content, true),
                ("b".into(), Depth::Stored, true),
            ],
            &stored,
            t(1),
        )
        .unwrap();
        r.note("s3", &[("a".into(), Depth::Content, false)], &stored, t(2))
            .unwrap();
        let seen = r.seen("s3").unwrap();
        assert_eq!(seen["a"], seen_at(2, false));
        assert_eq!(seen["b"].depth, Depth::Stored);
        assert!(r.seen("other").unwrap().is_empty());
        r.note("s3", &[], &HashSet::from(["b"]), t(3)).unwrap();
        assert_eq!(r.seen("s3").unwrap().len(), 1);
    }
}
