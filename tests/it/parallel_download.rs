//! Parallel downloads (issue 22): an archive on S3 at or over `parallel_download_threshold` is
//! restored as ranged GETs over `concurrency` connections, in order, in bounded memory, each
//! range retried alone; a signal stops it with nothing left behind. The real binary, s3s-fs
//! behind the fault proxy (one request per connection, so connections are requests), and a low
//! threshold so that archives of a few MiB take the parallel path.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::faultproxy::{Dir, FaultProxy};
use crate::harness::*;
use crate::servers::*;

const MIB: u64 = 1 << 20;

/// One bulk database backed up (encrypted) to s3s-fs behind a fault proxy. Fields drop in
/// order: the proxy before the server.
struct Rig {
    env: Env,
    proxy: FaultProxy,
    _s3: S3Server,
    _tmp: tempfile::TempDir,
}

impl Rig {
    /// `mb` MiB of incompressible data, `concurrency` connections, ranges from 1 MiB up.
    fn new(mb: usize, concurrency: usize) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let server = S3Server::start(&tmp.path().join("s3"), &["bkt"]);
        let proxy = FaultProxy::http(server.port);
        let mut env = Env::new();
        let db = env.add_sqlite("big.db");
        create_bulk(&db, mb);
        env.with_age_key();
        let url = format!(
            "s3://bkt/backups?endpoint={}&region=us-east-1",
            proxy.endpoint()
        );
        env.destinations = vec![format!(
            "{}retries = 3\ntimeout = \"20s\"\nconcurrency = {concurrency}\nparallel_download_threshold = \"1MiB\"\n",
            dest("remote", &url)
        )];
        env.vars = vec![
            ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
        ];
        env.backup();
        Rig {
            env,
            proxy,
            _s3: server,
            _tmp: tmp,
        }
    }

    /// The ranged GETs of the archive the proxy saw since `from`: (request line, range).
    fn archive_ranges(&self, from: usize) -> Vec<(String, String)> {
        self.proxy.range_log()[from..]
            .iter()
            .filter(|(line, _)| line.starts_with("GET ") && line.contains(".tar"))
            .cloned()
            .collect()
    }

    fn context(&self) -> String {
        format!(
            "{}\nranges: {:#?}",
            self.proxy.summary(),
            self.proxy.range_log()
        )
    }

    fn restore_to(&self, out: &Path) -> Run {
        self.env
            .run(&["restore", "latest", "--to", out.to_str().unwrap()])
    }

    /// A restore of the same backup through one stream (a threshold no archive reaches).
    fn restore_one_stream(&mut self, out: &Path) -> Run {
        let parallel = self.env.destinations[0].clone();
        self.env.destinations[0] = parallel.replace(
            "parallel_download_threshold = \"1MiB\"",
            "parallel_download_threshold = \"1GiB\"",
        );
        let r = self.restore_to(out);
        self.env.destinations[0] = parallel;
        r
    }
}

/// `bytes=A-B` -> (A, B + 1).
fn bounds(range: &str) -> (u64, u64) {
    let (a, b) = range
        .trim_start_matches("bytes=")
        .split_once('-')
        .unwrap_or_else(|| panic!("not a bounded range: {range}"));
    (a.parse().unwrap(), b.parse::<u64>().unwrap() + 1)
}

