//! A hostile or broken `state_dir`: planted symlinks are never followed, a folder others can
//! write into or that belongs to someone else is refused (and left as it is), a full one is
//! reported as what it is and never blamed on a backup, and two configs sharing one namespace
//! are told about each other.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use crate::harness::*;
use crate::tmpfs::Tmpfs;

fn env_with_db() -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 50);
    env
}

#[test]
fn a_symlinked_lock_is_never_followed_and_its_target_is_untouched() {
    let env = env_with_db();
    let state = env.path("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let victim = env.path("victim.txt");
    fs::write(&victim, "precious\n").unwrap();
    symlink(&victim, state.join("lock")).unwrap();

    let r = env.run(&["backup"]);
    assert_ne!(
        r.code, 0,
        "a run that followed the planted lock: {}",
        r.stderr
    );
    r.stderr_has("symlink");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(env.list().is_empty());
}

#[test]
fn a_symlinked_execution_store_is_never_created_through() {
    let env = env_with_db();
    let state = env.path("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let elsewhere = env.path("elsewhere.db");
    symlink(&elsewhere, state.join("executions.db")).unwrap();
    let wal_victim = env.path("wal-victim");
    fs::write(&wal_victim, "keep\n").unwrap();
    symlink(&wal_victim, state.join("executions.db-wal")).unwrap();

    let r = env.run(&["--quiet", "backup"]);
    // The backup itself may go on, but the store is refused, and said to be, even with --quiet.
    r.stderr_has("not recorded").stderr_has("executions.db");
    assert!(
        !elsewhere.exists(),
        "a database was created through the planted link"
    );
    assert_eq!(fs::read_to_string(&wal_victim).unwrap(), "keep\n");
}

#[test]
fn a_state_dir_writable_by_others_is_refused_and_left_as_it_is() {
    let env = env_with_db();
    let state = env.path("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();

    let r = env.run(&["backup"]);
    r.code(1)
        .stderr_has("writable by everyone")
        .stderr_has("chmod 700");
    assert_eq!(
        mode_of(&state),
        0o777,
        "the folder was chmodded behind the user's back"
    );
    assert!(env.list().is_empty());

    fs::set_permissions(&state, fs::Permissions::from_mode(0o770)).unwrap();
    env.run(&["backup"]).code(1).stderr_has("its group");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    env.run(&["backup"]).ok();
}

#[test]
fn a_state_dir_owned_by_another_user_is_refused() {
    let env = env_with_db();
    let state = env.path("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    env.run(&["backup"])
        .code(1)
        .stderr_has("owned by uid 65534");
    env.run(&["history"])
        .code(1)
        .stderr_has("owned by uid 65534");
}

#[test]
fn a_full_state_dir_is_reported_and_never_blamed_on_a_backup() {
    let mut env = env_with_db();
    let mount = Tmpfs::mount(&env.path("small"), "1m");
    env.state_dir = Some(mount.path().join("state"));
    let id = env.backup();
    mount.fill();

    // The backup is stored; that it could not be recorded is said, even with --quiet.
    let r = env.run(&["--quiet", "backup"]);
    r.stderr_has("not recorded");
    assert_eq!(env.list().len(), 2, "{}", r.stderr);

    // verify cannot unpack for want of room: it says so, and does not call the backup bad.
    let r = env.run(&["verify", &id]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.stderr_has("state folder");
    assert!(
        !r.stderr.contains("FAILED"),
        "the backup was blamed for a local problem: {}",
        r.stderr
    );
    drop(mount);
    env.state_dir = None;
    env.run(&["verify", &id]).ok();
}

#[test]
fn two_configs_writing_one_namespace_are_told_about_each_other() {
    let env = env_with_db();
    let first = env.backup();
    // Same name, same destination, another state folder.
    let config = fs::read_to_string(env.config_path()).unwrap().replace(
        &format!("state_dir = \"{}\"", env.path("state").display()),
        &format!("state_dir = \"{}\"", env.path("other-state").display()),
    );
    let other = env.path("other.toml");
    fs::write(&other, config).unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--config").arg(&other).args(["--quiet", "backup"]);
    let r = run_cmd(cmd);
    r.ok().stderr_has("another state_dir").stderr_has(&first);

    let r = env.run(&["list"]);
    r.ok().stderr_has("two state_dirs");
    let own = fs::read_to_string(env.path("state/id")).unwrap();
    let theirs = fs::read_to_string(env.path("other-state/id")).unwrap();
    assert_ne!(own, theirs);
    r.stderr_has(&own.trim()[..12])
        .stderr_has(&theirs.trim()[..12]);
}

#[test]
fn a_full_destination_fails_naming_it_and_leaves_nothing() {
    let mut env = Env::new();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, 12);
    let mount = Tmpfs::mount(&env.path("backups"), "4m");
    let r = env.run(&["backup"]);
    r.code(1)
        .stderr_has("destination local")
        .stderr_has("No space left");
    assert!(
        !r.stderr.contains("database big.db"),
        "an innocent database was blamed: {}",
        r.stderr
    );
    assert!(env.list().is_empty());
    assert!(
        env.stored_files().is_empty(),
        "left on the full destination: {:?}",
        env.stored_files()
    );
    drop(mount);
}

#[test]
fn a_full_restore_target_fails_clearly_and_leaves_nothing() {
    let mut env = Env::new();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, 12);
    env.backup();
    let mount = Tmpfs::mount(&env.path("target"), "4m");
    let out = mount.path().join("restored");
    let r = env.run(&["restore", "latest", "--to", out.to_str().unwrap()]);
    r.code(1).stderr_has("No space left").stderr_has("hint:");
    let left: Vec<_> = fs::read_dir(mount.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left on the full target: {left:?}");
    assert_eq!(
        mode_of(mount.path()),
        0o700,
        "the mount point's mode changed"
    );
}
