//! `litevault list`: complete backups on each destination, newest first.

use anyhow::Result;
use serde::Serialize;

use crate::catalog::{self, Standing};
use crate::cli::ListArgs;
use crate::commands::report::CommandReport;
use crate::config::Settings;
use crate::ui::{self, Escaped, Ui};

#[derive(Debug, Serialize)]
pub struct Item {
    pub id: String,
    pub created: String,
    pub bytes: u64,
    pub destination: String,
    pub sources: Vec<String>,
    /// Each database by its path in the backup: a `sqlite` source's name, or `NAME/path` for
    /// one found below a folder.
    pub databases: Vec<String>,
    pub source_bytes: u64,
    pub compression: String,
    pub encrypted: bool,
    /// "full" or "incremental".
    pub kind: String,
    /// The backup an incremental builds on (null for a full backup).
    pub parent: Option<String>,
    /// Its number among this host's backups on the destination (null before they were
    /// numbered); a gap or a decrease is reported as a warning.
    pub sequence: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// "good", "damaged", "untrusted", "foreign", "future-dated" or "broken-chain": only a good
    /// backup is counted, restored as `latest` or pruned.
    pub standing: &'static str,
    /// Why it is not good, in words (none for a good backup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Set for a damaged backup and for a broken chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
    /// Why the trusted signers do not vouch for it (unsigned, unknown signer, bad signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untrusted: Option<String>,
    /// The fingerprint of the trusted key that signed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

pub struct Report {
    pub items: Vec<Item>,
    pub problems: Vec<String>,
    /// `--as-of`: the time the destinations were seen at (RFC 3339).
    pub as_of: Option<String>,
}

impl CommandReport for Report {
    fn render(&self, ui: &Ui) -> Result<()> {
        let report = self;
        for p in &report.problems {
            ui.warn(p);
        }
        ui.json(&report.items)?;
        let mut lines = Vec::new();
        if let Some(at) = &report.as_of {
            lines.push(format!("as of {at} (each object the version current then)"));
        }
        if report.items.is_empty() {
            lines.push("no complete backups".to_string());
        } else {
            lines.push(format!(
                "{:<22} {:<24} {:>10} {:>10}  {:<12} {}",
                "ID", "CREATED", "DATA", "STORED", "DESTINATION", "FLAGS"
            ));
        }
        for it in &report.items {
            let mut flags = vec![it.kind.clone(), it.compression.clone()];
            flags.push(if it.encrypted {
                "age".into()
            } else {
                "unencrypted".into()
            });
            flags.extend(it.tags.iter().cloned());
            if it.signed_by.is_some() {
                flags.push("signed".into());
            }
            if let Some(why) = &it.untrusted {
                flags.push("UNTRUSTED".into());
                ui.warn(&format!(
                    "backup {} on {} is not trusted: {}",
                    Escaped(&it.id),
                    Escaped(&it.destination),
                    Escaped(why)
                ));
            }
            if let Some(damage) = &it.damage {
                flags.push("DAMAGED".into());
                ui.warn(&format!(
                    "backup {} on {} is damaged: {}",
                    Escaped(&it.id),
                    Escaped(&it.destination),
                    Escaped(damage)
                ));
            }
            if let (None, None, Some(problem)) = (&it.damage, &it.untrusted, &it.problem) {
                flags.push(it.standing.to_uppercase());
                ui.warn(&format!(
                    "backup {} on {} is not counted: {problem}",
                    it.id, it.destination
                ));
            }
            lines.push(format!(
                "{:<22} {:<24} {:>10} {:>10}  {:<12} {}",
                Escaped(&it.id),
                Escaped(&it.created),
                ui::bytes(it.source_bytes),
                ui::bytes(it.bytes),
                Escaped(&it.destination),
                Escaped(&flags.join(","))
            ));
        }
        ui.say_all(&lines)?;
        Ok(())
    }
}

/// Which destinations `list` lists, from its flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this destination [all].
    pub dest: Option<String>,
    /// `--as-of`: the destinations as they were then.
    pub as_of: Option<std::time::SystemTime>,
}

impl From<&ListArgs> for Options {
    fn from(args: &ListArgs) -> Self {
        Options {
            dest: args.dest.clone(),
            as_of: args.as_of,
        }
    }
}

pub fn run(settings: &Settings, args: &Options) -> Result<Report> {
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let dests = super::open_destinations_as_of(settings, &names, args.as_of)?;
    let mut all = Vec::new();
    let mut problems = Vec::new();
    for dest in &dests {
        let now = std::time::SystemTime::now();
        let listing = catalog::list_at(dest, now)?;
        problems.extend(listing.problems.iter().map(|p| p.to_string()));
        let (line, notes) = super::watch_line(settings, dest, &listing.backups, now);
        problems.extend(notes);
        problems.extend(
            line.iter()
                .flat_map(|l| l.findings.iter().map(|f| f.to_string())),
        );
        problems.extend(catalog::mixed_identities(&listing.backups));
        all.extend(listing.backups);
        let holder = super::lock_holder_since(settings);
        problems.extend(
            listing
                .orphans
                .iter()
                .filter(|o| o.settled(holder))
                .map(|o| o.to_string()),
        );
    }
    all.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let items = all
        .into_iter()
        .map(|b| Item {
            bytes: b.bytes(),
            created: b.sidecar.manifest.created.clone(),
            sources: b
                .sidecar
                .manifest
                .sources
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            databases: b
                .sidecar
                .manifest
                .databases
                .iter()
                .map(|d| d.path.clone())
                .collect(),
            source_bytes: b.sidecar.manifest.total_size(),
            compression: b.sidecar.archive.compression.clone(),
            encrypted: b.sidecar.archive.encryption != "none",
            kind: b.sidecar.manifest.kind.clone(),
            parent: b.sidecar.manifest.parent.clone(),
            sequence: b.sidecar.sequence.as_ref().map(|s| s.number),
            tags: b.sidecar.manifest.tags.clone(),
            standing: b.standing.label(),
            problem: b.refusal().map(|s| s.to_string()),
            damage: match &b.standing {
                Standing::Damaged(why) | Standing::BrokenChain(why) => Some(why.clone()),
                _ => None,
            },
            untrusted: match &b.standing {
                Standing::Untrusted(why) => Some(why.clone()),
                _ => None,
            },
            signed_by: match &b.trust {
                crate::trust::Verdict::Trusted(fp) => Some(fp.clone()),
                _ => None,
            },
            destination: b.destination,
            id: b.id,
        })
        .collect();
    Ok(Report {
        items,
        problems,
        as_of: args.as_of.map(|t| {
            jiff::Timestamp::try_from(t)
                .map(|t| t.to_string())
                .unwrap_or_default()
        }),
    })
}
