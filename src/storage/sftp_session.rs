//! litevault's own SFTP session beside OpenDAL's, for two things OpenDAL's SFTP service does not
//! do as a backup needs.
//!
//! The destination's folder: OpenDAL creates its whole root path on every connect, so a folder
//! that is missing on the server (a disk there that is not mounted) would be silently made and
//! filled. This session looks at the folder first, without creating anything; see
//! [`crate::storage::destination::Destination`], which lets no request reach OpenDAL before.
//!
//! Private modes: OpenDAL creates folders and files with the server's defaults (0755 and 0644
//! under sshd's usual umask), so a backup stored there would be readable by every account on the
//! server. This session creates the namespace's folders as 0700 and each object as an empty 0600
//! file before OpenDAL writes into it: a file that exists keeps its mode when it is opened for
//! writing, so no byte of a backup is ever readable by others, not even while it is being
//! written.
//!
//! Every request is bounded by the destination's timeout: OpenDAL's timeouts do not cover this
//! session, and a frozen server must not hold a run forever.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::metadata::Permissions;
use openssh_sftp_client::{Sftp, SftpOptions};

use super::link::Link;
use super::root::Root;
use super::url;
use crate::exit::{Exit, Fault};

/// An SFTP destination's own session, logged in on first use, and what it has made sure of.
pub struct Side {
    cfg: url::Sftp,
    namespace: String,
    /// The destination's folder is there (or was made, `create = true`): OpenDAL, which
    /// creates it on connect, may be asked.
    ready: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    session: Option<Session>,
    /// The namespace folder and its `tmp/` are private.
    private: bool,
}

/// What `check` finds at an SFTP destination, without creating anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookout {
    pub root: Root,
    /// This host's namespace folder is there already.
    pub namespace: bool,
}

impl Side {
    pub fn new(cfg: &url::Sftp, namespace: &str) -> Side {
        Side {
            cfg: cfg.clone(),
            namespace: namespace.to_string(),
            ready: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn session<'s>(&self, link: &Link, state: &'s mut State) -> Result<&'s Session> {
        if state.session.is_none() {
            let timeout = link.timeout;
            state.session = Some(link.call("connecting to", "", || {
                Session::connect(&self.cfg, &self.namespace, timeout)
            })?);
        }
        Ok(state.session.as_ref().expect("connected above"))
    }

    /// The destination's folder is there, or made because the config says `create = true`;
    /// else the same refusal as a `file://` destination's.
    pub fn ready(&self, link: &Link) -> Result<()> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let session = self.session(link, &mut state)?;
        let base = &self.cfg.path;
        match link.call("looking at", base, || session.base())? {
            Found::Folder => {}
            Found::Missing if self.cfg.create => {
                link.call("creating (create = true)", base, || session.create_base())?
            }
            found => return Err(root_error(&link.name, &self.cfg, found)),
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The destination's folder and this host's namespace in it, looked at without creating
    /// anything.
    pub fn lookout(&self, link: &Link) -> Result<Lookout> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let session = self.session(link, &mut state)?;
        let base = &self.cfg.path;
        let root = match link.call("looking at", base, || session.base())? {
            Found::Folder => Root::Exists,
            Found::Missing if self.cfg.create => Root::ToCreate,
            found => return Err(root_error(&link.name, &self.cfg, found)),
        };
        let namespace = root == Root::Exists
            && link.call("looking at", &self.namespace, || session.namespace_exists())?;
        if root == Root::Exists {
            self.ready.store(true, Ordering::Release);
        }
        Ok(Lookout { root, namespace })
    }

    /// Remove the namespace folder and its `tmp/` if they are empty.
    pub fn remove_empty_namespace(&self, link: &Link) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = &state.session {
            let _ = link.call_once("removing", "", async {
                session.remove_empty_namespace().await;
                Ok(())
            });
        }
    }

    /// Create `path` empty and private (0600, in 0700 folders), the namespace made private
    /// first.
    pub fn make_private(&self, link: &Link, path: &str) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.private {
            let session = self.session(link, &mut state)?;
            link.call("making private", "", || session.make_namespace_private())?;
            state.private = true;
        }
        let session = self.session(link, &mut state)?;
        link.call("creating", path, || session.precreate(path))
    }

    /// The session, to be closed by its owner.
    pub fn take_session(&mut self) -> Option<Session> {
        self.state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .session
            .take()
    }
}

/// A destination folder that is missing (and `create = true` is not set) or not a folder: the
/// same refusal as `file_root`'s, on the server.
fn root_error(name: &str, cfg: &url::Sftp, found: Found) -> anyhow::Error {
    let path = &cfg.path;
    let host = &cfg.host;
    let fault = if found == Found::NotAFolder {
        Fault::new(
            Exit::Failure,
            format!("destination {name}: {path} on {host} is not a folder"),
        )
        .hint("point the destination's url at a folder")
    } else {
        Fault::new(
            Exit::Failure,
            format!(
                "destination {name}: its folder {path} does not exist on {host} (litevault does not create a destination's folder: a disk there that is not mounted would fill the server's root file system instead)"
            ),
        )
        .hint(format!(
            "mount the disk or share on {host} if that is where it lives; else create the folder there (ssh -p {port} {user}@{host} mkdir -p {path}), or set create = true in this [[destination]] to let litevault make it",
            port = cfg.port,
            user = cfg.user,
        ))
    };
    anyhow::Error::new(fault)
}

