//! `litevault check [--role ROLE]`: the config is valid, the keys load, the sources can be read
//! as a backup reads them, and each destination does what this host needs of it. Without a role,
//! everything: write, read back, list, delete. With one, what that role needs and nothing else,
//! plus warnings where the host holds more power than its role should (a backup host that can
//! delete, or that holds an identity).
//!
//! `check` creates nothing but its probe object: not a destination's folder, not `state_dir`.

mod bucket;

use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::cli::{CheckArgs, Role};
use crate::commands::report::{self, CommandReport};
use crate::config::{Settings, Source, SourceKind};
use crate::exit::Exit;
use crate::journal::Outcome;
use crate::storage::destination::{file_root, Root};
use crate::storage::url::Location;
use crate::storage::Destination;
use crate::ui::{Escaped, Ui};

#[derive(Debug, Serialize)]
pub struct Report {
    pub config: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub keys: Probe,
    pub state_dir: Probe,
    /// Each source opened as a backup opens it (not with `--role restore`: the sources are the
    /// backup host's).
    pub sources: Vec<Probe>,
    pub destinations: Vec<Probe>,
    /// What each S3 destination's bucket keeps: versions, and for how long they are locked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<bucket::BucketReport>,
    /// More power than the role needs, or less safety than it should have.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Probe {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub seconds: f64,
    /// A source whose path is not there: the config names the wrong file (exit 2).
    #[serde(skip)]
    pub missing: bool,
}

impl CommandReport for Report {
    /// 2 when a source named in the config does not exist (a mistyped path is a config error);
    /// else 1 when any probe failed.
    fn exit(&self) -> Exit {
        let probes = std::iter::once(&self.keys)
            .chain(std::iter::once(&self.state_dir))
            .chain(&self.sources)
            .chain(&self.destinations);
        Exit::worst(probes.map(|p| match (p.missing, p.ok) {
            (true, _) => Exit::Usage,
            (false, true) => Exit::Success,
            (false, false) => Exit::Failure,
        }))
    }

    fn outcome(&self) -> Outcome {
        let errors = std::iter::once(&self.keys)
            .chain(&self.destinations)
            .filter(|p| !p.ok)
            .map(|p| format!("{}: {}", p.name, p.detail))
            .collect();
        Outcome {
            destinations: Some(json!(self
                .destinations
                .iter()
                .map(|p| json!({"name": p.name, "ok": p.ok}))
                .collect::<Vec<_>>())),
            error: report::errors(errors),
            ..report::outcome(self.exit())
        }
    }

    fn render(&self, ui: &Ui) -> Result<()> {
        let report = self;
        ui.json(report)?;
        for w in &report.warnings {
            ui.warn(w);
        }
        let mut lines = vec![format!("ok   config {}", report.config)];
        let probes = std::iter::once(&report.keys)
            .chain(std::iter::once(&report.state_dir))
            .chain(&report.sources)
            .chain(&report.destinations);
        for p in probes {
            if p.ok {
                lines.push(format!("ok   {}: {}", p.name, Escaped(&p.detail)));
            } else {
                ui.error(&format!("{}: {}", p.name, Escaped(&p.detail)));
            }
        }
        for b in &report.buckets {
            lines.push(format!("ok   bucket of {}: {}", b.destination, b.summary));
            for note in &b.notes {
                lines.push(format!("note bucket of {}: {}", b.destination, note));
            }
        }
        ui.say_all(&lines)?;
        Ok(())
    }
}

/// What `check` looks at, from its flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these destinations [all when empty].
    pub dest: Vec<String>,
    /// What this host's role needs, and nothing else [everything].
    pub role: Option<Role>,
}

impl From<&CheckArgs> for Options {
    fn from(args: &CheckArgs) -> Self {
        Options {
            dest: args.dest.clone(),
            role: args.role,
        }
    }
}

