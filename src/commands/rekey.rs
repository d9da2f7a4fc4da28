//! `litevault rekey [ID|--all]`: re-encrypt stored backups to the current recipients, and re-sign
//! them with the current signing key, one backup at a time.
//!
//! Only the age layer changes: the stored bytes stream through a hash (checked against the
//! sidecar), age decryption and age encryption to the new recipients, straight into a new
//! object; memory stays bounded. Each backup moves from wholly old to wholly new:
//!
//! 1. the new archive is stored under a new name (`<id>.r<hex>.tar...`) and its size confirmed;
//! 2. the new sidecar and signature are staged under `tmp/`;
//! 3. the signature, then the sidecar, are put in place (a reader that finds the new signature
//!    beside the old sidecar uses the staged sidecar it vouches for; a killed run's staged pair
//!    is put in place by the next locked run);
//! 4. the staging and the old archive are deleted.

use std::io::{self, Read, Write};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::archive::layers::Hashing;
use crate::catalog::{self, Backup};
use crate::cli::RekeyArgs;
use crate::config::Settings;
use crate::crypto::{Opener, Sealer};
use crate::exit::{integrity, Exit};
use crate::state::StateDir;
use crate::storage::destination::Upload;
use crate::storage::Destination;
use crate::trust::{Signer, Verdict};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub rekeyed: Vec<Outcome>,
    pub skipped: Vec<Outcome>,
    pub failed: Vec<Outcome>,
    /// Re-keyings a killed run left half-way, finished first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub id: String,
    pub destination: String,
    pub detail: String,
    #[serde(skip)]
    pub exit: Exit,
}

impl Report {
    pub fn exit(&self) -> Exit {
        if self.failed.iter().any(|f| f.exit == Exit::Integrity) {
            Exit::Integrity
        } else if self.failed.is_empty() {
            Exit::Success
        } else if self.rekeyed.is_empty() && self.skipped.is_empty() {
            Exit::Failure
        } else {
            Exit::Partial
        }
    }
}

pub fn run(settings: &Settings, args: &RekeyArgs) -> Result<Report> {
    let state = StateDir::open(&settings.state_dir)?;
    let _lock = state.lock(args.wait)?;
    let enc = settings.encryption.as_ref().ok_or_else(|| {
        crate::exit::config("rekey re-encrypts to [encryption] recipients, and the config has none")
    })?;
    let sealer = Sealer::load(enc)?;
    let opener = Opener::load(enc)?;
    let signer = settings
        .signing
        .as_ref()
        .map(|s| Signer::load(&s.key_file))
        .transpose()?;
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let dests = super::open_destinations(settings, &names)?;

    let mut report = Report::default();
    let mut found = false;
    for dest in &dests {
        report.finished.extend(
            catalog::roll_forward(dest)?
                .into_iter()
                .map(|id| format!("{id} on {}", dest.name)),
        );
        let listing = catalog::list(dest)?;
        sweep(dest, &listing.backups);
        for backup in &listing.backups {
            if args.id.as_deref().is_some_and(|id| id != backup.id) {
                continue;
            }
            found = true;
            crate::interrupt::check()?;
            let outcome = |detail: String, exit: Exit| Outcome {
                id: backup.id.clone(),
                destination: dest.name.clone(),
                detail,
                exit,
            };
            match plan(backup, &sealer, signer.as_ref()) {
                Plan::Skip(why) => report.skipped.push(outcome(why, Exit::Success)),
                Plan::Refuse(why) => report.failed.push(outcome(why, Exit::Integrity)),
                Plan::Rekey => match rekey_one(dest, backup, &opener, &sealer, signer.as_ref()) {
                    Ok(detail) => report.rekeyed.push(outcome(detail, Exit::Success)),
                    Err(e) if crate::exit::classify(&e) == Exit::Interrupted => return Err(e),
                    Err(e) => report.failed.push(outcome(
                        crate::exit::describe(&e),
                        crate::exit::classify(&e),
                    )),
                },
            }
        }
    }
    if let (Some(id), false) = (&args.id, found) {
        return Err(anyhow::Error::new(
            crate::exit::Fault::new(Exit::Failure, format!("no complete backup {id}"))
                .hint("`litevault list` shows the backups there are"),
        ));
    }
    Ok(report)
}

enum Plan {
    Rekey,
    Skip(String),
    Refuse(String),
}

fn plan(backup: &Backup, sealer: &Sealer, signer: Option<&Signer>) -> Plan {
    if let Some(damage) = &backup.damage {
        return Plan::Refuse(format!("it is damaged ({damage}); not re-keyed"));
    }
    // Re-signing a backup nobody vouches for would launder a planted one.
    if !backup.trust.is_good() {
        return Plan::Refuse(format!(
            "it is not trusted ({}); not re-keyed",
            backup.trust
        ));
    }
    if backup.sidecar.archive.encryption == "none" {
        return Plan::Skip(
            "it is not encrypted (rekey changes recipients, it does not add encryption)".into(),
        );
    }
    let mut have = backup.sidecar.archive.recipients.clone();
    let mut want = sealer.public.clone();
    have.sort();
    want.sort();
    let signed_as_wanted = match (signer, &backup.trust) {
        (None, _) => true,
        (Some(s), Verdict::Trusted(fp)) => s.fingerprint() == *fp,
        // Without [trust] here, who signed it is not checked: the recipients decide.
        (Some(_), Verdict::NotRequired) => true,
        (Some(_), _) => false,
    };
    if !want.is_empty() && have == want && signed_as_wanted {
        return Plan::Skip("already encrypted to exactly the current recipients".into());
    }
    Plan::Rekey
}

