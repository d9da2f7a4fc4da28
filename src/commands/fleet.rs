//! `litevault list --all-hosts`: the fleet view. Every host namespace found in each destination
//! (or `--dest`), with that host's newest good backup and how many good backups it has, for
//! whoever watches many servers backing up into one bucket; `--metrics-file` writes the same
//! per host for Prometheus.
//!
//! Hosts are looked at several at a time, each with one listing and as few sidecars as
//! `catalog::host_summary` needs, so two hundred hosts cost about two hundred listings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Result;
use serde::Serialize;

use crate::catalog;
use crate::cli::ListArgs;
use crate::commands::report::CommandReport;
use crate::config::{self, Settings};
use crate::exit::Exit;
use crate::journal::HostFacts;
use crate::storage::Destination;
use crate::ui::{self, Escaped, Ui};

/// Hosts looked at at once on one destination (each with its own requests, up to the
/// destination's `concurrency` more with `[trust]`). Measured with scripts/bench-fleet on two
/// cores: 8 to 32 are alike; fewer leave the time to request latency, more to thread contention.
const HOSTS_AT_ONCE: usize = 16;

#[derive(Debug, Serialize)]
pub struct Host {
    pub host: String,
    pub destination: String,
    /// Good backups: complete, undamaged, trusted where `[trust]` is configured.
    pub backups: u64,
    /// The newest good backup; null when there is none.
    pub newest: Option<Newest>,
    /// Backups that are there but not counted, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_counted: Vec<String>,
    /// The namespace could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Newest {
    pub id: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub age_seconds: u64,
    /// Stored size.
    pub bytes: u64,
    /// "full" or "incremental".
    pub kind: String,
}

pub struct Report {
    /// By host, then destination.
    pub hosts: Vec<Host>,
    /// Destinations whose hosts could not be listed.
    pub problems: Vec<String>,
}

/// Reasons printed per host before the rest are summed up.
const NOT_COUNTED_SHOWN: usize = 3;

impl CommandReport for Report {
    /// 1 when a destination or a host's namespace could not be listed: a host missing from the
    /// view must not look like a quiet night.
    fn exit(&self) -> Exit {
        let unlisted = !self.problems.is_empty() || self.hosts.iter().any(|h| h.error.is_some());
        Exit::worst(unlisted.then_some(Exit::Failure))
    }

    /// What the metrics file says per host (hosts that could not be listed are left out).
    fn host_facts(&self) -> Option<Vec<HostFacts>> {
        let facts = self
            .hosts
            .iter()
            .filter(|h| h.error.is_none())
            .map(|h| HostFacts {
                host: h.host.clone(),
                destination: h.destination.clone(),
                backups: h.backups,
                newest_age: h
                    .newest
                    .as_ref()
                    .map(|n| std::time::Duration::from_secs(n.age_seconds)),
            });
        Some(facts.collect())
    }

