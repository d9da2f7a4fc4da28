//! Bad input gets a clear error, the documented exit code, and loses nothing.

use std::fs;
use std::process::Command;

use crate::harness::*;

#[test]
fn a_missing_config_exits_2_and_names_the_file() {
    let env = Env::new();
    let missing = env.path("nope.toml");
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(&missing).arg("list");
    run_cmd(cmd)
        .code(2)
        .stderr_has("nope.toml")
        .stderr_has("hint:");

    // $LITEVAULT_CONFIG is used when --config is absent.
    let out = Command::new(BIN)
        .arg("list")
        .env("LITEVAULT_CONFIG", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
}

#[test]
fn an_unknown_key_exits_2_naming_the_key_and_its_line() {
    let mut env = Env::new();
    env.add_sqlite("a.db");
    env.extra = "compresion = \"zstd\"".into();
    let r = env.run(&["backup"]);
    r.code(2).stderr_has("compresion").stderr_has("line 3");
}

#[test]
fn an_invalid_value_exits_2_naming_the_key() {
    let mut env = Env::new();
    env.add_sqlite("a.db");
    env.extra = "[compression]\nalgorithm = \"zstd\"\nlevel = 42\n".into();
    env.run(&["backup"]).code(2).stderr_has("compression.level");
    env.extra = "[retention]\nkeep_within = \"a while\"\n".into();
    env.run(&["prune"])
        .code(2)
        .stderr_has("retention.keep_within");
}

#[test]
fn a_missing_database_fails_naming_it_and_stores_nothing() {
    let mut env = Env::new();
    env.add_sqlite("gone.db");
    let r = env.run(&["backup"]);
    r.code(1).stderr_has("gone.db");
    assert!(env.list().is_empty());
    assert!(env.stored_files().is_empty(), "{:?}", env.stored_files());
}

#[test]
fn a_file_that_is_not_a_database_fails_naming_it() {
    let mut env = Env::new();
    let p = env.add_sqlite("fake.db");
    fs::write(&p, vec![b'x'; 8192]).unwrap();
    let r = env.run(&["backup"]);
    assert_ne!(r.code, 0);
    r.stderr_has("fake.db");
    assert!(env.list().is_empty());
}

#[test]
fn an_unknown_destination_name_is_a_usage_error_listing_the_known_ones() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 5);
    env.run(&["backup", "--dest", "offsite"])
        .code(2)
        .stderr_has("known: local");
}

#[test]
fn a_bad_recipient_is_refused_before_anything_is_read() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 5);
    env.encryption = Some("[encryption]\nrecipients = [\"age1notakey\"]\n".into());
    env.run(&["backup"])
        .code(2)
        .stderr_has("encryption.recipients[0]");
    assert!(env.stored_files().is_empty());
}

#[test]
fn stored_on_some_destinations_only_exits_3() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 50);
    // The second destination's root is a regular file: nothing can be created under it.
    fs::write(env.path("blocked"), "not a folder").unwrap();
    env.destinations
        .push(dest("broken", "file://__ROOT__/blocked/inside"));
    let r = env.run(&["--json", "backup"]);
    r.code(3);
    let doc = r.json();
    let dests = doc["destinations"].as_array().unwrap();
    assert_eq!(dests[0]["name"], "local");
    assert_eq!(dests[0]["ok"], true);
    assert_eq!(dests[1]["name"], "broken");
    assert_eq!(dests[1]["ok"], false);
    assert!(dests[1]["error"].as_str().unwrap().contains("broken"));
    assert_eq!(env.count_on("local"), 1);

    // Only the broken one: exit 1.
    env.run(&["backup", "--dest", "broken"])
        .code(1)
        .stderr_has("broken");
}
