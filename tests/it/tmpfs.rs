//! Small tmpfs mounts for the full-disk cases. The tests run as root (CI does); a mount that is
//! refused fails the test and says why, it is never skipped.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. "2m") at `path`, created if missing.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (the full-disk tests need root, as on CI): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fill the filesystem to the last byte.
    pub fn fill(&self) {
        let mut f = fs::File::create(self.path.join(".filler")).unwrap();
        let block = vec![0xa5u8; 64 << 10];
        loop {
            if f.write_all(&block).is_err() {
                break;
            }
        }
        // Byte by byte for the tail of the last block.
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
