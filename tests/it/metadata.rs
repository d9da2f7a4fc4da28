//! Damaged metadata is a finding, never silence: a truncated sidecar, an archive whose sidecar
//! is gone, a newest backup that is damaged or dated in the future. And warnings reach stderr
//! even under --quiet; errors say what to do.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::*;

fn env_with_db() -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 50);
    env
}

fn sidecar(env: &Env, id: &str) -> std::path::PathBuf {
    env.store().join(format!("{id}.json"))
}

#[test]
fn a_truncated_sidecar_is_an_integrity_finding_for_verify_list_and_prune() {
    let mut env = env_with_db();
    env.extra = "[retention]\nkeep_last = 5\n".into();
    let old = env.backup();
    let newest = env.backup();
    let body = fs::read(sidecar(&env, &old)).unwrap();
    fs::write(sidecar(&env, &old), &body[..body.len() / 2]).unwrap();

    let r = env.run(&["verify", "--all"]);
    r.code(4).stderr_has(&old).stderr_has("sidecar");
    let r = env.run(&["verify", &old]);
    r.code(4).stderr_has(&old).stderr_has("sidecar");
    // The good one is still good, alone.
    env.run(&["verify", &newest]).ok();

    let r = env.run(&["--quiet", "list"]);
    r.ok().stderr_has(&old).stderr_has("sidecar");
    // Damaged metadata is a finding: prune reports it and exits 4, deleting nothing of it.
    let r = env.run(&["--quiet", "prune"]);
    r.code(4).stderr_has(&old).stderr_has("sidecar");
    assert!(
        sidecar(&env, &old).exists(),
        "prune deleted damaged metadata silently"
    );
}

#[test]
fn an_archive_without_its_sidecar_is_a_finding_once_no_run_can_be_completing_it() {
    let env = env_with_db();
    let old = env.backup();
    env.backup();
    fs::remove_file(sidecar(&env, &old)).unwrap();
    let r = env.run(&["verify", "--all"]);
    r.code(4).stderr_has(&old).stderr_has("no sidecar");
    env.run(&["--quiet", "list"]).ok().stderr_has("no sidecar");
    let r = env.run(&["verify", &old]);
    r.code(4).stderr_has("not complete");
}

#[test]
fn a_damaged_newest_backup_never_makes_if_older_than_skip() {
    let env = env_with_db();
    let id = env.backup();
    // The newest backup's archive is gone: it is damaged, not fresh.
    let archive = env.store().join(format!("{id}.tar.zst"));
    fs::remove_file(&archive).unwrap();
    let r = env.run(&["--quiet", "backup", "--if-older-than", "1h"]);
    r.ok().stderr_has("damaged");
    assert_eq!(env.list().len(), 2, "the run was skipped");
    let runs = env.run(&["--json", "history"]).json();
    assert_ne!(runs[0]["status"], "skipped");
}

#[test]
fn a_future_dated_backup_is_not_fresh_and_not_latest() {
    let env = env_with_db();
    let id = env.backup();
    // The only backup, moved under a name dated decades ahead (planted, or a clock gone wrong),
    // whole and intact.
    let future = format!("2099{}", &id[4..]);
    let text = fs::read_to_string(sidecar(&env, &id))
        .unwrap()
        .replace(&id, &future)
        .replace(&id[..4], "2099");
    let archive = env.store().join(format!("{id}.tar.zst"));
    fs::write(env.store().join(format!("{future}.json")), text).unwrap();
    fs::rename(&archive, env.store().join(format!("{future}.tar.zst"))).unwrap();
    fs::remove_file(sidecar(&env, &id)).unwrap();
    assert_eq!(env.list().len(), 1);

    let r = env.run(&["backup", "--if-older-than", "1h"]);
    r.ok().stderr_has("ahead of this host's clock");
    assert!(!r.stdout.contains("skipped"), "{}", r.stdout);
    assert_eq!(env.list().len(), 2);

    // `latest` is never the future-dated one either, and says it passed over it.
    let out = env.path("out");
    let r = env.run(&["restore", "latest", "--to", out.to_str().unwrap()]);
    r.ok().stderr_has("passed over").stderr_has(&future);
}

#[test]
fn warnings_reach_stderr_even_with_quiet() {
    let mut env = env_with_db();
    let etc = env.add_source("etc", "dir", "");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("a.conf"), "x\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", etc.join("link")).unwrap();
    let empty = env.add_sqlite("new.db");
    fs::write(&empty, b"").unwrap();
    let r = env.run(&["--quiet", "backup"]);
    r.ok()
        .stderr_has("link")
        .stderr_has("new.db")
        .stderr_has("empty");
    assert!(r.stdout.is_empty());
}

#[test]
fn a_wal_database_in_a_folder_the_user_cannot_write_says_why_and_what_to_do() {
    let setpriv = require_tool("setpriv");
    // A world-traversable place, since the run is made as `nobody`.
    let base = tempfile::Builder::new()
        .prefix("litevault-ro-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = base.path();
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.join("data");
    fs::create_dir(&data).unwrap();
    let db = data.join("auth.db");
    create_ledger(&db, "WAL", 10);
    // Closed cleanly: no -wal or -shm left, so a reader must create the -shm.
    assert!(!data.join("auth.db-shm").exists());
    fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    for owned in ["state", "backups"] {
        let p = root.join(owned);
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    }
    let config = root.join("litevault.toml");
    fs::write(
        &config,
        format!(
            "name = \"h\"\nstate_dir = \"{r}/state\"\n[[source]]\nname = \"auth.db\"\npath = \"{r}/data/auth.db\"\nkind = \"sqlite\"\n[[destination]]\nname = \"local\"\nurl = \"file://{r}/backups\"\n",
            r = root.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        BIN,
        "--config",
    ])
    .arg(&config)
    .arg("backup");
    let r = run_cmd(cmd);
    r.code(1)
        .stderr_has("auth.db-shm")
        .stderr_has("not writable")
        .stderr_has("hint:");
    assert!(!r.stderr.contains("1544"), "{}", r.stderr);
}
