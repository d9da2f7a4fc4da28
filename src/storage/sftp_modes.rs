//! Private modes on SFTP destinations.
//!
//! OpenDAL's SFTP service creates folders and files with the server's defaults (0755 and 0644
//! under sshd's usual umask), so a backup stored there would be readable by every account on the
//! server. This module keeps a small SFTP session of its own, used only to create the
//! namespace's folders as 0700 and each object as an empty 0600 file before OpenDAL writes into
//! it: a file that exists keeps its mode when it is opened for writing, so no byte of a backup
//! is ever readable by others, not even while it is being written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openssh_sftp_client::metadata::Permissions;
use openssh_sftp_client::{Sftp, SftpOptions};

use super::url;

pub struct Modes {
    sftp: Sftp,
    /// The namespace folder, absolute on the server.
    root: PathBuf,
}

fn fail(what: &str, e: impl std::fmt::Display) -> opendal::Error {
    opendal::Error::new(
        opendal::ErrorKind::Unexpected,
        format!("setting private modes over sftp: {what}: {e}"),
    )
}

impl Modes {
    /// Log in (as OpenDAL does: the system `ssh`, the same key and host-key policy) and make the
    /// namespace folder and its `tmp/` private, creating what is missing as 0700.
    pub async fn connect(
        cfg: &url::Sftp,
        namespace: &str,
        timeout: Duration,
    ) -> opendal::Result<Modes> {
        let mut builder = openssh::SessionBuilder::default();
        builder
            .user(cfg.user.clone())
            .port(cfg.port)
            .keyfile(&cfg.key)
            .connect_timeout(timeout)
            .known_hosts_check(if cfg.accept_new_host_key {
                openssh::KnownHosts::Add
            } else {
                openssh::KnownHosts::Strict
            });
        let session = builder
            .connect(&cfg.host)
            .await
            .map_err(|e| fail("ssh error", e))?;
        let sftp = Sftp::from_session(session, SftpOptions::default())
            .await
            .map_err(|e| fail("starting the sftp subsystem", e))?;
        let root = Path::new(&cfg.path).join(namespace);
        let modes = Modes { sftp, root };
        modes.private_dir(&modes.root).await?;
        modes.private_dir(&modes.root.join("tmp")).await?;
        Ok(modes)
    }

    /// Create `dir` as 0700 (its missing parents too). A folder that exists is left alone,
    /// unless it is one litevault names (the namespace, `tmp/`): those are made 0700.
    async fn private_dir(&self, dir: &Path) -> opendal::Result<()> {
        let mut fs = self.sftp.fs();
        let mut current = PathBuf::new();
        for part in dir.components() {
            current.push(part);
            if fs.metadata(&current).await.is_ok() {
                continue;
            }
            let made = fs
                .dir_builder()
                .permissions(Permissions::from(0o700))
                .create(&current)
                .await;
            if let Err(e) = made {
                // Another run may have made it meanwhile.
                if fs.metadata(&current).await.is_err() {
                    return Err(fail(&format!("creating {}", current.display()), e));
                }
            }
        }
        fs.set_permissions(dir, Permissions::from(0o700))
            .await
            .map_err(|e| fail(&format!("making {} private", dir.display()), e))
    }

    /// An empty 0600 file at `path` (relative to the namespace), ready for OpenDAL to fill.
    pub async fn precreate(&self, path: &str) -> opendal::Result<()> {
        let full = self.root.join(path);
        if let Some(parent) = full.parent() {
            if parent != self.root {
                self.private_dir(parent).await?;
            }
        }
        let file = self
            .sftp
            .options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&full)
            .await
            .map_err(|e| fail(&format!("creating {}", full.display()), e))?;
        let mut file = file;
        file.set_permissions(Permissions::from(0o600))
            .await
            .map_err(|e| fail(&format!("making {} private", full.display()), e))?;
        file.close()
            .await
            .map_err(|e| fail(&format!("closing {}", full.display()), e))
    }

    pub async fn close(self) {
        let _ = self.sftp.close().await;
    }
}