    fn render(&self, ui: &Ui) -> Result<()> {
        let r = self;
        ui.json(&r.hosts)?;
        for p in &r.problems {
            ui.error(p);
        }
        let mut lines = Vec::new();
        if r.hosts.is_empty() && r.problems.is_empty() {
            lines.push("no host folders found".to_string());
        } else if !r.hosts.is_empty() {
            lines.push(format!(
                "{:<24} {:<12} {:<22} {:>10} {:>10} {:>7}",
                "HOST", "DESTINATION", "NEWEST", "AGE", "SIZE", "BACKUPS"
            ));
        }
        for h in &r.hosts {
            if let Some(e) = &h.error {
                ui.error(&format!(
                    "host {} on {}: {}",
                    Escaped(&h.host),
                    h.destination,
                    Escaped(e)
                ));
            }
            // The first few reasons per host; --json has them all.
            for why in h.not_counted.iter().take(NOT_COUNTED_SHOWN) {
                ui.warn(why);
            }
            if h.not_counted.len() > NOT_COUNTED_SHOWN {
                ui.warn(&format!(
                    "host {} on {}: {} more backups not counted (--json lists them all)",
                    Escaped(&h.host),
                    h.destination,
                    h.not_counted.len() - NOT_COUNTED_SHOWN
                ));
            }
            let (id, age, size) = match &h.newest {
                Some(n) if n.age_seconds == 0 => {
                    (Escaped(&n.id).to_string(), "0s".into(), ui::bytes(n.bytes))
                }
                Some(n) => (
                    Escaped(&n.id).to_string(),
                    ui::duration(std::time::Duration::from_secs(n.age_seconds)),
                    ui::bytes(n.bytes),
                ),
                None if h.error.is_some() => ("(cannot be listed)".into(), "-".into(), "-".into()),
                None => ("(no good backup)".into(), "-".into(), "-".into()),
            };
            let mut line = format!(
                "{:<24} {:<12} {:<22} {:>10} {:>10} {:>7}",
                Escaped(&h.host),
                h.destination,
                id,
                age,
                size,
                h.backups
            );
            if !h.not_counted.is_empty() {
                line.push_str(&format!("  ({} not counted)", h.not_counted.len()));
            }
            lines.push(line);
        }
        ui.say_all(&lines)?;
        Ok(())
    }
}

/// Which destinations the fleet view looks at, from `list --all-hosts`'s flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this destination [all].
    pub dest: Option<String>,
}

impl From<&ListArgs> for Options {
    fn from(args: &ListArgs) -> Self {
        Options {
            dest: args.dest.clone(),
        }
    }
}

pub fn run(settings: &Settings, args: &Options) -> Result<Report> {
    let names: Vec<String> = args.dest.iter().cloned().collect();
    let now = SystemTime::now();
    let mut hosts = Vec::new();
    let mut problems = Vec::new();
    for cfg in settings.select_destinations(&names)? {
        let found = Destination::open_root(cfg).and_then(|root| catalog::hosts(&root));
        match found {
            Ok(names) => hosts.extend(survey(settings, cfg, &names, now)),
            Err(e) => problems.push(format!(
                "destination {}: its hosts cannot be listed: {e:#}",
                cfg.name
            )),
        }
        crate::interrupt::check()?;
    }
    hosts.sort_by(|a, b| (&a.host, &a.destination).cmp(&(&b.host, &b.destination)));
    Ok(Report { hosts, problems })
}

/// Each of `names` on destination `cfg`, several at a time; results in `names`' order.
fn survey(
    settings: &Settings,
    cfg: &config::DestinationConfig,
    names: &[String],
    now: SystemTime,
) -> Vec<Host> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Host>>> = names.iter().map(|_| Mutex::new(None)).collect();
    let workers = HOSTS_AT_ONCE.min(names.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if crate::interrupt::requested() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let host = one_host(settings, cfg, name, now);
                *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(host);
            });
        }
    });
    slots
        .into_iter()
        .filter_map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

fn one_host(
    settings: &Settings,
    cfg: &config::DestinationConfig,
    name: &str,
    now: SystemTime,
) -> Host {
    let summary = super::open_destination_at(settings, cfg, name)
        .and_then(|dest| catalog::host_summary(&dest, now));
    let mut host = Host {
        host: name.to_string(),
        destination: cfg.name.clone(),
        backups: 0,
        newest: None,
        not_counted: Vec::new(),
        error: None,
    };
    match summary {
        Ok(s) => {
            host.backups = s.backups;
            host.not_counted = s.ignored;
            host.newest = s.newest.map(|b| Newest {
                age_seconds: now.duration_since(b.created).unwrap_or_default().as_secs(),
                bytes: b.bytes(),
                created: b.sidecar.manifest.created.clone(),
                kind: b.sidecar.manifest.kind.clone(),
                id: b.id,
            });
        }
        Err(e) => host.error = Some(format!("{e:#}")),
    }
    host
}
