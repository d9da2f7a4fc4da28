//! The Debian package (issue 12): built by the pinned cargo-deb from `[package.metadata.deb]`,
//! installed into this machine with `dpkg -i`, checked where an operator looks, removed with
//! `dpkg -r`. It needs root, as CI has; it installs into the real system, so runs of it are
//! serialised with a lock, and a failed run still removes the package.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

const UNITS: [&str; 4] = [
    "litevault-backup.service",
    "litevault-backup.timer",
    "litevault-verify.service",
    "litevault-verify.timer",
];
const STATE: &str = "/var/lib/litevault";

fn cargo_deb() -> PathBuf {
    let cached = Path::new("/var/cache/litevault-tools/bin/cargo-deb");
    if cached.is_file() {
        return cached.to_path_buf();
    }
    require_tool("cargo-deb")
}

fn tool(path: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(path);
    cmd.args(args);
    run_cmd(cmd)
}

/// `readelf -n`'s GNU build id: the linker's hash of the whole linked binary, which `strip`
/// keeps. Equal ids: the package holds the binary this suite built and tests.
fn build_id(binary: &Path) -> String {
    let r = tool(&require_tool("readelf"), &["-n", binary.to_str().unwrap()]);
    r.ok();
    r.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("{} has no GNU build id", binary.display()))
        .to_string()
}

fn installed() -> bool {
    let r = tool(
        &require_tool("dpkg-query"),
        &["-W", "-f=${db:Status-Status}", "litevault"],
    );
    r.code == 0 && r.stdout.trim() == "installed"
}

/// Removes the package when the test ends, however it ends.
struct Uninstall;

impl Drop for Uninstall {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg").args(["--purge", "litevault"]).status();
        }
    }
}

