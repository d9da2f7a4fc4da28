//! A bucket with object lock, the storage that keeps what an attacker with delete rights
//! removes: moto's S3 server with a default retention. Every upload there must carry an
//! integrity header (AWS and moto refuse it otherwise), for single uploads and multipart parts
//! alike; and what prune deletes is only hidden behind a delete marker, its version kept, which
//! prune says. `check` reads each bucket's versioning and default retention (signed requests
//! OpenDAL has no call for), and a delete the store refuses for a retention is "locked until".

use crate::faultproxy::FaultProxy;
use crate::harness::*;
use crate::servers::*;

#[test]
fn backups_go_to_a_bucket_with_object_lock_and_what_prune_deletes_stays_as_a_version() {
    let moto = MotoServer::start();
    moto.locked_bucket("locked", 1);
    let proxy = FaultProxy::http(moto.port);
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 300);
    // Incompressible: an archive of three 8 MiB parts, so a multipart upload.
    create_bulk(&env.add_sqlite("bulk.db"), 20);
    env.with_age_key();
    env.extra = "[retention]\nkeep_last = 1\n".into();
    env.destinations = vec![dest(
        "locked",
        &format!(
            "s3://locked/backups?endpoint={}&region=us-east-1",
            proxy.endpoint()
        ),
    )];
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), "k".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "s".into()),
    ];

    env.run(&["check"]).ok();
    let first = env.backup();
    let log = proxy.request_log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST ") && l.contains("?uploads")),
        "no multipart upload: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("PUT ") && l.contains(&format!("{first}.json "))),
        "the sidecar is a single upload: {log:#?}"
    );
    env.run(&["verify", "latest"]).ok();
    let out = env.path("restored");
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&out.join("auth.db")), 300);

    // Copy into another locked bucket, and rekey in place: multipart uploads both.
    env.destinations.push(dest(
        "copies",
        &format!(
            "s3://copies/backups?endpoint={}&region=us-east-1",
            proxy.endpoint()
        ),
    ));
    moto.locked_bucket("copies", 1);
    let before = proxy.request_log().len();
    env.run(&["copy", "--from", "locked", "--to", "copies"])
        .ok();
    rotate_key(&mut env);
    env.run(&["rekey", "--all", "--dest", "locked"]).ok();
    let log = &proxy.request_log()[before..];
    for bucket in ["copies", "locked"] {
        assert!(
            log.iter()
                .any(|l| l.starts_with(&format!("POST /{bucket}/")) && l.contains("?uploads")),
            "no multipart upload into {bucket}: {log:#?}"
        );
    }
    env.run(&["verify", "--all", "--dest", "copies"]).ok();
    let out = env.path("rekeyed");
    env.run(&[
        "restore",
        "latest",
        "--dest",
        "locked",
        "--to",
        out.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(check_ledger(&out.join("auth.db")), 300);
    env.destinations.pop();
    // The backups prune is shown deleting need not be big: the first one, deleted, is.
    env.sources.retain(|s| !s.contains("bulk.db"));

    // Prune deletes the first backup: on this bucket only its current version goes, and prune
    // says so, with the date the bucket holds it until.
    let second = env.backup();
    let pruned = env.run(&["--json", "prune"]);
    pruned.ok();
    let kept = &pruned.json()["destinations"][0]["kept_versions"];
    assert_eq!(kept["versioning"], "enabled", "{kept:#}");
    assert_eq!(kept["default_retention"]["days"], 1, "{kept:#}");
    let until: jiff::Timestamp = kept["locked_until"].as_str().unwrap().parse().unwrap();
    let ahead = until.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((23 * 3600..=24 * 3600).contains(&ahead), "{kept:#}");
    assert!(
        kept.get("estimated").is_none(),
        "the server's date: {kept:#}"
    );
    env.run(&["backup"]).ok();
    env.run(&["prune"])
        .ok()
        .stdout_has("stay as noncurrent versions, still stored and billed until a lifecycle rule")
        .stdout_has("Versions and lifecycle rules")
        .stdout_has("locked until 20");
    let third_and_last = env.list();
    assert_eq!(third_and_last.len(), 1);
    assert_ne!(third_and_last[0]["id"], second.as_str());
    let versions = moto.versions("locked", &format!("backups/{}/{first}", env.name));
    let sidecar = format!("backups/{}/{first}.json", env.name);
    assert!(
        versions
            .iter()
            .any(|(k, latest, marker)| *k == sidecar && *latest && *marker),
        "the delete is a delete marker: {versions:?}"
    );
    assert!(
        versions
            .iter()
            .any(|(k, latest, marker)| *k == sidecar && !*latest && !*marker),
        "the sidecar's version is kept: {versions:?}"
    );
}

/// Encrypt to a new age key from now on, with both identities to read what is stored: what
/// `rekey` needs.
fn rotate_key(env: &mut Env) {
    let old = std::fs::read_to_string(env.path("key.txt")).unwrap();
    let new = env.path("new.txt");
    let out = std::process::Command::new(require_tool("age-keygen"))
        .arg("-o")
        .arg(&new)
        .output()
        .unwrap();
    assert!(out.status.success());
    let both = env.path("both.txt");
    std::fs::write(&both, old + &std::fs::read_to_string(&new).unwrap()).unwrap();
    std::fs::set_permissions(&both, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n",
        public_key(&new),
        both.display()
    ));
}

