//! `check`'s word on an S3 destination's bucket: whether it keeps versions, its object lock
//! default retention, and whether that retention covers what the retention policy keeps plus
//! the longest chain (so that every backup prune would still keep is also undeletable). A
//! request the credential may not make, or the server does not answer, is a note: the
//! destination's own check stands.

use std::time::Duration;

use serde::Serialize;

use crate::config::{DestinationConfig, Settings};
use crate::storage::bucket::{Answer, Bucket, Versioning};

/// Where the README says how to set a bucket up.
pub const RUNBOOK: &str = "README: \"When the bucket was attacked\"";

#[derive(Debug, Serialize)]
pub struct BucketReport {
    pub destination: String,
    /// `enabled`, `suspended`, `off`, or `unknown` (refused or not answered: see `notes`).
    pub versioning: String,
    /// `{"mode", "days"}`, or `"none"`, or `"unknown"`.
    pub default_retention: serde_json::Value,
    /// Days a version must stay locked: the retention policy's reach plus the longest chain.
    pub needed_days: u64,
    /// Whether the default retention is at least `needed_days`; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covers: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the line says.
    #[serde(skip)]
    pub summary: String,
}

/// Ask `bucket` and judge its answers against `cfg`'s policy; `warnings` gets what the user
/// should change.
pub fn report(
    settings: &Settings,
    cfg: &DestinationConfig,
    bucket: &Bucket,
    warnings: &mut Vec<String>,
) -> BucketReport {
    let (versioning, retention) = bucket.status();
    let reach = settings.policy_for(cfg).reach();
    // A kept incremental needs its full backup, which is up to `full_every` older.
    let chain = settings
        .incremental
        .as_ref()
        .map(|i| i.full_every)
        .unwrap_or(Duration::ZERO);
    let needed_days = (reach.span + chain).as_secs().div_ceil(86_400);
    let name = &cfg.name;
    let mut notes = Vec::new();
    let what_needs = format!(
        "the retention policy ({}) plus the longest chain ({}): {needed_days} day(s)",
        crate::ui::duration(reach.span),
        if chain.is_zero() {
            "none, no [incremental]".to_string()
        } else {
            format!("full_every = {}", crate::ui::duration(chain))
        },
    );
    if reach.counts_only {
        notes.push(format!(
            "keep_last counts backups, not time, so it is not in the {needed_days} day(s): a default retention must also cover that many backups at this host's backup interval"
        ));
    }

    let versioning_word = match &versioning {
        Answer::Known(Versioning::Enabled) => "on",
        Answer::Known(Versioning::Suspended) => {
            warnings.push(format!(
                "destination {name}: the bucket's versioning is suspended: a delete or an overwrite there is final; turn versioning on ({RUNBOOK})"
            ));
            "suspended"
        }
        Answer::Known(Versioning::Off) => {
            warnings.push(format!(
                "destination {name}: the bucket keeps no versions (versioning is off): whoever holds a credential that can delete can erase its backups for good; turn versioning on and set an object lock default retention ({RUNBOOK})"
            ));
            "off"
        }
        Answer::Refused(why) => {
            notes.push(refused("versioning", "s3:GetBucketVersioning", why));
            "unknown"
        }
        Answer::Unknown(why) => {
            notes.push(format!(
                "the server did not say whether the bucket keeps versions ({why})"
            ));
            "unknown"
        }
    };

    let (retention_json, retention_words, covers) = match &retention {
        Answer::Known(Some(r)) => {
            let covers = r.days >= needed_days;
            if !covers {
                warnings.push(format!(
                    "destination {name}: the bucket's object lock default retention ({} day(s)) does not cover {what_needs}; a backup prune still keeps could be deleted for good: raise the default retention to at least {needed_days} day(s) ({RUNBOOK})",
                    r.days
                ));
            }
            (
                serde_json::json!({"mode": r.mode, "days": r.days}),
                format!(
                    "object lock default retention {} {} day(s), which {} {what_needs}",
                    r.mode,
                    r.days,
                    if covers { "covers" } else { "does not cover" }
                ),
                Some(covers),
            )
        }
        Answer::Known(None) => {
            // Versioning off was warned about already, with the same advice.
            if versioning.known() == Some(&Versioning::Enabled) {
                warnings.push(format!(
                    "destination {name}: the bucket has no object lock default retention: a credential that can delete versions can still erase backups; set one of at least {needed_days} day(s) ({RUNBOOK})"
                ));
            }
            (
                serde_json::json!("none"),
                "no object lock default retention".to_string(),
                Some(false),
            )
        }
        Answer::Refused(why) => {
            notes.push(refused(
                "object lock configuration",
                "s3:GetBucketObjectLockConfiguration",
                why,
            ));
            (
                serde_json::json!("unknown"),
                "object lock unknown".into(),
                None,
            )
        }
        Answer::Unknown(why) => {
            notes.push(format!(
                "the server did not say whether the bucket has object lock ({why})"
            ));
            (
                serde_json::json!("unknown"),
                "object lock unknown".into(),
                None,
            )
        }
    };
    BucketReport {
        destination: name.clone(),
        versioning: match versioning_word {
            "on" => "enabled".into(),
            other => other.into(),
        },
        default_retention: retention_json,
        needed_days,
        covers,
        notes,
        summary: format!("versioning {versioning_word}; {retention_words}"),
    }
}

/// A 403: most often an IAM policy without the bucket's read action, which is worth naming.
fn refused(what: &str, action: &str, why: &str) -> String {
    if why.contains("AccessDenied") {
        format!("this credential may not read the bucket's {what} ({why}); allow {action} on the bucket to have it checked")
    } else {
        format!("the server refused to say the bucket's {what} ({why})")
    }
}
