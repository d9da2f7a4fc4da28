//! What is backed up: consistent snapshots of SQLite databases, and plain files and folders.

pub mod discover;
pub mod files;
mod pages;
pub mod sqlite;
mod stream;

use std::path::Path;

/// A source path that cannot be read, said so that a person can act: a path that is gone
/// names the config key, a permission refused names the user litevault runs as; anything else
/// keeps the system's words.
pub fn access_error(source: &str, path: &Path, err: std::io::Error) -> anyhow::Error {
    use crate::exit::{Exit, Fault};
    match err.kind() {
        std::io::ErrorKind::NotFound => anyhow::Error::new(
            Fault::new(
                Exit::Failure,
                format!("{} does not exist", path.display()),
            )
            .hint(format!(
                "fix the `path` of [[source]] {source:?} in the config, or put the file back (`litevault restore latest --to DIR --only {source}` gives the last backed-up copy)"
            )),
        ),
        std::io::ErrorKind::PermissionDenied => {
            let user = crate::ui::effective_user();
            anyhow::Error::new(
                Fault::new(
                    Exit::Failure,
                    format!(
                        "permission denied: user {user} cannot read {}",
                        path.display()
                    ),
                )
                .hint(format!(
                    "run litevault as root (or as the owner of {}), or give user {user} read access to it and search access to its folders",
                    path.display()
                )),
            )
        }
        _ => anyhow::Error::new(err).context(format!("cannot read {}", path.display())),
    }
}
