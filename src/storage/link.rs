//! Every call litevault makes to a destination goes through a [`Link`]: it can be stopped by a
//! signal within a tick, a connection that could not be made is tried again, and a destination
//! that stopped answering is given up after two timeouts in a row instead of after every retry
//! of every request. Its errors name the destination and say what to check.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use opendal::layers::{RetryEvent, RetryInterceptor};
use opendal::ErrorKind;

use super::runtime;
use super::url::Location;
use crate::exit::{Exit, Fault};

/// After this many timeouts in a row (with no answer in between), a destination is given up for
/// the rest of the run: a frozen server costs about two timeouts, not every retry of every
/// request.
pub const TIMEOUTS_BEFORE_GIVING_UP: u32 = 2;

/// How a destination answers: consecutive timeouts, seen by OpenDAL's retries (through the
/// interceptor) and by the calls themselves.
#[derive(Default)]
pub struct Health {
    timeouts: AtomicU32,
    gone: AtomicBool,
}

impl Health {
    fn answered(&self) {
        self.timeouts.store(0, Ordering::Relaxed);
    }

    fn failed(&self, e: &opendal::Error) {
        if is_timeout(e) {
            if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_BEFORE_GIVING_UP {
                self.gone.store(true, Ordering::Relaxed);
            }
        } else {
            // It answered, if only with an error.
            self.answered();
        }
    }

    fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }
}

pub struct Notify(pub Arc<Health>);

impl RetryInterceptor for Notify {
    fn intercept(&self, event: RetryEvent<'_>) {
        self.0.failed(event.err);
    }
}

fn is_timeout(e: &opendal::Error) -> bool {
    flatten(e).contains("timeout")
}

/// What every call to the backend goes through: it can be stopped by a signal, and it gives up
/// on a destination that stopped answering. Cheap to clone into readers and writers.
#[derive(Clone)]
pub struct Link {
    pub(super) name: String,
    pub(super) display: String,
    pub(super) location: Location,
    pub(super) timeout: Duration,
    pub(super) retries: usize,
    pub(super) health: Arc<Health>,
}

impl Link {
    pub(super) fn ctx(&self, what: &str, path: &str) -> String {
        format!(
            "destination {} ({}): {what} {path}",
            self.name, self.display
        )
    }

    pub(super) fn err(&self, e: opendal::Error) -> anyhow::Error {
        let hint = error_hint(&e, &self.location);
        anyhow::Error::new(storage_fault(e, hint))
    }

    fn gone_error(&self) -> anyhow::Error {
        anyhow::Error::new(
            Fault::new(
                Exit::Failure,
                format!(
                    "destination {} ({}) stopped answering: {TIMEOUTS_BEFORE_GIVING_UP} requests in a row timed out after {}; given up for this run",
                    self.name,
                    self.display,
                    crate::ui::duration(self.timeout)
                ),
            )
            .hint(match &self.location {
                Location::Sftp(s) => format!("check that the SSH server {}:{} is up and not overloaded; raise `timeout` for this destination if it is just slow", s.host, s.port),
                _ => "check that the server is up and not overloaded; raise `timeout` for this destination if it is just slow".to_string(),
            }),
        )
    }

    /// Run one request to completion, unless a stop is asked for or the destination is given
    /// up. A connection that could not even be made (SFTP's ssh refused) is retried here,
    /// since OpenDAL does not count it as temporary.
    pub(super) fn call<T, F, Fut>(&self, what: &str, path: &str, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = opendal::Result<T>>,
    {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            match self.attempt(f()) {
                Ok(v) => return Ok(v),
                Err(Attempt::Stopped(e)) => return Err(e),
                Err(Attempt::Failed(e)) => {
                    if is_connect_error(&e) && attempt < self.retries {
                        attempt += 1;
                        sleep_interruptibly(jitter(delay));
                        delay = (delay * 2).min(Duration::from_secs(10));
                        continue;
                    }
                    return Err(self.failed(e, what, path));
                }
            }
        }
    }

    /// [`Link::call`] for a step that cannot be made again (a write into a stream, the next
    /// chunk of a read): OpenDAL retries inside it where it can.
    pub(super) fn call_once<T>(
        &self,
        what: &str,
        path: &str,
        fut: impl Future<Output = opendal::Result<T>>,
    ) -> Result<T> {
        self.attempt(fut).map_err(|a| match a {
            Attempt::Stopped(e) => e,
            Attempt::Failed(e) => self.failed(e, what, path),
        })
    }

