//! Keeping a destination's catalogue in order: removing what this host's killed runs staged,
//! finishing half-done re-keyings that prove themselves, deleting good backups, and noticing two
//! configs writing one namespace. Nothing here acts on a name alone.

use std::time::SystemTime;

use anyhow::Result;

use super::{
    archive_id, is_id, load_sidecar, parse_sidecar, sidecar_name, signature_name, Backup, Good,
    SIDECAR_LIMIT, SIDECAR_SUFFIX, SIGNATURE_LIMIT, SIGNATURE_SUFFIX,
};
use crate::storage::destination::{Destination, TMP_DIR};

/// How many of the newest backups a backup run reads to notice another config writing into
/// its namespace: enough to see a neighbour that backs up as often, cheap on every run.
const IDENTITY_SAMPLE: usize = 3;

/// What a backup run says about its namespace after storing, from one listing: archives without
/// a sidecar (never deleted, always reported), a newest backup dated ahead of this host's clock,
/// and the newest backups taken by another `state_dir` than `mine`. Cannot fail a backup: a
/// sidecar that cannot be read here is reported by `list` and `verify`.
pub fn notices(dest: &Destination, mine: Option<&str>, now: SystemTime) -> Vec<String> {
    let Ok(objects) = dest.list("") else {
        return Vec::new();
    };
    let mut out: Vec<String> = super::orphans_in(dest, &objects)
        .iter()
        .map(|o| o.to_string())
        .collect();
    let mut ids: Vec<&str> = objects
        .iter()
        .filter_map(|o| o.name.strip_suffix(SIDECAR_SUFFIX))
        .filter(|id| is_id(id))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    out.extend(
        ids.first()
            .and_then(|newest| clock_warning(dest, newest, now)),
    );
    let Some(mine) = mine else { return out };
    for id in ids.into_iter().take(IDENTITY_SAMPLE) {
        let Some(obj) = objects.iter().find(|o| o.name == sidecar_name(id)) else {
            continue;
        };
        if let Ok((sidecar, _, _)) = load_sidecar(dest, obj, id) {
            match sidecar.manifest.state_id.as_deref() {
                Some(other) if other != mine => {
                    out.push(format!(
                        "destination {}: backup {id} was taken by another state_dir (identity {}) than this one ({}): two configs are writing the namespace {:?}, and each would restore, prune and count the other's backups as its own; give each config its own `name` (if this host's state_dir was recreated, this stops once its own backups are the newest)",
                        dest.name,
                        short(other),
                        short(mine),
                        sidecar.manifest.host
                    ));
                    break;
                }
                _ => {}
            }
        }
    }
    out
}

/// A warning when the newest backup (by its id, which is its time) is dated ahead of `now`: one
/// of the two clocks is wrong, and until it is fixed that backup is not counted, so retention
/// keeps more than it should and `--if-older-than` runs every time.
fn clock_warning(dest: &Destination, newest: &str, now: SystemTime) -> Option<String> {
    let made = super::id_time(newest)?;
    let ahead = made.duration_since(now).ok()?;
    (ahead > super::CLOCK_SKEW).then(|| format!(
        "destination {}: the newest backup, {newest}, is dated {} ahead of this host's clock; one of the two clocks is wrong (check NTP on both hosts). Until it is fixed, that backup is not counted: prune keeps it and computes its rules over the others, and `--if-older-than` does not see it as fresh",
        dest.name,
        crate::ui::duration(ahead)
    ))
}

/// Warnings when the backups of one listing come from more than one `state_dir`.
pub fn mixed_identities(backups: &[Backup]) -> Vec<String> {
    let mut seen: Vec<(&str, &str, &str)> = Vec::new(); // identity, a backup id, destination
    for b in backups {
        if let Some(sid) = b.sidecar.manifest.state_id.as_deref() {
            if !seen
                .iter()
                .any(|(s, _, d)| *s == sid && *d == b.destination)
            {
                seen.push((sid, &b.id, &b.destination));
            }
        }
    }
    let mut out = Vec::new();
    for (i, (sid, id, dest)) in seen.iter().enumerate() {
        if let Some((other, other_id, _)) = seen[..i].iter().find(|(_, _, d)| d == dest) {
            out.push(format!(
                "destination {dest}: backups from two state_dirs share this namespace: {other_id} (identity {}) and {id} (identity {}); two configs with the same `name` mix their backups: give each its own `name`",
                short(other),
                short(sid)
            ));
        }
    }
    out
}

fn short(identity: &str) -> &str {
    identity.get(..12).unwrap_or(identity)
}

/// A new name for a re-encrypted archive of backup `id` with extension `ext` (`tar.zst.age`).
pub fn rekeyed_object_name(id: &str, ext: &str) -> String {
    format!("{id}.r{}.{ext}", crate::state::nonce())
}

