//! Restore trusts nothing: damaged, truncated and hostile archives are refused with exit 4, and
//! nothing appears in the target folder or outside it.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::*;

/// An environment with one encrypted backup of a small ledger; returns (env, id).
fn with_backup() -> (Env, String) {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 200);
    env.with_age_key();
    let id = env.backup();
    (env, id)
}

fn archive_path(env: &Env, id: &str) -> std::path::PathBuf {
    env.store().join(format!("{id}.tar.zst.age"))
}

/// Nothing restored, no scratch folder left, nothing written beside the target.
fn assert_untouched(env: &Env, out: &Path) {
    assert!(!out.join("auth.db").exists(), "a file was restored");
    let leftovers: Vec<_> = fs::read_dir(env.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("litevault-restore") || n == "evil" || n == "passwd")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert!(!Path::new("/tmp/evil-litevault").exists());
}

#[test]
fn a_flipped_byte_in_the_stored_archive_is_found_by_verify_and_refused_by_restore() {
    let (env, id) = with_backup();
    let path = archive_path(&env, &id);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    env.run(&["verify", &id]).code(4).stderr_has(&id);
    env.run(&["--json", "verify", "--all"]).code(4);
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .code(4);
    assert_untouched(&env, &out);
}

#[test]
fn a_truncated_archive_is_found_by_verify_and_refused_by_restore() {
    let (env, id) = with_backup();
    let path = archive_path(&env, &id);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    env.run(&["verify", &id]).code(4).stderr_has(&id);
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .code(4);
    assert_untouched(&env, &out);
}

#[test]
fn a_wrong_identity_is_refused_with_a_clear_message_and_nothing_is_written() {
    let (mut env, id) = with_backup();
    let other = env.path("other.txt");
    let out = Command::new(require_tool("age-keygen"))
        .arg("-o")
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let recipient = public_key(&env.path("key.txt"));
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        other.display()
    ));
    let target = env.path("out");
    let r = env.run(&["restore", &id, "--to", target.to_str().unwrap()]);
    r.code(4).stderr_has("none of the configured identities");
    assert!(
        !r.stderr.contains("AGE-SECRET-KEY"),
        "a secret key leaked: {}",
        r.stderr
    );
    assert_untouched(&env, &target);

    // No identity configured at all: a configuration error that says what to set.
    env.encryption = Some(format!("[encryption]\nrecipients = [\"{recipient}\"]\n"));
    env.run(&["restore", &id, "--to", target.to_str().unwrap()])
        .code(2)
        .stderr_has("identity_file");
    assert_untouched(&env, &target);

    // An identity file others can read is refused, like ssh refuses a loose key.
    fs::set_permissions(
        env.path("key.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        env.path("key.txt").display()
    ));
    env.run(&["restore", &id, "--to", target.to_str().unwrap()])
        .code(2)
        .stderr_has("chmod 600");
    assert_untouched(&env, &target);
}

/// One tar entry, with its name written raw so that hostile names survive.
struct Entry {
    name: &'static str,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Option<&'static str>,
}

/// Replace the backup's archive by a tar of `entries`, compressed and encrypted to the test key
/// with the real `age`, and make the sidecar's size and hash match, so only the tar's content
/// is hostile.
fn plant(env: &Env, id: &str, entries: &[Entry]) {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_gnu();
        let name = e.name.as_bytes();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(e.kind);
        header.set_size(e.data.len() as u64);
        header.set_mode(0o644);
        if let Some(link) = e.link {
            header.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, &e.data[..]).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let compressed = zstd::encode_all(&tar[..], 3).unwrap();
    let recipient = public_key(&env.path("key.txt"));
    let mut child = Command::new(require_tool("age"))
        .args(["-r", &recipient])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&compressed).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    fs::write(archive_path(env, id), &out.stdout).unwrap();
    let sidecar_path = env.store().join(format!("{id}.json"));
    let mut sidecar: serde_json::Value =
        serde_json::from_slice(&fs::read(&sidecar_path).unwrap()).unwrap();
    sidecar["archive"]["bytes"] = out.stdout.len().into();
    sidecar["archive"]["blake3"] = blake3::hash(&out.stdout).to_hex().to_string().into();
    fs::write(&sidecar_path, serde_json::to_vec(&sidecar).unwrap()).unwrap();
}

