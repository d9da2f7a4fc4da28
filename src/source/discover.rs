//! What each source holds this run, found afresh: the SQLite databases to snapshot (known by
//! their header, `SQLite format 3\0`, never by their name), and the plain files and folders to
//! copy.
//!
//! A database's `-wal`, `-shm` and `-journal` files are never copied: its snapshot, taken
//! through SQLite inside one read transaction, already holds their committed content, and a
//! byte copy of the pair would tear. A file that has such companions but no SQLite header
//! (encrypted with SQLCipher, or damaged) cannot be read consistently at all, so it is an error
//! naming it, unless the config stores it as bytes on purpose (`as_bytes`).
//!
//! A file of no bytes is an empty database, or one being created that has not committed yet:
//! there is nothing in it to tear, so it is never opened through SQLite (which could drop a
//! `-wal` beside an empty file) and its companions are left out.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::files::{DirItem, FileItem, Skipped};
use crate::config::{Discover, Settings, Source, SourceKind};
use crate::exit::{Exit, Fault};

/// The first 16 bytes of every SQLite database file.
pub const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The files SQLite keeps beside a database while it is in use.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// `O_NOFOLLOW`: a file swapped for a symlink after the folder was listed is not followed.
const NOFOLLOW: i32 = 0o400000;

/// One database to snapshot: the name it takes in the archive, and where it lives.
#[derive(Debug, Clone)]
pub struct DbFile<'s> {
    pub source: &'s Source,
    /// '/'-separated: the source's name, or `NAME/relative/path` for one found below a folder.
    pub path: String,
    pub fs_path: PathBuf,
    pub size: u64,
}

/// The plain files and folders of a `file` or `dir` source.
pub struct Plain<'s> {
    pub source: &'s Source,
    pub files: Vec<FileItem>,
    pub dirs: Vec<DirItem>,
}

/// Everything a backup reads this run.
#[derive(Default)]
pub struct Inventory<'s> {
    /// Every database of every source, the largest first: a restore checks each as soon as it
    /// is unpacked, so the longest check overlaps the unpacking of the rest.
    pub databases: Vec<DbFile<'s>>,
    /// In the config's order.
    pub plain: Vec<Plain<'s>>,
    pub skipped: Skipped,
    /// Said on every run: files stored as bytes on purpose, databases not yet created, a
    /// pattern that matched nothing.
    pub warnings: Vec<String>,
}

impl Inventory<'_> {
    /// The databases each source that finds its own holds now, by source name: what the next
    /// run compares with to say which are gone.
    pub fn found(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for db in &self.databases {
            if db.path != db.source.name {
                out.entry(db.source.name.clone())
                    .or_default()
                    .push(db.path.clone());
            }
        }
        for list in out.values_mut() {
            list.sort();
        }
        out
    }
}

/// Find what every source holds now.
pub fn take(settings: &Settings) -> Result<Inventory<'_>> {
    let mut inv = Inventory::default();
    for (i, source) in settings.sources.iter().enumerate() {
        add(source, i, &mut inv)?;
    }
    inv.databases.sort_by_key(|d| std::cmp::Reverse(d.size));
    Ok(inv)
}

/// Find what one source (the config's `index`th) holds now.
pub fn of_source(source: &Source, index: usize) -> Result<Inventory<'_>> {
    let mut inv = Inventory::default();
    add(source, index, &mut inv)?;
    Ok(inv)
}

fn add<'s>(source: &'s Source, index: usize, inv: &mut Inventory<'s>) -> Result<()> {
    match source.kind {
        SourceKind::Sqlite => discover(source, index, inv),
        SourceKind::File | SourceKind::Dir => plain(source, inv),
    }
}

