//! A model-based chaos test of the destination: random sequences of real commands (`backup`,
//! `prune`, `copy`, `rekey`, `verify`, `restore`) interleaved with faults (a damaged, truncated or
//! deleted stored object, files planted in the namespace and in `tmp/`, a clock stepped with
//! `faketime`, `kill -9` mid-run), checked after every step against an independent model of what
//! the destination holds and what each backup contained when it was taken.
//!
//! The oracle, after every step:
//! 1. a backup that was good in the model disappears only by a `prune` that the model's own
//!    retention policy (keep_last over the good backups, the newest good, the parents of what is
//!    kept) allows to delete it; nothing else deletes or spoils a good backup;
//! 2. a backup that a command calls good (`list --json` clean, `restore latest`'s pick, `verify`
//!    ok) restores to exactly the rows and bytes recorded when it was taken;
//! 3. no command exits 0 having made (or left) a good backup bad, and `backup` never reports a
//!    backup stored that is not good;
//! 4. nothing planted is acted on: a planted staged rekey is never rolled forward, planted
//!    archives and foreign backups are never deleted, rewritten, copied or picked as `latest`.
//!
//! Each sequence comes from a seed (splitmix64). A failing one is shrunk (steps dropped while the
//! same finding remains) and printed with a replay line. Environment:
//! `LITEVAULT_CHAOS_SEEDS` (how many, default 24), `LITEVAULT_CHAOS_START` (first seed, 1),
//! `LITEVAULT_CHAOS_SEED` (just this one), `LITEVAULT_CHAOS_KEEP` (with SEED: only these step
//! indices, comma-separated, no shrinking), `LITEVAULT_CHAOS_JOBS` (sequences at once, 2),
//! `LITEVAULT_CHAOS_VERBOSE=1` (print each step as it runs), `LITEVAULT_CHAOS_IGNORE` (kinds of
//! finding to pass over, `;`-separated substrings, to look past a known bug),
//! `LITEVAULT_CHAOS_DRY=1` (print the sequences the seeds make, run nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use serde_json::Value;

use crate::harness::*;

// ---- randomness ------------------------------------------------------------------------------

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_c4a0_5eed_c4a0)
    }

    /// splitmix64
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

// ---- steps -----------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Dest {
    Local,
    Other,
}

impl Dest {
    fn name(self) -> &'static str {
        match self {
            Dest::Local => "local",
            Dest::Other => "other",
        }
    }

    fn folder(self) -> &'static str {
        match self {
            Dest::Local => "backups",
            Dest::Other => "other",
        }
    }

    fn from_name(s: &str) -> Option<Dest> {
        match s {
            "local" => Some(Dest::Local),
            "other" => Some(Dest::Other),
            _ => None,
        }
    }

    fn pick(rng: &mut Rng) -> Dest {
        if rng.percent(75) {
            Dest::Local
        } else {
            Dest::Other
        }
    }
}

