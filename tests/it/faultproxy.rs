//! A fault-injecting TCP proxy on 127.0.0.1, in front of a real server (s3s-fs, sshd), for tests
//! of what litevault does when the network or the server misbehaves. Plain std: one thread
//! accepts, two threads per connection copy bytes; every socket has a short timeout so that every
//! thread notices a change of fault, or the proxy being dropped, within a tick.
//!
//! Faults are switched at run time through `&self` (the proxy is `Sync`; share it with
//! `Arc<FaultProxy>` if another thread switches them) and apply from then on:
//!
//! - [`pass`](FaultProxy::pass): pass-through (the default); clears every fault.
//! - [`reset_after`](FaultProxy::reset_after) `(dir, n)`: each connection is cut after `n` bytes
//!   in `dir`; [`reset_once_after`](FaultProxy::reset_once_after) cuts only the first connection
//!   that gets that far. "Cut" means both sockets are closed at once: the client gets an RST when
//!   it still has unread bytes in flight (an upload: `Connection reset by peer`), otherwise a FIN
//!   (a truncated response: an incomplete message). std cannot set `SO_LINGER`, so an RST cannot
//!   be forced.
//! - [`stall`](FaultProxy::stall): a frozen server: nothing is forwarded in either direction and
//!   no socket is closed, on open connections and new ones alike, until `pass`.
//!   [`stall_after`](FaultProxy::stall_after) `(dir, n)`: each connection freezes for good after
//!   `n` bytes in `dir` (mid-response with [`Dir::ToClient`]); `stall_once_after` freezes only the
//!   first.
//! - [`refuse`](FaultProxy::refuse): the listening socket is closed, so a connect gets
//!   `ECONNREFUSED` (a server that is down); `pass` listens again on the same port. The kernel
//!   refuses, so refused attempts are not counted. [`hang_up`](FaultProxy::hang_up): new
//!   connections are accepted (and counted) and closed at once, before the server says anything
//!   (an RST once the client has sent its first bytes, as ssh and HTTP clients do at once).
//! - HTTP only ([`FaultProxy::http`]): every connection carries one request. The request head is
//!   read; a request picked for a fault has its body read and thrown away and is answered with
//!   the status, an S3-style XML `<Error>` and `Connection: close` (plus `Retry-After: 0` for 429
//!   and 503); any other request is forwarded with `Connection: close`, so the next request comes
//!   on a new connection. [`fail_first`](FaultProxy::fail_first) `(k, status)`: the next `k`
//!   requests; [`fail_all`](FaultProxy::fail_all); [`fail_after`](FaultProxy::fail_after)
//!   `(m, status)`: every request after the next `m`;
//!   [`fail_matching`](FaultProxy::fail_matching) `(pattern, status)` and
//!   [`fail_matching_after`](FaultProxy::fail_matching_after) `(pattern, m, status)`: the same,
//!   counting only requests whose request line contains `pattern` (e.g. `"partNumber="`: S3
//!   multipart parts fail, while the abort, a `DELETE ...?uploadId=`, goes through).
//!
//! - [`limit_rate`](FaultProxy::limit_rate) `(n)`: each connection carries at most `n` bytes per
//!   second in each direction (a link whose per-connection throughput is capped, as object
//!   stores' often is); off by default, and cleared by `pass`.
//!
//! Counters: [`connections`](FaultProxy::connections) accepted,
//! [`requests`](FaultProxy::requests) (HTTP request heads read),
//! [`http_faults`](FaultProxy::http_faults) (requests answered by the proxy),
//! [`resets`](FaultProxy::resets) and [`stalls`](FaultProxy::stalls) (connections cut or frozen
//! by a byte fault), [`bytes`](FaultProxy::bytes) forwarded per direction,
//! [`peak_open`](FaultProxy::peak_open) (most connections open at once), and
//! [`range_log`](FaultProxy::range_log) (HTTP requests that carried a `Range` header).
//!
//! Dropping the proxy stops it: the stop flag is seen within a tick by every thread, every socket
//! is closed (so a client still connected sees the connection end), and every thread is joined.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often blocked threads look at the stop flag and the faults.
const TICK: Duration = Duration::from_millis(50);
/// The longest request head the HTTP mode reads.
const MAX_HEAD: usize = 64 << 10;

