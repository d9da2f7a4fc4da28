//! Nothing lost, nothing laundered: litevault's own upkeep never destroys or vouches for what it
//! has not verified. Each test is one case a hostile campaign reproduced (prune deleting every
//! good backup, a lost sidecar costing a chain, a planted staged sidecar rolled forward, rekey
//! re-signing forgeries, another host's backups passing as this host's, a clock step making an
//! unrestorable "success", exit codes breaking their promise, copy not comparing), run against
//! the built binary.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;

fn ids_listed(env: &Env) -> Vec<String> {
    env.list()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

fn standing_of(env: &Env, id: &str) -> String {
    env.list()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed"))["standing"]
        .as_str()
        .unwrap()
        .to_string()
}

fn archive_of(env: &Env, id: &str) -> PathBuf {
    let sidecar: Value =
        serde_json::from_slice(&fs::read(env.store().join(format!("{id}.json"))).unwrap()).unwrap();
    env.store()
        .join(sidecar["archive"]["object"].as_str().unwrap())
}

fn truncate(path: &Path) {
    let len = fs::metadata(path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len / 2).unwrap();
}

/// Restore `id` into a fresh folder and return the ledger's row count there.
fn restored_rows(env: &Env, id: &str, db: &str) -> i64 {
    let out = env.path(&format!("restored-{id}"));
    env.run(&["restore", id, "--to", out.to_str().unwrap()])
        .ok();
    check_ledger(&out.join(db))
}

fn ledger_env(rows: i64) -> (Env, PathBuf) {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", rows);
    (env, db)
}

/// Append `n` ledger rows to a ledger that holds `from` rows.
fn add_rows(db: &Path, from: i64, n: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    for k in from + 1..=from + n {
        ledger_step(&conn, k);
    }
}

// ---- 1. prune counts only good backups ------------------------------------------------------

/// With `keep_last = 1`, three backups of a ledger of 10, 15 and 20 rows: (old, good, newest).
fn three_backups(env: &mut Env, db: &Path) -> (String, String, String) {
    env.extra = "[retention]\nkeep_last = 1\n".into();
    let old = env.backup();
    add_rows(db, 10, 5);
    let good = env.backup();
    add_rows(db, 15, 5);
    (old, good, env.backup())
}

#[test]
fn prune_never_counts_a_damaged_newest_backup_and_keeps_the_newest_good_one() {
    let (mut env, db) = ledger_env(10);
    let (old, good, newest) = three_backups(&mut env, &db);
    truncate(&archive_of(&env, &newest));

    let r = env.run(&["--json", "prune"]);
    r.code(4);
    // The rule counted the good backups only: the newest good one is kept, the older deleted,
    // and the damaged one is left for a person, named.
    assert!(r.stderr.contains(&newest), "{}", r.stderr);
    let mut left = ids_listed(&env);
    left.sort();
    let mut want = vec![good.clone(), newest.clone()];
    want.sort();
    assert_eq!(left, want, "old {old} should be the only deletion");
    assert_eq!(standing_of(&env, &newest), "damaged");
    assert_eq!(restored_rows(&env, "latest", "a.db"), 15);
}

#[test]
fn prune_reads_the_newest_backup_before_deleting_and_a_flipped_byte_makes_it_damaged() {
    let (mut env, db) = ledger_env(10);
    let (old, good, newest) = three_backups(&mut env, &db);
    // Same size: only reading the archive finds it.
    let archive = archive_of(&env, &newest);
    let mut bytes = fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    fs::write(&archive, bytes).unwrap();

    let dry = env.run(&["prune", "--dry-run"]);
    dry.code(4).stderr_has(&newest);
    assert!(
        dry.stdout.contains(&format!("would delete {old}")),
        "{}",
        dry.stdout
    );
    assert!(
        !dry.stdout.contains(&format!("would delete {good}")),
        "{}",
        dry.stdout
    );
    env.run(&["prune"]).code(4);
    let mut left = ids_listed(&env);
    left.sort();
    let mut want = vec![good.clone(), newest.clone()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(restored_rows(&env, &good, "a.db"), 15);
}

#[test]
fn an_unreadable_sidecar_keeps_everything_older_it_may_build_on() {
    let (mut env, db) = ledger_env(10);
    env.incremental = Some("max_chain = 10\n".into());
    // A chain full <- a <- b, then a new full backup: keep_last = 1 would delete the chain.
    let (full, a, b) = three_backups(&mut env, &db);
    add_rows(&db, 20, 2);
    let r = env.run(&["--json", "backup", "--full"]);
    r.ok();
    // b's sidecar is cut short: nobody can say what it builds on.
    truncate(&env.store().join(format!("{b}.json")));
    env.run(&["prune"]).code(4).stderr_has(&b);
    let listed = ids_listed(&env);
    for id in [&full, &a] {
        assert!(
            listed.contains(id),
            "{id}, which an unreadable link may build on, was deleted"
        );
    }
}

#[test]
fn prune_with_no_good_backup_deletes_nothing_and_exits_4() {
    let (mut env, _db) = ledger_env(10);
    env.extra = "[retention]\nkeep_last = 1\n".into();
    let a = env.backup();
    let b = env.backup();
    for id in [&a, &b] {
        truncate(&archive_of(&env, id));
    }
    for args in [&["prune", "--dry-run"][..], &["prune"][..]] {
        env.run(args).code(4).stderr_has("no good backup");
    }
    assert_eq!(ids_listed(&env).len(), 2);
    assert!(archive_of(&env, &a).exists() && archive_of(&env, &b).exists());
}

#[test]
fn a_future_dated_backup_is_reported_and_kept_while_prune_decides_over_the_good_ones() {
    let (mut env, _db) = ledger_env(10);
    env.extra = "[retention]\nkeep_last = 1\n".into();
    let ids: Vec<String> = (0..3).map(|_| env.backup()).collect();
    let sidecar_path = env.store().join(format!("{}.json", ids[0]));
    let mut sidecar: Value = serde_json::from_slice(&fs::read(&sidecar_path).unwrap()).unwrap();
    sidecar["manifest"]["created"] = "2099-01-01T00:00:00Z".into();
    fs::write(&sidecar_path, serde_json::to_vec(&sidecar).unwrap()).unwrap();

    let dry = env.run(&["prune", "--dry-run"]);
    dry.code(1).stderr_has("ahead of this host's clock");
    assert!(dry.stdout.contains(&format!("would delete {}", ids[1])));
    env.run(&["prune"]).code(1);
    let mut left = ids_listed(&env);
    left.sort();
    let mut want = vec![ids[0].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(left, want);
}

// ---- 2. an archive without its sidecar is never deleted -------------------------------------

#[test]
fn a_lost_sidecar_in_a_chain_never_costs_its_archive_and_is_reported() {
    let (mut env, db) = ledger_env(50);
    env.incremental = Some("max_chain = 10\n".into());
    let full = env.backup();
    add_rows(&db, 50, 5);
    let middle = env.backup();
    add_rows(&db, 55, 5);
    let top = env.backup();
    let middle_archive = archive_of(&env, &middle);
    fs::remove_file(env.store().join(format!("{middle}.json"))).unwrap();

    // Neither a backup, nor prune, nor copy deletes the archive whose sidecar was lost.
    env.extra = "[retention]\nkeep_last = 1\n".into();
    let r = env.run(&["--json", "backup", "--full"]);
    assert!(r.stderr.contains("has no sidecar"), "{}", r.stderr);
    env.run(&["prune"]).code(4);
    assert!(middle_archive.exists(), "the archive a chain needs is gone");
    assert_eq!(standing_of(&env, &top), "broken-chain");
    let listed = env.list();
    let top_item = listed.iter().find(|b| b["id"] == top.as_str()).unwrap();
    assert!(
        top_item["damage"]
            .as_str()
            .unwrap()
            .contains("lost its sidecar"),
        "{top_item:#}"
    );
    // verify names it: an integrity finding.
    env.run(&["verify", "--all"])
        .code(4)
        .stderr_has(middle_archive.file_name().unwrap().to_str().unwrap());
    // The full backup was never a candidate for deletion while a kept chain needed it.
    assert!(archive_of(&env, &full).exists());
}

// ---- 3. a planted staged sidecar is never rolled forward ------------------------------------

#[test]
fn a_planted_staged_sidecar_is_never_rolled_forward_by_backup_or_rekey() {
    let (mut env, db) = ledger_env(10);
    env.with_age_key();
    let genuine = env.backup();
    let sidecar_path = env.store().join(format!("{genuine}.json"));
    let before = fs::read(&sidecar_path).unwrap();
    let archive = archive_of(&env, &genuine);

    // The plant points the backup at another archive.
    let mut planted: Value = serde_json::from_slice(&before).unwrap();
    planted["archive"]["object"] = format!("{genuine}.rdeadbeef.tar.zst.age").into();
    fs::create_dir_all(env.store().join("tmp")).unwrap();
    let staged = env.store().join(format!("tmp/{genuine}.json.rekey"));
    fs::write(&staged, serde_json::to_vec(&planted).unwrap()).unwrap();

    add_rows(&db, 10, 3);
    let r = env.run(&["backup"]);
    r.ok().stderr_has("rekey");
    assert_eq!(
        fs::read(&sidecar_path).unwrap(),
        before,
        "backup rewrote a stored sidecar"
    );
    assert!(staged.exists(), "a file in tmp/ is reported and left alone");

    // rekey, with nothing to vouch for the staged file, leaves it and says so.
    let r = env.run(&["rekey", "--all"]);
    assert!(r.stderr.contains("left alone"), "{}", r.stderr);
    assert!(archive.exists() || archive_of(&env, &genuine).exists());
    assert_eq!(restored_rows(&env, &genuine, "a.db"), 10);
}

// ---- 4. rekey never re-signs what nobody vouched for ----------------------------------------

fn signing_key(env: &Env, name: &str) -> (PathBuf, String) {
    let key = env.path(name);
    let r = env.run(&["key", "generate", "--signing", key.to_str().unwrap()]);
    r.ok();
    (key, r.stdout.trim().to_string())
}

#[test]
fn rekey_refuses_unsigned_and_foreign_signed_backups_unless_adopted() {
    let (mut env, db) = ledger_env(10);
    env.with_age_key();
    let unsigned = env.backup();
    let (other, _) = signing_key(&env, "other.key");
    env.extra = format!("[signing]\nkey_file = \"{}\"\n", other.display());
    add_rows(&db, 10, 2);
    let foreign_signed = env.backup();
    // The maintenance host: its own key, no [trust].
    let (mine, mine_public) = signing_key(&env, "mine.key");
    env.extra = format!("[signing]\nkey_file = \"{}\"\n", mine.display());
    add_rows(&db, 12, 2);
    let own = env.backup();
    let sig_of = |id: &str| fs::read(env.store().join(format!("{id}.json.sig"))).ok();
    let (before_unsigned, before_foreign) = (sig_of(&unsigned), sig_of(&foreign_signed));

    let r = env.run(&["--json", "rekey", "--all"]);
    r.code(4);
    let doc = r.json();
    let failed: Vec<&str> = doc["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&unsigned.as_str()) && failed.contains(&foreign_signed.as_str()));
    assert!(!failed.contains(&own.as_str()), "{doc:#}");
    assert!(r.stderr.contains("--adopt"), "{}", r.stderr);
    assert_eq!(
        sig_of(&unsigned),
        before_unsigned,
        "an unsigned backup got signed"
    );
    assert_eq!(
        sig_of(&foreign_signed),
        before_foreign,
        "a foreign signature was replaced"
    );

    // Named with --adopt, the operator vouches: re-encrypted and signed by this host's key.
    let r = env.run(&["rekey", "--adopt", &unsigned]);
    r.ok().stdout_has("adopted");
    env.extra = format!(
        "[signing]\nkey_file = \"{}\"\n[trust]\nsigners = [\"{mine_public}\"]\n",
        mine.display()
    );
    assert_eq!(standing_of(&env, &unsigned), "good");
    assert_eq!(standing_of(&env, &foreign_signed), "untrusted");
}

// ---- 6. another host's backups are foreign everywhere ---------------------------------------

#[test]
fn another_hosts_backups_copied_in_are_foreign_everywhere() {
    let (mut env, db) = ledger_env(10);
    env.extra = "[retention]\nkeep_last = 1\n".into();
    let mine = env.backup();
    // web1: the same data folder, another name, the same destination root.
    let web1 = env.path("web1.toml");
    let text = fs::read_to_string(env.config_path())
        .unwrap()
        .replace("name = \"test-host\"", "name = \"web1\"")
        .replace(
            &format!("state_dir = \"{}\"", env.state().display()),
            &format!("state_dir = \"{}\"", env.path("state-web1").display()),
        );
    fs::write(&web1, text).unwrap();
    add_rows(&db, 10, 7);
    let r = run_cmd({
        let mut c = std::process::Command::new(BIN);
        c.args(["--json", "--config", web1.to_str().unwrap(), "backup"]);
        c
    });
    r.ok();
    let theirs = r.json()["id"].as_str().unwrap().to_string();
    for f in fs::read_dir(env.path("backups/web1")).unwrap().flatten() {
        if f.file_type().unwrap().is_file() {
            fs::copy(f.path(), env.store().join(f.file_name())).unwrap();
        }
    }

    assert_eq!(standing_of(&env, &theirs), "foreign");
    // latest is this host's own, prune neither counts nor deletes the foreign one...
    assert_eq!(restored_rows(&env, "latest", "a.db"), 10);
    let dry = env.run(&["prune", "--dry-run"]);
    dry.code(4);
    assert!(
        !dry.stdout.contains(&format!("would delete {mine}")),
        "{}",
        dry.stdout
    );
    assert!(
        !dry.stdout.contains(&format!("would delete {theirs}")),
        "{}",
        dry.stdout
    );
    // ...show says so, and it is restorable only by its id, with a warning.
    env.run(&["show", &theirs]).code(4).stderr_has("web1");
    let out = env.path("theirs");
    let r = env.run(&["restore", &theirs, "--to", out.to_str().unwrap()]);
    r.ok().stderr_has("named by its id");
    assert_eq!(check_ledger(&out.join("a.db")), 17);
}

// ---- 7. the clock ---------------------------------------------------------------------------

#[test]
fn a_clock_step_back_makes_a_full_backup_never_an_unrestorable_incremental() {
    require_tool("faketime");
    let (mut env, db) = ledger_env(20);
    env.incremental = Some("max_chain = 10\n".into());
    let first = env.backup();
    add_rows(&db, 20, 4);
    // The clock steps back a day: the parent is not older than now.
    let mut cmd = std::process::Command::new(require_tool("faketime"));
    cmd.arg("-f").arg("-1d").arg(BIN);
    cmd.args([
        "--json",
        "--config",
        env.config_path().to_str().unwrap(),
        "backup",
    ]);
    let r = run_cmd(cmd);
    r.ok().stderr_has("ahead of this host's clock");
    let doc = r.json();
    assert_eq!(doc["kind"], "full", "{doc:#}");
    assert!(
        doc["full_because"].as_str().unwrap().contains("clock"),
        "{doc:#}"
    );
    let stepped = doc["id"].as_str().unwrap().to_string();
    assert!(
        stepped < first,
        "ids sort in time order: {stepped} vs {first}"
    );
    // Both restore; neither is a chain that cannot be.
    assert_eq!(restored_rows(&env, &stepped, "a.db"), 24);
    assert_eq!(restored_rows(&env, &first, "a.db"), 20);
}

// ---- 8. exit codes and headlines ------------------------------------------------------------

#[test]
fn rekey_of_a_damaged_archive_exits_4_like_copy() {
    let (mut env, _db) = ledger_env(10);
    let old = env.with_age_key();
    let id = env.backup();
    // A new recipient, so there is work to do; the old identity still opens the backup.
    let new = env.path("new.key");
    sh(
        &format!("age-keygen -o {} 2>/dev/null", new.display()),
        env.root(),
    );
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n",
        public_key(&new),
        old.display()
    ));
    let archive = archive_of(&env, &id);
    let mut bytes = fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&archive, bytes).unwrap();
    env.run(&["rekey", &id]).code(4).stderr_has("damaged");
}

#[test]
fn an_oversized_sidecar_is_damage_exit_4() {
    let (env, _db) = ledger_env(10);
    let id = env.backup();
    let sidecar = env.store().join(format!("{id}.json"));
    // A sparse 100 MB file: no disk, but far over what any sidecar is.
    fs::OpenOptions::new()
        .write(true)
        .open(&sidecar)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    env.run(&["verify", "--all"]).code(4);
    env.run(&["show", &id]).code(4);
    env.run(&["restore", &id, "--to", env.path("out").to_str().unwrap()])
        .code(4);
}

#[test]
fn restore_latest_with_every_backup_untrusted_says_so_and_exits_4() {
    let (mut env, _db) = ledger_env(10);
    env.backup();
    let (_, public) = signing_key(&env, "trusted.key");
    env.extra = format!("[trust]\nsigners = [\"{public}\"]\n");
    env.run(&[
        "restore",
        "latest",
        "--to",
        env.path("out").to_str().unwrap(),
    ])
    .code(4)
    .stderr_has("no trusted backup");
}

#[test]
fn restore_latest_with_the_chains_full_backup_missing_says_so_and_exits_4() {
    let (mut env, db) = ledger_env(20);
    env.incremental = Some("max_chain = 10\n".into());
    let full = env.backup();
    add_rows(&db, 20, 2);
    env.backup();
    for name in [format!("{full}.json"), format!("{full}.json.sig")] {
        let _ = fs::remove_file(env.store().join(name));
    }
    fs::remove_file(archive_of_any(&env, &full)).unwrap();
    env.run(&[
        "restore",
        "latest",
        "--to",
        env.path("out").to_str().unwrap(),
    ])
    .code(4)
    .stderr_has("every chain is broken");
}

fn archive_of_any(env: &Env, id: &str) -> PathBuf {
    archive_in(&env.store(), id)
}

/// The archive object of backup `id` in namespace folder `ns`, sidecar or not.
fn archive_in(ns: &Path, id: &str) -> PathBuf {
    fs::read_dir(ns)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(id) && n.contains(".tar")
        })
        .unwrap()
}

