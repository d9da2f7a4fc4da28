//! Issue 23, the first hour with litevault: quiet runs that are quiet, errors that say what to
//! do, examples and scripts that fit together, and progress on long work.

use std::os::unix::fs::PermissionsExt;

use crate::harness::*;

fn env_with_db() -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    env
}

#[test]
fn encryption_none_silences_the_unencrypted_warning_and_a_missing_table_still_warns() {
    let mut env = env_with_db();
    // No [encryption] table: nobody said plain backups are meant, so even --quiet says it.
    let r = env.run(&["--quiet", "backup"]);
    r.ok().stderr_has("warning: this backup is NOT encrypted");
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    env.encryption = Some("[encryption]\nnone = true\n".into());
    let r = env.run(&["--quiet", "backup"]);
    r.ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    // Not under a person's eyes either: it was chosen.
    let r = env.run(&["backup", "--full"]);
    r.ok().stdout_has("unencrypted");
    assert!(!r.stderr.contains("NOT encrypted"), "{}", r.stderr);

    // none = true with a key is a contradiction, named.
    env.encryption = Some(
        "[encryption]\nnone = true\nrecipients = [\"age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\"]\n"
            .into(),
    );
    env.run(&["backup"])
        .code(2)
        .stderr_has("`encryption.recipients` cannot be combined with `encryption.none = true`");
}

/// The stderr of a failed run that ended on one error: exactly `error: ...` then `hint: ...`.
fn error_and_hint(r: &Run) -> (String, String) {
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "expected an error and a hint:\n{}",
        r.stderr
    );
    assert!(lines[0].starts_with("error: "), "{}", r.stderr);
    assert!(lines[1].starts_with("hint: "), "{}", r.stderr);
    (lines[0].to_string(), lines[1].to_string())
}

const EXAMPLES_HINT: &str = "examples/litevault.toml in the source tree or /usr/share/doc/litevault/examples/litevault.toml after a package install";

#[test]
fn config_errors_name_the_key_and_say_what_to_do() {
    let env = env_with_db();
    let config = env.write_config();
    let text = std::fs::read_to_string(&config).unwrap();
    let lv = |extra: &str| {
        std::fs::write(&config, format!("{text}{extra}")).unwrap();
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--config").arg(&config).arg("list");
        run_cmd(cmd)
    };
    let line = text.lines().count() + 2;
    // An unknown key in a table: the table and key, the line, and a hint naming both examples.
    let r = lv("[compression]\nalgoritm = \"zstd\"\n");
    r.code(2);
    let (error, hint) = error_and_hint(&r);
    assert!(
        error.contains(&format!(
            "line {line}, column 1 (at `compression.algoritm`): unknown field `algoritm`"
        )),
        "{error}"
    );
    assert!(hint.contains(EXAMPLES_HINT), "{hint}");
    // A syntax error: the key whose value is broken, never the value itself.
    let r = lv("[compression]\nalgorithm = [\"zs\n");
    r.code(2);
    let (error, hint) = error_and_hint(&r);
    assert!(error.contains("(at `compression.algorithm`)"), "{error}");
    assert!(!error.contains("\"zs"), "{error}");
    assert!(hint.contains(EXAMPLES_HINT), "{hint}");
    // A value that parses but is wrong: the key, and the same hint.
    let r = lv("[compression]\nlevel = 99\n");
    r.code(2);
    let (error, hint) = error_and_hint(&r);
    assert!(error.contains("`compression.level` is 99"), "{error}");
    assert!(hint.contains(EXAMPLES_HINT), "{hint}");
}

#[test]
fn no_config_names_the_example_in_the_tree_and_in_the_package() {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["--config", "/nonexistent/litevault.toml", "list"]);
    let r = run_cmd(cmd);
    r.code(2);
    let (_, hint) = error_and_hint(&r);
    assert!(hint.contains(EXAMPLES_HINT), "{hint}");
}

#[test]
fn a_missing_source_names_the_config_key() {
    let mut env = env_with_db();
    env.add_sqlite("gone.db");
    let r = env.run(&["backup"]);
    r.code(1);
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| !l.contains("NOT encrypted"))
        .collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(
        lines[0].starts_with("error: ") && lines[0].ends_with("gone.db does not exist"),
        "{}",
        r.stderr
    );
    assert_eq!(
        lines[1],
        "hint: fix the `path` of [[source]] \"gone.db\" in the config, or put the file back (`litevault restore latest --to DIR --only gone.db` gives the last backed-up copy)"
    );
}

#[test]
fn unknown_dest_and_only_and_key_folder_say_what_to_do() {
    let env = env_with_db();
    env.backup();
    let r = env.run(&["backup", "--dest", "offsite"]);
    r.code(2);
    let (error, hint) = error_and_hint(&r);
    assert!(
        error.contains("no destination named \"offsite\""),
        "{error}"
    );
    assert_eq!(
        hint,
        "hint: --dest takes the name of a [[destination]] table in the config: one of local"
    );

    let to = env.path("out");
    let r = env.run(&[
        "restore",
        "latest",
        "--to",
        to.to_str().unwrap(),
        "--only",
        "b.db",
    ]);
    r.code(2);
    let (error, hint) = error_and_hint(&r);
    assert!(error.contains("has no source \"b.db\""), "{error}");
    assert!(
        hint.starts_with("hint: --only takes a source name as the backup stores it: one of a.db"),
        "{hint}"
    );

    let key = env.path("no/such/folder/identity.txt");
    let r = env.run(&["key", "generate", key.to_str().unwrap()]);
    r.code(1);
    let (error, hint) = error_and_hint(&r);
    assert!(error.contains("does not exist"), "{error}");
    assert_eq!(
        hint,
        format!(
            "hint: create the folder first (mkdir -p -m 700 {}), or name a file in an existing folder",
            env.path("no/such/folder").display()
        )
    );
}

