//! Fault injection (issue 11): the real binary against real servers (s3s-fs, sshd) reached
//! through [`FaultProxy`], which fails requests, cuts, freezes or refuses connections. Each fault
//! is checked for: a retry (the proxy's counters), a bounded run, the exit code, the message,
//! and no backup listed that is not whole.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::faultproxy::{Dir, FaultProxy};
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
struct Running {
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
    fn start(env: &Env, args: &[&str]) -> Running {
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

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// SIGTERM, as `kill -TERM PID`.
    fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait for the end; kill it and fail the test if it runs past `BOUND` from its start.
    /// Returns the outcome and how long it ran.
    fn finish(mut self) -> (Run, Duration) {
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
fn run_bounded(env: &Env, args: &[&str]) -> (Run, Duration) {
    Running::start(env, args).finish()
}

/// Stderr names the destination, not a database (a failed upload is not a source's fault).
fn blames_the_destination(r: &Run) {
    r.stderr_has("destination remote");
    assert!(
        !r.stderr.to_lowercase().contains("database"),
        "a destination's failure is reported as a database's:\n{}",
        r.stderr
    );
}

// ---- rigs ------------------------------------------------------------------------------------

/// One small ledger database, and `remote` as the only destination.
fn env_with(url: &str, extra: &str) -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 200);
    env.destinations = vec![format!("{}{extra}\n", dest("remote", url))];
    env
}

/// s3s-fs behind an HTTP fault proxy. Fields drop in order: the proxy before the server.
struct S3Rig {
    env: Env,
    proxy: FaultProxy,
    _server: S3Server,
    tmp: tempfile::TempDir,
}

impl S3Rig {
    /// `extra`: keys of the destination's table.
    fn new(extra: &str) -> S3Rig {
        let tmp = tempfile::tempdir().unwrap();
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
        S3Rig {
            env,
            proxy,
            _server: server,
            tmp,
        }
    }

    /// s3s-fs's storage folder: each bucket a folder, its bookkeeping in dot files.
    fn storage(&self) -> PathBuf {
        self.tmp.path().join("s3")
    }

    fn add_bulk(&mut self, mb: usize) {
        let db = self.env.add_sqlite("bulk.db");
        create_bulk(&db, mb);
    }

