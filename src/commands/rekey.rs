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
use crate::catalog::{self, Backup, Standing};
use crate::cli::RekeyArgs;
use crate::commands::report::{self, CommandReport};
use crate::config::Settings;
use crate::crypto::{Opener, Sealer};
use crate::exit::{integrity, Exit};
use crate::journal;
use crate::state::StateDir;
use crate::storage::Destination;
use crate::trust::{Signer, Verdict};
use crate::ui::{Escaped, Ui};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub rekeyed: Vec<BackupResult>,
    pub skipped: Vec<BackupResult>,
    pub failed: Vec<BackupResult>,
    /// Re-keyings a killed run left half-way, finished first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<String>,
    /// What was found and left alone: staged files that do not prove themselves, archives no
    /// sidecar names, unreadable sidecars.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct BackupResult {
    pub id: String,
    pub destination: String,
    pub detail: String,
    #[serde(skip)]
    pub exit: Exit,
}

impl CommandReport for Report {
    /// Damage found: 4; every backup failed: 1; some: 3.
    fn exit(&self) -> Exit {
        let none_done = self.rekeyed.is_empty() && self.skipped.is_empty();
        Exit::worst(self.failed.iter().map(|f| match f.exit {
            Exit::Integrity => Exit::Integrity,
            _ if none_done => Exit::Failure,
            _ => Exit::Partial,
        }))
    }

    fn outcome(&self) -> journal::Outcome {
        let errors = self
            .failed
            .iter()
            .map(|f| format!("{} on {}: {}", f.id, f.destination, f.detail))
            .collect();
        journal::Outcome {
            destinations: Some(serde_json::json!({
                "rekeyed": self.rekeyed.len(),
                "skipped": self.skipped.len(),
                "failed": self.failed.len(),
            })),
            error: report::errors(errors),
            ..report::outcome(self.exit())
        }
    }

    fn render(&self, ui: &Ui) -> Result<()> {
        let report = self;
        ui.json(report)?;
        for w in &report.warnings {
            ui.warn(w);
        }
        let mut lines = Vec::new();
        for id in &report.finished {
            lines.push(format!(
                "finished {} (left half-way by a killed run)",
                Escaped(id)
            ));
        }
        for o in &report.rekeyed {
            lines.push(format!(
                "rekeyed {} on {}: {}",
                Escaped(&o.id),
                o.destination,
                Escaped(&o.detail)
            ));
        }
        for o in &report.skipped {
            lines.push(format!(
                "skipped {} on {}: {}",
                Escaped(&o.id),
                o.destination,
                Escaped(&o.detail)
            ));
        }
        for o in &report.failed {
            ui.error(&format!(
                "{} on {}: {}",
                Escaped(&o.id),
                o.destination,
                Escaped(&o.detail)
            ));
        }
        lines.push(format!(
            "{} rekeyed, {} skipped, {} failed",
            report.rekeyed.len(),
            report.skipped.len(),
            report.failed.len()
        ));
        ui.say_all(&lines)?;
        Ok(())
    }
}

/// What `rekey` re-encrypts, from its flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// This backup.
    pub id: Option<String>,
    /// Every backup not already encrypted to exactly the current recipients.
    pub all: bool,
    /// Unsigned or foreign-signed backups this host vouches for from now on.
    pub adopt: Vec<String>,
    /// Only this destination [all].
    pub dest: Option<String>,
    /// Wait this long for another run's lock.
    pub wait: Option<std::time::Duration>,
}

impl From<&RekeyArgs> for Options {
    fn from(args: &RekeyArgs) -> Self {
        Options {
            id: args.id.clone(),
            all: args.all,
            adopt: args.adopt.clone(),
            dest: args.dest.clone(),
            wait: args.wait,
        }
    }
}

