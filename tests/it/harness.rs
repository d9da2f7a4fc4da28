//! A small harness so each test reads like a scenario: a private folder with data, a config, and
//! the built binary to run against it.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

pub const BIN: &str = env!("CARGO_BIN_EXE_litevault");

/// Fails (never skips) when a tool the test needs is missing.
pub fn require_tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed; run scripts/test, which installs every tool the tests need");
}

/// An example program of this crate (`examples/NAME.rs`), built by `cargo test --all-targets`;
/// built (or refreshed) here too, since `cargo test --test it NAME` builds no examples. A failed
/// build fails the test.
pub fn example_binary(name: &str) -> &'static Path {
    static BUILT: std::sync::Mutex<Vec<(String, &'static Path)>> =
        std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "--message-format=json",
            "--example",
            name,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} to build the example {name}: {e}"));
    assert!(
        out.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Where cargo put it, whatever the target folder.
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo did not say where it built {name}"));
    assert!(
        path.is_file(),
        "the example {name} is not at {}",
        path.display()
    );
    let path: &'static Path = Box::leak(path.into_boxed_path());
    built.push((name.to_string(), path));
    path
}

/// The ssh client the tests' SFTP runs use: the system `ssh` behind a wrapper, first on PATH
/// (OpenDAL's SFTP service and litevault's own session run `ssh` from PATH), that gives it this
/// test process's own known_hosts file. The user's `~/.ssh/known_hosts` is never read or
/// written. Returns the wrapper's folder and the known_hosts file.
pub fn ssh_client() -> &'static (PathBuf, PathBuf) {
    static CLIENT: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let real = require_tool("ssh");
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Folders of earlier test processes that are gone: their entries would name ports a
        // new server may reuse with another host key.
        if let Ok(entries) = fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("ssh-client-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = base.join(format!("ssh-client-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let known_hosts = dir.join("known_hosts");
        fs::write(&known_hosts, "").unwrap();
        let wrapper = dir.join("ssh");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' -o 'UserKnownHostsFile={}' \"$@\"\n",
                real.display(),
                known_hosts.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        (dir, known_hosts)
    })
}