fn discover<'s>(source: &'s Source, index: usize, inv: &mut Inventory<'s>) -> Result<()> {
    let meta = fs::metadata(&source.path);
    let by_folder = source.discover.is_some() || meta.as_ref().is_ok_and(|m| m.is_dir());
    if !by_folder {
        // One database, named after its source (a missing file is the snapshot's error).
        inv.databases.push(DbFile {
            source,
            path: source.name.clone(),
            fs_path: source.path.clone(),
            size: meta.map(|m| m.len()).unwrap_or(0),
        });
        return Ok(());
    }
    let rule = source.discover.clone().unwrap_or(Discover {
        include: Vec::new(),
        exclude: Vec::new(),
    });
    let meta = meta
        .map_err(|e| super::access_error(&source.name, &source.path, e))
        .with_context(|| format!("source {}", source.name))?;
    if !meta.is_dir() {
        return Err(anyhow::Error::new(
            crate::exit::config(format!(
                "source {}: {} is not a folder, but `source[{index}]` finds its databases below one",
                source.name,
                source.path.display()
            ))
            .hint(format!(
                "set `source[{index}].path` to the folder the databases are in, and the pattern in `source[{index}].pattern`"
            )),
        ));
    }
    let before = inv.databases.len();
    let mut found = Vec::new();
    walk(&source.path, "", &mut found, None, &mut inv.skipped)
        .with_context(|| format!("source {}: walking {}", source.name, source.path.display()))?;
    let companions = companion_set(&found);
    for f in found {
        if companions.contains(&f.relative) || !rule.matches(&f.relative) {
            continue;
        }
        match classify(&f)? {
            Kind::Database => inv.databases.push(DbFile {
                source,
                path: format!("{}/{}", source.name, f.relative),
                fs_path: f.fs_path,
                size: f.size,
            }),
            Kind::Empty if rule.strict() => inv.warnings.push(format!(
                "source {}: {} is empty (a database being created?); nothing of it is stored this run",
                source.name,
                f.fs_path.display()
            )),
            Kind::Empty | Kind::Other if !rule.strict() => {}
            Kind::Empty | Kind::Other => {
                return Err(anyhow::Error::new(
                    Fault::new(
                        Exit::Failure,
                        format!(
                            "source {}: {} matches the source's pattern but is not a SQLite database (no `SQLite format 3` header: encrypted, as with SQLCipher, or something else), so it cannot be snapshotted",
                            source.name,
                            f.fs_path.display()
                        ),
                    )
                    .hint(format!(
                        "leave it out with `source[{index}].exclude = [{:?}]`, or narrow `source[{index}].pattern`",
                        f.relative
                    )),
                ))
            }
        }
    }
    if inv.databases.len() == before {
        inv.warnings.push(format!(
            "source {}: no database below {} matches `source[{index}]` (a new server may have none yet; otherwise check `source[{index}].path` and `pattern`)",
            source.name,
            source.path.display()
        ));
    }
    Ok(())
}

fn plain<'s>(source: &'s Source, inv: &mut Inventory<'s>) -> Result<()> {
    let is_dir = source.kind == SourceKind::Dir;
    let (items, dirs) =
        super::files::collect(&source.name, &source.path, is_dir, &mut inv.skipped)?;
    let mut found: Vec<Found> = Vec::with_capacity(items.len());
    for item in items {
        let relative = item
            .archive_path
            .strip_prefix(&source.name)
            .map(|r| r.trim_start_matches('/').to_string())
            .unwrap_or_default();
        let size = fs::symlink_metadata(&item.fs_path)
            .map(|m| m.len())
            .unwrap_or(0);
        found.push(Found {
            relative,
            fs_path: item.fs_path,
            size,
        });
    }
    let companions = companion_set(&found);
    let mut files = Vec::new();
    for f in found {
        let archive_path = if f.relative.is_empty() {
            source.name.clone()
        } else {
            format!("{}/{}", source.name, f.relative)
        };
        let as_bytes = source.stored_as_bytes(&f.relative)
            || base_of(&f.relative).is_some_and(|b| source.stored_as_bytes(b));
        if as_bytes {
            inv.warnings.push(format!(
                "source {}: {} is stored as bytes (`as_bytes`), not snapshotted: if it is a database written during the backup, its copy may be torn",
                source.name,
                f.fs_path.display()
            ));
            files.push(FileItem {
                archive_path,
                fs_path: f.fs_path,
            });
            continue;
        }
        if companions.contains(&f.relative) {
            continue;
        }
        match classify(&f)? {
            Kind::Database => inv.databases.push(DbFile {
                source,
                path: archive_path,
                fs_path: f.fs_path,
                size: f.size,
            }),
            Kind::Other if has_companions(&f.fs_path) => {
                return Err(anyhow::Error::new(
                    Fault::new(
                        Exit::Failure,
                        format!(
                            "source {}: {} has a -wal or -journal beside it but no SQLite header (encrypted, as with SQLCipher, or damaged), so it cannot be read consistently, and a byte copy of it and its journal could be torn",
                            source.name,
                            f.fs_path.display()
                        ),
                    )
                    .hint(format!(
                        "to store it as bytes on purpose (safe only while nothing writes it), add `as_bytes = [{:?}]` to [[source]] {:?}",
                        if f.relative.is_empty() { source.name.as_str() } else { f.relative.as_str() },
                        source.name
                    )),
                ))
            }
            Kind::Empty | Kind::Other => files.push(FileItem {
                archive_path,
                fs_path: f.fs_path,
            }),
        }
    }
    inv.plain.push(Plain {
        source,
        files,
        dirs,
    });
    Ok(())
}