fn s3_env(buckets: &[&str], endpoint: &str, extra: &str) -> Env {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 50);
    env.with_age_key();
    env.extra = extra.into();
    env.destinations = buckets
        .iter()
        .map(|b| {
            dest(
                b,
                &format!("s3://{b}/backups?endpoint={endpoint}&region=us-east-1"),
            )
        })
        .collect();
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), "k".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "s".into()),
    ];
    env
}

#[test]
fn check_reports_each_buckets_versioning_and_whether_its_retention_covers_the_policy() {
    let moto = MotoServer::start();
    moto.locked_bucket("long", 30);
    moto.locked_bucket("short", 1);
    moto.boto3(
        "s3.create_bucket(Bucket='versioned')\n\
         s3.put_bucket_versioning(Bucket='versioned', VersioningConfiguration={'Status': 'Enabled'})\n\
         s3.create_bucket(Bucket='plain')",
    );
    // keep_weekly 2 reaches 14 days, full_every 7 more: 21.
    let mut env = s3_env(
        &["long", "short", "versioned", "plain"],
        &moto.endpoint(),
        "[retention]\nkeep_daily = 7\nkeep_weekly = 2\n",
    );
    env.incremental = Some("full_every = \"7d\"\n".into());
    let r = env.run(&["--json", "check"]);
    r.ok();
    let buckets = r.json()["buckets"].as_array().unwrap().clone();
    let of = |name: &str| {
        buckets
            .iter()
            .find(|b| b["destination"] == name)
            .unwrap_or_else(|| panic!("no bucket report for {name}: {buckets:#?}"))
            .clone()
    };
    let long = of("long");
    assert_eq!(long["versioning"], "enabled");
    assert_eq!(long["default_retention"]["mode"], "GOVERNANCE");
    assert_eq!(long["default_retention"]["days"], 30);
    assert_eq!(long["needed_days"], 21);
    assert_eq!(long["covers"], true);
    let short = of("short");
    assert_eq!(short["default_retention"]["days"], 1);
    assert_eq!(short["covers"], false);
    let versioned = of("versioned");
    assert_eq!(versioned["versioning"], "enabled");
    assert_eq!(versioned["default_retention"], "none");
    let plain = of("plain");
    assert_eq!(plain["versioning"], "off");
    assert_eq!(plain["default_retention"], "none");
    r.stderr_has("destination short: the bucket's object lock default retention (1 day(s)) does not cover the retention policy")
        .stderr_has("raise the default retention to at least 21 day(s) (README: \"When the bucket was attacked\")")
        .stderr_has("destination versioned: the bucket has no object lock default retention")
        .stderr_has("destination plain: the bucket keeps no versions (versioning is off)");
    assert!(!r.stderr.contains("destination long:"), "{}", r.stderr);

    // In words, and keep_last has no time to check against.
    env.extra = "[retention]\nkeep_last = 3\n".into();
    env.incremental = None;
    env.destinations.truncate(1);
    env.run(&["check"])
        .ok()
        .stdout_has("ok   bucket of long: versioning on; object lock default retention GOVERNANCE 30 day(s), which covers")
        .stdout_has("note bucket of long: keep_last counts backups, not time");
}