    fn context(&self) -> String {
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
fn multipart_leftovers(storage: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(storage)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload") || n.contains(".upload-"))
        .collect();
    out.sort();
    out
}

fn stored_parts(storage: &Path) -> usize {
    multipart_leftovers(storage)
        .iter()
        .filter(|n| n.starts_with(".upload_id-") && n.contains(".part-"))
        .count()
}

/// Multipart leftovers once the run is over, allowing the server a moment to finish requests
/// that were still arriving.
fn leftovers_after_a_moment(storage: &Path) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let left = multipart_leftovers(storage);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A private sshd behind a byte-level fault proxy whose port is trusted in known_hosts.
struct SftpRig {
    env: Env,
    _alias: HostKeyAlias,
    proxy: FaultProxy,
    _server: SshServer,
    _tmp: tempfile::TempDir,
}

impl SftpRig {
    fn new(extra: &str) -> SftpRig {
        let tmp = tempfile::tempdir().unwrap();
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
        SftpRig {
            env,
            _alias: alias,
            proxy,
            _server: server,
            _tmp: tmp,
        }
    }
}

// ---- the proxy itself ------------------------------------------------------------------------

/// A stand-in HTTP server: answers every request `200 ok` and closes.
fn tiny_http_server() -> (u16, Arc<std::sync::atomic::AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = c.set_nonblocking(false);
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let close = String::from_utf8_lossy(&head)
                .to_lowercase()
                .contains("connection: close");
            let body = if close { "ok" } else { "no" };
            let _ = c.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{body}")
                    .as_bytes(),
            );
        }
    });
    (port, stop)
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_millis(1500)))?;
    c.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn faults_proxy_self_test() {
    let (port, stop) = tiny_http_server();
    let p = FaultProxy::http(port);
    // Pass-through, with the request rewritten to one per connection.
    let r = http_get(p.port()).unwrap();
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    // The first request faulted, the next one through.
    p.fail_first(1, 503);
    let r = http_get(p.port()).unwrap();
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("Retry-After: 0") && r.contains("<Code>ServiceUnavailable</Code>"));
    assert!(http_get(p.port()).unwrap().starts_with("HTTP/1.1 200"));
    assert_eq!((p.requests(), p.http_faults()), (3, 1));
    // Only matching requests.
    p.fail_matching("POST ", 500);
    assert!(http_get(p.port()).unwrap().starts_with("HTTP/1.1 200"));
    // Frozen: no answer, until passed again.
    p.stall();
    let e = http_get(p.port()).unwrap_err();
    assert!(matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    p.pass();
    // (The frozen request goes on once passed, though its client has gone.)
    std::thread::sleep(Duration::from_millis(300));
    // Cut mid-response: 20 bytes, then the end.
    let resets = p.resets();
    p.reset_after(Dir::ToClient, 20);
    let r = http_get(p.port()).unwrap_or_default();
    assert!(r.len() <= 20, "{r:?}");
    assert_eq!(p.resets(), resets + 1);
    // Frozen mid-response.
    p.pass();
    p.stall_after(Dir::ToClient, 10);
    let mut c = TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = [0u8; 100];
    assert_eq!(c.read(&mut got).unwrap(), 10);
    assert!(c.read(&mut got).is_err(), "frozen after 10 bytes");
    p.pass();
    // Refused by the kernel; then back.
    p.refuse();
    let e = TcpStream::connect(("127.0.0.1", p.port())).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    p.pass();
    assert!(http_get(p.port()).unwrap().starts_with("HTTP/1.1 200"));
    // Hung up at once, counted.
    let before = p.connections();
    p.hang_up();
    assert!(http_get(p.port()).map(|r| r.is_empty()).unwrap_or(true));
    assert_eq!(p.connections(), before + 1);
    let start = Instant::now();
    drop(c);
    drop(p);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the proxy stops at once"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
}

// ---- S3 --------------------------------------------------------------------------------------

#[test]
fn faults_s3_500_for_the_first_two_requests_is_retried_and_succeeds() {
    let rig = S3Rig::new("retries = 3\ntimeout = \"5s\"");
    rig.proxy.fail_first(2, 500);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!("took {took:?}; {}", rig.context());
    r.ok();
    assert_eq!(rig.proxy.http_faults(), 2, "{}", rig.context());
    assert!(rig.proxy.requests() > 2, "not retried: {}", rig.context());
    assert_eq!(rig.env.list().len(), 1);
}

#[test]
fn faults_s3_503_for_every_request_fails_naming_the_destination() {
    let rig = S3Rig::new("retries = 3\ntimeout = \"5s\"");
    rig.proxy.fail_all(503);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    assert!(
        rig.proxy.http_faults() > 1,
        "not retried: {}",
        rig.context()
    );
    r.code(1);
    blames_the_destination(&r);
    assert!(
        !r.stderr.contains("did not answer"),
        "the endpoint answered 503, yet the hint says it did not answer:\n{}",
        r.stderr
    );
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
}

#[test]
fn faults_s3_connection_reset_mid_upload_every_time_fails_with_nothing_listed() {
    let mut rig = S3Rig::new("retries = 3\ntimeout = \"5s\"");
    rig.add_bulk(20);
    rig.proxy.reset_after(Dir::ToServer, MIB);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    assert!(rig.proxy.resets() > 1, "not retried: {}", rig.context());
    r.code(1).stderr_has("destination remote");
    let left = leftovers_after_a_moment(&rig.storage());
    assert!(
        left.is_empty(),
        "the multipart upload was left on the server: {left:?}\n{}",
        rig.context()
    );
    rig.proxy.pass();
    assert!(rig.env.list().is_empty(), "a partial backup is listed");
    let (r, _) = run_bounded(&rig.env, &["backup"]);
    r.ok();
    assert_eq!(rig.env.list().len(), 1);
}

