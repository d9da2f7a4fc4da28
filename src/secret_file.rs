//! Files that hold secrets (keys, passphrases, storage credentials): refused, as ssh refuses
//! them, when group or others may read them. A leaf, so that every module that loads a secret
//! (crypto, trust, storage) can use it without importing the others.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::exit::{config as config_error, Fault};

/// Like ssh: a secret that group or others may read is refused, not used.
pub fn refuse_loose_permissions(file: &Path, key: &str) -> Result<()> {
    let meta = fs::metadata(file)
        .map_err(|e| {
            let fault = config_error(format!("cannot read {key} {}: {e}", file.display()));
            match (e.kind(), key) {
                (std::io::ErrorKind::NotFound, "encryption.identity_file") => fault.hint(format!(
                    "the identity (the age secret key) is needed only where you restore or verify: put it at {} (mode 0600) on this host, or point {key} at where it is; a host that only backs up needs only the recipients",
                    file.display()
                )),
                (std::io::ErrorKind::NotFound, _) => fault.hint(format!(
                    "create {} (mode 0600), or fix {key} in the config",
                    file.display()
                )),
                _ => fault,
            }
        })
        .context("loading keys")?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(anyhow::Error::new(
            Fault::new(
                crate::exit::Exit::Usage,
                format!(
                    "{key} {} is accessible by group or others (mode {:o}); refusing to use it",
                    file.display(),
                    mode & 0o777
                ),
            )
            .hint(format!("chmod 600 {}", file.display())),
        ));
    }
    Ok(())
}
