//! Where backups go and what `check` looks at before cron does: a `file://` or `sftp://`
//! destination whose folder is missing (an unmounted disk, here or on the server) is an error,
//! never created unless `create = true`; a relative `file://` URL is a config error; `check`
//! opens every source as a backup would and creates nothing; a `prune --dry-run` is recorded as
//! a dry run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;
use crate::servers::SshServer;

fn env_with_db() -> Env {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 20);
    env
}

#[test]
fn a_missing_file_root_is_an_error_naming_it_and_nothing_is_created() {
    let mut env = env_with_db();
    env.destinations = vec![dest("usb", "file://__ROOT__/mnt/usb")];
    // A state folder that does not exist yet: check must not make it either.
    env.state_dir = Some(env.path("fresh-state"));
    let root = env.path("mnt/usb");

    let r = env.run(&["check"]);
    r.code(1)
        .stderr_has("usb")
        .stderr_has(&root.display().to_string())
        .stderr_has("does not exist")
        .stderr_has("create = true");
    r.stdout_has("state_dir").stdout_has("does not exist yet");
    assert!(!env.path("mnt").exists(), "check created the destination");
    assert!(!env.path("fresh-state").exists(), "check created state_dir");

    let r = env.run(&["backup"]);
    r.code(1)
        .stderr_has("usb")
        .stderr_has(&root.display().to_string())
        .stderr_has("mkdir -p");
    assert!(!env.path("mnt").exists(), "backup created the destination");
    // The failed backup made state_dir, as every recorded run does.
    fs::remove_dir_all(env.path("fresh-state")).unwrap();

    // Inside a root that exists, check leaves no namespace folder behind; backup makes it.
    fs::create_dir_all(&root).unwrap();
    env.run(&["check"]).ok();
    assert!(!root.join("test-host").exists(), "check left the namespace");
    assert!(!env.path("fresh-state").exists(), "check created state_dir");
    env.backup();
    assert!(root.join("test-host").is_dir());
}

#[test]
fn create_true_makes_the_missing_root_on_the_first_backup_not_on_check() {
    let mut env = env_with_db();
    env.destinations = vec![format!(
        "{}create = true\n",
        dest("usb", "file://__ROOT__/mnt/usb")
    )];
    let root = env.path("mnt/usb");
    env.run(&["check"])
        .ok()
        .stdout_has("does not exist yet; the first backup creates it");
    assert!(!env.path("mnt").exists(), "check created the destination");
    env.backup();
    assert!(root.join("test-host").is_dir());
    assert_eq!(env.count_on("usb"), 1);

    // Only file:// and sftp:// destinations know the key.
    env.destinations = vec![format!(
        "{}create = true\nregion = \"us-east-1\"\n",
        dest("s3", "s3://bkt/p")
    )];
    env.run(&["check"])
        .code(2)
        .stderr_has("destination[0].create");
}

/// A private sshd and an environment whose only destination, `nas`, is the folder `root` on
/// it (plus `extra` keys in its table).
fn sftp_env(tmp: &Path, root: &Path, extra: &str) -> (SshServer, Env) {
    let mut server = SshServer::start(&tmp.join("sshd"));
    server.trust();
    let mut env = env_with_db();
    env.destinations = vec![format!(
        "{}key = \"{}\"\n{extra}",
        dest("nas", &server.url(root)),
        server.client_key.display()
    )];
    (server, env)
}

