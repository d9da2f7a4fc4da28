//! A local copy of small objects that never change once written (sidecars and their
//! signatures), kept in `state_dir/cache/<destination>/`, so listing a thousand backups costs
//! one listing and no downloads once they have been seen.
//!
//! An entry counts only while the destination's listing still says the same thing about the
//! object: its size, and its ETag or modification time where the backend gives one. A cache
//! that disagrees with the destination loses to it (the object is fetched again), so a sidecar
//! rewritten by `rekey` is never served stale. What is served is checked exactly as if it had
//! been downloaded (parsed, its signature verified against the trusted signers), and entries
//! are opened without following links. A cache that cannot be written only costs speed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::object::Object;

/// `O_NOFOLLOW`.
const NOFOLLOW: i32 = 0o400000;
const MAGIC: &str = "litevault-cache-1";

pub struct ObjectCache {
    dir: PathBuf,
}

impl ObjectCache {
    /// The cache for one destination (`key` names it: its location and namespace) under `root`
    /// (a private folder of `state_dir`); `None` when it cannot be made.
    pub fn open(root: PathBuf, key: &str) -> Option<ObjectCache> {
        let dir = root.join(&blake3::hash(key.as_bytes()).to_hex()[..16]);
        crate::state::ensure_private_dir(&dir).ok()?;
        Some(ObjectCache { dir })
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        // Object names in the namespace folder are plain; anything else is not cached.
        (!name.is_empty() && !name.contains('/') && !name.starts_with('.'))
            .then(|| self.dir.join(name))
    }

    /// The cached body of `obj`, if the entry still matches the listing.
    pub fn get(&self, obj: &Object) -> Option<Vec<u8>> {
        let path = self.path(&obj.name)?;
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(NOFOLLOW)
            .open(path)
            .ok()?;
        let mut content = Vec::new();
        file.read_to_end(&mut content).ok()?;
        let newline = content.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&content[..newline]).ok()?;
        if header != Self::header(obj) {
            return None;
        }
        let body = content.split_off(newline + 1);
        (body.len() as u64 == obj.size).then_some(body)
    }

    /// Keep `body` as the content of `obj`. Best effort: written under a new name, then renamed.
    pub fn put(&self, obj: &Object, body: &[u8]) {
        let Some(path) = self.path(&obj.name) else {
            return;
        };
        if body.len() as u64 != obj.size {
            return;
        }
        let staged = self
            .dir
            .join(format!(".{}.{}", obj.name, crate::state::nonce()));
        let written = (|| -> std::io::Result<()> {
            let mut f: File = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(NOFOLLOW)
                .open(&staged)?;
            f.write_all(Self::header(obj).as_bytes())?;
            f.write_all(b"\n")?;
            f.write_all(body)?;
            fs::rename(&staged, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&staged);
        }
    }

    fn header(obj: &Object) -> String {
        format!(
            "{MAGIC} {} {}",
            obj.size,
            obj.version.as_deref().unwrap_or("-").replace('\n', " ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_counts_only_while_the_listing_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ObjectCache::open(dir.path().to_path_buf(), "file:///x\nhost").unwrap();
        let obj = |size: u64, version: &str| Object {
            name: "20261127T030000Z-abcd.json".into(),
            size,
            version: Some(version.into()),
        };
        assert!(cache.get(&obj(5, "e1")).is_none());
        cache.put(&obj(5, "e1"), b"hello");
        assert_eq!(cache.get(&obj(5, "e1")).as_deref(), Some(&b"hello"[..]));
        // Rewritten with the same size: another ETag, so the cache loses.
        assert!(cache.get(&obj(5, "e2")).is_none());
        assert!(cache.get(&obj(6, "e1")).is_none());
        // A body that does not match the listed size is never kept.
        cache.put(&obj(9, "e3"), b"short");
        assert!(cache.get(&obj(9, "e3")).is_none());
        // A planted link is not followed.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "x").unwrap();
        let planted = Object {
            name: "planted.json".into(),
            size: 1,
            version: None,
        };
        std::os::unix::fs::symlink(&target, cache.dir.join("planted.json")).unwrap();
        assert!(cache.get(&planted).is_none());
    }
}