pub fn run(
    settings: &Settings,
    args: &Options,
    progress: &dyn crate::progress::Progress,
) -> Result<Report> {
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
    let mut dests = super::open_destinations(settings, &names)?;
    // Re-signing is vouching: this host vouches again only for what the trusted signers, or
    // its own key, signed. So its own key counts as trusted here (and only here).
    if let Some(signer) = &signer {
        for dest in &mut dests {
            dest.trust_also(signer);
        }
    }

    let mut report = Report::default();
    let mut found: Vec<String> = Vec::new();
    for dest in &dests {
        let finished = catalog::finish_rekeys(dest, dest.trust())?;
        report.finished.extend(
            finished
                .finished
                .into_iter()
                .map(|id| format!("{id} on {}", dest.name)),
        );
        report.warnings.extend(
            finished
                .refused
                .into_iter()
                .map(|r| format!("destination {}: {r}", dest.name)),
        );
        let listing = catalog::list(dest)?;
        report
            .warnings
            .extend(listing.problems.iter().map(|p| p.to_string()));
        for backup in &listing.backups {
            let adopt = args.adopt.contains(&backup.id);
            let named = args.id.as_deref() == Some(backup.id.as_str());
            if !(args.all || named || adopt) {
                continue;
            }
            found.push(backup.id.clone());
            crate::interrupt::check()?;
            let outcome = |detail: String, exit: Exit| BackupResult {
                id: backup.id.clone(),
                destination: dest.name.clone(),
                detail,
                exit,
            };
            match plan(backup, &sealer, signer.as_ref(), adopt) {
                Action::Skip(why) => {
                    report.warnings.extend(strays(dest, backup));
                    report.skipped.push(outcome(why, Exit::Success))
                }
                Action::Refuse(why, exit) => report.failed.push(outcome(why, exit)),
                Action::Rekey { adopted } => {
                    match rekey_one(dest, backup, &opener, &sealer, signer.as_ref(), progress) {
                        Ok(detail) => {
                            let detail = match adopted {
                                Some(was) => format!("{detail}; adopted at your request (it was {was}): this host now vouches for it"),
                                None => detail,
                            };
                            report.rekeyed.push(outcome(detail, Exit::Success))
                        }
                        Err(e) if crate::exit::classify(&e) == Exit::Interrupted => return Err(e),
                        Err(e) => report.failed.push(outcome(
                            crate::exit::describe(&e),
                            crate::exit::classify(&e),
                        )),
                    }
                }
            }
        }
    }
    for id in args.id.iter().chain(&args.adopt) {
        if !found.contains(id) {
            return Err(anyhow::Error::new(
                crate::exit::Fault::new(Exit::Failure, format!("no complete backup {id}"))
                    .hint("`litevault list` shows the backups there are"),
            ));
        }
    }
    Ok(report)
}

enum Action {
    /// Re-encrypt (and re-sign); `adopted` says what the backup was when the operator named it
    /// with `--adopt`.
    Rekey {
        adopted: Option<String>,
    },
    Skip(String),
    Refuse(String, Exit),
}

