//! Plain files and folders (config files, certificates): found, then read exactly once.
//!
//! A file that changes while it is read is an error, not a silently torn copy: its size and
//! modification time are compared before and after.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

/// One regular file to store, and the path it takes inside the archive.
#[derive(Debug, Clone)]
pub struct FileItem {
    pub archive_path: String,
    pub fs_path: PathBuf,
}

/// A folder of a `dir` source (the source's own folder first), with its owner and mode.
#[derive(Debug, Clone)]
pub struct DirItem {
    pub archive_path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What a folder walk passed over (links, sockets, names that are not UTF-8), for the report.
#[derive(Debug, Default)]
pub struct Skipped(pub Vec<String>);

/// The files of a `file` source (itself) or a `dir` source (every regular file below it, in
/// name order so that two backups of the same tree produce the same tar), and the folders of a
/// `dir` source (its own and every one below it) with their owners and modes.
pub fn collect(
    name: &str,
    path: &Path,
    is_dir: bool,
    skipped: &mut Skipped,
) -> Result<(Vec<FileItem>, Vec<DirItem>)> {
    let meta = fs::symlink_metadata(path)
        .map_err(|e| super::access_error(name, path, e))
        .with_context(|| format!("source {name}"))?;
    if !is_dir {
        let meta = fs::metadata(path)
            .map_err(|e| super::access_error(name, path, e))
            .with_context(|| format!("source {name}"))?;
        if !meta.is_file() {
            bail!(
                "source {name}: {} is not a regular file (kind = \"file\")",
                path.display()
            );
        }
        return Ok((
            vec![FileItem {
                archive_path: name.to_string(),
                fs_path: path.to_path_buf(),
            }],
            Vec::new(),
        ));
    }
    if !meta.is_dir() {
        bail!(
            "source {name}: {} is not a folder (kind = \"dir\")",
            path.display()
        );
    }
    let mut out = Vec::new();
    let mut dirs = vec![dir_item(name, &meta)];
    walk(path, name, &mut out, &mut dirs, skipped)
        .with_context(|| format!("source {name}: walking {}", path.display()))?;
    Ok((out, dirs))
}

fn dir_item(archive_path: &str, meta: &fs::Metadata) -> DirItem {
    DirItem {
        archive_path: archive_path.to_string(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    }
}

fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<FileItem>,
    dirs: &mut Vec<DirItem>,
    skipped: &mut Skipped,
) -> Result<()> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            skipped
                .0
                .push(format!("{} (name is not UTF-8)", path.display()));
            continue;
        };
        let kind = entry.file_type()?;
        let archive_path = format!("{prefix}/{name}");
        if kind.is_dir() {
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            dirs.push(dir_item(&archive_path, &meta));
            walk(&path, &archive_path, out, dirs, skipped)?;
        } else if kind.is_file() {
            out.push(FileItem {
                archive_path,
                fs_path: path,
            });
        } else {
            // Restore refuses links and devices, so storing them would make an unrestorable backup.
            skipped
                .0
                .push(format!("{} (not a regular file)", path.display()));
        }
    }
    Ok(())
}

/// An open file with the size and time it had when opened.
pub struct OpenFile {
    pub file: File,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    modified: Option<SystemTime>,
    path: PathBuf,
}

pub fn open(item: &FileItem) -> Result<OpenFile> {
    let file = File::open(&item.fs_path)
        .with_context(|| format!("cannot open {}", item.fs_path.display()))?;
    let meta = file.metadata()?;
    Ok(OpenFile {
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        modified: meta.modified().ok(),
        file,
        path: item.fs_path.clone(),
    })
}

impl OpenFile {
    /// After reading: the file must not have changed underneath.
    pub fn confirm_unchanged(&self) -> Result<()> {
        // The open handle's own metadata: a file replaced by rename (how editors save) left us
        // reading the complete old version, which is fine.
        let now = self.file.metadata()?;
        if now.len() != self.size || now.modified().ok() != self.modified {
            bail!(
                "{} changed while it was being read; run the backup again",
                self.path.display()
            );
        }
        Ok(())
    }
}

impl Read for OpenFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}
