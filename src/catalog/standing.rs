//! The one judgement of a backup: what every command that chooses, counts, keeps, deletes,
//! re-signs, copies or builds on a backup asks, instead of looking at sidecars or verdicts on
//! its own.
//!
//! A backup's standing is decided once per listing, from what the listing found (the stored
//! archive's size), what the trusted signers make of its sidecar, the namespace it sits in, the
//! clock, and (for an incremental) every link under it. Only a [`Good`] backup can be handed to
//! retention or to the incremental planner, so a forgotten check is a type error.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::Backup;
use crate::exit::Exit;
use crate::trust::Verdict;

/// How far ahead of this host's clock a backup may be dated and still count: clocks drift by
/// seconds, not minutes. Retention refuses to decide on anything dated further ahead.
pub const CLOCK_SKEW: Duration = crate::retention::FUTURE_TOLERANCE;

/// Where a backup stands. Anything but `Good` is never `latest`, never counted, never pruned,
/// never re-signed, never built on, never copied as good: it is reported and left for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Good,
    /// Its archive is missing or not the size its sidecar says (why).
    Damaged(String),
    /// The trusted signers do not vouch for its sidecar (why).
    Untrusted(String),
    /// Its sidecar names another host than the namespace it sits in: a genuine backup copied
    /// into the wrong folder, or a planted one.
    Foreign {
        host: String,
        namespace: String,
    },
    /// Dated this far ahead of this host's clock: one of the two clocks is wrong.
    FutureDated(Duration),
    /// An incremental whose chain is incomplete: the link that breaks it, and how.
    BrokenChain(String),
}

impl Standing {
    pub fn is_good(&self) -> bool {
        *self == Standing::Good
    }

    /// A short word for reports and JSON.
    pub fn label(&self) -> &'static str {
        match self {
            Standing::Good => "good",
            Standing::Damaged(_) => "damaged",
            Standing::Untrusted(_) => "untrusted",
            Standing::Foreign { .. } => "foreign",
            Standing::FutureDated(_) => "future-dated",
            Standing::BrokenChain(_) => "broken-chain",
        }
    }

    /// The exit code a command gives when this standing stops it: a clock is a failure to fix
    /// here; everything else is an integrity finding.
    pub fn exit(&self) -> Exit {
        match self {
            Standing::Good => Exit::Success,
            Standing::FutureDated(_) => Exit::Failure,
            _ => Exit::Integrity,
        }
    }

    /// What a restore of this backup would be told to do instead.
    pub fn hint(&self) -> &'static str {
        match self {
            Standing::Good => "",
            Standing::Damaged(_) | Standing::BrokenChain(_) => {
                "restore an older backup (`litevault list` marks the damaged ones), or this one from another destination"
            }
            Standing::Untrusted(_) => {
                "only backups signed by a key in [trust] are restored; if this one is genuine, add its signer's public key to [trust] signers"
            }
            Standing::Foreign { .. } => {
                "it was made by another host: restore it by its id if you mean to (litevault warns), or restore this host's own backups"
            }
            Standing::FutureDated(_) => {
                "check this host's clock and the clock of the host that took it (NTP)"
            }
        }
    }
}

impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Standing::Good => f.write_str("good"),
            Standing::Damaged(why) => write!(f, "it is damaged ({why})"),
            Standing::Untrusted(why) => write!(f, "it is not trusted: {why}"),
            Standing::Foreign { host, namespace } => write!(
                f,
                "it was made by host {host:?}, not by {namespace:?} whose folder holds it"
            ),
            Standing::FutureDated(ahead) => write!(
                f,
                "it is dated {} ahead of this host's clock (check both clocks)",
                crate::ui::duration(*ahead)
            ),
            Standing::BrokenChain(why) => write!(f, "{why}"),
        }
    }
}

/// What the listing knows of one backup, before the chain under it is looked at.
pub struct Facts<'a> {
    /// Why its stored archive does not match the sidecar, if it does not.
    pub damage: Option<String>,
    pub trust: &'a Verdict,
    /// The host its manifest names.
    pub host: &'a str,
    /// The namespace it was found in; `None` where the destination was opened at its root.
    pub namespace: Option<&'a str>,
    pub created: SystemTime,
}

/// The judgement of one backup on its own; [`super::list`] and the chain resolver then turn a
/// `Good` incremental whose chain is incomplete into `BrokenChain`. The order is the order of
/// severity: damage hides everything else.
pub fn judge(facts: &Facts<'_>, now: SystemTime) -> Standing {
    if let Some(damage) = &facts.damage {
        return Standing::Damaged(damage.clone());
    }
    if !facts.trust.is_good() {
        return Standing::Untrusted(facts.trust.to_string());
    }
    if let Some(namespace) = facts.namespace {
        if facts.host != namespace {
            return Standing::Foreign {
                host: facts.host.to_string(),
                namespace: namespace.to_string(),
            };
        }
    }
    if facts.created > now + CLOCK_SKEW {
        return Standing::FutureDated(facts.created.duration_since(now).unwrap_or_default());
    }
    Standing::Good
}

/// A backup known to be good: the only thing retention and the incremental planner accept.
#[derive(Debug, Clone, Copy)]
pub struct Good<'a>(&'a Backup);

impl<'a> Good<'a> {
    pub fn backup(&self) -> &'a Backup {
        self.0
    }
}

impl std::ops::Deref for Good<'_> {
    type Target = Backup;
    fn deref(&self) -> &Backup {
        self.0
    }
}

impl crate::retention::Dated for Good<'_> {
    fn id(&self) -> &str {
        &self.0.id
    }
    fn created(&self) -> SystemTime {
        self.0.created
    }
}

impl Backup {
    /// This backup as a [`Good`] one, if it is.
    pub fn good(&self) -> Option<Good<'_>> {
        self.standing.is_good().then_some(Good(self))
    }

    /// Why this backup must not be counted, restored, built on or called `latest`, if it must
    /// not.
    pub fn refusal(&self) -> Option<&Standing> {
        (!self.standing.is_good()).then_some(&self.standing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_comes_first_then_trust_host_and_clock() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let trusted = Verdict::NotRequired;
        let unsigned = Verdict::Unsigned;
        let facts = |damage: Option<&str>, trust, host, ahead: u64| Facts {
            damage: damage.map(str::to_string),
            trust,
            host,
            namespace: Some("web2"),
            created: now + Duration::from_secs(ahead),
        };
        let cases: Vec<(Facts<'_>, &str)> = vec![
            (facts(None, &trusted, "web2", 0), "good"),
            (facts(None, &trusted, "web2", 299), "good"),
            (facts(None, &trusted, "web2", 3600), "future-dated"),
            (facts(None, &trusted, "web1", 0), "foreign"),
            (facts(None, &trusted, "web1", 3600), "foreign"),
            (facts(None, &unsigned, "web1", 3600), "untrusted"),
            (facts(Some("cut"), &unsigned, "web1", 3600), "damaged"),
        ];
        for (f, want) in cases {
            assert_eq!(judge(&f, now).label(), want);
        }
        let root = Facts {
            namespace: None,
            ..facts(None, &trusted, "web1", 0)
        };
        assert!(judge(&root, now).is_good(), "no namespace to be foreign to");
    }
}