/// A direction of traffic through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server: requests, uploads.
    ToServer,
    /// Server to client: responses, downloads.
    ToClient,
}

#[derive(Clone, Copy, Debug)]
struct ByteFault {
    dir: Dir,
    after: u64,
    /// How many more connections it may hit; `None`: every one.
    budget: Option<u64>,
}

#[derive(Clone, Debug)]
struct HttpFault {
    status: u16,
    /// Only requests whose request line (`PUT /bkt/key?partNumber=2&uploadId=... HTTP/1.1`)
    /// contains this, when set.
    matching: Option<String>,
    /// Matching requests let through first.
    skip: u64,
    /// Matching requests hit after those; `None`: every later one.
    times: Option<u64>,
    /// Matching requests seen since the fault was set.
    seen: u64,
}

#[derive(Clone, Debug, Default)]
struct Rules {
    refuse: bool,
    hang_up: bool,
    stall: bool,
    reset_after: Option<ByteFault>,
    stall_after: Option<ByteFault>,
    http: Option<HttpFault>,
    /// Bytes per second per connection and direction.
    rate: Option<u64>,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Rules>,
    stop: AtomicBool,
    /// The acceptor's listening socket is open (false while refusing).
    listening: AtomicBool,
    connections: AtomicU64,
    requests: AtomicU64,
    http_faults: AtomicU64,
    resets: AtomicU64,
    stalls: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    /// (request line, Range header) of ranged requests, in order (the first 1000).
    ranges: Mutex<Vec<(String, String)>>,
    /// Request lines seen, in order (the first 1000), with `-> status` when faulted.
    log: Mutex<Vec<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn spawn(self: &Arc<Self>, f: impl FnOnce() + Send + 'static) {
        let handle = std::thread::spawn(f);
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
    }

    /// Sleep while the whole proxy is stalled; false once it is stopped.
    fn wait_while_stalled(&self) -> bool {
        while self.rules().stall {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(TICK);
        }
        !self.stopped()
    }

    /// Whether a byte fault fires on a connection that has carried `before` bytes in `dir` and
    /// is about to carry `len` more; returns how many of them still go through first.
    fn byte_fault(&self, which: Which, dir: Dir, before: u64, len: u64) -> Option<u64> {
        let mut rules = self.rules();
        let slot = match which {
            Which::Reset => &mut rules.reset_after,
            Which::Stall => &mut rules.stall_after,
        };
        let fault = slot.as_mut()?;
        if fault.dir != dir || before + len < fault.after.max(1) {
            return None;
        }
        match &mut fault.budget {
            Some(0) => return None,
            Some(n) => *n -= 1,
            None => {}
        }
        Some(fault.after.saturating_sub(before).min(len))
    }

    /// The status to answer a request with, if it is to be faulted.
    fn http_fault(&self, request_line: &str) -> Option<u16> {
        let mut rules = self.rules();
        let f = rules.http.as_mut()?;
        if !f
            .matching
            .as_deref()
            .is_none_or(|m| request_line.contains(m))
        {
            return None;
        }
        f.seen += 1;
        let hit = f.seen > f.skip && f.times.is_none_or(|t| f.seen <= f.skip + t);
        hit.then_some(f.status)
    }
}

#[derive(Clone, Copy)]
enum Which {
    Reset,
    Stall,
}

/// The proxy; see the module documentation. Stops when dropped.
pub struct FaultProxy {
    port: u16,
    upstream: u16,
    http: bool,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A byte-level proxy (for ssh) to 127.0.0.1:`upstream`.
    pub fn tcp(upstream: u16) -> FaultProxy {
        FaultProxy::start(upstream, false)
    }

    /// A proxy that reads HTTP/1.1 request heads (for S3) to 127.0.0.1:`upstream`: one request
    /// per connection, and the HTTP faults.
    pub fn http(upstream: u16) -> FaultProxy {
        FaultProxy::start(upstream, true)
    }

