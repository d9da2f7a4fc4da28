//! Sources as servers lay them out: SQLite databases inside a `dir` source are snapshotted as
//! databases (never their `-wal` or `-shm` copied raw), a `sqlite` source finds its databases by
//! pattern on every run, and thousands of them take a bounded number of threads and descriptors.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

/// Paths of a backup's databases and files, from `show --json`.
fn contents(env: &Env, id: &str) -> (Vec<String>, Vec<String>, serde_json::Value) {
    let shown = env.run(&["--json", "show", id]).ok().json();
    let names = |key: &str| -> Vec<String> {
        shown[key]
            .as_array()
            .unwrap_or_else(|| panic!("show --json has no {key}: {shown}"))
            .iter()
            .map(|d| d["path"].as_str().unwrap().to_string())
            .collect()
    };
    (names("databases"), names("files"), shown)
}

#[test]
fn databases_in_a_folder_written_during_the_backup_are_snapshotted_not_copied() {
    let mut env = Env::new();
    let app = env.add_source("app", "dir", "");
    fs::create_dir_all(app.join("tls")).unwrap();
    create_ledger(&app.join("main.db"), "WAL", 3000);
    create_ledger(&app.join("sessions.db"), "WAL", 500);
    create_ledger(&app.join("legacy.db"), "DELETE", 500);
    fs::write(app.join("app.conf"), "listen = 8080\n").unwrap();
    fs::write(app.join("tls/cert.pem"), "cert\n").unwrap();
    let writers = [
        Writer::start(&app.join("main.db")),
        Writer::start(&app.join("sessions.db")),
        Writer::start(&app.join("legacy.db")),
    ];
    // Every writer has its -wal (or -journal) beside its database while the backups run.
    std::thread::sleep(Duration::from_millis(200));
    assert!(app.join("main.db-wal").exists() && app.join("sessions.db-shm").exists());

    // A byte copy failed here ("changed while it was being read") whenever a writer committed.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = env.run(&["--json", "backup"]);
        assert_eq!(
            r.code, 0,
            "a backup under live writers failed: {}",
            r.stderr
        );
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let finals: Vec<i64> = writers.into_iter().map(|w| w.stop()).collect();

    let id = ids.last().unwrap();
    let (databases, files, shown) = contents(&env, id);
    assert_eq!(
        databases,
        ["app/legacy.db", "app/main.db", "app/sessions.db"],
        "{shown}"
    );
    for d in shown["databases"].as_array().unwrap() {
        assert_eq!(d["source"], "app");
        assert_eq!(d["check"], "quick", "{d}");
    }
    assert!(
        files
            .iter()
            .all(|f| !f.ends_with("-wal") && !f.ends_with("-shm") && !f.ends_with("-journal")),
        "a journal file was stored raw: {files:?}"
    );

    // The stock tools see the same: a tar with the databases, and no journal beside them.
    let archive = env.store().join(format!("{id}.tar.zst"));
    let listed = sh(
        &format!("zstd -dc {} | tar -t", archive.display()),
        env.root(),
    );
    listed.ok();
    assert!(listed.stdout.contains("app/main.db\n"), "{}", listed.stdout);
    assert!(!listed.stdout.contains("-wal") && !listed.stdout.contains("-shm"));

    // Each restores as the source was at one instant, with the plain files beside it.
    let out = env.path("restored");
    env.run(&["restore", id, "--to", out.to_str().unwrap()])
        .ok();
    for (name, last) in ["main.db", "sessions.db", "legacy.db"].iter().zip(&finals) {
        let n = check_ledger(&out.join("app").join(name));
        assert!(n >= 500 && n <= *last, "{name}: {n} of {last}");
    }
    assert_eq!(
        fs::read_to_string(out.join("app/app.conf")).unwrap(),
        "listen = 8080\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("app/tls/cert.pem")).unwrap(),
        "cert\n"
    );
    assert!(!out.join("app/main.db-wal").exists());
    // One database of the folder, by its path.
    let one = env.path("one");
    env.run(&[
        "restore",
        id,
        "--to",
        one.to_str().unwrap(),
        "--only",
        "app/sessions.db",
    ])
    .ok();
    check_ledger(&one.join("app/sessions.db"));
    assert!(!one.join("app/main.db").exists() && !one.join("app/app.conf").exists());
}

