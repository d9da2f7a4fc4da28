//! `litevault show ID|latest`: what a backup holds and where it is, from its sidecar alone.
//!
//! No identity is loaded and no archive is read: the sidecar carries the manifest that the
//! archive must repeat, and each destination's listing says whether the archive is there at the
//! size the sidecar gives. A damaged or untrusted backup is shown all the same, clearly marked,
//! since `show` is how a person looks into one; the exit code (4) is what tells a script.

use std::time::SystemTime;

use anyhow::Result;

use crate::archive::manifest::{DatabaseEntry, Manifest, Stored};
use crate::catalog::{self, Backup, Standing};
use crate::cli::ShowArgs;
use crate::config::Settings;
use crate::storage::Destination;
use crate::trust::Verdict;

mod report;
pub use report::{Archive, Database, File, Holding, Report, Signature, SourceShown, Storage};

/// One destination's copy of the backup, looked at as a restore from there would.
struct Copy<'d> {
    dest: &'d Destination,
    backup: Backup,
    chain: Option<Vec<String>>,
    signed: bool,
}

/// Which backup `show` shows, and where it looks, from its flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// A backup id, or `latest`.
    pub id: String,
    /// Only this destination [all].
    pub dest: Option<String>,
    /// `--as-of`: the destinations as they were then.
    pub as_of: Option<std::time::SystemTime>,
}

impl From<&ShowArgs> for Options {
    fn from(args: &ShowArgs) -> Self {
        Options {
            id: args.id.clone(),
            dest: args.dest.clone(),
            as_of: args.as_of,
        }
    }
}

pub fn run(settings: &Settings, args: &Options) -> Result<Report> {
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let dests = super::open_destinations_as_of(settings, &names, args.as_of)?;
    let (found_on, found, mut notes) = super::find_backup_to_inspect(&dests, &args.id)?;
    let id = found.id.clone();

    let mut holdings = Vec::new();
    let mut copies: Vec<Copy> = Vec::new();
    let mut problems = Vec::new();
    for dest in &dests {
        // Backups missing from the destination are worth knowing whichever one is shown (a
        // view of the past has no present line to judge: no listing for it).
        let now = SystemTime::now();
        let listing = match dest.seen_at() {
            None => catalog::list_at(dest, now).ok(),
            Some(_) => None,
        };
        if let Some(listing) = listing {
            let (line, more) = super::watch_line(settings, dest, &listing.backups, now);
            notes.extend(more);
            notes.extend(
                line.iter()
                    .flat_map(|l| l.findings.iter().map(|f| f.to_string())),
            );
        }
        let (status, detail) = match look(dest, &id) {
            Look::Unreachable(e) => {
                notes.push(format!(
                    "destination {} could not be listed, so whether it holds {id} is unknown: {e}",
                    dest.name
                ));
                ("unreachable", Some(e))
            }
            Look::Absent => ("absent", None),
            Look::Incomplete(o) => {
                notes.push(o.to_string());
                (
                    "incomplete",
                    Some(format!("archive {} has no sidecar", o.object)),
                )
            }
            Look::Unreadable(e) => {
                problems.push(format!(
                    "backup {id} on {}: its sidecar cannot be read: {e}",
                    dest.name
                ));
                (
                    "unreadable",
                    Some(format!("its sidecar cannot be read: {e}")),
                )
            }
            Look::Held(copy) => {
                let b = &copy.backup;
                let state = match &b.standing {
                    Standing::Good => ("ok", None),
                    // A broken chain's message names the backup and the destination already.
                    Standing::BrokenChain(why) => {
                        problems.push(why.clone());
                        ("damaged", Some(why.clone()))
                    }
                    // The clock is a note (below), not a finding about the backup.
                    Standing::FutureDated(_) => ("ok", None),
                    Standing::Damaged(why) => {
                        problems.push(format!("backup {id} on {} is damaged: {why}", dest.name));
                        ("damaged", Some(why.clone()))
                    }
                    Standing::Untrusted(why) => {
                        problems.push(format!(
                            "backup {id} on {} is not trusted: {why}",
                            dest.name
                        ));
                        ("untrusted", Some(why.clone()))
                    }
                    other => {
                        problems.push(format!("backup {id} on {}: {other}", dest.name));
                        (other.label(), Some(other.to_string()))
                    }
                };
                copies.push(*copy);
                state
            }
        };
        holdings.push(Holding {
            destination: dest.name.clone(),
            status,
            detail,
        });
    }

    // The copy a restore would want: whole and trusted where there is one; else the one found.
    let good = |c: &&Copy| c.backup.standing.is_good();
    let shown = match copies.iter().position(|c| good(&c)) {
        Some(i) => copies.swap_remove(i),
        None => match copies.iter().position(|c| c.dest.name == found_on.name) {
            Some(i) => copies.swap_remove(i),
            None => Copy {
                dest: found_on,
                chain: None,
                signed: false,
                backup: found,
            },
        },
    };
    let b = &shown.backup;
    if matches!(b.standing, Standing::FutureDated(_)) {
        notes.push(format!(
            "backup {id} is dated ahead of this host's clock: it does not count as the newest (check both clocks)"
        ));
    }
    let m = &b.sidecar.manifest;
    let a = &b.sidecar.archive;
    if m.host != settings.name && !matches!(b.standing, Standing::Foreign { .. }) {
        notes.push(format!(
            "backup {id} was made by host {:?}, but it is in the folder of {:?} (this config's name)",
            m.host, settings.name
        ));
    }
    Ok(Report {
        id: id.clone(),
        created: m.created.clone(),
        host: m.host.clone(),
        hostname: m.hostname.clone(),
        tool_version: m.tool_version.clone(),
        format_version: m.format_version,
        kind: m.kind.clone(),
        parent: m.parent.clone(),
        full: m.full.clone(),
        chain: shown.chain.clone(),
        tags: m.tags.clone(),
        sequence: b.sidecar.sequence.clone(),
        archive: Archive {
            object: a.object.clone(),
            bytes: a.bytes,
            blake3: a.blake3.clone(),
            compression: a.compression.clone(),
            encryption: a.encryption.clone(),
            recipients: a.recipients.clone(),
        },
        signature: signature(&b.trust, shown.signed),
        shown_from: shown.dest.name.clone(),
        destinations: holdings,
        sources: sources(m),
        files: m
            .files
            .iter()
            .map(|f| File {
                path: f.path.clone(),
                source: f.source.clone(),
                size: f.size,
                mode: format!("{:04o}", f.mode & 0o7777),
                blake3: f.blake3.clone(),
            })
            .collect(),
        databases: m.databases.iter().map(|d| database(m, d)).collect(),
        problems,
        notes,
    })
}

