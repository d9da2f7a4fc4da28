//! `restore --dry-run` and `restore --at`: a plan made from the listing and the sidecars alone
//! (no archive downloaded, counted at a proxy in front of an S3 server), whose byte count is
//! what the restore then downloads; a plan chooses and refuses exactly as the restore does,
//! creates nothing and runs no hook; `--at` picks the newest good backup taken at or before a
//! time, and says so.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::faultproxy::FaultProxy;
use crate::harness::*;
use crate::servers::*;

/// The archive objects fetched (GET), each once, in the order first fetched.
fn archive_gets(log: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.iter().filter(|l| l.starts_with("GET ")) {
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let name = path
            .split('?')
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap();
        if name.contains(".tar") && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    out
}

fn ids_of(plan: &serde_json::Value) -> Vec<String> {
    plan["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect()
}

fn archive_of(env: &Env, id: &str) -> std::path::PathBuf {
    fs::read_dir(env.store())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(id) && n.contains(".tar")
        })
        .unwrap_or_else(|| panic!("no archive of {id}"))
}

fn truncate(path: &Path) {
    let len = fs::metadata(path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len / 2).unwrap();
}

/// The warnings a run printed, in order.
fn warnings(r: &Run) -> Vec<String> {
    r.stderr
        .lines()
        .filter(|l| l.starts_with("warning: passed over"))
        .map(str::to_string)
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[test]
fn a_dry_run_downloads_no_archive_and_counts_the_bytes_the_restore_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let proxy = FaultProxy::http(server.port);
    let mut env = env_on_s3("remote", &proxy.endpoint());
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 200);
    env.with_age_key();
    env.incremental = Some(String::new());
    env.backup();
    let conn = rusqlite::Connection::open(&db).unwrap();
    ledger_step(&conn, 201);
    env.backup();
    ledger_step(&conn, 202);
    let last = env.backup();
    drop(conn);

    let out = env.path("restored");
    let before = proxy.request_log().len();
    let plan = env
        .run(&[
            "--json",
            "restore",
            "--dry-run",
            "--to",
            out.to_str().unwrap(),
        ])
        .ok()
        .json();
    let log = proxy.request_log()[before..].to_vec();
    assert!(
        archive_gets(&log).is_empty(),
        "the dry run fetched an archive: {log:#?}"
    );
    assert!(!log.is_empty(), "the dry run read nothing at all");
    assert_eq!(plan["id"], last.as_str());
    assert_eq!(plan["chain"].as_array().unwrap().len(), 3, "{plan:#}");
    let planned = plan["download"]["bytes"].as_u64().unwrap();
    assert_eq!(plan["download"]["destination"], "remote");

    // The restore then fetches exactly the archives of the plan's chain, and their stored
    // bytes add up to the plan's count.
    let before = proxy.request_log().len();
    env.run(&["restore", "--to", out.to_str().unwrap()]).ok();
    let fetched = archive_gets(&proxy.request_log()[before..]);
    let chain = ids_of(&plan);
    assert_eq!(fetched.len(), chain.len(), "{fetched:?} against {chain:?}");
    for (name, id) in fetched.iter().zip(&chain) {
        assert!(
            name.starts_with(id.as_str()),
            "{fetched:?} against {chain:?}"
        );
    }
    let stored = tmp.path().join("bkt/backups/test-host");
    let downloaded: u64 = fetched
        .iter()
        .map(|n| fs::metadata(stored.join(n)).unwrap().len())
        .sum();
    assert_eq!(planned, downloaded);
    assert_eq!(check_ledger(&out.join("auth.db")), 202);
}

