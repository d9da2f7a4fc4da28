//! A slow destination must not hold the snapshots open: the archive is spooled in `state_dir`
//! and uploaded from there, so the server's writers never wait for an upload (rollback
//! journal) and a WAL can be checkpointed while the upload goes on.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::harness::*;
use crate::tmpfs::Tmpfs;

/// A database of `mb` MiB of incompressible pages behind a destination taking `rate` per
/// second: the upload takes about 8 seconds, the snapshot a fraction of one. Big enough that
/// the pipeline's own buffers (a few MiB) cannot hide an upload that holds the snapshot open.
fn slow_env(journal_mode: &str, mb: usize, rate: &str) -> (Env, std::path::PathBuf) {
    let mut env = Env::new();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, mb);
    Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "PRAGMA journal_mode={journal_mode}; CREATE TABLE IF NOT EXISTS w(x);"
        ))
        .unwrap();
    env.destinations = vec![format!(
        "{}bandwidth_limit = \"{rate}\"\n",
        dest("local", "file://__ROOT__/backups")
    )];
    (env, db)
}

fn spool_dirs(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("tmp"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("spool"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_slow_upload_never_makes_a_rollback_journal_writer_wait() {
    let (env, db) = slow_env("DELETE", 40, "5MiB");
    let started = Instant::now();
    let mut child = env.spawn(&["backup"]);
    let conn = Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(2)).unwrap();
    let (mut committed, mut locked, mut worst) = (0u32, Vec::new(), Duration::ZERO);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let t = Instant::now();
        match conn.execute("INSERT INTO w VALUES (randomblob(64))", []) {
            Ok(_) => committed += 1,
            Err(e) => locked.push(e.to_string()),
        }
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    assert!(status.success(), "the backup failed: {status}");
    // The test means something only if the upload really was slow.
    assert!(
        took > Duration::from_secs(4),
        "the backup took only {took:?}: the destination was not slow"
    );
    assert!(
        locked.is_empty(),
        "the writer was locked out while the backup uploaded: {locked:?}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a commit waited {worst:?} during the upload"
    );
    assert!(committed > 50, "only {committed} commits during {took:?}");
    assert!(
        spool_dirs(&env.state()).is_empty(),
        "the spool was left behind"
    );
    let out = env.path("restored");
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .ok();
}

#[test]
fn a_wal_checkpoints_while_a_slow_upload_goes_on() {
    let (env, db) = slow_env("WAL", 8, "1MiB");
    let mut child = env.spawn(&["backup"]);
    let conn = Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(2)).unwrap();
    let mut checkpointed_while_uploading = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        conn.execute("INSERT INTO w VALUES (randomblob(4000))", [])
            .unwrap();
        // busy = 0 and every frame of the log copied back: no reader holds an older snapshot.
        let (busy, log, done): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        if busy == 0 && log == done && spool_dirs(&env.state()).len() == 1 {
            checkpointed_while_uploading = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the backup failed: {status}");
    assert!(
        checkpointed_while_uploading,
        "the WAL could not be checkpointed while the backup was uploading: the snapshot stayed open"
    );
}

#[test]
fn without_room_in_state_dir_the_archive_streams_and_says_so() {
    let mut env = Env::new();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, 4);
    let state = Tmpfs::mount(&env.path("small-state"), "2m");
    env.state_dir = Some(state.path().to_path_buf());
    Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let r = env.run(&["backup"]);
    r.ok().stderr_has("not spooled");
    let out = env.path("restored");
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read(out.join("big.db")).unwrap(),
        std::fs::read(&db).unwrap()
    );
}

#[test]
fn only_what_a_slow_destination_has_not_taken_goes_through_the_spool() {
    let (mut env, _db) = slow_env("WAL", 30, "5MiB");
    // Alone, a local destination keeps up: the archive is written once, to it.
    env.destinations = vec![dest("fast", "file://__ROOT__/backups")];
    let r = env.run(&["--json", "backup"]);
    r.ok();
    let v = r.json();
    let stored = v["stored_bytes"].as_u64().unwrap();
    let spooled = v["spooled_bytes"].as_u64().unwrap();
    assert!(stored > 30 << 20, "{v:#}");
    assert!(
        spooled <= stored / 2,
        "a destination that keeps up should take most of the archive from memory: {spooled} of {stored} spooled"
    );

    // Beside one at 5 MiB/s: what the slow one fell behind on is spooled (once), and the fast
    // one still gets everything.
    std::fs::create_dir_all(env.path("slow")).unwrap();
    env.destinations.push(format!(
        "{}bandwidth_limit = \"5MiB\"\n",
        dest("slow", "file://__ROOT__/slow")
    ));
    let r = env.run(&["--json", "backup"]);
    r.ok();
    let v = r.json();
    let stored = v["stored_bytes"].as_u64().unwrap();
    let spooled = v["spooled_bytes"].as_u64().unwrap();
    assert!(
        spooled > 10 << 20 && spooled <= stored,
        "the slow destination's share goes through the spool, at most once: {spooled} of {stored}"
    );
    assert!(v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["ok"] == true && d["bytes"].as_u64() == Some(stored)));
    assert!(
        spool_dirs(&env.state()).is_empty(),
        "the spool was left behind"
    );
}
