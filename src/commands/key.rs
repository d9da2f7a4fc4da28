//! `litevault key generate FILE [--signing]`: make the keys a config names, without needing
//! `age-keygen` or `ssh-keygen` on the host. The secret goes to a new 0600 file (an existing
//! file is never overwritten); the public half is printed, to paste where it belongs.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::KeyGenerateArgs;
use crate::commands::report::CommandReport;
use crate::trust::Signer;
use crate::ui::Ui;

#[derive(Debug, Serialize)]
pub struct Report {
    /// "age" or "ssh-ed25519".
    pub kind: String,
    pub file: PathBuf,
    /// The recipient (`age1...`) or the signer's public line (`ssh-ed25519 AAAA... litevault`).
    pub public: String,
    /// Where the public line was also written (signing keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_file: Option<PathBuf>,
}

impl CommandReport for Report {
    fn render(&self, ui: &Ui) -> Result<()> {
        ui.json(self)?;
        ui.result(&self.public);
        ui.remark(&format!(
            "wrote the {} key to {}; {}",
            self.kind,
            self.file.display(),
            if self.kind == "age" {
                "put the line above in [encryption] recipients, and keep the file where you restore"
            } else {
                "set [signing] key_file to it, and put the line above in [trust] signers where you restore"
            }
        ));
        Ok(())
    }
}

/// Which key `key generate` makes, and where, from its flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the secret key goes (a new file).
    pub file: PathBuf,
    /// An SSH signing key instead of an age identity.
    pub signing: bool,
}

impl From<&KeyGenerateArgs> for Options {
    fn from(args: &KeyGenerateArgs) -> Self {
        Options {
            file: args.file.clone(),
            signing: args.signing,
        }
    }
}

pub fn generate(args: &Options) -> Result<Report> {
    if args.signing {
        let signer = Signer::generate()?;
        let public = signer.public_line();
        write_new(&args.file, signer.to_openssh()?.as_bytes(), 0o600)?;
        let public_file = PathBuf::from(format!("{}.pub", args.file.display()));
        write_new(&public_file, format!("{public}\n").as_bytes(), 0o644)?;
        return Ok(Report {
            kind: "ssh-ed25519".into(),
            file: args.file.clone(),
            public,
            public_file: Some(public_file),
        });
    }
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        identity.to_string().expose_secret()
    );
    write_new(&args.file, text.as_bytes(), 0o600)?;
    Ok(Report {
        kind: "age".into(),
        file: args.file.clone(),
        public: recipient,
        public_file: None,
    })
}

/// Create `path` with `mode`, refusing a file (or a link) already there: a key is never
/// replaced by accident.
fn write_new(path: &Path, body: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::Error::new(
                    crate::exit::config(format!(
                        "{} already exists; litevault never overwrites a key",
                        path.display()
                    ))
                    .hint("choose another file name, or move the old key away first"),
                )
            } else if e.kind() == std::io::ErrorKind::NotFound {
                let folder = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                anyhow::Error::new(
                    crate::exit::Fault::new(
                        crate::exit::Exit::Failure,
                        format!(
                            "cannot create {}: the folder {} does not exist",
                            path.display(),
                            folder.display()
                        ),
                    )
                    .hint(format!(
                        "create the folder first (mkdir -p -m 700 {}), or name a file in an existing folder",
                        folder.display()
                    )),
                )
            } else {
                anyhow::Error::new(e).context(format!("creating {}", path.display()))
            }
        })?;
    file.write_all(body)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
