//! Who made a backup: sidecars signed with an SSH key (SSHSIG, as `ssh-keygen -Y sign` makes,
//! namespace `litevault`), and the reading side's judgement of them against the trusted signers.
//!
//! Encryption proves nothing about authorship (anyone who knows the public recipient can encrypt
//! to it), so once any signer is trusted, a backup counts only when its sidecar's exact bytes
//! carry a good signature by one of them. Every trust decision is made here; the
//! `allowed_signers` format is read in the submodules as `ssh-keygen -Y verify` reads it.

mod allowed_signers;
#[cfg(test)]
mod differential;
mod pattern;
#[cfg(test)]
mod tests;
mod timestamp;

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        crate::secret_file::refuse_loose_permissions(path, "signing.key_file")?;
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

/// The trusted signers. The default trusts nobody and requires nothing: `[trust]` is not set.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    /// Set whenever `[trust]` names a signer: then every backup is judged, and loading made sure
    /// there is a key to judge by. Never derived from the key list, so a list that comes out
    /// empty can only refuse backups, never wave them through.
    required: bool,
    signers: Vec<TrustedKey>,
}

#[derive(Debug, Clone)]
struct TrustedKey {
    key: PublicKey,
    /// Seconds since the epoch (`valid-after`/`valid-before`), inclusive, as OpenSSH reads them.
    valid_after: Option<i64>,
    valid_before: Option<i64>,
    /// Where it was listed, for the verdict: `trust.signers[0]`, `FILE line 3, principals P`.
    source: String,
}

impl TrustedKey {
    /// Why the key may not vouch for a signature made at `signed` and judged at `now`, if so.
    /// Both times count: the signing time, since a key stops vouching for what it signs after
    /// it is retired; and now, since the signing time is written by whoever holds the key, and
    /// a retired (perhaps stolen) key could otherwise sign "in the past" forever.
    fn outside_window(&self, signed: i64, now: i64) -> Option<String> {
        for (when, t) in [("it was signed", signed), ("it is now", now)] {
            if let Some(after) = self.valid_after.filter(|&a| t < a) {
                return Some(format!(
                    "{when} {}, before valid-after {} ({})",
                    show_time(t),
                    show_time(after),
                    self.source
                ));
            }
            if let Some(before) = self.valid_before.filter(|&b| t > b) {
                return Some(format!(
                    "{when} {}, after valid-before {} ({})",
                    show_time(t),
                    show_time(before),
                    self.source
                ));
            }
        }
        None
    }
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
    /// A good signature by a trusted key, made or judged outside the key's `valid-after` /
    /// `valid-before` window.
    OutsideWindow {
        fingerprint: String,
        why: String,
    },
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
            Verdict::OutsideWindow { fingerprint, why } => write!(
                f,
                "it is signed by {fingerprint}, a trusted key, but outside its valid-after/valid-before window: {why}"
            ),
            Verdict::BadSignature(why) => write!(f, "its signature does not match: {why}"),
        }
    }
}

impl Verifier {
    /// From `[trust] signers` (OpenSSH public key lines) and `allowed_signers_file` (OpenSSH's
    /// `allowed_signers` format). With either set, at least one key must come out usable for
    /// the `litevault` namespace, or it is a config error: a file of comments, or of keys meant
    /// for git, must never read as "trust nobody, so check nothing". Errors name the key or the
    /// file and line, never quoting key material.
    pub fn load(signers: &[String], allowed_signers_file: Option<&Path>) -> Result<Verifier> {
        if signers.is_empty() && allowed_signers_file.is_none() {
            return Ok(Verifier::default());
        }
        let mut keys = Vec::new();
        for (i, line) in signers.iter().enumerate() {
            let key = PublicKey::from_openssh(line.trim()).map_err(|_| {
                config_error(format!(
                    "trust.signers[{i}] is not an OpenSSH public key line (expected \"ssh-ed25519 AAAA... comment\")"
                ))
            })?;
            keys.push(TrustedKey {
                key,
                valid_after: None,
                valid_before: None,
                source: format!("trust.signers[{i}]"),
            });
        }
        if let Some(file) = allowed_signers_file {
            let from_file = read_allowed_signers(file)?;
            if from_file.is_empty() && keys.is_empty() {
                return Err(no_usable_key(file).into());
            }
            keys.extend(from_file);
        }
        Ok(Verifier {
            required: true,
            signers: keys,
        })
    }