#[test]
fn faults_s3_one_connection_reset_mid_upload_is_retried_and_the_backup_is_whole() {
    let mut rig = S3Rig::new("retries = 3\ntimeout = \"5s\"");
    rig.add_bulk(20);
    rig.proxy.reset_once_after(Dir::ToServer, 3 * MIB);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    assert_eq!(rig.proxy.resets(), 1, "{}", rig.context());
    r.ok();
    let listed = rig.env.list();
    assert_eq!(listed.len(), 1);
    let (r, _) = run_bounded(&rig.env, &["verify", "latest"]);
    r.ok();
}

#[test]
fn faults_s3_frozen_server_from_the_start_fails_in_bounded_time() {
    let rig = S3Rig::new("retries = 5\ntimeout = \"2s\"");
    rig.proxy.stall();
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    assert!(
        rig.proxy.connections() > 1,
        "not retried: {}",
        rig.context()
    );
    r.code(1).stderr_has("destination remote");
    assert!(took < FROZEN_BOUND, "took {took:?}");
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
}

#[test]
fn faults_s3_server_frozen_mid_response_fails_in_bounded_time() {
    let rig = S3Rig::new("retries = 5\ntimeout = \"2s\"");
    // Every response stops after its first 20 bytes: `HTTP/1.1 200 OK\r\nco`.
    rig.proxy.stall_after(Dir::ToClient, 20);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    assert!(rig.proxy.stalls() > 1, "not retried: {}", rig.context());
    r.code(1).stderr_has("destination remote");
    assert!(took < FROZEN_BOUND, "took {took:?}");
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
}