#[test]
fn the_debian_package_installs_the_binary_docs_and_units_and_removes_cleanly() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the package test installs into this machine with dpkg: run the suite as root, as CI does"
    );
    let dpkg = require_tool("dpkg");
    let man = require_tool("man");
    // Debian's `systemd` package brings it (scripts/install-test-deps installs it); it checks unit
    // files offline, with no running systemd, as in this container.
    let analyze = require_tool("systemd-analyze");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));

    // One run at a time on this machine (dpkg itself refuses a second one rather than waiting).
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/lock/litevault-package-test.lock")
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let _cleanup = Uninstall;

    // The package holds the binary under test: a copy of it where cargo-deb looks for the
    // release build (`--no-build`), so the test needs no release build of its own. cargo-deb
    // strips it, as it strips a release build.
    let work = tempfile::Builder::new()
        .prefix("litevault-deb-")
        .tempdir()
        .unwrap();
    let target = work.path().join("target");
    fs::create_dir_all(target.join("release")).unwrap();
    fs::copy(BIN, target.join("release/litevault")).unwrap();
    let out = work.path().join("out");
    let mut cmd = Command::new(cargo_deb());
    cmd.args(["--no-build", "--fast", "--output"])
        .arg(&out)
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", &target);
    run_cmd(cmd).ok();
    let deb = out.join(format!("litevault_{}_amd64.deb", env!("CARGO_PKG_VERSION")));
    assert!(deb.is_file(), "cargo deb did not make {}", deb.display());

    // Nothing in it enables or starts a unit: no [Install] symlinks, no systemctl enable/start.
    let listing = tool(&require_tool("dpkg-deb"), &["-c", deb.to_str().unwrap()]);
    listing.ok();
    assert!(
        !listing.stdout.contains("./etc/systemd"),
        "the package must not enable its units:\n{}",
        listing.stdout
    );
    let control = work.path().join("control");
    tool(
        &require_tool("dpkg-deb"),
        &["-e", deb.to_str().unwrap(), control.to_str().unwrap()],
    )
    .ok();
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        let text = fs::read_to_string(control.join(script)).unwrap_or_default();
        for word in ["enable", "systemctl start", "deb-systemd-invoke start"] {
            let active = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.contains(word));
            assert!(!active, "{script} runs {word:?}:\n{text}");
        }
    }

    // A state folder left empty by an earlier run is removed, so the install must create it.
    if fs::read_dir(STATE).is_ok_and(|mut d| d.next().is_none()) {
        fs::remove_dir(STATE).unwrap();
    }
    assert!(
        !Path::new(STATE).exists(),
        "{STATE} already exists with something in it; this test installs the package into this \
         machine and checks that it creates {STATE}: move it away first"
    );

    tool(&dpkg, &["-i", deb.to_str().unwrap()]).ok();
    assert!(installed());

    // The binary on PATH's usual place is the one this suite built.
    let bin = Path::new("/usr/bin/litevault");
    tool(bin, &["--version"])
        .ok()
        .stdout_has(env!("CARGO_PKG_VERSION"));
    assert_eq!(build_id(bin), build_id(Path::new(BIN)));

    // Man pages where man finds them, gzipped as Debian does; one for each subcommand too.
    let page = tool(&man, &["-w", "litevault"]);
    page.ok();
    assert_eq!(page.stdout.trim(), "/usr/share/man/man1/litevault.1.gz");
    for entry in fs::read_dir(repo.join("man")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let installed = Path::new("/usr/share/man/man1").join(format!("{name}.gz"));
        assert!(installed.is_file(), "{} is missing", installed.display());
    }
    tool(&man, &["-w", "litevault-backup"]).ok();

    // Completions and examples in Debian's places, as committed.
    for (ours, theirs) in [
        (
            "completions/litevault.bash",
            "/usr/share/bash-completion/completions/litevault",
        ),
        (
            "completions/_litevault",
            "/usr/share/zsh/vendor-completions/_litevault",
        ),
        (
            "completions/litevault.fish",
            "/usr/share/fish/vendor_completions.d/litevault.fish",
        ),
        (
            "examples/litevault.toml",
            "/usr/share/doc/litevault/examples/litevault.toml",
        ),
        (
            "examples/crontab",
            "/usr/share/doc/litevault/examples/crontab",
        ),
        (
            "examples/restore-drill.sh",
            "/usr/share/doc/litevault/examples/restore-drill.sh",
        ),
    ] {
        assert_eq!(
            fs::read(theirs).unwrap_or_else(|e| panic!("{theirs}: {e}")),
            fs::read(repo.join(ours)).unwrap(),
            "{theirs} differs from {ours}"
        );
        assert_eq!(mode_of(Path::new(theirs)) & 0o644, 0o644, "{theirs}");
    }

    // The units: installed, valid for this systemd (every key known, ExecStart executable, the
    // man pages in Documentation= found), and not enabled.
    let units: Vec<String> = UNITS
        .iter()
        .map(|u| format!("/lib/systemd/system/{u}"))
        .collect();
    for unit in &units {
        assert!(Path::new(unit).is_file(), "{unit} is missing");
    }
    let unit_args: Vec<&str> = std::iter::once("verify")
        .chain(units.iter().map(String::as_str))
        .collect();
    let verify = tool(&analyze, &unit_args);
    verify.ok();
    assert!(
        verify.stderr.trim().is_empty() && verify.stdout.trim().is_empty(),
        "systemd-analyze verify has complaints:\n{}{}",
        verify.stdout,
        verify.stderr
    );
    for timer in [UNITS[1], UNITS[3]] {
        let enabled = tool(
            &require_tool("systemctl"),
            &["--root=/", "is-enabled", timer],
        );
        assert_eq!(enabled.stdout.trim(), "disabled", "{}", enabled.stderr);
        assert!(!Path::new("/etc/systemd/system/timers.target.wants")
            .join(timer)
            .exists());
    }

    // The state folder: root's alone.
    let meta = fs::metadata(STATE).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    // Removed: the binary, the docs and the units go; the state folder stays (see postrm).
    tool(&dpkg, &["-r", "litevault"]).ok();
    assert!(!installed());
    assert!(!bin.exists(), "dpkg -r left {}", bin.display());
    assert!(!Path::new("/usr/share/man/man1/litevault.1.gz").exists());
    for unit in &units {
        assert!(!Path::new(unit).exists(), "dpkg -r left {unit}");
    }
    tool(&dpkg, &["--purge", "litevault"]).ok();
    assert!(Path::new(STATE).is_dir(), "{STATE} is kept, even on purge");
}