/// Where `rekey` stages a backup's new sidecar and signature before putting them in place, so
/// that a run killed between the two can be finished by the next `rekey` (see
/// [`finish_rekeys`]).
pub fn staged_sidecar_name(id: &str) -> String {
    format!("{TMP_DIR}{id}{SIDECAR_SUFFIX}{REKEY_SUFFIX}")
}

pub fn staged_signature_name(id: &str) -> String {
    format!("{TMP_DIR}{id}{SIGNATURE_SUFFIX}{REKEY_SUFFIX}")
}

const REKEY_SUFFIX: &str = ".rekey";

/// What [`finish_rekeys`] did.
#[derive(Debug, Default)]
pub struct Finished {
    /// Ids whose staged sidecar was verified and put in place.
    pub finished: Vec<String>,
    /// Staged files that could not be verified, left alone, and why.
    pub refused: Vec<String>,
}

/// Finish re-keyings a killed `rekey` left half-way, and only those whose staged sidecar
/// proves itself: it names the same id, describes the same backup as the sidecar in place,
/// carries a signature `voucher` trusts (the trusted signers, or this host's own key), and the
/// new archive it names is stored with the size and BLAKE3 it states. Anything else is left
/// alone and reported: a file in `tmp/` is a name, not evidence. Call while holding the lock.
pub fn finish_rekeys(dest: &Destination, voucher: &crate::trust::Verifier) -> Result<Finished> {
    let mut out = Finished::default();
    for obj in dest.list(TMP_DIR)? {
        let Some(id) = obj
            .name
            .strip_suffix(REKEY_SUFFIX)
            .and_then(|n| n.strip_suffix(SIDECAR_SUFFIX))
        else {
            continue;
        };
        if !is_id(id) {
            continue;
        }
        match finish_one(dest, id, voucher) {
            Ok(()) => out.finished.push(id.to_string()),
            Err(e) => out.refused.push(format!(
                "{TMP_DIR}{}: {e:#}; left alone (delete it by hand once you have looked at it)",
                obj.name
            )),
        }
    }
    Ok(out)
}

fn finish_one(dest: &Destination, id: &str, voucher: &crate::trust::Verifier) -> Result<()> {
    if !voucher.is_configured() {
        anyhow::bail!("a staged re-keying is finished only when a signature vouches for it, and this host has neither [trust] nor [signing]");
    }
    let body = dest.read_small(&staged_sidecar_name(id), SIDECAR_LIMIT)?;
    let (staged, created, body) = parse_sidecar(id, body)?;
    let staged_sig = dest
        .stat(&staged_signature_name(id))?
        .map(|_| dest.read_small(&staged_signature_name(id), SIGNATURE_LIMIT))
        .transpose()?;
    let sig = match &staged_sig {
        Some(sig) => Some(sig.clone()),
        None => dest
            .stat(&signature_name(id))?
            .map(|_| dest.read_small(&signature_name(id), SIGNATURE_LIMIT))
            .transpose()?,
    };
    let verdict = voucher.judge(&body, sig.as_deref(), created);
    if !matches!(verdict, crate::trust::Verdict::Trusted(_)) {
        anyhow::bail!("it is not vouched for: {verdict}");
    }
    let Some(current) = dest.stat(&sidecar_name(id))? else {
        anyhow::bail!("backup {id} has no sidecar in place to finish");
    };
    let current = dest.read_listed(&current, SIDECAR_LIMIT)?;
    if current == body {
        // Put in place already; only the staging is left.
        let _ = dest.delete(&staged_sidecar_name(id));
        let _ = dest.delete(&staged_signature_name(id));
        return Ok(());
    }
    let (current, _, _) = parse_sidecar(id, current)?;
    if serde_json::to_value(&current.manifest).ok() != serde_json::to_value(&staged.manifest).ok() {
        anyhow::bail!("it describes other contents than backup {id}'s sidecar in place");
    }
    let new = &staged.archive;
    check_stored(dest, &new.object, new.bytes, &new.blake3)?;
    if let Some(sig) = staged_sig {
        dest.put(&signature_name(id), sig)?;
    }
    dest.put(&sidecar_name(id), body)?;
    let _ = dest.delete(&staged_sidecar_name(id));
    let _ = dest.delete(&staged_signature_name(id));
    // The archive the replaced sidecar named: superseded by the one just verified.
    if current.archive.object != new.object {
        let _ = dest.delete(&current.archive.object);
    }
    Ok(())
}

/// Read a stored object whole and confirm it is `bytes` long with BLAKE3 `blake3`: an
/// integrity fault naming it when it is not.
pub fn check_stored(dest: &Destination, object: &str, bytes: u64, blake3: &str) -> Result<()> {
    let mut tap = crate::archive::layers::Hashing::new(dest.reader_sized(object, bytes)?);
    crate::archive::layers::drain(&mut tap)
        .map_err(|e| anyhow::anyhow!("reading {object} on {}: {e}", dest.name))?;
    let (_, count, hash) = tap.finish();
    if count != bytes || hash != blake3 {
        return Err(crate::exit::integrity(format!(
            "{object} on {} is not what its sidecar says ({count} bytes with BLAKE3 {hash}; the sidecar says {bytes} bytes with BLAKE3 {blake3})",
            dest.name
        ))
        .into());
    }
    Ok(())
}

