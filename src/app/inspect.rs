//! Words for the inspection commands: `show` (one backup, for a person to read) and the fleet
//! view (`list --all-hosts`, a table of hosts).

use std::time::SystemTime;

use anyhow::Result;

use crate::commands::{fleet, show};
use crate::config::{Check, SourceKind};
use crate::ui::{self, Escaped, Ui};

pub(super) fn render_show(ui: &Ui, r: &show::Report) -> Result<()> {
    ui.json(r)?;
    for note in &r.notes {
        ui.warn(note);
    }
    for problem in &r.problems {
        ui.error(problem);
    }
    let status = |s: &str| r.destinations.iter().any(|d| d.status == s);
    let mut marks = Vec::new();
    if status("damaged") || status("unreadable") {
        marks.push("DAMAGED");
    }
    if status("untrusted") {
        marks.push("UNTRUSTED");
    }
    let mut lines = vec![format!("backup {}  {}", Escaped(&r.id), marks.join(" "))
        .trim_end()
        .to_string()];
    let mut field = |key: &str, value: String| lines.push(format!("  {key:<13}{value}"));
    field(
        "created",
        format!("{} ({})", Escaped(&r.created), age(&r.created)),
    );
    field(
        "host",
        format!(
            "{} (hostname {}), litevault {}, format version {}",
            Escaped(&r.host),
            Escaped(&r.hostname),
            Escaped(&r.tool_version),
            r.format_version
        ),
    );
    match (&r.parent, &r.full) {
        (Some(parent), full) => field(
            "kind",
            format!(
                "incremental on {} (the chain of full backup {})",
                Escaped(parent),
                Escaped(full.as_deref().unwrap_or("?"))
            ),
        ),
        _ => field("kind", Escaped(&r.kind).to_string()),
    }
    if r.kind == "incremental" {
        field(
            "chain",
            match &r.chain {
                Some(ids) => format!(
                    "{} ({} backups to read)",
                    Escaped(&ids.join(" -> ")),
                    ids.len()
                ),
                None => "BROKEN: it cannot be restored from here (see the error above)".into(),
            },
        );
    }
    if !r.tags.is_empty() {
        field("tags", Escaped(&r.tags.join(", ")).to_string());
    }
    let a = &r.archive;
    field(
        "archive",
        format!(
            "{}, {}, {}, {}",
            Escaped(&a.object),
            ui::bytes(a.bytes),
            Escaped(&a.compression),
            match (a.encryption.as_str(), a.recipients.len()) {
                ("none", _) => "NOT encrypted".to_string(),
                (e, 0) => format!(
                    "encrypted with {} (passphrase or unrecorded recipients)",
                    Escaped(e)
                ),
                (e, 1) => format!("encrypted with {} to 1 recipient", Escaped(e)),
                (e, n) => format!("encrypted with {} to {n} recipients", Escaped(e)),
            }
        ),
    );
    field("blake3", Escaped(&a.blake3).to_string());
    for (i, recipient) in a.recipients.iter().enumerate() {
        field(
            if i == 0 { "recipients" } else { "" },
            Escaped(recipient).to_string(),
        );
    }
    field("signature", Escaped(&r.signature.detail).to_string());
    for (i, d) in r.destinations.iter().enumerate() {
        let mut line = format!("{}: {}", d.destination, d.status);
        if let Some(detail) = &d.detail {
            line.push_str(&format!(" ({})", Escaped(detail)));
        }
        if d.destination == r.shown_from && r.destinations.len() > 1 {
            line.push_str(", shown here");
        }
        field(if i == 0 { "destinations" } else { "" }, line);
    }

    lines.push(format!("sources ({})", r.sources.len()));
    for s in &r.sources {
        lines.push(format!(
            "  {:<20} {:<6} {}  {} file{}, {}",
            Escaped(&s.name),
            match s.kind {
                SourceKind::Sqlite => "sqlite",
                SourceKind::File => "file",
                SourceKind::Dir => "dir",
            },
            Escaped(&s.origin),
            s.files,
            if s.files == 1 { "" } else { "s" },
            ui::bytes(s.bytes)
        ));
    }
    lines.push(format!(
        "files ({}, {})",
        r.files.len(),
        ui::bytes(r.files.iter().map(|f| f.size).sum())
    ));
    for f in &r.files {
        lines.push(format!(
            "  {:>10}  {}  {}",
            ui::bytes(f.size),
            Escaped(&f.mode),
            Escaped(&f.path)
        ));
    }
    lines.push(format!("databases ({})", r.databases.len()));
    for d in &r.databases {
        lines.push(format!(
            "  {}: SQLite {}, {} pages of {} bytes ({}), journal_mode {}, user_version {}, passed {}",
            Escaped(&d.source),
            Escaped(&d.sqlite_version),
            d.page_count,
            d.page_size,
            ui::bytes(d.bytes),
            Escaped(&d.journal_mode),
            d.user_version,
            match d.check {
                Check::Quick => "quick_check",
                Check::Integrity => "integrity_check",
            }
        ));
        let st = &d.stored;
        lines.push(format!(
            "    stored {}",
            match st.form {
                "wal" => format!(
                    "as a WAL of {} frame{} ({}, {}), applied on the parent's database",
                    st.frames.unwrap_or(0),
                    if st.frames == Some(1) { "" } else { "s" },
                    Escaped(st.wal.as_deref().unwrap_or("?")),
                    st.wal_bytes.map(ui::bytes).unwrap_or_else(|| "?".into())
                ),
                "unchanged" => "not at all: unchanged since the parent".to_string(),
                _ => format!("whole, as {}", Escaped(&d.path)),
            }
        ));
        // Widths of the names as shown, escaped.
        let width = d
            .row_counts
            .keys()
            .map(|t| ui::escape(t).chars().count())
            .max()
            .unwrap_or(0);
        for (table, rows) in &d.row_counts {
            let table = Escaped(table);
            lines.push(format!("    table {table:<width$}  {rows} rows"));
        }
    }
    ui.say_all(&lines)?;
    Ok(())
}

/// "3h 5m ago", from an RFC 3339 time.
fn age(created: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339(created) else {
        return "unreadable time".into();
    };
    match SystemTime::now().duration_since(t) {
        Ok(d) => format!("{} ago", ui::duration(d)),
        Err(e) => format!("{} AHEAD of this host's clock", ui::duration(e.duration())),
    }
}

/// Reasons printed per host before the rest are summed up.
const NOT_COUNTED_SHOWN: usize = 3;

pub(super) fn render_fleet(ui: &Ui, r: &fleet::Report) -> Result<()> {
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
