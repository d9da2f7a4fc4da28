//! Restoring a live server: in-place restore with a safety backup, maintenance hooks, refusals
//! before any change (in use, no room, failed hook), kill -9 at every step, and drills.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Commit `n` more ledger transactions, then checkpoint so the main file holds them all.
fn advance(db: &Path, n: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let k: i64 = conn
        .query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 1..=n {
        ledger_step(&tx, k + i);
    }
    tx.commit().unwrap();
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

fn ledger_n(db: &Path) -> i64 {
    check_ledger(db)
}

fn hash(p: &Path) -> String {
    blake3::hash(&fs::read(p).unwrap()).to_hex().to_string()
}

/// auth.db (WAL) and accounting.db (rollback journal) and an etc folder; one backup of state
/// S1 (100 / 200 rows, etc v1), then the live state moved on to S2 (150 / 250, etc v2).
fn server() -> (Env, String) {
    let mut env = Env::new();
    let auth = env.add_sqlite("auth.db");
    create_ledger(&auth, "WAL", 100);
    let acct = env.add_sqlite("accounting.db");
    create_ledger(&acct, "DELETE", 200);
    let etc = env.add_source("etc", "dir", "");
    fs::create_dir_all(etc.join("tls")).unwrap();
    fs::write(etc.join("server.conf"), "v1\n").unwrap();
    fs::write(etc.join("tls/ca.pem"), "ca v1\n").unwrap();
    env.with_age_key();
    let id = env.backup();
    advance(&auth, 50);
    advance(&acct, 50);
    fs::write(etc.join("server.conf"), "v2\n").unwrap();
    fs::write(etc.join("new.conf"), "only in v2\n").unwrap();
    (env, id)
}

fn state(env: &Env) -> (i64, i64, String) {
    (
        ledger_n(&env.path("data/auth.db")),
        ledger_n(&env.path("data/accounting.db")),
        fs::read_to_string(env.path("data/etc/server.conf")).unwrap(),
    )
}

#[test]
fn in_place_restore_puts_the_backup_back_and_its_safety_backup_undoes_it() {
    let (env, id) = server();
    assert_eq!(state(&env), (150, 250, "v2\n".into()));
    let r = env.run(&["--json", "restore", &id, "--in-place"]);
    r.ok();
    let doc = r.json();
    assert_eq!(state(&env), (100, 200, "v1\n".into()));
    assert!(
        !env.path("data/etc/new.conf").exists(),
        "a folder is replaced whole"
    );
    assert_eq!(
        fs::read_to_string(env.path("data/etc/tls/ca.pem")).unwrap(),
        "ca v1\n"
    );
    for after in doc["after_checks"].as_array().unwrap() {
        assert_eq!(after["ok"], true, "{after}");
    }
    assert_eq!(doc["after_checks"].as_array().unwrap().len(), 2);
    let safety = doc["safety_backup"].as_str().unwrap().to_string();
    let listed = env.list();
    let entry = listed
        .iter()
        .find(|b| b["id"] == safety.as_str())
        .expect("the safety backup is listed");
    assert!(entry["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "pre-restore"));
    env.run(&["list"]).ok().stdout_has("pre-restore");

    // Undo with one command: the safety backup brings S2 back.
    let r = env.run(&["restore", &safety, "--in-place", "--no-safety-backup"]);
    r.ok();
    assert_eq!(state(&env), (150, 250, "v2\n".into()));
    assert!(env.path("data/etc/new.conf").exists());
    // The human output names the safety backup and how to undo.
    let r = env.run(&["restore", &id, "--in-place"]);
    r.ok()
        .stdout_has("safety backup of the replaced state")
        .stdout_has("--in-place");
}

#[test]
fn only_restores_the_named_sources_and_a_mismatch_with_the_config_is_refused() {
    let (mut env, id) = server();
    env.run(&[
        "restore",
        &id,
        "--in-place",
        "--only",
        "auth.db",
        "--no-safety-backup",
    ])
    .ok();
    assert_eq!(state(&env), (100, 250, "v2\n".into()));
    env.run(&["restore", &id, "--in-place", "--only", "nope.db"])
        .code(2)
        .stderr_has("nope.db");
    // A config that no longer has a source the backup holds: refused unless --only.
    env.sources.retain(|s| !s.contains("accounting.db"));
    env.run(&["restore", &id, "--in-place"])
        .code(2)
        .stderr_has("--only");
    assert_eq!(state(&env), (100, 250, "v2\n".into()));
}

#[test]
fn a_stale_wal_from_a_different_state_is_never_replayed_onto_the_restored_database() {
    let (env, id) = server();
    // A WAL full of commits from another database with the same page size, beside auth.db.
    let other = env.path("other.db");
    create_ledger(&other, "WAL", 10);
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint=0; CREATE TABLE intruder(x); INSERT INTO intruder VALUES (1);",
    )
    .unwrap();
    for k in 11..=400 {
        let tx = conn.unchecked_transaction().unwrap();
        ledger_step(&tx, k);
        tx.commit().unwrap();
    }
    let stale = PathBuf::from(format!("{}-wal", other.display()));
    assert!(fs::metadata(&stale).unwrap().len() > 100_000);
    fs::copy(&stale, env.path("data/auth.db-wal")).unwrap();
    drop(conn);

    env.run(&["restore", &id, "--in-place", "--no-safety-backup"])
        .ok();
    let auth = env.path("data/auth.db");
    assert_eq!(ledger_n(&auth), 100, "the backup's rows, not the WAL's");
    let c = rusqlite::Connection::open(&auth).unwrap();
    let intruder: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'intruder'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(intruder, 0);
}

#[test]
fn a_failing_before_restore_hook_changes_nothing_and_after_restore_still_runs() {
    let (mut env, id) = server();
    let log = env.path("hooks.log");
    env.extra = format!(
        "[hooks]\nbefore_restore = \"echo cannot stop the server >&2; exit 1\"\n\
         after_restore = \"echo after $LITEVAULT_STATUS $LITEVAULT_BACKUP_ID >> {}\"\n",
        log.display()
    );
    let before = (
        hash(&env.path("data/auth.db")),
        hash(&env.path("data/accounting.db")),
    );
    env.run(&["restore", &id, "--in-place"])
        .code(1)
        .stderr_has("before_restore")
        .stderr_has("cannot stop the server");
    assert_eq!(
        before,
        (
            hash(&env.path("data/auth.db")),
            hash(&env.path("data/accounting.db"))
        )
    );
    assert_eq!(state(&env), (150, 250, "v2\n".into()));
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        format!("after failure {id}\n")
    );
    assert_eq!(env.list().len(), 1, "no safety backup was taken");

    // Hooks around a good restore: both run, with the facts.
    env.extra = format!(
        "[hooks]\nbefore_restore = \"echo before $LITEVAULT_SOURCES >> {log}\"\n\
         after_restore = \"echo after $LITEVAULT_STATUS $LITEVAULT_SAFETY_BACKUP_ID >> {log}\"\n",
        log = log.display()
    );
    fs::remove_file(&log).unwrap();
    let doc = env
        .run(&["--json", "restore", &id, "--in-place"])
        .ok()
        .json();
    let safety = doc["safety_backup"].as_str().unwrap();
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        format!("before auth.db,accounting.db,etc\nafter success {safety}\n")
    );
}

