//! A destination as it was at a past time, on storage that keeps versions (an S3 bucket with
//! versioning, or with object lock): each object is the version that was current then, so what
//! was deleted, overwritten or hidden behind a delete marker since is there again, read by its
//! version id. The catalogue reads such a view exactly as it reads the present: trust, damage
//! and chains are judged the same way. A view is read-only.

use std::collections::BTreeMap;
use std::time::SystemTime;

use opendal::{EntryMode, Operator};

use super::object::Object;

/// One object as it was: the version that was current at the view's time.
#[derive(Debug, Clone)]
pub struct Version {
    pub id: String,
    pub size: u64,
}

/// Every object of a namespace as it was at `at`.
#[derive(Debug)]
pub struct View {
    pub at: SystemTime,
    objects: BTreeMap<String, Version>,
}

/// Why a destination cannot be seen as it was.
pub enum NoView {
    /// The backend has no versions at all (a folder, SFTP).
    Unsupported,
    /// The bucket answers, but has never kept an older version: versioning is off.
    NoVersions,
}

impl View {
    /// List every version under `op`'s root and keep, for each name, the newest one made at or
    /// before `at` (none when that is a delete marker, or when the name did not exist yet).
    pub async fn load(
        op: &Operator,
        at: SystemTime,
    ) -> opendal::Result<std::result::Result<View, NoView>> {
        let cap = op.info().capability();
        if !(cap.list_with_versions && cap.read_with_version && cap.stat_with_version) {
            return Ok(Err(NoView::Unsupported));
        }
        let entries = op
            .list_with("")
            .recursive(true)
            .versions(true)
            .deleted(true)
            .await?;
        // (when it was made, is a delete marker, version)
        let mut newest: BTreeMap<String, (SystemTime, bool, Version)> = BTreeMap::new();
        let mut kept_versions = false;
        for entry in &entries {
            let meta = entry.metadata();
            if meta.mode() == EntryMode::DIR {
                continue;
            }
            let id = meta.version().unwrap_or("null").to_string();
            kept_versions |= id != "null" || meta.is_deleted();
            let Some(made) = meta.last_modified().map(SystemTime::from) else {
                continue;
            };
            if made > at {
                continue;
            }
            let this = (
                made,
                meta.is_deleted(),
                Version {
                    id,
                    size: meta.content_length(),
                },
            );
            let path = entry.path().to_string();
            match newest.get(&path) {
                Some((when, ..)) if *when >= made => {}
                _ => {
                    newest.insert(path, this);
                }
            }
        }
        if !kept_versions && !entries.is_empty() {
            return Ok(Err(NoView::NoVersions));
        }
        let objects = newest
            .into_iter()
            .filter(|(_, (_, deleted, _))| !deleted)
            .map(|(path, (_, _, v))| (path, v))
            .collect();
        Ok(Ok(View { at, objects }))
    }

    /// The objects directly in `dir`, as a listing of that time would give them.
    pub fn list(&self, dir: &str) -> Vec<Object> {
        self.objects
            .range(dir.to_string()..)
            .take_while(|(path, _)| path.starts_with(dir))
            .filter(|(path, _)| !path[dir.len()..].contains('/'))
            .map(|(path, v)| Object {
                name: path[dir.len()..].to_string(),
                size: v.size,
                version: Some(v.id.clone()),
            })
            .collect()
    }

    /// The folders directly in `dir`.
    pub fn folders(&self, dir: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .objects
            .keys()
            .filter_map(|p| p.strip_prefix(dir))
            .filter_map(|rest| rest.split_once('/').map(|(f, _)| f.to_string()))
            .collect();
        out.dedup();
        out
    }

    pub fn get(&self, path: &str) -> Option<&Version> {
        self.objects.get(path)
    }
}
