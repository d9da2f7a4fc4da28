//! `verify --sample` (issue 24): a rotating share of the stored bytes per run. Run again and
//! again it reaches every archive and every link of every chain; damage in what it samples is
//! found (exit 4) and never counted as verified; the coverage metrics move with it; a host
//! without the identity checks the stored bytes against the signed sidecar and says it did not
//! decrypt. And `--sample 5%` over 100 backups reads about 5% of the stored bytes, counted at an
//! S3 proxy.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;

use rusqlite::Connection;

use crate::faultproxy::{Dir, FaultProxy};
use crate::harness::*;
use crate::servers::*;

/// 20 backups in chains of 1 full and up to 4 incrementals; their ids, oldest first.
fn twenty_backups(env: &mut Env) -> Vec<String> {
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 200);
    env.with_age_key();
    env.incremental = Some("max_chain = 4\n".into());
    let conn = Connection::open(&db).unwrap();
    let mut ids = Vec::new();
    for k in 0..20 {
        if k > 0 {
            ledger_step(&conn, 1000 + k);
        }
        ids.push(env.backup());
    }
    ids
}

/// The stored archive of backup `id` in a namespace folder.
fn archive_of(folder: &std::path::Path, id: &str) -> PathBuf {
    fs::read_dir(folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(id) && name.contains(".tar")
        })
        .unwrap_or_else(|| panic!("no archive of {id} in {}", folder.display()))
}