    pub fn is_configured(&self) -> bool {
        self.required
    }

    /// These signers and `signer`'s own key: what `rekey` vouches with, since a host may vouch
    /// again for what it signed itself.
    pub fn with_signer(&self, signer: &Signer) -> Verifier {
        let mut signers = self.signers.clone();
        signers.push(TrustedKey {
            key: signer.key.public_key().clone(),
            valid_after: None,
            valid_before: None,
            source: "this host's [signing] key".into(),
        });
        Verifier {
            required: true,
            signers,
        }
    }

    /// Judge a sidecar's exact bytes and its signature file (if there is one); `signed_at` is
    /// when the sidecar says it was made, checked with the current time against the signer's
    /// `valid-after`/`valid-before`.
    pub fn judge(
        &self,
        sidecar: &[u8],
        signature: Option<&[u8]>,
        signed_at: SystemTime,
    ) -> Verdict {
        if !self.required {
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
        let (signed, now) = (unix_seconds(signed_at), unix_seconds(SystemTime::now()));
        let mut outside = None;
        // Like ssh-keygen, any one listing of the key that allows the signature is enough.
        for listed in self
            .signers
            .iter()
            .filter(|k| k.key.key_data() == signer.key_data())
        {
            match listed.outside_window(signed, now) {
                None => return Verdict::Trusted(fingerprint),
                Some(why) => {
                    outside.get_or_insert(why);
                }
            }
        }
        match outside {
            Some(why) => Verdict::OutsideWindow { fingerprint, why },
            None => Verdict::UntrustedSigner(fingerprint),
        }
    }
}

/// The keys of an allowed_signers file that may vouch for a litevault signature.
fn read_allowed_signers(file: &Path) -> Result<Vec<TrustedKey>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        config_error(format!(
            "cannot read trust.allowed_signers_file {}: {e}",
            file.display()
        ))
    })?;
    let mut keys = Vec::new();
    for (n, text) in text.lines().enumerate() {
        let at = || {
            format!(
                "trust.allowed_signers_file {} line {}",
                file.display(),
                n + 1
            )
        };
        let line =
            allowed_signers::parse(text).map_err(|why| config_error(format!("{}: {why}", at())))?;
        let Some(line) = line else { continue };
        if line.options.cert_authority {
            // OpenSSH would trust certificates this CA signs; litevault signs with plain keys, so
            // such a line could only ever be a mistake, and is never silently dropped.
            return Err(config_error(format!(
                "{}: cert-authority is not supported (litevault signs with plain ed25519 keys, not certificates)",
                at()
            ))
            .hint("list the backup host's own signing key, without cert-authority")
            .into());
        }
        let for_litevault = line.options.namespaces.as_deref().is_none_or(|namespaces| {
            pattern::match_list(NAMESPACE, namespaces) == pattern::ListMatch::Positive
        });
        if for_litevault {
            keys.push(TrustedKey {
                key: line.key,
                valid_after: line.options.valid_after,
                valid_before: line.options.valid_before,
                source: format!("{}, principals {}", at(), line.principals),
            });
        }
    }
    Ok(keys)
}

fn no_usable_key(file: &Path) -> crate::exit::Fault {
    config_error(format!(
        "trust.allowed_signers_file {} holds no key that may sign for litevault (only comments, blank lines, or keys whose namespaces= leaves out \"litevault\"); an empty trust list is never read as \"trust off\"",
        file.display()
    ))
    .hint("add each backup host's signing key as `PRINCIPAL ssh-ed25519 AAAA...` (with namespaces=\"litevault\" if you limit namespaces); `litevault key generate --signing` prints the key to list; to accept unsigned backups on purpose, remove [trust]")
}

/// Whole seconds since the epoch, rounded down, as OpenSSH compares times.
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let d = before.duration();
            -i64::try_from(d.as_secs()).unwrap_or(i64::MAX) - i64::from(d.subsec_nanos() > 0)
        }
    }
}

fn show_time(t: i64) -> String {
    match u64::try_from(t) {
        Ok(secs) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        }
        Err(_) => format!("{t} seconds since 1970"),
    }
}
