//! What prune's deletes leave behind on a bucket that keeps versions, and what an object lock
//! retention refuses. On S3 a delete without a version id never removes bytes from a versioned
//! bucket: it adds a delete marker, and the deleted backup stays as noncurrent versions, stored
//! and billed until a lifecycle rule expires them and, under object lock, undeletable until
//! its retain-until date. Prune says so, once per destination.
//!
//! The retain-until date is read, not computed: a signed `HEAD` of the backup's sidecar before
//! it is deleted (the sidecar is written last, so its date is the latest of the backup's
//! objects). The bucket's default retention at prune time may differ from the one the
//! objects were written under (a changed default does not move existing versions), so
//! "upload time + today's default" can be wrong; the server's own date cannot. When the header
//! is withheld (a credential without `s3:GetObjectRetention`), the backup's time plus the
//! default retention is the estimate, and says it is one.
//!
//! A store that refuses the delete itself for a retention (AWS answers `AccessDenied ...
//! object lock` for a version's delete) makes that backup "locked until DATE": not a failure.
//! After one such refusal on a destination, prune does not send the deletes it then knows will
//! be refused: those of backups whose retain-until date has not passed.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::catalog::{self, Good};
use crate::storage::bucket::{Answer, Bucket, DefaultRetention, Versioning};
use crate::storage::Destination;

/// The README section with the lifecycle rule that expires noncurrent versions.
pub const LIFECYCLE: &str = "README: \"Versions and lifecycle rules\"";

/// What the bucket keeps of this run's deletes.
#[derive(Debug, Serialize)]
pub struct KeptVersions {
    /// `enabled` or `suspended`.
    pub versioning: Versioning,
    /// The bucket's object lock default retention, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_retention: Option<DefaultRetention>,
    /// The latest retain-until date among the deleted backups (RFC 3339): until then no one
    /// can remove their versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<String>,
    /// `locked_until` is the backup's time plus the default retention, not the server's date.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

/// A backup the bucket keeps against prune's delete, and until when.
#[derive(Debug, Clone, Serialize)]
pub struct Locked {
    pub id: String,
    /// RFC 3339; absent when the store did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Refused by the store (`true`), or not tried since it would be (`false`).
    pub tried: bool,
}

/// One destination's bucket, watched through a prune.
pub struct Watch {
    bucket: Bucket,
    versioning: Option<Versioning>,
    retention: Option<DefaultRetention>,
    /// The store refused a delete for a retention: later ones still locked are not sent.
    refuses: bool,
    latest: Option<(jiff::Timestamp, bool)>,
}

/// What to do with one backup, decided before its delete.
pub enum Step {
    Delete {
        until: Option<(jiff::Timestamp, bool)>,
    },
    /// Not sent: the store refuses deletes under a retention, and this one's holds.
    Skip(Locked),
}

impl Watch {
    /// `None` for a destination that is not a bucket, or whose bucket cannot be asked.
    pub fn new(dest: &Destination) -> Option<Watch> {
        let bucket = dest.bucket().ok().flatten()?;
        let (versioning, retention) = bucket.status();
        Some(Watch {
            versioning: versioning.known().copied(),
            retention: match retention {
                Answer::Known(r) => r,
                _ => None,
            },
            bucket,
            refuses: false,
            latest: None,
        })
    }

    /// Before deleting `backup`: its retain-until date, when a retention may hold it.
    pub fn before(&mut self, backup: &Good<'_>) -> Step {
        let until = if self.retention.is_some() || self.refuses {
            self.retain_until(backup)
        } else {
            None
        };
        match until {
            Some((date, _)) if self.refuses && date > jiff::Timestamp::now() => {
                Step::Skip(Locked {
                    id: backup.id.clone(),
                    until: Some(date.to_string()),
                    tried: false,
                })
            }
            until => Step::Delete { until },
        }
    }

    /// A delete went through: its versions stay (on a versioned bucket), locked until `until`.
    pub fn deleted(&mut self, until: Option<(jiff::Timestamp, bool)>) {
        if let Some(u) = until {
            if self.latest.is_none_or(|l| u.0 > l.0) {
                self.latest = Some(u);
            }
        }
    }

    /// A delete failed: `Some` when the store refused it for a retention (not a failure).
    pub fn refused(
        &mut self,
        backup: &Good<'_>,
        until: Option<(jiff::Timestamp, bool)>,
        error: &str,
    ) -> Option<Locked> {
        if !lock_refusal(error) {
            return None;
        }
        self.refuses = true;
        let until = until.or_else(|| self.retain_until(backup));
        Some(Locked {
            id: backup.id.clone(),
            until: until.map(|u| u.0.to_string()),
            tried: true,
        })
    }

    /// What the bucket keeps of the deletes, when it keeps versions and anything was deleted.
    pub fn kept(&self, deleted: usize) -> Option<KeptVersions> {
        let versioning = self.versioning.filter(|v| *v != Versioning::Off)?;
        (deleted > 0).then(|| KeptVersions {
            versioning,
            default_retention: self.retention.clone(),
            locked_until: self.latest.map(|l| l.0.to_string()),
            estimated: self.latest.is_some_and(|l| l.1),
        })
    }

    /// The server's date for the sidecar's current version, else (`true`: estimated) the
    /// backup's time plus the default retention.
    fn retain_until(&self, backup: &Good<'_>) -> Option<(jiff::Timestamp, bool)> {
        if let Answer::Known(Some(date)) =
            self.bucket.retain_until(&catalog::sidecar_name(&backup.id))
        {
            return Some((date, false));
        }
        let days = self.retention.as_ref()?.days;
        let until = backup.created + Duration::from_secs(days * 86_400);
        let since = until.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        jiff::Timestamp::from_second(since.as_secs() as i64)
            .ok()
            .map(|t| (t, true))
    }
}

/// Whether a refused delete names a retention (object lock, WORM) rather than missing rights.
fn lock_refusal(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    [
        "object lock",
        "objectlock",
        "object-lock",
        "retention",
        "worm",
    ]
    .iter()
    .any(|needle| e.contains(needle))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_for_a_retention_is_told_from_missing_rights() {
        assert!(super::lock_refusal(
            "PermissionDenied: AccessDenied: Access Denied because object protected by object lock."
        ));
        assert!(!super::lock_refusal(
            "PermissionDenied: AccessDenied: Access Denied"
        ));
    }
}
