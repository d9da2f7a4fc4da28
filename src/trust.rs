//! Who made a backup: sidecars signed with an SSH key (SSHSIG, as `ssh-keygen -Y sign` makes,
//! namespace `litevault`), and the reading side's judgement of them against the trusted signers.
//!
//! Encryption proves nothing about authorship (anyone who knows the public recipient can encrypt
//! to it), so once any signer is trusted, a backup counts only when its sidecar's exact bytes
//! carry a good signature by one of them. Every trust decision is made here.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::exit::config as config_error;

/// The SSHSIG namespace of every litevault signature: a signature made for another purpose
/// (git commits, files) can never pass as a backup's.
pub const NAMESPACE: &str = "litevault";

/// The signing key of a backing-up host.
pub struct Signer {
    key: PrivateKey,
}

impl Signer {
    /// Load an OpenSSH ed25519 private key, refused when group or others can read it.
    pub fn load(path: &Path) -> Result<Signer> {
        crate::crypto::refuse_loose_permissions(path, "signing.key_file")?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading signing.key_file {}", path.display()))?;
        let key = PrivateKey::from_openssh(&text).map_err(|_| {
            config_error(format!(
                "signing.key_file {} is not an OpenSSH private key (make one with `litevault key generate --signing FILE` or `ssh-keygen -t ed25519 -N '' -f FILE`)",
                path.display()
            ))
        })?;
        if key.is_encrypted() {
            return Err(config_error(format!(
                "signing.key_file {} is protected by a passphrase; cron cannot type it (make a key with -N '')",
                path.display()
            ))
            .into());
        }
        if key.algorithm() != ssh_key::Algorithm::Ed25519 {
            return Err(config_error(format!(
                "signing.key_file {} is a {} key; litevault signs with ed25519 keys",
                path.display(),
                key.algorithm()
            ))
            .into());
        }
        Ok(Signer { key })
    }

    /// A new random ed25519 key.
    pub fn generate() -> Result<Signer> {
        let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .context("generating an ed25519 key")?;
        Ok(Signer { key })
    }

    /// The private key in OpenSSH's format, for `key generate --signing`.
    pub fn to_openssh(&self) -> Result<String> {
        Ok(self
            .key
            .to_openssh(LineEnding::LF)
            .context("encoding the signing key")?
            .to_string())
    }

    /// `ssh-ed25519 AAAA... litevault`: the line to trust on the reading side.
    pub fn public_line(&self) -> String {
        let mut public = self.key.public_key().clone();
        public.set_comment("litevault");
        public.to_openssh().unwrap_or_default()
    }

    /// The key's SHA256 fingerprint, as `ssh-keygen -l` and [`Verdict::Trusted`] show it.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// An armored SSHSIG over `message` (the sidecar's exact bytes).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, message)
            .context("signing the sidecar")?;
        Ok(sig
            .to_pem(LineEnding::LF)
            .context("encoding the signature")?
            .into_bytes())
    }
}

/// The trusted signers. Empty: no trust is configured, and backups are judged as before.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    signers: Vec<PublicKey>,
}

/// What the reading side makes of one backup's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No signer is trusted: nothing to judge.
    NotRequired,
    /// Signed by a trusted key (its SHA256 fingerprint).
    Trusted(String),
    Unsigned,
    /// A good signature by a key nobody trusts (its fingerprint).
    UntrustedSigner(String),
    /// The signature does not match the sidecar, or cannot be read.
    BadSignature(String),
}