#[test]
fn faults_sigterm_while_retrying_a_frozen_s3_server_exits_130_promptly() {
    let rig = S3Rig::new("retries = 5\ntimeout = \"2s\"");
    rig.proxy.stall();
    let mut run = Running::start(&rig.env, &["backup"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        run.is_running(),
        "the backup ended before the signal: {}",
        run.stderr_so_far()
    );
    run.terminate();
    let signalled = Instant::now();
    let (r, took) = run.finish();
    let after_signal = signalled.elapsed();
    eprintln!(
        "took {took:?}, {after_signal:?} after SIGTERM; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    r.code(130);
    assert!(
        after_signal < Duration::from_secs(5),
        "exited {after_signal:?} after SIGTERM"
    );
    let runs = rig.env.run(&["--json", "history"]).ok().json();
    assert_eq!(runs[0]["command"], "backup", "{runs:#}");
    assert_eq!(runs[0]["status"], "interrupted", "{runs:#}");
    assert!(runs[0]["backup_id"].is_null(), "{runs:#}");
}

#[test]
fn faults_s3_multipart_upload_is_aborted_when_its_parts_fail() {
    // ~40 MiB of incompressible data: five 8 MiB parts.
    let mut rig = S3Rig::new("retries = 2\ntimeout = \"10s\"");
    rig.add_bulk(40);
    // The first part is stored; every later part fails. The abort (DELETE ...?uploadId=) passes.
    rig.proxy.fail_matching_after("partNumber=", 1, 500);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    let log = rig.proxy.request_log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST ") && l.contains("?uploads")),
        "no multipart upload was started: {}",
        rig.context()
    );
    assert!(
        rig.proxy.http_faults() > 1,
        "not retried: {}",
        rig.context()
    );
    r.code(1).stderr_has("destination remote");
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
    let left = leftovers_after_a_moment(&rig.storage());
    assert!(
        left.is_empty(),
        "the multipart upload was left on the server: {left:?}\n{}",
        rig.context()
    );
}

#[test]
fn faults_s3_multipart_upload_is_aborted_on_sigterm() {
    let mut rig = S3Rig::new("retries = 3\ntimeout = \"10s\"\nbandwidth_limit = \"4MiB\"");
    rig.add_bulk(40);
    let mut run = Running::start(&rig.env, &["backup"]);
    // Wait until the server holds a part of the upload.
    let until = Instant::now() + Duration::from_secs(40);
    while stored_parts(&rig.storage()) == 0 {
        assert!(
            run.is_running() && Instant::now() < until,
            "no part was stored while the backup ran: {}\n{}",
            run.stderr_so_far(),
            rig.context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run.terminate();
    let signalled = Instant::now();
    let (r, took) = run.finish();
    let after_signal = signalled.elapsed();
    eprintln!(
        "took {took:?}, {after_signal:?} after SIGTERM; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    r.code(130);
    assert!(
        after_signal < Duration::from_secs(10),
        "exited {after_signal:?} after SIGTERM"
    );
    assert!(rig.env.list().is_empty());
    let left = leftovers_after_a_moment(&rig.storage());
    assert!(
        left.is_empty(),
        "the multipart upload was left on the server: {left:?}\n{}",
        rig.context()
    );
}

// ---- SFTP ------------------------------------------------------------------------------------

#[test]
fn faults_sftp_frozen_server_fails_in_bounded_time_naming_the_destination() {
    let rig = SftpRig::new("retries = 5\ntimeout = \"3s\"");
    rig.proxy.stall();
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.proxy.summary()
    );
    assert!(
        rig.proxy.connections() > 1,
        "not retried: {}",
        rig.proxy.summary()
    );
    r.code(1);
    blames_the_destination(&r);
    assert!(took < FROZEN_BOUND, "took {took:?}");
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
}

#[test]
fn faults_sftp_server_frozen_mid_upload_fails_in_bounded_time() {
    let mut rig = SftpRig::new("retries = 5\ntimeout = \"3s\"");
    let db = rig.env.add_sqlite("bulk.db");
    create_bulk(&db, 20);
    // Past the handshake and the login, in the middle of the archive.
    rig.proxy.stall_after(Dir::ToServer, 2 * MIB);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.proxy.summary()
    );
    assert!(rig.proxy.stalls() >= 1, "{}", rig.proxy.summary());
    r.code(1);
    blames_the_destination(&r);
    assert!(took < FROZEN_BOUND, "took {took:?}");
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
}

#[test]
fn faults_sftp_connection_refused_fails_naming_the_destination() {
    let rig = SftpRig::new("retries = 3\ntimeout = \"3s\"");
    rig.proxy.refuse();
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!("took {took:?}; exit {}; stderr:\n{}", r.code, r.stderr);
    r.code(1);
    blames_the_destination(&r);
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
}

#[test]
fn faults_sftp_connections_hung_up_at_once_are_retried_then_fail() {
    let rig = SftpRig::new("retries = 3\ntimeout = \"3s\"");
    rig.proxy.hang_up();
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.proxy.summary()
    );
    assert!(
        rig.proxy.connections() > 1,
        "not retried: {}",
        rig.proxy.summary()
    );
    r.code(1);
    blames_the_destination(&r);
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
}

#[test]
fn faults_sftp_refused_connections_are_retried_until_the_server_is_back() {
    let rig = SftpRig::new("retries = 5\ntimeout = \"3s\"");
    rig.proxy.refuse();
    let run = Running::start(&rig.env, &["backup"]);
    // Retries back off 0.5 s, 1 s, 2 s, ...: a server down for 2 s is caught by the third.
    std::thread::sleep(Duration::from_secs(2));
    rig.proxy.pass();
    let (r, took) = run.finish();
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.proxy.summary()
    );
    r.ok();
    assert!(rig.proxy.connections() >= 1);
    assert_eq!(rig.env.list().len(), 1);
}