/// Remove archives a killed rekey left behind: any object of a listed backup's id that its
/// sidecar does not name. Best effort: a later run tries again.
fn sweep(dest: &Destination, backups: &[Backup]) {
    let Ok(objects) = dest.list("") else { return };
    for b in backups {
        for o in &objects {
            let ours = o.name.starts_with(&format!("{}.", b.id))
                && o.name.contains(".tar")
                && o.name != b.sidecar.archive.object;
            if ours {
                let _ = dest.delete(&o.name);
            }
        }
    }
}

fn rekey_one(
    dest: &Destination,
    backup: &Backup,
    opener: &Opener,
    sealer: &Sealer,
    signer: Option<&Signer>,
) -> Result<String> {
    let old = &backup.sidecar.archive;
    let signed = dest
        .size(&catalog::signature_name(&backup.id))
        .with_context(|| format!("backup {} on {}", backup.id, dest.name))?
        .is_some();
    if signed && signer.is_none() {
        return Err(crate::exit::config(format!(
            "backup {} on {} is signed; re-keying it needs [signing] key_file, or its signature would no longer match",
            backup.id, dest.name
        ))
        .into());
    }
    let ext = old
        .object
        .split_once(".tar")
        .map(|(_, rest)| format!("tar{rest}"))
        .unwrap_or_else(|| "tar.age".into());
    let object = catalog::rekeyed_object_name(&backup.id, &ext);
    let context = || format!("re-keying backup {} on {}", backup.id, dest.name);

    // 1. The new archive, from the old one's age payload, under a new name.
    let upload = dest.upload(&object).with_context(context)?;
    let mut tap = Hashing::new(dest.reader(&old.object).with_context(context)?);
    let mut written = Hashing::new(Chunks::new(upload));
    {
        let mut plain = opener.open(&mut tap).with_context(context)?;
        let mut sealed = sealer.wrap(&mut written).context("age")?;
        copy_interruptibly(&mut plain, &mut sealed).with_context(context)?;
        sealed.finish().context("age")?;
    }
    crate::archive::layers::drain(&mut tap).with_context(context)?;
    let (_, count, hash) = tap.finish();
    if count != old.bytes || hash != old.blake3 {
        // Dropping the upload aborts it: nothing new is kept from damaged bytes.
        return Err(integrity(format!(
            "backup {} on {}: the stored archive does not match its sidecar (BLAKE3 {hash}, {count} bytes); not re-keyed",
            backup.id, dest.name
        ))
        .into());
    }
    let (chunks, bytes, blake3) = written.finish();
    let stored = chunks.commit().with_context(context)?;
    if stored != bytes {
        anyhow::bail!("{}: stored {stored} bytes, wrote {bytes}", context());
    }

    // 2. The new sidecar and signature, staged.
    let mut sidecar = backup.sidecar.clone();
    sidecar.archive.object = object.clone();
    sidecar.archive.bytes = bytes;
    sidecar.archive.blake3 = blake3;
    sidecar.archive.recipients = sealer.public.clone();
    let body = serde_json::to_vec_pretty(&sidecar).expect("a sidecar always serialises");
    let signature = signer.map(|s| s.sign(&body)).transpose()?;
    if let Some(sig) = &signature {
        dest.put(&catalog::staged_signature_name(&backup.id), sig.clone())
            .with_context(context)?;
    }
    dest.put(&catalog::staged_sidecar_name(&backup.id), body.clone())
        .with_context(context)?;

    // 3. In place: the signature, then the sidecar.
    if let Some(sig) = signature {
        dest.put(&catalog::signature_name(&backup.id), sig)
            .with_context(context)?;
    }
    dest.put(&catalog::sidecar_name(&backup.id), body)
        .with_context(context)?;

    // 4. Clean up; a failure here leaves only what the next run removes.
    let _ = dest.delete(&catalog::staged_sidecar_name(&backup.id));
    let _ = dest.delete(&catalog::staged_signature_name(&backup.id));
    let _ = dest.delete(&old.object);
    Ok(format!(
        "re-encrypted to {} recipient(s){}",
        sealer.public.len().max(1),
        if signer.is_some() {
            " and re-signed"
        } else {
            ""
        }
    ))
}

fn copy_interruptibly(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0;
    loop {
        crate::interrupt::check_io()?;
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// An upload as a `Write`, in 1 MiB chunks.
struct Chunks<'d> {
    upload: Upload<'d>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl<'d> Chunks<'d> {
    fn new(upload: Upload<'d>) -> Self {
        Chunks {
            upload,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.upload.write(chunk).map_err(crate::exit::into_io)
    }

    fn commit(mut self) -> Result<u64> {
        self.send()?;
        self.upload.commit()
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
