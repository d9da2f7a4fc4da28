//! Keeping a destination's catalogue in order: finishing what killed runs left half-done
//! (leftovers, half-finished re-keyings), deleting backups, and noticing two configs writing
//! one namespace.

use anyhow::Result;

use super::{
    archive_id, is_id, load_sidecar, sidecar_name, signature_name, Backup, SIDECAR_LIMIT,
    SIDECAR_SUFFIX, SIGNATURE_LIMIT, SIGNATURE_SUFFIX,
};
use crate::storage::destination::{Destination, TMP_DIR};

/// How many of the newest backups a backup run reads to notice another config writing into
/// its namespace: enough to see a neighbour that backs up as often, cheap on every run.
const IDENTITY_SAMPLE: usize = 3;

/// Warnings for the newest backups in `dest` taken by another `state_dir` than `mine`. Cannot
/// fail a backup: a sidecar that cannot be read here is reported by `list` and `verify`.
pub fn foreign_identities(dest: &Destination, mine: &str) -> Vec<String> {
    let Ok(objects) = dest.list("") else {
        return Vec::new();
    };
    let mut ids: Vec<&str> = objects
        .iter()
        .filter_map(|o| o.name.strip_suffix(SIDECAR_SUFFIX))
        .filter(|id| is_id(id))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    for id in ids.into_iter().take(IDENTITY_SAMPLE) {
        let Some(obj) = objects.iter().find(|o| o.name == sidecar_name(id)) else {
            continue;
        };
        if let Ok((sidecar, _, _)) = load_sidecar(dest, obj, id) {
            match sidecar.manifest.state_id.as_deref() {
                Some(other) if other != mine => out.push(format!(
                    "destination {}: backup {id} was taken by another state_dir (identity {}) than this one ({}): two configs are writing the namespace {:?}, and each would restore, prune and count the other's backups as its own; give each config its own `name` (if this host's state_dir was recreated, this stops once its own backups are the newest)",
                    dest.name,
                    short(other),
                    short(mine),
                    sidecar.manifest.host
                )),
                _ => {}
            }
        }
    }
    out.truncate(1);
    out
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
/// that a run killed between the two is finished by the next one (see [`roll_forward`]).
pub fn staged_sidecar_name(id: &str) -> String {
    format!("{TMP_DIR}{id}{SIDECAR_SUFFIX}.rekey")
}

pub fn staged_signature_name(id: &str) -> String {
    format!("{TMP_DIR}{id}{SIGNATURE_SUFFIX}.rekey")
}

/// Finish re-keyings a killed run left half-way: a staged sidecar means its new archive is
/// stored, so putting the staged signature and sidecar in place is always right. Call while
/// holding the lock. Returns the ids finished.
pub fn roll_forward(dest: &Destination) -> Result<Vec<String>> {
    let staged = dest.list(TMP_DIR)?;
    let top: std::collections::HashSet<String> =
        dest.list("")?.into_iter().map(|o| o.name).collect();
    let mut done = Vec::new();
    for obj in &staged {
        let Some(id) = obj.name.strip_suffix(".json.rekey") else {
            continue;
        };
        if !is_id(id) || !top.contains(&sidecar_name(id)) {
            continue;
        }
        let sidecar = dest.read_small(&staged_sidecar_name(id), SIDECAR_LIMIT)?;
        if staged
            .iter()
            .any(|o| format!("{TMP_DIR}{}", o.name) == staged_signature_name(id))
        {
            let sig = dest.read_small(&staged_signature_name(id), SIGNATURE_LIMIT)?;
            dest.put(&signature_name(id), sig)?;
        }
        dest.put(&sidecar_name(id), sidecar)?;
        dest.delete(&staged_sidecar_name(id))?;
        let _ = dest.delete(&staged_signature_name(id));
        done.push(id.to_string());
    }
    Ok(done)
}

/// What [`clean_leftovers`] did: what it removed, and what it had to leave (with why).
#[derive(Debug, Default)]
pub struct Cleanup {
    pub removed: Vec<String>,
    pub left: Vec<String>,
}

impl Cleanup {
    /// Warnings for what was left: never a failure of the run, because a backup host whose
    /// credential cannot delete (the backup role) must still back up.
    pub fn warnings(&self, dest: &Destination) -> Vec<String> {
        if self.left.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "destination {}: leftovers of killed runs were left in place (this credential cannot delete them, or they could not be deleted): {}; they are never counted as backups, and `litevault prune` from a host with delete rights (the maintenance role) removes them",
            dest.name,
            self.left.join("; ")
        )]
    }
}

/// Remove what a killed run left behind: anything under `tmp/`, and archives whose sidecar was
/// never written (the run died between storing the archive and completing it). Call only while
/// holding the state lock: then no other run of this host is writing here. What cannot be
/// deleted (a credential without delete rights) is left, and said.
pub fn clean_leftovers(dest: &Destination) -> Result<Cleanup> {
    let mut done = Cleanup::default();
    // A destination that cannot even be listed fails here, once, before anything else tries.
    let staged = dest.list(TMP_DIR)?;
    if let Err(e) = roll_forward(dest) {
        done.left.push(format!("a half-finished re-keying ({e:#})"));
    }
    let remove = |path: &str, done: &mut Cleanup| match dest.delete(path) {
        Ok(()) => done.removed.push(path.to_string()),
        Err(e) => done.left.push(format!("{path} ({e:#})")),
    };
    // Re-listed: finishing a re-keying removed what it staged.
    let staged = if staged.is_empty() {
        staged
    } else {
        dest.list(TMP_DIR)?
    };
    for obj in staged {
        remove(&format!("{TMP_DIR}{}", obj.name), &mut done);
    }
    let objects = dest.list("")?;
    let sidecars: Vec<&str> = objects
        .iter()
        .filter_map(|o| o.name.strip_suffix(SIDECAR_SUFFIX))
        .collect();
    for obj in objects
        .iter()
        .filter(|o| o.name.starts_with("check-") && o.name.ends_with(".probe"))
    {
        remove(&obj.name, &mut done);
    }
    for obj in &objects {
        // A signature whose sidecar was never written: the run died between the two.
        if let Some(id) = obj.name.strip_suffix(SIGNATURE_SUFFIX) {
            if is_id(id) && !sidecars.contains(&id) {
                remove(&obj.name, &mut done);
            }
            continue;
        }
        let Some(id) = archive_id(&obj.name) else {
            continue;
        };
        if !sidecars.contains(&id) {
            remove(&obj.name, &mut done);
        }
    }
    Ok(done)
}

/// Delete one backup: the sidecar first, so it stops being listed before its archive goes.
pub fn delete(dest: &Destination, backup: &Backup) -> Result<()> {
    dest.delete(&sidecar_name(&backup.id))?;
    dest.delete(&signature_name(&backup.id))?;
    dest.delete(&backup.sidecar.archive.object)?;
    Ok(())
}
