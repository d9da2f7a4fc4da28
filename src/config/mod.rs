//! The TOML configuration file, read once and turned into a validated [`Settings`].
//!
//! Everything a run needs is checked here, before any work starts: an unknown key, a duplicate
//! source name or an out-of-range level is an exit-2 error naming the key, not a surprise half-way
//! through a backup. Relative paths are taken relative to the config file's folder, so a config
//! can travel with its data (the quickstart does this); `$CREDENTIALS_DIRECTORY` in a path is
//! expanded (see `paths`).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::exit::config as config_error;
use crate::retention::Policy;
mod destination;
mod keys;
mod paths;
mod sources;
pub use destination::{
    DestinationConfig, DEFAULT_PARALLEL_DOWNLOAD_THRESHOLD, DEFAULT_SMALL_READ_CONCURRENCY,
};
pub use keys::{Encryption, Signing, Trust};
use paths::Paths;

const DEFAULT_STATE_DIR: &str = "/var/lib/litevault";

/// Names that the archive itself uses at its top level; a source may not take them.
pub const RESERVED_NAMES: [&str; 2] = ["manifest.json", "BLAKE3SUMS"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    state_dir: Option<PathBuf>,
    workers: Option<usize>,
    #[serde(default, rename = "source")]
    sources: Vec<sources::RawSource>,
    #[serde(default)]
    compression: RawCompression,
    encryption: Option<keys::RawEncryption>,
    signing: Option<keys::RawSigning>,
    trust: Option<keys::RawTrust>,
    #[serde(default)]
    retention: RawRetention,
    incremental: Option<RawIncremental>,
    #[serde(default, rename = "destination")]
    destinations: Vec<destination::RawDestination>,
    #[serde(default)]
    hooks: RawHooks,
    #[serde(default)]
    history: RawHistory,
    metrics_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncremental {
    full_every: Option<String>,
    max_chain: Option<u32>,
    max_chain_size: Option<String>,
}

/// `[incremental]`: when a backup may store only the pages changed since its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incremental {
    /// A full backup once the chain's full backup is this old.
    pub full_every: Duration,
    /// At most this many incrementals on one full backup.
    pub max_chain: u32,
    /// The incrementals of one chain together store at most this share (percent) of their
    /// full backup's stored bytes: a restore reads the whole chain, so this bounds what
    /// restoring the newest costs against restoring a full backup.
    pub max_chain_size: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    before_backup: Option<String>,
    after_backup: Option<String>,
    on_success: Option<String>,
    on_failure: Option<String>,
    before_restore: Option<String>,
    after_restore: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    keep_runs: Option<u32>,
    keep_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompression {
    algorithm: Option<String>,
    level: Option<i32>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    keep_within: Option<String>,
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    #[serde(default)]
    prune_after_backup: bool,
}

pub use crate::vocabulary::Compression;
pub use sources::{Check, Discover, Source, SourceKind, MATCH};

/// A validated configuration: every field has been checked and every path made absolute.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: PathBuf,
    pub name: String,
    pub state_dir: PathBuf,
    pub workers: usize,
    pub sources: Vec<Source>,
    pub compression: Compression,
    pub encryption: Option<Encryption>,
    /// `[encryption] none = true`: unencrypted on purpose, so backups do not warn about it.
    pub unencrypted_by_choice: bool,
    /// The key this host signs its backups' sidecars with.
    pub signing: Option<Signing>,
    /// The signers whose backups this host trusts; empty: no signature is required.
    pub trust: Trust,
    pub retention: Policy,
    pub prune_after_backup: bool,
    /// Without `[incremental]` every backup is full.
    pub incremental: Option<Incremental>,
    pub destinations: Vec<DestinationConfig>,
    pub hooks: crate::hooks::Hooks,
    /// How much of the execution store to keep.
    pub history: crate::journal::Keep,
    /// Where to write Prometheus metrics after each run (node_exporter's textfile collector).
    pub metrics_file: Option<PathBuf>,
}

