//! Owners and modes: a backup records each database's, file's and folder's owner, group and
//! mode (in the manifest and the tar headers); `restore --in-place` gives each restored file and
//! folder those of what it replaces (else what was recorded), so a service that runs as its own
//! user can open its database again; `restore --to` stays private unless `--same-owner`.
//! These tests run as root (they chown to `nobody` and others).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;
/// A uid and gid no account has: a file owned by "another user" that is not `nobody`.
const OTHER: u32 = 4321;

/// (uid, gid, whole mode) of `p`, never through a link.
fn owner(p: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn give(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(owner(p), (uid, gid, mode), "{}", p.display());
}

fn add(env: &mut Env, name: &str, path: &Path, kind: &str) {
    env.sources.push(format!(
        "[[source]]\nname = \"{name}\"\npath = \"{}\"\nkind = \"{kind}\"\n",
        path.display()
    ));
}

/// An environment whose folders `nobody` can traverse (the test's own temporary folder is
/// private to root), with the service's folder `data/svc` owned by nobody, 0750.
fn service_env() -> (Env, PathBuf) {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests chown files and must run as root"
    );
    let env = Env::new();
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(env.path("data"), fs::Permissions::from_mode(0o755)).unwrap();
    let svc = env.path("data/svc");
    fs::create_dir(&svc).unwrap();
    give(&svc, NOBODY, NOGROUP, 0o750);
    (env, svc)
}

/// Run `sqlite3 DB SQL` as nobody:nogroup (no other groups), as the service would.
fn sqlite_as_nobody(db: &Path, sql: &str) -> Run {
    let mut cmd = Command::new(require_tool("setpriv"));
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(require_tool("sqlite3"))
        .arg(db)
        .arg(sql);
    run_cmd(cmd)
}

