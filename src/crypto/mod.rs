//! age keys: the recipients a backup is encrypted to, and the identities that open it.
//!
//! A host that only backs up needs only public recipients; identities (or the passphrase) are
//! read only by restore and verify. Key files are refused, like ssh refuses them, when group or
//! others may read them, and no error here ever quotes a key file's contents.
//!
//! Hardware keys (`age1yubikey1...` recipients, `AGE-PLUGIN-YUBIKEY-1...` identities) go through
//! the age plugin protocol (`plugin`), never prompting and bounded in time.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::SecretString;
use anyhow::Result;

use crate::config::Encryption;
use crate::exit::{config as config_error, integrity, Exit, Fault};

mod plugin;

use plugin::{plugin_timeout, Plugins};
pub use plugin::{PLUGIN_TIMEOUT, PLUGIN_TIMEOUT_ENV};

/// Everything needed to encrypt: recipients or a passphrase, already loaded and parsed.
pub struct Sealer {
    recipients: Vec<Box<dyn age::Recipient + Send>>,
    /// What a plugin asked for and could not get, to explain a failed encryption.
    plugins: Plugins,
    /// The recipients as written (public keys), recorded in each sidecar so that a key
    /// rotation knows which backups still need re-encrypting.
    pub public: Vec<String>,
    passphrase: Option<SecretString>,
}

impl Sealer {
    pub fn load(enc: &Encryption) -> Result<Sealer> {
        if let Some(file) = &enc.passphrase_file {
            return Ok(Sealer {
                recipients: Vec::new(),
                plugins: Plugins::new(),
                public: Vec::new(),
                passphrase: Some(read_passphrase(file)?),
            });
        }
        let mut lines: Vec<(String, String)> = enc
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("encryption.recipients[{i}]"), r.trim().to_string()))
            .collect();
        if let Some(file) = &enc.recipients_file {
            let text = fs::read_to_string(file).map_err(|e| {
                config_error(format!(
                    "cannot read encryption.recipients_file {}: {e}",
                    file.display()
                ))
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    lines.push((
                        format!("{} line {}", file.display(), n + 1),
                        line.to_string(),
                    ));
                }
            }
        }
        let mut plugins = Plugins::new();
        let mut recipients: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
        // A plugin's recipients go to it together: one plugin call per file, whatever their
        // number. The value keeps where the first was written, for errors.
        let mut by_plugin: BTreeMap<String, (String, Vec<age::plugin::Recipient>)> =
            BTreeMap::new();
        let mut public = Vec::new();
        for (origin, text) in lines {
            match recipient(&origin, &text)? {
                Parsed::Native(r) => recipients.push(r),
                Parsed::Plugin(r) => by_plugin
                    .entry(r.plugin().to_string())
                    .or_insert_with(|| (origin.clone(), Vec::new()))
                    .1
                    .push(r),
            }
            public.push(text);
        }
        if !by_plugin.is_empty() {
            plugins.timeout = plugin_timeout()?;
        }
        for (name, (origin, list)) in by_plugin {
            recipients.push(plugin::recipient(&name, &origin, &list, &plugins)?);
        }
        if recipients.is_empty() {
            return Err(config_error(
                "encryption: the recipients list and recipients_file hold no recipient",
            )
            .into());
        }
        Ok(Sealer {
            recipients,
            plugins,
            public,
            passphrase: None,
        })
    }

    pub fn wrap<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor = match &self.passphrase {
            Some(p) => age::Encryptor::with_user_passphrase(p.clone()),
            // Plugins are called here, when the file key is wrapped for the header; one that
            // wanted a PIN, or never answered, explains the failure better than age's error.
            None => {
                age::Encryptor::with_recipients(self.recipients.iter().map(|r| r.as_ref() as _))
                    .map_err(|e| match self.plugins.trouble() {
                        Some(fault) => io::Error::other(fault),
                        None => io::Error::other(format!("age: {e}")),
                    })?
            }
        };
        encryptor.wrap_output(out)
    }
}

/// Everything needed to decrypt.
pub struct Opener {
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// What a plugin asked for and could not get, to explain a failed decryption.
    plugins: Plugins,
}

