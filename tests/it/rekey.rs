//! Key rotation: `rekey` re-encrypts stored backups to the current recipients and re-signs them;
//! afterwards the old key opens nothing (checked with the real `age -d`), and a rekey killed at
//! any moment leaves every backup wholly old or wholly new, listed and restorable.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;

struct Keys {
    old: PathBuf,
    new: PathBuf,
    both: PathBuf,
}

fn age_keygen(path: &Path) -> String {
    let r = sh(
        &format!(
            "age-keygen -o {} 2>/dev/null && chmod 600 {0}",
            path.display()
        ),
        Path::new("/"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    public_key(path)
}

/// A signed, trusting environment encrypting to the old key; returns it with both keys.
fn env_with_old_key(mb: usize) -> (Env, Keys) {
    require_tool("age");
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 100);
    if mb > 0 {
        create_bulk(&env.add_sqlite("bulk.db"), mb);
    }
    let keys = Keys {
        old: env.path("old.key"),
        new: env.path("new.key"),
        both: env.path("both.key"),
    };
    let old_recipient = age_keygen(&keys.old);
    age_keygen(&keys.new);
    let both = format!(
        "{}{}",
        fs::read_to_string(&keys.old).unwrap(),
        fs::read_to_string(&keys.new).unwrap()
    );
    fs::write(&keys.both, both).unwrap();
    fs::set_permissions(
        &keys.both,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{old_recipient}\"]\nidentity_file = \"{}\"\n",
        keys.old.display()
    ));
    let signing = env.path("signing.key");
    let r = env.run(&["key", "generate", "--signing", signing.to_str().unwrap()]);
    r.ok();
    env.extra = format!(
        "[signing]\nkey_file = \"{}\"\n[trust]\nsigners = [\"{}\"]\n",
        signing.display(),
        r.stdout.trim()
    );
    (env, keys)
}

/// Switch the config to the new recipient, with both identities to read what is there.
fn rotate(env: &mut Env, keys: &Keys) {
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n",
        public_key(&keys.new),
        keys.both.display()
    ));
}

fn archives(env: &Env) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(env.store())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".age"))
        .collect();
    out.sort();
    out
}

fn age_opens(key: &Path, archive: &Path) -> bool {
    sh(
        &format!(
            "age -d -i {} {} > /dev/null",
            key.display(),
            archive.display()
        ),
        Path::new("/"),
    )
    .code
        == 0
}

#[test]
fn rekey_moves_every_backup_to_the_new_key_and_the_old_one_opens_nothing() {
    let (mut env, keys) = env_with_old_key(0);
    env.backup();
    env.backup();
    for a in archives(&env) {
        assert!(age_opens(&keys.old, &a));
    }
    rotate(&mut env, &keys);
    let r = env.run(&["--json", "rekey", "--all"]);
    r.ok();
    let report = r.json();
    assert_eq!(report["rekeyed"].as_array().unwrap().len(), 2, "{report:#}");

    let stored = archives(&env);
    assert_eq!(stored.len(), 2, "old archives left: {stored:?}");
    for a in &stored {
        assert!(
            !age_opens(&keys.old, a),
            "the old key still opens {}",
            a.display()
        );
        assert!(
            age_opens(&keys.new, a),
            "the new key cannot open {}",
            a.display()
        );
    }
    for b in env.list() {
        assert_eq!(b["untrusted"], serde_json::Value::Null, "{b:#}");
    }
    // Only the new identity is needed now.
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n",
        public_key(&keys.new),
        keys.new.display()
    ));
    env.run(&["verify", "--all"]).ok();
    let out = env.path("out");
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&out.join("auth.db")), 100);

    // Already done: skipped, and said so.
    let r = env.run(&["--json", "rekey", "--all"]);
    r.ok();
    let skipped = r.json()["skipped"].as_array().unwrap().clone();
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0]["detail"]
        .as_str()
        .unwrap()
        .contains("already encrypted"));
}

#[test]
fn a_reader_between_the_new_signature_and_the_new_sidecar_sees_a_whole_backup() {
    let (mut env, keys) = env_with_old_key(0);
    let id = env.backup();
    let sidecar = env.store().join(format!("{id}.json"));
    let old_sidecar = fs::read(&sidecar).unwrap();
    let old_archive = archives(&env).remove(0);
    let old_bytes = fs::read(&old_archive).unwrap();
    rotate(&mut env, &keys);
    env.run(&["rekey", &id]).ok();
    // Put the world back as a rekey killed between its two puts leaves it: the new signature
    // and new archive in place, the old sidecar and old archive too, the new sidecar staged.
    let new_sidecar = fs::read(&sidecar).unwrap();
    fs::create_dir_all(env.store().join("tmp")).unwrap();
    fs::write(
        env.store().join(format!("tmp/{id}.json.rekey")),
        &new_sidecar,
    )
    .unwrap();
    fs::write(&sidecar, &old_sidecar).unwrap();
    fs::write(&old_archive, &old_bytes).unwrap();

    env.run(&["verify", &id]).ok();
    let listed = env.list();
    assert_eq!(listed.len(), 1);
    assert!(listed[0]["untrusted"].is_null(), "{:#}", listed[0]);

    // The next locked run finishes the job.
    env.run(&["rekey", "--all"]).ok();
    assert_eq!(fs::read(&sidecar).unwrap(), new_sidecar);
    assert!(!env.store().join(format!("tmp/{id}.json.rekey")).exists());
    assert_eq!(archives(&env).len(), 1, "{:?}", archives(&env));
    env.run(&["verify", "--all"]).ok();
}

#[test]
fn kill_9_during_rekey_leaves_each_backup_wholly_old_or_new() {
    let (mut env, keys) = env_with_old_key(6);
    for _ in 0..3 {
        env.backup();
    }
    rotate(&mut env, &keys);
    for delay_ms in [150, 400, 800, 1300, 2000] {
        let child = env.spawn(&["rekey", "--all"]);
        kill_after(child, Duration::from_millis(delay_ms));
        // Readable with either key: every backup listed, trusted and restorable.
        let listed = env.list();
        assert_eq!(
            listed.len(),
            3,
            "after a kill at {delay_ms} ms: {listed:#?}"
        );
        for b in &listed {
            assert!(b["untrusted"].is_null(), "at {delay_ms} ms: {b:#}");
            assert!(b["damage"].is_null(), "at {delay_ms} ms: {b:#}");
        }
        let r = env.run(&["verify", "--all"]);
        assert_eq!(r.code, 0, "after a kill at {delay_ms} ms: {}", r.stderr);
    }
    env.run(&["rekey", "--all"]).ok();
    let stored = archives(&env);
    assert_eq!(stored.len(), 3, "{stored:?}");
    for a in &stored {
        assert!(!age_opens(&keys.old, a), "{}", a.display());
    }
    env.run(&["verify", "--all"]).ok();
}
