//! The oracle's checks after a step: archives whole, the listing, `verify`, restores matching
//! what was recorded, and the final sweep.

use super::*;

impl World {
    /// Whether the archive a sidecar names is stored whole: its size and BLAKE3 as the sidecar
    /// says.
    pub(super) fn archive_whole(&self, obs: &Obs, d: Dest, sidecar: &[u8]) -> bool {
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

    pub(super) fn good_on(&self, d: Dest, clock: i64) -> Vec<String> {
        self.model
            .on(d)
            .into_iter()
            .filter(|id| self.model.effective(d, id, clock).is_good())
            .collect()
    }

    /// After a fault: the model knows what it did; the listing must still agree on the rest.
    pub(super) fn after_fault(&mut self) -> Check {
        self.obs = self.observe()?;
        self.check_listing()
    }

    /// Every backup good in the model is listed, clean; every backup listed is known.
    pub(super) fn check_listing(&self) -> Check {
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

    pub(super) fn check_verify(&self, r: &Run, clock: i64) -> Check {
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

    pub(super) fn restore_dir(&mut self) -> PathBuf {
        self.restores += 1;
        self.env.path(&format!("restore-{}", self.restores))
    }

    pub(super) fn restored(&self, dir: &Path) -> Result<Content, String> {
        Ok(Content {
            rows: dump(&dir.join("app.db"))?,
            conf: fs::read(dir.join("app.conf")).map_err(|e| e.to_string())?,
        })
    }

    pub(super) fn restore_latest(&mut self, shift: Option<Shift>, clock: i64) -> Check {
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

    pub(super) fn check_content(&self, id: &str, d: Dest, dir: &Path, what: &str) -> Check {
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

    pub(super) fn restore_id(
        &mut self,
        d: Dest,
        pick: u64,
        shift: Option<Shift>,
        clock: i64,
    ) -> Check {
        let ids = self.model.on(d);
        if ids.is_empty() {
            return Ok(());
        }
        let id = ids[(pick % ids.len() as u64) as usize].clone();
        self.restore_one(&id, d, shift, clock, "restore ID")?;
        self.after_fault()
    }

    pub(super) fn restore_one(
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
    pub(super) fn final_sweep(&mut self) -> Check {
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
}
