//! Downloading a backup and unpacking it into a private folder with every check: the archive
//! streams through the reader's checks while the aftercare workers sync each unpacked file and
//! check each database. An incremental backup goes to `rebuild`, which does the same over its
//! chain.

use std::path::Path;

use anyhow::Result;

use super::aftercare::{check_label, Aftercare, StoppedByAftercare, ToAftercare};
use crate::catalog::{Backup, Standing};
use crate::storage::Destination;

/// Which databases a restore checks again after unpacking them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Every one (`verify`, and an in-place restore, which replaces live data).
    All,
    /// Those whose check is not implied by a trusted signature over the snapshot that passed it
    /// (see `aftercare::implied`): a restore into a folder.
    UnlessSigned,
}

impl Checks {
    fn vouched(self, backup: &Backup) -> bool {
        self == Checks::UnlessSigned && matches!(backup.trust, crate::trust::Verdict::Trusted(_))
    }
}

/// The backups that restoring `backup` reads, its full backup first (just `backup` when it is
/// full); refused when it or a link is damaged, untrusted or its chain broken. Sidecars and
/// the listing only: what the dry run shows and the unpacking then reads.
pub(super) fn chain_for(dest: &Destination, backup: &Backup) -> Result<Vec<Backup>> {
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
    crate::catalog::chains::resolve(dest, backup)
}

/// Download `backup`, unpack it into `into` (an empty private folder) with every check, then run
/// `pragma` (quick_check or integrity_check) on each database. Returns the databases checked.
#[allow(clippy::too_many_arguments)]
pub fn unpack_checked(
    dest: &Destination,
    backup: &Backup,
    opener: Option<&crate::crypto::Opener>,
    into: &Path,
    pragma: &str,
    durable: bool,
    progress: &dyn crate::progress::Progress,
    checks: Checks,
) -> Result<Vec<String>> {
    use anyhow::Context;
    let vouched = checks.vouched(backup);
    let chain = chain_for(dest, backup)?;
    if backup.sidecar.manifest.is_incremental() {
        return super::rebuild::rebuild(
            dest,
            &chain,
            opener,
            into,
            pragma,
            durable,
            progress,
            vouched,
            &mut |_| {},
        );
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
            vouched,
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
                db.path,
                problems.join("; ")
            ))
            .into());
        }
        checked.push(db.path.clone());
    }
    Ok(checked)
}

/// [`unpack_checked`] of an incremental's `chain` (full first) that also vouches for every link under it:
/// `on_link` is called with each link once it has been read whole and every check on it has
/// passed (its stored bytes, every entry's BLAKE3, its page deltas, and each database's hash
/// before and after it). Each link's databases then are, byte for byte, the snapshots that
/// were checked when that backup was taken, so `verify --all` reads each archive of a chain
/// once instead of rebuilding the chain again for every link.
#[allow(clippy::too_many_arguments)]
pub fn unpack_chain_checked(
    dest: &Destination,
    chain: &[Backup],
    opener: Option<&crate::crypto::Opener>,
    into: &Path,
    pragma: &str,
    progress: &dyn crate::progress::Progress,
    on_link: &mut dyn FnMut(&Backup),
) -> Result<Vec<String>> {
    super::rebuild::rebuild(
        dest, chain, opener, into, pragma, false, progress, false, on_link,
    )
}
