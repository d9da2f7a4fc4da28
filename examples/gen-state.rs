//! Realistic dataset generator for litevault benchmarks and the quickstart.
//!
//! Builds the on-disk state of a RADIUS-like AAA server so that backups,
//! restores and incremental runs can be exercised against data that looks,
//! indexes and compresses like the real thing (roughly 2-4x with zstd), rather
//! than against zero-filled or purely random files that make compression and
//! dedup numbers meaningless.
//!
//! ```text
//! gen-state DIR [--scale F] [--seed N] [--force]
//! gen-state mutate DIR [--fraction F] [--seed N]
//! ```
//!
//! The first form creates six SQLite stores in WAL mode (`config.db`,
//! `devices.db`, `auth.db`, `accounting.db`, `metrics.db`, `audit.db`) plus
//! `etc/server.conf`, `etc/clients.conf` and two files in `etc/tls/`. Sizes are
//! roughly proportional to `--scale`: 1.0 is about 1 GiB in total, 0.001 about
//! 1 MiB. The second form applies one "step" of a live server to an existing
//! DIR: it appends and updates about `--fraction` of the rows in ordinary
//! transactions, which is what an incremental backup sees between two runs.
//! Like a running server, it leaves those commits in each store's `-wal` file
//! (no checkpoint on close), so backups must capture the WAL to be correct.
//!
//! Output is a pure function of `--seed` (and, for `mutate`, of the state being
//! mutated), so benchmark runs on different machines compare like with like.
//!
//! Run it with `cargo run --release --example gen-state -- DIR --scale 0.1`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Statement};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "\
usage: gen-state DIR [--scale F] [--seed N] [--force]
       gen-state mutate DIR [--fraction F] [--seed N]

Generates the state of a RADIUS-like AAA server under DIR: six SQLite stores
in WAL mode plus etc/ config files. --scale 1.0 is about 1 GiB (default 0.01).
A non-empty DIR is refused unless --force, which replaces only the files this
tool writes. `mutate` applies one step of a live server to an existing DIR,
changing about --fraction of the rows (default 0.01). --seed defaults to 1.
(A DIR literally named \"mutate\" must be written as ./mutate.)";

/// Store names, in the order they are reported.
const STORES: [&str; 6] = [
    "config",
    "devices",
    "auth",
    "accounting",
    "metrics",
    "audit",
];

/// Fixed "present" (2026-01-01T00:00:00Z) for generated history. Using the
/// wall clock would make the output depend on when it was generated.
const END_TS: i64 = 1_767_225_600;
const DAY: i64 = 86_400;
/// Metrics are polled every five minutes, as most NMS/SNMP setups do.
const POLL_SECS: i64 = 300;

/// Exit code for usage errors; runtime failures use 1.
const EXIT_USAGE: u8 = 2;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

enum Command {
    Help,
    Generate {
        dir: PathBuf,
        scale: f64,
        seed: u64,
        force: bool,
    },
    Mutate {
        dir: PathBuf,
        fraction: f64,
        seed: u64,
    },
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    // A leading "mutate" selects the subcommand; anything else is a DIR.
    let mutate = args.first().is_some_and(|a| a == "mutate");
    let rest = if mutate { &args[1..] } else { args };
    let mode = if mutate { "mutate" } else { "generate" };

    let mut dir: Option<PathBuf> = None;
    let mut scale = 0.01;
    let mut fraction = 0.01;
    let mut seed = 1u64;
    let mut force = false;

    let mut i = 0;
    while i < rest.len() {
        let arg = &rest[i];
        i += 1;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if arg.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        // Options that take a value accept both "--opt V" and "--opt=V".
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = rest
                .get(i)
                .ok_or_else(|| format!("option '{name}' needs a value"))?;
            i += 1;
            Ok(v.clone())
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--seed" => {
                let v = value(flag)?;
                seed = v
                    .parse()
                    .map_err(|_| format!("--seed must be a non-negative integer, got '{v}'"))?;
            }
            "--scale" if !mutate => {
                let v = value(flag)?;
                scale = parse_positive(&v, "--scale")?;
                // Guard against typos like --scale 1000 filling a disk.
                if scale > 100.0 {
                    return Err(format!("--scale must be at most 100, got '{v}'"));
                }
            }
            "--fraction" if mutate => {
                let v = value(flag)?;
                fraction = parse_positive(&v, "--fraction")?;
                if fraction > 1.0 {
                    return Err(format!("--fraction must be in (0, 1], got '{v}'"));
                }
            }
            "--force" if !mutate => {
                if inline.is_some() {
                    return Err("--force takes no value".to_string());
                }
                force = true;
            }
            "--scale" | "--fraction" | "--force" => {
                return Err(format!("option '{flag}' is not valid for {mode}"));
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!("unknown option '{arg}'"));
            }
            _ => {
                if let Some(d) = &dir {
                    return Err(format!(
                        "unexpected argument '{arg}' (DIR is already '{}')",
                        d.display()
                    ));
                }
                if arg.is_empty() {
                    return Err("DIR must not be empty".to_string());
                }
                dir = Some(PathBuf::from(arg));
            }
        }
    }
    let dir = dir.ok_or("missing DIR")?;
    Ok(if mutate {
        Command::Mutate {
            dir,
            fraction,
            seed,
        }
    } else {
        Command::Generate {
            dir,
            scale,
            seed,
            force,
        }
    })
}

fn parse_positive(v: &str, name: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("{name} must be a positive number, got '{v}'")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse_args(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("gen-state: {msg}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = match cmd {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Generate {
            dir,
            scale,
            seed,
            force,
        } => {
            // Checked up front and reported as a usage error: the fix is a
            // different command line (another DIR, or --force).
            if let Err(msg) = check_target_dir(&dir, force) {
                eprintln!("gen-state: {msg}");
                return ExitCode::from(EXIT_USAGE);
            }
            generate(&dir, scale, seed, force)
        }
        Command::Mutate {
            dir,
            fraction,
            seed,
        } => mutate(&dir, fraction, seed),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-state: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// PRNG and small helpers
// ---------------------------------------------------------------------------

/// splitmix64: tiny, fast, and good enough for test data; keeps the example
/// free of a `rand` dependency and its version churn.
struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(mix(seed))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0), via the multiply-shift trick.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn below_i(&mut self, n: i64) -> i64 {
        self.below(n.max(1) as u64) as i64
    }

    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Log-uniform: durations, byte rates and the like span orders of
    /// magnitude, and a flat distribution would make them all look alike.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.f64() * (hi.ln() - lo.ln())).exp()
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    fn weighted<'a, T>(&mut self, xs: &'a [(T, u32)]) -> &'a T {
        let total: u64 = xs.iter().map(|x| u64::from(x.1)).sum();
        let mut r = self.below(total);
        for (x, w) in xs {
            if r < u64::from(*w) {
                return x;
            }
            r -= u64::from(*w);
        }
        &xs[xs.len() - 1].0
    }
}

/// FNV-1a, used to derive stable per-entity attributes (a subscriber's MAC,
/// a NAS's interim interval) from names, so generation and `mutate` agree
/// without sharing any state besides the databases themselves.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

fn push_hex(out: &mut String, rng: &mut Rng, n: usize, upper: bool) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut bits = 0;
    for k in 0..n {
        if k % 16 == 0 {
            bits = rng.next_u64();
        }
        out.push(digits[(bits & 15) as usize] as char);
        bits >>= 4;
    }
}

/// Base64 with the given 64-symbol alphabet (crypt(3) and PEM differ).
fn push_b64(out: &mut String, rng: &mut Rng, n: usize, alphabet: &[u8; 64]) {
    let mut bits = 0;
    for k in 0..n {
        if k % 10 == 0 {
            bits = rng.next_u64();
        }
        out.push(alphabet[(bits & 63) as usize] as char);
        bits >>= 6;
    }
}

const CRYPT_B64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const STD_B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn hex_string(rng: &mut Rng, n: usize, upper: bool) -> String {
    let mut s = String::with_capacity(n);
    push_hex(&mut s, rng, n, upper);
    s
}

fn uuid(rng: &mut Rng) -> String {
    let h = hex_string(rng, 32, false);
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        ["8", "9", "a", "b"][(h.as_bytes()[16] & 3) as usize],
        &h[17..20],
        &h[20..32]
    )
}

/// Argon2id for most users, sha512-crypt for accounts migrated from an older
/// system; both are mostly base64 noise, like the real thing.
fn password_hash(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(110);
    if rng.chance(0.85) {
        s.push_str("$argon2id$v=19$m=65536,t=3,p=4$");
        push_b64(&mut s, rng, 22, STD_B64);
        s.push('$');
        push_b64(&mut s, rng, 43, STD_B64);
    } else {
        s.push_str("$6$");
        push_b64(&mut s, rng, 16, CRYPT_B64);
        s.push('$');
        push_b64(&mut s, rng, 86, CRYPT_B64);
    }
    s
}

fn secret_hash(rng: &mut Rng) -> String {
    let mut s = String::from("sha256$");
    push_hex(&mut s, rng, 16, false);
    s.push('$');
    push_hex(&mut s, rng, 64, false);
    s
}

/// A MAC with a plausible vendor OUI, stable for a given key.
fn mac_for(key: u64) -> String {
    const OUIS: [&str; 10] = [
        "F0-18-98", "8C-F5-A3", "3C-A9-F4", "DC-A6-32", "B8-27-EB", "AC-DE-48", "00-1B-63",
        "A4-83-E7", "60-F8-1D", "D8-BB-2C",
    ];
    let h = mix(key);
    format!(
        "{}-{:02X}-{:02X}-{:02X}",
        OUIS[(h % OUIS.len() as u64) as usize],
        (h >> 8) & 0xFF,
        (h >> 16) & 0xFF,
        (h >> 24) & 0xFF
    )
}