#[test]
fn a_database_still_open_by_a_writer_is_refused() {
    let (env, id) = server();
    let auth = env.path("data/auth.db");
    let writer = Writer::start(&auth);
    std::thread::sleep(Duration::from_millis(100));
    let r = env.run(&["restore", &id, "--in-place"]);
    let committed = writer.stop();
    r.code(1).stderr_has("in use").stderr_has("--force");
    assert_eq!(ledger_n(&auth), committed, "nothing was changed");
    assert_eq!(env.list().len(), 1, "refused before the safety backup");

    // A process that merely holds the file open: refused, and --force goes ahead.
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3<{}; exec sleep 30", auth.display()))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    env.run(&["restore", &id, "--in-place", "--only", "auth.db"])
        .code(1)
        .stderr_has("in use");
    env.run(&["restore", &id, "--in-place", "--only", "auth.db", "--force"])
        .ok();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(ledger_n(&auth), 100);
}

/// A small tmpfs, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(path: &Path, size: &str) -> SmallFs {
        fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs(path.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn too_little_space_is_refused_before_any_change() {
    let mut env = Env::new();
    // The database fits, but not a second copy of it beside it with a safety margin.
    let small = SmallFs::mount(&env.path("small"), "16m");
    let db = env.path("small/big.db");
    create_bulk(&db, 6);
    env.sources.push(format!(
        "[[source]]\nname = \"big.db\"\npath = \"{}\"\nkind = \"sqlite\"\n",
        db.display()
    ));
    let id = env.backup();
    let before = hash(&db);
    let r = env.run(&["restore", &id, "--in-place"]);
    r.code(1)
        .stderr_has("not enough free space")
        .stderr_has("nothing was changed");
    assert_eq!(hash(&db), before);
    assert_eq!(env.list().len(), 1, "refused before the safety backup");
    let staged: Vec<_> = fs::read_dir(env.path("small"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("litevault"))
        .collect();
    assert!(staged.is_empty());
    drop(small);
}

#[test]
fn kill_9_at_every_step_leaves_each_target_wholly_old_or_wholly_new() {
    // The backup is of state S1 (auth.db 150 rows, bulk.db whole); the live state S2 moves on
    // (auth.db 157 rows, a third of bulk.db deleted). Each kill must leave S1 or S2 per target.
    let (mut env, _) = server();
    let bulk = env.add_sqlite("bulk.db");
    create_bulk(&bulk, 24);
    let id_with_bulk = env.backup();
    advance(&env.path("data/auth.db"), 7);
    {
        let c = rusqlite::Connection::open(&bulk).unwrap();
        c.execute_batch("DELETE FROM blobs WHERE id % 3 = 0; PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let saved = env.path("saved");
    fs::create_dir_all(&saved).unwrap();
    for f in ["auth.db", "accounting.db", "bulk.db"] {
        fs::copy(env.path(&format!("data/{f}")), saved.join(f)).unwrap();
    }
    let old_bulk = hash(&bulk);
    let reset = || {
        for f in ["auth.db", "accounting.db", "bulk.db"] {
            for suffix in ["-wal", "-shm", "-journal"] {
                let _ = fs::remove_file(env.path(&format!("data/{f}{suffix}")));
            }
            fs::copy(saved.join(f), env.path(&format!("data/{f}"))).unwrap();
        }
    };

    let t = Instant::now();
    env.run(&["restore", &id_with_bulk, "--in-place"]).ok();
    let full = t.elapsed();
    let new_bulk = hash(&bulk);
    assert_ne!(old_bulk, new_bulk);

    let mut mid_way = 0;
    // Twelve points spread over the restore, dense towards the end, where the safety backup
    // gives way to the replacements. A restore that ends before its kill (the machine sped up
    // since `full` was measured) does not count: the points shrink and more are tried, so a
    // busy or a quiet machine alike gets its kills mid-way.
    let mut speed = 1.0;
    for i in 1..=24u32 {
        if i > 12 && mid_way >= 8 {
            break;
        }
        reset();
        let child = env.spawn(&["restore", &id_with_bulk, "--in-place"]);
        let point = 0.3 + 0.7 * f64::from((i - 1) % 12 + 1) / 13.0;
        eprintln!(
            "kill {i}: {:?} (full {full:?}, {mid_way} mid-way so far)",
            full.mul_f64(point * speed)
        );
        if kill_after(child, full.mul_f64(point * speed)) {
            mid_way += 1;
        } else {
            speed *= 0.8;
        }
        // Every target is wholly old or wholly new, and opens clean.
        let auth = ledger_n(&env.path("data/auth.db"));
        assert!(auth == 157 || auth == 150, "auth.db torn: {auth}");
        assert_eq!(ledger_n(&env.path("data/accounting.db")), 250);
        let b = hash(&bulk);
        assert!(
            b == old_bulk || b == new_bulk,
            "bulk.db is neither old nor new"
        );
        for b in env.list() {
            assert!(b["damage"].is_null());
        }
    }
    assert!(mid_way >= 8, "only {mid_way} kills landed mid-restore");
    // The next restore succeeds and leaves no staged leftovers.
    env.run(&["restore", &id_with_bulk, "--in-place"]).ok();
    assert_eq!(ledger_n(&env.path("data/auth.db")), 150);
    assert_eq!(hash(&bulk), new_bulk);
    let leftovers: Vec<_> = fs::read_dir(env.path("data"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("litevault-new"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        env.list()
            .iter()
            .filter(|b| b["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == "pre-restore")))
            .count()
            >= 1
    );
}

#[test]
fn a_restore_drill_passes_on_a_good_backup_and_names_the_file_on_a_damaged_one() {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 300);
    env.extra = "[compression]\nalgorithm = \"none\"\n".into();
    let id = env.backup();
    let r = env.run(&["--json", "verify", &id, "--restore-test"]);
    r.ok();
    let doc = r.json();
    let drill = &doc["results"][0]["drill"][0];
    assert_eq!(drill["database"], "auth.db");
    assert_eq!(drill["ok"], true);
    assert_eq!(drill["foreign_key_violations"], 0);
    assert_eq!(drill["tables"], 3);
    env.run(&["verify", &id, "--restore-test"])
        .ok()
        .stdout_has("row counts of 3 tables match the manifest");
    let scratch = env.path("state/tmp");
    assert!(
        !scratch.exists() || fs::read_dir(&scratch).unwrap().count() == 0,
        "the drill left files behind"
    );

    // One byte of auth.db's data changed in the stored (plain tar) archive.
    let archive = env.store().join(format!("{id}.tar"));
    let mut bytes = fs::read(&archive).unwrap();
    bytes[512 + 4096 * 3 + 100] ^= 0x01;
    fs::write(&archive, bytes).unwrap();
    let r = env.run(&["--json", "verify", &id, "--restore-test"]);
    r.code(4);
    let doc = r.json();
    assert_eq!(doc["results"][0]["ok"], false);
    assert!(
        doc["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("auth.db"),
        "{doc}"
    );
    assert!(!scratch.exists() || fs::read_dir(&scratch).unwrap().count() == 0);
}

#[test]
fn a_restore_drill_finds_foreign_key_violations() {
    let mut env = Env::new();
    let db = env.add_sqlite("devices.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA foreign_keys = OFF;
             CREATE TABLE vendors(id INTEGER PRIMARY KEY);
             CREATE TABLE devices(id INTEGER PRIMARY KEY, vendor INTEGER REFERENCES vendors(id));
             INSERT INTO vendors VALUES (1);
             INSERT INTO devices VALUES (1, 1), (2, 99);",
        )
        .unwrap();
    }
    let id = env.backup();
    env.run(&["verify", &id]).ok();
    let r = env.run(&["verify", &id, "--restore-test"]);
    r.code(4).stderr_has("devices.db").stderr_has("foreign key");
}
