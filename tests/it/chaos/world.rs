//! One sequence's world: the environment, keys, configuration, model and last observation, and
//! observing the destination (`list --json`, the files stored).

use super::*;

// ---- observing the destination ---------------------------------------------------------------

#[derive(Clone, Debug)]
pub(super) struct Listed {
    pub(super) created_ms: i64,
    pub(super) parent: Option<String>,
    pub(super) damage: Option<String>,
    pub(super) untrusted: Option<String>,
    /// litevault's one judgement ("good", "damaged", "untrusted", "foreign", "future-dated",
    /// "broken-chain"), where its `list --json` gives one.
    pub(super) standing: Option<String>,
    pub(super) problem: Option<String>,
}

impl Listed {
    pub(super) fn clean(&self) -> bool {
        self.damage.is_none()
            && self.untrusted.is_none()
            && self.standing.as_deref().is_none_or(|s| s == "good")
    }

    pub(super) fn why(&self) -> String {
        self.problem
            .clone()
            .or(self.damage.clone())
            .or(self.untrusted.clone())
            .or(self.standing.clone())
            .unwrap_or_default()
    }
}

#[derive(Clone, Default)]
pub(super) struct Obs {
    pub(super) list: BTreeMap<(Dest, String), Listed>,
    /// Every file under both namespace folders: "local/<name>" -> bytes.
    pub(super) files: BTreeMap<String, Vec<u8>>,
}

impl Obs {
    pub(super) fn sidecar(&self, dest: Dest, id: &str) -> Option<&Vec<u8>> {
        self.files.get(&format!("{}/{id}.json", dest.name()))
    }
}

/// RFC 3339 in UTC as litevault writes it (`2026-12-03T07:33:44.123Z`), in ms since the epoch.
pub(super) fn parse_ms(s: &str) -> Option<i64> {
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

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---- one sequence ----------------------------------------------------------------------------

pub(super) struct World {
    pub(super) env: Env,
    pub(super) setup: Setup,
    pub(super) db: PathBuf,
    pub(super) conf: PathBuf,
    pub(super) keys: [String; 2],
    pub(super) recipient: usize,
    pub(super) both_keys: PathBuf,
    pub(super) signing_key: Option<PathBuf>,
    pub(super) signing_pub: Option<String>,
    pub(super) keep_last: u32,
    pub(super) foreign_n: u32,
    pub(super) restores: u32,
    pub(super) model: Model,
    pub(super) obs: Obs,
    pub(super) verbose: bool,
    /// Which step is running (for findings).
    pub(super) at: usize,
    /// A deliberate lie told to the model, to show the oracle notices (see the sabotage test).
    pub(super) sabotage: Option<Sabotage>,
}

pub(super) fn age_keygen(path: &Path) -> String {
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

pub(super) fn dump(path: &Path) -> Result<Vec<(i64, String)>, String> {
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

pub(super) fn word(rng: &mut Rng) -> String {
    let len = rng.range(8, 48) as usize;
    (0..len)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect()
}

pub(super) fn clocked(cmd: Command, shift: Shift) -> Command {
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
    pub(super) fn new(setup: &Setup, verbose: bool) -> World {
        let mut env = Env::new();
        let db = env.add_sqlite("app.db");
        let conf = env.add_source("app.conf", "file", "");
        // litevault never creates a destination's root: it is made here, as an operator would.
        fs::create_dir_all(env.path("other")).unwrap();
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
    pub(super) fn configure(&mut self) {
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

    pub(super) fn ns(&self, dest: Dest) -> PathBuf {
        self.env.path(&format!("{}/test-host", dest.folder()))
    }

    pub(super) fn read_sources(&self) -> Content {
        Content {
            rows: dump(&self.db).unwrap(),
            conf: fs::read(&self.conf).unwrap(),
        }
    }

    pub(super) fn say(&self, line: &str) {
        if self.verbose {
            eprintln!("    {line}");
        }
    }

    pub(super) fn finding(&self, category: &str, detail: String) -> Finding {
        Finding {
            step: self.at,
            category: category.to_string(),
            detail,
        }
    }

    pub(super) fn observe(&self) -> Result<Obs, Finding> {
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
}

pub(super) fn walk_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
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