fn plan(backup: &Backup, sealer: &Sealer, signer: Option<&Signer>, adopt: bool) -> Action {
    let adopted = match &backup.standing {
        Standing::Good => None,
        // Only the operator, naming it, may vouch for what nobody vouched for.
        Standing::Untrusted(why) if adopt => Some(why.clone()),
        Standing::Untrusted(why) => {
            return Action::Refuse(
                format!("it is not vouched for ({why}); not re-keyed: re-signing it would launder it (if you know it is genuine, name it with --adopt {})", backup.id),
                Exit::Integrity,
            )
        }
        other => return Action::Refuse(format!("{other}; not re-keyed"), other.exit()),
    };
    if backup.sidecar.archive.encryption == "none" {
        return Action::Skip(
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
        (Some(_), _) => false,
    };
    if adopted.is_none() && !want.is_empty() && have == want && signed_as_wanted {
        return Action::Skip("already encrypted to exactly the current recipients".into());
    }
    Action::Rekey { adopted }
}

/// Archives of a good backup that its sidecar does not name (left by a killed re-keying):
/// reported, not deleted, since nothing here has read them.
fn strays(dest: &Destination, backup: &Backup) -> Vec<String> {
    let Ok(objects) = dest.list("") else {
        return Vec::new();
    };
    objects
        .iter()
        .filter(|o| is_stray(&o.name, backup))
        .map(|o| {
            format!(
                "destination {}: {} is an archive of backup {} that its sidecar does not name (left by an interrupted re-keying?); it is not used, and the next re-keying of {} removes it",
                dest.name, o.name, backup.id, backup.id
            )
        })
        .collect()
}

fn is_stray(name: &str, backup: &Backup) -> bool {
    name.starts_with(&format!("{}.", backup.id))
        && name.contains(".tar")
        && name != backup.sidecar.archive.object
}

fn rekey_one(
    dest: &Destination,
    backup: &Backup,
    opener: &Opener,
    sealer: &Sealer,
    signer: Option<&Signer>,
    progress: &dyn crate::progress::Progress,
) -> Result<String> {
    let old = &backup.sidecar.archive;
    // Counted in the bytes read from the stored archive, whose size the sidecar gives.
    progress.phase(&format!("rekey {} on {}", backup.id, dest.name), old.bytes);
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
    let mut tap = Hashing::new(
        dest.reader_sized(&old.object, old.bytes)
            .with_context(context)?,
    );
    let mut written = Hashing::new(upload.writer());
    let streamed = (|| -> Result<()> {
        let mut plain = opener.open(&mut tap).with_context(context)?;
        let mut sealed = sealer.wrap(&mut written).context("age")?;
        copy_interruptibly(&mut plain, &mut sealed, progress).with_context(context)?;
        sealed.finish().context("age")?;
        Ok(())
    })();
    if let Err(e) = streamed {
        if crate::exit::classify(&e) == Exit::Interrupted {
            return Err(e);
        }
        return finish_failed(e, tap, old, backup, dest);
    }
    crate::archive::layers::drain(&mut tap).with_context(context)?;
    let (_, count, hash) = tap.finish();
    if count != old.bytes || hash != old.blake3 {
        // Dropping the upload aborts it: nothing new is kept from damaged bytes.
        return Err(mismatch(backup, dest, &hash, count));
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
    // Earlier killed re-keyings' archives of this backup: the one just written replaces them.
    if let Ok(objects) = dest.list("") {
        for o in objects.iter().filter(|o| {
            o.name != object
                && o.name.starts_with(&format!("{}.r", backup.id))
                && is_stray(&o.name, backup)
        }) {
            let _ = dest.delete(&o.name);
        }
    }
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

/// Damage before blame: when decryption fails, the rest of the stored bytes still say whether
/// the archive is what its sidecar describes; a damaged one is exit 4, as everywhere.
fn finish_failed<R: Read>(
    err: anyhow::Error,
    mut tap: Hashing<R>,
    old: &crate::archive::manifest::ArchiveInfo,
    backup: &Backup,
    dest: &Destination,
) -> Result<String> {
    if crate::archive::layers::drain(&mut tap).is_ok() {
        let (_, count, hash) = tap.finish();
        if count != old.bytes || hash != old.blake3 {
            return Err(mismatch(backup, dest, &hash, count));
        }
    }
    Err(err)
}

fn mismatch(backup: &Backup, dest: &Destination, hash: &str, count: u64) -> anyhow::Error {
    integrity(format!(
        "backup {} on {} is damaged: the stored archive does not match its sidecar (BLAKE3 {hash}, {count} bytes); not re-keyed",
        backup.id, dest.name
    ))
    .into()
}

fn copy_interruptibly(
    from: &mut impl Read,
    to: &mut impl Write,
    progress: &dyn crate::progress::Progress,
) -> io::Result<u64> {
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
        progress.advance(n as u64);
    }
}