impl Verdict {
    /// A backup that may be counted, listed as good, restored.
    pub fn is_good(&self) -> bool {
        matches!(self, Verdict::NotRequired | Verdict::Trusted(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::NotRequired => f.write_str("no signature required"),
            Verdict::Trusted(fp) => write!(f, "signed by trusted key {fp}"),
            Verdict::Unsigned => f.write_str("it is not signed"),
            Verdict::UntrustedSigner(fp) => {
                write!(f, "it is signed by {fp}, a key that is not trusted")
            }
            Verdict::BadSignature(why) => write!(f, "its signature does not match: {why}"),
        }
    }
}

impl Policy {
    /// From `[trust] signers` (OpenSSH public key lines) and `allowed_signers_file` (OpenSSH's
    /// `allowed_signers` format). Errors name the key and line, never quoting key material.
    pub fn load(signers: &[String], allowed_signers_file: Option<&Path>) -> Result<Policy> {
        let mut keys = Vec::new();
        for (i, line) in signers.iter().enumerate() {
            let key = PublicKey::from_openssh(line.trim()).map_err(|_| {
                config_error(format!(
                    "trust.signers[{i}] is not an OpenSSH public key line (expected \"ssh-ed25519 AAAA... comment\")"
                ))
            })?;
            keys.push(key);
        }
        if let Some(file) = allowed_signers_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                config_error(format!(
                    "cannot read trust.allowed_signers_file {}: {e}",
                    file.display()
                ))
            })?;
            for (n, line) in text.lines().enumerate() {
                if let Some(key) = allowed_signer(line).map_err(|why| {
                    config_error(format!("{} line {}: {why}", file.display(), n + 1))
                })? {
                    keys.push(key);
                }
            }
        }
        Ok(Policy { signers: keys })
    }

    pub fn is_configured(&self) -> bool {
        !self.signers.is_empty()
    }

    /// These signers and `signer`'s own key: what `rekey` vouches with, since a host may vouch
    /// again for what it signed itself.
    pub fn with_signer(&self, signer: &Signer) -> Policy {
        let mut signers = self.signers.clone();
        signers.push(signer.key.public_key().clone());
        Policy { signers }
    }

    /// Judge a sidecar's exact bytes and its signature file (if there is one).
    pub fn judge(&self, sidecar: &[u8], signature: Option<&[u8]>) -> Verdict {
        if self.signers.is_empty() {
            return Verdict::NotRequired;
        }
        let Some(signature) = signature else {
            return Verdict::Unsigned;
        };
        let sig = match std::str::from_utf8(signature)
            .ok()
            .and_then(|s| SshSig::from_pem(s).ok())
        {
            Some(sig) => sig,
            None => return Verdict::BadSignature("the signature file is not an SSHSIG".into()),
        };
        if sig.namespace() != NAMESPACE {
            return Verdict::BadSignature(format!(
                "it was made for {:?}, not for litevault",
                sig.namespace()
            ));
        }
        let signer = PublicKey::from(sig.public_key().clone());
        let fingerprint = signer.fingerprint(HashAlg::Sha256).to_string();
        if let Err(e) = signer.verify(NAMESPACE, sidecar, &sig) {
            return Verdict::BadSignature(format!("{e} (key {fingerprint})"));
        }
        if self
            .signers
            .iter()
            .any(|k| k.key_data() == signer.key_data())
        {
            Verdict::Trusted(fingerprint)
        } else {
            Verdict::UntrustedSigner(fingerprint)
        }
    }
}

/// One line of an `allowed_signers` file: `principals [options] keytype base64 [comment]`.
/// A line limited to other namespaces (`namespaces="git"`) does not trust for litevault.
fn allowed_signer(line: &str) -> std::result::Result<Option<PublicKey>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut rest = line
        .split_once(char::is_whitespace)
        .map(|(_, r)| r.trim_start())
        .ok_or("expected \"principals [options] keytype key\"")?;
    let mut namespaces: Option<String> = None;
    if !rest.starts_with("ssh-") && !rest.starts_with("ecdsa-") && !rest.starts_with("sk-") {
        let (options, after) = rest
            .split_once(char::is_whitespace)
            .ok_or("expected a key after the options")?;
        for option in options.split(',') {
            if let Some(v) = option.strip_prefix("namespaces=") {
                namespaces = Some(v.trim_matches('"').to_string());
            }
        }
        rest = after.trim_start();
    }
    if let Some(ns) = namespaces {
        if !ns.split(',').any(|n| n == NAMESPACE || n == "*") {
            return Ok(None);
        }
    }
    PublicKey::from_openssh(rest)
        .map(Some)
        .map_err(|_| "not an OpenSSH public key".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_judged_by_who_made_it_and_what_it_covers() {
        let signer = Signer::generate().unwrap();
        let other = Signer::generate().unwrap();
        let policy = Policy::load(&[signer.public_line()], None).unwrap();
        let body = b"{\"format\":\"litevault-sidecar\"}";
        let sig = signer.sign(body).unwrap();
        assert!(matches!(
            policy.judge(body, Some(&sig)),
            Verdict::Trusted(_)
        ));
        assert_eq!(policy.judge(body, None), Verdict::Unsigned);
        assert!(matches!(
            policy.judge(b"{\"format\":\"tampered\"}", Some(&sig)),
            Verdict::BadSignature(_)
        ));
        let foreign = other.sign(body).unwrap();
        assert!(matches!(
            policy.judge(body, Some(&foreign)),
            Verdict::UntrustedSigner(_)
        ));
        assert!(matches!(
            policy.judge(body, Some(b"garbage")),
            Verdict::BadSignature(_)
        ));
        assert_eq!(
            Policy::default().judge(body, None),
            Verdict::NotRequired,
            "no trust configured"
        );
    }

    #[test]
    fn allowed_signers_lines_are_read_as_openssh_writes_them() {
        let signer = Signer::generate().unwrap();
        let key = signer.public_line();
        assert!(allowed_signer(&format!("litevault {key}"))
            .unwrap()
            .is_some());
        assert!(allowed_signer(&format!(
            "ops@example.com namespaces=\"litevault,git\" {key}"
        ))
        .unwrap()
        .is_some());
        assert!(allowed_signer(&format!("x namespaces=\"git\" {key}"))
            .unwrap()
            .is_none());
        assert!(allowed_signer("# comment").unwrap().is_none());
        assert!(allowed_signer("litevault ssh-ed25519 notbase64").is_err());
    }
}