impl Opener {
    pub fn load(enc: &Encryption) -> Result<Opener> {
        let mut plugins = Plugins::new();
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        if let Some(file) = &enc.passphrase_file {
            identities.push(Box::new(age::scrypt::Identity::new(read_passphrase(file)?)));
        }
        if let Some(file) = &enc.identity_file {
            crate::secret_file::refuse_loose_permissions(file, "encryption.identity_file")?;
            let text = fs::read(file).map_err(|e| {
                config_error(format!(
                    "cannot read encryption.identity_file {}: {e}",
                    file.display()
                ))
            })?;
            if is_ssh_private_key(&text) {
                identities.push(ssh_identity(file, &text)?);
                return Ok(Opener {
                    identities,
                    plugins,
                });
            }
            identities.extend(age_identities(file, &text, &mut plugins)?);
        }
        if identities.is_empty() {
            return Err(anyhow::Error::new(
                config_error("this backup is encrypted and the config names no identity to open it")
                    .hint("set encryption.identity_file (or passphrase_file) in the config of the host that restores"),
            ));
        }
        Ok(Opener {
            identities,
            plugins,
        })
    }

    /// Unwrap an age stream; a wrong key is an integrity fault (exit 4), since the data cannot be
    /// opened with what this host holds.
    pub fn open<R: Read>(&self, input: R) -> Result<age::stream::StreamReader<R>> {
        let decryptor = age::Decryptor::new(input)
            .map_err(|e| integrity(format!("not a valid age file: {e}")))?;
        decryptor
            .decrypt(self.identities.iter().map(|i| i.as_ref() as _))
            .map_err(|e| match self.plugins.trouble() {
                // A plugin that wanted a PIN, or never answered, explains the failure better
                // than the error age makes of it.
                Some(fault) => anyhow::Error::new(fault),
                None => decrypt_error(e),
            })
    }
}

/// What age's "no matching keys" becomes: the backup was made for other recipients.
const NO_MATCHING_KEYS: &str = "none of the configured identities can decrypt this backup";

/// Whether `err` says the backup was encrypted to none of this host's identities: a fact about
/// this host's keys, not about the backup, which may be perfectly intact (`verify` must not call
/// it FAILED).
pub fn no_matching_keys(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(crate::exit::fault_in)
        .any(|f| f.exit == Exit::Integrity && f.message == NO_MATCHING_KEYS)
}

fn decrypt_error(e: age::DecryptError) -> anyhow::Error {
    match e {
        age::DecryptError::NoMatchingKeys => anyhow::Error::new(integrity(NO_MATCHING_KEYS).hint(
            "check encryption.identity_file: it must hold the secret key for one of the \
                 recipients the backup was made for",
        )),
        age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
            anyhow::Error::new(integrity(
                "decryption failed: wrong passphrase or damaged archive",
            ))
        }
        // A plugin's own failure (no device, a device error) says nothing about the backup: an
        // ordinary failure, not an integrity finding.
        e @ (age::DecryptError::Plugin(_) | age::DecryptError::PluginResolve(_)) => {
            anyhow::Error::new(
                Fault::new(
                    Exit::Failure,
                    format!("an age plugin failed: {}", e.to_string().trim_end()),
                )
                .hint("run with AGEDEBUG=plugin in the environment to see what the plugin says"),
            )
        }
        other => anyhow::Error::new(integrity(format!("cannot decrypt: {other}"))),
    }
}

enum Parsed {
    Native(Box<dyn age::Recipient + Send>),
    /// `age1NAME1...`: a key held by the plugin `age-plugin-NAME` (a YubiKey, a TPM).
    Plugin(age::plugin::Recipient),
}

/// One recipient: an age public key (`age1...`), an SSH public key (`ssh-ed25519 AAAA...`,
/// `ssh-rsa AAAA...`) or a plugin's recipient (`age1yubikey1...`), as `age -r` takes them.
fn recipient(origin: &str, text: &str) -> Result<Parsed> {
    if text.starts_with("ssh-") {
        return match age::ssh::Recipient::from_str(text) {
            Ok(r) => Ok(Parsed::Native(Box::new(r))),
            Err(_) => Err(config_error(format!(
                "{origin} is not an SSH public key age can encrypt to (ssh-ed25519 or ssh-rsa of at least 2048 bits)"
            ))
            .into()),
        };
    }
    if let Ok(r) = age::x25519::Recipient::from_str(text) {
        return Ok(Parsed::Native(Box::new(r)));
    }
    if let Ok(r) = age::plugin::Recipient::from_str(text) {
        return Ok(Parsed::Plugin(r));
    }
    Err(config_error(format!(
        "{origin} is not an age recipient (expected a public key starting with \"age1\", a hardware key's \
         \"age1NAME1...\" (used through age-plugin-NAME), or an SSH public key; \
         make one with `litevault key generate FILE`)"
    ))
    .into())
}

