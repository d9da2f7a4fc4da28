//! The fleet view, `list --all-hosts`: several hosts back up into one S3 bucket (a real s3s-fs on
//! 127.0.0.1), each under its own `name`; one command lists them all with each host's newest
//! good backup and count, and writes them for Prometheus. Damaged, unsigned (with `[trust]`) and
//! foreign backups never count.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;
use crate::servers::*;

/// A host backing up into `bucket` of `server` under its own `name`: an [`Env`] (whose config
/// says "test-host") run through a copy of its config with the name changed.
struct Host {
    env: Env,
    name: String,
}

impl Host {
    fn new(server: &S3Server, name: &str) -> Host {
        let mut env = Env::new();
        let db = env.add_sqlite("app.db");
        create_ledger(&db, "WAL", 50);
        env.destinations = vec![dest(
            "s3",
            &format!(
                "s3://fleet/backups?endpoint={}&region=us-east-1",
                server.endpoint()
            ),
        )];
        env.vars = vec![
            ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
        ];
        Host {
            env,
            name: name.to_string(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let text = fs::read_to_string(self.env.write_config()).unwrap();
        let config = self.env.path(&format!("{}.toml", self.name));
        let named = text.replacen(
            "name = \"test-host\"",
            &format!("name = \"{}\"", self.name),
            1,
        );
        assert_ne!(
            named, text,
            "the harness's config names its host differently"
        );
        fs::write(&config, named).unwrap();
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--config").arg(&config).args(args);
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env.vars {
            cmd.env(k, v);
        }
        run_cmd(cmd)
    }

    fn backup(&self) -> String {
        let r = self.run(&["--json", "backup"]);
        r.ok();
        r.json()["id"].as_str().unwrap().to_string()
    }

    fn fleet(&self, extra: &[&str]) -> (Run, Vec<Value>) {
        let mut args = vec!["--json", "list", "--all-hosts"];
        args.extend_from_slice(extra);
        let r = self.run(&args);
        let hosts = serde_json::from_str::<Vec<Value>>(&r.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr));
        (r, hosts)
    }
}

/// Where s3s-fs keeps host `name`'s objects.
fn folder(s3_root: &Path, name: &str) -> PathBuf {
    s3_root.join("fleet/backups").join(name)
}

fn archive(s3_root: &Path, name: &str, id: &str) -> PathBuf {
    let dir = folder(s3_root, name);
    let sidecar: Value =
        serde_json::from_slice(&fs::read(dir.join(format!("{id}.json"))).unwrap()).unwrap();
    dir.join(sidecar["archive"]["object"].as_str().unwrap())
}

fn row<'a>(hosts: &'a [Value], name: &str) -> &'a Value {
    hosts
        .iter()
        .find(|h| h["host"] == name)
        .unwrap_or_else(|| panic!("no host {name}: {hosts:#?}"))
}

