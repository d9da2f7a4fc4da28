//! The independent model of what each destination holds and how good each backup is, with the
//! retention model that says what a `prune` may delete.

use super::*;

// ---- the model -------------------------------------------------------------------------------

/// How visible a backup's badness is to litevault: from the listing (a missing or short archive,
/// an unreadable or untrusted sidecar, a broken chain, a date ahead of the clock), only by reading
/// the archive (a flipped byte), or perhaps not at all (a sidecar edited where nothing checks a
/// signature). Ordered: the most visible wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Detect {
    Maybe,
    Reading,
    Listing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Health {
    Good,
    Bad(Detect, String),
}

impl Health {
    pub(super) fn worse(self, other: Health) -> Health {
        match (self, other) {
            (Health::Good, h) | (h, Health::Good) => h,
            (Health::Bad(a, wa), Health::Bad(b, wb)) => {
                if a >= b {
                    Health::Bad(a, wa)
                } else {
                    Health::Bad(b, wb)
                }
            }
        }
    }

    pub(super) fn is_good(&self) -> bool {
        *self == Health::Good
    }

    /// Good, or bad in a way litevault cannot see from a listing.
    pub(super) fn may_look_good(&self) -> bool {
        matches!(
            self,
            Health::Good | Health::Bad(Detect::Reading, _) | Health::Bad(Detect::Maybe, _)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Content {
    pub(super) rows: Vec<(i64, String)>,
    pub(super) conf: Vec<u8>,
}

impl Content {
    pub(super) fn describe(&self) -> String {
        format!(
            "{} rows (max id {}), app.conf {} bytes blake3 {}",
            self.rows.len(),
            self.rows.last().map(|r| r.0).unwrap_or(0),
            self.conf.len(),
            &blake3::hash(&self.conf).to_hex()[..12]
        )
    }
}

#[derive(Clone, Debug)]
pub(super) struct Rec {
    pub(super) created_ms: i64,
    pub(super) parent: Option<String>,
    pub(super) content: usize,
}

#[derive(Default)]
pub(super) struct Model {
    pub(super) contents: Vec<Content>,
    pub(super) current: usize,
    /// Our backups (by id): when, on what, holding what.
    pub(super) recs: BTreeMap<String, Rec>,
    /// Which destination holds which of them (its sidecar is there), and its own health there.
    pub(super) stored: BTreeMap<(Dest, String), Health>,
    /// Sidecars we edited (where it may go unseen): they must never be rewritten.
    pub(super) tampered: BTreeMap<(Dest, String), Vec<u8>>,
    /// Sidecars we made unreadable.
    pub(super) unreadable: BTreeSet<(Dest, String)>,
    /// What we did to each backup's archive, and to its sidecar and signature, apart: a rekey
    /// that moves a backup onto a new archive leaves only the second.
    pub(super) archive_harm: BTreeMap<(Dest, String), Health>,
    pub(super) meta_harm: BTreeMap<(Dest, String), Health>,
    /// Files planted outside `tmp/`, and our archives whose sidecar we deleted: never to be
    /// deleted or changed by any command (path relative to the test root).
    /// The flag: planted (true), or an archive of ours whose sidecar we deleted (false).
    pub(super) kept_files: BTreeMap<String, (Vec<u8>, bool)>,
    /// Ids of planted foreign backups.
    pub(super) planted_ids: BTreeSet<String>,
    /// Planted staged sidecars and signatures: what the stored one must never become.
    pub(super) staged: BTreeMap<String, Vec<u8>>,
}

impl Model {
    /// The health of backup `id` on `dest` at time `now_ms` (its chain and its date included).
    pub(super) fn effective(&self, dest: Dest, id: &str, now_ms: i64) -> Health {
        let Some(own) = self.stored.get(&(dest, id.to_string())) else {
            return Health::Bad(Detect::Listing, format!("it is not on {}", dest.name()));
        };
        let rec = &self.recs[id];
        let mut h = own.clone();
        // Prune refuses what is more than a minute ahead, `latest` and the counts what is more
        // than five minutes ahead: in between, litevault may go either way.
        if rec.created_ms > now_ms + 300_000 {
            h = h.worse(Health::Bad(
                Detect::Listing,
                "it is dated ahead of the clock".into(),
            ));
        } else if rec.created_ms > now_ms + 60_000 {
            h = h.worse(Health::Bad(
                Detect::Maybe,
                "it is dated a few minutes ahead of the clock".into(),
            ));
        }
        if let Some(p) = &rec.parent {
            let ph = match self.recs.get(p) {
                Some(prec) if self.stored.contains_key(&(dest, p.clone())) => {
                    if prec.created_ms >= rec.created_ms {
                        Health::Bad(
                            Detect::Listing,
                            format!("its parent {p} is not older than itself"),
                        )
                    } else {
                        match self.effective(dest, p, now_ms) {
                            Health::Good => Health::Good,
                            Health::Bad(d, why) => {
                                Health::Bad(d, format!("its parent {p} is bad: {why}"))
                            }
                        }
                    }
                }
                _ => Health::Bad(Detect::Listing, format!("its parent {p} is missing")),
            };
            h = h.worse(ph);
        }
        h
    }

    /// The health of backup `id`'s own objects on `dest`, its chain aside: what a command that
    /// reads only this backup's archive and sidecar (copy, rekey) can know.
    pub(super) fn own(&self, dest: Dest, id: &str) -> Health {
        self.stored
            .get(&(dest, id.to_string()))
            .cloned()
            .unwrap_or(Health::Bad(Detect::Listing, "it is not there".into()))
    }

    pub(super) fn on(&self, dest: Dest) -> Vec<String> {
        let mut ids: Vec<String> = self
            .stored
            .keys()
            .filter(|(d, _)| *d == dest)
            .map(|(_, id)| id.clone())
            .collect();
        ids.sort_by_key(|id| (self.recs[id].created_ms, id.clone()));
        ids
    }

    /// The good backups `prune` with keep_last N at `now_ms` may delete on `dest`: good ones
    /// outside the newest N good and the newest good, and not a parent of anything kept (every
    /// backup that is not good is kept). Those bad in a way a listing cannot show may be taken
    /// for good by litevault: every such assumption is tried (and an edited sidecar may put its
    /// backup anywhere, so it is assumed newest), and the union is what may go.
    pub(super) fn prune_may_delete(
        &self,
        dest: Dest,
        keep_last: u32,
        now_ms: i64,
    ) -> BTreeSet<String> {
        let ids = self.on(dest);
        let health: BTreeMap<&String, Health> = ids
            .iter()
            .map(|id| (id, self.effective(dest, id, now_ms)))
            .collect();
        let uncertain: Vec<&String> = ids
            .iter()
            .filter(|id| !health[id].is_good() && health[id].may_look_good())
            .collect();
        let n = uncertain.len().min(6);
        let mut allowed = BTreeSet::new();
        for mask in 0u32..(1 << n) {
            let assumed: BTreeSet<&String> = uncertain
                .iter()
                .enumerate()
                .filter(|(i, _)| *i >= n || mask & (1 << i) != 0)
                .map(|(_, id)| *id)
                .collect();
            let mut good: Vec<&String> = ids
                .iter()
                .filter(|id| health[id].is_good() || assumed.contains(id))
                .collect();
            good.sort_by_key(|id| {
                let top = self.tampered.contains_key(&(dest, (*id).clone()));
                std::cmp::Reverse((top, self.recs[*id].created_ms, (*id).clone()))
            });
            let mut kept: BTreeSet<&String> = ids.iter().filter(|id| !good.contains(id)).collect();
            kept.extend(good.iter().take(keep_last.max(1) as usize).copied());
            let mut stack: Vec<&String> = kept.iter().copied().collect();
            while let Some(id) = stack.pop() {
                // Whose sidecar cannot be read, or was edited, names no parent litevault can
                // know (nor trust).
                let key = (dest, id.clone());
                if self.unreadable.contains(&key) || self.tampered.contains_key(&key) {
                    continue;
                }
                if let Some(p) = &self.recs[id].parent {
                    if let Some(p) = ids.iter().find(|x| *x == p) {
                        if kept.insert(p) {
                            stack.push(p);
                        }
                    }
                }
            }
            allowed.extend(
                good.iter()
                    .filter(|id| !kept.contains(*id))
                    .map(|s| (*s).clone()),
            );
        }
        allowed
    }
}
