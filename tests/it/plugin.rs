//! Hardware keys through age plugins, with `examples/age-plugin-litevaulttest.rs` standing in
//! for a YubiKey: the real plugin protocol between the real binary and a plugin found on PATH.
//! A backup made for the plugin's recipient verifies and restores through it (and opens with
//! the real `age` too); a plugin missing from PATH is a config error naming the binary; a plugin
//! that asks for a PIN, or never answers, fails the run quickly with the reason, restoring
//! nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const PLUGIN: &str = "age-plugin-litevaulttest";
/// Generous: a declined PIN fails in well under a second.
const QUICK: Duration = Duration::from_secs(30);

/// The test plugin, built by `cargo test --all-targets` (and here when missing).
fn plugin_binary() -> &'static Path {
    example_binary(PLUGIN)
}

/// A folder holding the plugin under its own name, to put on PATH.
fn plugin_dir(env: &Env) -> PathBuf {
    let dir = env.path("plugins");
    fs::create_dir_all(&dir).unwrap();
    let link = dir.join(PLUGIN);
    if !link.exists() {
        std::os::unix::fs::symlink(plugin_binary(), &link).unwrap();
    }
    dir
}

/// PATH as the tests found it, with `dir` first when given.
fn path_with(dir: Option<&Path>) -> String {
    let system = std::env::var("PATH").unwrap_or_default();
    let cleaned: Vec<&str> = system
        .split(':')
        .filter(|d| !Path::new(d).join(PLUGIN).exists())
        .collect();
    match dir {
        Some(d) => format!("{}:{}", d.display(), cleaned.join(":")),
        None => cleaned.join(":"),
    }
}

fn set_path(env: &mut Env, dir: Option<&Path>) {
    env.vars.retain(|(k, _)| k != "PATH");
    env.vars.push(("PATH".to_string(), path_with(dir)));
}

/// An environment backing up a ledger, encrypted to a fresh key of the test plugin (made by
/// `--generate`) with the plugin's identity in identity_file and the plugin on PATH.
/// Returns it with the recipient.
fn plugin_env() -> (Env, String) {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 50);
    let out = Command::new(plugin_binary())
        .arg("--generate")
        .output()
        .unwrap();
    assert!(out.status.success(), "{PLUGIN} --generate failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# recipient: "))
        .expect("--generate prints the recipient")
        .to_string();
    assert!(recipient.starts_with("age1litevaulttest1"), "{recipient}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("AGE-PLUGIN-LITEVAULTTEST-1")),
        "{text}"
    );
    let key = env.path("hardware.key");
    fs::write(&key, &text).unwrap();
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        key.display()
    ));
    let dir = plugin_dir(&env);
    set_path(&mut env, Some(&dir));
    (env, recipient)
}

/// The stored archive of backup `id`.
fn archive(env: &Env, id: &str) -> PathBuf {
    let name = env
        .stored_files()
        .into_iter()
        .find(|f| f.starts_with(id) && f.ends_with(".age"))
        .unwrap_or_else(|| panic!("no archive for {id}: {:?}", env.stored_files()));
    env.store().join(name)
}

/// Run litevault with `extra` environment, killing it (and failing) if it has not ended
/// within `limit`; returns the run and how long it took.
fn run_within(
    env: &Env,
    args: &[&str],
    extra: &[(&str, &str)],
    limit: Duration,
) -> (Run, Duration) {
    let out_path = env.path("run.stdout");
    let err_path = env.path("run.stderr");
    let mut cmd = env.command(args);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "litevault {args:?} was still running after {limit:?}; stderr so far:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: fs::read_to_string(&out_path).unwrap(),
        stderr: fs::read_to_string(&err_path).unwrap(),
    };
    (run, took)
}

#[test]
fn a_backup_for_a_plugin_key_verifies_and_restores_through_the_plugin() {
    let (env, recipient) = plugin_env();
    let id = env.backup();
    // Made for the plugin: the header holds its stanza, and the sidecar records the recipient.
    let archive = archive(&env, &id);
    let head = fs::read(&archive).unwrap();
    let head = String::from_utf8_lossy(&head[..head.len().min(400)]);
    assert!(head.contains("\n-> litevaulttest "), "{head}");
    assert!(!head.contains("-> X25519 "), "{head}");
    let sidecar = fs::read_to_string(env.store().join(format!("{id}.json"))).unwrap();
    assert!(sidecar.contains(&recipient), "{sidecar}");

    env.run(&["verify", &id]).ok();
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&out.join("auth.db")), 50);

    // A plugin that shows a message ("touch your key") still works, and the message reaches
    // the person as a warning.
    let (r, _) = run_within(
        &env,
        &["verify", &id],
        &[("LITEVAULT_TEST_PLUGIN_TOUCH", "1")],
        QUICK,
    );
    r.ok()
        .stderr_has("warning: age-plugin-litevaulttest: Touch your litevault test key");

    // The real age opens it with the same identity file through the same plugin: the format
    // is age's plugin format, not litevault's.
    let age = require_tool("age");
    let plain = env.path("plain.tar.zst");
    let mut cmd = Command::new(age);
    cmd.arg("-d")
        .arg("-i")
        .arg(env.path("hardware.key"))
        .arg("-o")
        .arg(&plain)
        .arg(&archive)
        .env("PATH", path_with(Some(&env.path("plugins"))));
    run_cmd(cmd).ok();
    assert!(fs::metadata(&plain).unwrap().len() > 0);
}

