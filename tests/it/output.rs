//! What reaches the person's terminal. Text from the storage (a sidecar's manifest, an object
//! name) or from the command line is shown with its control characters escaped, never obeyed,
//! and a newline inside it cannot make a line of its own; a closed or broken stdout or stderr
//! never makes litevault panic, and leaves the exit code what it would have been.

use std::fs;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::*;

/// Set the window title, clear the screen, then start a line of its own.
const HOSTILE: &str = "\x1b]0;pwned\x07\x1b[2J\nOK: all backups verified";
/// The same, as litevault shows it.
const SHOWN: &str = "\\x1b]0;pwned\\x07\\x1b[2J\\nOK: all backups verified";

fn with_backup() -> (Env, String) {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 50);
    let id = env.backup();
    (env, id)
}

/// No byte that a terminal would obey: ESC, BEL, CR, and no C1 control either.
fn assert_inert(what: &str, text: &str) {
    for c in text.chars() {
        assert!(
            c == '\n' || !(c.is_control() || ('\u{2066}'..='\u{2069}').contains(&c)),
            "{what} holds a raw {c:?}:\n{text:?}"
        );
    }
    for line in text.lines() {
        assert!(
            !line.starts_with("OK: all backups verified"),
            "{what} has a line made by a stored newline:\n{text}"
        );
    }
}

/// Rewrite the stored sidecar of `id` with hostile text in the manifest's host, hostname,
/// source origin, file path and a table name (the archive is left as it is).
fn poison_manifest(env: &Env, id: &str) {
    let path = env.store().join(format!("{id}.json"));
    let mut sidecar: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let m = &mut sidecar["manifest"];
    m["hostname"] = format!("box{HOSTILE}").into();
    m["sources"][0]["origin"] = format!("/srv/{HOSTILE}").into();
    m["files"][0]["path"] = format!("auth{HOSTILE}.db").into();
    m["tags"] = serde_json::json!([format!("tag{HOSTILE}")]);
    let counts = m["databases"][0]["row_counts"].as_object_mut().unwrap();
    counts.insert(format!("t{HOSTILE}"), 1.into());
    fs::write(&path, serde_json::to_vec_pretty(&sidecar).unwrap()).unwrap();
}

#[test]
fn hostile_text_in_a_sidecar_is_shown_escaped_by_show_and_list() {
    let (env, id) = with_backup();
    poison_manifest(&env, &id);

    let r = env.run(&["show", &id]);
    assert!(r.code == 0 || r.code == 4, "{}\n{}", r.stdout, r.stderr);
    assert_inert("show's stdout", &r.stdout);
    assert_inert("show's stderr", &r.stderr);
    for needle in [
        format!("/srv/{SHOWN}"),
        format!("auth{SHOWN}.db"),
        format!("hostname box{SHOWN}"),
        format!("tag{SHOWN}"),
        format!("table t{SHOWN}"),
    ] {
        assert!(
            r.stdout.contains(&needle),
            "show lacks {needle:?}:\n{}",
            r.stdout
        );
    }

    let r = env.run(&["list"]);
    assert_inert("list's stdout", &r.stdout);
    assert_inert("list's stderr", &r.stderr);
    r.stdout_has(&format!("tag{SHOWN}"));

    // JSON keeps the data exact, escaped the JSON way.
    let r = env.run(&["--json", "show", &id]);
    assert_inert("show --json", &r.stdout);
    let v = r.json();
    assert_eq!(
        v["sources"][0]["origin"],
        format!("/srv/{HOSTILE}").as_str()
    );
}