impl Settings {
    /// The destinations a command works on: all of them, or those named with `--dest`.
    pub fn select_destinations(&self, names: &[String]) -> Result<Vec<&DestinationConfig>> {
        if names.is_empty() {
            return Ok(self.destinations.iter().collect());
        }
        let mut picked = Vec::new();
        for name in names {
            let dest = self
                .destinations
                .iter()
                .find(|d| &d.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        self.destinations.iter().map(|d| d.name.as_str()).collect();
                    config_error(format!(
                        "no destination named {name:?} in {} (known: {})",
                        self.config_path.display(),
                        known.join(", ")
                    ))
                    .hint(format!(
                        "--dest takes the name of a [[destination]] table in the config: one of {}",
                        known.join(", ")
                    ))
                })?;
            if !picked
                .iter()
                .any(|d: &&DestinationConfig| d.name == dest.name)
            {
                picked.push(dest);
            }
        }
        Ok(picked)
    }

    pub fn policy_for(&self, dest: &DestinationConfig) -> Policy {
        dest.retention
            .clone()
            .unwrap_or_else(|| self.retention.clone())
    }
}

/// Which config file to read: the flag, else `$LITEVAULT_CONFIG`, else the system default.
pub fn locate(flag: Option<&Path>, env: Option<std::ffi::OsString>) -> PathBuf {
    match (flag, env) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(env)) if !env.is_empty() => PathBuf::from(env),
        _ => PathBuf::from(crate::cli::DEFAULT_CONFIG),
    }
}

pub fn load(path: &Path) -> Result<Settings> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let fault = config_error(format!("cannot read config file {}: {e}", path.display()));
        anyhow::Error::new(fault.hint(
            "pass --config FILE, or set LITEVAULT_CONFIG; start from the commented example, examples/litevault.toml in the source tree or /usr/share/doc/litevault/examples/litevault.toml after a package install",
        ))
    })?;
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<Settings> {
    parse_with_env(text, path, &|name| std::env::var_os(name))
}

/// [`parse`], with the environment that path values may name (`$CREDENTIALS_DIRECTORY`) read
/// through `env`.
pub fn parse_with_env(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Settings> {
    // The message and its line, but not the quoted source line: a misplaced secret must not be
    // echoed into cron mail.
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let place = e
            .span()
            .map(|s| {
                let key = key_at(text, s.start)
                    .map(|k| format!(" (at `{k}`)"))
                    .unwrap_or_default();
                format!(
                    " line {}, column {}{key}:",
                    line_of(text, s.start),
                    column_of(text, s.start)
                )
            })
            .unwrap_or_default();
        config_error(format!(
            "invalid config file {}:{place} {}",
            path.display(),
            e.message().trim_end()
        ))
        .hint(CONFIG_HINT)
    })?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(base)
        .with_context(|| format!("resolving the folder of {}", path.display()))?;
    validate(raw, path, &Paths::new(&base, env))
}