#[derive(Clone, Debug)]
enum Cmd {
    Backup { full: bool, both: bool },
    Prune { keep_last: u32, all: bool },
    CopyOut,
    CopyBack,
    Rekey,
    Verify,
    RestoreLatest,
    RestoreId { dest: Dest, pick: u64 },
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cmd::Backup { full, both } => write!(
                f,
                "backup{}{}",
                if *full { " --full" } else { "" },
                if *both { "" } else { " --dest local" }
            ),
            Cmd::Prune { keep_last, all } => write!(
                f,
                "prune{} (keep_last = {keep_last})",
                if *all { "" } else { " --dest local" }
            ),
            Cmd::CopyOut => write!(f, "copy --from local --to other"),
            Cmd::CopyBack => write!(f, "copy --from other --to local"),
            Cmd::Rekey => write!(
                f,
                "rekey --all (after switching to the other age recipient)"
            ),
            Cmd::Verify => write!(f, "verify --all"),
            Cmd::RestoreLatest => write!(f, "restore latest --to DIR"),
            Cmd::RestoreId { dest, pick } => {
                write!(
                    f,
                    "restore <backup #{pick}> --dest {} --to DIR",
                    dest.name()
                )
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Obj {
    Archive,
    Sidecar,
    Signature,
}

#[derive(Clone, Copy, Debug)]
enum Harm {
    Delete,
    Truncate(u64),
    Flip(u64, u8),
}

#[derive(Clone, Copy, Debug)]
enum Plant {
    /// Another host's whole backup (archive, sidecar, signature) copied into this host's folder.
    Foreign,
    /// Another host's sidecar (and signature) without its archive.
    ForeignSidecar,
    /// Another host's archive without its sidecar.
    ForeignArchive,
    /// `tmp/<id>.json.rekey` for one of our backups, with content that must never be used:
    /// 0 = a zeroed archive hash, 1 = an archive that does not exist, 2 = another backup's
    /// archive. `sig` also plants `tmp/<id>.json.sig.rekey` (another backup's signature).
    StagedRekey { pick: u64, variant: u8, sig: bool },
}

#[derive(Clone, Copy, Debug)]
enum Shift {
    Back2d,
    Back3h,
    Back2m,
    Fwd2m,
    Fwd3h,
    Fwd2d,
}

impl Shift {
    fn spec(self) -> &'static str {
        match self {
            Shift::Back2d => "-2d",
            Shift::Back3h => "-3h",
            Shift::Back2m => "-2m",
            Shift::Fwd2m => "+2m",
            Shift::Fwd3h => "+3h",
            Shift::Fwd2d => "+2d",
        }
    }

    fn millis(self) -> i64 {
        match self {
            Shift::Back2d => -2 * 86_400_000,
            Shift::Back3h => -3 * 3_600_000,
            Shift::Back2m => -2 * 60_000,
            Shift::Fwd2m => 2 * 60_000,
            Shift::Fwd3h => 3 * 3_600_000,
            Shift::Fwd2d => 2 * 86_400_000,
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Change {
        seed: u64,
    },
    Run(Cmd),
    Clocked {
        shift: Shift,
        cmd: Cmd,
    },
    Kill {
        cmd: Cmd,
        delay_ms: u64,
    },
    Harm {
        dest: Dest,
        pick: u64,
        obj: Obj,
        harm: Harm,
    },
    Plant {
        dest: Dest,
        what: Plant,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Change { seed } => write!(f, "change the sources (seed {seed:#x})"),
            Step::Run(cmd) => write!(f, "{cmd}"),
            Step::Clocked { shift, cmd } => write!(f, "faketime -f '{}' {cmd}", shift.spec()),
            Step::Kill { cmd, delay_ms } => write!(f, "kill -9 after {delay_ms} ms: {cmd}"),
            Step::Harm {
                dest,
                pick,
                obj,
                harm,
            } => {
                let what = match harm {
                    Harm::Delete => "delete".to_string(),
                    Harm::Truncate(n) => format!("truncate (at {n} mod length)"),
                    Harm::Flip(at, x) => format!("flip a byte (at {at} mod length, xor {x:#04x})"),
                };
                write!(
                    f,
                    "FAULT {what} the {} of <backup #{pick}> on {}",
                    match obj {
                        Obj::Archive => "archive",
                        Obj::Sidecar => "sidecar",
                        Obj::Signature => "signature",
                    },
                    dest.name()
                )
            }
            Step::Plant { dest, what } => {
                let what = match what {
                    Plant::Foreign => "another host's backup".to_string(),
                    Plant::ForeignSidecar => "another host's sidecar without its archive".into(),
                    Plant::ForeignArchive => "another host's archive without its sidecar".into(),
                    Plant::StagedRekey { pick, variant, sig } => format!(
                        "tmp/<backup #{pick}>.json.rekey ({}){}",
                        match variant {
                            0 => "archive hash zeroed",
                            1 => "names an archive that does not exist",
                            _ => "names another backup's archive",
                        },
                        if *sig {
                            " and a .json.sig.rekey (another backup's signature)"
                        } else {
                            ""
                        }
                    ),
                };
                write!(f, "PLANT on {}: {what}", dest.name())
            }
        }
    }
}

/// What the whole sequence runs with (from the seed, so a subsequence replays the same way).
#[derive(Clone, Copy, Debug)]
enum Signing {
    None,
    /// `[signing]` without `[trust]`: signatures written, not required.
    SignOnly,
    /// `[signing]` and `[trust]` with the same key.
    Trusted,
}

#[derive(Clone, Debug)]
struct Setup {
    signing: Signing,
    /// The other host signs with this host's key (a fleet-wide key) rather than its own.
    foreign_same_key: bool,
    max_chain: u32,
    wal: bool,
}

fn gen_cmd(rng: &mut Rng, killable: bool) -> Cmd {
    loop {
        let cmd = match rng.below(100) {
            0..=39 => Cmd::Backup {
                full: rng.percent(20),
                both: rng.percent(35),
            },
            40..=54 => Cmd::Prune {
                keep_last: rng.range(1, 3) as u32,
                all: rng.percent(40),
            },
            55..=64 => Cmd::CopyOut,
            65..=71 => Cmd::CopyBack,
            72..=79 => Cmd::Rekey,
            80..=85 => Cmd::Verify,
            86..=92 => Cmd::RestoreLatest,
            _ => Cmd::RestoreId {
                dest: Dest::pick(rng),
                pick: rng.below(1000),
            },
        };
        let ok = !killable
            || matches!(
                cmd,
                Cmd::Backup { .. } | Cmd::Prune { .. } | Cmd::CopyOut | Cmd::CopyBack | Cmd::Rekey
            );
        if ok {
            return cmd;
        }
    }
}

fn generate(seed: u64) -> (Setup, Vec<Step>) {
    let mut rng = Rng::new(seed);
    let setup = Setup {
        signing: match rng.below(3) {
            0 => Signing::None,
            1 => Signing::SignOnly,
            _ => Signing::Trusted,
        },
        foreign_same_key: rng.percent(50),
        max_chain: rng.range(2, 4) as u32,
        wal: rng.percent(70),
    };
    let n = rng.range(6, 12) as usize;
    let mut steps = vec![Step::Run(Cmd::Backup {
        full: false,
        both: rng.percent(50),
    })];
    while steps.len() < n {
        let step = match rng.below(100) {
            0..=14 => Step::Change { seed: rng.next() },
            15..=52 => Step::Run(gen_cmd(&mut rng, false)),
            53..=58 => Step::Clocked {
                shift: match rng.below(6) {
                    0 => Shift::Back2d,
                    1 => Shift::Back3h,
                    2 => Shift::Back2m,
                    3 => Shift::Fwd2m,
                    4 => Shift::Fwd3h,
                    _ => Shift::Fwd2d,
                },
                cmd: gen_cmd(&mut rng, false),
            },
            59..=65 => Step::Kill {
                cmd: gen_cmd(&mut rng, true),
                delay_ms: rng.range(5, 160),
            },
            66..=84 => Step::Harm {
                dest: Dest::pick(&mut rng),
                pick: rng.below(1000),
                obj: match rng.below(10) {
                    0..=4 => Obj::Archive,
                    5..=8 => Obj::Sidecar,
                    _ => Obj::Signature,
                },
                harm: match rng.below(3) {
                    0 => Harm::Delete,
                    1 => Harm::Truncate(rng.next()),
                    _ => Harm::Flip(rng.next(), rng.range(1, 255) as u8),
                },
            },
            _ => Step::Plant {
                dest: Dest::pick(&mut rng),
                what: match rng.below(4) {
                    0 => Plant::Foreign,
                    1 => Plant::ForeignSidecar,
                    2 => Plant::ForeignArchive,
                    _ => Plant::StagedRekey {
                        pick: rng.below(1000),
                        variant: rng.below(3) as u8,
                        sig: rng.percent(50),
                    },
                },
            },
        };
        steps.push(step);
    }
    (setup, steps)
}

// ---- the model -------------------------------------------------------------------------------

/// How visible a backup's badness is to litevault: from the listing (a missing or short archive,
/// an unreadable or untrusted sidecar, a broken chain, a date ahead of the clock), only by reading
/// the archive (a flipped byte), or perhaps not at all (a sidecar edited where nothing checks a
/// signature). Ordered: the most visible wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Detect {
    Maybe,
    Reading,
    Listing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Health {
    Good,
    Bad(Detect, String),
}

impl Health {
    fn worse(self, other: Health) -> Health {
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

    fn is_good(&self) -> bool {
        *self == Health::Good
    }

    /// Good, or bad in a way litevault cannot see from a listing.
    fn may_look_good(&self) -> bool {
        matches!(
            self,
            Health::Good | Health::Bad(Detect::Reading, _) | Health::Bad(Detect::Maybe, _)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Content {
    rows: Vec<(i64, String)>,
    conf: Vec<u8>,
}

impl Content {
    fn describe(&self) -> String {
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
struct Rec {
    created_ms: i64,
    parent: Option<String>,
    content: usize,
}

#[derive(Default)]
struct Model {
    contents: Vec<Content>,
    current: usize,
    /// Our backups (by id): when, on what, holding what.
    recs: BTreeMap<String, Rec>,
    /// Which destination holds which of them (its sidecar is there), and its own health there.
    stored: BTreeMap<(Dest, String), Health>,
    /// Sidecars we edited (where it may go unseen): they must never be rewritten.
    tampered: BTreeMap<(Dest, String), Vec<u8>>,
    /// Sidecars we made unreadable.
    unreadable: BTreeSet<(Dest, String)>,
    /// What we did to each backup's archive, and to its sidecar and signature, apart: a rekey
    /// that moves a backup onto a new archive leaves only the second.
    archive_harm: BTreeMap<(Dest, String), Health>,
    meta_harm: BTreeMap<(Dest, String), Health>,
    /// Files planted outside `tmp/`, and our archives whose sidecar we deleted: never to be
    /// deleted or changed by any command (path relative to the test root).
    /// The flag: planted (true), or an archive of ours whose sidecar we deleted (false).
    kept_files: BTreeMap<String, (Vec<u8>, bool)>,
    /// Ids of planted foreign backups.
    planted_ids: BTreeSet<String>,
    /// Planted staged sidecars and signatures: what the stored one must never become.
    staged: BTreeMap<String, Vec<u8>>,
}

impl Model {
    /// The health of backup `id` on `dest` at time `now_ms` (its chain and its date included).
    fn effective(&self, dest: Dest, id: &str, now_ms: i64) -> Health {
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
    fn own(&self, dest: Dest, id: &str) -> Health {
        self.stored
            .get(&(dest, id.to_string()))
            .cloned()
            .unwrap_or(Health::Bad(Detect::Listing, "it is not there".into()))
    }

    fn on(&self, dest: Dest) -> Vec<String> {
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
    fn prune_may_delete(&self, dest: Dest, keep_last: u32, now_ms: i64) -> BTreeSet<String> {
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

// ---- observing the destination ---------------------------------------------------------------

#[derive(Clone, Debug)]
struct Listed {
    created_ms: i64,
    parent: Option<String>,
    damage: Option<String>,
    untrusted: Option<String>,
    /// litevault's one judgement ("good", "damaged", "untrusted", "foreign", "future-dated",
    /// "broken-chain"), where its `list --json` gives one.
    standing: Option<String>,
    problem: Option<String>,
}

impl Listed {
    fn clean(&self) -> bool {
        self.damage.is_none()
            && self.untrusted.is_none()
            && self.standing.as_deref().is_none_or(|s| s == "good")
    }

    fn why(&self) -> String {
        self.problem
            .clone()
            .or(self.damage.clone())
            .or(self.untrusted.clone())
            .or(self.standing.clone())
            .unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct Obs {
    list: BTreeMap<(Dest, String), Listed>,
    /// Every file under both namespace folders: "local/<name>" -> bytes.
    files: BTreeMap<String, Vec<u8>>,
}

impl Obs {
    fn sidecar(&self, dest: Dest, id: &str) -> Option<&Vec<u8>> {
        self.files.get(&format!("{}/{id}.json", dest.name()))
    }
}

/// RFC 3339 in UTC as litevault writes it (`2026-12-03T07:33:44.123Z`), in ms since the epoch.
fn parse_ms(s: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let frac = s.get(19..).unwrap_or("").trim_end_matches('Z');
    let ms = match frac.strip_prefix('.') {
        Some(f) => format!("{f:0<3}")[..3].parse::<i64>().ok()?,
        None => 0,
    };
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(((days * 86400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---- findings --------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Finding {
    /// Index (in the steps run) of the step after which it was found.
    step: usize,
    /// What kind of finding, without ids: what shrinking keeps.
    category: String,
    detail: String,
}

type Check = Result<(), Finding>;

// ---- one sequence ----------------------------------------------------------------------------

struct World {
    env: Env,
    setup: Setup,
    db: PathBuf,
    conf: PathBuf,
    keys: [String; 2],
    recipient: usize,
    both_keys: PathBuf,
    signing_key: Option<PathBuf>,
    signing_pub: Option<String>,
    keep_last: u32,
    foreign_n: u32,
    restores: u32,
    model: Model,
    obs: Obs,
    verbose: bool,
    /// Which step is running (for findings).
    at: usize,
    /// A deliberate lie told to the model, to show the oracle notices (see the sabotage test).
    sabotage: Option<Sabotage>,
}

fn age_keygen(path: &Path) -> String {
    let r = sh(
        &format!(
            "age-keygen -o {} 2>/dev/null && chmod 600 {0}",
            path.display()
        ),
        Path::new("/"),
    );
    assert_eq!(r.code, 0, "age-keygen: {}", r.stderr);
    public_key(path)
}

fn dump(path: &Path) -> Result<Vec<(i64, String)>, String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare("SELECT k, v FROM kv ORDER BY k")
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn word(rng: &mut Rng) -> String {
    let len = rng.range(8, 48) as usize;
    (0..len)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect()
}

fn clocked(cmd: Command, shift: Shift) -> Command {
    let mut c = Command::new(require_tool("faketime"));
    c.arg("-f").arg(shift.spec()).arg(cmd.get_program());
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

impl World {
    fn new(setup: &Setup, verbose: bool) -> World {
        let mut env = Env::new();
        let db = env.add_sqlite("app.db");
        let conf = env.add_source("app.conf", "file", "");
        env.destinations
            .push(dest("other", "file://__ROOT__/other"));
        env.incremental = Some(format!("max_chain = {}\n", setup.max_chain));
        let k0 = env.path("k0.key");
        let k1 = env.path("k1.key");
        let keys = [age_keygen(&k0), age_keygen(&k1)];
        let both_keys = env.path("both.key");
        fs::write(
            &both_keys,
            format!(
                "{}{}",
                fs::read_to_string(&k0).unwrap(),
                fs::read_to_string(&k1).unwrap()
            ),
        )
        .unwrap();
        fs::set_permissions(
            &both_keys,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let (signing_key, signing_pub) = match setup.signing {
            Signing::None => (None, None),
            _ => {
                let key = env.path("signing.key");
                let r = env.run(&["key", "generate", "--signing", key.to_str().unwrap()]);
                r.ok();
                (Some(key), Some(r.stdout.trim().to_string()))
            }
        };
        let conn = Connection::open(&db).unwrap();
        if setup.wal {
            conn.execute_batch("PRAGMA journal_mode=WAL").unwrap();
        }
        conn.execute_batch("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        let mut rng = Rng::new(0xc0ffee);
        for k in 1..=30 {
            conn.execute(
                "INSERT INTO kv VALUES (?1, ?2)",
                rusqlite::params![k, word(&mut rng)],
            )
            .unwrap();
        }
        drop(conn);
        fs::write(&conf, b"listen = 0.0.0.0:1812\nsecret = initial\n").unwrap();
        let mut w = World {
            env,
            setup: setup.clone(),
            db,
            conf,
            keys,
            recipient: 0,
            both_keys,
            signing_key,
            signing_pub,
            keep_last: 2,
            foreign_n: 0,
            restores: 0,
            model: Model::default(),
            obs: Obs::default(),
            verbose,
            at: 0,
            sabotage: None,
        };
        w.configure();
        let c = w.read_sources();
        w.model.contents.push(c);
        w.obs = w.observe().expect("the first listing");
        w
    }

    /// Write the config's parts that steps change: the recipient, signing and trust, retention.
    fn configure(&mut self) {
        self.env.encryption = Some(format!(
            "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n",
            self.keys[self.recipient],
            self.both_keys.display()
        ));
        let mut extra = String::new();
        if let Some(key) = &self.signing_key {
            extra.push_str(&format!("[signing]\nkey_file = \"{}\"\n", key.display()));
        }
        if let (Signing::Trusted, Some(public)) = (self.setup.signing, &self.signing_pub) {
            extra.push_str(&format!("[trust]\nsigners = [\"{public}\"]\n"));
        }
        extra.push_str(&format!("[retention]\nkeep_last = {}\n", self.keep_last));
        self.env.extra = extra;
        self.env.write_config();
    }

    fn ns(&self, dest: Dest) -> PathBuf {
        self.env.path(&format!("{}/test-host", dest.folder()))
    }

    fn read_sources(&self) -> Content {
        Content {
            rows: dump(&self.db).unwrap(),
            conf: fs::read(&self.conf).unwrap(),
        }
    }

    fn say(&self, line: &str) {
        if self.verbose {
            eprintln!("    {line}");
        }
    }

    fn finding(&self, category: &str, detail: String) -> Finding {
        Finding {
            step: self.at,
            category: category.to_string(),
            detail,
        }
    }

    fn observe(&self) -> Result<Obs, Finding> {
        let r = self.env.run(&["--json", "list"]);
        if r.code != 0 {
            return Err(self.finding(
                "list --json failed",
                format!("exit {}: {}", r.code, r.stderr),
            ));
        }
        let items: Vec<Value> = serde_json::from_str(&r.stdout)
            .map_err(|e| self.finding("list --json failed", format!("{e}: {}", r.stdout)))?;
        let mut obs = Obs::default();
        for it in items {
            let Some(dest) = it["destination"].as_str().and_then(Dest::from_name) else {
                continue;
            };
            let id = it["id"].as_str().unwrap_or_default().to_string();
            obs.list.insert(
                (dest, id),
                Listed {
                    created_ms: it["created"].as_str().and_then(parse_ms).unwrap_or(0),
                    parent: it["parent"].as_str().map(str::to_string),
                    damage: it["damage"].as_str().map(str::to_string),
                    untrusted: it["untrusted"].as_str().map(str::to_string),
                    standing: it["standing"].as_str().map(str::to_string),
                    problem: it["problem"].as_str().map(str::to_string),
                },
            );
        }
        for dest in [Dest::Local, Dest::Other] {
            let base = self.ns(dest);
            let mut names = Vec::new();
            walk_files(&base, &base, &mut names);
            for rel in names {
                if let Ok(bytes) = fs::read(base.join(&rel)) {
                    obs.files.insert(format!("{}/{rel}", dest.name()), bytes);
                }
            }
        }
        Ok(obs)
    }

    // ---- running commands ----

    fn args_of(&self, cmd: &Cmd) -> Vec<String> {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match cmd {
            Cmd::Backup { full, both } => {
                let mut a = v(&["--json", "backup"]);
                if *full {
                    a.push("--full".into());
                }
                if !*both {
                    a.extend(v(&["--dest", "local"]));
                }
                a
            }
            Cmd::Prune { all, .. } => {
                let mut a = v(&["--json", "prune"]);
                if !*all {
                    a.extend(v(&["--dest", "local"]));
                }
                a
            }
            Cmd::CopyOut => v(&["--json", "copy", "--from", "local", "--to", "other"]),
            Cmd::CopyBack => v(&["--json", "copy", "--from", "other", "--to", "local"]),
            Cmd::Rekey => v(&["--json", "rekey", "--all"]),
            Cmd::Verify => v(&["--json", "verify", "--all"]),
            Cmd::RestoreLatest | Cmd::RestoreId { .. } => unreachable!("restores build their own"),
        }
    }

    /// Settings a command changes before it runs (the policy, the recipient).
    fn prepare(&mut self, cmd: &Cmd) {
        match cmd {
            Cmd::Prune { keep_last, .. } => {
                self.keep_last = *keep_last;
                self.configure();
            }
            Cmd::Rekey => {
                self.recipient = 1 - self.recipient;
                self.configure();
            }
            _ => {}
        }
    }

    fn run_args(&self, args: &[String], shift: Option<Shift>) -> Run {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = self.env.command(&args);
        match shift {
            Some(s) => run_cmd(clocked(cmd, s)),
            None => run_cmd(cmd),
        }
    }

    fn step(&mut self, step: &Step) -> Check {
        match step {
            Step::Change { seed } => {
                self.change(*seed);
                Ok(())
            }
            Step::Run(cmd) => self.command(cmd, None, None),
            Step::Clocked { shift, cmd } => self.command(cmd, Some(*shift), None),
            Step::Kill { cmd, delay_ms } => self.command(cmd, None, Some(*delay_ms)),
            Step::Harm {
                dest,
                pick,
                obj,
                harm,
            } => {
                self.harm(*dest, *pick, *obj, *harm);
                self.after_fault()
            }
            Step::Plant { dest, what } => {
                self.plant(*dest, *what);
                self.after_fault()
            }
        }
    }

    fn change(&mut self, seed: u64) {
        let mut rng = Rng::new(seed);
        let conn = Connection::open(&self.db).unwrap();
        if rng.percent(85) {
            let max: i64 = conn
                .query_row("SELECT coalesce(max(k), 0) FROM kv", [], |r| r.get(0))
                .unwrap();
            for _ in 0..rng.range(1, 25) {
                match rng.below(3) {
                    0 => {
                        conn.execute(
                            "INSERT INTO kv(v) VALUES (?1)",
                            [word(&mut rng).repeat(rng.range(1, 4) as usize)],
                        )
                        .unwrap();
                    }
                    1 => {
                        let k = rng.range(1, max.max(1) as u64) as i64;
                        conn.execute(
                            "UPDATE kv SET v = ?1 WHERE k = ?2",
                            rusqlite::params![word(&mut rng), k],
                        )
                        .unwrap();
                    }
                    _ => {
                        let k = rng.range(1, max.max(1) as u64) as i64;
                        conn.execute("DELETE FROM kv WHERE k = ?1", [k]).unwrap();
                    }
                }
            }
            if rng.percent(10) {
                conn.execute_batch("VACUUM").unwrap();
            }
        }
        drop(conn);
        if rng.percent(80) {
            let mut text = String::from("listen = 0.0.0.0:1812\n");
            for _ in 0..rng.range(1, 12) {
                text.push_str(&format!("{} = {}\n", word(&mut rng), word(&mut rng)));
            }
            fs::write(&self.conf, text).unwrap();
        }
        let c = self.read_sources();
        if c != self.model.contents[self.model.current] {
            self.model.contents.push(c);
            self.model.current = self.model.contents.len() - 1;
        }
    }

    fn command(&mut self, cmd: &Cmd, shift: Option<Shift>, kill: Option<u64>) -> Check {
        let clock = now_ms() + shift.map(Shift::millis).unwrap_or(0);
        match cmd {
            Cmd::RestoreLatest => return self.restore_latest(shift, clock),
            Cmd::RestoreId { dest, pick } => return self.restore_id(*dest, *pick, shift, clock),
            _ => {}
        }
        self.prepare(cmd);
        let args = self.args_of(cmd);
        let before = self.obs.clone();
        let run = match kill {
            Some(ms) => {
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                let child = self.env.spawn(&a);
                let landed = kill_after(child, Duration::from_millis(ms));
                self.say(&format!("killed (still running: {landed})"));
                None
            }
            None => {
                let r = self.run_args(&args, shift);
                self.say(&format!(
                    "exit {}; stderr: {}",
                    r.code,
                    r.stderr.trim().replace('\n', " | ")
                ));
                Some(r)
            }
        };
        let code = run.as_ref().map(|r| r.code);
        let after = self.observe()?;
        let exit = match code {
            Some(c) => format!("exit {c}"),
            None => "killed".to_string(),
        };

        // What the command reported making.
        let mut reported: Option<(String, Vec<Dest>)> = None;
        if let (Cmd::Backup { .. }, Some(r)) = (cmd, &run) {
            if r.code == 0 || r.code == 3 {
                let v: Value = serde_json::from_str(&r.stdout).map_err(|e| {
                    self.finding("backup --json is not JSON", format!("{e}: {}", r.stdout))
                })?;
                let id = v["id"].as_str().unwrap_or_default().to_string();
                self.say(&format!(
                    "made {id}: {} {} {}",
                    v["kind"],
                    v["parent"].as_str().unwrap_or(""),
                    v["full_because"].as_str().unwrap_or("")
                ));
                let dests = v["destinations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter(|d| d["ok"].as_bool() == Some(true))
                    .filter_map(|d| d["name"].as_str().and_then(Dest::from_name))
                    .collect();
                reported = Some((id, dests));
            }
        }

        // Sidecars that are gone, and what that was.
        let allowed = match cmd {
            Cmd::Prune { keep_last, all } => {
                let mut m = BTreeMap::new();
                for d in [Dest::Local, Dest::Other] {
                    if *all || d == Dest::Local {
                        let may = match self.sabotage {
                            Some(Sabotage::Policy) => BTreeSet::new(),
                            _ => self.model.prune_may_delete(d, *keep_last, clock),
                        };
                        m.insert(d, may);
                    }
                }
                Some(m)
            }
            _ => None,
        };
        // Judged on the model as it was before the step: a parent and its child deleted by one
        // prune are both judged with their chain whole.
        let gone: Vec<((Dest, String), Health)> = self
            .model
            .stored
            .keys()
            .filter(|(d, id)| after.sidecar(*d, id).is_none())
            .map(|(d, id)| ((*d, id.clone()), self.model.effective(*d, id, clock)))
            .collect();
        for ((d, id), h) in gone {
            match &allowed {
                Some(allowed) => {
                    let may = allowed.get(&d).is_some_and(|a| a.contains(&id));
                    if h.is_good() && !may {
                        return Err(self.finding(
                            "prune deleted a good backup its policy keeps",
                            format!(
                                "{cmd} ({exit}) deleted {id} on {}, a good backup; the policy over the good backups keeps it (may delete: {:?}; good there: {:?})",
                                d.name(),
                                allowed.get(&d),
                                self.good_on(d, clock)
                            ),
                        ));
                    }
                    if let Health::Bad(Detect::Listing, why) = &h {
                        return Err(self.finding(
                            "prune deleted a backup that is not good",
                            format!(
                                "{cmd} ({exit}) deleted {id} on {}, which is not good ({why}); prune must leave it for a person",
                                d.name()
                            ),
                        ));
                    }
                }
                None => {
                    return Err(self.finding(
                        "a command other than prune deleted a backup",
                        format!(
                            "{cmd} ({exit}) deleted the sidecar of {id} on {} ({})",
                            d.name(),
                            match &h {
                                Health::Good => "a good backup".to_string(),
                                Health::Bad(_, why) => why.clone(),
                            }
                        ),
                    ));
                }
            }
            self.model.stored.remove(&(d, id.clone()));
            self.model.unreadable.remove(&(d, id.clone()));
            self.model.archive_harm.remove(&(d, id.clone()));
            self.model.meta_harm.remove(&(d, id.clone()));
            self.model.tampered.remove(&(d, id));
        }

        // Files that must stay exactly as they are.
        for (path, (bytes, planted)) in &self.model.kept_files {
            let what = if *planted {
                "a planted file"
            } else {
                "an archive whose sidecar was lost"
            };
            match after.files.get(path) {
                None => {
                    return Err(self.finding(
                        &format!("{what} was deleted"),
                        format!("{cmd} ({exit}) deleted {path} ({what}): it must be reported, never acted on"),
                    ))
                }
                Some(now) if now != bytes => {
                    return Err(self.finding(
                        &format!("{what} was rewritten"),
                        format!("{cmd} ({exit}) rewrote {path} ({what})"),
                    ))
                }
                _ => {}
            }
        }
        for (path, bytes) in &self.model.staged {
            let stored = path
                .replace("/tmp/", "/")
                .trim_end_matches(".rekey")
                .to_string();
            if after.files.get(&stored) == Some(bytes) {
                return Err(self.finding(
                    "a planted staged rekey was put in place",
                    format!("{cmd} ({exit}) put the planted {path} in place as {stored}"),
                ));
            }
        }

        // Stored sidecars change only by rekey, and only for good backups.
        let is_rekey = matches!(cmd, Cmd::Rekey);
        for (path, old) in &before.files {
            let top = !path.contains("/tmp/") && path.ends_with(".json");
            if !top {
                continue;
            }
            let Some(new) = after.files.get(path) else {
                continue;
            };
            if new == old {
                continue;
            }
            let d = if path.starts_with("local/") {
                Dest::Local
            } else {
                Dest::Other
            };
            let id = path
                .split('/')
                .next_back()
                .unwrap()
                .trim_end_matches(".json")
                .to_string();
            if !is_rekey {
                return Err(self.finding(
                    "a stored sidecar was rewritten by a command other than rekey",
                    format!("{cmd} ({exit}) rewrote {path}"),
                ));
            }
            if self.model.planted_ids.contains(&id) {
                return Err(self.finding(
                    "rekey acted on a planted backup",
                    format!(
                        "{cmd} ({exit}) rewrote the sidecar of the planted backup {id} on {}",
                        d.name()
                    ),
                ));
            }
            // Finishing a genuine re-keying (a killed rekey staged it) moves the backup onto its
            // new archive: when that archive is whole, what we did to the old one is gone.
            let key = (d, id.clone());
            if self.model.archive_harm.contains_key(&key) && self.archive_whole(&after, d, new) {
                self.model.archive_harm.remove(&key);
                let rest = self
                    .model
                    .meta_harm
                    .get(&key)
                    .cloned()
                    .unwrap_or(Health::Good);
                self.model.stored.insert(key.clone(), rest);
            }
            let h = self.model.own(d, &id);
            let tampered = self.model.tampered.contains_key(&(d, id.clone()));
            let bad = match &h {
                Health::Good => false,
                Health::Bad(Detect::Listing, why) => !why.contains("ahead of the clock"),
                Health::Bad(Detect::Reading, _) => true,
                Health::Bad(Detect::Maybe, _) => {
                    tampered && !matches!(self.setup.signing, Signing::None)
                }
            };
            if bad {
                return Err(self.finding(
                    "rekey re-signed or rewrote a bad backup",
                    format!(
                        "{cmd} ({exit}) rewrote the sidecar of {id} on {}, which is not good ({})",
                        d.name(),
                        match &h {
                            Health::Bad(_, why) => why.clone(),
                            Health::Good => String::new(),
                        }
                    ),
                ));
            }
            if tampered {
                self.model.tampered.remove(&(d, id));
            }
        }

        // New sidecars: a backup made (or finished before the kill), or a copy.
        let mut new: Vec<(Dest, String)> = Vec::new();
        for path in after.files.keys() {
            if path.contains("/tmp/") || !path.ends_with(".json") || before.files.contains_key(path)
            {
                continue;
            }
            let d = if path.starts_with("local/") {
                Dest::Local
            } else {
                Dest::Other
            };
            let id = path
                .split('/')
                .next_back()
                .unwrap()
                .trim_end_matches(".json")
                .to_string();
            new.push((d, id));
        }
        let is_backup = matches!(cmd, Cmd::Backup { .. });
        let copy_from = match cmd {
            Cmd::CopyOut => Some(Dest::Local),
            Cmd::CopyBack => Some(Dest::Other),
            _ => None,
        };
        for (d, id) in &new {
            if self.model.planted_ids.contains(id) {
                return Err(self.finding(
                    "a planted backup was copied",
                    format!("{cmd} ({exit}) put the planted backup {id} on {}", d.name()),
                ));
            }
            if let Some(src) = copy_from {
                if !self.model.recs.contains_key(id)
                    || !self.model.stored.contains_key(&(src, id.clone()))
                {
                    return Err(self.finding(
                        "copy made a backup from nowhere",
                        format!(
                            "{cmd} ({exit}) put {id} on {}, which the model does not know on {}",
                            d.name(),
                            src.name()
                        ),
                    ));
                }
                match &self.model.own(src, id) {
                    Health::Bad(Detect::Listing, why) => {
                        return Err(self.finding(
                            "copy copied a bad backup",
                            format!("{cmd} ({exit}) copied {id}, which is not good on {} ({why})", src.name()),
                        ))
                    }
                    Health::Bad(Detect::Reading, why) => {
                        return Err(self.finding(
                            "copy copied a bad backup",
                            format!("{cmd} ({exit}) committed {id} on {} although its archive on {} is damaged ({why}); copy checks the BLAKE3", d.name(), src.name()),
                        ))
                    }
                    _ => {}
                }
                // The archive we kept as an orphan is a backup again.
                let prefix = format!("{}/{id}.", d.name());
                self.model.kept_files.retain(|p, _| !p.starts_with(&prefix));
                let own = self.model.stored[&(src, id.clone())].clone();
                self.model.stored.insert((*d, id.clone()), own);
                if let Some(t) = self.model.tampered.get(&(src, id.clone())).cloned() {
                    self.model.tampered.insert((*d, id.clone()), t);
                }
                if let Some(m) = self.model.meta_harm.get(&(src, id.clone())).cloned() {
                    self.model.meta_harm.insert((*d, id.clone()), m);
                }
                // Parents go first: on the target, its chain must be there.
                if let Some(p) = self.model.recs[id].parent.clone() {
                    let there = self.model.stored.contains_key(&(*d, p.clone()))
                        || new.iter().any(|(nd, nid)| nd == d && *nid == p);
                    if !there {
                        return Err(self.finding(
                            "copy left an incremental without its parent",
                            format!(
                                "{cmd} ({exit}) put {id} on {} without its parent {p}",
                                d.name()
                            ),
                        ));
                    }
                }
                continue;
            }
            if !is_backup || self.model.recs.contains_key(id) {
                return Err(self.finding(
                    "a backup appeared from nowhere",
                    format!("{cmd} ({exit}) made {id} appear on {}", d.name()),
                ));
            }
            if let Some(r) = &run {
                let ok = reported
                    .as_ref()
                    .is_some_and(|(rid, ds)| rid == id && ds.contains(d));
                if !ok {
                    return Err(self.finding(
                        "backup stored a backup it did not report",
                        format!(
                            "{cmd} (exit {}) left {id} on {} but reported {:?}",
                            r.code,
                            d.name(),
                            reported
                        ),
                    ));
                }
            }
        }
        // Record each new backup once, with the sources as they are.
        let mut made: BTreeMap<String, Vec<Dest>> = BTreeMap::new();
        if is_backup {
            for (d, id) in &new {
                made.entry(id.clone()).or_default().push(*d);
            }
        }
        if let Some((id, dests)) = &reported {
            for d in dests {
                if after.sidecar(*d, id).is_none() {
                    return Err(self.finding(
                        "backup reported a backup it did not store",
                        format!("{cmd} ({exit}) reported {id} stored on {}, which holds no sidecar for it", d.name()),
                    ));
                }
            }
        }
        for (id, dests) in made {
            let listed = dests
                .iter()
                .find_map(|d| after.list.get(&(*d, id.clone())))
                .cloned();
            let (created_ms, parent) = match listed {
                Some(l) => (l.created_ms, l.parent),
                None => {
                    // Not listed at all: read what it says from the stored sidecar.
                    let body = after.sidecar(dests[0], &id).cloned().unwrap_or_default();
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    (
                        v["manifest"]["created"]
                            .as_str()
                            .and_then(parse_ms)
                            .unwrap_or(0),
                        v["manifest"]["parent"].as_str().map(str::to_string),
                    )
                }
            };
            let mut content = self.model.current;
            if self.sabotage == Some(Sabotage::Content) {
                let mut c = self.model.contents[content].clone();
                c.rows.push((i64::MAX, "never written".into()));
                self.model.contents.push(c);
                content = self.model.contents.len() - 1;
            }
            self.model.recs.insert(
                id.clone(),
                Rec {
                    created_ms,
                    parent,
                    content,
                },
            );
            for d in &dests {
                self.model.stored.insert((*d, id.clone()), Health::Good);
                let h = self.model.effective(*d, &id, clock);
                if let Health::Bad(Detect::Listing, why) = h {
                    return Err(self.finding(
                        "backup made a backup that is not good",
                        format!(
                            "{cmd} ({exit}) stored {id} on {}, which is not good: {why}",
                            d.name()
                        ),
                    ));
                }
            }
        }

        // Verify's word on each backup.
        if let (Cmd::Verify, Some(r)) = (cmd, &run) {
            self.check_verify(r, clock)?;
        }

        self.obs = after;
        self.check_listing()
    }

    /// Whether the archive a sidecar names is stored whole: its size and BLAKE3 as the sidecar
    /// says.
    fn archive_whole(&self, obs: &Obs, d: Dest, sidecar: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(sidecar) else {
            return false;
        };
        let (Some(object), Some(bytes), Some(hash)) = (
            v["archive"]["object"].as_str(),
            v["archive"]["bytes"].as_u64(),
            v["archive"]["blake3"].as_str(),
        ) else {
            return false;
        };
        obs.files
            .get(&format!("{}/{object}", d.name()))
            .is_some_and(|b| b.len() as u64 == bytes && blake3::hash(b).to_hex().as_str() == hash)
    }

    fn good_on(&self, d: Dest, clock: i64) -> Vec<String> {
        self.model
            .on(d)
            .into_iter()
            .filter(|id| self.model.effective(d, id, clock).is_good())
            .collect()
    }

    /// After a fault: the model knows what it did; the listing must still agree on the rest.
    fn after_fault(&mut self) -> Check {
        self.obs = self.observe()?;
        self.check_listing()
    }

    /// Every backup good in the model is listed, clean; every backup listed is known.
    fn check_listing(&self) -> Check {
        let now = now_ms();
        for (d, id) in self.model.stored.keys() {
            let h = self.model.effective(*d, id, now);
            if !h.is_good() {
                continue;
            }
            match self.obs.list.get(&(*d, id.clone())) {
                None => {
                    return Err(self.finding(
                        "a good backup is no longer listed",
                        format!(
                            "{id} on {} is good in the model but `list` does not show it",
                            d.name()
                        ),
                    ))
                }
                Some(l) if !l.clean() => {
                    return Err(self.finding(
                        "a good backup went bad",
                        format!(
                            "{id} on {} is good in the model but `list` says: {}",
                            d.name(),
                            l.why()
                        ),
                    ))
                }
                _ => {}
            }
        }
        for ((d, id), l) in &self.obs.list {
            // What litevault calls good must not be what the model knows to be bad. Without a
            // `standing` (before litevault judged host and date), only damage and trust count.
            let called_good = match &l.standing {
                Some(s) => s == "good",
                None => l.clean(),
            };
            if called_good && self.model.planted_ids.contains(id) && l.standing.is_some() {
                return Err(self.finding(
                    "list calls a planted backup good",
                    format!(
                        "{id} on {}, another host's backup planted here, is listed good",
                        d.name()
                    ),
                ));
            }
            if called_good && self.model.stored.contains_key(&(*d, id.clone())) {
                if let Health::Bad(Detect::Listing, why) = self.model.effective(*d, id, now) {
                    if l.standing.is_some() || !why.contains("ahead of the clock") {
                        return Err(self.finding(
                            "list calls a bad backup good",
                            format!("{id} on {} is listed good, but {why}", d.name()),
                        ));
                    }
                }
            }
            if self.model.planted_ids.contains(id) {
                continue;
            }
            if !self.model.stored.contains_key(&(*d, id.clone())) {
                return Err(self.finding(
                    "list shows a backup the model does not know",
                    format!("{id} on {} ({:?})", d.name(), l),
                ));
            }
        }
        Ok(())
    }

    fn check_verify(&self, r: &Run, clock: i64) -> Check {
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
        let results = v["results"].as_array().cloned().unwrap_or_default();
        for res in &results {
            let id = res["id"].as_str().unwrap_or_default().to_string();
            let Some(d) = res["destination"].as_str().and_then(Dest::from_name) else {
                continue;
            };
            let ok = res["ok"].as_bool() == Some(true);
            if self.model.planted_ids.contains(&id) {
                if ok {
                    return Err(self.finding(
                        "verify vouched for a planted backup",
                        format!("verify --all (exit {}) says the planted {id} (another host's) on {} is ok", r.code, d.name()),
                    ));
                }
                continue;
            }
            if !self.model.stored.contains_key(&(d, id.clone())) {
                continue;
            }
            let h = self.model.effective(d, &id, clock);
            match (&h, ok) {
                (Health::Good, false) => {
                    return Err(self.finding(
                        "verify condemned a good backup",
                        format!(
                            "verify --all (exit {}) says {id} on {} fails: {}",
                            r.code,
                            d.name(),
                            res["error"]
                        ),
                    ))
                }
                (Health::Bad(Detect::Reading, why), true) => {
                    return Err(self.finding(
                        "verify vouched for a bad backup",
                        format!(
                            "verify --all (exit {}) says {id} on {} is ok, but {why}",
                            r.code,
                            d.name()
                        ),
                    ))
                }
                (Health::Bad(Detect::Listing, why), true)
                    if !why.contains("ahead of the clock") =>
                {
                    return Err(self.finding(
                        "verify vouched for a bad backup",
                        format!(
                            "verify --all (exit {}) says {id} on {} is ok, but {why}",
                            r.code,
                            d.name()
                        ),
                    ))
                }
                _ => {}
            }
        }
        if r.code == 0 {
            for (d, id) in self.model.stored.keys() {
                if let Health::Bad(level, why) = self.model.effective(*d, id, clock) {
                    if level >= Detect::Reading && !why.contains("ahead of the clock") {
                        return Err(self.finding(
                            "verify --all exited 0 with a bad backup stored",
                            format!("{id} on {}: {why}", d.name()),
                        ));
                    }
                }
            }
            // An archive without its sidecar (ours or planted), or a planted sidecar whose
            // archive is not there: integrity findings.
            let sidecars: BTreeSet<String> = self
                .obs
                .files
                .keys()
                .filter_map(|p| p.strip_suffix(".json").map(str::to_string))
                .collect();
            for path in self.model.kept_files.keys() {
                let base = path.split(".tar").next().unwrap_or(path);
                let base = base.split(".json").next().unwrap_or(base);
                let has_sidecar = sidecars.contains(base);
                let has_archive = self
                    .obs
                    .files
                    .keys()
                    .any(|p| p.starts_with(&format!("{base}.")) && p.contains(".tar"));
                if has_sidecar != has_archive {
                    return Err(self.finding(
                        "verify --all exited 0 with an archive or sidecar alone",
                        format!(
                            "{path} is there without its {}",
                            if has_sidecar { "archive" } else { "sidecar" }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    // ---- restores ----

    fn restore_dir(&mut self) -> PathBuf {
        self.restores += 1;
        self.env.path(&format!("restore-{}", self.restores))
    }

    fn restored(&self, dir: &Path) -> Result<Content, String> {
        Ok(Content {
            rows: dump(&dir.join("app.db"))?,
            conf: fs::read(dir.join("app.conf")).map_err(|e| e.to_string())?,
        })
    }

    fn restore_latest(&mut self, shift: Option<Shift>, clock: i64) -> Check {
        let dir = self.restore_dir();
        let args: Vec<String> = ["--json", "restore", "latest", "--to", dir.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = self.run_args(&args, shift);
        self.say(&format!("exit {}", r.code));
        // The newest good backup.
        let mut best_good: Option<(i64, String, Dest)> = None;
        for (d, id) in self.model.stored.keys() {
            let h = self.model.effective(*d, id, clock);
            let key = (self.model.recs[id].created_ms, id.clone(), *d);
            if h.is_good() && best_good.as_ref().is_none_or(|b| key.0 > b.0) {
                best_good = Some(key);
            }
        }
        // A copy bad in a way no listing shows, as new as the newest good one (the same backup
        // on another destination, say), may be what `latest` picks, and then fail.
        let uncertain_newer = match &best_good {
            Some(g) => {
                self.model.tampered.keys().next().is_some()
                    || self.model.stored.keys().any(|(d, id)| {
                        let h = self.model.effective(*d, id, clock);
                        !h.is_good() && h.may_look_good() && self.model.recs[id].created_ms >= g.0
                    })
            }
            None => true,
        };
        if r.code != 0 {
            let _ = fs::remove_dir_all(&dir);
            if let (Some((_, id, d)), false) = (&best_good, uncertain_newer) {
                return Err(self.finding(
                    "restore latest failed while a good backup exists",
                    format!(
                        "restore latest exited {}: {}; {id} on {} is good",
                        r.code,
                        r.stderr.trim(),
                        d.name()
                    ),
                ));
            }
            return self.after_fault();
        }
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
        let id = v["id"].as_str().unwrap_or_default().to_string();
        let d = v["destination"].as_str().and_then(Dest::from_name);
        if self.model.planted_ids.contains(&id) {
            return Err(self.finding(
                "restore latest picked a planted backup",
                format!("restore latest (exit 0) restored {id}, another host's backup planted in this host's folder"),
            ));
        }
        let Some(d) = d.filter(|d| self.model.stored.contains_key(&(*d, id.clone()))) else {
            return Err(self.finding(
                "restore latest picked a backup the model does not know",
                format!(
                    "restore latest (exit 0) restored {id} from {}",
                    v["destination"]
                ),
            ));
        };
        let h = self.model.effective(d, &id, clock);
        if let Health::Bad(Detect::Listing, why) = &h {
            return Err(self.finding(
                "restore latest picked a bad backup",
                format!(
                    "restore latest (exit 0) restored {id} on {}, which is not good: {why}",
                    d.name()
                ),
            ));
        }
        if let (Some((t, gid, gd)), false) = (&best_good, uncertain_newer) {
            if *t > self.model.recs[&id].created_ms {
                return Err(self.finding(
                    "restore latest picked an older backup than the newest good one",
                    format!(
                        "restore latest restored {id} on {}; {gid} on {} is newer and good",
                        d.name(),
                        gd.name()
                    ),
                ));
            }
        }
        self.check_content(&id, d, &dir, "restore latest")?;
        let _ = fs::remove_dir_all(&dir);
        self.after_fault()
    }

    fn check_content(&self, id: &str, d: Dest, dir: &Path, what: &str) -> Check {
        let want = &self.model.contents[self.model.recs[id].content];
        match self.restored(dir) {
            Ok(got) if &got == want => Ok(()),
            Ok(got) => Err(self.finding(
                "a restore (exit 0) gave other content than was backed up",
                format!(
                    "{what}: {id} on {} restored {} but held {}",
                    d.name(),
                    got.describe(),
                    want.describe()
                ),
            )),
            Err(e) => Err(self.finding(
                "a restore (exit 0) gave other content than was backed up",
                format!(
                    "{what}: {id} on {} exited 0 but the result cannot be read: {e}",
                    d.name()
                ),
            )),
        }
    }

    fn restore_id(&mut self, d: Dest, pick: u64, shift: Option<Shift>, clock: i64) -> Check {
        let ids = self.model.on(d);
        if ids.is_empty() {
            return Ok(());
        }
        let id = ids[(pick % ids.len() as u64) as usize].clone();
        self.restore_one(&id, d, shift, clock, "restore ID")?;
        self.after_fault()
    }

    fn restore_one(
        &mut self,
        id: &str,
        d: Dest,
        shift: Option<Shift>,
        clock: i64,
        what: &str,
    ) -> Check {
        let dir = self.restore_dir();
        let args: Vec<String> = [
            "--json",
            "restore",
            id,
            "--dest",
            d.name(),
            "--to",
            dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = self.run_args(&args, shift);
        self.say(&format!(
            "restore {id} --dest {}: exit {}",
            d.name(),
            r.code
        ));
        let h = self.model.effective(d, id, clock);
        let out = if r.code == 0 {
            match &h {
                Health::Bad(Detect::Listing, why) if !why.contains("ahead of the clock") => {
                    Err(self.finding(
                        "restore accepted a bad backup",
                        format!(
                            "{what}: restore {id} --dest {} exited 0, but {why}",
                            d.name()
                        ),
                    ))
                }
                Health::Bad(Detect::Reading, why) => Err(self.finding(
                    "restore accepted a bad backup",
                    format!(
                        "{what}: restore {id} --dest {} exited 0, but {why}",
                        d.name()
                    ),
                )),
                _ => self.check_content(id, d, &dir, what),
            }
        } else if h.is_good() {
            Err(self.finding(
                "a good backup does not restore",
                format!(
                    "{what}: restore {id} --dest {} exited {}: {}",
                    d.name(),
                    r.code,
                    r.stderr.trim()
                ),
            ))
        } else {
            Ok(())
        };
        let _ = fs::remove_dir_all(&dir);
        out
    }

    /// At the end: every good backup restores to what it held, and so does every backup the
    /// listing calls clean (or it fails, when the model knows it cannot).
    fn final_sweep(&mut self) -> Check {
        let now = now_ms();
        let keys: Vec<(Dest, String)> = self.model.stored.keys().cloned().collect();
        for (d, id) in keys {
            let h = self.model.effective(d, &id, now);
            let clean = self
                .obs
                .list
                .get(&(d, id.clone()))
                .is_some_and(Listed::clean);
            if h.is_good() || (clean && h.may_look_good()) {
                self.restore_one(&id, d, None, now, "final sweep")?;
            }
        }
        Ok(())
    }

    // ---- faults ----

    fn harm(&mut self, d: Dest, pick: u64, obj: Obj, harm: Harm) {
        let ids = self.model.on(d);
        if ids.is_empty() {
            return;
        }
        let id = ids[(pick % ids.len() as u64) as usize].clone();
        let ns = self.ns(d);
        let sidecar = ns.join(format!("{id}.json"));
        let path = match obj {
            Obj::Sidecar => sidecar.clone(),
            Obj::Signature => ns.join(format!("{id}.json.sig")),
            Obj::Archive => {
                let named = fs::read(&sidecar)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|v| v["archive"]["object"].as_str().map(str::to_string))
                    .map(|o| ns.join(o))
                    .filter(|p| p.is_file());
                match named {
                    Some(p) => p,
                    None => {
                        let mut found: Vec<PathBuf> = fs::read_dir(&ns)
                            .unwrap()
                            .flatten()
                            .map(|e| e.path())
                            .filter(|p| {
                                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                                n.starts_with(&format!("{id}.")) && n.contains(".tar")
                            })
                            .collect();
                        found.sort();
                        match found.pop() {
                            Some(p) => p,
                            None => return,
                        }
                    }
                }
            }
        };
        let Ok(old) = fs::read(&path) else {
            return;
        };
        let new: Option<Vec<u8>> = match harm {
            Harm::Delete => None,
            Harm::Truncate(at) => Some(old[..(at % old.len().max(1) as u64) as usize].to_vec()),
            Harm::Flip(at, x) => {
                let mut b = old.clone();
                if b.is_empty() {
                    return;
                }
                let i = (at % b.len() as u64) as usize;
                b[i] ^= x;
                Some(b)
            }
        };
        self.say(&format!(
            "{} {} -> {} bytes",
            path.display(),
            old.len(),
            new.as_ref().map_or(0, Vec::len)
        ));
        match &new {
            _ if self.sabotage == Some(Sabotage::FalseHarm) => {}
            None => fs::remove_file(&path).unwrap(),
            Some(b) => fs::write(&path, b).unwrap(),
        }
        if self.sabotage == Some(Sabotage::HideHarm) {
            return;
        }
        let key = (d, id.clone());
        let trusted = matches!(self.setup.signing, Signing::Trusted);
        let hit = match obj {
            Obj::Archive => match harm {
                Harm::Flip(..) => Health::Bad(
                    Detect::Reading,
                    format!("we flipped a byte of its archive on {}", d.name()),
                ),
                Harm::Delete => Health::Bad(
                    Detect::Listing,
                    format!("we deleted its archive on {}", d.name()),
                ),
                Harm::Truncate(_) => Health::Bad(
                    Detect::Listing,
                    format!("we truncated its archive on {}", d.name()),
                ),
            },
            Obj::Signature => match self.setup.signing {
                Signing::None => Health::Good,
                Signing::SignOnly => Health::Bad(
                    Detect::Maybe,
                    "we damaged its signature (not checked here)".into(),
                ),
                // A signature cut by its last newline still verifies: ask ssh-keygen.
                Signing::Trusted if new.is_some() && self.signature_verifies(d, &id) => {
                    Health::Good
                }
                Signing::Trusted => Health::Bad(
                    Detect::Listing,
                    format!("we damaged its signature on {}", d.name()),
                ),
            },
            Obj::Sidecar => match &new {
                None => {
                    // Gone: its archive is now an archive without a sidecar, to be kept.
                    self.model.stored.remove(&key);
                    self.model.tampered.remove(&key);
                    self.model.unreadable.remove(&key);
                    self.model.archive_harm.remove(&key);
                    self.model.meta_harm.remove(&key);
                    for e in fs::read_dir(&ns).unwrap().flatten() {
                        let n = e.file_name().to_string_lossy().into_owned();
                        if n.starts_with(&format!("{id}.")) && n.contains(".tar") {
                            let rel = format!("{}/{n}", d.name());
                            self.model
                                .kept_files
                                .insert(rel, (fs::read(e.path()).unwrap(), false));
                        }
                    }
                    return;
                }
                Some(b) => {
                    let before: Option<Value> = serde_json::from_slice(&old).ok();
                    match serde_json::from_slice::<Value>(b) {
                        Err(_) => {
                            self.model.unreadable.insert(key.clone());
                            Health::Bad(
                                Detect::Listing,
                                format!("we made its sidecar on {} unreadable", d.name()),
                            )
                        }
                        Ok(v) if Some(&v) == before.as_ref() => {
                            if trusted {
                                Health::Bad(
                                    Detect::Listing,
                                    format!(
                                        "we changed its signed sidecar's bytes on {}",
                                        d.name()
                                    ),
                                )
                            } else {
                                Health::Good
                            }
                        }
                        Ok(_) => {
                            self.model.tampered.insert(key.clone(), b.clone());
                            if trusted {
                                Health::Bad(
                                    Detect::Listing,
                                    format!("we edited its signed sidecar on {}", d.name()),
                                )
                            } else {
                                Health::Bad(
                                    Detect::Maybe,
                                    format!("we edited its sidecar on {}", d.name()),
                                )
                            }
                        }
                    }
                }
            },
        };
        let which = match obj {
            Obj::Archive => &mut self.model.archive_harm,
            _ => &mut self.model.meta_harm,
        };
        let before = which.get(&key).cloned().unwrap_or(Health::Good);
        which.insert(key.clone(), before.worse(hit.clone()));
        let cur = self.model.stored[&key].clone();
        self.model.stored.insert(key, cur.worse(hit));
    }

    /// Whether `<id>.json.sig` on `dest` is a valid signature of `<id>.json` by this host's
    /// signing key, as `ssh-keygen -Y verify` (what the README tells people to run) sees it.
    fn signature_verifies(&self, d: Dest, id: &str) -> bool {
        let Some(public) = &self.signing_pub else {
            return false;
        };
        let allowed = self.env.path("allowed_signers");
        fs::write(&allowed, format!("litevault {public}\n")).unwrap();
        let ns = self.ns(d);
        let r = sh(
            &format!(
                "ssh-keygen -Y verify -f {} -I litevault -n litevault -s {}/{id}.json.sig < {}/{id}.json",
                allowed.display(),
                ns.display(),
                ns.display()
            ),
            Path::new("/"),
        );
        r.code == 0
    }

    /// Another host (its own `name`, `state_dir` and data, the same destination root) takes a
    /// backup; returns its files in its own folder: (sidecar, signature, archive).
    fn foreign_backup(&mut self) -> (PathBuf, Option<PathBuf>, PathBuf) {
        let root = self.env.root().display().to_string();
        let data = self.env.path("data-other");
        if self.foreign_n == 0 {
            fs::create_dir_all(&data).unwrap();
            let conn = Connection::open(data.join("app.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT NOT NULL);
                 INSERT INTO kv VALUES (1, 'another host'), (2, 'its own data');",
            )
            .unwrap();
            fs::write(data.join("app.conf"), b"listen = 10.0.0.9:1812\n").unwrap();
            if let (Some(_), false) = (&self.signing_key, self.setup.foreign_same_key) {
                let key = self.env.path("foreign-signing.key");
                self.env
                    .run(&["key", "generate", "--signing", key.to_str().unwrap()])
                    .ok();
            }
        }
        self.foreign_n += 1;
        let conn = Connection::open(data.join("app.db")).unwrap();
        conn.execute(
            "INSERT INTO kv(v) VALUES (?1)",
            [format!("foreign {}", self.foreign_n)],
        )
        .unwrap();
        drop(conn);
        let ours = fs::read_to_string(self.env.write_config()).unwrap();
        let mut text = ours
            .replace("name = \"test-host\"", "name = \"other-host\"")
            .replace(&format!("{root}/state\""), &format!("{root}/state-other\""))
            .replace(&format!("{root}/data/"), &format!("{root}/data-other/"));
        if !self.setup.foreign_same_key {
            text = text.replace(
                &format!("{root}/signing.key\""),
                &format!("{root}/foreign-signing.key\""),
            );
        }
        let config = self.env.path("other-host.toml");
        fs::write(&config, text).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&config)
            .args(["--json", "backup", "--full", "--dest", "local"]);
        let r = run_cmd(cmd);
        r.ok();
        let id = r.json()["id"].as_str().unwrap().to_string();
        let folder = self.env.path("backups/other-host");
        let sig = folder.join(format!("{id}.json.sig"));
        let archive = fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with(&format!("{id}.")) && n.contains(".tar")
            })
            .unwrap();
        (
            folder.join(format!("{id}.json")),
            sig.is_file().then_some(sig),
            archive,
        )
    }

    fn plant(&mut self, d: Dest, what: Plant) {
        let ns = self.ns(d);
        fs::create_dir_all(&ns).unwrap();
        let put = |model: &mut Model, from: &Path| {
            let name = from.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = fs::read(from).unwrap();
            fs::write(ns.join(&name), &bytes).unwrap();
            model
                .kept_files
                .insert(format!("{}/{name}", d.name()), (bytes, true));
            name
        };
        match what {
            Plant::Foreign | Plant::ForeignSidecar | Plant::ForeignArchive => {
                let (sidecar, sig, archive) = self.foreign_backup();
                let id = sidecar
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches(".json")
                    .to_string();
                if !matches!(what, Plant::ForeignArchive) {
                    put(&mut self.model, &sidecar);
                    if let Some(sig) = &sig {
                        put(&mut self.model, sig);
                    }
                }
                if !matches!(what, Plant::ForeignSidecar) {
                    put(&mut self.model, &archive);
                }
                self.model.planted_ids.insert(id);
            }
            Plant::StagedRekey { pick, variant, sig } => {
                let ids = self.model.on(d);
                if ids.is_empty() {
                    return;
                }
                let id = ids[(pick % ids.len() as u64) as usize].clone();
                let Some(mut v) = fs::read(ns.join(format!("{id}.json")))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                else {
                    return;
                };
                let other = ids.iter().find(|x| **x != id).cloned();
                match variant {
                    0 => v["archive"]["blake3"] = Value::from("0".repeat(64)),
                    1 => {
                        v["archive"]["object"] = Value::from(format!("{id}.r0badf00d.tar.zst.age"))
                    }
                    _ => {
                        let o = other
                            .as_ref()
                            .and_then(|o| fs::read(ns.join(format!("{o}.json"))).ok())
                            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                            .map(|ov| ov["archive"].clone());
                        match o {
                            Some(a) => v["archive"] = a,
                            None => v["archive"]["blake3"] = Value::from("1".repeat(64)),
                        }
                    }
                }
                let tmp = ns.join("tmp");
                fs::create_dir_all(&tmp).unwrap();
                let body = serde_json::to_vec(&v).unwrap();
                fs::write(tmp.join(format!("{id}.json.rekey")), &body).unwrap();
                self.model
                    .staged
                    .insert(format!("{}/tmp/{id}.json.rekey", d.name()), body);
                if sig {
                    if let Some(sig_bytes) =
                        other.and_then(|o| fs::read(ns.join(format!("{o}.json.sig"))).ok())
                    {
                        fs::write(tmp.join(format!("{id}.json.sig.rekey")), &sig_bytes).unwrap();
                        self.model
                            .staged
                            .insert(format!("{}/tmp/{id}.json.sig.rekey", d.name()), sig_bytes);
                    }
                }
            }
        }
    }
}

fn walk_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk_files(base, &p, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

/// Run `steps` in a fresh world; the first finding, if any. A finding of a kind named in
/// `LITEVAULT_CHAOS_IGNORE` (substrings, `;`-separated) ends the sequence as a pass, to look past
/// a known bug for others.
fn run_steps(setup: &Setup, steps: &[Step], verbose: bool) -> Option<Finding> {
    run_sabotaged(setup, steps, verbose, None)
}

/// What the sabotage test tells the model wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sabotage {
    /// Each backup is recorded as holding a row it never held.
    Content,
    /// A fault is done but the model is not told.
    HideHarm,
    /// The model is told of a fault that is not done.
    FalseHarm,
    /// The retention model says prune may delete nothing.
    Policy,
}

fn run_sabotaged(
    setup: &Setup,
    steps: &[Step],
    verbose: bool,
    sabotage: Option<Sabotage>,
) -> Option<Finding> {
    let mut w = World::new(setup, verbose);
    w.sabotage = sabotage;
    let found = |f: Finding| {
        let ignored = std::env::var("LITEVAULT_CHAOS_IGNORE").unwrap_or_default();
        let skip = ignored
            .split(';')
            .any(|i| !i.trim().is_empty() && f.category.contains(i.trim()));
        if verbose || skip {
            eprintln!(
                "    finding{}: {}: {}",
                if skip { " (ignored)" } else { "" },
                f.category,
                f.detail
            );
        }
        (!skip).then_some(f)
    };
    for (i, step) in steps.iter().enumerate() {
        w.at = i;
        if verbose {
            eprintln!("  [{i}] {step}");
        }
        if let Err(f) = w.step(step) {
            return found(f);
        }
    }
    w.at = steps.len();
    w.final_sweep().err().and_then(found)
}

/// Drop steps while the same kind of finding remains: chunks of half the steps, then smaller,
/// down to one at a time (delta debugging). Returns the indices kept and the finding.
fn shrink(setup: &Setup, steps: &[Step], first: Finding) -> (Vec<usize>, Finding) {
    let mut keep: Vec<usize> = (0..=first.step.min(steps.len() - 1)).collect();
    let mut finding = first;
    let same = |f: &Option<Finding>, cat: &str| f.as_ref().is_some_and(|f| f.category == cat);
    let mut chunk = keep.len().div_ceil(2).max(1);
    loop {
        let mut progress = false;
        let mut start = 0;
        while start < keep.len() {
            let end = (start + chunk).min(keep.len());
            let mut trial = keep.clone();
            trial.drain(start..end);
            if trial.is_empty() {
                start = end;
                continue;
            }
            let run: Vec<Step> = trial.iter().map(|i| steps[*i].clone()).collect();
            let got = run_steps(setup, &run, false);
            if same(&got, &finding.category) {
                let f = got.unwrap();
                trial.truncate((f.step + 1).min(trial.len()));
                keep = trial;
                finding = f;
                progress = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !progress {
            break;
        }
        if !progress {
            chunk = (chunk / 2).max(1);
        }
    }
    (keep, finding)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

struct Report {
    seed: u64,
    steps: Vec<String>,
    keep: Vec<usize>,
    finding: Finding,
}

fn run_seed(seed: u64, keep_only: Option<&[usize]>, verbose: bool) -> Option<Report> {
    let (setup, steps) = generate(seed);
    let chosen: Vec<usize> = match keep_only {
        Some(k) => k.iter().copied().filter(|i| *i < steps.len()).collect(),
        None => (0..steps.len()).collect(),
    };
    let run: Vec<Step> = chosen.iter().map(|i| steps[*i].clone()).collect();
    let finding = run_steps(&setup, &run, verbose)?;
    let text: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
    if keep_only.is_some() {
        let keep = chosen;
        return Some(Report {
            seed,
            steps: text,
            keep,
            finding,
        });
    }
    eprintln!(
        "chaos: seed {seed} found: {} ({}); shrinking {} steps",
        finding.category,
        finding.detail,
        run.len()
    );
    let (keep, finding) = shrink(&setup, &steps, finding);
    Some(Report {
        seed,
        steps: text,
        keep,
        finding,
    })
}

fn render(r: &Report, setup: &Setup) -> String {
    let mut s = format!(
        "seed {}: {}\n  {}\n  setup: {:?}\n  minimal sequence ({} of {} steps):\n",
        r.seed,
        r.finding.category,
        r.finding.detail,
        setup,
        r.keep.len(),
        r.steps.len()
    );
    for (n, i) in r.keep.iter().enumerate() {
        let mark = if n == r.finding.step {
            "   <- found after this step"
        } else {
            ""
        };
        s.push_str(&format!("    [{i}] {}{mark}\n", r.steps[*i]));
    }
    if r.finding.step >= r.keep.len() {
        s.push_str("    (found by the final sweep)\n");
    }
    s.push_str(&format!(
        "  replay: LITEVAULT_CHAOS_SEED={} LITEVAULT_CHAOS_KEEP={} LITEVAULT_CHAOS_VERBOSE=1 cargo test --test it chaos -- --nocapture\n",
        r.seed,
        r.keep
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));
    s
}

#[test]
fn chaos_sequences_never_lose_a_good_backup_nor_act_on_a_planted_one() {
    require_tool("faketime");
    require_tool("age-keygen");
    let verbose = std::env::var("LITEVAULT_CHAOS_VERBOSE").is_ok_and(|v| v == "1");
    let seeds: Vec<u64> = match env_u64("LITEVAULT_CHAOS_SEED") {
        Some(s) => vec![s],
        None => {
            let start = env_u64("LITEVAULT_CHAOS_START").unwrap_or(1);
            let n = env_u64("LITEVAULT_CHAOS_SEEDS").unwrap_or(24);
            (start..start + n).collect()
        }
    };
    let keep_only: Option<Vec<usize>> = std::env::var("LITEVAULT_CHAOS_KEEP")
        .ok()
        .filter(|_| seeds.len() == 1)
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    if seeds.is_empty() {
        eprintln!("chaos: no seeds to run");
        return;
    }
    if std::env::var("LITEVAULT_CHAOS_DRY").is_ok_and(|v| v == "1") {
        for seed in &seeds {
            let (setup, steps) = generate(*seed);
            eprintln!("seed {seed}: {setup:?}");
            for (i, s) in steps.iter().enumerate() {
                eprintln!("    [{i}] {s}");
            }
        }
        return;
    }
    let jobs = env_u64("LITEVAULT_CHAOS_JOBS").unwrap_or(2).max(1) as usize;
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let reports: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(seeds.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(&seed) = seeds.get(i) else { break };
                if verbose {
                    let (_, steps) = generate(seed);
                    eprintln!("chaos: seed {seed} ({} steps)", steps.len());
                }
                if let Some(r) = run_seed(seed, keep_only.as_deref(), verbose) {
                    eprintln!("{}", render(&r, &generate(seed).0));
                    reports.lock().unwrap().push(r);
                }
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if n.is_multiple_of(50) {
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "chaos: {n}/{} sequences, {} failing, {secs:.0} s ({:.2} seeds/s)",
                        seeds.len(),
                        reports.lock().unwrap().len(),
                        n as f64 / secs
                    );
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let reports = reports.into_inner().unwrap();
    eprintln!(
        "chaos: {} sequences (seeds {}..={}), {} failing, {secs:.1} s, {:.2} seeds/s",
        seeds.len(),
        seeds.first().unwrap(),
        seeds.last().unwrap(),
        reports.len(),
        seeds.len() as f64 / secs
    );
    if !reports.is_empty() {
        // Each was printed in full (minimal sequence included) when found; here, one line each.
        let mut sorted = reports;
        sorted.sort_by_key(|r| r.seed);
        let text: String = sorted
            .iter()
            .map(|r| {
                format!(
                    "  seed {}: {} (minimal: {} steps) -- replay: LITEVAULT_CHAOS_SEED={} LITEVAULT_CHAOS_KEEP={} LITEVAULT_CHAOS_VERBOSE=1 cargo test --test it chaos -- --nocapture\n",
                    r.seed,
                    r.finding.category,
                    r.keep.len(),
                    r.seed,
                    r.keep.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        panic!(
            "{} chaos sequence(s) found a problem (each printed above with its minimal sequence):\n{text}",
            sorted.len()
        );
    }
}

#[test]
fn chaos_model_keeps_the_newest_good_and_parents_of_kept_backups() {
    // The retention model itself, on a chain: F1 <- I1 <- I2, F2 (newest), keep_last 1.
    let mut m = Model::default();
    let rec = |t: i64, p: Option<&str>| Rec {
        created_ms: t,
        parent: p.map(str::to_string),
        content: 0,
    };
    m.recs.insert("f1".into(), rec(1, None));
    m.recs.insert("i1".into(), rec(2, Some("f1")));
    m.recs.insert("i2".into(), rec(3, Some("i1")));
    m.recs.insert("f2".into(), rec(4, None));
    for id in ["f1", "i1", "i2", "f2"] {
        m.stored.insert((Dest::Local, id.into()), Health::Good);
    }
    let may = |m: &Model, n| m.prune_may_delete(Dest::Local, n, 10);
    assert_eq!(may(&m, 1), ["f1", "i1", "i2"].map(String::from).into());
    assert_eq!(may(&m, 2), BTreeSet::new(), "i2 is kept, so its chain is");
    // The newest is truncated: it is kept (not good), and the newest good (i2) keeps its chain.
    m.stored.insert(
        (Dest::Local, "f2".into()),
        Health::Bad(Detect::Listing, "truncated".into()),
    );
    assert_eq!(may(&m, 1), BTreeSet::new());
    // A middle link's archive flipped: litevault may take it for good, or not.
    m.stored.insert(
        (Dest::Local, "i1".into()),
        Health::Bad(Detect::Reading, "flipped".into()),
    );
    let got = may(&m, 1);
    assert!(!got.contains("f2"));
    // Dated ahead of the clock: not good, kept.
    m.recs.insert("f3".into(), rec(1_000_000, None));
    m.stored.insert((Dest::Local, "f3".into()), Health::Good);
    assert!(!m.effective(Dest::Local, "f3", 10).is_good());
    assert!(!may(&m, 1).contains("f3"));
    assert_eq!(parse_ms("1970-01-01T00:00:01.5Z"), Some(1500));
    assert_eq!(
        parse_ms("2026-11-26T10:59:38.000Z"),
        Some(1_795_690_778_000)
    );
}

fn fixed_setup(signing: Signing) -> Setup {
    Setup {
        signing,
        foreign_same_key: true,
        max_chain: 4,
        wal: true,
    }
}

fn backup(both: bool) -> Step {
    Step::Run(Cmd::Backup { full: false, both })
}

/// The campaign's findings as fixed sequences, so that CI checks each of them whatever the
/// seeds happen to draw.
#[test]
fn chaos_known_scenarios_find_nothing() {
    require_tool("faketime");
    let change = |seed| Step::Change { seed };
    let scenarios: Vec<(&str, Setup, Vec<Step>)> = vec![
        (
            "prune with a truncated newest backup",
            fixed_setup(Signing::None),
            vec![
                backup(false),
                change(1),
                backup(false),
                Step::Run(Cmd::Backup {
                    full: true,
                    both: false,
                }),
                Step::Harm {
                    dest: Dest::Local,
                    pick: 2,
                    obj: Obj::Archive,
                    harm: Harm::Truncate(40),
                },
                Step::Run(Cmd::Prune {
                    keep_last: 1,
                    all: false,
                }),
            ],
        ),
        (
            "a lost sidecar of a middle chain link, then backup",
            fixed_setup(Signing::None),
            vec![
                backup(false),
                change(2),
                backup(false),
                change(3),
                backup(false),
                Step::Harm {
                    dest: Dest::Local,
                    pick: 1,
                    obj: Obj::Sidecar,
                    harm: Harm::Delete,
                },
                change(4),
                backup(false),
                Step::Run(Cmd::Prune {
                    keep_last: 1,
                    all: false,
                }),
            ],
        ),
        (
            "a planted staged rekey, then backup and rekey",
            fixed_setup(Signing::Trusted),
            vec![
                backup(false),
                Step::Plant {
                    dest: Dest::Local,
                    what: Plant::StagedRekey {
                        pick: 0,
                        variant: 0,
                        sig: false,
                    },
                },
                backup(false),
                Step::Run(Cmd::Rekey),
            ],
        ),
        (
            "rekey over another host's backup planted here",
            fixed_setup(Signing::SignOnly),
            vec![
                backup(false),
                Step::Plant {
                    dest: Dest::Local,
                    what: Plant::Foreign,
                },
                Step::Run(Cmd::Rekey),
            ],
        ),
        (
            "another host's backup planted here, then restore latest and copy",
            fixed_setup(Signing::None),
            vec![
                backup(false),
                Step::Plant {
                    dest: Dest::Local,
                    what: Plant::Foreign,
                },
                Step::Run(Cmd::RestoreLatest),
                Step::Run(Cmd::CopyOut),
            ],
        ),
        (
            "the clock stepped back two minutes, then backup",
            fixed_setup(Signing::None),
            vec![
                backup(false),
                change(5),
                Step::Clocked {
                    shift: Shift::Back2m,
                    cmd: Cmd::Backup {
                        full: false,
                        both: false,
                    },
                },
            ],
        ),
        (
            "a signature that loses only its last newline still verifies (the model asks ssh-keygen)",
            fixed_setup(Signing::Trusted),
            vec![
                backup(true),
                Step::Harm {
                    dest: Dest::Local,
                    pick: 0,
                    obj: Obj::Signature,
                    harm: Harm::Truncate(301),
                },
                Step::Run(Cmd::RestoreLatest),
            ],
        ),
    ];
    let mut failed = Vec::new();
    for (name, setup, steps) in &scenarios {
        if let Some(f) = run_steps(setup, steps, false) {
            let listing: Vec<String> = steps
                .iter()
                .enumerate()
                .map(|(i, s)| format!("    [{i}] {s}"))
                .collect();
            failed.push(format!(
                "{name}: {}: {}\n{}",
                f.category,
                f.detail,
                listing.join("\n")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// The oracle is not a rubber stamp: told something false, it says so.
#[test]
fn chaos_oracle_notices_a_model_that_lies() {
    let setup = fixed_setup(Signing::None);
    let cases = [
        (
            Sabotage::Content,
            vec![backup(false)],
            "gave other content than was backed up",
        ),
        (
            Sabotage::HideHarm,
            vec![
                backup(false),
                Step::Harm {
                    dest: Dest::Local,
                    pick: 0,
                    obj: Obj::Archive,
                    harm: Harm::Truncate(10),
                },
            ],
            "a good backup went bad",
        ),
        (
            Sabotage::HideHarm,
            vec![
                backup(false),
                Step::Harm {
                    dest: Dest::Local,
                    pick: 0,
                    obj: Obj::Archive,
                    harm: Harm::Flip(100, 0x40),
                },
            ],
            "a good backup does not restore",
        ),
        (
            Sabotage::FalseHarm,
            vec![
                backup(false),
                Step::Harm {
                    dest: Dest::Local,
                    pick: 0,
                    obj: Obj::Archive,
                    harm: Harm::Truncate(10),
                },
            ],
            "list calls a bad backup good",
        ),
        (
            Sabotage::Policy,
            vec![
                backup(false),
                Step::Run(Cmd::Backup {
                    full: true,
                    both: false,
                }),
                Step::Run(Cmd::Prune {
                    keep_last: 1,
                    all: false,
                }),
            ],
            "prune deleted a good backup its policy keeps",
        ),
    ];
    for (sabotage, steps, want) in cases {
        let got = run_sabotaged(&setup, &steps, false, Some(sabotage));
        assert!(
            got.as_ref().is_some_and(|f| f.category.contains(want)),
            "{sabotage:?}: expected a finding {want:?}, got {got:?}"
        );
    }
}