    /// [`Link::call`] for many requests at once inside the runtime, at most `bound` in flight:
    /// one blocking call for all of them, where one per request left a listing waiting on
    /// round trips. Each result is what [`Link::call`] would have returned for it.
    pub(super) fn call_many<T, F, Fut>(
        &self,
        what: &str,
        paths: &[&str],
        bound: usize,
        f: F,
    ) -> Vec<Result<T>>
    where
        F: Fn(&str) -> Fut,
        Fut: Future<Output = opendal::Result<T>>,
    {
        use futures_util::StreamExt;
        let mut slots: Vec<Option<std::result::Result<T, Attempt>>> =
            paths.iter().map(|_| None).collect();
        if crate::interrupt::check().is_ok() && !self.health.gone() {
            let health = self.health.clone();
            let slots = &mut slots;
            let f = &f;
            runtime::handle().block_on(async {
                let all = futures_util::stream::iter(paths.iter().enumerate())
                    .map(|(i, path)| async move { (i, self.attempt_async(path, f).await) })
                    .buffer_unordered(bound.max(1));
                let collect = all.for_each(|(i, r)| {
                    slots[i] = Some(r);
                    std::future::ready(())
                });
                tokio::select! {
                    _ = collect => {}
                    _ = stopped(&health) => {}
                }
            });
        }
        slots
            .into_iter()
            .zip(paths)
            .map(|(slot, path)| match slot {
                Some(Ok(v)) => Ok(v),
                Some(Err(Attempt::Failed(e))) => Err(self.failed(e, what, path)),
                Some(Err(Attempt::Stopped(e))) => Err(e),
                // Never run, or cut short: by a signal, or by a destination given up.
                None => Err(match crate::interrupt::check() {
                    Err(stop) => stop,
                    Ok(()) => self.gone_error(),
                }),
            })
            .collect()
    }

    /// One request of [`Link::call_many`], with [`Link::call`]'s care: health kept, and a
    /// connection that could not be made tried again.
    async fn attempt_async<T, F, Fut>(&self, path: &str, f: &F) -> std::result::Result<T, Attempt>
    where
        F: Fn(&str) -> Fut,
        Fut: Future<Output = opendal::Result<T>>,
    {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            if self.health.gone() {
                return Err(Attempt::Stopped(self.gone_error()));
            }
            match f(path).await {
                Ok(v) => {
                    self.health.answered();
                    return Ok(v);
                }
                Err(e) => {
                    self.health.failed(&e);
                    if is_connect_error(&e) && attempt < self.retries {
                        attempt += 1;
                        tokio::time::sleep(jitter(delay)).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                        continue;
                    }
                    return Err(Attempt::Failed(e));
                }
            }
        }
    }

    fn attempt<T>(
        &self,
        fut: impl Future<Output = opendal::Result<T>>,
    ) -> std::result::Result<T, Attempt> {
        crate::interrupt::check().map_err(Attempt::Stopped)?;
        if self.health.gone() {
            return Err(Attempt::Stopped(self.gone_error()));
        }
        let health = self.health.clone();
        let outcome = runtime::handle().block_on(async {
            tokio::select! {
                r = fut => Some(r),
                _ = stopped(&health) => None,
            }
        });
        match outcome {
            None => {
                crate::interrupt::check().map_err(Attempt::Stopped)?;
                Err(Attempt::Stopped(self.gone_error()))
            }
            Some(Ok(v)) => {
                self.health.answered();
                Ok(v)
            }
            Some(Err(e)) => {
                self.health.failed(&e);
                Err(Attempt::Failed(e))
            }
        }
    }

    fn failed(&self, e: opendal::Error, what: &str, path: &str) -> anyhow::Error {
        if self.health.gone() {
            if let Err(stop) = crate::interrupt::check() {
                return stop;
            }
            return self.gone_error().context(self.err(e));
        }
        self.err(e).context(self.ctx(what, path))
    }
}

enum Attempt {
    /// A signal, or a destination given up: not worth another try.
    Stopped(anyhow::Error),
    Failed(opendal::Error),
}