/// The distinct ranges requested, sorted, must tile the object from 0 without gap or overlap;
/// returns its length.
fn tiles(ranges: &[(String, String)]) -> u64 {
    let mut spans: Vec<(u64, u64)> = ranges.iter().map(|(_, r)| bounds(r)).collect();
    spans.sort();
    spans.dedup();
    let mut end = 0;
    for (a, b) in spans {
        assert_eq!(a, end, "a gap or an overlap at {a}: {ranges:#?}");
        end = b;
    }
    end
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn parallel_restore_is_byte_identical_over_several_ranged_connections() {
    let mut rig = Rig::new(12, 8);
    let one = rig.env.path("one");
    rig.restore_one_stream(&one).ok();
    assert!(
        rig.archive_ranges(0).is_empty(),
        "the one-stream restore asked for ranges: {}",
        rig.context()
    );

    let out = rig.env.path("out");
    rig.restore_to(&out).ok();
    let ranges = rig.archive_ranges(0);
    // 12 MiB in 2 MiB ranges (16 MiB shared by 8 connections): at least three, each once.
    assert!(ranges.len() >= 3, "{}", rig.context());
    let distinct: std::collections::BTreeSet<_> = ranges.iter().map(|(_, r)| r).collect();
    assert_eq!(distinct.len(), ranges.len(), "{}", rig.context());
    assert!(tiles(&ranges) > 12 * MIB, "{}", rig.context());
    assert!(
        rig.proxy.peak_open() >= 2,
        "the ranges came one connection at a time: {}",
        rig.context()
    );
    assert!(
        read(out.join("big.db")) == read(one.join("big.db")),
        "the parallel restore differs from the one-stream restore"
    );
}

#[test]
fn parallel_restore_retries_a_range_cut_mid_way_and_only_that_range() {
    let rig = Rig::new(12, 8);
    let before = rig.proxy.range_log().len();
    // The first response to carry 1.5 MiB is a range's (2 MiB ranges at 8 connections; every
    // other answer is a few KiB): cut.
    rig.proxy.reset_once_after(Dir::ToClient, 3 * MIB / 2);
    let out = rig.env.path("out");
    rig.restore_to(&out).ok();
    assert_eq!(rig.proxy.resets(), 1, "{}", rig.context());
    let ranges = rig.archive_ranges(before);
    let mut counts = std::collections::BTreeMap::new();
    for (_, r) in &ranges {
        *counts.entry(r.clone()).or_insert(0) += 1;
    }
    let again: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        again.len(),
        1,
        "not exactly one range asked for again: {counts:#?}\n{}",
        rig.context()
    );
    assert_eq!(*again[0].1, 2, "{counts:#?}");
    assert!(tiles(&ranges) > 12 * MIB, "{}", rig.context());
    rig.env.run(&["verify", "--restore-test"]).ok();
    assert_eq!(
        read(out.join("big.db")).len() as u64 % 4096,
        0,
        "not a whole database"
    );
}

#[test]
fn parallel_restore_survives_the_server_dropping_connections() {
    // 40 MiB in 4 MiB ranges at 4 connections: the fifth range starts on a new connection while
    // the first four are still in flight.
    let mut rig = Rig::new(40, 4);
    rig.proxy.limit_rate(4 * MIB);
    let before = rig.proxy.range_log().len();
    let out = rig.env.path("out");
    let done = std::sync::atomic::AtomicBool::new(false);
    let (proxy, done_ref) = (&rig.proxy, &done);
    let r = std::thread::scope(|s| {
        s.spawn(move || {
            let ended = || done_ref.load(std::sync::atomic::Ordering::SeqCst);
            // Once the download has begun, new connections are closed at once until two of
            // them were; then the server answers again.
            while proxy.range_log().len() <= before && !ended() {
                std::thread::sleep(Duration::from_millis(10));
            }
            proxy.hang_up();
            while proxy.resets() < 2 && !ended() {
                std::thread::sleep(Duration::from_millis(10));
            }
            proxy.pass();
        });
        let r = rig.restore_to(&out);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    });
    r.ok();
    assert!(rig.proxy.resets() >= 2, "{}", rig.context());
    let one = rig.env.path("one");
    rig.restore_one_stream(&one).ok();
    assert!(read(out.join("big.db")) == read(one.join("big.db")));
}

