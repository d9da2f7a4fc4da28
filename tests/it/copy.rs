//! `copy --from A --to B`: heals partial runs and fills a new destination from the stored bytes,
//! checked on the way, chains in order, and crash safe.

use std::fs;
use std::time::Duration;

use crate::faultproxy::FaultProxy;
use crate::harness::*;
use crate::servers::{S3Server, S3_ACCESS_KEY, S3_SECRET_KEY};

fn ids_on(env: &Env, dest: &str) -> Vec<String> {
    let r = env.run(&["--json", "list", "--dest", dest]);
    r.ok();
    let mut ids: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// A backup stored on `local` only.
fn backup_local(env: &Env) -> String {
    let r = env.run(&["--json", "backup", "--dest", "local"]);
    r.ok();
    r.json()["id"].as_str().unwrap().to_string()
}

/// Two local destinations: `local` and `other`.
fn two_local() -> Env {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 200);
    env.destinations
        .push(dest("other", "file://__ROOT__/other"));
    fs::create_dir(env.path("other")).unwrap();
    env
}

#[test]
fn a_backup_that_missed_s3_is_healed_by_copy_and_restores_from_s3() {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 300);
    env.with_age_key();
    let server = S3Server::start(&env.path("s3"), &["bkt"]);
    let proxy = FaultProxy::http(server.port);
    env.destinations.push(format!(
        "{}retries = 1\ntimeout = \"2s\"\n",
        dest(
            "s3",
            &format!(
                "s3://bkt/backups?endpoint={}&region=us-east-1",
                proxy.endpoint()
            )
        )
    ));
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
    ];
    proxy.refuse();
    let r = env.run(&["--json", "backup"]);
    r.code(3);
    let id = r.json()["id"].as_str().unwrap().to_string();
    proxy.pass();
    assert!(ids_on(&env, "s3").is_empty());

    let r = env.run(&["--json", "copy", "--from", "local", "--to", "s3"]);
    r.ok();
    assert_eq!(r.json()["copied"][0]["id"], id.as_str());
    assert_eq!(ids_on(&env, "s3"), vec![id.clone()]);
    // Idempotent: nothing left to do.
    let again = env.run(&["--json", "copy", "--from", "local", "--to", "s3"]);
    again.ok();
    assert_eq!(again.json()["copied"].as_array().unwrap().len(), 0);

    let out = env.path("out");
    env.run(&[
        "restore",
        &id,
        "--dest",
        "s3",
        "--to",
        out.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(check_ledger(&out.join("auth.db")), 300);
    env.run(&["verify", &id, "--dest", "s3"]).ok();
}

#[test]
fn copy_of_a_chain_puts_parents_first_and_restores_byte_identical() {
    let mut env = two_local();
    env.incremental = Some(String::new());
    let db = env.path("data/auth.db");
    let full = backup_local(&env);
    let conn = rusqlite::Connection::open(&db).unwrap();
    for k in 1000..1010 {
        ledger_step(&conn, k);
    }
    let inc1 = backup_local(&env);
    for k in 1010..1020 {
        ledger_step(&conn, k);
    }
    let inc2 = backup_local(&env);
    drop(conn);
    // Only the newest is named: what it builds on comes with it, oldest first.
    let r = env.run(&["--json", "copy", "--from", "local", "--to", "other", &inc2]);
    r.ok();
    let copied: Vec<String> = r.json()["copied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(copied, vec![full, inc1, inc2.clone()]);
    let a = env.path("from-local");
    let b = env.path("from-other");
    env.run(&[
        "restore",
        &inc2,
        "--dest",
        "local",
        "--to",
        a.to_str().unwrap(),
    ])
    .ok();
    env.run(&[
        "restore",
        &inc2,
        "--dest",
        "other",
        "--to",
        b.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        fs::read(a.join("auth.db")).unwrap(),
        fs::read(b.join("auth.db")).unwrap()
    );
}

#[test]
fn a_damaged_archive_on_the_source_is_refused_and_not_copied() {
    let env = two_local();
    let good = backup_local(&env);
    let bad = backup_local(&env);
    let archive = env.store().join(format!("{bad}.tar.zst"));
    let mut bytes = fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&archive, &bytes).unwrap();

    let r = env.run(&["--json", "copy", "--from", "local", "--to", "other"]);
    r.code(4).stderr_has(&bad).stderr_has("damaged");
    assert_eq!(ids_on(&env, "other"), vec![good.clone()]);
    // Nothing of it was left on B, listed or not.
    let left: Vec<String> = fs::read_dir(env.path("other/test-host"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&bad))
        .collect();
    assert!(left.is_empty(), "left on B: {left:?}");
}

#[test]
fn copy_killed_at_any_moment_lists_nothing_partial_and_the_next_one_finishes() {
    let mut env = two_local();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, 12);
    let first = backup_local(&env);
    let second = backup_local(&env);
    // A slow B, so the kills land mid-copy.
    env.destinations[1] = format!(
        "{}bandwidth_limit = \"4MiB\"\n",
        dest("other", "file://__ROOT__/other")
    );
    for delay in [300u64, 1200, 2500, 4000] {
        let child = env.spawn(&["copy", "--from", "local", "--to", "other"]);
        kill_after(child, Duration::from_millis(delay));
        for id in ids_on(&env, "other") {
            // Whatever is listed is whole.
            env.run(&["verify", &id, "--dest", "other"]).ok();
        }
    }
    env.run(&["copy", "--from", "local", "--to", "other"]).ok();
    assert_eq!(ids_on(&env, "other"), {
        let mut v = vec![first, second];
        v.sort();
        v
    });
    // No leftovers: the next copy cleaned what the killed ones left.
    assert!(
        !env.path("other/test-host/tmp").exists()
            || fs::read_dir(env.path("other/test-host/tmp"))
                .unwrap()
                .next()
                .is_none(),
        "leftovers under tmp/"
    );
}

#[test]
fn copy_refuses_the_same_destination_twice() {
    let env = two_local();
    env.run(&["copy", "--from", "local", "--to", "local"])
        .code(2)
        .stderr_has("both name");
}
