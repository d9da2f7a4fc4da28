//! Built for cron: cron's bare environment, interval scheduling, the execution store, retries of
//! the whole run, the metrics file, and hooks that fail or hang.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn env_with_db() -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 50);
    env
}

fn history(env: &Env) -> Vec<serde_json::Value> {
    env.run(&["--json", "history", "--limit", "100"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn under_env_i_quiet_prints_nothing_on_success_and_failures_go_to_stderr() {
    let mut env = env_with_db();
    // Unencrypted on purpose, as a cron host on an encrypted disk would say: nothing to warn.
    env.encryption = Some("[encryption]\nnone = true\n".into());
    env.write_config();
    let config = env.config_path();
    let run = |args: &[&str]| {
        let out = Command::new("env")
            .arg("-i")
            .arg("PATH=/usr/bin:/bin")
            .arg(BIN)
            .arg("--config")
            .arg(&config)
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["--quiet", "backup"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, out, _) = run(&["--quiet", "verify", "latest"]);
    assert_eq!((code, out.as_str()), (0, ""));
    env.sources.push(format!(
        "[[source]]\nname = \"gone.db\"\npath = \"{}\"\nkind = \"sqlite\"\n",
        env.path("gone.db").display()
    ));
    env.write_config();
    let (code, out, err) = run(&["--quiet", "backup"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("gone.db"), "{err}");
}

#[test]
fn if_older_than_skips_recent_backups_and_runs_at_the_edge() {
    let env = env_with_db();
    env.backup();
    let r = env.run(&["backup", "--if-older-than", "1h"]);
    r.ok().stdout_has("skipped:").stdout_has("old");
    assert_eq!(env.list().len(), 1);
    assert_eq!(r.stdout.lines().count(), 1);
    std::thread::sleep(Duration::from_millis(2200));
    // The newest is now over 2 s old: this one runs.
    env.run(&["backup", "--if-older-than", "2s"])
        .ok()
        .stdout_has("stored on local");
    assert_eq!(env.list().len(), 2);
    // With no backup at all, it runs.
    let fresh = env_with_db();
    fresh.run(&["backup", "--if-older-than", "24h"]).ok();
    assert_eq!(fresh.list().len(), 1);
    let runs = history(&env);
    assert!(runs.iter().any(|r| r["status"] == "skipped"), "{runs:?}");
}

#[test]
fn every_run_is_recorded_and_a_killed_one_shows_as_interrupted() {
    let mut env = env_with_db();
    env.extra = "[history]\nkeep_runs = 4\n[retention]\nkeep_last = 5\n".into();
    let id = env.backup();
    env.run(&["verify", &id]).ok();
    env.run(&["prune"]).ok();
    let runs = history(&env);
    let commands: Vec<&str> = runs
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, vec!["prune", "verify", "backup"]);
    assert_eq!(runs[2]["status"], "success");
    assert_eq!(runs[2]["backup_id"], id.as_str());
    assert!(runs[2]["bytes"].as_i64().unwrap() > 0);
    assert_eq!(runs[2]["destinations"][0]["name"], "local");

    // A maintenance hook keeps the run busy long enough to be killed in the middle.
    let keep = env.extra.clone();
    env.extra = format!("{keep}[hooks]\nbefore_backup = \"sleep 3\"\n");
    let child = env.spawn(&["backup"]);
    assert!(
        kill_after(child, Duration::from_millis(700)),
        "the backup finished before it could be killed"
    );
    let runs = history(&env);
    assert_eq!(runs[0]["status"], "interrupted", "{runs:#?}");
    env.extra = keep;
    env.backup();
    let runs = history(&env);
    assert_eq!(runs[0]["status"], "success");
    assert_eq!(runs[1]["status"], "interrupted");
    assert!(
        runs.len() <= 4,
        "the store is trimmed to keep_runs: {}",
        runs.len()
    );
    assert!(!runs.iter().any(|r| r["status"] == "running"));
    env.run(&["history"]).ok().stdout_has("interrupted");
}

#[test]
fn retries_repeat_a_failed_run_and_record_each_attempt() {
    let mut env = env_with_db();
    fs::write(env.path("blocked"), "not a folder").unwrap();
    env.destinations
        .push(dest("broken", "file://__ROOT__/blocked/inside"));
    let start = Instant::now();
    let r = env.run(&[
        "--json",
        "backup",
        "--retries",
        "2",
        "--retry-delay",
        "200ms",
    ]);
    r.code(3).stderr_has("retrying");
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "200ms then 400ms of delay"
    );
    let doc = r.json();
    let dests = doc["destinations"].as_array().unwrap();
    assert_eq!(
        dests
            .iter()
            .filter(|d| d["name"] == "local" && d["ok"] == true)
            .count(),
        1,
        "{doc}"
    );
    let runs = history(&env);
    let attempts: Vec<i64> = runs
        .iter()
        .filter(|r| r["command"] == "backup")
        .map(|r| r["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, vec![3, 2, 1]);
    // Later attempts go only where it failed: one backup on local, not three.
    assert_eq!(env.count_on("local"), 1);
}

#[test]
fn the_metrics_file_is_replaced_atomically_and_parses() {
    let env = env_with_db();
    let metrics = env.path("node/litevault.prom");
    fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    env.run(&["--metrics-file", metrics.to_str().unwrap(), "backup"])
        .ok();
    env.run(&["--metrics-file", metrics.to_str().unwrap(), "backup"])
        .ok();
    let text = fs::read_to_string(&metrics).unwrap();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(key.to_string(), value);
    }
    let get = |k: &str| {
        *samples
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing from:\n{text}"))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let success =
        get(r#"litevault_last_success_timestamp_seconds{host="test-host",command="backup"}"#);
    assert!((now - success).abs() < 60.0, "{success} vs {now}");
    assert_eq!(
        get(r#"litevault_last_run_exit_code{host="test-host",command="backup"}"#),
        0.0
    );
    assert!(get(r#"litevault_last_run_duration_seconds{host="test-host",command="backup"}"#) > 0.0);
    assert!(get(r#"litevault_last_backup_stored_bytes{host="test-host"}"#) > 0.0);
    assert_eq!(
        get(r#"litevault_backups{host="test-host",destination="local"}"#),
        2.0
    );
    assert!(
        get(r#"litevault_newest_backup_age_seconds{host="test-host",destination="local"}"#) < 60.0
    );
    assert!(text.contains("# TYPE litevault_backups gauge"));
    let others: Vec<_> = fs::read_dir(metrics.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(others.len(), 1, "a temporary file was left: {others:?}");
}

#[test]
fn a_failing_before_backup_hook_aborts_and_on_failure_hears_why() {
    let mut env = env_with_db();
    let log = env.path("hook.log");
    env.extra = format!(
        "[hooks]\nbefore_backup = \"echo server busy >&2; exit 7\"\n\
         after_backup = \"echo after $LITEVAULT_STATUS >> {log}\"\n\
         on_failure = \"echo failure $LITEVAULT_COMMAND $LITEVAULT_EXIT_CODE \\\"$LITEVAULT_ERROR\\\" >> {log}\"\n\
         on_success = \"echo success >> {log}\"\n",
        log = log.display()
    );
    env.run(&["backup"])
        .code(1)
        .stderr_has("before_backup")
        .stderr_has("server busy");
    assert!(env.list().is_empty());
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("failure backup 1") && text.contains("server busy"),
        "{text}"
    );
    assert!(!text.contains("success"));
    assert!(
        !text.contains("after"),
        "after_backup runs only once a backup was attempted: {text}"
    );
}

#[test]
fn notification_hooks_get_the_facts_and_never_fail_or_hang_a_good_backup() {
    let mut env = env_with_db();
    let log = env.path("hook.log");
    env.extra = format!(
        "[hooks]\ntimeout = \"1s\"\nbefore_backup = \"echo before >> {log}\"\n\
         after_backup = \"echo after $LITEVAULT_STATUS >> {log}\"\n\
         on_success = \"echo $LITEVAULT_STATUS $LITEVAULT_BACKUP_ID $LITEVAULT_DESTINATIONS_OK >> {log}; exit 9\"\n",
        log = log.display()
    );
    let r = env.run(&["--json", "backup"]);
    r.ok().stderr_has("on_success").stderr_has("result stands");
    let id = r.json()["id"].as_str().unwrap().to_string();
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text, format!("before\nafter stored\nsuccess {id} local\n"));

    env.extra = "[hooks]\ntimeout = \"1s\"\non_success = \"sleep 60\"\n".into();
    let start = Instant::now();
    env.run(&["backup"]).ok().stderr_has("did not finish");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "a hung hook held the run for {:?}",
        start.elapsed()
    );
}

#[test]
fn two_backups_at_once_one_waits_for_none_and_exits_5() {
    let mut env = env_with_db();
    // The first run holds the lock for at least 2 s (its maintenance hook), however fast the disk.
    env.extra = "[hooks]\nbefore_backup = \"sleep 2\"\n".into();
    let mut first = env
        .command(&["backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let second = env.run(&["backup"]);
    let first_status = first.wait().unwrap();
    assert!(first_status.success());
    second.code(5).stderr_has("another litevault run");
    assert_eq!(env.list().len(), 1);
    assert!(history(&env).iter().any(|r| r["status"] == "locked"));
}

#[test]
fn the_restore_drill_passes_on_a_good_backup_and_fails_on_a_damaged_one() {
    require_tool("sqlite3");
    let mut env = env_with_db();
    env.with_age_key();
    let id = env.backup();
    env.write_config();
    let drill = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/restore-drill.sh");
    let run = || {
        let mut cmd = Command::new("bash");
        cmd.arg(&drill)
            .env("LITEVAULT", BIN)
            .env("LITEVAULT_CONFIG", env.config_path());
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("restore drill passed"), "{out}");
    let archive = env.store().join(format!("{id}.tar.zst.age"));
    let mut bytes = fs::read(&archive).unwrap();
    let n = bytes.len();
    bytes[n / 3] ^= 0x40;
    fs::write(&archive, bytes).unwrap();
    let (code, _, err) = run();
    assert_eq!(code, 4, "{err}");
    assert!(err.contains(&id), "{err}");
}