pub fn run(settings: &Settings, args: &Options) -> Result<Report> {
    // A [trust] that cannot be used is the config's fault (exit 2), not one destination's.
    crate::trust::Verifier::load(
        &settings.trust.signers,
        settings.trust.allowed_signers_file.as_deref(),
    )?;
    let mut warnings = Vec::new();
    let keys = timed("keys", || keys(settings, args.role, &mut warnings));
    let state_dir = timed("state_dir", || state_dir(settings));
    let sources = match args.role {
        Some(Role::Restore) | Some(Role::Maintenance) => Vec::new(),
        _ => settings
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| source(s, i))
            .collect(),
    };
    let mut destinations = Vec::new();
    let mut buckets = Vec::new();
    for cfg in settings.select_destinations(&args.dest)? {
        destinations.push(timed(&cfg.name, || {
            // A missing file:// folder is not made here, even with create = true.
            let mut made = None;
            if let Location::File { root, create } = &cfg.location {
                if file_root(&cfg.name, root, *create)? == Root::ToCreate {
                    return Ok(format!(
                        "file://{}: the folder does not exist yet; the first backup creates it (create = true)",
                        root.display()
                    ));
                }
                let namespace = root.join(&settings.name);
                if !namespace.exists() {
                    made = Some(namespace);
                }
            }
            let dest = super::open_destination(settings, cfg)?;
            // Nor is a missing sftp:// folder, which OpenDAL would make on connect.
            let mut made_on_server = false;
            if let Some(found) = dest.sftp_lookout()? {
                if found.root == Root::ToCreate {
                    return Ok(format!(
                        "{}: the folder does not exist yet; the first backup creates it (create = true)",
                        dest.display
                    ));
                }
                made_on_server = !found.namespace;
            }
            let outcome = match args.role {
                None | Some(Role::Maintenance) => probe(&dest),
                Some(Role::Backup) => probe_backup(&dest, &mut warnings),
                Some(Role::Restore) => probe_restore(settings, &dest, &mut warnings),
            };
            // What the bucket keeps matters to the hosts that write and delete, not to restore.
            if args.role != Some(Role::Restore) {
                if let Ok(Some(b)) = dest.bucket() {
                    buckets.push(bucket::report(settings, cfg, &b, &mut warnings));
                }
            }
            // The namespace folder (and its tmp/) that opening it made: gone again if empty.
            if let Some(namespace) = made {
                let _ = std::fs::remove_dir(namespace.join(crate::storage::destination::TMP_DIR));
                let _ = std::fs::remove_dir(&namespace);
            }
            if made_on_server {
                dest.sftp_remove_empty_namespace();
            }
            outcome
        }));
    }
    Ok(Report {
        config: settings.config_path.display().to_string(),
        role: args.role,
        keys,
        state_dir,
        sources,
        destinations,
        buckets,
        warnings,
    })
}

/// `state_dir` as the next run would find it; a missing one is fine (the first run that records
/// makes it) and is not made here.
fn state_dir(settings: &Settings) -> Result<String> {
    let path = &settings.state_dir;
    if !path.exists() {
        return Ok(format!(
            "{} does not exist yet; the first backup (or any command that records a run) creates it, private (0700)",
            path.display()
        ));
    }
    crate::state::StateDir::open(path)?;
    Ok(format!("{} is private to this user", path.display()))
}

