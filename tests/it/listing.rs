//! Listing stays cheap with many backups: sidecars are kept in a cache in `state_dir` that
//! loses to the destination whenever they disagree, and `latest` reads only the newest
//! sidecars.

use std::fs;

use crate::harness::*;

/// Three backups, each in a second of its own (ids are their time to the second: within one
/// second `latest` must read them all to know which is newest).
fn three_backups() -> (Env, Vec<String>) {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 50);
    let ids = (0..3)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1100));
            }
            env.backup()
        })
        .collect();
    (env, ids)
}

#[test]
fn sidecars_are_cached_and_a_rewritten_one_is_read_again() {
    let (env, ids) = three_backups();
    assert_eq!(env.list().len(), 3);
    let cache = env.state().join("cache");
    let cached: Vec<_> = fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .flat_map(|d| fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for id in &ids {
        assert!(
            cached.contains(&format!("{id}.json")),
            "{id} not cached: {cached:?}"
        );
    }

    // The same size, other bytes: a listing that says it changed wins over the cache.
    let sidecar = env.store().join(format!("{}.json", ids[0]));
    let body = fs::read_to_string(&sidecar).unwrap();
    let tagged = body.replacen("\"hostname\": \"", "\"hostname\": \"X", 1);
    let tagged = tagged.replacen("\"host\": \"test-host\"", "\"host\": \"test-hos\"", 1);
    assert_eq!(tagged.len(), body.len());
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&sidecar, &tagged).unwrap();
    let listed = env.list();
    let item = listed.iter().find(|b| b["id"] == ids[0].as_str()).unwrap();
    let r = env.run(&["--json", "verify", &ids[0]]);
    // The rewritten sidecar no longer matches the archive's manifest: found, not served stale.
    r.code(4);
    assert!(item["damage"].is_null(), "{item}");
    fs::write(&sidecar, &body).unwrap();
    env.run(&["verify", &ids[0]]).ok();
}

#[test]
fn latest_reads_only_the_newest_sidecars() {
    let (env, ids) = three_backups();
    // An unreadable sidecar among the old backups: `list` reports it, `latest` never reads it.
    fs::write(env.store().join(format!("{}.json", ids[0])), b"{ not json").unwrap();
    fs::remove_dir_all(env.state().join("cache")).unwrap();
    let out = env.path("out");
    let r = env.run(&["restore", "latest", "--to", out.to_str().unwrap()]);
    r.ok();
    assert!(
        !r.stderr.contains(&ids[0]),
        "latest read the old sidecar:\n{}",
        r.stderr
    );
    assert!(r.stdout.contains(&ids[2]), "{}", r.stdout);
    env.run(&["list"]).stderr_has(&ids[0]);
}