/// A regular file found below a source's folder.
struct Found {
    /// '/'-separated, below the source's folder ("" for a `file` source's own file).
    relative: String,
    fs_path: PathBuf,
    size: u64,
}

enum Kind {
    Database,
    Empty,
    Other,
}

/// What a file is, by its first bytes, read without following a symlink.
fn classify(f: &Found) -> Result<Kind> {
    if f.size == 0 {
        return Ok(Kind::Empty);
    }
    let mut head = [0u8; 16];
    let n = open_nofollow(&f.fs_path)
        .and_then(|mut file| read_up_to(&mut file, &mut head))
        .with_context(|| format!("cannot read {}", f.fs_path.display()))?;
    Ok(if n == head.len() && &head == HEADER {
        Kind::Database
    } else if n == 0 {
        Kind::Empty
    } else {
        Kind::Other
    })
}

fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(NOFOLLOW)
        .open(path)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The database a companion file belongs to: `a.db` for `a.db-wal`.
fn base_of(relative: &str) -> Option<&str> {
    COMPANIONS
        .iter()
        .find_map(|suffix| relative.strip_suffix(suffix))
        .filter(|b| !b.is_empty() && !b.ends_with('/'))
}

/// The companions (`-wal`, `-shm`, `-journal`) of the files that are databases, or that are
/// empty (a database being created): these are never copied or opened on their own.
fn companion_set(found: &[Found]) -> HashSet<String> {
    let by_name: std::collections::HashMap<&str, &Found> =
        found.iter().map(|f| (f.relative.as_str(), f)).collect();
    found
        .iter()
        .filter(|f| {
            base_of(&f.relative)
                .and_then(|b| by_name.get(b))
                .is_some_and(|base| matches!(classify(base), Ok(Kind::Database | Kind::Empty)))
        })
        .map(|f| f.relative.clone())
        .collect()
}

fn has_companions(path: &Path) -> bool {
    ["-wal", "-journal"].iter().any(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        fs::symlink_metadata(Path::new(&name)).is_ok()
    })
}

/// Every regular file below `dir`, in name order; links and other kinds are passed over (and
/// reported), never followed.
fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<Found>,
    depth: Option<u32>,
    skipped: &mut Skipped,
) -> Result<()> {
    let depth = depth.unwrap_or(0);
    if depth > 64 {
        anyhow::bail!("{} is nested more than 64 folders deep", dir.display());
    }
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            skipped
                .0
                .push(format!("{} (name is not UTF-8)", path.display()));
            continue;
        };
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, &relative, out, Some(depth + 1), skipped)?;
        } else if kind.is_file() {
            let size = entry.metadata().map(|m| m.size()).unwrap_or(0);
            out.push(Found {
                relative,
                fs_path: path,
                size,
            });
        } else {
            skipped
                .0
                .push(format!("{} (not a regular file)", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_name_their_database() {
        assert_eq!(base_of("a.db-wal"), Some("a.db"));
        assert_eq!(base_of("t/x.sqlite-journal"), Some("t/x.sqlite"));
        assert_eq!(base_of("t/-shm"), None);
        assert_eq!(base_of("plain.conf"), None);
    }
}
