//! Reading one backup's sidecar (and signature) and judging it: what every listing is made of.
//! A sidecar is read in one request (or from the cache), parsed strictly, and judged once (see
//! [`super::standing`]).

use std::time::SystemTime;

use anyhow::Result;

use super::standing;
use super::{
    sidecar_name, signature_name, staged_sidecar_name, Backup, SIDECAR_LIMIT, SIGNATURE_LIMIT,
};
use crate::archive::manifest::{check_version, Sidecar};
use crate::storage::destination::{Destination, Object};
use crate::trust::Verdict;

/// Load each of `ids` at once, as many at a time as the destination allows requests in flight
/// (sidecars seen before come from the cache, without a request); results in `ids`' order.
pub(super) fn load_many(
    dest: &Destination,
    ids: &[&str],
    listed: &(dyn Fn(&str) -> Result<Option<Object>> + Sync),
    now: SystemTime,
) -> Vec<Result<Backup>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<Backup>>>> =
        ids.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let workers = dest.concurrency().clamp(1, 16).min(ids.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let loaded = load_backup(dest, id, listed, now);
                *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(loaded);
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(anyhow::anyhow!("a sidecar reader stopped")))
        })
        .collect()
}

/// Backup `id` as its sidecar (and signature, when trust is configured) describe it; `listed`
/// says what the destination holds under a name (`None`: nothing), from a listing or by asking.
pub(super) fn load_backup(
    dest: &Destination,
    id: &str,
    listed: &dyn Fn(&str) -> Result<Option<Object>>,
    now: SystemTime,
) -> Result<Backup> {
    let sidecar_obj = listed(&sidecar_name(id))?
        .ok_or_else(|| anyhow::anyhow!("sidecar {} is gone", sidecar_name(id)))?;
    let (mut sidecar, mut created, body) = load_sidecar(dest, &sidecar_obj, id)?;
    let sidecar_blake3 = blake3::hash(&body).to_hex().to_string();
    let trust = if dest.trust().is_configured() {
        match listed(&signature_name(id)) {
            Ok(Some(sig)) => match dest.read_listed(&sig, SIGNATURE_LIMIT) {
                Ok(sig) => dest.trust().judge(&body, Some(&sig), created),
                Err(e) => Verdict::BadSignature(format!("its signature cannot be read: {e:#}")),
            },
            Ok(None) => dest.trust().judge(&body, None, created),
            Err(e) => Verdict::BadSignature(format!("its signature cannot be read: {e:#}")),
        }
    } else {
        Verdict::NotRequired
    };
    // A rekey between putting the new signature and the new sidecar: the staged sidecar is the
    // one the signature vouches for, and its archive is stored.
    let trust = match trust {
        Verdict::BadSignature(why) => match staged_pair(dest, id) {
            Some((staged, verdict)) => {
                (sidecar, created) = (staged.0, staged.1);
                verdict
            }
            None => Verdict::BadSignature(why),
        },
        other => other,
    };
    let damage = match listed(sidecar.archive.object.as_str())?.map(|o| o.size) {
        Some(size) if size == sidecar.archive.bytes => None,
        Some(size) => Some(format!(
            "the stored archive has {size} bytes, the sidecar says {}",
            sidecar.archive.bytes
        )),
        None => Some(format!("the archive {} is missing", sidecar.archive.object)),
    };
    let standing = standing::judge(
        &standing::Facts {
            damage,
            trust: &trust,
            host: &sidecar.manifest.host,
            namespace: dest.namespace.as_deref(),
            created,
        },
        now,
    );
    Ok(Backup {
        id: id.to_string(),
        created,
        destination: dest.name.clone(),
        sidecar,
        trust,
        standing,
        sidecar_blake3,
    })
}

/// The staged sidecar of an unfinished rekey of `id`, if the signature in place vouches for it.
fn staged_pair(dest: &Destination, id: &str) -> Option<((Sidecar, SystemTime), Verdict)> {
    let body = dest
        .read_small(&staged_sidecar_name(id), SIDECAR_LIMIT)
        .ok()?;
    let sig = dest.read_small(&signature_name(id), SIGNATURE_LIMIT).ok()?;
    let (sidecar, created, body) = parse_sidecar(id, body).ok()?;
    let verdict = dest.trust().judge(&body, Some(&sig), created);
    if !matches!(verdict, Verdict::Trusted(_)) {
        return None;
    }
    Some(((sidecar, created), verdict))
}

/// The sidecar, its time, and its exact bytes (what a signature covers).
pub(super) fn load_sidecar(
    dest: &Destination,
    obj: &Object,
    id: &str,
) -> Result<(Sidecar, SystemTime, Vec<u8>)> {
    let body = dest.read_listed(obj, SIDECAR_LIMIT)?;
    parse_sidecar(id, body)
}

pub(super) fn parse_sidecar(id: &str, body: Vec<u8>) -> Result<(Sidecar, SystemTime, Vec<u8>)> {
    let sidecar: Sidecar = serde_json::from_slice(&body).map_err(|e| {
        crate::exit::integrity(format!("sidecar {} is not valid: {e}", sidecar_name(id)))
    })?;
    check_version(&sidecar.format, sidecar.format_version, "sidecar")?;
    check_version(
        &sidecar.manifest.format,
        sidecar.manifest.format_version,
        "manifest",
    )?;
    if sidecar.manifest.backup_id != id
        || !sidecar.archive.object.starts_with(id)
        || sidecar.archive.object.contains('/')
    {
        return Err(crate::exit::integrity(format!(
            "sidecar {} describes another backup",
            sidecar_name(id)
        ))
        .into());
    }
    let created = humantime::parse_rfc3339(&sidecar.manifest.created).map_err(|e| {
        crate::exit::integrity(format!("sidecar {}: bad time: {e}", sidecar_name(id)))
    })?;
    Ok((sidecar, created, body))
}
