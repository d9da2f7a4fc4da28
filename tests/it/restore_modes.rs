//! `restore --to` never changes the mode of a folder it did not create (a shared parent like
//! /tmp keeps its sticky bit and world access), whether the restore succeeds or fails; the
//! folders it creates are private (0700).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::*;

/// The whole mode, sticky bit included.
fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn folder(p: &Path, mode_bits: u32) -> PathBuf {
    fs::create_dir(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode_bits)).unwrap();
    assert_eq!(mode(p), mode_bits, "{}", p.display());
    p.to_path_buf()
}

/// A backup of one database and one config folder, unencrypted and uncompressed so a test can
/// damage it where it wants; returns (env, id, a shared parent of mode 1777).
fn with_backup() -> (Env, String, PathBuf) {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 50);
    let etc = env.add_source("etc", "dir", "");
    fs::create_dir_all(etc.join("tls")).unwrap();
    fs::write(etc.join("tls/server.pem"), "certificate\n").unwrap();
    env.extra = "[compression]\nalgorithm = \"none\"\n".into();
    let id = env.backup();
    let shared = folder(&env.path("shared"), 0o1777);
    (env, id, shared)
}

fn restore(env: &Env, id: &str, to: &Path) -> Run {
    env.run(&["restore", id, "--to", to.to_str().unwrap()])
}

fn assert_no_scratch(parent: &Path) {
    let left: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("litevault-restore"))
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        parent.display()
    );
}

#[test]
fn a_successful_restore_keeps_the_modes_of_existing_folders_and_makes_new_ones_private() {
    let (env, id, shared) = with_backup();

    // Into an existing folder of a shared parent.
    let existing = folder(&shared.join("existing"), 0o755);
    restore(&env, &id, &existing).ok();
    assert!(existing.join("auth.db").is_file());
    assert_eq!(mode(&shared), 0o1777, "the shared parent's mode changed");
    assert_eq!(mode(&existing), 0o755, "the existing target's mode changed");
    assert_no_scratch(&shared);

    // Into a new folder, and into a new folder below missing ones: each made 0700.
    let new = shared.join("new");
    restore(&env, &id, &new).ok();
    assert!(new.join("etc/tls/server.pem").is_file());
    assert_eq!(mode(&new), 0o700);
    let deep = shared.join("a/b/new");
    restore(&env, &id, &deep).ok();
    assert!(deep.join("auth.db").is_file());
    for p in [shared.join("a"), shared.join("a/b"), deep] {
        assert_eq!(mode(&p), 0o700, "{}", p.display());
    }
    assert_eq!(mode(&shared), 0o1777, "the shared parent's mode changed");
    assert_no_scratch(&shared);
}

#[test]
fn a_failed_restore_keeps_the_modes_of_existing_folders_and_leaves_nothing() {
    let (env, id, shared) = with_backup();
    let existing = folder(&shared.join("existing"), 0o755);

    // Fails before anything is downloaded: no such backup.
    let missing = "20260101T000000Z-00000000";
    for to in [existing.clone(), shared.join("m1/m2")] {
        let r = restore(&env, missing, &to);
        assert_ne!(r.code, 0, "a restore of a missing backup succeeded");
        r.stderr_has(missing);
    }
    assert_eq!(mode(&shared), 0o1777);
    assert_eq!(mode(&existing), 0o755);
    assert!(!shared.join("m1").exists());

    // Fails mid-way: one byte of auth.db's data flipped in the stored (plain tar) archive.
    let archive = env.store().join(format!("{id}.tar"));
    let mut bytes = fs::read(&archive).unwrap();
    bytes[512 + 4096 * 2 + 100] ^= 0x01;
    fs::write(&archive, bytes).unwrap();
    restore(&env, &id, &existing).code(4).stderr_has("auth.db");
    assert_eq!(mode(&shared), 0o1777, "the shared parent's mode changed");
    assert_eq!(mode(&existing), 0o755, "the existing target's mode changed");
    assert_eq!(fs::read_dir(&existing).unwrap().count(), 0);
    assert_no_scratch(&shared);

    // The folders a failed restore created for itself are gone again.
    restore(&env, &id, &shared.join("m1/m2")).code(4);
    assert!(!shared.join("m1").exists(), "a failed restore left m1");
    assert_eq!(mode(&shared), 0o1777);
}

#[test]
fn a_leftover_unpack_folder_is_removed_only_when_its_restore_is_gone() {
    let (env, id, shared) = with_backup();
    // A finished process's pid: no process has it now (pids are not reused this quickly).
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = shared.join(format!(".out.litevault-restore-{}-0123abcd", gone.id()));
    // This test's own pid: a restore still running.
    let alive = shared.join(format!(
        ".out.litevault-restore-{}-0123abcd",
        std::process::id()
    ));
    // Not a name litevault makes.
    let other = shared.join(".out.litevault-restore-notapid");
    for dir in [&dead, &alive, &other] {
        fs::create_dir_all(dir.join("auth.db-partial")).unwrap();
    }

    let out = shared.join("out");
    restore(&env, &id, &out)
        .ok()
        .stderr_has(&dead.display().to_string());
    assert!(!dead.exists(), "the dead restore's folder is still there");
    assert!(alive.exists(), "a running restore's folder was removed");
    assert!(
        other.exists(),
        "a folder litevault did not name was removed"
    );
    assert_eq!(mode(&shared), 0o1777);
}
