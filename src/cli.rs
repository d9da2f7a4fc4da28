//! The command line, as clap definitions only: no I/O happens here, so the same definitions
//! generate the shell completions and man pages (`litevault completions`, `litevault man`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const CONFIG_ENV: &str = "LITEVAULT_CONFIG";
pub const DEFAULT_CONFIG: &str = "/etc/litevault/litevault.toml";

/// Consistent backups of live SQLite stores and config files, in an open format
/// (tar, zstd or gzip, age), stored on local disk, S3 or SFTP.
#[derive(Debug, Parser)]
#[command(name = "litevault", version, max_term_width = 100)]
#[command(
    after_help = "Exit codes: 0 success, 1 failure, 2 usage or configuration error, \
3 partial (some destinations or deletions failed), 4 integrity (corrupt, tampered or \
undecryptable data), 5 locked (another run holds the lock), 130 interrupted.\n\n\
Environment: LITEVAULT_CONFIG (the config file), LITEVAULT_PLUGIN_TIMEOUT (how long one call \
into an age plugin may take, default 60s)."
)]
pub struct Cli {
    /// Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print nothing on success; errors still go to stderr
    #[arg(long, short = 'q', global = true, conflicts_with = "json")]
    pub quiet: bool,

    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// Write Prometheus metrics here after the run [default: metrics_file in the config]
    #[arg(long, global = true, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a backup and store it on every (or each named) destination
    Backup(BackupArgs),
    /// List complete backups, newest first
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Restore a backup into a folder
    Restore(RestoreArgs),
    /// Show what a backup holds and where, from its sidecar: no key needed, nothing downloaded
    Show(ShowArgs),
    /// Sum up what each destination holds: good backups (full, incremental), bytes, oldest, newest
    Stats(StatsArgs),
    /// Prove that backups are intact and restorable
    Verify(VerifyArgs),
    /// Delete backups that the retention policy no longer keeps
    Prune(PruneArgs),
    /// Copy backups from one destination to another: by default every backup the other lacks
    Copy(CopyArgs),
    /// Re-encrypt stored backups to the current recipients (and re-sign them), one at a time
    Rekey(RekeyArgs),
    /// Check the config, open each source as a backup would, and test each destination
    Check(CheckArgs),
    /// Show recorded runs from the execution store, newest first
    History(HistoryArgs),
    /// Make keys: an age identity to encrypt to, or an SSH key to sign backups with
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Write the man pages into a folder
    Man(ManArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Store only on this destination (repeat for several) [default: all]
    #[arg(long = "dest", short = 'd', value_name = "NAME")]
    pub dest: Vec<String>,

    /// If another run holds the lock, wait this long for it (e.g. 10m) instead of exiting 5
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,

    /// Do nothing (exit 0) when every selected destination has a backup younger than this
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub if_older_than: Option<Duration>,

    /// Retry a failed run this many times (on top of each request's own retries)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,

    /// Wait before the first retry; doubled before each next one
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub retry_delay: Duration,

    /// Take a full backup even when [incremental] would allow an incremental one
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new key to FILE (mode 0600, never over an existing file) and print its public half
    Generate(KeyGenerateArgs),
}

#[derive(Debug, Args)]
pub struct KeyGenerateArgs {
    /// Where to write the secret key
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// An ed25519 SSH signing key (for [signing] key_file) instead of an age identity; its
    /// public line also goes to FILE.pub
    #[arg(long)]
    pub signing: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show this many runs, newest first
    #[arg(long, short = 'n', value_name = "N", default_value_t = 20)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List only this destination [default: all]
    #[arg(long = "dest", short = 'd', value_name = "NAME")]
    pub dest: Option<String>,

    /// Every host's folder in the destination: each host's newest good backup and count
    /// (with --metrics-file, written per host for Prometheus)
    #[arg(long)]
    pub all_hosts: bool,