#[test]
fn sigterm_mid_parallel_download_exits_130_and_leaves_nothing_behind() {
    let rig = Rig::new(24, 4);
    // About 3 s at 4 connections of 2 MiB/s: the signal lands mid-download.
    rig.proxy.limit_rate(2 * MIB);
    let before = rig.proxy.range_log().len();
    let out = rig.env.path("out");
    let mut child = rig
        .env
        .command(&["restore", "latest", "--to", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while rig.archive_ranges(before).len() < 2 && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        rig.archive_ranges(before).len() >= 2,
        "not downloaded in ranges: {}",
        rig.context()
    );
    let (code, took, stderr) = term_after(child, Duration::from_millis(300));
    assert!(took.is_some(), "the restore ended before the signal");
    assert_eq!(code, 130, "{stderr}");
    assert!(!out.join("big.db").exists(), "a torn restore was left");
    let beside: Vec<String> = std::fs::read_dir(rig.env.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("litevault-restore"))
        .collect();
    assert!(beside.is_empty(), "left beside the target: {beside:?}");
    let scratch: Vec<_> = std::fs::read_dir(rig.env.state().join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(scratch.is_empty(), "scratch left: {scratch:?}");
    if out.exists() {
        let inside: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(inside.is_empty(), "left in the target: {inside:?}");
    }
}

/// Peak RSS (VmHWM) of a running process, polled until it ends; with its exit code.
fn peak_rss_kib(mut child: std::process::Child) -> (u64, i32) {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            return (peak, s.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn parallel_restore_of_256_mib_at_16_connections_stays_in_bounded_memory() {
    let rig = Rig::new(256, 16);
    let before = rig.proxy.range_log().len();
    let out = rig.env.path("out");
    let child = rig
        .env
        .command(&["restore", "latest", "--to", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (peak, code) = peak_rss_kib(child);
    assert_eq!(code, 0, "{}", rig.context());
    let ranges = rig.archive_ranges(before);
    // 1 MiB ranges (16 MiB shared by 16 connections) over 256 MiB.
    assert!(ranges.len() >= 128, "{}", rig.context());
    assert!(rig.proxy.peak_open() >= 8, "{}", rig.context());
    eprintln!("peak RSS {} MiB", peak / 1024);
    // In flight: 16 ranges of 2 MiB, one waiting and one being read, about 36 MiB, on top of
    // a one-stream restore's 27-29 MiB. 128 MiB is generous for allocator slack, and still
    // half of the archive: ranges held without bound would cross it.
    assert!(
        peak > 0 && peak < 128 * 1024,
        "peak RSS {peak} KiB for a 256 MiB archive at 16 connections"
    );
}

#[test]
fn as_of_reads_every_range_from_the_same_version() {
    let moto = MotoServer::start();
    moto.boto3(
        "s3.create_bucket(Bucket='ver')\n\
         s3.put_bucket_versioning(Bucket='ver', VersioningConfiguration={'Status': 'Enabled'})",
    );
    let proxy = FaultProxy::http(moto.port);
    let mut env = Env::new();
    let db = env.add_sqlite("big.db");
    create_bulk(&db, 10);
    env.with_age_key();
    let url = format!(
        "s3://ver/backups?endpoint={}&region=us-east-1",
        proxy.endpoint()
    );
    env.destinations = vec![format!(
        "{}concurrency = 8\nparallel_download_threshold = \"1MiB\"\n",
        dest("remote", &url)
    )];
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), "k".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "s".into()),
    ];
    env.backup();
    let genuine = env.path("genuine");
    env.run(&["restore", "latest", "--to", genuine.to_str().unwrap()])
        .ok();
    std::thread::sleep(Duration::from_millis(1500));
    let before = jiff::Timestamp::now().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    // The archive overwritten with as many bytes of garbage: only its older version is genuine.
    moto.boto3(
        "k = [o['Key'] for o in s3.list_objects_v2(Bucket='ver', Prefix='backups/')['Contents'] if '.tar' in o['Key']][0]\n\
         n = s3.head_object(Bucket='ver', Key=k)['ContentLength']\n\
         s3.put_object(Bucket='ver', Key=k, Body=b'\\x01' * n)",
    );
    let from = proxy.range_log().len();
    let out = env.path("out");
    env.run(&[
        "restore",
        "latest",
        "--as-of",
        &before,
        "--to",
        out.to_str().unwrap(),
    ])
    .ok();
    let ranges: Vec<_> = proxy.range_log()[from..]
        .iter()
        .filter(|(line, _)| line.starts_with("GET ") && line.contains(".tar"))
        .cloned()
        .collect();
    assert!(ranges.len() >= 2, "{ranges:#?}");
    assert!(
        ranges.iter().all(|(line, _)| line.contains("versionId=")),
        "a range read the current object, not the version: {ranges:#?}"
    );
    assert!(read(out.join("big.db")) == read(genuine.join("big.db")));
}
