//! Running a step: preparing and running real commands (under a shifted clock or killed
//! mid-run) and telling the model what each did.

use super::*;

impl World {
    // ---- running commands ----

    pub(super) fn args_of(&self, cmd: &Cmd) -> Vec<String> {
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
    pub(super) fn prepare(&mut self, cmd: &Cmd) {
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

    pub(super) fn run_args(&self, args: &[String], shift: Option<Shift>) -> Run {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = self.env.command(&args);
        match shift {
            Some(s) => run_cmd(clocked(cmd, s)),
            None => run_cmd(cmd),
        }
    }

    pub(super) fn step(&mut self, step: &Step) -> Check {
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

    pub(super) fn change(&mut self, seed: u64) {
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

    pub(super) fn command(&mut self, cmd: &Cmd, shift: Option<Shift>, kill: Option<u64>) -> Check {
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
}