    /// See the destinations as they were at TIME (RFC 3339, or a duration ago: 2h, 3d): backups
    /// deleted or overwritten since come back from the bucket's versions (S3 with versioning)
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "all_hosts")]
    pub as_of: Option<std::time::SystemTime>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Backup id, or `latest`
    #[arg(value_name = "ID", default_value = "latest")]
    pub id: String,

    /// Look on this destination only [default: all]
    #[arg(long = "dest", short = 'd', value_name = "NAME")]
    pub dest: Option<String>,

    /// See the destinations as they were at TIME (RFC 3339, or a duration ago: 2h, 3d): backups
    /// deleted or overwritten since come back from the bucket's versions (S3 with versioning)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub as_of: Option<std::time::SystemTime>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this destination [default: all]
    #[arg(long = "dest", short = 'd', value_name = "NAME")]
    pub dest: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup id, or `latest`
    #[arg(value_name = "ID", default_value = "latest")]
    pub id: String,

    /// Restore the newest good backup taken at or before TIME (RFC 3339, or a duration ago:
    /// 2h, 3d) instead of naming one
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "id")]
    pub at: Option<std::time::SystemTime>,

    /// Show the plan (the backups read, the bytes downloaded, the space needed, the checks, an
    /// estimate of the time) without downloading any archive or changing anything
    #[arg(long)]
    pub dry_run: bool,

    /// Folder to restore into; each source becomes DIR/<source name>
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "in_place",
        conflicts_with = "in_place"
    )]
    pub to: Option<PathBuf>,

    /// Put each source back at its configured path, on this server (see the README first)
    #[arg(long)]
    pub in_place: bool,

    /// Restore only this source, or one database or file by its path in the backup
    /// (tenants/a.db), or all that a pattern matches ('tenants/*.db'); repeat for several
    /// [default: all in the backup]
    #[arg(long, value_name = "SOURCE")]
    pub only: Vec<String>,

    /// With --in-place: do not back up the current state before replacing it
    #[arg(long, conflicts_with = "to")]
    pub no_safety_backup: bool,

    /// With --in-place: replace databases even if another process has them open
    #[arg(long, conflicts_with = "to")]
    pub force: bool,

    /// With --in-place: if another run holds the lock, wait this long for it
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "to")]
    pub wait: Option<Duration>,

    /// Destination to restore from [default: the first that holds the backup]
    #[arg(long = "dest", short = 'd', value_name = "NAME")]
    pub dest: Option<String>,

    /// Run integrity_check on each database instead of quick_check
    #[arg(long)]
    pub deep: bool,

    /// With --to, as root: give each restored file and folder the owner, group and mode the
    /// backup recorded [default: 0600 files in 0700 folders, owned by whoever restores]
    #[arg(long, conflicts_with = "in_place")]
    pub same_owner: bool,

    /// See the destinations as they were at TIME (RFC 3339, or a duration ago: 2h, 3d): backups
    /// deleted or overwritten since come back from the bucket's versions (S3 with versioning).
    /// Not --at: --as-of is the bucket's past, --at the backup chosen within it
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub as_of: Option<std::time::SystemTime>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Backup id, or `latest`
    #[arg(value_name = "ID", conflicts_with = "all")]
    pub id: Option<String>,

    /// Verify every backup
    #[arg(long)]
    pub all: bool,

    /// Verify a rotating share of each destination's stored bytes (5%) or an amount (2GiB): the
    /// backups never verified first, then those verified longest ago
    #[arg(long, value_name = "PERCENT|SIZE", value_parser = parse_sample, conflicts_with_all = ["id", "all", "restore_test"])]
    pub sample: Option<Sample>,

    /// Verify on this destination only [default: all]
    #[arg(long = "dest", short = 'd', value_name = "NAME")]
    pub dest: Option<String>,

    /// A restore drill: also run foreign_key_check and compare row counts with the manifest,
    /// and print a report per database
    #[arg(long)]
    pub restore_test: bool,

    /// See the destinations as they were at TIME (RFC 3339, or a duration ago: 2h, 3d): backups
    /// deleted or overwritten since come back from the bucket's versions (S3 with versioning)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub as_of: Option<std::time::SystemTime>,
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// Backup id to re-encrypt
    #[arg(
        value_name = "ID",
        required_unless_present_any = ["all", "adopt"],
        conflicts_with = "all"
    )]
    pub id: Option<String>,

    /// Re-encrypt every backup not already encrypted to exactly the current recipients
    #[arg(long)]
    pub all: bool,

    /// Also re-encrypt and re-sign this unsigned or foreign-signed backup: this host vouches
    /// for it from now on (repeatable)
    #[arg(long, value_name = "ID")]
    pub adopt: Vec<String>,

    /// Work on this destination only [default: all]
    #[arg(long = "dest", short = 'd', value_name = "NAME")]
    pub dest: Option<String>,

    /// If another run holds the lock, wait this long for it instead of exiting 5
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Prune this destination only [default: all]
    #[arg(long = "dest", short = 'd', value_name = "NAME")]
    pub dest: Option<String>,

    /// Show what would be deleted and why, delete nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,

    /// If another run holds the lock, wait this long for it instead of exiting 5
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The destination to copy from
    #[arg(long, value_name = "NAME")]
    pub from: String,

    /// The destination to copy to
    #[arg(long, value_name = "NAME")]
    pub to: String,

    /// Copy these backups (with the backups they build on) [default: every backup --to lacks]
    #[arg(value_name = "ID", conflicts_with = "all")]
    pub ids: Vec<String>,

    /// Copy every backup --to lacks (the default, said explicitly)
    #[arg(long)]
    pub all: bool,

    /// If another run holds the lock, wait this long for it instead of exiting 5
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,

    /// Copy from --from as it was at TIME (RFC 3339, or a duration ago: 2h, 3d), from the
    /// bucket's versions: the last step of recovering from an attack, into a clean destination
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub as_of: Option<std::time::SystemTime>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check only this destination (repeat for several) [default: all]
    #[arg(long = "dest", short = 'd', value_name = "NAME")]
    pub dest: Vec<String>,

    /// Check what this host's role needs, and nothing else [default: everything]
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Option<Role>,
}