#[test]
fn a_dry_run_of_a_chain_lists_every_link_full_first() {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 100);
    env.incremental = Some(String::new());
    let mut ids = Vec::new();
    let conn = rusqlite::Connection::open(&db).unwrap();
    for k in 0..4 {
        ids.push(env.backup());
        ledger_step(&conn, 101 + k);
    }
    drop(conn);
    let to = env.path("out");
    let plan = env
        .run(&[
            "--json",
            "restore",
            "--dry-run",
            "--to",
            to.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["mode"], "to");
    assert_eq!(ids_of(&plan), ids);
    let kinds: Vec<&str> = plan["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["full", "incremental", "incremental", "incremental"]);
    let stored: u64 = plan["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["stored_bytes"].as_u64().unwrap())
        .sum();
    let archives: u64 = ids
        .iter()
        .map(|id| fs::metadata(archive_of(&env, id)).unwrap().len())
        .sum();
    assert_eq!(stored, archives);
    assert_eq!(plan["download"]["bytes"].as_u64().unwrap(), stored);
    assert_eq!(plan["download"]["archives"], 4);
    let restored = plan["space"]["restored_bytes"].as_u64().unwrap();
    assert_eq!(restored, fs::metadata(&db).unwrap().len());
    assert_eq!(
        plan["space"]["needs"][0]["bytes"].as_u64().unwrap(),
        restored
    );
    let checks = plan["checks"].to_string();
    for check in ["BLAKE3 of the stored bytes", "BLAKE3 before", "quick_check"] {
        assert!(checks.contains(check), "no {check:?} in {checks}");
    }
    assert_eq!(plan["estimate"]["kind"], "estimate");

    // In words: every link, in order, and --deep's check.
    let r = env.run(&[
        "restore",
        "--dry-run",
        "--deep",
        "--to",
        to.to_str().unwrap(),
    ]);
    r.ok()
        .stdout_has("integrity_check")
        .stdout_has("full first");
    let links = &r.stdout[r.stdout.find("reads 4 backups").unwrap()..];
    let at: Vec<usize> = ids
        .iter()
        .map(|id| links.find(id.as_str()).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{}", r.stdout);
}

#[test]
fn a_dry_run_passes_over_and_refuses_exactly_as_the_restore() {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 50);
    let good = env.backup();
    let damaged = env.backup();
    truncate(&archive_of(&env, &damaged));

    let to = env.path("out");
    let plan = env.run(&["restore", "--dry-run", "--to", to.to_str().unwrap()]);
    plan.ok().stderr_has("passed over").stderr_has(&damaged);
    assert!(plan.stdout.contains(&good), "{}", plan.stdout);
    let real = env.run(&["restore", "--to", to.to_str().unwrap()]);
    real.ok();
    assert_eq!(warnings(&plan), warnings(&real));
    assert!(!warnings(&plan).is_empty());

    // Named by its id, the damaged one is refused by both, with the same words and exit 4.
    let other = env.path("other");
    let plan = env.run(&[
        "restore",
        &damaged,
        "--dry-run",
        "--to",
        other.to_str().unwrap(),
    ]);
    let real = env.run(&["restore", &damaged, "--to", other.to_str().unwrap()]);
    plan.code(4).stderr_has("damaged");
    real.code(4);
    assert_eq!(plan.stderr, real.stderr);
    assert!(!other.exists());
}

#[test]
fn a_dry_run_creates_nothing_takes_no_safety_backup_and_runs_no_hook() {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 50);
    let log = env.path("hooks.log");
    env.extra = format!(
        "[hooks]\nbefore_restore = \"echo before >> {log}\"\nafter_restore = \"echo after >> {log}\"\n\
         on_success = \"echo success >> {log}\"\non_failure = \"echo failure >> {log}\"\n",
        log = log.display()
    );
    let id = env.backup();
    fs::remove_file(&log).unwrap();

    let to = env.path("new/parent/out");
    env.run(&["restore", "--dry-run", "--to", to.to_str().unwrap()])
        .ok()
        .stdout_has(&id);
    assert!(!env.path("new").exists(), "the dry run made a folder");

    let doc = env
        .run(&["--json", "restore", "--dry-run", "--in-place"])
        .ok()
        .json();
    assert_eq!(doc["mode"], "in-place");
    let needs = doc["space"]["needs"].to_string();
    assert!(needs.contains("beside auth.db"), "{needs}");
    assert!(doc["checks"].to_string().contains("where it lands"));
    assert!(!log.exists(), "a hook ran: {:?}", fs::read_to_string(&log));
    assert_eq!(env.list().len(), 1, "a safety backup was taken");

    // A dry run of what the restore would refuse is refused: never overwrite.
    fs::create_dir_all(&to).unwrap();
    fs::write(to.join("auth.db"), "mine").unwrap();
    env.run(&["restore", "--dry-run", "--to", to.to_str().unwrap()])
        .code(2)
        .stderr_has("never overwrites");
    assert_eq!(fs::read_to_string(to.join("auth.db")).unwrap(), "mine");
    assert!(!log.exists(), "a hook ran");
}

#[test]
fn at_picks_the_newest_good_backup_taken_at_or_before_the_time() {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 10);
    let first = env.backup();
    let after_first = SystemTime::now();
    std::thread::sleep(Duration::from_millis(1100));
    let conn = rusqlite::Connection::open(&db).unwrap();
    ledger_step(&conn, 11);
    let second = env.backup();
    let after_second = SystemTime::now();
    std::thread::sleep(Duration::from_millis(1100));
    ledger_step(&conn, 12);
    let third = env.backup();
    drop(conn);

    // Between the first and the second: the first, said so, in the plan and in the restore.
    let between = rfc3339(after_first);
    let plan = env
        .run(&[
            "--json",
            "restore",
            "--dry-run",
            "--at",
            &between,
            "--to",
            "/nonexistent/x",
        ])
        .ok()
        .json();
    assert_eq!(plan["id"], first.as_str());
    assert_eq!(plan["at"]["chose"], first.as_str());
    let out = env.path("between");
    let r = env.run(&["restore", "--at", &between, "--to", out.to_str().unwrap()]);
    r.ok().stderr_has(&format!("chose backup {first}"));
    assert_eq!(check_ledger(&out.join("auth.db")), 10);
    let out = env.path("between-json");
    let doc = env
        .run(&[
            "--json",
            "restore",
            "--at",
            &between,
            "--to",
            out.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(doc["id"], first.as_str());
    assert_eq!(doc["at"]["chose"], first.as_str());
    assert_eq!(doc["at"]["in_future"], false);

    // A damaged one at or before the time is passed over and named; a newer one is not looked at.
    truncate(&archive_of(&env, &second));
    let at_second = rfc3339(after_second);
    let r = env.run(&[
        "restore",
        "--dry-run",
        "--at",
        &at_second,
        "--to",
        "/nonexistent/x",
    ]);
    r.ok().stderr_has("passed over").stderr_has(&second);
    assert!(r.stdout.contains(&first), "{}", r.stdout);
    assert!(!r.stderr.contains(&third), "{}", r.stderr);

    // Before the first backup: no backup found (exit 1), naming the oldest.
    env.run(&[
        "restore",
        "--at",
        "2001-01-01T00:00:00Z",
        "--to",
        "/nonexistent/x",
    ])
    .code(1)
    .stderr_has("no backup taken at or before 2001-01-01T00:00:00Z")
    .stderr_has(&format!("the oldest, {first}"));
    env.run(&[
        "restore",
        "--dry-run",
        "--at",
        "2001-01-01T00:00:00Z",
        "--in-place",
    ])
    .code(1)
    .stderr_has(&first);

    // In the future: the newest, with a note.
    let plan = env.run(&[
        "--json",
        "restore",
        "--dry-run",
        "--at",
        "2100-01-01T00:00:00Z",
        "--to",
        "/nonexistent/x",
    ]);
    plan.ok().stderr_has("in the future");
    let plan = plan.json();
    assert_eq!(plan["id"], third.as_str());
    assert_eq!(plan["at"]["in_future"], true);

    // Which backup, and the bucket's past, are different questions; an id and --at are one.
    env.run(&["restore", &third, "--at", "1h", "--to", "/nonexistent/x"])
        .code(2);
}

#[test]
fn the_estimate_comes_from_measured_restores_and_is_labelled_as_one() {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 500);
    env.backup();
    // A fresh state_dir: nothing measured, and the dry run does not make one.
    let fresh = env.path("fresh-state");
    env.state_dir = Some(fresh.clone());
    let to = env.path("out");
    let r = env.run(&["restore", "--dry-run", "--to", to.to_str().unwrap()]);
    r.ok()
        .stdout_has("no estimate: no restore or verify has been measured on this host");
    assert!(!fresh.exists(), "the dry run made state_dir");
    let plan = env
        .run(&[
            "--json",
            "restore",
            "--dry-run",
            "--to",
            to.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert!(plan["estimate"]["seconds"].is_null(), "{plan:#}");

    // One real restore measures this host.
    env.run(&["restore", "--to", to.to_str().unwrap()]).ok();
    let again = env.path("again");
    let r = env.run(&["restore", "--dry-run", "--to", again.to_str().unwrap()]);
    r.ok()
        .stdout_has("estimate: about")
        .stdout_has("(an estimate, from 1 ");
    let plan = env
        .run(&[
            "--json",
            "restore",
            "--dry-run",
            "--to",
            again.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(plan["estimate"]["kind"], "estimate");
    assert!(
        plan["estimate"]["seconds"].as_f64().unwrap() > 0.0,
        "{plan:#}"
    );
    assert_eq!(plan["estimate"]["measured"]["runs"], 1);
}