/// What [`clean_leftovers`] did: what it removed, what it could not remove, and what it left
/// alone because nothing proves it is a leftover of litevault's.
#[derive(Debug, Default)]
pub struct Cleanup {
    pub removed: Vec<String>,
    pub left: Vec<String>,
    pub untouched: Vec<String>,
}

impl Cleanup {
    /// Warnings for what was left: never a failure of the run, because a backup host whose
    /// credential cannot delete (the backup role) must still back up.
    pub fn warnings(&self, dest: &Destination) -> Vec<String> {
        let mut out = Vec::new();
        if !self.left.is_empty() {
            out.push(format!(
                "destination {}: leftovers of killed runs were left in place (this credential cannot delete them, or they could not be deleted): {}; they are never counted as backups, and `litevault prune` from a host with delete rights (the maintenance role) removes them",
                dest.name,
                self.left.join("; ")
            ));
        }
        out.extend(self.untouched_warnings(dest));
        out
    }

    /// Warnings for what was left alone on purpose.
    pub fn untouched_warnings(&self, dest: &Destination) -> Vec<String> {
        self.untouched
            .iter()
            .map(|u| format!("destination {}: {u}", dest.name))
            .collect()
    }
}

/// Remove what this host's killed runs left under `tmp/`: objects under litevault's own staging
/// names (`<final name>.<8 hex>`), and `check` probes. Call only while holding the state lock:
/// then no run of this host can still own them. Nothing else is deleted on a name alone:
/// a staged re-keying is `rekey`'s to finish, anything else in `tmp/` is reported, and an
/// archive without its sidecar (which may be all that is left of a backup) is never touched
/// here. What cannot be deleted (a credential without delete rights) is left, and said.
pub fn clean_leftovers(dest: &Destination) -> Result<Cleanup> {
    let mut done = Cleanup::default();
    // A destination that cannot even be listed fails here, once, before anything else tries.
    let staged = dest.list(TMP_DIR)?;
    let remove = |path: &str, done: &mut Cleanup| match dest.delete(path) {
        Ok(()) => done.removed.push(path.to_string()),
        Err(e) => done.left.push(format!("{path} ({e:#})")),
    };
    for obj in staged {
        let path = format!("{TMP_DIR}{}", obj.name);
        match staging_kind(&obj.name) {
            Staging::Upload => remove(&path, &mut done),
            Staging::Rekey(id) => done.untouched.push(format!(
                "{path} is a re-keying of backup {id} left half-way; `litevault rekey` finishes it once it is verified, or reports it"
            )),
            Staging::Unknown => done.untouched.push(format!(
                "{path} is not a name litevault stages under; left alone (delete it by hand once you have looked at it)"
            )),
        }
    }
    for obj in dest
        .list("")?
        .iter()
        .filter(|o| o.name.starts_with("check-") && o.name.ends_with(".probe"))
    {
        remove(&obj.name, &mut done);
    }
    Ok(done)
}

enum Staging<'a> {
    /// An upload in progress under its own name, `<final name>.<8 hex>`.
    Upload,
    /// `rekey`'s staged sidecar or signature of a backup.
    Rekey(&'a str),
    Unknown,
}

fn staging_kind(name: &str) -> Staging<'_> {
    if let Some(staged) = name.strip_suffix(REKEY_SUFFIX) {
        let id = staged
            .strip_suffix(SIGNATURE_SUFFIX)
            .or_else(|| staged.strip_suffix(SIDECAR_SUFFIX));
        return match id.filter(|id| is_id(id)) {
            Some(id) => Staging::Rekey(id),
            None => Staging::Unknown,
        };
    }
    let Some((target, nonce)) = name.rsplit_once('.') else {
        return Staging::Unknown;
    };
    if nonce.len() != 8 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Staging::Unknown;
    }
    let ours = archive_id(target).is_some()
        || target
            .strip_suffix(SIGNATURE_SUFFIX)
            .or_else(|| target.strip_suffix(SIDECAR_SUFFIX))
            .is_some_and(is_id)
        || (target.starts_with("check-") && target.ends_with(".probe"))
        // rekey's staged sidecar or signature, being uploaded beside its own name.
        || matches!(staging_kind(target), Staging::Rekey(_));
    if ours {
        Staging::Upload
    } else {
        Staging::Unknown
    }
}

/// Delete one good backup (nothing else is ever deleted as a backup): the sidecar first, so it
/// stops being listed before its archive goes.
pub fn delete(dest: &Destination, backup: Good<'_>) -> Result<()> {
    dest.delete(&sidecar_name(&backup.id))?;
    dest.delete(&signature_name(&backup.id))?;
    dest.delete(&backup.sidecar.archive.object)?;
    Ok(())
}
