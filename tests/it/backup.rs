//! Backups of live databases: consistent under a concurrent writer, checked before storing,
//! private on disk, and restorable.

use std::fs;

use crate::harness::*;

/// Back up while a writer commits as fast as it can, several times, and restore every backup:
/// each must pass integrity_check and equal the ledger after exactly n transactions.
fn consistent_under_writer(journal_mode: &str) {
    let mut env = Env::new();
    let db = env.add_sqlite("ledger.db");
    create_ledger(&db, journal_mode, 20_000);
    let writer = Writer::start(&db);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(env.backup());
    }
    let committed = writer.stop();
    assert!(
        committed > 20_000,
        "the writer made no progress during the backups"
    );

    let mut seen = Vec::new();
    for id in &ids {
        let out = env.path(&format!("restore-{id}"));
        env.run(&["restore", id, "--to", out.to_str().unwrap()])
            .ok();
        let n = check_ledger(&out.join("ledger.db"));
        assert!(
            (20_000..=committed).contains(&n),
            "restored state {n} was never committed"
        );
        seen.push(n);
    }
    // The journal mode is recorded as it was.
    let list = env.list();
    assert_eq!(list.len(), ids.len());
    let sidecar: serde_json::Value =
        serde_json::from_slice(&fs::read(env.store().join(format!("{}.json", ids[0]))).unwrap())
            .unwrap();
    assert_eq!(
        sidecar["manifest"]["databases"][0]["journal_mode"],
        journal_mode.to_lowercase()
    );
}

#[test]
fn wal_database_is_consistent_under_a_concurrent_writer() {
    consistent_under_writer("WAL");
}

#[test]
fn rollback_journal_database_is_consistent_under_a_concurrent_writer() {
    consistent_under_writer("DELETE");
}

#[test]
fn changes_still_in_the_wal_are_in_the_backup() {
    let mut env = Env::new();
    let db = env.add_sqlite("ledger.db");
    create_ledger(&db, "WAL", 10);
    // Keep a connection open with checkpointing off, so the latest commits live only in the WAL.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
    for k in 11..=60 {
        let tx = conn.unchecked_transaction().unwrap();
        ledger_step(&tx, k);
        tx.commit().unwrap();
    }
    assert!(
        fs::metadata(db.with_extension("db-wal")).unwrap().len() > 0,
        "the WAL should hold commits"
    );
    let id = env.backup();
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&out.join("ledger.db")), 60);
    drop(conn);
}

#[test]
fn a_corrupt_source_fails_the_backup_naming_it_and_stores_nothing() {
    let mut env = Env::new();
    let good = env.add_sqlite("good.db");
    create_ledger(&good, "WAL", 100);
    let bad = env.add_sqlite("broken.db");
    create_bulk(&bad, 1);
    // Damage a b-tree page in the middle of the file.
    let mut bytes = fs::read(&bad).unwrap();
    let page = 4096 * 3;
    for b in &mut bytes[page..page + 200] {
        *b = 0xff;
    }
    fs::write(&bad, bytes).unwrap();
    let _ = fs::remove_file(bad.with_extension("db-wal"));
    let r = env.run(&["backup"]);
    r.code(4).stderr_has("broken.db");
    assert!(env.list().is_empty());
    assert!(
        env.stored_files().iter().all(|f| f.starts_with("tmp/")) && env.stored_files().is_empty(),
        "something was stored: {:?}",
        env.stored_files()
    );
}

#[test]
fn files_and_folders_are_backed_up_and_links_are_skipped_with_a_warning() {
    let mut env = Env::new();
    let etc = env.add_source("etc", "dir", "");
    fs::create_dir_all(etc.join("tls/private")).unwrap();
    fs::write(etc.join("server.conf"), "listen = 1812\n").unwrap();
    fs::write(etc.join("tls/private/key.pem"), "-----BEGIN KEY-----\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", etc.join("link")).unwrap();
    let single = env.add_source("clients.conf", "file", "");
    fs::write(&single, "client a { secret = x }\n").unwrap();

    let r = env.run(&["backup"]);
    r.ok().stderr_has("link");
    let out = env.path("out");
    env.run(&["restore", "--to", out.to_str().unwrap()]).ok();
    assert_eq!(
        fs::read_to_string(out.join("etc/server.conf")).unwrap(),
        "listen = 1812\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("etc/tls/private/key.pem")).unwrap(),
        "-----BEGIN KEY-----\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("clients.conf")).unwrap(),
        "client a { secret = x }\n"
    );
    assert!(!out.join("etc/link").exists());
}

#[test]
fn everything_written_is_private() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    env.with_age_key();
    let id = env.backup();
    assert_eq!(mode_of(&env.path("state")), 0o700);
    assert_eq!(mode_of(&env.store()), 0o700);
    for f in env.stored_files() {
        assert_eq!(mode_of(&env.store().join(&f)), 0o600, "{f}");
    }
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(mode_of(&out.join("a.db")), 0o600);
}

#[test]
fn quick_check_by_default_integrity_check_on_request_and_in_verify() {
    // An index whose order no longer matches its definition: quick_check does not look at index
    // contents, integrity_check does.
    let mut env = Env::new();
    let db = env.add_sqlite("idx.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE t(x INTEGER); CREATE INDEX t_x ON t(x);
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 500) INSERT INTO t SELECT i FROM c;
             PRAGMA writable_schema=ON;
             UPDATE sqlite_schema SET sql='CREATE INDEX t_x ON t(x DESC)' WHERE name='t_x';",
        )
        .unwrap();
    }
    let id = env.backup();
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .ok();
    let deep = env.path("deep");
    env.run(&["restore", &id, "--to", deep.to_str().unwrap(), "--deep"])
        .code(4)
        .stderr_has("integrity_check");
    assert!(!deep.join("idx.db").exists());
    env.run(&["verify", &id]).code(4).stderr_has(&id);

    env.sources.clear();
    env.add_source("idx.db", "sqlite", "check = \"integrity\"");
    env.run(&["backup"]).code(4).stderr_has("idx.db");
}

#[test]
fn one_worker_takes_one_database_at_a_time_and_gets_the_same_result() {
    let mut env = Env::new();
    let a = env.add_sqlite("a.db");
    create_ledger(&a, "WAL", 500);
    let b = env.add_sqlite("b.db");
    create_ledger(&b, "DELETE", 700);
    env.extra = "workers = 1\n".into();
    let writer = Writer::start(&a);
    let id = env.backup();
    let committed = writer.stop();
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .ok();
    assert!((500..=committed).contains(&check_ledger(&out.join("a.db"))));
    assert_eq!(check_ledger(&out.join("b.db")), 700);
    let sidecar: serde_json::Value =
        serde_json::from_slice(&fs::read(env.store().join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(
        sidecar["manifest"]["databases"][1]["row_counts"]["entries"],
        700
    );
    // A corrupt second database still fails the backup with one worker.
    let c = env.add_sqlite("c.db");
    create_bulk(&c, 1);
    let mut bytes = fs::read(&c).unwrap();
    for x in &mut bytes[4096 * 3..4096 * 3 + 200] {
        *x = 0xff;
    }
    fs::write(&c, bytes).unwrap();
    let _ = fs::remove_file(c.with_extension("db-wal"));
    env.run(&["backup"]).code(4).stderr_has("c.db");
    assert_eq!(env.list().len(), 1);
}
