//! Every request litevault sends to S3 is counted by kind, with the bytes each way, and shown in
//! `--json` (backup, verify, prune), the execution store (`history`) and the metrics file. The
//! counts are checked against the fault proxy's own log of what reached the server, retries
//! included; and a backup with the cache warm lists the destination as often with 12 backups
//! there as with 2.

use std::collections::BTreeMap;

use crate::faultproxy::{Dir, FaultProxy};
use crate::harness::*;
use crate::servers::*;

const KINDS: [&str; 7] = ["list", "head", "get", "put", "part", "delete", "other"];

fn s3_env(proxy: &FaultProxy) -> Env {
    env_on_s3("s3", &proxy.endpoint())
}

/// The proxy's request lines by kind, told apart from the method and query as S3 bills them.
fn at_proxy(lines: &[String]) -> BTreeMap<&'static str, u64> {
    let mut counts: BTreeMap<&'static str, u64> = KINDS.iter().map(|k| (*k, 0)).collect();
    for line in lines {
        let mut words = line.split(' ');
        let method = words.next().unwrap_or("");
        let target = words.next().unwrap_or("");
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let has = |key: &str| query.split('&').any(|p| p.split('=').next() == Some(key));
        let kind = match method {
            "HEAD" => "head",
            "GET" if has("versioning") || has("object-lock") => "other",
            "GET" if has("list-type") || has("versions") || has("uploads") || has("delimiter") => {
                "list"
            }
            "GET" => "get",
            "PUT" if has("partNumber") => "part",
            "PUT" => "put",
            "POST" if has("delete") => "delete",
            "POST" if has("uploads") || has("uploadId") => "put",
            "DELETE" => "delete",
            _ => "other",
        };
        *counts.get_mut(kind).unwrap() += 1;
    }
    counts
}

/// The `requests` the program reported for destination s3, by kind.
fn reported(requests: &serde_json::Value) -> BTreeMap<&'static str, u64> {
    KINDS
        .iter()
        .map(|k| {
            let n = requests[k]
                .as_u64()
                .unwrap_or_else(|| panic!("no {k} in {requests:#}"));
            (*k, n)
        })
        .collect()
}

/// Run `args` with `--json` and return the report, with the proxy's log of what it sent and
/// the bytes the proxy forwarded each way.
fn measured(
    env: &Env,
    proxy: &FaultProxy,
    args: &[&str],
) -> (serde_json::Value, Vec<String>, u64, u64) {
    let before = proxy.request_log().len();
    let (out0, in0) = (proxy.bytes(Dir::ToServer), proxy.bytes(Dir::ToClient));
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let r = env.run(&all);
    r.ok();
    let log = proxy.request_log()[before..].to_vec();
    let (out1, in1) = (proxy.bytes(Dir::ToServer), proxy.bytes(Dir::ToClient));
    (r.json(), log, out1 - out0, in1 - in0)
}