/// Flip one byte in the middle: the size stays right, so the listing still calls it good.
fn flip_a_byte(path: &std::path::Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

/// One sample metric's value for destination `local`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("destination=\"local\""))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn repeated_samples_reach_every_archive_and_every_chain_link_and_the_metrics_follow() {
    let mut env = Env::new();
    let ids = twenty_backups(&mut env);
    let listed = env.list();
    let stored: u64 = listed.iter().map(|b| b["bytes"].as_u64().unwrap()).sum();
    let incrementals: Vec<&str> = listed
        .iter()
        .filter(|b| b["kind"] == "incremental")
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(incrementals.len(), 16, "chains of 5: {listed:#?}");
    let metrics = env.path("litevault.prom");
    let m = metrics.to_str().unwrap();

    let mut reached = BTreeSet::new();
    let mut last_fraction = -1.0;
    let mut last_made = 0.0;
    let mut last_unverified = u64::MAX;
    let mut runs = 0;
    while reached.len() < ids.len() {
        runs += 1;
        assert!(
            runs <= 20,
            "20 runs of 10% did not reach every backup: {reached:?}"
        );
        let r = env.run(&["--json", "--metrics-file", m, "verify", "--sample", "10%"]);
        r.ok();
        let doc = r.json();
        let results = doc["results"].as_array().unwrap();
        assert!(!results.is_empty(), "every run verifies something");
        for b in results {
            // In depth: decrypted, every hash and database checked; a chain link by rebuilding.
            assert_eq!(b["ok"], true, "{b:#}");
            assert!(b.get("stored_only").is_none(), "{b:#}");
            reached.insert(b["id"].as_str().unwrap().to_string());
        }
        let sample = &doc["samples"][0];
        assert_eq!(sample["destination"], "local");
        assert_eq!(sample["stored_bytes"].as_u64().unwrap(), stored);
        // The bytes read are those of every archive each rebuild went through.
        let read = sample["read_bytes"].as_u64().unwrap();
        let by_id: HashMap<&str, u64> = listed
            .iter()
            .map(|b| (b["id"].as_str().unwrap(), b["bytes"].as_u64().unwrap()))
            .collect();
        let verified: u64 = sample["verified"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| by_id[id.as_str().unwrap()])
            .sum();
        assert!(read >= verified, "{sample:#}");
        // The coverage only grows while nothing new is stored, and the oldest unverified
        // backup only gets younger.
        let text = fs::read_to_string(&metrics).unwrap();
        let fraction = metric(&text, "litevault_verified_fraction");
        let oldest = metric(&text, "litevault_oldest_unverified_seconds");
        assert!(fraction > last_fraction, "{fraction} after {last_fraction}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // When the oldest backup not verified yet was made: that moves forward (a second's
        // slack for the rounding to whole seconds).
        let made = now - oldest;
        assert!(made >= last_made - 2.0, "{made} after {last_made}");
        assert!(
            (fraction - sample["verified_fraction"].as_f64().unwrap()).abs() < 1e-9,
            "{text}"
        );
        // And the count of backups not verified yet only goes down.
        let unverified = sample["unverified"].as_u64().unwrap();
        assert!(
            unverified < last_unverified,
            "{unverified} after {last_unverified}"
        );
        last_unverified = unverified;
        last_fraction = fraction;
        last_made = made;
    }
    assert!(runs >= 2, "10% is not everything at once: {runs} run(s)");
    for id in &ids {
        assert!(reached.contains(id), "{id} never verified");
    }
    let text = fs::read_to_string(&metrics).unwrap();
    assert_eq!(metric(&text, "litevault_verified_fraction"), 1.0, "{text}");
    assert_eq!(metric(&text, "litevault_oldest_unverified_seconds"), 0.0);

    // `history` shows what each sampled run read.
    let h = env.run(&["history", "--limit", "1"]);
    h.ok().stdout_has("sampled local:");

    // A new backup comes first, and until then it is the one unverified.
    let conn = Connection::open(env.path("data/auth.db")).unwrap();
    ledger_step(&conn, 5000);
    let r = env.run(&["--json", "--metrics-file", m, "backup"]);
    let newest = r.ok().json()["id"].as_str().unwrap().to_string();
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(metric(&text, "litevault_verified_fraction") < 1.0, "{text}");
    env.run(&["--metrics-file", m, "verify", "--sample", "1%"])
        .ok()
        .stdout_has(&format!("ok {newest} on local"))
        .stdout_has("none unverified");
    let text = fs::read_to_string(&metrics).unwrap();
    assert_eq!(metric(&text, "litevault_verified_fraction"), 1.0, "{text}");

    // Then the rotation goes back to what was verified longest ago: the first run's backups.
    let r = env.run(&["--json", "verify", "--sample", "1%"]);
    let first_again: Vec<String> = r.ok().json()["samples"][0]["verified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!first_again.contains(&newest), "{first_again:?}");
}

#[test]
fn damage_in_a_sampled_archive_is_found_and_never_counts_as_verified() {
    let mut env = Env::new();
    let ids = twenty_backups(&mut env);
    // A link in the middle of a chain (full 5, incrementals 6..9).
    let damaged = &ids[7];
    flip_a_byte(&archive_of(&env.store(), damaged));
    let metrics = env.path("litevault.prom");
    let m = metrics.to_str().unwrap();

    let mut found = 0;
    for _ in 0..12 {
        let r = env.run(&["--json", "--metrics-file", m, "verify", "--sample", "10%"]);
        let doc = r.json();
        let results = doc["results"].as_array().unwrap();
        for b in results {
            if b["id"] == damaged.as_str() {
                assert_eq!(b["ok"], false, "a damaged backup passed: {b:#}");
            }
        }
        if let Some(b) = results.iter().find(|b| b["id"] == damaged.as_str()) {
            r.code(4);
            assert!(
                b["error"].as_str().unwrap().contains(damaged.as_str()),
                "{b:#}"
            );
            found += 1;
        } else {
            r.ok();
        }
        let text = fs::read_to_string(&metrics).unwrap();
        assert!(metric(&text, "litevault_verified_fraction") < 1.0, "{text}");
        assert!(metric(&text, "litevault_oldest_unverified_seconds") > 0.0);
    }
    // Once found, it is chosen first again on every run: exit 4 until it is dealt with.
    assert!(found >= 2, "found {found} time(s)");
    let r = env.run(&["verify", "--sample", "1%"]);
    r.code(4).stderr_has("FAILED").stderr_has(damaged);
}

#[test]
fn without_the_identity_a_sample_checks_the_stored_bytes_and_says_it_did_not_decrypt() {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 100);
    let key = env.with_age_key();
    let ids = [env.backup(), env.backup(), env.backup()];
    // This host holds the recipient only, as a backup host does.
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\n",
        public_key(&key)
    ));
    let r = env.run(&["verify", "--sample", "100%"]);
    r.ok()
        .stdout_has("content not decrypted")
        .stdout_has("content was NOT decrypted");
    // Under cron (--quiet) a sound sample mails nothing.
    let quiet = env.run(&["--quiet", "verify", "--sample", "100%"]);
    assert_eq!(
        (quiet.code, quiet.stdout.as_str(), quiet.stderr.as_str()),
        (0, "", "")
    );
    for id in &ids {
        r.stdout_has(&format!("ok {id} on local: the stored bytes match"));
    }
    let doc = env
        .run(&["--json", "verify", "--sample", "100%"])
        .ok()
        .json();
    assert_eq!(doc["samples"][0]["depth"], "stored", "{doc:#}");
    assert!(doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["stored_only"] == true && b["ok"] == true));

    flip_a_byte(&archive_of(&env.store(), &ids[1]));
    let r = env.run(&["--json", "verify", "--sample", "100%"]);
    r.code(4);
    let doc = r.json();
    for b in doc["results"].as_array().unwrap() {
        assert_eq!(b["ok"] == true, b["id"] != ids[1].as_str(), "{b:#}");
    }
    env.run(&["verify", "--sample", "1%"])
        .code(4)
        .stderr_has(&format!("FAILED {}", ids[1]))
        .stderr_has("BLAKE3");
}

