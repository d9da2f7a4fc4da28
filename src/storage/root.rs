//! A destination's folder, looked at without creating anything: a `file://` or `sftp://` root
//! that does not exist is an error unless its table says `create = true`. Its own module so that
//! the destination and the SFTP session can both use it.

use std::io;

use anyhow::Result;

/// A `file://` or `sftp://` destination's folder, looked at without creating anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Exists,
    /// Missing, and the config says `create = true`.
    ToCreate,
}

/// Whether the folder of a `file://` destination is there. A missing one is an error unless the
/// config says `create = true`: the folder is where a disk or an export is mounted, and a
/// mount point that is not mounted must not quietly fill the root file system (restic, too,
/// refuses a repository that was never initialised).
pub fn file_root(name: &str, root: &std::path::Path, create: bool) -> Result<Root> {
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Ok(Root::Exists),
        Ok(_) => Err(anyhow::Error::new(
            crate::exit::Fault::new(
                crate::exit::Exit::Failure,
                format!(
                    "destination {name}: {} is not a folder",
                    root.display()
                ),
            )
            .hint("point the destination's url at a folder"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => Ok(Root::ToCreate),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(anyhow::Error::new(
            crate::exit::Fault::new(
                crate::exit::Exit::Failure,
                format!(
                    "destination {name}: its folder {} does not exist (litevault does not create a destination's folder: an unmounted disk would fill the root file system instead)",
                    root.display()
                ),
            )
            .hint(format!(
                "mount the disk or export if that is where it lives; else create the folder (mkdir -p {}), or set create = true in this [[destination]] to let litevault make it",
                root.display()
            )),
        )),
        Err(e) => Err(anyhow::Error::new(
            crate::exit::Fault::new(
                crate::exit::Exit::Failure,
                format!(
                    "destination {name}: cannot look at its folder {}: {e}",
                    root.display()
                ),
            )
            .hint("check the permissions of the folders above it"),
        )),
    }
}
