//! Downloading a backup and unpacking it into a private folder with every check: the archive
//! streams through the reader's checks while the aftercare workers sync each unpacked file and
//! check each database. An incremental backup goes to `rebuild`, which does the same over its
//! chain.

use std::path::Path;

use anyhow::Result;

use super::aftercare::{check_label, Aftercare, StoppedByAftercare, ToAftercare};
use crate::catalog::{Backup, Standing};
use crate::storage::Destination;

/// Download `backup`, unpack it into `into` (an empty private folder) with every check, then run
/// `pragma` (quick_check or integrity_check) on each database. Returns the databases checked.
pub fn unpack_checked(
    dest: &Destination,
    backup: &Backup,
    opener: Option<&crate::crypto::Opener>,
    into: &Path,
    pragma: &str,
    durable: bool,
    progress: &dyn crate::progress::Progress,
) -> Result<Vec<String>> {
    use anyhow::Context;
    // A foreign or future-dated backup is unpacked when named by its id (the caller warns);
    // damage and distrust never are.
    if let s @ (Standing::Damaged(_) | Standing::Untrusted(_) | Standing::BrokenChain(_)) =
        &backup.standing
    {
        return Err(anyhow::Error::new(
            crate::exit::Fault::new(
                s.exit(),
                format!("backup {} on {} is refused: {s}", backup.id, dest.name),
            )
            .hint(s.hint()),
        ));
    }
    if backup.sidecar.manifest.is_incremental() {
        let chain = crate::catalog::chains::resolve(dest, backup)?;
        return super::rebuild::rebuild(dest, &chain, opener, into, pragma, durable, progress);
    }
    let stored = dest.reader_sized(&backup.sidecar.archive.object, backup.sidecar.archive.bytes)?;
    progress.phase(
        &format!("download {} from {}", backup.id, dest.name),
        backup.sidecar.manifest.total_size(),
    );
    let databases = &backup.sidecar.manifest.databases;
    // Each file is synced (when `durable`) and each database checked by a small pool of workers
    // soon after it is unpacked, while the next ones unpack; the database verdicts are read once
    // the whole archive has proved intact.
    let (extracted, aftercare) = std::thread::scope(|scope| {
        let mut pool = Aftercare::start(scope, pragma, durable);
        let mut entries = ToAftercare {
            pool: &mut pool,
            into,
            databases,
            durable,
        };
        let extracted = crate::archive::reader::extract(
            stored,
            &backup.sidecar,
            opener,
            into,
            progress,
            &mut entries,
        );
        if extracted.is_ok() {
            progress.waiting(&check_label(backup, dest, pragma));
        }
        (extracted, pool.finish())
    });
    let context = || format!("backup {} on {}", backup.id, dest.name);
    // A worker's failure that stopped the unpacking is the cause; otherwise damage found while
    // unpacking comes first, as it explains anything the workers saw.
    match (extracted, aftercare.failure) {
        (Err(e), Some(failure)) if e.is::<StoppedByAftercare>() => {
            return Err(failure).with_context(context)
        }
        (Err(e), _) => return Err(e).with_context(context),
        (Ok(()), Some(failure)) => return Err(failure).with_context(context),
        (Ok(()), None) => {}
    }
    let mut checked = Vec::new();
    for (index, problems) in aftercare.verdicts {
        let db = &databases[index];
        if !problems.is_empty() {
            return Err(crate::exit::integrity(format!(
                "backup {} on {}: database {} fails {pragma}: {}",
                backup.id,
                dest.name,
                db.source,
                problems.join("; ")
            ))
            .into());
        }
        checked.push(db.source.clone());
    }
    Ok(checked)
}
