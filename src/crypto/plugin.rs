//! age plugins (hardware keys): the binary `age-plugin-NAME` on PATH, driven through age's
//! plugin protocol. litevault never prompts: a plugin that asks for a PIN, a confirmation or any
//! input is declined ([`Unattended`]), its messages become warnings, and every call into a
//! plugin is bounded in time and by signals ([`Plugins::call`]), so a run under cron fails with
//! the reason instead of hanging.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use age::secrecy::{ExposeSecret, SecretString};
use age_core::format::{FileKey, Stanza};
use anyhow::Result;

use crate::exit::{config as config_error, Exit, Fault};

/// How long one call into an age plugin may take (wrapping or unwrapping one file key) before
/// litevault gives up on it: long enough for a person to touch a key, short enough for cron.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Overrides [`PLUGIN_TIMEOUT`] (`30s`, `2m`).
pub const PLUGIN_TIMEOUT_ENV: &str = "LITEVAULT_PLUGIN_TIMEOUT";

/// The recipients of one plugin, every call bounded.
pub(super) fn recipient(
    name: &str,
    origin: &str,
    list: &[age::plugin::Recipient],
    plugins: &Plugins,
) -> Result<Box<dyn age::Recipient + Send>> {
    let plugin = age::plugin::RecipientPluginV1::new(name, list, &[], plugins.callbacks(name))
        .map_err(|e| missing_plugin(origin, e))?;
    Ok(Box::new(BoundedRecipient {
        inner: Arc::new(plugin),
        binary: binary_name(name),
        plugins: plugins.clone(),
        gave_up: AtomicBool::new(false),
    }))
}

/// The identities of one plugin, every call bounded.
pub(super) fn identity(
    name: &str,
    origin: &str,
    list: &[age::plugin::Identity],
    plugins: &Plugins,
) -> Result<Box<dyn age::Identity + Send + Sync>> {
    let plugin = age::plugin::IdentityPluginV1::new(name, list, plugins.callbacks(name))
        .map_err(|e| missing_plugin(origin, e))?;
    Ok(Box::new(BoundedIdentity {
        inner: Arc::new(plugin),
        binary: binary_name(name),
        plugins: plugins.clone(),
        gave_up: AtomicBool::new(false),
    }))
}

fn binary_name(plugin: &str) -> String {
    format!("age-plugin-{plugin}")
}

/// A plugin that is not on PATH is a problem of this host's setup: exit 2, naming the binary.
fn missing_plugin(origin: &str, err: age::plugin::ResolveError) -> anyhow::Error {
    match err {
        age::plugin::ResolveError::MissingPlugin { binary_name } => anyhow::Error::new(
            config_error(format!(
                "{origin} needs the age plugin {binary_name}, which is not on PATH: install {binary_name}, or put the folder that holds it on PATH"
            ))
            .hint(format!(
                "litevault looked in PATH={}; cron's PATH is short (often /usr/bin:/bin): set PATH in the crontab or the service's environment",
                std::env::var("PATH").unwrap_or_default()
            )),
        ),
        other => config_error(format!("{origin}: {}", other.to_string().trim_end())).into(),
    }
}

/// [`PLUGIN_TIMEOUT`], or what `LITEVAULT_PLUGIN_TIMEOUT` says.
pub(super) fn plugin_timeout() -> Result<Duration> {
    match std::env::var(PLUGIN_TIMEOUT_ENV) {
        Ok(v) if !v.trim().is_empty() => humantime::parse_duration(v.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                config_error(format!(
                    "{PLUGIN_TIMEOUT_ENV}={v:?} is not a duration (expected e.g. \"30s\" or \"2m\")"
                ))
                .into()
            }),
        _ => Ok(PLUGIN_TIMEOUT),
    }
}

/// What a plugin wanted that litevault could not give. The latest one is kept.
#[derive(Clone)]
enum Trouble {
    /// It asked through the protocol (a PIN, a confirmation, a value) and was declined.
    Asked {
        binary: String,
        what: &'static str,
        prompt: String,
    },
    /// It gave no answer in time: waiting for a touch, a device, or stuck.
    Silent { binary: String, waited: Duration },
}

/// The plugins of one [`Sealer`] or [`Opener`]: the callbacks they are given, what they asked
/// for, and how long a call may take.
#[derive(Clone)]
pub(super) struct Plugins {
    trouble: Arc<Mutex<Option<Trouble>>>,
    pub(super) timeout: Duration,
}

impl Plugins {
    pub(super) fn new() -> Plugins {
        Plugins {
            trouble: Arc::new(Mutex::new(None)),
            timeout: PLUGIN_TIMEOUT,
        }
    }

    fn callbacks(&self, plugin: &str) -> Unattended {
        Unattended {
            binary: binary_name(plugin),
            trouble: self.trouble.clone(),
        }
    }

    fn record(&self, trouble: Trouble) {
        *self.trouble.lock().unwrap_or_else(|e| e.into_inner()) = Some(trouble);
    }

    /// A call into `binary` ended well: what it asked for on the way did not matter.
    fn clear(&self, binary: &str) {
        let mut t = self.trouble.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(&*t, Some(Trouble::Asked { binary: b, .. } | Trouble::Silent { binary: b, .. }) if b == binary)
        {
            *t = None;
        }
    }

