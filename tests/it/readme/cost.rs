//! The README's cost table ("Requests and what they cost") is measured here: each operation is
//! run against a real S3 server with 10 and with 100 backups present, its requests counted at
//! the fault proxy (what reached the server), and the table's cells must say exactly that, with
//! the price the table states. A change in what an operation asks of S3 fails this test until
//! the README says so.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::faultproxy::FaultProxy;
use crate::harness::*;
use crate::servers::*;

/// AWS S3 Standard, us-east-1, per 1,000 requests (the README says which and when).
const CLASS_A: f64 = 0.005;
const CLASS_B: f64 = 0.0004;

const KINDS: [&str; 7] = ["list", "head", "get", "put", "part", "delete", "other"];

/// Requests by kind, from the proxy's request lines, as S3 bills them.
fn by_kind(lines: &[String]) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        let mut words = line.split(' ');
        let method = words.next().unwrap_or("");
        let query = words
            .next()
            .and_then(|t| t.split_once('?'))
            .map(|(_, q)| q)
            .unwrap_or("");
        let has = |key: &str| query.split('&').any(|p| p.split('=').next() == Some(key));
        let kind = match method {
            "HEAD" => "head",
            "GET" if has("versioning") || has("object-lock") => "other",
            "GET" if has("list-type") || has("versions") || has("uploads") => "list",
            "GET" => "get",
            "PUT" if has("partNumber") => "part",
            "PUT" => "put",
            "POST" if has("delete") => "delete",
            "POST" => "put",
            "DELETE" => "delete",
            _ => "other",
        };
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

/// "2 list, 1 get": the kinds in a fixed order, those with none left out.
fn cell(counts: &BTreeMap<&'static str, u64>) -> String {
    let parts: Vec<String> = KINDS
        .iter()
        .filter_map(|k| {
            counts
                .get(k)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {k}"))
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Dollars for 1,000 runs: LIST, PUT, POST (and parts) are class A; GET, HEAD and the rest
/// class B; DELETE is free.
fn price(counts: &BTreeMap<&'static str, u64>) -> String {
    let n = |k: &str| counts.get(k).copied().unwrap_or(0) as f64;
    let a = n("list") + n("put") + n("part");
    let b = n("get") + n("head") + n("other");
    format!("${:.4}", a * CLASS_A + b * CLASS_B)
}

/// One environment with `n` backups on S3 behind a proxy: one real backup, and `n - 1` copies of
/// it under older ids written straight into the server's folder (as `scripts/bench-listing`
/// does), so the listing is what it would be after `n` runs.
fn with_backups(
    n: usize,
) -> (
    tempfile::TempDir,
    S3Server,
    FaultProxy,
    Env,
    rusqlite::Connection,
) {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let proxy = FaultProxy::http(server.port);
    let mut env = env_on_s3("s3", &proxy.endpoint());
    let db = env.add_sqlite("app.db");
    create_ledger(&db, "WAL", 100);
    env.with_age_key();
    env.incremental = Some(String::new());
    env.backup();
    copy_backups(&tmp.path().join("bkt/backups/test-host"), n - 1);
    assert_eq!(env.list().len(), n);
    let conn = rusqlite::Connection::open(&db).unwrap();
    (tmp, server, proxy, env, conn)
}

fn copy_backups(folder: &Path, copies: usize) {
    let sidecar = fs::read_dir(folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let base: serde_json::Value = serde_json::from_slice(&fs::read(&sidecar).unwrap()).unwrap();
    let old_id = base["manifest"]["backup_id"].as_str().unwrap().to_string();
    let archive = base["archive"]["object"].as_str().unwrap().to_string();
    for i in 0..copies {
        // A day apart, in January 2025: older than the real one.
        let (day, hour) = (1 + i / 24, i % 24);
        let id = format!("202501{day:02}T{hour:02}0000Z-{i:04x}");
        let mut d = base.clone();
        d["manifest"]["backup_id"] = id.clone().into();
        d["manifest"]["created"] = format!("2025-01-{day:02}T{hour:02}:00:00.000Z").into();
        let object = archive.replace(&old_id, &id);
        d["archive"]["object"] = object.clone().into();
        fs::write(
            folder.join(format!("{id}.json")),
            serde_json::to_vec_pretty(&d).unwrap(),
        )
        .unwrap();
        fs::copy(folder.join(&archive), folder.join(object)).unwrap();
    }
}

/// Each operation of the table and its requests, with `n` backups present at the start.
fn measure(n: usize) -> Vec<(&'static str, BTreeMap<&'static str, u64>)> {
    let (_tmp, _server, proxy, mut env, conn) = with_backups(n);
    let mut rows = Vec::new();
    let mut run = |env: &Env, what: &'static str, args: &[&str]| {
        let before = proxy.request_log().len();
        env.run(args).ok();
        let log = proxy.request_log();
        assert!(log.len() < 1000, "the proxy keeps the first 1000 lines");
        rows.push((what, by_kind(&log[before..])));
    };
    fs::remove_dir_all(env.state().join("cache")).unwrap();
    run(&env, "`list`, cold cache", &["list"]);
    run(&env, "`list`, warm cache", &["list"]);
    ledger_step(&conn, 5000);
    run(&env, "`backup --full`", &["backup", "--full"]);
    ledger_step(&conn, 5001);
    run(&env, "`backup`, incremental", &["backup"]);
    // n + 2 backups now: the oldest (a copy, a full backup of its own) goes.
    env.extra = format!("[retention]\nkeep_last = {}\n", n + 1);
    run(&env, "`prune`, one backup deleted", &["prune"]);
    // The newest first: the incremental, which is proven with its chain (two archives).
    run(&env, "`verify --sample 1%`", &["verify", "--sample", "1%"]);
    rows
}

#[test]
fn the_readme_cost_table_is_what_each_operation_asks_of_s3() {
    let (ten, hundred) = (measure(10), measure(100));
    let mut expected = Vec::new();
    for ((what, at10), (_, at100)) in ten.iter().zip(&hundred) {
        expected.push(format!(
            "| {what} | {} | {} | {} |",
            cell(at10),
            cell(at100),
            price(at100)
        ));
    }
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let marker = "<!-- readme-test: requests-cost -->";
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let table: Vec<&str> = readme[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .collect();
    assert_eq!(
        table,
        expected,
        "the README's cost table, against what was measured:\n{}",
        expected.join("\n")
    );
}
