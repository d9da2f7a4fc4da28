//! Issue 23, the first hour with litevault: quiet runs that are quiet, errors that say what to
//! do, examples and scripts that fit together, and progress on long work.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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

#[test]
fn check_role_backup_warns_about_no_encryption_only_when_none_was_not_chosen() {
    let mut env = env_with_db();
    let encryption_warnings = |r: &Run| -> Vec<String> {
        r.json()["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|w| w.as_str().unwrap().to_string())
                    .filter(|w| w.contains("[encryption]") || w.contains("unencrypted"))
                    .collect()
            })
            .unwrap_or_default()
    };
    // No [encryption] table: nobody said plain backups are meant.
    let r = env.run(&["check", "--role", "backup"]);
    r.ok().stderr_has("warning: no [encryption]");
    let r = env.run(&["--json", "check", "--role", "backup"]);
    assert_eq!(encryption_warnings(r.ok()).len(), 1, "{}", r.stdout);

    // `none = true` said so: no warning about it, and the keys line says why.
    env.encryption = Some("[encryption]\nnone = true\n".into());
    let r = env.run(&["check", "--role", "backup"]);
    r.ok()
        .stdout_has("keys: unencrypted on purpose ([encryption] none = true)");
    assert!(!r.stderr.contains("[encryption]"), "{}", r.stderr);
    assert!(!r.stderr.contains("unencrypted"), "{}", r.stderr);
    // The role's other advice still stands.
    r.stderr_has("no [signing]");
    let r = env.run(&["--json", "check", "--role", "backup"]);
    assert!(encryption_warnings(r.ok()).is_empty(), "{}", r.stdout);
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

#[test]
fn a_json_failure_is_one_document_on_stdout_too() {
    let env = env_with_db();
    env.backup();
    let r = env.run(&["--json", "restore", "2026-01-01", "--to", "/tmp/x"]);
    r.code(2);
    let doc = r.json();
    assert_eq!(doc["exit"], 2);
    assert_eq!(
        doc["error"],
        "\"2026-01-01\" is not a backup id: ids look like 20261126T031500Z-3fa9 (UTC time, then 4 hex digits)"
    );
    assert_eq!(
        doc["hint"],
        "name a backup by its whole id as `litevault list` shows it, or say `latest`"
    );
    // And on stderr, as without --json.
    error_and_hint(&r);
    // A failure without a hint still makes a document, with a null hint.
    let mut env = env;
    env.add_sqlite("gone.db");
    let r = env.run(&["--json", "backup"]);
    r.code(1);
    let doc = r.json();
    assert_eq!(doc["exit"], 1);
    assert!(doc["error"].as_str().unwrap().contains("gone.db"), "{doc}");
}

/// The names after `--from`, `--to` and `--dest` in the example crontab's jobs.
fn crontab_destinations(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines().filter(|l| l.contains("litevault ")) {
        let line = line.trim_start_matches(['#', ' ']);
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if matches!(pair[0], "--from" | "--to" | "--dest") {
                names.push(pair[1].to_string());
            }
        }
    }
    names
}