#[test]
fn a_file_that_cannot_be_snapshotted_is_an_error_unless_stored_as_bytes_on_purpose() {
    let mut env = Env::new();
    let app = env.add_source("app", "dir", "");
    fs::create_dir_all(&app).unwrap();
    fs::write(app.join("app.conf"), "x\n").unwrap();
    // What SQLCipher leaves: no SQLite header, and a journal beside it.
    let secret: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    fs::write(app.join("secret.db"), &secret).unwrap();
    fs::write(app.join("secret.db-journal"), b"journal").unwrap();

    let r = env.run(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("secret.db"), "{}", r.stderr);
    assert!(r.stderr.contains("as_bytes"), "{}", r.stderr);
    assert_eq!(env.list().len(), 0, "something was stored");

    env.sources = vec![format!(
        "[[source]]\nname = \"app\"\npath = \"{}\"\nkind = \"dir\"\nas_bytes = [\"secret.db\"]\n",
        app.display()
    )];
    let r = env.run(&["--quiet", "backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("stored as bytes") && r.stderr.contains("secret.db"),
        "the opt-in is not warned about on each run: {}",
        r.stderr
    );
    let out = env.path("out");
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(fs::read(out.join("app/secret.db")).unwrap(), secret);
}

#[test]
fn a_pattern_source_follows_tenants_across_runs_and_restores_each() {
    let mut env = Env::new();
    let tenants = env.path("data/tenants");
    fs::create_dir_all(&tenants).unwrap();
    env.sources.push(format!(
        "[[source]]\nname = \"tenants\"\npath = \"{}/*.db\"\nkind = \"sqlite\"\n",
        tenants.display()
    ));
    env.incremental = Some("max_chain = 10\n".into());
    // No tenant yet: a new server. A warning, not a failure.
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no database below"), "{}", r.stderr);

    create_ledger(&tenants.join("a.db"), "WAL", 100);
    create_ledger(&tenants.join("b.db"), "DELETE", 200);
    fs::write(tenants.join("notes.txt"), "not a database\n").unwrap();
    create_ledger(&tenants.join("c.sqlite"), "WAL", 10);
    let first = env.backup();
    let (databases, _, _) = contents(&env, &first);
    assert_eq!(databases, ["tenants/a.db", "tenants/b.db"]);
    // `check` opens each as a backup does.
    env.run(&["check"])
        .ok()
        .stdout_has("2 SQLite databases readable as a backup reads them");

    // A tenant added, one removed, one written to.
    create_ledger(&tenants.join("d.db"), "WAL", 300);
    fs::remove_file(tenants.join("b.db")).unwrap();
    let conn = rusqlite::Connection::open(tenants.join("a.db")).unwrap();
    for k in 101..=150 {
        ledger_step(&conn, k);
    }
    drop(conn);
    let r = env.run(&["--json", "backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("tenants/b.db") && r.stderr.contains("gone"),
        "the removed tenant is not named: {}",
        r.stderr
    );
    let second = r.json()["id"].as_str().unwrap().to_string();
    let (databases, _, shown) = contents(&env, &second);
    assert_eq!(databases, ["tenants/a.db", "tenants/d.db"]);
    assert_eq!(shown["kind"], "incremental", "{shown}");
    let forms: Vec<(String, String)> = shown["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["stored"]["as"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        forms,
        [
            ("tenants/a.db".to_string(), "wal".to_string()),
            ("tenants/d.db".to_string(), "whole".to_string())
        ],
        "each database keeps its own pages across runs"
    );

    // A rename is a new database, and the old name is reported gone.
    fs::rename(tenants.join("a.db"), tenants.join("e.db")).unwrap();
    let _ = fs::remove_file(tenants.join("a.db-shm"));
    let _ = fs::remove_file(tenants.join("a.db-wal"));
    let r = env.run(&["--json", "backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("tenants/a.db"), "{}", r.stderr);
    let third = r.json()["id"].as_str().unwrap().to_string();
    let (databases, _, _) = contents(&env, &third);
    assert_eq!(databases, ["tenants/d.db", "tenants/e.db"]);
    let listed = env.list();
    let newest = listed.iter().find(|b| b["id"] == third.as_str()).unwrap();
    assert_eq!(
        newest["databases"],
        serde_json::json!(["tenants/d.db", "tenants/e.db"])
    );

    // Each id restores what it held; the removed tenant lives on in the older backups.
    let out = env.path("r1");
    env.run(&[
        "restore",
        &first,
        "--to",
        out.to_str().unwrap(),
        "--only",
        "tenants/b.db",
    ])
    .ok();
    assert_eq!(check_ledger(&out.join("tenants/b.db")), 200);
    assert!(!out.join("tenants/a.db").exists());
    let out = env.path("r2");
    env.run(&[
        "restore",
        &second,
        "--to",
        out.to_str().unwrap(),
        "--only",
        "tenants/*.db",
    ])
    .ok();
    assert_eq!(check_ledger(&out.join("tenants/a.db")), 150);
    assert_eq!(check_ledger(&out.join("tenants/d.db")), 300);
    let out = env.path("r3");
    env.run(&["restore", &third, "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&out.join("tenants/e.db")), 150);
    assert_eq!(check_ledger(&out.join("tenants/d.db")), 300);
    assert!(!out.join("tenants/notes.txt").exists() && !out.join("tenants/c.sqlite").exists());
    env.run(&["verify", "--all"]).ok();

    // A file the pattern names that is no database is an error naming it, and how to leave it out.
    fs::write(tenants.join("broken.db"), "not sqlite at all\n").unwrap();
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("broken.db") && r.stderr.contains("exclude"),
        "{}",
        r.stderr
    );
}

/// The most threads and open descriptors a run had, sampled from /proc while it ran.
fn run_sampling(env: &Env, args: &[&str]) -> (i32, String, usize, usize) {
    let mut child = env
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (mut threads, mut fds) = (0usize, 0usize);
    loop {
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(n) = status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
            {
                threads = threads.max(n);
            }
        }
        if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) {
            fds = fds.max(dir.count());
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code().unwrap_or(-1), stderr, threads, fds);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn small_db(path: &Path, tenant: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('tenant {tenant}');"
    ))
    .unwrap();
}

#[test]
fn two_thousand_databases_take_bounded_threads_and_descriptors() {
    const N: usize = 2000;
    let mut env = Env::new();
    let root = env.path("data/many");
    for shard in 0..10 {
        fs::create_dir_all(root.join(format!("s{shard}"))).unwrap();
    }
    let template = env.path("template.db");
    small_db(&template, 0);
    for i in 0..N {
        let p = root.join(format!("s{}/t{i:04}.db", i % 10));
        fs::copy(&template, &p).unwrap();
    }
    env.sources.push(format!(
        "[[source]]\nname = \"many\"\npath = \"{}\"\nkind = \"sqlite\"\npattern = \"**/*.db\"\n",
        root.display()
    ));
    env.incremental = Some("max_chain = 10\n".into());
    env.extra = "workers = 2\n".into();

    let (code, stderr, threads, fds) = run_sampling(&env, &["backup"]);
    assert_eq!(code, 0, "{stderr}");
    // Each open database holds its file, -wal and -shm: a few ahead and a few checking.
    assert!(threads <= 32, "{threads} threads for {N} databases");
    assert!(fds <= 96, "{fds} descriptors for {N} databases");
    assert!(
        threads > 1 && fds > 3,
        "never sampled: {threads} threads, {fds} fds"
    );
    let list = env.list();
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_str().unwrap().to_string();
    let (databases, _, _) = contents(&env, &id);
    assert_eq!(databases.len(), N);

    // Ten change: the incremental stores those ten and marks the rest unchanged.
    for i in (0..N).step_by(N / 10) {
        let p = root.join(format!("s{}/t{i:04}.db", i % 10));
        let conn = rusqlite::Connection::open(&p).unwrap();
        conn.execute("INSERT INTO t(v) VALUES ('changed')", [])
            .unwrap();
    }
    let (code, stderr, threads, fds) = run_sampling(&env, &["backup"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(threads <= 32 && fds <= 96, "{threads} threads, {fds} fds");
    let newest = env.list()[0]["id"].as_str().unwrap().to_string();
    let shown = env.run(&["--json", "show", &newest]).ok().json();
    let forms: Vec<&str> = shown["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["stored"]["as"].as_str().unwrap())
        .collect();
    assert_eq!(
        forms.iter().filter(|f| **f == "wal").count(),
        10,
        "{forms:?}"
    );
    assert_eq!(forms.iter().filter(|f| **f == "unchanged").count(), N - 10);
    // An unchanged database's check and row counts are its parent's (the same bytes passed
    // them), recorded as for any other.
    for d in shown["databases"].as_array().unwrap() {
        let rows = if d["stored"]["as"] == "wal" { 2 } else { 1 };
        assert_eq!(d["row_counts"]["t"], rows, "{d}");
        assert_eq!(d["check"], "quick", "{d}");
    }
    // Its restore rebuilds each of the 2,000 from the full backup and the link, a few at a time.
    let out = env.path("out");
    let (code, stderr, threads, fds) =
        run_sampling(&env, &["restore", &newest, "--to", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        threads <= 32 && fds <= 96,
        "restore: {threads} threads, {fds} fds"
    );
    let changed = rusqlite::Connection::open(out.join("many/s0/t0000.db")).unwrap();
    let rows: i64 = changed
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
}

#[test]
fn in_place_restore_puts_each_found_database_back_and_leaves_the_rest_of_the_folder() {
    let mut env = Env::new();
    let tenants = env.path("data/tenants");
    fs::create_dir_all(&tenants).unwrap();
    env.sources.push(format!(
        "[[source]]\nname = \"tenants\"\npath = \"{}\"\nkind = \"sqlite\"\npattern = \"*.db\"\n",
        tenants.display()
    ));
    create_ledger(&tenants.join("a.db"), "WAL", 100);
    create_ledger(&tenants.join("b.db"), "DELETE", 200);
    fs::write(tenants.join("notes.txt"), "kept\n").unwrap();
    let id = env.backup();

    let conn = rusqlite::Connection::open(tenants.join("a.db")).unwrap();
    for k in 101..=130 {
        ledger_step(&conn, k);
    }
    drop(conn);
    fs::remove_file(tenants.join("b.db")).unwrap();
    fs::write(tenants.join("notes.txt"), "changed since\n").unwrap();
    create_ledger(&tenants.join("new.db"), "WAL", 5);

    let r = env.run(&["--json", "restore", &id, "--in-place"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let safety = r.json()["safety_backup"].as_str().unwrap().to_string();
    assert_eq!(check_ledger(&tenants.join("a.db")), 100);
    assert_eq!(check_ledger(&tenants.join("b.db")), 200);
    // The safety backup holds the tenants as they were just before: a.db at 130 and new.db.
    let before = env.path("before");
    env.run(&["restore", &safety, "--to", before.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&before.join("tenants/a.db")), 130);
    assert_eq!(check_ledger(&before.join("tenants/new.db")), 5);
    // Not the source's: the folder's other files, and a database the backup does not hold.
    assert_eq!(
        fs::read_to_string(tenants.join("notes.txt")).unwrap(),
        "changed since\n"
    );
    assert_eq!(check_ledger(&tenants.join("new.db")), 5);

    // One database of it, by its path, while another is written to: only that one changes.
    let conn = rusqlite::Connection::open(tenants.join("b.db")).unwrap();
    ledger_step(&conn, 201);
    drop(conn);
    let conn = rusqlite::Connection::open(tenants.join("a.db")).unwrap();
    ledger_step(&conn, 101);
    drop(conn);
    let r = env.run(&[
        "restore",
        &id,
        "--in-place",
        "--no-safety-backup",
        "--only",
        "tenants/a.db",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(check_ledger(&tenants.join("a.db")), 100);
    assert_eq!(check_ledger(&tenants.join("b.db")), 201);
}

#[test]
fn in_place_restore_of_a_folder_waits_for_no_one_holding_a_database_in_it() {
    let mut env = Env::new();
    let app = env.add_source("app", "dir", "");
    fs::create_dir_all(&app).unwrap();
    create_ledger(&app.join("main.db"), "WAL", 10);
    fs::write(app.join("app.conf"), "a\n").unwrap();
    let id = env.backup();
    let conn = rusqlite::Connection::open(app.join("main.db")).unwrap();
    ledger_step(&conn, 11);

    let r = env.run(&["restore", &id, "--in-place", "--no-safety-backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("app/main.db") && r.stderr.contains("in use"),
        "{}",
        r.stderr
    );
    drop(conn);
    assert_eq!(
        check_ledger(&app.join("main.db")),
        11,
        "a refused restore changed it"
    );
    env.run(&["restore", &id, "--in-place", "--no-safety-backup"])
        .ok();
    assert_eq!(check_ledger(&app.join("main.db")), 10);
}