/// s3s-fs checks every SigV4 signature and implements neither request: a well-signed one is
/// answered 501, a badly signed one 403. So the bucket requests are signed as OpenDAL signs.
#[test]
fn bucket_requests_are_signed_and_a_server_without_them_is_a_note() {
    let env0 = Env::new();
    let server = S3Server::start(&env0.path("s3"), &["plain"]);
    let mut env = s3_env(
        &["plain"],
        &server.endpoint(),
        "[retention]\nkeep_last = 3\n",
    );
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
    ];
    let r = env.run(&["--json", "check"]);
    r.ok();
    let notes = r.json()["buckets"][0]["notes"].to_string();
    assert!(notes.contains("HTTP 501 NotImplemented"), "{notes}");
    assert!(!notes.contains("Signature"), "{notes}");
    assert!(!r.stdout.contains(S3_SECRET_KEY) && !r.stderr.contains(S3_SECRET_KEY));
}

#[test]
fn a_delete_refused_for_a_retention_is_locked_until_not_a_failure_and_not_tried_again() {
    let moto = MotoServer::start();
    moto.locked_bucket("locked", 1);
    moto.locked_bucket("copies", 1);
    let proxy = FaultProxy::http(moto.port);
    let mut env = s3_env(
        &["locked", "copies"],
        &proxy.endpoint(),
        "[retention]\nkeep_last = 1\n",
    );
    for _ in 0..3 {
        env.run(&["backup", "--dest", "locked"]).ok();
    }
    // Small backups: copy and rekey on locked buckets with single uploads only.
    let before = proxy.request_log().len();
    env.run(&["copy", "--from", "locked", "--to", "copies"])
        .ok();
    rotate_key(&mut env);
    env.run(&["--json", "rekey", "--all", "--dest", "locked"])
        .ok();
    let log = &proxy.request_log()[before..];
    assert!(!log.iter().any(|l| l.contains("?uploads")), "{log:#?}");
    assert!(
        log.iter().any(|l| l.starts_with("PUT /copies/")),
        "{log:#?}"
    );
    env.run(&["verify", "--all", "--dest", "copies"]).ok();
    env.run(&["verify", "--all", "--dest", "locked"]).ok();

    // A store that refuses deletes its retention holds (as AWS does for a version's delete).
    proxy.fail_matching("DELETE ", 403);
    let before = proxy.request_log().len();
    let r = env.run(&["--json", "prune", "--dest", "locked"]);
    r.ok();
    let d = &r.json()["destinations"][0];
    assert_eq!(d["failed"].as_array().unwrap().len(), 0, "{d:#}");
    let locked = d["locked"].as_array().unwrap();
    assert_eq!(locked.len(), 2, "{d:#}");
    assert_eq!(locked[0]["tried"], true);
    assert_eq!(
        locked[1]["tried"], false,
        "a delete known to be refused is not sent"
    );
    assert!(
        locked[0]["until"].as_str().unwrap().starts_with("20"),
        "{d:#}"
    );
    let deletes = proxy.request_log()[before..]
        .iter()
        .filter(|l| l.starts_with("DELETE "))
        .count();
    assert_eq!(deletes, 1, "{:#?}", proxy.request_log());
    env.run(&["prune", "--dest", "locked"])
        .ok()
        .stdout_has("by the bucket's object lock; it goes once that date has passed");
    assert_eq!(env.count_on("locked"), 3);
}
