//! The databases that sources with a pattern found on the last backup, kept in `state_dir`, so
//! that one that disappeared is named (a warning: older backups keep it). Only a report reads
//! it: a planted or lost file changes what is said, never what is stored.

use std::collections::BTreeMap;

use crate::state::StateDir;

const FILE: &str = "databases.json";

/// The databases found last time that are not found now, each named once.
pub fn gone(state: &StateDir, now: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let Ok(Some(body)) = state.read_file(FILE) else {
        return Vec::new();
    };
    let Ok(before) = serde_json::from_slice::<BTreeMap<String, Vec<String>>>(&body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (source, paths) in &before {
        let present: std::collections::HashSet<&String> = now
            .get(source)
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        for path in paths.iter().filter(|p| !present.contains(p)) {
            out.push(format!(
                "database {path} of source {source} is gone since the last backup (renamed or removed); older backups keep it"
            ));
        }
    }
    out
}

/// Keep what was found for the next run; a failure to keep it only loses that report.
pub fn remember(
    state: &StateDir,
    found: &BTreeMap<String, Vec<String>>,
    warnings: &mut Vec<String>,
) {
    let body = serde_json::to_vec(found).expect("a map of strings always serialises");
    if let Err(e) = state.replace_file(FILE, &body) {
        warnings.push(format!(
            "cannot keep the list of databases found ({e:#}); the next backup cannot say which are gone"
        ));
    }
}
