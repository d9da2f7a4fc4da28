//! The README as a test, as pgBackRest builds its user guide by running it: every command block
//! marked `<!-- readme-test: NAME -->` in README.md runs here as it is written, against the built
//! binary, the stock tools and real servers. Only the README's example ids and host paths
//! (`/etc/litevault/`, `/root/`) are replaced by the test's own, so a block that drifts from the
//! program fails the build. `examples/crontab`'s lines run the same way.

mod cost;
mod iam;
mod operations;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::*;

/// The README's example id, in every block that names a backup.
const README_ID: &str = "20261126T031500Z-3fa9";

/// The block that follows `<!-- readme-test: NAME -->` in README.md (an indented code block, at
/// any depth of list nesting), without its indentation.
pub fn readme_block(name: &str) -> String {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let marker = format!("<!-- readme-test: {name} -->");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no block marked {marker:?}"));
    let mut lines = readme[start..]
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .peekable();
    let first = lines.peek().expect("a block after the marker");
    let indent = first.len() - first.trim_start().len();
    assert!(indent >= 4, "the block after {marker} is not indented code");
    let block: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect();
    block.join("\n").trim_end().to_string() + "\n"
}

/// A folder holding `litevault` (the binary under test) under its own name, to put on PATH.
pub fn bin_dir(root: &Path) -> PathBuf {
    let dir = root.join("bin");
    if !dir.exists() {
        fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(BIN, dir.join("litevault")).unwrap();
    }
    dir
}

/// Run `script` with bash as a person pastes it, but stopping at the first failing command, with
/// `litevault` on PATH and `LITEVAULT_CONFIG` set.
pub fn run_block(script: &str, dir: &Path, config: Option<&Path>) -> Run {
    let path = format!(
        "{}:{}",
        bin_dir(dir.parent().unwrap_or(dir)).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("LITEVAULT_CONFIG");
    if let Some(c) = config {
        cmd.env("LITEVAULT_CONFIG", c);
    }
    let r = run_as_set(cmd);
    assert_eq!(
        r.code, 0,
        "the README's block failed:\n{script}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r
}

/// The README's host paths, moved under `root`.
fn rehome(block: &str, root: &Path) -> String {
    let r = root.display();
    block
        .replace("/etc/litevault/", &format!("{r}/etc/litevault/"))
        .replace("/root/", &format!("{r}/root/"))
}

/// An environment that encrypts and signs, with one database and a config folder; the signing
/// key lives where the README puts it (`<root>/etc/litevault/signing_key`).
fn signed_env() -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 300);
    let etc = env.add_source("etc", "dir", "");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("server.conf"), "listen = 1812\n").unwrap();
    env.with_age_key();
    let key = env.path("etc/litevault/signing_key");
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    env.run(&["key", "generate", "--signing", key.to_str().unwrap()])
        .ok();
    env.extra = format!("[signing]\nkey_file = \"{}\"\n", key.display());
    env
}

#[test]
fn the_quickstart_backs_up_verifies_and_its_restore_hint_works() {
    let block = readme_block("quickstart");
    assert_eq!(block, "scripts/quickstart\n");
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("quickstart");
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &block])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LITEVAULT_BIN", BIN)
        .env("GEN_STATE_BIN", example_binary("gen-state"))
        .env("QUICKSTART_DIR", &q)
        .env_remove("LITEVAULT_CONFIG");
    let r = run_cmd(cmd);
    assert_eq!(r.code, 0, "scripts/quickstart:\n{}\n{}", r.stdout, r.stderr);
    // One backup listed, then verified by the restore host's config.
    let ids: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| is_id(w)))
        .collect();
    assert!(!ids.is_empty(), "{}", r.stdout);
    assert!(ids.iter().all(|i| *i == ids[0]), "{}", r.stdout);

    // The hint it ends with is a command that works.
    let hint = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Try: "))
        .unwrap_or_else(|| panic!("no Try: line:\n{}", r.stdout));
    run_block(hint, Path::new(env!("CARGO_MANIFEST_DIR")), None);
    let restored = q.join("restored");
    for db in [
        "config",
        "devices",
        "auth",
        "accounting",
        "metrics",
        "audit",
    ] {
        let f = restored.join(format!("{db}.db"));
        assert!(f.is_file(), "{} was not restored", f.display());
    }
    assert!(restored.join("etc").is_dir());
    // The backup host's config holds no identity: the README's point.
    let text = fs::read_to_string(q.join("litevault.toml")).unwrap();
    assert!(!text.contains("identity_file"), "{text}");
}

fn is_id(w: &str) -> bool {
    w.len() == 21 && w.as_bytes()[8] == b'T' && w.as_bytes()[15] == b'Z'
}

/// The `--long` flags named in `text`.
fn flags(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if name.len() > 1 {
            out.insert(name);
        }
    }
    out
}

