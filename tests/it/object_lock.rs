//! A bucket with object lock, the storage that keeps what an attacker with delete rights
//! removes: moto's S3 server with a default retention. Every upload there must carry an
//! integrity header (AWS and moto refuse it otherwise), for single uploads and multipart parts
//! alike; and what prune deletes is only hidden behind a delete marker, its version kept.

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

    // Prune deletes the first backup: on this bucket only its current version goes.
    let second = env.backup();
    env.run(&["prune"]).ok();
    let ids: Vec<String> = env
        .list()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![second.clone()]);
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