pub struct Session {
    sftp: Sftp,
    /// The destination's folder, absolute on the server (the URL's path).
    base: PathBuf,
    /// The namespace folder in it.
    root: PathBuf,
    timeout: Duration,
}

/// What is at the destination's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Folder,
    Missing,
    NotAFolder,
}

fn fail(what: &str, e: impl std::fmt::Display) -> opendal::Error {
    opendal::Error::new(
        opendal::ErrorKind::Unexpected,
        format!("sftp session: {what}: {e}"),
    )
}

/// `fut`, or a timeout error after `limit`. `what` goes into the message: "ssh error" makes a
/// login that never answered one more connection to retry (see `link`).
async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = opendal::Result<T>>,
) -> opendal::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(outcome) => outcome,
        Err(_) => Err(fail(
            what,
            format!("no answer within {} (timeout)", crate::ui::duration(limit)),
        )),
    }
}

impl Session {
    /// Log in as OpenDAL does (the system `ssh`, the same key and host-key policy). Creates
    /// nothing on the server.
    pub async fn connect(
        cfg: &url::Sftp,
        namespace: &str,
        timeout: Duration,
    ) -> opendal::Result<Session> {
        bounded(timeout, "ssh error", async {
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
            let session = builder.connect(&cfg.host).await.map_err(|e| {
                // ssh's own connect timeout is a timeout too, counted as one (see `link`).
                let text = e.to_string();
                if text.contains("timed out") {
                    fail("ssh error", format!("{text} (timeout)"))
                } else {
                    fail("ssh error", text)
                }
            })?;
            let sftp = Sftp::from_session(session, SftpOptions::default())
                .await
                .map_err(|e| fail("starting the sftp subsystem", e))?;
            let base = PathBuf::from(&cfg.path);
            let root = base.join(namespace);
            Ok(Session {
                sftp,
                base,
                root,
                timeout,
            })
        })
        .await
    }

    /// What is at the destination's folder, looked at without creating anything.
    pub async fn base(&self) -> opendal::Result<Found> {
        self.look(&self.base).await
    }

    /// Whether the namespace folder is there.
    pub async fn namespace_exists(&self) -> opendal::Result<bool> {
        Ok(self.look(&self.root).await? != Found::Missing)
    }

    async fn look(&self, path: &Path) -> opendal::Result<Found> {
        let what = format!("looking at {}", path.display());
        bounded(self.timeout, &what, async {
            match self.sftp.fs().metadata(path).await {
                Ok(meta) if meta.file_type().is_some_and(|t| t.is_dir()) => Ok(Found::Folder),
                Ok(_) => Ok(Found::NotAFolder),
                Err(openssh_sftp_client::Error::SftpError(SftpErrorKind::NoSuchFile, _)) => {
                    Ok(Found::Missing)
                }
                Err(e) => Err(fail(&what, e)),
            }
        })
        .await
    }

    /// Create the destination's folder (`create = true`), private like everything litevault
    /// makes there.
    pub async fn create_base(&self) -> opendal::Result<()> {
        bounded(self.timeout, "creating the destination's folder", async {
            self.private_dir(&self.base).await
        })
        .await
    }

    /// Make the namespace folder and its `tmp/` private, creating what is missing as 0700.
    pub async fn make_namespace_private(&self) -> opendal::Result<()> {
        bounded(self.timeout, "making the namespace private", async {
            self.private_dir(&self.root).await?;
            self.private_dir(&self.root.join("tmp")).await
        })
        .await
    }

    /// Remove the namespace folder and its `tmp/` if they are empty (`check` made them).
    pub async fn remove_empty_namespace(&self) {
        let _ = bounded(self.timeout, "removing the namespace", async {
            let mut fs = self.sftp.fs();
            let _ = fs.remove_dir(self.root.join("tmp")).await;
            let _ = fs.remove_dir(&self.root).await;
            Ok(())
        })
        .await;
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
        bounded(
            self.timeout,
            &format!("creating {}", full.display()),
            async {
                if let Some(parent) = full.parent() {
                    if parent != self.root {
                        self.private_dir(parent).await?;
                    }
                }
                let mut file = self
                    .sftp
                    .options()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&full)
                    .await
                    .map_err(|e| fail(&format!("creating {}", full.display()), e))?;
                file.set_permissions(Permissions::from(0o600))
                    .await
                    .map_err(|e| fail(&format!("making {} private", full.display()), e))?;
                file.close()
                    .await
                    .map_err(|e| fail(&format!("closing {}", full.display()), e))
            },
        )
        .await
    }

    pub async fn close(self) {
        let _ = self.sftp.close().await;
    }
}