fn round_to(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

// ---------------------------------------------------------------------------
// The simulated world: subscribers and NAS devices
// ---------------------------------------------------------------------------

const FIRST: [&str; 48] = [
    "Anna", "Ben", "Carla", "David", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Keiko",
    "Lars", "Maria", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tariq", "Ulla", "Viktor",
    "Wen", "Ximena", "Yusuf", "Zoe", "Amir", "Bianca", "Chen", "Dana", "Emil", "Fatima", "Gabriel",
    "Hana", "Ivan", "Julia", "Kofi", "Lina", "Marco", "Noor", "Oskar", "Priya", "Rafael", "Sara",
    "Tomas", "Uma", "Vera", "Wim",
];
const LAST: [&str; 48] = [
    "Smith", "Muller", "Garcia", "Rossi", "Nowak", "Jansen", "Silva", "Kim", "Nguyen", "Ivanov",
    "Martin", "Bernard", "Schmidt", "Lopez", "Kowalski", "Novak", "Horvat", "Berg", "Larsen",
    "Dubois", "Weber", "Costa", "Fischer", "Romano", "Tanaka", "Sato", "Patel", "Khan", "Ali",
    "Brown", "Wilson", "Taylor", "Meyer", "Wagner", "Becker", "Hoffmann", "Ferrari", "Moreau",
    "Lambert", "Peeters", "Virtanen", "Nielsen", "Hansen", "Olsen", "Popescu", "Horvath", "Yilmaz",
    "Cohen",
];

/// Realms with weights; most subscribers are on the ISP's own realm.
const REALMS: [(&str, u32); 12] = [
    ("example.net", 55),
    ("corp.example.com", 10),
    ("campus.example.edu", 8),
    ("guest.example.net", 6),
    ("iot.example.net", 5),
    ("partner-a.example.org", 4),
    ("partner-b.example.org", 3),
    ("roam.eduroam.example", 3),
    ("wholesale.example.net", 2),
    ("voip.example.net", 2),
    ("mgmt.example.net", 1),
    ("lab.example.net", 1),
];

const SITES: [&str; 16] = [
    "ams", "fra", "lon", "par", "mad", "mil", "waw", "sto", "nyc", "chi", "dal", "sea", "sjc",
    "sin", "tyo", "syd",
];

struct DeviceKind {
    vendor: &'static str,
    role: &'static str,
    nas_type: &'static str,
    models: &'static [&'static str],
    firmware: &'static [&'static str],
    port_type: &'static str,
    wireless: bool,
    ports: i64,
}

static KINDS: [(DeviceKind, u32); 8] = [
    (
        DeviceKind {
            vendor: "Juniper",
            role: "bng",
            nas_type: "juniper",
            models: &["MX204", "MX304", "MX480"],
            firmware: &["21.4R3-S5", "22.2R3-S2", "23.2R1-S1"],
            port_type: "Ethernet",
            wireless: false,
            ports: 48,
        },
        12,
    ),
    (
        DeviceKind {
            vendor: "Cisco",
            role: "bng",
            nas_type: "cisco",
            models: &["ASR9006", "ASR9903", "ASR1002-HX"],
            firmware: &["7.9.2", "7.10.1", "17.9.4a"],
            port_type: "Ethernet",
            wireless: false,
            ports: 36,
        },
        12,
    ),
    (
        DeviceKind {
            vendor: "Nokia",
            role: "bng",
            nas_type: "other",
            models: &["7750 SR-1", "7750 SR-7s"],
            firmware: &["23.10.R2", "24.3.R1"],
            port_type: "Virtual",
            wireless: false,
            ports: 40,
        },
        6,
    ),
    (
        DeviceKind {
            vendor: "Cisco",
            role: "sw",
            nas_type: "cisco",
            models: &["C9300-48P", "C9200L-24P"],
            firmware: &["17.9.4a", "17.12.2"],
            port_type: "Ethernet",
            wireless: false,
            ports: 48,
        },
        20,
    ),
    (
        DeviceKind {
            vendor: "Aruba",
            role: "wlc",
            nas_type: "other",
            models: &["7210", "9240"],
            firmware: &["8.11.2.1", "8.10.0.9"],
            port_type: "Wireless-802.11",
            wireless: true,
            ports: 4,
        },
        8,
    ),
    (
        DeviceKind {
            vendor: "Ubiquiti",
            role: "ap",
            nas_type: "other",
            models: &["U6-Pro", "U6-LR", "U7-Pro"],
            firmware: &["6.6.77", "7.0.66"],
            port_type: "Wireless-802.11",
            wireless: true,
            ports: 1,
        },
        26,
    ),
    (
        DeviceKind {
            vendor: "MikroTik",
            role: "rtr",
            nas_type: "mikrotik",
            models: &["CCR2004-16G-2S+", "CCR1036-12G-4S"],
            firmware: &["7.15.3", "7.16.1"],
            port_type: "Ethernet",
            wireless: false,
            ports: 16,
        },
        11,
    ),
    (
        DeviceKind {
            vendor: "Fortinet",
            role: "vpn",
            nas_type: "other",
            models: &["FG-100F", "FG-600E"],
            firmware: &["7.2.8", "7.4.4"],
            port_type: "Virtual",
            wireless: false,
            ports: 1,
        },
        5,
    ),
];

/// Recovers the kind of a stored device (for `mutate`, which reads devices
/// back from devices.db instead of recomputing them).
fn kind_of(vendor: &str, model: &str) -> &'static DeviceKind {
    KINDS
        .iter()
        .map(|k| &k.0)
        .find(|k| k.vendor == vendor && k.models.contains(&model))
        .unwrap_or(&KINDS[0].0)
}

/// A NAS-Port-Id in the vendor's own notation.
fn port_id(kind: &DeviceKind, rng: &mut Rng) -> String {
    let vlan = 100 + rng.below(3900);
    match (kind.vendor, kind.role) {
        ("Juniper", _) => format!(
            "ge-{}/{}/{}.{}",
            rng.below(2),
            rng.below(4),
            rng.below(48),
            vlan
        ),
        ("Cisco", "bng") => format!("Bundle-Ether{}.{}", 1 + rng.below(8), vlan),
        ("Cisco", _) => format!("GigabitEthernet1/0/{}", 1 + rng.below(48)),
        ("Nokia", _) => format!("1/1/c{}/1:{}", 1 + rng.below(30), vlan),
        ("MikroTik", _) => format!("pppoe-in{}", 1 + rng.below(4000)),
        ("Fortinet", _) => format!("ssl.root:{}", 1 + rng.below(500)),
        _ => format!("wlan{}", rng.below(4)),
    }
}

/// A subscriber as seen by the stores that reference one.
struct UserRef {
    id: i64,
    name: String,
    realm: String,
}

/// A NAS as seen by the stores that reference one.
struct DeviceRef {
    id: i64,
    ip: String,
    shortname: String,
    kind: &'static DeviceKind,
}

impl UserRef {
    /// The RADIUS User-Name, which carries the realm.
    fn qualified(&self) -> String {
        format!("{}@{}", self.name, self.realm)
    }

    /// The subscriber's primary device MAC; stable across sessions.
    fn mac(&self) -> String {
        mac_for(fnv(&self.name))
    }
}

/// Where generators get users and devices from: computed from the seed
/// while generating (the other stores are being written concurrently), or
/// read back from auth.db/devices.db by `mutate`.
trait Entities {
    fn user(&self, rng: &mut Rng) -> Res<UserRef>;
    fn device(&self, rng: &mut Rng) -> Res<DeviceRef>;
}

/// Sizes of everything, derived from --scale.
struct Plan {
    extra_realms: u64,
    clients: u64,
    devices: u64,
    device_events: u64,
    extra_groups: u64,
    users: u64,
    auth_attempts: u64,
    sessions: u64,
    metric_devices: u64,
    metric_steps: u64,
    audit: u64,
}

impl Plan {
    fn new(scale: f64) -> Self {
        let n = |base: f64, min: u64| ((base * scale).round() as u64).max(min);
        let devices = n(40_000.0, 8);
        // Only a subset of NAS devices is polled; samples grow mostly along
        // the time axis, as in a real TSDB-in-SQLite setup.
        let metric_devices = (devices / 40).clamp(2, 1000);
        let samples = n(6_000_000.0, 48);
        let metric_steps = (samples / (metric_devices * METRICS.len() as u64)).max(1);
        Plan {
            extra_realms: n(200.0, 0),
            clients: n(4_000.0, 4),
            devices,
            device_events: n(600_000.0, 10),
            extra_groups: n(300.0, 0),
            users: n(250_000.0, 20),
            auth_attempts: n(500_000.0, 20),
            sessions: n(650_000.0, 20),
            metric_devices,
            metric_steps,
            audit: n(200_000.0, 10),
        }
    }
}

/// Generation-time entity source: everything is a pure function of
/// (seed, index), so stores generated in parallel stay consistent.
struct World {
    seed: u64,
    plan: Plan,
}

const TAG_USER: u64 = 0x5553_4552;
const TAG_DEVICE: u64 = 0x4445_5649;

impl World {
    fn attr(&self, tag: u64, i: u64) -> u64 {
        mix(mix(self.seed ^ tag).wrapping_add(i))
    }

    fn user_at(&self, idx: u64) -> UserRef {
        let h = self.attr(TAG_USER, idx);
        let id = idx as i64 + 1;
        let first = FIRST[(h % 48) as usize].to_ascii_lowercase();
        let last = LAST[((h >> 8) % 48) as usize].to_ascii_lowercase();
        // Three naming schemes coexist in most ISPs; the numeric suffix is the
        // account id, which keeps names unique without a lookup table.
        let name = match (h >> 16) % 100 {
            0..=59 => format!("{first}.{last}{id}"),
            60..=84 => format!("{}{last}{id}", &first[..1]),
            _ => format!("sub{:08}", 10_000_000 + id),
        };
        let mut r = Rng::new(h);
        let realm = r.weighted(&REALMS).to_string();
        UserRef { id, name, realm }
    }

    fn full_name(&self, idx: u64) -> String {
        let h = self.attr(TAG_USER, idx);
        format!(
            "{} {}",
            FIRST[(h % 48) as usize],
            LAST[((h >> 8) % 48) as usize]
        )
    }

    fn device_at(&self, idx: u64) -> DeviceRef {
        let h = self.attr(TAG_DEVICE, idx);
        let mut r = Rng::new(h);
        let kind: &'static DeviceKind = r.weighted(&KINDS);
        let site = SITES[(h >> 32) as usize % SITES.len()];
        DeviceRef {
            id: idx as i64 + 1,
            ip: nas_ip(idx),
            shortname: format!("{}-{site}-{:04}", kind.role, idx + 1),
            kind,
        }
    }
}

/// Management addresses: 250 hosts per /24 under 10.64.0.0/10.
fn nas_ip(idx: u64) -> String {
    let subnet = idx / 250;
    format!(
        "10.{}.{}.{}",
        64 + (subnet / 256) % 64,
        subnet % 256,
        idx % 250 + 2
    )
}