#[test]
fn requests_counted_by_the_program_are_the_requests_the_server_saw() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let proxy = FaultProxy::http(server.port);
    let mut env = s3_env(&proxy);
    create_ledger(&env.add_sqlite("app.db"), "WAL", 50);
    // Incompressible and over two 8 MiB parts: the upload is multipart.
    create_bulk(&env.add_sqlite("bulk.db"), 20);
    env.with_age_key();
    env.extra = "[retention]\nkeep_last = 1\n".into();

    let mut seen_at_proxy: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut recorded = Vec::new();
    for (step, args) in [
        ("first backup", &["backup"][..]),
        ("second backup", &["backup"][..]),
        (
            "verify, its first request answered 503",
            &["verify", "latest"][..],
        ),
        ("prune", &["prune"][..]),
    ] {
        if step.starts_with("verify") {
            proxy.fail_first(1, 503);
        }
        let (report, log, sent, received) = measured(&env, &proxy, args);
        proxy.pass();
        let requests = &report["requests"]["s3"];
        let program = reported(requests);
        let proxied = at_proxy(&log);
        assert_eq!(
            program, proxied,
            "{step}: the program's counts against the proxy's log {log:#?}"
        );
        for (k, n) in &proxied {
            *seen_at_proxy.entry(k).or_default() += n;
        }
        // Bodies only, so never more than the proxy forwarded (heads included).
        let (bytes_out, bytes_in) = (
            requests["bytes_out"].as_u64().unwrap(),
            requests["bytes_in"].as_u64().unwrap(),
        );
        assert!(
            bytes_out <= sent && bytes_in <= received,
            "{step}: {requests} against {sent} sent, {received} received"
        );
        match step {
            "first backup" => {
                let stored = report["stored_bytes"].as_u64().unwrap();
                assert!(program["part"] >= 3, "20 MiB in 8 MiB parts: {program:?}");
                assert!(
                    bytes_out >= stored,
                    "{step}: {bytes_out} sent for {stored} stored"
                );
            }
            "prune" => assert!(program["delete"] >= 1, "{step}: {program:?} {report:#}"),
            s if s.starts_with("verify") => {
                assert!(log[0].ends_with("-> 503"), "{log:#?}");
                let stored = 20 << 20;
                assert!(bytes_in >= stored, "{step}: read {bytes_in} bytes");
            }
            _ => {}
        }
        recorded.push(requests.clone());
    }

    // The execution store keeps each run's counts (newest first), and the metrics file's
    // counters add up every request the store has seen: these four runs' and the listing the
    // metrics file itself takes.
    let runs = env.run(&["--json", "history"]).json();
    let runs = runs.as_array().unwrap();
    for (k, requests) in recorded.iter().rev().enumerate() {
        assert_eq!(&runs[k]["requests"]["s3"], requests, "{:#}", runs[k]);
    }
    let metrics = env.path("metrics.prom");
    let before = proxy.request_log().len();
    env.run(&["--metrics-file", metrics.to_str().unwrap(), "check"]);
    for (k, n) in at_proxy(&proxy.request_log()[before..]) {
        *seen_at_proxy.entry(k).or_default() += n;
    }
    let text = std::fs::read_to_string(&metrics).unwrap();
    for kind in KINDS {
        let sample = format!(
            "litevault_requests_total{{host=\"test-host\",destination=\"s3\",kind=\"{kind}\"}} "
        );
        let value: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(sample.as_str()))
            .unwrap_or_else(|| panic!("no {sample} in {text}"))
            .parse()
            .unwrap();
        assert_eq!(value, seen_at_proxy[kind], "{kind}: {text}");
    }
    assert!(
        text.contains("# TYPE litevault_requests_total counter"),
        "{text}"
    );
}

#[test]
fn a_backup_with_the_cache_warm_lists_as_often_with_12_backups_as_with_2() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let proxy = FaultProxy::http(server.port);
    let mut env = s3_env(&proxy);
    let db = env.add_sqlite("app.db");
    create_ledger(&db, "WAL", 20);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut at = BTreeMap::new();
    let mut logs = BTreeMap::new();
    for n in 1..=13 {
        // A second apart, as cron's are. Two backups within one second sometimes read the
        // previous sidecar again (a cache miss, not yet explained: one GET more, never a wrong
        // answer), which this test is not about.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        ledger_step(&conn, 1000 + n);
        let (report, log, _, _) = measured(&env, &proxy, &["backup"]);
        // The backups already there when this one starts: 2, then 12.
        if n == 3 || n == 13 {
            let program = reported(&report["requests"]["s3"]);
            assert_eq!(program, at_proxy(&log), "backup {n}: {log:#?}");
            at.insert(n, program);
            logs.insert(n, log);
        }
    }
    assert!(at[&3]["list"] >= 1, "{at:?}");
    assert_eq!(at[&3]["list"], at[&13]["list"], "listings: {at:?}");
    // Nothing is read again once seen: the sidecars come from the cache.
    assert_eq!(at[&3]["get"], at[&13]["get"], "reads: {at:?}\n{logs:#?}");
    assert_eq!(at[&3]["head"], at[&13]["head"], "heads: {at:?}");
}
