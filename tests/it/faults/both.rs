//! What every remote backend must do when its server misbehaves, written once and run on S3
//! and on SFTP: each scenario is a module with one test per backend
//! (`faults::both::frozen_from_the_start::s3`, `...::sftp`).

use std::time::{Duration, Instant};

use super::*;
use crate::faultproxy::Dir;

/// `scenario!(name, |rig| { ... })`: the body runs on a fresh [`Rig`] of each backend, with
/// `retries = 3` and `timeout = "3s"` on its destination.
macro_rules! scenario {
    ($name:ident, |$rig:ident| $body:block) => {
        mod $name {
            use super::*;

            fn run(backend: Backend) {
                #[allow(unused_mut)]
                let mut $rig = Rig::new(backend, "retries = 3\ntimeout = \"3s\"");
                $body
            }

            #[test]
            fn s3() {
                run(Backend::S3)
            }

            #[test]
            fn sftp() {
                run(Backend::Sftp)
            }
        }
    };
}

/// The run failed for the destination, in bounded time, and left nothing listed.
fn failed_cleanly(rig: &Rig, r: &Run, took: Duration) {
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    r.code(1);
    blames_the_destination(r);
    assert!(took < FROZEN_BOUND, "took {took:?}");
    rig.proxy.pass();
    assert!(rig.env.list().is_empty(), "a backup is listed");
}

scenario!(frozen_from_the_start, |rig| {
    rig.proxy.stall();
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    assert!(
        rig.proxy.connections() > 1,
        "not retried: {}",
        rig.context()
    );
    failed_cleanly(&rig, &r, took);
});

scenario!(frozen_mid_upload, |rig| {
    rig.add_bulk(20);
    // Past the handshake and the login, in the middle of the archive.
    rig.proxy.stall_after(Dir::ToServer, 2 * MIB);
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    assert!(rig.proxy.stalls() >= 1, "{}", rig.context());
    failed_cleanly(&rig, &r, took);
});

scenario!(connection_refused, |rig| {
    rig.proxy.refuse();
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    failed_cleanly(&rig, &r, took);
});

scenario!(connections_hung_up_at_once_are_retried_then_fail, |rig| {
    rig.proxy.hang_up();
    let (r, took) = run_bounded(&rig.env, &["backup"]);
    assert!(
        rig.proxy.connections() > 1,
        "not retried: {}",
        rig.context()
    );
    failed_cleanly(&rig, &r, took);
});

scenario!(refused_until_the_server_is_back, |rig| {
    rig.proxy.refuse();
    let run = Running::start(&rig.env, &["backup"]);
    // Retries back off 0.5 s, 1 s, 2 s: a server down for 1.5 s is caught by the third.
    std::thread::sleep(Duration::from_millis(1500));
    rig.proxy.pass();
    let (r, took) = run.finish();
    eprintln!(
        "took {took:?}; exit {}; stderr:\n{}\n{}",
        r.code,
        r.stderr,
        rig.context()
    );
    r.ok();
    assert!(rig.proxy.connections() >= 1);
    assert_eq!(rig.env.list().len(), 1);
});

scenario!(
    sigterm_while_retrying_a_frozen_server_exits_130_promptly,
    |rig| {
        rig.proxy.stall();
        let mut run = Running::start(&rig.env, &["backup"]);
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            run.is_running(),
            "the backup ended before the signal: {}",
            run.stderr_so_far()
        );
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
            after_signal < Duration::from_secs(5),
            "exited {after_signal:?} after SIGTERM"
        );
        rig.proxy.pass();
        let runs = rig.env.run(&["--json", "history"]).ok().json();
        assert_eq!(runs[0]["command"], "backup", "{runs:#}");
        assert_eq!(runs[0]["status"], "interrupted", "{runs:#}");
        assert!(runs[0]["backup_id"].is_null(), "{runs:#}");
    }
);
