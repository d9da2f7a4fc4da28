//! Fault injection (issue 11): the real binary against real servers (s3s-fs, sshd) reached
//! through [`FaultProxy`], which fails requests, cuts, freezes or refuses connections. Each fault
//! is checked for: a retry (the proxy's counters), a bounded run, the exit code, the message,
//! and no backup listed that is not whole. Scenarios that every remote backend must pass are
//! written once (`both.rs`) and run on S3 and on SFTP through one [`Rig`], as ripgrep's
//! `rgtest!` runs a case in each mode; what only one backend has (HTTP status codes, multipart
//! uploads) is in `s3.rs`.

mod both;
mod proxy;
mod s3;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::faultproxy::FaultProxy;
use crate::harness::*;
use crate::servers::*;

/// Any run longer than this is killed and fails the test.
const BOUND: Duration = Duration::from_secs(90);
/// A run against a frozen server must end well within timeout x retries x requests: about two
/// timeouts (the destination is given up after two in a row) plus the backoff and the other
/// steps, with room for a loaded machine. Without the give-up rule these runs took 37-43 s.
const FROZEN_BOUND: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

// ---- running the binary with a bound ---------------------------------------------------------

/// The binary running in the background, its output collected.
pub(super) struct Running {
    child: Child,
    start: Instant,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Running {
    pub(super) fn start(env: &Env, args: &[&str]) -> Running {
        let mut child = env
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Running {
            child,
            start: Instant::now(),
            stdout,
            stderr,
            readers,
        }
    }

    pub(super) fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub(super) fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// SIGTERM, as `kill -TERM PID`.
    pub(super) fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait for the end; kill it and fail the test if it runs past `BOUND` from its start.
    /// Returns the outcome and how long it ran.
    pub(super) fn finish(mut self) -> (Run, Duration) {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.start.elapsed() > BOUND {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running after {BOUND:?}; killed. stderr so far:\n{}",
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = self.start.elapsed();
        // A leftover ssh process may hold the pipes open: wait a little, not for ever.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until && self.readers.iter().any(|r| !r.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let text =
            |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
        };
        (run, took)
    }
}

/// Run to the end within `BOUND`; returns the outcome and how long it took.
pub(super) fn run_bounded(env: &Env, args: &[&str]) -> (Run, Duration) {
    Running::start(env, args).finish()
}

/// Stderr names the destination, not a database (a failed upload is not a source's fault).
pub(super) fn blames_the_destination(r: &Run) {
    r.stderr_has("destination remote");
    assert!(
        !r.stderr.to_lowercase().contains("database"),
        "a destination's failure is reported as a database's:\n{}",
        r.stderr
    );
}

// ---- the rig ---------------------------------------------------------------------------------

/// One small ledger database, and `remote` as the only destination.
fn env_with(url: &str, extra: &str) -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 200);
    env.destinations = vec![format!("{}{extra}\n", dest("remote", url))];
    env
}

/// The remote backends a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    /// s3s-fs behind an HTTP fault proxy (one request per connection).
    S3,
    /// A private sshd behind a byte-level fault proxy whose port is trusted in known_hosts.
    Sftp,
}

/// A backend behind a fault proxy, and an environment whose only destination, `remote`, is
/// reached through it. Fields drop in order: the proxy before the server.
pub(super) struct Rig {
    pub env: Env,
    pub proxy: FaultProxy,
    _alias: Option<HostKeyAlias>,
    _s3: Option<S3Server>,
    _ssh: Option<SshServer>,
    tmp: tempfile::TempDir,
}

impl Rig {
    /// `extra`: keys of the destination's table.
    pub fn new(backend: Backend, extra: &str) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        match backend {
            Backend::S3 => {
                let server = S3Server::start(&tmp.path().join("s3"), &["bkt"]);
                let proxy = FaultProxy::http(server.port);
                let url = format!(
                    "s3://bkt/backups?endpoint={}&region=us-east-1",
                    proxy.endpoint()
                );
                let mut env = env_with(&url, extra);
                env.vars = vec![
                    ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
                    ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
                ];
                Rig {
                    env,
                    proxy,
                    _alias: None,
                    _s3: Some(server),
                    _ssh: None,
                    tmp,
                }
            }
            Backend::Sftp => {
                let server = SshServer::start(&tmp.path().join("sshd"));
                let proxy = FaultProxy::tcp(server.port);
                let alias = server.trust_at(proxy.port());
                // The destination's folder: litevault never creates it unless `create = true`.
                fs::create_dir(tmp.path().join("store")).unwrap();
                let url = format!(
                    "sftp://{}@127.0.0.1:{}{}",
                    server.user,
                    proxy.port(),
                    tmp.path().join("store").display()
                );
                let env = env_with(
                    &url,
                    &format!("key = \"{}\"\n{extra}", server.client_key.display()),
                );
                Rig {
                    env,
                    proxy,
                    _alias: Some(alias),
                    _s3: None,
                    _ssh: Some(server),
                    tmp,
                }
            }
        }
    }

    /// s3s-fs's storage folder: each bucket a folder, its bookkeeping in dot files.
    pub fn storage(&self) -> PathBuf {
        self.tmp.path().join("s3")
    }

    /// A database of `mb` MiB that does not compress: an upload long enough to fault mid-way.
    pub fn add_bulk(&mut self, mb: usize) {
        let db = self.env.add_sqlite("bulk.db");
        create_bulk(&db, mb);
    }

    /// What the proxy saw, for assertion messages.
    pub fn context(&self) -> String {
        format!(
            "{}\nrequests: {:#?}",
            self.proxy.summary(),
            self.proxy.request_log()
        )
    }
}

/// What s3s-fs 0.14.1 keeps of unfinished multipart uploads, in its storage folder (not in the
/// bucket's): `.upload-<id>.json` (the upload, created by CreateMultipartUpload),
/// `.upload_id-<id>.part-<n>` (each stored part) and
/// `.bucket-<b64>.object-<b64>.upload-<id>.metadata.json`. CompleteMultipartUpload and
/// AbortMultipartUpload remove them all; ListMultipartUploads is not implemented.
pub(super) fn multipart_leftovers(storage: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(storage)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload") || n.contains(".upload-"))
        .collect();
    out.sort();
    out
}

pub(super) fn stored_parts(storage: &Path) -> usize {
    multipart_leftovers(storage)
        .iter()
        .filter(|n| n.starts_with(".upload_id-") && n.contains(".part-"))
        .count()
}

/// Multipart leftovers once the run is over, allowing the server a moment to finish requests
/// that were still arriving.
pub(super) fn leftovers_after_a_moment(storage: &Path) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let left = multipart_leftovers(storage);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
