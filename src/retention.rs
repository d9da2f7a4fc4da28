//! The retention policy as a pure function: (backups, policy, now) -> keep or delete, each with
//! its reasons. Nothing here touches storage, so every rule is tested by a table.
//!
//! The semantics are restic's: the kept set is the union of every rule; `keep_within` counts back
//! from the newest backup (not from now, so a host that stopped backing up does not lose its last
//! copies); the calendar rules keep the newest backup in each of the last N hours, days, ISO weeks,
//! months or years that have one. Calendar buckets are in UTC, so a policy means the same on every
//! host. The newest backup is always kept.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_within: Option<Duration>,
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// How far back the policy keeps backups, as a time: each rule keeps on its own, so the
    /// reach is its longest rule (`keep_daily N` N days, `keep_weekly` 7N, `keep_monthly` 31N,
    /// `keep_yearly` 366N, `keep_hourly` N hours, `keep_within` itself). `keep_last` counts
    /// backups, not time, so it has no reach of its own: `counts_only` says it is there.
    pub fn reach(&self) -> Reach {
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        let rules = [
            (self.keep_hourly, HOUR),
            (self.keep_daily, DAY),
            (self.keep_weekly, 7 * DAY),
            (self.keep_monthly, 31 * DAY),
            (self.keep_yearly, 366 * DAY),
        ];
        let calendar = rules
            .iter()
            .filter_map(|(n, unit)| n.map(|n| Duration::from_secs(n as u64 * unit)));
        Reach {
            span: calendar
                .chain(self.keep_within)
                .max()
                .unwrap_or(Duration::ZERO),
            counts_only: self.keep_last.is_some(),
        }
    }
}

/// What [`Policy::reach`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    pub span: Duration,
    /// `keep_last` is set: it may keep backups older than `span`, by how many there are.
    pub counts_only: bool,
}

/// One backup as the policy sees it. Only good backups are (`catalog::Good`): a damaged,
/// untrusted, foreign or future-dated one must never count toward a rule, so nothing else
/// implements this outside tests.
pub trait Dated {
    fn id(&self) -> &str;
    fn created(&self) -> SystemTime;
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    /// Why it is kept ("last 3", "daily 2/7", "within 7d", "newest"); empty for deletions.
    pub reasons: Vec<String>,
}

#[derive(Debug)]
pub enum Refusal {
    NoPolicy,
    FromTheFuture { id: String, ahead: Duration },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoPolicy => write!(
                f,
                "no retention policy is configured, so prune would not know what to keep"
            ),
            Refusal::FromTheFuture { id, ahead } => write!(
                f,
                "backup {id} is dated {} in the future; the clock of this host or of the host that took it is wrong",
                crate::ui::duration(*ahead)
            ),
        }
    }
}

/// A backup more than this far ahead of `now` means a clock is wrong, and deciding ages against
/// a wrong clock could delete the wrong backups. Clocks drift by seconds; this is the same
/// bound everywhere a backup is judged (`catalog::CLOCK_SKEW`).
pub const FUTURE_TOLERANCE: Duration = Duration::from_secs(300);