enum Look<'d> {
    Unreachable(String),
    Absent,
    Incomplete(catalog::Orphan),
    Unreadable(String),
    Held(Box<Copy<'d>>),
}

/// What `dest` holds of backup `id`: one listing, the sidecar (from the cache once seen) and,
/// for an incremental, each link of its chain.
fn look<'d>(dest: &'d Destination, id: &str) -> Look<'d> {
    let listed = match catalog::Listed::take(dest) {
        Ok(l) => l,
        Err(e) => return Look::Unreachable(format!("{e:#}")),
    };
    let mut backup = match listed.get(id) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return match listed.archive_of(id) {
                Some(object) => Look::Incomplete(catalog::Orphan {
                    id: id.to_string(),
                    object,
                    destination: dest.name.clone(),
                }),
                None => Look::Absent,
            }
        }
        Err(e) => return Look::Unreadable(format!("{e:#}")),
    };
    let chain = match crate::catalog::chains::resolve_in(&listed, &backup) {
        Ok(links) => Some(links.into_iter().map(|l| l.id).collect()),
        Err(e) => {
            backup.break_chain(format!("{e:#}"));
            None
        }
    };
    Look::Held(Box::new(Copy {
        dest,
        signed: listed.holds(&catalog::signature_name(id)),
        chain,
        backup,
    }))
}

fn signature(trust: &Verdict, signed: bool) -> Signature {
    let (status, key) = match trust {
        Verdict::NotRequired => ("not-checked", None),
        Verdict::Trusted(fp) => ("trusted", Some(fp.clone())),
        Verdict::Unsigned => ("unsigned", None),
        Verdict::UntrustedSigner(fp) => ("untrusted-signer", Some(fp.clone())),
        Verdict::OutsideWindow { fingerprint, .. } => {
            ("outside-validity", Some(fingerprint.clone()))
        }
        Verdict::BadSignature(_) => ("bad-signature", None),
    };
    let detail = match trust {
        Verdict::NotRequired if signed => {
            "signed; not checked, since no [trust] signers are configured here".to_string()
        }
        Verdict::NotRequired => "not signed (no [trust] signers are configured here)".to_string(),
        Verdict::Unsigned => "not signed, and [trust] requires a signature".to_string(),
        other => other.to_string(),
    };
    Signature {
        signed,
        status,
        key,
        detail,
    }
}

fn sources(m: &Manifest) -> Vec<SourceShown> {
    m.sources
        .iter()
        .map(|s| {
            let files = m.files.iter().filter(|f| f.source == s.name);
            SourceShown {
                name: s.name.clone(),
                kind: s.kind,
                origin: s.origin.clone(),
                files: files.clone().count(),
                bytes: files.map(|f| f.size).sum(),
            }
        })
        .collect()
}

fn database(m: &Manifest, d: &DatabaseEntry) -> Database {
    let stored = match &d.stored {
        None | Some(Stored::Whole) => Storage {
            form: "whole",
            wal: None,
            frames: None,
            wal_bytes: None,
            parent_blake3: None,
        },
        Some(Stored::Wal {
            wal,
            frames,
            parent_blake3,
        }) => Storage {
            form: "wal",
            wal_bytes: m.file(wal).map(|f| f.size),
            wal: Some(wal.clone()),
            frames: Some(*frames),
            parent_blake3: Some(parent_blake3.clone()),
        },
        Some(Stored::Unchanged { parent_blake3 }) => Storage {
            form: "unchanged",
            wal: None,
            frames: None,
            wal_bytes: None,
            parent_blake3: Some(parent_blake3.clone()),
        },
    };
    Database {
        source: d.source.clone(),
        path: d.path.clone(),
        page_size: d.page_size,
        page_count: d.page_count,
        bytes: u64::from(d.page_size) * d.page_count,
        sqlite_version: d.sqlite_version.clone(),
        journal_mode: d.journal_mode.clone(),
        user_version: d.user_version,
        check: d.check,
        row_counts: d.row_counts.clone(),
        blake3: m.database_blake3(d),
        stored,
    }
}
