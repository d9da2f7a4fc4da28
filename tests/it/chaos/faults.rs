//! Faults done to the destination: harming stored objects, foreign backups, planted files.

use super::*;

impl World {
    // ---- faults ----

    pub(super) fn harm(&mut self, d: Dest, pick: u64, obj: Obj, harm: Harm) {
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
    pub(super) fn signature_verifies(&self, d: Dest, id: &str) -> bool {
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
    pub(super) fn foreign_backup(&mut self) -> (PathBuf, Option<PathBuf>, PathBuf) {
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

    pub(super) fn plant(&mut self, d: Dest, what: Plant) {
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