fn validate(raw: RawConfig, path: &Path, paths: &Paths) -> Result<Settings> {
    let fail = |key: &str, why: String| -> anyhow::Error {
        config_error(format!("{}: `{key}` {why}", path.display()))
            .hint(format!("fix `{key}` in the config; every key is listed in README.md (\"Configuration\") and in the commented example, examples/litevault.toml in the source tree or /usr/share/doc/litevault/examples/litevault.toml after a package install"))
            .into()
    };
    let resolve = |key: &str, p: &Path| paths.resolve(key, p).map_err(|(k, why)| fail(&k, why));

    if !is_safe_name(&raw.name) {
        return Err(fail(
            "name",
            format!(
                "is {:?}; it must be 1-64 letters, digits, '.', '-' or '_' (it names this host's folder in each destination)",
                raw.name
            ),
        ));
    }

    let state_dir = resolve(
        "state_dir",
        raw.state_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_STATE_DIR)),
    )?;

    let workers = match raw.workers {
        Some(0) => return Err(fail("workers", "must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };

    let sources = sources::validate(raw.sources, &resolve, &fail)?;

    let compression = match raw.compression.algorithm.as_deref().unwrap_or("zstd") {
        "zstd" => {
            let level = raw.compression.level.unwrap_or(3);
            if !(1..=19).contains(&level) {
                return Err(fail(
                    "compression.level",
                    format!("is {level}; zstd levels run from 1 to 19"),
                ));
            }
            Compression::Zstd { level }
        }
        "gzip" => {
            let level = raw.compression.level.unwrap_or(6);
            if !(1..=9).contains(&level) {
                return Err(fail(
                    "compression.level",
                    format!("is {level}; gzip levels run from 1 to 9"),
                ));
            }
            Compression::Gzip {
                level: level as u32,
            }
        }
        "none" => {
            if raw.compression.level.is_some() {
                return Err(fail(
                    "compression.level",
                    "makes no sense with algorithm = \"none\"".into(),
                ));
            }
            Compression::None
        }
        other => {
            return Err(fail(
                "compression.algorithm",
                format!("is {other:?}; choose \"zstd\", \"gzip\" or \"none\""),
            ))
        }
    };

    let encryption_table = raw.encryption.is_some();
    let encryption = raw
        .encryption
        .map(|e| keys::encryption(e, paths))
        .transpose()
        .map_err(|e| fail(&e.0, e.1))?
        .flatten();
    let unencrypted_by_choice = encryption_table && encryption.is_none();
    let signing = raw
        .signing
        .map(|s| keys::signing(s, paths))
        .transpose()
        .map_err(|e| fail(&e.0, e.1))?;
    let trust = keys::trust(raw.trust.unwrap_or_default(), paths).map_err(|e| fail(&e.0, e.1))?;

    let retention = policy(&raw.retention, "retention").map_err(|e| fail(&e.0, e.1))?;
    let incremental = raw
        .incremental
        .map(incremental)
        .transpose()
        .map_err(|e| fail(&e.0, e.1))?;

    if raw.destinations.is_empty() {
        return Err(fail(
            "destination",
            "is missing: add at least one [[destination]] table with a name and a url".into(),
        ));
    }
    let mut seen = HashSet::new();
    let mut destinations = Vec::new();
    for (i, d) in raw.destinations.into_iter().enumerate() {
        let dest = destination::validate(d, i, paths, &mut seen);
        let dest = dest.map_err(|(key, why)| match why.split_once(destination::HINT) {
            Some((why, hint)) => {
                let fault = config_error(format!("{}: `{key}` {why}", path.display()));
                anyhow::Error::new(fault.hint(hint))
            }
            None => fail(&key, why),
        })?;
        destinations.push(dest);
    }

    let hook_timeout = match &raw.hooks.timeout {
        None => Duration::from_secs(300),
        Some(t) => humantime::parse_duration(t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                fail(
                    "hooks.timeout",
                    format!("is {t:?}; write a duration such as \"5m\""),
                )
            })?,
    };
    let h = raw.hooks;
    let hooks = crate::hooks::Hooks {
        before_backup: h.before_backup,
        after_backup: h.after_backup,
        on_success: h.on_success,
        on_failure: h.on_failure,
        before_restore: h.before_restore,
        after_restore: h.after_restore,
        timeout: hook_timeout,
    };
    let history = crate::journal::Keep {
        runs: raw.history.keep_runs.unwrap_or(1000),
        days: raw.history.keep_days.unwrap_or(180),
    };
    if history.runs == 0 {
        return Err(fail("history.keep_runs", "must be at least 1".into()));
    }

    let metrics_file = raw
        .metrics_file
        .map(|p| resolve("metrics_file", &p))
        .transpose()?;

    Ok(Settings {
        hooks,
        history,
        metrics_file,
        config_path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        name: raw.name,
        state_dir,
        workers,
        sources,
        compression,
        encryption,
        unencrypted_by_choice,
        signing,
        trust,
        retention,
        prune_after_backup: raw.retention.prune_after_backup,
        incremental,
        destinations,
    })
}

/// `[incremental] max_chain_size` by default, in percent: measured so that restoring the
/// newest backup of a chain costs about 1.33x restoring a full one at worst (50% gave 1.50x;
/// BENCHMARKS.md).
pub const DEFAULT_MAX_CHAIN_SIZE: u32 = 20;

fn incremental(raw: RawIncremental) -> std::result::Result<Incremental, (String, String)> {
    let full_every = match &raw.full_every {
        None => Duration::from_secs(7 * 86400),
        Some(text) => humantime::parse_duration(text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                (
                    "incremental.full_every".to_string(),
                    format!("is {text:?}; write a duration such as \"7d\" or \"24h\""),
                )
            })?,
    };
    let max_chain = raw.max_chain.unwrap_or(30);
    if max_chain == 0 || max_chain as usize > crate::vocabulary::MAX_CHAIN {
        return Err((
            "incremental.max_chain".to_string(),
            format!(
                "is {max_chain}; write a number from 1 to {} (each restore reads the whole chain: 30 is a good bound)",
                crate::vocabulary::MAX_CHAIN
            ),
        ));
    }
    let max_chain_size = match &raw.max_chain_size {
        None => DEFAULT_MAX_CHAIN_SIZE,
        Some(text) => text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                (
                    "incremental.max_chain_size".to_string(),
                    format!(
                        "is {text:?}; write a share of the full backup such as \"{DEFAULT_MAX_CHAIN_SIZE}%\" (the chain's incrementals together store at most that much)"
                    ),
                )
            })?,
    };
    Ok(Incremental {
        full_every,
        max_chain,
        max_chain_size,
    })
}

