//! A damaged archive is called damaged, not blamed on the key: a flipped byte in the age header
//! looks to age just like a wrong key, so the stored bytes are compared with the sidecar first.
//! A key that is really wrong still gets the key's message.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::*;

fn with_encrypted_backup() -> (Env, String) {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 100);
    env.with_age_key();
    let id = env.backup();
    (env, id)
}

/// The byte offset of the first character of the line starting with `prefix` in the header,
/// after the prefix.
fn header_offset(bytes: &[u8], prefix: &str) -> usize {
    let header_end = bytes
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("an age header ends with a --- line")
        + 1;
    let mut at = 0;
    for line in bytes[..header_end + 4].split(|&b| b == b'\n') {
        if line.starts_with(prefix.as_bytes()) {
            return at + prefix.len();
        }
        at += line.len() + 1;
    }
    panic!("no {prefix:?} line in the age header");
}

/// Another base64 character in place of the first letter or digit from `at` on (the key is
/// random: `+` and `/` are base64 too), so the header still parses.
fn flip_base64(bytes: &mut [u8], at: usize) {
    let at = (at..at + 8)
        .find(|&i| bytes[i].is_ascii_alphanumeric())
        .unwrap_or_else(|| panic!("no base64 letter near {at}"));
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
}

fn assert_damaged_not_key(r: &Run, what: &str) {
    r.code(4).stderr_has("damaged");
    assert!(
        !r.stderr.contains("identit"),
        "{what}: a damaged archive was blamed on the key:\n{}",
        r.stderr
    );
}

fn assert_nothing_restored(env: &Env, out: &Path) {
    assert!(!out.join("auth.db").exists(), "a file was restored");
    let left: Vec<_> = fs::read_dir(env.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("litevault-restore"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_flipped_byte_in_the_age_header_is_reported_as_damage_not_as_a_wrong_key() {
    let (env, id) = with_encrypted_backup();
    let archive = env.store().join(format!("{id}.tar.zst.age"));
    let original = fs::read(&archive).unwrap();
    // Inside the recipient stanza (age then finds no stanza it can open, as with a wrong key),
    // and inside the header's MAC.
    for (prefix, skip) in [("-> X25519 ", 5), ("--- ", 3)] {
        let mut bytes = original.clone();
        let at = header_offset(&bytes, prefix) + skip;
        flip_base64(&mut bytes, at);
        fs::write(&archive, &bytes).unwrap();

        let r = env.run(&["verify", &id]);
        assert_damaged_not_key(&r, &format!("verify, byte flipped in {prefix:?}"));
        r.stderr_has(&id);
        let out = env.path("out");
        let r = env.run(&["restore", &id, "--to", out.to_str().unwrap()]);
        assert_damaged_not_key(&r, &format!("restore, byte flipped in {prefix:?}"));
        r.stderr_has("another destination");
        assert_nothing_restored(&env, &out);
    }

    fs::write(&archive, &original).unwrap();
    env.run(&["verify", &id]).ok();
}

#[test]
fn a_wrong_identity_still_gets_the_key_message() {
    let (env, id) = with_encrypted_backup();
    let key = env.path("key.txt");
    fs::remove_file(&key).unwrap();
    let out = Command::new(require_tool("age-keygen"))
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "age-keygen failed");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();

    for args in [
        vec!["verify", id.as_str()],
        vec!["restore", &id, "--to", env.path("out").to_str().unwrap()],
    ] {
        let r = env.run(&args);
        r.code(4)
            .stderr_has("none of the configured identities")
            .stderr_has("identity_file");
        assert!(
            !r.stderr.contains("damaged"),
            "{}: intact bytes were called damaged:\n{}",
            args[0],
            r.stderr
        );
    }
    assert_nothing_restored(&env, &env.path("out"));
}