fn file(name: &'static str, data: &[u8]) -> Entry {
    Entry {
        name,
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        link: None,
    }
}

#[test]
fn hostile_archives_are_refused_before_anything_reaches_the_target() {
    let (env, id) = with_backup();
    let original = fs::read(archive_path(&env, &id)).unwrap();
    let sidecar: serde_json::Value =
        serde_json::from_slice(&fs::read(env.store().join(format!("{id}.json"))).unwrap()).unwrap();
    let size = sidecar["manifest"]["files"][0]["size"].as_u64().unwrap() as usize;
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("parent path", vec![file("../evil", b"x")]),
        ("absolute path", vec![file("/tmp/evil-litevault", b"x")]),
        ("nested parent path", vec![file("auth.db/../../evil", b"x")]),
        (
            "symlink",
            vec![Entry {
                name: "auth.db",
                kind: tar::EntryType::Symlink,
                data: vec![],
                link: Some("/etc/passwd"),
            }],
        ),
        (
            "hard link",
            vec![Entry {
                name: "auth.db",
                kind: tar::EntryType::Link,
                data: vec![],
                link: Some("/etc/passwd"),
            }],
        ),
        (
            "device",
            vec![Entry {
                name: "auth.db",
                kind: tar::EntryType::Char,
                data: vec![],
                link: None,
            }],
        ),
        ("not in the manifest", vec![file("extra.txt", b"surprise")]),
        (
            "longer than the manifest says",
            vec![file("auth.db", &vec![0u8; size + 512])],
        ),
    ];
    for (what, entries) in cases {
        plant(&env, &id, &entries);
        let out = env.path("out");
        let r = env.run(&["restore", &id, "--to", out.to_str().unwrap()]);
        assert_eq!(r.code, 4, "{what}: expected exit 4\n{}", r.stderr);
        assert!(
            r.stderr.contains("refusing") || r.stderr.contains("not a regular file"),
            "{what}: {}",
            r.stderr
        );
        assert_untouched(&env, &out);
        assert!(
            !env.path("evil").exists(),
            "{what}: wrote outside the target"
        );
        env.run(&["verify", &id]).code(4);
    }
    // Put the real archive back: it still restores, so the refusals were about the content.
    fs::write(archive_path(&env, &id), &original).unwrap();
    let sidecar_path = env.store().join(format!("{id}.json"));
    fs::write(&sidecar_path, serde_json::to_vec(&sidecar).unwrap()).unwrap();
    let out = env.path("out");
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&out.join("auth.db")), 200);
}

#[test]
fn restore_never_overwrites_and_removes_stale_journals() {
    let (env, id) = with_backup();
    let out = env.path("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("auth.db"), "precious").unwrap();
    env.run(&["restore", &id, "--to", out.to_str().unwrap()])
        .code(2)
        .stderr_has("already exists");
    assert_eq!(fs::read_to_string(out.join("auth.db")).unwrap(), "precious");

    // A stale WAL beside an empty target would be replayed onto the restored database.
    let out2 = env.path("out2");
    fs::create_dir_all(&out2).unwrap();
    fs::write(out2.join("auth.db-wal"), vec![7u8; 5000]).unwrap();
    env.run(&["restore", &id, "--to", out2.to_str().unwrap()])
        .ok()
        .stderr_has("stale");
    assert!(!out2.join("auth.db-wal").exists());
    assert_eq!(check_ledger(&out2.join("auth.db")), 200);
}
