//! How runs behave as processes: one at a time, killed at any moment without harm, and quiet or
//! talkative as cron and people need.

use std::fs::{self, OpenOptions};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn a_second_run_exits_5_at_once_or_waits_with_wait() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    env.extra = "[retention]\nkeep_last = 5\n".into();
    env.backup(); // creates the state folder
    let lock = OpenOptions::new()
        .write(true)
        .open(env.path("state/lock"))
        .unwrap();
    lock.lock().unwrap();

    let started = Instant::now();
    env.run(&["backup"])
        .code(5)
        .stderr_has("lock")
        .stderr_has("--wait");
    env.run(&["prune"]).code(5);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exit 5 must come at once"
    );

    let waiter = env
        .command(&["backup", "--wait", "30s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    lock.unlock().unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.list().len(), 2);
}

#[test]
fn kill_9_at_any_moment_leaves_no_partial_backup_and_the_next_run_cleans_up() {
    let mut env = Env::new();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, 48);
    let ledger = env.add_sqlite("ledger.db");
    create_ledger(&ledger, "WAL", 100);
    env.with_age_key();
    env.extra = "[compression]\nalgorithm = \"gzip\"\nlevel = 1\n".into();

    // Time one full backup, then kill backups at spread-out moments within that span.
    let t = Instant::now();
    env.backup();
    let full = t.elapsed();
    let complete_before = env.list().len();
    let mut killed_mid_way = 0;
    for i in 1..=8u32 {
        let delay = full.mul_f64(f64::from(i) / 9.0);
        let child = env.spawn(&["backup"]);
        if kill_after(child, delay) {
            killed_mid_way += 1;
        }
        // Whatever moment it died at: every listed backup is complete and verifiable.
        for b in env.list() {
            assert!(b["damage"].is_null(), "a listed backup is damaged: {b}");
        }
    }
    assert!(
        killed_mid_way >= 4,
        "only {killed_mid_way} kills landed mid-backup; the test proves nothing"
    );
    let listed = env.list().len();
    assert!(listed >= complete_before);

    // The next run succeeds and leaves no leftovers in the destination or the state folder.
    env.backup();
    let stored = env.stored_files();
    assert!(
        stored.iter().all(|f| !f.starts_with("tmp/")),
        "leftovers: {stored:?}"
    );
    let archives = stored.iter().filter(|f| f.contains(".tar")).count();
    let sidecars = stored.iter().filter(|f| f.ends_with(".json")).count();
    assert_eq!(
        archives, sidecars,
        "an archive without a sidecar was left: {stored:?}"
    );
    assert_eq!(sidecars, env.list().len());
    env.run(&["verify", "--all"]).ok();
    let scratch = env.path("state/tmp");
    if scratch.exists() {
        assert_eq!(fs::read_dir(scratch).unwrap().count(), 0);
    }
}

#[test]
fn without_a_terminal_a_backup_prints_one_summary_line_and_no_bars() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 100);
    env.with_age_key();
    let r = env.run(&["backup"]);
    r.ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    assert!(
        lines[0].starts_with("backup ") && lines[0].contains("stored on local"),
        "{}",
        lines[0]
    );
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert!(!r.stdout.contains('\r') && !r.stdout.contains('\x1b'));
}

#[test]
fn an_unencrypted_backup_says_so() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    env.run(&["backup"])
        .ok()
        .stderr_has("NOT encrypted")
        .stdout_has("unencrypted");
}

#[test]
fn quiet_prints_nothing_on_success_and_still_reports_failures() {
    let mut env = Env::new();
    env.encryption = Some("[encryption]\nnone = true\n".into());
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    let r = env.run(&["--quiet", "backup"]);
    r.ok();
    assert!(
        r.stdout.is_empty() && r.stderr.is_empty(),
        "{r:?}",
        r = (&r.stdout, &r.stderr)
    );
    let r = env.run(&["--quiet", "list"]);
    assert!(r.stdout.is_empty() && r.stderr.is_empty());
    env.sources.clear();
    env.add_sqlite("missing.db");
    let r = env.run(&["--quiet", "backup"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty());
    r.stderr_has("missing.db");
}

#[test]
fn json_output_is_one_document() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    let doc = env.run(&["--json", "backup"]).json();
    let id = doc["id"].as_str().unwrap();
    assert_eq!(doc["destinations"][0]["name"], "local");
    assert_eq!(doc["destinations"][0]["ok"], true);
    assert!(doc["destinations"][0]["bytes"].as_u64().unwrap() > 0);
    let list = env.list();
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["destination"], "local");
    assert!(list[0]["bytes"].as_u64().unwrap() > 0);
    humantime::parse_rfc3339(list[0]["created"].as_str().unwrap()).unwrap();
    assert!(list[0]["created"].as_str().unwrap().ends_with('Z'));
    let v = env.run(&["--json", "verify", "latest"]).json();
    assert_eq!(v["results"][0]["ok"], true);
}

#[test]
fn list_is_newest_first_and_a_broken_pipe_is_quiet() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    let a = env.backup();
    let b = env.backup();
    let ids: Vec<String> = env
        .list()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![b, a]);
    let r = sh(
        &format!(
            "{BIN} --config {} list | head -c 1 >/dev/null",
            env.config_path().display()
        ),
        env.root(),
    );
    r.ok();
    assert!(!r.stderr.contains("error"), "{}", r.stderr);
}

/// Send SIGINT to a child process.
fn interrupt(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn ctrl_c_stops_a_backup_cleanly_with_exit_130() {
    let mut env = Env::new();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, 24);
    // A bandwidth limit makes the upload take seconds, so the signal lands mid-stream.
    env.destinations = vec![format!(
        "{}bandwidth_limit = \"4MiB\"\n",
        dest("local", "file://__ROOT__/backups")
    )];
    let child = env
        .command(&["backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert!(env.list().is_empty());
    assert!(
        env.stored_files().is_empty(),
        "the aborted upload was left: {:?}",
        env.stored_files()
    );
    let runs = env.run(&["--json", "history"]).json();
    assert_eq!(runs[0]["status"], "interrupted");
    assert_eq!(runs[0]["exit_code"], 130);

    // During a hook: the hook is stopped too.
    env.destinations = vec![dest("local", "file://__ROOT__/backups")];
    env.extra = "[hooks]\nbefore_backup = \"sleep 30\"\n".into();
    let start = Instant::now();
    let child = env
        .command(&["backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn on_a_terminal_a_backup_draws_progress_bars() {
    let mut env = Env::new();
    let db = env.add_sqlite("bars.db");
    create_bulk(&db, 8);
    env.write_config();
    // `script` runs the command on a pseudo-terminal, as a person at a shell would.
    let cmd = format!("{BIN} --config {} backup", env.config_path().display());
    let out = std::process::Command::new(require_tool("script"))
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("LITEVAULT_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\x1b[2K") && text.contains('\r'),
        "no bar was drawn: {text:?}"
    );
    assert!(
        text.contains("bars.db"),
        "the bar does not name the source: {text:?}"
    );
    assert!(text.contains("stored on local"), "{text:?}");
}