#[test]
fn the_usage_synopsis_names_every_command_and_flag_and_nothing_else() {
    let block = readme_block("usage");
    let mut lines = block.lines();
    let global = lines.next().unwrap();
    assert!(global.starts_with("litevault "), "{global}");
    let global_flags = flags(global);
    let help = |args: &[&str]| {
        let r = run_cmd({
            let mut c = Command::new(BIN);
            c.args(args);
            c
        });
        r.ok();
        r.stdout
    };
    let common: BTreeSet<String> = ["help", "version"].iter().map(|s| s.to_string()).collect();
    let top = help(&["--help"]);
    let top_flags: BTreeSet<String> = flags(
        top.split("Options:")
            .nth(1)
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap(),
    )
    .difference(&common)
    .cloned()
    .collect();
    assert_eq!(global_flags, top_flags, "the synopsis's first line");

    // Each command line: `  NAME ...flags...`, continued on the next line by a description.
    let mut synopsis: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in lines {
        if !line.starts_with("  ") || line.starts_with("   ") {
            continue;
        }
        let mut words = line.split_whitespace();
        let mut name = words.next().unwrap().to_string();
        if name == "key" {
            name = format!("key {}", words.next().unwrap());
        }
        synopsis.entry(name).or_default().extend(flags(line));
    }
    let listed: Vec<String> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|c| c != "help")
        .collect();
    let mut named: Vec<String> = synopsis
        .keys()
        .map(|k| k.split(' ').next().unwrap().to_string())
        .collect();
    named.dedup();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        named, sorted,
        "commands in the synopsis against `litevault --help`"
    );

    for (command, documented) in &synopsis {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let text = help(&args);
        let options = text.split("Options:").nth(1).unwrap_or("");
        let actual: BTreeSet<String> = flags(options)
            .difference(&top_flags)
            .cloned()
            .collect::<BTreeSet<_>>()
            .difference(&common)
            .cloned()
            .collect();
        assert_eq!(
            documented, &actual,
            "`{command}`: the README's synopsis against `litevault {command} --help`"
        );
    }
}

#[test]
fn the_key_generation_commands_print_what_the_readme_says() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("host");
    fs::create_dir_all(root.join("etc/litevault")).unwrap();
    fs::create_dir_all(root.join("root")).unwrap();
    let block = rehome(&readme_block("key-generation"), &root);
    let r = run_block(&block, &root, None);
    let printed: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(printed.len(), 2, "{}", r.stdout);
    assert!(
        printed[0].starts_with("ssh-ed25519 AAAA") && printed[0].ends_with(" litevault"),
        "the README says `prints ssh-ed25519 AAAA... litevault`: {}",
        printed[0]
    );
    assert!(printed[1].starts_with("age1"), "{}", printed[1]);
    for (key, public) in [
        (
            "etc/litevault/signing_key",
            Some("etc/litevault/signing_key.pub"),
        ),
        ("root/restore-identity.txt", None),
    ] {
        assert_eq!(mode_of(&root.join(key)) & 0o777, 0o600, "{key}");
        if let Some(p) = public {
            assert_eq!(fs::read_to_string(root.join(p)).unwrap().trim(), printed[0]);
        }
    }
    // The identity is one age-keygen would read: the stock tool derives the same recipient.
    let out = Command::new(require_tool("age-keygen"))
        .arg("-y")
        .arg(root.join("root/restore-identity.txt"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), printed[1]);
}

/// A signed backup's sidecar, signature and archive copied into `work` as an operator would
/// download them, with the identity as `identity.txt`; returns the backup id.
fn download_by_hand(env: &Env, work: &Path) -> String {
    let id = env.backup();
    fs::create_dir_all(work).unwrap();
    let sidecar: Value =
        serde_json::from_slice(&fs::read(env.store().join(format!("{id}.json"))).unwrap()).unwrap();
    let archive = sidecar["archive"]["object"].as_str().unwrap().to_string();
    assert_eq!(archive, format!("{id}.tar.zst.age"), "the README's name");
    for name in [format!("{id}.json"), format!("{id}.json.sig"), archive] {
        fs::copy(env.store().join(&name), work.join(&name)).unwrap();
    }
    fs::copy(env.path("key.txt"), work.join("identity.txt")).unwrap();
    id
}

#[test]
fn the_signature_checks_with_ssh_keygen_and_the_stock_tools_restore_a_full_backup() {
    require_tool("ssh-keygen");
    require_tool("age");
    require_tool("b3sum");
    let env = signed_env();
    let rows = check_ledger(&env.path("data/auth.db"));
    let work = env.path("by-hand");
    let id = download_by_hand(&env, &work);

    let verify =
        rehome(&readme_block("ssh-keygen-verify"), env.root()).replace("ID.", &format!("{id}."));
    let r = run_block(&verify, &work, None);
    assert!(
        (r.stdout.clone() + &r.stderr).contains("Good \"litevault\" signature"),
        "{}{}",
        r.stdout,
        r.stderr
    );

    let full = readme_block("stock-tools-full").replace(README_ID, &id);
    run_block(&full, &work, None);
    assert_eq!(check_ledger(&work.join("auth.db")), rows);
    assert_eq!(
        fs::read_to_string(work.join("etc/server.conf")).unwrap(),
        "listen = 1812\n"
    );

    // A forged sidecar fails the README's first command: the signature is what it checks.
    let mut text = fs::read_to_string(work.join(format!("{id}.json"))).unwrap();
    text = text.replacen("\"auth.db\"", "\"auth.dc\"", 1);
    fs::write(work.join(format!("{id}.json")), text).unwrap();
    let r = sh(&verify, &work);
    assert_ne!(r.code, 0, "ssh-keygen accepted a forged sidecar");
}

