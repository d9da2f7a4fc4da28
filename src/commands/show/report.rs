//! What `litevault show` reports: one backup as its sidecar and the destinations' listings
//! describe it, and how it reads for a person.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Result;
use serde::Serialize;

use crate::commands::report::CommandReport;
use crate::config::{Check, SourceKind};
use crate::exit::Exit;
use crate::ui::{self, Escaped, Ui};

#[derive(Debug, Serialize)]
pub struct Report {
    pub id: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// The config `name` that took it (its namespace), and the machine's hostname then.
    pub host: String,
    pub hostname: String,
    pub tool_version: String,
    pub format_version: u32,
    /// "full" or "incremental".
    pub kind: String,
    pub parent: Option<String>,
    pub full: Option<String>,
    /// The backups a restore reads, full backup first and this one last (just this one when it
    /// is full); null when the chain is broken (`problems` says where).
    pub chain: Option<Vec<String>>,
    pub tags: Vec<String>,
    /// Its number among this host's backups on the destination shown, and the backup before
    /// it there (absent in backups from before they were numbered).
    pub sequence: Option<crate::archive::manifest::Sequence>,
    pub archive: Archive,
    pub signature: Signature,
    /// The destination whose sidecar is shown: the first that holds the backup whole.
    pub shown_from: String,
    /// Each destination looked at (every configured one, or `--dest`), and what it holds.
    pub destinations: Vec<Holding>,
    pub sources: Vec<SourceShown>,
    pub files: Vec<File>,
    pub databases: Vec<Database>,
    /// Integrity findings on any destination (damaged, untrusted, broken chain): exit 4.
    pub problems: Vec<String>,
    /// Worth knowing, not a finding: what `latest` passed over, a destination that could not be
    /// listed, a date ahead of this host's clock.
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Archive {
    pub object: String,
    /// Stored size, after compression and encryption.
    pub bytes: u64,
    pub blake3: String,
    pub compression: String,
    /// "age" or "none".
    pub encryption: String,
    pub recipients: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Signature {
    /// A signature object is stored beside the sidecar.
    pub signed: bool,
    /// "trusted", "unsigned", "untrusted-signer", "outside-validity" (a trusted key signing or
    /// judged outside its valid-after/valid-before), "bad-signature", or "not-checked" (no
    /// `[trust]` signers are configured on this host).
    pub status: &'static str,
    /// The signing key's SHA256 fingerprint, when it was checked.
    pub key: Option<String>,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Holding {
    pub destination: String,
    /// "ok", "damaged", "untrusted", "unreadable" (its sidecar), "incomplete" (an archive
    /// without a sidecar), "absent", or "unreachable" (the destination could not be listed).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SourceShown {
    pub name: String,
    pub kind: SourceKind,
    /// Where it lived on the host that took the backup.
    pub origin: String,
    pub files: usize,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct File {
    pub path: String,
    pub source: String,
    pub size: u64,
    /// Octal, as `ls` and `chmod` write it.
    pub mode: String,
    pub blake3: String,
}

#[derive(Debug, Serialize)]
pub struct Database {
    pub source: String,
    pub path: String,
    pub page_size: u32,
    pub page_count: u64,
    /// page_size × page_count: the database's size once restored.
    pub bytes: u64,
    pub sqlite_version: String,
    pub journal_mode: String,
    pub user_version: i64,
    /// The check it passed before it was stored.
    pub check: Check,
    pub row_counts: BTreeMap<String, u64>,
    pub blake3: Option<String>,
    pub stored: Storage,
}

/// How the backup holds one database.
#[derive(Debug, Serialize)]
pub struct Storage {
    /// "whole", "wal" (the pages changed since the parent, as a WAL file) or "unchanged".
    #[serde(rename = "as")]
    pub form: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// The WAL file's size in the archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_bytes: Option<u64>,
    /// The BLAKE3 of the parent's database it applies to (or equals, when unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_blake3: Option<String>,
}

impl CommandReport for Report {
    fn exit(&self) -> Exit {
        Exit::worst(self.problems.iter().map(|_| Exit::Integrity))
    }

    fn render(&self, ui: &Ui) -> Result<()> {
        let r = self;
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
        if let Some(seq) = &r.sequence {
            field(
                "sequence",
                match &seq.previous {
                    Some(p) => format!(
                        "#{} on {}, after {}",
                        seq.number,
                        Escaped(&r.shown_from),
                        Escaped(&p.id)
                    ),
                    None => format!("#{} on {}, the first", seq.number, Escaped(&r.shown_from)),
                },
            );
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
                Escaped(&d.path),
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