/// Resolves once a signal asked the run to stop, or the destination is given up.
async fn stopped(health: &Health) {
    loop {
        if crate::interrupt::requested() || health.gone() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sleep_interruptibly(d: Duration) {
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until && !crate::interrupt::requested() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn jitter(d: Duration) -> Duration {
    let n = u64::from_str_radix(&crate::state::nonce()[..4], 16).unwrap_or(0);
    d + d.mul_f64((n % 1000) as f64 / 2000.0)
}

/// SFTP's ssh could not connect at all (refused, unreachable): worth another try. A host key
/// that does not verify, or a key the server refuses, is an answer, not an outage: retrying it
/// only delays the error a person must act on.
fn is_connect_error(e: &opendal::Error) -> bool {
    if e.is_temporary() || e.kind() != ErrorKind::Unexpected {
        return false;
    }
    let text = flatten(e).to_ascii_lowercase();
    text.contains("ssh error")
        && !text.contains("host key verification failed")
        && !text.contains("permission denied")
}

/// OpenDAL errors carry the request (with our paths, never credentials); they become a failure
/// with a hint for the kinds a user can act on.
pub fn storage_fault(e: opendal::Error, hint: Option<String>) -> Fault {
    let mut fault = Fault::new(Exit::Failure, flatten(&e));
    if let Some(h) = hint {
        fault = fault.hint(h);
    }
    fault
}

/// Whether an error message says the destination refused the operation for lack of rights
/// (S3's AccessDenied, SFTP's permission denied).
pub fn denied(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("permissiondenied") || m.contains("permission denied") || m.contains("accessdenied")
}

/// The error and its sources on one line (OpenDAL's Display keeps the cause separate).
fn flatten(e: &opendal::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// The HTTP status of the response an error came from, when there was one (OpenDAL keeps the
/// response's parts in the error's context).
fn http_status(e: &opendal::Error) -> Option<u16> {
    let text = e.to_string();
    let at = text.find("status: ")? + "status: ".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A connection that could not be made or was cut: nothing about keys or host keys.
fn is_unreachable(e: &opendal::Error) -> bool {
    let text = flatten(e);
    [
        "Connection refused",
        "Connection reset",
        "Connection timed out",
        "No route to host",
        "Could not resolve",
        "timeout",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

pub fn error_hint(e: &opendal::Error, location: &Location) -> Option<String> {
    if flatten(e).contains("No space left") {
        return Some("the destination's filesystem is full: free space there, or delete old backups with `litevault prune`".into());
    }
    let hint = match (e.kind(), location) {
        (ErrorKind::PermissionDenied, Location::S3(_)) => {
            "check the S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or credentials_file) and the bucket policy"
                .to_string()
        }
        (ErrorKind::PermissionDenied, _) => "check the destination's permissions (owner and mode of the folder, or the login)".into(),
        (ErrorKind::NotFound, Location::S3(s3)) => format!("check that the bucket {:?} exists in that region and endpoint", s3.bucket),
        (ErrorKind::NotFound, _) => "check that the destination's folder exists".into(),
        (ErrorKind::RateLimited, _) => "the backend throttled the requests; try again later or set bandwidth_limit".into(),
        (ErrorKind::ConfigInvalid, _) => "check the destination's settings in the config".into(),
        (_, Location::Sftp(s)) if is_unreachable(e) => format!(
            "check that the SSH server {host}:{port} is up and reachable from here (firewall, port, sshd running)",
            host = s.host,
            port = s.port
        ),
        (_, Location::Sftp(s)) => format!(
            "check that {host}:{port} is reachable, that its host key is in known_hosts (seed it with `ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts`, \
             or set host_key_check = \"accept-new\"), and that the key is authorized for {user}",
            host = s.host,
            port = s.port,
            user = s.user
        ),
        (ErrorKind::Unexpected, Location::S3(s3)) => match http_status(e) {
            Some(status) => format!(
                "the S3 endpoint {} answered HTTP {status} to every try; check the server's health and logs, then try again",
                s3.endpoint.as_deref().unwrap_or("(AWS)")
            ),
            None => format!(
                "the S3 endpoint {} did not answer, or the connection broke; check that it is up and reachable",
                s3.endpoint.as_deref().unwrap_or("(AWS)")
            ),
        },
        _ if e.is_temporary() => "a temporary error persisted through every retry; try again later".into(),
        _ => return None,
    };
    Some(hint)
}