/// The measurement behind BENCHMARKS.md's row: 100 backups of 1 MiB that does not compress on
/// S3, `verify --sample 5%` reads 5 archives (5% of the stored bytes), counted at the proxy.
#[test]
fn a_five_percent_sample_of_100_backups_reads_about_five_percent_of_the_stored_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let proxy = FaultProxy::http(server.port);
    let mut env = Env::new();
    create_bulk(&env.add_sqlite("bulk.db"), 1);
    env.with_age_key();
    let through = |endpoint: String| {
        vec![dest(
            "local",
            &format!("s3://bkt/backups?endpoint={endpoint}&region=us-east-1"),
        )]
    };
    // The backups straight to the server: the proxy logs only its first 1000 requests.
    env.destinations = through(format!("http://127.0.0.1:{}", server.port));
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
    ];
    for _ in 0..100 {
        env.backup();
    }
    env.destinations = through(proxy.endpoint());
    let listed = env.list();
    assert_eq!(listed.len(), 100);
    let stored: u64 = listed.iter().map(|b| b["bytes"].as_u64().unwrap()).sum();
    let mut shares = Vec::new();
    for _ in 0..3 {
        let (before, log_before) = (proxy.bytes(Dir::ToClient), proxy.request_log().len());
        let r = env.run(&["--json", "verify", "--sample", "5%"]);
        let wire = proxy.bytes(Dir::ToClient) - before;
        let archive_gets = proxy.request_log()[log_before..]
            .iter()
            .filter(|l| l.starts_with("GET ") && l.contains(".tar"))
            .count();
        let doc = r.ok().json();
        let read = doc["samples"][0]["read_bytes"].as_u64().unwrap();
        assert_eq!(
            archive_gets,
            5,
            "5 of 100 equal archives: {:#?}\n{}",
            &proxy.request_log()[log_before..],
            r.stderr
        );
        let (share, wire_share) = (read as f64 / stored as f64, wire as f64 / stored as f64);
        eprintln!(
            "verify --sample 5% of 100 backups: {read} of {stored} stored bytes read ({:.2}%), {wire} bytes from the server in all ({:.2}%)",
            share * 100.0,
            wire_share * 100.0
        );
        assert!((0.045..=0.055).contains(&share), "{share}");
        // What came over the wire: those archives, and the listing's small reads.
        assert!((0.045..=0.07).contains(&wire_share), "{wire_share}");
        shares.push(doc["samples"][0]["verified"].clone());
    }
    assert_ne!(shares[0], shares[1], "the next run reads other backups");
}