/// PATH with the tests' ssh client first.
pub fn path_with_ssh_client() -> String {
    format!(
        "{}:{}",
        ssh_client().0.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub extra: String,
    pub encryption: Option<String>,
    pub sources: Vec<String>,
    pub destinations: Vec<String>,
    /// Extra environment for the binary (S3 credentials).
    pub vars: Vec<(String, String)>,
    /// Another `state_dir` than `<root>/state`.
    pub state_dir: Option<PathBuf>,
    /// The body of an `[incremental]` table (written after `extra`); none: every backup full.
    pub incremental: Option<String>,
    /// The config's `name`: this host's namespace folder in each destination.
    pub name: String,
}

impl Env {
    /// An empty environment: data/, backups/, state/ under a fresh temporary folder.
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("litevault-it-")
            .tempdir()
            .unwrap();
        fs::create_dir_all(tmp.path().join("data")).unwrap();
        // The local destination's folder: litevault never creates a destination's root itself
        // (unless `create = true`), as an unmounted disk must not fill the root file system.
        fs::create_dir_all(tmp.path().join("backups")).unwrap();
        Env {
            tmp,
            extra: String::new(),
            encryption: None,
            sources: Vec::new(),
            destinations: vec![dest("local", &format!("file://{}/backups", "__ROOT__"))],
            vars: Vec::new(),
            state_dir: None,
            incremental: None,
            name: "test-host".into(),
        }
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("litevault.toml")
    }

    /// The state folder (`state_dir`) this environment's config names.
    pub fn state(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| self.path("state"))
    }

    /// The namespace folder of the local destination.
    pub fn store(&self) -> PathBuf {
        self.path(&format!("backups/{}", self.name))
    }

    pub fn add_sqlite(&mut self, name: &str) -> PathBuf {
        self.add_source(name, "sqlite", "")
    }

    pub fn add_source(&mut self, name: &str, kind: &str, extra: &str) -> PathBuf {
        let p = self.path(&format!("data/{name}"));
        self.sources.push(format!(
            "[[source]]\nname = \"{name}\"\npath = \"{}\"\nkind = \"{kind}\"\n{extra}\n",
            p.display()
        ));
        p
    }

    /// Encrypt to a fresh age key made by the real `age-keygen`; returns the key file.
    pub fn with_age_key(&mut self) -> PathBuf {
        let key = self.path("key.txt");
        let out = Command::new(require_tool("age-keygen"))
            .arg("-o")
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "age-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let recipient = public_key(&key);
        self.encryption = Some(format!(
            "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
            key.display()
        ));
        key
    }

    pub fn write_config(&self) -> PathBuf {
        let mut text = format!(
            "name = \"{}\"\nstate_dir = \"{}\"\n{}\n",
            self.name,
            self.state_dir
                .clone()
                .unwrap_or_else(|| self.path("state"))
                .display(),
            self.extra
        );
        if let Some(body) = &self.incremental {
            text.push_str(&format!("[incremental]\n{body}\n"));
        }
        for s in &self.sources {
            text.push_str(s);
        }
        if let Some(e) = &self.encryption {
            text.push_str(e);
        }
        for d in &self.destinations {
            text.push_str(&d.replace("__ROOT__", &self.root().display().to_string()));
        }
        fs::write(self.config_path(), text).unwrap();
        self.config_path()
    }

    /// Run the binary with this environment's config (written afresh) and no terminal.
    pub fn run(&self, args: &[&str]) -> Run {
        self.write_config();
        run_cmd(self.command(args))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.write_config();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("LITEVAULT_CONFIG")
            .env("PATH", path_with_ssh_client());
        // Only what the test gives: no stray credentials from the environment running the tests.
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    /// The binary started in the background, its output discarded (for tests that kill it).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// `list --json`, parsed.
    pub fn list(&self) -> Vec<serde_json::Value> {
        let r = self.run(&["--json", "list"]);
        r.ok();
        serde_json::from_str::<Vec<serde_json::Value>>(&r.stdout)
            .unwrap_or_else(|e| panic!("list --json: {e}: {}", r.stdout))
    }

    /// How many complete backups `list --dest NAME` shows.
    pub fn count_on(&self, dest: &str) -> usize {
        self.run(&["--json", "list", "--dest", dest])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len()
    }

    /// Take a backup that must succeed; returns its id.
    pub fn backup(&self) -> String {
        let r = self.run(&["--json", "backup"]);
        r.ok();
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// Files in the local destination's namespace folder, recursively, relative.
    pub fn stored_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.store(), &self.store(), &mut out);
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(base, &p, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

pub fn dest(name: &str, url: &str) -> String {
    format!("[[destination]]\nname = \"{name}\"\nurl = \"{url}\"\n")
}

pub fn public_key(key: &Path) -> String {
    let text = fs::read_to_string(key).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key as a comment")
        .to_string()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

pub fn run_cmd(mut cmd: Command) -> Run {
    cmd.env_remove("LITEVAULT_CONFIG");
    run_as_set(cmd)
}

/// `cmd` with exactly the environment it was given (`LITEVAULT_CONFIG` included), no stdin.
pub fn run_as_set(mut cmd: Command) -> Run {
    let out: Output = cmd.stdin(Stdio::null()).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Wait `delay`, then kill -9 `child`; true when it was still running, so the kill landed
/// mid-way.
pub fn kill_after(mut child: std::process::Child, delay: Duration) -> bool {
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    running
}

/// Send SIGTERM to `child` after `delay`; returns its exit code and how long it took to end
/// after the signal (None when it had already finished).
pub fn term_after(
    mut child: std::process::Child,
    delay: Duration,
) -> (i32, Option<Duration>, String) {
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let sent = std::time::Instant::now();
    if running {
        let ok = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = sent.elapsed();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        running.then_some(took),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run a shell pipeline (for the real-tools tests).
pub fn sh(script: &str, dir: &Path) -> Run {
    let mut cmd = Command::new("bash");
    cmd.arg("-o")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir);
    run_cmd(cmd)
}

// ---- databases -------------------------------------------------------------------------------

/// A "ledger" database whose every committed state is recognisable: transaction k inserts row k
/// into `entries` (value derived from k) and moves 1 between two accounts, so the sum of balances
/// never changes and `counter.n == count(entries)`. A restored copy equals the source at one
/// instant exactly when these hold and the rows are 1..=n with the derived values.
pub fn create_ledger(path: &Path, journal_mode: &str, rows: i64) {
    let conn = Connection::open(path).unwrap();
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mode, journal_mode.to_lowercase());
    conn.execute_batch(
        "CREATE TABLE entries(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
         CREATE INDEX entries_body ON entries(body);
         CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE counter(n INTEGER NOT NULL);
         INSERT INTO accounts VALUES (1, 1000000), (2, 0);
         INSERT INTO counter VALUES (0);",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for k in 1..=rows {
        ledger_step(&tx, k);
    }
    tx.commit().unwrap();
}

pub fn ledger_body(k: i64) -> String {
    format!("entry {k} {}", blake3::hash(&k.to_le_bytes()).to_hex())
}

pub fn ledger_step(conn: &Connection, k: i64) {
    conn.execute(
        "INSERT INTO entries(id, body) VALUES (?1, ?2)",
        rusqlite::params![k, ledger_body(k)],
    )
    .unwrap();
    conn.execute("UPDATE accounts SET balance = balance - 1 WHERE id = 1", [])
        .unwrap();
    conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 2", [])
        .unwrap();
    conn.execute("UPDATE counter SET n = ?1", [k]).unwrap();
}

/// Check a restored ledger: integrity, and equal to the state after exactly `n` transactions.
/// Returns n.
pub fn check_ledger(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    let ic: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ic, "ok", "{}", path.display());
    let n: i64 = conn
        .query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap();
    let count: i64 = conn
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    let max: i64 = conn
        .query_row("SELECT coalesce(max(id), 0) FROM entries", [], |r| r.get(0))
        .unwrap();
    let (a, b): (i64, i64) = conn
        .query_row("SELECT (SELECT balance FROM accounts WHERE id=1), (SELECT balance FROM accounts WHERE id=2)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(count, n, "rows and counter disagree: a torn state");
    assert_eq!(max, n, "row ids are not 1..=n");
    assert_eq!(a + b, 1_000_000, "balances do not sum: a torn state");
    assert_eq!(b, n, "balance moved {b} times but {n} transactions are in");
    let mut stmt = conn
        .prepare("SELECT id, body FROM entries ORDER BY id")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    for row in rows {
        let (id, body) = row.unwrap();
        assert_eq!(
            body,
            ledger_body(id),
            "row {id} differs from what the writer wrote"
        );
    }
    n
}

/// A concurrent writer: keeps committing ledger transactions until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    pub committed: Arc<AtomicI64>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(path: &Path) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicI64::new(0));
        let (s, c, p) = (stop.clone(), committed.clone(), path.to_path_buf());
        let handle = std::thread::spawn(move || {
            let conn = Connection::open(&p).unwrap();
            conn.busy_timeout(Duration::from_secs(120)).unwrap();
            let mut k: i64 = conn
                .query_row("SELECT n FROM counter", [], |r| r.get(0))
                .unwrap();
            while !s.load(Ordering::Relaxed) {
                k += 1;
                let tx = conn.unchecked_transaction().unwrap();
                ledger_step(&tx, k);
                tx.commit().unwrap();
                c.store(k, Ordering::SeqCst);
            }
        });
        Writer {
            stop,
            committed,
            handle: Some(handle),
        }
    }

    /// Let the writer commit `n` more transactions, then stop it.
    pub fn stop_after(self, n: i64) -> i64 {
        let start = self.committed.load(Ordering::SeqCst);
        while self.committed.load(Ordering::SeqCst) < start + n {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.stop()
    }

    pub fn stop(mut self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("writer thread failed");
        self.committed.load(Ordering::SeqCst)
    }
}

/// A plain database of about `mb` MiB, for tests that need a backup to take a while.
pub fn create_bulk(path: &Path, mb: usize) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB);",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..(mb * 16) {
        // Hash-derived bytes: not compressible, so the archive is as big as the data.
        let mut data = Vec::with_capacity(65536);
        let mut h = blake3::Hasher::new();
        h.update(&(i as u64).to_le_bytes());
        let mut xof = h.finalize_xof();
        data.resize(65536, 0);
        xof.fill(&mut data);
        tx.execute("INSERT INTO blobs(data) VALUES (?1)", [data])
            .unwrap();
    }
    tx.commit().unwrap();
}

pub fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}
