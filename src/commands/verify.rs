//! `litevault verify`: prove that backups are intact and restorable, by restoring them into a
//! private scratch folder, checking every hash and running `integrity_check` on each database.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use crate::catalog::{self, Backup, Standing};
use crate::cli::VerifyArgs;
use crate::commands::report::{self, CommandReport};
use crate::config::Settings;
use crate::exit::Exit;
use crate::journal::Outcome;
use crate::progress::Progress;
use crate::state::StateDir;
use crate::storage::requests::Requests;
use crate::storage::Destination;
use crate::ui::{plural, Escaped, Ui};

mod sample;

#[derive(Debug, Serialize)]
pub struct Report {
    pub results: Vec<BackupResult>,
    /// What `latest` passed over, and other remarks for stderr.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The bytes the intact backups restore to: with the run's time, how fast this host
    /// restores (`restore --dry-run`'s estimate).
    #[serde(skip)]
    pub bytes: u64,
    /// With --sample: what each destination's sample read, and its coverage after it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<sample::Sampled>,
    /// The requests this run made, by destination (S3 only: see `storage::requests`); the
    /// runner fills them in.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Requests>,
}

#[derive(Debug, Serialize)]
pub struct DrillResult {
    pub database: String,
    pub integrity_check: String,
    pub foreign_key_violations: u64,
    /// Tables whose row count differs from the manifest's ("table: restored vs manifest").
    pub row_count_mismatches: Vec<String>,
    pub tables: usize,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct BackupResult {
    pub id: String,
    pub destination: String,
    pub ok: bool,
    pub databases_checked: Vec<String>,
    /// With --restore-test: what was checked in each database.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drill: Vec<DrillResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Encrypted to none of this host's identities: not checked, and not known to be damaged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cannot_open: bool,
    /// Only the stored bytes were checked (size and BLAKE3 against the signed sidecar): this
    /// host has no identity, so the content was not decrypted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stored_only: bool,
    #[serde(skip)]
    pub exit: Exit,
}

impl CommandReport for Report {
    fn set_requests(&mut self, requests: BTreeMap<String, Requests>) {
        self.requests = requests;
    }

    /// The worst outcome decides: integrity beats other failures.
    fn exit(&self) -> Exit {
        Exit::worst(self.results.iter().filter(|r| !r.ok).map(|r| r.exit))
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            bytes: (self.bytes > 0).then_some(self.bytes),
            backup_id: self.results.first().map(|r| r.id.clone()),
            // A sample's summary per destination has no "ok": the hooks' lists of destinations
            // that passed and failed count the results only.
            destinations: Some(json!(self
                .results
                .iter()
                .map(|r| json!({"name": r.destination, "ok": r.ok, "id": r.id}))
                .chain(self.samples.iter().map(sample::Sampled::summary))
                .collect::<Vec<_>>())),
            error: report::errors(
                self.results
                    .iter()
                    .filter_map(|r| r.error.clone())
                    .collect(),
            ),
            ..report::outcome(self.exit())
        }
    }