    /// The reason a plugin failed, when it is one litevault knows better than age.
    pub(super) fn trouble(&self) -> Option<Fault> {
        let t = self
            .trouble
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let unattended = "use a key that needs no PIN for unattended backups, and no touch either \
             (age-plugin-yubikey: --pin-policy never --touch-policy never); a backup made for a key that \
             needs one can still be opened by hand with `age -d` (see \"Restore without litevault\" in the README)";
        Some(match t {
            Trouble::Asked {
                binary,
                what,
                prompt,
            } => Fault::new(
                Exit::Usage,
                format!(
                    "the plugin {binary} asked for {what}{prompt}; litevault runs without a terminal and cannot answer it"
                ),
            )
            .hint(unattended),
            Trouble::Silent { binary, waited } => Fault::new(
                Exit::Failure,
                format!(
                    "the plugin {binary} gave no answer within {} (is it waiting for a touch or a PIN?); \
                     litevault runs without a terminal and cannot give one",
                    crate::ui::duration(waited)
                ),
            )
            .hint(format!(
                "{unattended}; {PLUGIN_TIMEOUT_ENV} sets how long a plugin may take (default {})",
                crate::ui::duration(PLUGIN_TIMEOUT)
            )),
        })
    }

    /// Run one call into the plugin `binary` on a thread of its own and wait for it at most
    /// `timeout`. A call that does not end in time is abandoned: its thread stays blocked on the
    /// plugin's pipe until this process exits and closes it, which tells the plugin to end. Every
    /// later call into the same plugin fails at once: one stuck key costs one timeout per run,
    /// not one per backup.
    pub(super) fn call<T: Send + 'static>(
        &self,
        binary: &str,
        gave_up: &AtomicBool,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        let silent = || {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{binary} gave no answer in time"),
            )
        };
        if gave_up.load(Ordering::SeqCst) {
            return Err(silent());
        }
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(binary.to_string())
            .spawn(move || {
                let _ = tx.send(f());
            })?;
        // Waited on in short steps, so that a signal ends the wait within a tick.
        let deadline = std::time::Instant::now() + self.timeout;
        let answer = loop {
            crate::interrupt::check_io()?;
            let step = deadline
                .saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_millis(100));
            match rx.recv_timeout(step) {
                Err(mpsc::RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => {
                    continue
                }
                other => break other,
            }
        };
        match answer {
            Ok(v) => Ok(v),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                gave_up.store(true, Ordering::SeqCst);
                self.record(Trouble::Silent {
                    binary: binary.to_string(),
                    waited: self.timeout,
                });
                Err(silent())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(io::Error::other(format!("the call into {binary} failed")))
            }
        }
    }
}

/// age's callbacks for a run nobody attends: messages become warnings; a PIN, a confirmation or
/// a value is never prompted for (no terminal is touched), only declined and remembered, so
/// that the run fails saying what the plugin wanted.
#[derive(Clone)]
struct Unattended {
    binary: String,
    trouble: Arc<Mutex<Option<Trouble>>>,
}

impl Unattended {
    fn decline(&self, what: &'static str, prompt: &str) {
        // The plugin's own words, on one line and short; they are a prompt, not a secret.
        let prompt: String = prompt
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        let prompt = prompt.trim();
        *self.trouble.lock().unwrap_or_else(|e| e.into_inner()) = Some(Trouble::Asked {
            binary: self.binary.clone(),
            what,
            prompt: if prompt.is_empty() {
                String::new()
            } else {
                format!(" (\"{prompt}\")")
            },
        });
    }
}

impl age::Callbacks for Unattended {
    fn display_message(&self, message: &str) {
        let message = message.trim();
        if !message.is_empty() {
            crate::ui::Ui::new(false, false).warn(&format!("{}: {message}", self.binary));
        }
    }

    fn confirm(&self, message: &str, _yes: &str, _no: Option<&str>) -> Option<bool> {
        self.decline("a confirmation (perhaps a touch)", message);
        None
    }

    fn request_public_string(&self, description: &str) -> Option<String> {
        self.decline("an answer", description);
        None
    }

    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        self.decline("a PIN (or a touch)", description);
        None
    }
}

/// A plugin identity whose every call is bounded in time ([`Plugins::call`]).
struct BoundedIdentity {
    inner: Arc<age::plugin::IdentityPluginV1<Unattended>>,
    binary: String,
    plugins: Plugins,
    gave_up: AtomicBool,
}

impl age::Identity for BoundedIdentity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        self.unwrap_stanzas(std::slice::from_ref(stanza))
    }

    fn unwrap_stanzas(&self, stanzas: &[Stanza]) -> Option<Result<FileKey, age::DecryptError>> {
        let stanzas: Vec<Stanza> = stanzas.iter().map(copy_stanza).collect();
        let inner = self.inner.clone();
        let result = self.plugins.call(&self.binary, &self.gave_up, move || {
            age::Identity::unwrap_stanzas(&*inner, &stanzas)
        });
        match result {
            Ok(r) => {
                if matches!(r, Some(Ok(_))) {
                    self.plugins.clear(&self.binary);
                }
                r
            }
            Err(e) => Some(Err(age::DecryptError::Io(e))),
        }
    }
}

/// A plugin's recipients, every call bounded in time ([`Plugins::call`]).
struct BoundedRecipient {
    inner: Arc<age::plugin::RecipientPluginV1<Unattended>>,
    binary: String,
    plugins: Plugins,
    gave_up: AtomicBool,
}

impl age::Recipient for BoundedRecipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        let key = FileKey::init_with_mut(|k| k.copy_from_slice(file_key.expose_secret()));
        let inner = self.inner.clone();
        let result = self.plugins.call(&self.binary, &self.gave_up, move || {
            age::Recipient::wrap_file_key(&*inner, &key)
        });
        match result {
            Ok(r) => {
                if r.is_ok() {
                    self.plugins.clear(&self.binary);
                }
                r
            }
            Err(e) => Err(age::EncryptError::Io(e)),
        }
    }
}

fn copy_stanza(s: &Stanza) -> Stanza {
    Stanza {
        tag: s.tag.clone(),
        args: s.args.clone(),
        body: s.body.clone(),
    }
}
