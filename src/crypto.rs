//! age keys: the recipients a backup is encrypted to, and the identities that open it.
//!
//! A host that only backs up needs only public recipients; identities (or the passphrase) are
//! read only by restore and verify. Key files are refused, like ssh refuses them, when group or
//! others may read them, and no error here ever quotes a key file's contents.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;

use age::secrecy::SecretString;
use anyhow::{Context, Result};

use crate::config::Encryption;
use crate::exit::{config as config_error, integrity, Fault};

/// Everything needed to encrypt: recipients or a passphrase, already loaded and parsed.
pub struct Sealer {
    recipients: Vec<Box<dyn age::Recipient + Send>>,
    passphrase: Option<SecretString>,
}

impl Sealer {
    pub fn load(enc: &Encryption) -> Result<Sealer> {
        if let Some(file) = &enc.passphrase_file {
            return Ok(Sealer {
                recipients: Vec::new(),
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
        let mut recipients: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
        for (origin, text) in lines {
            let r = age::x25519::Recipient::from_str(&text).map_err(|_| {
                config_error(format!(
                    "{origin} is not an age recipient (expected a public key starting with \"age1\"; \
                     make one with `age-keygen`)"
                ))
            })?;
            recipients.push(Box::new(r));
        }
        if recipients.is_empty() {
            return Err(config_error(
                "encryption: the recipients list and recipients_file hold no recipient",
            )
            .into());
        }
        Ok(Sealer {
            recipients,
            passphrase: None,
        })
    }

    pub fn wrap<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor = match &self.passphrase {
            Some(p) => age::Encryptor::with_user_passphrase(p.clone()),
            None => {
                age::Encryptor::with_recipients(self.recipients.iter().map(|r| r.as_ref() as _))
                    .map_err(|e| io::Error::other(format!("age: {e}")))?
            }
        };
        encryptor.wrap_output(out)
    }
}

/// Everything needed to decrypt.
pub struct Opener {
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl Opener {
    pub fn load(enc: &Encryption) -> Result<Opener> {
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        if let Some(file) = &enc.passphrase_file {
            identities.push(Box::new(age::scrypt::Identity::new(read_passphrase(file)?)));
        }
        if let Some(file) = &enc.identity_file {
            refuse_loose_permissions(file, "encryption.identity_file")?;
            let parsed = age::IdentityFile::from_file(file.to_string_lossy().into_owned())
                .and_then(|f| f.into_identities().map_err(io::Error::other))
                .map_err(|_| {
                    config_error(format!(
                        "encryption.identity_file {} holds no usable age identity \
                         (expected lines starting with \"AGE-SECRET-KEY-\", as written by `age-keygen`)",
                        file.display()
                    ))
                })?;
            identities.extend(parsed);
        }
        if identities.is_empty() {
            return Err(anyhow::Error::new(
                config_error("this backup is encrypted and the config names no identity to open it")
                    .hint("set encryption.identity_file (or passphrase_file) in the config of the host that restores"),
            ));
        }
        Ok(Opener { identities })
    }

    /// Unwrap an age stream; a wrong key is an integrity fault (exit 4), since the data cannot be
    /// opened with what this host holds.
    pub fn open<R: Read>(&self, input: R) -> Result<age::stream::StreamReader<R>> {
        let decryptor = age::Decryptor::new(input)
            .map_err(|e| integrity(format!("not a valid age file: {e}")))?;
        decryptor
            .decrypt(self.identities.iter().map(|i| i.as_ref() as _))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => anyhow::Error::new(
                    integrity("none of the configured identities can decrypt this backup")
                        .hint("check encryption.identity_file: it must hold the secret key for one of the recipients the backup was made for"),
                ),
                age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
                    anyhow::Error::new(integrity("decryption failed: wrong passphrase or damaged archive"))
                }
                other => anyhow::Error::new(integrity(format!("cannot decrypt: {other}"))),
            })
    }
}

fn read_passphrase(file: &Path) -> Result<SecretString> {
    refuse_loose_permissions(file, "encryption.passphrase_file")?;
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

/// Like ssh: a secret that group or others may read is refused, not used.
pub fn refuse_loose_permissions(file: &Path, key: &str) -> Result<()> {
    let meta = fs::metadata(file)
        .map_err(|e| config_error(format!("cannot read {key} {}: {e}", file.display())))
        .context("loading keys")?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(anyhow::Error::new(
            Fault::new(
                crate::exit::Exit::Usage,
                format!(
                    "{key} {} is accessible by group or others (mode {:o}); refusing to use it",
                    file.display(),
                    mode & 0o777
                ),
            )
            .hint(format!("chmod 600 {}", file.display())),
        ));
    }
    Ok(())
}
