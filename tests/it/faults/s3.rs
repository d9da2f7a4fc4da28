//! What only S3 has: HTTP status codes from the server, connections reset mid-request, and
//! multipart uploads that must be aborted rather than left behind.

use std::time::{Duration, Instant};

use super::*;
use crate::faultproxy::Dir;

#[test]
fn faults_s3_500_for_the_first_two_requests_is_retried_and_succeeds() {
    let rig = Rig::new(Backend::S3, "retries = 3\ntimeout = \"5s\"");
    rig.proxy.fail_first(2, 500);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!("took {took:?}; {}", rig.context());
    r.ok();
    assert_eq!(rig.proxy.http_faults(), 2, "{}", rig.context());
    assert!(rig.proxy.requests() > 2, "not retried: {}", rig.context());
    assert_eq!(rig.env.list().len(), 1);
}

#[test]
fn faults_s3_503_for_every_request_fails_naming_the_destination() {
    let rig = Rig::new(Backend::S3, "retries = 3\ntimeout = \"5s\"");
    rig.proxy.fail_all(503);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    assert!(
        rig.proxy.http_faults() > 1,
        "not retried: {}",
        rig.context()
    );
    r.code(1);
    blames_the_destination(&r);
    assert!(
        !r.stderr.contains("did not answer"),
        "the endpoint answered 503, yet the hint says it did not answer:\n{}",
        r.stderr
    );
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
}

#[test]
fn faults_s3_connection_reset_mid_upload_every_time_fails_with_nothing_listed() {
    let mut rig = Rig::new(Backend::S3, "retries = 3\ntimeout = \"5s\"");
    rig.add_bulk(20);
    rig.proxy.reset_after(Dir::ToServer, MIB);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    assert!(rig.proxy.resets() > 1, "not retried: {}", rig.context());
    r.code(1).stderr_has("destination remote");
    let left = leftovers_after_a_moment(&rig.storage());
    assert!(
        left.is_empty(),
        "the multipart upload was left on the server: {left:?}\n{}",
        rig.context()
    );
    rig.proxy.pass();
    assert!(rig.env.list().is_empty(), "a partial backup is listed");
    let (r, _) = run_bounded(&rig.env, &["backup"]);
    r.ok();
    assert_eq!(rig.env.list().len(), 1);
}

#[test]
fn faults_s3_one_connection_reset_mid_upload_is_retried_and_the_backup_is_whole() {
    let mut rig = Rig::new(Backend::S3, "retries = 3\ntimeout = \"5s\"");
    rig.add_bulk(20);
    rig.proxy.reset_once_after(Dir::ToServer, 3 * MIB);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    assert_eq!(rig.proxy.resets(), 1, "{}", rig.context());
    r.ok();
    let listed = rig.env.list();
    assert_eq!(listed.len(), 1);
    let (r, _) = run_bounded(&rig.env, &["verify", "latest"]);
    r.ok();
}

#[test]
fn faults_s3_server_frozen_mid_response_fails_in_bounded_time() {
    let rig = Rig::new(Backend::S3, "retries = 5\ntimeout = \"2s\"");
    // Every response stops after its first 20 bytes: `HTTP/1.1 200 OK\r\nco`.
    rig.proxy.stall_after(Dir::ToClient, 20);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    assert!(rig.proxy.stalls() > 1, "not retried: {}", rig.context());
    r.code(1).stderr_has("destination remote");
    assert!(took < FROZEN_BOUND, "took {took:?}");
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
}

#[test]
fn faults_s3_multipart_upload_is_aborted_when_its_parts_fail() {
    // ~40 MiB of incompressible data: five 8 MiB parts.
    let mut rig = Rig::new(Backend::S3, "retries = 2\ntimeout = \"10s\"");
    rig.add_bulk(40);
    // The first part is stored; every later part fails. The abort (DELETE ...?uploadId=) passes.
    rig.proxy.fail_matching_after("partNumber=", 1, 500);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    let log = rig.proxy.request_log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST ") && l.contains("?uploads")),
        "no multipart upload was started: {}",
        rig.context()
    );
    assert!(
        rig.proxy.http_faults() > 1,
        "not retried: {}",
        rig.context()
    );
    r.code(1).stderr_has("destination remote");
    rig.proxy.pass();
    assert!(rig.env.list().is_empty());
    let left = leftovers_after_a_moment(&rig.storage());
    assert!(
        left.is_empty(),
        "the multipart upload was left on the server: {left:?}\n{}",
        rig.context()
    );
}

#[test]
fn faults_s3_multipart_upload_is_aborted_on_sigterm() {
    let mut rig = Rig::new(
        Backend::S3,
        "retries = 3\ntimeout = \"10s\"\nbandwidth_limit = \"4MiB\"",
    );
    rig.add_bulk(40);
    let mut run = Running::start(&rig.env, &["backup"]);
    // Wait until the server holds a part of the upload.
    let until = Instant::now() + Duration::from_secs(40);
    while stored_parts(&rig.storage()) == 0 {
        assert!(
            run.is_running() && Instant::now() < until,
            "no part was stored while the backup ran: {}\n{}",
            run.stderr_so_far(),
            rig.context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run.terminate();
    let signalled = Instant::now();
    let (r, took) = run.finish();
    let after_signal = signalled.elapsed();
    eprintln!(
        "took {took:?}, {after_signal:?} after SIGTERM; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    r.code(130);
    assert!(
        after_signal < Duration::from_secs(10),
        "exited {after_signal:?} after SIGTERM"
    );
    assert!(rig.env.list().is_empty());
    let left = leftovers_after_a_moment(&rig.storage());
    assert!(
        left.is_empty(),
        "the multipart upload was left on the server: {left:?}\n{}",
        rig.context()
    );
}