// ---- 9. copy compares what is already there --------------------------------------------------

#[test]
fn copy_compares_a_same_named_backup_on_the_target_and_never_overwrites_it() {
    let (mut env, _db) = ledger_env(10);
    env.destinations
        .push(dest("second", &format!("file://{}/second", "__ROOT__")));
    fs::create_dir(env.path("second")).unwrap();
    let id = env.backup();
    let on_b = env
        .path("second/test-host")
        .join(archive_of(&env, &id).file_name().unwrap().to_str().unwrap());
    // Same size, one byte flipped: only reading it finds it.
    let mut bytes = fs::read(&on_b).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&on_b, &bytes).unwrap();

    let r = env.run(&["copy", "--from", "local", "--to", "second"]);
    r.code(4).stderr_has(&id).stderr_has("never overwrites");
    assert_eq!(
        fs::read(&on_b).unwrap(),
        bytes,
        "the target's object was overwritten"
    );

    // An untouched copy is found the same and reported as present.
    bytes[last] ^= 1;
    fs::write(&on_b, &bytes).unwrap();
    env.run(&["--json", "copy", "--from", "local", "--to", "second"])
        .ok()
        .stdout_has("present");
}

// ---- the same on S3 and SFTP, where objects are written differently -------------------------

/// Three backups on `url` (whose namespace folder on disk is `ns`): the oldest loses its
/// sidecar, the newest is cut short. Prune keeps the newest good backup, deletes nothing else
/// of the good ones it needs, never touches the archive without a sidecar, and exits 4.
fn remote_prune_keeps_what_it_cannot_vouch_for(mut env: Env, ns: &Path) {
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    let (lost, good, newest) = three_backups(&mut env, &db);
    let orphan = archive_in(ns, &lost);
    fs::remove_file(ns.join(format!("{lost}.json"))).unwrap();
    truncate(&archive_in(ns, &newest));

    let r = env.run(&["prune"]);
    r.code(4).stderr_has(&newest).stderr_has("has no sidecar");
    assert!(
        orphan.exists(),
        "an archive without its sidecar was deleted"
    );
    let listed = ids_listed(&env);
    assert!(
        listed.contains(&good) && listed.contains(&newest),
        "{listed:?}"
    );
    env.run(&["backup"]).ok().stderr_has("has no sidecar");
    assert!(
        orphan.exists(),
        "backup deleted an archive without its sidecar"
    );
    assert_eq!(restored_rows(&env, &good, "a.db"), 15);
}

