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

/// Backups whose sidecars are fetched in one batch. A batch's bodies are held until each is
/// judged, so the raw bytes held at once grow with the batch, not with the destination (which
/// may hold huge or hostile sidecars); a thousand backups cost three pauses between batches.
const BATCH: usize = 256;

/// Load each of `ids`: every sidecar, and with `[trust]` its signature beside it, fetched in
/// batches (the cache first, the rest at once inside the runtime: see
/// `Destination::read_listed_many`), then each judged; results in `ids`' order.
pub(super) fn load_many(
    dest: &Destination,
    ids: &[&str],
    listed: &dyn Fn(&str) -> Result<Option<Object>>,
    now: SystemTime,
) -> Vec<Result<Backup>> {
    ids.chunks(BATCH)
        .flat_map(|batch| load_batch(dest, batch, listed, now))
        .collect()
}

fn load_batch(
    dest: &Destination,
    ids: &[&str],
    listed: &dyn Fn(&str) -> Result<Option<Object>>,
    now: SystemTime,
) -> Vec<Result<Backup>> {
    let trust = dest.trust().is_configured();
    let found: Vec<Found> = ids
        .iter()
        .map(|id| Found {
            sidecar: listed(&sidecar_name(id)).and_then(|o| {
                o.ok_or_else(|| anyhow::anyhow!("sidecar {} is gone", sidecar_name(id)))
            }),
            signature: trust.then(|| listed(&signature_name(id))),
        })
        .collect();
    let mut wanted: Vec<(&Object, u64)> = Vec::new();
    for f in &found {
        if let Ok(obj) = &f.sidecar {
            wanted.push((obj, SIDECAR_LIMIT));
        }
        if let Some(Ok(Some(obj))) = &f.signature {
            wanted.push((obj, SIGNATURE_LIMIT));
        }
    }
    // In the order they were asked for: each sidecar's body, then its signature's.
    let mut bodies = dest.read_listed_many(&wanted).into_iter();
    let mut next = || {
        bodies
            .next()
            .unwrap_or_else(|| Err(anyhow::anyhow!("a sidecar reader stopped")))
    };
    let fetched: Vec<(Result<Vec<u8>>, Signature)> = found
        .into_iter()
        .map(|f| {
            let body = f.sidecar.and_then(|_| next());
            let signature = match f.signature {
                None => Signature::NotAsked,
                Some(Ok(None)) => Signature::Absent,
                Some(Ok(Some(_))) => match next() {
                    Ok(sig) => Signature::Read(sig),
                    Err(e) => Signature::Unreadable(e),
                },
                Some(Err(e)) => Signature::Unreadable(e),
            };
            (body, signature)
        })
        .collect();
    ids.iter()
        .zip(fetched)
        .map(|(id, (body, signature))| judge(dest, id, listed, body?, signature, now))
        .collect()
}

/// What the listing says of one backup's sidecar and (with `[trust]`) its signature.
struct Found {
    sidecar: Result<Object>,
    /// `None`: not asked for (no `[trust]`); `Some(Ok(None))`: not there.
    signature: Option<Result<Option<Object>>>,
}

/// A backup's signature as found beside its sidecar.
enum Signature {
    /// No `[trust]`: nothing to judge.
    NotAsked,
    Absent,
    Read(Vec<u8>),
    Unreadable(anyhow::Error),
}

/// Backup `id` as its sidecar (and signature, when trust is configured) describe it; `listed`
/// says what the destination holds under a name (`None`: nothing), from a listing or by asking.
pub(super) fn load_backup(
    dest: &Destination,
    id: &str,
    listed: &dyn Fn(&str) -> Result<Option<Object>>,
    now: SystemTime,
) -> Result<Backup> {
    load_many(dest, &[id], listed, now)
        .pop()
        .unwrap_or_else(|| Err(anyhow::anyhow!("a sidecar reader stopped")))
}

/// The judgement of one backup from its sidecar's bytes and its signature as fetched.
fn judge(
    dest: &Destination,
    id: &str,
    listed: &dyn Fn(&str) -> Result<Option<Object>>,
    body: Vec<u8>,
    signature: Signature,
    now: SystemTime,
) -> Result<Backup> {
    let (mut sidecar, mut created, body) = parse_sidecar(id, body)?;
    let sidecar_blake3 = blake3::hash(&body).to_hex().to_string();
    let trust = match signature {
        Signature::NotAsked => Verdict::NotRequired,
        Signature::Absent => dest.trust().judge(&body, None, created),
        Signature::Read(sig) => dest.trust().judge(&body, Some(&sig), created),
        Signature::Unreadable(e) => {
            Verdict::BadSignature(format!("its signature cannot be read: {e:#}"))
        }
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