#[test]
fn the_readme_stock_tools_recovery_of_a_chain_runs_and_exits_0() {
    require_tool("age");
    require_tool("sqlite3");
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 200);
    // A folder with a database in it, and databases found by pattern: their deltas sit below
    // the top folder, where the recipe must find them too.
    let app = env.add_source("app", "dir", "");
    fs::create_dir_all(&app).unwrap();
    create_ledger(&app.join("main.db"), "WAL", 100);
    fs::write(app.join("app.conf"), "x = 1\n").unwrap();
    let tenants = env.path("data/tenants");
    fs::create_dir_all(tenants.join("eu")).unwrap();
    create_ledger(&tenants.join("eu/t1.db"), "WAL", 50);
    env.sources.push(format!(
        "[[source]]\nname = \"tenants\"\npath = \"{}\"\nkind = \"sqlite\"\npattern = \"**/*.db\"\n",
        tenants.display()
    ));
    let key = env.with_age_key();
    env.incremental = Some("max_chain = 10\n".into());
    let full = env.backup();
    for (path, from) in [
        (&db, 201),
        (&app.join("main.db"), 101),
        (&tenants.join("eu/t1.db"), 51),
    ] {
        let conn = rusqlite::Connection::open(path).unwrap();
        for k in from..from + 60 {
            ledger_step(&conn, k);
        }
    }
    let changed = env.backup();
    // The last link changes no database: it brings no -wal, which the loop must take in stride.
    let unchanged = env.backup();
    let rows = check_ledger(&db);

    let work = env.path("by-hand");
    fs::create_dir(&work).unwrap();
    fs::copy(&key, work.join("identity.txt")).unwrap();
    for id in [&full, &changed, &unchanged] {
        let name = format!("{id}.tar.zst.age");
        fs::copy(env.store().join(&name), work.join(&name)).unwrap();
    }
    // The README's ids are examples: the block runs on this chain's, full first.
    let block = readme_block("stock-tools-chain");
    let ids_line = block
        .lines()
        .find(|l| l.starts_with("for id in "))
        .expect("the block loops over the chain's ids");
    let ours = format!("for id in {full} {changed} {unchanged}; do");
    let script = block.replace(&ids_line[..ids_line.find("; do").unwrap() + 4], &ours);
    assert!(script.contains(&ours), "{script}");
    run_block(&script, &work, None);
    assert_eq!(check_ledger(&work.join("rebuilt/auth.db")), rows);
    assert_eq!(check_ledger(&work.join("rebuilt/app/main.db")), 160);
    assert_eq!(check_ledger(&work.join("rebuilt/tenants/eu/t1.db")), 110);
    assert!(!work.join("rebuilt/app/main.db-wal").exists());
}

#[test]
fn the_in_place_restore_commands_put_the_backup_back() {
    let env = signed_env();
    let db = env.path("data/auth.db");
    let id = env.backup();
    let rows = check_ledger(&db);
    let conn = rusqlite::Connection::open(&db).unwrap();
    for k in rows + 1..=rows + 40 {
        ledger_step(&conn, k);
    }
    drop(conn);
    fs::write(env.path("data/etc/server.conf"), "listen = 9999\n").unwrap();
    let config = env.write_config();

    let block = readme_block("restore-in-place");
    let mut lines = block.lines();
    // `restore latest --in-place`: every source back.
    run_block(lines.next().unwrap(), env.root(), Some(&config));
    assert_eq!(check_ledger(&db), rows);
    assert_eq!(
        fs::read_to_string(env.path("data/etc/server.conf")).unwrap(),
        "listen = 1812\n"
    );
    // `restore ID --in-place --only auth.db`: one source, by id.
    let conn = rusqlite::Connection::open(&db).unwrap();
    for k in rows + 1..=rows + 5 {
        ledger_step(&conn, k);
    }
    drop(conn);
    fs::write(env.path("data/etc/server.conf"), "listen = 7777\n").unwrap();
    let second = lines.next().unwrap().replace(README_ID, &id);
    run_block(&second, env.root(), Some(&config));
    assert_eq!(check_ledger(&db), rows);
    assert_eq!(
        fs::read_to_string(env.path("data/etc/server.conf")).unwrap(),
        "listen = 7777\n",
        "--only auth.db touched another source"
    );
}
