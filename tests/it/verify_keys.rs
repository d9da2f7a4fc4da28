//! `verify` with keys that open some backups and not others (recipients changed between
//! backups, an identity file holding only one of the keys): every backup is still checked, and
//! one this host cannot open is said to be that, never FAILED or damaged.

use std::fs;
use std::path::Path;

use crate::harness::*;

/// A fresh age key at `path` (mode 0600); returns its recipient.
fn age_key(path: &Path) -> String {
    let r = sh(
        &format!(
            "age-keygen -o {} 2>/dev/null && chmod 600 {0}",
            path.display()
        ),
        Path::new("/"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    public_key(path)
}

fn encrypt_to(recipient: &str, identity: &Path) -> Option<String> {
    Some(format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        identity.display()
    ))
}

#[test]
fn verify_all_checks_every_backup_and_names_those_this_identity_cannot_open() {
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 50);
    let mine = env.path("mine.key");
    let theirs = env.path("theirs.key");
    let my_recipient = age_key(&mine);
    let their_recipient = age_key(&theirs);

    env.encryption = encrypt_to(&my_recipient, &mine);
    let first = env.backup();
    // Encrypted to a key this host does not hold (a recipient changed, then changed back).
    env.encryption = encrypt_to(&their_recipient, &mine);
    let foreign = env.backup();
    env.encryption = encrypt_to(&my_recipient, &mine);
    let last = env.backup();

    let r = env.run(&["verify", "--all"]);
    r.code(4)
        .stdout_has(&format!("ok {first} on local"))
        .stdout_has(&format!("ok {last} on local"))
        .stderr_has(&foreign)
        .stderr_has("cannot be opened with this host's identity")
        .stderr_has(&mine.display().to_string());
    assert!(!r.stderr.contains("FAILED"), "{}", r.stderr);
    assert!(!r.stderr.contains("damaged"), "{}", r.stderr);
    let other_lines: Vec<&str> = r.stderr.lines().filter(|l| !l.contains(&foreign)).collect();
    assert!(other_lines.is_empty(), "{}", r.stderr);

    let doc = env.run(&["--json", "verify", "--all"]).code(4).json();
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{doc:#}");
    for r in results {
        let id = r["id"].as_str().unwrap();
        if id == foreign {
            assert_eq!(r["ok"], false, "{r:#}");
            assert_eq!(r["cannot_open"], true, "{r:#}");
        } else {
            assert_eq!(r["ok"], true, "{r:#}");
            assert!(r.get("cannot_open").is_none(), "{r:#}");
        }
    }

    // The one backup named: the same words, the same code.
    let r = env.run(&["verify", &foreign]);
    r.code(4)
        .stderr_has("cannot be opened with this host's identity");
    assert!(!r.stderr.contains("FAILED"), "{}", r.stderr);
    env.run(&["verify", &first]).ok();

    // With both keys every backup opens and verifies.
    let both = env.path("both.key");
    fs::write(
        &both,
        format!(
            "{}{}",
            fs::read_to_string(&mine).unwrap(),
            fs::read_to_string(&theirs).unwrap()
        ),
    )
    .unwrap();
    fs::set_permissions(&both, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.encryption = encrypt_to(&my_recipient, &both);
    let doc = env.run(&["--json", "verify", "--all"]).ok().json();
    assert_eq!(doc["results"].as_array().unwrap().len(), 3, "{doc:#}");

    // No identity file at all: one error for the host, not one per backup, exit 2.
    env.encryption = encrypt_to(&my_recipient, &env.path("gone.key"));
    let r = env.run(&["verify", "--all"]);
    r.code(2).stderr_has("encryption.identity_file");
    assert!(!r.stderr.contains("FAILED"), "{}", r.stderr);
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{}",
        r.stderr
    );
}
