//! The key tables: `[encryption]` (age recipients, identities or a passphrase), `[signing]` (the
//! SSH key a backing-up host signs its sidecars with) and `[trust]` (whose signatures the reading
//! side accepts). Key material is read later, by `crypto` and `trust`; here only the shape is
//! checked, so a config error never quotes a key.

use std::path::PathBuf;

use serde::Deserialize;

use super::Paths;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    /// `none = true`: backups are stored unencrypted on purpose (an encrypted disk, a private
    /// network), so no run warns about it.
    #[serde(default)]
    none: bool,
    #[serde(default)]
    recipients: Vec<String>,
    recipients_file: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    identity_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    key_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    #[serde(default)]
    signers: Vec<String>,
    allowed_signers_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct Encryption {
    pub recipients: Vec<String>,
    pub recipients_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    pub identity_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Signing {
    pub key_file: PathBuf,
}

/// Trusted signers as written in the config; `trust::Policy` reads them.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub signers: Vec<String>,
    pub allowed_signers_file: Option<PathBuf>,
}

impl Trust {
    pub fn is_configured(&self) -> bool {
        !self.signers.is_empty() || self.allowed_signers_file.is_some()
    }
}

type KeyError = (String, String);

/// `Ok(None)`: `none = true`, unencrypted on purpose.
pub fn encryption(e: RawEncryption, paths: &Paths) -> Result<Option<Encryption>, KeyError> {
    if e.none {
        let clash = [
            ("recipients", !e.recipients.is_empty()),
            ("recipients_file", e.recipients_file.is_some()),
            ("passphrase_file", e.passphrase_file.is_some()),
            ("identity_file", e.identity_file.is_some()),
        ]
        .into_iter()
        .find(|(_, set)| *set);
        if let Some((key, _)) = clash {
            return Err((
                format!("encryption.{key}"),
                "cannot be combined with `encryption.none = true`, which stores backups unencrypted: remove one of them".into(),
            ));
        }
        return Ok(None);
    }
    if e.passphrase_file.is_some() && (!e.recipients.is_empty() || e.recipients_file.is_some()) {
        return Err((
            "encryption.passphrase_file".into(),
            "cannot be combined with recipients: age encrypts a file to a passphrase or to recipients, not both".into(),
        ));
    }
    if e.recipients.is_empty() && e.recipients_file.is_none() && e.passphrase_file.is_none() {
        return Err((
            "encryption".into(),
            "has no key: set recipients, recipients_file or passphrase_file (or `none = true` to store unencrypted backups on purpose)".into(),
        ));
    }
    let file = |key: &str, p: Option<PathBuf>| {
        p.map(|p| paths.resolve(&format!("encryption.{key}"), &p))
            .transpose()
    };
    Ok(Some(Encryption {
        recipients: e.recipients,
        recipients_file: file("recipients_file", e.recipients_file)?,
        passphrase_file: file("passphrase_file", e.passphrase_file)?,
        identity_file: file("identity_file", e.identity_file)?,
    }))
}

pub fn signing(s: RawSigning, paths: &Paths) -> Result<Signing, KeyError> {
    Ok(Signing {
        key_file: paths.resolve("signing.key_file", &s.key_file)?,
    })
}

pub fn trust(t: RawTrust, paths: &Paths) -> Result<Trust, KeyError> {
    for (i, line) in t.signers.iter().enumerate() {
        if line.split_whitespace().count() < 2 {
            return Err((
                format!("trust.signers[{i}]"),
                "is not an OpenSSH public key line (expected \"ssh-ed25519 AAAA... comment\")"
                    .into(),
            ));
        }
    }
    Ok(Trust {
        signers: t.signers,
        allowed_signers_file: t
            .allowed_signers_file
            .map(|p| paths.resolve("trust.allowed_signers_file", &p))
            .transpose()?,
    })
}