    fn render(&self, ui: &Ui) -> Result<()> {
        ui.json(self)?;
        for n in &self.notes {
            ui.warn(n);
        }
        for r in &self.results {
            if r.ok && r.stored_only {
                ui.say(&format!(
                    "ok {} on {}: the stored bytes match the signed sidecar (size and BLAKE3); content not decrypted",
                    Escaped(&r.id),
                    Escaped(&r.destination),
                ));
            } else if r.ok {
                ui.say(&format!(
                    "ok {} on {}: every hash matches, {} passed integrity_check",
                    Escaped(&r.id),
                    Escaped(&r.destination),
                    plural(r.databases_checked.len(), "database")
                ));
            } else if r.cannot_open {
                // Not a finding about the backup: this host holds none of its keys.
                ui.error(&format!(
                    "{} on {} {}",
                    Escaped(&r.id),
                    Escaped(&r.destination),
                    Escaped(r.error.as_deref().unwrap_or("cannot be opened"))
                ));
            } else {
                ui.error(&format!(
                    "FAILED {} on {}: {}",
                    Escaped(&r.id),
                    Escaped(&r.destination),
                    Escaped(r.error.as_deref().unwrap_or("unknown error"))
                ));
            }
            for d in &r.drill {
                ui.say(&format!(
                    "  {} {}: integrity_check {}, {} foreign key violation(s), row counts of {} {}",
                    if d.ok { "ok    " } else { "FAILED" },
                    Escaped(&d.database),
                    Escaped(&d.integrity_check),
                    d.foreign_key_violations,
                    plural(d.tables, "table"),
                    if d.row_count_mismatches.is_empty() {
                        "match the manifest".to_string()
                    } else {
                        format!("differ: {}", Escaped(&d.row_count_mismatches.join(", ")))
                    }
                ));
            }
        }
        for s in &self.samples {
            ui.say(&s.line());
            if s.depth == crate::verified::Depth::Stored.as_str() {
                // Said with the results, not as a warning: a backup host runs this every
                // night under cron, where a warning would mail the same words each day.
                ui.say(&format!(
                    "on {}: content was NOT decrypted: this host has no identity (encryption.identity_file), so only the stored bytes' size and BLAKE3 were checked against the signed sidecars; verify on a host that holds the identity to prove the content",
                    Escaped(&s.destination)
                ));
            }
        }
        Ok(())
    }
}

/// The drill's extra checks on each restored database: foreign keys, and row counts against the
/// manifest (integrity_check and every file's BLAKE3 have passed already).
fn restore_test(backup: &Backup, dir: &std::path::Path) -> Result<Vec<DrillResult>> {
    let mut out = Vec::new();
    for db in &backup.sidecar.manifest.databases {
        let path = dir.join(&db.path);
        let conn = rusqlite::Connection::open(&path)?;
        let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
        let violations = stmt.query_map([], |_| Ok(()))?.count() as u64;
        let counts = crate::source::sqlite::row_counts(&conn)?;
        let mut mismatches = Vec::new();
        for (table, want) in &db.row_counts {
            let got = counts.get(table).copied();
            if got != Some(*want) {
                mismatches.push(format!(
                    "{table}: {} vs {want}",
                    got.map_or("missing".to_string(), |g| g.to_string())
                ));
            }
        }
        out.push(DrillResult {
            database: db.path.clone(),
            integrity_check: "ok".into(),
            foreign_key_violations: violations,
            ok: violations == 0 && mismatches.is_empty(),
            row_count_mismatches: mismatches,
            tables: counts.len(),
        });
    }
    Ok(out)
}

/// What `verify` verifies, from its flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A backup id or `latest` [`latest` when neither this nor `all`].
    pub id: Option<String>,
    /// Every backup.
    pub all: bool,
    /// Only this destination [all].
    pub dest: Option<String>,
    /// The restore drill: foreign keys and row counts too, reported per database.
    pub restore_test: bool,
    /// `--as-of`: the destinations as they were then.
    pub as_of: Option<std::time::SystemTime>,
    /// `--sample`: a rotating share of each destination, chosen from the verification record.
    pub sample: Option<crate::cli::Sample>,
}

impl From<&VerifyArgs> for Options {
    fn from(args: &VerifyArgs) -> Self {
        Options {
            id: args.id.clone(),
            all: args.all,
            dest: args.dest.clone(),
            restore_test: args.restore_test,
            as_of: args.as_of,
            sample: args.sample,
        }
    }
}