/// A destination object name, read from the sidecar, ends up in the warnings and errors about
/// the archive it names.
#[test]
fn hostile_text_in_warnings_and_errors_is_escaped() {
    let (env, id) = with_backup();
    let path = env.store().join(format!("{id}.json"));
    let mut sidecar: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    sidecar["archive"]["object"] = format!("{id}{HOSTILE}.tar.zst").into();
    fs::write(&path, serde_json::to_vec_pretty(&sidecar).unwrap()).unwrap();

    let out = env.path("out");
    let out = out.to_str().unwrap();
    for (args, code) in [
        (vec!["list"], 0),
        (vec!["show", &id], 4),
        (vec!["verify", &id], 4),
        (vec!["restore", &id, "--to", out], 4),
    ] {
        let r = env.run(&args);
        assert_eq!(r.code, code, "{args:?} on a missing archive:\n{}", r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert_inert(&format!("{args:?}"), &all);
        assert!(
            all.contains(SHOWN),
            "{args:?} does not name the object, escaped:\n{all}"
        );
    }
}

#[test]
fn a_newline_in_an_id_on_the_command_line_cannot_fake_a_line() {
    let (env, _) = with_backup();
    let id = "abc\nOK: all backups verified";
    for args in [vec!["show", id], vec!["verify", id]] {
        let r = env.run(&args);
        assert_ne!(r.code, 0, "{args:?}");
        assert_inert(&format!("{args:?}"), &r.stderr);
        r.stderr_has("abc\\nOK: all backups verified");
    }
    // A value clap itself refuses is escaped too.
    let r = env.run(&["history", "--limit", "\x1b[2J\n7"]);
    r.code(2);
    assert_inert("clap's error", &r.stderr);
    r.stderr_has("\\x1b[2J\\n7");
}

/// The binary with this environment's config, stdout and stderr as given; its exit code.
fn code_with(env: &Env, args: &[&str], stdout: Stdio, stderr: Stdio) -> i32 {
    env.command(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE.
fn broken_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

/// The binary run by a shell that first closes `fd` (`exec 2>&-`); its exit code.
fn code_with_closed(env: &Env, fd: u8, args: &[&str]) -> i32 {
    env.write_config();
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec {fd}>&-; exec \"$0\" \"$@\""))
        .arg(BIN)
        .arg("--config")
        .arg(env.config_path())
        .args(args)
        .env_remove("LITEVAULT_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[test]
fn a_closed_or_broken_stderr_keeps_the_exit_code() {
    let (env, id) = with_backup();
    // An archive gone: list warns (exit 0), show and verify fail (exit 4); a missing id fails.
    fs::rename(
        env.store().join(format!("{id}.tar.zst")),
        env.path("aside.tar.zst"),
    )
    .unwrap();
    for args in [
        vec!["list"],
        vec!["show", &id],
        vec!["verify", &id],
        vec!["show", "no-such-backup"],
        vec!["history", "--limit", "nine"],
    ] {
        let open = env.run(&args).code;
        assert_ne!(open, 101, "{args:?}");
        let closed = code_with_closed(&env, 2, &args);
        assert_eq!(closed, open, "{args:?} with stderr closed");
        let broken = code_with(&env, &args, Stdio::null(), broken_pipe());
        assert_eq!(broken, open, "{args:?} with stderr a broken pipe");
    }
}

#[test]
fn a_closed_or_broken_stdout_never_panics() {
    let (env, id) = with_backup();
    for args in [
        vec!["list"],
        vec!["show", &id],
        vec!["--json", "list"],
        vec!["completions", "bash"],
    ] {
        assert_eq!(
            code_with_closed(&env, 1, &args),
            0,
            "{args:?} with stdout closed"
        );
        // `litevault list | head`: the reader left, which is not litevault's failure.
        let broken = code_with(&env, &args, broken_pipe(), Stdio::null());
        assert_eq!(broken, 0, "{args:?} with stdout a broken pipe");
    }
    // A failure still fails.
    let missing = ["show", "no-such-backup"];
    let open = env.run(&missing).code;
    assert_ne!(open, 0);
    assert_eq!(code_with_closed(&env, 1, &missing), open);
    assert_eq!(
        code_with(&env, &missing, broken_pipe(), Stdio::null()),
        open
    );
}