/// Decide, for each backup, whether the policy keeps it. The result is in the same order as the
/// input sorted newest first.
pub fn decide<T: Dated>(
    items: &[T],
    policy: &Policy,
    now: SystemTime,
) -> Result<Vec<Decision>, Refusal> {
    if policy.is_empty() {
        return Err(Refusal::NoPolicy);
    }
    let mut items: Vec<&T> = items.iter().collect();
    items.sort_by(|a, b| {
        b.created()
            .cmp(&a.created())
            .then_with(|| b.id().cmp(a.id()))
    });
    if let Some(future) = items.iter().find(|i| i.created() > now + FUTURE_TOLERANCE) {
        return Err(Refusal::FromTheFuture {
            id: future.id().to_string(),
            ahead: future.created().duration_since(now).unwrap_or_default(),
        });
    }

    type Bucket = fn(i64) -> i64;
    let calendar: [(&str, Option<u32>, Bucket); 5] = [
        ("hourly", policy.keep_hourly, |s| s.div_euclid(3600)),
        ("daily", policy.keep_daily, |s| s.div_euclid(86400)),
        ("weekly", policy.keep_weekly, iso_week),
        ("monthly", policy.keep_monthly, |s| {
            let (y, m, _) = civil(s.div_euclid(86400));
            y * 12 + m as i64
        }),
        ("yearly", policy.keep_yearly, |s| {
            civil(s.div_euclid(86400)).0
        }),
    ];
    let mut left: Vec<u32> = calendar.iter().map(|c| c.1.unwrap_or(0)).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; calendar.len()];
    let newest = items.first().map(|i| i.created());

    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let secs = unix_secs(item.created());
        let mut reasons = Vec::new();
        if index == 0 {
            reasons.push("newest".to_string());
        }
        if let Some(n) = policy.keep_last {
            if (index as u64) < n as u64 {
                reasons.push(format!("last {}/{n}", index + 1));
            }
        }
        if let (Some(within), Some(newest)) = (policy.keep_within, newest) {
            if newest.duration_since(item.created()).unwrap_or_default() <= within {
                reasons.push(format!("within {}", crate::ui::duration(within)));
            }
        }
        for (rule, (name, total, bucket)) in calendar.iter().enumerate() {
            if left[rule] == 0 {
                continue;
            }
            let b = bucket(secs);
            if last_bucket[rule] != Some(b) {
                last_bucket[rule] = Some(b);
                let total = total.unwrap_or(0);
                reasons.push(format!("{name} {}/{total}", total - left[rule] + 1));
                left[rule] -= 1;
            }
        }
        out.push(Decision {
            id: item.id().to_string(),
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    Ok(out)
}

/// Keep what kept backups build on: everything a kept incremental needs (through `needs`,
/// child id to the ids it builds on) is kept too, with the reason "chain of X" when nothing else
/// kept it. Retention never breaks a chain.
pub fn keep_chains(
    decisions: &mut [Decision],
    needs: &std::collections::HashMap<String, Vec<String>>,
) {
    let index: std::collections::HashMap<String, usize> = decisions
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.clone(), i))
        .collect();
    // Until nothing changes, so the order of `decisions` does not matter (a broken chain may
    // name a newer parent).
    loop {
        let mut changed = false;
        for i in 0..decisions.len() {
            if !decisions[i].keep {
                continue;
            }
            let child = decisions[i].id.clone();
            for (k, p) in needs.get(&child).into_iter().flatten().enumerate() {
                if let Some(&p) = index.get(p) {
                    if !decisions[p].keep {
                        decisions[p].keep = true;
                        let how = if k == 0 { "parent" } else { "chain" };
                        decisions[p].reasons.push(format!("{how} of {child}"));
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
}

pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01, proleptic Gregorian.
/// Howard Hinnant's `civil_from_days`.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A number that is the same for every instant of one ISO week (Monday to Sunday) and differs
/// between weeks: the day number of that week's Monday.
fn iso_week(secs: i64) -> i64 {
    let days = secs.div_euclid(86400);
    // 1970-01-01 was a Thursday: Monday-based weekday is (days + 3) mod 7.
    days - (days + 3).rem_euclid(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone)]
    struct Item {
        id: String,
        created: SystemTime,
    }

    impl Dated for Item {
        fn id(&self) -> &str {
            &self.id
        }
        fn created(&self) -> SystemTime {
            self.created
        }
    }

    const HOUR: u64 = 3600;
    const DAY: u64 = 86400;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Backups every `step` seconds going back from `newest`, named b0 (newest), b1, ...
    fn series(newest: u64, step: u64, n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                id: format!("b{i}"),
                created: at(newest - i as u64 * step),
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.as_str())
            .collect()
    }

    // 2026-11-26 00:00:00 UTC, a Thursday.
    const T0: u64 = 1_795_651_200;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil((T0 / DAY) as i64), (2026, 11, 26));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(-1), (1969, 12, 31));
    }

    #[test]
    fn iso_weeks_start_on_monday() {
        let thursday = (T0 + 12 * HOUR) as i64;
        let monday = (T0 - 3 * DAY) as i64;
        let sunday_before = (T0 - 4 * DAY + 23 * HOUR) as i64;
        assert_eq!(iso_week(thursday), iso_week(monday));
        assert_ne!(iso_week(monday), iso_week(sunday_before));
    }

    #[test]
    fn table() {
        let now = at(T0 + 12 * HOUR);
        let hourly_for_3_days = series(T0 + 12 * HOUR, HOUR, 72);
        struct Case {
            name: &'static str,
            items: Vec<Item>,
            policy: Policy,
            kept: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "keep_last keeps the newest N",
                items: series(T0, HOUR, 5),
                policy: Policy {
                    keep_last: Some(2),
                    ..Policy::default()
                },
                kept: vec!["b0", "b1"],
            },
            Case {
                name: "keep_daily keeps the newest of each day",
                items: hourly_for_3_days.clone(),
                policy: Policy {
                    keep_daily: Some(2),
                    ..Policy::default()
                },
                // b0 is 12:00 on day 0; b13 is 23:00 the day before.
                kept: vec!["b0", "b13"],
            },
            Case {
                name: "keep_within counts back from the newest backup",
                items: series(T0, DAY, 10),
                policy: Policy {
                    keep_within: Some(Duration::from_secs(2 * DAY)),
                    ..Policy::default()
                },
                kept: vec!["b0", "b1", "b2"],
            },
            Case {
                name: "rules are a union",
                items: series(T0, DAY, 10),
                policy: Policy {
                    keep_last: Some(1),
                    keep_weekly: Some(2),
                    ..Policy::default()
                },
                // T0 is Thursday: b0..b3 are this week (Thu..Mon), b4 is last Sunday.
                kept: vec!["b0", "b4"],
            },
            Case {
                name: "monthly and yearly",
                items: series(T0, 10 * DAY, 50),
                policy: Policy {
                    keep_monthly: Some(3),
                    keep_yearly: Some(2),
                    ..Policy::default()
                },
                // b0 2026-11-26, b3 2026-10-27, b6 2026-09-27, b33 2025-12-31 (newest of 2025).
                kept: vec!["b0", "b3", "b6", "b33"],
            },
            Case {
                name: "the newest is kept even when no rule would",
                items: series(T0, DAY, 3),
                policy: Policy {
                    keep_hourly: Some(0),
                    keep_within: Some(Duration::ZERO),
                    ..Policy::default()
                },
                kept: vec!["b0"],
            },
        ];
        for case in cases {
            let decisions = decide(&case.items, &case.policy, now).unwrap();
            assert_eq!(kept(&decisions), case.kept, "{}", case.name);
            assert_eq!(decisions.len(), case.items.len(), "{}", case.name);
        }
    }

    #[test]
    fn a_kept_incremental_keeps_its_whole_chain() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let items: Vec<Item> = (0..5)
            .map(|i| Item {
                id: format!("b{i}"),
                created: now - Duration::from_secs(3600 * (5 - i)),
            })
            .collect();
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let mut decisions = decide(&items, &policy, now).unwrap();
        // b1 full <- b2 <- b4; b3 is a full of its own; b0 an older full.
        let needs: std::collections::HashMap<String, Vec<String>> =
            [("b2", vec!["b1"]), ("b4", vec!["b2", "b1"])]
                .into_iter()
                .map(|(c, p)| (c.to_string(), p.into_iter().map(String::from).collect()))
                .collect();
        keep_chains(&mut decisions, &needs);
        let kept: Vec<(&str, &[String])> = decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| (d.id.as_str(), &d.reasons[..]))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("b4", &["newest".to_string(), "last 1/1".to_string()][..]),
                ("b2", &["parent of b4".to_string()][..]),
                ("b1", &["chain of b4".to_string()][..]),
            ]
        );
    }

    #[test]
    fn deletions_have_no_reasons_and_keeps_say_why() {
        let decisions = decide(
            &series(T0, DAY, 3),
            &Policy {
                keep_last: Some(2),
                ..Policy::default()
            },
            at(T0),
        )
        .unwrap();
        assert_eq!(decisions[0].reasons, vec!["newest", "last 1/2"]);
        assert_eq!(decisions[1].reasons, vec!["last 2/2"]);
        assert!(!decisions[2].keep && decisions[2].reasons.is_empty());
    }

    #[test]
    fn refuses_without_a_policy_and_with_a_backup_from_the_future() {
        let items = series(T0, DAY, 3);
        assert!(matches!(
            decide(&items, &Policy::default(), at(T0)),
            Err(Refusal::NoPolicy)
        ));
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let err = decide(&items, &policy, at(T0 - HOUR)).unwrap_err();
        assert!(
            matches!(&err, Refusal::FromTheFuture { id, .. } if id == "b0"),
            "{err}"
        );
        // Within the tolerance a small skew is accepted.
        assert!(decide(&items, &policy, at(T0 - 30)).is_ok());
    }

    #[test]
    fn a_policy_reaches_as_far_back_as_its_longest_rule() {
        let day = Duration::from_secs(86_400);
        let policy = Policy {
            keep_within: Some(3 * day),
            keep_daily: Some(7),
            keep_weekly: Some(2),
            ..Default::default()
        };
        assert_eq!(policy.reach().span, 14 * day);
        assert!(!policy.reach().counts_only);
        let policy = Policy {
            keep_monthly: Some(2),
            keep_last: Some(5),
            ..Default::default()
        };
        assert_eq!(policy.reach().span, 62 * day);
        assert!(policy.reach().counts_only);
        let hourly = Policy {
            keep_hourly: Some(48),
            ..Default::default()
        };
        assert_eq!(hourly.reach().span, 2 * day);
    }
}