pub fn run(settings: &Settings, args: &Options, progress: &dyn Progress) -> Result<Report> {
    let state = StateDir::open(&settings.state_dir)?;
    state.clean_scratch();
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let dests = super::open_destinations_as_of(settings, &names, args.as_of)?;

    let mut targets: Vec<(&Destination, Backup)> = Vec::new();
    let mut results = Vec::new();
    let mut bytes = 0;
    let mut notes = Vec::new();
    if args.sample.is_some() {
        return sample::run(settings, &state, &dests, args, progress);
    }
    if args.all {
        let holder = state.lock_holder_since();
        for dest in &dests {
            let (t, r, n) = survey(settings, dest, holder, std::time::SystemTime::now())?;
            targets.extend(t);
            results.extend(r);
            notes.extend(n);
        }
    } else {
        let id = args.id.as_deref().unwrap_or("latest");
        // A named backup is verified wherever it is stored, not just on the first destination.
        let mut first_error = None;
        for dest in &dests {
            match super::find_backup_noted(std::slice::from_ref(dest), id) {
                Ok((d, b, n)) => {
                    targets.push((d, b));
                    notes.extend(n);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if targets.is_empty() {
            return Err(match (dests.len(), first_error) {
                (1, Some(e)) => e,
                _ => super::find_backup(&dests, id).err().unwrap_or_else(|| {
                    anyhow::anyhow!("backup {id} was not found on any destination")
                }),
            });
        }
    }

    // `verify --all` reads each archive once: the newest backup of each chain is rebuilt, and
    // that vouches for every link under it. Whatever that does not cover (a chain that fails,
    // a full backup alone) is verified on its own below, which names a failure exactly.
    let mut covered: HashMap<(String, String), BackupResult> = HashMap::new();
    if args.all && !args.restore_test {
        for (dest, head) in chain_heads(&targets) {
            verify_chain(settings, &state, dest, head, progress, &mut covered)?;
        }
    }
    for (dest, backup) in targets {
        crate::interrupt::check()?;
        if let Some(done) = covered.remove(&(dest.name.clone(), backup.id.clone())) {
            results.push(done);
            continue;
        }
        let (result, restored) =
            verify_one(settings, &state, dest, &backup, args.restore_test, progress)?;
        bytes += restored;
        results.push(result);
    }
    Ok(Report {
        requests: BTreeMap::new(),
        results,
        notes,
        bytes,
        samples: Vec::new(),
    })
}

/// Verify one backup in depth (an incremental by rebuilding its chain): its result, and the
/// bytes it restores to when it passed. An error ends the run: a stop that was asked for, or
/// trouble of this host's that says nothing about the backup.
fn verify_one(
    settings: &Settings,
    state: &StateDir,
    dest: &Destination,
    backup: &Backup,
    drill_too: bool,
    progress: &dyn Progress,
) -> Result<(BackupResult, u64)> {
    // The unpacking labels its own phases (download, check) with the id.
    let mut drill = Vec::new();
    let outcome = (|| {
        let opener = super::opener_for(settings, backup)?;
        let scratch = state.scratch("verify")?;
        let checked = crate::restore::unpack_checked(
            dest,
            backup,
            opener.as_ref(),
            &scratch.path,
            "integrity_check",
            false,
            progress,
            crate::restore::Checks::All,
        )?;
        if drill_too {
            drill = restore_test(backup, &scratch.path)?;
            if let Some(bad) = drill.iter().find(|d| !d.ok) {
                return Err(anyhow::Error::new(crate::exit::integrity(format!(
                    "backup {} on {}: restore drill failed for {}: {} foreign key violation(s), row counts: {}",
                    backup.id,
                    dest.name,
                    bad.database,
                    bad.foreign_key_violations,
                    if bad.row_count_mismatches.is_empty() { "match".to_string() } else { bad.row_count_mismatches.join(", ") }
                ))));
            }
        }
        Ok(checked)
    })();
    Ok(match outcome {
        Ok(checked) => (
            BackupResult {
            id: backup.id.clone(),
            destination: dest.name.clone(),
            ok: true,
            databases_checked: checked,
            drill,
            error: None,
            cannot_open: false,
            stored_only: false,
            exit: Exit::Success,
            },
            backup.sidecar.manifest.restored_size(),
        ),
        // A stop that was asked for ends the run; it says nothing about the backup.
        Err(e) if crate::exit::classify(&e) == Exit::Interrupted => return Err(e),
        // Neither does a config that cannot open it (a missing identity, a loose key
        // file): that is this host's problem, said as such, exit 2, never FAILED.
        Err(e) if crate::exit::classify(&e) == Exit::Usage => {
            return Err(e.context(format!(
                "cannot verify backup {} on {}: the keys to open it cannot be loaded; nothing is known about the backup",
                backup.id, dest.name
            )))
        }
        // Not the backup's fault: the state folder (where it is unpacked) is full or
        // unwritable. Saying FAILED would blame a backup that may be perfect.
        Err(e) if crate::exit::local_trouble(&e) => {
            return Err(e.context(format!(
                "cannot verify backup {} on {}: the state folder {} has no room or cannot be written; nothing is known about the backup",
                backup.id,
                dest.name,
                settings.state_dir.display()
            )))
        }
        // Made for other recipients: this host's keys cannot tell whether it is intact, so
        // it is not called FAILED, and the other backups are still checked. Exit 4, as
        // restore gives for it ("cannot be decrypted" in the README's exit codes).
        Err(e) if crate::crypto::no_matching_keys(&e) => (BackupResult {
            cannot_open: true,
            ..BackupResult::failed(
                &backup.id,
                dest,
                Exit::Integrity,
                format!(
                    "cannot be opened with this host's identity: none of the configured identities ({}) can decrypt it, so whether it is intact is not known (hint: add the secret key of a recipient it was made for to encryption.identity_file, or verify it on a host that holds one)",
                    configured_keys(settings)
                ),
            )
        }, 0),
        Err(e) => (BackupResult {
            drill,
            ..BackupResult::failed(
                &backup.id,
                dest,
                crate::exit::classify(&e),
                crate::exit::describe(&e),
            )
        }, 0),
    })
}

/// What `verify --all` and `verify --sample` find on one destination before reading any
/// archive: the backups to read, the findings that need no read (a refused backup, damaged
/// metadata, a settled orphan, a broken line of sequence numbers), and notes.
#[allow(clippy::type_complexity)]
fn survey<'d>(
    settings: &Settings,
    dest: &'d Destination,
    holder: Option<std::time::SystemTime>,
    now: std::time::SystemTime,
) -> Result<(
    Vec<(&'d Destination, Backup)>,
    Vec<BackupResult>,
    Vec<String>,
)> {
    let mut targets = Vec::new();
    let mut results = Vec::new();
    let mut notes = Vec::new();
    let listing = catalog::list_at(dest, now)?;
    // Backups deleted out of turn or rolled back cannot be verified, and that is the
    // worst finding of all: it is one.
    let (line, more) = super::watch_line(settings, dest, &listing.backups, now);
    notes.extend(more);
    for finding in line.iter().flat_map(|l| l.findings.iter()) {
        let missing = match finding {
            catalog::sequence::Finding::RolledBack { missing, .. }
            | catalog::sequence::Finding::OutOfTurn { missing, .. } => missing.first(),
        };
        let id = missing
            .map(|m| m.id.clone().unwrap_or_else(|| format!("#{}", m.sequence)))
            .unwrap_or_default();
        results.push(BackupResult::failed(
            &id,
            dest,
            Exit::Integrity,
            finding.to_string(),
        ));
    }
    for b in listing.backups {
        match &b.standing {
            // Read to find (and name) what is wrong, or that a clock is.
            Standing::Good
            | Standing::Damaged(_)
            | Standing::BrokenChain(_)
            | Standing::FutureDated(_) => targets.push((dest, b)),
            s @ (Standing::Untrusted(_) | Standing::Foreign { .. }) => {
                results.push(BackupResult::failed(
                    &b.id,
                    dest,
                    s.exit(),
                    format!("backup {} on {} is refused: {s}", b.id, dest.name),
                ))
            }
        }
    }
    // Damaged metadata is a finding of its own: a backup that cannot be listed is
    // still a backup that cannot be restored.
    for p in &listing.problems {
        results.push(BackupResult::failed(&p.id, dest, p.exit, p.to_string()));
    }
    for o in listing.orphans.iter().filter(|o| o.settled(holder)) {
        results.push(BackupResult::failed(
            &o.id,
            dest,
            Exit::Integrity,
            o.to_string(),
        ));
    }
    Ok((targets, results, notes))
}

/// The good incrementals that no other listed backup builds on: the newest of each chain.
fn chain_heads<'a, 'd>(
    targets: &'a [(&'d Destination, Backup)],
) -> Vec<(&'d Destination, &'a Backup)> {
    let parents: HashSet<(&str, &str)> = targets
        .iter()
        .filter_map(|(d, b)| Some((d.name.as_str(), b.sidecar.manifest.parent.as_deref()?)))
        .collect();
    targets
        .iter()
        .filter(|(d, b)| {
            b.standing.is_good()
                && b.sidecar.manifest.is_incremental()
                && !parents.contains(&(d.name.as_str(), b.id.as_str()))
        })
        .map(|(d, b)| (*d, b))
        .collect()
}

/// Rebuild `head`'s chain once: the head's result, and each link's that passed every check
/// on the way, go to `covered`. A failure leaves the rest to the backup-by-backup path.
fn verify_chain(
    settings: &Settings,
    state: &StateDir,
    dest: &Destination,
    head: &Backup,
    progress: &dyn Progress,
    covered: &mut HashMap<(String, String), BackupResult>,
) -> Result<()> {
    let Ok(chain) = catalog::chains::resolve(dest, head) else {
        return Ok(());
    };
    let Ok(opener) = super::opener_for(settings, head) else {
        return Ok(());
    };
    let scratch = state.scratch("verify")?;
    let mut passed: Vec<String> = Vec::new();
    let outcome = crate::restore::unpack_chain_checked(
        dest,
        &chain,
        opener.as_ref(),
        &scratch.path,
        "integrity_check",
        progress,
        &mut |link| passed.push(link.id.clone()),
    );
    let ok = |b: &Backup, checked: Vec<String>| BackupResult {
        id: b.id.clone(),
        destination: dest.name.clone(),
        ok: true,
        databases_checked: checked,
        drill: Vec::new(),
        error: None,
        cannot_open: false,
        stored_only: false,
        exit: Exit::Success,
    };
    for link in chain.iter().filter(|l| passed.contains(&l.id)) {
        let dbs = link
            .sidecar
            .manifest
            .databases
            .iter()
            .map(|d| d.path.clone())
            .collect();
        covered.insert((dest.name.clone(), link.id.clone()), ok(link, dbs));
    }
    match outcome {
        Ok(checked) => {
            covered.insert((dest.name.clone(), head.id.clone()), ok(head, checked));
            Ok(())
        }
        Err(e) if crate::exit::classify(&e) == Exit::Interrupted => Err(e),
        Err(_) => Ok(()),
    }
}

impl BackupResult {
    fn failed(id: &str, dest: &Destination, exit: Exit, error: String) -> BackupResult {
        BackupResult {
            id: id.to_string(),
            destination: dest.name.clone(),
            ok: false,
            databases_checked: Vec::new(),
            drill: Vec::new(),
            exit,
            error: Some(error),
            cannot_open: false,
            stored_only: false,
        }
    }
}

/// The key files this host opens backups with, as the config names them.
fn configured_keys(settings: &Settings) -> String {
    let enc = settings.encryption.as_ref();
    let files: Vec<String> = [
        ("identity_file", enc.and_then(|e| e.identity_file.as_ref())),
        (
            "passphrase_file",
            enc.and_then(|e| e.passphrase_file.as_ref()),
        ),
    ]
    .into_iter()
    .filter_map(|(key, file)| file.map(|f| format!("encryption.{key} {}", f.display())))
    .collect();
    files.join(" and ")
}
