//! SIGTERM at any point of a run: the run stops within seconds with exit 130, is recorded as
//! `interrupted` (with a backup id only for a backup that was stored), and leaves nothing
//! half-done listed or lying about.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::harness::*;

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The newest recorded run of `command`.
fn newest_run(env: &Env, command: &str) -> serde_json::Value {
    env.run(&["--json", "history"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["command"] == command)
        .unwrap_or_else(|| panic!("no {command} run recorded"))
        .clone()
}

/// A stop at any moment ends the run quickly and honestly.
fn assert_stopped(env: &Env, code: i32, took: Option<Duration>, stderr: &str, command: &str) {
    let Some(took) = took else {
        return; // it had already finished
    };
    assert_eq!(code, 130, "{command}: {stderr}");
    assert!(
        took < Duration::from_secs(5),
        "{command} took {took:?} to stop after SIGTERM"
    );
    let run = newest_run(env, command);
    assert_eq!(run["status"], "interrupted", "{run:#}");
    assert_eq!(run["exit_code"], 130);
}

#[test]
fn sigterm_at_any_point_of_a_backup_stops_it_and_lists_nothing_half_done() {
    let mut env = Env::new();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, 16);
    // Slow enough that the signals land while snapshotting, mid-upload and while committing.
    env.destinations = vec![format!(
        "{}bandwidth_limit = \"6MiB\"\n",
        dest("local", "file://__ROOT__/backups")
    )];
    for delay_ms in [100, 600, 1500, 2400, 2900, 3300] {
        let child = spawn(&env, &["backup"]);
        let (code, took, stderr) = term_after(child, Duration::from_millis(delay_ms));
        assert!(
            code == 0 || code == 130,
            "SIGTERM at {delay_ms} ms: exit {code}: {stderr}"
        );
        assert_stopped(&env, code, took, &stderr, "backup");
        let listed: Vec<String> = env
            .list()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect();
        if code == 130 {
            let run = newest_run(&env, "backup");
            match run["backup_id"].as_str() {
                // Recorded with an id: then it was stored, and is listed.
                Some(id) => assert!(listed.contains(&id.to_string()), "{run:#}"),
                None => assert!(run["bytes"].is_null(), "{run:#}"),
            }
        }
        // Whatever is listed is whole.
        env.run(&["verify", "--all"]).ok();
    }
}

#[test]
fn sigterm_stops_verify_and_restore_mid_way_and_leaves_no_scratch() {
    let mut env = Env::new();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, 48);
    env.with_age_key();
    env.backup();

    let child = spawn(&env, &["verify", "--restore-test"]);
    let (code, took, stderr) = term_after(child, Duration::from_millis(400));
    assert_stopped(&env, code, took, &stderr, "verify");
    assert!(
        !stderr.contains("FAILED"),
        "an interrupted verify blamed the backup: {stderr}"
    );
    let scratch: Vec<_> = std::fs::read_dir(env.path("state/tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(scratch.is_empty(), "scratch left: {scratch:?}");

    let out = env.path("out");
    let child = spawn(&env, &["restore", "latest", "--to", out.to_str().unwrap()]);
    let (code, took, stderr) = term_after(child, Duration::from_millis(400));
    assert_stopped(&env, code, took, &stderr, "restore");
    if took.is_some() {
        assert!(!out.join("big.db").exists(), "a torn restore was left");
    }
    let beside: Vec<String> = std::fs::read_dir(env.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("litevault-restore"))
        .collect();
    assert!(beside.is_empty(), "left beside the target: {beside:?}");
}

#[test]
fn sigterm_stops_a_run_waiting_on_the_lock() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    env.extra = "[retention]\nkeep_last = 1\n[hooks]\nbefore_backup = \"sleep 30\"\n".into();
    let holder = spawn(&env, &["backup"]);
    std::thread::sleep(Duration::from_millis(700));
    let waiter = spawn(&env, &["prune", "--wait", "5m"]);
    let (code, took, stderr) = term_after(waiter, Duration::from_millis(800));
    assert!(took.is_some(), "prune did not wait for the lock: {stderr}");
    assert_stopped(&env, code, took, &stderr, "prune");
    let (code, took, stderr) = term_after(holder, Duration::ZERO);
    assert!(took.is_some());
    assert_stopped(&env, code, took, &stderr, "backup");
}