#[test]
fn the_example_crontab_names_only_destinations_of_the_example_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crontab = std::fs::read_to_string(root.join("examples/crontab")).unwrap();
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("examples/litevault.toml")).unwrap())
            .unwrap();
    let known: Vec<&str> = config["destination"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    let named = crontab_destinations(&crontab);
    assert!(named.iter().any(|n| n == "offsite"), "{named:?}");
    for name in &named {
        assert!(
            known.contains(&name.as_str()),
            "the crontab names {name}; the config has {known:?}"
        );
    }
    // A backup host's config holds no identity (`check --role backup` would warn), and the
    // crontab runs nothing that needs one: its one verify is a sample, which without the
    // identity checks the stored bytes only.
    assert!(config["encryption"].get("identity_file").is_none());
    let verifies: Vec<&str> = crontab
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" verify"))
        .collect();
    assert_eq!(verifies.len(), 1, "{verifies:?}");
    assert!(verifies[0].contains("verify --sample "), "{}", verifies[0]);
    // And the real binary reads the example as valid (its destinations included), with its
    // state_dir moved into a scratch folder: a test never writes this machine's
    // /var/lib/litevault (the package test checks that the package creates it).
    let scratch = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(root.join("examples/litevault.toml"))
        .unwrap()
        .replace(
            "state_dir = \"/var/lib/litevault\"",
            &format!("state_dir = \"{}\"", scratch.path().join("state").display()),
        );
    let copy = scratch.path().join("litevault.toml");
    std::fs::write(&copy, example).unwrap();
    let r = run_cmd({
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--config")
            .arg(&copy)
            .args(["backup", "--dest", "nowhere"]);
        cmd
    });
    r.code(2).stderr_has("(known: local, offsite)");
}

#[test]
fn check_role_backup_warns_once_about_the_identity() {
    let mut env = env_with_db();
    env.with_age_key();
    let r = env.run(&["check", "--role", "backup"]);
    let identity_warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("key.txt")).collect();
    assert_eq!(identity_warnings.len(), 1, "{}", r.stderr);
    assert!(
        identity_warnings[0].contains("identity_file"),
        "{}",
        r.stderr
    );
}

#[test]
fn history_has_a_header() {
    let env = env_with_db();
    env.backup();
    let r = env.run(&["history"]);
    r.ok();
    let first = r.stdout.lines().next().unwrap();
    assert_eq!(
        first.split_whitespace().collect::<Vec<_>>(),
        ["RUN", "STARTED", "COMMAND", "STATUS", "TOOK", "DETAIL"]
    );
    assert!(
        r.stdout.lines().nth(1).unwrap().contains("backup"),
        "{}",
        r.stdout
    );
}

#[test]
fn restore_only_reports_the_selected_size() {
    let mut env = Env::new();
    env.encryption = Some("[encryption]\nnone = true\n".into());
    let small = env.add_source("small.conf", "file", "");
    std::fs::write(&small, "x\n").unwrap();
    create_bulk(&env.add_sqlite("bulk.db"), 2);
    env.backup();
    let to = env.path("out");
    let r = env.run(&[
        "restore",
        "latest",
        "--to",
        to.to_str().unwrap(),
        "--only",
        "small.conf",
    ]);
    r.ok().stdout_has(": 1 source, 2 B, 0 databases");
    let r = env.run(&[
        "--json",
        "restore",
        "latest",
        "--to",
        env.path("out2").to_str().unwrap(),
        "--only",
        "small.conf",
    ]);
    assert_eq!(r.json()["bytes"], 2);
}

#[test]
fn rekey_leaves_no_empty_folder_behind() {
    let mut env = env_with_db();
    let old = env.with_age_key();
    env.backup();
    // New recipients; the old identity still opens what is stored.
    let new = env.path("new.txt");
    let out = std::process::Command::new(BIN)
        .args(["key", "generate"])
        .arg(&new)
        .output()
        .unwrap();
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        old.display()
    ));
    env.run(&["rekey", "--all"]).ok().stdout_has("1 rekeyed");
    let tmp = env.store().join("tmp");
    assert!(
        !tmp.join("tmp").exists(),
        "rekey left {}",
        tmp.join("tmp").display()
    );
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_archive_without_its_sidecar_is_warned_about_once_by_a_pruning_backup() {
    let mut env = env_with_db();
    env.encryption = Some("[encryption]\nnone = true\n".into());
    env.extra = "[retention]\nkeep_last = 3\nprune_after_backup = true\n".into();
    let id = env.backup();
    std::fs::remove_file(env.store().join(format!("{id}.json"))).unwrap();
    let r = env.run(&["--quiet", "backup"]);
    // Stored; the prune after it leaves the archive for a person, which is a finding.
    r.code(4);
    let about: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(&id) && !l.contains("rolled back"))
        .collect();
    assert_eq!(about.len(), 1, "{}", r.stderr);
    assert!(
        about[0].starts_with("warning: archive ") && about[0].contains("has no sidecar"),
        "{}",
        r.stderr
    );
    // Without its sidecar the backup is gone from the line, and that is said too.
    r.stderr_has(&format!("#1 {id} (last seen "));
}

