//! What earlier versions wrote still restores: a backup made by the release build of 7b6c2e4
//! (the first wave, format version 1, before sidecars recorded recipients or a state identity)
//! is kept under tests/fixtures and must list, verify, restore and rekey with this build.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1-7b6c2e4");
const ID: &str = "20261127T030848Z-fb71";

fn env_with_fixture() -> Env {
    let mut env = Env::new();
    // The host that made it: in any other host's folder it is foreign.
    env.name = "fixture-host".into();
    fs::create_dir_all(env.store()).unwrap();
    for name in [format!("{ID}.json"), format!("{ID}.tar.zst.age")] {
        fs::copy(Path::new(FIXTURE).join(&name), env.store().join(&name)).unwrap();
    }
    // git does not keep modes: the key is made private again, as litevault requires.
    let key = env.path("key.txt");
    fs::copy(Path::new(FIXTURE).join("key.txt"), &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    env.add_sqlite("auth.db");
    env.add_source("etc", "dir", "");
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n",
        public_key(&key),
        key.display()
    ));
    env
}

#[test]
fn a_backup_written_by_the_first_wave_lists_verifies_and_restores() {
    let env = env_with_fixture();
    let listed = env.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], ID);
    env.run(&["verify", ID]).ok();
    env.run(&["verify", "--restore-test", ID]).ok();
    let out = env.path("out");
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .ok();
    let conn = rusqlite::Connection::open(out.join("auth.db")).unwrap();
    let (n, last): (i64, String) = conn
        .query_row("SELECT count(*), max(name) FROM users", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((n, last.as_str()), (200, "user99"));
    assert_eq!(
        fs::read_to_string(out.join("etc/server.conf")).unwrap(),
        "listen = 1812\n"
    );
}

#[test]
fn a_first_wave_backup_can_be_rekeyed() {
    require_tool("age-keygen");
    let mut env = env_with_fixture();
    let old = env.path("key.txt");
    let new = env.path("new.key");
    let r = sh(
        &format!(
            "age-keygen -o {} 2>/dev/null && chmod 600 {0}",
            new.display()
        ),
        Path::new("/"),
    );
    assert_eq!(r.code, 0);
    let both = env.path("both.key");
    fs::write(
        &both,
        fs::read_to_string(&old).unwrap() + &fs::read_to_string(&new).unwrap(),
    )
    .unwrap();
    fs::set_permissions(&both, fs::Permissions::from_mode(0o600)).unwrap();
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n",
        public_key(&new),
        both.display()
    ));
    let r = env.run(&["--json", "rekey", ID]);
    r.ok();
    assert_eq!(r.json()["rekeyed"].as_array().unwrap().len(), 1);
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n",
        public_key(&new),
        new.display()
    ));
    env.run(&["verify", ID]).ok();
}
