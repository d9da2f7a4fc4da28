//! Destination URLs, parsed into a [`Location`] that says which OpenDAL service to build.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `file:///abs/path`, or `file://relative/path` (relative to the config file's folder).
    File { root: PathBuf },
}

impl Location {
    pub fn parse(url: &str, base: &Path) -> Result<Location> {
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!("{url:?} is not a URL; write file:///path/to/folder");
        };
        match scheme {
            "file" => {
                if rest.is_empty() {
                    bail!("{url:?} names no folder; write file:///path/to/folder");
                }
                let path = Path::new(rest);
                let joined = if path.is_absolute() {
                    path.to_path_buf()
                } else {
                    base.join(path)
                };
                Ok(Location::File {
                    root: normalize(&joined),
                })
            }
            other => bail!("{other}:// is not a supported destination (use file://)"),
        }
    }

    /// How the destination is named in messages: never with credentials.
    pub fn display(&self) -> String {
        match self {
            Location::File { root } => format!("file://{}", root.display()),
        }
    }
}

/// `a/b/../c` -> `a/c`, without touching the filesystem (the folder may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls() {
        let base = Path::new("/etc/litevault");
        assert_eq!(
            Location::parse("file:///var/backups", base).unwrap(),
            Location::File {
                root: "/var/backups".into()
            }
        );
        assert_eq!(
            Location::parse("file://backups", base).unwrap(),
            Location::File {
                root: "/etc/litevault/backups".into()
            }
        );
        assert_eq!(
            Location::parse("file://../backups", base).unwrap(),
            Location::File {
                root: "/etc/backups".into()
            }
        );
        for bad in ["/var/backups", "file://", "gopher://x"] {
            assert!(Location::parse(bad, base).is_err(), "{bad}");
        }
    }
}
