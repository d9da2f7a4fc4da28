//! A folder of many small files: restored and verified whole, with a bounded number of threads,
//! and a restore killed mid-way leaves nothing that the next restore does not clean up.
//!
//! The trees live in memory (/dev/shm) when it has room: creating 200,000 files costs minutes
//! on some disks (ext4 without a journal scans recently deleted inodes on every create), and
//! the test is about litevault, not the disk. Elsewhere it runs the same, only slower.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

/// 20 x 50 folders of 200 files each.
const TOP: usize = 20;
const MID: usize = 50;
const LEAF: usize = 200;
const FILES: usize = TOP * MID * LEAF;

/// Far above what the workers, the decoder and the runtime need; far below one per file.
const MAX_THREADS: u64 = 32;

fn rel(i: usize) -> String {
    let (top, mid, leaf) = (i / (MID * LEAF), i / LEAF % MID, i % LEAF);
    format!("t{top:02}/m{mid:02}/f{leaf:03}.txt")
}

/// Small, different in content and size, cheap to make again for the comparison.
fn body(i: usize) -> Vec<u8> {
    format!("file {i} of the big folder\n")
        .repeat(1 + i % 7)
        .into_bytes()
}

/// The tree, written from a few threads: creating 200,000 files is most of the test's own work.
fn make_tree(root: &Path) {
    std::thread::scope(|scope| {
        for worker in 0..4 {
            scope.spawn(move || {
                for top in (worker..TOP).step_by(4) {
                    for mid in 0..MID {
                        let first = (top * MID + mid) * LEAF;
                        fs::create_dir_all(root.join(rel(first)).parent().unwrap()).unwrap();
                        for i in first..first + LEAF {
                            fs::write(root.join(rel(i)), body(i)).unwrap();
                        }
                    }
                }
            });
        }
    });
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            n += count_files(&e.path());
        } else {
            assert!(kind.is_file(), "{} is not a file", e.path().display());
            n += 1;
        }
    }
    n
}

/// A folder for the big trees: in /dev/shm when it has room for them, else beside the rest.
fn fast_folder(env: &Env) -> tempfile::TempDir {
    let room = rustix::fs::statvfs("/dev/shm")
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0);
    let base = if room >= 4 << 30 {
        PathBuf::from("/dev/shm")
    } else {
        env.root().to_path_buf()
    };
    tempfile::Builder::new()
        .prefix("litevault-bigdir-")
        .tempdir_in(base)
        .unwrap()
}

/// Run the binary to the end, sampling its thread count; returns the run and the most threads
/// it was seen with.
fn run_sampling_threads(env: &Env, args: &[&str]) -> (Run, u64) {
    let err_path = env.path(&format!("stderr-{}", args[0]));
    let mut child = env
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut most = 0;
    let stdout = child.stdout.take().unwrap();
    // The report is short, but read it on the side so the child never blocks on a full pipe.
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if let Ok(text) = fs::read_to_string(&status) {
            if let Some(n) = text
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
            {
                most = most.max(n);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let run = Run {
        code: exit.code().unwrap_or(-1),
        stdout: reader.join().unwrap(),
        stderr: fs::read_to_string(&err_path).unwrap(),
    };
    (run, most)
}

fn leftovers(parent: &Path) -> Vec<PathBuf> {
    fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains(".litevault-restore-")
        })
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_folder_of_200000_small_files_restores_and_verifies_with_bounded_threads() {
    let mut env = Env::new();
    let fast = fast_folder(&env);
    let root = fast.path();
    let tree = root.join("big");
    env.sources.push(format!(
        "[[source]]\nname = \"big\"\npath = \"{}\"\nkind = \"dir\"\n",
        tree.display()
    ));
    // verify unpacks into state_dir.
    env.state_dir = Some(root.join("state"));
    make_tree(&tree);
    let id = env.backup();
    // The contents are compared with `body`: the original need not take room any longer.
    fs::remove_dir_all(&tree).unwrap();

    // A restore killed mid-way leaves its unpack folder, named with its pid...
    let killed = root.join("out-killed");
    let mut child = env.spawn(&["restore", &id, "--to", killed.to_str().unwrap()]);
    let scratch = loop {
        if let Some(found) = leftovers(root).pop() {
            if fs::read_dir(&found).is_ok_and(|mut d| d.next().is_some()) {
                break found;
            }
        }
        if let Some(exit) = child.try_wait().unwrap() {
            panic!("the restore ended ({exit}) before it could be killed mid-way");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let name = scratch.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.contains(&format!(".litevault-restore-{}-", child.id())),
        "{name} does not carry the pid {}",
        child.id()
    );
    assert!(scratch.exists());

    // ...which the next restore into the same folder removes, and says so.
    let out = root.join("out");
    let (run, threads) =
        run_sampling_threads(&env, &["restore", &id, "--to", out.to_str().unwrap()]);
    run.ok().stderr_has(&name);
    assert!(
        !scratch.exists(),
        "the killed restore's folder is still there"
    );
    assert!(leftovers(root).is_empty(), "{:?}", leftovers(root));
    assert!(
        threads <= MAX_THREADS,
        "the restore ran {threads} threads at once (at most {MAX_THREADS} expected)"
    );
    assert!(threads > 0, "the restore's threads were never sampled");

    let restored = out.join("big");
    assert_eq!(count_files(&restored), FILES);
    for i in (0..FILES).step_by(997).chain([FILES - 1]) {
        let got = fs::read(restored.join(rel(i))).unwrap();
        assert!(got == body(i), "{} differs from the original", rel(i));
    }
    fs::remove_dir_all(&out).unwrap();

    let (run, threads) = run_sampling_threads(&env, &["verify", &id, "--restore-test"]);
    run.ok();
    assert!(
        threads <= MAX_THREADS,
        "verify ran {threads} threads at once (at most {MAX_THREADS} expected)"
    );
}