#[test]
fn a_database_without_read_permission_names_the_user() {
    let setpriv = require_tool("setpriv");
    let base = tempfile::Builder::new()
        .prefix("litevault-perm-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = base.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("auth.db");
    create_ledger(&db, "WAL", 10);
    // root's, 0600: `nobody` can see it but not open it (SQLite would say "Error code 14").
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    for owned in ["state", "backups"] {
        let p = root.join(owned);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    }
    let config = root.join("litevault.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"h\"\nstate_dir = \"{r}/state\"\n[[source]]\nname = \"auth.db\"\npath = \"{r}/data/auth.db\"\nkind = \"sqlite\"\n[encryption]\nnone = true\n[[destination]]\nname = \"local\"\nurl = \"file://{r}/backups\"\n",
            r = root.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = std::process::Command::new(setpriv);
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        BIN,
        "--config",
    ])
    .arg(&config)
    .arg("backup");
    let r = run_cmd(cmd);
    r.code(1);
    let (error, hint) = error_and_hint(&r);
    assert!(
        error.ends_with(&format!(
            "permission denied: user nobody (uid 65534) cannot read {}",
            db.display()
        )),
        "{error}"
    );
    assert!(!r.stderr.contains("Error code 14"), "{}", r.stderr);
    assert!(!r.stderr.contains("unable to open"), "{}", r.stderr);
    assert!(
        hint.contains("give user nobody (uid 65534) read access"),
        "{hint}"
    );
}

#[test]
fn verify_without_the_identity_blames_the_host_not_the_backup() {
    let mut env = env_with_db();
    let key = env.with_age_key();
    let id = env.backup();
    std::fs::rename(&key, env.path("elsewhere.txt")).unwrap();
    let r = env.run(&["verify", "latest"]);
    r.code(2);
    assert!(!r.stderr.contains("FAILED"), "{}", r.stderr);
    let (error, hint) = error_and_hint(&r);
    assert!(
        error.contains(&format!(
            "cannot verify backup {id} on local: the keys to open it cannot be loaded"
        )),
        "{error}"
    );
    assert!(error.contains("encryption.identity_file"), "{error}");
    assert!(
        hint.starts_with(
            "hint: the identity (the age secret key) is needed only where you restore or verify"
        ),
        "{hint}"
    );
}

#[test]
fn restore_to_lists_every_clashing_file_up_to_ten() {
    let mut env = Env::new();
    env.encryption = Some("[encryption]\nnone = true\n".into());
    let names: Vec<String> = (0..13).map(|i| format!("s{i:02}.conf")).collect();
    for n in &names {
        let p = env.add_source(n, "file", "");
        std::fs::write(p, "x\n").unwrap();
    }
    env.backup();
    let to = env.path("out");
    std::fs::create_dir(&to).unwrap();
    // Two clashes: both named.
    for n in &names[..2] {
        std::fs::write(to.join(n), "mine\n").unwrap();
    }
    let r = env.run(&["restore", "latest", "--to", to.to_str().unwrap()]);
    r.code(2);
    let (error, _) = error_and_hint(&r);
    assert!(
        error.contains(&format!(
            "{}, {} already exist; restore never overwrites",
            to.join(&names[0]).display(),
            to.join(&names[1]).display()
        )),
        "{error}"
    );
    // Thirteen: ten named, and how many more.
    for n in &names {
        std::fs::write(to.join(n), "mine\n").unwrap();
    }
    let r = env.run(&["restore", "latest", "--to", to.to_str().unwrap()]);
    r.code(2);
    let (error, _) = error_and_hint(&r);
    assert!(
        error.contains(&to.join(&names[9]).display().to_string()),
        "{error}"
    );
    assert!(
        !error.contains(&to.join(&names[10]).display().to_string()),
        "{error}"
    );
    assert!(error.contains(" and 3 more already exist"), "{error}");
    assert_eq!(
        std::fs::read_to_string(to.join(&names[12])).unwrap(),
        "mine\n"
    );
}

#[test]
fn a_malformed_id_is_called_malformed() {
    let env = env_with_db();
    env.backup();
    for cmd in [
        &["restore", "2026-01-01", "--to", "/tmp/x"][..],
        &["verify", "2026-01-01"],
        &["show", "2026-01-01"],
    ] {
        let r = env.run(cmd);
        r.code(2);
        let (error, hint) = error_and_hint(&r);
        assert_eq!(
            error,
            "error: \"2026-01-01\" is not a backup id: ids look like 20261126T031500Z-3fa9 (UTC time, then 4 hex digits)"
        );
        assert_eq!(
            hint,
            "hint: name a backup by its whole id as `litevault list` shows it, or say `latest`"
        );
    }
}
