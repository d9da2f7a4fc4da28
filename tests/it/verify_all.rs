//! `verify --all` reads each archive once: the newest backup of a chain is rebuilt, and that
//! vouches for every link under it, instead of rebuilding the whole chain again for each link
//! (about N²/2 archive reads for a chain of N). Counted at the S3 proxy; and a damaged link is
//! still named exactly, with every backup above it failed and every one below it passed.

use std::fs;

use rusqlite::Connection;

use crate::faultproxy::FaultProxy;
use crate::harness::*;
use crate::servers::*;

#[test]
fn verify_all_over_a_chain_of_20_reads_each_archive_once_and_names_a_damaged_link() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let proxy = FaultProxy::http(server.port);
    let mut env = env_on_s3("s3", &proxy.endpoint());
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 200);
    env.with_age_key();
    env.incremental = Some(String::new());
    let conn = Connection::open(&db).unwrap();
    let mut ids = Vec::new();
    for k in 0..20 {
        if k > 0 {
            ledger_step(&conn, 1000 + k);
        }
        ids.push(env.backup());
    }
    let listed = env.list();
    let incrementals = listed.iter().filter(|b| b["kind"] == "incremental").count();
    assert_eq!(incrementals, 19, "one chain of 20: {listed:#?}");

    let archive_gets = |log: &[String]| -> Vec<String> {
        log.iter()
            .filter(|l| l.starts_with("GET ") && l.contains(".tar"))
            .cloned()
            .collect()
    };
    let before = proxy.request_log().len();
    let r = env.run(&["--json", "verify", "--all"]);
    r.ok();
    let gets = archive_gets(&proxy.request_log()[before..]);
    assert_eq!(gets.len(), 20, "each archive read once: {gets:#?}");
    for id in &ids {
        assert_eq!(
            gets.iter().filter(|g| g.contains(id.as_str())).count(),
            1,
            "{id}: {gets:#?}"
        );
    }
    let results = r.json();
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    assert!(results.iter().all(|b| b["ok"] == true), "{results:#?}");

    // Flip one byte in the middle of link 8's stored archive (its size stays right, so the
    // listing still calls it good): it fails by name, the links above it fail, those below pass.
    let folder = tmp.path().join("bkt/backups/test-host");
    let damaged = fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(ids[8].as_str()) && name.contains(".tar")
        })
        .unwrap();
    let mut bytes = fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&damaged, bytes).unwrap();
    let r = env.run(&["--json", "verify", "--all"]);
    r.code(4);
    let v = r.json();
    let by_id = |id: &str| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {v:#}"))
            .clone()
    };
    for (k, id) in ids.iter().enumerate() {
        let b = by_id(id);
        assert_eq!(b["ok"] == true, k < 8, "link {k}: {b:#}");
        if k >= 8 {
            assert!(
                b["error"].as_str().unwrap().contains(ids[8].as_str()),
                "link {k} names the damaged link: {b:#}"
            );
        }
    }
}