#[test]
fn s3_prune_and_backup_keep_what_they_cannot_vouch_for() {
    let tmp = tempfile::tempdir().unwrap();
    let server = crate::servers::S3Server::start(tmp.path(), &["bkt"]);
    let mut env = Env::new();
    env.destinations = vec![dest(
        "remote",
        &format!(
            "s3://bkt/backups?endpoint={}&region=us-east-1",
            server.endpoint()
        ),
    )];
    env.vars = vec![
        (
            "AWS_ACCESS_KEY_ID".into(),
            crate::servers::S3_ACCESS_KEY.into(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            crate::servers::S3_SECRET_KEY.into(),
        ),
    ];
    remote_prune_keeps_what_it_cannot_vouch_for(env, &tmp.path().join("bkt/backups/test-host"));
}

#[test]
fn sftp_prune_and_backup_keep_what_they_cannot_vouch_for() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = crate::servers::SshServer::start(&tmp.path().join("sshd"));
    server.trust();
    let store = tmp.path().join("store");
    fs::create_dir(&store).unwrap();
    let mut env = Env::new();
    env.destinations = vec![format!(
        "{}key = \"{}\"\n",
        dest("remote", &server.url(&store)),
        server.client_key.display()
    )];
    remote_prune_keeps_what_it_cannot_vouch_for(env, &store.join("test-host"));
}