/// Skewed pick: a fifth of the population produces most of the traffic.
fn pick_index(rng: &mut Rng, n: u64) -> u64 {
    if rng.chance(0.75) {
        // Spread the hot set over the id space instead of the lowest ids.
        rng.below(n.div_ceil(5)).wrapping_mul(0x9E37_79B1) % n
    } else {
        rng.below(n)
    }
}

impl Entities for World {
    fn user(&self, rng: &mut Rng) -> Res<UserRef> {
        Ok(self.user_at(pick_index(rng, self.plan.users)))
    }

    fn device(&self, rng: &mut Rng) -> Res<DeviceRef> {
        Ok(self.device_at(pick_index(rng, self.plan.devices)))
    }
}

/// `mutate`-time entity source: reads users and devices back from the stores.
struct DbEntities {
    auth: Connection,
    devices: Connection,
    max_user: u64,
    max_device: u64,
}

impl DbEntities {
    fn open(dir: &Path) -> Res<Self> {
        let auth = open_existing(&dir.join("auth.db"))?;
        let devices = open_existing(&dir.join("devices.db"))?;
        let max_user = max_id(&auth, "users")?;
        let max_device = max_id(&devices, "nas_devices")?;
        if max_user == 0 || max_device == 0 {
            return Err("auth.db or devices.db has no rows; regenerate DIR".into());
        }
        Ok(DbEntities {
            auth,
            devices,
            max_user,
            max_device,
        })
    }
}

impl Entities for DbEntities {
    fn user(&self, rng: &mut Rng) -> Res<UserRef> {
        let id = pick_index(rng, self.max_user) as i64 + 1;
        let mut st = self
            .auth
            .prepare_cached("SELECT username, realm FROM users WHERE id = ?1")?;
        let row = st
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (name, realm) = row.unwrap_or_else(|| ("unknown".into(), "example.net".into()));
        Ok(UserRef { id, name, realm })
    }

    fn device(&self, rng: &mut Rng) -> Res<DeviceRef> {
        let id = pick_index(rng, self.max_device) as i64 + 1;
        let mut st = self
            .devices
            .prepare_cached("SELECT ip, shortname, vendor, model FROM nas_devices WHERE id = ?1")?;
        let row = st
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .optional()?;
        let (ip, shortname, vendor, model) = row.ok_or("devices.db: missing device row")?;
        Ok(DeviceRef {
            id,
            ip,
            shortname,
            kind: kind_of(&vendor, &model),
        })
    }
}

// ---------------------------------------------------------------------------
// Schemas. Indexes are created after the bulk load: building a b-tree from a
// sorted stream is several times faster than random inserts into it.
// ---------------------------------------------------------------------------

const CONFIG_SCHEMA: &str = "
CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE realms (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('local', 'proxy')),
    auth_pool       TEXT,
    acct_pool       TEXT,
    strip_username  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE TABLE clients (
    id                             INTEGER PRIMARY KEY,
    shortname                      TEXT NOT NULL UNIQUE,
    ipaddr                         TEXT NOT NULL,
    prefix_len                     INTEGER NOT NULL,
    secret_ref                     TEXT NOT NULL,
    nas_type                       TEXT NOT NULL,
    require_message_authenticator  INTEGER NOT NULL,
    limit_max_connections          INTEGER,
    realm_id                       INTEGER REFERENCES realms(id),
    created_at                     INTEGER NOT NULL,
    comment                        TEXT
);
";
const CONFIG_INDEXES: &str = "
CREATE INDEX clients_ipaddr ON clients(ipaddr);
CREATE INDEX clients_realm ON clients(realm_id);
";

const DEVICES_SCHEMA: &str = "
CREATE TABLE nas_devices (
    id           INTEGER PRIMARY KEY,
    nasname      TEXT NOT NULL UNIQUE,
    shortname    TEXT NOT NULL,
    ip           TEXT NOT NULL,
    vendor       TEXT NOT NULL,
    model        TEXT NOT NULL,
    firmware     TEXT NOT NULL,
    serial       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    site         TEXT NOT NULL,
    ports        INTEGER NOT NULL,
    coa_port     INTEGER NOT NULL DEFAULT 3799,
    status       TEXT NOT NULL,
    description  TEXT,
    created_at   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL
);
CREATE TABLE device_events (
    id         INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES nas_devices(id),
    ts         INTEGER NOT NULL,
    severity   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL
);
";
const DEVICES_INDEXES: &str = "
CREATE UNIQUE INDEX nas_devices_ip ON nas_devices(ip);
CREATE INDEX nas_devices_last_seen ON nas_devices(last_seen);
CREATE INDEX nas_devices_vendor ON nas_devices(vendor, model);
CREATE INDEX device_events_device ON device_events(device_id, ts);
CREATE INDEX device_events_ts ON device_events(ts);
";

const AUTH_SCHEMA: &str = "
CREATE TABLE users (
    id                   INTEGER PRIMARY KEY,
    username             TEXT NOT NULL,
    realm                TEXT NOT NULL,
    password_hash        TEXT NOT NULL,
    password_changed_at  INTEGER NOT NULL,
    email                TEXT,
    full_name            TEXT,
    status               TEXT NOT NULL,
    mfa_enabled          INTEGER NOT NULL,
    max_sessions         INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    last_login           INTEGER
);
CREATE TABLE groups (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    description          TEXT,
    session_timeout      INTEGER,
    idle_timeout         INTEGER,
    rate_limit_down_kbps INTEGER,
    rate_limit_up_kbps   INTEGER,
    vlan                 INTEGER
);
CREATE TABLE user_groups (
    user_id   INTEGER NOT NULL REFERENCES users(id),
    group_id  INTEGER NOT NULL REFERENCES groups(id),
    priority  INTEGER NOT NULL,
    PRIMARY KEY (user_id, group_id)
) WITHOUT ROWID;
CREATE TABLE auth_attempts (
    id                  INTEGER PRIMARY KEY,
    ts                  INTEGER NOT NULL,
    username            TEXT NOT NULL,
    user_id             INTEGER,
    nas_ip              TEXT NOT NULL,
    nas_port_id         TEXT,
    calling_station_id  TEXT,
    method              TEXT NOT NULL,
    result              TEXT NOT NULL,
    reason              TEXT,
    response_us         INTEGER NOT NULL
);
";
const AUTH_INDEXES: &str = "
CREATE UNIQUE INDEX users_username ON users(username, realm);
CREATE INDEX users_status ON users(status);
CREATE INDEX user_groups_group ON user_groups(group_id);
CREATE INDEX auth_attempts_ts ON auth_attempts(ts);
CREATE INDEX auth_attempts_user ON auth_attempts(username, ts);
";

const ACCOUNTING_SCHEMA: &str = "
CREATE TABLE acct_sessions (
    id                  INTEGER PRIMARY KEY,
    acct_session_id     TEXT NOT NULL,
    acct_unique_id      TEXT NOT NULL,
    username            TEXT NOT NULL,
    realm               TEXT,
    nas_ip              TEXT NOT NULL,
    nas_port_id         TEXT,
    nas_port_type       TEXT,
    start_time          INTEGER NOT NULL,
    update_time         INTEGER,
    stop_time           INTEGER,
    interim_interval    INTEGER,
    session_time        INTEGER NOT NULL DEFAULT 0,
    input_octets        INTEGER NOT NULL DEFAULT 0,
    output_octets       INTEGER NOT NULL DEFAULT 0,
    input_packets       INTEGER NOT NULL DEFAULT 0,
    output_packets      INTEGER NOT NULL DEFAULT 0,
    terminate_cause     TEXT,
    framed_ip           TEXT,
    calling_station_id  TEXT,
    called_station_id   TEXT,
    service_type        TEXT,
    framed_protocol     TEXT
);
-- Raw Accounting-Request log (Start / Interim-Update / Stop).
CREATE TABLE acct_records (
    id               INTEGER PRIMARY KEY,
    session_id       INTEGER NOT NULL REFERENCES acct_sessions(id),
    status_type      TEXT NOT NULL,
    ts               INTEGER NOT NULL,
    session_time     INTEGER NOT NULL,
    input_octets     INTEGER NOT NULL,
    output_octets    INTEGER NOT NULL,
    input_packets    INTEGER NOT NULL,
    output_packets   INTEGER NOT NULL,
    acct_delay_time  INTEGER NOT NULL
);
";
const ACCOUNTING_INDEXES: &str = "
CREATE UNIQUE INDEX acct_sessions_unique ON acct_sessions(acct_unique_id);
CREATE INDEX acct_sessions_user ON acct_sessions(username, start_time);
CREATE INDEX acct_sessions_start ON acct_sessions(start_time);
-- Open sessions per NAS, for Disconnect/CoA and stale-session cleanup.
CREATE INDEX acct_sessions_open ON acct_sessions(nas_ip, acct_session_id)
    WHERE stop_time IS NULL;
CREATE INDEX acct_records_session ON acct_records(session_id, ts);
CREATE INDEX acct_records_ts ON acct_records(ts);
";

const METRICS_SCHEMA: &str = "
CREATE TABLE metric_names (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE,
    unit  TEXT NOT NULL,
    kind  TEXT NOT NULL CHECK (kind IN ('gauge', 'counter'))
);
CREATE TABLE samples (
    id         INTEGER PRIMARY KEY,
    ts         INTEGER NOT NULL,
    device_id  INTEGER NOT NULL,
    metric_id  INTEGER NOT NULL REFERENCES metric_names(id),
    value      REAL NOT NULL
);
";
const METRICS_INDEXES: &str = "
CREATE INDEX samples_series ON samples(device_id, metric_id, ts);
CREATE INDEX samples_ts ON samples(ts);
";

const AUDIT_SCHEMA: &str = "
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    ts          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    actor_ip    TEXT,
    action      TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    outcome     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    details     TEXT NOT NULL CHECK (json_valid(details))
);
-- Append-only: compliance requires that history cannot be rewritten.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
";
const AUDIT_INDEXES: &str = "
CREATE INDEX audit_log_ts ON audit_log(ts);
CREATE INDEX audit_log_actor ON audit_log(actor, ts);
CREATE INDEX audit_log_target ON audit_log(target_type, target_id);
";

/// The server's schema version, as an application would track it.
const SCHEMA_VERSION: i32 = 7;

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

