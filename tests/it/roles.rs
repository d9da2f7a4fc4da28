//! Roles with least privilege: a backup host whose SFTP account cannot delete (OpenSSH's
//! `internal-sftp -P remove,rmdir`) still backs up and copies, reports the leftovers it cannot
//! remove, never overwrites a stored object, and cannot prune; `check --role` says what each
//! role can do and warns where a host holds more than its role needs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;
use crate::servers::SshServer;

struct NoDelete {
    env: Env,
    server: SshServer,
    store: PathBuf,
    _tmp: tempfile::TempDir,
}

/// `local` (a folder) and `vault` (SFTP, an account that cannot delete).
fn no_delete() -> NoDelete {
    let tmp = tempfile::tempdir().unwrap();
    let mut server =
        SshServer::start_with(&tmp.path().join("sshd"), "internal-sftp -P remove,rmdir");
    server.trust();
    let store = tmp.path().join("store");
    fs::create_dir(&store).unwrap();
    let mut env = Env::new();
    create_ledger(&env.add_sqlite("auth.db"), "WAL", 200);
    env.with_age_key();
    env.extra = "[retention]\nkeep_last = 1\n".into();
    env.destinations.push(format!(
        "{}key = \"{}\"\n",
        dest("vault", &server.url(&store)),
        server.client_key.display()
    ));
    NoDelete {
        env,
        server,
        store,
        _tmp: tmp,
    }
}

fn sftp_batch(server: &SshServer, commands: &str) -> std::process::Output {
    let mut child = Command::new(require_tool("sftp"))
        .args(["-b", "-", "-P", &server.port.to_string(), "-i"])
        .arg(&server.client_key)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", ssh_client().1.display()))
        .arg(format!("{}@127.0.0.1", server.user))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn an_account_that_cannot_delete_backs_up_copies_and_cannot_prune() {
    let mut rig = no_delete();
    let env = &rig.env;
    let ns = rig.store.join("test-host");
    let first = env.backup();
    // A leftover of a killed run (an upload under litevault's own staging name): reported,
    // never a failure, and left where it is.
    let staged = format!("{first}.tar.zst.age.0123abcd");
    fs::write(ns.join("tmp").join(&staged), b"half").unwrap();
    let r = env.run(&["--json", "backup"]);
    r.ok().stderr_has(&staged).stderr_has("left in place");
    let second = r.json()["id"].as_str().unwrap().to_string();
    assert!(ns.join("tmp").join(&staged).exists());
    for id in [&first, &second] {
        env.run(&["verify", id, "--dest", "vault"]).ok();
    }

    // The account really cannot delete: not even with the sftp command.
    let archive = format!("{}/{second}.tar.zst.age", ns.display());
    let out = sftp_batch(&rig.server, &format!("rm {archive}\n"));
    assert!(
        !out.status.success(),
        "sftp deleted an archive through an account that must not delete"
    );
    assert!(Path::new(&archive).exists());

    // Copy onto it: a backup stored on `local` only.
    let r = env.run(&["--json", "backup", "--dest", "local"]);
    r.ok();
    let third = r.json()["id"].as_str().unwrap().to_string();
    env.run(&["copy", "--from", "local", "--to", "vault"]).ok();
    env.run(&["verify", &third, "--dest", "vault"]).ok();

    // Pruning is the maintenance role's: it fails, and says so.
    let r = env.run(&["prune", "--dest", "vault"]);
    r.code(3).stderr_has("maintenance role");
    assert!(Path::new(&archive).exists());
    assert_eq!(
        names(&ns).iter().filter(|n| n.ends_with(".json")).count(),
        3,
        "{:?}",
        names(&ns)
    );

    // prune_after_backup under this credential: the backup is stored, the prune part fails.
    rig.env.extra = "[retention]\nkeep_last = 1\nprune_after_backup = true\n".into();
    let r = rig.env.run(&["--json", "backup", "--dest", "vault"]);
    r.code(3).stderr_has("maintenance role");
    let id = r.json()["id"].as_str().unwrap().to_string();
    rig.env.run(&["verify", &id, "--dest", "vault"]).ok();
}

#[test]
fn a_final_name_that_already_exists_is_refused_not_overwritten() {
    let rig = no_delete();
    let env = &rig.env;
    let r = env.run(&["--json", "backup", "--dest", "local"]);
    r.ok();
    let id = r.json()["id"].as_str().unwrap().to_string();
    // Someone put an object at the archive's name on the vault (and it cannot be removed there).
    let ns = rig.store.join("test-host");
    fs::create_dir_all(&ns).unwrap();
    let planted = ns.join(format!("{id}.tar.zst.age"));
    fs::write(&planted, b"not yours").unwrap();
    // What is there under that name is not the source's archive: damage, named, never
    // overwritten.
    let r = env.run(&["copy", "--from", "local", "--to", "vault"]);
    r.code(4).stderr_has("never overwrites");
    assert_eq!(fs::read(&planted).unwrap(), b"not yours");
    assert!(!ns.join(format!("{id}.json")).exists());
}

#[test]
fn check_role_says_what_each_role_can_do() {
    let rig = no_delete();
    let env = &rig.env;
    env.backup();

    // The backup role on the vault: delete refused, as it should be. But this config also
    // hands the server an identity: a warning.
    let r = env.run(&["check", "--role", "backup", "--dest", "vault"]);
    r.ok()
        .stdout_has("delete is refused")
        .stderr_has("identity");
    assert!(!r.stderr.contains("can delete"), "{}", r.stderr);

    // The same role on a folder it can delete in: warned.
    let r = env.run(&["check", "--role", "backup", "--dest", "local"]);
    r.ok().stderr_has("can delete");

    // Restore: the identity opens the newest backup's header.
    env.run(&["check", "--role", "restore"])
        .ok()
        .stdout_has("the identity opens the newest backup");

    // Maintenance needs delete: the vault account fails it; the folder passes.
    env.run(&["check", "--role", "maintenance", "--dest", "vault"])
        .code(1);
    env.run(&["check", "--role", "maintenance", "--dest", "local"])
        .ok();
}