pub(crate) fn policy(
    raw: &RawRetention,
    table: &str,
) -> std::result::Result<Policy, (String, String)> {
    let keep_within = match &raw.keep_within {
        None => None,
        Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
            (
                format!("{table}.keep_within"),
                format!("is {text:?}: {e}; write a duration such as \"36h\" or \"7d\""),
            )
        })?),
    };
    Ok(Policy {
        keep_within: keep_within.map(|d: Duration| d),
        keep_last: raw.keep_last,
        keep_hourly: raw.keep_hourly,
        keep_daily: raw.keep_daily,
        keep_weekly: raw.keep_weekly,
        keep_monthly: raw.keep_monthly,
        keep_yearly: raw.keep_yearly,
    })
}

/// Where every key is described, said with each config error.
pub const CONFIG_HINT: &str = "fix that line of the config; every key is listed in README.md (\"Configuration\") and in the commented example, examples/litevault.toml in the source tree or /usr/share/doc/litevault/examples/litevault.toml after a package install";

/// The key (`table.key`) or table (`[table]`) that the TOML text at `offset` belongs to, for an
/// error message: only names, never a value, and nothing that does not look like a key.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let is_name = |k: &str| {
        !k.is_empty()
            && k.len() <= 64
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let table_of = |line: &str| -> Option<String> {
        let t = line.trim();
        let t = t.strip_prefix('[')?;
        let t = t.trim_start_matches('[');
        let end = t.find(']')?;
        Some(t[..end].trim().to_string())
    };
    let table = text[..line_start]
        .lines()
        .rev()
        .find_map(table_of)
        .filter(|t| is_name(t));
    let line = &text[line_start..line_end];
    if let Some(t) = table_of(line) {
        return is_name(&t).then(|| format!("[{t}]"));
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_string())
        .filter(|k| is_name(k));
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(format!("[{t}]")),
        (None, None) => None,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn column_of(text: &str, offset: usize) -> usize {
    let before = &text[..offset.min(text.len())];
    before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1
}

/// Names that become file names and object-key segments: nothing that could climb out of a folder.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests;