/// The age identities of an identity file: native keys (`AGE-SECRET-KEY-1...`) and plugin keys
/// (`AGE-PLUGIN-NAME-1...`), one per line. Native keys come first, so a backup that one of them
/// opens never wakes a hardware key; a plugin's identities go to it together.
fn age_identities(
    file: &Path,
    text: &[u8],
    plugins: &mut Plugins,
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let origin = format!("encryption.identity_file {}", file.display());
    let text = std::str::from_utf8(text).map_err(|_| {
        config_error(format!(
            "{origin} holds no usable age identity (it is not text; expected lines starting with \"AGE-SECRET-KEY-\", as written by `age-keygen`)"
        ))
    })?;
    let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
    let mut by_plugin: BTreeMap<String, Vec<age::plugin::Identity>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Ok(i) = age::x25519::Identity::from_str(line) {
            identities.push(Box::new(i));
        } else if let Ok(i) = age::plugin::Identity::from_str(line) {
            by_plugin.entry(i.plugin().to_string()).or_default().push(i);
        } else {
            // The line number only: the line may be a secret.
            return Err(config_error(format!(
                "{origin} line {} is not an age identity (expected \"AGE-SECRET-KEY-1...\" as written by `age-keygen`, \
                 \"AGE-PLUGIN-NAME-1...\" for a hardware key, or a whole SSH private key)",
                n + 1
            ))
            .into());
        }
    }
    if !by_plugin.is_empty() {
        plugins.timeout = plugin_timeout()?;
    }
    for (name, list) in by_plugin {
        identities.push(plugin::identity(&name, &origin, &list, plugins)?);
    }
    Ok(identities)
}

fn is_ssh_private_key(text: &[u8]) -> bool {
    let head = &text[..text.len().min(64)];
    head.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----")
        || head.starts_with(b"-----BEGIN RSA PRIVATE KEY-----")
}

/// An SSH private key as an age identity (`age -d -i ~/.ssh/id_ed25519`). One protected by a
/// passphrase is refused: cron cannot type it, and a prompt would hang the run.
fn ssh_identity(file: &Path, text: &[u8]) -> Result<Box<dyn age::Identity + Send + Sync>> {
    let identity = age::ssh::Identity::from_buffer(text, Some(file.display().to_string()))
        .map_err(|_| {
            config_error(format!(
                "encryption.identity_file {} is not an SSH private key age can use",
                file.display()
            ))
        })?;
    match identity {
        age::ssh::Identity::Unencrypted(_) => Ok(Box::new(identity)),
        age::ssh::Identity::Encrypted(_) => Err(anyhow::Error::new(
            config_error(format!(
                "encryption.identity_file {} is protected by a passphrase, which litevault cannot type (under cron nobody can)",
                file.display()
            ))
            .hint("use an SSH key without a passphrase kept mode 0600, or an age identity (`litevault key generate FILE`)"),
        )),
        age::ssh::Identity::Unsupported(k) => Err(config_error(format!(
            "encryption.identity_file {}: {k:?} SSH keys are not supported by age (use ed25519 or rsa)",
            file.display()
        ))
        .into()),
    }
}

fn read_passphrase(file: &Path) -> Result<SecretString> {
    crate::secret_file::refuse_loose_permissions(file, "encryption.passphrase_file")?;
    let text = fs::read_to_string(file).map_err(|e| {
        config_error(format!(
            "cannot read encryption.passphrase_file {}: {e}",
            file.display()
        ))
    })?;
    let pass = text.trim_end_matches(['\n', '\r']);
    if pass.is_empty() {
        return Err(config_error(format!(
            "encryption.passphrase_file {} is empty",
            file.display()
        ))
        .into());
    }
    Ok(SecretString::from(pass.to_string()))
}
