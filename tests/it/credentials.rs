//! Secrets the systemd way (issue 12): path values in the config expand `$CREDENTIALS_DIRECTORY`,
//! the folder where `LoadCredential=` puts a unit's secrets. Here the folder is made by hand as
//! systemd makes it (files 0400 in a private folder) and named in the binary's environment.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::*;

const ENCRYPTION: &str = "[encryption]\n\
    recipients_file = \"$CREDENTIALS_DIRECTORY/age-recipients\"\n\
    identity_file = \"${CREDENTIALS_DIRECTORY}/age-identity\"\n";

/// A credentials folder holding an age identity and its recipient, both from the real
/// `age-keygen`; returns the folder.
fn credentials(env: &Env) -> std::path::PathBuf {
    let dir = env.path("credentials");
    fs::create_dir(&dir).unwrap();
    let identity = dir.join("age-identity");
    let out = Command::new(require_tool("age-keygen"))
        .arg("-o")
        .arg(&identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "age-keygen failed");
    fs::write(
        dir.join("age-recipients"),
        format!("# the backup key\n{}\n", public_key(&identity)),
    )
    .unwrap();
    for f in ["age-identity", "age-recipients"] {
        fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o400)).unwrap();
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
    dir
}

#[test]
fn keys_are_found_through_credentials_directory_and_an_unset_one_is_a_config_error() {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 40);
    let creds = credentials(&env);
    env.encryption = Some(ENCRYPTION.into());
    env.vars
        .push(("CREDENTIALS_DIRECTORY".into(), creds.display().to_string()));

    // Backed up to the recipient in the credentials folder...
    let id = env.backup();
    let archive = env
        .stored_files()
        .into_iter()
        .find(|f| f.starts_with(&id) && f.ends_with(".age"))
        .expect("an encrypted archive");
    // ...which the real age opens with the identity beside it.
    let listing = sh(
        &format!(
            "age -d -i {} {} | zstd -dc | tar -t",
            creds.join("age-identity").display(),
            env.store().join(&archive).display()
        ),
        env.root(),
    );
    listing.ok().stdout_has("auth.db");

    // Restored with the identity found through the variable.
    let to = env.path("restored");
    env.run(&["restore", &id, "--to", to.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&to.join("auth.db")), 40);

    // Without the variable (a run outside the unit): exit 2 before any work, naming the key and
    // what to do, for a backup and for a restore alike.
    let stored = env.stored_files();
    for args in [
        vec!["backup"],
        vec!["restore", id.as_str(), "--to", "/nonexistent/never"],
    ] {
        let mut cmd = env.command(&args);
        cmd.env_remove("CREDENTIALS_DIRECTORY");
        let r = run_cmd(cmd);
        r.code(2).stderr_has(
            "`encryption.recipients_file` uses $CREDENTIALS_DIRECTORY, which is not set \
             (run under systemd with LoadCredential=, or write the path)",
        );
    }
    assert_eq!(env.stored_files(), stored, "nothing was stored");

    // Any other variable is refused rather than read as a folder called `$HOME`.
    env.encryption = Some(ENCRYPTION.replace("${CREDENTIALS_DIRECTORY}", "$HOME"));
    env.run(&["backup"])
        .code(2)
        .stderr_has("`encryption.identity_file` uses $HOME, which litevault does not expand");
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o700)).unwrap();
}