/// `litevault ARGS` on a pseudo-terminal (`script`), as a person at a shell runs it: what the
/// terminal received, bars and all.
fn on_a_terminal(env: &Env, args: &str) -> String {
    env.write_config();
    let cmd = format!("{BIN} --config {} {args}", env.config_path().display());
    let out = std::process::Command::new(require_tool("script"))
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("LITEVAULT_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

/// Bytes in a size as the bar prints it ("7.84 MiB", "512 B").
fn size_of(number: &str, unit: &str) -> Option<f64> {
    let n: f64 = number.parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * scale)
}

/// Every "DONE/TOTAL" a bar drew: none may run past its total.
fn assert_no_bar_past_its_total(text: &str) {
    let mut seen = 0;
    for (i, _) in text.match_indices('/') {
        let before: Vec<&str> = text[..i].split_whitespace().rev().take(2).collect();
        let after: Vec<&str> = text[i + 1..].split_whitespace().take(2).collect();
        if before.len() < 2 || after.len() < 2 {
            continue;
        }
        let (Some(done), Some(total)) =
            (size_of(before[1], before[0]), size_of(after[0], after[1]))
        else {
            continue;
        };
        seen += 1;
        assert!(
            done <= total * 1.001,
            "a bar ran past its total: {} {}/{} {}",
            before[1],
            before[0],
            after[0],
            after[1]
        );
    }
    assert!(seen > 0, "no bar was drawn: {text:?}");
}

#[test]
fn on_a_terminal_verify_copy_and_rekey_draw_one_labelled_bar_per_phase() {
    let mut env = Env::new();
    create_bulk(&env.add_sqlite("bulk.db"), 8);
    let key = env.with_age_key();
    std::fs::create_dir_all(env.path("second")).unwrap();
    env.destinations
        .push(dest("second", "file://__ROOT__/second"));
    let id = env.backup();

    // Verify on two destinations: a download bar for each, never past its total, and the
    // checks after it labelled.
    let text = on_a_terminal(&env, "verify latest");
    for d in ["local", "second"] {
        assert!(
            text.contains(&format!("download {id} from {d}")),
            "{text:?}"
        );
        assert!(
            text.contains(&format!(
                "check {id} from {d}: integrity_check of 1 database"
            )),
            "{text:?}"
        );
    }
    assert_no_bar_past_its_total(&text);

    // Copy: a bar for the archive it moves.
    std::fs::remove_dir_all(env.path("second")).unwrap();
    std::fs::create_dir_all(env.path("second")).unwrap();
    let text = on_a_terminal(&env, "copy --from local --to second");
    assert!(
        text.contains(&format!("copy {id} from local to second")),
        "{text:?}"
    );
    assert_no_bar_past_its_total(&text);

    // Rekey: a bar for each archive re-encrypted.
    let new = env.path("new.txt");
    let out = std::process::Command::new(BIN)
        .args(["key", "generate"])
        .arg(&new)
        .output()
        .unwrap();
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        key.display()
    ));
    let text = on_a_terminal(&env, "rekey --all");
    assert!(text.contains(&format!("rekey {id} on local")), "{text:?}");
    assert_no_bar_past_its_total(&text);

    // --quiet on the same terminal: no bar at all.
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        new.display()
    ));
    let text = on_a_terminal(&env, "--quiet verify latest --dest local");
    assert!(
        !text.contains("download") && !text.contains('\r'),
        "{text:?}"
    );
}
