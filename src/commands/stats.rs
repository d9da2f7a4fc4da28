//! `litevault stats`: what each destination holds for this host, in one line per destination:
//! how many good backups (full and incremental), the bytes they take, the oldest and the
//! newest. Only a good backup counts (see `catalog::standing`); anything else there (damaged,
//! untrusted, foreign, future-dated, a broken chain, an unreadable sidecar, an archive without
//! one) is listed as not counted, with why, so the totals never flatter what can be restored.
//!
//! Read-only, from one listing per destination: no key is loaded and no archive is read.

use anyhow::Result;
use serde::Serialize;

use crate::catalog::{self, Backup};
use crate::cli::StatsArgs;
use crate::commands::report::CommandReport;
use crate::config::Settings;
use crate::exit::Exit;
use crate::ui::{self, Escaped, Ui};

/// Which destinations `stats` sums up, from its flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this destination [all].
    pub dest: Option<String>,
}

impl From<&StatsArgs> for Options {
    fn from(args: &StatsArgs) -> Self {
        Options {
            dest: args.dest.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DestinationStats {
    pub destination: String,
    /// Good backups: complete, undamaged, trusted where `[trust]` is configured, whole chains.
    pub backups: u64,
    pub full: u64,
    pub incremental: u64,
    /// Stored bytes of the good backups (after compression and encryption).
    pub bytes: u64,
    /// Null when there is no good backup.
    pub oldest: Option<BackupAt>,
    pub newest: Option<BackupAt>,
    /// What is there but not counted, and why.
    pub not_counted: Vec<NotCounted>,
    /// The destination could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BackupAt {
    pub id: String,
    /// RFC 3339, UTC.
    pub created: String,
}

#[derive(Debug, Serialize)]
pub struct NotCounted {
    pub id: String,
    /// A backup's standing ("damaged", "untrusted", "foreign", "future-dated",
    /// "broken-chain"), or "unreadable" (its sidecar) or "incomplete" (no sidecar).
    pub standing: &'static str,
    /// The whole finding, as `list` warns it.
    pub why: String,
}

pub struct Report {
    pub destinations: Vec<DestinationStats>,
}

pub fn run(settings: &Settings, options: &Options) -> Result<Report> {
    let names: Vec<String> = options.dest.iter().cloned().collect();
    let holder = super::lock_holder_since(settings);
    let mut destinations = Vec::new();
    // One destination that cannot be opened or listed does not hide the others.
    for cfg in settings.select_destinations(&names)? {
        let listing = super::open_destination(settings, cfg).and_then(|d| catalog::list(&d));
        destinations.push(match listing {
            Ok(listing) => tally(&cfg.name, &listing, holder),
            Err(e) => DestinationStats {
                error: Some(format!("{e:#}")),
                ..tally(&cfg.name, &catalog::Listing::default(), holder)
            },
        });
        crate::interrupt::check()?;
    }
    Ok(Report { destinations })
}

fn tally(
    name: &str,
    listing: &catalog::Listing,
    holder: Option<std::time::SystemTime>,
) -> DestinationStats {
    let good: Vec<&Backup> = listing.good().map(|g| g.backup()).collect();
    let incremental = good
        .iter()
        .filter(|b| b.sidecar.manifest.is_incremental())
        .count() as u64;
    let listed = |b: &&Backup| BackupAt {
        id: b.id.clone(),
        created: b.sidecar.manifest.created.clone(),
    };
    let mut not_counted: Vec<NotCounted> = listing
        .backups
        .iter()
        .filter_map(|b| {
            let why = b.refusal()?;
            Some(NotCounted {
                id: b.id.clone(),
                standing: why.label(),
                why: format!("backup {} on {name} is not counted: {why}", b.id),
            })
        })
        .collect();
    not_counted.extend(listing.problems.iter().map(|p| NotCounted {
        id: p.id.clone(),
        standing: "unreadable",
        why: p.to_string(),
    }));
    // An archive a running backup is still completing is work in progress, not a finding.
    not_counted.extend(
        listing
            .orphans
            .iter()
            .filter(|o| o.settled(holder))
            .map(|o| NotCounted {
                id: o.id.clone(),
                standing: "incomplete",
                why: o.to_string(),
            }),
    );
    DestinationStats {
        destination: name.to_string(),
        backups: good.len() as u64,
        full: good.len() as u64 - incremental,
        incremental,
        bytes: good.iter().map(|b| b.bytes()).sum(),
        // The listing is newest first.
        oldest: good.last().map(listed),
        newest: good.first().map(listed),
        not_counted,
        error: None,
    }
}

impl CommandReport for Report {
    /// 1 when a destination could not be listed: a summary with a hole must not look whole.
    /// Backups that are not counted are findings for `verify` and `prune`; here they are said.
    fn exit(&self) -> Exit {
        Exit::worst(
            self.destinations
                .iter()
                .filter(|d| d.error.is_some())
                .map(|_| Exit::Failure),
        )
    }

    fn render(&self, ui: &Ui) -> Result<()> {
        ui.json(&self.destinations)?;
        let row = |cells: [&str; 7]| {
            format!(
                "{:<12} {:>7} {:>5} {:>11} {:>10}  {:<22} {}",
                cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
            )
            .trim_end()
            .to_string()
        };
        let mut lines = vec![row([
            "DESTINATION",
            "BACKUPS",
            "FULL",
            "INCREMENTAL",
            "STORED",
            "OLDEST",
            "NEWEST",
        ])];
        for d in &self.destinations {
            if let Some(e) = &d.error {
                // Storage errors name their destination already.
                if e.contains(&format!("destination {}", d.destination)) {
                    ui.error(e);
                } else {
                    ui.error(&format!("destination {}: {e}", d.destination));
                }
                lines.push(row([
                    &d.destination,
                    "-",
                    "-",
                    "-",
                    "-",
                    "(cannot be listed)",
                    "",
                ]));
                continue;
            }
            for n in &d.not_counted {
                ui.warn(&n.why);
            }
            let id = |l: &Option<BackupAt>| match l {
                Some(l) => Escaped(&l.id).to_string(),
                None => "-".to_string(),
            };
            let mut line = row([
                &d.destination,
                &d.backups.to_string(),
                &d.full.to_string(),
                &d.incremental.to_string(),
                &ui::bytes(d.bytes),
                &id(&d.oldest),
                &id(&d.newest),
            ]);
            if !d.not_counted.is_empty() {
                line.push_str(&format!("  ({} not counted)", d.not_counted.len()));
            }
            lines.push(line);
        }
        ui.say_all(&lines)?;
        Ok(())
    }
}
