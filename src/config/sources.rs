//! The `[[source]]` tables: what each names, and for a source that finds its databases by
//! pattern, the patterns, checked here so that a typo or a pattern that climbs out of its folder
//! is a config error naming the key, before any work starts.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

pub use crate::vocabulary::{Check, SourceKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    name: String,
    path: PathBuf,
    kind: SourceKind,
    check: Option<Check>,
    /// `sqlite`: the databases below `path` (a folder) whose relative paths match.
    pattern: Option<String>,
    /// `sqlite` with a pattern: relative paths left out.
    #[serde(default)]
    exclude: Vec<String>,
    /// `dir`: relative paths stored as bytes even when they are SQLite databases.
    #[serde(default)]
    as_bytes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    /// The file or folder; for a source with a pattern, the folder the pattern is below.
    pub path: PathBuf,
    pub kind: SourceKind,
    pub check: Check,
    /// Databases found afresh each run below `path` (a `sqlite` source that names a folder or a
    /// pattern).
    pub discover: Option<Discover>,
    /// Files of a `dir` source stored as bytes on purpose, databases or not.
    pub as_bytes: Vec<glob::Pattern>,
}

/// Which files below a folder are the source's databases.
#[derive(Debug, Clone)]
pub struct Discover {
    /// Relative paths to take; empty: every file that is a SQLite database.
    pub include: Vec<glob::Pattern>,
    pub exclude: Vec<glob::Pattern>,
}

/// How a path pattern matches: `*` and `?` stay within one folder, `**` crosses folders, and a
/// leading dot is matched like any other character (`.hidden.db` is a `*.db`).
pub const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Discover {
    pub fn matches(&self, relative: &str) -> bool {
        let hit = |p: &glob::Pattern| p.matches_with(relative, MATCH);
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }

    /// Whether a file the patterns name must be a database (an explicit pattern), or is taken
    /// only when its header says it is one (a bare folder).
    pub fn strict(&self) -> bool {
        !self.include.is_empty()
    }
}

impl Source {
    /// Whether `relative` (a file below a `dir` source) is to be stored as bytes on purpose.
    pub fn stored_as_bytes(&self, relative: &str) -> bool {
        self.as_bytes
            .iter()
            .any(|p| p.matches_with(relative, MATCH))
    }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A relative pattern that stays below its folder: no root, no `..`.
fn relative_pattern(key: &str, text: &str) -> Result<glob::Pattern, (String, String)> {
    let p = Path::new(text);
    if text.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
    {
        return Err((
            key.to_string(),
            format!(
                "is {text:?}; a pattern is relative to the source's folder and may not climb out of it (no leading `/`, no `..`)"
            ),
        ));
    }
    glob::Pattern::new(text).map_err(|e| {
        (
            key.to_string(),
            format!("is {text:?}, not a valid pattern: {e}"),
        )
    })
}

/// Check every source: names unique and safe, keys that fit the kind, patterns below their
/// folder. `resolve` makes a configured path absolute.
pub(super) fn validate(
    raw: Vec<RawSource>,
    resolve: &dyn Fn(&str, &Path) -> Result<PathBuf, anyhow::Error>,
    fail: &dyn Fn(&str, String) -> anyhow::Error,
) -> Result<Vec<Source>, anyhow::Error> {
    if raw.is_empty() {
        return Err(fail(
            "source",
            "is missing: add at least one [[source]] table".into(),
        ));
    }
    let mut seen = HashSet::new();
    let mut sources = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let key = format!("source[{i}].name");
        if !super::is_safe_name(&s.name) || super::RESERVED_NAMES.contains(&s.name.as_str()) {
            return Err(fail(
                &key,
                format!(
                    "is {:?}; it must be 1-64 letters, digits, '.', '-' or '_', not '.' or '..', \
                     and not manifest.json or BLAKE3SUMS",
                    s.name
                ),
            ));
        }
        if !seen.insert(s.name.clone()) {
            return Err(fail(
                &key,
                format!("{:?} is used twice; source names must be unique", s.name),
            ));
        }
        let sqlite = s.kind == SourceKind::Sqlite;
        if !sqlite && (s.pattern.is_some() || !s.exclude.is_empty()) {
            let which = if s.pattern.is_some() {
                "pattern"
            } else {
                "exclude"
            };
            return Err(fail(
                &format!("source[{i}].{which}"),
                "applies only to kind = \"sqlite\" (a dir source already takes every file below it, and snapshots the databases among them)".into(),
            ));
        }
        if s.kind != SourceKind::Dir && !s.as_bytes.is_empty() {
            return Err(fail(
                &format!("source[{i}].as_bytes"),
                "applies only to kind = \"dir\"".into(),
            ));
        }
        let pattern_err = |(k, why): (String, String)| fail(&k, why);
        let path_text = s.path.to_string_lossy().into_owned();
        let (path, discover) = if sqlite && has_wildcard(&path_text) {
            if s.pattern.is_some() {
                return Err(fail(
                    &format!("source[{i}].pattern"),
                    "cannot be used with a `path` that is already a pattern: put the folder in `path` and the pattern in `pattern`".into(),
                ));
            }
            // The folder is the part before the first wildcard; the rest is the pattern.
            let mut folder = PathBuf::new();
            let mut rest = Vec::new();
            for c in s.path.components() {
                let text = c.as_os_str().to_string_lossy();
                if rest.is_empty() && !has_wildcard(&text) {
                    folder.push(c);
                } else {
                    rest.push(text.into_owned());
                }
            }
            let key = format!("source[{i}].path");
            let pattern = relative_pattern(&key, &rest.join("/")).map_err(pattern_err)?;
            (
                resolve(&key, &folder)?,
                Some(Discover {
                    include: vec![pattern],
                    exclude: Vec::new(),
                }),
            )
        } else {
            let key = format!("source[{i}].path");
            let include = s
                .pattern
                .as_deref()
                .map(|p| relative_pattern(&format!("source[{i}].pattern"), p))
                .transpose()
                .map_err(pattern_err)?;
            (
                resolve(&key, &s.path)?,
                include.map(|p| Discover {
                    include: vec![p],
                    exclude: Vec::new(),
                }),
            )
        };
        let exclude = s
            .exclude
            .iter()
            .enumerate()
            .map(|(j, e)| relative_pattern(&format!("source[{i}].exclude[{j}]"), e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(pattern_err)?;
        let discover = match discover {
            Some(mut d) => {
                d.exclude = exclude;
                Some(d)
            }
            None if !exclude.is_empty() => Some(Discover {
                include: Vec::new(),
                exclude,
            }),
            None => None,
        };
        let as_bytes = s
            .as_bytes
            .iter()
            .enumerate()
            .map(|(j, e)| relative_pattern(&format!("source[{i}].as_bytes[{j}]"), e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(pattern_err)?;
        sources.push(Source {
            name: s.name,
            path,
            kind: s.kind,
            check: s.check.unwrap_or(Check::Quick),
            discover,
            as_bytes,
        });
    }
    Ok(sources)
}