fn metric(text: &str, name: &str, host: &str) -> Option<f64> {
    let prefix = format!("{name}{{host=\"{host}\",destination=\"s3\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

#[test]
fn all_hosts_lists_each_hosts_newest_good_backup_and_count_with_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let s3_root = tmp.path().join("s3");
    let server = S3Server::start(&s3_root, &["fleet"]);
    let alpha = Host::new(&server, "alpha");
    let beta = Host::new(&server, "beta");
    let a1 = alpha.backup();
    alpha.backup();
    let a3 = alpha.backup();
    let b1 = beta.backup();
    let b2 = beta.backup();

    // Seen from alpha's own config: both hosts, newest first per host.
    let metrics = alpha.env.path("fleet.prom");
    let (r, hosts) = alpha.fleet(&["--metrics-file", metrics.to_str().unwrap()]);
    r.ok();
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let (a, b) = (row(&hosts, "alpha"), row(&hosts, "beta"));
    assert_eq!(a["destination"], "s3");
    assert_eq!(a["backups"], 3);
    assert_eq!(a["newest"]["id"], a3.as_str());
    assert_eq!(b["backups"], 2);
    assert_eq!(b["newest"]["id"], b2.as_str());
    assert_eq!(b["newest"]["kind"], "full");
    assert_eq!(
        b["newest"]["bytes"],
        fs::metadata(archive(&s3_root, "beta", &b2)).unwrap().len()
    );
    assert!(b["newest"]["age_seconds"].as_u64().unwrap() < 600, "{b:#}");
    assert!(a.get("not_counted").is_none(), "{a:#}");
    let text = fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&text, "litevault_host_backups", "alpha"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(metric(&text, "litevault_host_backups", "beta"), Some(2.0));
    for host in ["alpha", "beta"] {
        let age = metric(&text, "litevault_host_newest_backup_age_seconds", host)
            .unwrap_or_else(|| panic!("no age for {host}:\n{text}"));
        assert!((0.0..600.0).contains(&age), "{text}");
    }
    assert!(
        text.contains("# TYPE litevault_host_backups gauge"),
        "{text}"
    );
    assert_eq!(mode_of(&metrics), 0o644);

    // The table for a person.
    let r = beta.run(&["list", "--all-hosts"]);
    r.ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("HOST") && lines[0].contains("BACKUPS"),
        "{}",
        r.stdout
    );
    assert!(
        lines[1].starts_with("alpha ") && lines[1].contains(&a3) && lines[1].ends_with(" 3"),
        "{}",
        r.stdout
    );
    assert!(
        lines[2].starts_with("beta ") && lines[2].contains(&b2) && lines[2].ends_with(" 2"),
        "{}",
        r.stdout
    );

    // Damage never counts: alpha's oldest archive is gone (seen in the listing alone), beta's
    // newest has the wrong size (its sidecar says another), so beta's newest good one is older.
    fs::remove_file(archive(&s3_root, "alpha", &a1)).unwrap();
    let damaged = archive(&s3_root, "beta", &b2);
    let len = fs::metadata(&damaged).unwrap().len();
    fs::write(&damaged, vec![0u8; len as usize - 1]).unwrap();
    // An older backup is judged as the newest is: its sidecar without its archive is not
    // counted, and says so.
    let old = "20200101T000000Z-0abc";
    let dir = folder(&s3_root, "alpha");
    let mut sidecar: Value =
        serde_json::from_slice(&fs::read(dir.join(format!("{a3}.json"))).unwrap()).unwrap();
    sidecar["manifest"]["backup_id"] = old.into();
    let object = sidecar["archive"]["object"]
        .as_str()
        .unwrap()
        .replace(&a3, old);
    sidecar["archive"]["object"] = object.into();
    fs::write(
        dir.join(format!("{old}.json")),
        serde_json::to_vec(&sidecar).unwrap(),
    )
    .unwrap();
    // A folder with nothing of ours is a host with no good backup: exactly what to alert on.
    fs::create_dir_all(folder(&s3_root, "gamma")).unwrap();
    fs::write(folder(&s3_root, "gamma").join("README"), "not a backup").unwrap();
    let (r, hosts) = alpha.fleet(&["--metrics-file", metrics.to_str().unwrap()]);
    r.ok();
    let (a, b, g) = (
        row(&hosts, "alpha"),
        row(&hosts, "beta"),
        row(&hosts, "gamma"),
    );
    assert_eq!(a["backups"], 2, "{a:#}");
    assert_eq!(a["newest"]["id"], a3.as_str());
    assert!(
        a["not_counted"].as_array().unwrap().iter().any(|w| {
            let w = w.as_str().unwrap();
            w.contains(&a1) && w.contains("missing")
        }),
        "{a:#}"
    );
    assert!(
        a["not_counted"].as_array().unwrap().iter().any(|w| {
            let w = w.as_str().unwrap();
            w.starts_with(&format!("backup {old} on s3 is not counted: it is damaged"))
                && w.contains("is missing")
        }),
        "{a:#}"
    );
    assert_eq!(b["backups"], 1, "{b:#}");
    assert_eq!(b["newest"]["id"], b1.as_str());
    assert!(
        b["not_counted"][0].as_str().unwrap().contains("damaged"),
        "{b:#}"
    );
    assert_eq!(g["backups"], 0);
    assert_eq!(g["newest"], Value::Null);
    r.stderr_has(&format!("backup {a1} on s3 is not counted"));
    let text = fs::read_to_string(&metrics).unwrap();
    assert_eq!(metric(&text, "litevault_host_backups", "alpha"), Some(2.0));
    assert_eq!(metric(&text, "litevault_host_backups", "beta"), Some(1.0));
    assert_eq!(metric(&text, "litevault_host_backups", "gamma"), Some(0.0));
    assert_eq!(
        metric(&text, "litevault_host_newest_backup_age_seconds", "gamma"),
        None,
        "no age for a host without a good backup:\n{text}"
    );

    // --dest names a destination that must exist.
    alpha
        .run(&["list", "--all-hosts", "--dest", "nowhere"])
        .code(2);
}