fn sidecar(env: &Env, id: &str) -> serde_json::Value {
    let text = fs::read_to_string(env.store().join(format!("{id}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn in_place_restore_gives_files_and_folders_back_to_their_owners() {
    let (mut env, svc) = service_env();
    // The service's database: nobody:nogroup 0640, in its folder (nobody, 0750).
    let db = svc.join("app.db");
    create_ledger(&db, "WAL", 50);
    give(&db, NOBODY, NOGROUP, 0o640);
    add(&mut env, "app.db", &db, "sqlite");
    // A config file owned by another user, 0644.
    let conf = svc.join("app.conf");
    fs::write(&conf, "v1\n").unwrap();
    give(&conf, OTHER, OTHER, 0o644);
    add(&mut env, "app.conf", &conf, "file");
    // A config folder (nobody, 0750) with a subfolder and a private key.
    let confd = svc.join("conf.d");
    fs::create_dir_all(confd.join("tls")).unwrap();
    fs::write(confd.join("tls/key.pem"), "key v1\n").unwrap();
    give(&confd.join("tls/key.pem"), NOBODY, NOGROUP, 0o600);
    give(&confd.join("tls"), OTHER, NOGROUP, 0o2710);
    give(&confd, NOBODY, NOGROUP, 0o750);
    add(&mut env, "conf.d", &confd, "dir");
    env.with_age_key();
    let id = env.backup();

    // The live state moves on; the config file changes hands since the backup: what it
    // replaces wins over what was recorded.
    check_ledger(&db);
    fs::write(&conf, "v2\n").unwrap();
    give(&conf, NOBODY, OTHER, 0o664);
    fs::write(confd.join("tls/key.pem"), "key v2\n").unwrap();

    env.run(&["restore", &id, "--in-place"]).ok();
    assert_eq!(fs::read_to_string(&conf).unwrap(), "v1\n", "not restored");
    assert_eq!(
        fs::read_to_string(confd.join("tls/key.pem")).unwrap(),
        "key v1\n",
        "not restored"
    );
    assert_eq!(owner(&db), (NOBODY, NOGROUP, 0o640), "the database");
    assert_eq!(
        owner(&svc),
        (NOBODY, NOGROUP, 0o750),
        "the database's folder"
    );
    assert_eq!(owner(&conf), (NOBODY, OTHER, 0o664), "the config file");
    assert_eq!(owner(&confd), (NOBODY, NOGROUP, 0o750), "the config folder");
    assert_eq!(owner(&confd.join("tls")), (OTHER, NOGROUP, 0o2710), "tls/");
    assert_eq!(
        owner(&confd.join("tls/key.pem")),
        (NOBODY, NOGROUP, 0o600),
        "tls/key.pem"
    );
    // Nothing litevault opened (its check after the restore) left a journal the service
    // cannot use.
    for suffix in ["-wal", "-shm", "-journal"] {
        let j = PathBuf::from(format!("{}{suffix}", db.display()));
        if j.exists() {
            assert_eq!(owner(&j).0, NOBODY, "{}", j.display());
        }
    }

    // The service, as its own user, opens its database, checks it and writes to it.
    let r = sqlite_as_nobody(
        &db,
        "PRAGMA integrity_check; CREATE TABLE service_was_here(x); INSERT INTO service_was_here VALUES (1);",
    );
    r.ok().stdout_has("ok");
    assert_eq!(check_ledger(&db), 50);
}

#[test]
fn a_file_or_folder_with_no_live_counterpart_takes_what_the_backup_recorded() {
    let (mut env, svc) = service_env();
    let db = svc.join("app.db");
    create_ledger(&db, "WAL", 20);
    give(&db, NOBODY, NOGROUP, 0o640);
    add(&mut env, "app.db", &db, "sqlite");
    let confd = svc.join("conf.d");
    fs::create_dir_all(confd.join("sub")).unwrap();
    fs::write(confd.join("sub/new.conf"), "recorded\n").unwrap();
    give(&confd.join("sub/new.conf"), OTHER, NOGROUP, 0o604);
    give(&confd.join("sub"), OTHER, OTHER, 0o751);
    give(&confd, NOBODY, NOGROUP, 0o755);
    add(&mut env, "conf.d", &confd, "dir");
    let id = env.backup();

    // Gone from the live server since: the database, and a folder with its file.
    fs::remove_file(&db).unwrap();
    fs::remove_dir_all(confd.join("sub")).unwrap();

    env.run(&["restore", &id, "--in-place", "--no-safety-backup"])
        .ok();
    assert_eq!(owner(&db), (NOBODY, NOGROUP, 0o640), "the database");
    assert_eq!(owner(&confd), (NOBODY, NOGROUP, 0o755), "the config folder");
    assert_eq!(owner(&confd.join("sub")), (OTHER, OTHER, 0o751), "sub/");
    assert_eq!(
        owner(&confd.join("sub/new.conf")),
        (OTHER, NOGROUP, 0o604),
        "sub/new.conf"
    );
    sqlite_as_nobody(&db, "PRAGMA integrity_check")
        .ok()
        .stdout_has("ok");
}

#[test]
fn the_manifest_and_the_tar_headers_record_owner_group_and_mode() {
    let (mut env, svc) = service_env();
    let db = svc.join("app.db");
    create_ledger(&db, "WAL", 10);
    give(&db, OTHER, NOGROUP, 0o644);
    add(&mut env, "app.db", &db, "sqlite");
    let confd = svc.join("conf.d");
    fs::create_dir(&confd).unwrap();
    fs::write(confd.join("a.conf"), "a\n").unwrap();
    give(&confd.join("a.conf"), NOBODY, OTHER, 0o640);
    give(&confd, OTHER, NOBODY, 0o2750);
    add(&mut env, "conf.d", &confd, "dir");
    env.extra = "[compression]\nalgorithm = \"none\"\n".into();
    let id = env.backup();

    let doc = sidecar(&env, &id);
    let manifest = &doc["manifest"];
    let database = &manifest["databases"][0];
    assert_eq!(database["path"], "app.db");
    assert_eq!(database["mode"], 0o644, "{database}");
    assert_eq!(database["uid"], OTHER, "{database}");
    assert_eq!(database["gid"], NOGROUP, "{database}");
    let file = |path: &str| {
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} is not in {manifest}"))
            .clone()
    };
    let f = file("app.db");
    assert_eq!(
        (&f["mode"], &f["uid"], &f["gid"]),
        (&0o644.into(), &OTHER.into(), &NOGROUP.into()),
        "{f}"
    );
    let f = file("conf.d/a.conf");
    assert_eq!(
        (&f["mode"], &f["uid"], &f["gid"]),
        (&0o640.into(), &NOBODY.into(), &OTHER.into()),
        "{f}"
    );
    let dirs = manifest["dirs"].as_array().expect("folders are recorded");
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert_eq!(dirs[0]["path"], "conf.d");
    assert_eq!(
        (&dirs[0]["mode"], &dirs[0]["uid"], &dirs[0]["gid"]),
        (&0o2750.into(), &OTHER.into(), &NOBODY.into())
    );

    // As tar would have it.
    let archive = fs::File::open(env.store().join(format!("{id}.tar"))).unwrap();
    let mut tar = tar::Archive::new(archive);
    let mut seen = Vec::new();
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        let path = entry.path().unwrap().display().to_string();
        let want = match path.as_str() {
            "app.db" => (OTHER as u64, NOGROUP as u64, 0o644),
            "conf.d/a.conf" => (NOBODY as u64, OTHER as u64, 0o640),
            _ => continue,
        };
        let got = (h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap());
        assert_eq!(got, want, "{path}");
        seen.push(path);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn restore_to_stays_private_unless_same_owner() {
    let (mut env, svc) = service_env();
    let db = svc.join("app.db");
    create_ledger(&db, "WAL", 10);
    give(&db, NOBODY, NOGROUP, 0o640);
    add(&mut env, "app.db", &db, "sqlite");
    let confd = svc.join("conf.d");
    fs::create_dir(&confd).unwrap();
    fs::write(confd.join("a.conf"), "a\n").unwrap();
    give(&confd.join("a.conf"), OTHER, NOGROUP, 0o644);
    give(&confd, NOBODY, NOGROUP, 0o750);
    add(&mut env, "conf.d", &confd, "dir");
    let id = env.backup();

    // By default: private, owned by whoever restores (root here).
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(owner(&out.join("app.db")), (0, 0, 0o600));
    assert_eq!(owner(&out.join("conf.d")), (0, 0, 0o700));
    assert_eq!(owner(&out.join("conf.d/a.conf")), (0, 0, 0o600));
    assert_eq!(owner(&out), (0, 0, 0o700));

    // --same-owner: what the backup recorded; DIR itself, made by the restore, stays private,
    // and an existing DIR keeps its owner and mode.
    let same = env.path("same");
    fs::create_dir(&same).unwrap();
    give(&same, 0, 0, 0o755);
    env.run(&[
        "restore",
        &id,
        "--to",
        same.to_str().unwrap(),
        "--same-owner",
    ])
    .ok();
    assert_eq!(owner(&same.join("app.db")), (NOBODY, NOGROUP, 0o640));
    assert_eq!(owner(&same.join("conf.d")), (NOBODY, NOGROUP, 0o750));
    assert_eq!(owner(&same.join("conf.d/a.conf")), (OTHER, NOGROUP, 0o644));
    assert_eq!(owner(&same), (0, 0, 0o755), "an existing DIR changed");

    // Only with --to.
    env.run(&["restore", &id, "--in-place", "--same-owner"])
        .code(2)
        .stderr_has("--same-owner");
}

#[test]
fn same_owner_is_refused_when_not_root() {
    // A world-readable setup run by nobody: config, key-less store, its own state folder.
    let (mut env, svc) = service_env();
    let conf = svc.join("app.conf");
    fs::write(&conf, "v1\n").unwrap();
    give(&conf, NOBODY, NOGROUP, 0o644);
    add(&mut env, "app.conf", &conf, "file");
    let state = svc.join("state");
    fs::create_dir(&state).unwrap();
    give(&state, NOBODY, NOGROUP, 0o700);
    env.state_dir = Some(state);
    let store = env.path("backups");
    fs::create_dir_all(&store).unwrap();
    give(&store, NOBODY, NOGROUP, 0o700);
    env.write_config();
    give(&env.config_path(), 0, 0, 0o644);
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new(require_tool("setpriv"));
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", BIN])
            .arg("--config")
            .arg(env.config_path())
            .args(args);
        run_cmd(cmd)
    };
    let r = as_nobody(&["--json", "backup"]);
    r.ok();
    let id = r.json()["id"].as_str().unwrap().to_string();
    let out = svc.join("out");
    as_nobody(&[
        "restore",
        &id,
        "--to",
        out.to_str().unwrap(),
        "--same-owner",
    ])
    .code(2)
    .stderr_has("--same-owner")
    .stderr_has("root");
    assert!(!out.exists(), "a refused restore wrote something");
    // Without it, nobody restores its own private copy.
    as_nobody(&["restore", &id, "--to", out.to_str().unwrap()]).ok();
    assert_eq!(owner(&out.join("app.conf")), (NOBODY, NOGROUP, 0o600));
}
