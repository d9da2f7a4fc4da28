//! What a sequence is made of (destinations, commands, faults, plants, clock shifts, steps, the
//! setup) and how a seed generates one.

use super::*;

// ---- steps -----------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Dest {
    Local,
    Other,
}

impl Dest {
    pub(super) fn name(self) -> &'static str {
        match self {
            Dest::Local => "local",
            Dest::Other => "other",
        }
    }

    pub(super) fn folder(self) -> &'static str {
        match self {
            Dest::Local => "backups",
            Dest::Other => "other",
        }
    }

    pub(super) fn from_name(s: &str) -> Option<Dest> {
        match s {
            "local" => Some(Dest::Local),
            "other" => Some(Dest::Other),
            _ => None,
        }
    }

    pub(super) fn pick(rng: &mut Rng) -> Dest {
        if rng.percent(75) {
            Dest::Local
        } else {
            Dest::Other
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Cmd {
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
pub(super) enum Obj {
    Archive,
    Sidecar,
    Signature,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Harm {
    Delete,
    Truncate(u64),
    Flip(u64, u8),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Plant {
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
pub(super) enum Shift {
    Back2d,
    Back3h,
    Back2m,
    Fwd2m,
    Fwd3h,
    Fwd2d,
}

impl Shift {
    pub(super) fn spec(self) -> &'static str {
        match self {
            Shift::Back2d => "-2d",
            Shift::Back3h => "-3h",
            Shift::Back2m => "-2m",
            Shift::Fwd2m => "+2m",
            Shift::Fwd3h => "+3h",
            Shift::Fwd2d => "+2d",
        }
    }

    pub(super) fn millis(self) -> i64 {
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
pub(super) enum Step {
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
pub(super) enum Signing {
    None,
    /// `[signing]` without `[trust]`: signatures written, not required.
    SignOnly,
    /// `[signing]` and `[trust]` with the same key.
    Trusted,
}

#[derive(Clone, Debug)]
pub(super) struct Setup {
    pub(super) signing: Signing,
    /// The other host signs with this host's key (a fleet-wide key) rather than its own.
    pub(super) foreign_same_key: bool,
    pub(super) max_chain: u32,
    pub(super) wal: bool,
}

pub(super) fn gen_cmd(rng: &mut Rng, killable: bool) -> Cmd {
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

pub(super) fn generate(seed: u64) -> (Setup, Vec<Step>) {
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