/// One source, read as a backup reads it: a database opened and its read transaction begun
/// (then rolled back), a file opened, a folder walked and each file in it opened.
fn source(s: &Source, index: usize) -> Probe {
    let label = format!("source {}", s.name);
    let missing = matches!(
        std::fs::symlink_metadata(&s.path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    );
    let mut probe = timed(&label, || {
        if missing {
            return Err(anyhow::Error::new(
                crate::exit::config(format!("{} does not exist", s.path.display()))
                .hint("check source.path in the config (a typo, or a service that keeps its data elsewhere)"),
            ));
        }
        let found = crate::source::discover::of_source(s, index)?;
        if found.databases.iter().any(|d| d.path != s.name) {
            return probe_found(s, &found);
        }
        match s.kind {
            SourceKind::Sqlite => {
                let info = crate::source::sqlite::probe(&s.path, &s.name).map_err(|e| {
                    let hint = crate::exit::hint(&e).is_none().then_some(
                        "source.path must name the SQLite database file itself (for a plain file, kind = \"file\")",
                    );
                    let e = e.context(s.path.display().to_string());
                    match hint {
                        Some(h) => anyhow::Error::new(
                            crate::exit::Fault::new(Exit::Failure, format!("{e:#}")).hint(h),
                        ),
                        None => e,
                    }
                })?;
                Ok(format!(
                    "{}: SQLite, journal_mode {}, page_size {}, {} pages; readable as a backup reads it{}",
                    s.path.display(),
                    info.journal_mode,
                    info.page_size,
                    info.page_count,
                    if info.journal_mode.eq_ignore_ascii_case("wal") {
                        " (its -shm can be used)"
                    } else {
                        ""
                    }
                ))
            }
            SourceKind::File | SourceKind::Dir => {
                let (items, _dirs) = crate::source::files::collect(
                    &s.name,
                    &s.path,
                    s.kind == SourceKind::Dir,
                    &mut Default::default(),
                )?;
                for item in &items {
                    std::fs::File::open(&item.fs_path).map_err(|e| {
                        anyhow::Error::new(
                            crate::exit::Fault::new(
                                Exit::Failure,
                                format!(
                                    "source {}: cannot read {}: {e}",
                                    s.name,
                                    item.fs_path.display()
                                ),
                            )
                            .hint("run litevault as a user that can read it (root, or the service's own user)"),
                        )
                    })?;
                }
                Ok(match s.kind {
                    SourceKind::Dir => {
                        format!("{}: {} readable file(s)", s.path.display(), items.len())
                    }
                    _ => format!("{}: readable", s.path.display()),
                })
            }
        }
    });
    // The probe is named after the source already.
    if let Some(rest) = probe.detail.strip_prefix(&format!("{label}: ")) {
        probe.detail = rest.to_string();
    }
    probe.missing = missing;
    probe
}

/// A source that holds several databases (found below a folder): each opened as a backup opens
/// it, the first that cannot be is the probe's error.
fn probe_found(s: &Source, found: &crate::source::discover::Inventory<'_>) -> Result<String> {
    for db in &found.databases {
        crate::source::sqlite::probe(&db.fs_path, &db.path)
            .with_context(|| format!("database {} ({})", db.path, db.fs_path.display()))?;
    }
    for item in found.plain.iter().flat_map(|p| &p.files) {
        std::fs::File::open(&item.fs_path).with_context(|| {
            format!("source {}: cannot read {}", s.name, item.fs_path.display())
        })?;
    }
    let files: usize = found.plain.iter().map(|p| p.files.len()).sum();
    let mut detail = format!(
        "{}: {} readable as a backup reads them",
        s.path.display(),
        crate::ui::plural(found.databases.len(), "SQLite database")
    );
    if files > 0 {
        detail.push_str(&format!(", and {}", crate::ui::plural(files, "other file")));
    }
    for w in &found.warnings {
        detail.push_str(&format!("; {w}"));
    }
    Ok(detail)
}

fn timed(name: &str, f: impl FnOnce() -> Result<String>) -> Probe {
    let start = Instant::now();
    let (ok, detail) = match f() {
        Ok(detail) => (true, detail),
        Err(e) => (false, crate::exit::describe(&e)),
    };
    Probe {
        name: name.to_string(),
        ok,
        detail,
        seconds: start.elapsed().as_secs_f64(),
        missing: false,
    }
}

const NO_SIGNING: &str =
    "no [signing]: restore hosts cannot tell this host's backups from planted ones; add a signing key";

fn keys(settings: &Settings, role: Option<Role>, warnings: &mut Vec<String>) -> Result<String> {
    let enc = settings.encryption.as_ref();
    let signs = match &settings.signing {
        Some(s) => {
            crate::trust::Signer::load(&s.key_file)?;
            "; the signing key loads"
        }
        None => "",
    };
    match role {
        Some(Role::Backup) => {
            // `none = true` said plain backups are meant, as it does for `backup` itself; the
            // host's other safety (signing) is still looked at.
            if enc.is_none() && settings.unencrypted_by_choice {
                if settings.signing.is_none() {
                    warnings.push(NO_SIGNING.into());
                }
                return Ok(format!(
                    "unencrypted on purpose ([encryption] none = true){signs}"
                ));
            }
            let Some(enc) = enc else {
                warnings.push("no [encryption]: this host stores its backups unencrypted".into());
                return Ok(format!("no [encryption]{signs}"));
            };
            crate::crypto::Sealer::load(enc)?;
            if let Some(id) = &enc.identity_file {
                warnings.push(format!(
                    "this backup host is given an identity ([encryption] identity_file = {}): restore keys do not belong on the server, where an intruder would find them; keep only the recipients here",
                    id.display()
                ));
            }
            if enc.passphrase_file.is_some() {
                warnings.push("this backup host holds the passphrase that opens every backup ([encryption] passphrase_file): use age recipients instead, so the server holds no key that decrypts".into());
            }
            warnings.extend(stray_identities(settings));
            if settings.signing.is_none() {
                warnings.push(NO_SIGNING.into());
            }
            Ok(format!("recipients load{signs}"))
        }
        Some(Role::Restore) => {
            let Some(enc) = enc else {
                return Ok("no [encryption]: backups are read unencrypted".into());
            };
            crate::crypto::Opener::load(enc)?;
            if settings.trust.signers.is_empty() && settings.trust.allowed_signers_file.is_none() {
                warnings.push("no [trust]: this host would restore a backup planted by anyone who can write to the destination; list the backup hosts' signing keys".into());
            }
            Ok("the identity loads".into())
        }
        None | Some(Role::Maintenance) => {
            let Some(enc) = enc else {
                return Ok("no [encryption]: backups are stored unencrypted".into());
            };
            crate::crypto::Sealer::load(enc)?;
            if enc.identity_file.is_some() || enc.passphrase_file.is_some() {
                crate::crypto::Opener::load(enc)?;
                Ok(format!("recipients and identity load{signs}"))
            } else {
                Ok(format!(
                    "recipients load; no identity here (restore and verify need one){signs}"
                ))
            }
        }
    }
}

/// Age identities lying in the config's folder: the machine gives the backup host a restore key
/// even when the config does not name it.
fn stray_identities(settings: &Settings) -> Vec<String> {
    let Some(folder) = settings.config_path.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        // The configured identity_file is warned about already, once.
        .filter(|e| {
            settings
                .encryption
                .as_ref()
                .and_then(|enc| enc.identity_file.as_ref())
                .is_none_or(|id| *id != e.path())
        })
        .filter(|e| e.metadata().is_ok_and(|m| m.len() < 64 << 10))
        .filter(|e| {
            std::fs::read_to_string(e.path())
                .is_ok_and(|t| t.contains("AGE-SECRET-KEY-1") || t.contains("AGE-PLUGIN-"))
        })
        .map(|e| {
            format!(
                "{} holds an age identity on this backup host: restore keys do not belong on the server; move it to the hosts that restore",
                e.path().display()
            )
        })
        .collect()
}

/// List, write, read back, list, delete and confirm the deletion of a small probe object.
fn probe(dest: &Destination) -> Result<String> {
    let name = probe_name();
    let body = probe_body();
    // List first, as a backup does: a missing bucket must not be created by a lenient server.
    dest.list("")?;
    dest.put_new(&name, body.clone())?;
    let outcome = read_back(dest, &name, &body);
    dest.delete(&name)?;
    outcome?;
    if dest.size(&name)?.is_some() {
        bail!("the probe is still there after deleting it");
    }
    Ok(format!(
        "{}: write, read, list and delete work",
        dest.display
    ))
}

/// The backup role: write (through tmp/ and a rename where the backend has one), read back and
/// list a probe; delete is not needed, and being able to is a warning.
fn probe_backup(dest: &Destination, warnings: &mut Vec<String>) -> Result<String> {
    let name = probe_name();
    let body = probe_body();
    dest.list("")?;
    dest.put_new(&name, body.clone())?;
    read_back(dest, &name, &body)?;
    let can_delete = dest.delete(&name).is_ok() && dest.size(&name).ok() == Some(None);
    if can_delete {
        warnings.push(format!(
            "destination {}: this credential can delete: an intruder on this host could erase its backups; give the backup host a credential that can add but not delete (see Roles in the README)",
            dest.name
        ));
        Ok(format!(
            "{}: write, read and list work; delete works too (more than the backup role needs)",
            dest.display
        ))
    } else {
        Ok(format!(
            "{}: write, read and list work; delete is refused, as it should be for the backup role (the probe {name} is left for the maintenance role's prune)",
            dest.display
        ))
    }
}

/// The restore role: list, open the newest backup's header with the identity, and (with
/// [trust]) see it verified by a trusted signer. Writes nothing.
fn probe_restore(
    settings: &Settings,
    dest: &Destination,
    warnings: &mut Vec<String>,
) -> Result<String> {
    let (newest, passed) = crate::catalog::latest(dest)?;
    warnings.extend(passed.iter().map(|p| p.to_string()));
    let Some(backup) = newest else {
        return Ok(format!("{}: readable; no backup to open yet", dest.display));
    };
    let signed = match &backup.trust {
        crate::trust::Verdict::Trusted(fp) => format!(", signed by trusted key {fp}"),
        _ => String::new(),
    };
    if backup.sidecar.archive.encryption == "none" {
        return Ok(format!(
            "{}: the newest backup {} is readable (unencrypted){signed}",
            dest.display, backup.id
        ));
    }
    let opener = super::opener_for(settings, &backup)?.expect("an encrypted backup");
    let stored = dest.reader(&backup.sidecar.archive.object)?;
    let mut plain = opener.open(stored)?;
    let mut first = [0u8; 512];
    std::io::Read::read_exact(&mut plain, &mut first).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "reading the first bytes of backup {} with the identity",
            backup.id
        ))
    })?;
    Ok(format!(
        "{}: the identity opens the newest backup {}{signed}",
        dest.display, backup.id
    ))
}

fn probe_name() -> String {
    format!("check-{}.probe", crate::state::nonce())
}

fn probe_body() -> Vec<u8> {
    (0..4096u32).flat_map(|i| i.to_le_bytes()).collect()
}

fn read_back(dest: &Destination, name: &str, body: &[u8]) -> Result<()> {
    if dest.read_small(name, 1 << 20)? != body {
        bail!("the probe read back differs from what was written");
    }
    if !dest.list("")?.iter().any(|o| o.name == name) {
        bail!("the probe was written but is not listed");
    }
    Ok(())
}
