//! The operations recipes: hooks, systemd credentials and the example crontab, run as a host
//! runs them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::{bin_dir, readme_block};
use crate::harness::*;
use crate::servers::*;

#[test]
fn the_hooks_recipe_is_a_valid_config_table() {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 10);
    env.encryption = Some("[encryption]\nnone = true\n".into());
    env.extra = readme_block("hooks");
    env.run(&["check"]).ok();
    // The keys are the ones litevault runs: an unknown key would have been a config error.
    env.extra = env.extra.replace("before_backup", "before_backupp");
    env.run(&["check"]).code(2);
}

#[test]
fn the_systemd_credentials_recipe_verifies_and_backs_up_to_s3_with_the_credentials() {
    let analyze = require_tool("systemd-analyze");
    let block = readme_block("systemd-credentials");
    let (dropin, config) = block
        .split_once("# /etc/litevault/litevault.toml\n")
        .expect("the block holds a drop-in, then the config");

    // The drop-in, over the example unit, passes systemd's own check.
    let units = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let service = fs::read_to_string(repo.join("examples/systemd/litevault-backup.service"))
        .unwrap()
        .replace("/usr/bin/litevault", BIN);
    fs::write(units.path().join("litevault-backup.service"), service).unwrap();
    fs::create_dir(units.path().join("litevault-backup.service.d")).unwrap();
    fs::write(
        units
            .path()
            .join("litevault-backup.service.d/override.conf"),
        dropin,
    )
    .unwrap();
    let r = run_cmd({
        let mut c = Command::new(analyze);
        c.args(["verify", "--man=no", "litevault-backup.service"])
            .env("SYSTEMD_UNIT_PATH", format!("{}:", units.path().display()));
        c
    });
    r.ok();
    assert_eq!(r.stderr.trim(), "", "systemd-analyze verify complains");

    // The config, with the files systemd would hand over, backs up to S3 and signs.
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 50);
    let s3root = env.path("s3");
    let server = S3Server::start(&s3root, &["backups"]);
    let creds = env.path("credentials");
    fs::create_dir(&creds).unwrap();
    env.run(&[
        "key",
        "generate",
        "--signing",
        creds.join("signing-key").to_str().unwrap(),
    ])
    .ok();
    fs::write(
        creds.join("s3-credentials"),
        format!("[default]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n"),
    )
    .unwrap();
    for f in ["signing-key", "s3-credentials"] {
        fs::set_permissions(creds.join(f), fs::Permissions::from_mode(0o400)).unwrap();
    }
    env.encryption = Some("[encryption]\nnone = true\n".into());
    env.destinations = vec![config.replace(
        "?region=eu-central-1",
        &format!("?region=eu-central-1&endpoint={}", server.endpoint()),
    )];
    env.vars = vec![("CREDENTIALS_DIRECTORY".into(), creds.display().to_string())];
    let r = env.run(&["--json", "backup"]);
    r.ok();
    let id = r.json()["id"].as_str().unwrap().to_string();
    let stored = s3root.join("backups/radius").join(&env.name);
    assert!(stored.join(format!("{id}.json")).is_file());
    assert!(
        stored.join(format!("{id}.json.sig")).is_file(),
        "signed with $CREDENTIALS_DIRECTORY/signing-key"
    );
    env.run(&["verify", "latest"]).ok();
}

/// The command lines of `examples/crontab` (the commented verify line too, for the restore host).
fn crontab_commands() -> (Vec<(String, String)>, Vec<String>) {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/crontab")).unwrap();
    let mut vars = Vec::new();
    let mut commands = Vec::new();
    for line in text.lines() {
        let entry = line
            .strip_prefix("# ")
            .filter(|l| l.contains("litevault --"));
        let line = entry.unwrap_or(line);
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some((k, v)) = line.split_once('=').filter(|(k, _)| !k.contains(' ')) {
            vars.push((k.to_string(), v.to_string()));
            continue;
        }
        // Five time fields, then the command.
        let command = line
            .split_whitespace()
            .skip(5)
            .collect::<Vec<_>>()
            .join(" ");
        commands.push(command);
    }
    (vars, commands)
}

#[test]
fn the_example_crontab_lines_run_quietly_under_cron_s_environment() {
    let (vars, commands) = crontab_commands();
    assert!(commands.len() >= 4, "{commands:?}");
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 100);
    env.with_age_key();
    env.extra = "[retention]\nkeep_last = 3\n".into();
    fs::create_dir_all(env.path("offsite")).unwrap();
    env.destinations.push(dest(
        "offsite",
        &format!("file://{}/offsite", env.root().display()),
    ));
    let config = env.write_config();
    let metrics = env.path("node_exporter/textfile");
    fs::create_dir_all(&metrics).unwrap();
    let bin = bin_dir(env.root());
    for command in &commands {
        let command = command.replace(
            "/var/lib/node_exporter/textfile",
            &metrics.display().to_string(),
        );
        // As cron runs it: `sh -c` with nothing but the crontab's variables (and HOME/SHELL,
        // which cron sets); the crontab's PATH, with the binary under test in front.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", &command]).env_clear().current_dir("/");
        for (k, v) in &vars {
            let v = match k.as_str() {
                "LITEVAULT_CONFIG" => config.display().to_string(),
                "PATH" => format!("{}:{v}", bin.display()),
                _ => v.clone(),
            };
            cmd.env(k, v);
        }
        cmd.env("SHELL", "/bin/sh").env("HOME", "/root");
        let r = run_as_set(cmd);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (0, "", ""),
            "the crontab's `{command}` mails something"
        );
    }
    assert!(metrics.join("litevault.prom").is_file());
    assert_eq!(env.count_on("offsite"), 1, "the copy line filled offsite");
}