#[test]
fn a_plugin_missing_from_path_is_a_config_error_naming_it() {
    let (mut env, _) = plugin_env();
    let id = env.backup();
    set_path(&mut env, None);

    // Backing up, for the recipient: nothing is stored.
    let before = env.stored_files();
    env.run(&["backup"])
        .code(2)
        .stderr_has(PLUGIN)
        .stderr_has("not on PATH")
        .stderr_has("install");
    assert_eq!(
        env.stored_files(),
        before,
        "a failed backup stored something"
    );

    // Verifying and restoring, for the identity.
    env.run(&["verify", &id])
        .code(2)
        .stderr_has(PLUGIN)
        .stderr_has("not on PATH");
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .code(2)
        .stderr_has(PLUGIN);
    assert!(!out.join("auth.db").exists());

    // `check` says so before any run does (a failed probe: its own exit code).
    let r = env.run(&["check"]);
    assert_ne!(r.code, 0, "check passed without the plugin:\n{}", r.stdout);
    r.stderr_has(PLUGIN);
}

#[test]
fn a_plugin_asking_for_a_pin_fails_quickly_and_restores_nothing() {
    let (env, _) = plugin_env();
    let id = env.backup();
    let pin = [("LITEVAULT_TEST_PLUGIN_PIN", "1")];

    let (r, took) = run_within(&env, &["verify", &id], &pin, QUICK);
    r.code(2)
        .stderr_has("the plugin age-plugin-litevaulttest asked for a PIN")
        .stderr_has("Enter the PIN of the litevault test key")
        .stderr_has("cannot answer it")
        .stderr_has("hint: use a key that needs no PIN for unattended backups");
    assert!(took < QUICK, "{took:?}");

    let out = env.path("out");
    let (r, _) = run_within(
        &env,
        &["restore", &id, "--to", out.to_str().unwrap()],
        &pin,
        QUICK,
    );
    r.code(2)
        .stderr_has("the plugin age-plugin-litevaulttest asked for a PIN");
    assert!(!out.join("auth.db").exists(), "something was restored");
    if out.exists() {
        assert_eq!(
            fs::read_dir(&out).unwrap().count(),
            0,
            "something was restored"
        );
    }

    // The same key without the PIN policy opens it: the failure was the PIN, not the key.
    env.run(&["verify", &id]).ok();
}

#[test]
fn a_plugin_that_never_answers_is_given_up_on_in_bounded_time() {
    let (env, id) = {
        let (env, _) = plugin_env();
        let id = env.backup();
        (env, id)
    };
    let hang = [
        ("LITEVAULT_TEST_PLUGIN_HANG", "1"),
        ("LITEVAULT_PLUGIN_TIMEOUT", "2s"),
    ];
    let (r, took) = run_within(&env, &["verify", &id], &hang, QUICK);
    r.code(1)
        .stderr_has("the plugin age-plugin-litevaulttest gave no answer within 2s");
    assert!(took >= Duration::from_secs(2), "{took:?}");

    let out = env.path("out");
    let (r, _) = run_within(
        &env,
        &["restore", &id, "--to", out.to_str().unwrap()],
        &hang,
        QUICK,
    );
    r.code(1).stderr_has("gave no answer");
    assert!(!out.join("auth.db").exists(), "something was restored");

    // Encrypting, too: a backup whose plugin never wraps the key ends, storing nothing.
    let before = env.stored_files();
    let (r, _) = run_within(&env, &["backup"], &hang, QUICK);
    r.code(1)
        .stderr_has("the plugin age-plugin-litevaulttest gave no answer within 2s");
    assert_eq!(
        env.stored_files(),
        before,
        "a failed backup stored something"
    );
}

#[test]
fn sigterm_while_a_plugin_waits_for_a_touch_ends_the_run_at_once() {
    let (env, _) = plugin_env();
    let id = env.backup();
    // The default minute-long wait: only the signal can end it early.
    let child = env
        .command(&["verify", &id])
        .env("LITEVAULT_TEST_PLUGIN_HANG", "1")
        .env_remove("LITEVAULT_PLUGIN_TIMEOUT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, took, stderr) = term_after(child, Duration::from_millis(1500));
    let took = took.expect("verify ended before the signal");
    assert_eq!(code, 130, "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?} after SIGTERM");
}