#[test]
fn a_missing_sftp_root_is_an_error_naming_it_and_nothing_is_created_on_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    // The server's side: a mount point whose disk is not mounted.
    let mnt = tmp.path().join("mnt");
    let root = mnt.join("nas");
    let (_server, env) = sftp_env(tmp.path(), &root, "");
    let shown = root.display().to_string();

    let r = env.run(&["check"]);
    r.code(1)
        .stderr_has("destination nas")
        .stderr_has(&shown)
        .stderr_has("does not exist")
        .stderr_has("create = true");
    assert!(!mnt.exists(), "check created the destination's folder");

    let r = env.run(&["backup"]);
    r.code(1)
        .stderr_has("destination nas")
        .stderr_has(&shown)
        .stderr_has("does not exist")
        .stderr_has("hint:")
        .stderr_has(&format!("mkdir -p {shown}"));
    assert!(!mnt.exists(), "backup created the destination's folder");
    // Reading makes nothing either.
    env.run(&["list"]).code(1).stderr_has(&shown);
    assert!(!mnt.exists(), "list created the destination's folder");

    // Something that is not a folder: named too.
    fs::create_dir(&mnt).unwrap();
    fs::write(&root, "not a folder\n").unwrap();
    env.run(&["backup"])
        .code(1)
        .stderr_has(&shown)
        .stderr_has("is not a folder");
    assert_eq!(fs::read_to_string(&root).unwrap(), "not a folder\n");
    fs::remove_file(&root).unwrap();

    // Inside a folder that exists, check leaves no namespace folder behind; backup makes it.
    fs::create_dir(&root).unwrap();
    env.run(&["check"])
        .ok()
        .stdout_has("write, read, list and delete work");
    assert!(!root.join("test-host").exists(), "check left the namespace");
    env.backup();
    assert!(root.join("test-host").is_dir());
    assert_eq!(env.count_on("nas"), 1);
}

#[test]
fn create_true_makes_the_missing_sftp_root_on_the_first_backup_not_on_check() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let root = mnt.join("nas");
    let (_server, env) = sftp_env(tmp.path(), &root, "create = true\n");
    env.run(&["check"])
        .ok()
        .stdout_has("does not exist yet; the first backup creates it");
    assert!(!mnt.exists(), "check created the destination's folder");
    env.backup();
    assert!(root.join("test-host").is_dir());
    // Made private, like everything litevault makes there.
    assert_eq!(mode_of(&root), 0o700);
    assert_eq!(env.count_on("nas"), 1);
    env.run(&["verify", "latest"]).ok();
}

#[test]
fn a_relative_file_url_is_a_config_error_naming_the_key_with_the_absolute_form() {
    let mut env = env_with_db();
    env.destinations = vec![dest("usb", "file://var/backups/litevault")];
    for cmd in ["check", "backup"] {
        env.run(&[cmd])
            .code(2)
            .stderr_has("destination[0].url")
            .stderr_has("\"usb\"")
            .stderr_has("relative")
            .stderr_has("file:///var/backups/litevault");
    }
    assert!(!env.path("var").exists());
}

#[test]
fn check_reports_each_source_as_a_backup_would_read_it() {
    let mut env = env_with_db();
    let conf = env.add_source("app.conf", "file", "");
    fs::write(&conf, "listen = 1812\n").unwrap();
    let r = env.run(&["check"]);
    r.ok()
        .stdout_has("source auth.db")
        .stdout_has("journal_mode wal")
        .stdout_has("page_size 4096")
        .stdout_has("source app.conf");
    let doc = env.run(&["--json", "check"]).ok().json();
    assert_eq!(doc["sources"].as_array().unwrap().len(), 2, "{doc:#}");

    // A mistyped path: exit 2, naming the source and the file.
    let typo = env.path("data/auht.db");
    env.sources.push(format!(
        "[[source]]\nname = \"typo\"\npath = \"{}\"\nkind = \"sqlite\"\n",
        typo.display()
    ));
    env.run(&["check"])
        .code(2)
        .stderr_has("source typo")
        .stderr_has(&typo.display().to_string())
        .stderr_has("does not exist")
        .stderr_has("hint");
    env.sources.pop();

    // Not a database: exit 1, naming it.
    let junk = env.add_sqlite("junk.db");
    fs::write(&junk, "this is not a database\n".repeat(400)).unwrap();
    let r = env.run(&["--json", "check"]);
    r.code(1)
        .stderr_has("source junk.db")
        .stderr_has(&junk.display().to_string())
        .stderr_has("not a database");
    let doc = r.json();
    let bad: Vec<_> = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "{doc:#}");
    assert!(doc["destinations"][0]["ok"] == true, "{doc:#}");
}