    fn start(upstream: u16, http: bool) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fault proxy");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared::default());
        shared.listening.store(true, Ordering::SeqCst);
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || accept_loop(listener, port, upstream, http, s));
        FaultProxy {
            port,
            upstream,
            http,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, an S3 endpoint through the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, f: impl FnOnce(&mut Rules)) {
        f(&mut self.shared.rules());
    }

    /// Pass-through: every fault cleared (a connection already frozen by `stall_after` or
    /// already cut stays so).
    pub fn pass(&self) {
        self.set(|r| *r = Rules::default());
        self.wait_listening(true);
    }

    /// Cut each connection after `n` bytes in `dir`.
    pub fn reset_after(&self, dir: Dir, n: u64) {
        self.set(|r| {
            r.reset_after = Some(ByteFault {
                dir,
                after: n,
                budget: None,
            })
        });
    }

    /// Cut the first connection that carries `n` bytes in `dir`; later ones pass.
    pub fn reset_once_after(&self, dir: Dir, n: u64) {
        self.set(|r| {
            r.reset_after = Some(ByteFault {
                dir,
                after: n,
                budget: Some(1),
            })
        });
    }

    /// Freeze everything, open connections and new ones, until `pass`.
    pub fn stall(&self) {
        self.set(|r| r.stall = true);
    }

    /// Freeze each connection for good after `n` bytes in `dir`.
    pub fn stall_after(&self, dir: Dir, n: u64) {
        self.set(|r| {
            r.stall_after = Some(ByteFault {
                dir,
                after: n,
                budget: None,
            })
        });
    }

    /// Freeze the first connection that carries `n` bytes in `dir`; later ones pass.
    pub fn stall_once_after(&self, dir: Dir, n: u64) {
        self.set(|r| {
            r.stall_after = Some(ByteFault {
                dir,
                after: n,
                budget: Some(1),
            })
        });
    }

    /// Stop listening: connecting gets `ECONNREFUSED` until `pass` (not counted).
    pub fn refuse(&self) {
        self.set(|r| r.refuse = true);
        self.wait_listening(false);
    }

    /// Wait until the acceptor has closed (or opened again) the listener, so that a change is
    /// in force on return.
    fn wait_listening(&self, listening: bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.listening.load(Ordering::SeqCst) != listening {
            assert!(
                Instant::now() < deadline,
                "the fault proxy did not {} listening on :{}",
                if listening { "start" } else { "stop" },
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Cap each connection, from now on, to `bytes_per_sec` in each direction.
    pub fn limit_rate(&self, bytes_per_sec: u64) {
        assert!(bytes_per_sec > 0);
        self.set(|r| r.rate = Some(bytes_per_sec));
    }

    /// The most connections that were open at once.
    pub fn peak_open(&self) -> u64 {
        self.shared.peak_open.load(Ordering::SeqCst)
    }

    /// The HTTP requests that carried a `Range` header, in order (the first 1000): the request
    /// line (as in [`request_log`](Self::request_log)) and the header's value (`bytes=0-99`).
    pub fn range_log(&self) -> Vec<(String, String)> {
        self.shared
            .ranges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Accept new connections (counted) and close them at once, before any byte is forwarded.
    pub fn hang_up(&self) {
        self.set(|r| r.hang_up = true);
    }

    fn http_fault(&self, status: u16, matching: Option<&str>, skip: u64, times: Option<u64>) {
        assert!(self.http, "HTTP faults need FaultProxy::http");
        self.set(|r| {
            r.http = Some(HttpFault {
                status,
                matching: matching.map(str::to_string),
                skip,
                times,
                seen: 0,
            })
        });
    }

    /// Answer the next `k` requests with `status`.
    pub fn fail_first(&self, k: u64, status: u16) {
        self.http_fault(status, None, 0, Some(k));
    }

    /// Answer every request with `status`.
    pub fn fail_all(&self, status: u16) {
        self.http_fault(status, None, 0, None);
    }

    /// Let the next `m` requests through, then answer every later one with `status`.
    pub fn fail_after(&self, m: u64, status: u16) {
        self.http_fault(status, None, m, None);
    }

    /// Answer every request whose request line contains `pattern` with `status`: `"PUT "` for
    /// a method, `"partNumber="` for S3 multipart parts, `"uploads"` for their creation.
    pub fn fail_matching(&self, pattern: &str, status: u16) {
        self.http_fault(status, Some(pattern), 0, None);
    }

    /// Let the next `m` requests whose request line contains `pattern` through, then answer
    /// every later one with `status`; other requests pass.
    pub fn fail_matching_after(&self, pattern: &str, m: u64, status: u16) {
        self.http_fault(status, Some(pattern), m, None);
    }

    /// Connections accepted (refused ones are not seen).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// HTTP request heads read.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests the proxy answered with an injected status.
    pub fn http_faults(&self) -> u64 {
        self.shared.http_faults.load(Ordering::SeqCst)
    }

    /// Connections cut by `reset_after` / `reset_once_after`, or closed by `hang_up`.
    pub fn resets(&self) -> u64 {
        self.shared.resets.load(Ordering::SeqCst)
    }

    /// Connections frozen by `stall_after` / `stall_once_after`.
    pub fn stalls(&self) -> u64 {
        self.shared.stalls.load(Ordering::SeqCst)
    }

    /// Bytes forwarded in `dir` (an HTTP head as rewritten).
    pub fn bytes(&self, dir: Dir) -> u64 {
        match dir {
            Dir::ToServer => self.shared.to_server.load(Ordering::SeqCst),
            Dir::ToClient => self.shared.to_client.load(Ordering::SeqCst),
        }
    }

    /// The HTTP request lines seen, in order (the first 1000); a faulted one ends with
    /// `-> STATUS`.
    pub fn request_log(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The counters, for assertion messages.
    pub fn summary(&self) -> String {
        format!(
            "proxy :{} -> :{}: {} connections, {} requests, {} HTTP faults, {} resets, {} stalls, {} bytes to the server, {} to the client",
            self.port,
            self.upstream,
            self.connections(),
            self.requests(),
            self.http_faults(),
            self.resets(),
            self.stalls(),
            self.bytes(Dir::ToServer),
            self.bytes(Dir::ToClient)
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        // The acceptor has ended, so no connection thread is started any more.
        let threads = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, port: u16, upstream: u16, http: bool, shared: Arc<Shared>) {
    let mut listener = Some(listener);
    while !shared.stopped() {
        let refuse = shared.rules().refuse;
        match (&listener, refuse) {
            (Some(_), true) => {
                listener = None;
                shared.listening.store(false, Ordering::SeqCst);
                continue;
            }
            (None, false) => {
                // Listen again on the same port (std sets SO_REUSEADDR).
                match TcpListener::bind(("127.0.0.1", port)) {
                    Ok(l) => {
                        l.set_nonblocking(true).unwrap();
                        listener = Some(l);
                        shared.listening.store(true, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(TICK),
                }
                continue;
            }
            (None, true) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            (Some(_), false) => {}
        }
        let l = listener.as_ref().unwrap();
        match l.accept() {
            Ok((client, _)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let s = shared.clone();
                shared.spawn(move || serve(client, upstream, http, s));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Counts a connection as open while it lives.
struct Open<'s>(&'s Shared);

impl<'s> Open<'s> {
    fn new(shared: &'s Shared) -> Open<'s> {
        let now = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak_open.fetch_max(now, Ordering::SeqCst);
        Open(shared)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(client: TcpStream, upstream: u16, http: bool, shared: Arc<Shared>) {
    let _open = Open::new(&shared);
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let _ = client.set_read_timeout(Some(TICK));
    let _ = client.set_write_timeout(Some(TICK));
    if shared.rules().hang_up {
        // Wait for the client's first bytes and leave them unread: closing then sends an RST.
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut b = [0u8; 1];
        while let Err(e) = client.peek(&mut b) {
            if !is_timeout(&e) || Instant::now() > deadline {
                break;
            }
        }
        shared.resets.fetch_add(1, Ordering::SeqCst);
        return;
    }
    if !shared.wait_while_stalled() {
        return;
    }
    let mut first = Vec::new();
    if http {
        let Some((head, rest)) = read_head(&client, &shared) else {
            return;
        };
        let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let request_line = head.lines().next().unwrap_or("");
        let fault = shared.http_fault(request_line);
        {
            let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() < 1000 {
                let line = request_line.split("?X-Amz").next().unwrap_or("");
                log.push(match fault {
                    Some(status) => format!("{line} -> {status}"),
                    None => line.to_string(),
                });
            }
        }
        if let Some(range) = header(&head, "range") {
            let mut ranges = shared.ranges.lock().unwrap_or_else(|e| e.into_inner());
            if ranges.len() < 1000 {
                let line = request_line.split("?X-Amz").next().unwrap_or("");
                ranges.push((line.to_string(), range.to_string()));
            }
        }
        if let Some(status) = fault {
            shared.http_faults.fetch_add(1, Ordering::SeqCst);
            answer(client, &head, rest, status, n, &shared);
            return;
        }
        first = close_after_one(&head).into_bytes();
        first.extend_from_slice(&rest);
    }
    let Ok(server) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], upstream)),
        Duration::from_secs(5),
    ) else {
        return; // the client sees the connection close
    };
    let _ = server.set_nodelay(true);
    let _ = server.set_read_timeout(Some(TICK));
    let _ = server.set_write_timeout(Some(TICK));
    let conn = Arc::new(Conn::default());
    let (c2, s2) = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(s)) => (c, s),
        _ => return,
    };
    let (sh, cn) = (shared.clone(), conn.clone());
    let up = std::thread::spawn(move || pump(c2, s2, Dir::ToServer, first, &sh, &cn));
    pump(server, client, Dir::ToClient, Vec::new(), &shared, &conn);
    let _ = up.join();
}

/// One connection's state, shared by its two pumps.
#[derive(Default)]
struct Conn {
    /// Cut: both pumps stop and drop their sockets.
    cut: AtomicBool,
    /// Frozen for good.
    frozen: AtomicBool,
    /// One direction has ended; the other one ends when its reader does.
    half_closed: AtomicBool,
}

/// Copy `from` to `to` in direction `dir` (after `first`), applying the faults, until either
/// side ends, the connection is cut, or the proxy stops.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    dir: Dir,
    first: Vec<u8>,
    shared: &Shared,
    conn: &Conn,
) {
    let counter = match dir {
        Dir::ToServer => &shared.to_server,
        Dir::ToClient => &shared.to_client,
    };
    let mut sent: u64 = 0;
    let began = Instant::now();
    let mut pending = first;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if shared.stopped() || conn.cut.load(Ordering::SeqCst) {
            return;
        }
        if conn.frozen.load(Ordering::SeqCst) || shared.rules().stall {
            std::thread::sleep(TICK);
            continue;
        }
        if pending.is_empty() {
            match from.read(&mut buf) {
                Ok(0) => {
                    // This side ended: pass the end on; the other pump ends when its side does.
                    let _ = to.shutdown(Shutdown::Write);
                    if conn.half_closed.swap(true, Ordering::SeqCst) {
                        conn.cut.store(true, Ordering::SeqCst);
                    }
                    wait_for_end(shared, conn);
                    return;
                }
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e) if is_timeout(&e) => continue,
                Err(_) => {
                    conn.cut.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
        let len = pending.len() as u64;
        let (mut go, mut then) = (len, None);
        if let Some(k) = shared.byte_fault(Which::Reset, dir, sent, len) {
            (go, then) = (k, Some(Which::Reset));
        } else if let Some(k) = shared.byte_fault(Which::Stall, dir, sent, len) {
            (go, then) = (k, Some(Which::Stall));
        }
        let chunk: Vec<u8> = pending.drain(..go as usize).collect();
        if !write_all(&mut to, &chunk, shared, conn) {
            conn.cut.store(true, Ordering::SeqCst);
            return;
        }
        sent += go;
        counter.fetch_add(go, Ordering::SeqCst);
        hold_to_rate(began, sent, shared, conn);
        match then {
            Some(Which::Reset) => {
                shared.resets.fetch_add(1, Ordering::SeqCst);
                conn.cut.store(true, Ordering::SeqCst);
                return;
            }
            Some(Which::Stall) => {
                shared.stalls.fetch_add(1, Ordering::SeqCst);
                conn.frozen.store(true, Ordering::SeqCst);
            }
            None => {}
        }
    }
}

/// With a rate limit: wait until `sent` bytes since `began` are within it (a tick at a time, so a
/// cut or a stop is still seen).
fn hold_to_rate(began: Instant, sent: u64, shared: &Shared, conn: &Conn) {
    let Some(rate) = shared.rules().rate else {
        return;
    };
    let due = began + Duration::from_secs_f64(sent as f64 / rate as f64);
    while Instant::now() < due && !shared.stopped() && !conn.cut.load(Ordering::SeqCst) {
        std::thread::sleep(due.saturating_duration_since(Instant::now()).min(TICK));
    }
}

/// After this direction ended: keep the sockets until the other direction ends too.
fn wait_for_end(shared: &Shared, conn: &Conn) {
    while !shared.stopped() && !conn.cut.load(Ordering::SeqCst) {
        std::thread::sleep(TICK);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Write all of `data`, a tick at a time, giving up when the connection is cut or the proxy
/// stops; a freeze holds the rest back.
fn write_all(to: &mut TcpStream, mut data: &[u8], shared: &Shared, conn: &Conn) -> bool {
    while !data.is_empty() {
        if shared.stopped() || conn.cut.load(Ordering::SeqCst) {
            return false;
        }
        if conn.frozen.load(Ordering::SeqCst) || shared.rules().stall {
            std::thread::sleep(TICK);
            continue;
        }
        match to.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Read an HTTP request head; returns it (as text, without the blank line) and what was read
/// past it. None when the client closes first or the proxy stops.
fn read_head(mut client: &TcpStream, shared: &Shared) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(at) = find(&data, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..at]).into_owned();
            return Some((head, data[at + 4..].to_vec()));
        }
        if data.len() > MAX_HEAD || !shared.wait_while_stalled() {
            return None;
        }
        match client.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => return None,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The head with `Connection: close` instead of any `Connection` header, and the blank line.
fn close_after_one(head: &str) -> String {
    let mut out = String::with_capacity(head.len() + 24);
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Read and discard the request body, then answer with `status` and close.
fn answer(mut client: TcpStream, head: &str, rest: Vec<u8>, status: u16, n: u64, shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 64 << 10];
    let mut read_more = |client: &mut TcpStream, done: &dyn Fn(&[u8], u64) -> bool| {
        let mut seen = rest.clone();
        let mut total = rest.len() as u64;
        while !done(&seen, total) && Instant::now() < deadline && !shared.stopped() {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    total += k as u64;
                    // Keep only the tail, where a chunked body's end shows.
                    seen.extend_from_slice(&buf[..k]);
                    if seen.len() > 16 {
                        seen.drain(..seen.len() - 16);
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
    };
    if let Some(len) = header(head, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        read_more(&mut client, &|_, total| total >= len);
    } else if header(head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_more(&mut client, &|seen, _| seen.ends_with(b"0\r\n\r\n"));
    }
    let (code, message) = match status {
        500 => (
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        503 => ("ServiceUnavailable", "Reduce your request rate."),
        429 => ("TooManyRequests", "Too many requests."),
        // What AWS answers a delete of a version its object lock retention still holds.
        403 => (
            "AccessDenied",
            "Access Denied because object protected by object lock.",
        ),
        _ => ("InternalError", "Injected by the fault proxy."),
    };
    let reason = match status {
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        429 => "Too Many Requests",
        403 => "Forbidden",
        _ => "Error",
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>faultproxy-{n}</RequestId></Error>"
    );
    let retry_after = if matches!(status, 429 | 503) {
        "Retry-After: 0\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n{retry_after}Connection: close\r\n\r\n{body}",
        body.len()
    );
    let conn = Conn::default();
    let _ = write_all(&mut client, response.as_bytes(), shared, &conn);
    let _ = client.shutdown(Shutdown::Write);
    // Let the client read the answer and close first, so it is not cut by an RST.
    let until = Instant::now() + Duration::from_secs(2);
    let mut b = [0u8; 1024];
    while Instant::now() < until && !shared.stopped() {
        match client.read(&mut b) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}