fn check_target_dir(dir: &Path, force: bool) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(format!(
                    "{} is not empty; pass --force to replace the generated files in it",
                    dir.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// Files under etc/ that this tool writes (and that --force replaces).
const ETC_FILES: [&str; 4] = [
    "etc/server.conf",
    "etc/clients.conf",
    "etc/tls/ca.pem",
    "etc/tls/server.pem",
];

/// With --force, remove only what we would write ourselves: never
/// `rm -rf` a user-supplied path.
fn remove_generated(dir: &Path) -> Res<()> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for store in STORES {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            paths.push(dir.join(format!("{store}.db{suffix}")));
        }
    }
    paths.extend(ETC_FILES.iter().map(|f| dir.join(f)));
    for p in paths {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", p.display()).into()),
        }
    }
    Ok(())
}

fn generate(dir: &Path, scale: f64, seed: u64, force: bool) -> Res<()> {
    let t0 = Instant::now();
    if force {
        remove_generated(dir)?;
    }
    std::fs::create_dir_all(dir.join("etc/tls"))?;
    let world = World {
        seed,
        plan: Plan::new(scale),
    };

    // One thread per store: they are independent files, and the two big ones
    // (accounting, metrics) then run on separate cores. Spawn the big ones
    // first so they start before the small ones compete for CPU.
    let order = [3usize, 4, 2, 1, 5, 0];
    let mut results: Vec<Option<Res<u64>>> = (0..STORES.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = order
            .iter()
            .map(|&i| {
                let world = &world;
                let path = dir.join(format!("{}.db", STORES[i]));
                (i, s.spawn(move || generate_store(i, &path, world)))
            })
            .collect();
        for (i, h) in handles {
            results[i] = Some(
                h.join()
                    .unwrap_or_else(|_| Err(format!("{} generator panicked", STORES[i]).into())),
            );
        }
    });

    let mut total = 0;
    for (i, r) in results.into_iter().enumerate() {
        let rows = r.expect("every store was joined")?;
        let bytes = store_bytes(&dir.join(format!("{}.db", STORES[i])));
        total += bytes;
        report(STORES[i], "rows", rows, bytes);
    }
    let etc_bytes = write_etc(dir, &world)?;
    total += etc_bytes;
    println!(
        "{:<14} files={:<10} bytes={:<12} ({})",
        "etc/",
        ETC_FILES.len(),
        etc_bytes,
        human(etc_bytes)
    );
    println!(
        "total          bytes={total} ({}) in {:.2}s (scale {scale}, seed {seed})",
        human(total),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn report(store: &str, what: &str, rows: u64, bytes: u64) {
    println!(
        "{:<14} {what}={rows:<10} bytes={bytes:<12} ({})",
        format!("{store}.db"),
        human(bytes)
    );
}

fn human(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// Database plus WAL, i.e. what a backup has to capture.
fn store_bytes(db: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    size(db) + size(Path::new(&wal))
}

fn generate_store(index: usize, path: &Path, world: &World) -> Res<u64> {
    let mut conn = Connection::open(path)?;
    // Bulk-load settings: no rollback journal and no fsync. A crash leaves a
    // half-written file, which is fine for a generator (rerun with --force)
    // and avoids writing every page twice through the WAL.
    conn.execute_batch(
        "PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         PRAGMA cache_size = -65536;",
    )?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    // Each store gets its own stream so stores can be generated in any order.
    let mut rng = Rng::new(mix(world.seed) ^ mix(index as u64 + 1));
    let (schema, indexes) = match index {
        0 => (CONFIG_SCHEMA, CONFIG_INDEXES),
        1 => (DEVICES_SCHEMA, DEVICES_INDEXES),
        2 => (AUTH_SCHEMA, AUTH_INDEXES),
        3 => (ACCOUNTING_SCHEMA, ACCOUNTING_INDEXES),
        4 => (METRICS_SCHEMA, METRICS_INDEXES),
        _ => (AUDIT_SCHEMA, AUDIT_INDEXES),
    };
    conn.execute_batch(schema)?;
    let tx = conn.transaction()?;
    let rows = match index {
        0 => gen_config(&tx, world, &mut rng)?,
        1 => gen_devices(&tx, world, &mut rng)?,
        2 => gen_auth(&tx, world, &mut rng)?,
        3 => gen_accounting(&tx, world, &mut rng)?,
        4 => gen_metrics(&tx, world, &mut rng)?,
        _ => gen_audit(&tx, world, &mut rng)?,
    };
    tx.execute_batch(indexes)?;
    tx.commit()?;
    // The server runs in WAL mode; the setting is persistent in the file.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("{}: could not enable WAL (got {mode})", path.display()).into());
    }
    conn.close().map_err(|(_, e)| e)?;
    Ok(rows)
}

/// Timestamps for `n` events spread over `[from, to)`, in order, with jitter:
/// tables grow in time order, so rowid order follows time as in production.
fn spread_ts(rng: &mut Rng, from: i64, to: i64, i: u64, n: u64) -> i64 {
    let span = (to - from).max(1);
    let slot = span / n.max(1) as i64;
    from + (i as i64 * span) / n.max(1) as i64 + rng.below_i(slot)
}

fn gen_config(tx: &Connection, w: &World, rng: &mut Rng) -> Res<u64> {
    const ADMINS: [&str; 5] = ["alice", "bob", "carol", "dmitri", "eve"];
    let mut rows = 0;
    let mut st = tx.prepare(
        "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut settings: Vec<(String, String)> = [
        ("radius.auth_port", "1812"),
        ("radius.acct_port", "1813"),
        ("radius.coa_port", "3799"),
        ("radius.listen", "0.0.0.0"),
        ("radius.max_request_time", "30"),
        ("radius.cleanup_delay", "5"),
        ("radius.max_requests", "16384"),
        ("radius.threads.start", "8"),
        ("radius.threads.max", "64"),
        ("radius.require_message_authenticator", "auto"),
        ("radius.limit_proxy_state", "auto"),
        ("auth.default_method", "eap-peap"),
        ("auth.reject_delay_ms", "1000"),
        ("auth.lockout.threshold", "10"),
        ("auth.lockout.window_secs", "900"),
        ("auth.password.min_length", "12"),
        ("auth.password.hash", "argon2id"),
        ("auth.password.argon2.m_cost", "65536"),
        ("auth.password.argon2.t_cost", "3"),
        ("auth.mfa.issuer", "Example AAA"),
        ("eap.default_type", "peap"),
        ("eap.tls.certificate", "/etc/aaa/tls/server.pem"),
        ("eap.tls.ca", "/etc/aaa/tls/ca.pem"),
        ("eap.tls.min_version", "1.2"),
        ("eap.tls.cache.lifetime_hours", "24"),
        ("acct.interim_interval", "600"),
        ("acct.stale_session_secs", "7200"),
        ("acct.retention_days", "180"),
        ("metrics.poll_interval", "300"),
        ("metrics.retention_days", "400"),
        ("audit.retention_days", "2555"),
        ("log.level", "info"),
        ("log.auth_failures", "yes"),
        ("log.auth_success", "no"),
        ("coa.enabled", "true"),
        ("coa.timeout_ms", "3000"),
        ("cluster.node_id", "aaa-1"),
        ("cluster.peers", "aaa-2.example.net,aaa-3.example.net"),
        ("api.listen", "127.0.0.1:8443"),
        ("api.token_ttl_secs", "3600"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (i, site) in SITES.iter().enumerate() {
        settings.push((
            format!("pool.{site}.servers"),
            format!("10.250.{i}.10,10.250.{i}.11"),
        ));
        settings.push((format!("pool.{site}.response_window_ms"), "4000".into()));
        settings.push((format!("pool.{site}.status_check"), "status-server".into()));
    }
    for (k, v) in &settings {
        let ts = END_TS - rng.below_i(365 * DAY);
        st.execute(params![k, v, ts, format!("admin:{}", rng.pick(&ADMINS))])?;
        rows += 1;
    }

    let mut st = tx.prepare(
        "INSERT INTO realms (name, kind, auth_pool, acct_pool, strip_username, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let n_realms = REALMS.len() as u64 + w.plan.extra_realms;
    for i in 0..n_realms {
        let name = match REALMS.get(i as usize) {
            Some((r, _)) => r.to_string(),
            None => format!("roam{:04}.partner{:03}.example", i, i % 97),
        };
        let local = i < 5;
        let pool = format!("pool.{}", rng.pick(&SITES));
        let (auth, acct) = if local {
            (None, None)
        } else {
            (Some(pool.clone()), Some(pool))
        };
        let created = spread_ts(rng, END_TS - 6 * 365 * DAY, END_TS - 30 * DAY, i, n_realms);
        st.execute(params![
            name,
            if local { "local" } else { "proxy" },
            auth,
            acct,
            !local,
            created
        ])?;
        rows += 1;
    }

    let mut st = tx.prepare(
        "INSERT INTO clients (shortname, ipaddr, prefix_len, secret_ref, nas_type,
             require_message_authenticator, limit_max_connections, realm_id, created_at, comment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let n = w.plan.clients;
    for i in 0..n {
        // Clients are a spread-out subset of the NAS devices.
        let d = w.device_at(i * w.plan.devices / n);
        let comment = format!(
            "{} {} at {}",
            d.kind.vendor,
            d.kind.role,
            d.shortname.split('-').nth(1).unwrap_or("")
        );
        st.execute(params![
            d.shortname,
            d.ip,
            if rng.chance(0.1) { 29 } else { 32 },
            format!(
                "vault:kv/radius/clients/{}#v{}",
                d.shortname,
                1 + rng.below(4)
            ),
            d.kind.nas_type,
            rng.chance(0.7),
            if rng.chance(0.3) {
                Some(16 + rng.below_i(240))
            } else {
                None
            },
            1 + rng.below_i(n_realms as i64),
            spread_ts(rng, END_TS - 5 * 365 * DAY, END_TS - DAY, i, n),
            comment
        ])?;
        rows += 1;
    }
    Ok(rows)
}

fn gen_devices(tx: &Connection, w: &World, rng: &mut Rng) -> Res<u64> {
    let mut rows = 0;
    let mut st = tx.prepare(
        "INSERT INTO nas_devices (nasname, shortname, ip, vendor, model, firmware, serial,
             secret_hash, site, ports, coa_port, status, description, created_at, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?;
    let n = w.plan.devices;
    for i in 0..n {
        let d = w.device_at(i);
        let site = d.shortname.split('-').nth(1).unwrap_or("ams").to_string();
        let status = rng.weighted(&[("active", 92), ("maintenance", 3), ("decommissioned", 5)]);
        let created = spread_ts(rng, END_TS - 6 * 365 * DAY, END_TS - DAY, i, n);
        // Active devices checked in within the last poll; others went quiet.
        let last_seen = if *status == "active" {
            END_TS - rng.below_i(POLL_SECS)
        } else {
            END_TS - rng.below_i(90 * DAY)
        }
        .max(created);
        let mut serial = d.kind.vendor[..2].to_ascii_uppercase();
        push_hex(&mut serial, rng, 10, true);
        st.execute(params![
            format!("{}.{site}.pop.example.net", d.shortname),
            d.shortname,
            d.ip,
            d.kind.vendor,
            rng.pick(d.kind.models),
            rng.pick(d.kind.firmware),
            serial,
            secret_hash(rng),
            site,
            d.kind.ports,
            3799,
            status,
            format!(
                "{} {} rack R{:02} U{:02}",
                site.to_uppercase(),
                d.kind.role,
                1 + rng.below(40),
                1 + rng.below(42)
            ),
            created,
            last_seen
        ])?;
        rows += 1;
    }
    drop(st);
    rows += insert_device_events(tx, w, rng, w.plan.device_events, END_TS - 90 * DAY, END_TS)?;
    Ok(rows)
}

fn insert_device_events(
    tx: &Connection,
    ents: &dyn Entities,
    rng: &mut Rng,
    n: u64,
    from: i64,
    to: i64,
) -> Res<u64> {
    let mut st = tx.prepare(
        "INSERT INTO device_events (device_id, ts, severity, kind, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for i in 0..n {
        let d = ents.device(rng)?;
        let ts = spread_ts(rng, from, to, i, n);
        let kind = *rng.weighted(&[
            ("link_down", 20),
            ("link_up", 20),
            ("coa_sent", 25),
            ("coa_nak", 4),
            ("config_change", 8),
            ("reboot", 2),
            ("heartbeat_missed", 12),
            ("secret_rotated", 1),
            ("radius_timeout", 8),
        ]);
        let (severity, detail) = match kind {
            "link_down" => (
                "warning",
                format!("{} changed state to down", port_id(d.kind, rng)),
            ),
            "link_up" => (
                "info",
                format!("{} changed state to up", port_id(d.kind, rng)),
            ),
            "coa_sent" => (
                "info",
                format!(
                    "CoA-Request id={} to {}:3799 (session {})",
                    rng.below(256),
                    d.ip,
                    hex_string(rng, 16, true)
                ),
            ),
            "coa_nak" => (
                "warning",
                format!(
                    "CoA-NAK from {}: Error-Cause={}",
                    d.ip,
                    rng.pick(&["503 Session-Context-Not-Found", "404 Invalid-Request"])
                ),
            ),
            "config_change" => (
                "notice",
                format!(
                    "commit by {} (rev {})",
                    rng.pick(&["netops", "ansible", "alice", "bob"]),
                    hex_string(rng, 8, false)
                ),
            ),
            "reboot" => (
                "critical",
                format!("uptime reset; firmware {}", rng.pick(d.kind.firmware)),
            ),
            "heartbeat_missed" => (
                "warning",
                format!("no Status-Server reply for {}s", 30 * (1 + rng.below(10))),
            ),
            "secret_rotated" => ("notice", "shared secret rotated via API".to_string()),
            _ => (
                "warning",
                format!(
                    "no response from {} after {} retries",
                    rng.pick(&["10.250.0.10", "10.250.0.11", "10.250.3.10"]),
                    1 + rng.below(3)
                ),
            ),
        };
        st.execute(params![d.id, ts, severity, kind, detail])?;
    }
    Ok(n)
}

/// Service tiers and roles; the tail of per-customer groups grows with scale.
const GROUPS: [(&str, i64, i64, i64); 16] = [
    ("residential-50m", 86_400, 3_600, 50_000),
    ("residential-100m", 86_400, 3_600, 100_000),
    ("residential-250m", 86_400, 3_600, 250_000),
    ("residential-1g", 86_400, 3_600, 1_000_000),
    ("business-100m", 0, 0, 100_000),
    ("business-1g", 0, 0, 1_000_000),
    ("business-10g", 0, 0, 10_000_000),
    ("staff", 43_200, 1_800, 1_000_000),
    ("students", 28_800, 900, 200_000),
    ("guests", 14_400, 600, 20_000),
    ("iot", 0, 7_200, 5_000),
    ("voip", 0, 0, 2_000),
    ("netops", 43_200, 1_800, 0),
    ("suspended", 300, 60, 256),
    ("walled-garden", 900, 300, 1_000),
    ("eduroam-visitors", 28_800, 900, 50_000),
];

fn gen_auth(tx: &Connection, w: &World, rng: &mut Rng) -> Res<u64> {
    let mut rows = 0;
    let mut st = tx.prepare(
        "INSERT INTO groups (name, description, session_timeout, idle_timeout,
             rate_limit_down_kbps, rate_limit_up_kbps, vlan) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let n_groups = GROUPS.len() as u64 + w.plan.extra_groups;
    for g in 0..n_groups {
        let (name, st_, it, down) = match GROUPS.get(g as usize) {
            Some(&(n, s, i, d)) => (n.to_string(), s, i, d),
            None => (format!("customer-{:05}", 10_000 + g * 7), 0, 0, 100_000),
        };
        let nz = |x: i64| (x > 0).then_some(x);
        st.execute(params![
            name,
            format!("{} (managed by provisioning)", name.replace('-', " ")),
            nz(st_),
            nz(it),
            nz(down),
            nz(down / 10),
            100 + g as i64
        ])?;
        rows += 1;
    }
    drop(st);

    let mut st_user = tx.prepare(
        "INSERT INTO users (id, username, realm, password_hash, password_changed_at, email,
             full_name, status, mfa_enabled, max_sessions, created_at, last_login)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut st_ug =
        tx.prepare("INSERT INTO user_groups (user_id, group_id, priority) VALUES (?1, ?2, ?3)")?;
    let n = w.plan.users;
    for i in 0..n {
        let u = w.user_at(i);
        let created = spread_ts(rng, END_TS - 5 * 365 * DAY, END_TS - DAY, i, n);
        let changed = created + rng.below_i(END_TS - created);
        let last_login = if rng.chance(0.9) {
            Some(END_TS - rng.log_uniform(60.0, 180.0 * DAY as f64) as i64)
        } else {
            None
        };
        let status = rng.weighted(&[
            ("active", 90),
            ("disabled", 4),
            ("locked", 2),
            ("expired", 3),
            ("pending", 1),
        ]);
        let email = rng.chance(0.8).then(|| format!("{}@{}", u.name, u.realm));
        st_user.execute(params![
            u.id,
            u.name,
            u.realm,
            password_hash(rng),
            changed,
            email,
            w.full_name(i),
            status,
            rng.chance(0.2),
            1 + rng.below_i(4),
            created,
            last_login
        ])?;
        rows += 1;
        // One service tier plus, for some, a role or extra group.
        let tier = 1 + rng.below_i(7);
        st_ug.execute(params![u.id, tier, 10])?;
        rows += 1;
        if rng.chance(0.6) {
            let extra = 8 + rng.below_i(n_groups as i64 - 7);
            st_ug.execute(params![u.id, extra, 20])?;
            rows += 1;
        }
    }
    drop(st_user);
    drop(st_ug);
    rows += insert_auth_attempts(tx, w, rng, w.plan.auth_attempts, END_TS - 30 * DAY, END_TS)?;
    Ok(rows)
}

fn insert_auth_attempts(
    tx: &Connection,
    ents: &dyn Entities,
    rng: &mut Rng,
    n: u64,
    from: i64,
    to: i64,
) -> Res<u64> {
    let mut st = tx.prepare(
        "INSERT INTO auth_attempts (ts, username, user_id, nas_ip, nas_port_id,
             calling_station_id, method, result, reason, response_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for i in 0..n {
        let ts = spread_ts(rng, from, to, i, n);
        let d = ents.device(rng)?;
        // A few percent of requests are for names that do not exist
        // (typos, scanners, misconfigured supplicants).
        let (name, user_id, mac) = if rng.chance(0.03) {
            let name = format!(
                "{}{}",
                rng.pick(&["admin", "test", "user", "guest"]),
                rng.below(1000)
            );
            let mac = mac_for(rng.next_u64());
            (name, None, mac)
        } else {
            let u = ents.user(rng)?;
            (u.qualified(), Some(u.id), u.mac())
        };
        let method = rng.weighted(&[
            ("PAP", 30),
            ("CHAP", 10),
            ("MSCHAPv2", 10),
            ("EAP-PEAP", 25),
            ("EAP-TTLS", 10),
            ("EAP-TLS", 15),
        ]);
        let (result, reason) = if user_id.is_none() {
            ("Access-Reject", Some("unknown user"))
        } else {
            match rng.below(100) {
                0..=87 => ("Access-Accept", None),
                88..=94 => ("Access-Reject", Some("invalid password")),
                95..=96 => ("Access-Reject", Some("account disabled")),
                97 => ("Access-Reject", Some("too many sessions")),
                _ => ("Access-Reject", Some("MAC address not allowed")),
            }
        };
        let response_us = rng.log_uniform(400.0, 250_000.0) as i64;
        st.execute(params![
            ts,
            name,
            user_id,
            d.ip,
            port_id(d.kind, rng),
            mac,
            method,
            result,
            reason,
            response_us
        ])?;
    }
    Ok(n)
}

const ACCT_SPAN: i64 = 30 * DAY;
/// Interim-Update intervals configured on the NASes.
const INTERIM_INTERVALS: [i64; 4] = [300, 600, 900, 1800];
/// Housekeeping keeps only the newest interims per session in the raw log.
const KEPT_INTERIMS: i64 = 6;

fn gen_accounting(tx: &Connection, w: &World, rng: &mut Rng) -> Res<u64> {
    let mut st = AcctStatements::prepare(tx)?;
    let n = w.plan.sessions;
    let mut rows = 0;
    for i in 0..n {
        let start = spread_ts(rng, END_TS - ACCT_SPAN, END_TS, i, n);
        rows += insert_session(&mut st, rng, w, start, END_TS)?;
    }
    Ok(rows)
}

struct AcctStatements<'c> {
    session: Statement<'c>,
    record: Statement<'c>,
}

impl<'c> AcctStatements<'c> {
    fn prepare(tx: &'c Connection) -> Res<Self> {
        Ok(AcctStatements {
            session: tx.prepare(
                "INSERT INTO acct_sessions (acct_session_id, acct_unique_id, username, realm,
                     nas_ip, nas_port_id, nas_port_type, start_time, update_time, stop_time,
                     interim_interval, session_time, input_octets, output_octets, input_packets,
                     output_packets, terminate_cause, framed_ip, calling_station_id,
                     called_station_id, service_type, framed_protocol)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
            )?,
            record: tx.prepare(
                "INSERT INTO acct_records (session_id, status_type, ts, session_time,
                     input_octets, output_octets, input_packets, output_packets, acct_delay_time)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?,
        })
    }

    fn record(&mut self, session: i64, status: &str, ts: i64, c: &Counters, delay: i64) -> Res<()> {
        self.record.execute(params![
            session,
            status,
            ts,
            c.time,
            c.input_octets,
            c.output_octets,
            c.input_packets,
            c.output_packets,
            delay
        ])?;
        Ok(())
    }
}

/// Session counters at some point in time.
struct Counters {
    time: i64,
    input_octets: i64,
    output_octets: i64,
    input_packets: i64,
    output_packets: i64,
}

/// Traffic profile of one session; counters grow linearly with time.
struct Traffic {
    down_rate: f64,
    up_ratio: f64,
    packet_size: f64,
}

impl Traffic {
    fn random(rng: &mut Rng) -> Self {
        Traffic {
            down_rate: rng.log_uniform(200.0, 4e6),
            up_ratio: 0.03 + rng.f64() * 0.3,
            packet_size: 300.0 + rng.f64() * 1100.0,
        }
    }

    fn at(&self, t: i64) -> Counters {
        let out = (self.down_rate * t as f64) as i64;
        let inp = (self.down_rate * self.up_ratio * t as f64) as i64;
        Counters {
            time: t,
            input_octets: inp,
            output_octets: out,
            input_packets: (inp as f64 / (self.packet_size * 0.4)) as i64,
            output_packets: (out as f64 / self.packet_size) as i64,
        }
    }
}

/// Mostly no Acct-Delay-Time; retransmits show a few seconds.
fn delay(rng: &mut Rng) -> i64 {
    if rng.chance(0.95) {
        0
    } else {
        1 + rng.below_i(8)
    }
}

/// Inserts one session as the server would have recorded it by `now`: the
/// session row with its latest counters plus the raw Start/Interim/Stop log.
/// Returns the number of rows written.
fn insert_session(
    st: &mut AcctStatements,
    rng: &mut Rng,
    ents: &dyn Entities,
    start: i64,
    now: i64,
) -> Res<u64> {
    let user = ents.user(rng)?;
    let nas = ents.device(rng)?;
    let interval = INTERIM_INTERVALS[(fnv(&nas.shortname) % 4) as usize];
    let dur = rng.log_uniform(20.0, 2.0 * DAY as f64) as i64;
    let traffic = Traffic::random(rng);
    let closed = start + dur <= now;
    let n_interims = if closed {
        (dur - 1) / interval
    } else {
        (now - start) / interval
    }
    .max(0);
    let last_update = (n_interims > 0).then_some(start + n_interims * interval);
    let current = if closed {
        traffic.at(dur)
    } else {
        traffic.at(last_update.map_or(0, |u| u - start))
    };
    let cause = closed.then(|| {
        *rng.weighted(&[
            ("User-Request", 45),
            ("Idle-Timeout", 20),
            ("Session-Timeout", 10),
            ("Lost-Carrier", 12),
            ("Lost-Service", 4),
            ("Admin-Reset", 3),
            ("NAS-Reboot", 2),
            ("Port-Error", 2),
            ("NAS-Request", 2),
        ])
    });
    let framed_ip = {
        let r = rng.next_u64();
        format!(
            "100.{}.{}.{}",
            64 + (r & 63),
            (r >> 8) & 255,
            1 + (r >> 16) % 254
        )
    };
    let called = if nas.kind.wireless {
        let ssid = match user.realm.as_str() {
            "guest.example.net" => "Example-Guest",
            "roam.eduroam.example" | "campus.example.edu" => "eduroam",
            "iot.example.net" => "Example-IoT",
            _ => "Example-WiFi",
        };
        format!("{}:{ssid}", mac_for(fnv(&nas.shortname)))
    } else {
        nas.shortname.clone()
    };
    let ppp = nas.kind.vendor == "MikroTik" || nas.kind.role == "bng";
    let session_id = st.session.insert(params![
        hex_string(rng, 16, true),
        hex_string(rng, 32, false),
        user.qualified(),
        user.realm,
        nas.ip,
        port_id(nas.kind, rng),
        nas.kind.port_type,
        start,
        last_update,
        closed.then_some(start + dur),
        interval,
        current.time,
        current.input_octets,
        current.output_octets,
        current.input_packets,
        current.output_packets,
        cause,
        framed_ip,
        user.mac(),
        called,
        "Framed-User",
        ppp.then_some("PPP")
    ])?;
    let mut rows = 1;
    st.record(session_id, "Start", start, &traffic.at(0), delay(rng))?;
    rows += 1;
    for k in (n_interims - KEPT_INTERIMS + 1).max(1)..=n_interims {
        let t = k * interval;
        st.record(
            session_id,
            "Interim-Update",
            start + t,
            &traffic.at(t),
            delay(rng),
        )?;
        rows += 1;
    }
    if closed {
        st.record(session_id, "Stop", start + dur, &current, delay(rng))?;
        rows += 1;
    }
    Ok(rows)
}

/// (name, unit, kind)
const METRICS: [(&str, &str, &str); 12] = [
    ("cpu_util", "percent", "gauge"),
    ("mem_used", "bytes", "gauge"),
    ("if_in_octets", "bytes", "counter"),
    ("if_out_octets", "bytes", "counter"),
    ("if_in_errors", "packets", "counter"),
    ("radius_access_requests", "packets", "counter"),
    ("radius_access_rejects", "packets", "counter"),
    ("radius_acct_requests", "packets", "counter"),
    ("active_sessions", "sessions", "gauge"),
    ("temperature", "celsius", "gauge"),
    ("rtt", "milliseconds", "gauge"),
    ("packet_loss", "percent", "gauge"),
];

/// Next value of a series, given its previous value (`None` for the first
/// sample). Values are rounded the way collectors report them, which is also
/// what makes real metric tables compress.
fn next_value(metric: usize, prev: Option<f64>, rng: &mut Rng) -> f64 {
    let walk = |rng: &mut Rng, p: f64, step: f64, lo: f64, hi: f64| {
        (p + (rng.f64() - 0.5) * step).clamp(lo, hi)
    };
    match (metric, prev) {
        (0, None) => round_to(5.0 + rng.f64() * 40.0, 0.1),
        (0, Some(p)) => round_to(walk(rng, p, 8.0, 1.0, 99.0), 0.1),
        (1, None) => round_to(rng.log_uniform(1e9, 3.2e10), 4096.0),
        (1, Some(p)) => round_to(walk(rng, p, p * 0.02, 1e8, 6.4e10), 4096.0),
        (2 | 3, None) => (rng.next_u64() >> 24) as f64,
        (2, Some(p)) => p + rng.log_uniform(1e5, 3e9).round(),
        (3, Some(p)) => p + rng.log_uniform(1e6, 3e10).round(),
        (4, p) => {
            p.unwrap_or(0.0)
                + if rng.chance(0.1) {
                    rng.below(20) as f64
                } else {
                    0.0
                }
        }
        (5 | 7, p) => p.unwrap_or((rng.next_u64() >> 40) as f64) + rng.below(5000) as f64,
        (6, p) => p.unwrap_or((rng.next_u64() >> 44) as f64) + rng.below(200) as f64,
        (8, None) => rng.below(2000) as f64,
        (8, Some(p)) => walk(rng, p, 40.0, 0.0, 64_000.0).round(),
        (9, None) => round_to(35.0 + rng.f64() * 20.0, 0.5),
        (9, Some(p)) => round_to(walk(rng, p, 2.0, 20.0, 85.0), 0.5),
        (10, _) => round_to(rng.log_uniform(0.3, 40.0), 0.01),
        _ => {
            if rng.chance(0.9) {
                0.0
            } else {
                round_to(rng.log_uniform(0.01, 5.0), 0.01)
            }
        }
    }
}

fn gen_metrics(tx: &Connection, w: &World, rng: &mut Rng) -> Res<u64> {
    let mut rows = 0;
    let mut st =
        tx.prepare("INSERT INTO metric_names (id, name, unit, kind) VALUES (?1, ?2, ?3, ?4)")?;
    for (i, (name, unit, kind)) in METRICS.iter().enumerate() {
        st.execute(params![i as i64 + 1, name, unit, kind])?;
        rows += 1;
    }
    drop(st);
    let series = (w.plan.metric_devices as usize) * METRICS.len();
    let mut last = vec![None; series];
    let first_ts = END_TS - w.plan.metric_steps as i64 * POLL_SECS;
    rows += insert_samples(tx, rng, &mut last, first_ts, w.plan.metric_steps)?;
    Ok(rows)
}

/// Appends `steps` polls of every series, starting at `first_ts`. `last`
/// holds the previous value per series (device-major) and is updated.
fn insert_samples(
    tx: &Connection,
    rng: &mut Rng,
    last: &mut [Option<f64>],
    first_ts: i64,
    steps: u64,
) -> Res<u64> {
    let mut st = tx
        .prepare("INSERT INTO samples (ts, device_id, metric_id, value) VALUES (?1, ?2, ?3, ?4)")?;
    let n_metrics = METRICS.len();
    let mut rows = 0;
    for step in 0..steps as i64 {
        let poll = first_ts + step * POLL_SECS;
        for (s, prev) in last.iter_mut().enumerate() {
            let device = (s / n_metrics) as i64 + 1;
            let metric = s % n_metrics;
            let value = next_value(metric, *prev, rng);
            *prev = Some(value);
            // Collectors stamp samples when they arrive, a little after the
            // poll time.
            let ts = poll + rng.below_i(20);
            st.execute(params![ts, device, metric as i64 + 1, value])?;
            rows += 1;
        }
    }
    Ok(rows)
}

fn gen_audit(tx: &Connection, w: &World, rng: &mut Rng) -> Res<u64> {
    insert_audit(tx, w, rng, w.plan.audit, END_TS - 365 * DAY, END_TS)
}

fn insert_audit(
    tx: &Connection,
    ents: &dyn Entities,
    rng: &mut Rng,
    n: u64,
    from: i64,
    to: i64,
) -> Res<u64> {
    const ADMINS: [&str; 8] = [
        "admin:alice",
        "admin:bob",
        "admin:carol",
        "admin:dmitri",
        "admin:eve",
        "api:provisioning",
        "api:billing",
        "system:scheduler",
    ];
    const AGENTS: [&str; 3] = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Safari/605.1.15",
        "provisioning-sync/2.14.1",
    ];
    let mut st = tx.prepare(
        "INSERT INTO audit_log (ts, actor, actor_ip, action, target_type, target_id, outcome,
             request_id, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for i in 0..n {
        let ts = spread_ts(rng, from, to, i, n);
        let actor = *rng.pick(&ADMINS);
        let actor_ip = if actor.starts_with("system:") {
            None
        } else {
            Some(format!("10.250.{}.{}", rng.below(4), 20 + rng.below(60)))
        };
        let action = *rng.weighted(&[
            ("user.create", 20),
            ("user.update", 15),
            ("user.password_reset", 12),
            ("user.disable", 5),
            ("user.group_add", 10),
            ("session.disconnect", 12),
            ("device.update", 6),
            ("device.secret_rotate", 2),
            ("client.update", 3),
            ("realm.update", 1),
            ("setting.update", 2),
            ("admin.login", 12),
        ]);
        let ticket = format!("OPS-{}", 1000 + rng.below(90_000));
        // All interpolated values come from fixed alphabets (no quotes or
        // backslashes), so plain formatting produces valid JSON.
        let (target_type, target_id, details) = match action.split('.').next() {
            Some("user") => {
                let u = ents.user(rng)?;
                let details = match action {
                    "user.create" => format!(
                        r#"{{"username":"{}","realm":"{}","groups":["{}"],"status":"active","source":"{}"}}"#,
                        u.name,
                        u.realm,
                        GROUPS[rng.below(7) as usize].0,
                        rng.pick(&["portal", "billing-sync", "csv-import"])
                    ),
                    "user.update" => format!(
                        r#"{{"username":"{}","changes":{{"max_sessions":[{},{}]}},"ticket":"{ticket}"}}"#,
                        u.qualified(),
                        1 + rng.below(2),
                        2 + rng.below(3)
                    ),
                    "user.password_reset" => format!(
                        r#"{{"username":"{}","method":"{}","notify":"email","ticket":"{ticket}"}}"#,
                        u.qualified(),
                        rng.pick(&["admin", "self-service", "helpdesk"])
                    ),
                    "user.disable" => format!(
                        r#"{{"username":"{}","previous_status":"active","reason":"{}","ticket":"{ticket}"}}"#,
                        u.qualified(),
                        rng.pick(&["non-payment", "abuse report", "contract ended", "security"])
                    ),
                    _ => format!(
                        r#"{{"username":"{}","group":"{}","priority":20}}"#,
                        u.qualified(),
                        GROUPS[7 + rng.below(9) as usize].0
                    ),
                };
                ("user", u.id.to_string(), details)
            }
            Some("session") => {
                let d = ents.device(rng)?;
                let details = format!(
                    r#"{{"acct_unique_id":"{}","nas_ip":"{}","packet":"Disconnect-Request","result":"{}","rtt_ms":{}}}"#,
                    hex_string(rng, 32, false),
                    d.ip,
                    rng.weighted(&[("Disconnect-ACK", 9), ("Disconnect-NAK", 1)]),
                    1 + rng.below(400)
                );
                ("session", hex_string(rng, 16, true), details)
            }
            Some("device") | Some("client") => {
                let d = ents.device(rng)?;
                let details = match action {
                    "device.secret_rotate" => format!(
                        r#"{{"device":"{}","ip":"{}","old_secret":"sha256${}","new_secret":"sha256${}"}}"#,
                        d.shortname,
                        d.ip,
                        hex_string(rng, 8, false),
                        hex_string(rng, 8, false)
                    ),
                    "client.update" => format!(
                        r#"{{"client":"{}","changes":{{"require_message_authenticator":[false,true]}},"ticket":"{ticket}"}}"#,
                        d.shortname
                    ),
                    _ => format!(
                        r#"{{"device":"{}","changes":{{"firmware":["{}","{}"],"status":["maintenance","active"]}}}}"#,
                        d.shortname,
                        rng.pick(d.kind.firmware),
                        rng.pick(d.kind.firmware)
                    ),
                };
                (
                    action.split('.').next().unwrap_or("device"),
                    d.id.to_string(),
                    details,
                )
            }
            Some("realm") => {
                let realm = rng.weighted(&REALMS);
                let details = format!(
                    r#"{{"realm":"{realm}","changes":{{"auth_pool":["pool.{}","pool.{}"]}},"ticket":"{ticket}"}}"#,
                    rng.pick(&SITES),
                    rng.pick(&SITES)
                );
                ("realm", realm.to_string(), details)
            }
            Some("setting") => {
                let key = rng.pick(&[
                    "auth.reject_delay_ms",
                    "acct.interim_interval",
                    "log.level",
                    "radius.max_request_time",
                ]);
                let details = format!(
                    r#"{{"key":"{key}","old":"{}","new":"{}","ticket":"{ticket}"}}"#,
                    rng.below(1000),
                    rng.below(1000)
                );
                ("setting", key.to_string(), details)
            }
            _ => {
                let details = format!(
                    r#"{{"method":"{}","user_agent":"{}","session_ttl":3600}}"#,
                    rng.pick(&["password+totp", "sso:oidc", "api-token"]),
                    rng.pick(&AGENTS)
                );
                ("admin", actor.to_string(), details)
            }
        };
        let outcome = if rng.chance(0.97) {
            "success"
        } else {
            "denied"
        };
        st.execute(params![
            ts,
            actor,
            actor_ip,
            action,
            target_type,
            target_id,
            outcome,
            uuid(rng),
            details
        ])?;
    }
    Ok(n)
}

/// etc/: the server's own config files, which litevault backs up alongside
/// the stores.
fn write_etc(dir: &Path, w: &World) -> Res<u64> {
    let mut rng = Rng::new(mix(w.seed) ^ 0xE7C);
    let mut server = String::new();
    let _ = write!(
        server,
        "# AAA server configuration (generated by gen-state, seed {seed})
server {{
    node_id = aaa-1
    listen auth {{ ipaddr = * port = 1812 }}
    listen acct {{ ipaddr = * port = 1813 }}
    listen coa  {{ ipaddr = * port = 3799 }}
    max_request_time = 30
    threads {{ start = 8 max = 64 }}
}}

stores {{
    config     = /var/lib/aaa/config.db
    devices    = /var/lib/aaa/devices.db
    auth       = /var/lib/aaa/auth.db
    accounting = /var/lib/aaa/accounting.db
    metrics    = /var/lib/aaa/metrics.db
    audit      = /var/lib/aaa/audit.db
    journal_mode = wal
    busy_timeout_ms = 5000
}}

tls {{
    ca_file          = /etc/aaa/tls/ca.pem
    certificate_file = /etc/aaa/tls/server.pem
    min_version      = 1.2
}}

log {{ destination = syslog level = info auth_failures = yes }}
",
        seed = w.seed
    );

    let mut clients = String::from("# RADIUS clients (generated by gen-state)\n");
    // A static file lists only the core NASes; the rest live in config.db.
    for i in 0..w.plan.clients.min(64) {
        let d = w.device_at(i * w.plan.devices / w.plan.clients);
        let _ = write!(
            clients,
            "\nclient {} {{\n    ipaddr = {}\n    secret = {}\n    nastype = {}\n    require_message_authenticator = {}\n}}\n",
            d.shortname,
            d.ip,
            hex_string(&mut rng, 24, false),
            d.kind.nas_type,
            if rng.chance(0.7) { "yes" } else { "no" }
        );
    }

    let files = [
        ("etc/server.conf", server),
        ("etc/clients.conf", clients),
        (
            "etc/tls/ca.pem",
            fake_pem(&mut rng, "Example AAA Root CA", 18),
        ),
        (
            "etc/tls/server.pem",
            fake_pem(&mut rng, "aaa-1.example.net", 22),
        ),
    ];
    let mut bytes = 0;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, &text)?;
        bytes += text.len() as u64;
    }
    // Secrets should not be world-readable; this also gives backups a
    // non-default mode to preserve.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let restricted = std::fs::Permissions::from_mode(0o640);
        std::fs::set_permissions(dir.join("etc/clients.conf"), restricted.clone())?;
        std::fs::set_permissions(dir.join("etc/tls/server.pem"), restricted)?;
    }
    Ok(bytes)
}

/// PEM-shaped filler. It is not a parseable certificate: the files only need
/// to look and compress like one.
fn fake_pem(rng: &mut Rng, subject: &str, lines: usize) -> String {
    let mut s = format!(
        "# Test fixture generated by gen-state; not a real certificate.\n# subject: CN={subject}\n-----BEGIN CERTIFICATE-----\n"
    );
    for _ in 0..lines {
        push_b64(&mut s, rng, 64, STD_B64);
        s.push('\n');
    }
    push_b64(&mut s, rng, 20, STD_B64);
    s.push_str("==\n-----END CERTIFICATE-----\n");
    s
}

// ---------------------------------------------------------------------------
// Mutation: one step of a live server
// ---------------------------------------------------------------------------

fn open_existing(path: &Path) -> Res<Connection> {
    if !path.is_file() {
        return Err(format!("{}: not found; generate DIR first", path.display()).into());
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Behave like the server: WAL with normal durability, and wait for a
    // concurrent reader (such as a running backup) instead of failing.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A server-sized page cache: with the 2 MiB default, one step's
    // transaction spills and rewrites the same index pages into the WAL
    // many times over.
    conn.pragma_update(None, "cache_size", -65536)?;
    // A live server keeps its connections open, so its latest commits sit in
    // the -wal file rather than in the main database. Skipping the checkpoint
    // on close leaves DIR in that state, which is what a backup of a running
    // server has to capture correctly.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("{}: journal_mode is {mode}, expected wal", path.display()).into());
    }
    Ok(conn)
}

fn max_id(conn: &Connection, table: &str) -> Res<u64> {
    let v: Option<i64> =
        conn.query_row(&format!("SELECT max(id) FROM {table}"), [], |r| r.get(0))?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

/// Rows to touch for a table of `n` rows: about `fraction` of it, at least 1.
fn share(n: u64, fraction: f64) -> u64 {
    ((n as f64 * fraction).round() as u64).max(1)
}

fn mutate(dir: &Path, fraction: f64, seed: u64) -> Res<()> {
    let t0 = Instant::now();
    let ents = DbEntities::open(dir)?;
    // Mixing the current state into the seed makes repeated mutate runs with
    // the same --seed take different (but still reproducible) steps.
    let stream = |tag: u64, state: u64| Rng::new(mix(seed ^ mix(tag)) ^ mix(state));

    // config.db is deliberately left alone: between two backups most
    // configuration does not change, and an incremental run should see that.
    // It is opened only to check that it exists and is in WAL mode.
    let mut changes: Vec<(&str, u64)> = vec![("config", 0)];
    open_existing(&dir.join("config.db"))?;

    {
        let mut conn = open_existing(&dir.join("devices.db"))?;
        let n = max_id(&conn, "nas_devices")?;
        let events = max_id(&conn, "device_events")?;
        let mut rng = stream(1, events);
        let last: i64 = conn.query_row("SELECT max(ts) FROM device_events", [], |r| r.get(0))?;
        let now = last + step_secs(&conn, "device_events", fraction)?;
        let tx = conn.transaction()?;
        let k = share(n, fraction);
        let mut changed = 0;
        {
            let mut st = tx.prepare(
                "UPDATE nas_devices SET last_seen = ?2 WHERE id = ?1 AND status != 'decommissioned'",
            )?;
            for _ in 0..k {
                let id = 1 + rng.below_i(n as i64);
                changed += st.execute(params![id, now - rng.below_i(POLL_SECS)])? as u64;
            }
        }
        changed +=
            insert_device_events(&tx, &ents, &mut rng, share(events, fraction), last + 1, now)?;
        tx.commit()?;
        drop(conn);
        changes.push(("devices", changed));
    }

    {
        // Writes go through ents.auth so that its lookups see a single
        // connection; a second writer connection would just contend.
        let conn = &ents.auth;
        let users = ents.max_user;
        let attempts = max_id(conn, "auth_attempts")?;
        let mut rng = stream(2, attempts);
        let last: Option<i64> =
            conn.query_row("SELECT max(ts) FROM auth_attempts", [], |r| r.get(0))?;
        let last = last.unwrap_or(END_TS);
        let now = last + step_secs(conn, "auth_attempts", fraction)?;
        let tx = conn.unchecked_transaction()?;
        let mut changed = 0;
        {
            // Password changes are rarer than logins.
            let mut pw = tx.prepare(
                "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
            )?;
            for _ in 0..share(users, fraction / 4.0) {
                let id = 1 + rng.below_i(users as i64);
                changed += pw.execute(params![
                    id,
                    password_hash(&mut rng),
                    now - rng.below_i(now - last + 1)
                ])? as u64;
            }
            let mut login = tx.prepare("UPDATE users SET last_login = ?2 WHERE id = ?1")?;
            for _ in 0..share(users, fraction) {
                let id = 1 + pick_index(&mut rng, users) as i64;
                changed += login.execute(params![id, now - rng.below_i(now - last + 1)])? as u64;
            }
        }
        changed += insert_auth_attempts(
            &tx,
            &ents,
            &mut rng,
            share(attempts, fraction),
            last + 1,
            now,
        )?;
        tx.commit()?;
        changes.push(("auth", changed));
    }

    {
        let mut conn = open_existing(&dir.join("accounting.db"))?;
        let sessions = max_id(&conn, "acct_sessions")?;
        let mut rng = stream(3, sessions);
        let last: i64 = conn.query_row("SELECT max(start_time) FROM acct_sessions", [], |r| {
            r.get(0)
        })?;
        let now = last + step_secs(&conn, "acct_sessions", fraction)?;
        let tx = conn.transaction()?;
        let changed = mutate_accounting(&tx, &ents, &mut rng, sessions, fraction, last, now)?;
        tx.commit()?;
        drop(conn);
        changes.push(("accounting", changed));
    }

    {
        let mut conn = open_existing(&dir.join("metrics.db"))?;
        let samples = max_id(&conn, "samples")?;
        let mut rng = stream(4, samples);
        let (last, devices): (i64, i64) =
            conn.query_row("SELECT max(ts), max(device_id) FROM samples", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let n_metrics = METRICS.len();
        let series = devices as usize * n_metrics;
        let tx = conn.transaction()?;
        // Counters must continue from where each series left off.
        let mut prev = Vec::with_capacity(series);
        {
            let mut st = tx.prepare(
                "SELECT value FROM samples WHERE device_id = ?1 AND metric_id = ?2
                 ORDER BY ts DESC LIMIT 1",
            )?;
            for s in 0..series {
                let device = (s / n_metrics) as i64 + 1;
                let metric = (s % n_metrics) as i64 + 1;
                prev.push(st.query_row([device, metric], |r| r.get(0)).optional()?);
            }
        }
        let steps = (share(samples, fraction) / series.max(1) as u64).max(1);
        // Next poll after the last one (samples carry up to 20 s of delay).
        let first = (last - last.rem_euclid(POLL_SECS)) + POLL_SECS;
        let changed = insert_samples(&tx, &mut rng, &mut prev, first, steps)?;
        tx.commit()?;
        drop(conn);
        changes.push(("metrics", changed));
    }

    {
        let mut conn = open_existing(&dir.join("audit.db"))?;
        let n = max_id(&conn, "audit_log")?;
        let mut rng = stream(5, n);
        let last: i64 = conn.query_row("SELECT max(ts) FROM audit_log", [], |r| r.get(0))?;
        let now = last + step_secs(&conn, "audit_log", fraction)?;
        let tx = conn.transaction()?;
        let changed = insert_audit(&tx, &ents, &mut rng, share(n, fraction), last + 1, now)?;
        tx.commit()?;
        drop(conn);
        changes.push(("audit", changed));
    }

    // Report sizes only once every connection is closed, so they show what a
    // backup would find on disk (database plus the WAL left behind).
    drop(ents);
    for (store, changed) in changes {
        report(
            store,
            "changed",
            changed,
            store_bytes(&dir.join(format!("{store}.db"))),
        );
    }
    println!(
        "mutate         fraction={fraction} seed={seed} in {:.2}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// How far the clock advances in one step: `fraction` of the history the
/// table already covers, so appended rows keep the table's rate.
fn step_secs(conn: &Connection, table: &str, fraction: f64) -> Res<i64> {
    let col = if table == "acct_sessions" {
        "start_time"
    } else {
        "ts"
    };
    let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
        &format!("SELECT min({col}), max({col}) FROM {table}"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let span = hi.unwrap_or(0) - lo.unwrap_or(0);
    Ok(((span as f64 * fraction) as i64).clamp(60, 7 * DAY))
}

/// New sessions start in `(last, now]`; some open sessions get an
/// Interim-Update and some stop.
fn mutate_accounting(
    tx: &Connection,
    ents: &dyn Entities,
    rng: &mut Rng,
    sessions: u64,
    fraction: f64,
    last: i64,
    now: i64,
) -> Res<u64> {
    let k = share(sessions, fraction);
    let mut changed = 0;
    // Read the open sessions through the partial index, which is exactly
    // what a server does for stale-session cleanup.
    let open: Vec<(i64, i64, i64, i64)> = {
        let mut st = tx.prepare(
            "SELECT s.id, s.start_time, s.interim_interval, s.session_time
             FROM acct_sessions AS s INDEXED BY acct_sessions_open
             WHERE s.stop_time IS NULL",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut st = AcctStatements::prepare(tx)?;
    let mut close = tx.prepare(
        "UPDATE acct_sessions SET stop_time = ?2, update_time = ?2, session_time = ?3,
             input_octets = input_octets + ?4, output_octets = output_octets + ?5,
             input_packets = input_packets + ?6, output_packets = output_packets + ?7,
             terminate_cause = ?8
         WHERE id = ?1",
    )?;
    let mut interim = tx.prepare(
        "UPDATE acct_sessions SET update_time = ?2, session_time = ?3,
             input_octets = input_octets + ?4, output_octets = output_octets + ?5,
             input_packets = input_packets + ?6, output_packets = output_packets + ?7
         WHERE id = ?1",
    )?;
    let touched = (2 * k as usize).min(open.len());
    for _ in 0..touched {
        let (id, start, interval, time) = open[rng.below(open.len() as u64) as usize];
        let t = (now - rng.below_i(interval.max(60)) - start).max(time);
        // Counters since the last update, from a fresh traffic profile.
        let delta = Traffic::random(rng).at(t - time);
        let stopping = rng.chance(0.4);
        let updated = if stopping {
            let cause = *rng.weighted(&[
                ("User-Request", 6),
                ("Idle-Timeout", 3),
                ("Lost-Carrier", 1),
            ]);
            close.execute(params![
                id,
                start + t,
                t,
                delta.input_octets,
                delta.output_octets,
                delta.input_packets,
                delta.output_packets,
                cause
            ])?
        } else {
            interim.execute(params![
                id,
                start + t,
                t,
                delta.input_octets,
                delta.output_octets,
                delta.input_packets,
                delta.output_packets
            ])?
        };
        // A session picked twice may already be stopped; the log still
        // records the packet, as a real server would log a late duplicate.
        let status = if stopping { "Stop" } else { "Interim-Update" };
        let totals: Counters = tx.query_row(
            "SELECT session_time, input_octets, output_octets, input_packets, output_packets
             FROM acct_sessions WHERE id = ?1",
            [id],
            |r| {
                Ok(Counters {
                    time: r.get(0)?,
                    input_octets: r.get(1)?,
                    output_octets: r.get(2)?,
                    input_packets: r.get(3)?,
                    output_packets: r.get(4)?,
                })
            },
        )?;
        st.record(id, status, start + t, &totals, delay(rng))?;
        changed += updated as u64 + 1;
    }
    for i in 0..k {
        let start = spread_ts(rng, last + 1, now, i, k);
        changed += insert_session(&mut st, rng, ents, start, now)?;
    }
    Ok(changed)
}