#[test]
fn with_trust_an_unsigned_hosts_backups_and_a_copied_signed_one_do_not_count() {
    let tmp = tempfile::tempdir().unwrap();
    let s3_root = tmp.path().join("s3");
    let server = S3Server::start(&s3_root, &["fleet"]);
    let mut alpha = Host::new(&server, "alpha");
    let beta = Host::new(&server, "beta");
    let key = alpha.env.path("signing.key");
    let public = alpha
        .run(&["key", "generate", key.to_str().unwrap(), "--signing"])
        .ok()
        .stdout
        .trim()
        .to_string();
    alpha.env.extra = format!("[signing]\nkey_file = \"{}\"\n", key.display());
    let a1 = alpha.backup();
    let a2 = alpha.backup();
    beta.backup();
    beta.backup();

    // Without [trust], beta's unsigned backups count.
    let (r, hosts) = beta.fleet(&[]);
    r.ok();
    assert_eq!(row(&hosts, "beta")["backups"], 2);

    // The watcher trusts alpha's key: beta's backups are there, and none counts.
    let mut watcher = Host::new(&server, "watcher");
    watcher.env.extra = format!("[trust]\nsigners = [\"{public}\"]\n");
    let metrics = watcher.env.path("fleet.prom");
    let (r, hosts) = watcher.fleet(&["--metrics-file", metrics.to_str().unwrap()]);
    r.ok();
    let (a, b) = (row(&hosts, "alpha"), row(&hosts, "beta"));
    assert_eq!(a["backups"], 2, "{a:#}");
    assert_eq!(a["newest"]["id"], a2.as_str());
    assert_eq!(b["backups"], 0, "{b:#}");
    assert_eq!(b["newest"], Value::Null);
    let reasons = b["not_counted"].as_array().unwrap();
    assert_eq!(reasons.len(), 2, "{b:#}");
    assert!(
        reasons
            .iter()
            .all(|w| w.as_str().unwrap().contains("not signed")),
        "{b:#}"
    );
    let text = fs::read_to_string(&metrics).unwrap();
    assert_eq!(metric(&text, "litevault_host_backups", "alpha"), Some(2.0));
    assert_eq!(metric(&text, "litevault_host_backups", "beta"), Some(0.0));
    assert!(metric(&text, "litevault_host_newest_backup_age_seconds", "alpha").is_some());
    assert_eq!(
        metric(&text, "litevault_host_newest_backup_age_seconds", "beta"),
        None,
        "{text}"
    );
    watcher
        .run(&["list", "--all-hosts"])
        .ok()
        .stderr_has("not trusted");

    // alpha's genuine, signed backup copied into silent beta's folder does not make beta fresh.
    let (from, to) = (folder(&s3_root, "alpha"), folder(&s3_root, "beta"));
    for name in [format!("{a1}.json"), format!("{a1}.json.sig")] {
        fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
    let object = archive(&s3_root, "alpha", &a1);
    fs::copy(&object, to.join(object.file_name().unwrap())).unwrap();
    let (r, hosts) = watcher.fleet(&[]);
    r.ok();
    let b = row(&hosts, "beta");
    assert_eq!(b["backups"], 0, "{b:#}");
    assert!(
        b["not_counted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("made by host \"alpha\"")),
        "{b:#}"
    );
}