/// The three roles a host can hold: see the README's Roles section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The server: adds backups; should not be able to delete them, nor hold an identity
    Backup,
    /// A drill runner or workstation: reads and opens backups
    Restore,
    /// A trusted host that prunes, re-keys and copies: needs delete and rename
    Maintenance,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Folder to write litevault.1 and one page per command into
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// A point in time: RFC 3339 (`2026-12-01T03:00:00Z`), or a duration ago (`2h`, `3d`).
pub fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.into());
    }
    match humantime::parse_duration(s) {
        Ok(ago) => std::time::SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{s} ago is before the epoch")),
        Err(_) => Err(format!(
            "{s:?} is not a time: write one as 2026-12-01T03:00:00Z (RFC 3339) or as a duration ago, like 2h or 3d"
        )),
    }
}

/// How much of each destination `verify --sample` reads in one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// A share of the stored bytes, in percent (0 < p <= 100).
    Percent(f64),
    Bytes(u64),
}

/// `5%`, `0.5%`, or a size: `2GiB`, `500MB`, `1000000`.
pub fn parse_sample(s: &str) -> Result<Sample, String> {
    let bad = || {
        format!("{s:?} is not a sample: write a share of the stored bytes (5%, 0.5%) or a size (2GiB, 500MB)")
    };
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        return if p > 0.0 && p <= 100.0 {
            Ok(Sample::Percent(p))
        } else {
            Err(format!(
                "{s:?}: a share must be more than 0% and at most 100%"
            ))
        };
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1024.0 * 1024.0,
        "GB" => 1e9,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1e12,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    match (num * mult) as u64 {
        0 => Err(bad()),
        n => Ok(Sample::Bytes(n)),
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write durations like 90s, 10m, 24h, 7d)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn interface_spellings_parse() {
        for args in [
            &["litevault", "backup", "--dest", "a", "--dest", "b"][..],
            &["litevault", "--config", "x.toml", "--quiet", "list"],
            &["litevault", "--json", "list", "--dest", "a"],
            &[
                "litevault",
                "restore",
                "latest",
                "--to",
                "/tmp/x",
                "--dest",
                "a",
            ],
            &["litevault", "restore", "--to", "/tmp/x"],
            &["litevault", "verify", "--all", "--dest", "a"],
            &["litevault", "verify", "20261126T091938Z-ab12"],
            &["litevault", "prune", "--dest", "a", "--dry-run"],
            &["litevault", "backup", "--wait", "10m"],
            &["litevault", "check", "--dest", "a"],
            &["litevault", "history", "--limit", "5"],
            &[
                "litevault",
                "restore",
                "latest",
                "--in-place",
                "--only",
                "auth.db",
                "--no-safety-backup",
                "--force",
            ],
            &["litevault", "verify", "--all", "--restore-test"],
            &["litevault", "verify", "--sample", "5%", "--dest", "a"],
            &["litevault", "verify", "--sample", "2GiB"],
            &[
                "litevault",
                "backup",
                "--if-older-than",
                "24h",
                "--retries",
                "2",
                "--retry-delay",
                "1s",
            ],
            &["litevault", "--metrics-file", "/tmp/m.prom", "prune"],
            &["litevault", "show", "latest", "--dest", "a", "--json"],
            &["litevault", "show", "20261126T091938Z-ab12"],
            &[
                "litevault",
                "list",
                "--all-hosts",
                "--dest",
                "s3",
                "--metrics-file",
                "/tmp/fleet.prom",
            ],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    /// The shipped crontab and systemd unit use spellings that parse.
    #[test]
    fn example_invocations_parse() {
        let crontab = include_str!("../examples/crontab");
        let services = [
            include_str!("../examples/systemd/litevault-backup.service"),
            include_str!("../examples/systemd/litevault-verify.service"),
        ];
        // A job commented out for another host (`# 11 5 * * 0  litevault verify ...`) counts.
        // cron reads `\%` as `%`, and systemd reads `%%` so.
        let lines = crontab
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(job) if job.starts_with(|c: char| c.is_ascii_digit()) => job,
                _ => l,
            })
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                l.split_once("litevault ")
                    .map(|(_, rest)| rest.replace("\\%", "%"))
            })
            .chain(services.iter().flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.strip_prefix("ExecStart=/usr/bin/litevault "))
                    .map(|rest| rest.replace("%%", "%"))
            }));
        let mut n = 0;
        for rest in lines {
            let args = std::iter::once("litevault").chain(rest.split_whitespace());
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{rest}: {e}"));
            n += 1;
        }
        assert_eq!(n, 7);
    }

    #[test]
    fn restore_needs_exactly_one_target() {
        assert!(Cli::try_parse_from(["litevault", "restore", "latest"]).is_err());
        assert!(Cli::try_parse_from(["litevault", "restore", "--to", "/x", "--in-place"]).is_err());
        assert!(Cli::try_parse_from(["litevault", "restore", "--to", "/x", "--force"]).is_err());
    }

    #[test]
    fn restore_at_conflicts_with_an_id_but_not_with_as_of() {
        let parse = |args: &[&str]| {
            let mut all = vec!["litevault", "restore", "--to", "/x"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        assert!(parse(&["--at", "2h"]).is_ok());
        assert!(parse(&["--at", "2h", "--as-of", "1h", "--dry-run"]).is_ok());
        assert!(parse(&["20261126T031500Z-3fa9", "--at", "2h"]).is_err());
    }

    #[test]
    fn sample_sizes_parse_and_nonsense_is_refused() {
        for (text, want) in [
            ("5%", Sample::Percent(5.0)),
            ("0.5%", Sample::Percent(0.5)),
            ("100%", Sample::Percent(100.0)),
            ("2GiB", Sample::Bytes(2 << 30)),
            ("500MB", Sample::Bytes(500_000_000)),
            ("1000", Sample::Bytes(1000)),
        ] {
            assert_eq!(parse_sample(text), Ok(want), "{text}");
        }
        for bad in ["0%", "101%", "-5%", "five%", "2XB", "0", "", "%"] {
            assert!(parse_sample(bad).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["litevault", "verify", "--sample", "5%", "--all"]).is_err());
        assert!(Cli::try_parse_from(["litevault", "verify", "latest", "--sample", "5%"]).is_err());
    }

    #[test]
    fn bad_duration_is_refused_with_an_example() {
        let err = Cli::try_parse_from(["litevault", "backup", "--wait", "soon"]).unwrap_err();
        assert!(err.to_string().contains("10m"), "{err}");
    }
}