/// A world-traversable folder with a config whose state and destination belong to `nobody`,
/// so only the sources can fail a check run as `nobody`.
fn as_nobody(setup: impl FnOnce(&Path) -> PathBuf) -> (tempfile::TempDir, Run, PathBuf) {
    let setpriv = require_tool("setpriv");
    let base = tempfile::Builder::new()
        .prefix("litevault-nobody-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = base.path();
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.join("data");
    fs::create_dir(&data).unwrap();
    let db = setup(&data);
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
            "name = \"h\"\nstate_dir = \"{r}/state\"\n[[source]]\nname = \"auth.db\"\npath = \"{db}\"\nkind = \"sqlite\"\n[[destination]]\nname = \"local\"\nurl = \"file://{r}/backups\"\n",
            r = root.display(),
            db = db.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        BIN,
        "--json",
        "--config",
    ])
    .arg(&config)
    .arg("check");
    let r = run_cmd(cmd);
    (base, r, db)
}

fn source_probe(r: &Run) -> serde_json::Value {
    let doc = r.json();
    assert_eq!(doc["destinations"][0]["ok"], true, "{doc:#}");
    doc["sources"][0].clone()
}

#[test]
fn check_as_a_user_who_cannot_read_the_database_fails_naming_it() {
    let (_base, r, db) = as_nobody(|data| {
        let db = data.join("auth.db");
        create_ledger(&db, "DELETE", 10);
        fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(data, fs::Permissions::from_mode(0o755)).unwrap();
        db
    });
    r.code(1)
        .stderr_has("source auth.db")
        .stderr_has(&db.display().to_string())
        .stderr_has("permission denied");
    let probe = source_probe(&r);
    assert_eq!(probe["ok"], false);
}

#[test]
fn check_finds_a_wal_database_whose_shm_cannot_be_made() {
    let (base, r, db) = as_nobody(|data| {
        let db = data.join("auth.db");
        create_ledger(&db, "WAL", 10);
        assert!(!data.join("auth.db-shm").exists());
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(data, fs::Permissions::from_mode(0o755)).unwrap();
        db
    });
    r.code(1)
        .stderr_has("source auth.db")
        .stderr_has(&format!("{}-shm", db.display()))
        .stderr_has("chmod g+w");
    assert_eq!(source_probe(&r)["ok"], false);

    // The same database in a folder the user can write: fine, and said to be WAL.
    let data = base.path().join("data");
    fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = Command::new(require_tool("setpriv"));
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        BIN,
        "--config",
    ])
    .arg(base.path().join("litevault.toml"))
    .arg("check");
    run_cmd(cmd)
        .ok()
        .stdout_has("journal_mode wal")
        .stdout_has("-shm");
}

#[test]
fn a_prune_dry_run_is_recorded_as_a_dry_run() {
    let mut env = env_with_db();
    env.extra = "[retention]\nkeep_last = 1\n".into();
    let ids: Vec<String> = (0..3).map(|_| env.backup()).collect();
    env.run(&["prune", "--dry-run"]).ok();
    assert_eq!(env.count_on("local"), 3);

    let runs = env.run(&["--json", "history"]).ok().json();
    let run = &runs[0];
    assert_eq!(run["command"], "prune", "{run:#}");
    assert_eq!(run["dry_run"], true, "{run:#}");
    let d = &run["destinations"][0];
    assert!(
        d.get("deleted").is_none(),
        "a dry run deleted nothing: {run:#}"
    );
    let would: Vec<&str> = d["would_delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(would.len(), 2, "{run:#}");
    assert!(would.contains(&ids[0].as_str()) && would.contains(&ids[1].as_str()));
    let human = env.run(&["history"]).ok().stdout.clone();
    // The first line is the header; the newest run follows it.
    let first = human.lines().nth(1).unwrap();
    assert!(
        first.contains("prune") && first.contains("dry run"),
        "{human}"
    );

    // The real one is a deletion, not marked.
    env.run(&["prune"]).ok();
    let runs = env.run(&["--json", "history"]).ok().json();
    assert_eq!(runs[0]["dry_run"], false, "{:#}", runs[0]);
    assert_eq!(
        runs[0]["destinations"][0]["deleted"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(!env
        .run(&["history"])
        .ok()
        .stdout
        .lines()
        .next()
        .unwrap()
        .contains("dry run"));
}
